/* TCP state changes (sock:inet_sock_set_state, 4.16+): connect latency and
 * connections opened, closed and failed, per service; the socket's owner
 * recorded at connect() for active opens and taken from the listener for
 * passive ones (at listen() the owner of a port is recorded); for the
 * service graph, each connection's side of its edge. */

#include "exchanges.h"
#include "failures.h"
#include "sockets.h"

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
		edge_mark_virtual(info, sk);
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
		u64 now = bpf_ktime_get_ns();
		exchange_aborted(info, from, now);
		edge_flush(info, now, 1);
		if (info->listed)
			tcp_exchange_sockets.delete(&sk);
		if (info->edge.conn_port)
			tcp_virtual_connections.delete(&sk);
#endif
		tcp_socket_delete(sk);
	}
	return 0;
}
#endif

#if defined(TCP_EXCHANGES) && defined(HAVE_TCP_TCP_RECEIVE_RESET)
/* Who aborted a connection (tcp/failures.h): a reset arrived. */
TRACEPOINT_PROBE(tcp, tcp_receive_reset)
{
	struct tcp_sock_info *info = tcp_socket_lookup((u64)args->skaddr);
	if (info)
		info->reset_received = 1;
	return 0;
}
#endif

