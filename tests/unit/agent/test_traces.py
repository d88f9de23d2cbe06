"""Pure logic of trace correlation on the node: the store and kernel events."""

import types

from taskscope.agent.kernel.segment_reader import segment_from_event
from taskscope.agent.trace_store import TraceStore
from tests.unit.fixtures import segment


def test_store_is_bounded_and_forgets_evicted_traces():
    store = TraceStore(capacity=3)
    for i in range(5):
        store.add(segment(trace=f"{i:032x}"))
    assert len(store) == 3 and store.evicted == 2
    assert store.trace(f"{0:032x}") == [] and len(store.trace(f"{4:032x}")) == 1


def test_slowest_filters_by_service_and_duration():
    store = TraceStore()
    store.add(segment(trace="1" * 32, end=100.1))
    store.add(segment(trace="2" * 32, end=102.0))
    store.add(segment(trace="3" * 32, service="payments", end=105.0))
    found = store.slowest(service="checkout", min_seconds=0.5)
    assert [s.trace_id for s in found] == ["2" * 32]


def test_exemplars_remember_the_latest_segment_showing_each_figure():
    store = TraceStore()
    store.add(segment(trace="1" * 32, runqueue=0.002))
    store.add(segment(trace="2" * 32, kind="task"))
    assert store.exemplar("checkout", "runqueue_seconds").trace_id == "1" * 32
    assert store.exemplar("checkout", "server").trace_id == "1" * 32
    assert store.exemplar("checkout", "blockio_seconds") is None








def test_event_becomes_a_segment_in_wall_clock_time():
    figures = types.SimpleNamespace(runqueue_ns=2_000_000, oncpu_ns=1_000_000, blockio_ns=0,
                                    blockio_count=3, network_ns=5, other_ns=0)
    ctx = types.SimpleNamespace(trace_id=bytes(range(16)), span_id=bytes(range(8)), flags=1,
                                source=2)
    event = types.SimpleNamespace(ctx=ctx, owner=None, tgid=10, tid=11, role=1,
                                  start_ns=1_000_000_000, end_ns=1_500_000_000, retransmits=1,
                                  done=figures)
    s = segment_from_event(event, "checkout", wall_offset_ns=1_700_000_000 * 10**9)
    assert s.trace_id == bytes(range(16)).hex() and s.context == "b3" and s.kind == "server"
    assert s.start == 1_700_000_001.0 and round(s.duration_seconds, 6) == 0.5
    assert s.runqueue_seconds == 0.002 and s.blockio_count == 3
    assert s.to_json()["duration_seconds"] == 0.5
