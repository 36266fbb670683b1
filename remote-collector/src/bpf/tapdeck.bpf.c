// SPDX-License-Identifier: GPL-2.0
/*
 * Tapdeck syscall tracer (CO-RE).
 *
 * sys_enter_* remembers the arguments of a data syscall on a TCP socket (or a UDP
 * socket to or from port 53: DNS) made by a traced process (tgid in `pids`); sys_exit_* with ret > 0 copies up to
 * `max_payload` bytes of what was read or written and sends one record to the
 * `events` ring buffer. accept4/connect/close send small lifecycle records.
 * Every lost record is counted in `counters`; nothing is dropped silently.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

#include "tapdeck.h"

#define AF_INET 2
#define AF_INET6 10
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define EINPROGRESS 115
/* A peek moves no byte: the read that later consumes the bytes reports them, with
 * their sequence number (a peek leaves copied_seq alone, so copied_seq - ret would
 * be wrong, and a record of it would show the parser the same bytes twice). */
#define MSG_PEEK 2

/* Wake userspace only once this much is queued; it polls on a short timeout anyway. */
#define TD_WAKEUP_BYTES (256 * 1024)

char LICENSE[] SEC("license") = "GPL";

/* Set by userspace before load (--max-payload), clamped to TD_MAX_PAYLOAD. */
const volatile __u32 max_payload = 4096;

/* Sampling level, rewritten by userspace while running (the .data map is mmapped):
 * lowered when the collector is over its CPU or memory budget (src/budget.rs). */
volatile __u32 sample_keep = TD_SAMPLE_ALL;

/* tgid -> 1 (added by userspace) or 2 (inherited through fork). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} pids SEC(".maps");

struct active_call {
	__u64 enter_ns;
	__u64 buf; /* buffer, or iovec array for the vectored calls */
	__u32 len; /* buffer length, or iovec count */
	__s32 fd;
	__u8 syscall;
	__u8 direction;
	__u8 vectored;
	__u8 pad[5];
	__u64 addr; /* sendto/recvfrom sockaddr, msg_name: the peer of an unconnected UDP socket */
};

/* pid_tgid -> the syscall in progress on that thread. A plain hash (an LRU hash
 * costs several times more per update); the entry is deleted at exit, and a thread
 * that dies inside a syscall leaves one entry that its tid's next call overwrites.
 * A full map is counted (TD_CNT_ACTIVE_FULL). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct active_call);
} active SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 * 1024 * 1024);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct data_event);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TD_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);

	if (v)
		*v += 1;
}

static __always_inline int is_traced(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;

	return bpf_map_lookup_elem(&pids, &tgid) != NULL;
}

/* The struct sock behind fd if fd is an AF_INET/AF_INET6 TCP or UDP socket, else
 * NULL; *udp tells which. */
static __always_inline struct sock *inet_sock_of_fd(__s32 fd, __u8 *udp)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt;
	struct file **fds;
	struct file *file = NULL;
	struct socket *socket;
	struct sock *sk;
	umode_t mode;
	__u16 family, protocol;

	if (fd < 0)
		return NULL;
	fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || (unsigned int)fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	fds = BPF_CORE_READ(fdt, fd);
	if (bpf_core_read(&file, sizeof(file), &fds[fd]) || !file)
		return NULL;
	mode = BPF_CORE_READ(file, f_inode, i_mode);
	if ((mode & S_IFMT) != S_IFSOCK)
		return NULL;
	socket = BPF_CORE_READ(file, private_data);
	if (!socket)
		return NULL;
	sk = BPF_CORE_READ(socket, sk);
	if (!sk)
		return NULL;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return NULL;
	protocol = BPF_CORE_READ(sk, sk_protocol);
	if (protocol != IPPROTO_TCP && protocol != IPPROTO_UDP)
		return NULL;
	*udp = protocol == IPPROTO_UDP;
	return sk;
}

