"""Tell the taskscope agent which trace the current thread works for.

    import taskscope_marker
    with taskscope_marker.task(traceparent):
        handle(job)

Outside a `task` block the thread's kernel waits belong to no trace.  The
calls do nothing by themselves (a C function call each); the agent, when
it runs, hooks them.  For OpenTelemetry SDK users,
taskscope_marker.otel.TaskscopeSpanProcessor does this for every server
and consumer span.
"""

import contextlib

from taskscope_marker._native import begin, end

__all__ = ["begin", "end", "task"]


@contextlib.contextmanager
def task(traceparent):
    """Attribute the current thread's kernel waits to `traceparent` (a W3C
    traceparent string) while the block runs."""
    begin(traceparent)
    try:
        yield
    finally:
        end()
