"""Grafana's Node Graph API: the fields and the frames its panel draws.

Served as /api/graph/fields and /api/graph/data, for the "Node Graph API"
data source; arc__ fields of a node add up to 1.
"""

__all__ = ["FIELDS", "node_graph_data"]

FIELDS = {
    "nodes_fields": [
        {"field_name": "id", "type": "string"},
        {"field_name": "title", "type": "string"},
        {"field_name": "subtitle", "type": "string"},
        {"field_name": "mainstat", "type": "number", "displayName": "requests/s served"},
        {"field_name": "secondarystat", "type": "number", "displayName": "p95 served (ms)"},
        {"field_name": "arc__ok", "type": "number", "color": "green", "displayName": "ok"},
        {"field_name": "arc__failed", "type": "number", "color": "red", "displayName": "failed"},
        {"field_name": "detail__kind", "type": "string", "displayName": "kind"},
    ],
    "edges_fields": [
        {"field_name": "id", "type": "string"},
        {"field_name": "source", "type": "string"},
        {"field_name": "target", "type": "string"},
        {"field_name": "mainstat", "type": "number", "displayName": "requests/s"},
        {"field_name": "secondarystat", "type": "number", "displayName": "p95 (ms)"},
        {"field_name": "thickness", "type": "number"},
        {"field_name": "color", "type": "string"},
    ],
}


def _ms(seconds):
    return round(seconds * 1e3, 3) if seconds is not None else None


def node_graph_data(body):
    """{"nodes": [...], "edges": [...]} in the Node Graph API's field names."""
    window = body.get("window_seconds") or 1.0
    incoming = {}
    for e in body["edges"]:
        incoming.setdefault(e["target"], []).append(e)
    nodes = []
    for node in body["nodes"]:
        served = incoming.get(node["id"], [])
        requests = sum(e.get("requests") or 0 for e in served)
        failed = sum(e.get("failed") or 0 for e in served)
        p95 = max((e["p95_seconds"] for e in served if e.get("p95_seconds") is not None),
                  default=None)
        # Failed requests are among the requests; failed connects are not.
        total = requests + sum(e.get("connect_failed") or 0 for e in served)
        nodes.append({
            "id": node["id"], "title": node["id"], "subtitle": node.get("kind", "service"),
            "mainstat": round(requests / window, 3), "secondarystat": _ms(p95),
            "arc__ok": (requests / total) if total else 1.0,
            "arc__failed": (failed / total) if total else 0.0,
            "detail__kind": node.get("kind", "service"),
        })
    edges = []
    for e in body["edges"]:
        p95 = e.get("p95_seconds")
        edges.append({
            "id": f"{e['source']}->{e['target']}", "source": e["source"], "target": e["target"],
            "mainstat": round((e.get("requests") or 0) / window, 3), "secondarystat": _ms(p95),
            "thickness": max(1, min(5, (e.get("requests") or 0) // max(1, int(window)) + 1)),
            "color": "red" if p95 and p95 >= 0.5 else "orange" if p95 and p95 >= 0.1 else "green",
        })
    return {"nodes": nodes, "edges": edges}
