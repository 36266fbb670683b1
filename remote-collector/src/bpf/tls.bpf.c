// SPDX-License-Identifier: GPL-2.0
/*
 * Tapdeck TLS plaintext tracer: uprobes on OpenSSL's SSL_read, SSL_write,
 * SSL_read_ex and SSL_write_ex (libssl.so, attached once per library file by
 * userspace, for every process that maps it, and filtered here by the `pids`
 * map that tapdeck.bpf.c also uses, so forked nginx workers are covered at once).
 *
 * Entry remembers the SSL pointer and the buffer; return copies the first
 * min(bytes, max_payload) plaintext bytes into a TD_EV_TLS_DATA record. `pids`,
 * `events` and `counters` are the maps of tapdeck.bpf.c, shared by userspace
 * (bpf_map__reuse_fd) before this object is loaded.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "tapdeck.h"
#include "tls.h"

#define TD_WAKEUP_BYTES (256 * 1024)

char LICENSE[] SEC("license") = "GPL";

const volatile __u32 max_payload = 4096;

/* Shared with tapdeck.bpf.c (same definitions; userspace reuses its fds). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} pids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 * 1024 * 1024);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TD_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* Own scratch: the uprobe may fire while a tracepoint program of tapdeck.bpf.c
 * is not running on this CPU, but keeping them apart costs nothing and rules
 * out any interleaving. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct data_event);
} tls_scratch SEC(".maps");

struct tls_call {
	__u64 enter_ns;
	__u64 ssl;
	__u64 buf;
	__u64 out_len; /* size_t * of the _ex variants, else 0 */
	__u8 op;       /* TD_SSL_* */
	__u8 pad[7];
};

/* pid_tgid -> the SSL call in progress on that thread. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct tls_call);
} tls_active SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);

	if (v)
		*v += 1;
}

static __always_inline int tls_enter(void *ssl, void *buf, void *out_len, __u8 op)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	struct tls_call call = {};

	if (!bpf_map_lookup_elem(&pids, &tgid))
		return 0;
	call.enter_ns = bpf_ktime_get_ns();
	call.ssl = (__u64)ssl;
	call.buf = (__u64)buf;
	call.out_len = (__u64)out_len;
	call.op = op;
	if (bpf_map_update_elem(&tls_active, &id, &call, BPF_ANY))
		count(TD_CNT_ACTIVE_FULL);
	return 0;
}

static __always_inline int tls_exit(long ret, __u8 op)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct tls_call *stored, call;
	struct data_event *e;
	__u32 zero = 0, cap = max_payload;
	__u64 n, size, flags, copy;

	stored = bpf_map_lookup_elem(&tls_active, &id);
	if (!stored)
		return 0;
	call = *stored;
	bpf_map_delete_elem(&tls_active, &id);
	if (call.op != op)
		return 0;
	if (op == TD_SSL_READ_EX || op == TD_SSL_WRITE_EX) {
		size_t moved = 0;

		if ((int)ret != 1 || !call.out_len)
			return 0;
		if (bpf_probe_read_user(&moved, sizeof(moved), (void *)call.out_len))
			return 0;
		n = moved;
	} else {
		if ((int)ret <= 0)
			return 0;
		n = (__u32)(int)ret;
	}
	if (n == 0)
		return 0;
	e = bpf_map_lookup_elem(&tls_scratch, &zero);
	if (!e)
		return 0;
	if (cap > TD_MAX_PAYLOAD)
		cap = TD_MAX_PAYLOAD;

	__builtin_memset(&e->hdr, 0, sizeof(e->hdr));
	e->hdr.enter_ns = call.enter_ns;
	e->hdr.exit_ns = bpf_ktime_get_ns();
	e->hdr.sock = call.ssl;
	e->hdr.tgid = id >> 32;
	e->hdr.tid = (__u32)id;
	e->hdr.fd = -1;
	e->hdr.total = n > 0xffffffff ? 0xffffffff : n;
	e->hdr.kind = TD_EV_TLS_DATA;
	e->hdr.direction = (op == TD_SSL_READ || op == TD_SSL_READ_EX) ? TD_DIR_INGRESS : TD_DIR_EGRESS;
	e->hdr.syscall = op;
	bpf_get_current_comm(e->hdr.comm, sizeof(e->hdr.comm));

	copy = n < cap ? n : cap;
	if (copy > TD_MAX_PAYLOAD)
		copy = TD_MAX_PAYLOAD;
	if (bpf_probe_read_user(e->data, copy, (void *)call.buf)) {
		e->hdr.flags |= TD_FLAG_PAYLOAD_FAULT;
		count(TD_CNT_PAYLOAD_FAULT);
		copy = 0;
	}
	e->hdr.copied = copy;
	size = sizeof(struct event_hdr) + copy;
	if (size > sizeof(struct event_hdr) + TD_MAX_PAYLOAD)
		size = sizeof(struct event_hdr) + TD_MAX_PAYLOAD;
	flags = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) > TD_WAKEUP_BYTES ? BPF_RB_FORCE_WAKEUP
										  : BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_output(&events, e, size, flags))
		count(TD_CNT_RINGBUF_FULL);
	return 0;
}

/* int SSL_read(SSL *ssl, void *buf, int num) */
SEC("uprobe")
int BPF_UPROBE(tls_enter_read, void *ssl, void *buf)
{
	return tls_enter(ssl, buf, 0, TD_SSL_READ);
}

SEC("uretprobe")
int BPF_URETPROBE(tls_exit_read, int ret)
{
	return tls_exit(ret, TD_SSL_READ);
}

/* int SSL_write(SSL *ssl, const void *buf, int num) */
SEC("uprobe")
int BPF_UPROBE(tls_enter_write, void *ssl, void *buf)
{
	return tls_enter(ssl, buf, 0, TD_SSL_WRITE);
}

SEC("uretprobe")
int BPF_URETPROBE(tls_exit_write, int ret)
{
	return tls_exit(ret, TD_SSL_WRITE);
}

/* int SSL_read_ex(SSL *ssl, void *buf, size_t num, size_t *readbytes) */
SEC("uprobe")
int BPF_UPROBE(tls_enter_read_ex, void *ssl, void *buf, size_t num, size_t *readbytes)
{
	return tls_enter(ssl, buf, readbytes, TD_SSL_READ_EX);
}

SEC("uretprobe")
int BPF_URETPROBE(tls_exit_read_ex, int ret)
{
	return tls_exit(ret, TD_SSL_READ_EX);
}

/* int SSL_write_ex(SSL *ssl, const void *buf, size_t num, size_t *written) */
SEC("uprobe")
int BPF_UPROBE(tls_enter_write_ex, void *ssl, void *buf, size_t num, size_t *written)
{
	return tls_enter(ssl, buf, written, TD_SSL_WRITE_EX);
}

SEC("uretprobe")
int BPF_URETPROBE(tls_exit_write_ex, int ret)
{
	return tls_exit(ret, TD_SSL_WRITE_EX);
}
