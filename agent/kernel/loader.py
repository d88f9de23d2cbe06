"""Compiles the selected probes into one BCC module and attaches them.

One module, because every BCC compile costs seconds of CPU; a probe that
breaks the compile is isolated and left out rather than taking the rest down.
"""

import ctypes
import functools
import importlib.resources
import logging
import os
import pathlib
import posixpath
import re

from taskscope.agent import kernel_abi
from taskscope.records.errors import DependencyError, PrivilegeError, ProbeLoadError

log = logging.getLogger(__name__)

# The C sources ship inside the package (package data), so a wheel runs anywhere.
BPF_DIR = importlib.resources.files("taskscope") / "bpf"
ENTRY = "taskscope.bpf.c"
_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]+"([^"]+)"[ \t]*$', re.M)

CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39


def effective_capabilities(status_path="/proc/self/status"):
    with open(status_path) as status:
        for line in status:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def check_privileges(caps=None):
    """Fail fast, naming what is missing, before BCC says something vaguer."""
    caps = effective_capabilities() if caps is None else caps
    if caps & (1 << CAP_SYS_ADMIN):
        return
    missing = [name for bit, name in ((CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON"))
               if not caps & (1 << bit)]
    if missing:
        raise PrivilegeError(
            f"taskscope needs {' and '.join(missing)} (or CAP_SYS_ADMIN) to load eBPF probes; "
            "run it as root or grant the capabilities")


def import_bcc():
    try:
        import bcc
    except ImportError as exc:
        raise DependencyError(
            f"BCC's Python module cannot be imported ({exc}): install Debian's python3-bpfcc "
            "and run taskscope from a Python that sees the system site-packages "
            "(./install.sh makes such a venv in .venv)") from exc
    return bcc


def check_kernel_headers(release=None):
    """BCC compiles against /lib/modules/<release>/build unless told otherwise."""
    if os.environ.get("BCC_KERNEL_SOURCE"):
        return
    release = release or os.uname().release
    build = pathlib.Path("/lib/modules") / release / "build"
    if not (build / "include").is_dir():
        raise DependencyError(
            f"no kernel headers at {build}: run ./install.sh, which installs "
            f"linux-headers-{release} or, where the running kernel has no such package, "
            "Debian's generic linux-headers-amd64 and links it there")


def _expand(path, stack):
    """The text of bpf/`path` with its quoted #includes expanded in place,
    each relative to the including file, as the C preprocessor would; the
    include guards then keep one copy of each header."""
    if path in stack:
        raise ProbeLoadError(f"bpf/{path} includes itself (through {' -> '.join(stack)})")
    text = (BPF_DIR / path).read_text()
    folder = posixpath.dirname(path)

    def include(match):
        target = posixpath.normpath(posixpath.join(folder, match.group(1)))
        return f"/* {match.group(0).strip()} */\n" + _expand(target, stack + (path,))

    return _INCLUDE.sub(include, text)


def module_text(entry=ENTRY):
    """bpf/taskscope.bpf.c (or another file of bpf/) with its parts and
    headers expanded into one text: BCC rewrites map calls (map.lookup(...))
    only in the file it is given, not in the files that file includes."""
    return _expand(entry, ()).encode()


BPF_MAP_TYPE_ARRAY = 2
BPF_F_MMAPABLE = 1 << 10


@functools.cache
def map_flag_defines():
    """-D flags for map flags this kernel may or may not take, found by
    creating a small map with them once.  BPF_F_MMAPABLE (5.5+) puts an
    array's values on a page boundary, so the socket table's slots
    (bpf/tcp/sockets.h) start on cache lines; an older kernel refuses the
    flag and the table works unaligned."""
    lib = ctypes.CDLL("libbcc.so.0", use_errno=True)
    lib.bcc_create_map.argtypes = [ctypes.c_int, ctypes.c_char_p] + [ctypes.c_int] * 4
    fd = lib.bcc_create_map(BPF_MAP_TYPE_ARRAY, b"ts_feature", 4, 64, 1, BPF_F_MMAPABLE)
    if fd < 0:
        log.info("socket slots are not cache-aligned: this kernel cannot make its arrays "
                 "mappable (%s)", os.strerror(ctypes.get_errno()))
        return ["-DSOCKET_SLOTS_FLAGS=0"]
    os.close(fd)
    return [f"-DSOCKET_SLOTS_FLAGS={BPF_F_MMAPABLE}"]


def _compile(bcc, selection, probes, options):
    return bcc.BPF(text=module_text(),
                   cflags=[*kernel_abi.cflags(selection.defines(probes), options=options),
                           *map_flag_defines()])


def load(selection, options=kernel_abi.BuildOptions()):
    """Compile and attach `selection`; returns (BPF object, probes that failed).

    Tracepoint programs attach here; cgroup and uprobe programs are attached
    by their owners (agent/kernel/packet_hooks.py, agent/kernel/markers.py).
    """
    bcc = import_bcc()
    try:
        return _compile(bcc, selection, selection.enabled, options), {}
    except Exception as exc:  # BCC raises bare Exception on compile/attach errors
        log.warning("loading all probes together failed (%s); trying each alone", exc)
    working, failed = [], {}
    core = [p for p in selection.enabled if p.group == "core"]
    for probe in selection.enabled:
        if probe.group == "core":
            continue
        try:
            _compile(bcc, selection, core + [probe], options).cleanup()
            working.append(probe)
        except Exception as exc:
            log.error("probe %s cannot load and is disabled: %s", probe.name, exc)
            failed[probe.name] = str(exc)
    if not working:
        raise ProbeLoadError("no probe could be loaded; see the errors above")
    return _compile(bcc, selection, core + working, options), failed
