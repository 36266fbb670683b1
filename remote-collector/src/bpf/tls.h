/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * TLS plaintext records (tls.bpf.c). They reuse struct event_hdr of tapdeck.h and
 * travel in the same ring buffer as the syscall records, so that userspace sees
 * the encrypted read/write syscall of a thread before the plaintext of the
 * SSL_read/SSL_write call that made it. Values are far from tapdeck.h's so the
 * two lists can grow independently.
 */
#ifndef TAPDECK_TLS_H
#define TAPDECK_TLS_H

/* event_hdr.kind of a plaintext record. `sock` holds the SSL pointer (a user
 * address, unique per process only), `fd` is -1, addresses and ports are zero,
 * `enter_ns`/`exit_ns` are the SSL call's entry and return, `total` the plaintext
 * bytes it moved and `tcp_seq` 0. */
#define TD_EV_TLS_DATA 16

/* event_hdr.syscall of a plaintext record: the OpenSSL call. */
#define TD_SSL_READ 32
#define TD_SSL_WRITE 33
#define TD_SSL_READ_EX 34
#define TD_SSL_WRITE_EX 35

#endif /* TAPDECK_TLS_H */
