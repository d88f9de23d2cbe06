"""The `taskscope` command: its flags, and which command runs."""

import argparse
import importlib.metadata
import logging
import sys

from taskscope import agent_command, config, fleet_command, graph_command
from taskscope.agent.kernel import probes
from taskscope.records.errors import ConfigError, ProbeLoadError, TaskscopeError

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
    version = importlib.metadata.version("taskscope")
    parser.add_argument("--version", action="version", version=f"taskscope {version}")
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
    agent.add_argument("--reclaim-interval", metavar="DURATION",
                       help="how often entries of owners that are gone (removed cgroups; "
                            "ended processes when a map is 3/4 full) are folded into their "
                            "service and freed (default 30s)")
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
    agent.add_argument("--max-cpu-percent", type=float, metavar="PERCENT",
                       help="the agent's CPU budget, in percent of one core: above it, trace "
                            "segments are sampled (1 in N trace contexts, N exported as "
                            "taskscope_trace_sample_every); metrics stay exact; 0: no limit "
                            "(default 2)")
    agent.add_argument("--trace-unsampled", action="store_true", default=None,
                       help="also follow traces whose sampled flag is off")
    agent.add_argument("--external-peers", choices=("aggregate", "per-address"),
                       help="callers no agent owns: one graph node per --external-networks "
                            "network, else `external` (aggregate, the default), or one per "
                            "address")
    agent.add_argument("--external-networks", metavar="CIDRS",
                       help="comma-separated networks whose unowned callers get a node each "
                            "(e.g. a partner's range), with --external-peers aggregate")
    agent.add_argument("--web-config-file", metavar="FILE",
                       help="TLS and basic auth for the endpoints, in the exporter-toolkit "
                            "format node_exporter reads (default: plain HTTP, no auth)")
    agent.add_argument("--http-4xx-failed", action="store_true", default=None,
                       help="count HTTP 4xx responses as failed requests on graph edges "
                            "(default: 5xx and aborted exchanges only)")
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
    agent.add_argument("--tcp-io", choices=probes.TCP_IO_MODES,
                       help="where TCP exchanges and bytes (the service graph, wire traces) "
                            "come from: packets (cgroup_skb programs on the cgroup2 root, any "
                            "kernel), syscalls (the send/receive tracepoints, 6.4+), kprobes "
                            "(on tcp_sendmsg/tcp_recvmsg), or auto (default: packets; where "
                            "they cannot attach, kprobes where the kernel has them, else "
                            "syscalls)")
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
    collector.add_argument("--web-config-file", metavar="FILE",
                           help="TLS and basic auth for the collector's endpoints "
                                "(exporter-toolkit format)")
    collector.add_argument("--agents-ca-file", metavar="FILE",
                           help="CA that signed the agents' (or --prometheus's) certificates "
                                "(https:// URLs)")
    collector.add_argument("--agents-username", metavar="USER",
                           help="basic auth user for the agents or --prometheus (password "
                                "from --agents-password-file)")
    collector.add_argument("--agents-password-file", metavar="FILE")

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


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "collector":
            return fleet_command.serve(args)
        if args.command == "graph":
            return graph_command.run(args)
        cfg = agent_config(args)
    except ConfigError as exc:
        print(f"taskscope: {exc}", file=sys.stderr)
        return 2
    logging.getLogger().setLevel(config.log_level(cfg))
    try:
        return agent_command.run(cfg)
    except TaskscopeError as exc:
        log.error("%s", exc)
        return 1 if isinstance(exc, ProbeLoadError) else 2


if __name__ == "__main__":
    sys.exit(main())
