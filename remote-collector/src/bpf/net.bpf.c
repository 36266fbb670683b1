// SPDX-License-Identifier: GPL-2.0
/*
 * Tapdeck socket lifecycle (CO-RE, BTF tracepoints): one record when a TCP
 * connection is established and one when its socket closes, with the kernel's own
 * counters (struct tcp_sock) and the retransmissions and resets seen meanwhile.
 * Every TCP socket of the node, in every network namespace. Kept apart from the
 * syscall tracer (tapdeck.bpf.c): it runs with signal `n`.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#include "net.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

/* include/net/tcp_states.h */
#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_CLOSE 7

char LICENSE[] SEC("license") = "GPL";

_Static_assert(sizeof(struct td_flow_event) == 144, "td_flow_event layout: src/kflows.rs decodes 144 bytes");

struct flow_state {
	__u64 start_ns;
	__u32 pid;
	__u32 connect_us;
	__u32 retrans;
	__u32 rst_sent;
	__u32 rst_recv;
	__u8 active;
	__u8 family; /* non-zero once the addresses below were taken */
	__u16 sport;
	__u16 dport;
	__u8 pad[6];
	__u8 saddr[16];
	__u8 daddr[16];
	__u8 comm[16];
};

/* sk -> state of a connection seen opening (or counted) during the run. LRU: a
 * socket whose close was missed cannot fill the table; evictions are counted by
 * userspace as flows closed without a final record. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct flow_state);
} flow_states SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} flow_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TD_NCNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} net_counters SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&net_counters, &idx);
	if (c)
		__sync_fetch_and_add(c, 1);
}

static __always_inline int is_tcp(struct sock *sk)
{
	return BPF_CORE_READ(sk, sk_protocol) == IPPROTO_TCP;
}

static __always_inline struct flow_state *state_of(__u64 key, int create)
{
	struct flow_state *st = bpf_map_lookup_elem(&flow_states, &key);
	if (st || !create)
		return st;
	struct flow_state zero = {};
	if (bpf_map_update_elem(&flow_states, &key, &zero, BPF_NOEXIST) && bpf_map_update_elem(&flow_states, &key, &zero, BPF_ANY)) {
		count(TD_NCNT_TABLE_FULL);
		return 0;
	}
	return bpf_map_lookup_elem(&flow_states, &key);
}

static __always_inline void read_tuple(struct sock *sk, __u8 *family, __u16 *sport, __u16 *dport, __u8 *saddr,
					  __u8 *daddr)
{
	*family = BPF_CORE_READ(sk, __sk_common.skc_family);
	*sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	*dport = __builtin_bswap16(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (*family == AF_INET) {
		bpf_core_read(saddr, 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(daddr, 4, &sk->__sk_common.skc_daddr);
	} else {
		bpf_core_read(saddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(daddr, 16, &sk->__sk_common.skc_v6_daddr);
	}
}

static __always_inline void emit(struct sock *sk, struct flow_state *st, __u32 kind, int oldstate, int newstate)
{
	struct td_flow_event *e = bpf_ringbuf_reserve(&flow_events, sizeof(*e), 0);
	if (!e) {
		count(TD_NCNT_RINGBUF_FULL);
		return;
	}
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = bpf_ktime_get_ns();
	e->sk = (__u64)sk;
	e->kind = kind;
	e->oldstate = oldstate;
	e->newstate = newstate;
	e->netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	if (st && st->family) {
		/* The kernel clears the ports while closing: use the ones seen at open. */
		e->family = st->family;
		e->sport = st->sport;
		e->dport = st->dport;
		__builtin_memcpy(e->saddr, st->saddr, sizeof(e->saddr));
		__builtin_memcpy(e->daddr, st->daddr, sizeof(e->daddr));
	} else {
		read_tuple(sk, &e->family, &e->sport, &e->dport, e->saddr, e->daddr);
	}
	e->bytes_received = BPF_CORE_READ(tp, bytes_received);
	e->bytes_acked = BPF_CORE_READ(tp, bytes_acked);
	e->srtt_us = BPF_CORE_READ(tp, srtt_us) >> 3;
	e->segs_in = BPF_CORE_READ(tp, segs_in);
	e->segs_out = BPF_CORE_READ(tp, segs_out);
	e->total_retrans = BPF_CORE_READ(tp, total_retrans);
	if (st) {
		e->start_ns = st->start_ns;
		e->pid = st->pid;
		e->connect_us = st->connect_us;
		e->retrans = st->retrans;
		e->rst_sent = st->rst_sent;
		e->rst_recv = st->rst_recv;
		e->active = st->active;
		__builtin_memcpy(e->comm, st->comm, sizeof(e->comm));
	}
	bpf_ringbuf_submit(e, 0);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(td_set_state, struct sock *sk, int oldstate, int newstate)
{
	if (!is_tcp(sk))
		return 0;
	__u64 key = (__u64)sk;
	__u64 now = bpf_ktime_get_ns();
	if (newstate == TCP_SYN_SENT) {
		/* connect(): process context, so the caller is known. */
		struct flow_state *st = state_of(key, 1);
		if (!st)
			return 0;
		__builtin_memset(st, 0, sizeof(*st));
		st->start_ns = now;
		st->active = 1;
		st->pid = bpf_get_current_pid_tgid() >> 32;
		bpf_get_current_comm(st->comm, sizeof(st->comm));
		return 0;
	}
	if (newstate == TCP_ESTABLISHED && (oldstate == TCP_SYN_SENT || oldstate == TCP_SYN_RECV)) {
		struct flow_state *st = state_of(key, 1);
		if (!st)
			return 0;
		if (oldstate == TCP_SYN_SENT && st->active && st->start_ns)
			st->connect_us = (now - st->start_ns) / 1000;
		if (oldstate == TCP_SYN_RECV) {
			st->active = 0;
			if (!st->start_ns)
				st->start_ns = now;
		}
		read_tuple(sk, &st->family, &st->sport, &st->dport, st->saddr, st->daddr);
		emit(sk, st, TD_FLOW_OPEN, oldstate, newstate);
		return 0;
	}
	if (newstate == TCP_CLOSE) {
		struct flow_state *st = bpf_map_lookup_elem(&flow_states, &key);
		/* A socket that closes without having been seen open in this run (it
		 * predates the capture, or never left SYN_SENT) is still reported. */
		emit(sk, st, TD_FLOW_CLOSE, oldstate, newstate);
		if (st)
			bpf_map_delete_elem(&flow_states, &key);
	}
	return 0;
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(td_retransmit, struct sock *sk)
{
	struct flow_state *st = state_of((__u64)sk, 0);
	if (st)
		__sync_fetch_and_add(&st->retrans, 1);
	return 0;
}

SEC("tp_btf/tcp_send_reset")
int BPF_PROG(td_send_reset, struct sock *sk)
{
	if (!sk)
		return 0;
	struct flow_state *st = state_of((__u64)sk, 0);
	if (st)
		__sync_fetch_and_add(&st->rst_sent, 1);
	return 0;
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(td_receive_reset, struct sock *sk)
{
	struct flow_state *st = state_of((__u64)sk, 0);
	if (st)
		__sync_fetch_and_add(&st->rst_recv, 1);
	return 0;
}
