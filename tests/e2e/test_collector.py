"""Two agents as if on two nodes, one collector, and the exports."""

import json
import subprocess
import sys
import time
import urllib.request
import xml.etree.ElementTree as ET

import pytest

from tests.e2e.agent_process import REPO, Agent, free_port
from tests.fake_http import serving
from tests.e2e.workloads import run_named

REQUESTS = 20


@pytest.fixture
def two_nodes(tmp_path, netns_pair):
    # Node A speaks for the host side of the veth, node B for the namespace.
    a = Agent("--probes", "tcp", "--graph-addresses", "198.18.0.1/32",
              log_path=tmp_path / "a.log")
    b = Agent("--probes", "tcp", "--graph-addresses", "198.18.0.2/32",
              log_path=tmp_path / "b.log")
    yield a, b
    for agent in (a, b):
        code, _ = agent.stop()
        assert code == 0, agent.log()


@pytest.fixture
def garbage_agent():
    with serving(lambda path: b'{"sides": [{"service": 7}], "endpoints": "nope"}') as url:
        yield url


def get(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.status, r.headers.get("Content-Type"), r.read()


def test_collector_joins_edges_across_agents_and_survives_bad_ones(
        two_nodes, shop, garbage_agent, tmp_path):
    a, b = two_nodes
    ip, port = shop["orders"]
    run_named("gateway", f"""
        import socket
        f = socket.create_connection(({ip!r}, {port}), timeout=10).makefile("rwb", buffering=0)
        for _ in range({REQUESTS}):
            f.write(b"req\\n")
            f.readline()
    """)
    time.sleep(0.5)
    # Alone, node A cannot name the server its gateway called.
    alone = json.loads(a.get("/api/graph")[2])
    assert {"source": "gateway", "target": f"{ip}:{port}"} in [
        {"source": e["source"], "target": e["target"]} for e in alone["edges"]]

    listen = f"127.0.0.1:{free_port()}"
    dead = f"http://127.0.0.1:{free_port()}"
    collector = subprocess.Popen(
        [sys.executable, "-m", "taskscope", "collector", "--listen", listen, "--agent", a.url,
         "--agent", b.url, "--agent", garbage_agent, "--agent", dead, "--timeout", "2"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://{listen}"
        for _ in range(50):
            try:
                status, ctype, body = get(base + "/api/graph")
                break
            except OSError:
                time.sleep(0.2)
        graph = json.loads(body)
        edges = {(e["source"], e["target"]): e for e in graph["edges"]}
        assert ("gateway", "orders") in edges and ("orders", "payment") in edges, graph
        crossing = edges["gateway", "orders"]
        assert crossing["client_requests"] == REQUESTS and crossing["server_requests"] == REQUESTS

        metrics = get(base + "/metrics")[2].decode()
        assert f'taskscope_collector_agent_up{{agent="{a.url}"}} 1.0' in metrics
        assert f'taskscope_collector_agent_up{{agent="{garbage_agent}"}} 0.0' in metrics
        assert f'taskscope_collector_agent_up{{agent="{dead}"}} 0.0' in metrics

        status, ctype, svg = get(base + "/api/graph.svg")
        assert ctype == "image/svg+xml"
        texts = {t.text for t in ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}text")}
        assert {"gateway", "orders", "payment"} <= texts
        assert get(base + "/api/graph.dot")[2].startswith(b"digraph taskscope {")

        fields = json.loads(get(base + "/api/graph/fields")[2])
        node_fields = {f["field_name"] for f in fields["nodes_fields"]}
        edge_fields = {f["field_name"] for f in fields["edges_fields"]}
        assert {"id", "title", "subtitle", "mainstat", "secondarystat"} <= node_fields
        assert any(f.startswith("arc__") for f in node_fields)
        assert any(f.startswith("detail__") for f in node_fields)
        assert {"id", "source", "target", "mainstat", "secondarystat", "thickness",
                "color"} == edge_fields
        data = json.loads(get(base + "/api/graph/data")[2])
        for node in data["nodes"]:
            assert node_fields <= set(node)
            assert abs(node["arc__ok"] + node["arc__failed"] - 1) < 1e-9
        for edge in data["edges"]:
            assert edge_fields == set(edge)

        out = tmp_path / "graph.svg"
        export = subprocess.run(
            [sys.executable, "-m", "taskscope", "graph", "--from", base, "--format", "svg",
             "-o", str(out)], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert export.returncode == 0, export.stderr
        ET.parse(out)
    finally:
        collector.terminate()
        collector.wait(timeout=10)
