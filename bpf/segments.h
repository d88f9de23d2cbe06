/* Trace segments: what one thread waited for while it worked for one trace.
 * A segment begins when a thread takes up a traced request (its trace
 * context found on the wire by traceparent.bpf.c, its exchange begun in
 * tcp/exchanges.h) or calls the marker library's taskscope_task_begin()
 * (marker.bpf.c); it ends when the response is complete,
 * the connection closes, the thread takes up other work, or
 * taskscope_task_end() is called.  The hooks that fill it live with the
 * probes that see the waits (runqueue, blockio, tcp): each pays one array
 * load per event to learn that its thread is not traced.
 *
 * Figures pile up as "pending" and are committed when the segment makes
 * progress (a server's response bytes, a client's response, the end of a
 * task): what a server waits for after its last response byte (usually
 * the next request) is not the request's time.
 *
 * Without the trace_segments probe (TRACE_SEGMENTS) the hooks below are
 * empty, so the probes that call them need no conditions of their own. */
#ifndef TASKSCOPE_SEGMENTS_H
#define TASKSCOPE_SEGMENTS_H

#include "identity.h"
#include "task_state.h"
#include "trace_context.h"

#ifdef TRACE_SEGMENTS
struct segment_figures {
	u64 runqueue_ns;    /* runnable, waiting for a CPU */
	u64 oncpu_ns;
	u64 blockio_ns;     /* uninterruptible sleep: disk IO, mostly */
	u64 blockio_count;  /* block requests the thread submitted */
	u64 network_ns;     /* asleep, then woke to socket data */
	u64 other_ns;       /* asleep for anything else: locks, timers */
};

/* Single observations the segment's thread added to histogram series, for
 * exemplars that point at the series they were observed on, with the value
 * observed there: the largest of each kind. */
struct segment_samples {
	u64 runqueue_ns;      /* its longest wait in the run queue */
	u64 blk_queue_ns;     /* its slowest block IO in the queue stage, */
	u64 blk_device_ns;    /* and on the device, */
	u32 blk_queue_dev;    /* with their devices */
	u32 blk_device_dev;
	u8 blk_queue_op;      /* and operations (BLK_OP_*) */
	u8 blk_device_op;
	u8 pad[6];
	u8 peer[16];          /* a wire segment's peer address (v4-mapped) */
};

struct segment {
	struct trace_context ctx;
	struct owner owner;
	u32 tgid;
	u32 tid;
	u64 sk;             /* the connection (wire segments) */
	u64 start_ns;
	u64 end_ns;         /* last commit; 0: none yet */
	u64 in_ns;          /* last switched in */
	u64 out_ns;         /* last switched out; 0: on CPU since it began */
	u64 sleep_ns;       /* last interruptible sleep, not yet classified */
	u32 out_state;
	u32 retransmits;
	u8 role;            /* SEGMENT_* */
	u8 pad[7];
	struct segment_figures done;
	struct segment_figures pending;
	struct segment_samples samples;
};

struct segment_budget {
	u64 window_start_ns;
	u64 sent;
};

/* A finished segment's place in the store: unique per segment. */
struct finished_key {
	u8 trace_id[16];
	u32 tid;
	u32 pad;
	u64 start_ns;
};

/* The series a segment made an observation on (what, and its labels
 * beyond the owner), for exemplars. */
struct exemplar_key {
	struct owner owner;
	u8 what;            /* EXEMPLAR_* */
	u8 op;              /* blockio: BLK_OP_*, */
	u8 stage;           /* BLK_STAGE_*, */
	u8 pad;
	u32 dev;            /* and device */
	u8 peer[16];        /* server: the client's address */
};

struct exemplar {
	u8 trace_id[16];
	u64 value_ns;       /* what it observed on that series */
	u64 end_ns;         /* when its segment ended */
};

/* tid -> 1 while the thread has a segment: the cheap test on hot paths. */
BPF_ARRAY(traced_threads, u8, PID_SLOTS);
BPF_TABLE("lru_hash", u32, struct segment, segments, MAX_TRACED_THREADS);
/* The store of finished segments, read on demand by /api/traces
 * (agent/trace_store.py): a finished segment costs one map update, and
 * user space no work at all until someone asks. */
BPF_TABLE("lru_hash", struct finished_key, struct segment, finished_segments,
	  MAX_FINISHED_SEGMENTS);
/* The latest observation per series, read at scrape for exemplars. */
BPF_TABLE("lru_hash", struct exemplar_key, struct exemplar, segment_exemplars, MAX_EXEMPLARS);
/* The keys a finish writes, off the stack: the send and receive programs
 * that finish segments have little of it left. */
