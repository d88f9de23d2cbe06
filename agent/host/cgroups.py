"""cgroup v2: ids (what bpf_get_current_cgroup_id returns) decoded into paths,
and the id of a process's cgroup."""

import collections
import logging
import os
import threading
import time

log = logging.getLogger(__name__)

ROOT_ID = 1


def find_cgroup2_mount(mountinfo="/proc/self/mountinfo"):
    """The cgroup2 mount point: /sys/fs/cgroup on pure v2 hosts, .../unified on hybrid."""
    with open(mountinfo, errors="surrogateescape") as f:  # mount points: any bytes
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if fields[sep + 1] == "cgroup2":
                return fields[4]
    return None


class CgroupPaths:
    """id -> path relative to the cgroup2 root, cached beyond the cgroup's life.

    A cgroup is its directory's inode on cgroup2, so a walk of the tree maps
    every live id; walks are rate-limited and the cache is bounded (LRU).
    """

    def __init__(self, root, max_entries=20000, rescan_interval=1.0):
        self.root = root
        self.max_entries = max_entries
        self.rescan_interval = rescan_interval
        self._paths = collections.OrderedDict()
        self._last_scan = float("-inf")
        self._lock = threading.RLock()  # scrapes and the graph recorder share it

    def _scan(self):
        self._last_scan = time.monotonic()
        live = set()
        if not self.root:
            return live
        for dirpath, dirnames, _ in os.walk(self.root):
            try:
                ino = os.stat(dirpath).st_ino
            except OSError:
                continue
            live.add(ino)
            rel = "/" + os.path.relpath(dirpath, self.root).lstrip(".")
            self._remember(ino, rel.rstrip("/") or "/")
        return live

    def live_ids(self):
        """Ids of every cgroup alive now (one walk, which also refreshes the
        paths), or None when the root is not the hierarchy's root (a cgroup
        namespace's view): there a missing id proves nothing."""
        with self._lock:
            try:
                if not self.root or os.stat(self.root).st_ino != ROOT_ID:
                    return None
            except OSError:
                return None
            return self._scan()

    def _remember(self, cgroup_id, path):
        self._paths[cgroup_id] = path
        self._paths.move_to_end(cgroup_id)
        while len(self._paths) > self.max_entries:
            self._paths.popitem(last=False)

    def path(self, cgroup_id):
        """The path of `cgroup_id`, or None if it was never seen alive."""
        if cgroup_id == ROOT_ID:
            return "/"
        with self._lock:
            path = self._paths.get(cgroup_id)
            if path is None and time.monotonic() - self._last_scan >= self.rescan_interval:
                self._scan()
                path = self._paths.get(cgroup_id)
            if path is not None:
                self._paths.move_to_end(cgroup_id)
            return path


def cgroup_id(pid, cgroup2_root, proc="/proc"):
    """The v2 cgroup id of a process: the inode of its cgroup directory.

    Inside a container with its own cgroup namespace (a DaemonSet's agent),
    /proc/PID/cgroup shows host processes as "/../..": then the process is
    looked up in the cgroup.procs files of the host's tree, which must be
    mounted at `cgroup2_root`.
    """
    try:
        # Cgroup names are any bytes a delegated user chose: keep them as
        # os.fsdecode would, so that os.stat finds the directory.
        with open(f"{proc}/{pid}/cgroup", errors="surrogateescape") as f:
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
