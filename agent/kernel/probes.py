"""The probe catalogue: which tracepoints each probe needs, and its define.

bpf/taskscope.bpf.c compiles a probe's part only with its define.  A probe
whose required tracepoints are missing is left out of the BPF module and
reported down; optional tracepoints become HAVE_<CATEGORY>_<EVENT> defines
so the C can pick a fallback.
"""

import logging
import os
from dataclasses import dataclass, field, replace

from taskscope.agent.kernel.btf import BTFError
from taskscope.agent.kernel.tracefs import tracepoint_exists

log = logging.getLogger(__name__)

GROUPS = ("sched", "blockio", "tcp", "traces")
# Probes can also be chosen one by one (say tcp_connect,tcp_rtt without the
# per-send/receive hooks of tcp_bytes and tcp_exchanges).


@dataclass(frozen=True)
class Probe:
    name: str
    group: str
    required: tuple = ()
    optional: tuple = ()
    define: str = ""
    # BTF variant, compiled with <define>_BTF where the kernel's BTF vouches
    # for it: raw tracepoints (event, parameter types its C expects) and the
    # struct fields it reads (define, struct, member path, size in bytes).
    raw_events: tuple = ()
    fields: tuple = ()
    # Probes it cannot work without, selected along with it.
    needs: tuple = ()
    # Fed by the packet programs (bpf/packets.bpf.c), not by tracepoints.
    packets: bool = False
    # Fed by kprobes on tcp_sendmsg/tcp_recvmsg (bpf/tcp/io.bpf.c).
    kprobes: bool = False


# The raw send and receive hooks, shared by tcp_exchanges and tcp_bytes.
SOCK_IO_RAW_EVENTS = (("sock_send_length", ("struct sock *", "int", "int")),
                      ("sock_recv_length", ("struct sock *", "int", "int")))
SK_PROTOCOL = ("SK_PROTOCOL_OFFSET", "sock", "sk_protocol", 2)

CATALOGUE = (
    # Identity is the core every other probe charges samples to; without its
    # tracepoints processes are still named, by comm, on first sight.
    Probe(
        "identity", "core",
        optional=("syscalls:sys_enter_execve", "syscalls:sys_enter_execveat",
                  "sched:sched_process_exec", "sched:sched_process_fork"),
        define="IDENTITY",
        fields=(("TASK_MM_OFFSET", "task_struct", "mm", 8),
                ("MM_ENV_START_OFFSET", "mm_struct", "env_start", 8),
                ("MM_ENV_END_OFFSET", "mm_struct", "env_end", 8)),
    ),
    # Trace segments: a thread's waits while it works for one trace, filled
    # by the sched, blockio and tcp probes; begun by the marker library's
    # uprobes, and by trace contexts read off the wire by cgroup_skb
    # programs (trace_wire), which open segments at TCP exchanges.
    Probe("trace_segments", "traces",
          required=("sched:sched_switch",), define="TRACE_SEGMENTS"),
    Probe("trace_wire", "traces",
          required=("sock:inet_sock_set_state", "sock:sock_send_length",
                    "sock:sock_recv_length"), define="TRACE_WIRE",
          needs=("trace_segments", "tcp_exchanges")),
    Probe("runqueue", "sched",
          required=("sched:sched_wakeup", "sched:sched_wakeup_new", "sched:sched_switch"),
          define="RUNQUEUE",
          raw_events=(("sched_switch", ("_Bool", "struct task_struct *", "struct task_struct *",
                                        "unsigned int")),
                      ("sched_wakeup", ("struct task_struct *",)),
                      ("sched_wakeup_new", ("struct task_struct *",))),
          fields=(("TASK_PID_OFFSET", "task_struct", "pid", 4),)),
    Probe("blockio", "blockio",
          required=("block:block_rq_issue", "block:block_rq_complete"),
          optional=("block:block_io_start", "block:block_rq_insert", "block:block_bio_queue"),
          define="BLOCKIO"),
    Probe("tcp_connect", "tcp",
          required=("sock:inet_sock_set_state",), define="TCP_CONNECT"),
    # RTT samples are charged to the socket owners that inet_sock_set_state
    # records (tcp_probe runs in softirq context).  Where the send and
    # receive hooks run raw (see tcp_bytes), srtt is sampled on them instead
    # and tcp_probe, which fires on every received segment, stays unattached.
    Probe("tcp_rtt", "tcp",
          required=("sock:inet_sock_set_state", "tcp:tcp_probe"), define="TCP_RTT",
          needs=("tcp_connect",),
          raw_events=(("tcp_probe", ("struct sock *", "struct sk_buff *")),),
          fields=(("TCP_SRTT_US_OFFSET", "tcp_sock", "srtt_us", 4),)),
    Probe("tcp_retransmit", "tcp",
          required=("tcp:tcp_retransmit_skb",), define="TCP_RETRANSMIT", needs=("tcp_connect",)),
    # The service graph: request/response exchanges per connection, from the
    # direction changes of its byte stream; connections' roles and
    # addresses come from inet_sock_set_state.
    # With BTF, the send and receive hooks (shared with tcp_bytes) run as raw
    # tracepoints, and connections open before the agent are adopted on their
    # first send or receive, by their (netns, 4-tuple) as /proc listed them.
    Probe("tcp_exchanges", "tcp",
          required=("sock:inet_sock_set_state", "sock:sock_send_length",
                    "sock:sock_recv_length"), define="TCP_EXCHANGES", needs=("tcp_connect",),
          optional=("tcp:tcp_receive_reset",),
          raw_events=SOCK_IO_RAW_EVENTS,
          fields=(SK_PROTOCOL,
                  ("SKC_FAMILY_OFFSET", "sock", "__sk_common.skc_family", 2),
                  ("SKC_DADDR_OFFSET", "sock", "__sk_common.skc_daddr", 4),
                  ("SKC_RCV_SADDR_OFFSET", "sock", "__sk_common.skc_rcv_saddr", 4),
                  ("SKC_DPORT_OFFSET", "sock", "__sk_common.skc_dport", 2),
                  ("SKC_NUM_OFFSET", "sock", "__sk_common.skc_num", 2),
                  ("SKC_V6_DADDR_OFFSET", "sock", "__sk_common.skc_v6_daddr", 16),
                  ("SKC_V6_RCV_SADDR_OFFSET", "sock", "__sk_common.skc_v6_rcv_saddr", 16),
                  ("SKC_NET_OFFSET", "sock", "__sk_common.skc_net", 8),
                  ("NET_NS_INUM_OFFSET", "net", "ns.inum", 4))),
    # Every send and receive on every socket: raw tracepoints where BTF
    # allows, which cost one helper call (40 ns here) to read the protocol
    # of a socket that tcp_connect does not track, where the classic ones
    # cost ~90 ns more than raw ones to format their fields.
    Probe("tcp_bytes", "tcp",
          required=("sock:sock_send_length", "sock:sock_recv_length"), define="TCP_BYTES",
          raw_events=SOCK_IO_RAW_EVENTS, fields=(SK_PROTOCOL,)),
)


