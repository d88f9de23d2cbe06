"""The agent's background threads, supervised.

Each runs a function that loops until `stop` is set (the graph recorder, the
segment reader, the marker scanner, the pod-metadata poller).  Should it
raise, the error is logged with its traceback, counted per thread
(`taskscope_thread_errors_total{thread}`), and the function is started again
after a pause, so one bad input never ends a job for good.  `health()` says
which threads are not running, for /healthz.
"""

import collections
import logging
import threading

log = logging.getLogger(__name__)

__all__ = ["Workers"]


class Workers:
    RESTART_PAUSE = 1.0  # seconds between a crash and the next start

    def __init__(self, stop):
        self._stop = stop
        self._threads = {}
        self.errors = collections.Counter()

    def start(self, name, run):
        """Run `run(stop)` in a thread called `name`, restarted whenever it raises."""
        self.errors[name] += 0
        thread = threading.Thread(target=self._supervise, args=(name, run), name=name,
                                  daemon=True)
        self._threads[name] = thread
        thread.start()

    def _supervise(self, name, run):
        while not self._stop.is_set():
            try:
                run(self._stop)
                return  # it returns when `stop` is set
            except Exception:  # the catch-all: count, log, keep going
                self.errors[name] += 1
                log.exception("thread %s failed (%d times so far); restarting it",
                              name, self.errors[name])
            if self._stop.wait(self.RESTART_PAUSE):
                return

    def dead(self):
        """Names of the threads that ended although the agent is not stopping."""
        if self._stop.is_set():
            return []
        return sorted(name for name, t in self._threads.items() if not t.is_alive())

    def join(self, timeout=2.0):
        for thread in self._threads.values():
            thread.join(timeout)
