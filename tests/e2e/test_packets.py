"""Exchanges and bytes from packets (bpf/tcp/packets.h), on real sockets
across a veth pair into a network namespace: the exchange state machine
(server and client sides, pipelined requests, responses in pieces, a FIN
carrying payload), retransmitted payload counted once, and the variants
chosen when asked for."""

import subprocess
import time

import pytest

from tests.e2e.agent_process import Agent, graph_edge, value
from tests.e2e.workloads import LISTEN, run_named, sh

PORTS = iter(range(9301, 9399))

# Each chunk is a request; it answers with `pieces` writes `gap` seconds
# apart.  A thread per connection.
SERVER = LISTEN + """
import threading, time
pieces, gap = int(sys.argv[3]), float(sys.argv[4])

def serve(conn):
    try:
        while True:
            data = conn.recv(65536)
            if not data:
                break
            for _ in range(pieces):
                conn.sendall(b"r" * 100)
                time.sleep(gap)
    except OSError:  # the client left early
        pass
    conn.close()

while True:
    conn, _ = srv.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""

# Keep-alive: argv[3] requests of argv[4] bytes, each awaiting argv[5] bytes.
CLIENT = """
import socket, sys
requests, size, answer = (int(a) for a in sys.argv[3:6])
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
for _ in range(requests):
    s.sendall(b"q" * size)
    got = 0
    while got < answer:
        got += len(s.recv(4096))
s.close()
"""


@pytest.fixture
def server(netns_server):
    def start(service, pieces=1, gap=0.0):
        return netns_server(service, SERVER, next(PORTS), pieces, gap)

    return start


def edge(agent, client, server):
    return graph_edge(agent, client, server)


def settle(agent):
    """Exchanges reach their edge when the connection closes (these do)."""
    time.sleep(0.5)


def test_the_agent_reads_exchanges_from_packets(packet_agent):
    samples = packet_agent.scrape()
    assert value(samples, "taskscope_probe_up", probe="tcp_exchanges", variant="packets") == 1
    assert value(samples, "taskscope_probe_up", probe="tcp_bytes", variant="packets") == 1


def test_keep_alive_exchanges_both_sides_and_exact_bytes(packet_agent, server):
    ip, port = server("pk-server")
    run_named("pk-client", CLIENT, ip, port, 12, 300, 100)
    settle(packet_agent)
    e = edge(packet_agent, "pk-client", "pk-server")
    assert e, packet_agent.get("/api/graph?window=15m")[2]
    assert (e["client_requests"], e["server_requests"]) == (12, 12)
    assert (e["sent_bytes"], e["received_bytes"]) == (12 * 300, 12 * 100)
    samples = packet_agent.scrape()
    assert value(samples, "taskscope_tcp_sent_bytes_total", service="pk-client") == 3600
    assert value(samples, "taskscope_tcp_received_bytes_total", service="pk-server") == 3600


def test_a_response_in_pieces_is_one_exchange_and_pipelined_requests_one(packet_agent, server):
    # The response comes in 3 writes 20 ms apart (the client ACKs between
    # them): still one exchange.  Then 3 requests sent back to back before
    # any response: one direction change, so one exchange, as documented.
    ip, port = server("pk-slow-server", pieces=3, gap=0.02)
    run_named("pk-slow-client", """
        import socket, sys, time
        s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
        s.sendall(b"q" * 50)
        got = 0
        while got < 300:
            got += len(s.recv(4096))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(3):
            s.sendall(b"p" * 10)
        time.sleep(0.3)
        s.close()
    """, ip, port)
    settle(packet_agent)
    e = edge(packet_agent, "pk-slow-client", "pk-slow-server")
    assert e and e["client_requests"] == 2, packet_agent.get("/api/graph?window=15m")[2]
    assert e["p50_seconds"] >= 0.04, e  # the first exchange lasted its three pieces


def test_a_fin_carrying_the_last_request(packet_agent, server):
    ip, port = server("pk-fin-server")
    run_named("pk-fin-client", """
        import socket, sys
        s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
        s.sendall(b"last" * 10)
        s.shutdown(socket.SHUT_WR)
        got = 0
        while got < 100:
            got += len(s.recv(4096))
        s.close()
    """, ip, port)
    settle(packet_agent)
    e = edge(packet_agent, "pk-fin-client", "pk-fin-server")
    assert e and e["client_requests"] == 1 and e["sent_bytes"] == 40, e


def test_retransmitted_payload_is_counted_once(packet_agent, server, netns_pair):
    # The server's namespace drops every third segment on arrival: the
    # client's egress program sees those bytes again when they are resent.
    ip, port = server("pk-lossy-server")
    rule = ["INPUT", "-p", "tcp", "--dport", str(port), "-m", "statistic", "--mode", "nth",
            "--every", "3", "--packet", "0", "-j", "DROP"]
    sh("ip", "netns", "exec", netns_pair["ns"], "iptables", "-I", *rule)
    try:
        run_named("pk-lossy-client", CLIENT, ip, port, 6, 2000, 100)
    finally:
        sh("ip", "netns", "exec", netns_pair["ns"], "iptables", "-D", *rule, check=False)
    settle(packet_agent)
    samples = packet_agent.scrape()
    assert value(samples, "taskscope_tcp_retransmits_total", service="pk-lossy-client") >= 1
    assert value(samples, "taskscope_tcp_sent_bytes_total", service="pk-lossy-client") == 12000
    e = edge(packet_agent, "pk-lossy-client", "pk-lossy-server")
    assert e and e["client_requests"] == 6 and e["sent_bytes"] == 12000, e


def test_forced_syscall_variant_draws_the_same_edge(server, tmp_path):
    agent = Agent("--probes", "sched,tcp", "--tcp-io", "syscalls", log_path=tmp_path / "a.log")
    try:
        ip, port = server("sc-server")
        run_named("sc-client", CLIENT, ip, port, 5, 30, 100)
        settle(agent)
        samples = agent.scrape()
        e = edge(agent, "sc-client", "sc-server")
    finally:
        agent.stop()
    assert value(samples, "taskscope_probe_up", probe="tcp_exchanges",
                 variant="raw_tracepoints") == 1
    assert e and e["client_requests"] == 5 and e["sent_bytes"] == 150, e


def test_pooled_connections_are_counted_at_the_next_read(packet_agent, server):
    # 300 requests over a pool of 4 connections that stay open: nothing
    # closes them, no packet follows the last response, yet every exchange
    # is on the edge once the responses have been quiet for a second.
    ip, port = server("pk-pool-server")
    client = run_named("pk-pool-client", """
        import socket, sys, time
        socket.setdefaulttimeout(10)
        pool = [socket.create_connection((sys.argv[1], int(sys.argv[2]))) for _ in range(4)]
        for i in range(300):
            s = pool[i % 4]
            s.sendall(b"q" * 20)
            got = 0
            while got < 100:
                got += len(s.recv(4096))
        print("done", flush=True)
        time.sleep(60)
    """, ip, port, wait=False, stdout=subprocess.PIPE, text=True)
    try:
        assert client.stdout.readline().strip() == "done"  # (the client's own timeout: 60 s)
        time.sleep(1.1)
        e = edge(packet_agent, "pk-pool-client", "pk-pool-server")
        samples = packet_agent.scrape()
    finally:
        client.kill()
        client.wait()
    assert e and (e["client_requests"], e["server_requests"]) == (300, 300), e
    assert (e["sent_bytes"], e["received_bytes"]) == (300 * 20, 300 * 100), e
    assert value(samples, "traces_service_graph_request_total", client="pk-pool-client",
                 server="pk-pool-server") == 300
