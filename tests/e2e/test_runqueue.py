"""Run-queue latency measured by the real probe, per service."""

import time

from tests.e2e.agent_process import histogram_delta, quantile
from tests.e2e.workloads import busy_loops, run_named

FAMILY = "taskscope_runqueue_latency_seconds"
# 300 rounds of 0.5 ms of work and 0.5 ms of sleep, at nice 10 alone and next to
# busy loops.  Both matter: under EEVDF a task that mostly sleeps, at the busy
# loops' priority, often preempts them the moment it wakes and waits for
# nothing; the median of its waits then flips between runs.
ROUNDS = 300
WORKER = f"""
import time
for _ in range({ROUNDS}):
    start = time.perf_counter()
    while time.perf_counter() - start < 0.0005:
        pass
    time.sleep(0.0005)
"""


def _p50(agent, service, cpu, hogs):
    before = agent.scrape()
    with busy_loops(hogs, cpu):
        time.sleep(0.2)
        run_named(service, WORKER, cpu=cpu, nice=10)
    after = agent.scrape()
    delta = histogram_delta(before, after, FAMILY, service=service)
    total = max(delta.values(), default=0)
    assert total >= ROUNDS, f"{service}: only {total} run-queue samples for {ROUNDS} wake-ups"
    return quantile(delta, FAMILY, 0.5, service=service)


def test_contended_cpu_raises_runqueue_p50_tenfold(agent):
    alone = _p50(agent, "rq-alone", cpu=1, hogs=0)
    contended = _p50(agent, "rq-contended", cpu=1, hogs=2)
    assert contended >= 10 * alone, f"P50 alone {alone * 1e6:.1f} us, contended {contended * 1e6:.1f} us"
