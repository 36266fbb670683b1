//! Counters shared by the poll loop, the worker and the stats writer, and the
//! `stats` frame body.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use serde::Serialize;

use crate::http::ParseError;

/// Parse error kinds, in the order of `Counters::parse_errors`.
pub const PARSE_ERROR_KINDS: [&str; 9] = [
    "not_http",
    "header_too_large",
    "header_truncated",
    "uncaptured_message",
    "malformed",
    "bad_content_length",
    "bad_chunk",
    "chunk_uncaptured",
    "other",
];

#[derive(Default, Debug)]
pub struct Counters {
    /// Records taken from the ring buffer.
    pub events_seen: AtomicU64,
    pub spans_sent: AtomicU64,
    // Losses in userspace.
    pub queue_full: AtomicU64,
    pub decode_error: AtomicU64,
    pub conn_table_full: AtomicU64,
    pub pending_overflow: AtomicU64,
    pub response_without_request: AtomicU64,
    pub pid_table_full: AtomicU64,
    // Shed to stay within the CPU/memory budget (src/budget.rs).
    /// Records already queued for a socket that became unsampled.
    pub shed_events: AtomicU64,
    /// Connections whose state was forgotten when their socket became unsampled.
    pub shed_connections: AtomicU64,
    /// Requests waiting for their response on those connections: no span for them.
    pub shed_requests: AtomicU64,
    // Copied from the BPF `counters` map.
    pub ringbuf_full: AtomicU64,
    pub payload_read_failed: AtomicU64,
    pub inflight_table_full: AtomicU64,
    pub pid_inherited: AtomicU64,
    /// Syscalls on unsampled sockets the kernel side skipped.
    pub sampled_out: AtomicU64,
    // Parser health.
    pub parse_errors: [AtomicU64; PARSE_ERROR_KINDS.len()],
    pub non_http_connections: AtomicU64,
    // TLS plaintext.
    pub tls_events: AtomicU64,
    pub tls_without_socket: AtomicU64,
    pub tls_encrypted_skipped: AtomicU64,
    pub tls_libraries: AtomicU64,
    // Gauges.
    pub connections: AtomicU64,
    pub processes: AtomicU64,
    /// Spans, L7 connections and L7 parse errors by protocol (updated on the
    /// worker thread, read by the stats writer).
    pub by_protocol: Mutex<ByProtocol>,
}

#[derive(Default, Debug, Clone, PartialEq, Eq)]
pub struct ByProtocol {
    pub spans: BTreeMap<&'static str, u64>,
    pub connections: BTreeMap<&'static str, u64>,
    pub errors: BTreeMap<&'static str, BTreeMap<&'static str, u64>>,
}

