"""/proc walks shared by everything that looks at processes, sockets and
network namespaces that predate or surround the agent."""

import os

__all__ = ["pids", "netns_members", "read_text", "socket_inodes"]


def pids(proc="/proc"):
    """Every process id /proc lists now."""
    return [int(e) for e in os.listdir(proc) if e.isdigit()]


def netns_members(proc="/proc", among=None):
    """{network namespace inode: one pid inside it}: /proc/PID/net/* of that
    pid shows the namespace's own tables, with no setns needed."""
    members = {}
    for pid in pids(proc) if among is None else among:
        try:
            members.setdefault(os.stat(f"{proc}/{pid}/ns/net").st_ino, pid)
        except OSError:
            continue
    return members


def read_text(path):
    """A /proc file's text, or "" when it (or its process) is gone."""
    try:
        with open(path, errors="surrogateescape") as f:  # names in /proc: any bytes
            return f.read()
    except OSError:
        return ""


def socket_inodes(pid, proc="/proc"):
    """Inodes of the sockets process `pid` holds open."""
    inodes = set()
    try:
        fds = os.listdir(f"{proc}/{pid}/fd")
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(f"{proc}/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes
