"""Pure logic of trace correlation on the node: the store and kernel events."""

import types

from taskscope.agent.kernel.segment_reader import segment_from_event
from taskscope.agent.kernel_abi import ExemplarKind
from taskscope.agent.trace_store import TraceStore
from taskscope.records.segments import Observation


NS = types.SimpleNamespace
V4 = bytes(10) + b"\xff\xff"


def kernel_segment(trace, ident=1, start_ns=10**9, end_ns=2 * 10**9, tid=2):
    """A finished_segments row as BCC gives it: (key, struct segment)."""
    figures = NS(runqueue_ns=0, oncpu_ns=0, blockio_ns=0, blockio_count=0, network_ns=0,
                 other_ns=0)
    samples = NS(runqueue_ns=0, blk_queue_ns=0, blk_queue_dev=0, blk_queue_op=0,
                 blk_device_ns=0, blk_device_dev=0, blk_device_op=0, peer=bytes(16))
    seg = NS(ctx=NS(trace_id=bytes.fromhex(trace), span_id=bytes(8), flags=1, source=1),
             owner=NS(cgroup_id=5, ident=ident), tgid=1, tid=tid, role=1, start_ns=start_ns,
             end_ns=end_ns, retransmits=0, done=figures, samples=samples)
    return NS(trace_id=bytes.fromhex(trace), tid=tid, start_ns=start_ns), seg


def exemplar_row(trace, what, value_ns, end_ns, ident=1, op=0, stage=0, dev=0, peer=bytes(16)):
    key = NS(owner=NS(cgroup_id=5, ident=ident), what=what, op=op, stage=stage, dev=dev,
             peer=peer)
    return key, NS(trace_id=bytes.fromhex(trace), value_ns=value_ns, end_ns=end_ns)


class Resolver:
    def resolve(self, cgroup, ident):
        return {1: "checkout", 2: "payments"}[ident]


def store_over(segments=(), exemplars=()):
    tables = {"finished_segments": list(segments), "segment_exemplars": list(exemplars)}
    return TraceStore(tables.__getitem__, Resolver(), capacity=10)


def test_a_trace_is_found_in_the_kernels_store():
    store = store_over([kernel_segment("1" * 32), kernel_segment("2" * 32, tid=3),
                        kernel_segment("1" * 32, ident=2, start_ns=5 * 10**8)])
    found = store.trace("1" * 32)
    assert [s.service for s in found] == ["payments", "checkout"]  # oldest first
    assert store.trace("3" * 32) == []


def test_slowest_filters_by_service_and_duration():
    store = store_over([kernel_segment("1" * 32, end_ns=11 * 10**8),
                        kernel_segment("2" * 32, end_ns=3 * 10**9),
                        kernel_segment("3" * 32, ident=2, end_ns=6 * 10**9),
                        kernel_segment("4" * 32, end_ns=0)])  # never committed
    found = store.slowest(service="checkout", min_seconds=0.5)
    assert [s.trace_id for s in found] == ["2" * 32]
    assert [s.trace_id for s in store.slowest(limit=2)] == ["3" * 32, "2" * 32]


def test_exemplars_are_kept_per_series_with_the_value_observed_there():
    store = store_over(exemplars=[
        exemplar_row("1" * 32, ExemplarKind.RUNQUEUE, 2_000_000, 10**9),
        exemplar_row("1" * 32, ExemplarKind.BLOCKIO, 4_000_000, 10**9, op=1, stage=1,
                     dev=(250 << 20) | 77),
        exemplar_row("2" * 32, ExemplarKind.BLOCKIO, 1_000_000, 2 * 10**9, op=2, stage=0,
                     dev=(250 << 20) | 77),
        exemplar_row("1" * 32, ExemplarKind.SERVER, 5 * 10**8, 10**9,
                     peer=V4 + bytes([10, 0, 0, 1])),
        # A later one on the same series, from another owner of the service.
        exemplar_row("3" * 32, ExemplarKind.RUNQUEUE, 3_000_000, 3 * 10**9),
        exemplar_row("9" * 32, 99, 1, 1)])  # a kind this agent does not know: skipped
    found, seconds = store.exemplar("checkout", "blockio", ("250:77", "write", "device"))
    assert (found.trace_id, seconds) == ("1" * 32, 0.004)
    assert store.exemplar("checkout", "blockio", ("250:77", "flush", "queue"))[0].trace_id == \
        "2" * 32
    assert store.exemplar("checkout", "runqueue")[0].trace_id == "3" * 32
    assert store.exemplar("checkout", "server", ("10.0.0.1",))[1] == 0.5
    # Nothing observed on these series: no exemplar.
    assert store.exemplar("checkout", "blockio", ("250:77", "write", "queue")) is None
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