impl Counters {
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }

    pub fn parse_error(&self, e: &ParseError) {
        let kind = e.kind();
        let i = PARSE_ERROR_KINDS.iter().position(|k| *k == kind).unwrap_or(PARSE_ERROR_KINDS.len() - 1);
        self.parse_errors[i].fetch_add(1, Relaxed);
    }

    fn with_protocols(&self, f: impl FnOnce(&mut ByProtocol)) {
        // A poisoned lock only means another thread panicked mid-update of a counter.
        let mut g = self.by_protocol.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g);
    }

    /// One span of `protocol` was sent.
    pub fn span_of(&self, protocol: &'static str) {
        self.with_protocols(|p| *p.spans.entry(protocol).or_default() += 1);
    }

    /// One connection was recognised as `protocol` by `l7::detect`.
    pub fn l7_connection(&self, protocol: &'static str) {
        self.with_protocols(|p| *p.connections.entry(protocol).or_default() += 1);
    }

    /// An L7 session could not parse some bytes, for `reason`.
    pub fn l7_error(&self, protocol: &'static str, reason: &'static str) {
        self.with_protocols(|p| *p.errors.entry(protocol).or_default().entry(reason).or_default() += 1);
    }

    pub fn protocols(&self) -> ByProtocol {
        self.by_protocol.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn parse_error_count(&self, kind: &str) -> u64 {
        PARSE_ERROR_KINDS
            .iter()
            .position(|k| *k == kind)
            .map(|i| self.parse_errors[i].load(Relaxed))
            .unwrap_or(0)
    }

    /// Events that never reached the parser.
    pub fn events_lost(&self) -> u64 {
        self.ringbuf_full.load(Relaxed)
            + self.inflight_table_full.load(Relaxed)
            + self.queue_full.load(Relaxed)
            + self.decode_error.load(Relaxed)
    }

    pub fn drops(&self) -> BTreeMap<&'static str, u64> {
        let mut m = BTreeMap::new();
        m.insert("ringbuf_full", self.ringbuf_full.load(Relaxed));
        m.insert("inflight_table_full", self.inflight_table_full.load(Relaxed));
        m.insert("queue_full", self.queue_full.load(Relaxed));
        m.insert("decode_error", self.decode_error.load(Relaxed));
        m.insert("payload_read_failed", self.payload_read_failed.load(Relaxed));
        m.insert("conn_table_full", self.conn_table_full.load(Relaxed));
        m.insert("pending_overflow", self.pending_overflow.load(Relaxed));
        m.insert("response_without_request", self.response_without_request.load(Relaxed));
        m.insert("pid_table_full", self.pid_table_full.load(Relaxed));
        m.insert("sampled_out", self.sampled_out.load(Relaxed));
        m.insert("shed_events", self.shed_events.load(Relaxed));
        m.insert("shed_connections", self.shed_connections.load(Relaxed));
        m.insert("shed_requests", self.shed_requests.load(Relaxed));
        m
    }

    pub fn parse_error_map(&self) -> BTreeMap<&'static str, u64> {
        PARSE_ERROR_KINDS.iter().zip(self.parse_errors.iter()).map(|(k, v)| (*k, v.load(Relaxed))).collect()
    }
}

/// Body of a `stats` frame. The first fields are STREAM.md's; the rest are
/// additions documented there.
#[derive(Debug, Serialize)]
pub struct StatsFrame {
    pub events_seen: u64,
    pub events_lost: u64,
    pub spans_sent: u64,
    pub drops: BTreeMap<&'static str, u64>,
    pub cpu_user_us: u64,
    pub cpu_sys_us: u64,
    pub rss_bytes: u64,
    pub elapsed_ms: u64,
    #[serde(rename = "final")]
    pub is_final: bool,
    pub parse_errors: BTreeMap<&'static str, u64>,
    pub non_http_connections: u64,
    pub connections: u64,
    pub processes_traced: u64,
    pub pids_inherited: u64,
    /// Spans sent by `l7_protocol` (HTTP, HTTP2, gRPC, ...).
    pub spans_by_protocol: BTreeMap<&'static str, u64>,
    /// Connections handed to an L7 session, by protocol.
    pub l7_connections: BTreeMap<&'static str, u64>,
    /// L7 session parse errors: protocol → reason → count.
    pub l7_parse_errors: BTreeMap<&'static str, BTreeMap<&'static str, u64>>,
    pub tls: TlsStats,
    /// The OTLP receiver's counters, when it runs (STREAM.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp: Option<crate::otlp::OtlpStats>,
    pub budget: BudgetStats,
}

/// `stats.tls` (addition documented in STREAM.md).
#[derive(Debug, Serialize)]
pub struct TlsStats {
    /// Plaintext records from the OpenSSL uprobes.
    pub plaintext_records: u64,
    /// Plaintext records whose socket was not known (addresses then empty).
    pub without_socket: u64,
    /// Encrypted syscalls of TLS sockets, not parsed.
    pub encrypted_skipped: u64,
    /// libssl files probed.
    pub libraries: u64,
}