/* The struct sock behind fd if fd is an AF_INET/AF_INET6 TCP socket, else NULL. */
static __always_inline struct sock *tcp_sock_of_fd(__s32 fd)
{
	__u8 udp = 0;
	struct sock *sk = inet_sock_of_fd(fd, &udp);

	return udp ? NULL : sk;
}

#define DNS_PORT 53

/* A UDP socket bound to or connected to port 53. */
static __always_inline int sk_is_dns(struct sock *sk)
{
	return BPF_CORE_READ(sk, __sk_common.skc_num) == DNS_PORT ||
	       bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport)) == DNS_PORT;
}

/* The peer of a datagram on an unconnected UDP socket, from the sockaddr the
 * caller passed (sendto, sendmsg) or the kernel filled in (recvfrom, recvmsg). */
static __always_inline void fill_peer(struct event_hdr *h, __u64 addr)
{
	struct sockaddr_in6 sa = {};

	if (!addr || bpf_probe_read_user(&sa, sizeof(struct sockaddr_in), (void *)addr))
		return;
	if (sa.sin6_family == AF_INET && h->family == AF_INET) {
		h->rport = bpf_ntohs(sa.sin6_port);
		/* sockaddr_in's sin_addr sits where sockaddr_in6 has sin6_flowinfo. */
		__builtin_memcpy(h->raddr, &sa.sin6_flowinfo, 4);
	} else if (sa.sin6_family == AF_INET6 && h->family == AF_INET6 &&
		   !bpf_probe_read_user(&sa, sizeof(sa), (void *)addr)) {
		h->rport = bpf_ntohs(sa.sin6_port);
		__builtin_memcpy(h->raddr, &sa.sin6_addr, 16);
	}
}

static __always_inline void fill_socket(struct event_hdr *h, struct sock *sk)
{
	h->sock = (__u64)sk;
	h->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	h->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	h->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	__builtin_memset(h->laddr, 0, sizeof(h->laddr));
	__builtin_memset(h->raddr, 0, sizeof(h->raddr));
	if (h->family == AF_INET) {
		bpf_core_read(h->laddr, 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(h->raddr, 4, &sk->__sk_common.skc_daddr);
	} else if (bpf_core_field_exists(sk->__sk_common.skc_v6_daddr)) {
		bpf_core_read(h->laddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(h->raddr, 16, &sk->__sk_common.skc_v6_daddr);
	}
}

/* Must match sock_bucket() in src/budget.rs. */
static __always_inline int sock_sampled(struct sock *sk)
{
	__u32 keep = sample_keep;

	if (keep >= TD_SAMPLE_ALL)
		return 1;
	if ((__u32)((((__u64)sk >> 6) * 0x9E3779B97F4A7C15ULL) >> 54) < keep)
		return 1;
	count(TD_CNT_SAMPLED_OUT);
	return 0;
}

static __always_inline struct data_event *scratch_event(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&scratch, &zero);
}

static __always_inline void fill_task(struct event_hdr *h)
{
	__u64 id = bpf_get_current_pid_tgid();

	h->tgid = id >> 32;
	h->tid = (__u32)id;
	bpf_get_current_comm(h->comm, sizeof(h->comm));
}

static __always_inline void submit(struct data_event *e, __u32 copied)
{
	__u64 size, flags;

	if (copied > TD_MAX_PAYLOAD)
		copied = TD_MAX_PAYLOAD;
	size = sizeof(struct event_hdr) + copied;
	flags = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) > TD_WAKEUP_BYTES ? BPF_RB_FORCE_WAKEUP
										  : BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_output(&events, e, size, flags))
		count(TD_CNT_RINGBUF_FULL);
}

/* ---- data syscalls ------------------------------------------------------------ */

/*
 * Called for traced processes only (rtp_sys_enter checks the tgid first).
 * Entry only remembers the arguments; whether fd is a TCP socket is checked at
 * exit, and only when bytes moved: a proxy's reads return EAGAIN about as often
 * as they return data, and those then cost a hash update and delete only.
 */
