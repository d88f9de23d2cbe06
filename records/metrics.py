"""Per-service measurements as the agent reads them from its kernel maps,
owners already named; the Prometheus exporter turns them into series."""

from dataclasses import dataclass, field

from taskscope.records.histogram import Log2Histogram

__all__ = ["Owner", "HistogramRow", "CounterRow", "NodeHealth"]


@dataclass(frozen=True)
class Owner:
    """Whom a sample is charged to: its service and, on Kubernetes, its pod's
    labels (namespace, pod, container, node; empty elsewhere)."""

    service: str
    pod: tuple = ()  # ((label, value), ...), sorted

    def pod_label(self, name):
        return dict(self.pod).get(name, "")


@dataclass
class HistogramRow:
    """One kernel histogram entry: its owner, its other labels, its slots."""

    owner: Owner
    labels: dict
    histogram: Log2Histogram = field(default_factory=Log2Histogram)


@dataclass(frozen=True)
class CounterRow:
    """Counters of one owner: {name: value}."""

    owner: Owner
    values: dict


@dataclass(frozen=True)
class NodeHealth:
    """The agent's view of itself."""

    probe_up: dict        # probe -> bool
    probe_variant: dict   # probe -> what feeds it: packets, raw_tracepoints, tracepoints
    map_entries: dict     # map -> (entries at the last read, capacity)
    drops: dict           # reason -> samples or entries lost
    decode_errors: dict   # decoder -> ids that could not be named
    reclaimed: dict = field(default_factory=dict)  # (map, reason) -> entries freed
