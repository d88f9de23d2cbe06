"""The kernel's trace-context parser (bpf/traceparent.bpf.c), fuzzed.

Packets go through the real cgroup_skb program with BPF_PROG_TEST_RUN; what
it leaves in pending_traces is compared with a reference parser written
from the same rules: the first "\\ntraceparent:" or "\\nb3:" (any case)
within the first SCAN_BYTES bytes of a request that starts with an HTTP
method, up to two spaces, then the W3C or b3 single-header format.
"""

import ctypes
import re
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskscope.agent.kernel import loader as bpf_module
from taskscope.agent.kernel import btf
from taskscope.agent import kernel_abi
from taskscope.agent.kernel import probes
from taskscope.agent.kernel import tracefs

SCAN = kernel_abi.SCAN_BYTES
METHODS = (b"GET ", b"POST", b"PUT ", b"DELE", b"PATC", b"HEAD", b"OPTI")
HEX = "0123456789abcdefABCDEF"


class RunOpts(ctypes.Structure):
    _fields_ = [("sz", ctypes.c_size_t), ("data_in", ctypes.c_void_p),
                ("data_out", ctypes.c_void_p), ("data_size_in", ctypes.c_uint32),
                ("data_size_out", ctypes.c_uint32), ("ctx_in", ctypes.c_void_p),
                ("ctx_out", ctypes.c_void_p), ("ctx_size_in", ctypes.c_uint32),
                ("ctx_size_out", ctypes.c_uint32), ("retval", ctypes.c_uint32),
                ("repeat", ctypes.c_int), ("duration", ctypes.c_uint32),
                ("flags", ctypes.c_uint32), ("cpu", ctypes.c_uint32),
                ("batch_size", ctypes.c_uint32)]


class KernelParser:
    def __init__(self):
        bcc = bpf_module.import_bcc()
        selection = probes.select(["traces"], tracefs.find_tracefs(None), btf.load_vmlinux())
        self.bpf = bcc.BPF(text=bpf_module.module_text(),
                           cflags=kernel_abi.cflags(selection.defines()))
        self.fd = self.bpf.load_func(b"wire_ingress", bcc.BPF.CGROUP_SKB).fd
        self.lib = ctypes.CDLL("libbcc.so.0", use_errno=True)
        self.lib.bpf_prog_test_run_opts.argtypes = [ctypes.c_int, ctypes.POINTER(RunOpts)]
        self.pending = self.bpf[b"pending_traces"]

    def parse(self, payload, ip_options=0, tcp_options=0, ipv6=False):
        """(trace_id hex, span_id hex, flags) the kernel found, or None.

        The packet goes from 10.0.0.1:40000 (or ::a00:1) to 10.0.0.2:8080
        (or ::a00:2), with `ip_options` and `tcp_options` bytes of options.
        """
        self.pending.clear()
        tcp = struct.pack("!HHIIBBHHH", 40000, 8080, 1, 0, (5 + tcp_options // 4) << 4, 0x18,
                          65535, 0, 0) + b"\x01" * tcp_options
        if ipv6:
            eth = b"\x00" * 12 + b"\x86\xdd"
            ip = struct.pack("!IHBB16s16s", 6 << 28, len(tcp) + len(payload), 6, 64,
                             bytes(15) + b"\x01", bytes(15) + b"\x02")
            local = bytes(15) + b"\x02"
        else:
            eth = b"\x00" * 12 + b"\x08\x00"
            total = 20 + ip_options + len(tcp) + len(payload)
            ip = struct.pack("!BBHHHBBH4s4s", 0x45 + ip_options // 4, 0, total, 0, 0x4000, 64, 6,
                             0, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])) + b"\x01" * ip_options
            local = bytes(10) + b"\xff\xff" + bytes([10, 0, 0, 2])
        packet = eth + ip + tcp + payload
        buf = ctypes.create_string_buffer(packet, len(packet))
        opts = RunOpts(sz=ctypes.sizeof(RunOpts), data_in=ctypes.cast(buf, ctypes.c_void_p),
                           data_size_in=len(packet), repeat=1)
        assert self.lib.bpf_prog_test_run_opts(self.fd, ctypes.byref(opts)) == 0, \
            ctypes.get_errno()
        assert opts.retval == 1, "the program must let every packet through"
        found = list(self.pending.items())
        if not found:
            return None
        [(key, ctx)] = found
        assert key.local_port == 8080 and key.peer_port == 40000
        assert bytes(key.local) == local
        return bytes(ctx.trace_id).hex(), bytes(ctx.span_id).hex(), ctx.flags


