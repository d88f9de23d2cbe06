/* Trace contexts on the wire: the W3C traceparent (or b3 single) header of
 * HTTP/1.x requests, found by cgroup_skb programs on the packets that carry
 * them (ingress: a server receives a request; egress: a client sends one).
 * Only TCP segments that start with an HTTP method are looked at, and only
 * their first SCAN_BYTES of payload; the parsed IDs are kept per flow until
 * the receiving (or sending) thread's exchange begins in tcp/exchanges.h, which
 * then opens a segment for it.  Nothing else of the payload is kept.
 * Only with the trace_wire probe (TRACE_WIRE); the programs that call it
 * are in packets.bpf.c. */
#ifndef TASKSCOPE_TRACEPARENT_H
#define TASKSCOPE_TRACEPARENT_H

#include "packet.h"
#include "pending_traces.h"
#include "trace_context.h"

#ifdef TRACE_WIRE
/* The shortest request worth a look: a request line and a header. */
#define REQUEST_MIN 24

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

/* Zero the first `len` bytes of the scratch buffer (rounded up to 64): the
 * buffer outlives the packet, and payload bytes (cookies, tokens) must not
 * sit in a map anyone with CAP_BPF could dump.  Only what was read is
 * cleared, so a short request costs a short clear. */
static __always_inline void scan_clear(struct scan_buffer *buf, u32 len)
{
#pragma unroll
	for (u32 i = 0; i < SCAN_BYTES / 64; i++) {
		if (i * 64 >= len)
			break;
		__builtin_memset(buf->bytes + i * 64, 0, 64);
	}
}

/* A packet that may begin a request (its header fields in `p`): if it does,
 * look for a trace context in its first SCAN_BYTES and, if one is found,
 * leave it in pending_traces for the request's exchange.  Returns 1 when a
 * context was left there. */
static __always_inline int trace_skb(struct __sk_buff *skb, const struct packet *p, int ingress)
{
	if (p->len < REQUEST_MIN)
		return 0;
	u32 zero = 0;
	struct scan_buffer *buf = trace_scan.lookup(&zero);
	if (!buf)
		return 0;
	u32 len = p->len > SCAN_BYTES ? SCAN_BYTES : p->len;
	/* One read of all that is scanned.  The size goes as (len - REQUEST_MIN)
	 * + REQUEST_MIN: bounds the verifier can see whatever clang made of the
	 * above, and a size it knows is not 0, which verifiers before 6.x
	 * cannot learn from a test ("invalid access to map value ... size=0"
	 * on 6.1). */
	u64 more = len - REQUEST_MIN;
	asm volatile("" : "+r"(more));
	if (more > SCAN_BYTES - REQUEST_MIN ||
	    bpf_skb_load_bytes(skb, p->off, buf->bytes, more + REQUEST_MIN))
		return 0;
	int found = 0;
	struct trace_context tc = {};
	if (http_request_start(*(u32 *)buf->bytes) && !find_trace_context(&tc, buf, len) &&
	    ((tc.flags & 1) || TRACE_UNSAMPLED)) {
		struct flow f = {};
		if (!packet_flow(skb, p, ingress, &f)) {
			pending_traces.update(&f, &tc);
			/* Tells exchanges that a lookup in pending_traces may
			 * find something. */
			u64 *seen = pending_seen.lookup(&zero);
			if (seen)
				*seen = bpf_ktime_get_ns();
			found = 1;
		}
	}
	scan_clear(buf, len);
	return found;
}
#endif

#endif
