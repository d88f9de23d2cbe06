"""Virtual IPs (a Kubernetes ClusterIP, a docker published port) resolved to
the backend the node DNATs each connection to, through conntrack.

A client socket keeps the address it connected to; only conntrack knows
where NAT sent its packets.  Each network namespace's table is dumped over
netlink (pyroute2's NFCTSocket, inside the namespace of one of its
processes), streamed and capped, so a node with a million entries costs a
bounded read, not the whole table in memory.  From the translated TCP
entries come three things:
  - the virtual IPs themselves, which the kernel side marks connections to
    (they get series of their own: bpf/tcp/exchanges.h);
  - per connection, by its own tuple (client address and port, virtual IP
    and port), the backend that served it;
  - per virtual IP, the backend seen last: the fallback for connections
    opened before their virtual IP was known, or already forgotten.
Translations are remembered past the entries' expiry (bounded, oldest
first), since a graph window outlives TIME_WAIT.
"""

import collections
import ipaddress
import logging
import os
import socket
import threading

from taskscope.agent.host import procfs
from taskscope.records.edges import v4_mapped

log = logging.getLogger(__name__)

__all__ = ["Conntrack", "Translation", "translation"]

# One translated connection: its tuple as its client sees it, and where NAT
# sent it; addresses v4-mapped like the kernel's keys.
Translation = collections.namedtuple("Translation", "client client_port virtual virtual_port "
                                                    "backend backend_port")


def translation(proto, orig_src, orig_sport, orig_dst, orig_dport, reply_src, reply_sport):
    """The Translation of one conntrack entry's tuples, or None when it is
    not TCP, not translated, or malformed."""
    if proto != socket.IPPROTO_TCP:
        return None
    try:
        orig = (v4_mapped(ipaddress.ip_address(orig_dst)), int(orig_dport))
        reply = (v4_mapped(ipaddress.ip_address(reply_src)), int(reply_sport))
        client = (v4_mapped(ipaddress.ip_address(orig_src)), int(orig_sport))
    except (TypeError, ValueError):
        return None
    if orig == reply:
        return None
    return Translation(*client, *orig, *reply)


def _tuple_of(msg, name):
    """(proto, src, sport, dst, dport) of a conntrack message's tuple `name`."""
    attr = msg.get_attr(name)
    if attr is None:
        return None
    ip, proto = attr.get_attr("CTA_TUPLE_IP"), attr.get_attr("CTA_TUPLE_PROTO")
    if ip is None or proto is None:
        return None
    src = ip.get_attr("CTA_IP_V4_SRC") or ip.get_attr("CTA_IP_V6_SRC")
    dst = ip.get_attr("CTA_IP_V4_DST") or ip.get_attr("CTA_IP_V6_DST")
    return (proto.get_attr("CTA_PROTO_NUM"), src, proto.get_attr("CTA_PROTO_SRC_PORT"),
            dst, proto.get_attr("CTA_PROTO_DST_PORT"))


def _translations(netns, cap):
    """Translated TCP entries of one namespace's table (None: the agent's own;
    else the path of a process's ns/net), at most `cap` entries read."""
    from pyroute2 import NFCTSocket  # a design-card package; imported where used

    out = []
    for family in (socket.AF_INET, socket.AF_INET6):
        with NFCTSocket(nfgen_family=family, netns=netns) as ct:
            for read, msg in enumerate(ct.dump()):
                if read >= cap:
                    raise OverflowError(cap)
                orig, reply = _tuple_of(msg, "CTA_TUPLE_ORIG"), _tuple_of(msg, "CTA_TUPLE_REPLY")
                if orig and reply:
                    t = translation(orig[0], orig[1], orig[2], orig[3], orig[4], reply[1],
                                    reply[2])
                    if t:
                        out.append(t)
    return out


def _inode(path):
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


class Conntrack:
    """The node's NAT translations, read from every network namespace."""

    def __init__(self, proc="/proc", max_entries=65536, read_cap=200_000, reader=None):
        self._proc = proc
        self._max = max_entries
        self._read_cap = read_cap      # entries read per namespace and refresh
        self._read = reader or _translations
        self._connections = collections.OrderedDict()  # client tuple -> (backend, port)
        self._last = collections.OrderedDict()         # (virtual, port) -> (backend, port)
        self._lock = threading.Lock()  # the recorder and HTTP threads both read
        self.readable = True   # the last refresh could read some table
        self.truncated = 0     # refreshes that stopped at read_cap in some namespace
        self.found = 0         # translations the last refresh read
        self._warned = False

    def refresh(self, every_namespace=True):
        """Read the tables again: the agent's own namespace's (the node's,
        where kube-proxy and docker translate), and with `every_namespace`
        those of the other namespaces too (each read costs tens of ms, so
        the HTTP paths ask for the node's only)."""
        found, readable, errors = [], False, []
        own = _inode(f"{self._proc}/self/ns/net")
        namespaces = [None]
        if every_namespace:
            namespaces += [f"{self._proc}/{pid}/ns/net"
                           for inode, pid in procfs.netns_members(self._proc).items()
                           if inode != own]
        for netns in namespaces:
            try:
                found += self._read(netns, self._read_cap)
                readable = True
            except OverflowError:
                self.truncated += 1
                readable = True
            except Exception as exc:  # pyroute2 raises NetlinkError, OSError, ...
                errors.append(exc)
        if not readable and errors and not self._warned:
            log.warning("conntrack cannot be read (%s): connections to virtual IPs keep the "
                        "virtual IP as their server", errors[0])
            self._warned = True
        with self._lock:
            self.readable = readable
            self.found = len(found)
            for t in found:
                self._remember(self._connections, (t.client, t.client_port, t.virtual,
                                                   t.virtual_port), (t.backend, t.backend_port))
                self._remember(self._last, (t.virtual, t.virtual_port),
                               (t.backend, t.backend_port))

    def _remember(self, table, key, value):
        table[key] = value
        table.move_to_end(key)
        while len(table) > self._max:
            table.popitem(last=False)

    def virtual_ips(self):
        """[(virtual ip, port)] translated to somewhere else."""
        with self._lock:
            return list(self._last)

    def connection_backend(self, client, client_port, virtual, virtual_port):
        """(backend ip, port) that served this connection, or None."""
        with self._lock:
            return self._connections.get((client, client_port, virtual, virtual_port))

    def backend(self, ip, port):
        """(backend ip, port) seen last behind a virtual ip:port, or None."""
        with self._lock:
            return self._last.get((ip, port))
