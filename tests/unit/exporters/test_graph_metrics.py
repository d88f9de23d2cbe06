"""GraphMetrics over a graph built from edge sides: Tempo's service-graph
series, as Grafana's service map reads them."""

import ipaddress

from prometheus_client import CollectorRegistry

from taskscope.exporters.graph_metrics import GraphMetrics
from taskscope.records.edges import CLIENT, SERVER, EdgeSide
from taskscope.records.histogram import Log2Histogram
from taskscope.topology.graph import build_graph

ORDERS, PAYMENT = ipaddress.ip_address("::ffff:10.0.0.1"), ipaddress.ip_address("::ffff:10.0.0.2")


def latency(slot, count):
    h = Log2Histogram()
    h.add(slot, count, count * 2 ** slot)
    return h


def registry_over(sides, endpoints):
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GraphMetrics(
        lambda: build_graph(sides, lambda ip, port: endpoints.get((ip, port)))))
    return registry


def test_edges_become_request_counters_and_latency_histograms():
    sides = [EdgeSide("orders", CLIENT, ORDERS, PAYMENT, 9102, latency(25, 30), connections=2,
                      failed=1),
             EdgeSide("payment", SERVER, PAYMENT, ORDERS, 0, latency(24, 30)),
             EdgeSide("orders", CLIENT, ORDERS, PAYMENT, 6379, latency(16, 50))]
    registry = registry_over(sides, {(PAYMENT, 9102): "payment", (PAYMENT, 6379): "cart-cache"})
    get = registry.get_sample_value
    edge = {"client": "orders", "server": "payment", "connection_type": ""}
    assert get("traces_service_graph_request_total", edge) == 30
    assert get("traces_service_graph_request_failed_total", edge) == 1
    assert get("traces_service_graph_request_client_seconds_count", edge) == 30
    assert get("traces_service_graph_request_server_seconds_count", edge) == 30
    cache = {"client": "orders", "server": "cart-cache", "connection_type": "database"}
    assert get("traces_service_graph_request_total", cache) == 50


def test_a_peer_no_agent_owns_is_a_virtual_node():
    sides = [EdgeSide("orders", CLIENT, ORDERS, PAYMENT, 443, latency(20, 4))]
    registry = registry_over(sides, {})
    labels = {"client": "orders", "server": "10.0.0.2:443", "connection_type": "virtual_node"}
    assert registry.get_sample_value("traces_service_graph_request_total", labels) == 4


def test_a_graph_that_cannot_be_built_leaves_empty_families():
    def broken():
        raise OSError("maps gone")

    registry = CollectorRegistry(auto_describe=False)
    registry.register(GraphMetrics(broken))
    assert [m.name for m in registry.collect()] == [
        "traces_service_graph_request", "traces_service_graph_request_failed",
        "traces_service_graph_request_client_seconds",
        "traces_service_graph_request_server_seconds", "taskscope_graph_edges_dropped",
        "taskscope_graph_services_folded"]


def test_service_graph_series_go_through_the_label_budget():
    sides = [EdgeSide(f"caller-{i}", CLIENT, ORDERS, PAYMENT, 9102, latency(20, 1))
             for i in range(6)]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GraphMetrics(
        lambda: build_graph(sides, lambda ip, port: "payment"), max_services=3))
    get = registry.get_sample_value
    # payment and two callers are admitted; the other four callers fold.
    assert get("traces_service_graph_request_total",
               {"client": "other", "server": "payment", "connection_type": ""}) == 4
    assert get("taskscope_graph_services_folded") == 4
    assert get("traces_service_graph_request_client_seconds_count",
               {"client": "other", "server": "payment", "connection_type": ""}) == 4
