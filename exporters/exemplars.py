"""Trace exemplars on histogram buckets (OpenMetrics only), so a Grafana
heatmap cell links to a trace that shows that latency."""

from prometheus_client.samples import Exemplar

# Histogram family -> what of a segment it shows (TraceStore.EXEMPLAR_FIGURES of the agent).
FIGURE_OF = {
    "taskscope_runqueue_latency_seconds": "runqueue_seconds",
    "taskscope_blockio_latency_seconds": "blockio_seconds",
    "traces_service_graph_request_server_seconds": "server",
}


def segment_value(segment, what):
    return segment.duration_seconds if what == "server" else getattr(segment, what)


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


def exemplar_buckets(store, family, service, buckets):
    """`buckets`, with an exemplar when the store has a segment for it."""
    what = FIGURE_OF.get(family)
    segment = store.exemplar(service, what) if store is not None and what else None
    if segment is None:
        return buckets
    return with_exemplar(buckets, segment, segment_value(segment, what))
