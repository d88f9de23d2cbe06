"""Renderings of the service graph."""

__all__ = ["to_json"]

EDGE_FIELDS = ("requests", "failed", "failed_requests", "connect_failed", "connections",
               "sent_bytes", "received_bytes", "p50_seconds", "p95_seconds", "p99_seconds")


def to_json(graph):
    """{"nodes": [...], "edges": [...]} as /api/graph serves it."""
    nodes = [{"id": node, "kind": data.get("kind", "service")}
             for node, data in sorted(graph.nodes(data=True))]
    edges = []
    for source, target, data in sorted(graph.edges(data=True)):
        edge = {"source": source, "target": target}
        edge.update({k: data.get(k) for k in EDGE_FIELDS})
        edge["client_requests"] = data["client_latency"].count
        edge["server_requests"] = data["server_latency"].count
        edges.append(edge)
    return {"nodes": nodes, "edges": edges}
