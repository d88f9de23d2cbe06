"""Attaches the packet programs (bpf/packets.bpf.c) to the cgroup v2 root.

cgroup_skb programs on the root see the packets of every socket on the
node, in every container and network namespace: the TCP exchanges, bytes
and RTT of the service graph (TCP_PACKETS) and, through a tail call into
the wire programs, the trace contexts of HTTP requests (trace_wire).  They
are attached through BPF links: a link goes away with the agent's file
descriptor, so a killed agent leaves no program behind (a plain
BPF_PROG_ATTACH would).
"""

import ctypes
import errno
import logging
import os

from taskscope.agent.kernel.loader import CAP_NET_ADMIN, effective_capabilities
from taskscope.records.errors import ProbeLoadError

log = logging.getLogger(__name__)

BPF_CGROUP_INET_INGRESS = 0
BPF_CGROUP_INET_EGRESS = 1
PROGRAMS = (("packet_ingress", BPF_CGROUP_INET_INGRESS),
            ("packet_egress", BPF_CGROUP_INET_EGRESS))
# Tail-call targets of the packet programs, by their index in packet_wire.
WIRE_PROGRAMS = ("wire_ingress", "wire_egress")
VERIFIER_LOG_BYTES = 1 << 22
VERIFIER_LINES = 8


class VerifierGaveUp(ProbeLoadError):
    """The program is too complex for this kernel's verifier (E2BIG)."""


def _libbcc():
    lib = ctypes.CDLL("libbcc.so.0", use_errno=True)  # BCC bundles libbpf
    lib.bpf_link_create.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
    lib.bpf_link_create.restype = ctypes.c_int
    return lib


def _lacks_net_admin():
    try:
        return not effective_capabilities() & (1 << CAP_NET_ADMIN)
    except OSError:
        return False


def load_program(bpf, name, prog_type):
    """Load program `name` of a compiled BCC module; a rejection raises
    ProbeLoadError with the verifier's own last lines (BCC would print them
    to stderr and raise a bare errno string)."""
    from bcc import BPF
    from bcc.libbcc import lib

    if name.encode() in bpf.funcs:
        return bpf.funcs[name.encode()]
    start = lib.bpf_function_start(bpf.module, name.encode())
    if not start:
        raise ProbeLoadError(f"no program {name} in the compiled module")
    buf = ctypes.create_string_buffer(VERIFIER_LOG_BYTES)
    fd = lib.bcc_func_load(bpf.module, prog_type, name.encode(), start,
                           lib.bpf_function_size(bpf.module, name.encode()),
                           lib.bpf_module_license(bpf.module),
                           lib.bpf_module_kern_version(bpf.module), 0, buf, len(buf), None, -1)
    if fd < 0:
        err = ctypes.get_errno()
        if err == errno.E2BIG:
            raise VerifierGaveUp(f"cannot load {name}: the verifier gave up: the program needs "
                                 "more than the one million instructions this kernel's "
                                 "verifier checks (E2BIG)")
        lines = [line for line in buf.value.decode("utf-8", "replace").splitlines() if line]
        if err == errno.EPERM and _lacks_net_admin():
            why = "cgroup_skb programs need CAP_NET_ADMIN"
        elif lines:
            why = "the verifier refused it:\n    " + "\n    ".join(lines[-VERIFIER_LINES:])
        else:
            why = os.strerror(err)
        raise ProbeLoadError(f"cannot load {name}: {why}")
    function = BPF.Function(bpf, name.encode(), fd)
    bpf.funcs[name.encode()] = function
    return function


class PacketHooks:
    """Holds the links; close() detaches.  With `wire`, the trace-context
    readers are loaded too; if the verifier refuses them, only they are lost
    (`wire_error` says why) and the packet programs run without them."""

    def __init__(self, bpf, cgroup_root, wire=False):
        if not cgroup_root:
            raise ProbeLoadError("no cgroup2 mount found: packets cannot be seen "
                                 "(mount cgroup2, e.g. at /sys/fs/cgroup)")
        self.links = []
        self.wire_error = None
        if wire:
            self._load_wire(bpf)
        lib = _libbcc()
        cgroup_fd = os.open(cgroup_root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for name, attach_type in PROGRAMS:
                try:
                    program = load_program(bpf, name, bpf.CGROUP_SKB)
                except ProbeLoadError:
                    self.close()
                    raise
                link = lib.bpf_link_create(program.fd, cgroup_fd, attach_type, None)
                if link < 0:
                    err = ctypes.get_errno()
                    self.close()
                    needs = " (cgroup_skb programs need CAP_NET_ADMIN)" \
                        if err == errno.EPERM and _lacks_net_admin() else ""
                    raise ProbeLoadError(f"cannot attach {name} to the cgroup {cgroup_root}: "
                                         f"{os.strerror(err)}{needs}")
                self.links.append(link)
        finally:
            os.close(cgroup_fd)
        log.info("seeing the packets of every socket under %s", cgroup_root)

    def _load_wire(self, bpf):
        try:
            table = bpf.get_table("packet_wire")
            for index, name in enumerate(WIRE_PROGRAMS):
                program = load_program(bpf, name, bpf.CGROUP_SKB)
                table[ctypes.c_int(index)] = ctypes.c_int(program.fd)
        except ProbeLoadError as exc:
            self.wire_error = exc  # the caller decides: try again smaller, or go without

    def close(self):
        for link in self.links:
            os.close(link)
        self.links = []
