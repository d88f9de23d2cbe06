"""The agent's recent trace segments, bounded, for /api/traces and exemplars."""

import collections
import threading

class TraceStore:
    """The last `capacity` segments, indexed by trace id and by service."""

    def __init__(self, capacity=10000):
        self.capacity = capacity
        self._segments = collections.deque()
        self._by_trace = {}
        # (service, what, labels) -> (latest segment observed on that
        # series, the value it observed there): see Observation.
        self._exemplars = {}
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
            for seen in segment.observations:
                self._exemplars[segment.service, seen.what, seen.labels] = (segment, seen.seconds)

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

    def exemplar(self, service, what, labels=()):
        """(segment, seconds): the latest segment of `service` that made an
        observation on the series (what, labels), and its value; or None."""
        with self._lock:
            return self._exemplars.get((service, what, labels))
