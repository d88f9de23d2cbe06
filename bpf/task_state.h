/* A task's state, as the probes need it, across kernels and hook kinds.
 * sched_switch's classic tracepoint reports prev_state as
 * __trace_sched_switch_state() computes it; the raw tracepoint (whose
 * prototype gained prev_state in 5.18, "sched/tracing: Append prev_state to
 * tp args instead") hands over the raw state and a preempt flag, so
 * reported_task_state() rebuilds the classic value from them.  Callers then
 * ask the two questions below; no probe repeats the encoding. */
#ifndef TASKSCOPE_TASK_STATE_H
#define TASKSCOPE_TASK_STATE_H

#include "common.h"

/* include/linux/sched.h, and how the classic tracepoint reports them. */
#define TASK_UNINTERRUPTIBLE_ 0x2
#define TASK_REPORT_ 0x7f
#define TASK_DEAD_ 0x80
#define TASK_IDLE_ 0x402
#define EXIT_DEAD_ 0x10
#define TASK_REPORT_IDLE_ 0x80
/* Since 4.14 a preemption is reported as TASK_REPORT_MAX (0x100), so only
 * the low state bits (TASK_STATE_MASK) tell running from sleeping. */
#define TASK_REPORT_MAX_ 0x100

/* The state sched_switch's classic tracepoint would report: a preemption
 * as TASK_REPORT_MAX, an exiting task as dead, an idle kernel thread apart
 * from one in disk sleep, otherwise the state bits. */
static __always_inline u32 reported_task_state(u64 preempt, u32 state)
{
	if (preempt & 1)
		return TASK_REPORT_MAX_;
	if (state & TASK_DEAD_)
		return EXIT_DEAD_;
	if ((state & TASK_IDLE_) == TASK_IDLE_)
		return TASK_REPORT_IDLE_;
	return state & TASK_REPORT_;
}

/* A reported state that leaves the task runnable (running or preempted). */
static __always_inline int task_state_runnable(u32 reported)
{
	return (reported & TASK_STATE_MASK) == 0;
}

/* A reported state of uninterruptible (disk) sleep. */
static __always_inline int task_state_disk_sleep(u32 reported)
{
	return (reported & TASK_STATE_MASK & TASK_UNINTERRUPTIBLE_) != 0;
}

#ifdef TASK_PID_OFFSET
/* task_struct.pid, at the offset the running kernel's BTF gives. */
static __always_inline u32 task_pid(const void *task)
{
	u32 pid = 0;
	bpf_probe_read_kernel(&pid, sizeof(pid), task + TASK_PID_OFFSET);
	return pid;
}
#endif

#endif
