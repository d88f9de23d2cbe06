"""Prometheus view of the node's readings (agent.readings), built on every scrape.

Several kernel entries can belong to one series (two processes of one
service, say), so rows are summed per label set before they are exposed.
Nothing is kept between scrapes except label admission.
"""

import logging
import time
from dataclasses import dataclass

from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily)

from taskscope.exporters.exemplars import exemplar_buckets
from taskscope.exporters.labels import OTHER, LabelBudget
from taskscope.records.histogram import Log2Histogram

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HistogramSpec:
    source: str          # the reading (kernel map) it shows
    help: str
    extra_labels: tuple = ()


HISTOGRAMS = {
    "taskscope_runqueue_latency_seconds": HistogramSpec(
        "runqueue_latency", "Time runnable threads waited for a CPU, by service."),
    "taskscope_blockio_latency_seconds": HistogramSpec(
        "blockio_latency",
        "Block-IO latency by service, device, operation and stage "
        "(queue: submission to issue; device: issue to completion).",
        ("device", "op", "stage")),
    "taskscope_tcp_connect_latency_seconds": HistogramSpec(
        "tcp_connect_latency", "TCP connect() latency, SYN sent to established, by service."),
    "taskscope_tcp_rtt_seconds": HistogramSpec(
        "tcp_rtt", "Smoothed TCP round-trip time on received segments, by service."),
}

# Counter family (prometheus_client appends _total) -> help, [(counter of
# NodeReadings.tcp_counters(), extra labels)].
TCP_COUNTERS = {
    "taskscope_tcp_connections_opened": (
        "TCP connections established, by service and direction.",
        [("opened_active", {"direction": "active"}),
         ("opened_passive", {"direction": "passive"})]),
    "taskscope_tcp_connections_closed": (
        "Established TCP connections closed, by service.", [("closed", {})]),
    "taskscope_tcp_connect_failures": (
        "TCP connects that never got established, by service.", [("connect_failed", {})]),
    "taskscope_tcp_retransmits": (
        "TCP segments retransmitted, by service.", [("retransmits", {})]),
}
# Byte counters: family -> (help, counter of NodeReadings.tcp_bytes()).
TCP_BYTES = {
    "taskscope_tcp_sent_bytes": ("Bytes sent on TCP sockets, by service.", "sent_bytes"),
    "taskscope_tcp_received_bytes": ("Bytes received on TCP sockets, by service.",
                                     "received_bytes"),
}


