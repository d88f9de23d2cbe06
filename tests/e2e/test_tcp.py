"""TCP connects, bytes, RTT and retransmits across a veth pair into a netns."""

import subprocess
import time

import pytest

from tests.e2e.agent_process import Agent, value
from tests.e2e.workloads import LINE_SERVER, run_named, sh

CONNECTS = 20
PAYLOAD = 1000

@pytest.fixture
def server(netns_pair):
    procs = []

    def start(port, service):
        proc = run_named(service, LINE_SERVER, netns_pair["server_ip"], port,
                         netns=netns_pair["ns"], wait=False, stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "listening"
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def test_connects_and_bytes_counted_per_service(agent, netns_pair, server):
    server(8080, "tcp-server")
    before = agent.scrape()
    run_named("tcp-client", f"""
        import socket
        for _ in range({CONNECTS}):
            s = socket.create_connection(({netns_pair["server_ip"]!r}, 8080))
            s.sendall(b"x" * {PAYLOAD - 1} + b"\\n")
            assert s.recv(16) == b"ok\\n"
            s.close()
    """)
    time.sleep(0.2)
    after = agent.scrape()

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("taskscope_tcp_connect_latency_seconds_count", service="tcp-client") == CONNECTS
    assert delta("taskscope_tcp_connect_latency_seconds_sum", service="tcp-client") > 0
    assert delta("taskscope_tcp_connections_opened_total",
                 service="tcp-client", direction="active") == CONNECTS
    assert delta("taskscope_tcp_connections_opened_total",
                 service="tcp-server", direction="passive") == CONNECTS
    assert delta("taskscope_tcp_connections_closed_total", service="tcp-client") == CONNECTS
    assert delta("taskscope_tcp_sent_bytes_total", service="tcp-client") == CONNECTS * PAYLOAD
    assert delta("taskscope_tcp_received_bytes_total", service="tcp-server") == CONNECTS * PAYLOAD
    assert delta("taskscope_tcp_received_bytes_total", service="tcp-client") == CONNECTS * 3
    # RTT is sampled on each connection's first payload packet, then on
    # about one in eight per CPU; across a veth it stays below 10 ms.
    rtt_samples = delta("taskscope_tcp_rtt_seconds_count", service="tcp-client")
    assert rtt_samples >= CONNECTS
    assert delta("taskscope_tcp_rtt_seconds_sum", service="tcp-client") / rtt_samples < 0.01


def test_dropped_peer_traffic_makes_retransmits_grow(agent, netns_pair, server):
    ns, port = netns_pair["ns"], 8081
    server(port, "rtx-server")
    client = run_named("rtx-client", f"""
        import socket, sys, time
        s = socket.create_connection(({netns_pair["server_ip"]!r}, {port}))
        s.settimeout(0.05)
        print("connected", flush=True)
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            try:
                s.send(b"y" * 4096)
            except socket.timeout:
                pass
    """, wait=False, stdout=subprocess.PIPE, text=True)
    try:
        assert client.stdout.readline().strip() == "connected"
        time.sleep(0.5)
        before = value(agent.scrape(), "taskscope_tcp_retransmits_total", service="rtx-client")
        sh("ip", "netns", "exec", ns, "iptables", "-I", "INPUT", "-p", "tcp",
           "--dport", str(port), "-j", "DROP")
        time.sleep(2.5)
        after = value(agent.scrape(), "taskscope_tcp_retransmits_total", service="rtx-client")
    finally:
        sh("ip", "netns", "exec", ns, "iptables", "-D", "INPUT", "-p", "tcp",
           "--dport", str(port), "-j", "DROP", check=False)
        client.kill()
        client.wait()
    # RTO backoff from 200 ms gives at least 3 retransmits in 2.5 s.
    assert after - before >= 3, (before, after)


def test_listener_opened_before_the_agent_is_charged_its_connections(netns_pair, server, tmp_path):
    server(8082, "early-server")
    late = Agent("--probes", "tcp", log_path=tmp_path / "agent.log")
    try:
        run_named("late-client", f"""
            import socket
            for _ in range(5):
                s = socket.create_connection(({netns_pair["server_ip"]!r}, 8082))
                s.sendall(b"hi\\n")
                s.recv(16)
                s.close()
        """)
        samples = late.scrape()
    finally:
        late.stop()
    assert value(samples, "taskscope_tcp_connections_opened_total",
                 service="early-server", direction="passive") == 5


CONNECT_5 = """
import socket, sys
for _ in range(5):
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
    s.sendall(b"hi\\n")
    s.recv(16)
    s.close()
"""


@pytest.mark.parametrize("early", [False, True], ids=["started after", "started before"])
def test_same_port_in_two_namespaces_keeps_two_owners(netns_pair, server, tmp_path, early):
    # Every pod of a node may listen on 8080: listeners are told apart by
    # network namespace, whether the kernel saw them listen or /proc did.
    def listen():
        server(8083, "ns-listener")
        host = run_named("host-listener", LINE_SERVER, netns_pair["client_ip"], 8083,
                         wait=False, stdout=subprocess.PIPE, text=True)
        assert host.stdout.readline().strip() == "listening"
        return host

    host = listen() if early else None
    agent = Agent("--probes", "tcp", log_path=tmp_path / "agent.log")
    try:
        host = host or listen()
        run_named("to-ns", CONNECT_5, netns_pair["server_ip"], 8083)
        run_named("to-host", CONNECT_5, netns_pair["client_ip"], 8083)
        samples = agent.scrape()
    finally:
        agent.stop()
        host.kill()
        host.wait()
    for service in ("ns-listener", "host-listener"):
        assert value(samples, "taskscope_tcp_connections_opened_total",
                     service=service, direction="passive") == 5, service
