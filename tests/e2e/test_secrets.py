"""Payload and environment bytes never stay in the agent's maps.

The packet programs read a request's first bytes (headers, cookies) into a
per-CPU scratch buffer, and the exec probe reads the environment (tokens,
passwords) into another; both outlive the event unless cleared.  After
requests with a secret cookie and a process with a secret variable, every
map the agent holds is dumped with bpftool and searched for the secrets.
"""

import json
import os
import socket
import subprocess
import threading
import time
import uuid

from .agent_process import value

MAX_DUMP_BYTES = 8 << 20  # the pid-indexed arrays (pid_max entries) hold no bytes read


def agent_map_ids(pid):
    ids = set()
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                for line in f:
                    if line.startswith("map_id:"):
                        ids.add(int(line.split()[1]))
        except OSError:
            continue
    return ids


def hex_runs(node, out):
    """Every list of "0xNN" strings in bpftool's JSON, as bytes."""
    if isinstance(node, list):
        if node and all(isinstance(x, str) and x.startswith("0x") for x in node):
            out.append(bytes(int(x, 16) for x in node))
        else:
            for x in node:
                hex_runs(x, out)
    elif isinstance(node, dict):
        for x in node.values():
            hex_runs(x, out)
    return out


def serve_http(server):
    while True:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn:
            while conn.recv(4096):
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


def test_no_request_or_environment_bytes_stay_in_any_map(agent):
    cookie = f"C00KIE{uuid.uuid4().hex}".encode()
    token = f"T0KEN{uuid.uuid4().hex}".encode()
    server = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=serve_http, args=(server,), daemon=True).start()
    port = server.getsockname()[1]
    trace_id = uuid.uuid4().hex
    request = (f"GET /cart HTTP/1.1\r\nHost: shop\r\nCookie: session=".encode() + cookie +
               f"\r\ntraceparent: 00-{trace_id}-00f067aa0ba902b7-01\r\n\r\n".encode())
    env = dict(os.environ, OTEL_SERVICE_NAME="secret-holder", SHOP_TOKEN=token.decode())
    subprocess.run(["python3", "-c", f"""
import socket
c = socket.create_connection(("127.0.0.1", {port}))
for _ in range(50):
    c.sendall({request!r})
    c.recv(4096)
c.close()
"""], env=env, check=True)
    server.close()
    # The requests were seen (their trace contexts read), so the bytes did pass.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        _, _, body = agent.get(f"/api/traces/{trace_id}")
        if trace_id in body:
            break
        time.sleep(0.5)
    assert trace_id in body, agent.log()[-2000:]

    searched = 0
    for map_id in sorted(agent_map_ids(agent.proc.pid)):
        info = json.loads(subprocess.run(["bpftool", "-j", "map", "show", "id", str(map_id)],
                                         check=True, capture_output=True).stdout)
        size = info["max_entries"] * (info["bytes_key"] + info["bytes_value"])
        if info["type"] in ("ringbuf", "perf_event_array", "prog_array") or size > MAX_DUMP_BYTES:
            continue
        dump = subprocess.run(["bpftool", "-j", "map", "dump", "id", str(map_id)],
                              check=True, capture_output=True).stdout
        for run in hex_runs(json.loads(dump), []):
            assert cookie not in run and token not in run, f"map {info.get('name')} holds it"
        searched += 1
    assert searched >= 10
    assert value(agent.scrape(), "taskscope_probe_up", probe="trace_wire") == 1
