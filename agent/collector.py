"""`taskscope collector`: one graph from many agents.

It asks every agent for its edge sides and listener table over the same
window and builds one graph from their union, which joins a client side seen
on one node to the server that another node owns.  An agent that is down or
answers garbage is logged, counted and left out; the rest are still served.
"""

import collections
import concurrent.futures
import dataclasses
import functools
import json
import logging
import socket
import urllib.error
import urllib.parse
import urllib.request

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from agent import config, graph_api, trace_api
from agent.trace_api import segments_from_wire
from agent.errors import ConfigError
from agent.server import AgentServer, wait_for_signal
from topology.export import to_json
from topology.graph import build_graph
from topology.prometheus_source import graph_from_prometheus
from topology.wire import WireError, from_wire

log = logging.getLogger(__name__)

MAX_REPLY_BYTES = 64 << 20


def dns_agents(name_port):
    """Agent URLs from every address a name resolves to: a Kubernetes headless
    Service in front of the agents' DaemonSet answers with one per node."""
    host, _, port = name_port.rpartition(":")
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except (OSError, ValueError) as exc:
        log.warning("cannot resolve the agents at %s: %s", name_port, exc)
        return []
    addresses = sorted({info[4][0] for info in infos})
    return [f"http://[{a}]:{port}" if ":" in a else f"http://{a}:{port}" for a in addresses]


class Collector:
    """Asks agents; `agent_urls` is a list, or a function returning the
    current list (DNS discovery)."""

    MAX_AGENTS = 10000

    def __init__(self, agent_urls, timeout=5.0):
        self._urls = agent_urls if callable(agent_urls) else \
            (lambda fixed=list(dict.fromkeys(u.rstrip("/") for u in agent_urls)): fixed)
        self.timeout = timeout
        self.up = {}
        self.failures = collections.Counter()
        self.trace_failures = collections.Counter()
        self._discover()

    def _discover(self):
        urls = self._urls()[: self.MAX_AGENTS]
        self.agent_urls = urls
        for gone in set(self.up) - set(urls):  # agents that left (a node removed)
            del self.up[gone]
        for url in urls:
            self.up.setdefault(url, 0)
            self.failures[url] += 0
            self.trace_failures[url] += 0
        return urls

    def _each_agent(self, ask):
        """[ask(url)] for every agent found now, asked in parallel."""
        urls = self._discover()
        with concurrent.futures.ThreadPoolExecutor(max(1, min(16, len(urls)))) as pool:
            return list(pool.map(ask, urls))

    def _fetch(self, url, window):
        try:
            with urllib.request.urlopen(f"{url}/api/graph/sides?window={window:g}s",
                                        timeout=self.timeout) as reply:
                data = reply.read(MAX_REPLY_BYTES + 1)
            if len(data) > MAX_REPLY_BYTES:
                raise WireError(f"reply larger than {MAX_REPLY_BYTES} bytes")
            result = from_wire(json.loads(data))
            self.up[url] = 1
            return result
        except (OSError, ValueError, WireError) as exc:
            # json.JSONDecodeError and UnicodeDecodeError are ValueErrors.
            log.warning("agent %s left out of the graph: %s", url, exc)
            self.up[url] = 0
            self.failures[url] += 1
            return [], {}

    def _ask_all(self, path):
        """Every agent's segments at `path`, each tagged with its agent."""
        def ask(url):
            try:
                with urllib.request.urlopen(url + path, timeout=self.timeout) as reply:
                    data = reply.read(MAX_REPLY_BYTES + 1)
            except urllib.error.HTTPError as exc:
                if exc.code == 404:  # the agent saw nothing of that trace
                    return []
                error = exc
            except OSError as exc:
                error = exc
            else:
                try:
                    if len(data) > MAX_REPLY_BYTES:
                        raise ValueError(f"reply larger than {MAX_REPLY_BYTES} bytes")
                    return [dict(s, agent=url) for s in segments_from_wire(json.loads(data))]
                except ValueError as exc:
                    error = exc
            log.warning("agent %s left out of a trace lookup: %s", url, error)
            self.trace_failures[url] += 1
            return []

        return [s for found in self._each_agent(ask) for s in found]

    def segments_of_trace(self, trace_id):
        return sorted(self._ask_all(f"/api/traces/{trace_id}"), key=lambda s: s["start"])

    def slowest(self, service, min_seconds, limit):
        query = {"min_seconds": min_seconds, "limit": limit}
        if service:
            query["service"] = service
        found = self._ask_all("/api/traces?" + urllib.parse.urlencode(query))
        return sorted(found, key=lambda s: s["duration_seconds"], reverse=True)[:limit]

    def graph(self, window):
        sides, endpoints = [], {}
        for agent_sides, agent_endpoints in self._each_agent(lambda url: self._fetch(url, window)):
            sides += agent_sides
            endpoints.update(agent_endpoints)
        return build_graph(sides, lambda ip, port: endpoints.get((ip, port)))


