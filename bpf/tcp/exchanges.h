/* The service graph's exchanges: request/response pairs counted per
 * connection from the direction changes of its byte stream, batched in the
 * socket and moved onto the edge maps; connections that predate the agent
 * adopted (with BTF); trace contexts from the wire turned into segments.
 * Only with the tcp_exchanges probe (TCP_EXCHANGES). */
#ifndef TASKSCOPE_TCP_EXCHANGES_H
#define TASKSCOPE_TCP_EXCHANGES_H

#include "../hist.h"
#include "../pending_traces.h"
#include "../segments.h"
#include "sockets.h"

#ifdef TCP_EXCHANGES
struct edge_stats {
	u64 connections;
	u64 failed;            /* connects refused or timed out */
	u64 failed_requests;   /* exchanges that failed (tcp/failures.h) */
	u64 sent_bytes;
	u64 received_bytes;
};
BPF_HASH(edge_latency, struct edge_key, struct hist_value, EDGE_HIST_ENTRIES);
BPF_HASH(edge_stats, struct edge_key, struct edge_stats, EDGE_ENTRIES);
/* Sockets that have had exchanges: when it reads the edges, user space adds
 * what each still holds in its batch (agent/kernel/maps.py), so that an
 * exchange shows on its edge at the first read after it ends, not at the
 * connection's next flush.  One insert per connection, deleted at close. */
BPF_TABLE("lru_hash", u64, u8, tcp_exchange_sockets, TCP_SOCKET_SLOTS);

/* Virtual IPs: destinations (v4-mapped address, port) that conntrack shows
 * translated to another, filled by user space (agent/host/conntrack.py). */
struct virtual_ip {
	u8 addr[16];
	u16 port;
	u16 pad;
};
BPF_HASH(tcp_virtual_ips, struct virtual_ip, u8, TCP_MAX_VIRTUAL_IPS);
/* Open connections to virtual IPs (socket -> its edge key): their series are
 * final once they are gone from here, and user space may fold them. */
BPF_TABLE("lru_hash", u64, struct edge_key, tcp_virtual_connections, TCP_MAX_VIRTUAL_CONNECTIONS);

/* A client connection just established: to a virtual IP, it keeps series
 * of its own (struct edge_key.conn_port) until user space folds them. */
static __always_inline void edge_mark_virtual(struct tcp_sock_info *i, u64 sk)
{
	struct virtual_ip v = {.port = i->edge.peer_port};
	__builtin_memcpy(v.addr, i->edge.peer, 16);
	if (!tcp_virtual_ips.lookup(&v))
		return;
	i->edge.conn_port = i->local_port;
	tcp_virtual_connections.update(&sk, &i->edge);
}

static __always_inline struct edge_stats *edge_stats_of(struct edge_key *k)
{
	struct edge_stats zero = {};
	struct edge_stats *e = edge_stats.lookup_or_try_init(k, &zero);
	if (!e)
		count_drop(DROP_EDGE_STATS);
	return e;
}

static __always_inline void copy_address(u8 *dst, u16 family, const u8 *v4, const u8 *v6)
{
	if (family == AF_INET6_) {
		__builtin_memcpy(dst, v6, 16);
	} else {
		dst[10] = 0xff;
		dst[11] = 0xff;
		__builtin_memcpy(dst + 12, v4, 4);
	}
}

/* Exchanges that fell into the same log2 slot are batched in the socket and
 * added to edge_latency together: steady traffic then costs a hash update
 * per slot change or per second, not per exchange. */
static __always_inline void edge_latency_flush(struct tcp_sock_info *i)
{
	if (!i->batch_count)
		return;
	struct edge_key k = i->edge;
	struct hist_value zero = {};
	k.slot = i->batch_slot;
	hist_add_many(edge_latency.lookup_or_try_init(&k, &zero), i->batch_count, i->batch_ns,
		      DROP_EDGE_LATENCY);
	i->batch_count = 0;
	i->batch_ns = 0;
}