PROBE_NAMES = tuple(p.name for p in CATALOGUE if p.group != "core")

# Exchanges and bytes from packets: the cgroup_skb programs see every TCP
# segment on any kernel with cgroup v2, so neither probe needs the send and
# receive tracepoints (6.4+) nor a program on every send and receive; the
# state tracepoint still names each socket's owner.
PACKET_IO = ("sock:inet_sock_set_state",)
# The probes fed by every send and receive in the send/receive design.
TCP_IO_PROBES = ("tcp_exchanges", "tcp_bytes")


def _io_variants(**fed_by):
    """tcp_exchanges and tcp_bytes fed otherwise than by the send/receive
    tracepoints: the state tracepoint alone, the socket table (tcp_connect),
    and for exchanges the BTF offsets that key listeners by namespace."""
    return {p.name: replace(p, required=PACKET_IO, raw_events=(),
                            fields=p.fields if p.name == "tcp_exchanges" else (),
                            needs=tuple(dict.fromkeys(p.needs + ("tcp_connect",))), **fed_by)
            for p in CATALOGUE if p.name in TCP_IO_PROBES}


PACKET_VARIANTS = _io_variants(packets=True)
# Wire traces then learn which thread took a request from its reads
# (bpf/tcp/reads.bpf.c): one hook on TCP reads only, instead of every send
# and receive of every socket.
PACKET_VARIANTS["trace_wire"] = replace(
    next(p for p in CATALOGUE if p.name == "trace_wire"), packets=True,
    required=PACKET_IO + ("tcp:tcp_rcv_space_adjust",),
    raw_events=(("tcp_rcv_space_adjust", ("struct sock *",)),))
# Kernels before 6.4 whose packet programs cannot be used (no cgroup v2, say)
# but that have kprobes: tcp_sendmsg and tcp_recvmsg, entry and return.
KPROBE_FUNCTIONS = ("tcp_sendmsg", "tcp_recvmsg")
KPROBE_VARIANTS = _io_variants(kprobes=True)
TCP_IO_MODES = ("auto", "packets", "syscalls", "kprobes")


