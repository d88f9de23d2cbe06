/* A TCP packet as the cgroup_skb programs see it (packets.bpf.c): the few
 * header fields every packet needs, read in place, and its flow as the
 * socket sees it, read only when it is needed. */
#ifndef TASKSCOPE_PACKET_H
#define TASKSCOPE_PACKET_H

#include "common.h"

/* What every packet's program needs of its headers. */
struct packet {
	u32 ip_len;  /* the IP header's length */
	u32 off;     /* where the TCP payload starts */
	u32 seq;     /* the TCP sequence number of its first payload byte */
	u32 len;     /* payload bytes: 0 for an ACK, a SYN, a bare FIN */
};

/* The IP header's length, from its bytes 0, 6, 7 and 9; 0 unless the
 * packet is TCP and not a fragment (flags MF or an offset). */
static __always_inline u32 tcp_ip_len(u8 b0, u8 b6, u8 b7, u8 b9)
{
	if ((b0 >> 4) == 4) {
		u32 ip_len = (b0 & 0xf) * 4;
		return b9 == IPPROTO_TCP_ && !(b6 & 0x3f) && !b7 && ip_len >= 20 ? ip_len : 0;
	}
	if ((b0 >> 4) == 6)
		return b6 == IPPROTO_TCP_ ? 40 : 0;
	return 0;
}

/* The rest of `p` from the TCP header's sequence number and data-offset
 * byte; 1 when the packet has payload. */
static __always_inline int packet_fill(struct packet *p, u32 ip_len, u32 seq, u8 doff,
				       u32 skb_len)
{
	p->ip_len = ip_len;
	p->seq = seq;
	p->off = ip_len + (doff >> 4) * 4;
	p->len = skb_len > p->off ? skb_len - p->off : 0;
	return p->len != 0;
}

/* packet_read's fallback: the fields from `h`, whose first `have` bytes
 * are the packet's, on the stack (where loads must be aligned: byte by
 * byte). */
static __always_inline int packet_parse_copy(const u8 *h, u32 have, u32 skb_len,
					     struct packet *p)
{
	u32 ip_len = tcp_ip_len(h[0], h[6], h[7], h[9]);
	if (!ip_len || ip_len > 40 || ip_len + 20 > have)
		return 0;
	const u8 *t = h + (ip_len & 0x3c);
	return packet_fill(p, ip_len, (u32)t[4] << 24 | (u32)t[5] << 16 | (u32)t[6] << 8 | t[7],
			   t[12], skb_len);
}

/* The packet's header fields into `p`; 1 if it is TCP with payload, else 0
 * (not TCP, a fragment, or no payload: let it be).  The headers are in the
 * linear part of the packet at these hooks, so they are read in place with
 * a load per field (no copy: copying 60 bytes through the stack cost more
 * than the rest of a packet's program); reading through the helper, which
 * also reaches page fragments, is only the fallback. */
static __always_inline int packet_read(struct __sk_buff *skb, struct packet *p)
{
	u32 skb_len = skb->len;
	/* Too short for payload behind the smallest IP and TCP headers. */
	if (skb_len <= 40)
		return 0;
	u8 *data = (u8 *)(long)skb->data, *end = (u8 *)(long)skb->data_end;
	if (data + 40 > end) {
		u8 h[60];
		u32 have = skb_len >= 60 ? 60 : 40;
		if (have == 60 ? bpf_skb_load_bytes(skb, 0, h, 60) : bpf_skb_load_bytes(skb, 0, h, 40))
			return 0;
		return packet_parse_copy(h, have, skb_len, p);
	}
	u32 ip_len = tcp_ip_len(data[0], data[6], data[7], data[9]);
	if (!ip_len)
		return 0;
	u8 *t = data + ip_len;
	if (t + 20 > end)
		return 0;
	return packet_fill(p, ip_len, __builtin_bswap32(*(u32 *)(t + 4)), t[12], skb_len);
}

/* A TCP flow as the socket sees it: addresses as v4-mapped IPv6, ports in
 * host order. */
struct flow {
	u8 local[16];
	u8 peer[16];
	u16 local_port;
	u16 peer_port;
	u32 pad;
};

static __always_inline void v4_mapped(u8 *dst, const u8 *v4)
{
	dst[10] = 0xff;
	dst[11] = 0xff;
	__builtin_memcpy(dst + 12, v4, 4);
}

/* The flow of a packet read by packet_read, as its socket sees it (zeroed
 * by the caller); 0 on success.  Only a request's context and an unknown
 * socket's adoption need it, so its addresses are copied here, not in
 * every packet's program. */
static __always_inline int packet_flow(struct __sk_buff *skb, const struct packet *p, int ingress,
				       struct flow *f)
{
	u8 h[68] = {};
	/* Up to the ports: ip_len + 4 bytes, 24..64; the size is passed as
	 * (n - 24) + 24 so that verifiers before 6.x see it is never 0. */
	u64 more = p->ip_len - 20;
	asm volatile("" : "+r"(more));
	if (more > 40 || bpf_skb_load_bytes(skb, 0, h, more + 24))
		return -1;
	const u8 *ports = h + (p->ip_len & 0x3c);
	u16 sport = (u16)ports[0] << 8 | ports[1], dport = (u16)ports[2] << 8 | ports[3];
	f->local_port = ingress ? dport : sport;
	f->peer_port = ingress ? sport : dport;
	if ((h[0] >> 4) == 6) {
		__builtin_memcpy(ingress ? f->peer : f->local, h + 8, 16);
		__builtin_memcpy(ingress ? f->local : f->peer, h + 24, 16);
	} else {
		v4_mapped(ingress ? f->peer : f->local, h + 12);
		v4_mapped(ingress ? f->local : f->peer, h + 16);
	}
	return 0;
}

#endif
