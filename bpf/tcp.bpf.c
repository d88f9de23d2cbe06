/* TCP: connect latency, connections opened/closed, smoothed RTT,
 * retransmits and bytes, per service.
 * Hooks: sock:inet_sock_set_state (4.16+), tcp:tcp_probe (4.16+),
 *        tcp:tcp_retransmit_skb (4.15+), sock:sock_send_length and
 *        sock:sock_recv_length (6.4+); each part compiles only where its
 *        tracepoint exists (TCP_* flags).
 * Softirq context knows nothing of the owning task, so a socket's owner is
 * recorded where a task is current: at connect() for active opens, at
 * listen() for the listener whose port a passive open arrives on. */

#define TCP_STATE_ESTABLISHED 1
#define TCP_STATE_SYN_SENT 2
#define TCP_STATE_SYN_RECV 3
#define TCP_STATE_CLOSE 7
#define TCP_STATE_LISTEN 10
#define AF_INET_ 2
#define AF_INET6_ 10
#define IPPROTO_TCP_ 6

struct tcp_sock_info {
	struct owner owner;
	u64 connect_start_ns;
	u64 segments;
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
	u64 sent_bytes;
	u64 received_bytes;
};

/* Entries leak when a socket vanishes unseen (e.g. the agent started after
 * it opened): LRU keeps the map bounded. */
BPF_TABLE("lru_hash", u64, struct tcp_sock_info, tcp_sockets, TCP_MAX_SOCKETS);
BPF_TABLE("lru_hash", u16, struct owner, tcp_listeners, TCP_MAX_LISTENERS);
BPF_HASH(tcp_stats, struct owner, struct tcp_counters, TCP_STATS_ENTRIES);
BPF_HASH(tcp_connect_latency, struct tcp_hist_key, struct hist_value, TCP_HIST_ENTRIES);
BPF_HASH(tcp_rtt, struct tcp_hist_key, struct hist_value, TCP_HIST_ENTRIES);

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
	struct tcp_sock_info *info = tcp_sockets.lookup(&key);
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
		tcp_sockets.update(&sk, &info);
		return 0;
	}
	if (to == TCP_STATE_LISTEN) {
		struct owner o;
		u16 port = args->sport;
		current_owner(&o);
		tcp_listeners.update(&port, &o);
		return 0;
	}
	if (to == TCP_STATE_ESTABLISHED && from == TCP_STATE_SYN_SENT) {
		struct tcp_sock_info *info = tcp_sockets.lookup(&sk);
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
		return 0;
	}
	if (to == TCP_STATE_ESTABLISHED && from == TCP_STATE_SYN_RECV) {
		u16 port = args->sport;
		struct owner *listener = tcp_listeners.lookup(&port);
		struct tcp_sock_info info = {};
		if (listener)
			info.owner = *listener;
		tcp_sockets.update(&sk, &info);
		if ((c = tcp_counters_of(&info.owner)))
			__sync_fetch_and_add(&c->opened_passive, 1);
		return 0;
	}
	if (to == TCP_STATE_CLOSE) {
		struct tcp_sock_info *info = tcp_sockets.lookup(&sk);
		if (!info)
			return 0;
		if ((c = tcp_counters_of(&info->owner))) {
			if (from == TCP_STATE_SYN_SENT)
				__sync_fetch_and_add(&c->connect_failed, 1);
			else
				__sync_fetch_and_add(&c->closed, 1);
		}
		tcp_sockets.delete(&sk);
	}
	return 0;
}
#endif

#ifdef TCP_RTT
/* One RTT sample every RTT_SAMPLE_EVERY received segments of a connection,
 * the first included: srtt is already a moving average, and this runs on
 * every segment. */
static __always_inline void tcp_rtt_sample(const void *sk, u32 srtt_us)
{
	u64 key = (u64)sk;
	struct tcp_sock_info *info = tcp_sockets.lookup(&key);
	if (!info || (info->segments++ % RTT_SAMPLE_EVERY) || !srtt_us)
		return;
	u64 ns = (u64)srtt_us * 1000;
	struct tcp_hist_key hk = {.owner = info->owner, .slot = log2_slot(ns)};
	struct hist_value zero = {};
	hist_add(tcp_rtt.lookup_or_try_init(&hk, &zero), ns, DROP_TCP_RTT);
}

#ifdef TCP_RTT_RAW
RAW_TRACEPOINT_PROBE(tcp_probe)
{
	const void *sk = (const void *)ctx->args[0];
	u32 srtt8 = 0;  /* tcp_sock.srtt_us holds the smoothed RTT << 3 */
	bpf_probe_read_kernel(&srtt8, sizeof(srtt8), sk + TCP_SRTT_US_OFFSET);
	tcp_rtt_sample(sk, srtt8 >> 3);
	return 0;
}
#else
TRACEPOINT_PROBE(tcp, tcp_probe)
{
	tcp_rtt_sample(args->skaddr, args->srtt);
	return 0;
}
#endif
#endif

#ifdef TCP_RETRANSMIT
TRACEPOINT_PROBE(tcp, tcp_retransmit_skb)
{
	struct owner *o = tcp_owner_of(args->skaddr);
	struct owner unknown = {};
	struct tcp_counters *c = tcp_counters_of(o ? o : &unknown);
	if (c)
		__sync_fetch_and_add(&c->retransmits, 1);
	return 0;
}
#endif

#ifdef TCP_BYTES
/* The hottest hooks of all: every send and receive on every socket.  Keep
 * them to a filter, the owner lookup and one atomic add. */
static __always_inline void tcp_count_bytes(u16 family, u16 protocol, int ret, int sent)
{
	if (ret <= 0 || protocol != IPPROTO_TCP_ || (family != AF_INET_ && family != AF_INET6_))
		return;
	struct owner o;
	current_owner(&o);
	struct tcp_counters *c = tcp_counters_of(&o);
	if (!c)
		return;
	if (sent)
		__sync_fetch_and_add(&c->sent_bytes, ret);
	else
		__sync_fetch_and_add(&c->received_bytes, ret);
}

#ifdef TCP_BYTES_RAW
static __always_inline void tcp_count_sk_bytes(const void *sk, int ret, int sent)
{
	if (ret <= 0)
		return;
	u16 family = 0, protocol = 0;
	bpf_probe_read_kernel(&family, sizeof(family), sk + SK_FAMILY_OFFSET);
	bpf_probe_read_kernel(&protocol, sizeof(protocol), sk + SK_PROTOCOL_OFFSET);
	tcp_count_bytes(family, protocol, ret, sent);
}

RAW_TRACEPOINT_PROBE(sock_send_length)
{
	tcp_count_sk_bytes((const void *)ctx->args[0], (int)ctx->args[1], 1);
	return 0;
}

RAW_TRACEPOINT_PROBE(sock_recv_length)
{
	tcp_count_sk_bytes((const void *)ctx->args[0], (int)ctx->args[1], 0);
	return 0;
}
#else
TRACEPOINT_PROBE(sock, sock_send_length)
{
	tcp_count_bytes(args->family, args->protocol, args->ret, 1);
	return 0;
}

TRACEPOINT_PROBE(sock, sock_recv_length)
{
	tcp_count_bytes(args->family, args->protocol, args->ret, 0);
	return 0;
}
#endif
#endif
