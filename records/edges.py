"""One side of a connection in the service graph, as an agent measures it.

Each agent reports client sides (a service called ip:port) and server sides
(a service was called from ip); topology joins them into edges.
"""

import ipaddress
import struct
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


# A stored reading keeps each side as its cumulative counters only, packed:
# COUNTS (EdgeSide.COUNTS) then SLOT per non-empty latency slot.  That is
# PACKED_BASE + PACKED_PER_SLOT * slots bytes, plus the bytes object's own
# header (33) and the reading dict's entry; the side's names and addresses
# live once, in the current reading.
_PACKED_COUNTS = struct.Struct("<5Q")
_PACKED_SLOT = struct.Struct("<BQQ")
PACKED_BASE = _PACKED_COUNTS.size
PACKED_PER_SLOT = _PACKED_SLOT.size


def pack_counters(side):
    """The counters of `side`, as a stored reading keeps them."""
    slots = sorted(side.latency.slots.items())
    return _PACKED_COUNTS.pack(*(getattr(side, k) for k in EdgeSide.COUNTS)) + b"".join(
        _PACKED_SLOT.pack(slot, count, side.latency.slot_sums.get(slot, 0))
        for slot, count in slots if count)


def pack_reading(sides):
    """{key: packed counters} of a reading."""
    return {side.key: pack_counters(side) for side in sides}


def add_packed(a, b):
    """The sum of two packed counters (two series folded into one)."""
    return pack_counters(unpack_counters(unpack_counters(_EMPTY_SIDE, a), b, add=True))


def unpack_counters(template, packed, add=False):
    """`template` with the counters of `packed` (or, with `add`, plus them)."""
    counts = _PACKED_COUNTS.unpack_from(packed)
    latency = Log2Histogram()
    if add:
        latency.merge(template.latency)
    for offset in range(PACKED_BASE, len(packed), PACKED_PER_SLOT):
        latency.add(*_PACKED_SLOT.unpack_from(packed, offset))
    return replace(template, latency=latency, **{
        k: (getattr(template, k) if add else 0) + n for k, n in zip(EdgeSide.COUNTS, counts)})


def since(current, earlier):
    """Sides active between two readings (cumulative counters), as deltas;
    `earlier` is a stored reading ({key: packed counters}, pack_reading).

    A side absent from `earlier` counts from zero; one with no activity in
    between is left out, which is how idle edges expire from a window.
    """
    out = []
    for side in current:
        packed = earlier.get(side.key)
        delta = side.minus(unpack_counters(side, packed)) if packed is not None else side
        if delta.active:
            out.append(delta)
    return out


_EMPTY_SIDE = EdgeSide("", CLIENT, None, None, 0)


def v4_mapped(ip):
    """IPv4 as ::ffff:a.b.c.d, the form the kernel side keys every address in."""
    if ip.version == 4:
        return ipaddress.ip_address(b"\0" * 10 + b"\xff\xff" + ip.packed)
    return ip
