"""The agent's side of the service graph: its kernel's edge maps as EdgeSide
records over a time window, and the table of local listeners that names
a client's peer.  Building the graph from them is topology's job."""

import collections
import ipaddress
import logging
import threading
import time

from taskscope.agent.host import identity, sockets
from taskscope.agent.host.cgroups import cgroup_id
from taskscope.agent.host.conntrack import DnatTable
from taskscope.agent.kernel_abi import Role, ident_hash
from taskscope.records.edges import CLIENT, SERVER, EdgeSide, since
from taskscope.records.histogram import Log2Histogram

log = logging.getLogger(__name__)

ROLES = {Role.CLIENT: CLIENT, Role.SERVER: SERVER}


class EdgeSideRecorder:
    """Reads the edge maps on demand and keeps readings for windows.

    The kernel maps are cumulative; a window is the difference between now
    and a reading taken `window` seconds ago.  Readings are kept every
    `interval` seconds for `max_window` seconds, so memory stays bounded.
    The listener table is rescanned at most every `endpoint_ttl` seconds.
    """

    def __init__(self, maps, resolver, cgroup_root, max_window=900.0, interval=10.0,
                 endpoint_ttl=5.0, addresses=None, expiry=3600.0):
        self._maps = maps
        self._resolver = resolver
        self._cgroup_root = cgroup_root
        self._endpoint_ttl = endpoint_ttl
        self._endpoints = {}
        self._endpoints_at = float("-inf")
        self._dnat = DnatTable()
        self.max_window = max_window
        self._interval = interval
        self._readings = collections.deque(maxlen=int(max_window / interval) + 2)
        self._lock = threading.Lock()
        # Edge sides idle this long are deleted from the kernel maps, which
        # would otherwise fill with every connection pair ever seen.
        self._expiry = expiry
        self._last_active = {}  # side key -> (its reading, when it last changed)
        # The addresses this agent speaks for (None: all): on a real node its
        # own and its pods'; the collector joins what other agents own.
        self._addresses = addresses

    def record(self):
        """Keep a reading for later windows; called every `interval` seconds."""
        self._dnat.refresh()  # catch NAT entries while they last
        now, sides = time.monotonic(), self.sides()
        with self._lock:
            self._readings.append((now, sides))
        self._expire(now, sides)

    def _expire(self, now, sides):
        seen = {}
        for side in sides:
            previous = self._last_active.get(side.key)
            changed = previous is None or side.minus(previous[0]).active
            seen[side.key] = (side, now if changed else previous[1])
        self._last_active = seen
        idle = [key for key, (_, since_) in seen.items() if now - since_ > self._expiry]
        if idle:
            self._maps.forget_edges(idle)
            for key in idle:
                del self._last_active[key]
            log.info("forgot %d edge sides idle for %.0f s", len(idle), self._expiry)

    def run(self, stop):
        """Record until `stop` (a threading.Event) is set."""
        self.record()
        while not stop.wait(self._interval):
            try:
                self.record()
            except Exception:  # never let a bad read end the recorder
                log.exception("reading the edge maps failed")

    def endpoint_table(self):
        """{(ip, port): service} of the listeners this agent speaks for."""
        if time.monotonic() - self._endpoints_at > self._endpoint_ttl:
            table = {}
            for address, pid in sockets.local_endpoints().items():
                ident = self._maps.identity_of(pid)
                if ident is None:
                    who = identity.identify(pid)
                    ident = ident_hash(*who) if who else None
                if ident is not None:
                    table[address] = self._resolver.resolve(
                        cgroup_id(pid, self._cgroup_root), ident)
            self._endpoints, self._endpoints_at = table, time.monotonic()
            self._dnat.refresh()
        return {k: v for k, v in self._endpoints.items() if self._owns(k[0])}

    def _owns(self, ip):
        if self._addresses is None:
            return True
        if ip.version == 6 and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self._addresses)

    def sides(self):
        """Every edge side in the kernel maps, cumulative since the agent started."""
        out = []
        for stats, slots, key in self._maps.edge_rows():
            role = ROLES.get(key.role)
            if role is None:
                continue
            latency = Log2Histogram()
            for slot, count, sum_ns in slots:
                latency.add(slot, count, sum_ns)
            peer, peer_port = ipaddress.ip_address(bytes(key.peer)), key.peer_port
            if role == CLIENT:
                # A virtual IP the node DNATs: name the backend it reached.
                peer, peer_port = self._dnat.backend(peer, peer_port) or (peer, peer_port)
            side = EdgeSide(
                service=self._resolver.resolve(key.owner.cgroup_id, key.owner.ident),
                role=role, local=ipaddress.ip_address(bytes(key.local)),
                peer=peer, peer_port=peer_port, latency=latency, key=bytes(key))
            if stats is not None:
                side.connections, side.failed = stats.connections, stats.failed
                side.failed_requests = stats.failed_requests
                side.sent_bytes, side.received_bytes = stats.sent_bytes, stats.received_bytes
            out.append(side)
        return out

    def window_sides(self, window=None):
        """Sides active in the last `window` seconds (None: since the agent started)."""
        sides = [s for s in self.sides() if self._owns(s.local)]
        if window is None:
            return sides
        cutoff = time.monotonic() - window
        with self._lock:
            older = [r for t, r in self._readings if t <= cutoff]
            earlier = older[-1] if older else (self._readings[0][1] if self._readings else [])
        return since(sides, earlier)
