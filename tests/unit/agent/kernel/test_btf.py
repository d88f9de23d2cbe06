import os
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskscope.agent.kernel.btf import BTF, BTFError, VMLINUX
from taskscope.agent.kernel.probes import CATALOGUE, btf_defines


class Blob:
    """Builds a small BTF blob: enough kinds to exercise the reader."""

    def __init__(self):
        self.types, self.strings = b"", b"\0"

    def name(self, text):
        if not text:
            return 0
        off = len(self.strings)
        self.strings += text.encode() + b"\0"
        return off

    def add(self, kind, name, vlen, size_or_type, trailer=b"", kind_flag=0):
        info = (kind_flag << 31) | (kind << 24) | vlen
        self.types += struct.pack("<III", self.name(name), info, size_or_type) + trailer

    def members(self, *items):
        return b"".join(struct.pack("<III", self.name(n), t, off) for n, t, off in items)

    def build(self):
        header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(self.types),
                             len(self.types), len(self.strings))
        return header + self.types + self.strings


def sample():
    b = Blob()
    b.add(1, "int", 0, 4, struct.pack("<I", 32))                          # 1
    b.add(4, "inner", 2, 8, b.members(("a", 1, 0), ("b", 1, 32)))          # 2
    b.add(4, "outer", 3, 24, b.members(("x", 1, 0), ("", 4, 64), ("in", 2, 128)))  # 3
    b.add(5, "", 1, 8, b.members(("y", 1, 0)))                             # 4 anonymous union
    b.add(2, "", 0, 3)                                                     # 5 struct outer *
    b.add(13, "", 3, 0, struct.pack("<IIIIII", 0, 7, 0, 5, 0, 1))          # 6 fn(void *, outer *, int)
    b.add(2, "", 0, 0)                                                     # 7 void *
    b.add(2, "", 0, 6)                                                     # 8 pointer to 6
    b.add(8, "btf_trace_ev", 0, 8)                                         # 9
    b.add(4, "bits", 1, 4, b.members(("f", 1, (3 << 24) | 5)), kind_flag=1)  # 10
    return BTF(b.build())


def test_member_offsets_through_anonymous_and_nested_members():
    btf = sample()
    assert btf.member("outer", "x") == (0, 4)
    assert btf.member("outer", "y") == (8, 4)
    assert btf.member("outer", "in.b") == (20, 4)


def test_raw_tracepoint_prototype():
    assert sample().raw_tracepoint_params("ev") == ["struct outer *", "int"]


@pytest.mark.parametrize("call, message", [
    (lambda b: b.member("nope", "x"), "no struct nope"),
    (lambda b: b.member("outer", "z"), "no member z"),
    (lambda b: b.member("bits", "f"), "is a bitfield"),
    (lambda b: b.raw_tracepoint_params("other"), "no prototype for tracepoint other"),
])
def test_what_is_missing_is_an_error(call, message):
    with pytest.raises(BTFError, match=message):
        call(sample())


@given(st.binary(max_size=512), st.binary(max_size=64))
def test_garbage_behind_a_valid_header_is_rejected_cleanly(types, strings):
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    try:
        btf = BTF(header + types + strings)
        btf.member("outer", "x")
    except BTFError:
        pass


@pytest.mark.skipif(not os.path.exists(VMLINUX), reason="kernel lacks BTF (CONFIG_DEBUG_INFO_BTF)")
def test_the_running_kernel_has_what_the_probes_read():
    btf = BTF.from_file()
    assert btf.member("mm_struct", "env_start")[1] == 8
    assert btf.member("tcp_sock", "srtt_us")[1] == 4
    assert btf.raw_tracepoint_params("tcp_probe") == ["struct sock *", "struct sk_buff *"]


@pytest.mark.skipif(not os.path.exists(VMLINUX), reason="kernel lacks BTF (CONFIG_DEBUG_INFO_BTF)")
def test_every_probe_with_a_btf_variant_gets_it_on_the_running_kernel():
    btf = BTF.from_file()
    for probe in CATALOGUE:
        if probe.raw_events or probe.fields:
            assert f"{probe.define}_BTF" in btf_defines(probe, btf), probe.name