static __always_inline int enter_data(__s32 fd, __u64 buf, __u64 len, __u8 syscall, __u8 direction,
				      __u8 vectored)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct active_call call = {};

	call.enter_ns = bpf_ktime_get_ns();
	call.buf = buf;
	call.len = len > 0xffffffff ? 0xffffffff : len;
	call.fd = fd;
	call.syscall = syscall;
	call.direction = direction;
	call.vectored = vectored;
	if (bpf_map_update_elem(&active, &id, &call, BPF_ANY))
		count(TD_CNT_ACTIVE_FULL);
	return 0;
}

/* Adds the sockaddr argument to the call enter_data just stored (only when the
 * caller passed one: a TCP proxy's recv/send pass NULL and cost nothing more). */
static __always_inline int remember_addr(__u64 addr)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct active_call *call;

	if (!addr)
		return 0;
	call = bpf_map_lookup_elem(&active, &id);
	if (call)
		call->addr = addr;
	return 0;
}

/* msghdr -> (iovec array, count), read at entry: the kernel does not change them. */
static __always_inline int enter_msg(__s32 fd, __u64 msg_ptr, __u8 syscall, __u8 direction)
{
	struct user_msghdr msg = {};

	if (bpf_probe_read_user(&msg, sizeof(msg), (void *)msg_ptr))
		return 0;
	enter_data(fd, (__u64)msg.msg_iov, msg.msg_iovlen, syscall, direction, 1);
	return remember_addr((__u64)msg.msg_name);
}

static __always_inline __u32 copy_flat(struct data_event *e, const struct active_call *call,
				       __u64 ret, __u32 cap)
{
	__u64 n = ret < cap ? ret : cap;

	if (n > TD_MAX_PAYLOAD)
		n = TD_MAX_PAYLOAD;
	if (call->syscall == TD_SYS_SENDFILE)
		return 0;
	if (bpf_probe_read_user(e->data, n, (void *)call->buf)) {
		e->hdr.flags |= TD_FLAG_PAYLOAD_FAULT;
		count(TD_CNT_PAYLOAD_FAULT);
		return 0;
	}
	return n;
}

static __always_inline __u32 copy_vectored(struct data_event *e, const struct active_call *call,
					   __u64 ret, __u32 cap)
{
	__u64 remaining = ret;
	__u32 off = 0;
	int i;

#pragma unroll
	for (i = 0; i < TD_MAX_IOV; i++) {
		struct iovec iov;
		__u64 n;

		if (i >= call->len || remaining == 0 || off >= cap)
			break;
		if (bpf_probe_read_user(&iov, sizeof(iov), (void *)(call->buf + i * sizeof(iov))))
			goto fault;
		n = iov.iov_len;
		if (n > remaining)
			n = remaining;
		if (n > cap - off)
			n = cap - off;
		/* Bounds the verifier can follow: off < TD_MAX_PAYLOAD, n <= TD_MAX_PAYLOAD,
		 * and data[] holds 2 * TD_MAX_PAYLOAD. */
		off &= TD_MAX_PAYLOAD - 1;
		if (n > TD_MAX_PAYLOAD)
			n = TD_MAX_PAYLOAD;
		if (bpf_probe_read_user(e->data + off, n, iov.iov_base))
			goto fault;
		off += n;
		remaining -= n;
	}
	return off;
fault:
	e->hdr.flags |= TD_FLAG_PAYLOAD_FAULT;
	count(TD_CNT_PAYLOAD_FAULT);
	return off;
}

/* Kernels before 6.x keep the flags in struct sock itself. */
struct sock___flags_in_sock {
	unsigned long sk_flags;
} __attribute__((preserve_access_index));

