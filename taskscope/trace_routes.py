"""HTTP routes of the trace segments: /api/traces/{trace_id} and /api/traces.

Shared by the agent (over its TraceStore) and the collector (over the
agents it polls): both hand in functions returning lists of segment dicts.
"""

import json

from taskscope.records.segments import TRACE_ID

JSON = "application/json"


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


def store_routes(store):
    """The agent's routes, over its TraceStore."""
    return trace_routes(
        lambda trace_id: [s.to_json() for s in store.trace(trace_id)],
        lambda service, min_seconds, limit: [
            s.to_json() for s in store.slowest(service, min_seconds, limit)])
