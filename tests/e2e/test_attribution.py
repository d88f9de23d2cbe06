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


# Names a local user can choose: an environment variable and a cgroup
# directory (any bytes but NUL, "/" and newline), with quotes, control bytes
# and invalid UTF-8.
HOSTILE_OTEL = b'evil"svc\n{le="1"}\x01\x7f\xff\xfe'
HOSTILE_UNIT = b'bad "unit"\x02\xc3(.service'  # cgroupfs refuses newlines
LINE = """
import socket, sys, time
if sys.argv[1] == "serve":
    srv = socket.create_server(("127.0.0.1", int(sys.argv[2])))
    print("listening", flush=True)
    while True:
        conn, _ = srv.accept()
        while conn.recv(64):
            conn.sendall(b"ok")
else:
    s = socket.create_connection(("127.0.0.1", int(sys.argv[2])))
    for _ in range(20):
        s.sendall(b"q")
        s.recv(64)
        time.sleep(0.002)
"""


@pytest.fixture
def hostile_cgroup():
    root = os.fsencode(find_cgroup2_mount())
    path = os.path.join(root, b"taskscope-e2e-names", HOSTILE_UNIT)
    os.makedirs(path, exist_ok=True)
    yield path
    for d in (path, os.path.dirname(path)):
        for _ in range(50):
            try:
                os.rmdir(d)
                break
            except OSError:
                time.sleep(0.1)


def test_hostile_names_reach_every_output_cleaned(agent, hostile_cgroup):
    import json
    import subprocess
    import sys

    from prometheus_client.openmetrics.parser import text_string_to_metric_families as om
    from prometheus_client.parser import text_string_to_metric_families as prom

    port = 9377
    procs = os.path.join(hostile_cgroup, b"cgroup.procs")
    server = subprocess.Popen(
        [b"sh", b"-c", b'echo $$ > "$0" && exec "$@"', procs, os.fsencode(sys.executable), b"-c",
         LINE.encode(), b"serve", str(port).encode()],
        env={b"PATH": b"/usr/bin:/bin"}, stdout=subprocess.PIPE)
    try:
        assert server.stdout.readline().strip() == b"listening"
        subprocess.run([sys.executable, "-c", LINE, "call", str(port)], check=True,
                       env={b"PATH": b"/usr/bin:/bin", b"OTEL_SERVICE_NAME": HOSTILE_OTEL})
        time.sleep(1.5)
        status, _, text = agent.get("/metrics")
        assert status == 200
        names = {s.labels.get("service") for f in prom(text) for s in f.samples}
        names |= {s.labels.get(k) for f in prom(text) for s in f.samples
                  for k in ("client", "server")}
        _, _, om_text = agent.get("/metrics",
                                  accept="application/openmetrics-text; version=1.0.0")
        list(om(om_text))  # parses
        caller, unit = 'evil"svc{le="1"}\ufffd\ufffd', 'bad "unit"\ufffd('
        deadline = time.monotonic() + 10  # the listener is named at the next scan (5 s)
        while True:
            _, _, body = agent.get("/api/graph?window=15m")
            edges = {(e["source"], e["target"]) for e in json.loads(body)["edges"]}
            if (caller, unit) in edges or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        for path in ("/api/graph.dot", "/api/graph.svg"):
            status, _, _ = agent.get(path)
            assert status == 200, path
    finally:
        server.kill()
        server.wait()
    assert caller in names and unit in names, sorted(n for n in names if n)
    assert (caller, unit) in edges, edges
