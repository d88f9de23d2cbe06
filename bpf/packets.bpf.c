/* The cgroup_skb programs: every packet of every socket on the node, in
 * every container and network namespace, seen at the IP layer of this
 * host (attached to the cgroup v2 root by agent/kernel/packet_hooks.py).
 * A TCP packet with payload feeds the exchange, byte and RTT counting
 * (tcp/packets.h, TCP_PACKETS); one that begins a request goes on, by a
 * tail call, to the trace-context reader (traceparent.h, TRACE_WIRE).
 * Two programs, because the verifiers before 6.x give up on one that holds
 * both ("Argument list too long" on 6.1), and only requests pay for the
 * second.  cgroup_skb programs must return 1 to let the packet
 * through; these always do. */

#include "packet.h"
#include "tcp/packets.h"
#include "traceparent.h"

#ifdef TRACE_WIRE
/* [0]: wire_ingress, [1]: wire_egress, set by user space once loaded. */
BPF_PROG_ARRAY(packet_wire, 2);
#endif

/* On to the wire program of the packet's direction (no return on success). */
static __always_inline void wire_reader(struct __sk_buff *skb, int ingress)
{
#ifdef TRACE_WIRE
	packet_wire.call(skb, ingress ? 0 : 1);
#endif
}

static __always_inline int on_packet(struct __sk_buff *skb, int ingress)
{
	struct packet p = {};
	if (!packet_read(skb, &p))
		return 1;
#ifdef TCP_PACKETS
	/* A request begins on a connection of the graph: only then can it carry
	 * a trace context worth reading. */
	if (tcp_packet(skb, &p, ingress) == PACKET_REQUEST_BEGAN)
		wire_reader(skb, ingress);
#elif defined(TRACE_WIRE)
	/* No exchanges here to say where requests begin: every packet that
	 * starts with a method is one. */
	u32 method = 0;
	if (p.len >= REQUEST_MIN && !bpf_skb_load_bytes(skb, p.off, &method, 4) &&
	    http_request_start(method))
		wire_reader(skb, ingress);
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
	struct packet p = {};
	if (packet_read(skb, &p) && trace_skb(skb, &p, ingress)) {
#if defined(TCP_TRACES) && defined(TCP_PACKETS)
		tcp_packet_traced(skb);
#endif
	}
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
