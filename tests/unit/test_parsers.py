"""Parsers of kernel text and of peer data: known inputs and garbage."""

import ipaddress
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.conntrack import parse_conntrack
from agent.endpoints import parse_fib_trie_locals, parse_if_inet6
from agent.histogram import Log2Histogram
from agent.listeners import TCP_ESTABLISHED, parse_tcp_rows
from topology.graph import CLIENT, EdgeSide
from topology.wire import WireError, from_wire, to_wire

IP = ipaddress.ip_address


def mapped(text):
    return IP("::ffff:" + text)


FIB_TRIE = """Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.1
              /32 host LOCAL
     |-- 198.18.0.0
        /30 link UNICAST
     |-- 198.18.0.2
        /32 host LOCAL
"""


def test_fib_trie_locals():
    assert parse_fib_trie_locals(FIB_TRIE) == {IP("127.0.0.1"), IP("198.18.0.2")}


def test_if_inet6():
    text = "00000000000000000000000000000001 01 80 10 80       lo\n"
    assert parse_if_inet6(text) == {IP("::1")}


def test_established_rows():
    text = ("  sl  local_address rem_address   st\n"
            "   0: 0100007F:1F90 0200007F:A1B2 01 00000000:00000000 00:00000000 00000000 0 0 77 1\n")
    assert parse_tcp_rows(text, TCP_ESTABLISHED) == [
        (IP("127.0.0.1"), 8080, IP("127.0.0.2"), 41394, 77)]


CONNTRACK = (
    "ipv4     2 tcp      6 117 TIME_WAIT src=198.18.0.1 dst=198.18.100.1 sport=41234 dport=80 "
    "src=198.18.0.2 dst=198.18.0.1 sport=9101 dport=41234 [ASSURED] mark=0 zone=0 use=2\n"
    "ipv4     2 tcp      6 431999 ESTABLISHED src=127.0.0.1 dst=127.0.0.1 sport=5 dport=6 "
    "src=127.0.0.1 dst=127.0.0.1 sport=6 dport=5 [ASSURED] mark=0 use=1\n"
    "ipv4     2 udp      17 20 src=10.0.0.1 dst=10.0.0.2 sport=1 dport=53 src=10.0.0.3 "
    "dst=10.0.0.1 sport=53 dport=1 mark=0 use=1\n")


def test_conntrack_keeps_translated_tcp_entries_only():
    assert parse_conntrack(CONNTRACK) == [
        ((mapped("198.18.100.1"), 80), (mapped("198.18.0.2"), 9101))]


@given(st.text())
def test_kernel_text_parsers_never_raise(text):
    parse_conntrack(text)
    parse_fib_trie_locals(text)
    parse_if_inet6(text)
    parse_tcp_rows(text, TCP_ESTABLISHED)


def test_wire_round_trip():
    latency = Log2Histogram()
    latency.add(25, 3, 120_000_000)
    sides = [EdgeSide("orders", CLIENT, mapped("10.0.0.1"), mapped("10.0.0.2"), 9000, latency,
                      connections=1, sent_bytes=30, received_bytes=9)]
    endpoints = {(mapped("10.0.0.2"), 9000): "payment"}
    back_sides, back_endpoints = from_wire(json.loads(json.dumps(to_wire(sides, endpoints))))
    assert back_endpoints == endpoints
    (side,) = back_sides
    assert (side.service, side.peer, side.peer_port, side.connections) == (
        "orders", mapped("10.0.0.2"), 9000, 1)
    assert side.latency.slots == {25: 3} and side.latency.sum_ns == 120_000_000


@pytest.mark.parametrize("data, message", [
    ([], "expected an object"),
    ({"sides": {}, "endpoints": []}, "must be lists"),
    ({"sides": [{"role": "boss"}], "endpoints": []}, "sides[0].role"),
    ({"sides": [], "endpoints": [{"ip": "x", "port": 1, "service": "a"}]}, "endpoints[0].ip"),
    ({"sides": [], "endpoints": [{"ip": "::1", "port": 70000, "service": "a"}]}, "not a port"),
])
def test_malformed_peer_data_is_named(data, message):
    with pytest.raises(WireError, match=message.replace("[", r"\[").replace("]", r"\]")):
        from_wire(data)


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["sides", "endpoints", "service", "role", "local", "peer", "peer_port",
                         "latency", "connections", "failed", "sent_bytes", "received_bytes",
                         "ip", "port"]), children, max_size=8),
    max_leaves=30)


@given(JSONISH)
def test_garbage_peer_data_raises_only_wire_errors(data):
    try:
        from_wire(data)
    except WireError:
        pass
