"""Segments as OTLP spans in the application's own trace, exported through
the SDK (to an in-memory exporter here)."""

import threading

from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from taskscope.exporters.otlp import SegmentSpans
from tests.unit.fixtures import segment


def test_a_segment_is_a_child_span_of_the_applications_span():
    exported = InMemorySpanExporter()
    spans = SegmentSpans(exported)
    spans(segment(trace="ab" * 16, service="checkout", kind="server", start=100.0, end=100.5,
                  runqueue=0.002))
    spans.close()
    (span,) = exported.get_finished_spans()
    assert span.name == "kernel waits (server)"
    assert span.context.trace_id == int("ab" * 16, 16)
    assert span.parent.span_id == int("cd" * 8, 16) and span.parent.is_remote
    assert span.resource.attributes["service.name"] == "checkout"
    assert span.attributes["taskscope.runqueue_seconds"] == 0.002
    assert (span.start_time, span.end_time) == (100 * 10**9, int(100.5 * 10**9))
    assert spans.counts() == {"exported": 1, "failed": 0, "dropped": 0, "queued": 0}


def test_services_get_their_own_resource_within_a_bounded_set():
    exported = InMemorySpanExporter()
    spans = SegmentSpans(exported, max_services=2)
    for service in ("a", "b", "c", "a"):
        spans(segment(service=service))
    spans.close()
    assert [s.resource.attributes["service.name"] for s in exported.get_finished_spans()] == [
        "a", "b", "c", "a"]
    assert len(spans._providers) == 2


def test_any_clean_service_name_is_exported():
    from taskscope.agent.host.services import clean_name
    exported = InMemorySpanExporter()
    spans = SegmentSpans(exported)
    name = clean_name(b'evil"svc\n{le="1"}\x01\xff' + b"n" * 1024)
    spans(segment(service=name))
    spans.close()
    (span,) = exported.get_finished_spans()
    assert span.resource.attributes["service.name"] == name


class RefusingExporter(InMemorySpanExporter):
    def export(self, spans):
        return SpanExportResult.FAILURE


def test_spans_an_endpoint_refuses_are_failed_not_exported():
    spans = SegmentSpans(RefusingExporter())
    for _ in range(3):
        spans(segment())
    spans.close()
    assert spans.counts() == {"exported": 0, "failed": 3, "dropped": 0, "queued": 0}


class StuckExporter(InMemorySpanExporter):
    """An endpoint that never answers while the test runs."""

    def __init__(self):
        super().__init__()
        self.release = threading.Event()

    def export(self, spans):
        self.release.wait(10)
        return super().export(spans)


def test_spans_a_full_queue_drops_are_counted_as_dropped():
    stuck = StuckExporter()
    spans = SegmentSpans(stuck, max_queue_size=4)
    for _ in range(20):
        spans(segment())
    counts = spans.counts()
    # Of 20 handed over, at most 4 wait in the queue and one batch (of at
    # most 4) may be in the exporter's hands: the rest were dropped, and said so.
    assert counts["exported"] == 0 and counts["queued"] <= 4
    assert counts["dropped"] + counts["queued"] <= 20 and counts["dropped"] >= 20 - 4 - 4
    stuck.release.set()
    spans.close()
