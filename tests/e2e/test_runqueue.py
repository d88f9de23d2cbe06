"""Run-queue latency measured by the real probe, per service."""

import time

from tests.e2e.agent_process import histogram_delta, quantile
from tests.e2e.workloads import busy_loops, run_named

FAMILY = "taskscope_runqueue_latency_seconds"
# 500 rounds of 1 ms of work and 0.5 ms of sleep.  The work matters: a task
# that only sleeps keeps its lag under EEVDF and preempts the busy loops the
# moment it wakes, so it would hardly ever wait.
ROUNDS = 500
WORKER = f"""
import time
for _ in range({ROUNDS}):
    start = time.perf_counter()
    while time.perf_counter() - start < 0.001:
        pass
    time.sleep(0.0005)
"""


def _p50(agent, service, cpu, hogs):
    before = agent.scrape()
    with busy_loops(hogs, cpu):
        time.sleep(0.2)
        run_named(service, WORKER, cpu=cpu)
    after = agent.scrape()
    delta = histogram_delta(before, after, FAMILY, service=service)
    total = max(delta.values(), default=0)
    assert total >= ROUNDS, f"{service}: only {total} run-queue samples for {ROUNDS} wake-ups"
    return quantile(delta, FAMILY, 0.5, service=service)


def test_contended_cpu_raises_runqueue_p50_tenfold(agent):
    alone = _p50(agent, "rq-alone", cpu=1, hogs=0)
    contended = _p50(agent, "rq-contended", cpu=1, hogs=2)
    assert contended >= 10 * alone, f"P50 alone {alone * 1e6:.1f} us, contended {contended * 1e6:.1f} us"
