/* TCP: connect latency, connections opened/closed, smoothed RTT,
 * retransmits and bytes, per service; and, for the service graph, the
 * request/response exchanges of every connection, per edge.
 * Hooks: sock:inet_sock_set_state (4.16+), tcp:tcp_probe (4.16+),
 *        tcp:tcp_retransmit_skb (4.15+), sock:sock_send_length and
 *        sock:sock_recv_length (6.4+); each part compiles only where its
 *        tracepoint exists (TCP_* flags).
 * Softirq context knows nothing of the owning task, so a socket's owner is
 * recorded where a task is current: at connect() for active opens, at
 * listen() for the listener whose port a passive open arrives on. */

#if defined(TRACE_WIRE) && defined(TCP_EXCHANGES)
#define TCP_TRACES  /* trace contexts from the wire open segments at exchanges */
#endif
#if defined(TCP_EXCHANGES_BTF) || defined(TCP_BYTES_BTF)
#define TCP_IO_RAW  /* sends and receives hooked as raw tracepoints */
#endif

#define TCP_STATE_ESTABLISHED 1
#define TCP_STATE_SYN_SENT 2
#define TCP_STATE_SYN_RECV 3
#define TCP_STATE_CLOSE 7
#define TCP_STATE_LISTEN 10
#define AF_INET_ 2
#define AF_INET6_ 10

#define ROLE_CLIENT 1
#define ROLE_SERVER 2
#define PHASE_IDLE 0
#define PHASE_REQUEST 1
#define PHASE_RESPONSE 2
#define BYTES_FLUSH_NS 1000000000ULL

/* One side of a connection in the service graph: who (owner), in which role,
 * between which addresses.  A client's peer is the server's ip:port; a
 * server's peer is the client's ip (its port is ephemeral, so 0). */
struct edge_key {
	struct owner owner;
	u8 local[16];   /* IPv4 as v4-mapped IPv6 */
	u8 peer[16];
	u16 peer_port;
	u8 role;
	u8 slot;        /* log2 slot in edge_latency; 0 in edge_stats */
	u32 pad;
};

struct tcp_sock_info {
	struct owner owner;
	u64 connect_start_ns;
#ifdef TCP_EXCHANGES
	struct edge_key edge;
	u64 exchange_start_ns;
	u64 last_response_ns;
	u64 unflushed_sent;
	u64 unflushed_received;
	u64 flushed_ns;
	u64 batch_ns;       /* exchanges not yet added to edge_latency: */
	u32 batch_count;    /* their number, */
	u32 batch_slot;     /* and their common log2 slot */
	u32 phase;
	u32 traced_tid;     /* thread whose trace segment this connection serves */
	u16 local_port;
	u16 peer_port;
	u32 pad;
#endif
};

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

/* Socket (its kernel address) -> what is known of it, in two levels.  Every
 * send and receive looks its socket up, and a hash lookup costs a helper
 * call (~55 ns here) where an array lookup is inlined: so a socket lives in
 * a direct-mapped array slot, picked by a hash of its address, unless
 * another socket holds that slot; then in an LRU hash, which stays bounded
 * should a socket ever vanish unseen. */
struct tcp_sock_slot {
	u64 sk;  /* 0: free */
	struct tcp_sock_info info;
};
BPF_ARRAY(tcp_socket_slots, struct tcp_sock_slot, TCP_SOCKET_SLOTS);
BPF_TABLE("lru_hash", u64, struct tcp_sock_info, tcp_sockets, TCP_MAX_SOCKETS);

static __always_inline struct tcp_sock_slot *tcp_socket_slot(u64 sk)
{
	/* Fibonacci hashing; sockets are at least 64-byte aligned. */
	u32 index = (u32)(((sk >> 6) * 0x9E3779B97F4A7C15ULL) >> 32) & (TCP_SOCKET_SLOTS - 1);
	return tcp_socket_slots.lookup(&index);
}

static __always_inline struct tcp_sock_info *tcp_socket_lookup(u64 sk)
{
	struct tcp_sock_slot *slot = tcp_socket_slot(sk);
	if (slot && slot->sk == sk)
		return &slot->info;
	return tcp_sockets.lookup(&sk);
}

