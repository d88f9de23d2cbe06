"""Self-metrics of trace correlation (agent.tracing.Tracing)."""

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily


class TracingMetrics:
    """A prometheus_client custom collector over Tracing's counters."""

    def __init__(self, tracing):
        self._tracing = tracing

    def describe(self):
        return []

    def collect(self):
        t = self._tracing
        yield CounterMetricFamily("taskscope_trace_segments",
                                  "Trace segments received from the kernel "
                                  "(drops: taskscope_map_drops_total{reason=~\"segment_.*\"}).",
                                  value=t.reader.received + t.reader.reaped)
        yield CounterMetricFamily("taskscope_trace_segments_idle_finished",
                                  "Segments finished by the agent after their connection "
                                  "sat idle.", value=t.reader.reaped)
        yield GaugeMetricFamily("taskscope_trace_store_segments",
                                "Segments held for /api/traces.", value=len(t.store))
        yield CounterMetricFamily("taskscope_trace_store_evicted",
                                  "Segments evicted from the store to keep it bounded.",
                                  value=t.store.evicted)
        yield GaugeMetricFamily("taskscope_marker_libraries_hooked",
                                "Copies of the marker library hooked with uprobes.",
                                value=t.markers.hooked)
        yield GaugeMetricFamily("taskscope_marker_libraries_failed",
                                "Copies of the marker library that could not be hooked.",
                                value=t.markers.failed)
        if t.spans:
            yield CounterMetricFamily("taskscope_otlp_spans",
                                      "Segments handed to the OTLP exporter.",
                                      value=t.spans.exported)
