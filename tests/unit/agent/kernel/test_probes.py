from taskscope.agent.kernel.probes import (CATALOGUE, choose_tcp_io, fallback_tcp_io,
                                           kprobes_present, select)


def fake_tracefs(tmp_path, tracepoints):
    for tp in tracepoints:
        d = tmp_path / "events" / tp.replace(":", "/")
        d.mkdir(parents=True)
        (d / "format").write_text("name: x\n")
    return str(tmp_path)


ALL = {tp for p in CATALOGUE for tp in p.required + p.optional}


def test_everything_present_selects_every_probe_once(tmp_path):
    sel = select(("sched", "blockio", "tcp", "traces"), fake_tracefs(tmp_path, ALL))
    assert [p.name for p in sel.enabled] == [p.name for p in CATALOGUE]
    assert sel.missing == {}
    assert all(p.define in sel.defines() for p in sel.enabled if p.define)
    assert "HAVE_BLOCK_BLOCK_IO_START" in sel.defines() and "TCP_RTT" in sel.defines()


def test_a_missing_tracepoint_disables_only_its_probes(tmp_path):
    sel = select(("sched", "tcp"), fake_tracefs(tmp_path, ALL - {"tcp:tcp_probe"}))
    assert sel.missing == {"tcp_rtt": ["tcp:tcp_probe"]}
    assert "TCP_RTT" not in sel.defines() and "TCP_CONNECT" in sel.defines()
    assert "blockio" not in [p.name for p in sel.enabled]


def test_missing_optional_tracepoint_leaves_the_fallback(tmp_path):
    sel = select(("blockio",), fake_tracefs(tmp_path, ALL - {"block:block_io_start"}))
    assert "blockio" in [p.name for p in sel.enabled]
    assert "HAVE_BLOCK_BLOCK_RQ_INSERT" in sel.defines()
    assert "HAVE_BLOCK_BLOCK_IO_START" not in sel.defines()


def test_single_probes_bring_what_they_need(tmp_path):
    sel = select(("trace_wire", "tcp_rtt"), fake_tracefs(tmp_path, ALL))
    assert {p.name for p in sel.enabled} == {
        "identity", "trace_wire", "trace_segments", "tcp_exchanges", "tcp_connect", "tcp_rtt"}


def test_exchanges_and_bytes_come_from_packets_or_their_fallbacks(tmp_path):
    root = fake_tracefs(tmp_path, ALL)
    packets = select(("tcp",), root, tcp_io="packets")
    assert "TCP_PACKETS" in packets.defines() and packets.variant("tcp_exchanges") == "packets"
    assert packets.variant("tcp_rtt") == "packets" and packets.packet_users
    syscalls = select(("tcp",), root, tcp_io="syscalls")
    assert "TCP_PACKETS" not in syscalls.defines() and not syscalls.packet_users
    assert syscalls.variant("tcp_exchanges") == "tracepoints"  # no BTF given
    kprobes = select(("tcp",), root, tcp_io="kprobes")
    assert "TCP_KPROBES" in kprobes.defines() and kprobes.variant("tcp_bytes") == "kprobes"


def test_fallback_prefers_the_tracepoints_then_kprobes(tmp_path):
    before_6_4 = ALL - {"sock:sock_send_length", "sock:sock_recv_length"}
    root = fake_tracefs(tmp_path / "a", before_6_4)
    assert fallback_tcp_io(root) is None  # no kprobes either
    (tmp_path / "a" / "kprobe_events").write_text("")
    (tmp_path / "a" / "available_filter_functions").write_text(
        "tcp_sendmsg\ntcp_recvmsg [ipv6]\n")
    assert kprobes_present(root) and fallback_tcp_io(root) == "kprobes"
    assert fallback_tcp_io(fake_tracefs(tmp_path / "b", ALL)) == "syscalls"
    assert choose_tcp_io("auto", ("tcp",), root, None)[0] == "kprobes"
    assert choose_tcp_io("auto", ("tcp",), root, "/sys/fs/cgroup")[0] == "packets"