/*
 * copied_seq at syscall exit, less the FIN if this read consumed it. The first
 * byte a read returned is copied_seq - ret, except that tcp_recvmsg also counts
 * the peer's FIN in copied_seq (+1) when a read drains the data up to a FIN
 * already queued: a response read after the server closed. A FIN is in sequence
 * space but carries no byte, so the read's record would be one past the packet's
 * seq. The FIN was consumed by this read exactly when one was received (tcp_fin
 * set SOCK_DONE) and copied_seq has caught up with rcv_nxt (which counts the FIN;
 * an unread FIN leaves copied_seq <= rcv_nxt - 1, and nothing follows a FIN).
 * Read at exit, not entry, so a read that returns EAGAIN stays cheap; the price is
 * that a second thread reading the same socket between this read and its exit
 * tracepoint would shift the number (sockets are not read by two threads at once
 * in the servers Tapdeck traces). Urgent data skipped by a non-inline read (never
 * used by HTTP) is not corrected.
 */
static __always_inline __u32 copied_seq_before_fin(struct tcp_sock *tp)
{
	struct sock *sk = (struct sock *)tp;
	__u32 copied = BPF_CORE_READ(tp, copied_seq);
	unsigned long flags;

	if (copied != BPF_CORE_READ(tp, rcv_nxt))
		return copied;
	if (bpf_core_field_exists(sk->__sk_common.skc_flags))
		flags = BPF_CORE_READ(sk, __sk_common.skc_flags);
	else
		flags = BPF_CORE_READ((struct sock___flags_in_sock *)sk, sk_flags);
	if (flags & (1UL << bpf_core_enum_value(enum sock_flags, SOCK_DONE)))
		return copied - 1;
	return copied;
}

static __always_inline int exit_data(const struct active_call *callp, long ret)
{
	struct active_call call = *callp;
	struct data_event *e;
	struct sock *sk;
	__u32 cap = max_payload, copied, seq;
	__u8 syscall = call.syscall;
	__u8 udp = 0;

	if (ret <= 0)
		return 0;
	sk = inet_sock_of_fd(call.fd, &udp);
	if (!sk || !sock_sampled(sk))
		return 0;
	e = scratch_event();
	if (!e)
		return 0;
	fill_socket(&e->hdr, sk);
	if (udp) {
		fill_peer(&e->hdr, call.addr);
		if (e->hdr.lport != DNS_PORT && e->hdr.rport != DNS_PORT)
			return 0;
	}
	if (cap > TD_MAX_PAYLOAD)
		cap = TD_MAX_PAYLOAD;

	e->hdr.enter_ns = call.enter_ns;
	e->hdr.exit_ns = bpf_ktime_get_ns();
	fill_task(&e->hdr);
	e->hdr.fd = call.fd;
	e->hdr.total = ret > 0xffffffff ? 0xffffffff : ret;
	e->hdr.kind = TD_EV_DATA;
	e->hdr.direction = call.direction;
	e->hdr.syscall = syscall;
	e->hdr.flags = 0;
	e->hdr.udp = udp;
	if (udp) {
		seq = (__u32)ret; /* no sequence numbers: tcp_seq is 0 */
	} else if (call.direction == TD_DIR_INGRESS) {
		seq = copied_seq_before_fin((struct tcp_sock *)sk);
	} else
		seq = BPF_CORE_READ((struct tcp_sock *)sk, write_seq);
	e->hdr.tcp_seq = seq - (__u32)ret;

	if (call.vectored)
		copied = copy_vectored(e, &call, ret, cap);
	else
		copied = copy_flat(e, &call, ret, cap);
	e->hdr.copied = copied;
	submit(e, copied);
	return 0;
}

/*
 * sendmmsg(fd, msgvec, vlen, flags): glibc's resolver sends a name's A and AAAA
 * queries in one call. Only UDP sockets to or from port 53 are followed; each
 * datagram sent becomes its own record (syscall TD_SYS_SENDMSG, direction egress).
 */
