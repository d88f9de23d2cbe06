import os

from hypothesis import given
from hypothesis import strategies as st

from taskscope.agent.host.identity import identify, parse_environ, running_processes
from taskscope.agent.kernel_abi import IdentKind, ident_hash


def test_ident_hash_is_fnv1a_of_kind_and_name():
    # FNV-1a 64 over the kind value, then each byte: the kernel computes the same.
    h = 14695981039346656037
    for b in [IdentKind.OTEL, *b"payment"]:
        h = ((h ^ b) * 1099511628211) % 2 ** 64
    assert ident_hash(IdentKind.OTEL, b"payment") == h
    assert ident_hash(IdentKind.COMM, b"payment") != h


def test_ident_hash_stops_at_nul_and_at_the_kernel_name_length():
    assert ident_hash(1, b"abc\0def") == ident_hash(1, b"abc")
    assert ident_hash(1, b"x" * 100) == ident_hash(1, b"x" * 63)


def test_parse_environ():
    env = parse_environ(b"A=1\0OTEL_SERVICE_NAME=orders\0B=x=y\0junk\0=nokey\0")
    assert env == {b"A": b"1", b"OTEL_SERVICE_NAME": b"orders", b"B": b"x=y"}


@given(st.binary())
def test_parse_environ_never_raises_on_garbage(data):
    env = parse_environ(data)
    assert all(k and b"\0" not in k and b"=" not in k for k in env)


def fake_proc(tmp_path, pid, comm, environ=b"", flags=0):
    d = tmp_path / str(pid)
    d.mkdir()
    (d / "comm").write_bytes(comm + b"\n")
    (d / "environ").write_bytes(environ)
    (d / "stat").write_bytes(b"%d (%s) S 1 1 1 0 -1 %d 0 0" % (pid, comm, flags))
    return tmp_path


def test_identify_prefers_otel_service_name(tmp_path):
    proc = fake_proc(tmp_path, 10, b"python3", b"PATH=/bin\0OTEL_SERVICE_NAME=orders\0")
    assert identify(10, str(proc)) == (IdentKind.OTEL, b"orders")


def test_identify_falls_back_to_comm_and_names_kernel_threads(tmp_path):
    fake_proc(tmp_path, 11, b"nginx")
    fake_proc(tmp_path, 12, b"kworker/0:1 x)", flags=0x00200000)
    assert identify(11, str(tmp_path)) == (IdentKind.COMM, b"nginx")
    assert identify(12, str(tmp_path)) == (IdentKind.COMM, b"kernel")
    assert identify(13, str(tmp_path)) is None


def test_running_processes_lists_this_process():
    found = {pid: name for pid, _, name in running_processes()}
    assert os.getpid() in found
