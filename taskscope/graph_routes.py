"""HTTP routes of the service graph, shared by the agent and the collector.

/api/graph (JSON), /api/graph.dot, /api/graph.svg, and Grafana's Node Graph
API (/api/graph/fields, /api/graph/data, /api/health); each takes
?window=60s.
"""

import json

from taskscope import config
from taskscope.records.errors import ConfigError
from taskscope.topology import grafana
from taskscope.topology import render

JSON = "application/json"


def graph_routes(body_of, default_window, max_window, sides_of=None):
    """Routes over `body_of(window seconds)`, which returns the JSON form.

    `sides_of(window)` (agents only) serves the raw edge sides and listener
    table the collector merges, at /api/graph/sides.
    """

    def with_body(reply):
        def route(params):
            try:
                window = config.parse_duration(params.get("window", default_window))
            except ConfigError as exc:
                return 400, f"window: {exc}\n".encode(), "text/plain"
            body = body_of(min(window, max_window))
            body["window_seconds"] = min(window, max_window)
            return reply(body)
        return route

    routes = {
        "/api/graph": with_body(lambda b: (200, json.dumps(b).encode(), JSON)),
        "/api/graph.dot": with_body(
            lambda b: (200, render.render(b, "dot"), "text/vnd.graphviz")),
        "/api/graph.svg": with_body(lambda b: (200, render.render(b, "svg"), "image/svg+xml")),
        "/api/graph/data": with_body(
            lambda b: (200, json.dumps(grafana.node_graph_data(b)).encode(), JSON)),
        "/api/graph/fields": lambda params: (200, json.dumps(grafana.FIELDS).encode(), JSON),
        "/api/health": lambda params: (200, b'{"status": "ok"}', JSON),
    }
    if sides_of:
        routes["/api/graph/sides"] = with_body(
            lambda b: (200, json.dumps(sides_of(b["window_seconds"])).encode(), JSON))
    return routes
