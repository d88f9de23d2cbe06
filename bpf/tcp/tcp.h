/* TCP, shared by its parts: which variants this build has, the kernel's
 * TCP states, and the per-service maps (connections, retransmits, bytes,
 * connect latency, RTT).
 * Softirq context knows nothing of the owning task, so a socket's owner is
 * recorded where a task is current (tcp/sockets.h); per-service figures are
 * charged to it. */
#ifndef TASKSCOPE_TCP_H
#define TASKSCOPE_TCP_H

#include "../common.h"
#include "../counter_slots.h"
#include "../drops.h"
#include "../hist.h"
#include "../identity.h"

/* Exchanges and bytes come from packets (TCP_PACKETS, tcp/packets.h) or
 * from the send and receive tracepoints of 6.4+ (tcp/io.bpf.c). */
#if defined(TRACE_WIRE) && defined(TCP_EXCHANGES)
#define TCP_TRACES  /* trace contexts from the wire open segments at exchanges */
#endif
#if (defined(TCP_EXCHANGES_BTF) || defined(TCP_BYTES_BTF)) && !defined(TCP_PACKETS)
#define TCP_IO_RAW  /* sends and receives hooked as raw tracepoints (or kprobes) */
#endif

#define TCP_STATE_ESTABLISHED 1
#define TCP_STATE_SYN_SENT 2
#define TCP_STATE_SYN_RECV 3
#define TCP_STATE_CLOSE 7
#define TCP_STATE_CLOSE_WAIT 8
#define TCP_STATE_LISTEN 10


struct tcp_hist_key {
	struct owner owner;
	u32 slot;
	u32 pad;
};

struct tcp_counters {
	u64 opened_active;
	u64 opened_passive;
	u64 closed;
	u64 connect_failed;
	u64 retransmits;
};

struct tcp_bytes {
	u64 sent_bytes;
	u64 received_bytes;
};

BPF_HASH(tcp_stats, struct owner, struct tcp_counters, TCP_STATS_ENTRIES);
/* counter slot (see counter_slots.h) -> bytes, per CPU. */
BPF_PERCPU_ARRAY(tcp_bytes, struct tcp_bytes, MAX_COUNTER_SLOTS);
BPF_HASH(tcp_connect_latency, struct tcp_hist_key, struct hist_value, TCP_HIST_ENTRIES);
BPF_HASH(tcp_rtt, struct tcp_hist_key, struct hist_value, TCP_HIST_ENTRIES);

/* Add `bytes` sent (or received) to the per-CPU counters of a counter slot
 * (counter_slots.h): an inlined array lookup and an add. */
static __always_inline void tcp_bytes_add(u32 slot, u64 bytes, int sent)
{
	struct tcp_bytes *b = tcp_bytes.lookup(&slot);
	if (!b)
		return;
	if (sent)
		b->sent_bytes += bytes;
	else
		b->received_bytes += bytes;
}

static __always_inline struct tcp_counters *tcp_counters_of(struct owner *o)
{
	struct tcp_counters zero = {};
	struct tcp_counters *c = tcp_stats.lookup_or_try_init(o, &zero);
	if (!c)
		count_drop(DROP_TCP_STATS);
	return c;
}

#endif
