"""Finds the marker library (marker/) in running processes and hooks it.

A uprobe is attached to a file, not to a process: once a copy of the
library is hooked, every process that maps it, now or later, is covered.
New copies (another virtualenv, another container image) are found by
rescanning /proc/*/maps, every second or as often as 1 % of a CPU allows;
files in other mount namespaces are reached through /proc/PID/root.
"""

import logging
import os
import threading
import time

from taskscope.agent.host import procfs

log = logging.getLogger(__name__)

LIBRARY_MARK = "taskscope_marker"
HOOKS = (("taskscope_task_begin", "marker_task_begin"),
         ("taskscope_task_end", "marker_task_end"))


def library_paths(proc="/proc"):
    """{(st_dev, st_ino): path through /proc/PID/root} of every mapped copy."""
    found = {}
    for pid in procfs.pids(proc):
        try:
            # Mapped paths are any bytes the process chose.
            with open(f"{proc}/{pid}/maps", errors="surrogateescape") as maps:
                paths = {line.split(None, 5)[5].strip() for line in maps
                         if LIBRARY_MARK in line and ".so" in line}
        except (OSError, IndexError):
            continue
        for path in paths:
            if path.endswith("(deleted)"):
                continue
            via_root = f"{proc}/{pid}/root{path}"
            try:
                st = os.stat(via_root)
            except OSError:
                continue
            found.setdefault((st.st_dev, st.st_ino), via_root)
    return found


class MarkerHooks:
    """Attaches the marker uprobes to every new copy of the library."""

    def __init__(self, bpf, proc="/proc"):
        self._bpf = bpf
        self._proc = proc
        self._hooked = set()
        self._failed = set()
        self._lock = threading.Lock()

    @property
    def hooked(self):
        return len(self._hooked)

    @property
    def failed(self):
        return len(self._failed)

    def scan(self):
        with self._lock:
            for inode, path in library_paths(self._proc).items():
                if inode in self._hooked or inode in self._failed:
                    continue
                try:
                    for symbol, program in HOOKS:
                        self._bpf.attach_uprobe(name=path, sym=symbol, fn_name=program)
                except Exception as exc:  # BCC raises bare Exception
                    self._failed.add(inode)
                    log.warning("cannot hook the marker library %s: %s", path, exc)
                    continue
                self._hooked.add(inode)
                log.info("hooked the marker library %s", path)

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
