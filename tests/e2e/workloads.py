"""Real processes for the end-to-end tests: named, pinned, namespaced."""

import contextlib
import os
import socket
import subprocess
import sys
import textwrap
import threading

PYTHON = sys.executable
# The shop's payment service answers after this long (tests/e2e/conftest.py).
PAYMENT_DELAY = 0.040


def run_named(service, code, *args, cpu=None, nice=None, netns=None, cgroup_procs=None, wait=True,
              **kw):
    """Run Python `code` (with `args` as argv) as a process named `service`.

    `service` becomes its OTEL_SERVICE_NAME (None: unnamed, found by cgroup
    or comm).
    `cpu` pins it (taskset), `nice` lowers its priority, `netns` runs it in a network namespace, and
    `cgroup_procs` moves it into a cgroup before it execs Python.
    """
    env = dict(os.environ)
    env.pop("OTEL_SERVICE_NAME", None)
    if service:
        env["OTEL_SERVICE_NAME"] = service
    cmd = [PYTHON, "-c", textwrap.dedent(code), *map(str, args)]
    if cgroup_procs:
        cmd = ["sh", "-c", f'echo $$ > {cgroup_procs} && exec "$0" "$@"', *cmd]
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu), *cmd]
    if nice is not None:
        cmd = ["nice", "-n", str(nice), *cmd]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    if wait:
        return subprocess.run(cmd, env=env, check=True, capture_output=True, text=True, **kw)
    return subprocess.Popen(cmd, env=env, **kw)


@contextlib.contextmanager
def busy_loops(n, cpu):
    """`n` CPU hogs pinned to `cpu`, killed on exit."""
    procs = [run_named("busy-loop", "while True: pass", cpu=cpu, wait=False) for _ in range(n)]
    try:
        yield procs
    finally:
        for p in procs:
            p.kill()
            p.wait()


def loopback_exchanges(connections, exchanges):
    """In this process, `connections` TCP connections on loopback, one after
    the other, each making `exchanges` ping/ok exchanges before it closes on
    both ends; returns the server's port."""
    def answer(conn):
        with conn:
            while conn.recv(16):
                conn.sendall(b"ok")

    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        for _ in range(connections):
            client = socket.create_connection(("127.0.0.1", port))
            conn, _ = listener.accept()
            server = threading.Thread(target=answer, args=(conn,))
            server.start()
            with client:
                for _ in range(exchanges):
                    client.sendall(b"ping")
                    assert client.recv(16) == b"ok"
            server.join(timeout=5)
    return port


def sh(*cmd, check=True):
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


# Answers "ok" to every chunk that ends a line; drains everything else.
# How every test server script starts: listen on argv[1]:argv[2] and say
# so (netns_server waits for the line).
LISTEN = """
import socket, sys
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2])))
srv.listen(64)
print("listening", flush=True)
"""

LINE_SERVER = LISTEN + """
while True:
    conn, _ = srv.accept()
    while True:
        data = conn.recv(65536)
        if not data:
            break
        if data.endswith(b"\\n"):
            conn.sendall(b"ok\\n")
    conn.close()
"""
