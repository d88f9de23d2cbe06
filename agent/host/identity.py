"""Process identities for processes that were running before the agent.

New processes are named in the kernel at exec (bpf/identity.bpf.c); this
module names the ones already running, so that kernel_abi.ident_hash gives
their samples the same kernel keys.
"""

import logging

from taskscope.agent.host import procfs
from taskscope.agent.host.services import KERNEL
from taskscope.agent.kernel_abi import SERVICE_NAME_LEN, IdentKind

log = logging.getLogger(__name__)

PF_KTHREAD = 0x00200000
OTEL_SERVICE_NAME = b"OTEL_SERVICE_NAME"


def parse_environ(data):
    """NUL-separated KEY=VALUE bytes (untrusted) -> {bytes: bytes}; junk skipped."""
    env = {}
    for item in data.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep and key:
            env[key] = value
    return env


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _is_kernel_thread(stat):
    # Field 9 (flags) follows the parenthesised comm, which may hold spaces.
    fields = stat[stat.rfind(b")") + 2:].split()
    return len(fields) > 6 and int(fields[6]) & PF_KTHREAD


def identify(pid, proc="/proc"):
    """(kind, name bytes) of a running process, or None if it is gone."""
    try:
        if _is_kernel_thread(_read(f"{proc}/{pid}/stat")):
            return IdentKind.COMM, KERNEL.encode()
        try:
            env = parse_environ(_read(f"{proc}/{pid}/environ"))
        except PermissionError:
            env = {}
        name = env.get(OTEL_SERVICE_NAME, b"")[: SERVICE_NAME_LEN - 1].split(b"\0")[0]
        if name:
            return IdentKind.OTEL, name
        return IdentKind.COMM, _read(f"{proc}/{pid}/comm").rstrip(b"\n")[: 15]
    except (OSError, ValueError):
        return None


def running_processes(proc="/proc"):
    """[(tgid, kind, name)] for every process /proc lists now."""
    out = []
    for pid in procfs.pids(proc):
        ident = identify(pid, proc)
        if ident:
            out.append((pid, *ident))
    return out
