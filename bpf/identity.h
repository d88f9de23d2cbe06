/* Whom a sample is charged to: the v2 cgroup of the task and the identity
 * of its process (a hash of its OTEL_SERVICE_NAME or of its comm).  Keying
 * by identity rather than tgid keeps entries from leaking as processes come
 * and go, while still separating services that share a cgroup.  Identities
 * are set at exec and fork by identity.bpf.c, seeded by user space for
 * processes that predate the agent, and otherwise taken from comm on first
 * sight. */
#ifndef TASKSCOPE_IDENTITY_H
#define TASKSCOPE_IDENTITY_H

#include "drops.h"

struct owner {
	u64 cgroup_id;
	u64 ident;
};

struct ident_name {
	u32 kind;                       /* IDENT_KIND_* */
	char name[SERVICE_NAME_LEN];
};

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

/* FNV-1a over the kind and the NUL-terminated name; kernel_abi.ident_hash
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

#endif