struct finish_scratch {
	struct finished_key finished;
	struct exemplar_key key;
	struct exemplar value;
};
BPF_PERCPU_ARRAY(segment_finish_scratch, struct finish_scratch, 1);
/* Per CPU, exact whatever the store evicts or the governor samples out:
 * SEGMENT_COUNT_FINISHED, _BEGUN, _SAMPLED_OUT (trace contexts that began
 * no segment because of the governor). */
BPF_PERCPU_ARRAY(segment_counts, u64, SEGMENT_COUNTS);
/* Set by the overhead governor (agent/governor.py): a segment begins for 1
 * in this many trace contexts (0 or 1: all of them). */
BPF_ARRAY(segment_sample_every, u32, 1);
BPF_PERCPU_ARRAY(segment_sample_tick, u32, 1);

static __always_inline void segment_count(u32 which)
{
	u64 *n = segment_counts.lookup(&which);
	if (n)
		(*n)++;
}

/* Whether the governor lets this trace context begin a segment: 1 in its
 * sample_every, by a per-CPU tick, so the rest cost nothing further. */
static __always_inline int segment_sampled_in(void)
{
	u32 zero = 0;
	u32 *every = segment_sample_every.lookup(&zero);
	if (!every || *every <= 1)
		return 1;
	u32 *tick = segment_sample_tick.lookup(&zero);
	if (!tick)
		return 1;
	u32 t = *tick + 1;
	if (t >= *every)
		t = 0;
	*tick = t;
	if (t == 0)
		return 1;
	segment_count(SEGMENT_COUNT_SAMPLED_OUT);
	return 0;
}
/* How many finished segments this CPU stored in the current second. */
BPF_PERCPU_ARRAY(segment_budget, struct segment_budget, 1);
#ifdef SEGMENT_STREAM
/* Every stored segment, for the OTLP exporter: only when one is set. */
BPF_RINGBUF_OUTPUT(segment_events, SEGMENT_RING_PAGES);
#endif
/* A segment is too big for the BPF stack: new ones are built here. */
BPF_PERCPU_ARRAY(segment_scratch, struct segment, 1);

static __always_inline struct segment *segment_of(u32 tid)
{
	u8 *traced = traced_threads.lookup(&tid);
	if (!traced || !*traced)
		return 0;
	struct segment *s = segments.lookup(&tid);
	if (!s) {
		/* Evicted from the LRU by more traced threads than it holds. */
		*traced = 0;
		count_drop(DROP_SEGMENT_EVICTED);
	}
	return s;
}

static __always_inline void figures_add(struct segment_figures *to, const struct segment_figures *from)
{
	to->runqueue_ns += from->runqueue_ns;
	to->oncpu_ns += from->oncpu_ns;
	to->blockio_ns += from->blockio_ns;
	to->blockio_count += from->blockio_count;
	to->network_ns += from->network_ns;
	to->other_ns += from->other_ns;
}

/* The thread ran from its last switch-in (or the segment's start) to now. */
static __always_inline void segment_count_oncpu(struct segment *s, u64 now)
{
	u64 since = s->in_ns > s->start_ns ? s->in_ns : s->start_ns;
	s->pending.oncpu_ns += now - since;
}

/* An interruptible sleep that ended without socket data to read was not the
 * network: a lock, a timer, a pipe. */
static __always_inline void segment_sleep_was_other(struct segment *s)
{
	s->pending.other_ns += s->sleep_ns;
	s->sleep_ns = 0;
}

static __always_inline void segment_commit(struct segment *s, u64 now)
{
	segment_sleep_was_other(s);
	if (s->out_ns == 0 || s->in_ns > s->out_ns) {
		/* On CPU right now: count the time up to here. */
		segment_count_oncpu(s, now);
		s->in_ns = now;
	}
	figures_add(&s->done, &s->pending);
	__builtin_memset(&s->pending, 0, sizeof(s->pending));
	s->end_ns = now;
}

/* At most SEGMENT_EVENTS_PER_SEC segments stored (and streamed) per CPU and
 * second: the store keeps the last few thousand anyway, and at tens of
 * thousands of requests a second the map updates were most of a traced
 * request's cost.  The rest are counted (DROP_SEGMENT_RATE); every
 * finished segment is counted, and figures, histograms and the graph never
 * depend on it. */
static __always_inline int segment_budget_take(u64 now)
{
	u32 zero = 0;
	struct segment_budget *b = segment_budget.lookup(&zero);
	if (!b)
		return 0;
	if (now - b->window_start_ns >= 1000000000ULL) {
		b->window_start_ns = now;
		b->sent = 0;
	}
	if (b->sent >= SEGMENT_EVENTS_PER_SEC)
		return 0;
	b->sent++;
	return 1;
}

#ifdef SEGMENT_STREAM
/* Stream a stored segment to user space (the OTLP exporter): without a
 * wakeup, since the reader drains the ring on a timer (a wakeup per event
 * would cost a context switch each).  The ring holds a drain interval of
 * the rate cap on every CPU; past it, a segment is counted as dropped. */
