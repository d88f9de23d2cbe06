/* Block-IO latency per device and operation, in two stages:
 *   queue:  submission -> issue to the driver
 *   device: issue -> completion
 * Hooks: block:block_io_start (6.5+; runs in the submitting task, so it
 *        names who asked for the IO), else block:block_rq_insert;
 *        block:block_rq_issue, block:block_rq_complete.
 * The tracepoints carry no request pointer, so requests are paired by
 * (device, sector).  A flush is issued at sector 0 and completes at sector
 * ~0, so flushes are paired by device alone.
 *
 * An fsync asks for a flush with a request marked preflush ('F' in rwbs),
 * usually carrying no data.  The block layer answers it with a flush
 * request of its own, issued by a kworker: charged to `current`, every
 * fsync's flush would belong to the kernel.  So each preflush is queued per
 * device (blockio_flush_requests, in submission order) and a flush request
 * first seen without an owner takes the owner and submission time of the
 * oldest preflush it has not yet served.  The data-less preflush itself is
 * not counted as an IO: the flush it asked for is.  One that joined a flush
 * another preflush had asked for is counted as a flush spent entirely in
 * the queue stage (it never reached the device on its own). */

#include "hist.h"
#include "identity.h"
#include "segments.h"

struct blk_inflight_key {
	u32 dev;
	u32 flush;
	u64 sector;
};

struct blk_request {
	struct owner owner;
	u64 submitted_ns;
	u64 issued_ns;
	u32 op;
	u32 flush_seq;   /* 1 + its entry in blockio_flush_requests; 0: none */
	u32 traced_tid;  /* submitted in this thread's trace segment (0: none), */
	u32 pad;
	u64 segment_start;  /* the one that began then */
};

/* A request that asked for a flush (preflush), waiting for it. */
struct blk_flush_key {
	u32 dev;
	u32 seq;
};

struct blk_flush_request {
	struct owner owner;
	u64 submitted_ns;
	u64 segment_start;
	u32 traced_tid;
	u32 pad;
	u32 dataless;  /* completes when its flush does, without an issue */
	u32 served;    /* a flush request was charged to it */
};

/* Per device: the oldest preflush that may still wait, and the next seq. */
struct blk_flush_queue {
	u32 head;
	u32 tail;
};

struct blk_hist_key {
	struct owner owner;
	u32 dev;
	u8 op;
	u8 stage;
	u8 slot;
	u8 pad;
};

BPF_TABLE("lru_hash", struct blk_inflight_key, struct blk_request, blockio_inflight, BLOCKIO_MAX_INFLIGHT);
BPF_HASH(blockio_latency, struct blk_hist_key, struct hist_value, BLOCKIO_HIST_ENTRIES);
BPF_TABLE("lru_hash", struct blk_flush_key, struct blk_flush_request, blockio_flush_requests,
	  BLOCKIO_MAX_FLUSH_REQUESTS);
BPF_TABLE("lru_hash", u32, struct blk_flush_queue, blockio_flush_queues, BLOCKIO_MAX_DEVICES);

/* How far past the head a flush or a completion looks for its preflush:
 * entries normally complete in order, so the head is almost always it. */
#define BLK_FLUSH_SCAN 8

/* rwbs: an optional 'F' (preflush) then the operation letter. */
static __always_inline u32 blk_op(const char *rwbs)
{
	char c = rwbs[0];
	if (c == 'F' && (rwbs[1] == 'W' || rwbs[1] == 'R' || rwbs[1] == 'D' || rwbs[1] == 'F'))
		c = rwbs[1];
	switch (c) {
	case 'R': return BLK_OP_READ;
	case 'W': return BLK_OP_WRITE;
	case 'D': return BLK_OP_DISCARD;
	case 'F': return BLK_OP_FLUSH;
	default:  return BLK_OP_OTHER;
	}
}

static __always_inline void blk_key(struct blk_inflight_key *k, u32 dev, u64 sector, u32 nr_sector, u32 op)
{
	k->dev = dev;
	k->flush = op == BLK_OP_FLUSH && nr_sector == 0;
	k->sector = k->flush ? 0 : sector;
}

