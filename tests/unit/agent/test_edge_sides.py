"""Folding stored readings (agent/edge_sides.py): a window over folded
connections still subtracts like from like."""

import ipaddress

from taskscope.agent.edge_sides import _fold_reading
from taskscope.records.edges import CLIENT, EdgeSide, since
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
    earlier_folded = _fold_reading(earlier + [side(b"folded", 7, 70)],
                                   {b"conn-a": b"folded", b"conn-b": b"folded"})
    assert sorted(s.key for s in earlier_folded) == [b"folded", b"other"]
    window = {s.key: s for s in since(now, earlier_folded)}
    assert window[b"folded"].latency.count == 2 and window[b"folded"].sent_bytes == 20
    assert window[b"other"].latency.count == 1
