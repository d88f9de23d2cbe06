"""The node's measurements as records, read from the kernel maps on demand.

Every call reads the maps anew (they are the only state) and names each
kernel owner with the service resolver; exporters turn the records into
series without knowing anything of BPF.
"""

from taskscope.agent.host.devices import device_name
from taskscope.agent.kernel.maps import RETIRED_CGROUP
from taskscope.agent.kernel_abi import BlockOp, BlockStage
from taskscope.records.histogram import Log2Histogram
from taskscope.records.metrics import CounterRow, HistogramRow, NodeHealth, Owner

__all__ = ["NodeReadings", "HISTOGRAM_MAPS", "TCP_COUNTER_FIELDS"]


def _no_labels(key):
    return {}


def _block_labels(key):
    return {"device": device_name(key.dev), "op": BlockOp(key.op).name.lower(),
            "stage": BlockStage(key.stage).name.lower()}


# Histogram maps (named after what they measure) -> labels of a key beyond its owner.
HISTOGRAM_MAPS = {
    "runqueue_latency": _no_labels,
    "blockio_latency": _block_labels,
    "tcp_connect_latency": _no_labels,
    "tcp_rtt": _no_labels,
}
# Fields of struct tcp_counters (bpf/tcp/tcp.h).
TCP_COUNTER_FIELDS = ("opened_active", "opened_passive", "closed", "connect_failed",
                      "retransmits")


class NodeReadings:
    """KernelMaps and a ServiceResolver, seen as records."""

    def __init__(self, maps, resolver, with_pods=False):
        self._maps = maps
        self._resolver = resolver
        self._with_pods = with_pods

    def owner(self, kernel_owner):
        """Owner of a kernel `struct owner` (cgroup id, identity)."""
        service = self._resolver.resolve(kernel_owner.cgroup_id, kernel_owner.ident)
        if not self._with_pods:
            return Owner(service)
        pod = self._resolver.pod_labels(kernel_owner.cgroup_id)
        if not pod and kernel_owner.cgroup_id == RETIRED_CGROUP:
            pod = self._maps.retired_labels(kernel_owner.ident) or {}
        return Owner(service, tuple(sorted(pod.items())))

    def histograms(self, map_name):
        """[HistogramRow] of one histogram map (one row per kernel entry, so a
        service may have several), or None when that map is not loaded."""
        if not self._maps.has(map_name):
            return None
        labels_of = HISTOGRAM_MAPS[map_name]
        rows = []
        for key, value in self._maps.rows(map_name):
            histogram = Log2Histogram()
            histogram.add(key.slot, value.count, value.sum_ns)
            rows.append(HistogramRow(self.owner(key.owner), labels_of(key), histogram))
        return rows

    def tcp_counters(self):
        """[CounterRow] with TCP_COUNTER_FIELDS, or None without the tcp probes."""
        if not self._maps.has("tcp_stats"):
            return None
        return [CounterRow(self.owner(key), {f: getattr(counters, f) for f in TCP_COUNTER_FIELDS})
                for key, counters in self._maps.rows("tcp_stats")]

    def tcp_bytes(self):
        """[CounterRow] with sent_bytes and received_bytes, or None without tcp_bytes."""
        if not self._maps.has("tcp_bytes"):
            return None
        return [CounterRow(self.owner(owner), {"sent_bytes": sent, "received_bytes": received})
                for owner, sent, received in self._maps.tcp_bytes()]

    def health(self):
        """NodeHealth; map entries are those of the maps read so far."""
        return NodeHealth(
            probe_up=dict(self._maps.probe_status),
            probe_variant=dict(self._maps.probe_variants),
            map_entries=self._maps.entries(),
            drops={reason.name.lower(): n for reason, n in self._maps.drops().items()},
            decode_errors=dict(self._resolver.decode_errors),
            reclaimed=dict(self._maps.reclaimed))
