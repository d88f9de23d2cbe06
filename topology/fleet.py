"""The fleet of agents that `taskscope collector` merges: one graph from many.

It asks every agent for its edge sides and listener table over the same
window and builds one graph from their union, which joins a client side seen
on one node to the server that another node owns.  An agent that is down or
answers garbage is logged, counted and left out; the rest are still served.
"""

import collections
import concurrent.futures
import json
import logging
import socket
import urllib.error
import urllib.parse
import urllib.request

from taskscope.records.segments import segments_from_json
from taskscope.topology.graph import build_graph
from taskscope.topology.sides_json import SidesFormatError, sides_from_json

__all__ = ["AgentFleet", "dns_agents"]

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


class AgentFleet:
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
                raise SidesFormatError(f"reply larger than {MAX_REPLY_BYTES} bytes")
            result = sides_from_json(json.loads(data))
            self.up[url] = 1
            return result
        except (OSError, ValueError, SidesFormatError) as exc:
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
                    return [dict(s, agent=url) for s in segments_from_json(json.loads(data))]
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
