"""An OpenTelemetry SDK span processor that marks server and consumer spans.

    provider.add_span_processor(TaskscopeSpanProcessor())

Each server or consumer span (a request handled, a message consumed)
becomes a taskscope task for the thread that starts it, until it ends.
"""

from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.trace import SpanKind

from taskscope_marker import begin, end

MARKED_KINDS = (SpanKind.SERVER, SpanKind.CONSUMER)


def traceparent(span_context):
    return (f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-"
            f"{int(span_context.trace_flags):02x}")


class TaskscopeSpanProcessor(SpanProcessor):
    def on_start(self, span, parent_context=None):
        if span.kind in MARKED_KINDS:
            begin(traceparent(span.get_span_context()))

    def on_end(self, span):
        if span.kind in MARKED_KINDS:
            end()
