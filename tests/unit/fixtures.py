"""Records the unit tests of several layers build on."""

from taskscope.records.segments import Segment


def segment(trace="ab" * 16, service="checkout", kind="server", start=100.0, end=100.5,
            runqueue=0.0, blockio=0.0, observations=()):
    return Segment(trace_id=trace, parent_span_id="cd" * 8, sampled=True, context="traceparent",
                   kind=kind, service=service, pid=1, tid=2, start=start, end=end,
                   runqueue_seconds=runqueue, oncpu_seconds=0.1, blockio_seconds=blockio,
                   blockio_count=1, network_seconds=0.0, other_seconds=0.0, retransmits=0,
                   observations=observations)
