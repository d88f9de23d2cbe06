"""The node's recent trace segments, for /api/traces and exemplars: a view
of the kernel's store, read when asked.

Why in the kernel: a traced request used to cost a ring-buffer event, a
wakeup and ~30 us of Python here, paid at the request rate.  Now a finished
segment costs the kernel one map update (finished_segments, an LRU that
keeps the last `capacity`) and a few more for the series it observed on
(segment_exemplars); this reads them only when /api/traces is asked or
/metrics is scraped.
"""

import collections
import threading
import time

from taskscope.agent.kernel.segment_reader import monotonic_to_wall, segment_from_event, series_of

__all__ = ["TraceStore", "ExemplarRef"]

# What an exemplar needs of its segment.
ExemplarRef = collections.namedtuple("ExemplarRef", "trace_id end")


class TraceStore:
    """Finished segments, from the kernel's finished_segments map.

    `rows()` and `exemplar_rows()` give the maps' [(key, value)]; the
    agent hands in KernelMaps.rows for both."""

    def __init__(self, rows, resolver, capacity, exemplar_ttl=1.0):
        self._rows = rows
        self._resolver = resolver
        self.capacity = capacity
        self._wall_offset = monotonic_to_wall()
        self._exemplar_ttl = exemplar_ttl
        self._index, self._index_at = {}, float("-inf")
        self._lock = threading.Lock()

    def _segment(self, seg):
        service = self._resolver.resolve(seg.owner.cgroup_id, seg.owner.ident)
        return segment_from_event(seg, service, self._wall_offset)

    def trace(self, trace_id):
        """The segments of one trace (32 hex digits), oldest first."""
        wanted = bytes.fromhex(trace_id)
        found = [self._segment(seg) for key, seg in self._rows("finished_segments")
                 if bytes(key.trace_id) == wanted]
        return sorted(found, key=lambda s: s.start)

    def slowest(self, service=None, min_seconds=0.0, limit=100):
        """The `limit` longest segments (of `service`) of at least `min_seconds`."""
        min_ns = min_seconds * 1e9
        rows = [seg for _, seg in self._rows("finished_segments")
                if max(seg.end_ns, seg.start_ns) - seg.start_ns >= min_ns]
        rows.sort(key=lambda seg: max(seg.end_ns, seg.start_ns) - seg.start_ns, reverse=True)
        found = []
        for seg in rows:
            segment = self._segment(seg)
            if service is None or segment.service == service:
                found.append(segment)
                if len(found) >= limit:
                    break
        return found

    def exemplar(self, service, what, labels=()):
        """(ExemplarRef, seconds): the latest segment of `service` that made an
        observation on the series (what, labels), and its value; or None."""
        with self._lock:
            if time.monotonic() - self._index_at >= self._exemplar_ttl:
                self._index = self._build_index()
                self._index_at = time.monotonic()
            return self._index.get((service, what, labels))

    def _build_index(self):
        """{(service, what, labels): (ExemplarRef, seconds)}, the latest per series
        (several owners may make one service)."""
        index = {}
        for key, value in self._rows("segment_exemplars"):
            found = series_of(key.what, key.op, key.stage, key.dev, key.peer)
            if found is None:
                continue
            series = (self._resolver.resolve(key.owner.cgroup_id, key.owner.ident), *found)
            end = (value.end_ns + self._wall_offset) / 1e9
            if series not in index or index[series][0].end < end:
                index[series] = (ExemplarRef(bytes(value.trace_id).hex(), end),
                                 value.value_ns / 1e9)
        return index
