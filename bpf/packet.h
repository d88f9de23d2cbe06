/* A TCP packet as the cgroup_skb programs see it (packets.bpf.c): its IP
 * and TCP headers, read in place, and its flow as the socket sees it. */
#ifndef TASKSCOPE_PACKET_H
#define TASKSCOPE_PACKET_H

#include "common.h"

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

/* The flow of a packet as its socket sees it; `h` holds its IP header and
 * the TCP header's first bytes. */
static __always_inline void packet_flow(const u8 *h, u32 ip_len, int ingress, struct flow *f)
{
	const u8 *ports = h + (ip_len & 0x3f);
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
}

/* An IPv6 header and TCP's first 20 bytes; IPv4 without options needs 40. */
#define HEAD_BYTES 60
#define HEAD_BYTES_V4 40
/* The packet's IP and TCP headers into `h` (zeroed by the caller).  They are
 * in the linear part of the packet at this hook: read in place, which costs
 * less than the helper that can also read page fragments; the helper is only
 * a fallback.  Returns the IP header's length, or 0 to let the packet be. */
static __always_inline u32 packet_headers(struct __sk_buff *skb, u8 *h)
{
	u8 *data = (u8 *)(long)skb->data, *data_end = (u8 *)(long)skb->data_end;
	u32 have = 0;
	if (data + HEAD_BYTES <= data_end) {
		__builtin_memcpy(h, data, HEAD_BYTES);
		have = HEAD_BYTES;
	} else if (data + HEAD_BYTES_V4 <= data_end) {
		__builtin_memcpy(h, data, HEAD_BYTES_V4);
		have = HEAD_BYTES_V4;
	}
	u32 ip_len;
	if (!have) {
		if (bpf_skb_load_bytes(skb, 0, h, HEAD_BYTES))
			return 0;
		have = HEAD_BYTES;
	}
	if ((h[0] >> 4) == 4) {
		/* TCP, and not a fragment (flags MF or an offset). */
		if (h[9] != IPPROTO_TCP_ || (h[6] & 0x3f) || h[7])
			return 0;
		ip_len = (h[0] & 0xf) * 4;
		if (ip_len < 20 || ip_len > 40)
			return 0;
	} else if ((h[0] >> 4) == 6) {
		if (h[6] != IPPROTO_TCP_)
			return 0;
		ip_len = 40;
	} else {
		return 0;
	}
	if (ip_len + 20 > have && bpf_skb_load_bytes(skb, 0, h, HEAD_BYTES))
		return 0;
	return ip_len;
}

/* Where the TCP payload starts: after the IP header and the TCP header's
 * data offset. */
static __always_inline u32 payload_offset(const u8 *h, u32 ip_len)
{
	return ip_len + (h[(ip_len + 12) & 0x3f] >> 4) * 4;
}

/* The TCP sequence number of the packet's first payload byte. */
static __always_inline u32 packet_seq(const u8 *h, u32 ip_len)
{
	const u8 *t = h + (ip_len & 0x3f);
	return (u32)t[4] << 24 | (u32)t[5] << 16 | (u32)t[6] << 8 | t[7];
}

#endif
