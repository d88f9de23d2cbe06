"""Finished trace segments: decoded from the kernel's struct segment, streamed
to the OTLP exporter, and finished from here when idle.

The kernel keeps finished segments in its store (finished_segments, read by
agent/trace_store.py) and, only when an OTLP endpoint is set, also streams
each one through a ring buffer, which this reader drains on a timer: no
per-segment work happens here otherwise.  A keep-alive connection may sit
idle after its last response for as long as the client likes, so segments
idle longer than `idle_after` are finished from here, into the same store.
"""

import ctypes
import logging
import time

import ipaddress

from taskscope.agent.host.devices import device_name
from taskscope.agent.kernel_abi import (BlockOp, BlockStage, ContextSource, ExemplarKind,
                                        SegmentCount, SegmentKind)
from taskscope.records.segments import Observation, Segment

log = logging.getLogger(__name__)

KINDS = {k.value: k.name.lower() for k in SegmentKind}
CONTEXTS = {c.value: c.name.lower() for c in ContextSource}


def monotonic_to_wall():
    """Offset that turns bpf_ktime_get_ns() (CLOCK_MONOTONIC) into Unix time."""
    return time.time_ns() - time.monotonic_ns()


NO_PEER = bytes(16)


def observed(event):
    """[(ExemplarKind, op, stage, dev, peer, ns)]: the single observations a
    segment (struct segment) added to histogram series, raw, as
    segment_exemplars_put() in bpf/segments.h keys them: its longest
    run-queue wait, its slowest block IO per stage, the request it served."""
    samples, out = event.samples, []
    if samples.runqueue_ns:
        out.append((ExemplarKind.RUNQUEUE, 0, 0, 0, NO_PEER, samples.runqueue_ns))
    if samples.blk_queue_ns:
        out.append((ExemplarKind.BLOCKIO, samples.blk_queue_op, BlockStage.QUEUE,
                    samples.blk_queue_dev, NO_PEER, samples.blk_queue_ns))
    if samples.blk_device_ns:
        out.append((ExemplarKind.BLOCKIO, samples.blk_device_op, BlockStage.DEVICE,
                    samples.blk_device_dev, NO_PEER, samples.blk_device_ns))
    peer = bytes(samples.peer)
    if event.role == SegmentKind.SERVER and any(peer):
        out.append((ExemplarKind.SERVER, 0, 0, 0, peer, max(event.end_ns - event.start_ns, 0)))
    return out


def series_of(what, op, stage, dev, peer):
    """(Observation.what, labels) of the series an observation is on, or None
    for a kind, operation or stage this agent does not know."""
    if what == ExemplarKind.RUNQUEUE:
        return "runqueue", ()
    if what == ExemplarKind.BLOCKIO:
        if op not in BlockOp._value2member_map_ or stage not in BlockStage._value2member_map_:
            return None
        return "blockio", (device_name(dev), BlockOp(op).name.lower(),
                           BlockStage(stage).name.lower())
    if what == ExemplarKind.SERVER:
        ip = ipaddress.ip_address(bytes(peer))
        return "server", (str(ip.ipv4_mapped or ip),)
    return None


def observations(event):
    """The segment's observations (observed()) as Observation records."""
    out = []
    for what, op, stage, dev, peer, ns in observed(event):
        series = series_of(what, op, stage, dev, peer)
        if series:
            out.append(Observation(*series, ns / 1e9))
    return tuple(out)


def segment_from_event(event, service, wall_offset_ns):
    """`event`: a struct segment (bpf/segments.h); its `done` figures count."""
    figures = event.done
    return Segment(
        trace_id=bytes(event.ctx.trace_id).hex(),
        parent_span_id=bytes(event.ctx.span_id).hex(),
        sampled=bool(event.ctx.flags & 1),
        context=CONTEXTS.get(event.ctx.source, "unknown"),
        kind=KINDS.get(event.role, "unknown"),
        service=service,
        pid=event.tgid,
        tid=event.tid,
        start=(event.start_ns + wall_offset_ns) / 1e9,
        end=(max(event.end_ns, event.start_ns) + wall_offset_ns) / 1e9,
        runqueue_seconds=figures.runqueue_ns / 1e9,
        oncpu_seconds=figures.oncpu_ns / 1e9,
        blockio_seconds=figures.blockio_ns / 1e9,
        blockio_count=figures.blockio_count,
        network_seconds=figures.network_ns / 1e9,
        other_seconds=figures.other_ns / 1e9,
        retransmits=event.retransmits,
        observations=observations(event),
    )


