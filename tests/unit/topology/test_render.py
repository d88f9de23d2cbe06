"""DOT and SVG renderings of a graph's JSON form."""

import xml.etree.ElementTree as ET

import pytest

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
    assert 'n0 [label=orders]' in dot and 'n1 [label="pay\\"ment"]' in dot  # quotes escaped
    # An ip:port name is a label, never DOT's node:port syntax.
    assert 'n2 [label="10.0.0.9:443" fillcolor=gray95 style="dashed,rounded"]' in dot
    assert 'n0 -> n1 [label="2.0 req/s\\np95 600.0 ms" color=red3' in dot
    assert 'n0 -> n2 [label="0.1 req/s\\np95 2.0 ms" color=forestgreen' in dot


def test_past_the_edge_cap_the_quietest_are_left_out_and_said_so():
    nodes = [{"id": f"s{i}", "kind": "service"} for i in range(MAX_RENDERED_EDGES + 2)]
    edges = [{"source": "s0", "target": f"s{i}", "requests": i, "p95_seconds": None}
             for i in range(1, MAX_RENDERED_EDGES + 2)]
    dot = to_dot({"nodes": nodes, "edges": edges})
    assert "(1 quieter edges left out)" in dot
    assert "label=s1]" not in dot and f"label=s{MAX_RENDERED_EDGES + 1}]" in dot
    assert dot.count(" -> ") == MAX_RENDERED_EDGES


def test_svg_is_drawn_by_graphviz_with_every_name_as_text():
    svg = render(BODY, "svg")
    texts = {t.text for t in ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}text")}
    assert {"orders", 'pay"ment', "10.0.0.9:443"} <= texts
    assert render(BODY, "dot") == to_dot(BODY).encode()


def test_backslashes_and_edges_to_unlisted_nodes():
    body = {"nodes": [{"id": "a\\b"}],
            "edges": [{"source": "a\\b", "target": "gone", "requests": 1}]}
    texts = {t.text for t in ET.fromstring(render(body, "svg")).iter(
        "{http://www.w3.org/2000/svg}text")}
    assert {"a\\b", "gone"} <= texts


def test_dot_is_killed_past_its_timeout_and_runs_without_capabilities(monkeypatch):
    import taskscope.topology.render as render_module
    with pytest.raises(render_module.RenderError, match="longer than"):
        render_module.render(BODY, "svg", timeout=1e-6)
    seen = []
    real_run = render_module.subprocess.run

    def spy(command, **kw):
        seen.append(command)
        return real_run(command, **kw)

    monkeypatch.setattr(render_module.subprocess, "run", spy)
    assert render_module.render(BODY, "svg").lstrip().startswith(b"<?xml")
    assert seen[0][:4] == list(render_module.UNPRIVILEGED)
