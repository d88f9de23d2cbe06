"""The collector's settings and agent discovery."""

import argparse

import pytest

from taskscope.fleet_command import collector_config
from taskscope.records.errors import ConfigError
import contextlib
import json
import socket
import threading
import time

from taskscope.topology.fleet import AgentFleet, DiscoveryError, dns_agents


def args(**kw):
    base = dict(config=None, agent=None, agents_dns=None, prometheus=None, listen=None,
                graph_window=None, timeout=None, log_level=None)
    return argparse.Namespace(**{**base, **kw})


def test_flags_override_the_file(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("agents: [http://a:9810]\nlisten: 127.0.0.1:1\ntimeout: 2\n")
    cfg = collector_config(args(config=str(f), agents_dns="agents.svc:9810"))
    assert cfg.agents == () and cfg.agents_dns == "agents.svc:9810"
    assert cfg.listen == "127.0.0.1:1" and cfg.timeout == 2.0


@pytest.mark.parametrize("text, message", [
    ("agents: http://a\n", "list of URLs"),
    ("agents: [http://a]\nprometheus: http://p\n", "give one of"),
    ("agents_dns: agents\n", "NAME:PORT"),
    ("timeout: -1\nagents: [http://a]\n", "positive number"),
    ("listen: nope\nagents: [http://a]\n", "HOST:PORT"),
    ("agent: [http://a]\n", "unknown key 'agent'"),
])
def test_bad_settings_name_the_file_and_key(tmp_path, text, message):
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message) as exc:
        collector_config(args(config=str(f)))
    assert str(f) in str(exc.value)


def test_dns_discovery_follows_the_name():
    assert dns_agents("localhost:9810") == ["http://127.0.0.1:9810"] or \
        "http://[::1]:9810" in dns_agents("localhost:9810")
    with pytest.raises(DiscoveryError, match="no-such-host.invalid"):
        dns_agents("no-such-host.invalid:9810")


def test_a_dns_outage_marks_the_agents_known_down_not_the_graph_empty():
    answers = [["http://a:1"]]

    def lookup():
        if not answers[0]:
            raise DiscoveryError("cannot resolve the agents at agents:1")
        return answers[0]

    fleet = AgentFleet(lookup)
    fleet.up["http://a:1"] = 1
    answers[0] = []
    assert fleet._discover() == [] and fleet.up == {"http://a:1": 0}
    assert fleet.discovery_failures == 1


@contextlib.contextmanager
def raw_agent(reply_bytes, trickle=0.0):
    """A TCP peer that answers any request with `reply_bytes`, a byte every
    `trickle` seconds when asked to."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.recv(65536)
                try:
                    if trickle:
                        for b in reply_bytes:
                            conn.sendall(bytes([b]))
                            if stop.wait(trickle):
                                break
                    else:
                        conn.sendall(reply_bytes)
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        listener.close()


GOOD_SIDE = {"service": "web", "role": "client", "local": "10.0.0.1", "peer": "10.0.0.2",
             "peer_port": 80, "connections": 1, "failed": 0, "sent_bytes": 1,
             "received_bytes": 1, "latency": [[20, 1, 1000000]]}


def http_reply(body):
    return (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)) + body


@pytest.mark.parametrize("reply", [
    b"garbage, not HTTP\r\n\r\n",                                   # BadStatusLine
    b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"sides\"",    # IncompleteRead
    b"HTTP/1.1 200 OK\r\nX: " + b"x" * 70000 + b"\r\n\r\n",          # LineTooLong
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",  # bad chunk
])
def test_any_http_failure_of_an_agent_leaves_it_out_and_is_counted(reply):
    with raw_agent(reply) as url:
        fleet = AgentFleet([url], timeout=2)
        graph = fleet.graph(60)
    assert graph.number_of_edges() == 0
    assert fleet.up[url] == 0 and fleet.failures[url] == 1


def test_a_trickling_agent_meets_the_deadline_not_the_socket_timeout():
    body = json.dumps({"sides": [GOOD_SIDE], "endpoints": []}).encode()
    with raw_agent(http_reply(body), trickle=0.05) as url:
        fleet = AgentFleet([url], timeout=1, deadline=1)
        started = time.monotonic()
        fleet.graph(60)
        took = time.monotonic() - started
    assert fleet.up[url] == 0 and took < 3


def test_a_malformed_side_is_skipped_and_counted_the_rest_used():
    bad = dict(GOOD_SIDE, service="x" * 1000)
    body = json.dumps({"sides": [GOOD_SIDE, bad, "junk"], "endpoints": []}).encode()
    with raw_agent(http_reply(body)) as url:
        fleet = AgentFleet([url], timeout=2)
        graph = fleet.graph(60)
    assert fleet.up[url] == 1 and fleet.skipped[url] == 2
    assert graph.number_of_edges() == 1


def test_agents_that_leave_are_forgotten():
    current = [["http://a:1", "http://b:1"]]
    collector = AgentFleet(lambda: current[0])
    collector.up["http://a:1"] = 1
    current[0] = ["http://b:1"]
    assert collector._discover() == ["http://b:1"] and set(collector.up) == {"http://b:1"}


def test_replies_of_one_request_share_a_byte_budget():
    from tests.fake_http import serving
    from taskscope.topology.fleet import ByteBudget, read_reply
    from taskscope.topology.sides_json import SidesFormatError
    with serving(lambda path: b"x" * 100) as url:
        budget = ByteBudget(150)
        assert len(read_reply(url, 5, 10, budget=budget)) == 100
        with pytest.raises(SidesFormatError):
            read_reply(url, 5, 10, budget=budget)
        assert len(read_reply(url, 5, 10)) == 100  # another request: a budget of its own