/* The socket's bytes are held in u32 (to keep its hot fields in one cache
 * line): they go to the edge before they reach this, whatever the time. */
#define UNFLUSHED_MAX (1U << 30)

/* Move the connection's byte counts and failed exchanges onto its edge. */
static __always_inline void edge_stats_flush(struct tcp_sock_info *i)
{
	if (!(i->unflushed_sent || i->unflushed_received || i->unflushed_failed))
		return;
	struct edge_stats *e = edge_stats_of(&i->edge);
	if (e) {
		__sync_fetch_and_add(&e->sent_bytes, i->unflushed_sent);
		__sync_fetch_and_add(&e->received_bytes, i->unflushed_received);
		__sync_fetch_and_add(&e->failed_requests, i->unflushed_failed);
	}
	i->unflushed_sent = 0;
	i->unflushed_received = 0;
	i->unflushed_failed = 0;
}

/* Close the exchange in progress (if its response has begun) and, at close
 * or at most once a second, move the connection's batched latencies and
 * byte counts onto its edge: updating the edge's hash entries on every
 * exchange would cost more than the rest of the tracking. */
static __always_inline void edge_flush(struct tcp_sock_info *i, u64 now, int closing)
{
	if (i->phase == PHASE_RESPONSE) {
		u64 ns = i->last_response_ns - i->exchange_start_ns;
		u32 slot = log2_slot(ns);
		if (i->batch_count && slot != i->batch_slot)
			edge_latency_flush(i);
		i->batch_slot = slot;
		i->batch_count++;
		i->batch_ns += ns;
		i->phase = PHASE_IDLE;
		i->unflushed_failed += i->exchange_failed;
		i->exchange_failed = 0;
	}
	if (closing || now - i->flushed_ns >= EDGE_FLUSH_NS) {
		edge_latency_flush(i);
		edge_stats_flush(i);
		i->flushed_ns = now;
	}
}

#if defined(TCP_EXCHANGES_BTF) || defined(TCP_PACKETS)
/* A connection as /proc/net/tcp lists it: ports in host order; the network
 * namespace where the kernel side can read it (with BTF, at a send or
 * receive), else 0. */
struct conn_key {
	u32 netns;
	u16 local_port;
	u16 peer_port;
	u8 local[16];
	u8 peer[16];
};

/* Connections open before the agent started, found in /proc by user space:
 * adopted into tcp_sockets on their first send or receive. */
BPF_HASH(tcp_preexisting, struct conn_key, struct edge_key, TCP_MAX_PREEXISTING);
#endif

#if defined(TCP_EXCHANGES_BTF) && !defined(TCP_PACKETS)
static __always_inline void read_address(u8 *dst, u16 family, const void *sk, u32 v4, u32 v6)
{
	if (family == AF_INET6_) {
		bpf_probe_read_kernel(dst, 16, sk + v6);
	} else {
		dst[10] = 0xff;
		dst[11] = 0xff;
		bpf_probe_read_kernel(dst + 12, 4, sk + v4);
	}
}

/* An untracked socket: adopt it if user space listed it, else remember that
 * it is not ours, so the next send does not read it all again. */
static __always_inline struct tcp_sock_info *tcp_adopt(const void *sk)
{
	struct conn_key k = {};
	struct tcp_sock_info info = {};
	u16 family = 0, dport = 0;
	bpf_probe_read_kernel(&family, sizeof(family), sk + SKC_FAMILY_OFFSET);
	k.netns = sock_netns(sk);
	bpf_probe_read_kernel(&k.local_port, sizeof(k.local_port), sk + SKC_NUM_OFFSET);
	bpf_probe_read_kernel(&dport, sizeof(dport), sk + SKC_DPORT_OFFSET);
	k.peer_port = bpf_ntohs(dport);
	read_address(k.local, family, sk, SKC_RCV_SADDR_OFFSET, SKC_V6_RCV_SADDR_OFFSET);
	read_address(k.peer, family, sk, SKC_DADDR_OFFSET, SKC_V6_DADDR_OFFSET);
	struct edge_key *listed = tcp_preexisting.lookup(&k);
	if (listed) {
		info.edge = *listed;
		info.owner = listed->owner;
		info.local_port = k.local_port;
		info.peer_port = k.peer_port;
		tcp_preexisting.delete(&k);
	}
	struct tcp_sock_info *stored = tcp_socket_store((u64)sk, &info);
	return listed ? stored : 0;
}
#endif

