"""The service graph of a small shop: gateway -> orders -> payment."""

import json
import subprocess
import time

import pytest

from tests.e2e.workloads import run_named

REQUESTS = 30
PAYMENT_DELAY = 0.040

# A line-protocol server: answers "ok" to each line after `delay` seconds,
# first asking `upstream` (host:port) over one kept-alive connection.
SERVER = """
import socket, sys, threading, time
ip, port, delay, upstream = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
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
    f = conn.makefile("rwb", buffering=0)
    while f.readline():
        if up:
            up.write(b"req\\n")
            up.readline()
        time.sleep(delay)
        f.write(b"ok\\n")
    conn.close()

while True:
    conn, _ = srv.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


@pytest.fixture
def shop(netns_pair):
    ns, ip = netns_pair["ns"], netns_pair["server_ip"]
    procs = []
    for service, port, delay, upstream in (("payment", 9102, PAYMENT_DELAY, "-"),
                                            ("orders", 9101, 0.005, f"{ip}:9102")):
        proc = run_named(service, SERVER, ip, port, delay, upstream, netns=ns, wait=False,
                         stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "listening"
    yield {"orders": (ip, 9101)}
    for proc in procs:
        proc.kill()
        proc.wait()


def test_shop_edges_counts_and_latency(agent, shop):
    ip, port = shop["orders"]
    run_named("gateway", f"""
        import socket
        f = socket.create_connection(({ip!r}, {port})).makefile("rwb", buffering=0)
        for _ in range({REQUESTS}):
            f.write(b"req\\n")
            assert f.readline() == b"ok\\n"
    """)
    time.sleep(0.5)  # the last exchange is closed when the connections close
    status, content_type, body = agent.get("/api/graph")
    assert status == 200 and content_type == "application/json"
    graph = json.loads(body)
    ours = {"gateway", "orders", "payment"}
    edges = {(e["source"], e["target"]): e for e in graph["edges"]
             if e["source"] in ours or e["target"] in ours}
    assert set(edges) == {("gateway", "orders"), ("orders", "payment")}, graph["edges"]

    to_orders, to_payment = edges["gateway", "orders"], edges["orders", "payment"]
    assert abs(to_orders["requests"] - REQUESTS) <= 0.05 * REQUESTS, to_orders
    assert abs(to_payment["requests"] - REQUESTS) <= 0.05 * REQUESTS, to_payment
    assert to_payment["server_requests"] == to_payment["requests"]
    assert abs(to_payment["p50_seconds"] - PAYMENT_DELAY) <= 0.2 * PAYMENT_DELAY, to_payment
    # gateway waits for orders, which waits for payment: the client sees both.
    assert to_orders["p50_seconds"] > to_payment["p50_seconds"]
    assert to_orders["connections"] == 1 and to_payment["connections"] == 1
    assert to_orders["sent_bytes"] == 4 * REQUESTS and to_orders["received_bytes"] == 3 * REQUESTS
    kinds = {n["id"]: n["kind"] for n in graph["nodes"]}
    assert all(kinds[s] == "service" for s in ours)


def test_bad_window_is_a_clear_400(agent):
    import urllib.error
    with pytest.raises(urllib.error.HTTPError) as err:
        agent.get("/api/graph?window=soon")
    assert err.value.code == 400
    assert b"not a duration like 60s" in err.value.read()
