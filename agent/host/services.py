"""Service names for the owners the kernel reports.

Precedence, first match wins:
  1. OTEL_SERVICE_NAME of the process (captured at exec);
  2. on Kubernetes, its container's workload (host/kubernetes.py);
  3. the deepest systemd unit `*.service` in its cgroup path;
  4. a container id in its cgroup path (docker, containerd, cri-o, podman);
  5. its process name (comm), kernel threads folded into `kernel`.
"""

import re
import unicodedata

from taskscope.agent.kernel_abi import IdentKind

UNKNOWN = "unknown"
KERNEL = "kernel"
# Longest service name exported, in characters (a Prometheus label, a DOT
# node, an OTLP resource attribute and the collector's format all take it).
MAX_SERVICE_NAME = 128


def clean_name(name):
    """A service name anything can carry: any bytes or str (cgroup directory
    names, process environments and comms are chosen by local users) made
    valid UTF-8 (undecodable bytes and lone surrogates become U+FFFD), with
    control characters removed, at most MAX_SERVICE_NAME characters; empty
    becomes `unknown`.  Quotes and backslashes stay: every output escapes them."""
    if isinstance(name, bytes):
        text = name.decode("utf-8", "replace")
    else:
        try:
            text = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        except UnicodeEncodeError:  # surrogates that escape no byte
            text = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in name)
    text = "".join(c for c in text if unicodedata.category(c) not in ("Cc", "Cs")).strip()
    return text[:MAX_SERVICE_NAME] or UNKNOWN

_CONTAINER_ID = re.compile(
    r"^(?:(?:docker|cri-containerd|crio|libpod|containerd)-)?([0-9a-f]{64})(?:\.scope)?$")


def service_from_cgroup_path(path):
    """The unit or container named by a cgroup path, or None."""
    if not path:
        return None
    for part in reversed(path.strip("/").split("/")):
        match = _CONTAINER_ID.match(part)
        if match:
            return match.group(1)[:12]
        if part.endswith(".service") and len(part) > len(".service"):
            return part[: -len(".service")]
    return None


def normalize_comm(comm):
    """Kernel threads are named `worker/cpu:n`; keep the worker, not the numbers."""
    comm = comm.strip()
    if not comm:
        return UNKNOWN
    return comm.split("/", 1)[0] if "/" in comm else comm


class ServiceResolver:
    """owner (cgroup id, identity) -> service name.

    `names(ident)` returns (kind, name) or None; `cgroups.path(id)` a path or
    None.  Undecodable ids become visible placeholders and are counted.
    """

    def __init__(self, names, cgroups, pods=None):
        self._names = names
        self._cgroups = cgroups
        self._pods = pods  # host.kubernetes.PodMetadata, on Kubernetes
        self.decode_errors = {"identity": 0, "cgroup": 0}

    def pod_labels(self, cgroup_id):
        """{namespace, pod, container, node} of the cgroup's container, or {}."""
        if self._pods is None:
            return {}
        meta = self._pods.of_cgroup_path(self._cgroups.path(cgroup_id))
        return meta.labels() if meta else {}

    def resolve(self, cgroup_id, ident):
        """The owner's service name, clean (see clean_name) whatever it came from."""
        return clean_name(self._resolve(cgroup_id, ident))

    def _resolve(self, cgroup_id, ident):
        if not cgroup_id and not ident:
            return UNKNOWN
        entry = self._names(ident)
        if entry is None:
            self.decode_errors["identity"] += 1
        elif entry[0] == IdentKind.OTEL:
            return entry[1]
        path = self._cgroups.path(cgroup_id)
        if path is None:
            self.decode_errors["cgroup"] += 1
        meta = self._pods.of_cgroup_path(path) if self._pods and path else None
        if meta:
            return meta.service
        from_cgroup = service_from_cgroup_path(path)
        if from_cgroup:
            return from_cgroup
        if entry is not None:
            return normalize_comm(entry[1])
        if path is None:
            return f"unknown_cgroup:{cgroup_id}"
        return f"unknown_identity:{ident:x}"