class CollectorMetrics:
    """taskscope_collector_agent_up / _failures_total per agent."""

    def __init__(self, collector):
        self._collector = collector

    def describe(self):
        return []

    def collect(self):
        up = GaugeMetricFamily("taskscope_collector_agent_up",
                               "1 when the agent's last graph reply was usable.", labels=["agent"])
        failures = CounterMetricFamily("taskscope_collector_agent_failures",
                                       "Graph replies from the agent that were unusable "
                                       "(down, timed out, malformed).", labels=["agent"])
        for url in self._collector.agent_urls:
            up.add_metric([url], self._collector.up.get(url, 0))
            failures.add_metric([url], self._collector.failures[url])
        trace_failures = CounterMetricFamily(
            "taskscope_collector_trace_lookup_failures",
            "Trace lookups the agent failed (down, timed out, malformed).", labels=["agent"])
        for url in self._collector.agent_urls:
            trace_failures.add_metric([url], self._collector.trace_failures[url])
        yield up
        yield failures
        yield trace_failures


@dataclasses.dataclass
class CollectorConfig:
    agents: tuple = ()
    agents_dns: str = ""
    prometheus: str = ""
    listen: str = "0.0.0.0:9811"
    graph_window: str = "5m"
    timeout: float = 5.0
    log_level: str = "info"


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
}
SOURCES = ("agents", "agents_dns", "prometheus")


def collector_config(args):
    """Defaults, then --config FILE, then flags; ConfigError names what is wrong."""
    cfg = CollectorConfig()
    values = config.load_file(args.config) if args.config else {}
    flags = {"agents": args.agent, "agents_dns": args.agents_dns,
             "prometheus": args.prometheus, "listen": args.listen,
             "graph_window": args.graph_window, "timeout": args.timeout,
             "log_level": args.log_level}
    flags = {k: v for k, v in flags.items() if v is not None}
    if any(source in flags for source in SOURCES):  # the command line's source replaces the file's
        values = {k: v for k, v in values.items() if k not in SOURCES}
    config.apply(cfg, values, args.config, CHECKS)
    config.apply(cfg, flags, "command line", CHECKS)
    cfg.agents = tuple(cfg.agents or ())
    cfg.agents_dns = cfg.agents_dns or ""
    cfg.prometheus = cfg.prometheus or ""
    cfg.timeout = float(cfg.timeout)
    if sum(map(bool, (cfg.agents, cfg.agents_dns, cfg.prometheus))) != 1:
        raise ConfigError(f"{args.config or 'command line'}: give one of agents (--agent URL ...), "
                          "agents_dns (--agents-dns NAME:PORT) or prometheus (--prometheus URL)")
    return cfg


def serve(args):
    """`taskscope collector`: serve the merged graph until SIGTERM/SIGINT."""
    settings = collector_config(args)
    cfg = config.AgentConfig()
    config.apply(cfg, {"listen": settings.listen, "graph_window": settings.graph_window},
                 "command line")
    logging.getLogger().setLevel(settings.log_level.upper())
    try:
        server = AgentServer(cfg.address, CollectorRegistry(auto_describe=False))
    except OSError as exc:
        raise ConfigError(f"cannot listen on {cfg.listen}: {exc.strerror or exc}") from exc
    if settings.prometheus:
        body_of = functools.partial(graph_from_prometheus, settings.prometheus,
                                    timeout=settings.timeout)
        source = settings.prometheus
    else:
        agents = settings.agents or functools.partial(dns_agents, settings.agents_dns)
        collector = Collector(agents, timeout=settings.timeout)
        server.registry.register(CollectorMetrics(collector))
        server.routes.update(trace_api.trace_routes(collector.segments_of_trace,
                                                    collector.slowest))
        body_of = lambda window: to_json(collector.graph(window))  # noqa: E731
        source = settings.agents_dns or f"{len(collector.agent_urls)} agents"
    server.routes.update(graph_api.graph_routes(
        body_of, config.parse_duration(cfg.graph_window), float("inf")))
    server.start()
    log.info("building the graph from %s; serving on %s", source, cfg.listen)
    wait_for_signal()
    server.stop()
    return 0
