"""Connections that were open before the agent started, for the service graph.

Listed from /proc/PID/net/tcp{,6} of one process per network namespace (its
own view of that namespace, no setns needed), tied to their owner through
/proc/PID/fd socket inodes.  The kernel side adopts each on its next send or
receive, by (netns inode, 4-tuple).
"""

import os

from agent.endpoints import _read, _v4_mapped
from agent.listeners import TCP_ESTABLISHED, TCP_LISTEN, _socket_inodes, parse_tcp_rows

CLIENT_ROLE, SERVER_ROLE = 1, 2  # ROLE_CLIENT / ROLE_SERVER in bpf/tcp.bpf.c


def established(proc="/proc"):
    """[(netns, local ip, local port, peer ip, peer port, role, pid)] open now."""
    pids = [int(e) for e in os.listdir(proc) if e.isdigit()]
    namespaces = {}
    for pid in pids:
        try:
            namespaces.setdefault(os.stat(f"{proc}/{pid}/ns/net").st_ino, pid)
        except OSError:
            continue
    connections = {}  # inode -> (netns, local, lport, peer, pport, role)
    for netns, pid in namespaces.items():
        rows, listening = [], set()
        for name in ("tcp", "tcp6"):
            text = _read(f"{proc}/{pid}/net/{name}")
            rows += parse_tcp_rows(text, TCP_ESTABLISHED)
            listening |= {port for _, port, _, _, _ in parse_tcp_rows(text, TCP_LISTEN)}
        for local, lport, peer, pport, inode in rows:
            role = SERVER_ROLE if lport in listening else CLIENT_ROLE
            connections[inode] = (netns, _v4_mapped(local), lport, _v4_mapped(peer), pport, role)
    out = []
    for pid in pids:
        for inode in _socket_inodes(pid, proc) & connections.keys():
            out.append((*connections.pop(inode), pid))
    return out
