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
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

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


class CountingExporter(SpanExporter):
    """`exporter`, counting spans by what the SDK says became of them: the
    export's own result, not the hand-over to the batching queue."""

    def __init__(self, exporter):
        self._exporter = exporter
        self.exported = 0
        self.failed = 0  # the endpoint refused them, or was down past the retries

    def export(self, spans):
        try:
            result = self._exporter.export(spans)
        except Exception:
            log.exception("the OTLP exporter failed")
            result = SpanExportResult.FAILURE
        if result == SpanExportResult.SUCCESS:
            self.exported += len(spans)
        else:
            self.failed += len(spans)
        return result

    def shutdown(self):
        self._exporter.shutdown()

    def force_flush(self, timeout_millis=30000):
        return self._exporter.force_flush(timeout_millis)


class SegmentSpans:
    """A sink for trace segments (records.segments.Segment) that exports spans.

    Spans are counted at each step: handed to the batching queue, then
    exported or failed by the exporter's own result; what the queue dropped
    (full, or left unsent at shutdown) is the rest."""

    def __init__(self, exporter, max_services=500, max_queue_size=2048):
        self._counter = CountingExporter(exporter)
        self._processor = BatchSpanProcessor(self._counter, schedule_delay_millis=1000,
                                             max_queue_size=max_queue_size,
                                             max_export_batch_size=min(512, max_queue_size))
        self._providers = collections.OrderedDict()
        self._max_services = max_services
        self.handed = 0

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
        self.handed += 1

    def counts(self):
        """{exported, failed, dropped, queued}: what became of the spans handed over."""
        # The SDK keeps its queue private; read its length where it is found.
        queue = getattr(getattr(self._processor, "_batch_processor", None), "_queue", ())
        queued = len(queue)
        done = self._counter.exported + self._counter.failed
        return {"exported": self._counter.exported, "failed": self._counter.failed,
                "queued": queued, "dropped": max(0, self.handed - done - queued)}

    def close(self):
        self._processor.shutdown()
