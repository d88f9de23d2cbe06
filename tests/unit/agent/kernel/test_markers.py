"""Vetting copies of the marker library before hooking them as root."""

import os

import pytest

from taskscope.agent.kernel.markers import library_mappings, vet_library


def identity(path):
    st = os.stat(path)
    return os.major(st.st_dev), os.minor(st.st_dev), st.st_ino


@pytest.fixture
def library(tmp_path):
    path = tmp_path / "taskscope_marker.so"
    path.write_bytes(b"\x7fELF not really")
    path.chmod(0o755)
    return path


def test_a_sound_copy_is_opened_once_and_kept_open(library):
    fd, reason = vet_library(str(library), identity(library), owner_uid=12345)
    assert reason is None
    assert os.path.samestat(os.fstat(fd), os.stat(library))
    os.close(fd)


def test_refusals(library, tmp_path):
    mine = identity(library)
    link = tmp_path / "link_taskscope_marker.so"
    link.symlink_to(library)
    assert vet_library(str(link), mine, 0) == (None, "symlink")
    assert vet_library(str(tmp_path / "gone.so"), mine, 0) == (None, "unreadable")
    assert vet_library(str(tmp_path), identity(tmp_path), 0) == (None, "not_regular")
    other = tmp_path / "other_taskscope_marker.so"
    other.write_bytes(b"x")
    other.chmod(0o755)
    assert vet_library(str(other), mine, 0) == (None, "changed")  # not what was mapped
    os.chown(library, 4242, 4242)
    assert vet_library(str(library), mine, owner_uid=1000) == (None, "owner")
    assert vet_library(str(library), mine, owner_uid=4242)[1] is None
    os.chown(library, 0, 0)
    library.chmod(0o757)
    assert vet_library(str(library), mine, 0) == (None, "writable")
    library.chmod(0o775)
    assert vet_library(str(library), mine, 0) == (None, "writable")


def test_mappings_are_read_with_their_device_and_inode_whatever_the_path_bytes(tmp_path):
    maps = tmp_path / "42" / "maps"
    maps.parent.mkdir()
    maps.write_bytes(
        b"7f00-7f01 r-xp 00000000 fe:01 1234 /venv/x\xff/taskscope_marker.cpython.so\n"
        b"7f01-7f02 r-xp 00000000 fe:01 99 /usr/lib/libc.so.6\n"
        b"7f02-7f03 r-xp 00000000 fe:01 555 /tmp/taskscope_marker.so (deleted)\n"
        b"garbage taskscope_marker.so\n")
    found = library_mappings(str(tmp_path))
    assert list(found) == [(0xfe, 1, 1234)]
    pid, path = found[(0xfe, 1, 1234)]
    assert pid == 42 and os.fsencode(path) == b"/venv/x\xff/taskscope_marker.cpython.so"
