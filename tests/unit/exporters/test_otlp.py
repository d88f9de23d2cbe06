"""Segments as OTLP spans in the application's own trace, exported through
the SDK (to an in-memory exporter here)."""

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
    assert spans.exported == 1


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
