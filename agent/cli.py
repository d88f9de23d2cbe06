"""The `taskscope` command."""

import argparse
import ipaddress
import logging
import os
import socket
import sys
import threading
import time

from prometheus_client import CollectorRegistry, ProcessCollector

from agent import (__version__, bpf_module, btf, collector, config, graph_api, graph_export,
                   identity, kubernetes, listeners, preexisting, probes, trace_api, tracefs)
from agent.cgroups import CgroupPaths, find_cgroup2_mount
from agent.errors import ConfigError, ProbeLoadError, TaskscopeError
from agent.kernel_maps import KernelMaps
from agent.server import AgentServer, wait_for_signal
from agent.service_graph import ServiceGraph
from agent.services import ServiceResolver
from agent.tracing import Tracing
from exporters.prometheus import TaskscopeCollector
from exporters.service_graph import ServiceGraphCollector
from exporters.trace_metrics import TracingCollector
from topology.export import to_json

log = logging.getLogger("taskscope")

AGENT_HELP = """\
Load taskscope's eBPF probes and serve what they measure.

Measures, in the kernel and per service: run-queue latency (sched), block-IO
latency by device and operation (blockio), TCP connect latency, RTT,
retransmits, connections and bytes (tcp).  A service is the process's
OTEL_SERVICE_NAME, else (on Kubernetes) its pod's workload, else its systemd
unit or container, else its name.

Trace correlation (traces): a thread's run-queue, block-IO and network
waits while it serves a request whose traceparent (or b3) header it
received, or between the marker library's task_begin/task_end calls,
become a trace segment: at /api/traces/ID, and as an OTLP span in that
trace with --otlp-endpoint.

Endpoints: /metrics (Prometheus text; OpenMetrics, with trace exemplars,
when asked), /healthz, /api/graph: the service graph (who calls whom,
requests, p50/p95/p99) as JSON, /api/traces/ID and
/api/traces?service=S&min_seconds=N (the slowest recent segments).
Needs root, or CAP_BPF + CAP_PERFMON (CAP_SYS_ADMIN on kernels before 5.8),
plus CAP_NET_ADMIN for the wire capture and CAP_SYS_PTRACE +
CAP_DAC_READ_SEARCH to read other users' processes.
Settings come from defaults, then --config FILE (YAML, same keys with
underscores), then flags.  SIGTERM or SIGINT detaches every probe and exits.
"""


