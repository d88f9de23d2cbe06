/* Samples and entries lost, by reason (DROP_*, from agent/kernel_abi.py):
 * every map that can fill counts here what it could not take. */
#ifndef TASKSCOPE_DROPS_H
#define TASKSCOPE_DROPS_H

#include "common.h"

BPF_PERCPU_ARRAY(drops, u64, DROP_REASONS);

static __always_inline void count_drop(u32 reason)
{
	u64 *n = drops.lookup(&reason);
	if (n)
		(*n)++;
}

#endif