/* Store `info` for `sk`; returns where it now lives (0: the LRU was full). */
static __always_inline struct tcp_sock_info *tcp_socket_store(u64 sk, struct tcp_sock_info *info)
{
	struct tcp_sock_slot *slot = tcp_socket_slot(sk);
	if (slot && (slot->sk == sk || __sync_val_compare_and_swap(&slot->sk, 0, sk) == 0)) {
		slot->info = *info;
		return &slot->info;
	}
	tcp_sockets.update(&sk, info);
	return tcp_sockets.lookup(&sk);
}

static __always_inline void tcp_socket_delete(u64 sk)
{
	struct tcp_sock_slot *slot = tcp_socket_slot(sk);
	if (slot && slot->sk == sk)
		slot->sk = 0;
	else
		tcp_sockets.delete(&sk);
}
/* Who listens where: by network namespace and port, since every pod of a
 * node may listen on 8080.  The namespace is read through BTF offsets; without
 * them it is 0 and listeners are told apart by port alone. */
struct listener_key {
	u32 netns;
	u16 port;
	u16 pad;
};
BPF_TABLE("lru_hash", struct listener_key, struct owner, tcp_listeners, TCP_MAX_LISTENERS);

static __always_inline u32 sock_netns(const void *sk)
{
	u32 inum = 0;
#ifdef TCP_EXCHANGES_BTF
	void *net = 0;
	bpf_probe_read_kernel(&net, sizeof(net), sk + SKC_NET_OFFSET);
	if (net)
		bpf_probe_read_kernel(&inum, sizeof(inum), net + NET_NS_INUM_OFFSET);
#endif
	return inum;
}
BPF_HASH(tcp_stats, struct owner, struct tcp_counters, TCP_STATS_ENTRIES);
/* counter slot (see taskscope.h) -> bytes, per CPU. */
BPF_PERCPU_ARRAY(tcp_bytes, struct tcp_bytes, MAX_COUNTER_SLOTS);
BPF_HASH(tcp_connect_latency, struct tcp_hist_key, struct hist_value, TCP_HIST_ENTRIES);
BPF_HASH(tcp_rtt, struct tcp_hist_key, struct hist_value, TCP_HIST_ENTRIES);

#ifdef TCP_EXCHANGES
struct edge_stats {
	u64 connections;
	u64 failed;
	u64 sent_bytes;
	u64 received_bytes;
};
BPF_HASH(edge_latency, struct edge_key, struct hist_value, EDGE_HIST_ENTRIES);
BPF_HASH(edge_stats, struct edge_key, struct edge_stats, EDGE_ENTRIES);

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
	}
	if (closing || now - i->flushed_ns >= BYTES_FLUSH_NS) {
		edge_latency_flush(i);
		if (i->unflushed_sent || i->unflushed_received) {
			struct edge_stats *e = edge_stats_of(&i->edge);
			if (e) {
				__sync_fetch_and_add(&e->sent_bytes, i->unflushed_sent);
				__sync_fetch_and_add(&e->received_bytes, i->unflushed_received);
			}
			i->unflushed_sent = 0;
			i->unflushed_received = 0;
		}
		i->flushed_ns = now;
	}
}

#ifdef TCP_EXCHANGES_BTF
/* A connection as /proc/net/tcp lists it: ports in host order. */
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

/* A new request on the connection: the previous one's segment is over, and
 * if the request carried a trace context (seen by traceparent.bpf.c), the
 * current thread now works for that trace. */
static __always_inline void trace_exchange_begins(struct tcp_sock_info *i, u64 sk, u64 now)
{
	if (i->traced_tid) {
		segment_connection_closed(i->traced_tid, sk, now);
		i->traced_tid = 0;
	}
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
	segment_begin(&ctx, i->edge.role == ROLE_CLIENT ? SEGMENT_CLIENT : SEGMENT_SERVER, sk, now);
	i->traced_tid = (u32)bpf_get_current_pid_tgid();
}
#endif

/* Request/response exchanges from the direction of the byte stream: for a
 * server a request starts with the first bytes received after it sent (or
 * ever), its response ends with the last bytes sent before it receives
 * again; a client is the mirror image. */
