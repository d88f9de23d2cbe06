"""The service graph rebuilt from the edge metrics in Prometheus.

For fleets where polling every agent does not scale: the agents are scraped
anyway, so the graph is a few queries over their traces_service_graph_*
series (Prometheus, Thanos, Mimir, VictoriaMetrics: anything that speaks the
query API).  Returns the JSON form of topology.export.to_json.
"""

import ipaddress
import json
import urllib.parse
import urllib.request

from taskscope.records.errors import TaskscopeError

__all__ = ["PrometheusError", "graph_from_prometheus"]

BY = "client, server, connection_type"


class PrometheusError(TaskscopeError):
    """The query API failed or answered something unexpected."""


def _query(base, promql, timeout, opener=None):
    url = f"{base.rstrip('/')}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    try:
        with (opener or urllib.request.build_opener()).open(url, timeout=timeout) as reply:
            body = json.loads(reply.read(64 << 20))
    except (OSError, ValueError) as exc:
        raise PrometheusError(f"query to {base} failed: {exc}") from exc
    if not isinstance(body, dict) or body.get("status") != "success":
        raise PrometheusError(f"{base} refused {promql!r}: {str(body)[:200]}")
    result = body.get("data", {}).get("result")
    if not isinstance(result, list):
        raise PrometheusError(f"{base}: no result list for {promql!r}")
    out = {}
    for row in result:
        try:
            labels, value = row["metric"], float(row["value"][1])
            out[(labels["client"], labels["server"], labels.get("connection_type", ""))] = value
        except (KeyError, IndexError, TypeError, ValueError):
            raise PrometheusError(f"{base}: malformed series in {promql!r}: {row!r}") from None
    return out


def _is_endpoint(name):
    """Peers no agent owns are named ip:port (see topology.graph.endpoint_name)."""
    host, sep, port = name.rpartition(":")
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return bool(sep) and port.isdigit()


def graph_from_prometheus(base, window, timeout=10.0, opener=None):
    """{"nodes", "edges"} over the last `window` seconds, from Prometheus at `base`
    (through `opener`: TLS and basic auth, when Prometheus asks for them)."""
    rng = f"[{int(max(window, 1))}s]"
    requests = _query(base, f"sum by ({BY}) (increase(traces_service_graph_request_total{rng}))",
                      timeout, opener)
    failed = _query(base, "sum by ({}) (increase(traces_service_graph_request_failed_total{}))"
                    .format(BY, rng), timeout, opener)
    quantiles = {}
    for name, q in (("p50_seconds", 0.5), ("p95_seconds", 0.95), ("p99_seconds", 0.99)):
        quantiles[name] = _query(
            base, f"histogram_quantile({q}, sum by (le, {BY}) "
                  f"(rate(traces_service_graph_request_client_seconds_bucket{rng})))", timeout,
            opener)
    nodes, edges = {}, []
    for key in sorted(requests):
        client, server, kind = key
        nodes.setdefault(client, "service")
        nodes.setdefault(server, "external" if kind == "virtual_node" or _is_endpoint(server)
                         else "service")
        edge = {"source": client, "target": server, "requests": round(requests[key]),
                "failed": round(failed.get(key, 0)), "connection_type": kind}
        for name, values in quantiles.items():
            value = values.get(key)
            edge[name] = value if value is not None and value == value else None  # NaN: none
        edges.append(edge)
    return {"nodes": [{"id": n, "kind": k} for n, k in sorted(nodes.items())], "edges": edges}
