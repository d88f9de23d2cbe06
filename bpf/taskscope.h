/* Shared by every taskscope probe: who a sample belongs to, log2 slots,
 * and the drop counter.  Sizes, enum values and limits arrive as -D flags
 * from agent/kernel_abi.py, the single place they are defined. */
#ifndef TASKSCOPE_H
#define TASKSCOPE_H

#include <uapi/linux/ptrace.h>

#define IPPROTO_TCP_ 6

/* Whom a sample is charged to: the v2 cgroup of the task and the identity
 * of its process (a hash of its OTEL_SERVICE_NAME or of its comm).  Keying
 * by identity rather than tgid keeps entries from leaking as processes come
 * and go, while still separating services that share a cgroup. */
struct owner {
	u64 cgroup_id;
	u64 ident;
};

struct ident_name {
	u32 kind;                       /* IDENT_KIND_* */
	char name[SERVICE_NAME_LEN];
};

struct hist_value {
	u64 count;
	u64 sum_ns;
};

BPF_PERCPU_ARRAY(drops, u64, DROP_REASONS);
/* What the kernel side knows of a process. */
struct process {
	u64 ident;         /* 0: not known yet */
	u32 counter_slot;  /* 1 + its owner's index in per-CPU counter arrays; 0: none yet */
	u32 pad;
};

/* tgid -> process.  An array indexed by pid: a load is a few instructions
 * where a hash update costs hundreds of nanoseconds, and a recycled pid is
 * overwritten at fork.  PID_SLOTS is the kernel's pid_max (capped); a larger
 * pid is counted as a drop and named by comm each time. */
BPF_ARRAY(processes, struct process, PID_SLOTS);
/* identity -> its name; shared by every process of a service, so small. */
BPF_HASH(ident_names, u64, struct ident_name, MAX_IDENTITIES);

static __always_inline void count_drop(u32 reason)
{
	u64 *n = drops.lookup(&reason);
	if (n)
		(*n)++;
}

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

/* FNV-1a over the kind and the NUL-terminated name; agent/identity.py
 * computes the same value for processes found at start-up. */
static __always_inline u64 ident_hash(const struct ident_name *n)
{
	u64 h = 14695981039346656037ULL;
	h = (h ^ n->kind) * 1099511628211ULL;
#pragma unroll
	for (int i = 0; i < SERVICE_NAME_LEN; i++) {
		if (n->name[i] == 0)
			break;
		h = (h ^ (u8)n->name[i]) * 1099511628211ULL;
	}
	return h;
}

static __always_inline void set_identity(u32 tgid, u64 ident)
{
	struct process *p = processes.lookup(&tgid);
	if (!p) {
		count_drop(DROP_PID_OUT_OF_RANGE);
		return;
	}
	p->ident = ident;
	p->counter_slot = 0;
}

static __always_inline u64 remember_identity(u32 tgid, struct ident_name *n)
{
	u64 ident = ident_hash(n);
	if (ident_names.insert(&ident, n) && !ident_names.lookup(&ident))
		count_drop(DROP_IDENT_NAMES);
	set_identity(tgid, ident);
	return ident;
}

/* The identity of the current process; a process that predates the agent
 * and was missed by its /proc scan is named after its comm on first sight. */
static __always_inline u64 current_ident(void)
{
	u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct process *p = processes.lookup(&tgid);
	if (p && p->ident)
		return p->ident;
	struct ident_name n = {.kind = IDENT_KIND_COMM};
	bpf_get_current_comm(&n.name, sizeof(n.name));
	return remember_identity(tgid, &n);
}

static __always_inline void current_owner(struct owner *o)
{
	o->cgroup_id = bpf_get_current_cgroup_id();
	o->ident = current_ident();
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

/* Counters bumped on every send and receive live in per-CPU arrays indexed
 * by a small per-owner slot, cached in the process entry: the hot path is
 * then two array loads and an add, no hash, no atomic.  A slot is claimed on
 * the process's first event after exec (fork inherits it) by inserting into
 * counter_slot_owners, whose insert is atomic; slots are never reused, and
 * index 0 collects what comes after they run out.  A process moved to
 * another cgroup without exec keeps its slot until it execs. */
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
	if (p && slot)
		p->counter_slot = slot + 1;
	return slot;
}

#endif
