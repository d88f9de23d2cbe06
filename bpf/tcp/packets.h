/* Exchanges, bytes and RTT from the packets themselves (TCP_PACKETS): the
 * cgroup_skb programs of packets.bpf.c see every TCP segment of the node,
 * on every kernel with cgroup v2 (4.10+), so the service graph needs no
 * per-send or per-receive hook.
 *
 * Times are packet times at this host's IP layer: a server's request
 * begins with the first payload that arrives after it last sent, its
 * response ends with the last payload that leaves before the next request;
 * a client is the mirror image (tcp/exchanges.h, edge_track).  Payload is
 * counted once: a segment's bytes below the highest sequence number already
 * seen in its direction are a retransmission and count for nothing.
 * Packets without payload (ACKs, SYN, a bare FIN) never get here.
 *
 * The socket's owner comes from the socket table, filled where a task is
 * current (tcp/state.bpf.c): at connect(), from the listener for accepted
 * connections, or from /proc for connections older than the agent, found
 * by their addresses (no network namespace is readable here). */
#ifndef TASKSCOPE_TCP_PACKETS_H
#define TASKSCOPE_TCP_PACKETS_H

#include "../counter_slots.h"
#include "../packet.h"
#include "exchanges.h"
#include "failures.h"
#include "rtt.h"
#include "sockets.h"

#ifdef TCP_PACKETS
#define SENT_SEEN 1
#define RECEIVED_SEEN 2

/* The socket table is keyed by the kernel's struct sock address, which the
 * tracepoints hand over as a number.  Here it is a pointer the verifier
 * forbids arithmetic on; stored into a map value and read back it is a
 * number (allowed to programs loaded with CAP_PERFMON, which the agent
 * needs anyway). */
BPF_PERCPU_ARRAY(tcp_packet_sock, u64, 1);

static __always_inline u64 sock_address(const struct bpf_sock *sk)
{
	u32 zero = 0;
	volatile u64 *slot = tcp_packet_sock.lookup(&zero);
	if (!slot)
		return 0;
	*slot = (u64)sk;
	return *slot;
}

/* How many of `len` payload bytes from `seq` are new in their direction:
 * what lies below the highest sequence number seen is a retransmission. */
static __always_inline u32 fresh_bytes(struct tcp_sock_info *i, int ingress, u32 seq, u32 len)
{
	u32 seen = ingress ? RECEIVED_SEEN : SENT_SEEN;
	u32 *end = ingress ? &i->received_end : &i->sent_end;
	u32 next = seq + len;
	if (!(i->seq_seen & seen)) {
		i->seq_seen |= seen;
		*end = next;
		return len;
	}
	if ((s32)(next - *end) <= 0)
		return 0;
	u32 fresh = (s32)(seq - *end) >= 0 ? len : next - *end;
	*end = next;
	return fresh;
}

#ifdef TCP_EXCHANGES
/* What adopting a connection needs, too big for the stack of a program
 * that also parses headers and trace contexts. */
struct adopt_scratch {
	struct flow flow;
	struct conn_key key;
	struct tcp_sock_info info;
};
BPF_PERCPU_ARRAY(tcp_adopt_scratch, struct adopt_scratch, 1);

/* A connection the socket table has not seen: one that user space listed
 * as open before the agent (adopted, owner and edge included), else one
 * that is not ours, remembered as such so that its next packet costs one
 * lookup. */
static __always_inline struct tcp_sock_info *tcp_adopt_packet(struct __sk_buff *skb, u64 sk,
							      const struct packet *p, int ingress)
{
	u32 zero = 0;
	struct adopt_scratch *a = tcp_adopt_scratch.lookup(&zero);
	if (!a)
		return 0;
	__builtin_memset(a, 0, sizeof(*a));
	if (!packet_flow(skb, p, ingress, &a->flow)) {
		a->key.local_port = a->flow.local_port;
		a->key.peer_port = a->flow.peer_port;
		__builtin_memcpy(a->key.local, a->flow.local, 16);
		__builtin_memcpy(a->key.peer, a->flow.peer, 16);
		struct edge_key *listed = tcp_preexisting.lookup(&a->key);
		if (listed) {
			a->info.edge = *listed;
			a->info.owner = listed->owner;
			a->info.local_port = a->key.local_port;
			a->info.peer_port = a->key.peer_port;
			tcp_preexisting.delete(&a->key);
		}
	}
	return tcp_socket_store(sk, &a->info);
}
#endif

