/* The cgroup_skb programs: every packet of every socket on the node, in
 * every container and network namespace, seen at the IP layer of this
 * host (attached to the cgroup v2 root by agent/kernel/packet_hooks.py).
 * A TCP packet with payload feeds the exchange, byte and RTT counting
 * (tcp/packets.h, TCP_PACKETS); one whose payload starts an HTTP request
 * goes on, by a tail call, to the trace-context reader (traceparent.h,
 * TRACE_WIRE).  Two programs, because the verifiers before 6.x give up on
 * one that holds both ("Argument list too long" on 6.1), and only requests
 * pay for the second.  cgroup_skb programs must return 1 to let the packet
 * through; these always do. */

#include "packet.h"
#include "tcp/packets.h"
#include "traceparent.h"

#ifdef TRACE_WIRE
/* [0]: wire_ingress, [1]: wire_egress, set by user space once loaded. */
BPF_PROG_ARRAY(packet_wire, 2);
#endif

/* The packet's headers into `h`; the payload's offset, or 0 when the packet
 * has none (an ACK, a SYN, a bare FIN) or is no TCP. */
static __always_inline u32 payload_of(struct __sk_buff *skb, u8 *h, u32 *ip_len)
{
	/* Too short for payload behind the smallest IP and TCP headers. */
	if (skb->len <= HEAD_BYTES_V4)
		return 0;
	*ip_len = packet_headers(skb, h);
	if (!*ip_len)
		return 0;
	u32 off = payload_offset(h, *ip_len);
	return skb->len > off ? off : 0;
}

static __always_inline int on_packet(struct __sk_buff *skb, int ingress)
{
	u8 h[HEAD_BYTES] = {};
	u32 ip_len = 0;
	u32 off = payload_of(skb, h, &ip_len);
	if (!off)
		return 1;
#ifdef TCP_PACKETS
	tcp_packet(skb, h, ip_len, off, ingress);
#endif
#ifdef TRACE_WIRE
	u32 method = 0;
	if (skb->len >= off + REQUEST_MIN && !bpf_skb_load_bytes(skb, off, &method, 4) &&
	    http_request_start(method))
		packet_wire.call(skb, ingress ? 0 : 1);
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

#ifdef TRACE_WIRE
static __always_inline int on_request(struct __sk_buff *skb, int ingress)
{
	u8 h[HEAD_BYTES] = {};
	u32 ip_len = 0;
	u32 off = payload_of(skb, h, &ip_len);
	if (off)
		trace_skb(skb, h, ip_len, off, ingress);
	return 1;
}

int wire_ingress(struct __sk_buff *skb)
{
	return on_request(skb, 1);
}

int wire_egress(struct __sk_buff *skb)
{
	return on_request(skb, 0);
}
#endif
