"""The `taskscope` command."""

import argparse
import json
import logging
import signal
import sys
import threading
import time

from prometheus_client import CollectorRegistry, ProcessCollector

from agent import __version__, bpf_module, btf, config, identity, listeners, probes, tracefs
from agent.cgroups import CgroupPaths, find_cgroup2_mount
from agent.errors import ConfigError, ProbeLoadError, TaskscopeError
from agent.kernel_maps import KernelMaps
from agent.server import AgentServer
from agent.service_graph import ServiceGraph
from agent.services import ServiceResolver
from exporters.prometheus import TaskscopeCollector
from topology.export import to_json

log = logging.getLogger("taskscope")

AGENT_HELP = """\
Load taskscope's eBPF probes and serve what they measure.

Measures, in the kernel and per service: run-queue latency (sched), block-IO
latency by device and operation (blockio), TCP connect latency, RTT,
retransmits, connections and bytes (tcp).  A service is the process's
OTEL_SERVICE_NAME, else its systemd unit or container, else its name.

Endpoints: /metrics (Prometheus text; OpenMetrics when asked), /healthz, and
/api/graph: the service graph (who calls whom, requests, p50/p95/p99) as JSON.
Needs root, or CAP_BPF + CAP_PERFMON (CAP_SYS_ADMIN on kernels before 5.8).
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
                       help=f"comma-separated probe groups (default {','.join(probes.GROUPS)})")
    agent.add_argument("--log-level", choices=config.LOG_LEVELS, help="default info")
    agent.add_argument("--max-services", type=int, metavar="N",
                       help="services per metric before the rest fold into service=\"other\" "
                            f"(default {config.AgentConfig.max_services})")
    agent.add_argument("--graph-window", metavar="DURATION",
                       help="default window of /api/graph, e.g. 60s, 5m, 1h (default 5m)")
    agent.add_argument("--tracefs", metavar="DIR",
                       help="tracefs mount point (default: found, or mounted at /sys/kernel/tracing)")
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


def seed_running_state(maps, cgroup_root):
    """Tell the kernel about processes and listeners that predate the agent."""
    maps.seed_identities(identity.running_processes())
    if not maps.has("tcp_listeners"):
        return
    owners = {}
    for port, pid in listeners.listening_ports().items():
        who = identity.identify(pid)
        if who:
            owners[port] = (listeners.cgroup_id(pid, cgroup_root), *who)
    maps.seed_listeners(owners)


def graph_routes(graph, default_window):
    """/api/graph[?window=60s]: the service graph of the last window, as JSON."""

    def graph_json(params):
        try:
            window = config.parse_duration(params.get("window", default_window))
        except ConfigError as exc:
            return 400, f"window: {exc}\n".encode(), "text/plain"
        body = to_json(graph.graph(min(window, graph.max_window)))
        body["window_seconds"] = min(window, graph.max_window)
        return 200, json.dumps(body).encode(), "application/json"

    return {"/api/graph": graph_json}


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
    bpf, failed = bpf_module.load(selection)
    maps = KernelMaps(bpf, _probe_status(selection, failed))
    cgroup_root = find_cgroup2_mount()
    seed_running_state(maps, cgroup_root)
    resolver = ServiceResolver(maps.ident_name, CgroupPaths(cgroup_root))
    server.registry.register(TaskscopeCollector(maps, resolver, cfg.max_services))
    stop = threading.Event()
    if maps.has("edge_stats"):
        graph = ServiceGraph(maps, resolver, cgroup_root)
        threading.Thread(target=graph.run_recorder, args=(stop,), name="graph",
                         daemon=True).start()
        server.routes.update(graph_routes(graph, config.parse_duration(cfg.graph_window)))
    ProcessCollector(namespace="taskscope", registry=server.registry)
    server.start()
    up = sorted(name for name, ok in maps.probe_status.items() if ok)
    log.info("probes up: %s; serving /metrics on %s in %.1f s",
             ", ".join(up), cfg.listen, time.monotonic() - started)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    stop.wait()
    log.info("stopping: detaching probes")
    server.stop()
    maps.close()
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        cfg = agent_config(args)
    except ConfigError as exc:
        print(f"taskscope: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level(cfg),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return run_agent(cfg)
    except TaskscopeError as exc:
        log.error("%s", exc)
        return 1 if isinstance(exc, ProbeLoadError) else 2


if __name__ == "__main__":
    sys.exit(main())
