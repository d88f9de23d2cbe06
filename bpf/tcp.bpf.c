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

/* Entries leak when a socket vanishes unseen (e.g. the agent started after
 * it opened): LRU keeps the map bounded. */
BPF_TABLE("lru_hash", u64, struct tcp_sock_info, tcp_sockets, TCP_MAX_SOCKETS);
BPF_TABLE("lru_hash", u16, struct owner, tcp_listeners, TCP_MAX_LISTENERS);
BPF_HASH(tcp_stats, struct owner, struct tcp_counters, TCP_STATS_ENTRIES);
/* counter slot (see taskscope.h) -> bytes, per CPU. */
BPF_PERCPU_ARRAY(tcp_bytes, struct tcp_bytes, MAX_COUNTER_SLOTS);
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
/* tcp_probe runs on every received segment; srtt is already a moving
 * average, so one segment in RTT_SAMPLE_EVERY per CPU is sampled, and the
 * socket lookup is paid only for those. */
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

static __always_inline void tcp_rtt_sample(const void *sk, u32 srtt_us)
{
	u64 key = (u64)sk;
	struct tcp_sock_info *info = tcp_sockets.lookup(&key);
	if (!info || !srtt_us)
		return;
	u64 ns = (u64)srtt_us * 1000;
	struct tcp_hist_key hk = {.owner = info->owner, .slot = log2_slot(ns)};
	struct hist_value zero = {};
	hist_add(tcp_rtt.lookup_or_try_init(&hk, &zero), ns, DROP_TCP_RTT);
}

#ifdef TCP_RTT_BTF
RAW_TRACEPOINT_PROBE(tcp_probe)
{
	if (tcp_rtt_skip())
		return 0;
	const void *sk = (const void *)ctx->args[0];
	u32 srtt8 = 0;  /* tcp_sock.srtt_us holds the smoothed RTT << 3 */
	bpf_probe_read_kernel(&srtt8, sizeof(srtt8), sk + TCP_SRTT_US_OFFSET);
	tcp_rtt_sample(sk, srtt8 >> 3);
	return 0;
}
#else
TRACEPOINT_PROBE(tcp, tcp_probe)
{
	if (tcp_rtt_skip())
		return 0;
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
/* The hottest hooks of all: every send and receive on every socket. */
static __always_inline void tcp_count_bytes(u16 family, u16 protocol, int ret, int sent)
{
	if (ret <= 0 || protocol != IPPROTO_TCP_ || (family != AF_INET_ && family != AF_INET6_))
		return;
	u32 slot = counter_slot_of_current();
	struct tcp_bytes *b = tcp_bytes.lookup(&slot);
	if (!b)
		return;
	if (sent)
		b->sent_bytes += ret;
	else
		b->received_bytes += ret;
}

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
