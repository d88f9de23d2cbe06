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
        counts = t.reader.counts()
        yield CounterMetricFamily("taskscope_trace_segments",
                                  "Trace segments finished, exact (the store keeps the last "
                                  "taskscope_trace_store_capacity; segments lost before they "
                                  "finished: taskscope_map_drops_total{reason=\"segment_evicted\"}).",
                                  value=counts["finished"])
        contexts = CounterMetricFamily(
            "taskscope_trace_contexts",
            "Trace contexts taken up by a thread, by what came of them: traced (a segment "
            "began) or sampled_out (the overhead governor kept CPU under budget).",
            labels=["result"])
        contexts.add_metric(["traced"], counts["begun"])
        contexts.add_metric(["sampled_out"], counts["sampled_out"])
        yield contexts
        yield GaugeMetricFamily("taskscope_trace_sample_every",
                                "A segment begins for 1 in this many trace contexts (1: all); "
                                "set by the overhead governor (max_cpu_percent).",
                                value=t.governor.sample_every)
        yield GaugeMetricFamily("taskscope_agent_cpu_ratio",
                                "The agent's own CPU, in cores, averaged over the governor's "
                                "window (its budget: max_cpu_percent / 100).",
                                value=t.governor.cpu_fraction)
        if t.governor.bpf_seconds is not None:
            yield CounterMetricFamily("taskscope_bpf_run_seconds",
                                      "CPU the agent's BPF programs ran, in the context of the "
                                      "tasks they observe (counted while "
                                      "kernel.bpf_stats_enabled is 1).",
                                      value=t.governor.bpf_seconds)
        yield CounterMetricFamily("taskscope_trace_segments_idle_finished",
                                  "Segments finished by the agent after their connection "
                                  "sat idle.", value=t.reader.reaped)
        yield GaugeMetricFamily("taskscope_trace_store_capacity",
                                "Finished segments the kernel's store keeps for /api/traces "
                                "(the oldest go first).", value=t.store.capacity)
        if t.spans:
            yield CounterMetricFamily("taskscope_trace_segments_streamed",
                                      "Segments streamed to the OTLP exporter (drops: "
                                      "taskscope_map_drops_total{reason=~\"segment_(rate|ring)\"}).",
                                      value=t.reader.streamed)
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
