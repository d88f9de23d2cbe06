/* Failed exchanges, for the service graph's failed requests.
 *
 * An exchange fails when
 *   - its response is HTTP/1.x with a 5xx status (4xx too with
 *     HTTP_4XX_FAILED), read from the first bytes of the response by the
 *     packet programs (TCP_PACKETS: the syscall and kprobe designs never see
 *     payload, so there only aborts count);
 *   - the connection is aborted (reset, or closed by an abort: from
 *     ESTABLISHED or CLOSE_WAIT straight to CLOSE) while the request waits
 *     for its response, or while the response is under way when the
 *     responder is the one that aborted.  A requester that aborts after its
 *     response began is not counted: from the byte stream alone a truncated
 *     response cannot be told from a finished one.
 * HTTP/2 and gRPC carry their status in compressed headers and frames and
 * are not read; their exchanges fail only by abort. */
#ifndef TASKSCOPE_TCP_FAILURES_H
#define TASKSCOPE_TCP_FAILURES_H

#include "sockets.h"

#ifdef TCP_EXCHANGES
#define HTTP_STATUS_BYTES 12  /* "HTTP/1.1 503" */

#ifndef HTTP_4XX_FAILED
#define HTTP_4XX_FAILED 0
#endif

/* The first bytes of a response: does its status line say it failed? */
static __always_inline int http_status_failed(const u8 *b)
{
	if (b[0] != 'H' || b[1] != 'T' || b[2] != 'T' || b[3] != 'P' || b[4] != '/' ||
	    b[5] != '1' || b[6] != '.' || b[8] != ' ')
		return 0;
	if (b[10] < '0' || b[10] > '9' || b[11] < '0' || b[11] > '9')
		return 0;
	return b[9] == '5' || (HTTP_4XX_FAILED && b[9] == '4');
}

/* The connection is closing from `from`: an abort in the middle of an
 * exchange fails it (and ends it now if no response came). */
static __always_inline void exchange_aborted(struct tcp_sock_info *i, int from, u64 now)
{
	if (from != TCP_STATE_ESTABLISHED && from != TCP_STATE_CLOSE_WAIT)
		return;
	if (!i->edge.role || i->phase == PHASE_IDLE)
		return;
	/* A server's socket aborts itself when no reset arrived; a client's
	 * peer (the responder) aborted when one did. */
	int responder = (i->edge.role == ROLE_SERVER) != (i->reset_received != 0);
	if (i->phase == PHASE_REQUEST) {
		i->phase = PHASE_RESPONSE;
		i->last_response_ns = now;
	} else if (!responder) {
		return;
	}
	i->exchange_failed = 1;
}
#endif

#endif
