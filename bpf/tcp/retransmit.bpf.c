/* Retransmits per service (tcp:tcp_retransmit_skb, 4.15+), and per traced
 * request. */

#include "../segments.h"
#include "sockets.h"

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

