"""Virtual IPs (a Kubernetes ClusterIP, a docker published port) resolved to
the backend the node DNATs them to, through conntrack.

A client socket keeps the address it connected to; only conntrack knows
where NAT sent the packets.  Entries are read from /proc/PID/net/nf_conntrack
of one process per network namespace, and translations are remembered past
the entries' expiry (bounded), since a graph window outlives TIME_WAIT.
"""

import collections
import ipaddress
import logging
import threading

from taskscope.agent.host import procfs
from taskscope.records.edges import v4_mapped

log = logging.getLogger(__name__)


def parse_conntrack(text):
    """[((virtual ip, port), (backend ip, port))] of the TCP entries whose
    original destination differs from where the reply came from."""
    out = []
    for line in text.splitlines():
        fields = line.split()
        if "tcp" not in fields[:4]:
            continue
        values = collections.defaultdict(list)
        for field in fields:
            key, sep, value = field.partition("=")
            if sep and key in ("src", "dst", "sport", "dport"):
                values[key].append(value)
        try:
            orig = (ipaddress.ip_address(values["dst"][0]), int(values["dport"][0]))
            reply = (ipaddress.ip_address(values["src"][1]), int(values["sport"][1]))
        except (IndexError, ValueError):
            continue
        if orig != reply:
            out.append(((v4_mapped(orig[0]), orig[1]), (v4_mapped(reply[0]), reply[1])))
    return out


class DnatTable:
    """(virtual ip, port) -> (backend ip, port), across network namespaces."""

    def __init__(self, proc="/proc", max_entries=65536):
        self._proc = proc
        self._max = max_entries
        self._map = collections.OrderedDict()
        self._lock = threading.Lock()  # the recorder and HTTP threads both refresh

    def refresh(self):
        found = []
        for pid in procfs.netns_members(self._proc).values():
            found += parse_conntrack(procfs.read_text(f"{self._proc}/{pid}/net/nf_conntrack"))
        with self._lock:
            for virtual, backend in found:
                self._map[virtual] = backend
                self._map.move_to_end(virtual)
            while len(self._map) > self._max:
                self._map.popitem(last=False)

    def backend(self, ip, port):
        with self._lock:
            return self._map.get((ip, port))
