"""Which local service answers at ip:port, in every network namespace.

The service graph names a client's peer by the process listening there; a
wildcard listener answers on every address of its namespace.
"""

import ipaddress
import os

from agent.listeners import _socket_inodes, parse_listen_rows


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


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def local_endpoints(proc="/proc"):
    """{(ip_address, port): pid} of every TCP listener, wildcards expanded."""
    pids = [int(e) for e in os.listdir(proc) if e.isdigit()]
    namespaces = {}  # netns inode -> a pid inside it
    for pid in pids:
        try:
            namespaces.setdefault(os.stat(f"{proc}/{pid}/ns/net").st_ino, pid)
        except OSError:
            continue
    listening = {}  # socket inode -> (ip, port, netns addresses)
    for pid in namespaces.values():
        addresses = parse_fib_trie_locals(_read(f"{proc}/{pid}/net/fib_trie"))
        addresses |= parse_if_inet6(_read(f"{proc}/{pid}/net/if_inet6"))
        for name in ("tcp", "tcp6"):
            for ip, port, inode in parse_listen_rows(_read(f"{proc}/{pid}/net/{name}")):
                listening[inode] = (ip, port, addresses)
    endpoints = {}
    for pid in pids:
        for inode in _socket_inodes(pid, proc) & listening.keys():
            ip, port, addresses = listening[inode]
            for address in (addresses if ip.is_unspecified else {ip}):
                endpoints.setdefault((_v4_mapped(address), port), pid)
    return endpoints


def _v4_mapped(address):
    """The kernel side keys IPv4 as ::ffff:a.b.c.d; so does this table."""
    if address.version == 4:
        return ipaddress.ip_address(b"\0" * 10 + b"\xff\xff" + address.packed)
    return address
