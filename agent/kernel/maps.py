"""Read access to the loaded probes' maps: the single source of every figure.

Nothing here keeps a copy of a measurement; each scrape reads the maps anew.
"""

import collections
import ctypes
import logging
import threading
import time

from taskscope.agent.kernel_abi import EDGE_FLUSH_NS, MAP_SIZES, Drop, Phase, Role, ident_hash
from taskscope.records.histogram import log2_slot

log = logging.getLogger(__name__)

FIBONACCI = 0x9E3779B97F4A7C15  # the socket table's hash (bpf/tcp/sockets.h)
MASK64 = (1 << 64) - 1

# Map name -> the MAP_SIZES flag that bounds it, for the entries/capacity gauges.
EXPORTED_MAPS = {
    "runqueue_latency": "RUNQUEUE_HIST_ENTRIES",
    "blockio_latency": "BLOCKIO_HIST_ENTRIES",
    "tcp_stats": "TCP_STATS_ENTRIES",
    "counter_slot_owners": "MAX_COUNTER_SLOTS",
    "tcp_connect_latency": "TCP_HIST_ENTRIES",
    "tcp_rtt": "TCP_HIST_ENTRIES",
    "edge_latency": "EDGE_HIST_ENTRIES",
    "edge_stats": "EDGE_ENTRIES",
    "ident_names": "MAX_IDENTITIES",
}


def _plain(value):
    return value.value if isinstance(value, ctypes._SimpleCData) else value


