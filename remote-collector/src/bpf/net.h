/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Event structs of the socket-lifecycle programs (net.bpf.c), shared with Rust
 * through the generated skeleton types. No implicit padding.
 */
#ifndef TAPDECK_NET_H
#define TAPDECK_NET_H

enum td_flow_kind {
	TD_FLOW_OPEN = 1,  /* the connection reached ESTABLISHED */
	TD_FLOW_CLOSE = 2, /* the socket reached CLOSE: final counters */
};

/* Counter indexes of `net_counters`. */
enum td_net_counter {
	TD_NCNT_RINGBUF_FULL = 0,
	TD_NCNT_TABLE_FULL = 1,
	TD_NCNT_MAX = 2,
};

struct td_flow_event {
	__u64 ts_ns;    /* bpf_ktime_get_ns() of the state change */
	__u64 start_ns; /* CLOSE→SYN_SENT (active) or first ESTABLISHED (passive); 0 if unseen */
	__u64 sk;       /* socket address: the flow's key for this run */
	__u64 bytes_received;
	__u64 bytes_acked;
	__u32 kind;
	__u32 netns;
	__u32 pid; /* tgid that called connect (active opens); 0 otherwise */
	__u32 connect_us; /* SYN_SENT → ESTABLISHED; 0 when not an active open seen here */
	__u32 srtt_us;
	__u32 segs_in;
	__u32 segs_out;
	__u32 total_retrans;
	__u32 retrans; /* tcp_retransmit_skb events */
	__u32 rst_sent;
	__u32 rst_recv;
	__u32 pad0;
	__u16 sport; /* local port, host order */
	__u16 dport; /* remote port, host order */
	__u8 family;
	__u8 active; /* 1: this side connected (client); 0: accepted (server) */
	__u8 oldstate;
	__u8 newstate;
	__u8 saddr[16]; /* local address (4 bytes for AF_INET) */
	__u8 daddr[16]; /* remote address */
	__u8 comm[16];
};

#endif
