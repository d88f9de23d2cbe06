"""Supervised background threads: a failure is counted and the job goes on."""

import threading
import time

from taskscope.agent.workers import Workers
from taskscope.exporters.health_metrics import health_report, liveness_report


def test_a_thread_that_raises_is_counted_logged_and_restarted(caplog):
    stop = threading.Event()
    workers = Workers(stop)
    workers.RESTART_PAUSE = 0.01
    runs = []

    def flaky(stop):
        runs.append(1)
        if len(runs) < 3:
            raise ValueError("bad input")
        stop.wait()

    workers.start("graph", flaky)
    deadline = time.monotonic() + 5
    while len(runs) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert workers.errors["graph"] == 2 and workers.dead() == []
    assert "thread graph failed" in caplog.text and "ValueError: bad input" in caplog.text
    stop.set()
    workers.join()


def test_health_names_what_is_down():
    stop = threading.Event()
    workers = Workers(stop)
    workers.start("segments", lambda stop: None)  # returns at once: dead, not stopping
    workers.join()
    status, body, content_type = health_report({"runqueue": True, "trace_wire": False}, workers)
    assert status == 503 and content_type == "application/json"
    assert b'"probes_down": ["trace_wire"]' in body and b'"threads_down": ["segments"]' in body
    assert liveness_report(workers)[0] == 503
    stop.set()
    assert health_report({"runqueue": True}, workers)[0] == 200  # stopping: nothing is dead
