"""The socket table of bpf/tcp/sockets.h: a direct-mapped array in front of an
LRU hash.  Built here with a single array slot, so that all sockets but one
live in the hash, their exchanges must still all be counted."""

from taskscope.agent.kernel import loader as bpf_module
from taskscope.agent.kernel import btf
from taskscope.agent import kernel_abi
from taskscope.agent.kernel import probes
from taskscope.agent.kernel import tracefs
from tests.e2e.workloads import loopback_exchanges

CONNECTIONS, EXCHANGES = 6, 5
ROLE_CLIENT, ROLE_SERVER = kernel_abi.Role.CLIENT, kernel_abi.Role.SERVER


def test_sockets_that_find_their_slot_taken_are_tracked_all_the_same(monkeypatch):
    monkeypatch.setitem(kernel_abi.MAP_SIZES, "TCP_SOCKET_SLOTS", 1)
    selection = probes.select(["tcp_exchanges"], tracefs.find_tracefs(None), btf.load_vmlinux())
    assert "TCP_EXCHANGES_BTF" in selection.defines()
    bpf = bpf_module.import_bcc().BPF(text=bpf_module.module_text(),
                                      cflags=kernel_abi.cflags(selection.defines()))
    try:
        port = loopback_exchanges(CONNECTIONS, EXCHANGES)

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
