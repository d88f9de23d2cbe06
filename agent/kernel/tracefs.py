"""Finds (and if need be mounts) tracefs, and tells which tracepoints exist."""

import ctypes
import logging
import os

from taskscope.records.errors import DependencyError

log = logging.getLogger(__name__)

CANDIDATES = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")


def _mount_tracefs(path):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"nodev", path.encode(), b"tracefs", 0, None) != 0:
        err = ctypes.get_errno()
        raise DependencyError(
            f"tracefs is not mounted and mounting it at {path} failed: {os.strerror(err)}; "
            f"mount it first: mount -t tracefs nodev {path}"
        )
    log.info("mounted tracefs at %s", path)


def find_tracefs(configured=None):
    """Return the tracefs root; mount it at /sys/kernel/tracing if absent.

    BCC reads tracepoint formats from there, so nothing loads without it.
    """
    if configured:
        if not os.path.isdir(os.path.join(configured, "events")):
            raise DependencyError(f"tracefs: {configured} has no events/ directory")
        return configured
    for root in CANDIDATES:
        if os.path.isdir(os.path.join(root, "events")):
            return root
    _mount_tracefs(CANDIDATES[0])
    return CANDIDATES[0]


def tracepoint_exists(root, tracepoint):
    """True when `category:event` is a tracepoint of the running kernel."""
    category, event = tracepoint.split(":", 1)
    return os.path.isfile(os.path.join(root, "events", category, event, "format"))
