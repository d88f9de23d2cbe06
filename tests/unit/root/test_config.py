import pytest

from taskscope.config import AgentConfig, apply, load_file
from taskscope.records.errors import ConfigError


def test_defaults_then_file_then_flags(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("listen: 127.0.0.1:9100\nprobes: [sched, tcp]\nmax-services: 20\n")
    cfg = apply(AgentConfig(), load_file(f), str(f))
    apply(cfg, {"probes": "blockio"}, "command line")
    assert cfg.address == ("127.0.0.1", 9100)
    assert cfg.probes == ("blockio",) and cfg.max_services == 20 and cfg.log_level == "info"


@pytest.mark.parametrize("text, message", [
    ("listen: 9100\n", "key 'listen': expected a HOST:PORT string, got 9100"),
    ("listen: 'host:99999'\n", "key 'listen': expected HOST:PORT with a port from 1 to 65535"),
    ("probes: [sched, gpu]\n", "unknown: gpu"),
    ("probes: []\n", "key 'probes': expected a non-empty list"),
    ("max_services: 0\n", "key 'max_services': expected a whole number of at least 1"),
    ("max_services: true\n", "key 'max_services'"),
    ("log_level: loud\n", "key 'log_level': expected one of debug, info"),
    ("colour: blue\n", "unknown key 'colour'"),
    ("- a\n- b\n", "expected a mapping of settings, got list"),
    ("listen: [\n", "not valid YAML"),
])
def test_bad_config_names_the_file_and_key(tmp_path, text, message):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as err:
        apply(AgentConfig(), load_file(f), str(f))
    assert str(err.value).startswith(str(f)) and message in str(err.value)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_file(tmp_path / "absent.yaml")


def test_empty_file_means_defaults(tmp_path):
    f = tmp_path / "empty.yaml"
    f.write_text("")
    assert apply(AgentConfig(), load_file(f), str(f)) == AgentConfig()


def test_bare_yaml_on_and_off_mean_what_they_say(tmp_path):
    f = tmp_path / "k.yaml"
    f.write_text("kubernetes: on\n")
    assert apply(AgentConfig(), load_file(f), str(f)).kubernetes == "on"
    f.write_text("kubernetes: off\n")
    assert apply(AgentConfig(), load_file(f), str(f)).kubernetes == "off"
