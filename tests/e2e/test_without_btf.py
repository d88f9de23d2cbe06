"""A kernel without BTF gets the classic-tracepoint variant of every probe.

This kernel has BTF, so the agent never builds those variants here: this
test builds them with BTF withheld, attaches them, and feeds them real
traffic, so that the fallback is known to load and to measure."""

import socket
import threading

from agent import bpf_module, kernel_abi, probes, tracefs

EXCHANGES = 5
ROLE_CLIENT = 1


def answer(conn):
    with conn:
        while conn.recv(16):
            conn.sendall(b"ok")


def test_the_classic_variants_load_and_measure():
    selection = probes.select(["sched", "blockio", "tcp"], tracefs.find_tracefs(None), btf=None)
    assert not [d for d in selection.defines() if "_BTF" in d]
    bpf = bpf_module.import_bcc().BPF(text=bpf_module.module_text(selection.sources()),
                                      cflags=kernel_abi.cflags(selection.defines()))
    try:
        assert {b"sched:sched_switch", b"sched:sched_wakeup", b"sock:sock_send_length",
                b"sock:sock_recv_length", b"tcp:tcp_probe"} <= set(bpf.tracepoint_fds)
        assert not bpf.raw_tracepoint_fds

        with socket.create_server(("127.0.0.1", 0)) as listener:
            port = listener.getsockname()[1]
            client = socket.create_connection(("127.0.0.1", port))
            conn, _ = listener.accept()
            server = threading.Thread(target=answer, args=(conn,))
            server.start()
            with client:
                for _ in range(EXCHANGES):
                    client.sendall(b"ping")
                    assert client.recv(16) == b"ok"
            server.join(timeout=5)

        exchanges = sum(v.count for k, v in bpf[b"edge_latency"].items()
                        if k.role == ROLE_CLIENT and k.peer_port == port)
        assert exchanges == EXCHANGES
        sent = sum(c.sent_bytes for _, per_cpu in bpf[b"tcp_bytes"].items() for c in per_cpu)
        assert sent >= EXCHANGES * 6  # "ping" and "ok" on both ends
        # The server thread slept and was woken on every exchange.
        assert len(bpf[b"runqueue_latency"]) > 0
    finally:
        bpf.cleanup()
