"""Attaches the trace-context readers (bpf/traceparent.bpf.c) to the root cgroup.

cgroup_skb programs on the cgroup2 root see the packets of every socket on
the node, in every container and network namespace.  They are attached
through BPF links: a link goes away with the agent's file descriptor, so
a killed agent leaves no program behind (a plain BPF_PROG_ATTACH would).
"""

import ctypes
import errno
import logging
import os

from taskscope.records.errors import ProbeLoadError

log = logging.getLogger(__name__)

BPF_CGROUP_INET_INGRESS = 0
BPF_CGROUP_INET_EGRESS = 1
NEEDS = " (cgroup_skb programs need CAP_NET_ADMIN)"
PROGRAMS = (("trace_ingress", BPF_CGROUP_INET_INGRESS),
            ("trace_egress", BPF_CGROUP_INET_EGRESS))


def _libbpf():
    lib = ctypes.CDLL("libbcc.so.0", use_errno=True)  # BCC bundles libbpf
    lib.bpf_link_create.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
    lib.bpf_link_create.restype = ctypes.c_int
    return lib


class WireCapture:
    """Holds the links; close() detaches."""

    def __init__(self, bpf, cgroup_root):
        if not cgroup_root:
            raise ProbeLoadError("no cgroup2 mount found: trace contexts cannot be read "
                                 "off the wire (mount cgroup2, e.g. at /sys/fs/cgroup)")
        self.links = []
        lib = _libbpf()
        cgroup_fd = os.open(cgroup_root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for name, attach_type in PROGRAMS:
                try:
                    program = bpf.load_func(name, bpf.CGROUP_SKB)
                except Exception as exc:  # BCC raises bare Exception
                    self.close()
                    raise ProbeLoadError(f"cannot load {name}: {exc}{NEEDS}") from exc
                link = lib.bpf_link_create(program.fd, cgroup_fd, attach_type, None)
                if link < 0:
                    err = ctypes.get_errno()
                    self.close()
                    raise ProbeLoadError(f"cannot attach {name} to the cgroup {cgroup_root}: "
                                         f"{os.strerror(err)}{NEEDS if err == errno.EPERM else ''}")
                self.links.append(link)
        finally:
            os.close(cgroup_fd)
        log.info("reading trace contexts of HTTP requests on every socket under %s",
                 cgroup_root)

    def close(self):
        for link in self.links:
            os.close(link)
        self.links = []
