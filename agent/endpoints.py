"""Which local service answers at ip:port, in every network namespace.

The service graph names a client's peer by the process listening there; a
wildcard listener answers on every address of its namespace.
"""

import ipaddress

from agent import procfs
from agent.listeners import parse_listen_rows
from topology.graph import v4_mapped


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


def local_endpoints(proc="/proc"):
    """{(ip_address, port): pid} of every TCP listener, wildcards expanded;
    addresses v4-mapped, as the kernel side keys them."""
    all_pids = procfs.pids(proc)
    listening = {}  # socket inode -> (ip, port, netns addresses)
    for pid in procfs.netns_members(proc, all_pids).values():
        addresses = parse_fib_trie_locals(procfs.read_text(f"{proc}/{pid}/net/fib_trie"))
        addresses |= parse_if_inet6(procfs.read_text(f"{proc}/{pid}/net/if_inet6"))
        for name in ("tcp", "tcp6"):
            for ip, port, inode in parse_listen_rows(procfs.read_text(f"{proc}/{pid}/net/{name}")):
                listening[inode] = (ip, port, addresses)
    endpoints = {}
    for pid in all_pids:
        for inode in procfs.socket_inodes(pid, proc) & listening.keys():
            ip, port, addresses = listening[inode]
            for address in (addresses if ip.is_unspecified else {ip}):
                endpoints.setdefault((v4_mapped(address), port), pid)
    return endpoints
