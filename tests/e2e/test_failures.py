"""Failed requests on graph edges (bpf/tcp/failures.h): HTTP/1.x 5xx
responses read off the packets, and exchanges aborted midway by a reset;
4xx and finished exchanges are not failures.  Real servers in a network
namespace, a real keep-alive client, judged on /api/graph and on
traces_service_graph_request_failed_total."""

import json
import time

import pytest

from tests.e2e.agent_process import Agent, graph_edge, value
from tests.e2e.workloads import LISTEN, run_named

REQUESTS = 100

# HTTP/1.1 keep-alive server: request i (from 0) is answered 500 when
# i % 5 == 4 (20 %), 404 when i % 10 == 1 (10 %), else 200.
HTTP_SERVER = LISTEN + """
while True:
    conn, _ = srv.accept()
    f = conn.makefile("rb")
    i = 0
    while True:
        line = f.readline()
        if not line:
            break
        while f.readline() not in (b"\\r\\n", b""):
            pass
        status = "500 Internal Server Error" if i % 5 == 4 else (
            "404 Not Found" if i % 10 == 1 else "200 OK")
        body = b"x" * 64
        conn.sendall(f"HTTP/1.1 {status}\\r\\nContent-Length: {len(body)}\\r\\n\\r\\n".encode() + body)
        i += 1
    conn.close()
"""

HTTP_CLIENT = """
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
f = s.makefile("rb")
for _ in range(int(sys.argv[3])):
    s.sendall(b"GET /order HTTP/1.1\\r\\nHost: shop\\r\\n\\r\\n")
    length = 0
    while True:
        line = f.readline()
        if line == b"\\r\\n":
            break
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    f.read(length)
s.close()
"""

# Each connection: two requests answered in full, then a third whose
# response is cut after a few bytes by a reset (SO_LINGER 0), or
# (argv[3] == "before") reset before any byte of it.
RESET_SERVER = LISTEN + """
import struct, time
while True:
    conn, _ = srv.accept()
    for i in range(3):
        if not conn.recv(4096):
            break
        if i < 2:
            conn.sendall(b"done\\n")
            continue
        if sys.argv[3] == "midway":
            conn.sendall(b"partial")
            time.sleep(0.05)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
        break
"""

RESET_CLIENT = """
import socket, sys
for _ in range(int(sys.argv[3])):
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
    for i in range(3):
        s.sendall(b"request\\n")
        try:
            got = s.recv(4096)
            if i == 2:
                while s.recv(4096):  # until the reset (or a FIN)
                    pass
        except ConnectionResetError:
            pass
    s.close()
"""


def failed_by_role(agent, service):
    """Failed requests the agent's own sides of `service` counted, by role."""
    _, _, body = agent.get("/api/graph/sides")
    out = {}
    for s in json.loads(body)["sides"]:
        if s["service"] == service:
            out[s["role"]] = out.get(s["role"], 0) + s["failed_requests"]
    return out


def test_http_5xx_responses_are_failed_requests_4xx_are_not(packet_agent, netns_server):
    ip, port = netns_server("fl-http", HTTP_SERVER, 9411)
    run_named("fl-caller", HTTP_CLIENT, ip, port, REQUESTS)
    e = graph_edge(packet_agent, "fl-caller", "fl-http", REQUESTS)
    assert e, packet_agent.get("/api/graph?window=15m")[2]
    fives = REQUESTS // 5
    assert (e["requests"], e["failed_requests"], e["failed"]) == (REQUESTS, fives, fives), e
    assert e["connect_failed"] == 0
    # The server's side read the same status lines leaving.  Its connection
    # stays open (the server holds it): its last exchange counts once its
    # response has been quiet for a second (agent/kernel/maps.py).
    time.sleep(1.2)
    assert failed_by_role(packet_agent, "fl-http") == {"server": fives}, packet_agent.get("/api/graph/sides")[2]
    samples = packet_agent.scrape()
    assert value(samples, "traces_service_graph_request_failed_total", client="fl-caller",
                 server="fl-http") == fives
    assert value(samples, "traces_service_graph_request_total", client="fl-caller",
                 server="fl-http") == REQUESTS


@pytest.mark.parametrize("when, port", [("midway", 9412), ("before", 9413)])
def test_a_reset_in_the_middle_of_an_exchange_fails_it(packet_agent, netns_server, when, port):
    connections = 5
    server = f"fl-reset-{when}"
    ip, port = netns_server(server, RESET_SERVER, port, when)
    run_named("fl-resetee", RESET_CLIENT, ip, port, connections)
    e = graph_edge(packet_agent, "fl-resetee", server, 3 * connections)
    assert e, packet_agent.get("/api/graph?window=15m")[2]
    # Two good exchanges and one cut by the reset per connection, on both
    # sides: the client saw the reset arrive, the server sent it.
    assert e["client_requests"] == e["server_requests"] == 3 * connections, e
    assert e["failed_requests"] == connections, e
    assert failed_by_role(packet_agent, server) == {"server": connections}


def test_4xx_responses_fail_when_configured(netns_server, tmp_path):
    agent = Agent("--probes", "tcp", "--tcp-io", "packets", "--http-4xx-failed",
                  log_path=tmp_path / "agent.log")
    try:
        ip, port = netns_server("fl-http-strict", HTTP_SERVER, 9414)
        run_named("fl-strict-caller", HTTP_CLIENT, ip, port, REQUESTS)
        e = graph_edge(agent, "fl-strict-caller", "fl-http-strict", REQUESTS)
    finally:
        agent.stop()
    # 20 answered 500 and 10 answered 404.
    assert e and e["failed_requests"] == REQUESTS // 5 + REQUESTS // 10, e