#define TD_SYS_SENDMMSG_CALL 200 /* internal marker in `active`, never in a record */
#define TD_MAX_MMSG 2

static __always_inline int exit_sendmmsg(const struct active_call *callp, long ret)
{
	struct active_call call = *callp, dgram = {};
	struct data_event *e;
	struct sock *sk;
	__u32 cap = max_payload, copied;
	__u8 udp = 0;
	int i;

	if (ret <= 0)
		return 0;
	sk = inet_sock_of_fd(call.fd, &udp);
	if (!sk || !udp || !sock_sampled(sk))
		return 0;
	if (cap > TD_MAX_PAYLOAD)
		cap = TD_MAX_PAYLOAD;
	dgram.vectored = 1;
#pragma unroll
	for (i = 0; i < TD_MAX_MMSG; i++) {
		struct mmsghdr m;

		if (i >= ret || i >= call.len)
			break;
		if (bpf_probe_read_user(&m, sizeof(m), (void *)(call.buf + i * sizeof(m))))
			break;
		e = scratch_event();
		if (!e)
			break;
		fill_socket(&e->hdr, sk);
		fill_peer(&e->hdr, (__u64)m.msg_hdr.msg_name);
		if (e->hdr.lport != DNS_PORT && e->hdr.rport != DNS_PORT)
			continue;
		e->hdr.enter_ns = call.enter_ns;
		e->hdr.exit_ns = bpf_ktime_get_ns();
		fill_task(&e->hdr);
		e->hdr.fd = call.fd;
		e->hdr.total = m.msg_len;
		e->hdr.kind = TD_EV_DATA;
		e->hdr.direction = TD_DIR_EGRESS;
		e->hdr.syscall = TD_SYS_SENDMSG;
		e->hdr.flags = 0;
		e->hdr.udp = 1;
		e->hdr.tcp_seq = 0;
		dgram.buf = (__u64)m.msg_hdr.msg_iov;
		dgram.len = m.msg_hdr.msg_iovlen;
		copied = copy_vectored(e, &dgram, m.msg_len, cap);
		e->hdr.copied = copied;
		submit(e, copied);
	}
	return 0;
}

/* ---- socket lifecycle ------------------------------------------------------ */

static __always_inline void emit_lifecycle(struct sock *sk, __s32 fd, __u64 enter_ns, __u8 kind,
					   __u8 syscall)
{
	struct data_event *e;

	if (!sock_sampled(sk))
		return;
	e = scratch_event();
	if (!e)
		return;
	e->hdr.enter_ns = enter_ns;
	e->hdr.exit_ns = bpf_ktime_get_ns();
	fill_task(&e->hdr);
	fill_socket(&e->hdr, sk);
	e->hdr.fd = fd;
	e->hdr.total = 0;
	e->hdr.copied = 0;
	e->hdr.tcp_seq = 0;
	e->hdr.kind = kind;
	e->hdr.direction = 0;
	e->hdr.syscall = syscall;
	e->hdr.flags = 0;
	e->hdr.udp = BPF_CORE_READ(sk, sk_protocol) == IPPROTO_UDP;
	submit(e, 0);
}

/* ---- dispatch: raw_syscalls/sys_enter and sys_exit ------------------------------
 *
 * Two raw tracepoint programs see every syscall of every task. They used to be 23
 * programs on the per-syscall tracepoints (syscalls/sys_enter_read, ...), but those
 * go through perf's syscall-event path, which builds a perf record for each event
 * before the program runs: about 0.5 us per event on the test VM, paid by every
 * process's read and write, traced or not. A raw tracepoint calls the program
 * directly; an uninteresting syscall costs a switch on its number at entry and one
 * hash lookup (`active`) at exit.
 *
 * Syscall numbers are per architecture. 32-bit (compat) tasks have other numbers and
 * are not supported (a traced compat process would be misread; nginx, OpenResty,
 * Kong and APISIX run as 64-bit processes).
 */
