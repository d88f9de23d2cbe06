/* The contract between the wire capture (traceparent.bpf.c), which finds a
 * trace context in a request's packets, and the TCP exchange tracking
 * (tcp/exchanges.h), which opens a segment when that request is read or
 * written: the context waits here, keyed by the connection's flow.  Only
 * with the trace_wire probe (TRACE_WIRE). */
#ifndef TASKSCOPE_PENDING_TRACES_H
#define TASKSCOPE_PENDING_TRACES_H

#include "packet.h"
#include "trace_context.h"

#ifdef TRACE_WIRE
BPF_TABLE("lru_hash", struct flow, struct trace_context, pending_traces, MAX_PENDING_TRACES);
/* When a trace context was last seen on the wire: until there is one, new
 * exchanges skip their lookup in pending_traces. */
BPF_ARRAY(pending_seen, u64, 1);
#endif

#endif
