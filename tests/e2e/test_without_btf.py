"""A kernel without BTF gets the classic-tracepoint variant of every probe.

This kernel has BTF, so the agent never builds those variants here: this
test builds them with BTF withheld, attaches them, and feeds them real
traffic, so that the fallback is known to load and to measure."""

from taskscope.agent.kernel import loader as bpf_module
from taskscope.agent import kernel_abi
from taskscope.agent.kernel import probes
from taskscope.agent.kernel import tracefs
from tests.e2e.workloads import loopback_exchanges

EXCHANGES = 5
ROLE_CLIENT = 1


def test_the_classic_variants_load_and_measure():
    selection = probes.select(["sched", "blockio", "tcp"], tracefs.find_tracefs(None), btf=None)
    assert not [d for d in selection.defines() if "_BTF" in d]
    bpf = bpf_module.import_bcc().BPF(text=bpf_module.module_text(),
                                      cflags=kernel_abi.cflags(selection.defines()))
    try:
        assert {b"sched:sched_switch", b"sched:sched_wakeup", b"sock:sock_send_length",
                b"sock:sock_recv_length", b"tcp:tcp_probe"} <= set(bpf.tracepoint_fds)
        assert not bpf.raw_tracepoint_fds

        port = loopback_exchanges(1, EXCHANGES)

        exchanges = sum(v.count for k, v in bpf[b"edge_latency"].items()
                        if k.role == ROLE_CLIENT and k.peer_port == port)
        assert exchanges == EXCHANGES
        sent = sum(c.sent_bytes for _, per_cpu in bpf[b"tcp_bytes"].items() for c in per_cpu)
        assert sent >= EXCHANGES * 6  # "ping" and "ok" on both ends
        # The server thread slept and was woken on every exchange.
        assert len(bpf[b"runqueue_latency"]) > 0
    finally:
        bpf.cleanup()
