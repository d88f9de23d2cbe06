/* Block-IO latency per device and operation, in two stages:
 *   queue:  submission -> issue to the driver
 *   device: issue -> completion
 * Hooks: block:block_io_start (6.5+; runs in the submitting task, so it
 *        names who asked for the IO), else block:block_rq_insert;
 *        block:block_rq_issue, block:block_rq_complete.
 * The tracepoints carry no request pointer, so requests are paired by
 * (device, sector).  A flush is issued at sector 0 and completes at sector
 * ~0, so flushes are paired by device alone. */

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
	u32 pad;
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
}

static __always_inline void blk_submitted(u32 dev, u64 sector, u32 nr_sector, const char *rwbs)
{
	struct blk_inflight_key k = {};
	struct blk_request rq = {.op = blk_op(rwbs), .submitted_ns = bpf_ktime_get_ns()};
	blk_key(&k, dev, sector, nr_sector, rq.op);
	current_owner(&rq.owner);
	blockio_inflight.update(&k, &rq);
	segment_block_submitted();
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
		current_owner(&fresh.owner);
		blockio_inflight.update(&k, &fresh);
		return 0;
	}
	if (!rq->issued_ns)
		blk_record(rq, args->dev, BLK_STAGE_QUEUE, now - rq->submitted_ns);
	rq->issued_ns = now;
	return 0;
}

TRACEPOINT_PROBE(block, block_rq_complete)
{
	struct blk_inflight_key k = {};
	blk_key(&k, args->dev, args->sector, args->nr_sector, blk_op(args->rwbs));
	struct blk_request *rq = blockio_inflight.lookup(&k);
	if (!rq)
		return 0;
	u64 now = bpf_ktime_get_ns();
	/* A data-less preflush completes without ever being issued: it spent
	 * its whole life queued. */
	if (rq->issued_ns)
		blk_record(rq, args->dev, BLK_STAGE_DEVICE, now - rq->issued_ns);
	else
		blk_record(rq, args->dev, BLK_STAGE_QUEUE, now - rq->submitted_ns);
	blockio_inflight.delete(&k);
	return 0;
}
