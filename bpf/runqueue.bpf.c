/* Run-queue latency: how long a runnable thread waits for a CPU.
 * Hooks: sched:sched_wakeup, sched:sched_wakeup_new, sched:sched_switch
 * (all since 2.6.28); as raw tracepoints where the kernel's BTF gives
 * task_struct.pid and sched_switch's 5.18+ prototype (RUNQUEUE_BTF): a
 * classic tracepoint formats both tasks' names on every switch, which costs
 * more than the program.
 * sched_switch runs in the context of the task switched *out*, so the wait of
 * the task switched in is parked per CPU and charged at its own switch-out,
 * when bpf_get_current_*() describe it.  That avoids reading task_struct,
 * whose layout the generic headers get wrong. */

#include "hist.h"
#include "identity.h"
#include "segments.h"
#include "task_state.h"

struct rq_hist_key {
	struct owner owner;
	u32 slot;
	u32 pad;
};

struct rq_parked {
	u32 tid;
	u32 pad;
	u64 wait_ns;
};

/* tid -> when it became runnable, in 1.024 us ticks (0: not queued).  An
 * array indexed by tid rather than a hash: sched_wakeup and sched_switch are
 * among the hottest tracepoints, and a hash update costs ~200 ns here.  u32
 * ticks wrap after 73 minutes, longer than any wait worth measuring. */
BPF_ARRAY(runqueue_enqueued, u32, PID_SLOTS);
BPF_PERCPU_ARRAY(runqueue_parked, struct rq_parked, 1);
BPF_HASH(runqueue_latency, struct rq_hist_key, struct hist_value, RUNQUEUE_HIST_ENTRIES);

#define TICK_SHIFT 10

static __always_inline void runqueue_enqueue(u32 tid, u64 now)
{
	u32 *slot = runqueue_enqueued.lookup(&tid);
	if (slot && tid)
		*slot = (u32)(now >> TICK_SHIFT) | 1;
	else if (tid)
		count_drop(DROP_PID_OUT_OF_RANGE);
}

/* `prev` leaves the CPU in `state` (as the classic tracepoint reports it)
 * and `next` takes it. */
static __always_inline void runqueue_switch(u32 prev, u32 state, u32 next)
{
	u32 zero = 0;
	struct rq_parked *parked = runqueue_parked.lookup(&zero);
	if (!parked)
		return;
	u64 now = bpf_ktime_get_ns();

	if (parked->tid && parked->tid == prev) {
		struct rq_hist_key key = {.slot = log2_slot(parked->wait_ns)};
		struct hist_value zero = {};
		current_owner(&key.owner);
		hist_add(runqueue_latency.lookup_or_try_init(&key, &zero), parked->wait_ns,
			 DROP_RUNQUEUE_LATENCY);
	}
	parked->tid = 0;

	/* A preempted task stays runnable: it re-enters the queue now. */
	if (task_state_runnable(state))
		runqueue_enqueue(prev, now);
	segment_switch_out(prev, state, now);

	if (!next)
		return;
	u32 *enqueued = runqueue_enqueued.lookup(&next);
	if (!enqueued || !*enqueued) {
		segment_switch_in(next, 0, now);
		return;
	}
	parked->wait_ns = (u64)((u32)(now >> TICK_SHIFT) - *enqueued) << TICK_SHIFT;
	parked->tid = next;
	*enqueued = 0;
	segment_switch_in(next, parked->wait_ns, now);
}

#ifdef RUNQUEUE_BTF
RAW_TRACEPOINT_PROBE(sched_wakeup)
{
	runqueue_enqueue(task_pid((const void *)ctx->args[0]), bpf_ktime_get_ns());
	return 0;
}

RAW_TRACEPOINT_PROBE(sched_wakeup_new)
{
	runqueue_enqueue(task_pid((const void *)ctx->args[0]), bpf_ktime_get_ns());
	return 0;
}

/* Runs in the task switched out: it is current. */
RAW_TRACEPOINT_PROBE(sched_switch)
{
	runqueue_switch((u32)bpf_get_current_pid_tgid(),
			reported_task_state(ctx->args[0], (u32)ctx->args[3]),
			task_pid((const void *)ctx->args[2]));
	return 0;
}
#else
TRACEPOINT_PROBE(sched, sched_wakeup)
{
	runqueue_enqueue(args->pid, bpf_ktime_get_ns());
	return 0;
}

TRACEPOINT_PROBE(sched, sched_wakeup_new)
{
	runqueue_enqueue(args->pid, bpf_ktime_get_ns());
	return 0;
}

TRACEPOINT_PROBE(sched, sched_switch)
{
	runqueue_switch(args->prev_pid, args->prev_state, args->next_pid);
	return 0;
}
#endif
