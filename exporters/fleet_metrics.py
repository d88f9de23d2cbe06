"""What `taskscope collector` knows of the agents it merges, for Prometheus."""

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

__all__ = ["FleetMetrics"]


class FleetMetrics:
    """taskscope_collector_agent_up / _failures_total per agent of an
    AgentFleet (topology.fleet)."""

    def __init__(self, fleet):
        self._fleet = fleet

    def describe(self):
        return []

    def collect(self):
        up = GaugeMetricFamily("taskscope_collector_agent_up",
                               "1 when the agent's last graph reply was usable.", labels=["agent"])
        failures = CounterMetricFamily("taskscope_collector_agent_failures",
                                       "Graph replies from the agent that were unusable "
                                       "(down, timed out, malformed).", labels=["agent"])
        for url in self._fleet.agent_urls:
            up.add_metric([url], self._fleet.up.get(url, 0))
            failures.add_metric([url], self._fleet.failures[url])
        trace_failures = CounterMetricFamily(
            "taskscope_collector_trace_lookup_failures",
            "Trace lookups the agent failed (down, timed out, malformed).", labels=["agent"])
        for url in self._fleet.agent_urls:
            trace_failures.add_metric([url], self._fleet.trace_failures[url])
        skipped = CounterMetricFamily(
            "taskscope_collector_sides_skipped",
            "Malformed edge sides or endpoints in an agent's reply, left out (the rest "
            "of the reply is used).", labels=["agent"])
        for url in self._fleet.agent_urls:
            skipped.add_metric([url], self._fleet.skipped[url])
        yield up
        yield failures
        yield trace_failures
        yield skipped
        yield CounterMetricFamily(
            "taskscope_collector_discovery_failures",
            "Times the agents' DNS name did not resolve; the agents known were marked down.",
            value=self._fleet.discovery_failures)
