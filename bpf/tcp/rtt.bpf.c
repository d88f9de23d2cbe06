/* RTT from tcp:tcp_probe (4.16+), where the send and receive hooks cannot
 * sample it (see rtt.h). */

#include "rtt.h"

#ifdef TCP_RTT
#if defined(TCP_RTT_ON_IO) || defined(TCP_RTT_ON_PACKETS)
/* Sampled where the socket's traffic is seen anyway. */
#elif defined(TCP_RTT_BTF)
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

