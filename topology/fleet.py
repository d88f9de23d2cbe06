"""The fleet of agents that `taskscope collector` merges: one graph from many.

It asks every agent for its edge sides and listener table over the same
window and builds one graph from their union, which joins a client side seen
on one node to the server that another node owns.  An agent that is down or
answers garbage is logged, counted and left out; the rest are still served.
"""

import collections
import concurrent.futures
import http.client
import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from taskscope.records.segments import segments_from_json
from taskscope.topology.graph import build_graph
from taskscope.topology.sides_json import SidesFormatError, sides_from_json

__all__ = ["AgentFleet", "DiscoveryError", "dns_agents"]

log = logging.getLogger(__name__)

MAX_REPLY_BYTES = 64 << 20
# All agents' replies to one request of the collector, together: past it,
# the agents still being read are left out (and counted) rather than the
# collector holding tens of agents' 64 MiB each.
MAX_TOTAL_BYTES = 512 << 20
# Everything an agent can throw at an HTTP client: sockets, HTTP (a status
# line or a chunk it cannot parse, a reply cut short), bodies that are no
# JSON or no UTF-8, replies of the wrong shape.
AGENT_ERRORS = (OSError, ValueError, http.client.HTTPException, SidesFormatError)


class DeadlineExceeded(OSError):
    """An agent took longer than the collector's deadline for one reply."""


class ByteBudget:
    """Bytes all the replies of one collector request may hold together."""

    def __init__(self, total=None):
        self.total = MAX_TOTAL_BYTES if total is None else total
        self.left = self.total
        self._lock = threading.Lock()

    def take(self, n):
        with self._lock:
            self.left -= n
            if self.left < 0:
                raise SidesFormatError(f"the agents' replies together passed "
                                       f"{self.total} bytes")


def read_reply(url, timeout, deadline, opener=None, budget=None):
    """The body at `url`: at most MAX_REPLY_BYTES (and what is left of
    `budget`, a ByteBudget shared by the replies of one request), within
    `deadline` seconds overall (`timeout` bounds each socket operation; an
    agent trickling a byte at a time meets the deadline instead)."""
    ends = time.monotonic() + deadline
    with (opener or urllib.request.build_opener()).open(url, timeout=timeout) as reply:
        chunks, size = [], 0
        while True:
            if time.monotonic() > ends:
                raise DeadlineExceeded(f"no complete reply within {deadline:g} s")
            chunk = reply.read1(65536) if hasattr(reply, "read1") else reply.read(65536)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > MAX_REPLY_BYTES:
                raise SidesFormatError(f"reply larger than {MAX_REPLY_BYTES} bytes")
            if budget is not None:
                budget.take(len(chunk))
            chunks.append(chunk)


class DiscoveryError(OSError):
    """The agents could not be found (their DNS name does not resolve)."""


def dns_agents(name_port):
    """Agent URLs from every address a name resolves to: a Kubernetes headless
    Service in front of the agents' DaemonSet answers with one per node."""
    host, _, port = name_port.rpartition(":")
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except (OSError, ValueError) as exc:
        # Not an empty fleet: the graph would be served empty with 200.
        raise DiscoveryError(f"cannot resolve the agents at {name_port}: {exc}") from exc
    addresses = sorted({info[4][0] for info in infos})
    return [f"http://[{a}]:{port}" if ":" in a else f"http://{a}:{port}" for a in addresses]


class AgentFleet:
    """Asks agents; `agent_urls` is a list, or a function returning the
    current list (DNS discovery)."""

    MAX_AGENTS = 10000

    def __init__(self, agent_urls, timeout=5.0, deadline=None, opener=None):
        self._urls = agent_urls if callable(agent_urls) else \
            (lambda fixed=list(dict.fromkeys(u.rstrip("/") for u in agent_urls)): fixed)
        self.timeout = timeout
        self.deadline = deadline or 2 * timeout  # per agent and reply, overall
        self._opener = opener  # TLS and basic auth towards the agents (fleet_command)
        self.up = {}
        self.failures = collections.Counter()
        self.trace_failures = collections.Counter()
        self.skipped = collections.Counter()    # malformed sides left out, per agent
        self.discovery_failures = 0
        self.agent_urls = []
        self._discover()

    def _discover(self):
        try:
            urls = self._urls()[: self.MAX_AGENTS]
        except DiscoveryError as exc:
            # Keep the agents known so far, all marked down: an outage of
            # DNS shows as agents down, not as an empty graph.
            log.warning("%s; the %d agents known are marked down", exc, len(self.agent_urls))
            self.discovery_failures += 1
            for url in self.agent_urls:
                self.up[url] = 0
            return []
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

    def _fetch(self, url, window, budget):
        try:
            data = read_reply(f"{url}/api/graph/sides?window={window:g}s", self.timeout,
                              self.deadline, self._opener, budget)
            sides, endpoints, skipped = sides_from_json(json.loads(data))
            if skipped:
                log.warning("agent %s: %d malformed sides or endpoints left out", url, skipped)
                self.skipped[url] += skipped
            self.up[url] = 1
            return sides, endpoints
        except AGENT_ERRORS as exc:
            # json.JSONDecodeError and UnicodeDecodeError are ValueErrors.
            log.warning("agent %s left out of the graph: %s", url, exc)
            self.up[url] = 0
            self.failures[url] += 1
            return [], {}

    def _ask_all(self, path):
        """Every agent's segments at `path`, each tagged with its agent."""
        budget = ByteBudget()

        def ask(url):
            try:
                data = read_reply(url + path, self.timeout, self.deadline, self._opener, budget)
                return [dict(s, agent=url) for s in segments_from_json(json.loads(data))]
            except urllib.error.HTTPError as exc:
                if exc.code == 404:  # the agent saw nothing of that trace
                    return []
                error = exc
            except AGENT_ERRORS as exc:
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
        sides, endpoints, budget = [], {}, ByteBudget()
        for agent_sides, agent_endpoints in self._each_agent(
                lambda url: self._fetch(url, window, budget)):
            sides += agent_sides
            endpoints.update(agent_endpoints)
        return build_graph(sides, lambda ip, port: endpoints.get((ip, port)))
