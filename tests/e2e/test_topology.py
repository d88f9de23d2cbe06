"""The service graph of a small shop: gateway -> orders -> payment."""

import json
import subprocess
import time

import pytest

from tests.e2e.agent_process import Agent, value
from tests.e2e.workloads import LINE_SERVER, PAYMENT_DELAY, run_named, sh

REQUESTS = 30

def graph_edges(agent):
    status, content_type, body = agent.get("/api/graph")
    assert status == 200 and content_type == "application/json"
    graph = json.loads(body)
    return graph, {(e["source"], e["target"]): e for e in graph["edges"]}


def test_shop_edges_counts_and_latency(agent, shop):
    ip, port = shop["orders"]
    _, before = graph_edges(agent)
    run_named("gateway", f"""
        import socket
        f = socket.create_connection(({ip!r}, {port}), timeout=10).makefile("rwb", buffering=0)
        for _ in range({REQUESTS}):
            f.write(b"req\\n")
            assert f.readline() == b"ok\\n"
    """)
    time.sleep(0.5)  # the last exchange is closed when the connections close
    graph, after = graph_edges(agent)
    ours = {"gateway", "orders", "payment", "cart-cache"}
    edges = {k: e for k, e in after.items() if set(k) & ours}
    assert set(edges) == {("gateway", "orders"), ("orders", "payment"),
                          ("orders", "cart-cache")}, graph["edges"]

    def delta(edge, field):
        return edges[edge][field] - before.get(edge, {}).get(field, 0)

    to_orders, to_payment = edges["gateway", "orders"], edges["orders", "payment"]
    for edge in (("gateway", "orders"), ("orders", "payment"), ("orders", "cart-cache")):
        assert abs(delta(edge, "requests") - REQUESTS) <= 0.05 * REQUESTS, edges[edge]
        assert delta(edge, "server_requests") == delta(edge, "requests")
        assert delta(edge, "connections") == 1
    assert abs(to_payment["p50_seconds"] - PAYMENT_DELAY) <= 0.2 * PAYMENT_DELAY, to_payment
    # gateway waits for orders, which waits for payment: the client sees both.
    assert to_orders["p50_seconds"] > to_payment["p50_seconds"]
    assert delta(("gateway", "orders"), "sent_bytes") == 4 * REQUESTS
    assert delta(("gateway", "orders"), "received_bytes") == 3 * REQUESTS
    kinds = {n["id"]: n["kind"] for n in graph["nodes"]}
    assert all(kinds[s] == "service" for s in ours)

    # The same edges in Tempo's service-graph metrics, for Grafana's service map.
    samples = agent.scrape()
    edge = {"client": "orders", "server": "payment", "connection_type": ""}
    assert value(samples, "traces_service_graph_request_total", **edge) >= REQUESTS
    assert value(samples, "traces_service_graph_request_server_seconds_count", **edge) >= REQUESTS
    assert value(samples, "traces_service_graph_request_client_seconds_count", **edge) >= REQUESTS
    cache = {"client": "orders", "server": "cart-cache", "connection_type": "database"}
    assert value(samples, "traces_service_graph_request_total", **cache) >= REQUESTS


def test_bad_window_is_a_clear_400(agent):
    import urllib.error
    with pytest.raises(urllib.error.HTTPError) as err:
        agent.get("/api/graph?window=soon")
    assert err.value.code == 400
    assert b"not a duration like 60s" in err.value.read()


