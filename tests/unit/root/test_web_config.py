"""Protected endpoints (taskscope/web_config.py, taskscope/server.py): TLS,
basic auth with bcrypt hashes, bounded connections, and the collector
speaking both to its agents.  A real server on loopback, no probes."""

import base64
import json
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request

import bcrypt
import pytest
from prometheus_client import CollectorRegistry

from taskscope.fleet_command import agent_opener, collector_config
from taskscope.records.errors import ConfigError
from taskscope.server import EndpointServer, SingleFlight
from taskscope.topology.fleet import AgentFleet
from taskscope.topology.prometheus_source import PrometheusError, graph_from_prometheus
from taskscope.web_config import load_web_config
from tests.unit.root.test_fleet_command import GOOD_SIDE, args


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
                   check=True, capture_output=True)
    return d / "cert.pem", d / "key.pem"


def web_config(tmp_path, certificate, users=True):
    cert, key = certificate
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    text = f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"
    if users:
        text += f"basic_auth_users:\n  prometheus: '{hashed}'\n"
    path = tmp_path / "web.yml"
    path.write_text(text)
    return path


PROTECTED_ROUTES = {}  # what a test adds to the protected server


@pytest.fixture
def protected(tmp_path, certificate):
    server = EndpointServer(("127.0.0.1", 0), CollectorRegistry(),
                            web=load_web_config(web_config(tmp_path, certificate)), timeout=1)
    body = json.dumps({"sides": [GOOD_SIDE], "endpoints": []}).encode()
    server.routes["/api/graph/sides"] = lambda params: (200, body, "application/json")
    PROTECTED_ROUTES.clear()
    server.routes["/api/v1/query"] = lambda params: PROTECTED_ROUTES["/api/v1/query"](params)
    server.start()
    yield f"https://127.0.0.1:{server.server_address[1]}", certificate[0]
    server.stop()


def fetch(url, ca, auth=None):
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth).decode())
    context = ssl.create_default_context(cafile=str(ca))
    with urllib.request.urlopen(request, context=context, timeout=5) as reply:
        return reply.status


def test_tls_and_basic_auth_guard_every_endpoint(protected):
    url, ca = protected
    for path in ("/metrics", "/healthz", "/api/graph/sides"):
        with pytest.raises(urllib.error.HTTPError) as exc:
            fetch(url + path, ca)
        assert exc.value.code == 401 and "Basic" in exc.value.headers["WWW-Authenticate"]
        with pytest.raises(urllib.error.HTTPError):
            fetch(url + path, ca, b"prometheus:wrong")
        assert fetch(url + path, ca, b"prometheus:s3cret") == 200
    with pytest.raises(OSError):  # plain HTTP to the TLS port gets nothing
        urllib.request.urlopen(url.replace("https", "http") + "/metrics", timeout=3).read()


def test_the_collector_speaks_tls_and_basic_auth_to_its_agents(protected, tmp_path):
    url, ca = protected
    password = tmp_path / "password"
    password.write_text("s3cret\n")
    settings = collector_config(args(agent=[url], agents_ca_file=str(ca),
                                     agents_username="prometheus",
                                     agents_password_file=str(password)))
    fleet = AgentFleet([url], opener=agent_opener(settings))
    assert fleet.graph(60).number_of_edges() == 1 and fleet.up[url] == 1
    unauthenticated = AgentFleet([url], opener=agent_opener(collector_config(
        args(agent=[url], agents_ca_file=str(ca)))))
    assert unauthenticated.graph(60).number_of_edges() == 0
    assert unauthenticated.failures[url] == 1


def test_idle_and_slow_clients_cannot_hold_the_endpoint(tmp_path):
    server = EndpointServer(("127.0.0.1", 0), CollectorRegistry(), workers=2, waiting=2,
                            timeout=0.5)
    server.start()
    port = server.server_address[1]
    try:
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(10)]
        time.sleep(0.2)
        assert server.rejected >= 6  # beyond 2 working and 2 waiting, closed at once
        # The idle ones time out after 0.5 s; then scrapes are answered again.
        deadline = time.monotonic() + 5
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        # A request larger than a GET's headers ever are is cut off.
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 40000 + b"\r\n\r\n")
            assert not s.recv(1024).startswith(b"HTTP/1.0 200")
        for s in idle:
            s.close()
    finally:
        server.stop()


def test_concurrent_askers_share_one_computation():
    flights, calls, gate = SingleFlight(), [], threading.Event()

    def compute():
        calls.append(1)
        gate.wait(2)
        return "graph"

    results = []
    threads = [threading.Thread(target=lambda: results.append(flights.do("g", compute)))
               for _ in range(5)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    gate.set()
    for t in threads:
        t.join()
    assert results == ["graph"] * 5 and len(calls) == 1


@pytest.mark.parametrize("text, message", [
    ("basic_auth_users:\n  bob: plain-password\n", "expected a bcrypt hash"),
    ("tls_server_config:\n  cert_file: /nope.crt\n", "needs cert_file and key_file"),
    ("tls_server_config:\n  cert_file: /nope.crt\n  key_file: /nope.key\n", "cannot load"),
    ("tls_server_config: {cert_file: a, key_file: b, client_auth_type: Maybe}\n",
     "client_auth_type"),
    ("tls: {}\n", "unknown key"),
    ("- a list\n", "expected a mapping"),
])
def test_a_bad_web_config_names_the_file_and_what_is_wrong(tmp_path, text, message):
    path = tmp_path / "web.yml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as exc:
        load_web_config(str(path))
    assert str(path) in str(exc.value)


def test_the_collector_speaks_tls_and_basic_auth_to_prometheus(protected, tmp_path):
    url, ca = protected
    series = {"status": "success", "data": {"result": [
        {"metric": {"client": "web", "server": "db"}, "value": [0, "3"]}]}}
    password = tmp_path / "password"
    password.write_text("s3cret\n")
    settings = collector_config(args(prometheus=url, agents_ca_file=str(ca),
                                     agents_username="prometheus",
                                     agents_password_file=str(password)))
    body = json.dumps(series).encode()
    PROTECTED_ROUTES["/api/v1/query"] = lambda params: (200, body, "application/json")
    graph = graph_from_prometheus(url, 60, timeout=5, opener=agent_opener(settings))
    assert [(e["source"], e["target"]) for e in graph["edges"]] == [("web", "db")]
    with pytest.raises(PrometheusError):
        graph_from_prometheus(url, 60, timeout=5, opener=agent_opener(collector_config(
            args(prometheus=url, agents_ca_file=str(ca)))))
