"""Pure logic of trace correlation on the node: the store and kernel events."""

import types

from taskscope.agent.kernel.segment_reader import segment_from_event
from taskscope.agent.trace_store import TraceStore
from taskscope.records.segments import Observation
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


def test_exemplars_are_kept_per_series_with_the_value_observed_there():
    store = TraceStore()
    write = Observation("blockio", ("vda", "write", "device"), 0.004)
    store.add(segment(trace="1" * 32, observations=(
        Observation("runqueue", (), 0.002), write,
        Observation("server", ("10.0.0.1",), 0.5))))
    store.add(segment(trace="2" * 32, kind="task", observations=(
        Observation("blockio", ("vda", "flush", "queue"), 0.001),)))
    found, seconds = store.exemplar("checkout", "blockio", ("vda", "write", "device"))
    assert (found.trace_id, seconds) == ("1" * 32, 0.004)
    assert store.exemplar("checkout", "blockio", ("vda", "flush", "queue"))[0].trace_id == "2" * 32
    assert store.exemplar("checkout", "runqueue")[1] == 0.002
    assert store.exemplar("checkout", "server", ("10.0.0.1",))[1] == 0.5
    # Nothing observed on these series: no exemplar.
    assert store.exemplar("checkout", "blockio", ("vda", "write", "queue")) is None
    assert store.exemplar("checkout", "server", ("10.0.0.9",)) is None
    assert store.exemplar("payments", "runqueue") is None








def test_event_becomes_a_segment_in_wall_clock_time():
    figures = types.SimpleNamespace(runqueue_ns=2_000_000, oncpu_ns=1_000_000, blockio_ns=0,
                                    blockio_count=3, network_ns=5, other_ns=0)
    ctx = types.SimpleNamespace(trace_id=bytes(range(16)), span_id=bytes(range(8)), flags=1,
                                source=2)
    samples = types.SimpleNamespace(runqueue_ns=1_500_000, blk_queue_ns=0, blk_queue_dev=0,
                                    blk_queue_op=0, blk_device_ns=3_000_000,
                                    blk_device_dev=(7 << 20) | 99, blk_device_op=2,
                                    peer=bytes(10) + b"\xff\xff" + bytes([10, 0, 0, 1]))
    event = types.SimpleNamespace(ctx=ctx, owner=None, tgid=10, tid=11, role=1,
                                  start_ns=1_000_000_000, end_ns=1_500_000_000, retransmits=1,
                                  done=figures, samples=samples)
    s = segment_from_event(event, "checkout", wall_offset_ns=1_700_000_000 * 10**9)
    assert s.trace_id == bytes(range(16)).hex() and s.context == "b3" and s.kind == "server"
    assert s.start == 1_700_000_001.0 and round(s.duration_seconds, 6) == 0.5
    assert s.runqueue_seconds == 0.002 and s.blockio_count == 3
    assert s.to_json()["duration_seconds"] == 0.5
    # Its single observations: its longest run-queue wait, its slowest IO on
    # the device (a flush on a device sysfs does not know), the client it served.
    assert s.observations == (Observation("runqueue", (), 0.0015),
                              Observation("blockio", ("7:99", "flush", "device"), 0.003),
                              Observation("server", ("10.0.0.1",), 0.5))
