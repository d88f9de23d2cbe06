"""NodeReadings over a fake map reader: kernel rows become records, their
owners named, their block labels decoded."""

import types

from taskscope.agent.kernel_abi import BlockOp, BlockStage, Drop
from taskscope.agent.readings import NodeReadings
from taskscope.records.metrics import Owner

NS = types.SimpleNamespace


class FakeMaps:
    """The part of agent.kernel.maps.KernelMaps that readings use."""

    probe_status = {"blockio": True, "tcp_connect": True}
    probe_variants = {"blockio": "tracepoints", "tcp_connect": "tracepoints"}
    reclaimed = {("tcp_stats", "cgroup_gone"): 3}

    def __init__(self, tables):
        self._tables = tables

    def has(self, name):
        return name in self._tables

    def rows(self, name):
        return self._tables[name]

    def tcp_bytes(self):
        return self._tables["tcp_bytes"]

    def entries(self):
        return {"blockio_latency": (len(self._tables["blockio_latency"]), 32768)}

    def drops(self):
        return {Drop.BLOCKIO_LATENCY: 4}


class FakeResolver:
    decode_errors = {"identity": 0, "cgroup": 2}

    def resolve(self, cgroup_id, ident):
        return {1: "db", 2: "api"}.get(ident, f"unknown_cgroup:{cgroup_id}")

    def pod_labels(self, cgroup_id):
        return {"namespace": "shop", "pod": f"p{cgroup_id}"}


def owner(cgroup, ident):
    return NS(cgroup_id=cgroup, ident=ident)


TABLES = {
    "blockio_latency": [
        (NS(owner=owner(7, 1), dev=(254 << 20) | 0, op=BlockOp.WRITE, stage=BlockStage.DEVICE,
            slot=15), NS(count=3, sum_ns=120_000)),
        (NS(owner=owner(9, 5), dev=(7 << 20) | 3, op=BlockOp.FLUSH, stage=BlockStage.QUEUE,
            slot=10), NS(count=1, sum_ns=1500)),
    ],
    "tcp_stats": [(owner(8, 2), NS(opened_active=1, opened_passive=2, closed=3,
                                   connect_failed=4, retransmits=5))],
    "tcp_bytes": [(owner(8, 2), 100, 40)],
}


def test_histogram_rows_carry_named_owners_and_decoded_labels():
    readings = NodeReadings(FakeMaps(TABLES), FakeResolver())
    rows = readings.histograms("blockio_latency")
    assert [(r.owner, r.labels["op"], r.labels["stage"], r.histogram.slots) for r in rows] == [
        (Owner("db"), "write", "device", {15: 3}), (Owner("unknown_cgroup:9"), "flush", "queue",
                                                    {10: 1})]
    assert rows[0].labels["device"] in ("vda", "254:0")  # named where sysfs knows it
    assert readings.histograms("tcp_rtt") is None  # not loaded


def test_counters_bytes_and_health():
    readings = NodeReadings(FakeMaps(TABLES), FakeResolver(), with_pods=True)
    (counters,) = readings.tcp_counters()
    assert counters.owner == Owner("api", (("namespace", "shop"), ("pod", "p8")))
    assert counters.values["connect_failed"] == 4 and counters.values["retransmits"] == 5
    (sent,) = readings.tcp_bytes()
    assert sent.values == {"sent_bytes": 100, "received_bytes": 40}
    health = readings.health()
    assert health.drops == {"blockio_latency": 4}
    assert health.decode_errors == {"identity": 0, "cgroup": 2}
    assert health.map_entries == {"blockio_latency": (2, 32768)}
    assert health.reclaimed == {("tcp_stats", "cgroup_gone"): 3}
