"""End-to-end fixtures: the real agent, real namespaces, real cgroups."""

import os
import subprocess
import time

import pytest

from tests.e2e.agent_process import Agent
from tests.e2e.workloads import PAYMENT_DELAY, run_named, sh


def pytest_collection_modifyitems(items):
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session", autouse=True)
def _root():
    # Not a skip: these tests are the suite's core and CI runs them as root.
    assert os.geteuid() == 0, "the end-to-end tests load eBPF programs: run them as root"


@pytest.fixture(scope="session")
def agent(tmp_path_factory):
    """One agent with every probe, shared by the tests that only read it."""
    a = Agent(log_path=tmp_path_factory.mktemp("agent") / "agent.log")
    yield a
    code, seconds = a.stop()
    assert code == 0, a.log()


@pytest.fixture(scope="session")
def netns_pair():
    """Namespace ts-e2e-srv reached from the host over a veth pair.

    Addresses come from 198.18.0.0/15, the range set aside for benchmarks
    (RFC 2544), and exist only inside this machine.
    """
    ns = "ts-e2e-srv"
    sh("ip", "netns", "del", ns, check=False)
    sh("ip", "link", "del", "ts-e2e-h", check=False)
    sh("ip", "netns", "add", ns)
    sh("ip", "link", "add", "ts-e2e-h", "type", "veth", "peer", "name", "ts-e2e-p")
    sh("ip", "link", "set", "ts-e2e-p", "netns", ns)
    sh("ip", "addr", "add", "198.18.0.1/30", "dev", "ts-e2e-h")
    sh("ip", "link", "set", "ts-e2e-h", "up")
    sh("ip", "-n", ns, "addr", "add", "198.18.0.2/30", "dev", "ts-e2e-p")
    sh("ip", "-n", ns, "link", "set", "ts-e2e-p", "up")
    sh("ip", "-n", ns, "link", "set", "lo", "up")
    yield {"ns": ns, "client_ip": "198.18.0.1", "server_ip": "198.18.0.2"}
    sh("ip", "link", "del", "ts-e2e-h", check=False)
    sh("ip", "netns", "del", ns, check=False)


@pytest.fixture(scope="session")
def packet_agent(tmp_path_factory):
    """One agent reading exchanges and bytes from packets (--tcp-io packets),
    shared by the packet-path tests."""
    agent = Agent("--probes", "sched,tcp", "--tcp-io", "packets",
                  log_path=tmp_path_factory.mktemp("packets") / "agent.log")
    yield agent
    code, _ = agent.stop()
    assert code == 0, agent.log()


@pytest.fixture
def netns_server(netns_pair):
    """start(service, code, port, *args): server script `code` (which prints
    "listening" once it listens, see workloads.LISTEN) run as `service` in
    the namespace of netns_pair on its address; returns (ip, port).  Killed
    at the end of the test."""
    procs = []

    def start(service, code, port, *args):
        proc = run_named(service, code, netns_pair["server_ip"], port, *args,
                         netns=netns_pair["ns"], wait=False, stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "listening"
        return netns_pair["server_ip"], port

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


# A line-protocol server: answers "ok" to each line after `delay` seconds,
# first asking `upstream` (host:port) and PINGing the redis at `cache`, each
# over one kept-alive connection.
SERVER = """
import socket, sys, threading, time
ip, port, delay, upstream, cache = (sys.argv[1], int(sys.argv[2]), float(sys.argv[3]),
                                    sys.argv[4], sys.argv[5])
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((ip, port))
srv.listen(16)
print("listening", flush=True)

def serve(conn):
    up = None
    if upstream != "-":
        host, up_port = upstream.rsplit(":", 1)
        up = socket.create_connection((host, int(up_port))).makefile("rwb", buffering=0)
    redis = None
    if cache != "-":
        host, cache_port = cache.rsplit(":", 1)
        redis = socket.create_connection((host, int(cache_port))).makefile("rwb", buffering=0)
    f = conn.makefile("rwb", buffering=0)
    while f.readline():
        if up:
            up.write(b"req\\n")
            up.readline()
        if redis:
            redis.write(b"PING\\r\\n")
            redis.readline()
        time.sleep(delay)
        f.write(b"ok\\n")
    conn.close()

while True:
    conn, _ = srv.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


@pytest.fixture
def shop(netns_pair, tmp_path):
    """orders -> payment (40 ms) and orders -> cart-cache (a real redis-server,
    which rewrites its process title: its name must come from exec time)."""
    ns, ip = netns_pair["ns"], netns_pair["server_ip"]
    env = dict(os.environ, OTEL_SERVICE_NAME="cart-cache")
    redis = subprocess.Popen(
        ["ip", "netns", "exec", ns, "redis-server", "--bind", ip, "--port", "6379", "--save", "",
         "--appendonly", "no", "--protected-mode", "no", "--dir", str(tmp_path)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs = [redis]
    for _ in range(100):  # wait for its listener without connecting (no stray edge)
        if sh("ip", "netns", "exec", ns, "ss", "-Hltn", "sport", "=", ":6379").stdout.strip():
            break
        time.sleep(0.05)
    for service, port, delay, upstream, cache in (
            ("payment", 9102, PAYMENT_DELAY, "-", "-"),
            ("orders", 9101, 0.005, f"{ip}:9102", f"{ip}:6379")):
        proc = run_named(service, SERVER, ip, port, delay, upstream, cache, netns=ns, wait=False,
                         stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "listening"
    yield {"orders": (ip, 9101)}
    for proc in procs:
        proc.kill()
        proc.wait()
