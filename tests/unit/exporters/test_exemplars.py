"""Exemplars on histogram buckets: which bucket, and when there is none."""

from taskscope.agent.trace_store import TraceStore
from taskscope.exporters.exemplars import exemplar_buckets, with_exemplar
from tests.unit.fixtures import segment


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
