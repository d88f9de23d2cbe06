"""The exchange format between agents and the collector: edge sides plus the
agent's listener table, as JSON.  Peer data is untrusted: a reply of the
wrong shape raises SidesFormatError; a malformed side or endpoint in it is
skipped and counted."""

import ipaddress
import logging

from taskscope.records.edges import CLIENT, SERVER, EdgeSide, v4_mapped
from taskscope.records.errors import TaskscopeError
from taskscope.records.histogram import MAX_SLOT, Log2Histogram

__all__ = ["SidesFormatError", "sides_to_json", "sides_from_json"]

log = logging.getLogger(__name__)

MAX_SIDES = 100_000
MAX_NAME = 256


class SidesFormatError(TaskscopeError):
    """A peer's graph data is malformed."""


def sides_to_json(sides, endpoints):
    """JSON-ready form of [EdgeSide] and {(ip, port): service}."""
    return {
        "sides": [{
            "service": s.service, "role": s.role, "local": str(s.local), "peer": str(s.peer),
            "peer_port": s.peer_port, "connections": s.connections, "failed": s.failed,
            "failed_requests": s.failed_requests,
            "sent_bytes": s.sent_bytes, "received_bytes": s.received_bytes,
            "latency": [[slot, count, s.latency.slot_sums.get(slot, 0)]
                        for slot, count in sorted(s.latency.slots.items())],
        } for s in sides],
        "endpoints": [{"ip": str(ip), "port": port, "service": service}
                      for (ip, port), service in sorted(endpoints.items(), key=str)],
    }


def _count(value, what):
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2 ** 64:
        raise SidesFormatError(f"{what}: expected a non-negative integer, got {value!r}")
    return value


def _name(value, what):
    if not isinstance(value, str) or not value or len(value) > MAX_NAME:
        raise SidesFormatError(f"{what}: expected a service name, got {value!r}")
    return value


def _ip(value, what):
    try:
        ip = ipaddress.ip_address(value)
    except (TypeError, ValueError):
        raise SidesFormatError(f"{what}: expected an IP address, got {value!r}") from None
    return v4_mapped(ip)


def _port(value, what):
    if _count(value, what) > 65535:
        raise SidesFormatError(f"{what}: {value} is not a port")
    return value


def _latency(rows, what):
    if not isinstance(rows, list) or len(rows) > MAX_SLOT + 1:
        raise SidesFormatError(f"{what}: expected a list of [slot, count, sum_ns]")
    hist = Log2Histogram()
    for row in rows:
        if not isinstance(row, list) or len(row) != 3:
            raise SidesFormatError(f"{what}: expected [slot, count, sum_ns], got {row!r}")
        slot, count, total = (_count(v, what) for v in row)
        if slot > MAX_SLOT:
            raise SidesFormatError(f"{what}: slot {slot} out of range")
        hist.add(slot, count, total)
    return hist


def _side(s, what):
    if not isinstance(s, dict):
        raise SidesFormatError(f"{what}: expected an object")
    role = s.get("role")
    if role not in (CLIENT, SERVER):
        raise SidesFormatError(f"{what}.role: expected client or server, got {role!r}")
    return EdgeSide(
        _name(s.get("service"), f"{what}.service"), role, _ip(s.get("local"), f"{what}.local"),
        _ip(s.get("peer"), f"{what}.peer"), _port(s.get("peer_port"), f"{what}.peer_port"),
        _latency(s.get("latency"), f"{what}.latency"),
        *(_count(s.get(k), f"{what}.{k}") for k in
          ("connections", "failed", "sent_bytes", "received_bytes")),
        # Agents older than failed requests do not send them.
        failed_requests=_count(s.get("failed_requests", 0), f"{what}.failed_requests"))


def sides_from_json(data):
    """([EdgeSide], {(ip, port): service}, skipped) from an agent's reply.

    A reply whose shape is wrong raises SidesFormatError; a side or endpoint
    that is malformed (a bad name, address or count) is skipped and counted
    in `skipped`, so one bad entry does not cost the agent's whole graph."""
    if not isinstance(data, dict):
        raise SidesFormatError("expected an object with sides and endpoints")
    sides, endpoints = data.get("sides"), data.get("endpoints")
    if not isinstance(sides, list) or not isinstance(endpoints, list):
        raise SidesFormatError("sides and endpoints must be lists")
    if len(sides) > MAX_SIDES or len(endpoints) > MAX_SIDES:
        raise SidesFormatError(f"more than {MAX_SIDES} sides or endpoints")
    out, table, skipped = [], {}, 0
    for i, s in enumerate(sides):
        try:
            out.append(_side(s, f"sides[{i}]"))
        except SidesFormatError as exc:
            log.debug("skipping %s", exc)
            skipped += 1
    for i, e in enumerate(endpoints):
        what = f"endpoints[{i}]"
        try:
            if not isinstance(e, dict):
                raise SidesFormatError(f"{what}: expected an object")
            table[(_ip(e.get("ip"), f"{what}.ip"), _port(e.get("port"), f"{what}.port"))] = \
                _name(e.get("service"), f"{what}.service")
        except SidesFormatError as exc:
            log.debug("skipping %s", exc)
            skipped += 1
    return out, table, skipped


