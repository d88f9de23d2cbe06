"""Records the unit tests of several layers build on."""

from taskscope.records.segments import Segment


def segment(trace="ab" * 16, service="checkout", kind="server", start=100.0, end=100.5,
            runqueue=0.0, blockio=0.0, observations=()):
    return Segment(trace_id=trace, parent_span_id="cd" * 8, sampled=True, context="traceparent",
                   kind=kind, service=service, pid=1, tid=2, start=start, end=end,
                   runqueue_seconds=runqueue, oncpu_seconds=0.1, blockio_seconds=blockio,
                   blockio_count=1, network_seconds=0.0, other_seconds=0.0, retransmits=0,
                   observations=observations)


class SegmentStore:
    """What exporters and routes ask of the agent's TraceStore (trace, slowest,
    exemplar), over Segment records: the real one reads kernel maps."""

    def __init__(self):
        self._segments = []

    def add(self, s):
        self._segments.append(s)

    def trace(self, trace_id):
        return [s for s in self._segments if s.trace_id == trace_id]

    def slowest(self, service=None, min_seconds=0.0, limit=100):
        found = [s for s in self._segments if (service is None or s.service == service)
                 and s.duration_seconds >= min_seconds]
        return sorted(found, key=lambda s: s.duration_seconds, reverse=True)[:limit]

    def exemplar(self, service, what, labels=()):
        found = [(s, o.seconds) for s in self._segments for o in s.observations
                 if s.service == service and (o.what, o.labels) == (what, labels)]
        return max(found, key=lambda f: f[0].end) if found else None
