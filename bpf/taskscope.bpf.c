/* taskscope's kernel side: every probe's programs, compiled as one BCC module.
 *
 * The loader (agent/kernel/loader.py) compiles this file with the -D flags of
 * agent/kernel_abi.py (sizes, enums, limits) and one define per selected
 * probe (agent/kernel/probes.py), plus HAVE_<TRACEPOINT> for optional hooks
 * and <PROBE>_BTF with field offsets where the kernel's BTF vouches for a
 * raw-tracepoint variant.  Each part below compiles only with its probe;
 * every part includes the headers it uses, each behind an include guard.
 *
 * Shared headers: common.h (types, constants), drops.h (the loss counter),
 * hist.h (log2 histograms), identity.h (owners: cgroup and process
 * identity), counter_slots.h (per-CPU counters per owner), task_state.h
 * (task states across kernels), trace_context.h (W3C/b3 IDs),
 * packet.h (headers and flows of packets), pending_traces.h (contexts from
 * the wire, waiting for their exchange),
 * segments.h (a traced thread's waits), tcp/{tcp,sockets,exchanges,rtt}.h. */

#ifdef TRACE_SEGMENTS
#include "marker.bpf.c"
#endif

#if defined(TRACE_WIRE) || defined(TCP_PACKETS)
#include "packets.bpf.c"
#endif

#ifdef RUNQUEUE
#include "runqueue.bpf.c"
#endif

#ifdef BLOCKIO
#include "blockio.bpf.c"
#endif

#if defined(TCP_CONNECT) || defined(TCP_RTT) || defined(TCP_RETRANSMIT) || \
    defined(TCP_EXCHANGES) || defined(TCP_BYTES)
#include "tcp/state.bpf.c"
#include "tcp/rtt.bpf.c"
#include "tcp/retransmit.bpf.c"
#include "tcp/io.bpf.c"
#include "tcp/reads.bpf.c"
#endif

/* Always: every other part charges its samples to these identities. */
#include "identity.bpf.c"