/// `stats.budget`: the self-enforced budget and where the collector stands.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct BudgetStats {
    /// `--max-cpu`, percent of one core.
    pub max_cpu_pct: f64,
    /// `--max-rss` in bytes.
    pub max_rss_bytes: u64,
    /// Own CPU over the last interval, percent of one core.
    pub cpu_pct: f64,
    /// Fraction of sockets traced, 0..=1 (1: no shedding).
    pub sample_rate: f64,
    /// What pushed the sampling rate down ("cpu" or "rss"), null when it is 1.
    pub over: Option<&'static str>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub cpu_user_us: u64,
    pub cpu_sys_us: u64,
    pub rss_bytes: u64,
}

/// Own CPU time (getrusage) and resident set (/proc/self/statm).
pub fn own_usage() -> Usage {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the zeroed struct we own.
    let ok = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } == 0;
    let tv_us = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000 + tv.tv_usec as u64;
    let (cpu_user_us, cpu_sys_us) = if ok { (tv_us(ru.ru_utime), tv_us(ru.ru_stime)) } else { (0, 0) };
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    let rss_bytes = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        .map(|pages| pages * page)
        .unwrap_or(0);
    Usage { cpu_user_us, cpu_sys_us, rss_bytes }
}

impl StatsFrame {
    pub fn collect(c: &Counters, usage: Usage, elapsed_ms: u64, is_final: bool, budget: BudgetStats) -> Self {
        let p = c.protocols();
        Self {
            events_seen: c.events_seen.load(Relaxed),
            events_lost: c.events_lost(),
            spans_sent: c.spans_sent.load(Relaxed),
            drops: c.drops(),
            cpu_user_us: usage.cpu_user_us,
            cpu_sys_us: usage.cpu_sys_us,
            rss_bytes: usage.rss_bytes,
            elapsed_ms,
            is_final,
            parse_errors: c.parse_error_map(),
            non_http_connections: c.non_http_connections.load(Relaxed),
            connections: c.connections.load(Relaxed),
            processes_traced: c.processes.load(Relaxed),
            pids_inherited: c.pid_inherited.load(Relaxed),
            spans_by_protocol: p.spans,
            l7_connections: p.connections,
            l7_parse_errors: p.errors,
            tls: TlsStats {
                plaintext_records: c.tls_events.load(Relaxed),
                without_socket: c.tls_without_socket.load(Relaxed),
                encrypted_skipped: c.tls_encrypted_skipped.load(Relaxed),
                libraries: c.tls_libraries.load(Relaxed),
            },
            otlp: None,
            budget,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_error_kinds_cover_every_error() {
        for e in [
            ParseError::NotHttp,
            ParseError::HeaderTooLarge { limit: 1 },
            ParseError::Truncated,
            ParseError::Uncaptured,
            ParseError::Malformed(httparse::Error::Token),
            ParseError::BadContentLength,
            ParseError::BadChunk,
            ParseError::ChunkUncaptured,
        ] {
            assert!(PARSE_ERROR_KINDS.contains(&e.kind()), "{}", e.kind());
        }
    }

    #[test]
    fn stats_frame_has_stream_md_fields() {
        let c = Counters::default();
        Counters::inc(&c.queue_full);
        c.ringbuf_full.store(2, Relaxed);
        let v =
            serde_json::to_value(StatsFrame::collect(&c, Usage::default(), 5, true, BudgetStats::default()))
                .unwrap();
        for k in [
            "events_seen",
            "events_lost",
            "spans_sent",
            "drops",
            "cpu_user_us",
            "cpu_sys_us",
            "rss_bytes",
            "elapsed_ms",
            "final",
        ] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        assert_eq!(v["events_lost"], 3);
        assert_eq!(v["drops"]["ringbuf_full"], 2);
        assert_eq!(v["final"], true);
        for k in ["sampled_out", "shed_events", "shed_connections", "shed_requests"] {
            assert_eq!(v["drops"][k], 0, "{k}");
        }
        assert_eq!(v["budget"]["over"], serde_json::Value::Null);
    }

    #[test]
    fn own_usage_reads_rss() {
        assert!(own_usage().rss_bytes > 0);
    }
}
