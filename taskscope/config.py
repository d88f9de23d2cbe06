"""Agent settings: defaults, then the YAML file, then command-line flags."""

import dataclasses
import ipaddress
import logging

from taskscope.records.errors import ConfigError
from taskscope.agent.kernel.probes import GROUPS, PROBE_NAMES, TCP_IO_MODES
from taskscope.topology.graph import EXTERNAL_PEERS

LOG_LEVELS = ("debug", "info", "warning", "error")
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_duration(text):
    """'90', '90s', '5m', '1h' -> seconds; ConfigError on anything else."""
    text = str(text).strip()
    unit = DURATION_UNITS.get(text[-1:], None)
    number = text[:-1] if unit else text
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        raise ConfigError(f"'{text}' is not a duration like 60s, 5m or 1h") from None
    if not 0 < seconds < float("inf"):
        raise ConfigError(f"'{text}' is not a positive duration")
    return seconds


@dataclasses.dataclass
class AgentConfig:
    listen: str = "0.0.0.0:9810"
    probes: tuple = GROUPS
    log_level: str = "info"
    max_services: int = 500
    tracefs: str = ""
    cgroup_root: str = ""
    graph_window: str = "5m"
    graph_expiry: str = "1h"
    reclaim_interval: str = "30s"
    graph_addresses: tuple = ()
    otlp_endpoint: str = ""
    otlp_protocol: str = "http/protobuf"
    trace_store_size: int = 10000
    max_cpu_percent: float = 2.0
    trace_unsampled: bool = False
    http_4xx_failed: bool = False
    web_config_file: str = ""
    external_peers: str = "aggregate"
    external_networks: tuple = ()
    tcp_io: str = "auto"
    kubernetes: str = "auto"
    kubernetes_api: str = ""
    kubernetes_node: str = ""
    kubernetes_labels: tuple = ("namespace",)

    @property
    def address(self):
        host, _, port = self.listen.rpartition(":")
        return host or "0.0.0.0", int(port)


def _check_listen(value):
    if not isinstance(value, str):
        return "a HOST:PORT string"
    _, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        return "HOST:PORT with a port from 1 to 65535"
    return None


def _check_probes(value):
    if isinstance(value, str):
        value = value.split(",")
    known = f"groups {', '.join(GROUPS)} or probes {', '.join(PROBE_NAMES)}"
    if not isinstance(value, (list, tuple)) or not value:
        return f"a non-empty list drawn from {known}"
    unknown = [v for v in value if v not in GROUPS and v not in PROBE_NAMES]
    if unknown:
        return f"probe {known} (unknown: {', '.join(map(str, unknown))})"
    return None


def _check_log_level(value):
    return None if value in LOG_LEVELS else f"one of {', '.join(LOG_LEVELS)}"


def _check_max_services(value):
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
    return None if ok else "a whole number of at least 1"


def _check_path(value):
    return None if isinstance(value, str) else "a directory path"


def _check_file(value):
    return None if isinstance(value, str) else "a file path"


def _check_duration(value):
    try:
        parse_duration(value)
    except ConfigError:
        return "a duration like 60s, 5m or 1h"
    return None


def _check_external_peers(value):
    return None if value in EXTERNAL_PEERS else f"one of {', '.join(EXTERNAL_PEERS)}"


def _check_networks(value):
    if isinstance(value, str):
        value = [v for v in value.split(",") if v]
    if not isinstance(value, (list, tuple)):
        return "a list of networks like 10.0.0.0/8"
    for item in value:
        try:
            ipaddress.ip_network(str(item), strict=False)
        except ValueError:
            return f"networks like 10.0.0.0/8 ({item!r} is not one)"
    return None


def _check_url(value):
    ok = isinstance(value, str) and (value == "" or "://" in value or ":" in value)
    return None if ok else "a URL like http://otel-collector:4318 (empty: no export)"


def _check_otlp_protocol(value):
    return None if value in ("http/protobuf", "grpc") else "http/protobuf or grpc"


def _check_tcp_io(value):
    return None if value in TCP_IO_MODES else ", ".join(TCP_IO_MODES)


def _check_bool(value):
    return None if isinstance(value, bool) else "true or false"


def _check_kubernetes(value):
    # YAML reads a bare on/off as true/false.
    return None if value in ("auto", "on", "off", True, False) else "auto, on or off"


def _check_pod_labels(value):
    from taskscope.agent.host.kubernetes import LABELS

    if isinstance(value, str):
        value = [v for v in value.split(",") if v]
    if not isinstance(value, (list, tuple)) or any(v not in LABELS for v in value):
        return f"a list drawn from {', '.join(LABELS)}"
    return None


def _check_percent(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
        return "a number of percent of one core, 0 (no limit) to 100"
    return None


def _check_string(value):
    return None if isinstance(value, str) else "a string"


CHECKS = {
    "listen": _check_listen,
    "probes": _check_probes,
    "log_level": _check_log_level,
    "max_services": _check_max_services,
    "tracefs": _check_path,
    "cgroup_root": _check_path,
    "graph_window": _check_duration,
    "graph_expiry": _check_duration,
    "reclaim_interval": _check_duration,
    "graph_addresses": _check_networks,
    "otlp_endpoint": _check_url,
    "otlp_protocol": _check_otlp_protocol,
    "trace_store_size": _check_max_services,
    "max_cpu_percent": _check_percent,
    "trace_unsampled": _check_bool,
    "http_4xx_failed": _check_bool,
    "web_config_file": _check_file,
    "external_peers": _check_external_peers,
    "external_networks": _check_networks,
    "tcp_io": _check_tcp_io,
    "kubernetes": _check_kubernetes,
    "kubernetes_api": _check_url,
    "kubernetes_node": _check_string,
    "kubernetes_labels": _check_pod_labels,
}


def _normalise(key, value):
    if key == "probes" and isinstance(value, str):
        return tuple(v for v in value.split(",") if v)
    if key == "probes":
        return tuple(value)
    if key == "kubernetes" and isinstance(value, bool):
        return "on" if value else "off"
    if key == "kubernetes_labels":
        items = value.split(",") if isinstance(value, str) else value
        return tuple(v for v in items if v)
    if key in ("graph_addresses", "external_networks"):
        items = value.split(",") if isinstance(value, str) else value
        return tuple(str(v) for v in items if v)
    return value


def apply(config, values, origin, checks=CHECKS):
    """Validate `values` ({key: value}) against `checks` (the agent's unless
    told) and set them on `config`.

    `origin` names where they came from (a file path, "command line") so the
    error tells the operator exactly what to fix.
    """
    for key, value in values.items():
        if key not in checks:
            raise ConfigError(f"{origin}: unknown key '{key}' (known: {', '.join(checks)})")
        problem = checks[key](value)
        if problem:
            raise ConfigError(f"{origin}: key '{key}': expected {problem}, got {value!r}")
        setattr(config, key, _normalise(key, value))
    return config


def load_file(path):
    """{key: value} from a YAML file; every failure is a ConfigError naming the file."""
    import yaml

    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def log_level(config):
    return getattr(logging, config.log_level.upper())