#ifdef TCP_TRACES
/* A context waits in pending_traces for its request's first read; seen on
 * the wire longer ago than this, none is waiting (a stale entry is left to
 * the LRU). */
#define PENDING_TRACE_TTL_NS 10000000000ULL

/* A new request on the connection: the previous one's segment is over. */
static __always_inline void trace_exchange_over(struct tcp_sock_info *i, u64 sk, u64 now)
{
	if (i->traced_tid) {
		segment_connection_closed(i->traced_tid, sk, now);
		i->traced_tid = 0;
	}
}

/* The current thread took up the connection's new request: if it carried a
 * trace context (seen by traceparent.h), the thread now works for that
 * trace, since `start`. */
static __always_inline void trace_exchange_taken(struct tcp_sock_info *i, u64 sk, u64 start,
						 u64 now)
{
	u32 zero = 0;
	u64 *seen = pending_seen.lookup(&zero);
	if (!seen || (s64)(now - *seen) > (s64)PENDING_TRACE_TTL_NS)
		return;
	struct flow f = {.local_port = i->local_port, .peer_port = i->peer_port};
	__builtin_memcpy(f.local, i->edge.local, 16);
	__builtin_memcpy(f.peer, i->edge.peer, 16);
	struct trace_context *found = pending_traces.lookup(&f);
	if (!found)
		return;
	struct trace_context ctx = *found;
	pending_traces.delete(&f);
	segment_begin(&ctx, i->edge.role == ROLE_CLIENT ? SEGMENT_CLIENT : SEGMENT_SERVER, sk,
		      i->edge.peer,
		      start, now);
	i->traced_tid = (u32)bpf_get_current_pid_tgid();
}
#endif

/* Request/response exchanges from the direction of the byte stream: for a
 * server a request starts with the first bytes received after it sent (or
 * ever), its response ends with the last bytes sent before it receives
 * again; a client is the mirror image.  Returns 1 when a request began. */
static __always_inline int edge_track(struct tcp_sock_info *i, u64 key, int ret, int sent)
{
	if (!i->edge.role)
		return 0;
	int began = 0;
	u64 now = bpf_ktime_get_ns();
	if ((i->edge.role == ROLE_CLIENT) == (sent != 0)) {
		if (i->phase == PHASE_RESPONSE)
			edge_flush(i, now, 0);
		if (i->phase == PHASE_IDLE) {
			i->exchange_start_ns = now;
			i->phase = PHASE_REQUEST;
			began = 1;
			if (!i->listed) {
				u8 one = 1;
				tcp_exchange_sockets.update(&key, &one);
				i->listed = 1;
			}
#ifdef TCP_TRACES
			trace_exchange_over(i, key, now);
#ifdef TCP_PACKETS
			/* A packet's program runs in softirq or in whatever
			 * thread sends: the thread that reads on this socket
			 * next takes up the trace, if the wire reader finds
			 * one in this request (traceparent.h, tcp/reads.bpf.c). */
			i->await_reader = 0;
#else
			trace_exchange_taken(i, key, now, now);
#endif
#endif
		}
	} else if (i->phase != PHASE_IDLE) {
		i->phase = PHASE_RESPONSE;
		i->last_response_ns = now;
	}
	if (sent)
		i->unflushed_sent += ret;
	else
		i->unflushed_received += ret;
	if ((i->unflushed_sent | i->unflushed_received) >= UNFLUSHED_MAX)
		edge_stats_flush(i);
	return began;
}
#endif

#endif
