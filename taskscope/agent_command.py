"""`taskscope agent`: the one place that wires the layers of a node together.

Probes are selected, compiled and attached (agent.kernel), what predates the
agent is seeded (agent.seeding), owners are named (agent.host), and the
readings, the graph and the traces are served over HTTP through the
exporters and topology, until SIGTERM or SIGINT.
"""

import ipaddress
import logging
import os
import socket
import threading
import time

from prometheus_client import CollectorRegistry, ProcessCollector

from taskscope import config, graph_routes, trace_routes
from taskscope.agent import kernel_abi
from taskscope.agent.edge_sides import EdgeSideRecorder
from taskscope.agent.host import kubernetes
from taskscope.agent.host.cgroups import CgroupPaths, find_cgroup2_mount
from taskscope.agent.host.services import ServiceResolver
from taskscope.agent.kernel import attach, btf, loader, tracefs
from taskscope.agent.kernel.maps import KernelMaps
from taskscope.agent.readings import NodeReadings
from taskscope.agent.seeding import seed_running_state
from taskscope.agent.tracing import Tracing
from taskscope.agent.reclaim import OwnerReclaim
from taskscope.agent.workers import Workers
from taskscope.exporters.graph_metrics import GraphMetrics
from taskscope.exporters.health_metrics import (HealthMetrics, KubernetesMetrics, health_report,
                                                liveness_report)
from taskscope.exporters.prometheus import KernelMetrics
from taskscope.exporters.tracing_metrics import TracingMetrics
from taskscope.records.errors import ConfigError
from taskscope.server import EndpointServer, wait_for_signal
from taskscope.web_config import load_web_config
from taskscope.topology.graph import build_graph
from taskscope.topology.graph_json import to_json
from taskscope.topology.sides_json import sides_to_json

log = logging.getLogger("taskscope")


def start_pod_metadata(cfg, workers):
    """PodMetadata polling this node's pods, or None off Kubernetes."""
    in_pod = bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    if cfg.kubernetes == "off" or (cfg.kubernetes == "auto" and not (in_pod or cfg.kubernetes_api)):
        return None
    try:
        client = kubernetes.ApiClient(cfg.kubernetes_api or None)
    except (ValueError, OSError) as exc:
        raise ConfigError(f"kubernetes: {exc}") from exc
    node = cfg.kubernetes_node or os.environ.get("NODE_NAME") or socket.gethostname()
    pods = kubernetes.PodMetadata(client, node)
    if not pods.refresh():
        log.warning("pods of node %s unknown for now; services are named without them "
                    "until the API answers", node)
    workers.start("pods", pods.run)
    log.info("naming services after the workloads of node %s's pods (API %s)",
             node, client.base_url)
    return pods


def serve_graph(server, recorder, cfg, trace_store):
    """The service graph of `recorder`'s edge sides: routes and metrics."""
    networks = [ipaddress.ip_network(n, strict=False) for n in cfg.external_networks]

    def graph_of(window=None):
        table = recorder.endpoint_table()
        return build_graph(recorder.window_sides(window), lambda ip, port: table.get((ip, port)),
                           external_peers=cfg.external_peers, external_networks=networks)

    def sides_of(window):
        table = recorder.endpoint_table()
        return sides_to_json(recorder.window_sides(window), table)

    server.routes.update(graph_routes.graph_routes(
        lambda window: to_json(graph_of(window)),
        config.parse_duration(cfg.graph_window), recorder.max_window, sides_of=sides_of))
    server.registry.register(GraphMetrics(graph_of, trace_store,
                                          conntrack_readable=recorder.nat_readable,
                                          max_services=cfg.max_services))


def run(cfg):
    """Run the agent with settings `cfg` (config.AgentConfig) until a signal."""
    started = time.monotonic()
    loader.check_privileges()
    try:
        web = load_web_config(cfg.web_config_file) if cfg.web_config_file else None
        server = EndpointServer(cfg.address, CollectorRegistry(auto_describe=False), web=web)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {cfg.listen}: {exc.strerror or exc}") from exc
    loader.import_bcc()
    loader.check_kernel_headers()
    root = tracefs.find_tracefs(cfg.tracefs or None)
    cgroup_root = cfg.cgroup_root or find_cgroup2_mount()
    spans = None
    if cfg.otlp_endpoint:
        from taskscope.exporters.otlp import SegmentSpans, make_exporter
        spans = SegmentSpans(make_exporter(cfg.otlp_endpoint, cfg.otlp_protocol),
                             cfg.max_services)
    options = kernel_abi.BuildOptions(trace_unsampled=cfg.trace_unsampled,
                                      http_4xx_failed=cfg.http_4xx_failed,
                                      finished_segments=cfg.trace_store_size,
                                      stream_segments=bool(spans))
    probe_set = attach.load(cfg.probes, root, btf.load_vmlinux(), cgroup_root, cfg.tcp_io, options)
    bpf, selection = probe_set.bpf, probe_set.selection
    maps = KernelMaps(bpf, probe_set.status(), probe_set.variants())
    loaded = selection.defines([p for p in selection.enabled if p.name not in probe_set.failed])
    seed_running_state(maps, cgroup_root, listeners_by_netns="TCP_EXCHANGES_BTF" in loaded,
                       connections_by_netns="TCP_PACKETS" not in loaded)
    stop = threading.Event()
    workers = Workers(stop)
    pods = start_pod_metadata(cfg, workers)
    cgroups = CgroupPaths(cgroup_root)
    resolver = ServiceResolver(maps.ident_name, cgroups, pods)
    workers.start("reclaim", OwnerReclaim(
        maps, resolver, cgroups, config.parse_duration(cfg.reclaim_interval),
        retired_expiry=config.parse_duration(cfg.graph_expiry)).run)
    tracing = None
    if maps.has("segments"):
        tracing = Tracing(bpf, maps.rows, resolver, cfg.trace_store_size, spans,
                          cfg.max_cpu_percent)
        tracing.start(workers)
        server.routes.update(trace_routes.store_routes(tracing.store))
        server.registry.register(TracingMetrics(tracing))
    store = tracing.store if tracing else None
    pod_labels = cfg.kubernetes_labels if pods else ()
    server.registry.register(KernelMetrics(
        NodeReadings(maps, resolver, with_pods=bool(pod_labels)), cfg.max_services, store,
        pod_labels=pod_labels))
    if maps.has("edge_stats"):
        networks = [ipaddress.ip_network(n, strict=False) for n in cfg.graph_addresses]
        recorder = EdgeSideRecorder(maps, resolver, cgroup_root, addresses=networks or None,
                                    expiry=config.parse_duration(cfg.graph_expiry))
        workers.start("graph", recorder.run)
        serve_graph(server, recorder, cfg, store)
    server.registry.register(HealthMetrics(workers))
    if pods:
        server.registry.register(KubernetesMetrics(pods))
    server.routes["/healthz"] = lambda params: health_report(maps.probe_status, workers)
    server.routes["/livez"] = lambda params: liveness_report(workers)
    ProcessCollector(namespace="taskscope", registry=server.registry)
    server.start()
    up = sorted(name for name, ok in maps.probe_status.items() if ok)
    log.info("probes up: %s; serving /metrics on %s in %.1f s",
             ", ".join(up), cfg.listen, time.monotonic() - started)

    wait_for_signal(stop)
    log.info("stopping: detaching probes")
    server.stop()
    workers.join()
    if tracing:
        tracing.close()
    probe_set.close()
    return 0
