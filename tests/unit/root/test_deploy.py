"""Deployment files: Kubernetes manifests valid against the API schemas
(offline), consistent with the systemd unit and the agent's settings; the
image built from OS packages and PyPI only; the entrypoint's header logic."""

import configparser
import os
import re
import subprocess

import kubernetes_validate
import pytest
import yaml

from taskscope import config
from taskscope.fleet_command import collector_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
K8S = os.path.join(REPO, "deploy", "kubernetes")
ENTRYPOINT = os.path.join(REPO, "deploy", "docker", "entrypoint.sh")
CRDS = {"ServiceMonitor"}


def manifests():
    docs = []
    for name in sorted(os.listdir(K8S)):
        if not name.endswith(".yaml"):
            continue
        with open(os.path.join(K8S, name)) as f:
            docs += [(name, d) for d in yaml.safe_load_all(f) if d]
    return docs


def find(kind, name=None):
    return next(d for _, d in manifests()
                if d["kind"] == kind and (name is None or d["metadata"]["name"] == name))


@pytest.mark.parametrize("name, doc", [(n, d) for n, d in manifests()
                                       if d["kind"] not in CRDS | {"Kustomization"}],
                         ids=lambda v: v if isinstance(v, str) else v["kind"])
def test_manifest_validates_against_the_kubernetes_schema(name, doc):
    kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_kustomization_lists_every_manifest():
    listed = set(find("Kustomization")["resources"])
    assert listed == {n for n in os.listdir(K8S) if n.endswith(".yaml")} - {"kustomization.yaml"}


