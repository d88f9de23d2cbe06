"""Service names from cgroups and the cardinality cap, on the real agent."""

import os
import time

import pytest

from taskscope.agent.host.cgroups import find_cgroup2_mount
from tests.e2e.agent_process import Agent, services, value
from tests.e2e.workloads import run_named

RUNQUEUE = "taskscope_runqueue_latency_seconds"
WAKER = """
import time
for _ in range(200):
    time.sleep(0.001)
"""


@pytest.fixture
def service_cgroup():
    """A cgroup v2 directory named like a systemd unit: <root>/taskscope-e2e/checkout.service."""
    root = find_cgroup2_mount()
    parent = os.path.join(root, "taskscope-e2e")
    path = os.path.join(parent, "checkout.service")
    os.makedirs(path, exist_ok=True)
    yield path
    for d in (path, parent):
        for _ in range(50):
            try:
                os.rmdir(d)
                break
            except OSError:
                time.sleep(0.1)  # the process may still be leaving the cgroup


def test_process_in_unit_cgroup_is_named_after_the_unit(agent, service_cgroup):
    run_named(None, WAKER, cgroup_procs=os.path.join(service_cgroup, "cgroup.procs"))
    samples = agent.scrape()
    assert value(samples, RUNQUEUE + "_count", service="checkout") >= 100, \
        sorted(services(samples, RUNQUEUE + "_count"))


def test_service_name_from_environment_survives_process_exit(agent):
    run_named("short-lived-job", WAKER)
    # The process is gone; its samples are still charged to its service.
    assert value(agent.scrape(), RUNQUEUE + "_count", service="short-lived-job") >= 100


def test_cardinality_cap_folds_the_rest_into_other(tmp_path):
    capped = Agent("--max-services", "3", "--probes", "sched", log_path=tmp_path / "agent.log")
    try:
        for i in range(5):
            run_named(f"cap-{i}", WAKER)
        samples = capped.scrape()
    finally:
        code, _ = capped.stop()
    names = services(samples, RUNQUEUE + "_count")
    assert "other" in names and len(names) == 4, names
    assert value(samples, "taskscope_services_folded", metric=RUNQUEUE) >= 2
    assert code == 0
