"""The agents' sides JSON (topology.sides_json): round trip, and peer data
that is malformed or garbage."""

import ipaddress
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskscope.records.edges import CLIENT, EdgeSide
from taskscope.records.histogram import Log2Histogram
from taskscope.topology.sides_json import SidesFormatError, sides_from_json, sides_to_json

IP = ipaddress.ip_address


def mapped(text):
    return IP("::ffff:" + text)


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["sides", "endpoints", "service", "role", "local", "peer", "peer_port",
                         "latency", "connections", "failed", "sent_bytes", "received_bytes",
                         "failed_requests",
                         "ip", "port"]), children, max_size=8),
    max_leaves=30)


def test_sides_round_trip():
    latency = Log2Histogram()
    latency.add(25, 3, 120_000_000)
    sides = [EdgeSide("orders", CLIENT, mapped("10.0.0.1"), mapped("10.0.0.2"), 9000, latency,
                      connections=1, sent_bytes=30, received_bytes=9, failed=1,
                      failed_requests=2)]
    endpoints = {(mapped("10.0.0.2"), 9000): "payment"}
    back_sides, back_endpoints, _ = sides_from_json(
        json.loads(json.dumps(sides_to_json(sides, endpoints))))
    assert back_endpoints == endpoints
    (side,) = back_sides
    assert (side.service, side.peer, side.peer_port, side.connections) == (
        "orders", mapped("10.0.0.2"), 9000, 1)
    assert side.latency.slots == {25: 3} and side.latency.sum_ns == 120_000_000
    assert (side.failed, side.failed_requests) == (1, 2)


def test_an_agent_from_before_failed_requests_is_read_as_none_failed():
    body = sides_to_json([EdgeSide("orders", CLIENT, mapped("10.0.0.1"), mapped("10.0.0.2"),
                                   9000)], {})
    del body["sides"][0]["failed_requests"]
    (side,), _, _ = sides_from_json(body)
    assert side.failed_requests == 0


@pytest.mark.parametrize("data, message", [
    ([], "expected an object"),
    ({"sides": {}, "endpoints": []}, "must be lists"),
    ({"sides": [{}] * 100_001, "endpoints": []}, "more than"),
])
def test_a_reply_of_the_wrong_shape_is_named(data, message):
    with pytest.raises(SidesFormatError, match=message):
        sides_from_json(data)


@pytest.mark.parametrize("data, message", [
    ({"sides": [{"role": "boss"}], "endpoints": []}, "sides[0].role"),
    ({"sides": [], "endpoints": [{"ip": "x", "port": 1, "service": "a"}]}, "endpoints[0].ip"),
    ({"sides": [], "endpoints": [{"ip": "::1", "port": 70000, "service": "a"}]}, "not a port"),
    ({"sides": [], "endpoints": [{"ip": "::1", "port": 1, "service": "s" * 300}]},
     "endpoints[0].service"),
])
def test_a_malformed_entry_is_skipped_counted_and_named_in_the_log(data, message, caplog):
    caplog.set_level("DEBUG", logger="taskscope.topology.sides_json")
    sides, endpoints, skipped = sides_from_json(data)
    assert (sides, endpoints, skipped) == ([], {}, 1)
    assert message in caplog.text


@given(JSONISH)
def test_garbage_peer_data_raises_only_format_errors(data):
    try:
        sides_from_json(data)
    except SidesFormatError:
        pass
