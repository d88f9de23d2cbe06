"""Pure logic of trace correlation: the store, the API, exemplars, events."""

import json
import types

from agent.trace_api import store_routes
from agent.trace_segments import Segment, segment_from_event
from agent.trace_store import TraceStore
from exporters.exemplars import exemplar_buckets, with_exemplar


def segment(trace="ab" * 16, service="checkout", kind="server", start=100.0, end=100.5,
            runqueue=0.0, blockio=0.0):
    return Segment(trace_id=trace, parent_span_id="cd" * 8, sampled=True, context="traceparent",
                   kind=kind, service=service, pid=1, tid=2, start=start, end=end,
                   runqueue_seconds=runqueue, oncpu_seconds=0.1, blockio_seconds=blockio,
                   blockio_count=1, network_seconds=0.0, other_seconds=0.0, retransmits=0)


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


def test_exemplar_lands_on_the_first_bucket_that_holds_its_value():
    buckets = [("0.001", 3), ("0.002", 5), ("+Inf", 6)]
    out = with_exemplar(buckets, segment(), 0.0015)
    assert [len(b) for b in out] == [2, 3, 2]
    assert out[1][2].labels == {"trace_id": "ab" * 16} and out[1][2].value == 0.0015
    assert len(with_exemplar(buckets, segment(), 7.0)[2]) == 3


def test_no_store_or_no_segment_leaves_buckets_alone():
    buckets = [("0.001", 3), ("+Inf", 3)]
    assert exemplar_buckets(None, "taskscope_runqueue_latency_seconds", "x", buckets) is buckets
    assert exemplar_buckets(TraceStore(), "taskscope_runqueue_latency_seconds", "x",
                            buckets) is buckets


def test_trace_routes_validate_and_answer():
    store = TraceStore()
    store.add(segment())
    one, recent = store_routes(store)["/api/traces/"], store_routes(store)["/api/traces"]
    status, body, _ = one({"path_tail": "AB" * 16})
    assert status == 200 and json.loads(body)["segments"][0]["service"] == "checkout"
    assert one({"path_tail": "cd" * 16})[0] == 404
    assert one({"path_tail": "not-a-trace"})[0] == 400
    assert recent({"limit": "x"})[0] == 400 and recent({"limit": "0"})[0] == 400
    status, body, _ = recent({"service": "checkout", "min_seconds": "0.4"})
    assert status == 200 and len(json.loads(body)["segments"]) == 1


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
