"""Views over records and graphs: Prometheus collectors (kernel histograms
and counters, the service graph, tracing, the fleet, the agent's own health),
exemplars and OTLP spans.  Nothing here reads BPF or /proc."""
