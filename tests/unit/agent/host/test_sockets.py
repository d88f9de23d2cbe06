import os
import socket

from hypothesis import given
from hypothesis import strategies as st

from taskscope.agent.host.cgroups import cgroup_id
from taskscope.agent.host.sockets import listening_ports, parse_listen_rows

PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0 100 0 0 10 0
   1: 0100007F:A1B2 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0 20 4 30 10 -1
"""


def test_parse_keeps_listen_rows_only():
    assert [(port, inode) for _, port, inode in parse_listen_rows(PROC_NET_TCP)] == [(8080, 4242)]


@given(st.text())
def test_parse_never_raises_on_garbage(text):
    for _, port, inode in parse_listen_rows(text):
        assert isinstance(port, int) and isinstance(inode, int)


def test_finds_a_listener_of_this_process():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        netns = os.stat("/proc/self/ns/net").st_ino
        assert listening_ports().get((netns, port)) == os.getpid()


def test_cgroup_of_a_process_seen_through_another_cgroup_namespace(tmp_path):
    # In a container with its own cgroup namespace, host processes show as /../..;
    # their cgroup is found in the host tree's cgroup.procs instead.
    root = tmp_path / "cgroup"
    pod = root / "kubepods.slice" / "cri-containerd-abc.scope"
    pod.mkdir(parents=True)
    (pod / "cgroup.procs").write_text("41\n4242\n")
    (root / "cgroup.procs").write_text("1\n")
    proc = tmp_path / "proc"
    (proc / "4242").mkdir(parents=True)
    (proc / "4242" / "cgroup").write_text("0::/../../kubepods.slice/cri-containerd-abc.scope\n")
    (proc / "7").mkdir()
    (proc / "7" / "cgroup").write_text("0::/../..\n")
    assert cgroup_id(4242, str(root), proc=str(proc)) == pod.stat().st_ino
    assert cgroup_id(7, str(root), proc=str(proc)) == 0
