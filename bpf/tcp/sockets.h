/* The sockets taskscope tracks: their owner and, for the service graph,
 * their side of an edge, in a two-level table; and who listens where, so a
 * passive connection is charged to its listener. */
#ifndef TASKSCOPE_TCP_SOCKETS_H
#define TASKSCOPE_TCP_SOCKETS_H

#include "tcp.h"

/* One side of a connection in the service graph: who (owner), in which role,
 * between which addresses.  A client's peer is the server's ip:port; a
 * server's peer is the client's ip (its port is ephemeral, so 0). */
struct edge_key {
	struct owner owner;
	u8 local[16];   /* IPv4 as v4-mapped IPv6 */
	u8 peer[16];
	u16 peer_port;
	u8 role;
	u8 slot;        /* log2 slot in edge_latency; 0 in edge_stats */
	/* A client's connection to a virtual IP (one NAT sends elsewhere): its
	 * local port, so that the connection has series of its own until user
	 * space names the backend it reached and folds them
	 * (agent/edge_sides.py; FOLDED_CONNECTIONS then); else 0. */
	u32 conn_port;
};

/* What is known of a socket.  The fields every packet (or send and
 * receive) writes come first: with the slot's `sk` they fill one cache
 * line (see tcp_socket_slots), since a connection's two directions are
 * usually handled on two CPUs and each line written bounces between them. */
struct tcp_sock_info {
#ifdef TCP_EXCHANGES
	u8 phase;
	u8 exchange_failed;    /* the exchange in progress failed (tcp/failures.h) */
	u8 batch_slot;         /* the common log2 slot of the batched exchanges */
	u8 listed;             /* in tcp_exchange_sockets */
#else
	u32 pad0;
#endif
#ifdef TCP_PACKETS
	u8 seq_seen;        /* which of sent_end and received_end are set */
	u8 await_reader;    /* a request with a trace context began: its reader takes it up */
	u16 pad1;
	u32 sent_end;       /* sequence number after the last byte seen leaving, */
	u32 received_end;   /* and arriving (see tcp/packets.h) */
#else
	u32 pad1[3];
#endif
#ifdef TCP_EXCHANGES
	u32 batch_count;        /* exchanges not yet added to edge_latency */
	u32 unflushed_sent;     /* bytes not yet added to edge_stats (flushed */
	u32 unflushed_received; /* before they reach UNFLUSHED_MAX) */
	u32 pad2;
	u64 exchange_start_ns;
	u64 last_response_ns;
	u64 batch_ns;           /* the batched exchanges' total time */
	/* Read on every packet, written rarely. */
	struct edge_key edge;
	u64 flushed_ns;
	u32 traced_tid;     /* thread whose trace segment this connection serves */
	u16 local_port;
	u16 peer_port;
	u32 unflushed_failed;  /* failed exchanges not yet added to edge_stats */
	u8 reset_received;
	u8 pad3[3];
#endif
#ifdef TCP_PACKETS
	u32 counter_slot;   /* 1 + the owner's tcp_bytes slot; 0: none claimed yet */
	u8 rtt_sampled;     /* its RTT has been sampled once (tcp/packets.h) */
	u8 pad4[3];
#endif
	struct owner owner;
	u64 connect_start_ns;
};

/* Socket (its kernel address) -> what is known of it, in two levels.  Every
 * send and receive looks its socket up, and a hash lookup costs a helper
 * call (~55 ns here) where an array lookup is inlined: so a socket lives in
 * a direct-mapped array slot, picked by a hash of its address, unless
 * another socket holds that slot; then in an LRU hash, which stays bounded
 * should a socket ever vanish unseen.  A slot is a whole number of cache
 * lines, in an array whose values start on a page where the kernel can
 * (SOCKET_SLOTS_FLAGS: BPF_F_MMAPABLE, 5.5+), so that `sk` and the hot
 * fields share the slot's first line. */
#if defined(TCP_EXCHANGES) && defined(TCP_PACKETS)
#define TCP_SOCK_SLOT_PAD 16
#elif defined(TCP_EXCHANGES)
#define TCP_SOCK_SLOT_PAD 24
#elif defined(TCP_PACKETS)
#define TCP_SOCK_SLOT_PAD 8
#else
#define TCP_SOCK_SLOT_PAD 16
#endif
struct tcp_sock_slot {
	u64 sk;  /* 0: free */
	struct tcp_sock_info info;
	u8 pad[TCP_SOCK_SLOT_PAD];  /* (BCC cannot describe a size computed with sizeof) */
};
_Static_assert(sizeof(struct tcp_sock_slot) % 64 == 0, "a socket slot is whole cache lines");
#ifndef SOCKET_SLOTS_FLAGS
#define SOCKET_SLOTS_FLAGS 0
#endif
BPF_F_TABLE("array", u32, struct tcp_sock_slot, tcp_socket_slots, TCP_SOCKET_SLOTS,
	    SOCKET_SLOTS_FLAGS);
BPF_TABLE("lru_hash", u64, struct tcp_sock_info, tcp_sockets, TCP_MAX_SOCKETS);

static __always_inline struct tcp_sock_slot *tcp_socket_slot(u64 sk)
{
	/* Fibonacci hashing; sockets are at least 64-byte aligned. */
	u32 index = (u32)(((sk >> 6) * 0x9E3779B97F4A7C15ULL) >> 32) & (TCP_SOCKET_SLOTS - 1);
	return tcp_socket_slots.lookup(&index);
}

static __always_inline struct tcp_sock_info *tcp_socket_lookup(u64 sk)
{
	struct tcp_sock_slot *slot = tcp_socket_slot(sk);
	if (slot && slot->sk == sk)
		return &slot->info;
	return tcp_sockets.lookup(&sk);
}

/* Store `info` for `sk`; returns where it now lives (0: the LRU was full). */
static __always_inline struct tcp_sock_info *tcp_socket_store(u64 sk, struct tcp_sock_info *info)
{
	struct tcp_sock_slot *slot = tcp_socket_slot(sk);
	if (slot && (slot->sk == sk || __sync_val_compare_and_swap(&slot->sk, 0, sk) == 0)) {
		slot->info = *info;
		return &slot->info;
	}
	tcp_sockets.update(&sk, info);
	return tcp_sockets.lookup(&sk);
}

static __always_inline void tcp_socket_delete(u64 sk)
{
	struct tcp_sock_slot *slot = tcp_socket_slot(sk);
	if (slot && slot->sk == sk)
		slot->sk = 0;
	else
		tcp_sockets.delete(&sk);
}
/* Who listens where: by network namespace and port, since every pod of a
 * node may listen on 8080.  The namespace is read through BTF offsets; without
 * them it is 0 and listeners are told apart by port alone. */
struct listener_key {
	u32 netns;
	u16 port;
	u16 pad;
};
BPF_TABLE("lru_hash", struct listener_key, struct owner, tcp_listeners, TCP_MAX_LISTENERS);

static __always_inline u32 sock_netns(const void *sk)
{
	u32 inum = 0;
#ifdef TCP_EXCHANGES_BTF
	void *net = 0;
	bpf_probe_read_kernel(&net, sizeof(net), sk + SKC_NET_OFFSET);
	if (net)
		bpf_probe_read_kernel(&inum, sizeof(inum), net + NET_NS_INUM_OFFSET);
#endif
	return inum;
}
static __always_inline struct owner *tcp_owner_of(const void *sk)
{
	u64 key = (u64)sk;
	struct tcp_sock_info *info = tcp_socket_lookup(key);
	return info ? &info->owner : 0;
}

#endif