static __always_inline void segment_stream(struct segment *s)
{
	struct segment *e = segment_events.ringbuf_reserve(sizeof(struct segment));
	if (!e) {
		count_drop(DROP_SEGMENT_RING);
		return;
	}
	__builtin_memcpy(e, s, sizeof(*e));
	segment_events.ringbuf_submit(e, BPF_RB_NO_WAKEUP_);
}
#endif

static __always_inline void exemplar_put(struct finish_scratch *f, u8 what, u8 op, u8 stage,
					 u32 dev, u64 value_ns)
{
	f->key.what = what;
	f->key.op = op;
	f->key.stage = stage;
	f->key.dev = dev;
	f->value.value_ns = value_ns;
	segment_exemplars.update(&f->key, &f->value);
}

/* The series a finished segment observed on get it as their exemplar. */
static __always_inline void segment_exemplars_put(struct finish_scratch *f,
						  const struct segment *s)
{
	__builtin_memset(&f->key, 0, sizeof(f->key));
	f->key.owner = s->owner;
	__builtin_memcpy(f->value.trace_id, s->ctx.trace_id, 16);
	f->value.end_ns = s->end_ns;
	if (s->samples.runqueue_ns)
		exemplar_put(f, EXEMPLAR_RUNQUEUE, 0, 0, 0, s->samples.runqueue_ns);
	if (s->samples.blk_queue_ns)
		exemplar_put(f, EXEMPLAR_BLOCKIO, s->samples.blk_queue_op, BLK_STAGE_QUEUE,
			     s->samples.blk_queue_dev, s->samples.blk_queue_ns);
	if (s->samples.blk_device_ns)
		exemplar_put(f, EXEMPLAR_BLOCKIO, s->samples.blk_device_op, BLK_STAGE_DEVICE,
			     s->samples.blk_device_dev, s->samples.blk_device_ns);
	u64 peer_lo = 0, peer_hi = 0;
	__builtin_memcpy(&peer_lo, s->samples.peer, 8);
	__builtin_memcpy(&peer_hi, s->samples.peer + 8, 8);
	if (s->role == SEGMENT_SERVER && (peer_lo | peer_hi)) {
		__builtin_memcpy(f->key.peer, s->samples.peer, 16);
		exemplar_put(f, EXEMPLAR_SERVER, 0, 0, 0,
			     s->end_ns > s->start_ns ? s->end_ns - s->start_ns : 0);
	}
}

static __always_inline void segment_finish(u32 tid, struct segment *s, u64 now)
{
	if (!s->end_ns)
		segment_commit(s, now);
	segment_count(SEGMENT_COUNT_FINISHED);
	u32 zero = 0;
	struct finish_scratch *f = segment_finish_scratch.lookup(&zero);
	if (f && segment_budget_take(now)) {
		__builtin_memcpy(f->finished.trace_id, s->ctx.trace_id, 16);
		f->finished.tid = s->tid;
		f->finished.pad = 0;
		f->finished.start_ns = s->start_ns;
		finished_segments.update(&f->finished, s);
		segment_exemplars_put(f, s);
#ifdef SEGMENT_STREAM
		segment_stream(s);
#endif
	} else {
		count_drop(DROP_SEGMENT_RATE);
	}
	segments.delete(&tid);
	u8 *traced = traced_threads.lookup(&tid);
	if (traced)
		*traced = 0;
}

static __always_inline int same_trace(const struct trace_context *a, const struct trace_context *b)
{
	u8 diff = 0;
#pragma unroll
	for (int i = 0; i < 16; i++)
		diff |= a->trace_id[i] ^ b->trace_id[i];
	return diff == 0;
}

/* The current thread takes up work for `ctx`.  Work it was doing for
 * another trace ends here; a nested begin within the same trace (a server
 * calling downstream with the context it received) changes nothing. */
static __always_inline void segment_begin(const struct trace_context *ctx, u8 role, u64 sk,
					  const u8 *peer, u64 start, u64 now)
{
	u64 pid_tgid = bpf_get_current_pid_tgid();
	u32 tid = (u32)pid_tgid;
	struct segment *s = segment_of(tid);
	if (s) {
		if (same_trace(&s->ctx, ctx))
			return;
		segment_finish(tid, s, now);
	}
	if (!segment_sampled_in())
		return;
	u8 *traced = traced_threads.lookup(&tid);
	if (!traced) {
		count_drop(DROP_PID_OUT_OF_RANGE);
		return;
	}
	u32 zero = 0;
	struct segment *fresh = segment_scratch.lookup(&zero);
	if (!fresh)
		return;
	__builtin_memset(fresh, 0, sizeof(*fresh));
	fresh->ctx = *ctx;
	fresh->tgid = pid_tgid >> 32;
	fresh->tid = tid;
	fresh->sk = sk;
	fresh->start_ns = start;
	fresh->in_ns = now;
	fresh->role = role;
	if (peer)
		__builtin_memcpy(fresh->samples.peer, peer, 16);
	current_owner(&fresh->owner);
	segments.update(&tid, fresh);
	*traced = 1;
	segment_count(SEGMENT_COUNT_BEGUN);
}

