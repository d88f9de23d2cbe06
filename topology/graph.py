"""Builds the service graph from the two sides of every connection.

Each agent reports client sides (a service called ip:port) and server sides
(a service was called from ip).  A client side names its server through the
table of local listeners; a server side is joined to the one client service
that called it from that address, else it hangs off a node named by the ip.
"""

import ipaddress
from dataclasses import dataclass, field

import networkx as nx

from agent.histogram import Log2Histogram

__all__ = ["EdgeSide", "build_graph", "since", "v4_mapped", "CLIENT", "SERVER"]

CLIENT, SERVER = "client", "server"
QUANTILES = {"p50_seconds": 0.5, "p95_seconds": 0.95, "p99_seconds": 0.99}


@dataclass
class EdgeSide:
    service: str
    role: str                 # CLIENT or SERVER
    local: object             # ipaddress of this end
    peer: object              # ipaddress of the other end
    peer_port: int            # server port on a client side, 0 on a server side
    latency: Log2Histogram = field(default_factory=Log2Histogram)
    connections: int = 0
    failed: int = 0
    sent_bytes: int = 0
    received_bytes: int = 0
    key: bytes = b""          # identity of the series across readings

    def minus(self, earlier):
        """This side's activity since `earlier`, a previous reading of it."""
        return EdgeSide(self.service, self.role, self.local, self.peer, self.peer_port,
                        self.latency.minus(earlier.latency),
                        self.connections - earlier.connections, self.failed - earlier.failed,
                        self.sent_bytes - earlier.sent_bytes,
                        self.received_bytes - earlier.received_bytes, self.key)

    @property
    def active(self):
        return bool(self.latency.count or self.connections or self.failed
                    or self.sent_bytes or self.received_bytes)


def since(current, earlier):
    """Sides active between two readings (cumulative counters), as deltas.

    A side absent from `earlier` counts from zero; one with no activity in
    between is left out, which is how idle edges expire from a window.
    """
    before = {side.key: side for side in earlier}
    out = []
    for side in current:
        delta = side.minus(before[side.key]) if side.key in before else side
        if delta.active:
            out.append(delta)
    return out


def v4_mapped(ip):
    """IPv4 as ::ffff:a.b.c.d, the form the kernel side keys every address in."""
    if ip.version == 4:
        return ipaddress.ip_address(b"\0" * 10 + b"\xff\xff" + ip.packed)
    return ip


def endpoint_name(ip, port=None):
    """ip[:port], IPv4 shown plainly even when held as v4-mapped IPv6."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    text = f"[{ip}]" if ip.version == 6 and port else str(ip)
    return f"{text}:{port}" if port else text


def _edge(graph, source, target, source_kind, target_kind):
    for node, kind in ((source, source_kind), (target, target_kind)):
        if node not in graph:
            graph.add_node(node, kind=kind)
    if not graph.has_edge(source, target):
        graph.add_edge(source, target, client_latency=Log2Histogram(),
                       server_latency=Log2Histogram(), connections=0, failed=0,
                       sent_bytes=0, received_bytes=0, sides=set(), server_ports=set())
    return graph.edges[source, target]


def build_graph(sides, endpoint_service):
    """nx.DiGraph client -> server from EdgeSides.

    `endpoint_service(ip, port)` names the local service listening there, or
    None for a peer no agent owns (it becomes an `external` node ip:port).
    Edges carry requests, failed, connections, bytes and p50/p95/p99 seconds
    (client side when known, else server side).  O(sides).
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
        _add_counts(edge, side, CLIENT)
        callers.setdefault((side.local, server), set()).add(side.service)
    for side in (s for s in sides if s.role == SERVER):
        found = callers.get((side.peer, side.service), set())
        client, kind = (next(iter(found)), "service") if len(found) == 1 else (
            endpoint_name(side.peer), "external")
        edge = _edge(graph, client, side.service, kind, "service")
        edge["server_latency"].merge(side.latency)
        if CLIENT not in edge["sides"]:
            _add_counts(edge, side, SERVER)
    for _, _, edge in graph.edges(data=True):
        _finish(edge)
    return graph


def _add_counts(edge, side, role):
    edge["sides"].add(role)
    edge["connections"] += side.connections
    edge["failed"] += side.failed
    # Bytes as the client sees them: a server's received bytes were sent.
    sent, received = ((side.sent_bytes, side.received_bytes) if role == CLIENT
                      else (side.received_bytes, side.sent_bytes))
    edge["sent_bytes"] += sent
    edge["received_bytes"] += received


def _finish(edge):
    observed = edge["client_latency"] if edge["client_latency"].count else edge["server_latency"]
    edge["requests"] = observed.count
    for name, q in QUANTILES.items():
        edge[name] = observed.quantile(q)
