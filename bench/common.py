"""Helpers shared by the benchmarks: nginx, wrk, the agent, CPU accounting."""

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AGENT = os.path.join(REPO, ".venv", "bin", "taskscope")
NGINX_CONF = """
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    server {{
        listen 127.0.0.1:{port} reuseport;
        root {dir};
        location / {{ }}
    }}
}}
"""


def start_nginx(workdir, port, conf_text=None):
    """nginx serving a 613-byte page on 127.0.0.1:port (or `conf_text`), pinned to CPU 0."""
    with open(os.path.join(workdir, "index.html"), "w") as f:
        f.write("<html>" + "x" * 600 + "</html>\n")
    conf = os.path.join(workdir, "nginx.conf")
    with open(conf, "w") as f:
        f.write((conf_text or NGINX_CONF).format(dir=workdir, port=port))
    # nginx on CPU 0 and wrk on CPU 1: the scheduler shuffling them is the
    # largest source of noise on a two-core machine.
    subprocess.run(["taskset", "-c", "0", "nginx", "-c", conf], check=True)
    return conf


# wrk paces each connection: one request per millisecond at most, so the
# number of connections sets the offered load (bench/overhead --load half).
PACED = os.path.join(REPO, "bench", "paced.lua")
# wrk with a traceparent on every request (TRACEPARENT=random or fixed).
TRACED = os.path.join(REPO, "bench", "traceparent.lua")
# Set by bench/overhead --traceparent: every wrk of the run sends it.
TRACEPARENT = {"mode": None}


def wrk(port, seconds, connections, path="/index.html", paced=False):
    script = ["-s", PACED] if paced else []
    env = None
    if TRACEPARENT["mode"]:
        script = ["-s", TRACED]  # (not with paced: --load half is untraced)
        env = dict(os.environ, TRACEPARENT=TRACEPARENT["mode"])
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
                          *script, f"http://127.0.0.1:{port}{path}"],
                         check=True, capture_output=True, text=True, env=env).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return requests, rate


def scrape(url, timeout=30):
    """{series as /metrics writes it, `name{labels}`: value} of one scrape."""
    text = urllib.request.urlopen(url + "/metrics", timeout=timeout).read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            out[series] = float(value)
    return out


def busy_ticks():
    """Non-idle CPU ticks of the whole machine; steal (the host's noise) excluded."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq = map(int, f.readline().split()[1:8])
    return user + nice + system + irq + softirq


def measured_wrk(port, seconds, connections, path="/index.html", warmup=1, paced=False):
    """(requests, requests/s, machine CPU ticks per request) of one round,
    after `warmup` seconds of the same load: right after the agent starts or
    stops, the first second runs noticeably slower or faster here."""
    if warmup:
        wrk(port, warmup, connections, path, paced)
    before = busy_ticks()
    requests, rate = wrk(port, seconds, connections, path, paced)
    return requests, rate, (busy_ticks() - before) / requests


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def rotated(sides, round_index):
    """The order in which one round measures `sides`: rotated each round, so
    that drift over a run, which is large here, favours none of them."""
    k = round_index % len(sides)
    return sides[k:] + sides[:k]


class RunningAgent:
    def __init__(self, port, extra_args=(), log_path=None):
        self.url = f"http://127.0.0.1:{port}"
        started = time.monotonic()
        out = open(log_path, "w") if log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen([AGENT, "agent", "--listen", f"127.0.0.1:{port}", *extra_args],
                                     stdout=out, stderr=subprocess.STDOUT)
        while True:
            if self.proc.poll() is not None:
                sys.exit(f"the agent exited with {self.proc.returncode}")
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=1).read()
                break
            except OSError:
                time.sleep(0.05)
        self.startup = time.monotonic() - started

    def scrape_seconds(self):
        started = time.monotonic()
        urllib.request.urlopen(self.url + "/metrics", timeout=10).read()
        return time.monotonic() - started

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=10)


class RunningFloor:
    """bench/floor: programs that do nothing on the agent's per-request hooks
    (with `packets`, on those of exchanges and bytes from packets)."""

    def __init__(self, packets=False):
        started = time.monotonic()
        self.proc = subprocess.Popen(["/usr/bin/python3", os.path.join(REPO, "bench", "floor"),
                                      *(["--packets"] if packets else [])],
                                     stdout=subprocess.PIPE, text=True)
        if self.proc.stdout.readline().strip() != "ready":
            sys.exit(f"bench/floor exited with {self.proc.wait()}")
        self.startup = time.monotonic() - started

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=10)


BPFTRACE_SCRIPT = os.path.join(REPO, "bench", "bar.bt")


class RunningBpftrace:
    """bench/bar.bt under bpftrace: the bar to beat, a plain script on the
    tracepoints the agent uses."""

    def __init__(self):
        started = time.monotonic()
        self.proc = subprocess.Popen(["bpftrace", BPFTRACE_SCRIPT], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        said = []
        while not said or not said[-1].startswith("Attaching"):
            said.append(self.proc.stdout.readline())
            if not said[-1]:  # it warns that RLIMIT_MEMLOCK cannot be raised; needless here
                sys.exit("bpftrace did not start: " + "".join(said))
        time.sleep(0.5)  # "Attaching" comes before the probes are attached
        self.startup = time.monotonic() - started

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        self.proc.communicate(timeout=30)  # it prints its maps on the way out