@dataclass
class Selection:
    """What will be loaded, and why the rest will not."""

    enabled: list = field(default_factory=list)
    missing: dict = field(default_factory=dict)  # probe name -> missing tracepoints
    probe_defines: dict = field(default_factory=dict)  # probe name -> -D flags

    def variant(self, name):
        """How probe `name` is fed: packets, raw_tracepoints or tracepoints."""
        probe = next(p for p in self.enabled if p.name == name)
        if probe.packets or (name == "tcp_rtt" and any(p.packets for p in self.enabled)):
            return "packets"  # RTT is sampled on the packets too (bpf/tcp/rtt.h)
        if probe.kprobes:
            return "kprobes"
        raw = f"{probe.define}_BTF" in self.probe_defines[name] and probe.raw_events
        return "raw_tracepoints" if raw else "tracepoints"

    @property
    def packet_users(self):
        """Probes that need the packet programs attached (trace_wire always
        does: trace contexts are read off the packets)."""
        return [p.name for p in self.enabled if p.packets or p.name == "trace_wire"]

    def defines(self, probes=None):
        """-D flags of `probes` (default: every enabled probe), each once."""
        probes = self.enabled if probes is None else probes
        return list(dict.fromkeys(d for p in probes for d in self.probe_defines[p.name]))


def _have_define(tracepoint):
    return "HAVE_" + tracepoint.replace(":", "_").upper()


def btf_defines(probe, btf):
    """-D flags for the BTF variant of `probe`, or [] when BTF cannot vouch for it."""
    if not (probe.raw_events or probe.fields) or btf is None:
        return []
    try:
        for event, params in probe.raw_events:
            found = tuple(btf.raw_tracepoint_params(event))
            if found != params:
                raise BTFError(f"{event} takes ({', '.join(found)}), expected ({', '.join(params)})")
        defines = [f"{probe.define}_BTF"]
        for define, struct_name, path, size in probe.fields:
            offset, found_size = btf.member(struct_name, path)
            if found_size != size:
                raise BTFError(f"{struct_name}.{path} is {found_size} bytes, expected {size}")
            defines.append(f"{define}={offset}")
        return defines
    except BTFError as exc:
        log.info("probe %s falls back to its variant without BTF: %s", probe.name, exc)
        return []


def io_hooks_present(tracefs_root):
    """True where the kernel has the send and receive tracepoints (6.4+)."""
    return all(tracepoint_exists(tracefs_root, f"sock:{event}") for event, _ in SOCK_IO_RAW_EVENTS)


def kprobes_present(tracefs_root):
    """True where the kernel has kprobes and tcp_sendmsg/tcp_recvmsg can take
    them (listed in available_filter_functions)."""
    if not os.path.exists(os.path.join(tracefs_root, "kprobe_events")):
        return False
    try:
        with open(os.path.join(tracefs_root, "available_filter_functions")) as f:
            names = {line.split()[0] for line in f if line.strip()}
    except OSError:
        return False
    return all(name in names for name in KPROBE_FUNCTIONS)


def fallback_tcp_io(tracefs_root):
    """Where exchanges and bytes come from when packets cannot: the
    send/receive tracepoints (6.4+), else kprobes, else nowhere (None)."""
    if io_hooks_present(tracefs_root):
        return "syscalls"
    return "kprobes" if kprobes_present(tracefs_root) else None


def choose_tcp_io(requested, groups, tracefs_root, cgroup_root):
    """("packets" or "syscalls", why): where exchanges and bytes come from.

    `auto` takes packets wherever cgroup v2 is mounted.
    """
    if requested != "auto":
        return requested, "as configured (tcp_io)"
    if not cgroup_root:
        return (fallback_tcp_io(tracefs_root) or "syscalls",
                "no cgroup2 mount to attach packet programs to")
    return "packets", f"packet programs on the cgroup2 root {cgroup_root}"


def select(groups, tracefs_root, btf=None, tcp_io="syscalls"):
    """Pick the probes named by `groups` (group or probe names) whose
    tracepoints the kernel has.

    With the kernel's BTF, probes that have a raw-tracepoint variant use it.
    `tcp_io` (packets, syscalls, kprobes) says where exchanges and bytes
    come from.
    """
    variants = {"packets": PACKET_VARIANTS, "kprobes": KPROBE_VARIANTS}.get(tcp_io, {})
    selection = Selection()
    names = {p.name for p in CATALOGUE
             if p.group == "core" or p.group in groups or p.name in groups}
    while True:  # with what they need, transitively
        more = {n for p in CATALOGUE if p.name in names for n in p.needs} - names
        if not more:
            break
        names |= more
    wanted = [variants.get(p.name, p) for p in CATALOGUE if p.name in names]
    for probe in wanted:
        absent = [tp for tp in probe.required if not tracepoint_exists(tracefs_root, tp)]
        if absent:
            selection.missing[probe.name] = absent
            continue
        selection.enabled.append(probe)
        defines = [probe.define] if probe.define else []
        defines += ["TCP_PACKETS"] if probe.packets else []
        defines += ["TCP_KPROBES"] if probe.kprobes else []
        defines += btf_defines(probe, btf)
        defines += [_have_define(tp) for tp in probe.optional
                    if tracepoint_exists(tracefs_root, tp)]
        selection.probe_defines[probe.name] = defines
    return selection
