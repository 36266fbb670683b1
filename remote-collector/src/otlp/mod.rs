//! The OTLP/HTTP trace receiver: A spans (STREAM.md, "A spans").
//!
//! `server` accepts OTLP/HTTP exports on its own threads (never the ring-buffer
//! poll loop), `decode` turns protobuf/JSON (+gzip) bodies into the generated
//! OTLP messages, and `map` turns each OTel span into a record-model span.

pub mod decode;
pub mod map;
pub mod server;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

pub use server::{Receiver, DEFAULT_LISTEN, PATHS};

/// Why an export was refused, in `stats.otlp.rejected` order.
pub const REJECT_REASONS: [&str; 9] = [
    "bad_request",
    "not_found",
    "method_not_allowed",
    "unsupported_media_type",
    "too_large",
    "bad_body",
    "busy",
    "shutting_down",
    "io_error",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Not an HTTP/1.x request we can read (bad head, bad chunking, no length).
    BadRequest,
    NotFound,
    MethodNotAllowed,
    UnsupportedMediaType,
    TooLarge,
    /// The body did not decode (gzip, protobuf, JSON).
    BadBody,
    /// Too many connections at once.
    Busy,
    /// The capture is ending; spans can no longer be written.
    ShuttingDown,
    /// The client went away or was too slow while sending the body.
    IoError,
}

impl Reject {
    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Default)]
pub struct OtlpCounters {
    pub requests: AtomicU64,
    pub exports_accepted: AtomicU64,
    pub spans_received: AtomicU64,
    pub bytes_received: AtomicU64,
    pub connections: AtomicU64,
    pub rejected: [AtomicU64; REJECT_REASONS.len()],
}

impl OtlpCounters {
    pub fn reject(&self, r: Reject) {
        self.rejected[r.index()].fetch_add(1, Relaxed);
    }

    pub fn rejected(&self, r: Reject) -> u64 {
        self.rejected[r.index()].load(Relaxed)
    }

    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().map(|c| c.load(Relaxed)).sum()
    }

    pub fn snapshot(&self, listen: &str) -> OtlpStats {
        OtlpStats {
            listen: listen.to_string(),
            requests: self.requests.load(Relaxed),
            exports_accepted: self.exports_accepted.load(Relaxed),
            spans_received: self.spans_received.load(Relaxed),
            bytes_received: self.bytes_received.load(Relaxed),
            connections: self.connections.load(Relaxed),
            rejected: REJECT_REASONS
                .iter()
                .zip(self.rejected.iter())
                .map(|(k, v)| (*k, v.load(Relaxed)))
                .collect(),
        }
    }
}

/// `stats.otlp` (STREAM.md).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OtlpStats {
    pub listen: String,
    pub requests: u64,
    pub exports_accepted: u64,
    pub spans_received: u64,
    pub bytes_received: u64,
    pub connections: u64,
    pub rejected: BTreeMap<&'static str, u64>,
}

#[cfg(test)]
mod tests;
