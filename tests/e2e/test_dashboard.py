"""The Grafana dashboard and the Prometheus rules name only what the agent
really exports (read from a real agent's /metrics)."""

import json
import os
import re
import subprocess

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.agent_process import REPO

DASHBOARD = os.path.join(REPO, "deploy", "grafana", "taskscope-dashboard.json")
RULES = os.path.join(REPO, "deploy", "prometheus", "taskscope-rules.yaml")
SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("_total",),
            "gauge": ("",), "summary": ("_sum", "_count", "")}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
                "or", "unless", "offset", "inf", "nan"}


def metric_names(expr):
    """Series names a PromQL expression reads."""
    expr = re.sub(r'"(?:\\.|[^"\\])*"', "", expr)          # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)                  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)                 # ranges
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    tokens = re.findall(r"(\$?[A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?", expr)
    return {name for name, call in tokens
            if not call and name.lower() not in PROMQL_WORDS and not name.startswith("$")}


@pytest.fixture(scope="module")
def exported(agent):
    """Every series name the agent can export, from its HELP/TYPE lines."""
    _, _, text = agent.get("/metrics")
    names = set()
    for family in text_string_to_metric_families(text):
        names |= {family.name + s for s in SUFFIXES.get(family.type, ("",))}
    return names


@pytest.fixture(scope="module")
def rules():
    with open(RULES) as f:
        return [rule for group in yaml.safe_load(f)["groups"] for rule in group["rules"]]


def dashboard_exprs():
    with open(DASHBOARD) as f:
        dashboard = json.load(f)
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", []) if "expr" in t]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    return dashboard, exprs


def test_dashboard_is_well_formed():
    dashboard, exprs = dashboard_exprs()
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and dashboard["uid"] == "taskscope"
    kinds = {p["type"] for p in dashboard["panels"]}
    assert {"heatmap", "nodeGraph", "timeseries"} <= kinds
    assert any(t.get("exemplar") for p in dashboard["panels"] for t in p.get("targets", []))
    assert len(exprs) >= 10


def test_every_dashboard_query_names_exported_or_recorded_metrics(exported, rules):
    recorded = {r["record"] for r in rules if "record" in r}
    _, exprs = dashboard_exprs()
    for expr in exprs:
        expr = re.sub(r"label_values\(([^,)]*)(,[^)]*)?\)", r"(\1)", expr)  # Grafana's
        unknown = metric_names(expr) - exported - recorded
        assert not unknown, f"{expr!r} reads {unknown}, which the agent does not export"


def test_every_rule_reads_exported_metrics(exported, rules):
    recorded = {r["record"] for r in rules if "record" in r}
    for rule in rules:
        unknown = metric_names(rule["expr"]) - exported - recorded
        assert not unknown, f"{rule.get('record') or rule.get('alert')}: reads {unknown}"


def test_promtool_accepts_the_rules():
    result = subprocess.run(["promtool", "check", "rules", RULES], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
