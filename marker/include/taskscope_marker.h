/* taskscope marker API: tell the taskscope agent which trace the calling
 * thread works for.  Both functions do nothing; the agent hooks them with
 * uprobes.  Without an agent they cost a function call. */
#ifndef TASKSCOPE_MARKER_H
#define TASKSCOPE_MARKER_H

#ifdef __cplusplus
extern "C" {
#endif

/* From now on the calling thread works for the trace in `traceparent`, a
 * W3C traceparent ("00-<32 hex>-<16 hex>-<2 hex>", 55 characters). */
void taskscope_task_begin(const char *traceparent);

/* The calling thread's work for that trace is done. */
void taskscope_task_end(void);

#ifdef __cplusplus
}
#endif

#endif
