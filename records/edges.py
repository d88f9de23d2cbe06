"""One side of a connection in the service graph, as an agent measures it.

Each agent reports client sides (a service called ip:port) and server sides
(a service was called from ip); topology joins them into edges.
"""

import ipaddress
from dataclasses import dataclass, field, replace

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
    failed: int = 0           # connects refused or timed out
    sent_bytes: int = 0
    received_bytes: int = 0
    key: bytes = b""          # identity of the series across readings
    failed_requests: int = 0  # exchanges that failed (5xx, aborted): part of latency.count

    COUNTS = ("connections", "failed", "sent_bytes", "received_bytes", "failed_requests")

    def minus(self, earlier):
        """This side's activity since `earlier`, a previous reading of it."""
        return replace(self, latency=self.latency.minus(earlier.latency),
                       **{k: getattr(self, k) - getattr(earlier, k) for k in self.COUNTS})

    def plus(self, other):
        """This side and `other` (another series of the same side) as one."""
        latency = Log2Histogram()
        latency.merge(self.latency)
        latency.merge(other.latency)
        return replace(self, latency=latency,
                       **{k: getattr(self, k) + getattr(other, k) for k in self.COUNTS})

    @property
    def active(self):
        return bool(self.latency.count or any(getattr(self, k) for k in self.COUNTS))


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
