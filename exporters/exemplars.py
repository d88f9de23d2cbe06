"""Trace exemplars on histogram buckets (OpenMetrics only), so a Grafana
heatmap cell links to a trace that shows that latency.

An exemplar sits only on the series its segment made an observation on
(records.segments.Observation: the same service, device, operation and
stage; for the service graph, the same client), with the value it observed
there, in the bucket that holds that value."""

from prometheus_client.samples import Exemplar

# Histogram family -> what its observations are (Observation.what), and the
# names of its labels that follow the service, in the order of Observation.labels.
OBSERVED_AS = {
    "taskscope_runqueue_latency_seconds": ("runqueue", ()),
    "taskscope_blockio_latency_seconds": ("blockio", ("device", "op", "stage")),
}


def with_exemplar(buckets, segment, value):
    """`buckets` [(le, count)] with `segment`'s trace id on the first bucket
    whose bound holds `value`."""
    exemplar = Exemplar({"trace_id": segment.trace_id}, round(value, 9), segment.end)
    out, placed = [], False
    for le, count in buckets:
        if not placed and (le == "+Inf" or float(le) >= value):
            out.append((le, count, exemplar))
            placed = True
        else:
            out.append((le, count))
    return out


def exemplar_buckets(store, family, service, labels, buckets):
    """`buckets` of the series (`service`, {label: value}) of `family`, with an
    exemplar when the store holds a segment observed on that very series."""
    if store is None or family not in OBSERVED_AS:
        return buckets
    what, names = OBSERVED_AS[family]
    found = store.exemplar(service, what, tuple(labels.get(n, "") for n in names))
    return with_exemplar(buckets, *found) if found else buckets


def server_exemplar_buckets(store, server, client_addresses, buckets):
    """`buckets` of a service-graph edge's server-latency series, with the
    latest server segment of `server` whose request came from one of the
    edge's client addresses."""
    if store is None:
        return buckets
    found = [store.exemplar(server, "server", (str(ip),)) for ip in client_addresses]
    found = [f for f in found if f]
    if not found:
        return buckets
    return with_exemplar(buckets, *max(found, key=lambda f: f[0].end))