static __always_inline void blk_record(const struct blk_request *rq, u32 dev, u32 stage, u64 ns)
{
	struct blk_hist_key key = {.owner = rq->owner, .dev = dev, .op = rq->op, .stage = stage,
				   .slot = log2_slot(ns)};
	struct hist_value zero = {};
	hist_add(blockio_latency.lookup_or_try_init(&key, &zero), ns, DROP_BLOCKIO_LATENCY);
	segment_block_observed(rq->traced_tid, rq->segment_start, dev, rq->op, stage, ns);
}

/* Queue a preflush; returns 1 + its seq. */
static __always_inline u32 blk_flush_requested(u32 dev, const struct blk_request *rq,
					       u32 dataless)
{
	struct blk_flush_queue zero = {};
	struct blk_flush_queue *q = blockio_flush_queues.lookup_or_try_init(&dev, &zero);
	if (!q) {
		count_drop(DROP_BLOCKIO_FLUSH);
		return 0;
	}
	/* Not atomic (BCC's target has no fetch-and-add): two preflushes of one
	 * device submitted at the same instant on two CPUs may share a seq, and
	 * then one flush is charged twice to the later owner. */
	u32 seq = q->tail;
	q->tail = seq + 1;
	struct blk_flush_key key = {.dev = dev, .seq = seq};
	struct blk_flush_request req = {.owner = rq->owner, .submitted_ns = rq->submitted_ns,
					.traced_tid = rq->traced_tid,
					.segment_start = rq->segment_start, .dataless = dataless};
	blockio_flush_requests.update(&key, &req);
	return seq + 1;
}

/* The oldest preflush of the device not yet served by a flush request;
 * moves the head past entries that are gone. */
static __always_inline struct blk_flush_request *blk_flush_oldest(u32 dev, u32 dataless_only,
								  u32 unserved_only, u32 *seq_out)
{
	struct blk_flush_queue *q = blockio_flush_queues.lookup(&dev);
	if (!q)
		return NULL;
	u32 head = q->head, tail = q->tail;
	u32 moved = 1;
	for (u32 i = 0; i < BLK_FLUSH_SCAN; i++) {
		u32 seq = head + i;
		if (seq == tail)
			break;
		struct blk_flush_key key = {.dev = dev, .seq = seq};
		struct blk_flush_request *req = blockio_flush_requests.lookup(&key);
		if (!req) {
			if (moved)
				q->head = seq + 1;
			continue;
		}
		moved = 0;
		if ((dataless_only && !req->dataless) || (unserved_only && req->served))
			continue;
		*seq_out = seq;
		return req;
	}
	return NULL;
}

/* A flush request seen for the first time: charge it to the preflush it
 * serves.  Returns 0 when none waits (a flush the kernel asked for itself,
 * or one that predates the agent): the caller charges `current`. */
static __always_inline int blk_flush_owner(u32 dev, struct blk_request *rq)
{
	u32 seq;
	struct blk_flush_request *req = blk_flush_oldest(dev, 0, 1, &seq);
	if (!req)
		return 0;
	req->served = 1;
	rq->owner = req->owner;
	rq->submitted_ns = req->submitted_ns;
	rq->traced_tid = req->traced_tid;
	rq->segment_start = req->segment_start;
	return 1;
}

static __always_inline int is_pure_flush(u32 op, u32 nr_sector)
{
	return op == BLK_OP_FLUSH && nr_sector == 0;
}

static __always_inline void blk_submitted(u32 dev, u64 sector, u32 nr_sector, const char *rwbs)
{
	struct blk_inflight_key k = {};
	u64 now = bpf_ktime_get_ns();
	struct blk_request rq = {.op = blk_op(rwbs), .submitted_ns = now};
	blk_key(&k, dev, sector, nr_sector, rq.op);
	if (is_pure_flush(rq.op, nr_sector)) {
		/* Inserted by the flush machinery (kernels before 6.5). */
		if (!blk_flush_owner(dev, &rq))
			current_owner(&rq.owner);
		blockio_inflight.update(&k, &rq);
		return;
	}
	current_owner(&rq.owner);
	segment_block_submitted(&rq.traced_tid, &rq.segment_start);
	if (rwbs[0] == 'F') {
		u32 seq = blk_flush_requested(dev, &rq, nr_sector == 0);
		if (nr_sector == 0)
			return;  /* counted as the flush it asked for */
		rq.flush_seq = seq;
	}
	blockio_inflight.update(&k, &rq);
}

