"""Builds the service graph from the two sides of every connection
(taskscope.records.edges.EdgeSide).

A client side names its server through the
table of local listeners; a server side is joined to the one client service
that called it from that address, else it hangs off a node named by the ip.
"""

import ipaddress

import networkx as nx

from taskscope.records.edges import CLIENT, SERVER
from taskscope.records.histogram import Log2Histogram

__all__ = ["build_graph", "endpoint_name", "EXTERNAL", "EXTERNAL_PEERS", "MAX_EDGES"]

# Callers no agent owns: on an internet-facing node every client address
# would become a node and a set of series.  "aggregate" (the default) folds
# them into one node per configured network (`external_networks`), else into
# EXTERNAL; "per-address" names each by its address.
EXTERNAL = "external"
EXTERNAL_PEERS = ("aggregate", "per-address")
# Edges kept in one graph; beyond, the quietest are left out and counted in
# graph.graph["edges_dropped"].
MAX_EDGES = 5000

QUANTILES = {"p50_seconds": 0.5, "p95_seconds": 0.95, "p99_seconds": 0.99}


def endpoint_name(ip, port=None):
    """ip[:port], IPv4 shown plainly even when held as v4-mapped IPv6."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    text = f"[{ip}]" if ip.version == 6 and port else str(ip)
    return f"{text}:{port}" if port else text


def _plain(ip):
    """IPv4 as itself, not v4-mapped: how segments name their peers."""
    return ip.ipv4_mapped or ip if ip.version == 6 else ip


def _edge(graph, source, target, source_kind, target_kind):
    for node, kind in ((source, source_kind), (target, target_kind)):
        if node not in graph:
            graph.add_node(node, kind=kind)
    if not graph.has_edge(source, target):
        graph.add_edge(source, target, client_latency=Log2Histogram(),
                       server_latency=Log2Histogram(), connections=0, connect_failed=0,
                       failed_requests=0, client_addresses=set(),
                       sent_bytes=0, received_bytes=0, sides=set(), server_ports=set())
    return graph.edges[source, target]


def _caller_name(ip, external_peers, networks):
    if external_peers == "per-address":
        return endpoint_name(ip)
    plain = ip.ipv4_mapped or ip if ip.version == 6 else ip
    for net in networks:
        if plain.version == net.version and plain in net:
            return f"{EXTERNAL}:{net}"
    return EXTERNAL


def build_graph(sides, endpoint_service, external_peers="aggregate", external_networks=(),
                max_edges=MAX_EDGES):
    """nx.DiGraph client -> server from EdgeSides.

    `endpoint_service(ip, port)` names the local service listening there, or
    None for a peer no agent owns (it becomes an `external` node ip:port).
    Callers no agent owns fold as `external_peers` says (see EXTERNAL);
    past `max_edges` the quietest edges are left out and counted.
    Edges carry requests, failed (= connect_failed, connects that never
    became requests, + failed_requests, requests that failed), connections,
    bytes and p50/p95/p99 seconds (client side when known, else server
    side).  O(sides).
    """
    graph = nx.DiGraph()
    callers = {}  # (client address, server service) -> client services
    for side in (s for s in sides if s.role == CLIENT):
        server = endpoint_service(side.peer, side.peer_port)
        kind = "service"
        if server is None:
            server, kind = endpoint_name(side.peer, side.peer_port), "external"
        edge = _edge(graph, side.service, server, "service", kind)
        edge["client_latency"].merge(side.latency)
        edge["server_ports"].add(side.peer_port)
        edge["client_addresses"].add(_plain(side.local))
        _add_counts(edge, side, CLIENT)
        callers.setdefault((side.local, server), set()).add(side.service)
    for side in (s for s in sides if s.role == SERVER):
        found = callers.get((side.peer, side.service), set())
        client, kind = (next(iter(found)), "service") if len(found) == 1 else (
            _caller_name(side.peer, external_peers, external_networks), "external")
        edge = _edge(graph, client, side.service, kind, "service")
        edge["server_latency"].merge(side.latency)
        edge["client_addresses"].add(_plain(side.peer))
        if CLIENT not in edge["sides"]:
            _add_counts(edge, side, SERVER)
    for _, _, edge in graph.edges(data=True):
        _finish(edge)
    graph.graph["edges_dropped"] = 0
    if graph.number_of_edges() > max_edges:
        ranked = sorted(graph.edges(data=True), key=lambda e: e[2]["requests"], reverse=True)
        graph.remove_edges_from([(a, b) for a, b, _ in ranked[max_edges:]])
        graph.remove_nodes_from([n for n in list(graph.nodes) if graph.degree(n) == 0])
        graph.graph["edges_dropped"] = len(ranked) - max_edges
    return graph


def _add_counts(edge, side, role):
    edge["sides"].add(role)
    edge["connections"] += side.connections
    edge["connect_failed"] += side.failed
    edge["failed_requests"] += side.failed_requests
    # Bytes as the client sees them: a server's received bytes were sent.
    sent, received = ((side.sent_bytes, side.received_bytes) if role == CLIENT
                      else (side.received_bytes, side.sent_bytes))
    edge["sent_bytes"] += sent
    edge["received_bytes"] += received


def _finish(edge):
    observed = edge["client_latency"] if edge["client_latency"].count else edge["server_latency"]
    edge["requests"] = observed.count
    edge["failed"] = edge["connect_failed"] + edge["failed_requests"]
    for name, q in QUANTILES.items():
        edge[name] = observed.quantile(q)