/* Bytes of the socket's owner, in the per-CPU counters (counter_slots.h);
 * the slot is claimed once per socket. */
static __always_inline void tcp_packet_bytes(struct tcp_sock_info *i, u32 fresh, int ingress)
{
#ifdef TCP_BYTES
	if (!i->counter_slot)
		i->counter_slot = 1 + ((i->owner.ident | i->owner.cgroup_id) ?
				       claim_counter_slot(&i->owner) : 0);
	tcp_bytes_add(i->counter_slot - 1, fresh, !ingress);
#endif
}

/* tcp_packet's answer: the packet begins a request on a connection of the
 * service graph (a server's arriving, a client's leaving), the one packet
 * of an exchange where a trace context can be. */
#define PACKET_REQUEST_BEGAN 1

/* The packet's full socket into `*sk`, and its key in the socket table
 * (its address); 0 when the packet has no full socket. */
static __always_inline u64 packet_socket(struct __sk_buff *skb, struct bpf_sock **sk)
{
	*sk = skb->sk;
	if (!*sk)
		return 0;
	*sk = bpf_sk_fullsock(*sk);
	if (!*sk)
		return 0;
	return sock_address(*sk);
}

/* A TCP packet with payload, its headers read into `p`. */
static __always_inline int tcp_packet(struct __sk_buff *skb, const struct packet *p, int ingress)
{
	struct bpf_sock *sk;
	u64 key = packet_socket(skb, &sk);
	if (!key)
		return 0;
	struct tcp_sock_info *i = tcp_socket_lookup(key);
	if (!i) {
#ifdef TCP_EXCHANGES
		i = tcp_adopt_packet(skb, key, p, ingress);
#endif
		if (!i)
			return 0;
	}
	u32 fresh = fresh_bytes(i, ingress, p->seq, p->len);
	if (!fresh)
		return 0;
	int began = 0;
#ifdef TCP_EXCHANGES
	/* The first payload of a response: its status line, if HTTP/1.x. */
	if (i->edge.role && i->phase == PHASE_REQUEST && (i->edge.role == ROLE_CLIENT) == ingress &&
	    p->len >= HTTP_STATUS_BYTES) {
		u8 status[HTTP_STATUS_BYTES];
		if (!bpf_skb_load_bytes(skb, p->off, status, HTTP_STATUS_BYTES) &&
		    http_status_failed(status))
			i->exchange_failed = 1;
	}
	began = edge_track(i, key, fresh, !ingress);
#endif
#ifdef TCP_TRACES
	/* A server's response leaving: its thread's segment has made progress
	 * (the thread is known from the socket, whatever context this is). */
	if (!ingress && i->traced_tid)
		segment_socket_io(i->traced_tid, key, 1);
#endif
	tcp_packet_bytes(i, fresh, ingress);
#ifdef TCP_RTT_ON_PACKETS
	/* A connection's first payload packet is always sampled, then about one
	 * in RTT_SAMPLE_EVERY per CPU (tcp/rtt.h): short connections get their
	 * RTT counted too, not only by chance. */
	if (!i->rtt_sampled || !tcp_rtt_skip()) {
		struct bpf_tcp_sock *tp = bpf_tcp_sock(sk);
		if (tp) {
			tcp_rtt_sample(i, tp->srtt_us >> 3);
			i->rtt_sampled = 1;
		}
	}
#endif
	return began ? PACKET_REQUEST_BEGAN : 0;
}

#ifdef TCP_TRACES
/* The wire reader found a trace context in the request this packet began:
 * the thread that reads the socket next takes it up (tcp/reads.bpf.c). */
static __always_inline void tcp_packet_traced(struct __sk_buff *skb)
{
	struct bpf_sock *sk;
	u64 key = packet_socket(skb, &sk);
	struct tcp_sock_info *i = key ? tcp_socket_lookup(key) : 0;
	if (i)
		i->await_reader = 1;
}
#endif
#endif

#endif
