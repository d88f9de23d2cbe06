"""The trace routes over an agent's store: validation and answers."""

import json

from tests.unit.fixtures import SegmentStore
from taskscope.trace_routes import store_routes
from tests.unit.fixtures import segment


def test_trace_routes_validate_and_answer():
    store = SegmentStore()
    store.add(segment())
    one, recent = store_routes(store)["/api/traces/"], store_routes(store)["/api/traces"]
    status, body, _ = one({"path_tail": "AB" * 16})
    assert status == 200 and json.loads(body)["segments"][0]["service"] == "checkout"
    assert one({"path_tail": "cd" * 16})[0] == 404
    assert one({"path_tail": "not-a-trace"})[0] == 400
    assert recent({"limit": "x"})[0] == 400 and recent({"limit": "0"})[0] == 400
    status, body, _ = recent({"service": "checkout", "min_seconds": "0.4"})
    assert status == 200 and len(json.loads(body)["segments"]) == 1
