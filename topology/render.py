"""DOT, SVG and PNG renderings of a graph in its JSON form (topology.export).

Working from the JSON form lets `taskscope graph` render what any agent or
collector serves.  Nodes are services; an edge is labelled with requests per
second and p95, and its width and colour grow with its p95.
"""

import math

__all__ = ["to_dot", "render", "MAX_RENDERED_EDGES"]

# Beyond this many edges graphviz takes seconds and the picture is unreadable:
# the busiest edges are kept and the label says how many were left out.
MAX_RENDERED_EDGES = 400
SLOW_SECONDS, VERY_SLOW_SECONDS = 0.1, 0.5


def _quote(text):
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


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


def to_dot(body):
    """DOT source for {"nodes": [...], "edges": [...], "window_seconds": ...}."""
    window = body.get("window_seconds")
    edges = sorted(body["edges"], key=lambda e: -(e.get("requests") or 0))
    kept, dropped = edges[:MAX_RENDERED_EDGES], len(edges) - MAX_RENDERED_EDGES
    used = {e["source"] for e in kept} | {e["target"] for e in kept}
    title = "taskscope service graph"
    if window:
        title += f", last {window:g} s"
    if dropped > 0:
        title += f" ({dropped} quieter edges left out)"
    lines = ["digraph taskscope {", f"  label={_quote(title)};", "  rankdir=LR;",
             '  node [shape=box, style="rounded,filled", fillcolor=white, fontname=Helvetica];',
             "  edge [fontname=Helvetica, fontsize=10];"]
    for node in body["nodes"]:
        if node["id"] not in used and dropped > 0:
            continue
        style = ', style="dashed,rounded", fillcolor=gray95' if node.get("kind") == "external" else ""
        lines.append(f"  {_quote(node['id'])} [label={_quote(node['id'])}{style}];")
    for e in kept:
        requests = e.get("requests") or 0
        rate = f"{requests / window:.1f} req/s" if window else f"{requests} req"
        label = f"{rate}\\np95 {_duration(e.get('p95_seconds'))}"
        lines.append(f"  {_quote(e['source'])} -> {_quote(e['target'])} [label=\"{label}\", "
                     f"color={_colour(e.get('p95_seconds'))}, "
                     f"penwidth={_width(e.get('p95_seconds')):.1f}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(body, fmt):
    """bytes of the graph as `fmt`: dot, svg or png (the latter two need graphviz's dot)."""
    dot = to_dot(body)
    if fmt == "dot":
        return dot.encode()
    import graphviz

    return graphviz.Source(dot).pipe(format=fmt)
