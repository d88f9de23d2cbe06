"""DOT and SVG renderings of a graph's JSON form."""

import xml.etree.ElementTree as ET

from taskscope.topology.render import MAX_RENDERED_EDGES, render, to_dot

BODY = {"window_seconds": 60.0,
        "nodes": [{"id": "orders", "kind": "service"}, {"id": 'pay"ment', "kind": "service"},
                  {"id": "10.0.0.9:443", "kind": "external"}],
        "edges": [{"source": "orders", "target": 'pay"ment', "requests": 120,
                   "p95_seconds": 0.6},
                  {"source": "orders", "target": "10.0.0.9:443", "requests": 6,
                   "p95_seconds": 0.002}]}


def test_dot_names_rates_quantiles_and_colours():
    dot = to_dot(BODY)
    assert dot.startswith("digraph taskscope {") and "last 60 s" in dot
    assert '"orders" -> "pay\\"ment"' in dot  # quotes escaped
    assert "2.0 req/s\\np95 600.0 ms" in dot and "color=red3" in dot
    assert "0.1 req/s\\np95 2.0 ms" in dot and "color=forestgreen" in dot
    assert 'style="dashed,rounded"' in dot  # the external peer


def test_past_the_edge_cap_the_quietest_are_left_out_and_said_so():
    nodes = [{"id": f"s{i}", "kind": "service"} for i in range(MAX_RENDERED_EDGES + 2)]
    edges = [{"source": "s0", "target": f"s{i}", "requests": i, "p95_seconds": None}
             for i in range(1, MAX_RENDERED_EDGES + 2)]
    dot = to_dot({"nodes": nodes, "edges": edges})
    assert "(1 quieter edges left out)" in dot
    assert '"s0" -> "s1" ' not in dot and f'"s0" -> "s{MAX_RENDERED_EDGES + 1}"' in dot


def test_svg_is_drawn_by_graphviz():
    svg = render(BODY, "svg")
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    assert b"orders" in svg and render(BODY, "dot") == to_dot(BODY).encode()
