"""Finds the marker library (marker/) in running processes and hooks it.

A uprobe is attached to a file, not to a process: once a copy of the
library is hooked, every process that maps it, now or later, is covered.
New copies (another virtualenv, another container image) are found by
rescanning /proc/*/maps, every second or as often as 1 % of a CPU allows;
files in other mount namespaces are reached through /proc/PID/root.

The agent is root and any local user can map a file named like the library,
so a copy is opened once, without following a final symlink, checked
(vet_library: the very file mapped, a regular file owned by root or by the
process's user, not writable by others), and its symbols read and its
uprobes attached through that descriptor (/proc/self/fd/N): nothing can be
swapped in between.  At most MAX_COPIES copies are hooked; every refusal is
logged and counted by reason.
"""

import collections
import errno
import logging
import os
import stat
import threading
import time

from taskscope.agent.host import procfs

log = logging.getLogger(__name__)

LIBRARY_MARK = "taskscope_marker"
HOOKS = (("taskscope_task_begin", "marker_task_begin"),
         ("taskscope_task_end", "marker_task_end"))
# Why a copy is not hooked (taskscope_marker_refused_total{reason}).
REASONS = {
    "symlink": "its last path component is a symlink",
    "unreadable": "it cannot be opened",
    "not_regular": "it is not a regular file",
    "changed": "it is not the file the process mapped (replaced since)",
    "owner": "it is owned by neither root nor the process's user",
    "writable": "group or others may write it",
    "cap": "as many copies as allowed are hooked already",
}


# Copies of the library hooked at most: each holds a descriptor and two
# uprobes, and costs an ELF parse as root.
MAX_COPIES = 64


# A process's maps are read at every scan for its first YOUNG_SECONDS (while
# it execs and loads its libraries), then once per RESCAN_ROUNDS scans (it
# may load the library long after it started).
YOUNG_SECONDS = 5.0
RESCAN_ROUNDS = 30


def library_mappings(proc="/proc", pids=None):
    """{(major, minor, inode): (pid, path)} of every mapped copy of the library
    in processes `pids` (None: all), as /proc/PID/maps names it (path inside
    the process's mount namespace)."""
    found = {}
    for pid in procfs.pids(proc) if pids is None else pids:
        try:
            # Mapped paths are any bytes the process chose.
            with open(f"{proc}/{pid}/maps", errors="surrogateescape") as maps:
                lines = [line.split(None, 5) for line in maps
                         if LIBRARY_MARK in line and ".so" in line]
        except OSError:
            continue
        for fields in lines:
            if len(fields) < 6 or fields[5].strip().endswith("(deleted)"):
                continue
            try:
                major, minor = (int(x, 16) for x in fields[3].split(":"))
                inode = int(fields[4])
            except ValueError:
                continue
            found.setdefault((major, minor, inode), (pid, fields[5].strip()))
    return found


def vet_library(path, identity, owner_uid):
    """Open the copy at `path` once, for reading symbols and attaching through
    /proc/self/fd: (descriptor, None), or (None, why it is refused).

    Refused: a symlink as the last component (it may be swapped), anything
    but a regular file, not the file the process mapped (`identity`: major,
    minor, inode), owned by neither root nor the process's user
    (`owner_uid`), writable by group or others.  The descriptor pins the
    file: what is checked is what gets hooked."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        return None, "symlink" if exc.errno == errno.ELOOP else "unreadable"
    st = os.fstat(fd)
    reason = None
    if not stat.S_ISREG(st.st_mode):
        reason = "not_regular"
    elif (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino) != identity:
        reason = "changed"
    elif st.st_uid not in (0, owner_uid):
        reason = "owner"
    elif st.st_mode & 0o022:
        reason = "writable"
    if reason:
        os.close(fd)
        return None, reason
    return fd, None


class MarkerHooks:
    """Attaches the marker uprobes to every new copy of the library that a
    local user cannot have planted or may still change (see vet_library)."""

    def __init__(self, bpf, proc="/proc", max_copies=MAX_COPIES):
        self._bpf = bpf
        self._proc = proc
        self._max_copies = max_copies
        self._hooked = {}  # identity -> the descriptor the uprobes were attached through
        self._failed = set()
        self.refused = collections.Counter()  # reason -> copies refused
        self._lock = threading.Lock()
        self._first_seen = {}  # pid -> when a scan first listed it (the last scan's pids)
        self._round = 0

    @property
    def hooked(self):
        return len(self._hooked)

    @property
    def failed(self):
        return len(self._failed)

    def _refuse(self, identity, reason, path):
        self._failed.add(identity)
        self.refused[reason] += 1
        log.warning("not hooking the marker library %s: %s", path, REASONS[reason])

    def _due(self):
        """The processes whose maps this scan reads: the young (first seen
        less than YOUNG_SECONDS ago), and the others whose turn it is (each
        every RESCAN_ROUNDS scans).  Reading every process's maps every
        second was most of an idle agent's CPU."""
        now = time.monotonic()
        pids = procfs.pids(self._proc)
        self._round = (self._round + 1) % RESCAN_ROUNDS
        seen = {p: self._first_seen.get(p, now) for p in pids}
        self._first_seen = seen
        return [p for p, first in seen.items()
                if now - first < YOUNG_SECONDS or p % RESCAN_ROUNDS == self._round]

    def scan(self):
        with self._lock:
            for identity, (pid, path) in library_mappings(self._proc, self._due()).items():
                if identity in self._hooked or identity in self._failed:
                    continue
                if len(self._hooked) >= self._max_copies:
                    self._refuse(identity, "cap", path)
                    continue
                try:
                    owner_uid = os.stat(f"{self._proc}/{pid}").st_uid
                except OSError:
                    continue  # the process is gone; its copy is found again elsewhere
                fd, reason = vet_library(f"{self._proc}/{pid}/root{path}", identity, owner_uid)
                if reason:
                    self._refuse(identity, reason, path)
                    continue
                try:
                    for symbol, program in HOOKS:
                        self._bpf.attach_uprobe(name=f"/proc/self/fd/{fd}", sym=symbol,
                                                fn_name=program)
                except Exception as exc:  # BCC raises bare Exception
                    os.close(fd)
                    self._failed.add(identity)
                    log.warning("cannot hook the marker library %s: %s", path, exc)
                    continue
                self._hooked[identity] = fd
                log.info("hooked the marker library %s (pid %d)", path, pid)

    def run(self, stop, interval=1.0, max_share=0.01):
        """Rescan every `interval` seconds, or less often where one scan takes
        long (many processes, big maps), so scanning stays under `max_share`
        of a CPU."""
        wait = interval
        while not stop.wait(wait):
            started = time.process_time()
            try:
                self.scan()
            except Exception:
                log.exception("scanning for the marker library failed; retrying")
            wait = max(interval, (time.process_time() - started) / max_share)
