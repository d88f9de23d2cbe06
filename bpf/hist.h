/* Log2 histograms built in the kernel: a slot per power of two of
 * nanoseconds (clamped at MAX_SLOT), each with a count and a sum. */
#ifndef TASKSCOPE_HIST_H
#define TASKSCOPE_HIST_H

#include "drops.h"

struct hist_value {
	u64 count;
	u64 sum_ns;
};

static __always_inline u32 log2_slot(u64 v)
{
	u32 slot = 0;
	/* Binary search for the highest set bit: six steps, no loop. */
	if (v >> 32) { v >>= 32; slot += 32; }
	if (v >> 16) { v >>= 16; slot += 16; }
	if (v >> 8)  { v >>= 8;  slot += 8; }
	if (v >> 4)  { v >>= 4;  slot += 4; }
	if (v >> 2)  { v >>= 2;  slot += 2; }
	if (v >> 1)  { slot += 1; }
	return slot > MAX_SLOT ? MAX_SLOT : slot;
}

/* Add `count` samples summing to `sum_ns` to the histogram entry the caller
 * looked up (or created) with lookup_or_try_init; a NULL entry means the map
 * was full. */
static __always_inline void hist_add_many(struct hist_value *hv, u64 count, u64 sum_ns,
					  u32 drop_reason)
{
	if (!hv) {
		count_drop(drop_reason);
		return;
	}
	__sync_fetch_and_add(&hv->count, count);
	__sync_fetch_and_add(&hv->sum_ns, sum_ns);
}

static __always_inline void hist_add(struct hist_value *hv, u64 value_ns, u32 drop_reason)
{
	hist_add_many(hv, 1, value_ns, drop_reason);
}

#endif
