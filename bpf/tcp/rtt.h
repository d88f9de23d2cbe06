/* Smoothed RTT per service, sampled: the helpers the RTT hooks share with
 * the send and receive hooks.  Only with the tcp_rtt probe (TCP_RTT). */
#ifndef TASKSCOPE_TCP_RTT_H
#define TASKSCOPE_TCP_RTT_H

#include "sockets.h"

#ifdef TCP_RTT
/* srtt is already a moving average, so one event in RTT_SAMPLE_EVERY per CPU
 * is sampled, and the socket lookup is paid only for those.  The events are
 * the tracked sockets' sends and receives where those hooks run raw (their
 * socket is at hand, and tcp_probe, on every received segment, need not be
 * attached at all), or their packets' (bpf_tcp_sock) where exchanges and
 * bytes come from packets; else tcp_probe's. */
#if defined(TCP_PACKETS)
#define TCP_RTT_ON_PACKETS
#elif defined(TCP_RTT_BTF) && defined(TCP_IO_RAW)
#define TCP_RTT_ON_IO
#endif
BPF_PERCPU_ARRAY(tcp_rtt_countdown, u32, 1);

static __always_inline int tcp_rtt_skip(void)
{
	u32 zero = 0;
	u32 *n = tcp_rtt_countdown.lookup(&zero);
	if (!n)
		return 1;
	if (*n) {
		(*n)--;
		return 1;
	}
	/* The next sample comes after RTT_SAMPLE_EVERY/2 to 3*RTT_SAMPLE_EVERY/2
	 * events, about RTT_SAMPLE_EVERY on average: a fixed period aliases with
	 * periodic traffic (four events per request, say) and would sample the
	 * same socket of every exchange and never its peer. */
	*n = RTT_SAMPLE_EVERY / 2 + bpf_get_prandom_u32() % RTT_SAMPLE_EVERY;
	return 0;
}

static __always_inline void tcp_rtt_sample(const struct tcp_sock_info *info, u32 srtt_us)
{
	if (!info || !srtt_us || !(info->owner.ident | info->owner.cgroup_id))
		return;
	u64 ns = (u64)srtt_us * 1000;
	struct tcp_hist_key hk = {.owner = info->owner, .slot = log2_slot(ns)};
	struct hist_value zero = {};
	hist_add(tcp_rtt.lookup_or_try_init(&hk, &zero), ns, DROP_TCP_RTT);
}

#ifdef TCP_RTT_BTF
static __always_inline void tcp_rtt_read(const void *sk, const struct tcp_sock_info *info)
{
	u32 srtt8 = 0;  /* tcp_sock.srtt_us holds the smoothed RTT << 3 */
	bpf_probe_read_kernel(&srtt8, sizeof(srtt8), sk + TCP_SRTT_US_OFFSET);
	tcp_rtt_sample(info, srtt8 >> 3);
}
#endif
#endif

#endif