HEADER = re.compile(rb"\n(traceparent|b3):", re.IGNORECASE)
# Lower-case hex only: an upper-case digit makes the context invalid (W3C).
TRACEPARENT = re.compile(rb"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
B3 = re.compile(rb"([0-9a-f]{32}|[0-9a-f]{16})-([0-9a-f]{16})")


def reference(payload):
    """What the kernel should find in `payload`, by the rules in the docstring."""
    if payload[:4] not in METHODS or len(payload) < 24:
        return None
    window = payload[:SCAN]
    match = None
    for m in HEADER.finditer(window):
        if m.start() < SCAN - 16 and m.start() + 16 <= len(window):
            match = m
        break
    if not match:
        return None
    at = match.end()
    for _ in range(2):
        if window[at:at + 1] == b" ":
            at += 1
    rest = window[at:]
    if match.group(1).lower() == b"traceparent":
        m = TRACEPARENT.match(rest)
        if not m:
            return None
        trace, span, flags = m.group(1), m.group(2), int(m.group(3), 16)
    else:
        m = B3.match(rest)
        if not m:
            return None
        trace, span = m.group(1).rjust(32, b"0"), m.group(2)
        after = rest[m.end():]
        flags = 0 if after[:2] == b"-0" else 1
    if int(trace, 16) == 0 or int(span, 16) == 0 or not flags & 1:
        return None
    return trace.decode(), span.decode(), flags


@pytest.fixture(scope="module")
def kernel():
    return KernelParser()


def request(*headers, method=b"GET ", filler=b""):
    return method + b"/orders/42 HTTP/1.1\r\nHost: shop\r\n" + filler + \
        b"".join(h + b"\r\n" for h in headers) + b"\r\n"


def test_traceparent_found(kernel):
    tp = b"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert kernel.parse(request(tp)) == ("4bf92f3577b34da6a3ce929d0e0e4736",
                                         "00f067aa0ba902b7", 1)


@pytest.mark.parametrize("shape", [dict(ip_options=4), dict(ip_options=20), dict(tcp_options=12),
                                   dict(tcp_options=40), dict(ipv6=True),
                                   dict(ipv6=True, tcp_options=12)])
def test_headers_of_every_shape(kernel, shape):
    tp = b"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert kernel.parse(request(tp), **shape) == ("4bf92f3577b34da6a3ce929d0e0e4736",
                                                  "00f067aa0ba902b7", 1)


def test_b3_single_header_with_a_64_bit_trace_id(kernel):
    assert kernel.parse(request(b"B3: a3ce929d0e0e4736-00f067aa0ba902b7-1")) == (
        "0000000000000000a3ce929d0e0e4736", "00f067aa0ba902b7", 1)


@pytest.mark.parametrize("payload", [
    request(b"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"),  # unsampled
    request(b"traceparent: 00-00000000000000000000000000000000-00f067aa0ba902b7-01"),  # zero id
    request(b"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01"),  # not hex
    request(b"traceparent: 00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),  # upper case
    request(b"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01"),
    request(b"B3: A3CE929D0E0E4736-00f067aa0ba902b7-1"),
    request(b"x-traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    request(b"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            filler=b"X-Pad: " + b"a" * SCAN + b"\r\n"),  # beyond the scanned bytes
    b"HTTP/1.1 200 OK\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n",
])
def test_no_context(kernel, payload):
    assert kernel.parse(payload) is None


def header_value(draw):
    kind = draw(st.sampled_from(["traceparent", "b3", "garbage"]))
    hexes = lambda n: draw(st.text(HEX, min_size=n, max_size=n))
    if kind == "traceparent":
        return f"00-{hexes(32)}-{hexes(16)}-{draw(st.sampled_from(['01', '00', '03', 'zz']))}"
    if kind == "b3":
        trace = hexes(draw(st.sampled_from([16, 32])))
        return f"{trace}-{hexes(16)}" + draw(st.sampled_from(["", "-1", "-0", "-d", "-1-abc"]))
    return draw(st.text(HEX + "- ", max_size=70))


@st.composite
def requests(draw):
    name = draw(st.sampled_from(["traceparent", "TraceParent", "b3", "B3", "tracestate"]))
    value = header_value(draw)
    spaces = draw(st.sampled_from(["", " ", "  ", "   "]))
    header = f"{name}:{spaces}{value}".encode()
    filler = draw(st.binary(max_size=600))
    method = draw(st.sampled_from(METHODS + (b"GETX", b"\x00\x00\x00\x00")))
    tail = draw(st.binary(max_size=40))
    return request(header, method=method, filler=filler) + tail


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=requests())
def test_kernel_parser_agrees_with_the_reference(kernel, payload):
    assert kernel.parse(payload) == reference(payload)


@settings(max_examples=300, deadline=None)
@given(payload=st.binary(min_size=0, max_size=1400))
def test_garbage_never_yields_a_context_the_reference_would_not(kernel, payload):
    payload = b"GET " + payload
    assert kernel.parse(payload) == reference(payload)
