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
        refused = CounterMetricFamily(
            "taskscope_marker_refused",
            "Copies of the marker library not hooked, by reason (symlink, unreadable, "
            "not_regular, changed, owner, writable, cap).", labels=["reason"])
        for reason, n in sorted(t.markers.refused.items()):
            refused.add_metric([reason], n)
        yield refused
        if t.spans:
            counts = t.spans.counts()
            spans = CounterMetricFamily(
                "taskscope_otlp_spans",
                "Segments sent as OTLP spans, by what became of them: exported (the "
                "endpoint took them), failed (refused, or down past the exporter's "
                "retries), dropped (the queue was full or the agent stopped first).",
                labels=["result"])
            for result in ("exported", "failed", "dropped"):
                spans.add_metric([result], counts[result])
            yield spans
            yield GaugeMetricFamily("taskscope_otlp_spans_queued",
                                    "Spans waiting in the exporter's queue.",
                                    value=counts["queued"])
