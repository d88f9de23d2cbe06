"""Trace correlation on the real kernel: trace contexts read off the wire by
the cgroup_skb programs, the marker library hooked by uprobes, segments at
/api/traces and as OTLP spans."""

import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

import pytest
import redis
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.e2e.agent_process import REPO, Agent, free_port, value
from tests.e2e.workloads import busy_loops, run_named
from tests.fake_http import serving

# A threaded HTTP service: each request fsyncs a few writes, then sleeps
# ?sleep= seconds, then answers.
HTTP_SERVICE = """
import http.server, os, sys, time, urllib.parse
path = sys.argv[3]

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        with open(path, "ab") as f:
            for _ in range(4):
                f.write(os.urandom(16384))
                f.flush()
                os.fsync(f.fileno())
        time.sleep(float(query.get("sleep", ["0"])[0]))
        body = b"ok\\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Handler)
print("listening", flush=True)
server.serve_forever()
"""

# A queue worker: BLPOP from redis (raw RESP, so its environment needs
# nothing but the marker package), each task inside taskscope_marker.task.
WORKER = """
import json, os, socket, sys, time
import taskscope_marker

sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
reader = sock.makefile("rb")
print("ready", flush=True)

def blpop():
    sock.sendall(b"*3\\r\\n$5\\r\\nBLPOP\\r\\n$5\\r\\ntasks\\r\\n$1\\r\\n0\\r\\n")
    assert reader.readline() == b"*2\\r\\n"
    items = []
    for _ in range(2):
        size = int(reader.readline()[1:])
        items.append(reader.read(size + 2)[:-2])
    return json.loads(items[1])

while True:
    task = blpop()
    if task.get("stop"):
        break
    with taskscope_marker.task(task["traceparent"]):
        with open(sys.argv[2], "ab") as f:
            f.write(os.urandom(8192))
            f.flush()
            os.fsync(f.fileno())
        time.sleep(0.01)
"""


def new_traceparent():
    return f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"


