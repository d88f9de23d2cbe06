"""Start-up, degraded probes, bad input and shutdown of the real agent."""

import json
import os
import subprocess
import sys
import time
import urllib.error

from taskscope.agent.kernel.tracefs import find_tracefs
from tests.e2e.agent_process import REPO, Agent, value
from tests.e2e.workloads import sh


def bpf_program_ids():
    return {p["id"] for p in json.loads(sh("bpftool", "prog", "show", "--json").stdout)}


def program_names(ids):
    return {p.get("name") for p in json.loads(sh("bpftool", "prog", "show", "--json").stdout)
            if p["id"] in ids}


def tracefs_without(tmp_path, missing):
    """A tracefs look-alike whose events/ lacks `missing` (category/event)."""
    real = find_tracefs()
    events = tmp_path / "tracefs" / "events"
    for category in os.listdir(f"{real}/events"):
        src = f"{real}/events/{category}"
        if not os.path.isdir(src):
            continue
        (events / category).mkdir(parents=True)
        for event in os.listdir(src):
            if f"{category}/{event}" != missing:
                os.symlink(f"{src}/{event}", events / category / event)
    return events.parent


def test_missing_tracepoint_disables_one_probe_and_shutdown_unloads_all(tmp_path):
    fake = tracefs_without(tmp_path, "tcp/tcp_probe")
    before = bpf_program_ids()
    agent = Agent("--tracefs", str(fake), log_path=tmp_path / "agent.log")
    try:
        loaded = bpf_program_ids() - before
        samples = agent.scrape()
        assert value(samples, "taskscope_probe_up", probe="tcp_rtt") == 0
        for probe in ("runqueue", "blockio", "tcp_connect", "tcp_bytes", "tcp_retransmit"):
            assert value(samples, "taskscope_probe_up", probe=probe) == 1, probe
        assert "probe tcp_rtt disabled: tracepoint tcp:tcp_probe not found" in agent.log()
        # Still serving after the degraded start, alive, and saying what is missing.
        assert agent.get("/livez")[0] == 200
        try:
            agent.get("/healthz")
            raise AssertionError("/healthz answered 200 with tcp_rtt down")
        except urllib.error.HTTPError as exc:
            health = json.loads(exc.read())
            assert exc.code == 503 and health["status"] == "degraded"
            assert health["probes_down"] == ["tcp_rtt"] and health["threads_down"] == []
        assert loaded, "the agent loaded no BPF program"
    finally:
        code, seconds = agent.stop()
    assert code == 0 and seconds < 2.0, (code, seconds)
    assert not loaded & bpf_program_ids(), "BPF programs left loaded after SIGTERM"


def test_openmetrics_when_asked(agent):
    status, content_type, body = agent.get(
        "/metrics", accept="application/openmetrics-text; version=1.0.0")
    assert status == 200 and content_type.startswith("application/openmetrics-text")
    assert body.rstrip().endswith("# EOF")


def run_agent(*args, **kw):
    return subprocess.run([sys.executable, "-m", "taskscope", "agent", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60, **kw)


def test_bad_config_names_file_and_key(tmp_path):
    cfg = tmp_path / "taskscope.yaml"
    cfg.write_text("listen: 127.0.0.1:9999\nmax_services: lots\n")
    result = run_agent("--config", str(cfg))
    assert result.returncode == 2
    assert f"{cfg}: key 'max_services': expected a whole number" in result.stderr


def test_unprivileged_start_names_missing_capabilities():
    # Root without a single capability: as unprivileged as a user, yet still
    # able to reach a checkout under /root (another uid could not).
    result = subprocess.run(["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--",
                             sys.executable, "-m", "taskscope", "agent", "--listen",
                             "127.0.0.1:9999"],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "needs CAP_BPF and CAP_PERFMON" in result.stderr, result.stderr


def test_killed_agent_leaves_no_program_attached(tmp_path):
    # The cgroup_skb programs hang off BPF links, which die with the process:
    # even SIGKILL leaves nothing on the node's packets.
    before = bpf_program_ids()
    agent = Agent("--probes", "tcp,traces", log_path=tmp_path / "agent.log")
    loaded = bpf_program_ids() - before
    assert {"packet_ingress", "packet_egress"} <= program_names(loaded)
    agent.kill()
    for _ in range(50):
        if not loaded & bpf_program_ids():
            break
        time.sleep(0.1)
    assert not loaded & bpf_program_ids(), "BPF programs left loaded after SIGKILL"
