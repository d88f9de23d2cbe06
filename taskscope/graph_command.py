"""`taskscope graph`: one export of a served or saved graph."""

import json
import sys
import urllib.request

from taskscope import config
from taskscope.records.errors import ConfigError
from taskscope.topology import render


def run(args):
    """Fetch (URL) or read (FILE) a graph and write it as JSON, SVG, DOT or PNG."""
    source = args.source
    if source.startswith(("http://", "https://")):
        url = source.rstrip("/")
        if not url.endswith("/api/graph"):
            url += "/api/graph"
        if args.window:
            config.parse_duration(args.window)
            url += f"?window={args.window}"
        try:
            with urllib.request.urlopen(url, timeout=30) as reply:
                text = reply.read().decode()
        except OSError as exc:
            raise ConfigError(f"cannot fetch {url}: {exc}") from exc
    else:
        try:
            with open(source) as f:
                text = f.read()
        except OSError as exc:
            raise ConfigError(f"cannot read {source}: {exc.strerror}") from exc
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if not (isinstance(body, dict) and isinstance(body.get("nodes"), list)
            and isinstance(body.get("edges"), list)):
        raise ConfigError(f"{source}: not a taskscope graph (JSON with nodes and edges)")
    data = json.dumps(body, indent=2).encode() if args.format == "json" else \
        render.render(body, args.format)
    if args.output == "-":
        sys.stdout.buffer.write(data)
    else:
        with open(args.output, "wb") as f:
            f.write(data)
    return 0
