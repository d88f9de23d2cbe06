"""Parsers of kernel text (/proc): known inputs and garbage."""

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from taskscope.agent.host.sockets import (TCP_ESTABLISHED, parse_fib_trie_locals,
                                          parse_if_inet6, parse_tcp_rows)

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


@given(st.text())
def test_kernel_text_parsers_never_raise(text):
    parse_fib_trie_locals(text)
    parse_if_inet6(text)
    parse_tcp_rows(text, TCP_ESTABLISHED)
