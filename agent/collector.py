"""`taskscope collector`: one graph from many agents.

It asks every agent for its edge sides and listener table over the same
window and builds one graph from their union, which joins a client side seen
on one node to the server that another node owns.  An agent that is down or
answers garbage is logged, counted and left out; the rest are still served.
"""

import concurrent.futures
import dataclasses
import functools
import json
import logging
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


class Collector:
    def __init__(self, agent_urls, timeout=5.0):
        self.agent_urls = list(dict.fromkeys(u.rstrip("/") for u in agent_urls))
        self.timeout = timeout
        self.up = {url: 0 for url in self.agent_urls}
        self.failures = {url: 0 for url in self.agent_urls}
        self.trace_failures = {url: 0 for url in self.agent_urls}

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

        workers = max(1, min(16, len(self.agent_urls)))
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            return [s for found in pool.map(ask, self.agent_urls) for s in found]

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
        workers = max(1, min(16, len(self.agent_urls)))
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            for agent_sides, agent_endpoints in pool.map(
                    lambda url: self._fetch(url, window), self.agent_urls):
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
            up.add_metric([url], self._collector.up[url])
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
    prometheus: str = ""
    listen: str = "0.0.0.0:9811"
    graph_window: str = "5m"
    timeout: float = 5.0
    log_level: str = "info"


def collector_config(args):
    """Defaults, then --config FILE, then flags; ConfigError names what is wrong."""
    cfg = CollectorConfig()
    values = config.load_file(args.config) if args.config else {}
    origin = args.config or "command line"
    known = {f.name for f in dataclasses.fields(cfg)}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"{origin}: unknown key '{key}' (known: {', '.join(sorted(known))})")
    flags = {"agents": args.agent, "prometheus": args.prometheus, "listen": args.listen,
             "graph_window": args.graph_window, "timeout": args.timeout,
             "log_level": args.log_level}
    if flags["agents"] or flags["prometheus"]:  # a source on the command line replaces the file's
        values.pop("agents", None)
        values.pop("prometheus", None)
    values.update({k: v for k, v in flags.items() if v is not None})
    agents = values.get("agents", ())
    if isinstance(agents, str) or not all(isinstance(a, str) for a in agents or ()):
        raise ConfigError(f"{origin}: key 'agents': expected a list of URLs, got {agents!r}")
    cfg.agents = tuple(agents or ())
    cfg.prometheus = values.get("prometheus") or ""
    if bool(cfg.agents) == bool(cfg.prometheus):
        raise ConfigError(f"{origin}: give either agents (--agent URL ...) or prometheus "
                          "(--prometheus URL), not both and not neither")
    checks = {"listen": config.CHECKS["listen"], "graph_window": config.CHECKS["graph_window"],
              "log_level": config.CHECKS["log_level"]}
    for key, check in checks.items():
        if key in values:
            problem = check(values[key])
            if problem:
                raise ConfigError(f"{origin}: key '{key}': expected {problem}, "
                                  f"got {values[key]!r}")
            setattr(cfg, key, values[key])
    if "timeout" in values:
        if not isinstance(values["timeout"], (int, float)) or values["timeout"] <= 0:
            raise ConfigError(f"{origin}: key 'timeout': expected a positive number of seconds")
        cfg.timeout = float(values["timeout"])
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
        collector = Collector(settings.agents, timeout=settings.timeout)
        server.registry.register(CollectorMetrics(collector))
        server.routes.update(trace_api.trace_routes(collector.segments_of_trace,
                                                    collector.slowest))
        body_of = lambda window: to_json(collector.graph(window))  # noqa: E731
        source = f"{len(collector.agent_urls)} agents"
    server.routes.update(graph_api.graph_routes(
        body_of, config.parse_duration(cfg.graph_window), float("inf")))
    server.start()
    log.info("building the graph from %s; serving on %s", source, cfg.listen)
    wait_for_signal()
    server.stop()
    return 0