def test_connections_opened_before_the_agent_still_appear(shop, tmp_path):
    ip, port = shop["orders"]
    client = run_named("early-gateway", f"""
        import socket, sys
        f = socket.create_connection(({ip!r}, {port}), timeout=10).makefile("rwb", buffering=0)
        f.write(b"req\\n")
        f.readline()
        print("connected", flush=True)
        for line in sys.stdin:
            f.write(b"req\\n")
            f.readline()
        print("done", flush=True)
    """, wait=False, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert client.stdout.readline().strip() == "connected"
        late = Agent("--probes", "tcp", log_path=tmp_path / "agent.log")
        try:
            client.stdin.write("go\n" * 10)
            client.stdin.close()
            assert client.stdout.readline().strip() == "done"
            client.wait(timeout=10)
            time.sleep(0.5)
            _, edges = graph_edges(late)
        finally:
            late.stop()
    finally:
        client.kill()
    assert edges[("early-gateway", "orders")]["client_requests"] == 10, edges
    assert edges[("early-gateway", "orders")]["server_requests"] >= 9, edges
    # orders -> payment was opened before the agent too, by the first request.
    assert edges[("orders", "payment")]["requests"] >= 9, edges


VIRTUAL_IP, VIRTUAL_PORT = "198.18.100.1", 80


@pytest.fixture
def virtual_ip(shop, netns_pair):
    """VIRTUAL_IP:80 DNATed (iptables, nat OUTPUT) to orders, as kube-proxy does.

    The virtual IP is routed over the veth, so nothing for it ever leaves
    the machine and the source address is one the namespace can answer.
    """
    ip, port = shop["orders"]
    route = [f"{VIRTUAL_IP}/32", "dev", "ts-e2e-h", "src", netns_pair["client_ip"]]
    rule = ["-p", "tcp", "-d", VIRTUAL_IP, "--dport", str(VIRTUAL_PORT), "-j", "DNAT",
            "--to-destination", f"{ip}:{port}"]
    sh("ip", "route", "add", *route)
    sh("iptables", "-t", "nat", "-A", "OUTPUT", *rule)
    yield VIRTUAL_IP, VIRTUAL_PORT
    sh("iptables", "-t", "nat", "-D", "OUTPUT", *rule, check=False)
    sh("ip", "route", "del", *route, check=False)


def test_a_dnat_virtual_ip_is_resolved_to_the_backend_service(agent, virtual_ip):
    ip, port = virtual_ip
    run_named("vip-client", f"""
        import socket
        f = socket.create_connection(({ip!r}, {port}), timeout=5).makefile("rwb", buffering=0)
        for _ in range(5):
            f.write(b"req\\n")
            assert f.readline() == b"ok\\n"
    """)
    time.sleep(0.5)
    _, edges = graph_edges(agent)
    assert ("vip-client", "orders") in edges, [k for k in edges if k[0] == "vip-client"]
    assert edges["vip-client", "orders"]["client_requests"] == 5
    assert not [k for k in edges if k[1] == f"{ip}:{port}"]


THREE_VIP = "198.18.100.3"
BACKENDS = 3


@pytest.fixture
def three_backends():
    """THREE_VIP:80 DNATed in turn (iptables nth, as kube-proxy spreads a
    ClusterIP) to three line servers, each in its own network namespace
    behind its own veth pair (198.18.20{i}.0/30)."""
    procs, rules = [], []
    for i in range(BACKENDS):
        ns, host, peer = f"ts-vip-b{i}", f"ts-vip-h{i}", f"ts-vip-p{i}"
        sh("ip", "netns", "del", ns, check=False)
        sh("ip", "link", "del", host, check=False)
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", host, "type", "veth", "peer", "name", peer)
        sh("ip", "link", "set", peer, "netns", ns)
        sh("ip", "addr", "add", f"198.18.20{i}.1/30", "dev", host)
        sh("ip", "link", "set", host, "up")
        sh("ip", "-n", ns, "addr", "add", f"198.18.20{i}.2/30", "dev", peer)
        sh("ip", "-n", ns, "link", "set", peer, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "route", "add", "default", "via", f"198.18.20{i}.1")
        proc = run_named(f"stock-{i}", LINE_SERVER, f"198.18.20{i}.2", 9300, netns=ns, wait=False,
                         stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "listening"
        procs.append(proc)
    route = [f"{THREE_VIP}/32", "dev", "ts-vip-h0", "src", "198.18.200.1"]
    sh("ip", "route", "add", *route)
    for i in range(BACKENDS):
        # Rule i takes every (3 - i)th connection that reaches it: 1/3 each.
        every = ["-m", "statistic", "--mode", "nth", "--every", str(BACKENDS - i),
                 "--packet", "0"] if i < BACKENDS - 1 else []
        rule = ["-p", "tcp", "-d", THREE_VIP, "--dport", "80", *every, "-j", "DNAT",
                "--to-destination", f"198.18.20{i}.2:9300"]
        sh("iptables", "-t", "nat", "-A", "OUTPUT", *rule)
        rules.append(rule)
    yield THREE_VIP, 80
    for rule in rules:
        sh("iptables", "-t", "nat", "-D", "OUTPUT", *rule, check=False)
    sh("ip", "route", "del", *route, check=False)
    for i, proc in enumerate(procs):
        proc.kill()
        proc.wait()
        sh("ip", "link", "del", f"ts-vip-h{i}", check=False)
        sh("ip", "netns", "del", f"ts-vip-b{i}", check=False)


VIP_CLIENT = """
import socket, sys
ip, port, connections, each = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for _ in range(connections):
    f = socket.create_connection((ip, port), timeout=5).makefile("rwb", buffering=0)
    for _ in range(each):
        f.write(b"req\\n")
        assert f.readline() == b"ok\\n"
    f.close()
"""


def test_each_connection_to_a_virtual_ip_lands_on_the_backend_that_served_it(agent,
                                                                           three_backends):
    ip, port = three_backends
    # conntrack shows the virtual IP once a connection has used it; the agent
    # reads conntrack at least every 5 s when asked for the graph.
    run_named("vip-spread", VIP_CLIENT, ip, port, 1, 0)
    time.sleep(5.5)
    graph_edges(agent)
    run_named("vip-spread", VIP_CLIENT, ip, port, 30, 10)
    time.sleep(1.2)
    _, edges = graph_edges(agent)
    counts = {i: edges.get(("vip-spread", f"stock-{i}"), {}).get("client_requests")
              for i in range(BACKENDS)}
    assert counts == {i: 100 for i in range(BACKENDS)}, agent.get("/api/graph/sides")[2]
    assert not [k for k in edges if k[1].startswith(ip)]
    # Closed connections' series are folded into one per backend at the
    # recorder's next reading (every 10 s): counts stay, series go.
    deadline = time.monotonic() + 25
    while True:
        _, _, body = agent.get("/api/graph/sides")
        mine = [s for s in json.loads(body)["sides"]
                if s["service"] == "vip-spread" and s["role"] == "client"]
        if len(mine) <= BACKENDS + 1 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert len(mine) <= BACKENDS + 1, len(mine)  # + the first connection's, by its virtual IP
    _, edges = graph_edges(agent)
    assert {i: edges[("vip-spread", f"stock-{i}")]["client_requests"]
            for i in range(BACKENDS)} == {i: 100 for i in range(BACKENDS)}


def test_idle_edges_expire_from_the_kernel_maps(shop, tmp_path):
    ip, port = shop["orders"]
    short = Agent("--probes", "tcp", "--graph-expiry", "1s", log_path=tmp_path / "agent.log")
    try:
        run_named("brief-gateway", f"""
            import socket
            f = socket.create_connection(({ip!r}, {port}), timeout=10).makefile("rwb", buffering=0)
            f.write(b"req\\n")
            f.readline()
        """)
        time.sleep(0.5)
        _, edges = graph_edges(short)
        assert ("brief-gateway", "orders") in edges
        # Readings come every 10 s: by the third the edge has been idle > 1 s.
        deadline = time.monotonic() + 35
        while time.monotonic() < deadline and "forgot" not in short.log():
            time.sleep(1)
        _, edges = graph_edges(short)
    finally:
        short.stop()
    assert ("brief-gateway", "orders") not in edges
