"""One side of a connection in the service graph, as an agent measures it.

Each agent reports client sides (a service called ip:port) and server sides
(a service was called from ip); topology joins them into edges.
"""

import ipaddress
from dataclasses import dataclass, field

from taskscope.records.histogram import Log2Histogram

__all__ = ["CLIENT", "SERVER", "EdgeSide", "since", "v4_mapped"]

CLIENT, SERVER = "client", "server"


@dataclass
class EdgeSide:
    service: str
    role: str                 # CLIENT or SERVER
    local: object             # ipaddress of this end
    peer: object              # ipaddress of the other end
    peer_port: int            # server port on a client side, 0 on a server side
    latency: Log2Histogram = field(default_factory=Log2Histogram)
    connections: int = 0
    failed: int = 0
    sent_bytes: int = 0
    received_bytes: int = 0
    key: bytes = b""          # identity of the series across readings

    def minus(self, earlier):
        """This side's activity since `earlier`, a previous reading of it."""
        return EdgeSide(self.service, self.role, self.local, self.peer, self.peer_port,
                        self.latency.minus(earlier.latency),
                        self.connections - earlier.connections, self.failed - earlier.failed,
                        self.sent_bytes - earlier.sent_bytes,
                        self.received_bytes - earlier.received_bytes, self.key)

    @property
    def active(self):
        return bool(self.latency.count or self.connections or self.failed
                    or self.sent_bytes or self.received_bytes)


def since(current, earlier):
    """Sides active between two readings (cumulative counters), as deltas.

    A side absent from `earlier` counts from zero; one with no activity in
    between is left out, which is how idle edges expire from a window.
    """
    before = {side.key: side for side in earlier}
    out = []
    for side in current:
        delta = side.minus(before[side.key]) if side.key in before else side
        if delta.active:
            out.append(delta)
    return out


def v4_mapped(ip):
    """IPv4 as ::ffff:a.b.c.d, the form the kernel side keys every address in."""
    if ip.version == 4:
        return ipaddress.ip_address(b"\0" * 10 + b"\xff\xff" + ip.packed)
    return ip
