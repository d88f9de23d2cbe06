"""Exemplars on histogram buckets: which bucket, and when there is none."""

from tests.unit.fixtures import SegmentStore
import ipaddress

from taskscope.exporters.exemplars import (exemplar_buckets, server_exemplar_buckets,
                                           with_exemplar)
from taskscope.records.segments import Observation
from tests.unit.fixtures import segment

BLOCKIO = "taskscope_blockio_latency_seconds"


def test_exemplar_lands_on_the_first_bucket_that_holds_its_value():
    buckets = [("0.001", 3), ("0.002", 5), ("+Inf", 6)]
    out = with_exemplar(buckets, segment(), 0.0015)
    assert [len(b) for b in out] == [2, 3, 2]
    assert out[1][2].labels == {"trace_id": "ab" * 16} and out[1][2].value == 0.0015
    assert len(with_exemplar(buckets, segment(), 7.0)[2]) == 3


def test_no_store_or_no_segment_leaves_buckets_alone():
    buckets = [("0.001", 3), ("+Inf", 3)]
    assert exemplar_buckets(None, "taskscope_runqueue_latency_seconds", "x", {},
                            buckets) is buckets
    assert exemplar_buckets(SegmentStore(), "taskscope_runqueue_latency_seconds", "x", {},
                            buckets) is buckets


def test_a_segment_marks_only_the_series_it_was_observed_on_with_its_value_there():
    store = SegmentStore()
    store.add(segment(blockio=0.9, observations=(
        Observation("blockio", ("vda", "write", "device"), 0.0015),)))
    buckets = [("0.001", 3), ("0.002", 5), ("+Inf", 6)]
    on = exemplar_buckets(store, BLOCKIO, "checkout",
                          {"device": "vda", "op": "write", "stage": "device"}, buckets)
    assert [len(b) for b in on] == [2, 3, 2] and on[1][2].value == 0.0015
    for other in ({"device": "vda", "op": "write", "stage": "queue"},
                  {"device": "vdb", "op": "write", "stage": "device"},
                  {"device": "vda", "op": "read", "stage": "device"}):
        assert exemplar_buckets(store, BLOCKIO, "checkout", other, buckets) is buckets
    # The segment's summed block-IO wait (0.9 s) is no observation of any series.
    assert exemplar_buckets(store, "taskscope_runqueue_latency_seconds", "checkout", {},
                            buckets) is buckets


def test_a_server_segment_marks_only_the_edge_of_the_client_it_served():
    store = SegmentStore()
    store.add(segment(trace="1" * 32, observations=(Observation("server", ("10.0.0.1",), 0.5),)))
    buckets = [("0.25", 1), ("1.0", 2), ("+Inf", 2)]
    ip = ipaddress.ip_address
    marked = server_exemplar_buckets(store, "checkout", {ip("10.0.0.1")}, buckets)
    assert marked[1][2].labels == {"trace_id": "1" * 32} and marked[1][2].value == 0.5
    assert server_exemplar_buckets(store, "checkout", {ip("10.0.0.2")}, buckets) is buckets
