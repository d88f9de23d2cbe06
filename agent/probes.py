"""The probe catalogue: which C source and tracepoints each probe needs.

A probe whose required tracepoints are missing is left out of the BPF module
and reported down; optional tracepoints become HAVE_<CATEGORY>_<EVENT>
defines so the C can pick a fallback.
"""

from dataclasses import dataclass, field

from agent.tracefs import tracepoint_exists

GROUPS = ("sched", "blockio", "tcp")


@dataclass(frozen=True)
class Probe:
    name: str
    group: str
    source: str
    required: tuple = ()
    optional: tuple = ()
    define: str = ""


CATALOGUE = (
    # Identity is the core every other probe charges samples to; without its
    # tracepoints processes are still named, by comm, on first sight.
    Probe(
        "identity", "core", "identity.bpf.c",
        optional=("syscalls:sys_enter_execve", "syscalls:sys_enter_execveat",
                  "sched:sched_process_exec", "sched:sched_process_fork",
                  "sched:sched_process_exit"),
    ),
    Probe("runqueue", "sched", "runqueue.bpf.c",
          required=("sched:sched_wakeup", "sched:sched_wakeup_new", "sched:sched_switch")),
    Probe("blockio", "blockio", "blockio.bpf.c",
          required=("block:block_rq_issue", "block:block_rq_complete"),
          optional=("block:block_io_start", "block:block_rq_insert")),
    Probe("tcp_connect", "tcp", "tcp.bpf.c",
          required=("sock:inet_sock_set_state",), define="TCP_CONNECT"),
    # RTT samples arrive in softirq context: without the socket owners that
    # inet_sock_set_state records, they could not be attributed.
    Probe("tcp_rtt", "tcp", "tcp.bpf.c",
          required=("sock:inet_sock_set_state", "tcp:tcp_probe"), define="TCP_RTT"),
    Probe("tcp_retransmit", "tcp", "tcp.bpf.c",
          required=("tcp:tcp_retransmit_skb",), define="TCP_RETRANSMIT"),
    Probe("tcp_bytes", "tcp", "tcp.bpf.c",
          required=("sock:sock_send_length", "sock:sock_recv_length"), define="TCP_BYTES"),
)


@dataclass
class Selection:
    """What will be loaded, and why the rest will not."""

    enabled: list = field(default_factory=list)
    missing: dict = field(default_factory=dict)  # probe name -> missing tracepoints
    defines: list = field(default_factory=list)

    def sources(self):
        """C files to compile, each once, in catalogue order."""
        return list(dict.fromkeys(p.source for p in self.enabled))


def _have_define(tracepoint):
    return "HAVE_" + tracepoint.replace(":", "_").upper()


def select(groups, tracefs_root):
    """Pick the probes of `groups` whose tracepoints the kernel has."""
    selection = Selection()
    wanted = [p for p in CATALOGUE if p.group == "core" or p.group in groups]
    for probe in wanted:
        absent = [tp for tp in probe.required if not tracepoint_exists(tracefs_root, tp)]
        if absent:
            selection.missing[probe.name] = absent
            continue
        selection.enabled.append(probe)
        if probe.define:
            selection.defines.append(probe.define)
        selection.defines += [
            _have_define(tp) for tp in probe.optional if tracepoint_exists(tracefs_root, tp)
        ]
    selection.defines = list(dict.fromkeys(selection.defines))
    return selection
