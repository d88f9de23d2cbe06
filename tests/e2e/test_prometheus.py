"""A real Prometheus scrapes the agent; its query API sees our series."""

import json
import math
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from tests.e2e.agent_process import REPO, free_port
from tests.e2e.workloads import LINE_SERVER, run_named

RULES = f"{REPO}/deploy/prometheus/taskscope-rules.yaml"


@pytest.fixture
def prometheus(agent, tmp_path):
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: [{RULES}]\n"
        "scrape_configs:\n"
        "  - job_name: taskscope\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{agent.port}']}}]\n")
    listen = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address={listen}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    yield f"http://{listen}"
    proc.terminate()
    proc.wait(timeout=30)


def query(base, promql):
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            body = json.loads(reply.read())
    except OSError:
        return []
    assert body["status"] == "success", body
    return body["data"]["result"]


def eventually(base, promql, timeout=40):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = query(base, promql)
        if result and all(not math.isnan(float(r["value"][1])) for r in result):
            return result
        time.sleep(1)
    pytest.fail(f"Prometheus never answered {promql!r} with a number")


def test_prometheus_scrapes_histograms_and_the_service_graph(prometheus, netns_pair):
    ip, port = netns_pair["server_ip"], 9301
    server = run_named("prom-server", LINE_SERVER, ip, port, netns=netns_pair["ns"], wait=False,
                       stdout=subprocess.PIPE, text=True)
    assert server.stdout.readline().strip() == "listening"
    client = run_named("prom-client", f"""
        import socket, time
        f = socket.create_connection(({ip!r}, {port}), timeout=10).makefile("rwb", buffering=0)
        deadline = time.monotonic() + 120  # killed when the checks are done
        while time.monotonic() < deadline:
            f.write(b"req\\n")
            f.readline()
    """, wait=False)
    try:
        (p50,) = eventually(prometheus, "histogram_quantile(0.5, sum by (le) "
                                        "(rate(taskscope_runqueue_latency_seconds_bucket[1m])))")
        assert 0 < float(p50["value"][1]) < 1
        edge = eventually(prometheus, 'traces_service_graph_request_total'
                                      '{client="prom-client", server="prom-server"}')
        assert float(edge[0]["value"][1]) > 0
        eventually(prometheus, 'histogram_quantile(0.95, sum by (le) (rate('
                               'traces_service_graph_request_server_seconds_bucket'
                               '{server="prom-server"}[1m])))')
        # The shipped recording rules evaluate over these series.
        eventually(prometheus, 'service:taskscope_runqueue_latency_seconds:p99_5m'
                               '{service="prom-client"}')
        (rate,) = eventually(prometheus, 'client_server:traces_service_graph_request:rate5m'
                                         '{client="prom-client", server="prom-server"}')
        assert float(rate["value"][1]) > 0
    finally:
        for proc in (client, server):
            proc.kill()
            proc.wait()
