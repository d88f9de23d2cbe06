"""The agent's side of the service graph: its kernel's edge maps as EdgeSide
records over a time window, and the table of local listeners that names
a client's peer.  Building the graph from them is topology's job."""

import ctypes
import ipaddress
import logging
import threading
import time

from taskscope.agent.host import identity, sockets
from taskscope.agent.host.cgroups import cgroup_id
from taskscope.agent.host.conntrack import Conntrack
from taskscope.agent.kernel_abi import FOLDED_CONNECTIONS, Role, ident_hash
from taskscope.records.edges import (CLIENT, SERVER, EdgeSide, add_packed, pack_counters, since,
                                     v4_mapped)
from taskscope.records.histogram import Log2Histogram

log = logging.getLogger(__name__)

ROLES = {Role.CLIENT: CLIENT, Role.SERVER: SERVER}
# A reading that finds connections to virtual IPs it cannot name reads
# conntrack again, at most this often (seconds).
NAT_REFRESH_MIN = 1.0
# Every namespace's conntrack is read at each reading while translations
# are seen, and this often (seconds) while none are: reading them all is
# most of what an idle agent does every 10 seconds.
NAT_QUIET_REFRESH = 60.0
# Readings are kept every `interval` for the last FINE_SPAN seconds and one
# per COARSE_STEP seconds beyond: a window longer than FINE_SPAN starts at
# most COARSE_STEP earlier than asked, and 15 minutes take 26 readings, not 92.
FINE_SPAN = 120.0
COARSE_STEP = 60.0


