"""The agent's and the collector's HTTP endpoint: /metrics (Prometheus or
OpenMetrics), /healthz, /livez and the routes the commands add.

It runs privileged on every node, so it is bounded: a fixed pool of worker
threads and a bounded number of connections waiting for one (more are
closed at once and counted), a timeout on every socket operation, requests
capped at REQUEST_BYTES (only GETs are served), optional TLS and basic
auth (taskscope/web_config.py), and concurrent requests for the same
path share one computation (SingleFlight) instead of each rebuilding the
graph or re-reading every map.
"""

import concurrent.futures
import http.server
import logging
import signal
import socket
import ssl
import threading
import urllib.parse

from prometheus_client import exposition

from taskscope.agent.reclaim import release_heap
from taskscope.web_config import WebConfig

log = logging.getLogger(__name__)

# A GET's request line and headers together; nothing legitimate is larger.
REQUEST_BYTES = 16 << 10
# After a reply this large, freed heap is handed back to the OS: a scrape of
# tens of thousands of series allocates tens of MB that glibc would
# otherwise keep, and the agent's RSS would stay at its largest scrape's.
TRIM_AFTER_BYTES = 1 << 20


class SingleFlight:
    """Callers asking for the same key while it is being computed wait for
    that computation and share its result (or its exception)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._running = {}  # key -> (done event, [result, exception])

    def do(self, key, compute):
        with self._lock:
            running = self._running.get(key)
            if running is None:
                running = self._running[key] = (threading.Event(), [None, None])
                leader = True
            else:
                leader = False
        done, box = running
        if leader:
            try:
                box[0] = compute()
            except Exception as exc:
                box[1] = exc
            finally:
                with self._lock:
                    del self._running[key]
                done.set()
        else:
            done.wait()
        if box[1] is not None:
            raise box[1]
        return box[0]


class RequestTooLarge(OSError):
    """A request went past REQUEST_BYTES: the connection is dropped unanswered."""


class _CappedReader:
    """A request's input; reading past `limit` bytes raises RequestTooLarge."""

    def __init__(self, raw, limit):
        self._raw, self._left = raw, limit

    def _take(self, data):
        self._left -= len(data)
        if self._left < 0:
            raise RequestTooLarge(f"request larger than {REQUEST_BYTES} bytes")
        return data

    def readline(self, size=-1):
        size = self._left + 1 if size is None or size < 0 else min(size, self._left + 1)
        return self._take(self._raw.readline(size))

    def read(self, size=-1):
        size = self._left + 1 if size is None or size < 0 else min(size, self._left + 1)
        return self._take(self._raw.read(size))

    def close(self):
        self._raw.close()


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "taskscope"

    def setup(self):
        super().setup()
        self.rfile = _CappedReader(self.rfile, REQUEST_BYTES)

    def do_GET(self):
        if not self.server.web.authorized(self.headers.get("Authorization")):
            self.close_connection = True
            self._reply(401, b"unauthorized\n", "text/plain",
                        {"WWW-Authenticate": 'Basic realm="taskscope"'})
            return
        path, _, query = self.path.partition("?")
        if path == "/metrics":
            encoder, content_type = exposition.choose_encoder(self.headers.get("Accept"))
            try:
                body = self.server.flights.do(("/metrics", content_type),
                                              lambda: encoder(self.server.registry))
            except Exception:
                log.exception("rendering /metrics failed")
                self._reply(500, b"scrape failed; see the agent's log\n", "text/plain")
                return
            self._reply(200, body, content_type)
            if len(body) >= TRIM_AFTER_BYTES:
                del body
                release_heap()
        elif path in ("/healthz", "/livez") and path not in self.server.routes:
            self._reply(200, b"ok\n", "text/plain")  # (the collector's: no threads, no probes)
        elif route := self.server.route_of(path):
            try:
                params = dict(urllib.parse.parse_qsl(query))
                route, tail = route
                if tail is not None:
                    params["path_tail"] = tail
                status, body, content_type = self.server.flights.do(
                self.path, lambda: route(params))
            except Exception:
                log.exception("%s failed", path)
                status, body, content_type = 500, b"failed; see the agent's log\n", "text/plain"
            self._reply(status, body, content_type)
        else:
            known = ", ".join(["/metrics", "/healthz", *sorted(self.server.routes)])
            self._reply(404, f"not found; try {known}\n".encode(), "text/plain")

    def _reply(self, status, body, content_type, headers=None):
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError, socket.timeout, ssl.SSLError):
            # The client gave up (a probe's timeout, a closed browser tab):
            # nothing to answer, nothing to report.
            log.debug("%s %s: the client left before the reply", self.address_string(),
                      self.path)

    def log_message(self, fmt, *args):
        log.debug("%s %s", self.address_string(), fmt % args)


class EndpointServer(http.server.HTTPServer):
    """Binds at construction (so a busy port fails before probes compile)."""

    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address, registry, web=None, workers=8, waiting=32, timeout=10.0):
        self.registry = registry
        self.web = web or WebConfig()
        # path -> (query params) -> (status, body bytes, content type); a path
        # ending in "/" also serves what lies under it, as params["path_tail"].
        self.routes = {}
        self.flights = SingleFlight()
        self.timeout_seconds = timeout
        self.rejected = 0  # connections closed at once: every worker busy, the queue full
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="http")
        self._slots = threading.BoundedSemaphore(workers + waiting)
        super().__init__(address, _Handler)
        self._thread = None

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            self.rejected += 1
            self.shutdown_request(request)
            return
        self._pool.submit(self._work, request, client_address)

    def _work(self, request, client_address):
        try:
            request.settimeout(self.timeout_seconds)  # every read and write, TLS included
            if self.web.tls is not None:
                request = self.web.tls.wrap_socket(request, server_side=True)
            self.finish_request(request, client_address)
        except (OSError, ssl.SSLError) as exc:
            log.debug("%s: %s", client_address[0], exc)
        except Exception:
            log.exception("serving %s failed", client_address[0])
        finally:
            self.shutdown_request(request)
            self._slots.release()

    def route_of(self, path):
        """(route, None) for an exact path; (route, rest) for a route whose
        path ends in "/" and prefixes `path`; None when nothing matches."""
        if path in self.routes:
            return self.routes[path], None
        head, sep, tail = path.rpartition("/")
        route = self.routes.get(head + sep) if tail else None
        return (route, urllib.parse.unquote(tail)) if route else None

    def start(self):
        self._thread = threading.Thread(target=self.serve_forever, name="http", daemon=True)
        self._thread.start()

    def stop(self):
        self.shutdown()
        self.server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)


def wait_for_signal(stop=None):
    """Block until SIGTERM or SIGINT (or `stop` is set by someone else)."""
    stop = stop or threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    stop.wait()