/* sched_switch, for the thread switched out: its time on CPU ends. */
static __always_inline void segment_switch_out(u32 tid, u32 state, u64 now)
{
	struct segment *s = segment_of(tid);
	if (!s)
		return;
	segment_count_oncpu(s, now);
	segment_sleep_was_other(s);
	s->out_ns = now;
	s->out_state = state;
}

/* sched_switch, for the thread switched in after `queued_ns` on the run
 * queue: its time off CPU is split by the state it left in. */
static __always_inline void segment_switch_in(u32 tid, u64 queued_ns, u64 now)
{
	struct segment *s = segment_of(tid);
	if (!s)
		return;
	if (s->out_ns && now > s->out_ns) {
		u64 off = now - s->out_ns;
		u64 queued = task_state_runnable(s->out_state) || queued_ns > off ? off : queued_ns;
		u64 asleep = off - queued;
		s->pending.runqueue_ns += queued;
		if (queued_ns > s->samples.runqueue_ns)
			s->samples.runqueue_ns = queued_ns;  /* as runqueue_latency saw it */
		if (task_state_disk_sleep(s->out_state))
			s->pending.blockio_ns += asleep;
		else
			s->sleep_ns = asleep;
	}
	s->in_ns = now;
}

/* Thread `tid` (current) sent or received on a TCP socket. */
static __always_inline void segment_socket_io(u32 tid, u64 sk, int sent)
{
	struct segment *s = segment_of(tid);
	if (!s)
		return;
	if (!sent) {
		s->pending.network_ns += s->sleep_ns;
		s->sleep_ns = 0;
	}
	if (s->sk == sk && ((s->role == SEGMENT_SERVER && sent) ||
			    (s->role == SEGMENT_CLIENT && !sent)))
		segment_commit(s, bpf_ktime_get_ns());
}

/* The current thread submitted a block request: which segment it belongs
 * to, (tid, the segment's start) or tid 0, for segment_block_observed. */
static __always_inline void segment_block_submitted(u32 *tid_out, u64 *start_out)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct segment *s = segment_of(tid);
	if (!s)
		return;
	s->pending.blockio_count++;
	*tid_out = tid;
	*start_out = s->start_ns;
}

/* A stage of a block request submitted in segment (tid, start) took `ns`
 * (any context: completions run in softirq). */
static __always_inline void segment_block_observed(u32 tid, u64 start, u32 dev, u32 op,
						   u32 stage, u64 ns)
{
	if (!tid)
		return;
	struct segment *s = segment_of(tid);
	if (!s || s->start_ns != start)
		return;
	if (stage == BLK_STAGE_QUEUE && ns > s->samples.blk_queue_ns) {
		s->samples.blk_queue_ns = ns;
		s->samples.blk_queue_dev = dev;
		s->samples.blk_queue_op = op;
	} else if (stage == BLK_STAGE_DEVICE && ns > s->samples.blk_device_ns) {
		s->samples.blk_device_ns = ns;
		s->samples.blk_device_dev = dev;
		s->samples.blk_device_op = op;
	}
}

/* The connection of thread `tid`'s segment closed or retransmitted. */
static __always_inline void segment_connection_closed(u32 tid, u64 sk, u64 now)
{
	struct segment *s = segment_of(tid);
	if (s && s->sk == sk)
		segment_finish(tid, s, now);
}

static __always_inline void segment_retransmit(u32 tid, u64 sk)
{
	struct segment *s = segment_of(tid);
	if (s && s->sk == sk)
		s->retransmits++;
}

#else
static __always_inline void segment_begin(const struct trace_context *ctx, u8 role, u64 sk,
					  const u8 *peer, u64 start, u64 now) {}
static __always_inline void segment_switch_out(u32 tid, u32 state, u64 now) {}
static __always_inline void segment_switch_in(u32 tid, u64 queued_ns, u64 now) {}
static __always_inline void segment_socket_io(u32 tid, u64 sk, int sent) {}
static __always_inline void segment_block_submitted(u32 *tid_out, u64 *start_out) {}
static __always_inline void segment_block_observed(u32 tid, u64 start, u32 dev, u32 op,
						   u32 stage, u64 ns) {}
static __always_inline void segment_connection_closed(u32 tid, u64 sk, u64 now) {}
static __always_inline void segment_retransmit(u32 tid, u64 sk) {}
#endif

#endif
