/* Trace contexts on the wire: the W3C traceparent (or b3 single) header of
 * HTTP/1.x requests, found by cgroup_skb programs on the packets that carry
 * them (ingress: a server receives a request; egress: a client sends one).
 * Only TCP segments that start with an HTTP method are looked at, and only
 * their first SCAN_BYTES of payload; the parsed IDs are kept per flow until
 * the receiving (or sending) thread's exchange begins in tcp/exchanges.h, which
 * then opens a segment for it.  Nothing else of the payload is kept.
 * cgroup_skb programs must return 1 to let the packet through; these
 * always do. */

#include "common.h"
#include "pending_traces.h"
#include "trace_context.h"

struct scan_buffer {
	u32 at;     /* where the header's value starts (see find_trace_context) */
	u32 is_b3;
	u8 bytes[SCAN_BYTES + 64];  /* slack: a header found near the end is read whole */
};

BPF_PERCPU_ARRAY(trace_scan, struct scan_buffer, 1);

#define METHOD(a, b, c, d) ((u32)(a) | (u32)(b) << 8 | (u32)(c) << 16 | (u32)(d) << 24)

static __always_inline int http_request_start(u32 w)
{
	switch (w) {
	case METHOD('G', 'E', 'T', ' '):
	case METHOD('P', 'O', 'S', 'T'):
	case METHOD('P', 'U', 'T', ' '):
	case METHOD('D', 'E', 'L', 'E'):
	case METHOD('P', 'A', 'T', 'C'):
	case METHOD('H', 'E', 'A', 'D'):
	case METHOD('O', 'P', 'T', 'I'):
		return 1;
	}
	return 0;
}

/* b3 single header: "<16 or 32 hex trace id>-<16 hex span id>[-<sampling>[-...]]"
 * at `p`, `left` bytes of which are real; 0 if valid. */
static __always_inline int parse_b3(struct trace_context *ctx, const u8 *p, u32 left)
{
	u32 id_len = p[32] == '-' ? 32 : p[16] == '-' ? 16 : 0;
	if (!id_len || left < id_len + 17)
		return -1;
	int bad;
	if (id_len == 32) {
		bad = hex_decode(ctx->trace_id, p, 16);
		bad |= hex_decode(ctx->span_id, p + 33, 8);
	} else {
		bad = hex_decode(ctx->trace_id + 8, p, 8);
		bad |= hex_decode(ctx->span_id, p + 17, 8);
	}
	bad |= all_zero(ctx->trace_id, 16) | all_zero(ctx->span_id, 8);
	if (bad)
		return -1;
	/* Sampling: '1' or 'd' (debug) sampled, '0' not, absent: sampled (the
	 * sender deferred the decision; we would rather see it). */
	u8 sampling = left > id_len + 18 && p[id_len + 17] == '-' ? p[id_len + 18] : '1';
	ctx->flags = sampling != '0';
	ctx->source = CONTEXT_B3;
	return 0;
}

static __always_inline int name_matches(const u8 *p, const char *lower, int n)
{
	u8 diff = 0;
#pragma unroll
	for (int i = 0; i < 12; i++)
		if (i < n)
			diff |= (p[i] | 0x20) ^ lower[i];
	return diff == 0;
}

/* Header names, lower-cased, as little-endian words: "\ntracepa" and
 * "\nb3:".  OR-ing 0x20 into the letters' bytes lower-cases them. */
#define TRACEPARENT_HEAD 0x617065636172740aULL
#define TRACEPARENT_FOLD 0x2020202020202000ULL
#define B3_HEAD 0x3a33620aU
#define B3_FOLD 0x00002000U

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL
#define NEWLINES 0x0a0a0a0a0a0a0a0aULL

/* Header lines start after a '\n': look for one 8 bytes at a time (a word
 * has a zero byte where it had a newline after XOR with NEWLINES, and
 * (x - ONES) & ~x & HIGHS is non-zero exactly when x has a zero byte), and
 * compare header names only at the 8 offsets of a word that has one. */
static __always_inline int scan_offset(struct scan_buffer *buf, u32 p)
{
	u64 w = *(u64 *)(buf->bytes + p);
	if ((w | TRACEPARENT_FOLD) == TRACEPARENT_HEAD) {
		buf->at = p + 8;
		buf->is_b3 = 0;
		return 1;
	}
	if (((u32)w | B3_FOLD) == B3_HEAD) {
		buf->at = p + 4;
		buf->is_b3 = 1;
		return 1;
	}
	return 0;
}