static __always_inline void edge_track(struct tcp_sock_info *i, u64 key, int ret, int sent)
{
	if (!i->edge.role)
		return;
	u64 now = bpf_ktime_get_ns();
	if ((i->edge.role == ROLE_CLIENT) == (sent != 0)) {
		if (i->phase == PHASE_RESPONSE)
			edge_flush(i, now, 0);
		if (i->phase == PHASE_IDLE) {
			i->exchange_start_ns = now;
			i->phase = PHASE_REQUEST;
#ifdef TCP_TRACES
			trace_exchange_begins(i, key, now);
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
}
#endif

static __always_inline struct tcp_counters *tcp_counters_of(struct owner *o)
{
	struct tcp_counters zero = {};
	struct tcp_counters *c = tcp_stats.lookup_or_try_init(o, &zero);
	if (!c)
		count_drop(DROP_TCP_STATS);
	return c;
}

static __always_inline struct owner *tcp_owner_of(const void *sk)
{
	u64 key = (u64)sk;
	struct tcp_sock_info *info = tcp_socket_lookup(key);
	return info ? &info->owner : 0;
}

#ifdef TCP_CONNECT
TRACEPOINT_PROBE(sock, inet_sock_set_state)
{
	if (args->protocol != IPPROTO_TCP_)
		return 0;
	u64 sk = (u64)args->skaddr;
	int from = args->oldstate, to = args->newstate;
	struct tcp_counters *c;

	if (to == TCP_STATE_SYN_SENT) {
		struct tcp_sock_info info = {.connect_start_ns = bpf_ktime_get_ns()};
		current_owner(&info.owner);
#ifdef TCP_EXCHANGES
		info.edge.owner = info.owner;
		info.edge.role = ROLE_CLIENT;
		info.edge.peer_port = args->dport;
		copy_address(info.edge.local, args->family, args->saddr, args->saddr_v6);
		copy_address(info.edge.peer, args->family, args->daddr, args->daddr_v6);
#endif
		tcp_socket_store(sk, &info);
		return 0;
	}
	if (to == TCP_STATE_LISTEN) {
		struct owner o;
		struct listener_key lk = {.netns = sock_netns(args->skaddr), .port = args->sport};
		current_owner(&o);
		tcp_listeners.update(&lk, &o);
		return 0;
	}
	if (to == TCP_STATE_ESTABLISHED && from == TCP_STATE_SYN_SENT) {
		struct tcp_sock_info *info = tcp_socket_lookup(sk);
		if (!info)
			return 0;
		u64 ns = bpf_ktime_get_ns() - info->connect_start_ns;
		struct tcp_hist_key key = {.owner = info->owner, .slot = log2_slot(ns)};
		struct hist_value zero = {};
		hist_add(tcp_connect_latency.lookup_or_try_init(&key, &zero), ns,
			 DROP_TCP_CONNECT_LATENCY);
		info->connect_start_ns = 0;
		if ((c = tcp_counters_of(&info->owner)))
			__sync_fetch_and_add(&c->opened_active, 1);
#ifdef TCP_EXCHANGES
		/* The source port is picked after SYN_SENT is reported. */
		info->local_port = args->sport;
		info->peer_port = args->dport;
		copy_address(info->edge.local, args->family, args->saddr, args->saddr_v6);
		struct edge_stats *e = edge_stats_of(&info->edge);
		if (e)
			__sync_fetch_and_add(&e->connections, 1);
#endif
		return 0;
	}
	if (to == TCP_STATE_ESTABLISHED && from == TCP_STATE_SYN_RECV) {
		struct listener_key lk = {.netns = sock_netns(args->skaddr), .port = args->sport};
		struct owner *listener = tcp_listeners.lookup(&lk);
		struct tcp_sock_info info = {};
		if (listener)
			info.owner = *listener;
#ifdef TCP_EXCHANGES
		info.edge.owner = info.owner;
		info.edge.role = ROLE_SERVER;
		info.local_port = args->sport;
		info.peer_port = args->dport;
		copy_address(info.edge.local, args->family, args->saddr, args->saddr_v6);
		copy_address(info.edge.peer, args->family, args->daddr, args->daddr_v6);
		struct edge_stats *e = edge_stats_of(&info.edge);
		if (e)
			__sync_fetch_and_add(&e->connections, 1);
#endif
		tcp_socket_store(sk, &info);
		if ((c = tcp_counters_of(&info.owner)))
			__sync_fetch_and_add(&c->opened_passive, 1);
		return 0;
	}
#ifdef TCP_TRACES
	if (from == TCP_STATE_ESTABLISHED || to == TCP_STATE_CLOSE) {
		struct tcp_sock_info *info = tcp_socket_lookup(sk);
		if (info && info->traced_tid) {
			segment_connection_closed(info->traced_tid, sk, bpf_ktime_get_ns());
			info->traced_tid = 0;
		}
	}
#endif
	if (to == TCP_STATE_CLOSE) {
		struct tcp_sock_info *info = tcp_socket_lookup(sk);
		if (!info)
			return 0;
		if (!(info->owner.ident | info->owner.cgroup_id)) {
			/* Not ours (see tcp_adopt) or of an unknown listener. */
			tcp_socket_delete(sk);
			return 0;
		}
		if ((c = tcp_counters_of(&info->owner))) {
			if (from == TCP_STATE_SYN_SENT)
				__sync_fetch_and_add(&c->connect_failed, 1);
			else
				__sync_fetch_and_add(&c->closed, 1);
		}
#ifdef TCP_EXCHANGES
		if (from == TCP_STATE_SYN_SENT) {
			struct edge_stats *e = edge_stats_of(&info->edge);
			if (e)
				__sync_fetch_and_add(&e->failed, 1);
		}
		edge_flush(info, bpf_ktime_get_ns(), 1);
#endif
		tcp_socket_delete(sk);
	}
	return 0;
}
#endif

#ifdef TCP_RTT
/* srtt is already a moving average, so one event in RTT_SAMPLE_EVERY per CPU
 * is sampled, and the socket lookup is paid only for those.  The events are
 * the tracked sockets' sends and receives where those hooks run raw (their
 * socket is at hand, and tcp_probe, on every received segment, need not be
 * attached at all), else tcp_probe's. */
#if defined(TCP_RTT_BTF) && defined(TCP_IO_RAW)
#define TCP_RTT_ON_IO
#endif
BPF_PERCPU_ARRAY(tcp_rtt_countdown, u32, 1);

static __always_inline int tcp_rtt_skip(void)
{
	u32 zero = 0;
	u32 *n = tcp_rtt_countdown.lookup(&zero);
	if (!n)
		return 1;
	if (*n) {
		(*n)--;
		return 1;
	}
	*n = RTT_SAMPLE_EVERY - 1;
	return 0;
}

static __always_inline void tcp_rtt_sample(const struct tcp_sock_info *info, u32 srtt_us)
{
	if (!info || !srtt_us || !(info->owner.ident | info->owner.cgroup_id))
		return;
	u64 ns = (u64)srtt_us * 1000;
	struct tcp_hist_key hk = {.owner = info->owner, .slot = log2_slot(ns)};
	struct hist_value zero = {};
	hist_add(tcp_rtt.lookup_or_try_init(&hk, &zero), ns, DROP_TCP_RTT);
}

#ifdef TCP_RTT_BTF
static __always_inline void tcp_rtt_read(const void *sk, const struct tcp_sock_info *info)
{
	u32 srtt8 = 0;  /* tcp_sock.srtt_us holds the smoothed RTT << 3 */
	bpf_probe_read_kernel(&srtt8, sizeof(srtt8), sk + TCP_SRTT_US_OFFSET);
	tcp_rtt_sample(info, srtt8 >> 3);
}
#endif

#if defined(TCP_RTT_BTF) && !defined(TCP_RTT_ON_IO)
RAW_TRACEPOINT_PROBE(tcp_probe)
{
	if (tcp_rtt_skip())
		return 0;
	u64 key = ctx->args[0];
	tcp_rtt_read((const void *)key, tcp_socket_lookup(key));
	return 0;
}
#elif !defined(TCP_RTT_BTF)
TRACEPOINT_PROBE(tcp, tcp_probe)
{
	if (tcp_rtt_skip())
		return 0;
	u64 key = (u64)args->skaddr;
	tcp_rtt_sample(tcp_socket_lookup(key), args->srtt);
	return 0;
}
#endif
#endif

#ifdef TCP_RETRANSMIT
TRACEPOINT_PROBE(tcp, tcp_retransmit_skb)
{
#ifdef TCP_TRACES
	u64 key = (u64)args->skaddr;
	struct tcp_sock_info *traced = tcp_socket_lookup(key);
	if (traced && traced->traced_tid)
		segment_retransmit(traced->traced_tid, key);
#endif
	struct owner *o = tcp_owner_of(args->skaddr);
	struct owner unknown = {};
	struct tcp_counters *c = tcp_counters_of(o ? o : &unknown);
	if (c)
		__sync_fetch_and_add(&c->retransmits, 1);
	return 0;
}
#endif

#if defined(TCP_BYTES) || defined(TCP_EXCHANGES)
/* The hottest hooks of all: every send and receive on every socket.  `i`
 * is the socket's entry in the socket table, if it has one. */
static __always_inline void tcp_io(const void *sk, struct tcp_sock_info *i, int ret, int sent)
{
	u64 pid_tgid = bpf_get_current_pid_tgid();
#ifdef TCP_EXCHANGES
	if (i)
		edge_track(i, (u64)sk, ret, sent);
#endif
#ifdef TRACE_SEGMENTS
	segment_socket_io((u32)pid_tgid, (u64)sk, sent);
#endif
#ifdef TCP_BYTES
	u32 slot = counter_slot_of(pid_tgid >> 32);
	struct tcp_bytes *b = tcp_bytes.lookup(&slot);
	if (!b)
		return;
	if (sent)
		b->sent_bytes += ret;
	else
		b->received_bytes += ret;
#endif
}

#ifdef TCP_IO_RAW
/* Raw tracepoints: a classic one formats its fields on every call, which
 * costs more than this whole program.  A socket found in its array slot is
 * tracked, so TCP; any other has its protocol read (one helper call), then
 * is looked for in the LRU level, and a TCP one is adopted where BTF allows
 * (see tcp_adopt). */
static __always_inline void tcp_io_raw(const void *sk, int ret, int sent)
{
	if (ret <= 0)
		return;
	u64 key = (u64)sk;
	struct tcp_sock_info *i = 0;
	struct tcp_sock_slot *slot = tcp_socket_slot(key);
	if (slot && slot->sk == key) {
		i = &slot->info;
	} else {
		u16 protocol = 0;
		bpf_probe_read_kernel(&protocol, sizeof(protocol), sk + SK_PROTOCOL_OFFSET);
		if (protocol != IPPROTO_TCP_)
			return;
		i = tcp_sockets.lookup(&key);
#ifdef TCP_EXCHANGES_BTF
		if (!i)
			i = tcp_adopt(sk);
#endif
	}
#ifdef TCP_RTT_ON_IO
	if (i && !tcp_rtt_skip())
		tcp_rtt_read(sk, i);
#endif
	tcp_io(sk, i, ret, sent);
}

RAW_TRACEPOINT_PROBE(sock_send_length)
{
	tcp_io_raw((const void *)ctx->args[0], (int)ctx->args[1], 1);
	return 0;
}

RAW_TRACEPOINT_PROBE(sock_recv_length)
{
	tcp_io_raw((const void *)ctx->args[0], (int)ctx->args[1], 0);
	return 0;
}
#else
static __always_inline void tcp_io_classic(const void *sk, u16 family, u16 protocol, int ret,
					   int sent)
{
	if (ret <= 0 || protocol != IPPROTO_TCP_ || (family != AF_INET_ && family != AF_INET6_))
		return;
	struct tcp_sock_info *i = 0;
#ifdef TCP_EXCHANGES
	u64 key = (u64)sk;
	i = tcp_socket_lookup(key);
#endif
	tcp_io(sk, i, ret, sent);
}

TRACEPOINT_PROBE(sock, sock_send_length)
{
	tcp_io_classic(args->sk, args->family, args->protocol, args->ret, 1);
	return 0;
}

TRACEPOINT_PROBE(sock, sock_recv_length)
{
	tcp_io_classic(args->sk, args->family, args->protocol, args->ret, 0);
	return 0;
}
#endif
#endif