def build_parser():
    parser = argparse.ArgumentParser(
        prog="taskscope", description="eBPF latency observability per service.")
    parser.add_argument("--version", action="version", version=f"taskscope {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    agent = sub.add_parser("agent", help="run the per-node agent",
                           description=AGENT_HELP,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    agent.add_argument("--config", metavar="FILE", help="YAML file with any of the settings below")
    agent.add_argument("--listen", metavar="HOST:PORT",
                       help=f"where to serve HTTP (default {config.AgentConfig.listen})")
    agent.add_argument("--probes", metavar="LIST",
                       help=f"comma-separated probe groups (default {','.join(probes.GROUPS)}) "
                            f"or single probes ({','.join(probes.PROBE_NAMES)})")
    agent.add_argument("--log-level", choices=config.LOG_LEVELS, help="default info")
    agent.add_argument("--max-services", type=int, metavar="N",
                       help="services per metric before the rest fold into service=\"other\" "
                            f"(default {config.AgentConfig.max_services})")
    agent.add_argument("--graph-window", metavar="DURATION",
                       help="default window of /api/graph, e.g. 60s, 5m, 1h (default 5m)")
    agent.add_argument("--graph-expiry", metavar="DURATION",
                       help="forget graph edges idle this long (default 1h)")
    agent.add_argument("--graph-addresses", metavar="CIDRS",
                       help="comma-separated networks this agent speaks for in the graph "
                            "(default: all; on a node, its own and its pods')")
    agent.add_argument("--otlp-endpoint", metavar="URL",
                       help="send trace segments as OTLP spans to this collector, e.g. "
                            "http://otel-collector:4318 (default: no export)")
    agent.add_argument("--otlp-protocol", choices=("http/protobuf", "grpc"),
                       help="default http/protobuf; grpc needs taskscope[grpc]")
    agent.add_argument("--trace-store-size", type=int, metavar="N",
                       help="trace segments kept for /api/traces (default 10000)")
    agent.add_argument("--trace-unsampled", action="store_true", default=None,
                       help="also follow traces whose sampled flag is off")
    agent.add_argument("--cgroup-root", metavar="DIR",
                       help="the host's cgroup2 mount (default: found in mountinfo; in a "
                            "container, mount the host's and name it here)")
    agent.add_argument("--kubernetes", choices=("auto", "on", "off"),
                       help="name services after their pods' workloads (default auto: on "
                            "inside a Kubernetes pod)")
    agent.add_argument("--kubernetes-api", metavar="URL",
                       help="API server (default: in-cluster, with the pod's service account)")
    agent.add_argument("--kubernetes-node", metavar="NAME",
                       help="this node's name (default: $NODE_NAME, else the host name)")
    agent.add_argument("--kubernetes-labels", metavar="LIST",
                       help="pod labels added to every per-service metric, from namespace,pod,"
                            "container,node (default namespace; each multiplies series)")
    agent.add_argument("--tracefs", metavar="DIR",
                       help="tracefs mount point (default: found, or mounted at /sys/kernel/tracing)")
    collector = sub.add_parser(
        "collector", help="merge the service graphs of many agents",
        description="Pull every agent's edges and listener table and serve one graph "
                    "(joining edges that cross nodes) at /api/graph, .svg, .dot and "
                    "Grafana's Node Graph API; agents that fail are left out and counted "
                    "in taskscope_collector_agent_up/_failures_total on /metrics.")
    collector.add_argument("--config", metavar="FILE",
                           help="YAML with any of: agents (a list of URLs), agents_dns, "
                                "prometheus, listen, "
                                "graph_window, timeout, log_level; flags override it")
    sources = collector.add_mutually_exclusive_group()
    sources.add_argument("--agent", action="append", metavar="URL",
                         help="an agent's base URL, e.g. http://node1:9810 (repeat)")
    sources.add_argument("--agents-dns", metavar="NAME:PORT",
                         help="every address NAME resolves to is an agent, asked anew each "
                              "time (a headless Service over the agents' DaemonSet)")
    sources.add_argument("--prometheus", metavar="URL",
                         help="build the graph from the agents' traces_service_graph_* series "
                              "in Prometheus (or Thanos, Mimir, VictoriaMetrics) instead")
    collector.add_argument("--listen", metavar="HOST:PORT",
                           help="where to serve (default 0.0.0.0:9811)")
    collector.add_argument("--graph-window", metavar="DURATION",
                           help="default window (default 5m)")
    collector.add_argument("--timeout", type=float, metavar="SECONDS",
                           help="per-agent request timeout (default 5)")
    collector.add_argument("--log-level", choices=config.LOG_LEVELS)

    graph = sub.add_parser("graph", help="export a service graph once",
                           description="Fetch a graph from an agent or collector URL, or read "
                                       "a JSON file saved from /api/graph, and write it out.")
    graph.add_argument("--from", dest="source", required=True, metavar="URL|FILE")
    graph.add_argument("--format", choices=("json", "svg", "dot", "png"), default="json")
    graph.add_argument("--window", metavar="DURATION", help="window to ask a URL for")
    graph.add_argument("-o", "--output", required=True, metavar="FILE", help="- for stdout")
    return parser


def agent_config(args):
    cfg = config.AgentConfig()
    if args.config:
        config.apply(cfg, config.load_file(args.config), args.config)
    flags = {k: getattr(args, k) for k in config.CHECKS if getattr(args, k, None) is not None}
    return config.apply(cfg, flags, "command line")


def _probe_status(selection, failed):
    status = {p.name: p.name not in failed for p in selection.enabled}
    status.update({name: False for name in selection.missing})
    return status


def seed_running_state(maps, cgroup_root, defines):
    """Tell the kernel about processes and listeners that predate the agent."""
    maps.seed_identities(identity.running_processes())

    def owner(pid):
        who = identity.identify(pid)
        return (listeners.cgroup_id(pid, cgroup_root), *who) if who else None

    if maps.has("tcp_listeners"):
        owners = {where: owner(pid) for where, pid in listeners.listening_ports().items()}
        maps.seed_listeners({where: o for where, o in owners.items() if o},
                            by_netns="TCP_EXCHANGES_BTF" in defines)
    if maps.has("tcp_preexisting"):
        rows = [(*conn, owner(pid)) for *conn, pid in preexisting.established()]
        maps.seed_connections([row for row in rows if row[-1]])


def start_pod_metadata(cfg, stop):
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
    threading.Thread(target=pods.run, args=(stop,), name="pods", daemon=True).start()
    log.info("naming services after the workloads of node %s's pods (API %s)",
             node, client.base_url)
    return pods


def run_agent(cfg):
    started = time.monotonic()
    bpf_module.check_privileges()
    try:
        server = AgentServer(cfg.address, CollectorRegistry(auto_describe=False))
    except OSError as exc:
        raise ConfigError(f"cannot listen on {cfg.listen}: {exc.strerror or exc}") from exc
    bpf_module.import_bcc()
    bpf_module.check_kernel_headers()
    root = tracefs.find_tracefs(cfg.tracefs or None)
    selection = probes.select(cfg.probes, root, btf.load_vmlinux())
    for name, absent in selection.missing.items():
        log.warning("probe %s disabled: tracepoint %s not found in %s/events",
                    name, ", ".join(absent), root)
    spans = None
    if cfg.otlp_endpoint:
        from exporters.otlp import SegmentSpans, make_exporter
        spans = SegmentSpans(make_exporter(cfg.otlp_endpoint, cfg.otlp_protocol),
                             cfg.max_services)
    bpf, failed = bpf_module.load(selection, trace_unsampled=cfg.trace_unsampled)
    maps = KernelMaps(bpf, _probe_status(selection, failed))
    cgroup_root = cfg.cgroup_root or find_cgroup2_mount()
    seed_running_state(maps, cgroup_root,
                       selection.defines([p for p in selection.enabled if p.name not in failed]))
    stop = threading.Event()
    pods = start_pod_metadata(cfg, stop)
    resolver = ServiceResolver(maps.ident_name, CgroupPaths(cgroup_root), pods)
    tracing = None
    if maps.has("segments"):
        tracing = Tracing(bpf, maps, resolver, cgroup_root, cfg.trace_store_size, spans)
        tracing.start(stop)
        server.routes.update(trace_api.store_routes(tracing.store))
        server.registry.register(TracingCollector(tracing))
    store = tracing.store if tracing else None
    server.registry.register(TaskscopeCollector(
        maps, resolver, cfg.max_services, store,
        pod_labels=cfg.kubernetes_labels if pods else ()))
    if maps.has("edge_stats"):
        networks = [ipaddress.ip_network(n, strict=False) for n in cfg.graph_addresses]
        graph = ServiceGraph(maps, resolver, cgroup_root, addresses=networks or None,
                             expiry=config.parse_duration(cfg.graph_expiry))
        threading.Thread(target=graph.run_recorder, args=(stop,), name="graph",
                         daemon=True).start()
        server.routes.update(graph_api.graph_routes(
            lambda window: to_json(graph.graph(window)),
            config.parse_duration(cfg.graph_window), graph.max_window,
            sides_of=graph.wire))
        server.registry.register(ServiceGraphCollector(graph, store))
    ProcessCollector(namespace="taskscope", registry=server.registry)
    server.start()
    up = sorted(name for name, ok in maps.probe_status.items() if ok)
    log.info("probes up: %s; serving /metrics on %s in %.1f s",
             ", ".join(up), cfg.listen, time.monotonic() - started)

    wait_for_signal(stop)
    log.info("stopping: detaching probes")
    server.stop()
    if tracing:
        tracing.close()
    maps.close()
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "collector":
            return collector.serve(args)
        if args.command == "graph":
            return graph_export.run(args)
        cfg = agent_config(args)
    except ConfigError as exc:
        print(f"taskscope: {exc}", file=sys.stderr)
        return 2
    logging.getLogger().setLevel(config.log_level(cfg))
    try:
        return run_agent(cfg)
    except TaskscopeError as exc:
        log.error("%s", exc)
        return 1 if isinstance(exc, ProbeLoadError) else 2


if __name__ == "__main__":
    sys.exit(main())
