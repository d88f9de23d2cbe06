"""The agent's own service graph: kernel edge maps -> topology.build_graph."""

import ipaddress
import logging
import time

from agent import endpoints, identity, listeners
from agent.histogram import Log2Histogram
from topology.graph import CLIENT, SERVER, EdgeSide, build_graph

log = logging.getLogger(__name__)

ROLES = {1: CLIENT, 2: SERVER}


class ServiceGraph:
    """Builds the graph on demand; the listener table is rescanned at most
    every `endpoint_ttl` seconds (it walks /proc)."""

    def __init__(self, maps, resolver, cgroup_root, endpoint_ttl=5.0):
        self._maps = maps
        self._resolver = resolver
        self._cgroup_root = cgroup_root
        self._endpoint_ttl = endpoint_ttl
        self._endpoints = {}
        self._endpoints_at = float("-inf")

    def _endpoint_table(self):
        if time.monotonic() - self._endpoints_at > self._endpoint_ttl:
            table = {}
            for address, pid in endpoints.local_endpoints().items():
                who = identity.identify(pid)
                if who:
                    table[address] = self._resolver.resolve(
                        listeners.cgroup_id(pid, self._cgroup_root), identity.ident_hash(*who))
            self._endpoints, self._endpoints_at = table, time.monotonic()
        return self._endpoints

    def sides(self):
        out = []
        for stats, slots, key in self._maps.edge_rows():
            role = ROLES.get(key.role)
            if role is None:
                continue
            latency = Log2Histogram()
            for slot, count, sum_ns in slots:
                latency.add(slot, count, sum_ns)
            side = EdgeSide(
                service=self._resolver.resolve(key.owner.cgroup_id, key.owner.ident),
                role=role, local=ipaddress.ip_address(bytes(key.local)),
                peer=ipaddress.ip_address(bytes(key.peer)), peer_port=key.peer_port,
                latency=latency)
            if stats is not None:
                side.connections, side.failed = stats.connections, stats.failed
                side.sent_bytes, side.received_bytes = stats.sent_bytes, stats.received_bytes
            out.append(side)
        return out

    def graph(self):
        table = self._endpoint_table()
        return build_graph(self.sides(), lambda ip, port: table.get((ip, port)))
