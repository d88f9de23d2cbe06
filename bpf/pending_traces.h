/* The contract between the wire capture (traceparent.bpf.c), which finds a
 * trace context in a request's packets, and the TCP exchange tracking
 * (tcp/exchanges.h), which opens a segment when that request is read or
 * written: the context waits here, keyed by the connection's flow.  Only
 * with the trace_wire probe (TRACE_WIRE). */
#ifndef TASKSCOPE_PENDING_TRACES_H
#define TASKSCOPE_PENDING_TRACES_H

#include "trace_context.h"

#ifdef TRACE_WIRE
/* A TCP flow as the socket sees it: addresses as v4-mapped IPv6, ports in
 * host order. */
struct flow {
	u8 local[16];
	u8 peer[16];
	u16 local_port;
	u16 peer_port;
	u32 pad;
};

BPF_TABLE("lru_hash", struct flow, struct trace_context, pending_traces, MAX_PENDING_TRACES);
/* When a trace context was last seen on the wire: until there is one, new
 * exchanges skip their lookup in pending_traces. */
BPF_ARRAY(pending_seen, u64, 1);
#endif

#endif
