"""The systemd units: accepted by systemd's checker, and the agent's
capability set is exactly what it needs (the agent runs with it here)."""

import configparser
import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from taskscope import config

from taskscope.agent.host.cgroups import find_cgroup2_mount

from tests.e2e.agent_process import REPO, Agent, free_port
from tests.e2e.workloads import loopback_exchanges, sh

UNITS = os.path.join(REPO, "systemd")


def unit(name):
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(os.path.join(UNITS, name))
    return parser


@pytest.mark.parametrize("name", ["taskscope-agent.service", "taskscope-collector.service"])
def test_unit_verifies(name):
    result = sh("systemd-analyze", "verify", os.path.join(UNITS, name), check=False)
    assert result.returncode == 0, result.stderr


def run_with_caps(caps, tmp_path, *args):
    """The agent as root limited to `caps`; returns (probe_up lines, log)."""
    port = free_port()
    bounding = "-all," + ",".join("+" + c.lower().removeprefix("cap_") for c in caps)
    log = tmp_path / "agent.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            ["setpriv", f"--bounding-set={bounding}", "--inh-caps=-all", "--",
             sys.executable, "-m", "taskscope", "agent", "--listen", f"127.0.0.1:{port}", *args],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        for _ in range(150):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    text = r.read().decode()
                break
            except OSError:
                assert proc.poll() is None, log.read_text()
                time.sleep(0.2)
        status = open(f"/proc/{proc.pid}/status").read()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    up = {line.split('"')[1]: line.endswith(" 1.0") for line in text.splitlines()
          if line.startswith("taskscope_probe_up{")}
    variants = {line.split('"')[1]: line.split('"')[3] for line in text.splitlines()
                if line.startswith("taskscope_probe_up{")}
    return up, status, log.read_text(), variants


def test_agent_runs_with_exactly_the_units_capabilities(tmp_path):
    caps = unit("taskscope-agent.service")["Service"]["CapabilityBoundingSet"].split()
    up, status, log, _ = run_with_caps(caps, tmp_path)
    assert up and all(up.values()), (up, log)
    effective = int(next(l for l in status.splitlines() if l.startswith("CapEff:")).split()[1], 16)
    assert effective & (1 << 21) == 0, "CAP_SYS_ADMIN leaked into the agent"


def test_without_net_admin_only_the_wire_capture_is_lost(tmp_path):
    caps = unit("taskscope-agent.service")["Service"]["CapabilityBoundingSet"].split()
    up, _, log, _ = run_with_caps([c for c in caps if c != "CAP_NET_ADMIN"], tmp_path)
    assert not up["trace_wire"] and "CAP_NET_ADMIN" in log
    assert all(ok for name, ok in up.items() if name != "trace_wire"), up


def test_packets_that_cannot_attach_fall_back_to_the_send_receive_tracepoints(tmp_path):
    # Without CAP_NET_ADMIN the packet programs cannot attach: the graph's
    # exchanges and bytes then come from the send/receive tracepoints.
    caps = unit("taskscope-agent.service")["Service"]["CapabilityBoundingSet"].split()
    up, _, log, variants = run_with_caps([c for c in caps if c != "CAP_NET_ADMIN"], tmp_path,
                                         "--probes", "sched,tcp")
    assert up["tcp_exchanges"] and up["tcp_bytes"], (up, log)
    assert variants["tcp_exchanges"] == "raw_tracepoints", variants
    assert "cannot be used" in log and "CAP_NET_ADMIN" in log