#if defined(HAVE_BLOCK_BLOCK_IO_START)
TRACEPOINT_PROBE(block, block_io_start)
{
	blk_submitted(args->dev, args->sector, args->nr_sector, args->rwbs);
	return 0;
}
#elif defined(HAVE_BLOCK_BLOCK_RQ_INSERT)
TRACEPOINT_PROBE(block, block_rq_insert)
{
	blk_submitted(args->dev, args->sector, args->nr_sector, args->rwbs);
	return 0;
}
#endif

#if !defined(HAVE_BLOCK_BLOCK_IO_START) && defined(HAVE_BLOCK_BLOCK_BIO_QUEUE)
/* Before 6.5 a data-less preflush never reaches block_rq_insert; its bio is
 * seen here, in the task that submitted it. */
TRACEPOINT_PROBE(block, block_bio_queue)
{
	if (args->rwbs[0] != 'F' || args->nr_sector != 0)
		return 0;
	struct blk_request rq = {.op = BLK_OP_FLUSH, .submitted_ns = bpf_ktime_get_ns()};
	current_owner(&rq.owner);
	segment_block_submitted(&rq.traced_tid, &rq.segment_start);
	blk_flush_requested(args->dev, &rq, 1);
	return 0;
}
#endif

TRACEPOINT_PROBE(block, block_rq_issue)
{
	struct blk_inflight_key k = {};
	u32 op = blk_op(args->rwbs);
	blk_key(&k, args->dev, args->sector, args->nr_sector, op);
	u64 now = bpf_ktime_get_ns();
	struct blk_request *rq = blockio_inflight.lookup(&k);
	if (!rq) {
		/* Submitted before the agent started, or never seen submitted
		 * (a requeue): the device stage can still be measured. */
		struct blk_request fresh = {.op = op, .issued_ns = now};
		if (is_pure_flush(op, args->nr_sector) && blk_flush_owner(args->dev, &fresh)) {
			blk_record(&fresh, args->dev, BLK_STAGE_QUEUE, now - fresh.submitted_ns);
		} else {
			current_owner(&fresh.owner);
		}
		blockio_inflight.update(&k, &fresh);
		return 0;
	}
	if (!rq->issued_ns)
		blk_record(rq, args->dev, BLK_STAGE_QUEUE, now - rq->submitted_ns);
	rq->issued_ns = now;
	return 0;
}

/* A data-less preflush completes (as a write of no sectors at sector 0, its
 * 'F' gone)
 * once its flush has: drop it from the queue; if no flush request was
 * charged to it, it joined another's, and its whole wait was queueing. */
static __always_inline void blk_dataless_completed(u32 dev, u64 now)
{
	u32 seq;
	struct blk_flush_request *req = blk_flush_oldest(dev, 1, 0, &seq);
	if (!req)
		return;
	if (!req->served) {
		struct blk_request rq = {.owner = req->owner, .op = BLK_OP_FLUSH,
					 .traced_tid = req->traced_tid,
					 .segment_start = req->segment_start};
		blk_record(&rq, dev, BLK_STAGE_QUEUE, now - req->submitted_ns);
	}
	struct blk_flush_key key = {.dev = dev, .seq = seq};
	blockio_flush_requests.delete(&key);
}

TRACEPOINT_PROBE(block, block_rq_complete)
{
	struct blk_inflight_key k = {};
	u32 op = blk_op(args->rwbs);
	u64 now = bpf_ktime_get_ns();
	/* (A write that carried data and a preflush also ends with a
	 * completion of no sectors, but at its own sector.) */
	if (args->nr_sector == 0 && args->sector == 0 && op == BLK_OP_WRITE) {
		blk_dataless_completed(args->dev, now);
		return 0;
	}
	blk_key(&k, args->dev, args->sector, args->nr_sector, op);
	struct blk_request *rq = blockio_inflight.lookup(&k);
	if (!rq)
		return 0;
	if (rq->issued_ns)
		blk_record(rq, args->dev, BLK_STAGE_DEVICE, now - rq->issued_ns);
	else
		blk_record(rq, args->dev, BLK_STAGE_QUEUE, now - rq->submitted_ns);
	if (rq->flush_seq) {
		struct blk_flush_key key = {.dev = args->dev, .seq = rq->flush_seq - 1};
		blockio_flush_requests.delete(&key);
	}
	blockio_inflight.delete(&k);
	return 0;
}
