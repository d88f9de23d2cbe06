/* Counters bumped on every send and receive live in per-CPU arrays indexed
 * by a small per-owner slot, cached in the process entry: the hot path is
 * then two array loads and an add, no hash, no atomic.  A slot is claimed on
 * the process's first event after exec (fork inherits it) by inserting into
 * counter_slot_owners, whose insert is atomic; index 0 collects what comes
 * after they run out, and that outcome is cached like a slot, so a process
 * that found none never retries on its hot path.  Slots of owners that are
 * gone are freed by user space (agent/reclaim.py), which also clears the
 * cached results that pointed at them or at index 0.  A process moved to
 * another cgroup without exec keeps its slot until it execs. */
#ifndef TASKSCOPE_COUNTER_SLOTS_H
#define TASKSCOPE_COUNTER_SLOTS_H

#include "identity.h"

BPF_HASH(counter_slot_owners, u32, struct owner, MAX_COUNTER_SLOTS);

#define SLOT_PROBES 8

static __always_inline u32 claim_counter_slot(struct owner *o)
{
	u32 h = (u32)(o->ident ^ (o->ident >> 32) ^ (o->cgroup_id * 0x9E3779B1));
#pragma unroll
	for (int i = 0; i < SLOT_PROBES; i++) {
		u32 slot = 1 + (h + i) % (MAX_COUNTER_SLOTS - 1);
		if (!counter_slot_owners.insert(&slot, o))
			return slot;
		struct owner *holder = counter_slot_owners.lookup(&slot);
		if (holder && holder->cgroup_id == o->cgroup_id && holder->ident == o->ident)
			return slot;
	}
	count_drop(DROP_COUNTER_SLOTS);
	return 0;
}

/* The counter slot of the current process, whose id is `tgid`. */
static __always_inline u32 counter_slot_of(u32 tgid)
{
	struct process *p = processes.lookup(&tgid);
	if (p && p->counter_slot)
		return p->counter_slot - 1;
	struct owner o;
	current_owner(&o);
	u32 slot = claim_counter_slot(&o);
	p = processes.lookup(&tgid);
	if (p)
		p->counter_slot = slot + 1;  /* slot 0 (none free) is cached too */
	return slot;
}

#endif
