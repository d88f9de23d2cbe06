/* The cgroup_skb programs: every packet of every socket on the node, in
 * every container and network namespace, seen at the IP layer of this
 * host (attached to the cgroup v2 root by agent/kernel/packet_hooks.py).
 * A TCP packet with payload feeds the trace-context reader (traceparent.h,
 * TRACE_WIRE) and the exchange, byte and RTT counting (tcp/packets.h,
 * TCP_PACKETS); anything else leaves after its headers.  cgroup_skb
 * programs must return 1 to let the packet through; these always do. */

#include "packet.h"
#include "tcp/packets.h"
#include "traceparent.h"

static __always_inline int on_packet(struct __sk_buff *skb, int ingress)
{
	/* Too short for payload behind the smallest IP and TCP headers. */
	if (skb->len <= HEAD_BYTES_V4)
		return 1;
	u8 h[HEAD_BYTES] = {};
	u32 ip_len = packet_headers(skb, h);
	if (!ip_len)
		return 1;
	u32 off = payload_offset(h, ip_len);
	if (skb->len <= off)
		return 1;  /* no payload: an ACK, a SYN, a bare FIN */
#ifdef TRACE_WIRE
	/* First: a client's request that carries a context must find it
	 * pending when its exchange begins. */
	trace_skb(skb, h, ip_len, off, ingress);
#endif
#ifdef TCP_PACKETS
	tcp_packet(skb, h, ip_len, off, ingress);
#endif
	return 1;
}

int packet_ingress(struct __sk_buff *skb)
{
	return on_packet(skb, 1);
}

int packet_egress(struct __sk_buff *skb)
{
	return on_packet(skb, 0);
}
