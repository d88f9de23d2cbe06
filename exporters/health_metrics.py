"""The agent's own health: its supervised threads (agent/workers.py) and its
probes, as a metric and as the /healthz and /livez answers."""

import json

from prometheus_client.core import CounterMetricFamily

__all__ = ["HealthMetrics", "KubernetesMetrics", "health_report", "liveness_report"]


class HealthMetrics:
    """taskscope_thread_errors_total{thread}: failures of each background
    thread, each logged with its traceback and followed by a restart."""

    def __init__(self, workers):
        self._workers = workers

    def describe(self):
        return []

    def collect(self):
        errors = CounterMetricFamily("taskscope_thread_errors",
                                     "Failures of the agent's background threads (each logged, "
                                     "the thread restarted).", labels=["thread"])
        for name, n in sorted(self._workers.errors.items()):
            errors.add_metric([name], n)
        yield errors


class KubernetesMetrics:
    """taskscope_kubernetes_api_failures_total: pod-list reads that failed
    (services are then named without their pods until the API answers)."""

    def __init__(self, pods):
        self._pods = pods

    def describe(self):
        return []

    def collect(self):
        yield CounterMetricFamily("taskscope_kubernetes_api_failures",
                                  "Reads of this node's pods from the Kubernetes API that "
                                  "failed.", value=self._pods.failures)


def _reply(problems):
    status = 503 if any(problems.values()) else 200
    body = {"status": "degraded" if status != 200 else "ok", **problems}
    return status, (json.dumps(body, sort_keys=True) + "\n").encode(), "application/json"


def health_report(probe_status, workers):
    """/healthz: 200 when every selected probe is up and every thread runs;
    else 503 with what is not (a probe the kernel lacks counts: the data it
    would give is missing)."""
    return _reply({"probes_down": sorted(p for p, up in probe_status.items() if not up),
                   "threads_down": workers.dead()})


def liveness_report(workers):
    """/livez: 503 only when a thread has died, which a restart may mend; what
    Kubernetes' probes ask, so that a kernel without some probe does not
    restart the agent forever."""
    return _reply({"threads_down": workers.dead()})