#if defined(__TARGET_ARCH_x86)
#define NR_READ 0
#define NR_WRITE 1
#define NR_CLOSE 3
#define NR_READV 19
#define NR_WRITEV 20
#define NR_SENDFILE 40
#define NR_CONNECT 42
#define NR_SENDTO 44
#define NR_RECVFROM 45
#define NR_SENDMSG 46
#define NR_RECVMSG 47
#define NR_ACCEPT4 288
#define NR_SENDMMSG 307
#elif defined(__TARGET_ARCH_arm64)
#define NR_CLOSE 57
#define NR_READ 63
#define NR_WRITE 64
#define NR_READV 65
#define NR_WRITEV 66
#define NR_SENDFILE 71
#define NR_CONNECT 203
#define NR_SENDTO 206
#define NR_RECVFROM 207
#define NR_SENDMSG 211
#define NR_RECVMSG 212
#define NR_ACCEPT4 242
#define NR_SENDMMSG 269
#else
#error "tapdeck.bpf.c: syscall numbers are defined for x86_64 and arm64 only"
#endif

static __always_inline void enter_accept4(__s32 fd)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct active_call call = {};

	call.enter_ns = bpf_ktime_get_ns();
	call.fd = fd;
	call.syscall = TD_SYS_ACCEPT4;
	if (bpf_map_update_elem(&active, &id, &call, BPF_ANY))
		count(TD_CNT_ACTIVE_FULL);
}

/* Emitted at entry: after the syscall the fd no longer leads to the socket. */
static __always_inline void enter_close(__s32 fd)
{
	__u8 udp = 0;
	struct sock *sk = inet_sock_of_fd(fd, &udp);

	if (sk && (!udp || sk_is_dns(sk)))
		emit_lifecycle(sk, fd, bpf_ktime_get_ns(), TD_EV_CLOSE, TD_SYS_CLOSE);
}

SEC("raw_tracepoint/sys_enter")
int rtp_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
	long nr = ctx->args[1];
	__u64 a0, a1, a2;

	switch (nr) {
	case NR_READ:
	case NR_WRITE:
	case NR_READV:
	case NR_WRITEV:
	case NR_RECVFROM:
	case NR_SENDTO:
	case NR_RECVMSG:
	case NR_SENDMSG:
	case NR_SENDFILE:
	case NR_SENDMMSG:
	case NR_ACCEPT4:
	case NR_CONNECT:
	case NR_CLOSE:
		break;
	default:
		return 0;
	}
	/* The tgid filter before anything is read from the registers. */
	if (!is_traced())
		return 0;
	a0 = PT_REGS_PARM1_CORE_SYSCALL(regs);
	switch (nr) {
	case NR_CLOSE:
		enter_close(a0);
		return 0;
	case NR_ACCEPT4:
		enter_accept4(a0);
		return 0;
	case NR_CONNECT:
		return enter_data(a0, 0, 0, TD_SYS_CONNECT, TD_DIR_EGRESS, 0);
	case NR_RECVMSG:
		if (PT_REGS_PARM3_CORE_SYSCALL(regs) & MSG_PEEK)
			return 0; /* see MSG_PEEK */
		return enter_msg(a0, PT_REGS_PARM2_CORE_SYSCALL(regs), TD_SYS_RECVMSG, TD_DIR_INGRESS);
	case NR_SENDMSG:
		return enter_msg(a0, PT_REGS_PARM2_CORE_SYSCALL(regs), TD_SYS_SENDMSG, TD_DIR_EGRESS);
	case NR_SENDFILE:
		/* sendfile(out_fd, in_fd, offset, count): only the byte count is reported, so
		 * the HTTP parser can skip a static-file body it never sees. */
		return enter_data(a0, 0, PT_REGS_PARM4_CORE_SYSCALL(regs), TD_SYS_SENDFILE, TD_DIR_EGRESS, 0);
	}
	a1 = PT_REGS_PARM2_CORE_SYSCALL(regs);
	a2 = PT_REGS_PARM3_CORE_SYSCALL(regs);
	switch (nr) {
	case NR_READ:
		return enter_data(a0, a1, a2, TD_SYS_READ, TD_DIR_INGRESS, 0);
	case NR_WRITE:
		return enter_data(a0, a1, a2, TD_SYS_WRITE, TD_DIR_EGRESS, 0);
	case NR_READV:
		return enter_data(a0, a1, a2, TD_SYS_READV, TD_DIR_INGRESS, 1);
	case NR_WRITEV:
		return enter_data(a0, a1, a2, TD_SYS_WRITEV, TD_DIR_EGRESS, 1);
	case NR_RECVFROM:
		if (PT_REGS_PARM4_CORE_SYSCALL(regs) & MSG_PEEK)
			return 0; /* see MSG_PEEK */
		enter_data(a0, a1, a2, TD_SYS_RECVFROM, TD_DIR_INGRESS, 0);
		return remember_addr(PT_REGS_PARM5_CORE_SYSCALL(regs));
	case NR_SENDTO:
		enter_data(a0, a1, a2, TD_SYS_SENDTO, TD_DIR_EGRESS, 0);
		return remember_addr(PT_REGS_PARM5_CORE_SYSCALL(regs));
	case NR_SENDMMSG:
		return enter_data(a0, a1, a2, TD_SYS_SENDMMSG_CALL, TD_DIR_EGRESS, 0);
	}
	return 0;
}

