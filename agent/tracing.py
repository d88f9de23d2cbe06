"""Trace correlation, assembled: marker hooks, segment reader (idle segments,
the OTLP stream), the store over the kernel's finished segments and span
export, started and stopped together (the packet programs that read trace
contexts off the wire are attached with the probe set)."""

import logging
import threading

from taskscope.agent.governor import Governor, kernel_writer
from taskscope.agent.kernel.markers import MarkerHooks
from taskscope.agent.kernel.segment_reader import SegmentReader
from taskscope.agent.trace_store import TraceStore

log = logging.getLogger(__name__)


class Tracing:
    def __init__(self, bpf, rows, resolver, store_size, spans=None, max_cpu_percent=2.0):
        self.store = TraceStore(rows, resolver, store_size)
        self.spans = spans
        self.reader = SegmentReader(bpf, resolver, [spans] if spans else [])
        self.governor = Governor(kernel_writer(bpf), max_cpu_percent, act=spans is not None)
        self.markers = MarkerHooks(bpf)

    def start(self, workers):
        """Start reading segments and scanning for markers as `workers`' threads."""
        self.markers.scan()
        workers.start("segments", self.reader.run)
        workers.start("governor", self.governor.run)
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
