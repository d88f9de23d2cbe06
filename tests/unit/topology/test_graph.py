import ipaddress

from taskscope.records.edges import CLIENT, SERVER, EdgeSide, pack_reading, since
from taskscope.records.histogram import Log2Histogram
from taskscope.topology.graph import build_graph
from taskscope.topology.graph_json import to_json

IP = ipaddress.ip_address


def hist(slot, count, each_ns):
    h = Log2Histogram()
    h.add(slot, count, count * each_ns)
    return h


def side(service, role, local, peer, port, latency, key, **counts):
    return EdgeSide(service, role, IP(local), IP(peer), port, latency, key=key, **counts)


ENDPOINTS = {(IP("10.0.0.2"), 8080): "orders", (IP("10.0.0.3"), 9000): "payment"}


def shop_sides():
    return [
        side("gateway", CLIENT, "10.0.0.1", "10.0.0.2", 8080, hist(24, 30, 20_000_000), b"1",
             connections=1, sent_bytes=120, received_bytes=90),
        side("orders", SERVER, "10.0.0.2", "10.0.0.1", 0, hist(24, 30, 19_000_000), b"2",
             connections=1, sent_bytes=90, received_bytes=120),
        side("orders", CLIENT, "10.0.0.2", "10.0.0.3", 9000, hist(25, 30, 40_000_000), b"3"),
        side("payment", SERVER, "10.0.0.3", "10.0.0.2", 0, hist(25, 30, 39_000_000), b"4"),
        side("orders", CLIENT, "10.0.0.2", "192.0.2.9", 443, hist(27, 5, 150_000_000), b"5"),
        side("cron", SERVER, "10.0.0.3", "198.51.100.7", 0, hist(20, 2, 1_000_000), b"6"),
    ]


def test_edges_are_joined_across_the_two_sides():
    graph = build_graph(shop_sides(), lambda ip, port: ENDPOINTS.get((ip, port)))
    assert set(graph.edges) == {("gateway", "orders"), ("orders", "payment"),
                                ("orders", "192.0.2.9:443"), ("external", "cron")}
    edge = graph.edges["orders", "payment"]
    assert edge["requests"] == 30 and edge["p50_seconds"] == 0.04
    assert edge["server_latency"].count == 30
    first = graph.edges["gateway", "orders"]
    assert (first["connections"], first["sent_bytes"], first["received_bytes"]) == (1, 120, 90)
    assert graph.nodes["192.0.2.9:443"]["kind"] == "external"
    # Without a client side, the server side's view stands in.
    assert graph.edges["external", "cron"]["p50_seconds"] == 0.001


def test_json_lists_every_node_and_edge_with_the_documented_fields():
    body = to_json(build_graph(shop_sides(), lambda ip, port: ENDPOINTS.get((ip, port))))
    assert {n["id"] for n in body["nodes"]} == {
        "gateway", "orders", "payment", "cron", "192.0.2.9:443", "external"}
    for edge in body["edges"]:
        assert {"source", "target", "requests", "p50_seconds", "p95_seconds",
                "p99_seconds", "connections", "sent_bytes", "received_bytes"} <= set(edge)


def test_a_window_keeps_only_what_happened_in_it():
    before = shop_sides()
    after = shop_sides()
    after[0].latency.add(24, 10, 10 * 20_000_000)       # 10 more gateway requests
    after[0].sent_bytes += 40
    window = since(after, pack_reading(before))
    assert [(s.service, s.latency.count, s.sent_bytes) for s in window] == [("gateway", 10, 40)]
    assert since(after, {}) == after


def test_failed_is_failed_connects_plus_failed_requests_of_the_client_side():
    sides = [
        side("gateway", CLIENT, "10.0.0.1", "10.0.0.2", 8080, hist(24, 30, 20_000_000), b"1",
             failed=2, failed_requests=6),
        # The server saw the same 6 (and cannot see the connects that failed).
        side("orders", SERVER, "10.0.0.2", "10.0.0.1", 0, hist(24, 30, 19_000_000), b"2",
             failed_requests=6),
        side("orders", SERVER, "10.0.0.2", "198.51.100.7", 0, hist(20, 4, 1_000_000), b"3",
             failed_requests=1),
    ]
    graph = build_graph(sides, lambda ip, port: ENDPOINTS.get((ip, port)))
    edge = graph.edges["gateway", "orders"]
    assert (edge["requests"], edge["connect_failed"], edge["failed_requests"],
            edge["failed"]) == (30, 2, 6, 8)
    assert graph.edges["external", "orders"]["failed"] == 1
    body = to_json(graph)
    assert {(e["source"], e["failed"], e["failed_requests"]) for e in body["edges"]} == {
        ("gateway", 8, 6), ("external", 1, 1)}


def test_a_window_subtracts_failed_requests_too():
    before = side("gateway", CLIENT, "10.0.0.1", "10.0.0.2", 8080, hist(24, 10, 1), b"1",
                  failed_requests=3)
    after = side("gateway", CLIENT, "10.0.0.1", "10.0.0.2", 8080, hist(24, 30, 1), b"1",
                 failed_requests=7)
    (delta,) = since([after], pack_reading([before]))
    assert (delta.latency.count, delta.failed_requests) == (20, 4)


def test_callers_no_agent_owns_fold_into_external_buckets_unless_asked_not_to():
    sides = [side("web", SERVER, "10.0.0.2", f"203.0.113.{i}", 0, hist(20, 1, 1000), bytes([i]))
             for i in range(50)]
    sides.append(side("web", SERVER, "10.0.0.2", "198.51.100.9", 0, hist(20, 1, 1000), b"x"))
    folded = build_graph(sides, lambda ip, port: None,
                         external_networks=[ipaddress.ip_network("203.0.113.0/24")])
    assert set(folded.edges) == {("external:203.0.113.0/24", "web"), ("external", "web")}
    assert folded.edges["external:203.0.113.0/24", "web"]["requests"] == 50
    each = build_graph(sides, lambda ip, port: None, external_peers="per-address")
    assert each.number_of_edges() == 51


def test_past_the_edge_cap_the_quietest_edges_are_left_out_and_counted():
    sides = [side(f"svc{i}", CLIENT, "10.0.0.1", "10.0.0.2", 80, hist(20, i + 1, 1000),
                  bytes([i])) for i in range(10)]
    graph = build_graph(sides, lambda ip, port: "db", max_edges=3)
    assert set(graph.edges) == {("svc9", "db"), ("svc8", "db"), ("svc7", "db")}
    assert graph.graph["edges_dropped"] == 7 and "svc0" not in graph
