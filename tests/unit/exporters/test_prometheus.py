"""KernelMetrics against records: what /metrics shows, without BPF or root."""

from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics

from tests.unit.fixtures import SegmentStore
from taskscope.exporters.prometheus import KernelMetrics
from taskscope.records.histogram import Log2Histogram
from taskscope.records.metrics import CounterRow, HistogramRow, NodeHealth, Owner
from taskscope.records.segments import Observation
from tests.unit.fixtures import segment


def hist(slot, count, sum_ns):
    h = Log2Histogram()
    h.add(slot, count, sum_ns)
    return h


class FakeReadings:
    """What agent.readings.NodeReadings returns, from fixed records."""

    def __init__(self, histograms=None, counters=None, tcp_bytes=None):
        self._histograms = histograms or {}
        self._counters = counters
        self._bytes = tcp_bytes

    def histograms(self, source):
        return self._histograms.get(source)

    def tcp_counters(self):
        return self._counters

    def tcp_bytes(self):
        return self._bytes

    def health(self):
        return NodeHealth(probe_up={"runqueue": True, "tcp_rtt": False},
                          probe_variant={"runqueue": "raw_tracepoints", "tcp_rtt": "tracepoints"},
                          map_entries={"runqueue_latency": (3, 32768)},
                          drops={"runqueue_latency": 2}, decode_errors={"cgroup": 1})


def registry_over(readings, **kwargs):
    registry = CollectorRegistry(auto_describe=False)
    registry.register(KernelMetrics(readings, **{"max_services": 500, **kwargs}))
    return registry


def test_rows_of_one_service_sum_into_one_series_with_cumulative_buckets():
    rows = [HistogramRow(Owner("payment"), {}, hist(12, 3, 3 * 5000)),   # 4.1-8.2 us
            HistogramRow(Owner("payment"), {}, hist(12, 1, 5000)),
            HistogramRow(Owner("payment"), {}, hist(20, 2, 2 * 1_500_000))]  # ~1.5 ms
    registry = registry_over(FakeReadings({"runqueue_latency": rows}))
    get = registry.get_sample_value
    name = "taskscope_runqueue_latency_seconds"
    assert get(name + "_count", {"service": "payment"}) == 6
    assert get(name + "_sum", {"service": "payment"}) == (4 * 5000 + 3_000_000) / 1e9
    assert get(name + "_bucket", {"service": "payment", "le": repr(2.0 ** 13 / 1e9)}) == 4
    assert get(name + "_bucket", {"service": "payment", "le": repr(2.0 ** 20 / 1e9)}) == 4
    assert get(name + "_bucket", {"service": "payment", "le": repr(2.0 ** 21 / 1e9)}) == 6
    assert get(name + "_bucket", {"service": "payment", "le": "+Inf"}) == 6


def test_block_io_series_carry_device_op_and_stage():
    rows = [HistogramRow(Owner("db"), {"device": "vda", "op": "write", "stage": "device"},
                         hist(15, 1, 40_000))]
    registry = registry_over(FakeReadings({"blockio_latency": rows}))
    labels = {"service": "db", "device": "vda", "op": "write", "stage": "device"}
    assert registry.get_sample_value("taskscope_blockio_latency_seconds_count", labels) == 1


def test_services_beyond_the_budget_fold_into_other():
    rows = [HistogramRow(Owner(f"svc{i}"), {}, hist(12, 1, 5000)) for i in range(5)]
    registry = registry_over(FakeReadings({"runqueue_latency": rows}), max_services=3)
    get = registry.get_sample_value
    assert get("taskscope_runqueue_latency_seconds_count", {"service": "other"}) == 2
    assert get("taskscope_services_folded",
               {"metric": "taskscope_runqueue_latency_seconds"}) == 2


def test_pod_labels_follow_the_service_when_asked_for():
    owner = Owner("shop/orders", (("container", "app"), ("namespace", "shop"), ("pod", "o-1")))
    rows = [CounterRow(owner, {"sent_bytes": 10, "received_bytes": 4})]
    registry = registry_over(FakeReadings(tcp_bytes=rows), pod_labels=("namespace", "pod"))
    labels = {"service": "shop/orders", "namespace": "shop", "pod": "o-1"}
    assert registry.get_sample_value("taskscope_tcp_sent_bytes_total", labels) == 10
    assert registry.get_sample_value("taskscope_tcp_received_bytes_total", labels) == 4


def test_tcp_counters_become_counters_with_direction():
    counters = {"opened_active": 3, "opened_passive": 5, "closed": 7, "connect_failed": 1,
                "retransmits": 2}
    registry = registry_over(FakeReadings(counters=[CounterRow(Owner("api"), counters)]))
    get = registry.get_sample_value
    assert get("taskscope_tcp_connections_opened_total",
               {"service": "api", "direction": "passive"}) == 5
    assert get("taskscope_tcp_connections_closed_total", {"service": "api"}) == 7
    assert get("taskscope_tcp_connect_failures_total", {"service": "api"}) == 1
    assert get("taskscope_tcp_retransmits_total", {"service": "api"}) == 2


def test_the_agents_own_health():
    registry = registry_over(FakeReadings())
    get = registry.get_sample_value
    assert get("taskscope_probe_up", {"probe": "runqueue", "variant": "raw_tracepoints"}) == 1
    assert get("taskscope_probe_up", {"probe": "tcp_rtt", "variant": "none"}) == 0
    assert get("taskscope_map_entries", {"map": "runqueue_latency"}) == 3
    assert get("taskscope_map_capacity", {"map": "runqueue_latency"}) == 32768
    assert get("taskscope_map_drops_total", {"reason": "runqueue_latency"}) == 2
    assert get("taskscope_decode_errors_total", {"decoder": "cgroup"}) == 1
    # Readings the kernel does not have (probe not loaded) are absent, not zero.
    assert get("taskscope_tcp_sent_bytes_total", {"service": "api"}) is None


def test_a_failing_reading_leaves_the_health_metrics():
    class Broken(FakeReadings):
        def histograms(self, source):
            raise OSError("map gone")

    registry = registry_over(Broken())
    assert registry.get_sample_value("taskscope_probe_up",
                                     {"probe": "runqueue", "variant": "raw_tracepoints"}) == 1


def test_openmetrics_scrapes_carry_a_trace_exemplar():
    store = SegmentStore()
    store.add(segment(trace="12" * 16, service="payment", runqueue=0.000006,
                      observations=(Observation("runqueue", (), 0.000006),)))
    rows = [HistogramRow(Owner("payment"), {}, hist(12, 1, 6000))]
    registry = registry_over(FakeReadings({"runqueue_latency": rows}), trace_store=store)
    text = openmetrics(registry).decode()
    assert '# {trace_id="' + "12" * 16 + '"}' in text
