"""The agent's HTTP endpoint: /metrics (Prometheus or OpenMetrics) and /healthz."""

import http.server
import logging
import signal
import threading
import urllib.parse

from prometheus_client import exposition

log = logging.getLogger(__name__)


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "taskscope"

    def do_GET(self):
        path, _, query = self.path.partition("?")
        if path == "/metrics":
            encoder, content_type = exposition.choose_encoder(self.headers.get("Accept"))
            try:
                body = encoder(self.server.registry)
            except Exception:
                log.exception("rendering /metrics failed")
                self._reply(500, b"scrape failed; see the agent's log\n", "text/plain")
                return
            self._reply(200, body, content_type)
        elif path in ("/healthz", "/livez") and path not in self.server.routes:
            self._reply(200, b"ok\n", "text/plain")  # (the collector's: no threads, no probes)
        elif route := self.server.route_of(path):
            try:
                params = dict(urllib.parse.parse_qsl(query))
                route, tail = route
                if tail is not None:
                    params["path_tail"] = tail
                status, body, content_type = route(params)
            except Exception:
                log.exception("%s failed", path)
                status, body, content_type = 500, b"failed; see the agent's log\n", "text/plain"
            self._reply(status, body, content_type)
        else:
            known = ", ".join(["/metrics", "/healthz", *sorted(self.server.routes)])
            self._reply(404, f"not found; try {known}\n".encode(), "text/plain")

    def _reply(self, status, body, content_type):
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (a probe's timeout, a closed browser tab):
            # nothing to answer, nothing to report.
            log.debug("%s %s: the client left before the reply", self.address_string(),
                      self.path)

    def log_message(self, fmt, *args):
        log.debug("%s %s", self.address_string(), fmt % args)


class EndpointServer(http.server.ThreadingHTTPServer):
    """Binds at construction (so a busy port fails before probes compile)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, registry):
        self.registry = registry
        # path -> (query params) -> (status, body bytes, content type); a path
        # ending in "/" also serves what lies under it, as params["path_tail"].
        self.routes = {}
        super().__init__(address, _Handler)
        self._thread = None

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


def wait_for_signal(stop=None):
    """Block until SIGTERM or SIGINT (or `stop` is set by someone else)."""
    stop = stop or threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    stop.wait()
