/* Shared by every taskscope probe: who a sample belongs to, log2 slots,
 * and the drop counter.  Sizes, enum values and limits arrive as -D flags
 * from agent/kernel_abi.py, the single place they are defined. */
#ifndef TASKSCOPE_H
#define TASKSCOPE_H

#include <uapi/linux/ptrace.h>

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
/* tgid -> identity; LRU because nothing reliably deletes exited processes. */
BPF_TABLE("lru_hash", u32, u64, identities, MAX_PROCESSES);
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

static __always_inline u64 remember_identity(u32 tgid, struct ident_name *n)
{
	u64 ident = ident_hash(n);
	if (ident_names.insert(&ident, n) && !ident_names.lookup(&ident))
		count_drop(DROP_IDENT_NAMES);
	identities.update(&tgid, &ident);
	return ident;
}

/* The identity of the current process; a process that predates the agent
 * and was missed by its /proc scan is named after its comm on first sight. */
static __always_inline u64 current_ident(void)
{
	u32 tgid = bpf_get_current_pid_tgid() >> 32;
	u64 *ident = identities.lookup(&tgid);
	if (ident)
		return *ident;
	struct ident_name n = {.kind = IDENT_KIND_COMM};
	bpf_get_current_comm(&n.name, sizeof(n.name));
	return remember_identity(tgid, &n);
}

static __always_inline void current_owner(struct owner *o)
{
	o->cgroup_id = bpf_get_current_cgroup_id();
	o->ident = current_ident();
}

/* Add one sample to the histogram entry the caller looked up (or created)
 * with lookup_or_try_init; a NULL entry means the map was full. */
static __always_inline void hist_add(struct hist_value *hv, u64 value_ns, u32 drop_reason)
{
	if (!hv) {
		count_drop(drop_reason);
		return;
	}
	__sync_fetch_and_add(&hv->count, 1);
	__sync_fetch_and_add(&hv->sum_ns, value_ns);
}

#endif
