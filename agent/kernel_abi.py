"""Values shared by the C probes and the Python side, defined once here.

The probes receive them as -D compile flags, so an enum or a limit never
exists in two languages.
"""

import dataclasses
import enum

from taskscope.records.histogram import MAX_SLOT


class IdentKind(enum.IntEnum):
    """Where a process's identity came from (struct ident_name.kind)."""

    COMM = 1
    OTEL = 2


class Drop(enum.IntEnum):
    """Why a sample or an entry was lost (index into the `drops` map)."""

    IDENT_NAMES = 0
    PID_OUT_OF_RANGE = 1
    RUNQUEUE_LATENCY = 2
    BLOCKIO_LATENCY = 3
    TCP_STATS = 4
    TCP_CONNECT_LATENCY = 5
    TCP_RTT = 6
    COUNTER_SLOTS = 7
    EDGE_LATENCY = 8
    EDGE_STATS = 9
    SEGMENT_RING = 10
    SEGMENT_RATE = 11
    SEGMENT_BAD_MARKER = 12
    SEGMENT_EVICTED = 13
    BLOCKIO_FLUSH = 14


class Role(enum.IntEnum):
    """A connection's side in the service graph (struct edge_key.role)."""

    CLIENT = 1
    SERVER = 2


class Phase(enum.IntEnum):
    """Where a connection's exchange stands (struct tcp_sock_info.phase)."""

    IDLE = 0
    REQUEST = 1
    RESPONSE = 2


# struct edge_key.conn_port of the series user space folded closed
# connections to a virtual IP into (agent/edge_sides.py); no local port is it.
FOLDED_CONNECTIONS = 0xFFFFFFFF

# A connection moves its batched exchanges onto its edge at most this often
# (bpf/tcp/exchanges.h); user space adds what is still batched when it reads.
EDGE_FLUSH_NS = 1_000_000_000


class SegmentKind(enum.IntEnum):
    """What a trace segment's thread was doing (struct segment.role)."""

    SERVER = 1
    CLIENT = 2
    TASK = 3


class ContextSource(enum.IntEnum):
    """Where a trace context came from (struct trace_context.source)."""

    TRACEPARENT = 1
    B3 = 2
    MARKER = 3


class BlockOp(enum.IntEnum):
    READ = 0
    WRITE = 1
    FLUSH = 2
    DISCARD = 3
    OTHER = 4


class BlockStage(enum.IntEnum):
    QUEUE = 0
    DEVICE = 1


SERVICE_NAME_LEN = 64
# sched_switch's prev_state: the low bits are the task state; 0x100
# (TASK_REPORT_MAX) flags a preemption, which leaves the task runnable.
TASK_STATE_MASK = 0xFF
MAX_ENV_SCAN = 128
# tcp_probe fires on every received segment; RTT is sampled on 1 in this
# many per CPU.
RTT_SAMPLE_EVERY = 8
# Trace contexts are looked for in the first this many payload bytes of a
# request (a power of two); SCAN_BYTES_SMALL where the kernel's verifier
# gives up on the larger reader (6.1 did, E2BIG at 512, until the reader
# read a request in one piece).
SCAN_BYTES = 512
SCAN_BYTES_SMALL = 256
# Finished trace segments: at most SEGMENT_EVENTS_PER_SEC per CPU and second
# are stored (and streamed to the OTLP exporter, through a ring buffer of
# SEGMENT_RING_PAGES).
SEGMENT_RING_PAGES = 64
SEGMENT_EVENTS_PER_SEC = 2000
# The latest observation per series, for exemplars (entries).
MAX_EXEMPLARS = 8192
# bpf_ringbuf_submit's flag (uapi/linux/bpf.h): the reader drains on a timer.
BPF_RB_NO_WAKEUP = 1


class SegmentCount(enum.IntEnum):
    """Index into the per-CPU segment_counts array (bpf/segments.h)."""

    FINISHED = 0
    BEGUN = 1
    SAMPLED_OUT = 2


class ExemplarKind(enum.IntEnum):
    """What series a segment's observation was on (struct exemplar_key.what)."""

    RUNQUEUE = 1
    BLOCKIO = 2
    SERVER = 3

# Upper bounds of every BPF map, by the name of the -D flag that sizes it.
MAP_SIZES = {
    "MAX_IDENTITIES": 8192,
    "MAX_COUNTER_SLOTS": 16384,
    "RUNQUEUE_HIST_ENTRIES": 32768,
    "BLOCKIO_MAX_INFLIGHT": 16384,
    "BLOCKIO_HIST_ENTRIES": 32768,
    "BLOCKIO_MAX_FLUSH_REQUESTS": 1024,
    "BLOCKIO_MAX_DEVICES": 256,
    "TCP_SOCKET_SLOTS": 16384,  # a power of two
    "TCP_MAX_SOCKETS": 65536,
    "TCP_MAX_LISTENERS": 4096,
    "TCP_MAX_PREEXISTING": 16384,
    "TCP_STATS_ENTRIES": 8192,
    "TCP_HIST_ENTRIES": 32768,
    "EDGE_HIST_ENTRIES": 32768,
    "EDGE_ENTRIES": 16384,
    "MAX_TRACED_THREADS": 16384,
    "MAX_PENDING_TRACES": 4096,
    "TCP_MAX_VIRTUAL_IPS": 4096,
    "TCP_MAX_VIRTUAL_CONNECTIONS": 16384,
}


