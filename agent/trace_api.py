"""HTTP routes of the trace segments: /api/traces/{trace_id} and /api/traces.

Shared by the agent (over its TraceStore) and the collector (over the
agents it polls): both hand in functions returning lists of segment dicts.
"""

import json
import re

JSON = "application/json"
TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


def _bad(message):
    return 400, (message + "\n").encode(), "text/plain"


def trace_routes(segments_of_trace, slowest):
    """`segments_of_trace(trace_id)` and `slowest(service, min_seconds, limit)`
    return lists of segment dicts."""

    def one_trace(params):
        trace_id = params.get("path_tail", "").lower()
        if not TRACE_ID.match(trace_id):
            return _bad("expected /api/traces/<32 hex digits of a trace id>")
        found = segments_of_trace(trace_id)
        body = {"trace_id": trace_id, "segments": found}
        return (200 if found else 404), json.dumps(body).encode(), JSON

    def recent(params):
        try:
            min_seconds = float(params.get("min_seconds", 0))
            limit = int(params.get("limit", 100))
        except ValueError:
            return _bad("min_seconds must be a number of seconds and limit a whole number")
        if limit < 1:
            return _bad("limit must be at least 1")
        found = slowest(params.get("service"), min_seconds, min(limit, 1000))
        return 200, json.dumps({"segments": found}).encode(), JSON

    return {"/api/traces/": one_trace, "/api/traces": recent}


# What a collector requires of each segment an agent returns.
SEGMENT_FIELDS = {"trace_id": str, "service": str, "kind": str, "start": (int, float),
                  "end": (int, float), "duration_seconds": (int, float)}


def segments_from_wire(data):
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


def store_routes(store):
    """The agent's routes, over its TraceStore."""
    return trace_routes(
        lambda trace_id: [s.to_json() for s in store.trace(trace_id)],
        lambda service, min_seconds, limit: [
            s.to_json() for s in store.slowest(service, min_seconds, limit)])