static __always_inline int exit_accept4(const struct active_call *call, long ret)
{
	struct sock *sk;

	if (ret < 0)
		return 0;
	sk = tcp_sock_of_fd(ret);
	if (sk)
		emit_lifecycle(sk, ret, call->enter_ns, TD_EV_ACCEPT, TD_SYS_ACCEPT4);
	return 0;
}

static __always_inline int exit_connect(const struct active_call *call, long ret)
{
	struct sock *sk;
	__u8 udp = 0;

	if (ret != 0 && ret != -EINPROGRESS)
		return 0;
	sk = inet_sock_of_fd(call->fd, &udp);
	if (sk && (!udp || sk_is_dns(sk)))
		emit_lifecycle(sk, call->fd, call->enter_ns, TD_EV_CONNECT, TD_SYS_CONNECT);
	return 0;
}

/* A thread's next syscall exit after a remembered entry is that syscall's. */
SEC("raw_tracepoint/sys_exit")
int rtp_sys_exit(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct active_call *stored, call;
	long ret = ctx->args[1];

	stored = bpf_map_lookup_elem(&active, &id);
	if (!stored)
		return 0;
	call = *stored;
	bpf_map_delete_elem(&active, &id);
	switch (call.syscall) {
	case TD_SYS_ACCEPT4:
		return exit_accept4(&call, ret);
	case TD_SYS_CONNECT:
		return exit_connect(&call, ret);
	case TD_SYS_SENDMMSG_CALL:
		return exit_sendmmsg(&call, ret);
	default:
		return exit_data(&call, ret);
	}
}

/* ---- process inheritance ------------------------------------------------------ */

/* A traced process that forks a new process (not a thread) passes the tracing on at
 * once; userspace's next /proc scan confirms it and sends its `process` frame. */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(tp_process_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 parent_tgid = BPF_CORE_READ(parent, tgid);
	__u32 child_tgid = BPF_CORE_READ(child, tgid);
	__u32 child_pid = BPF_CORE_READ(child, pid);
	__u8 inherited = 2;

	if (child_pid != child_tgid || child_tgid == parent_tgid)
		return 0;
	if (!bpf_map_lookup_elem(&pids, &parent_tgid))
		return 0;
	if (bpf_map_update_elem(&pids, &child_tgid, &inherited, BPF_NOEXIST) == 0)
		count(TD_CNT_PID_INHERITED);
	return 0;
}
