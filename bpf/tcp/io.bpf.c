/* Sends and receives on every socket (sock:sock_send_length and
 * sock:sock_recv_length, 6.4+), or on TCP sockets through kprobes on
 * tcp_sendmsg and tcp_recvmsg (TCP_KPROBES, for kernels before 6.4 whose
 * cgroup_skb programs cannot be used): bytes per service (tcp_bytes), the
 * service graph's exchanges (tcp_exchanges), RTT samples where they run
 * raw, and a traced thread's network waits. */

#include "../counter_slots.h"
#include "../segments.h"
#include "exchanges.h"
#include "rtt.h"
#include "sockets.h"

#if (defined(TCP_BYTES) || defined(TCP_EXCHANGES)) && !defined(TCP_PACKETS)
/* The hottest hooks of all: every send and receive on every socket.  `i`
 * is the socket's entry in the socket table, if it has one. */
static __always_inline void tcp_io(const void *sk, struct tcp_sock_info *i, int ret, int sent)
{
	u64 pid_tgid = bpf_get_current_pid_tgid();
#ifdef TCP_EXCHANGES
	if (i)
		edge_track(i, (u64)sk, ret, sent);
#endif
	segment_socket_io((u32)pid_tgid, (u64)sk, sent);
#ifdef TCP_BYTES
	tcp_bytes_add(counter_slot_of(pid_tgid >> 32), ret, sent);
#endif
}

#if defined(TCP_KPROBES)
/* A call of tcp_sendmsg or tcp_recvmsg in progress, per thread: its socket,
 * kept from entry to return, where the bytes are known. */
BPF_TABLE("lru_hash", u32, u64, tcp_io_calls, 16384);

static __always_inline int tcp_call_enter(struct pt_regs *ctx)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();
	u64 sk = PT_REGS_PARM1(ctx);
	tcp_io_calls.update(&tid, &sk);
	return 0;
}

static __always_inline int tcp_call_return(struct pt_regs *ctx, int sent)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();
	u64 *found = tcp_io_calls.lookup(&tid);
	if (!found)
		return 0;
	u64 key = *found;
	tcp_io_calls.delete(&tid);
	int ret = PT_REGS_RC(ctx);
	if (ret <= 0)
		return 0;
	struct tcp_sock_info *i = tcp_socket_lookup(key);
#ifdef TCP_EXCHANGES_BTF
	if (!i)
		i = tcp_adopt((const void *)key);
#endif
#ifdef TCP_RTT_ON_IO
	if (i && !tcp_rtt_skip())
		tcp_rtt_read((const void *)key, i);
#endif
	tcp_io((const void *)key, i, ret, sent);
	return 0;
}

int kprobe__tcp_sendmsg(struct pt_regs *ctx)
{
	return tcp_call_enter(ctx);
}

int kretprobe__tcp_sendmsg(struct pt_regs *ctx)
{
	return tcp_call_return(ctx, 1);
}

int kprobe__tcp_recvmsg(struct pt_regs *ctx)
{
	return tcp_call_enter(ctx);
}

int kretprobe__tcp_recvmsg(struct pt_regs *ctx)
{
	return tcp_call_return(ctx, 0);
}
#elif defined(TCP_IO_RAW)
/* Raw tracepoints: a classic one formats its fields on every call, which
 * costs more than this whole program.  A socket found in its array slot is
 * tracked, so TCP; any other has its protocol read (one helper call), then
 * is looked for in the LRU level, and a TCP one is adopted where BTF allows
 * (see tcp_adopt). */
static __always_inline void tcp_io_raw(const void *sk, int ret, int sent)
{
	if (ret <= 0)
		return;
	u64 key = (u64)sk;
	struct tcp_sock_info *i = 0;
	struct tcp_sock_slot *slot = tcp_socket_slot(key);
	if (slot && slot->sk == key) {
		i = &slot->info;
	} else {
		u16 protocol = 0;
		bpf_probe_read_kernel(&protocol, sizeof(protocol), sk + SK_PROTOCOL_OFFSET);
		if (protocol != IPPROTO_TCP_)
			return;
		i = tcp_sockets.lookup(&key);
#ifdef TCP_EXCHANGES_BTF
		if (!i)
			i = tcp_adopt(sk);
#endif
	}
#ifdef TCP_RTT_ON_IO
	if (i && !tcp_rtt_skip())
		tcp_rtt_read(sk, i);
#endif
	tcp_io(sk, i, ret, sent);
}

RAW_TRACEPOINT_PROBE(sock_send_length)
{
	tcp_io_raw((const void *)ctx->args[0], (int)ctx->args[1], 1);
	return 0;
}

RAW_TRACEPOINT_PROBE(sock_recv_length)
{
	tcp_io_raw((const void *)ctx->args[0], (int)ctx->args[1], 0);
	return 0;
}
#else
static __always_inline void tcp_io_classic(const void *sk, u16 family, u16 protocol, int ret,
					   int sent)
{
	if (ret <= 0 || protocol != IPPROTO_TCP_ || (family != AF_INET_ && family != AF_INET6_))
		return;
	struct tcp_sock_info *i = 0;
#ifdef TCP_EXCHANGES
	u64 key = (u64)sk;
	i = tcp_socket_lookup(key);
#endif
	tcp_io(sk, i, ret, sent);
}

TRACEPOINT_PROBE(sock, sock_send_length)
{
	tcp_io_classic(args->sk, args->family, args->protocol, args->ret, 1);
	return 0;
}

TRACEPOINT_PROBE(sock, sock_recv_length)
{
	tcp_io_classic(args->sk, args->family, args->protocol, args->ret, 0);
	return 0;
}
#endif
#endif
