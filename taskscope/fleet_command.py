"""`taskscope collector`: serve one graph merged from many agents (or from
Prometheus), and trace lookups across them, until SIGTERM/SIGINT."""

import base64
import dataclasses
import functools
import logging
import ssl
import urllib.request

from prometheus_client import CollectorRegistry

from taskscope import config, graph_routes, trace_routes
from taskscope.exporters.fleet_metrics import FleetMetrics
from taskscope.records.errors import ConfigError
from taskscope.server import EndpointServer, wait_for_signal
from taskscope.topology.fleet import AgentFleet, dns_agents
from taskscope.topology.graph_json import to_json
from taskscope.topology.prometheus_source import graph_from_prometheus
from taskscope.web_config import load_web_config

log = logging.getLogger(__name__)


@dataclasses.dataclass
class CollectorConfig:
    agents: tuple = ()
    agents_dns: str = ""
    prometheus: str = ""
    listen: str = "0.0.0.0:9811"
    graph_window: str = "5m"
    timeout: float = 5.0
    log_level: str = "info"
    web_config_file: str = ""
    agents_ca_file: str = ""
    agents_username: str = ""
    agents_password_file: str = ""


def _check_agents(value):
    ok = value is None or (isinstance(value, (list, tuple))
                           and all(isinstance(a, str) for a in value))
    return None if ok else "a list of URLs"


def _check_agents_dns(value):
    ok = value is None or (isinstance(value, str)
                           and (not value or value.rpartition(":")[2].isdigit()))
    return None if ok else "NAME:PORT"


def _check_prometheus(value):
    return None if value is None or isinstance(value, str) else "a URL"


def _check_timeout(value):
    ok = isinstance(value, (int, float)) and value > 0
    return None if ok else "a positive number of seconds"


CHECKS = {
    "agents": _check_agents,
    "agents_dns": _check_agents_dns,
    "prometheus": _check_prometheus,
    "listen": config.CHECKS["listen"],
    "graph_window": config.CHECKS["graph_window"],
    "timeout": _check_timeout,
    "log_level": config.CHECKS["log_level"],
    "web_config_file": config.CHECKS["web_config_file"],
    "agents_ca_file": config.CHECKS["web_config_file"],
    "agents_username": config.CHECKS["kubernetes_node"],
    "agents_password_file": config.CHECKS["web_config_file"],
}
SOURCES = ("agents", "agents_dns", "prometheus")


def collector_config(args):
    """Defaults, then --config FILE, then flags; ConfigError names what is wrong."""
    cfg = CollectorConfig()
    values = config.load_file(args.config) if args.config else {}
    flags = {"agents": args.agent, "agents_dns": args.agents_dns,
             "prometheus": args.prometheus, "listen": args.listen,
             "graph_window": args.graph_window, "timeout": args.timeout,
             "log_level": args.log_level,
             **{k: getattr(args, k, None) for k in ("web_config_file", "agents_ca_file",
                                                    "agents_username", "agents_password_file")}}
    flags = {k: v for k, v in flags.items() if v is not None}
    if any(source in flags for source in SOURCES):  # the command line's source replaces the file's
        values = {k: v for k, v in values.items() if k not in SOURCES}
    config.apply(cfg, values, args.config, CHECKS)
    config.apply(cfg, flags, "command line", CHECKS)
    cfg.agents = tuple(cfg.agents or ())
    cfg.agents_dns = cfg.agents_dns or ""
    cfg.prometheus = cfg.prometheus or ""
    cfg.timeout = float(cfg.timeout)
    if bool(cfg.agents_username) != bool(cfg.agents_password_file):
        raise ConfigError(f"{args.config or 'command line'}: agents_username and "
                          "agents_password_file go together")
    if sum(map(bool, (cfg.agents, cfg.agents_dns, cfg.prometheus))) != 1:
        raise ConfigError(f"{args.config or 'command line'}: give one of agents (--agent URL ...), "
                          "agents_dns (--agents-dns NAME:PORT) or prometheus (--prometheus URL)")
    return cfg


def agent_opener(settings):
    """How the collector speaks to its source (agents protected by a web
    config, or Prometheus behind TLS and basic auth): TLS verified against
    `agents_ca_file`, basic auth from a password file (read at start; a
    ConfigError names what cannot be read)."""
    handlers, headers = [], []
    if settings.agents_ca_file:
        try:
            context = ssl.create_default_context(cafile=settings.agents_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"agents_ca_file {settings.agents_ca_file}: {exc}") from exc
        handlers.append(urllib.request.HTTPSHandler(context=context))
    if settings.agents_username:
        try:
            with open(settings.agents_password_file) as f:
                password = f.read().rstrip("\n")
        except OSError as exc:
            raise ConfigError(f"agents_password_file {settings.agents_password_file}: "
                              f"{exc.strerror or exc}") from exc
        token = base64.b64encode(f"{settings.agents_username}:{password}".encode()).decode()
        headers.append(("Authorization", f"Basic {token}"))
    opener = urllib.request.build_opener(*handlers)
    opener.addheaders = headers + [("User-Agent", "taskscope-collector")]
    return opener


def serve(args):
    """`taskscope collector`: serve the merged graph until SIGTERM/SIGINT."""
    settings = collector_config(args)
    cfg = config.AgentConfig()
    config.apply(cfg, {"listen": settings.listen, "graph_window": settings.graph_window},
                 "command line")
    logging.getLogger().setLevel(settings.log_level.upper())
    try:
        web = load_web_config(settings.web_config_file) if settings.web_config_file else None
        server = EndpointServer(cfg.address, CollectorRegistry(auto_describe=False), web=web)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {cfg.listen}: {exc.strerror or exc}") from exc
    if settings.prometheus:
        body_of = functools.partial(graph_from_prometheus, settings.prometheus,
                                    timeout=settings.timeout, opener=agent_opener(settings))
        source = settings.prometheus
    else:
        agents = settings.agents or functools.partial(dns_agents, settings.agents_dns)
        fleet = AgentFleet(agents, timeout=settings.timeout, opener=agent_opener(settings))
        server.registry.register(FleetMetrics(fleet))
        server.routes.update(trace_routes.trace_routes(fleet.segments_of_trace, fleet.slowest))
        body_of = lambda window: to_json(fleet.graph(window))  # noqa: E731
        source = settings.agents_dns or f"{len(fleet.agent_urls)} agents"
    server.routes.update(graph_routes.graph_routes(
        body_of, config.parse_duration(cfg.graph_window), float("inf")))
    server.start()
    log.info("building the graph from %s; serving on %s", source, cfg.listen)
    wait_for_signal()
    server.stop()
    return 0