class OTLPReceiver(http.server.ThreadingHTTPServer):
    """A test OTLP/HTTP endpoint: decodes ExportTraceServiceRequest bodies."""

    daemon_threads = True

    def __init__(self):
        self.spans = []  # (service.name, span)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(handler):
                body = handler.rfile.read(int(handler.headers["Content-Length"]))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                for resource_spans in request.resource_spans:
                    attrs = {a.key: a.value.string_value
                             for a in resource_spans.resource.attributes}
                    for scope_spans in resource_spans.scope_spans:
                        for span in scope_spans.spans:
                            self.spans.append((attrs.get("service.name"), span))
                handler.send_response(200)
                handler.send_header("Content-Type", "application/x-protobuf")
                handler.send_header("Content-Length", "0")
                handler.end_headers()

            def log_message(handler, *args):
                pass

        super().__init__(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def otlp():
    receiver = OTLPReceiver()
    yield receiver
    receiver.shutdown()


@pytest.fixture(scope="module")
def traced_agent(otlp, tmp_path_factory):
    # No CPU budget: these tests poll /api/traces many times a second, and
    # what they check is correlation, not the governor (its own test below).
    a = Agent("--otlp-endpoint", f"http://127.0.0.1:{otlp.server_address[1]}",
              "--max-cpu-percent", "0",
              log_path=tmp_path_factory.mktemp("traced") / "agent.log")
    yield a
    code, _ = a.stop()
    assert code == 0, a.log()


@pytest.fixture
def http_service(netns_pair, tmp_path):
    ip = netns_pair["server_ip"]
    proc = run_named("checkout-api", HTTP_SERVICE, ip, 8088, tmp_path / "orders.log",
                     netns=netns_pair["ns"], cpu=1, wait=False, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "listening"
    yield f"http://{ip}:8088"
    proc.kill()
    proc.wait()


def get(url, traceparent=None):
    req = urllib.request.Request(url)
    if traceparent:
        req.add_header("traceparent", traceparent)
    with urllib.request.urlopen(req, timeout=20) as r:
        assert r.read() == b"ok\n"


def segments(agent, trace_id, kind, timeout=10):
    """The trace's segments of `kind`, waiting for them to arrive."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, _, body = agent.get(f"/api/traces/{trace_id}")
            found = [s for s in json.loads(body)["segments"] if s["kind"] == kind]
        except urllib.error.HTTPError as exc:
            assert exc.code == 404
            found = []
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def service_segments(agent, service):
    _, _, body = agent.get(f"/api/traces?service={service}&limit=1000")
    return json.loads(body)["segments"]


def test_traced_request_shows_its_blockio_and_runqueue_waits(traced_agent, http_service):
    traceparent = new_traceparent()
    _, trace_id, parent, _ = traceparent.split("-")
    with busy_loops(2, cpu=1):
        time.sleep(0.2)
        get(http_service, traceparent)
    [segment] = segments(traced_agent, trace_id, "server")
    assert segment["service"] == "checkout-api"
    assert segment["parent_span_id"] == parent and segment["context"] == "traceparent"
    assert segment["blockio_count"] > 0 and segment["blockio_seconds"] > 0, segment
    assert segment["runqueue_seconds"] > 0, segment
    figures = sum(segment[k] for k in ("runqueue_seconds", "oncpu_seconds", "blockio_seconds",
                                        "network_seconds", "other_seconds"))
    assert figures <= segment["duration_seconds"] * 1.05 + 0.002, segment


def test_request_without_trace_context_yields_no_segment(traced_agent, http_service):
    get(http_service, new_traceparent())  # one traced request, so the service is known
    time.sleep(0.5)
    before = len(service_segments(traced_agent, "checkout-api"))
    for _ in range(3):
        get(http_service)
    time.sleep(1.5)
    assert len(service_segments(traced_agent, "checkout-api")) == before


def test_concurrent_requests_are_not_mixed_up(traced_agent, http_service):
    slow, fast = new_traceparent(), new_traceparent()
    threads = [threading.Thread(target=get, args=(f"{http_service}/?sleep={s}", tp))
               for tp, s in ((slow, 0.4), (fast, 0.02))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    [s] = segments(traced_agent, slow.split("-")[1], "server")
    [f] = segments(traced_agent, fast.split("-")[1], "server")
    assert s["tid"] != f["tid"]
    assert s["parent_span_id"] == slow.split("-")[2] and f["parent_span_id"] == fast.split("-")[2]
    assert s["duration_seconds"] >= 0.4 > f["duration_seconds"], (s, f)
    assert s["other_seconds"] >= 0.35 > f["other_seconds"], (s, f)


def test_segment_reaches_the_otlp_receiver_in_its_trace(traced_agent, http_service, otlp):
    traceparent = new_traceparent()
    _, trace_id, parent, _ = traceparent.split("-")
    get(http_service, traceparent)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        spans = [(svc, span) for svc, span in otlp.spans if span.trace_id.hex() == trace_id]
        if any(svc == "checkout-api" for svc, _ in spans):
            break
        time.sleep(0.3)
    served = [span for svc, span in spans if svc == "checkout-api"]
    assert served, f"no span for trace {trace_id}; got {len(otlp.spans)} spans"
    span = served[0]
    assert span.parent_span_id.hex() == parent
    attrs = {a.key: a.value for a in span.attributes}
    assert attrs["taskscope.blockio_count"].int_value > 0


EXEMPLAR = re.compile(r'^(\w+)_bucket\{(.*)\} \S+ # \{trace_id="([0-9a-f]{32})"\} (\S+)')


def _bucket_holds(text, name, labels, value):
    """The exemplar's value lies in its own bucket: above the series' bucket
    before it, at most its bound."""
    series = {k: v for k, v in re.findall(r'(\w+)="([^"]*)"', labels) if k != "le"}
    bounds = []
    for line in text.splitlines():
        if line.startswith(name + "_bucket{"):
            got = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
            if {k: v for k, v in got.items() if k != "le"} == series:
                bounds.append(float(got["le"]))
    le = float(dict(re.findall(r'(\w+)="([^"]*)"', labels))["le"])
    below = max((b for b in bounds if b < le), default=0.0)
    return below < value <= le


def test_exemplars_sit_on_the_series_their_segment_was_observed_on(traced_agent, http_service):
    # Each request fsyncs writes from its own thread: its segment observes
    # block-IO series (a device, an op, a stage) and the server-latency
    # series of the edge from this client.
    ids = []
    for _ in range(5):
        traceparent = new_traceparent()
        get(http_service, traceparent)
        ids.append(traceparent.split("-")[1])
    for trace_id in ids:
        segments(traced_agent, trace_id, "server")
    _, content_type, text = traced_agent.get(
        "/metrics", accept="application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    found = [m.groups() for m in map(EXEMPLAR.match, text.splitlines()) if m]
    mine = [(name, labels, trace_id, float(seconds)) for name, labels, trace_id, seconds in found
            if 'service="checkout-api"' in labels or 'server="checkout-api"' in labels]
    names = {name for name, *_ in mine}
    assert "taskscope_blockio_latency_seconds" in names, found
    assert "traces_service_graph_request_server_seconds" in names, found
    what_of = {"taskscope_blockio_latency_seconds": "blockio",
               "taskscope_runqueue_latency_seconds": "runqueue",
               "traces_service_graph_request_server_seconds": "server"}
    for name, labels, trace_id, seconds in mine:
        # The exemplar's segment made this very observation: on this
        # series (device, op, stage), with this value.
        series = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        observed = [tuple(o["labels"]) for s in segments(traced_agent, trace_id, "server")
                    for o in s["observations"]
                    if o["what"] == what_of[name] and abs(o["seconds"] - seconds) < 1e-9]
        assert observed, (name, labels, trace_id, seconds)
        if name == "taskscope_blockio_latency_seconds":
            assert (series["device"], series["op"], series["stage"]) in observed
        assert _bucket_holds(text, name, labels, seconds), (name, labels, seconds)


@pytest.fixture(scope="module")
def marker_venv(tmp_path_factory):
    """An application's environment: a bare venv with only the marker package."""
    venv = tmp_path_factory.mktemp("app") / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", os.path.join(REPO, "marker")],
                   check=True, capture_output=True)
    return venv / "bin" / "python"


@pytest.fixture
def redis_server(tmp_path):
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(port),
                             "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    yield client, port
    proc.kill()
    proc.wait()


def test_queue_worker_started_after_the_agent_is_traced_through_the_marker(
        traced_agent, marker_venv, redis_server, tmp_path):
    client, port = redis_server
    env = dict(os.environ, OTEL_SERVICE_NAME="order-worker")
    worker = subprocess.Popen([str(marker_venv), "-c", WORKER, str(port), tmp_path / "w.log"],
                              env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 10
        while value(traced_agent.scrape(), "taskscope_marker_libraries_hooked") < 1:
            assert time.monotonic() < deadline, "the marker library was never hooked"
            time.sleep(0.2)
        tasks = [new_traceparent() for _ in range(5)]
        for tp in tasks:
            client.rpush("tasks", json.dumps({"traceparent": tp}))
        client.rpush("tasks", json.dumps({"stop": True}))
        assert worker.wait(timeout=30) == 0
    finally:
        worker.kill()
    for tp in tasks:
        [segment] = segments(traced_agent, tp.split("-")[1], "task")
        assert segment["service"] == "order-worker" and segment["context"] == "marker"
        assert segment["parent_span_id"] == tp.split("-")[2]
        assert segment["blockio_count"] > 0 and segment["duration_seconds"] >= 0.01, segment


def test_collector_fans_trace_lookups_out_to_the_agents(traced_agent, http_service):
    traceparent = new_traceparent()
    trace_id = traceparent.split("-")[1]
    get(http_service, traceparent)
    assert segments(traced_agent, trace_id, "server")
    dead = f"http://127.0.0.1:{free_port()}"
    listen = f"127.0.0.1:{free_port()}"
    with serving(lambda path: b'{"segments": [{"trace_id": 7}]}') as garbage:
        collector = subprocess.Popen(
            [sys.executable, "-m", "taskscope", "collector", "--listen", listen, "--agent",
             traced_agent.url, "--agent", garbage, "--agent", dead, "--timeout", "2"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            base = f"http://{listen}"
            for _ in range(50):
                try:
                    with urllib.request.urlopen(f"{base}/api/traces/{trace_id}", timeout=10) as r:
                        found = json.loads(r.read())["segments"]
                    break
                except OSError:
                    time.sleep(0.2)
            assert {(s["service"], s["kind"], s["agent"]) for s in found} >= {
                ("checkout-api", "server", traced_agent.url)}
            with urllib.request.urlopen(f"{base}/api/traces?service=checkout-api&limit=5",
                                        timeout=10) as r:
                slowest = json.loads(r.read())["segments"]
            assert 0 < len(slowest) <= 5
            durations = [s["duration_seconds"] for s in slowest]
            assert durations == sorted(durations, reverse=True)
            with urllib.request.urlopen(f"{base}/metrics", timeout=10) as r:
                metrics = r.read().decode()
            assert (f'taskscope_collector_trace_lookup_failures_total{{agent="{garbage}"}}'
                    in metrics)
            assert (f'taskscope_collector_trace_lookup_failures_total'
                    f'{{agent="{traced_agent.url}"}} 0.0' in metrics)
        finally:
            collector.terminate()
            collector.wait(timeout=10)


# An app already using the OpenTelemetry SDK adds one span processor; its
# consumer spans become taskscope tasks.
OTEL_APP = """
import os, sys
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind
from taskscope_marker.otel import TaskscopeSpanProcessor

provider = TracerProvider()
provider.add_span_processor(TaskscopeSpanProcessor())
tracer = provider.get_tracer("invoices")
input()  # wait until the agent has hooked the library
with tracer.start_as_current_span("render invoice", kind=SpanKind.CONSUMER) as span:
    with open(sys.argv[1], "ab") as f:
        f.write(os.urandom(8192))
        f.flush()
        os.fsync(f.fileno())
    ctx = span.get_span_context()
    print(f"{ctx.trace_id:032x} {ctx.span_id:016x}", flush=True)
"""


def test_otel_sdk_span_processor_marks_consumer_spans(traced_agent, tmp_path):
    env = dict(os.environ, OTEL_SERVICE_NAME="invoice-worker")
    # Only this app maps the project venv's copy of the library: a new one.
    hooked = value(traced_agent.scrape(), "taskscope_marker_libraries_hooked")
    app = subprocess.Popen([sys.executable, "-c", OTEL_APP, tmp_path / "invoice.pdf"], env=env,
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while value(traced_agent.scrape(), "taskscope_marker_libraries_hooked") <= hooked:
            assert time.monotonic() < deadline, "the marker library was never hooked"
            time.sleep(0.2)
        trace_id, span_id = app.communicate("\n", timeout=30)[0].split()
    finally:
        app.kill()
    [segment] = segments(traced_agent, trace_id, "task")
    assert segment["service"] == "invoice-worker" and segment["parent_span_id"] == span_id
    assert segment["blockio_count"] > 0


def test_unreachable_otlp_endpoint_does_not_hold_up_shutdown(http_service, tmp_path):
    agent = Agent("--probes", "sched,tcp,traces", "--otlp-endpoint",
                  f"http://127.0.0.1:{free_port()}", log_path=tmp_path / "agent.log")
    try:
        traceparent = new_traceparent()
        get(http_service, traceparent)
        assert segments(agent, traceparent.split("-")[1], "server")
        time.sleep(1.5)  # the exporter has tried, and failed, at least once
    finally:
        code, seconds = agent.stop()
    assert code == 0 and seconds < 4.5, (code, seconds, agent.log())


def test_garbage_handed_to_the_marker_is_counted_not_traced(traced_agent, marker_venv):
    def dropped():
        return value(traced_agent.scrape(), "taskscope_map_drops_total",
                     reason="segment_bad_marker")

    before = dropped()
    # Calls the marker with junk every 50 ms until the agent has hooked it and counted.
    app = subprocess.Popen([str(marker_venv), "-c", """
import time, taskscope_marker
for _ in range(400):
    taskscope_marker.begin("00-not-a-trace-context")
    taskscope_marker.end()
    taskscope_marker.begin("")
    taskscope_marker.end()
    time.sleep(0.05)
"""])
    try:
        deadline = time.monotonic() + 15
        while dropped() <= before:
            assert time.monotonic() < deadline, "bad marker calls were never counted"
            time.sleep(0.2)
    finally:
        app.kill()
        app.wait()
    _, _, body = traced_agent.get("/api/traces?limit=1000")
    assert not [s for s in json.loads(body)["segments"] if s["pid"] == app.pid]


def test_a_copy_of_the_marker_others_may_write_is_refused_and_counted(traced_agent, marker_venv,
                                                                      tmp_path):
    import glob
    import shutil
    site = glob.glob(str(marker_venv.parent.parent / "lib" / "python3*" / "site-packages"))[0]
    original = next(p for p in glob.glob(os.path.join(site, "**", "*.so"), recursive=True)
                    if "taskscope_marker" in p)
    planted = tmp_path / "libtaskscope_marker_planted.so"
    shutil.copy(original, planted)
    planted.chmod(0o666)  # anyone could change it after the agent looked
    before = value(traced_agent.scrape(), "taskscope_marker_refused_total", reason="writable")
    holder = subprocess.Popen([sys.executable, "-c",
                               f"import ctypes, time; ctypes.CDLL({str(planted)!r}); "
                               "print('loaded', flush=True); time.sleep(30)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "loaded"
        deadline = time.monotonic() + 10
        while value(traced_agent.scrape(), "taskscope_marker_refused_total",
                    reason="writable") <= before:
            assert time.monotonic() < deadline, traced_agent.log()[-2000:]
            time.sleep(0.3)
    finally:
        holder.kill()
        holder.wait()
    assert "not hooking the marker library" in traced_agent.log()


def test_the_governor_samples_segments_to_keep_the_agent_under_its_cpu_budget(
        http_service, otlp, tmp_path):
    # A budget no agent streaming spans can keep (0.1 % of a core) and
    # traced requests as fast as the service answers: the governor must
    # sample, and say so; the contexts it left out are counted, not lost.
    agent = Agent("--probes", "sched,tcp,traces", "--otlp-endpoint",
                  f"http://127.0.0.1:{otlp.server_address[1]}", "--max-cpu-percent", "0.1",
                  log_path=tmp_path / "agent.log")
    try:
        deadline = time.monotonic() + 40
        samples = {}
        while time.monotonic() < deadline:
            threads = [threading.Thread(target=get, args=(http_service, new_traceparent()))
                       for _ in range(10)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            samples = agent.scrape()
            if value(samples, "taskscope_trace_contexts_total", result="sampled_out") > 0:
                break
        every = value(samples, "taskscope_trace_sample_every")
        assert every > 1, agent.log()[-2000:]
        assert value(samples, "taskscope_trace_contexts_total", result="sampled_out") > 0
        assert value(samples, "taskscope_trace_contexts_total", result="traced") > 0
        assert value(samples, "taskscope_agent_cpu_ratio") > 0.001
        assert "trace segments for 1 in" in agent.log()
    finally:
        code, _ = agent.stop()
    assert code == 0
