"""Read access to the loaded probes' maps: the single source of every figure.

Nothing here keeps a copy of a measurement; each scrape reads the maps anew.
"""

import collections
import ctypes
import logging
import threading
import time

from taskscope.agent.kernel_abi import (EDGE_FLUSH_NS, MAP_SIZES, Drop, IdentKind, Phase, Role,
                                        fnv1a, ident_hash)
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


# Maps keyed by an owner (struct owner, or a key whose `owner` field is one)
# that only ever gain entries in the kernel: agent/reclaim.py retires the
# entries of owners that are gone.
OWNER_MAPS = ("tcp_stats", "runqueue_latency", "blockio_latency", "tcp_connect_latency",
              "tcp_rtt")
# Retired owners: cgroup 0, which bpf_get_current_cgroup_id never returns,
# so the kernel never writes their entries and user space may add to them.
RETIRED_CGROUP = 0
BPF_NOEXIST = 1


def _key_owner(map_name, key):
    """The struct owner of an owner map's key (tcp_stats is keyed by one)."""
    return key if map_name == "tcp_stats" else key.owner


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
        # Reads of owner maps and the reclaim that moves their entries exclude
        # each other: a scrape never sees an entry both moved and not.
        self._owners_lock = threading.RLock()
        self.reclaimed = collections.Counter()  # (map, reason) -> entries reclaimed
        self._retired_names = {}  # retired identity -> (its service's full name, pod labels)

    def has(self, map_name):
        try:
            self._bpf[map_name]
            return True
        except KeyError:
            return False

    def rows(self, map_name):
        """[(key, value)] of a hash map, in one batched syscall where the kernel allows."""
        table = self._bpf[map_name]
        with self._owners_lock:
            return self._rows(map_name, table)

    def _rows(self, map_name, table):
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
        with self._owners_lock:
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
            if ident in self._retired_names:
                return (IdentKind.OTEL, self._retired_names[ident][0])
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


    # Reclaim (agent/reclaim.py decides; these move the entries).

    def owners(self):
        """{map: {(cgroup id, identity): entries}} of the loaded owner maps
        and counter_slot_owners (one entry per slot)."""
        out = {}
        for name in OWNER_MAPS + ("counter_slot_owners",):
            if not self.has(name):
                continue
            counts = collections.Counter()
            for key, value in self.rows(name):
                owner = value if name == "counter_slot_owners" else _key_owner(name, key)
                counts[(owner.cgroup_id, owner.ident)] += 1
            out[name] = counts
        return out

    def fill(self, map_name):
        """Entries at the last read / capacity of an exported map."""
        return self._sizes.get(map_name, 0) / MAP_SIZES[EXPORTED_MAPS[map_name]]

    def retired_identity(self, service, labels=()):
        """The identity of the retired owner of `service` with pod `labels`
        ((name, value) pairs), its name registered; or None when ident_names
        is full.  Hashed over the whole name and labels (the kernel's
        identities see only SERVICE_NAME_LEN bytes), whose full text is kept
        here: a retired series shows the live one's name and labels."""
        encoded = service.encode("utf-8", "surrogateescape")
        text = "\0".join(["retired", service, *(f"{k}={v}" for k, v in labels)])
        ident = fnv1a(text.encode("utf-8", "surrogateescape"))
        table = self._bpf["ident_names"]
        leaf = table.Leaf()
        leaf.kind = IdentKind.OTEL
        leaf.name = encoded[: len(leaf.name) - 1]
        try:
            table[table.Key(ident)] = leaf
        except Exception:  # BCC raises plain Exception when the map is full
            return None
        with self._names_lock:
            self._retired_names[ident] = (service, tuple(labels))
        return ident

    def retired_labels(self, ident):
        """The pod labels of a retired owner, or None if it is not one."""
        with self._names_lock:
            entry = self._retired_names.get(ident)
        return dict(entry[1]) if entry else None

    def retire(self, moves, reason):
        """Move the entries of owners `moves` {(cgroup, identity): retired
        identity, or None to delete} onto (RETIRED_CGROUP, retired identity),
        adding counts, in every owner map and in the byte counters; counted
        in `reclaimed` under `reason`.  Returns the counter slots freed."""
        if not moves:
            return set()
        with self._owners_lock:
            for name in OWNER_MAPS:
                if self.has(name):
                    self._retire_map(name, moves, reason)
            if self.has("counter_slot_owners"):
                return self._retire_slots(moves, reason)
        return set()

    def _retire_map(self, name, moves, reason):
        table = self._bpf[name]
        for key, value in self.rows(name):
            owner = _key_owner(name, key)
            target = moves.get((owner.cgroup_id, owner.ident), False)
            if target is False:
                continue
            if target is not None:
                into = table.Key.from_buffer_copy(bytes(key))
                into_owner = _key_owner(name, into)
                into_owner.cgroup_id, into_owner.ident = RETIRED_CGROUP, target
                merged = table.get(into) or table.Leaf()
                for field, _ in table.Leaf._fields_:
                    setattr(merged, field, getattr(merged, field) + getattr(value, field))
                try:
                    table[into] = merged
                except Exception:  # full: the counts go with the entry
                    self.reclaimed[(name, "lost")] += 1
            table.pop(key, None)
            self.reclaimed[(name, reason)] += 1

    def _retire_slots(self, moves, reason):
        owners, table = self._bpf["counter_slot_owners"], self._bpf["tcp_bytes"]
        rows = self.rows("counter_slot_owners")
        used = {slot for slot, _ in rows}
        retired_slot = {o.ident: slot for slot, o in rows if o.cgroup_id == RETIRED_CGROUP}
        freed = set()
        for slot, owner in rows:
            target = moves.get((owner.cgroup_id, owner.ident), False)
            if target is False:
                continue
            per_cpu = table[table.Key(slot)]
            carried = [(c.sent_bytes, c.received_bytes) for c in per_cpu]
            table[table.Key(slot)] = table.Leaf()
            owners.pop(owners.Key(slot), None)
            used.discard(slot)
            freed.add(slot)
            self.reclaimed[("counter_slot_owners", reason)] += 1
            if target is None or not any(s or r for s, r in carried):
                continue
            into = retired_slot.get(target)
            if into is None:
                into = self._claim_slot(owners, used, target)
                if into is None:
                    self.reclaimed[("counter_slot_owners", "lost")] += 1
                    continue
                retired_slot[target] = into
            sums = table[table.Key(into)]
            for cpu, (sent, received) in enumerate(carried):
                sums[cpu].sent_bytes += sent
                sums[cpu].received_bytes += received
            table[table.Key(into)] = sums
        return freed

    def _claim_slot(self, owners, used, ident):
        """A free counter slot for retired `ident`, inserted as the kernel
        does (BPF_NOEXIST: a slot the kernel claims meanwhile is not taken)."""
        from bcc.libbcc import lib  # only a loaded agent gets here
        leaf = owners.Leaf()
        leaf.cgroup_id, leaf.ident = RETIRED_CGROUP, ident
        for slot in range(MAP_SIZES["MAX_COUNTER_SLOTS"] - 1, 0, -1):
            if slot in used:
                continue
            key = owners.Key(slot)
            if lib.bpf_update_elem(owners.map_fd, ctypes.byref(key), ctypes.byref(leaf),
                                   BPF_NOEXIST) == 0:
                used.add(slot)
                return slot
        return None

    def drop_retired(self, name, idents=None, reason="retired_dropped"):
        """Delete the retired entries of one owner map, of `idents` only or
        all (their counts are lost: those services' series restart from
        zero); returns how many."""
        def chosen(owner):
            return owner.cgroup_id == RETIRED_CGROUP and owner.ident and (
                idents is None or owner.ident in idents)
        if name == "counter_slot_owners":
            with self._owners_lock:
                moves = {(RETIRED_CGROUP, o.ident): None for _, o in self.rows(name)
                         if chosen(o)}
                return len(self._retire_slots(moves, reason))
        table, n = self._bpf[name], 0
        with self._owners_lock:
            for key, _ in self.rows(name):
                if chosen(_key_owner(name, key)):
                    table.pop(key, None)
                    n += 1
            self.reclaimed[(name, reason)] += n
        return n

    def release_slots(self, tgids, freed):
        """Clear cached counter slots that point at `freed` slots (or at slot
        0, "none free", once slots were freed) in the entries of processes
        `tgids` and of the sockets, so they claim again on their next event."""
        if not freed:
            return
        stale = {slot + 1 for slot in freed} | {1}
        processes = self._bpf["processes"]
        for tgid in tgids:
            key = processes.Key(tgid)
            try:
                process = processes[key]
            except (KeyError, IndexError):
                continue
            if process.counter_slot in stale:
                process.counter_slot = 0
                processes[key] = process
        for name in ("tcp_socket_slots", "tcp_sockets"):
            if not self.has(name):
                continue
            table = self._bpf[name]
            for key, value in self.rows(name):
                info = value.info if name == "tcp_socket_slots" else value
                if getattr(info, "counter_slot", 0) in stale:
                    info.counter_slot = 0
                    table[key] = value

    def identities_of(self, tgids):
        """The identities the kernel gave processes `tgids`."""
        return {i for i in (self.identity_of(t) for t in tgids) if i}

    def referenced_identities(self):
        """Identities some map still refers to (owners, edges, listeners,
        connections listed at start)."""
        idents = set()
        for counts in self.owners().values():
            idents.update(ident for _, ident in counts)
        for name in ("edge_latency", "edge_stats"):
            if self.has(name):
                idents.update(key.owner.ident for key, _ in self.rows(name))
        if self.has("tcp_listeners"):
            idents.update(owner.ident for _, owner in self.rows("tcp_listeners"))
        if self.has("tcp_preexisting"):
            idents.update(edge.owner.ident for _, edge in self.rows("tcp_preexisting"))
        return idents

    def forget_identities(self, keep):
        """Delete the names of identities not in `keep`; returns how many."""
        table, n = self._bpf["ident_names"], 0
        for ident, _ in self.rows("ident_names"):
            if ident not in keep:
                table.pop(table.Key(ident), None)
                with self._names_lock:
                    self._retired_names.pop(ident, None)
                n += 1
        self.reclaimed[("ident_names", "unreferenced")] += n
        return n
