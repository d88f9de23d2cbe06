"""TCP listeners that were open before the agent started, and their owners.

Passive connections are charged to the process listening on their port; the
kernel learns listeners at listen(), so those opened earlier are found here,
in every network namespace, from /proc.
"""

import ipaddress
import logging
import os
import time

from agent import procfs

log = logging.getLogger(__name__)

TCP_ESTABLISHED = "01"
TCP_LISTEN = "0A"


def _address(hex_addr):
    """/proc/net/tcp{,6} address (host-order 32-bit words in hex) -> ip_address."""
    raw = bytes.fromhex(hex_addr)
    if len(raw) not in (4, 16):
        raise ValueError(hex_addr)
    host = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(host)


def parse_tcp_rows(text, state):
    """[(local ip, local port, remote ip, remote port, inode)] of /proc/net/tcp{,6}
    rows in `state` (hex, as the file shows it)."""
    out = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != state:
            continue
        try:
            local, local_port = fields[1].rsplit(":", 1)
            remote, remote_port = fields[2].rsplit(":", 1)
            out.append((_address(local), int(local_port, 16), _address(remote),
                        int(remote_port, 16), int(fields[9])))
        except ValueError:
            continue
    return out


def parse_listen_rows(text):
    """[(local ip, local port, socket inode)] of the LISTEN rows of /proc/net/tcp{,6}."""
    return [(ip, port, inode) for ip, port, _, _, inode in parse_tcp_rows(text, TCP_LISTEN)]


def parse_proc_net_tcp(text):
    """[(local port, socket inode)] of the LISTEN rows of /proc/net/tcp{,6}."""
    return [(port, inode) for _, port, inode in parse_listen_rows(text)]


def listening_ports(proc="/proc"):
    """{(network namespace inode, port): pid} of every TCP listener."""
    all_pids = procfs.pids(proc)
    listeners = {}
    for netns, pid in procfs.netns_members(proc, all_pids).items():
        for name in ("tcp", "tcp6"):
            text = procfs.read_text(f"{proc}/{pid}/net/{name}")
            listeners.update({inode: (netns, port) for port, inode in parse_proc_net_tcp(text)})
    ports = {}
    for pid in all_pids:
        for inode in procfs.socket_inodes(pid, proc) & listeners.keys():
            ports.setdefault(listeners[inode], pid)
    return ports


def cgroup_id(pid, cgroup2_root, proc="/proc"):
    """The v2 cgroup id of a process: the inode of its cgroup directory.

    Inside a container with its own cgroup namespace (a DaemonSet's agent),
    /proc/PID/cgroup shows host processes as "/../..": then the process is
    looked up in the cgroup.procs files of the host's tree, which must be
    mounted at `cgroup2_root`.
    """
    try:
        with open(f"{proc}/{pid}/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    path = line[3:].strip()
                    if path.startswith("/.."):
                        return _cgroup_of_pid(cgroup2_root).get(pid, 0)
                    return os.stat(cgroup2_root + path).st_ino
    except OSError:
        pass
    return 0


_MEMBERSHIP = {"at": float("-inf"), "root": None, "pids": {}}


def _cgroup_of_pid(root, max_age=5.0):
    """{pid: cgroup id} from every cgroup.procs under `root`, rebuilt at most
    every `max_age` seconds (start-up asks for many pids in a row)."""
    if _MEMBERSHIP["root"] != root or time.monotonic() - _MEMBERSHIP["at"] > max_age:
        pids = {}
        for dirpath, _, files in os.walk(root or "/nonexistent"):
            if "cgroup.procs" not in files:
                continue
            try:
                ino = os.stat(dirpath).st_ino
                with open(os.path.join(dirpath, "cgroup.procs")) as f:
                    pids.update((int(line), ino) for line in f if line.strip())
            except (OSError, ValueError):
                continue
        _MEMBERSHIP.update(at=time.monotonic(), root=root, pids=pids)
    return _MEMBERSHIP["pids"]