class KernelMaps:
    """The loaded BPF module, seen as tables of typed rows."""

    def __init__(self, bpf, probe_status, probe_variants=None, name_cache_size=16384):
        self._bpf = bpf
        self.probe_status = probe_status  # probe name -> bool (loaded and attached)
        # probe name -> what feeds it (packets, raw_tracepoints, tracepoints)
        self.probe_variants = probe_variants or {}
        self._names = collections.OrderedDict()
        self._names_lock = threading.Lock()  # scrapes and the graph recorder share it
        # Reading the edge maps and folding connections' series in them
        # exclude each other: a reading never sees a series twice or not at all.
        self._edges_lock = threading.Lock()
        self._name_cache_size = name_cache_size
        self._sizes = {}

    def has(self, map_name):
        try:
            self._bpf[map_name]
            return True
        except KeyError:
            return False

    def rows(self, map_name):
        """[(key, value)] of a hash map, in one batched syscall where the kernel allows."""
        table = self._bpf[map_name]
        try:
            rows = list(table.items_lookup_batch())
        except Exception:  # BCC raises plain Exception where batching is unsupported
            rows = list(table.items())
        self._sizes[map_name] = len(rows)
        # Batched reads give plain ints for scalar keys, items() ctypes scalars.
        return [(_plain(k), _plain(v)) for k, v in rows]

    def entries(self):
        """{map: (entries at the last read, capacity)} for the maps read so far."""
        return {m: (n, MAP_SIZES[EXPORTED_MAPS[m]]) for m, n in self._sizes.items()
                if m in EXPORTED_MAPS}

    def tcp_bytes(self):
        """[(owner, sent, received)] summed over CPUs, one row per counter slot.

        Slot 0 collects bytes of owners that found no free slot; it is
        reported with the all-zero owner, i.e. as service "unknown".
        """
        owners, table = self._bpf["counter_slot_owners"], self._bpf["tcp_bytes"]
        rows = [(owner, slot) for slot, owner in self.rows("counter_slot_owners")]
        rows.append((owners.Leaf(), 0))
        out = []
        for owner, slot in rows:
            per_cpu = table[table.Key(slot)]
            out.append((owner, sum(c.sent_bytes for c in per_cpu),
                        sum(c.received_bytes for c in per_cpu)))
        return out

    def edge_rows(self):
        """[stats or None, [(slot, count, sum_ns)], edge key without slot] of the graph
        maps, plus what connections still hold in their batches."""
        with self._edges_lock:
            return self._edge_rows()

    def _edge_rows(self):
        edges = {}
        for key, value in self.rows("edge_latency"):
            slot = key.slot
            key.slot = 0
            edges.setdefault(bytes(key), [None, [], key])[1].append(
                (slot, value.count, value.sum_ns))
        for key, stats in self.rows("edge_stats"):
            edges.setdefault(bytes(key), [None, [], key])[0] = stats
        # After the edge maps, never before: a batch the kernel moves onto its
        # edge between the two reads is then missed by this reading (and
        # seen by the next), where the other order would count it twice and
        # make the next reading go backwards.
        self._add_batched(edges)
        return list(edges.values())

    def _socket_info(self, sk):
        """The socket table's entry for `sk` (a copy), as bpf/tcp/sockets.h finds it."""
        slots = self._bpf["tcp_socket_slots"]
        index = ((((sk >> 6) * FIBONACCI) & MASK64) >> 32) & (len(slots) - 1)
        slot = slots[ctypes.c_int(index)]
        if slot.sk == sk:
            return slot.info
        try:
            return self._bpf["tcp_sockets"][ctypes.c_ulonglong(sk)]
        except KeyError:
            return None

    def _add_batched(self, edges):
        """Add to `edges` the exchanges, bytes and failures each connection
        holds until its next flush (at most EDGE_FLUSH_NS after its last
        packet, or at close), and the exchange whose response has been
        quiet for EDGE_FLUSH_NS: it is over unless more of it comes."""
        try:
            self._bpf["tcp_exchange_sockets"]
        except KeyError:  # tcp_exchanges is not loaded
            return
        now = time.monotonic_ns()  # CLOCK_MONOTONIC, as bpf_ktime_get_ns
        for sk, _ in self.rows("tcp_exchange_sockets"):
            info = self._socket_info(sk)
            if info is None or not info.edge.role:
                continue
            slots = []
            if info.batch_count:
                slots.append((info.batch_slot, info.batch_count, info.batch_ns))
            failed = info.unflushed_failed
            if info.phase == Phase.RESPONSE and now - info.last_response_ns >= EDGE_FLUSH_NS:
                ns = max(info.last_response_ns - info.exchange_start_ns, 0)
                slots.append((log2_slot(ns), 1, ns))
                failed += info.exchange_failed
            if not (slots or failed or info.unflushed_sent or info.unflushed_received):
                continue
            key = info.edge
            key.slot = 0
            row = edges.setdefault(bytes(key), [None, [], key])
            row[1].extend(slots)
            if row[0] is None:
                row[0] = self._bpf["edge_stats"].Leaf()
            row[0].sent_bytes += info.unflushed_sent
            row[0].received_bytes += info.unflushed_received
            row[0].failed_requests += failed

    def add_virtual_ips(self, addresses):
        """Mark (v4-mapped ip, port) as virtual IPs for the kernel side (bpf/tcp/
        exchanges.h): connections to them get series of their own.  Returns how
        many could not be added because the map is full."""
        try:
            table = self._bpf["tcp_virtual_ips"]
        except KeyError:  # tcp_exchanges is not loaded
            return 0
        refused = 0
        for ip, port in addresses:
            key = table.Key()
            ctypes.memmove(key.addr, ip.packed, 16)
            key.port = port
            try:
                table[key] = ctypes.c_ubyte(1)
            except Exception:  # BCC raises plain Exception when the map is full
                refused += 1
        return refused

    def open_virtual_connections(self):
        """Edge keys (bytes, slot 0) of the connections to virtual IPs still open."""
        try:
            self._bpf["tcp_virtual_connections"]
        except KeyError:
            return set()
        return {bytes(key) for _, key in self.rows("tcp_virtual_connections")}

    def fold_edges(self, folds):
        """Move the series of `folds` {edge key bytes (slot 0): target edge key}
        onto their targets and delete them.  Only for connections that are
        closed (the kernel no longer writes their keys) onto targets only user
        space writes (conn_port FOLDED_CONNECTIONS), so read-modify-write is safe."""
        if not folds:
            return
        latency, stats = self._bpf["edge_latency"], self._bpf["edge_stats"]
        with self._edges_lock:
            for key, value in self.rows("edge_latency"):
                slot = key.slot
                key.slot = 0
                target = folds.get(bytes(key))
                if target is None:
                    continue
                key.slot = slot
                into = latency.Key.from_buffer_copy(bytes(target))
                into.slot = slot
                old = latency.get(into)
                merged = latency.Leaf(value.count + (old.count if old else 0),
                                      value.sum_ns + (old.sum_ns if old else 0))
                latency[into] = merged
                latency.pop(key, None)
            for key, value in self.rows("edge_stats"):
                target = folds.get(bytes(key))
                if target is None:
                    continue
                into = stats.Key.from_buffer_copy(bytes(target))
                old = stats.get(into) or stats.Leaf()
                for name, _ in stats.Leaf._fields_:
                    setattr(old, name, getattr(old, name) + getattr(value, name))
                stats[into] = old
                stats.pop(key, None)

    def forget_edges(self, keys):
        """Delete edge sides (kernel keys without slot, as bytes) from both graph maps."""
        latency, stats = self._bpf["edge_latency"], self._bpf["edge_stats"]
        gone = set(keys)
        for key, _ in self.rows("edge_latency"):
            slot = key.slot
            key.slot = 0
            if bytes(key) in gone:
                key.slot = slot
                latency.pop(key, None)
        for key, _ in self.rows("edge_stats"):
            if bytes(key) in gone:
                stats.pop(key, None)

    def drops(self):
        table = self._bpf["drops"]
        return {reason: sum(table[ctypes.c_int(reason.value)]) for reason in Drop}

    def ident_name(self, ident):
        """(kind, name) of an identity, or None; identities never change, so cached."""
        with self._names_lock:
            if ident in self._names:
                return self._names[ident]
        table = self._bpf["ident_names"]
        try:
            leaf = table[table.Key(ident)]
        except KeyError:
            return None
        entry = (leaf.kind, leaf.name.decode("utf-8", "replace"))
        with self._names_lock:
            self._names[ident] = entry
            if len(self._names) > self._name_cache_size:
                self._names.popitem(last=False)
        return entry

    def identity_of(self, tgid):
        """The identity the kernel gave process `tgid` (at exec, fork or seeding), or None.

        Preferred to /proc: a process that rewrote its title has lost the
        environment its OTEL_SERVICE_NAME was read from.
        """
        table = self._bpf["processes"]
        try:
            ident = table[table.Key(tgid)].ident
        except (KeyError, IndexError):
            return None
        return ident or None

    def seed_identities(self, processes):
        """Name processes that predate the agent: [(tgid, kind, name bytes)]."""
        table, names = self._bpf["processes"], self._bpf["ident_names"]
        for tgid, kind, name in processes:
            ident = ident_hash(kind, name)
            leaf = names.Leaf()
            leaf.kind = kind
            leaf.name = name
            process = table.Leaf()
            process.ident = ident
            try:
                names[names.Key(ident)] = leaf
                table[table.Key(tgid)] = process
            except Exception as exc:  # a full map or a pid beyond PID_SLOTS
                log.warning("cannot seed identity of pid %d: %s", tgid, exc)
        log.info("named %d running processes", len(processes))

    def seed_listeners(self, owners, by_netns):
        """Record who listens where: {(netns inode, port): (cgroup id, kind, name
        bytes)}.  Without `by_netns` (the kernel side cannot read namespaces
        here) listeners are keyed by port alone, as the probe keys them."""
        table = self._bpf["tcp_listeners"]
        for (netns, port), (cgroup, kind, name) in owners.items():
            key = table.Key()
            key.netns, key.port = (netns if by_netns else 0), port
            leaf = table.Leaf()
            leaf.cgroup_id = cgroup
            leaf.ident = ident_hash(kind, name)
            table[key] = leaf
        log.info("found %d TCP listeners already open", len(owners))

    def seed_connections(self, connections, by_netns=True):
        """Connections open before the agent: [(netns, local ip, local port, peer ip,
        peer port, role, (cgroup id, kind, name bytes))].  Without `by_netns`
        (adopted from packets, which carry no namespace) keyed by addresses alone."""
        table = self._bpf["tcp_preexisting"]
        for netns, local, lport, peer, pport, role, (cgroup, kind, name) in connections:
            key, edge = table.Key(), table.Leaf()
            key.netns, key.local_port, key.peer_port = (netns if by_netns else 0), lport, pport
            key.local[:] = local.packed
            key.peer[:] = peer.packed
            edge.owner.cgroup_id = cgroup
            edge.owner.ident = ident_hash(kind, name)
            edge.local[:] = local.packed
            edge.peer[:] = peer.packed
            edge.peer_port = pport if role == Role.CLIENT else 0
            edge.role = role
            try:
                table[key] = edge
            except Exception as exc:  # map full
                log.warning("cannot list every open connection: %s", exc)
                break
        log.info("listed %d TCP connections already open", len(connections))