class EdgeSideRecorder:
    """Reads the edge maps on demand and keeps readings for windows.

    The kernel maps are cumulative; a window is the difference between now
    and a reading taken `window` seconds ago.  Readings are kept every
    `interval` seconds for `max_window` seconds, so memory stays bounded;
    each keeps only a side's packed counters (records.edges.pack_counters,
    under a key object shared by every reading).
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
        self._nat = Conntrack()
        self._nat_at = float("-inf")
        self._nat_all_at = float("-inf")  # the last read of every namespace's table
        self._virtual_ips_refused = 0
        self.max_window = max_window
        self._interval = interval
        self._readings = []  # [(monotonic time, {key: packed counters})], oldest first
        self._lock = threading.Lock()
        self._started = time.monotonic()  # the kernel maps count from here
        # Edge sides idle this long are deleted from the kernel maps, which
        # would otherwise fill with every connection pair ever seen.
        self._expiry = expiry
        self._last_active = {}  # side key -> (its packed counters, when they last changed)
        self._keys = {}  # side key -> the one key object the readings share
        # The addresses this agent speaks for (None: all): on a real node its
        # own and its pods'; the collector joins what other agents own.
        self._addresses = addresses

    def record(self):
        """Keep a reading for later windows; called every `interval` seconds."""
        if self._nat.found or time.monotonic() - self._nat_all_at >= NAT_QUIET_REFRESH:
            self._refresh_nat(every_namespace=True)  # catch NAT entries while they last
            self._nat_all_at = time.monotonic()
        self._fold_closed_connections()
        now, sides = time.monotonic(), self.sides()
        reading = {self._keys.setdefault(side.key, side.key): pack_counters(side)
                   for side in sides}
        with self._lock:
            self._readings = _thin(self._readings + [(now, reading)], now,
                                   self.max_window + COARSE_STEP)
        self._expire(now, reading)

    def _refresh_nat(self, every_namespace=False):
        self._nat_at = time.monotonic()
        self._nat.refresh(every_namespace)
        refused = self._maps.add_virtual_ips(self._nat.virtual_ips())
        if refused and not self._virtual_ips_refused:
            log.warning("%d virtual IPs could not be marked (the kernel map is full): their "
                        "connections are named after the backend seen last", refused)
        self._virtual_ips_refused = refused

    def nat_readable(self):
        """Whether the last conntrack read worked (a gauge says so)."""
        return self._nat.readable

    def _connection_backend(self, key):
        """(ip, port) that served the one connection a kernel edge key is
        for (a connection to a virtual IP: conn_port is its local port), by
        its own conntrack entry; None for other keys or when unknown."""
        if key.conn_port in (0, FOLDED_CONNECTIONS):
            return None
        return self._nat.connection_backend(ipaddress.ip_address(bytes(key.local)), key.conn_port,
                                            ipaddress.ip_address(bytes(key.peer)), key.peer_port)

    def _backend(self, key):
        """(ip, port) a client side's connections reached: a connection to a
        virtual IP by its own conntrack entry, else the backend seen last
        behind that virtual IP, else the address it connected to."""
        peer, port = ipaddress.ip_address(bytes(key.peer)), key.peer_port
        return self._connection_backend(key) or self._nat.backend(peer, port) or (peer, port)

    def _fold_closed_connections(self):
        """Fold the series of closed connections to virtual IPs into one
        series per (client, backend): the kernel gives each such connection
        series of its own so that each lands on the backend that served it,
        and this keeps their number bounded by the connections open.  Stored
        readings are folded alike, so windows still subtract like from like."""
        rows = self._maps.edge_rows()  # before the open set: see KernelMaps.fold_edges
        still_open = self._maps.open_virtual_connections()
        folds = {}
        for _, _, key in rows:
            if key.role != Role.CLIENT or key.conn_port in (0, FOLDED_CONNECTIONS) or \
                    bytes(key) in still_open:
                continue
            target = type(key).from_buffer_copy(bytes(key))
            backend = self._connection_backend(key)
            if backend:
                ctypes.memmove(target.peer, v4_mapped(backend[0]).packed, 16)
                target.peer_port = backend[1]
            target.conn_port = FOLDED_CONNECTIONS
            folds[bytes(key)] = target
        if not folds:
            return
        self._maps.fold_edges(folds)
        renamed = {old: bytes(new) for old, new in folds.items()}
        with self._lock:
            for i, (t, reading) in enumerate(self._readings):
                self._readings[i] = (t, _fold_reading(reading, renamed))
            for old in renamed:
                self._last_active.pop(old, None)
                self._keys.pop(old, None)

    def _expire(self, now, reading):
        seen = {}
        for key, packed in reading.items():
            previous = self._last_active.get(key)
            changed = previous is None or packed != previous[0]  # cumulative: equal is idle
            seen[key] = (packed, now if changed else previous[1])
        self._last_active = seen
        idle = [key for key, (_, since_) in seen.items() if now - since_ > self._expiry]
        if idle:
            self._maps.forget_edges(idle)
            for key in idle:
                del self._last_active[key]
                self._keys.pop(key, None)
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
            self._refresh_nat()
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
        rows = self._maps.edge_rows()
        if time.monotonic() - self._nat_at >= NAT_REFRESH_MIN and any(
                key.conn_port not in (0, FOLDED_CONNECTIONS) and not self._connection_backend(key)
                for _, _, key in rows):
            self._refresh_nat()  # connections to virtual IPs it has not read yet
        for stats, slots, key in rows:
            role = ROLES.get(key.role)
            if role is None:
                continue
            latency = Log2Histogram()
            for slot, count, sum_ns in slots:
                latency.add(slot, count, sum_ns)
            peer, peer_port = ipaddress.ip_address(bytes(key.peer)), key.peer_port
            if role == CLIENT:
                # A virtual IP the node DNATs: name the backend it reached.
                peer, peer_port = self._backend(key)
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
            if older:
                earlier = older[-1]
            elif cutoff <= self._started or not self._readings:
                earlier = {}  # the window reaches back past the agent's start
            else:
                earlier = self._readings[0][1]  # the oldest reading still kept
        return since(sides, earlier)


def _thin(readings, now, keep_for):
    """Readings (oldest first) younger than `keep_for` seconds: all of the
    last FINE_SPAN seconds, the first of each COARSE_STEP before that."""
    kept, bucket = [], None
    for t, reading in readings:
        age = now - t
        if age > keep_for:
            continue
        if age > FINE_SPAN:
            if int(t // COARSE_STEP) == bucket:
                continue
            bucket = int(t // COARSE_STEP)
        kept.append((t, reading))
    return kept


def _fold_reading(reading, renamed):
    """A stored reading with the sides whose keys `renamed` maps folded into
    one side per new key (added to a side already there)."""
    out = {}
    for key, packed in reading.items():
        new = renamed.get(key, key)
        out[new] = add_packed(out[new], packed) if new in out else packed
    return out
