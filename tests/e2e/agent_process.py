"""Starts the real agent as a subprocess and reads its /metrics."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Agent:
    """One running `taskscope agent`; scrape() returns {(name, labels): value}."""

    def __init__(self, *args, log_path, program=(sys.executable, "-m", "taskscope"), cwd=REPO):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "w")
        cmd = [*program, "agent", "--listen", f"127.0.0.1:{self.port}", *args]
        self.proc = subprocess.Popen(cmd, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/livez", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"agent not ready after {timeout}s:\n{self.log()}")

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def get(self, path, accept=None):
        req = urllib.request.Request(self.url + path)
        if accept:
            req.add_header("Accept", accept)
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()

    def scrape(self):
        _, _, text = self.get("/metrics")
        samples = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return samples

    def stop(self, timeout=2.0):
        """SIGTERM; returns (exit code, seconds taken)."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout + 3)
        finally:
            self._log.close()
        return code, time.monotonic() - started

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def value(samples, name, **labels):
    """Sum of the samples of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def services(samples, name):
    return {dict(ls).get("service") for (n, ls), _ in samples.items() if n == name}


def quantile(samples, family, q, **labels):
    """Upper bound (seconds) of the bucket holding quantile q of a histogram."""
    buckets = sorted(
        (float(dict(ls)["le"]), v) for (n, ls), v in samples.items()
        if n == family + "_bucket" and set(labels.items()) <= set(ls))
    total = buckets[-1][1] if buckets else 0
    if not total:
        return None
    for le, cumulative in buckets:
        if cumulative >= q * total:
            return le
    return float("inf")


def histogram_delta(before, after, family, **labels):
    """A histogram's per-bucket growth between two scrapes, as a sample dict."""
    out = {}
    for key, v in after.items():
        if key[0] == family + "_bucket" and set(labels.items()) <= set(key[1]):
            out[key] = v - before.get(key, 0)
    return out


def graph_edge(agent, client, server, requests=0, timeout=10):
    """The graph's client -> server edge (15-minute window) once it exists and
    shows at least `requests`, or what there is after `timeout` seconds (None
    without the edge): a new listener is named at the agent's next listener
    scan, every 5 s."""
    deadline = time.monotonic() + timeout
    while True:
        _, _, body = agent.get("/api/graph?window=15m")
        found = [e for e in json.loads(body)["edges"]
                 if e["source"] == client and e["target"] == server]
        if (found and found[0]["requests"] >= requests) or time.monotonic() > deadline:
            return found[0] if found else None
        time.sleep(0.5)