class KernelMetrics:
    """A prometheus_client custom collector over NodeReadings."""

    def __init__(self, readings, max_services, trace_store=None, pod_labels=()):
        self._readings = readings
        self._trace_store = trace_store
        # On Kubernetes: which of namespace, pod, container, node follow service.
        self._pod_labels = tuple(pod_labels)
        self._owner_label_names = ["service", *self._pod_labels]
        self._max_services = max_services
        self._budgets = {}
        self._last_duration = 0.0

    def describe(self):
        # Registering must not read BPF maps; collect() does all the work.
        return []

    def _owner(self, family, owner):
        """(service, *pod labels) of an Owner; the label cap counts these
        tuples, so pod labels cannot blow it either."""
        key = (owner.service, *(owner.pod_label(name) for name in self._pod_labels))
        budget = self._budgets.setdefault(family, LabelBudget(self._max_services))
        admitted = budget.label(key)
        return admitted if admitted != OTHER else (OTHER,) + ("",) * len(self._pod_labels)

    def _histograms(self):
        for family, spec in HISTOGRAMS.items():
            rows = self._readings.histograms(spec.source)
            if rows is None:
                continue
            merged = {}
            for row in rows:
                labels = (*self._owner(family, row.owner),
                          *(row.labels[name] for name in spec.extra_labels))
                merged.setdefault(labels, Log2Histogram()).merge(row.histogram)
            metric = HistogramMetricFamily(family, spec.help,
                                           labels=[*self._owner_label_names, *spec.extra_labels])
            for labels, hist in sorted(merged.items()):
                extra = dict(zip(spec.extra_labels, labels[-len(spec.extra_labels):])) \
                    if spec.extra_labels else {}
                buckets = exemplar_buckets(self._trace_store, family, labels[0], extra,
                                           hist.buckets())
                metric.add_metric(list(labels), buckets, hist.sum_ns / 1e9)
            yield metric

    def _tcp_counters(self):
        rows = self._readings.tcp_counters()
        if rows is None:
            return
        for family, (help_text, fields) in TCP_COUNTERS.items():
            extra_names = sorted({k for _, extra in fields for k in extra})
            label_names = [*self._owner_label_names, *extra_names]
            sums = {}
            for row in rows:
                owner = self._owner(family, row.owner)
                for field_name, extra in fields:
                    labels = (*owner, *(extra.get(n, "") for n in extra_names))
                    sums[labels] = sums.get(labels, 0) + row.values[field_name]
            metric = CounterMetricFamily(family, help_text, labels=label_names)
            for labels, value in sorted(sums.items()):
                metric.add_metric(list(labels), value)
            yield metric

    def _tcp_bytes(self):
        rows = self._readings.tcp_bytes()
        if rows is None:
            return
        for family, (help_text, field_name) in TCP_BYTES.items():
            sums = {}
            for row in rows:
                owner = self._owner(family, row.owner)
                sums[owner] = sums.get(owner, 0) + row.values[field_name]
            metric = CounterMetricFamily(family, help_text, labels=self._owner_label_names)
            for owner, value in sorted(sums.items()):
                metric.add_metric(list(owner), value)
            yield metric

    def _self_metrics(self):
        health = self._readings.health()
        up = GaugeMetricFamily("taskscope_probe_up",
                               "1 when the probe is loaded and attached, 0 when it is not; "
                               "variant: what feeds it (packets, raw_tracepoints, "
                               "tracepoints; none when down).", labels=["probe", "variant"])
        for probe, ok in sorted(health.probe_up.items()):
            variant = health.probe_variant.get(probe, "none") if ok else "none"
            up.add_metric([probe, variant], 1 if ok else 0)
        yield up
        entries = GaugeMetricFamily("taskscope_map_entries",
                                    "Entries in a BPF map at the last scrape.", labels=["map"])
        capacity = GaugeMetricFamily("taskscope_map_capacity",
                                     "Maximum entries of a BPF map.", labels=["map"])
        for name, (n, cap) in sorted(health.map_entries.items()):
            entries.add_metric([name], n)
            capacity.add_metric([name], cap)
        yield entries
        yield capacity
        drops = CounterMetricFamily("taskscope_map_drops",
                                    "Samples or entries lost because a BPF map was full.",
                                    labels=["reason"])
        for reason, n in sorted(health.drops.items()):
            drops.add_metric([reason], n)
        yield drops
        reclaimed = CounterMetricFamily(
            "taskscope_map_reclaimed_entries",
            "Entries freed in a BPF map because their owner is gone, by why: cgroup_gone, "
            "identity_gone (map 3/4 full), unreferenced (names), retired_dropped (a service's "
            "folded totals given up: its series restart), lost (folded counts that found "
            "no room).", labels=["map", "reason"])
        for (name, reason), n in sorted(health.reclaimed.items()):
            reclaimed.add_metric([name, reason], n)
        yield reclaimed
        folded = GaugeMetricFamily("taskscope_services_folded",
                                   "Distinct services folded into service=\"other\" by the "
                                   "label cap, per metric.", labels=["metric"])
        for family, budget in sorted(self._budgets.items()):
            folded.add_metric([family], budget.folded)
        yield folded
        errors = CounterMetricFamily("taskscope_decode_errors",
                                     "Kernel ids that could not be decoded into a name.",
                                     labels=["decoder"])
        for decoder, n in sorted(health.decode_errors.items()):
            errors.add_metric([decoder], n)
        yield errors
        yield GaugeMetricFamily("taskscope_scrape_duration_seconds",
                                "Time the previous scrape took to read and convert the maps.",
                                value=self._last_duration)

    def collect(self):
        started = time.monotonic()
        try:
            yield from self._histograms()
            yield from self._tcp_counters()
            yield from self._tcp_bytes()
        except Exception:  # the scrape path never raises into the HTTP server
            log.exception("reading the kernel maps failed; this scrape is partial")
        self._last_duration = time.monotonic() - started
        yield from self._self_metrics()