/* Find a trace context header in the first `len` bytes of buf; 0 if found.
 * Where the scan stopped is stored in the buffer and read back, so the
 * verifier checks the parsing after it once instead of once per offset. */
static __always_inline int find_trace_context(struct trace_context *ctx, struct scan_buffer *buf,
					      u32 len)
{
	buf->at = 0;
#pragma clang loop unroll(disable)
	for (u32 i = 0; i < SCAN_BYTES - 16; i += 8) {
		if (i + 16 > len)
			return -1;
		u64 x = *(u64 *)(buf->bytes + i) ^ NEWLINES;
		if (!((x - ONES) & ~x & HIGHS))
			continue;
		int found = 0;
#pragma unroll
		for (u32 j = 0; j < 8; j++) {
			if (i + j + 16 > len)
				return -1;
			if (scan_offset(buf, i + j)) {
				found = 1;
				break;
			}
		}
		if (found)
			break;
	}
	u32 at = *(volatile u32 *)&buf->at & (SCAN_BYTES - 1);
	if (!at)
		return -1;
	const u8 *b = buf->bytes;
	if (!*(volatile u32 *)&buf->is_b3) {
		if (!name_matches(b + at, "rent:", 5))
			return -1;
		at += 5;
	}
	/* Optional whitespace after the colon. */
	if (b[at] == ' ')
		at++;
	if (b[at] == ' ')
		at++;
	at &= SCAN_BYTES - 1;
	u32 left = len > at ? len - at : 0;
	if (*(volatile u32 *)&buf->is_b3)
		return parse_b3(ctx, b + at, left);
	if (left < TRACEPARENT_LEN)
		return -1;
	return parse_traceparent(ctx, b + at);
}

static __always_inline void v4_mapped(u8 *dst, const u8 *v4)
{
	dst[10] = 0xff;
	dst[11] = 0xff;
	__builtin_memcpy(dst + 12, v4, 4);
}

/* The flow of a packet that carried a trace context, as its socket sees it;
 * `h` holds its IP header and the TCP header's first bytes. */
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
/* The shortest request worth a look: a request line and a header. */
#define REQUEST_MIN 24

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

static __always_inline int trace_skb(struct __sk_buff *skb, int ingress)
{
	/* Every packet on the node comes here: the headers and the payload's
	 * first bytes are read, and out unless it starts a request.  Packets
	 * too short for a request line and a header (bare ACKs) leave before
	 * any read. */
	u8 h[HEAD_BYTES] = {};
	if (skb->len < HEAD_BYTES_V4 + REQUEST_MIN)
		return 1;
	u32 ip_len = packet_headers(skb, h);
	if (!ip_len)
		return 1;
	u32 off = ip_len + (h[(ip_len + 12) & 0x3f] >> 4) * 4;
	if (skb->len < off + REQUEST_MIN)
		return 1;
	u32 zero = 0;
	struct scan_buffer *buf = trace_scan.lookup(&zero);
	if (!buf || bpf_skb_load_bytes(skb, off, buf->bytes, REQUEST_MIN) ||
	    !http_request_start(*(u32 *)buf->bytes))
		return 1;

	/* A request: the rest of its first SCAN_BYTES. */
	u64 len = skb->len - off;
	if (len > SCAN_BYTES)
		len = SCAN_BYTES;
	u64 rest = len - REQUEST_MIN;
	/* Bounds the verifier can see, whatever clang made of the above. */
	asm volatile("" : "+r"(rest));
	if (rest > SCAN_BYTES - REQUEST_MIN)
		return 1;
	if (rest && bpf_skb_load_bytes(skb, off + REQUEST_MIN, buf->bytes + REQUEST_MIN, rest))
		return 1;
	struct trace_context tc = {};
	if (find_trace_context(&tc, buf, len) || (!(tc.flags & 1) && !TRACE_UNSAMPLED))
		return 1;
	struct flow f = {};
	packet_flow(h, ip_len, ingress, &f);
	pending_traces.update(&f, &tc);
	/* Tells exchanges that a lookup in pending_traces may find something. */
	u64 *seen = pending_seen.lookup(&zero);
	if (seen)
		*seen = bpf_ktime_get_ns();
	return 1;
}

int trace_ingress(struct __sk_buff *skb)
{
	return trace_skb(skb, 1);
}

int trace_egress(struct __sk_buff *skb)
{
	return trace_skb(skb, 0);
}
