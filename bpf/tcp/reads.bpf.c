/* The thread that reads a TCP socket, at each read that copies data
 * (tcp:tcp_rcv_space_adjust, 4.x+, called by tcp_recvmsg in the reader's
 * context).  With exchanges from packets, no program knows which thread
 * took a request off the socket: here, the reader of a request that began
 * takes up its trace (a server's from now; a client's, whose reader reads
 * the response, from when the request left), and a traced thread's wait
 * for the network ends.  Only with trace contexts from the wire and
 * exchanges from packets. */

#include "../segments.h"
#include "exchanges.h"

#if defined(TCP_TRACES) && defined(TCP_PACKETS)
static __always_inline void tcp_read(u64 sk)
{
	/* Until a trace context has been seen on the wire, no socket awaits its
	 * reader, and reads (the hottest hook here) leave the socket table
	 * alone: on a node without traced requests they cost two array reads. */
	u32 zero = 0;
	u64 *seen = pending_seen.lookup(&zero);
	if (seen && *seen) {
		struct tcp_sock_info *i = tcp_socket_lookup(sk);
		if (i && i->await_reader) {
			u64 now = bpf_ktime_get_ns();
			i->await_reader = 0;
			trace_exchange_taken(i, sk, i->edge.role == ROLE_CLIENT ?
					     i->exchange_start_ns : now, now);
		}
	}
	segment_socket_io((u32)bpf_get_current_pid_tgid(), sk, 0);
}

#ifdef TRACE_WIRE_BTF
RAW_TRACEPOINT_PROBE(tcp_rcv_space_adjust)
{
	tcp_read(ctx->args[0]);
	return 0;
}
#else
TRACEPOINT_PROBE(tcp, tcp_rcv_space_adjust)
{
	tcp_read((u64)args->skaddr);
	return 0;
}
#endif
#endif
