"""The socket table of bpf/tcp.bpf.c: a direct-mapped array in front of an
LRU hash.  Built here with a single array slot, so that all sockets but one
live in the hash, their exchanges must still all be counted."""

import socket
import threading

from agent import bpf_module, btf, kernel_abi, probes, tracefs

CONNECTIONS, EXCHANGES = 6, 5
ROLE_CLIENT, ROLE_SERVER = 1, 2


def answer(conn):
    with conn:
        while conn.recv(16):
            conn.sendall(b"ok")


def test_sockets_that_find_their_slot_taken_are_tracked_all_the_same(monkeypatch):
    monkeypatch.setitem(kernel_abi.MAP_SIZES, "TCP_SOCKET_SLOTS", 1)
    selection = probes.select(["tcp_exchanges"], tracefs.find_tracefs(None), btf.load_vmlinux())
    assert "TCP_EXCHANGES_BTF" in selection.defines()
    bpf = bpf_module.import_bcc().BPF(text=bpf_module.module_text(selection.sources()),
                                      cflags=kernel_abi.cflags(selection.defines()))
    try:
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        servers = []
        with listener:
            for _ in range(CONNECTIONS):
                client = socket.create_connection(("127.0.0.1", port))
                conn, _ = listener.accept()
                servers.append(threading.Thread(target=answer, args=(conn,)))
                servers[-1].start()
                with client:
                    for _ in range(EXCHANGES):
                        client.sendall(b"ping")
                        assert client.recv(16) == b"ok"
        for t in servers:
            t.join(timeout=5)

        client_edges = [(k, v) for k, v in bpf[b"edge_stats"].items()
                        if k.role == ROLE_CLIENT and k.peer_port == port]
        assert len(client_edges) == 1
        owner = client_edges[0][0].owner
        assert client_edges[0][1].connections == CONNECTIONS
        requests = {ROLE_CLIENT: 0, ROLE_SERVER: 0}
        for k, v in bpf[b"edge_latency"].items():
            mine = (k.owner.cgroup_id, k.owner.ident) == (owner.cgroup_id, owner.ident)
            if mine and (k.peer_port == port or k.role == ROLE_SERVER):
                requests[k.role] += v.count
        assert requests == {ROLE_CLIENT: CONNECTIONS * EXCHANGES,
                            ROLE_SERVER: CONNECTIONS * EXCHANGES}
    finally:
        bpf.cleanup()