# Arrays indexed by pid have pid_max slots, up to this many (4 MiB pids: the
# kernel's own limit on 64-bit).
MAX_PID_SLOTS = 1 << 22


def pid_slots(path="/proc/sys/kernel/pid_max"):
    try:
        with open(path) as f:
            return min(int(f.read()), MAX_PID_SLOTS)
    except (OSError, ValueError):
        return MAX_PID_SLOTS


@dataclasses.dataclass(frozen=True)
class BuildOptions:
    """What the operator's settings change in the compiled programs."""

    trace_unsampled: bool = False   # segments for unsampled trace contexts too
    http_4xx_failed: bool = False   # an HTTP 4xx response fails its exchange
    scan_bytes: int = SCAN_BYTES    # how far into a request trace contexts are looked for
    finished_segments: int = 10000  # segments the store keeps for /api/traces
    stream_segments: bool = False   # every finished segment to user space (OTLP)


def cflags(defines=(), pid_max_slots=None, options=BuildOptions()):
    """The -D flags every probe is compiled with, plus probe-specific ones."""
    flags = [
        f"-DTRACE_UNSAMPLED={int(options.trace_unsampled)}",
        f"-DHTTP_4XX_FAILED={int(options.http_4xx_failed)}",
        f"-DSCAN_BYTES={options.scan_bytes}",
        f"-DSEGMENT_RING_PAGES={SEGMENT_RING_PAGES}",
        f"-DSEGMENT_EVENTS_PER_SEC={SEGMENT_EVENTS_PER_SEC}",
        f"-DMAX_FINISHED_SEGMENTS={options.finished_segments}",
        f"-DMAX_EXEMPLARS={MAX_EXEMPLARS}",
        f"-DBPF_RB_NO_WAKEUP_={BPF_RB_NO_WAKEUP}",
        "-Werror=implicit-function-declaration",
        f"-DPID_SLOTS={pid_max_slots or pid_slots()}",
        f"-DSERVICE_NAME_LEN={SERVICE_NAME_LEN}",
        f"-DMAX_SLOT={MAX_SLOT}",
        f"-DTASK_STATE_MASK={TASK_STATE_MASK:#x}",
        f"-DMAX_ENV_SCAN={MAX_ENV_SCAN}",
        f"-DRTT_SAMPLE_EVERY={RTT_SAMPLE_EVERY}",
        f"-DDROP_REASONS={len(Drop)}",
    ]
    flags += [f"-D{name}={size}" for name, size in MAP_SIZES.items()]
    flags += [f"-DIDENT_KIND_{k.name}={k.value}" for k in IdentKind]
    flags += [f"-DDROP_{d.name}={d.value}" for d in Drop]
    flags += [f"-DROLE_{r.name}={r.value}" for r in Role]
    flags += [f"-DPHASE_{p.name}={p.value}" for p in Phase]
    flags.append(f"-DEDGE_FLUSH_NS={EDGE_FLUSH_NS}ULL")
    flags += [f"-DSEGMENT_{k.name}={k.value}" for k in SegmentKind]
    flags += [f"-DCONTEXT_{c.name}={c.value}" for c in ContextSource]
    flags += [f"-DBLK_OP_{o.name}={o.value}" for o in BlockOp]
    flags += [f"-DBLK_STAGE_{s.name}={s.value}" for s in BlockStage]
    flags += [f"-DEXEMPLAR_{k.name}={k.value}" for k in ExemplarKind]
    flags += [f"-DSEGMENT_COUNT_{c.name}={c.value}" for c in SegmentCount]
    flags.append(f"-DSEGMENT_COUNTS={len(SegmentCount)}")
    if options.stream_segments:
        flags.append("-DSEGMENT_STREAM")
    flags += [f"-D{d}" for d in defines]
    return flags


FNV_OFFSET = 14695981039346656037
FNV_PRIME = 1099511628211
MASK64 = (1 << 64) - 1


def fnv1a(data, h=FNV_OFFSET):
    """64-bit FNV-1a of `data` (bytes), continuing from `h`."""
    for byte in data:
        h = ((h ^ byte) * FNV_PRIME) & MASK64
    return h


def ident_hash(kind, name):
    """FNV-1a of the kind and name, as ident_hash() in bpf/identity.h: the key
    the kernel gives a process's identity, computed here for processes that
    predate the agent."""
    return fnv1a(name[: SERVICE_NAME_LEN - 1].split(b"\0", 1)[0], fnv1a([int(kind)]))
