"""Conntrack translations (agent/host/conntrack.py): which entries count,
per-connection and fallback lookups, bounds, and a table that cannot be read."""

import ipaddress
import socket

from hypothesis import given
from hypothesis import strategies as st

from taskscope.agent.host.conntrack import Conntrack, Translation, translation

IP = ipaddress.ip_address
TCP, UDP = socket.IPPROTO_TCP, socket.IPPROTO_UDP


def mapped(text):
    return IP("::ffff:" + text)


def test_only_translated_tcp_entries_count():
    assert translation(TCP, "10.0.0.5", 41234, "198.18.100.1", 80, "10.0.0.9", 9101) == \
        Translation(mapped("10.0.0.5"), 41234, mapped("198.18.100.1"), 80, mapped("10.0.0.9"),
                    9101)
    assert translation(TCP, "127.0.0.1", 5, "127.0.0.1", 6, "127.0.0.1", 6) is None
    assert translation(UDP, "10.0.0.1", 1, "10.0.0.2", 53, "10.0.0.3", 53) is None
    assert translation(TCP, None, 1, "10.0.0.2", 53, "10.0.0.3", 53) is None


@given(st.integers(), st.one_of(st.none(), st.text(max_size=40), st.binary(max_size=16)),
       st.one_of(st.none(), st.integers(), st.text(max_size=5)))
def test_garbage_from_netlink_never_raises(proto, address, port):
    translation(proto, address, port, address, port, address, port)


def fake_proc(tmp_path, namespaces):
    """A /proc with one process per network namespace inode."""
    for pid, inode in namespaces.items():
        ns = tmp_path / str(pid) / "ns"
        ns.mkdir(parents=True)
        (ns / "net").write_text(str(inode))
    return str(tmp_path)


def test_each_connection_finds_its_own_backend_and_the_last_one_is_the_fallback(tmp_path):
    vip = ("10.0.0.5", 0, "198.18.100.1", 80)
    tables = {"1": [translation(TCP, vip[0], 1000 + i, vip[2], 80, f"10.1.0.{i % 3}", 8080)
                    for i in range(6)]}
    ct = Conntrack(proc=fake_proc(tmp_path, {1: 1}),
                   reader=lambda netns, cap: tables[netns.split("/")[-3]] if netns else [])
    ct.refresh(every_namespace=False)  # the agent's own namespace only
    assert ct.virtual_ips() == [] and ct.readable
    ct.refresh()
    assert ct.virtual_ips() == [(mapped("198.18.100.1"), 80)]
    for i in range(6):
        assert ct.connection_backend(mapped("10.0.0.5"), 1000 + i, mapped("198.18.100.1"), 80) \
            == (mapped(f"10.1.0.{i % 3}"), 8080)
    assert ct.connection_backend(mapped("10.0.0.5"), 999, mapped("198.18.100.1"), 80) is None
    assert ct.backend(mapped("198.18.100.1"), 80) == (mapped("10.1.0.2"), 8080)
    assert ct.readable


def test_remembered_translations_are_bounded_oldest_first(tmp_path):
    rows = [translation(TCP, "10.0.0.5", 2000 + i, "198.18.100.1", 80, "10.1.0.1", 8080)
            for i in range(10)]
    ct = Conntrack(proc=fake_proc(tmp_path, {1: 1}), max_entries=4, reader=lambda n, c: rows)
    ct.refresh()
    assert ct.connection_backend(mapped("10.0.0.5"), 2009, mapped("198.18.100.1"), 80)
    assert ct.connection_backend(mapped("10.0.0.5"), 2000, mapped("198.18.100.1"), 80) is None


def test_a_table_that_cannot_be_read_is_said_and_a_capped_one_counted(tmp_path):
    def refuse(netns, cap):
        raise PermissionError(1, "Operation not permitted")

    ct = Conntrack(proc=fake_proc(tmp_path, {1: 1}), reader=refuse)
    ct.refresh()
    assert not ct.readable and ct.virtual_ips() == []

    def too_many(netns, cap):
        raise OverflowError(cap)

    capped = Conntrack(proc=fake_proc(tmp_path / "capped", {1: 1}), reader=too_many)
    capped.refresh()
    assert capped.readable and capped.truncated == 2  # the agent's namespace and one more
