"""End-to-end fixtures: the real agent, real namespaces, real cgroups."""

import os

import pytest

from tests.e2e.agent_process import Agent
from tests.e2e.workloads import sh


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
