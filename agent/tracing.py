"""Trace correlation, assembled: wire capture, marker hooks, segment reader,
store and span export, started and stopped together."""

import logging
import threading

from agent.errors import ProbeLoadError
from agent.markers import MarkerHooks
from agent.trace_segments import SegmentReader
from agent.trace_store import TraceStore
from agent.wire_capture import WireCapture

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

    def close(self):
        for thread in self._threads:
            thread.join(timeout=2)
        if self.wire:
            self.wire.close()
        if self.spans:
            self.spans.close()
