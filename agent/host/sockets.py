"""TCP sockets of every network namespace, read from /proc, with their holders.

One reader serves every part that needs sockets that predate the agent:
/proc/PID/net/tcp{,6} of one process per network namespace (its own view of
that namespace, no setns needed), tied to a process holding each socket
through the socket inodes of /proc/PID/fd.  The views below derive from it:
listeners (passive connections are charged to whoever listens on their
port; the kernel learns listeners at listen(), so earlier ones come from
here), established connections (adopted by the kernel side on their next
send or receive), and the local endpoints that name a client's peer.
"""

import ipaddress
from dataclasses import dataclass

from taskscope.agent.host import procfs
from taskscope.agent.kernel_abi import Role
from taskscope.records.edges import v4_mapped

__all__ = ["Socket", "read_sockets", "listening_ports", "established", "local_endpoints",
           "parse_tcp_rows", "parse_listen_rows", "parse_fib_trie_locals", "parse_if_inet6"]

TCP_ESTABLISHED = "01"
TCP_LISTEN = "0A"


@dataclass(frozen=True)
class Socket:
    netns: int        # network namespace inode
    state: str        # as /proc shows it: TCP_LISTEN, TCP_ESTABLISHED
    local: object     # ipaddress, as /proc lists it (IPv4 not v4-mapped)
    local_port: int
    peer: object
    peer_port: int
    inode: int
    pid: int          # a process holding it (the lowest pid, when shared)


def _address(hex_addr):
    """/proc/net/tcp{,6} address (host-order 32-bit words in hex) -> ip_address."""
    raw = bytes.fromhex(hex_addr)
    if len(raw) not in (4, 16):
        raise ValueError(hex_addr)
    host = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(host)


def _rows(text, states):
    """[(state, local ip, local port, remote ip, remote port, inode)] of the rows
    of /proc/net/tcp{,6} (untrusted text) whose state is in `states`."""
    out = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] not in states:
            continue
        try:
            local, local_port = fields[1].rsplit(":", 1)
            remote, remote_port = fields[2].rsplit(":", 1)
            out.append((fields[3], _address(local), int(local_port, 16), _address(remote),
                        int(remote_port, 16), int(fields[9])))
        except ValueError:
            continue
    return out


def parse_tcp_rows(text, state):
    """[(local ip, local port, remote ip, remote port, inode)] of /proc/net/tcp{,6}
    rows in `state` (hex, as the file shows it)."""
    return [row[1:] for row in _rows(text, (state,))]


def parse_listen_rows(text):
    """[(local ip, local port, socket inode)] of the LISTEN rows of /proc/net/tcp{,6}."""
    return [(ip, port, inode) for ip, port, _, _, inode in parse_tcp_rows(text, TCP_LISTEN)]


def parse_fib_trie_locals(text):
    """IPv4 addresses of a namespace: the `/32 host LOCAL` leaves of fib_trie."""
    out, last = set(), None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(("|--", "+--")):
            last = stripped[3:].strip().split()[0]
        elif stripped.startswith("/32 host LOCAL") and last:
            try:
                out.add(ipaddress.ip_address(last))
            except ValueError:
                pass
    return out


def parse_if_inet6(text):
    out = set()
    for line in text.splitlines():
        fields = line.split()
        if fields:
            try:
                out.add(ipaddress.ip_address(bytes.fromhex(fields[0])))
            except ValueError:
                pass
    return out


def namespace_addresses(pid, proc="/proc"):
    """Every local address of the network namespace process `pid` is in."""
    return (parse_fib_trie_locals(procfs.read_text(f"{proc}/{pid}/net/fib_trie"))
            | parse_if_inet6(procfs.read_text(f"{proc}/{pid}/net/if_inet6")))


def read_sockets(proc="/proc", states=(TCP_LISTEN, TCP_ESTABLISHED), members=None):
    """[Socket] in `states`, in every network namespace, each with the first
    process (in /proc's order) that holds it; sockets nobody holds are left out.
    `members`: procfs.netns_members(proc), when the caller has it already."""
    all_pids = procfs.pids(proc)
    if members is None:
        members = procfs.netns_members(proc, all_pids)
    rows = {}  # inode -> (netns, state, local, lport, peer, pport)
    for netns, pid in members.items():
        for name in ("tcp", "tcp6"):
            for state, *row, inode in _rows(procfs.read_text(f"{proc}/{pid}/net/{name}"),
                                             states):
                rows[inode] = (netns, state, *row)
    sockets = []
    for pid in all_pids:
        for inode in procfs.socket_inodes(pid, proc) & rows.keys():
            sockets.append(Socket(*rows.pop(inode), inode=inode, pid=pid))
    return sockets


def listening_ports(proc="/proc"):
    """{(network namespace inode, port): pid} of every TCP listener."""
    ports = {}
    for s in read_sockets(proc, (TCP_LISTEN,)):
        ports.setdefault((s.netns, s.local_port), s.pid)
    return ports


def established(proc="/proc"):
    """[(netns, local ip, local port, peer ip, peer port, role, pid)] open now,
    addresses v4-mapped; a connection on a port its namespace listens on is
    the server's side."""
    sockets = read_sockets(proc)
    listening = {(s.netns, s.local_port) for s in sockets if s.state == TCP_LISTEN}
    return [(s.netns, v4_mapped(s.local), s.local_port, v4_mapped(s.peer), s.peer_port,
             Role.SERVER if (s.netns, s.local_port) in listening else Role.CLIENT, s.pid)
            for s in sockets if s.state == TCP_ESTABLISHED]


def local_endpoints(proc="/proc"):
    """{(ip_address, port): pid} of every TCP listener, wildcards expanded to
    every address of their namespace; addresses v4-mapped, as the kernel side
    keys them."""
    members = procfs.netns_members(proc)
    addresses = {netns: namespace_addresses(pid, proc) for netns, pid in members.items()}
    endpoints = {}
    for s in read_sockets(proc, (TCP_LISTEN,), members):
        for address in (addresses.get(s.netns, ()) if s.local.is_unspecified else {s.local}):
            endpoints.setdefault((v4_mapped(address), s.local_port), s.pid)
    return endpoints
