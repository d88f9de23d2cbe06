"""Trace segments as OTLP spans, in the application's own traces.

Each segment becomes one span whose trace id is the application's and
whose parent is the application's span that was current when the request
arrived (or the task began), so tracing backends show the kernel's view
next to the application's spans.  service.name is a resource attribute,
so each service gets its own TracerProvider (bounded, least recently used
first out); all of them feed one batching processor and one exporter.
"""

import collections
import importlib.metadata
import logging

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from taskscope.records.errors import ConfigError

log = logging.getLogger(__name__)

PROTOCOLS = ("http/protobuf", "grpc")
_VERSION = importlib.metadata.version("taskscope")


def make_exporter(endpoint, protocol="http/protobuf"):
    """An OTLP span exporter; `endpoint` is the collector's base URL for
    http/protobuf (…/v1/traces is appended) or host:port for grpc."""
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise ConfigError("otlp_protocol grpc needs the grpc extra: "
                              "pip install 'taskscope[grpc]'") from exc
        return OTLPSpanExporter(endpoint=endpoint, insecure=endpoint.startswith("http://"))
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    return OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")


def span_attributes(segment):
    return {
        "taskscope.kind": segment.kind,
        "taskscope.context": segment.context,
        "taskscope.runqueue_seconds": segment.runqueue_seconds,
        "taskscope.oncpu_seconds": segment.oncpu_seconds,
        "taskscope.blockio_seconds": segment.blockio_seconds,
        "taskscope.blockio_count": segment.blockio_count,
        "taskscope.network_seconds": segment.network_seconds,
        "taskscope.other_seconds": segment.other_seconds,
        "taskscope.tcp_retransmits": segment.retransmits,
        "process.pid": segment.pid,
        "thread.id": segment.tid,
    }


class SegmentSpans:
    """A sink for trace segments (records.segments.Segment) that exports spans."""

    def __init__(self, exporter, max_services=500):
        self._processor = BatchSpanProcessor(exporter, schedule_delay_millis=1000)
        self._providers = collections.OrderedDict()
        self._max_services = max_services
        self.exported = 0

    def _tracer(self, service):
        provider = self._providers.get(service)
        if provider is None:
            provider = TracerProvider(resource=Resource.create({"service.name": service}),
                                      shutdown_on_exit=False)
            provider.add_span_processor(self._processor)
            self._providers[service] = provider
            if len(self._providers) > self._max_services:
                self._providers.popitem(last=False)
        self._providers.move_to_end(service)
        return provider.get_tracer("taskscope", _VERSION)

    def __call__(self, segment):
        parent = trace.SpanContext(
            trace_id=int(segment.trace_id, 16), span_id=int(segment.parent_span_id, 16),
            is_remote=True,
            trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED if segment.sampled else 0))
        context = trace.set_span_in_context(trace.NonRecordingSpan(parent))
        span = self._tracer(segment.service).start_span(
            f"kernel waits ({segment.kind})", context=context, kind=trace.SpanKind.INTERNAL,
            attributes=span_attributes(segment), start_time=int(segment.start * 1e9))
        span.end(end_time=int(segment.end * 1e9))
        self.exported += 1

    def close(self):
        self._processor.shutdown()
