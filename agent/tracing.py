"""Trace correlation, assembled: wire capture, marker hooks, segment reader,
store and span export, started and stopped together."""

import logging
import threading

from taskscope.agent.kernel.markers import MarkerHooks
from taskscope.agent.kernel.segment_reader import SegmentReader
from taskscope.agent.kernel.wire_capture import WireCapture
from taskscope.agent.trace_store import TraceStore
from taskscope.records.errors import ProbeLoadError

log = logging.getLogger(__name__)


class Tracing:
    def __init__(self, bpf, maps, resolver, cgroup_root, store_size, spans=None):
        self.store = TraceStore(store_size)
        self.spans = spans
        sinks = [self.store.add] + ([spans] if spans else [])
        self.reader = SegmentReader(bpf, resolver, sinks)
        self.markers = MarkerHooks(bpf)
        self.wire = None
        if maps.probe_status.get("trace_wire") and maps.probe_status.get("tcp_exchanges"):
            try:
                self.wire = WireCapture(bpf, cgroup_root)
            except ProbeLoadError as exc:
                log.error("probe trace_wire disabled: %s", exc)
                maps.probe_status["trace_wire"] = False
        elif maps.probe_status.get("trace_wire"):
            log.warning("probe trace_wire disabled: it needs the tcp_exchanges probe")
            maps.probe_status["trace_wire"] = False
        self._threads = []

    def start(self, stop):
        self.markers.scan()
        for target, name in ((self.reader.run, "segments"), (self.markers.run, "markers")):
            thread = threading.Thread(target=target, args=(stop,), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def close(self, flush_timeout=2.0):
        for thread in self._threads:
            thread.join(timeout=2)
        if self.wire:
            self.wire.close()
        if self.spans:
            # An unreachable OTLP endpoint must not hold up the exit: the
            # exporter retries for a minute.
            flush = threading.Thread(target=self.spans.close, name="otlp-flush", daemon=True)
            flush.start()
            flush.join(flush_timeout)
            if flush.is_alive():
                log.warning("OTLP endpoint did not take the last spans within %.0f s; "
                            "they are dropped", flush_timeout)