def finished_key(table, segment):
    """The finished_segments key of `segment` (struct finished_key)."""
    key = table.Key()
    ctypes.memmove(key.trace_id, bytes(segment.ctx.trace_id), 16)
    key.tid, key.start_ns = segment.tid, segment.start_ns
    return key


def exemplar_rows(table, segment):
    """[(key, value)] of segment_exemplars for the series `segment` observed
    on (a segment finished here, as the kernel writes the ones it finishes)."""
    rows = []
    for what, op, stage, dev, peer, ns in observed(segment):
        key, value = table.Key(), table.Leaf()
        key.owner.cgroup_id, key.owner.ident = segment.owner.cgroup_id, segment.owner.ident
        key.what, key.op, key.stage, key.dev = what, op, stage, dev
        ctypes.memmove(key.peer, peer, 16)
        ctypes.memmove(value.trace_id, bytes(segment.ctx.trace_id), 16)
        value.value_ns, value.end_ns = ns, segment.end_ns
        rows.append((key, value))
    return rows


class SegmentReader:
    """Finishes idle segments into the kernel's store and, with `sinks` (the
    OTLP exporter), drains the stream of finished segments to them."""

    def __init__(self, bpf, resolver, sinks, idle_after=2.0):
        self._bpf = bpf
        self._resolver = resolver
        self._sinks = sinks
        self._idle_after_ns = int(idle_after * 1e9)
        self._wall_offset = monotonic_to_wall()
        self.streamed = 0
        self.reaped = 0
        # BCC cannot derive nested structs for ring buffer events; the
        # segments map has the same type, with its ctypes layout.
        self._event_type = ctypes.POINTER(bpf["segments"].Leaf)
        try:
            bpf["segment_events"].open_ring_buffer(self._on_event)
            self._streaming = True
        except KeyError:  # built without SEGMENT_STREAM: no OTLP endpoint
            self._streaming = False

    def counts(self):
        """{"finished", "begun", "sampled_out": n} from the kernel, exact
        (SegmentCount); finished includes idle segments finished here."""
        table = self._bpf["segment_counts"]
        out = {c.name.lower(): sum(table[ctypes.c_int(c.value)]) for c in SegmentCount}
        out["finished"] += self.reaped
        return out

    def _deliver(self, event):
        if not self._sinks:
            return
        owner = event.owner
        service = self._resolver.resolve(owner.cgroup_id, owner.ident)
        segment = segment_from_event(event, service, self._wall_offset)
        for sink in self._sinks:
            try:
                sink(segment)
            except Exception:
                log.exception("a trace segment sink failed; the segment is lost to it")

    def _on_event(self, ctx, data, size):
        self.streamed += 1
        self._deliver(ctypes.cast(data, self._event_type).contents)

    def reap_idle(self, now_ns=None):
        """Finish segments whose last response is older than idle_after.

        The kernel may touch a segment while this runs; then that segment
        ends here a little early, or its later figures are lost.
        """
        now_ns = now_ns or time.monotonic_ns()
        table, traced = self._bpf["segments"], self._bpf["traced_threads"]
        store, exemplars = self._bpf["finished_segments"], self._bpf["segment_exemplars"]
        for tid, seg in list(table.items()):
            if not seg.end_ns or now_ns - seg.end_ns < self._idle_after_ns:
                continue
            # The flag first: a probe that sees it set while the entry is
            # gone counts the segment as evicted.
            traced[tid] = traced.Leaf(0)
            try:
                del table[tid]
            except KeyError:
                continue  # finished by the kernel meanwhile
            self.reaped += 1
            store[finished_key(store, seg)] = seg
            for key, value in exemplar_rows(exemplars, seg):
                exemplars[key] = value
            self._deliver(seg)

    def run(self, stop, reap_interval=1.0, drain_interval=0.05):
        """Drain the stream every `drain_interval` (the kernel wakes no one)
        and reap every `reap_interval`, until `stop`."""
        next_reap = time.monotonic() + reap_interval
        while not stop.is_set():
            if self._streaming:
                if stop.wait(drain_interval):
                    return
                self._bpf.ring_buffer_consume()
            elif stop.wait(reap_interval):
                return
            if time.monotonic() >= next_reap:
                self.reap_idle()
                next_reap = time.monotonic() + reap_interval
