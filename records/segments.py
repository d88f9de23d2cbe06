"""A trace segment: what one thread waited for while it worked for one trace.

The agent builds them from the kernel's ring buffer; the trace store, the
OTLP exporter and the HTTP routes read them; the collector receives them as
JSON from other agents and checks them with segments_from_json.
"""

import re
from dataclasses import asdict, dataclass

__all__ = ["Observation", "Segment", "TRACE_ID", "segments_from_json"]

TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class Observation:
    """One sample a segment's thread added to a histogram series: which
    series (what it measures, and its labels beyond the service) and the
    value it added there.  An exemplar is only placed on the series it was
    observed on, with this value."""

    what: str        # runqueue, blockio or server
    labels: tuple    # runqueue: (); blockio: (device, op, stage); server: (client address,)
    seconds: float


@dataclass(frozen=True)
class Segment:
    """What one thread waited for while it worked for one trace."""

    trace_id: str        # 32 hex digits
    parent_span_id: str  # the application's span (16 hex digits)
    sampled: bool
    context: str         # where the trace context came from: traceparent, b3, marker
    kind: str            # server, client or task
    service: str
    pid: int
    tid: int
    start: float         # Unix seconds
    end: float
    runqueue_seconds: float
    oncpu_seconds: float
    blockio_seconds: float
    blockio_count: int
    network_seconds: float
    other_seconds: float
    retransmits: int
    observations: tuple = ()  # of Observation

    @property
    def duration_seconds(self):
        return self.end - self.start

    def to_json(self):
        return {**asdict(self), "duration_seconds": round(self.duration_seconds, 9)}


# What a collector requires of each segment an agent returns.
SEGMENT_FIELDS = {"trace_id": str, "service": str, "kind": str, "start": (int, float),
                  "end": (int, float), "duration_seconds": (int, float)}


def segments_from_json(data):
    """The segments of an agent's /api/traces reply; ValueError when malformed."""
    if not isinstance(data, dict) or not isinstance(data.get("segments"), list):
        raise ValueError("expected {\"segments\": [...]}")
    for segment in data["segments"]:
        if not isinstance(segment, dict):
            raise ValueError("a segment is not an object")
        for name, kind in SEGMENT_FIELDS.items():
            if not isinstance(segment.get(name), kind) or isinstance(segment.get(name), bool):
                raise ValueError(f"segment field {name!r} missing or of the wrong type")
        if not TRACE_ID.match(segment["trace_id"]):
            raise ValueError("segment trace_id is not 32 lower-case hex digits")
    return data["segments"]
