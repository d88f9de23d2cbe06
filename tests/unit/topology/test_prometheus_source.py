"""The graph rebuilt from Prometheus, against a recorded query API."""

import json
import urllib.parse

import pytest

from taskscope.topology.prometheus_source import PrometheusError, graph_from_prometheus
from tests.fake_http import serving


def series(client, server, kind, value):
    return {"metric": {"client": client, "server": server, "connection_type": kind},
            "value": [1764200000.0, str(value)]}


ANSWERS = {
    "traces_service_graph_request_total": [series("gateway", "orders", "", 600),
                                           series("orders", "10.0.0.9:5432", "database", 300)],
    "traces_service_graph_request_failed_total": [series("orders", "10.0.0.9:5432", "database", 3)],
    "histogram_quantile(0.5": [series("gateway", "orders", "", 0.02),
                               series("orders", "10.0.0.9:5432", "database", "NaN")],
}


def answer(answers):
    def reply(path):
        query = urllib.parse.parse_qs(urllib.parse.urlparse(path).query)["query"][0]
        result = next((v for k, v in answers.items() if k in query), [])
        return json.dumps({"status": "success",
                           "data": {"resultType": "vector", "result": result}}).encode()
    return reply


@pytest.fixture
def prometheus():
    with serving(answer(ANSWERS)) as url:
        yield url


def test_edges_and_quantiles_from_the_query_api(prometheus):
    body = graph_from_prometheus(prometheus, 300)
    edges = {(e["source"], e["target"]): e for e in body["edges"]}
    assert edges["gateway", "orders"]["requests"] == 600
    assert edges["gateway", "orders"]["p50_seconds"] == 0.02
    db = edges["orders", "10.0.0.9:5432"]
    assert db["failed"] == 3 and db["p50_seconds"] is None
    kinds = {n["id"]: n["kind"] for n in body["nodes"]}
    assert kinds["10.0.0.9:5432"] == "external" and kinds["orders"] == "service"


def test_garbage_from_prometheus_is_a_clear_error():
    with serving(answer({"": [{"metric": {}, "value": "x"}]})) as url:
        with pytest.raises(PrometheusError, match="malformed series"):
            graph_from_prometheus(url, 300)


def test_unreachable_prometheus_is_a_clear_error():
    with pytest.raises(PrometheusError, match="query to http://127.0.0.1:9 failed"):
        graph_from_prometheus("http://127.0.0.1:9", 300, timeout=2)
