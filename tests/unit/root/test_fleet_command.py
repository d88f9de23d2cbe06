"""The collector's settings and agent discovery."""

import argparse

import pytest

from taskscope.fleet_command import collector_config
from taskscope.records.errors import ConfigError
from taskscope.topology.fleet import AgentFleet, dns_agents


def args(**kw):
    base = dict(config=None, agent=None, agents_dns=None, prometheus=None, listen=None,
                graph_window=None, timeout=None, log_level=None)
    return argparse.Namespace(**{**base, **kw})


def test_flags_override_the_file(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("agents: [http://a:9810]\nlisten: 127.0.0.1:1\ntimeout: 2\n")
    cfg = collector_config(args(config=str(f), agents_dns="agents.svc:9810"))
    assert cfg.agents == () and cfg.agents_dns == "agents.svc:9810"
    assert cfg.listen == "127.0.0.1:1" and cfg.timeout == 2.0


@pytest.mark.parametrize("text, message", [
    ("agents: http://a\n", "list of URLs"),
    ("agents: [http://a]\nprometheus: http://p\n", "give one of"),
    ("agents_dns: agents\n", "NAME:PORT"),
    ("timeout: -1\nagents: [http://a]\n", "positive number"),
    ("listen: nope\nagents: [http://a]\n", "HOST:PORT"),
    ("agent: [http://a]\n", "unknown key 'agent'"),
])
def test_bad_settings_name_the_file_and_key(tmp_path, text, message):
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message) as exc:
        collector_config(args(config=str(f)))
    assert str(f) in str(exc.value)


def test_dns_discovery_follows_the_name():
    assert dns_agents("localhost:9810") == ["http://127.0.0.1:9810"] or \
        "http://[::1]:9810" in dns_agents("localhost:9810")
    assert dns_agents("no-such-host.invalid:9810") == []


def test_agents_that_leave_are_forgotten():
    current = [["http://a:1", "http://b:1"]]
    collector = AgentFleet(lambda: current[0])
    collector.up["http://a:1"] = 1
    current[0] = ["http://b:1"]
    assert collector._discover() == ["http://b:1"] and set(collector.up) == {"http://b:1"}
