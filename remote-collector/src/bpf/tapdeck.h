/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Event structs shared by the BPF programs (tapdeck.bpf.c) and the Rust side.
 *
 * Rust never re-declares these: libbpf-cargo generates `skel::types::*` from the
 * BTF of the compiled object, so a field added here shows up in Rust on the next
 * build. Keep every struct free of implicit padding (explicit `pad` fields) so the
 * generated Rust layout and the C layout cannot drift apart.
 */
#ifndef TAPDECK_H
#define TAPDECK_H

#define TD_COMM_LEN 16
/* Hard upper bound of --max-payload. The per-CPU scratch holds twice this so the
 * verifier can prove every iovec copy stays in bounds. */
#define TD_MAX_PAYLOAD 8192
/* readv/writev/recvmsg/sendmsg: iovecs copied per syscall. */
#define TD_MAX_IOV 4

/* event_hdr.kind */
enum td_event_kind {
	TD_EV_DATA = 1,    /* read-like or write-like syscall on a TCP socket (or a UDP
			    * socket to or from port 53), ret > 0 */
	TD_EV_ACCEPT = 2,  /* accept4 returned a TCP socket: this process is its server */
	TD_EV_CONNECT = 3, /* connect on a TCP socket returned 0 or -EINPROGRESS */
	TD_EV_CLOSE = 4,   /* close(fd) of a TCP socket (emitted at syscall entry) */
};

/* event_hdr.direction */
enum td_direction {
	TD_DIR_INGRESS = 0, /* data read from the socket */
	TD_DIR_EGRESS = 1,  /* data written to the socket */
};

/* event_hdr.syscall */
enum td_syscall {
	TD_SYS_READ = 1,
	TD_SYS_WRITE = 2,
	TD_SYS_READV = 3,
	TD_SYS_WRITEV = 4,
	TD_SYS_RECVFROM = 5,
	TD_SYS_SENDTO = 6,
	TD_SYS_RECVMSG = 7,
	TD_SYS_SENDMSG = 8, /* also each UDP datagram of a sendmmsg (DNS) */
	TD_SYS_SENDFILE = 9, /* byte count only: the payload never passes through user memory */
	TD_SYS_ACCEPT4 = 10,
	TD_SYS_CONNECT = 11,
	TD_SYS_CLOSE = 12,
};

/* event_hdr.flags */
#define TD_FLAG_PAYLOAD_FAULT 1 /* bpf_probe_read_user failed: payload missing */

/* Index into the per-CPU `counters` array. Userspace reports them in `stats`. */
enum td_counter {
	TD_CNT_RINGBUF_FULL = 0,  /* event lost: ring buffer had no room */
	TD_CNT_PAYLOAD_FAULT = 1, /* event sent without (part of) its payload */
	TD_CNT_PID_INHERITED = 2, /* fork of a traced process added to `pids` */
	TD_CNT_ACTIVE_FULL = 3,   /* syscall lost: the in-flight table was full */
	TD_CNT_SAMPLED_OUT = 4,   /* syscall skipped: its socket is not sampled (over budget) */
	TD_CNT_MAX = 5,
};

/* sample_keep (src/budget.rs): a socket is traced when its bucket, the top 10 bits of
 * a multiplicative hash of its address, is below sample_keep; TD_SAMPLE_ALL traces all. */
#define TD_SAMPLE_ALL 1024

/*
 * Fixed header of every ring-buffer record. TD_EV_DATA records are followed by
 * `copied` payload bytes: the first `copied` of the `total` bytes the syscall moved.
 */
struct event_hdr {
	__u64 enter_ns; /* bpf_ktime_get_ns() at sys_enter */
	__u64 exit_ns;  /* bpf_ktime_get_ns() at sys_exit (== enter_ns for close) */
	__u64 sock;     /* struct sock pointer: the connection key */
	__u32 tgid;
	__u32 tid;
	__s32 fd;
	__u32 total;   /* bytes moved by the syscall (its return value) */
	__u32 copied;  /* payload bytes following this header */
	__u32 tcp_seq; /* sequence number of the first byte moved */
	__u16 family;  /* AF_INET or AF_INET6 */
	__u16 lport;   /* local port, host byte order */
	__u16 rport;   /* remote port, host byte order */
	__u8 kind;     /* enum td_event_kind */
	__u8 direction; /* enum td_direction */
	__u8 syscall;  /* enum td_syscall */
	__u8 flags;    /* TD_FLAG_* */
	__u8 udp;      /* 1: a UDP socket (DNS, port 53 only), 0: TCP */
	__u8 pad[5];
	__u8 laddr[16]; /* local address: 4 bytes for AF_INET, 16 for AF_INET6 */
	__u8 raddr[16]; /* remote address */
	char comm[TD_COMM_LEN];
};

/* Per-CPU scratch where a record is assembled before bpf_ringbuf_output. */
struct data_event {
	struct event_hdr hdr;
	__u8 data[TD_MAX_PAYLOAD * 2];
};

#endif /* TAPDECK_H */
