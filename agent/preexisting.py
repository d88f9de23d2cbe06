"""Connections that were open before the agent started, for the service graph.

Listed from /proc/PID/net/tcp{,6} of one process per network namespace (its
own view of that namespace, no setns needed), tied to their owner through
/proc/PID/fd socket inodes.  The kernel side adopts each on its next send or
receive, by (netns inode, 4-tuple).
"""

from agent import procfs
from agent.listeners import TCP_ESTABLISHED, TCP_LISTEN, parse_tcp_rows
from topology.graph import v4_mapped

CLIENT_ROLE, SERVER_ROLE = 1, 2  # ROLE_CLIENT / ROLE_SERVER in bpf/tcp.bpf.c


def established(proc="/proc"):
    """[(netns, local ip, local port, peer ip, peer port, role, pid)] open now."""
    all_pids = procfs.pids(proc)
    connections = {}  # inode -> (netns, local, lport, peer, pport, role)
    for netns, pid in procfs.netns_members(proc, all_pids).items():
        rows, listening = [], set()
        for name in ("tcp", "tcp6"):
            text = procfs.read_text(f"{proc}/{pid}/net/{name}")
            rows += parse_tcp_rows(text, TCP_ESTABLISHED)
            listening |= {port for _, port, _, _, _ in parse_tcp_rows(text, TCP_LISTEN)}
        for local, lport, peer, pport, inode in rows:
            role = SERVER_ROLE if lport in listening else CLIENT_ROLE
            connections[inode] = (netns, v4_mapped(local), lport, v4_mapped(peer), pport, role)
    out = []
    for pid in all_pids:
        for inode in procfs.socket_inodes(pid, proc) & connections.keys():
            out.append((*connections.pop(inode), pid))
    return out
