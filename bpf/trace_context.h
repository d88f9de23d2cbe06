/* A trace context (W3C traceparent, b3, or the marker library's argument):
 * the IDs only, never the bytes they were read from, and the parser of the
 * W3C form shared by the wire capture and the marker uprobes. */
#ifndef TASKSCOPE_TRACE_CONTEXT_H
#define TASKSCOPE_TRACE_CONTEXT_H

#include "common.h"

struct trace_context {
	u8 trace_id[16];
	u8 span_id[8];
	u8 flags;       /* W3C trace-flags: bit 0 = sampled */
	u8 source;      /* CONTEXT_* */
	u8 pad[6];
};

/* Hex digits are decoded without branches: each branch on a payload byte
 * doubles the paths the verifier has to walk.  For a digit or letter c,
 * (c & 0xf) + 9 * (c >> 6) is its value; re-encoding that value and
 * comparing it with c tells whether c was a hex digit.  Lower-case only:
 * W3C trace context (and b3) write IDs in lower-case hex, and a
 * traceparent with upper-case digits is invalid, so it is ignored. */
static __always_inline u32 hex_value(u8 c)
{
	return (c & 0xf) + 9 * (c >> 6);
}

static __always_inline u32 hex_invalid(u8 c, u32 v)
{
	u32 letter = ((v + 6) >> 4) & 1;  /* 1 for 10..15 */
	u32 expected = '0' + v + letter * ('a' - '0' - 10);
	return (v >> 4) | (c ^ expected);
}

/* Decode `n` bytes from 2n hex digits; 0 on success.  Not unrolled:
 * unrolled, clang schedules every load first and spills past the stack. */
static __always_inline int hex_decode(u8 *out, const u8 *in, int n)
{
	u32 bad = 0;
#pragma clang loop unroll(disable)
	for (int i = 0; i < n; i++) {
		u8 a = in[2 * i], b = in[2 * i + 1];
		u32 hi = hex_value(a), lo = hex_value(b);
		bad |= hex_invalid(a, hi) | hex_invalid(b, lo);
		out[i] = (u8)((hi << 4) | lo);
	}
	return bad != 0;
}

static __always_inline int all_zero(const u8 *b, int n)
{
	u8 acc = 0;
#pragma unroll
	for (int i = 0; i < 16; i++)
		if (i < n)
			acc |= b[i];
	return acc == 0;
}

/* "00-<32 hex trace id>-<16 hex span id>-<2 hex flags>" at `p`; 0 if valid. */
static __always_inline int parse_traceparent(struct trace_context *ctx, const u8 *p)
{
	if ((p[0] ^ '0') | (p[1] ^ '0') | (p[2] ^ '-') | (p[35] ^ '-') | (p[52] ^ '-'))
		return -1;
	/* No || between the steps: short-circuits here make clang spill
	 * past the BPF stack. */
	int bad = hex_decode(ctx->trace_id, p + 3, 16);
	bad |= hex_decode(ctx->span_id, p + 36, 8);
	bad |= hex_decode(&ctx->flags, p + 53, 1);
	bad |= all_zero(ctx->trace_id, 16) | all_zero(ctx->span_id, 8);
	if (bad)
		return -1;
	ctx->source = CONTEXT_TRACEPARENT;
	return 0;
}

#define TRACEPARENT_LEN 55

#endif
