"""Pod metadata on the real agent: a process in a cgroup shaped like a
kubelet's (systemd driver, containerd), a recorded API server's pod list."""

import copy
import json
import os
import time

import pytest

from taskscope.agent.host.cgroups import find_cgroup2_mount
from tests.e2e.agent_process import Agent, free_port, value
from tests.e2e.test_attribution import WAKER
from tests.e2e.workloads import run_named
from tests.fake_http import serving

HERE = os.path.dirname(os.path.dirname(__file__))
UID = "0f3c2a7e-1b2d-4c5e-8f90-a1b2c3d4e5f6"
CONTAINER = "a" * 64
RUNQUEUE = "taskscope_runqueue_latency_seconds_count"


@pytest.fixture
def pod_cgroup():
    root = find_cgroup2_mount()
    slices = ["kubepods.slice", "kubepods-burstable.slice",
              f"kubepods-burstable-pod{UID.replace('-', '_')}.slice",
              f"cri-containerd-{CONTAINER}.scope"]
    path = os.path.join(root, *slices)
    os.makedirs(path, exist_ok=True)
    yield path
    for depth in range(len(slices), 0, -1):
        for _ in range(50):
            try:
                os.rmdir(os.path.join(root, *slices[:depth]))
                break
            except OSError:
                time.sleep(0.1)


@pytest.fixture
def api_server():
    with open(os.path.join(HERE, "unit", "agent", "host", "data", "kubernetes_api.json")) as f:
        pods = json.load(f)["pods"]
    asked = []

    def reply(path):
        asked.append(path)
        if path.startswith("/api/v1/pods") and "watch=1" in path:
            return b""  # a watch the API ends at once: resumed after a pause
        if path.startswith("/api/v1/pods"):
            return json.dumps(copy.deepcopy(pods)).encode()
        return b'{"kind": "Status", "code": 404}'

    with serving(reply) as url:
        yield url, asked


def test_process_in_a_pod_is_named_after_its_workload(pod_cgroup, api_server, tmp_path):
    url, asked = api_server
    agent = Agent("--probes", "sched", "--kubernetes", "on", "--kubernetes-api", url,
                  "--kubernetes-node", "node-a", "--kubernetes-labels", "namespace,pod,container",
                  log_path=tmp_path / "agent.log")
    try:
        run_named(None, WAKER, cgroup_procs=os.path.join(pod_cgroup, "cgroup.procs"))
        samples = agent.scrape()
    finally:
        code, _ = agent.stop()
    assert asked and "fieldSelector=spec.nodeName%3Dnode-a" in asked[0]
    assert any("watch=1" in path for path in asked), asked
    assert value(samples, RUNQUEUE, service="shop/checkout", namespace="shop",
                 pod="checkout-7d4b9c5f6-x2x9z", container="app") >= 100, \
        sorted({dict(ls).get("service") for (n, ls) in samples if n == RUNQUEUE})
    # Processes outside pods keep their names, with empty pod labels.
    assert value(samples, RUNQUEUE, namespace="") > 0
    assert code == 0


def test_unreachable_api_server_leaves_services_named_as_before(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    agent = Agent("--probes", "sched", "--kubernetes", "on", "--kubernetes-api", dead,
                  log_path=tmp_path / "agent.log")
    try:
        run_named("no-api-job", WAKER)
        samples = agent.scrape()
    finally:
        code, _ = agent.stop()
    assert value(samples, RUNQUEUE, service="no-api-job", namespace="") >= 100
    assert "cannot list this node's pods" in agent.log() and code == 0
