"""The agent's recent trace segments, bounded, for /api/traces and exemplars."""

import collections
import threading

# What histograms ask exemplars for: a segment with run-queue wait, with
# block-IO wait, or a server segment (a request's latency).
EXEMPLAR_FIGURES = ("runqueue_seconds", "blockio_seconds", "server")


class TraceStore:
    """The last `capacity` segments, indexed by trace id and by service."""

    def __init__(self, capacity=10000):
        self.capacity = capacity
        self._segments = collections.deque()
        self._by_trace = {}
        self._exemplars = {}  # (service, what) -> latest segment showing it
        self._lock = threading.Lock()
        self.evicted = 0

    def add(self, segment):
        with self._lock:
            if len(self._segments) >= self.capacity:
                old = self._segments.popleft()
                self.evicted += 1
                same = self._by_trace.get(old.trace_id)
                if same:
                    same.remove(old)
                    if not same:
                        del self._by_trace[old.trace_id]
            self._segments.append(segment)
            self._by_trace.setdefault(segment.trace_id, []).append(segment)
            if len(self._exemplars) > self.capacity:
                self._exemplars.clear()
            for what in EXEMPLAR_FIGURES:
                if what == "server" and segment.kind == "server" or \
                        what != "server" and getattr(segment, what) > 0:
                    self._exemplars[segment.service, what] = segment

    def __len__(self):
        return len(self._segments)

    def trace(self, trace_id):
        with self._lock:
            return list(self._by_trace.get(trace_id.lower(), ()))

    def slowest(self, service=None, min_seconds=0.0, limit=100):
        with self._lock:
            found = [s for s in self._segments
                     if (service is None or s.service == service)
                     and s.duration_seconds >= min_seconds]
        found.sort(key=lambda s: s.duration_seconds, reverse=True)
        return found[:limit]

    def exemplar(self, service, what):
        """The latest segment of `service` that shows `what` (one of
        EXEMPLAR_FIGURES), or None: the trace a histogram points to."""
        with self._lock:
            return self._exemplars.get((service, what))
