"""Folding stored readings (agent/edge_sides.py): a window over folded
connections still subtracts like from like."""

import ipaddress

from taskscope.agent.edge_sides import COARSE_STEP, FINE_SPAN, _fold_reading, _thin
from taskscope.records.edges import (CLIENT, PACKED_BASE, PACKED_PER_SLOT, EdgeSide,
                                     pack_reading, since, unpack_counters)
from taskscope.records.histogram import Log2Histogram

IP = ipaddress.ip_address


def side(key, count, sent):
    h = Log2Histogram()
    h.add(20, count, count * 1_000_000)
    return EdgeSide("web", CLIENT, IP("10.0.0.5"), IP("10.1.0.1"), 8080, h, sent_bytes=sent,
                    key=key)


def test_folded_connections_become_one_side_and_windows_stay_exact():
    earlier = [side(b"conn-a", 3, 30), side(b"conn-b", 1, 10), side(b"other", 5, 50)]
    # Since then conn-a did 2 more exchanges and closed, conn-b closed, and
    # both were folded into "folded", which already held 7 from before.
    now = [side(b"folded", 7 + 5 + 1, 70 + 50 + 10), side(b"other", 6, 60)]
    earlier_folded = _fold_reading(pack_reading(earlier + [side(b"folded", 7, 70)]),
                                   {b"conn-a": b"folded", b"conn-b": b"folded"})
    assert sorted(earlier_folded) == [b"folded", b"other"]
    window = {s.key: s for s in since(now, earlier_folded)}
    assert window[b"folded"].latency.count == 2 and window[b"folded"].sent_bytes == 20
    assert window[b"other"].latency.count == 1


def test_a_stored_reading_keeps_counters_only_and_gives_them_back():
    h = Log2Histogram()
    h.add(3, 2, 20)
    h.add(40, 1, 2 ** 41)
    full = EdgeSide("web", CLIENT, IP("10.0.0.5"), IP("10.1.0.1"), 8080, h, connections=4,
                    failed=1, sent_bytes=2 ** 40, received_bytes=7, key=b"k",
                    failed_requests=1)
    packed = pack_reading([full])[b"k"]
    assert len(packed) == PACKED_BASE + 2 * PACKED_PER_SLOT == 74
    empty = EdgeSide("web", CLIENT, IP("10.0.0.5"), IP("10.1.0.1"), 8080, key=b"k")
    assert unpack_counters(empty, packed) == full
    assert since([full], {b"k": packed}) == []


def test_readings_are_thinned_beyond_the_fine_span_and_dropped_beyond_the_window():
    readings = []
    for t in range(0, 2000, 10):
        readings = _thin(readings + [(float(t), {})], float(t), 900.0 + COARSE_STEP)
    now = 1990.0
    times = [t for t, _ in readings]
    assert len(times) <= 27
    assert [t for t in times if now - t <= FINE_SPAN] == [now - k for k in range(120, -1, -10)]
    assert min(times) >= now - 900.0 - COARSE_STEP
    assert min(times) <= now - 900.0  # a 15-minute window still finds its start
    assert max(b - a for a, b in zip(times, times[1:])) <= COARSE_STEP