def test_the_agent_runs_under_its_own_seccomp_profile_installed_before_it():
    spec = find("DaemonSet")["spec"]["template"]["spec"]
    profile = spec["containers"][0]["securityContext"]["seccompProfile"]
    assert profile == {"type": "Localhost", "localhostProfile": "taskscope/agent.json"}
    init = spec["initContainers"][0]
    assert "/host/seccomp/taskscope/agent.json" in " ".join(init["command"])
    assert init["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    assert volumes["kubelet-seccomp"]["hostPath"]["path"] == "/var/lib/kubelet/seccomp"
    assert mounts["kubelet-seccomp"] == "/host/seccomp"
    generated = find("Kustomization")["configMapGenerator"][0]
    assert volumes["seccomp-profile"]["configMap"]["name"] == generated["name"]
    assert generated["files"] == ["seccomp/taskscope-agent.json"]
    assert os.path.exists(os.path.join(K8S, "seccomp", "taskscope-agent.json"))


def test_service_monitor_selects_the_agents_metrics_port():
    monitor = find("ServiceMonitor")
    agents = find("Service", "taskscope-agent")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    values = monitor["spec"]["selector"]["matchExpressions"][0]["values"]
    assert agents["metadata"]["labels"]["app.kubernetes.io/name"] in values
    assert {e["port"] for e in monitor["spec"]["endpoints"]} >= {
        p["name"] for p in agents["spec"]["ports"]}


def test_daemonset_has_the_systemd_units_capabilities_and_no_privilege():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read(os.path.join(REPO, "systemd", "taskscope-agent.service"))
    caps = {c.removeprefix("CAP_") for c in unit["Service"]["CapabilityBoundingSet"].split()}
    spec = find("DaemonSet")["spec"]["template"]["spec"]
    security = spec["containers"][0]["securityContext"]
    assert set(security["capabilities"]["add"]) == caps
    assert security["capabilities"]["drop"] == ["ALL"] and not security.get("privileged")
    assert spec["hostPID"] and {"operator": "Exists"} in spec["tolerations"]


def test_daemonset_mounts_what_its_config_names_and_the_config_is_valid():
    settings = yaml.safe_load(find("ConfigMap", "taskscope-agent")["data"]["agent.yaml"])
    cfg = config.apply(config.AgentConfig(), settings, "ConfigMap")
    mounts = {m["mountPath"] for m in
              find("DaemonSet")["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    assert cfg.cgroup_root in mounts and "/sys/kernel/tracing" in mounts
    assert {"/host/lib/modules", "/host/usr/src", "/lib/modules"} <= mounts
    container = find("DaemonSet")["spec"]["template"]["spec"]["containers"][0]
    port = next(p["containerPort"] for p in container["ports"] if p["name"] == "metrics")
    assert cfg.listen.endswith(f":{port}")
    # /livez: a kernel without some probe must not restart the agent forever.
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"


def test_collector_finds_the_agents_through_the_headless_service():
    args = find("Deployment", "taskscope-collector")["spec"]["template"]["spec"][
        "containers"][0]["args"]
    agents = find("Service", "taskscope-agent")
    assert agents["spec"]["clusterIP"] == "None"
    dns = args[args.index("--agents-dns") + 1]
    meta = agents["metadata"]
    assert dns == f"{meta['name']}.{meta['namespace']}.svc.cluster.local:" \
                  f"{agents['spec']['ports'][0]['port']}"
    parsed = collector_config(__import__("argparse").Namespace(
        config=None, agent=None, agents_dns=dns, prometheus=None, listen=None,
        graph_window=None, timeout=None, log_level=None))
    assert parsed.agents_dns == dns


def test_dockerfile_builds_from_debian_packages_and_pypi_only():
    with open(os.path.join(REPO, "Dockerfile")) as f:
        text = re.sub(r"\\\n", " ", f.read())
    lines = [line.strip() for line in text.splitlines() if line.strip() and
             not line.lstrip().startswith("#")]
    assert lines[0].startswith("FROM debian:12")
    for line in lines:
        instruction, _, rest = line.partition(" ")
        if instruction == "RUN":
            assert not re.search(r"\b(curl|wget|git|ADD)\b", rest), line
            for command in re.split(r"&&", rest):
                program = command.split()[0]
                assert program in {"apt-get", "rm", "python3", "/opt/taskscope/bin/pip", "ln",
                                   "/opt/taskscope/bin/python"}, line
        elif instruction == "COPY":
            for source in rest.split()[:-1]:
                assert os.path.exists(os.path.join(REPO, source)), source
        elif instruction == "ADD":
            pytest.fail("ADD can fetch URLs; use COPY")
    assert "python3-bpfcc" in text and "pip install --no-cache-dir /tmp/wheels/taskscope-" in text


def run_entrypoint(root, *args):
    env = dict(os.environ, TASKSCOPE_ROOT=str(root), TASKSCOPE_RELEASE="6.18.0-test",
               TASKSCOPE_EXEC="echo")
    return subprocess.run(["sh", ENTRYPOINT, *args], env=env, capture_output=True, text=True,
                          check=True)


def test_entrypoint_links_the_hosts_headers_through_host(tmp_path):
    (tmp_path / "host/usr/src/linux-headers-6.18.0-test/include").mkdir(parents=True)
    (tmp_path / "host/usr/src/linux-headers-6.18.0-common/include").mkdir(parents=True)
    modules = tmp_path / "host/lib/modules/6.18.0-test"
    modules.mkdir(parents=True)
    (modules / "build").symlink_to("/usr/src/linux-headers-6.18.0-test")
    (modules / "source").symlink_to("/usr/src/linux-headers-6.18.0-common")
    out = run_entrypoint(tmp_path, "agent", "--help")
    build = tmp_path / "lib/modules/6.18.0-test/build"
    assert os.readlink(build) == str(tmp_path / "host/usr/src/linux-headers-6.18.0-test")
    assert "host's kernel headers" in out.stdout and out.stdout.strip().endswith("agent --help")


def test_entrypoint_falls_back_to_the_generic_headers(tmp_path):
    (tmp_path / "usr/src/linux-headers-6.1.0-9-amd64/include").mkdir(parents=True)
    (tmp_path / "usr/src/linux-headers-6.1.0-9-common/include").mkdir(parents=True)
    run_entrypoint(tmp_path, "agent")
    modules = tmp_path / "lib/modules/6.18.0-test"
    assert os.readlink(modules / "build").endswith("linux-headers-6.1.0-9-amd64")
    assert os.readlink(modules / "source").endswith("linux-headers-6.1.0-9-common")


def test_entrypoint_leaves_the_collector_alone(tmp_path):
    out = run_entrypoint(tmp_path, "collector", "--agents-dns", "a:1")
    assert not (tmp_path / "lib").exists() and out.stdout.strip() == "collector --agents-dns a:1"
