"""Service-graph edges as the metrics Grafana's service map already reads.

Names and labels follow Tempo's metrics-generator contract
(traces_service_graph_*; client, server, connection_type), so dashboards
built for Tempo work unchanged.  Values are cumulative since the agent
started: the graph is rebuilt from the kernel maps on every scrape.
"""

import logging

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from taskscope.exporters.exemplars import server_exemplar_buckets
from taskscope.exporters.labels import LabelBudget
from taskscope.records.histogram import Log2Histogram

log = logging.getLogger(__name__)

# Ports that name a database or cache well enough to say so on the edge.
DATABASE_PORTS = {1433, 1521, 3306, 5432, 6379, 9042, 11211, 27017}


def connection_type(graph, client, server):
    """database (a well-known database or cache port), virtual_node (a peer no
    agent owns) or "" (a service calling a service)."""
    if graph.edges[client, server]["server_ports"] & DATABASE_PORTS:
        return "database"
    return "virtual_node" if graph.nodes[server].get("kind") == "external" else ""


class GraphMetrics:
    """A prometheus_client custom collector over a service graph:
    `graph_of()` returns the nx.DiGraph of topology.graph.build_graph."""

    def __init__(self, graph_of, trace_store=None, conntrack_readable=None, max_services=500):
        self._graph_of = graph_of
        self._trace_store = trace_store
        self._conntrack_readable = conntrack_readable
        # Client and server names are services too: the same budget as the
        # per-service metrics, each name admitted once for both labels.
        self._budget = LabelBudget(max_services)

    def describe(self):
        return []

    def collect(self):
        labels = ["client", "server", "connection_type"]
        requests = CounterMetricFamily("traces_service_graph_request",
                                       "Requests (request/response exchanges) from client to "
                                       "server service.", labels=labels)
        failed = CounterMetricFamily("traces_service_graph_request_failed",
                                     "Failed requests: HTTP 5xx responses, exchanges "
                                     "aborted midway, connects refused or timed out.",
                                     labels=labels)
        client = HistogramMetricFamily("traces_service_graph_request_client_seconds",
                                       "Request latency as the client saw it.", labels=labels)
        server = HistogramMetricFamily("traces_service_graph_request_server_seconds",
                                       "Request latency as the server saw it.", labels=labels)
        dropped = 0
        try:
            graph = self._graph_of()
            dropped = graph.graph.get("edges_dropped", 0)
            merged = {}
            for source, target, edge in sorted(graph.edges(data=True)):
                values = (self._budget.label(source), self._budget.label(target),
                          connection_type(graph, source, target))
                into = merged.setdefault(values, {"requests": 0, "failed": 0, "edges": []})
                into["requests"] += edge["requests"]
                into["failed"] += edge["failed"]
                into["edges"].append((target, edge))
            for values, into in merged.items():
                requests.add_metric(list(values), into["requests"])
                failed.add_metric(list(values), into["failed"])
                client_hist, server_hist = Log2Histogram(), Log2Histogram()
                addresses = set()
                for target, edge in into["edges"]:
                    client_hist.merge(edge["client_latency"])
                    server_hist.merge(edge["server_latency"])
                    addresses |= edge["client_addresses"]
                if client_hist.count:
                    client.add_metric(list(values), client_hist.buckets(), client_hist.sum_ns / 1e9)
                if server_hist.count:
                    target = into["edges"][0][0] if len(into["edges"]) == 1 else None
                    buckets = server_exemplar_buckets(self._trace_store, target, addresses,
                                                      server_hist.buckets()) \
                        if target else server_hist.buckets()
                    server.add_metric(list(values), buckets, server_hist.sum_ns / 1e9)
        except Exception:  # the scrape path never raises
            log.exception("building the service graph for /metrics failed")
        yield from (requests, failed, client, server)
        yield GaugeMetricFamily("taskscope_graph_edges_dropped",
                                "Edges left out of the service graph past its cap (the "
                                "quietest first).", value=dropped)
        yield GaugeMetricFamily("taskscope_graph_services_folded",
                                "Client or server names folded into \"other\" in "
                                "traces_service_graph_* by the label budget.",
                                value=self._budget.folded)
        if self._conntrack_readable is not None:
            yield GaugeMetricFamily(
                "taskscope_conntrack_readable",
                "1 when the last read of conntrack worked; 0: connections to virtual IPs "
                "(ClusterIPs, published ports) keep the virtual IP as their server.",
                value=int(bool(self._conntrack_readable())))