def test_install_and_uninstall_units(tmp_path):
    env = dict(os.environ, TASKSCOPE_UNIT_DIR=str(tmp_path / "units"),
               TASKSCOPE_CONFIG_DIR=str(tmp_path / "etc"),
               PATH=os.path.join(REPO, ".venv", "bin") + ":" + os.environ["PATH"])
    script = os.path.join(UNITS, "install-units.sh")
    done = subprocess.run([script, "install", "all"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(tmp_path / "units")) == ["taskscope-agent.service",
                                                      "taskscope-collector.service"]
    assert sorted(os.listdir(tmp_path / "etc")) == ["agent.yaml", "collector.yaml"]
    done = subprocess.run([script, "uninstall"], env=env, capture_output=True, text=True)
    assert done.returncode == 0 and os.listdir(tmp_path / "units") == []
    assert os.listdir(tmp_path / "etc"), "uninstall must keep the settings"


def test_shipped_configs_are_accepted(tmp_path):
    port = free_port()
    collector = subprocess.Popen(
        [sys.executable, "-m", "taskscope", "collector", "--config",
         os.path.join(UNITS, "collector.yaml"), "--listen", f"127.0.0.1:{port}"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(50):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/graph", timeout=5) as r:
                    assert r.status == 200
                break
            except OSError:
                assert collector.poll() is None, collector.stdout.read()
                time.sleep(0.2)
    finally:
        collector.terminate()
        collector.wait(timeout=10)
    config.apply(config.AgentConfig(), config.load_file(os.path.join(UNITS, "agent.yaml")),
                 "agent.yaml")


def load_generator():
    spec = importlib.util.spec_from_loader(
        "seccomp_generate", importlib.machinery.SourceFileLoader(
            "seccomp_generate", os.path.join(REPO, "deploy", "kubernetes", "seccomp", "generate")))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def syscall_names():
    names = {}
    with open("/usr/include/x86_64-linux-gnu/asm/unistd_64.h") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[0] == "#define" and parts[1].startswith("__NR_"):
                names[int(parts[2])] = parts[1][5:]
    return names


SYSCALL_TRACER = """
BPF_HASH(seen, u64, u64, 1024);
RAW_TRACEPOINT_PROBE(sys_enter) {
    if (bpf_get_current_cgroup_id() != CGROUP_ID)
        return 0;
    u64 nr = ctx->args[1];
    seen.increment(nr);
    return 0;
}
"""


def test_the_seccomp_profile_is_the_units_filter_and_holds_every_call_the_agent_makes(tmp_path):
    generator = load_generator()
    shipped = json.load(open(os.path.join(REPO, "deploy", "kubernetes", "seccomp",
                                          "taskscope-agent.json")))
    assert shipped == generator.profile(), "run deploy/kubernetes/seccomp/generate"
    allowed = set(shipped["syscalls"][0]["names"])
    unit_allowed = generator.expand(generator.unit_filter(), generator.syscall_groups())

    from bcc import BPF  # python3-bpfcc, as the agent
    cgroup = os.path.join(find_cgroup2_mount(), f"taskscope-syscalls-{os.getpid()}")
    os.mkdir(cgroup)
    tracer = BPF(text=SYSCALL_TRACER.encode(), cflags=[f"-DCGROUP_ID={os.stat(cgroup).st_ino}ULL"])
    agent = None
    try:
        agent = Agent(log_path=tmp_path / "agent.log",
                      program=("sh", "-c", f'echo $$ > {cgroup}/cgroup.procs && exec "$0" "$@"',
                               sys.executable, "-m", "taskscope"))
        loopback_exchanges(4, 20)
        time.sleep(2)
        for path in ("/metrics", "/api/graph", "/api/graph.svg", "/api/graph/sides",
                     "/api/traces", "/healthz", "/nonexistent"):
            try:
                agent.get(path)
            except urllib.error.HTTPError:
                pass
        code, _ = agent.stop()
        assert code == 0, agent.log()
        names = syscall_names()
        used = {names.get(nr.value, f"#{nr.value}") for nr in tracer[b"seen"].keys()}
    finally:
        if agent:
            agent.kill()
        tracer.cleanup()
        time.sleep(0.5)
        os.rmdir(cgroup)
    assert {"bpf", "perf_event_open"} <= used, sorted(used)  # the tracer saw the agent load
    assert used <= allowed, sorted(used - allowed)
    assert used - {"setns"} <= unit_allowed, sorted(used - unit_allowed)
