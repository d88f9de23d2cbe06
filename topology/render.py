"""DOT, SVG and PNG renderings of a graph in its JSON form (topology.export).

Working from the JSON form lets `taskscope graph` render what any agent or
collector serves.  Nodes are services; an edge is labelled with requests per
second and p95, and its width and colour grow with its p95.
"""

import math
import shutil
import subprocess

__all__ = ["digraph", "to_dot", "render", "RenderError", "MAX_RENDERED_EDGES"]

# Beyond this many edges graphviz takes seconds and the picture is unreadable:
# the busiest edges are kept and the label says how many were left out.
MAX_RENDERED_EDGES = 400
SLOW_SECONDS, VERY_SLOW_SECONDS = 0.1, 0.5


def _colour(p95):
    if p95 is None:
        return "gray50"
    if p95 >= VERY_SLOW_SECONDS:
        return "red3"
    return "darkorange" if p95 >= SLOW_SECONDS else "forestgreen"


def _width(p95):
    # 1 at 1 ms or less, +1 per decade, at most 5.
    return 1.0 if not p95 else max(1.0, min(5.0, 4.0 + math.log10(p95)))


def _duration(seconds):
    if seconds is None:
        return "-"
    return f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def digraph(body):
    """graphviz.Digraph of {"nodes": [...], "edges": [...], "window_seconds": ...}.

    Names come from services and peers, any text: nodes get plain ids
    (n0, n1, ...) and carry the name as an escaped label, so neither a quote
    nor an "ip:port" (DOT's node:port syntax in an edge) can change the graph.
    """
    import graphviz

    window = body.get("window_seconds")
    edges = sorted(body["edges"], key=lambda e: -(e.get("requests") or 0))
    kept, dropped = edges[:MAX_RENDERED_EDGES], len(edges) - MAX_RENDERED_EDGES
    used = {e["source"] for e in kept} | {e["target"] for e in kept}
    title = "taskscope service graph"
    if window:
        title += f", last {window:g} s"
    if dropped > 0:
        title += f" ({dropped} quieter edges left out)"
    graph = graphviz.Digraph("taskscope", graph_attr={"label": title, "rankdir": "LR"},
                             node_attr={"shape": "box", "style": "rounded,filled",
                                        "fillcolor": "white", "fontname": "Helvetica"},
                             edge_attr={"fontname": "Helvetica", "fontsize": "10"})
    ids = {}
    for node in body["nodes"]:
        if node["id"] not in used and dropped > 0:
            continue
        ids[node["id"]] = node_id = f"n{len(ids)}"
        label = graphviz.escape(str(node["id"]))
        if node.get("kind") == "external":
            graph.node(node_id, label=label, style="dashed,rounded", fillcolor="gray95")
        else:
            graph.node(node_id, label=label)
    for e in kept:
        requests = e.get("requests") or 0
        rate = f"{requests / window:.1f} req/s" if window else f"{requests} req"
        p95 = e.get("p95_seconds")
        for end in (e["source"], e["target"]):  # an edge to a node the body does not list
            if end not in ids:
                ids[end] = f"n{len(ids)}"
                graph.node(ids[end], label=graphviz.escape(str(end)))
        graph.edge(ids[e["source"]], ids[e["target"]], label=f"{rate}\\np95 {_duration(p95)}",
                   color=_colour(p95), penwidth=f"{_width(p95):.1f}")
    return graph


def to_dot(body):
    """DOT source of the graph's JSON form."""
    return digraph(body).source


# graphviz's `dot` parses names any local user chose, inside an agent that
# runs privileged: it runs with every capability dropped (setpriv, from
# util-linux, where present) and is killed past DOT_TIMEOUT seconds.
DOT_TIMEOUT = 10.0
UNPRIVILEGED = ("setpriv", "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs")


class RenderError(RuntimeError):
    """dot failed or took too long."""


def render(body, fmt, timeout=DOT_TIMEOUT):
    """bytes of the graph as `fmt`: dot, svg or png (the latter two run
    graphviz's dot, without capabilities and within `timeout` seconds)."""
    if fmt == "dot":
        return to_dot(body).encode()
    if fmt not in ("svg", "png"):
        raise ValueError(f"unknown format {fmt!r}")
    command = ["dot", f"-T{fmt}"]
    if shutil.which("setpriv"):
        command = [*UNPRIVILEGED, *command]
    try:
        done = subprocess.run(command, input=to_dot(body).encode(), capture_output=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise RenderError(f"dot took longer than {timeout:g} s") from exc
    except OSError as exc:
        raise RenderError(f"cannot run dot: {exc}") from exc
    if done.returncode != 0:
        raise RenderError(f"dot failed: {done.stderr.decode(errors='replace')[:500]}")
    return done.stdout
