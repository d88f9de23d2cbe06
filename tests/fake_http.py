"""A throwaway HTTP server for tests that need a peer: answers every GET with
what `reply(path)` returns."""

import contextlib
import http.server
import threading


@contextlib.contextmanager
def serving(reply):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = reply(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
