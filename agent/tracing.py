"""Trace correlation, assembled: marker hooks, segment reader, store and span
export, started and stopped together (the packet programs that read trace
contexts off the wire are attached with the probe set)."""

import logging
import threading

from taskscope.agent.kernel.markers import MarkerHooks
from taskscope.agent.kernel.segment_reader import SegmentReader
from taskscope.agent.trace_store import TraceStore

log = logging.getLogger(__name__)


class Tracing:
    def __init__(self, bpf, resolver, store_size, spans=None):
        self.store = TraceStore(store_size)
        self.spans = spans
        sinks = [self.store.add] + ([spans] if spans else [])
        self.reader = SegmentReader(bpf, resolver, sinks)
        self.markers = MarkerHooks(bpf)

    def start(self, workers):
        """Start reading segments and scanning for markers as `workers`' threads."""
        self.markers.scan()
        workers.start("segments", self.reader.run)
        workers.start("markers", self.markers.run)

    def close(self, flush_timeout=2.0):
        if self.spans:
            # An unreachable OTLP endpoint must not hold up the exit: the
            # exporter retries for a minute.
            flush = threading.Thread(target=self.spans.close, name="otlp-flush", daemon=True)
            flush.start()
            flush.join(flush_timeout)
            if flush.is_alive():
                log.warning("OTLP endpoint did not take the last spans within %.0f s; "
                            "they are dropped", flush_timeout)
