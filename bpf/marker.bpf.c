/* The marker library's two functions, taskscope_task_begin(traceparent) and
 * taskscope_task_end(): uprobes, attached by user space
 * (agent/kernel/markers.py) to every copy of the library it finds.  A task
 * between them is a segment of that trace (segments.h). */

#include "segments.h"
#include "trace_context.h"

struct marker_text {
	u8 bytes[TRACEPARENT_LEN + 1];
};
BPF_PERCPU_ARRAY(marker_scratch, struct marker_text, 1);

int marker_task_begin(struct pt_regs *ctx)
{
	u32 zero = 0;
	struct marker_text *text = marker_scratch.lookup(&zero);
	struct trace_context tc = {};
	if (!text)
		return 0;
	if (bpf_probe_read_user(text->bytes, TRACEPARENT_LEN, (void *)PT_REGS_PARM1(ctx)) ||
	    parse_traceparent(&tc, text->bytes)) {
		count_drop(DROP_SEGMENT_BAD_MARKER);
		return 0;
	}
	tc.source = CONTEXT_MARKER;
	if (!(tc.flags & 1) && !TRACE_UNSAMPLED)
		return 0;
	u64 now = bpf_ktime_get_ns();
	segment_begin(&tc, SEGMENT_TASK, 0, 0, now, now);
	return 0;
}

int marker_task_end(struct pt_regs *ctx)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct segment *s = segment_of(tid);
	if (s && s->role == SEGMENT_TASK)
		segment_finish(tid, s, bpf_ktime_get_ns());
	return 0;
}
