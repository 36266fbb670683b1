//! A small HTTP/1.1 server for OTLP/HTTP exports, on std::net: one accept
//! thread and at most `max_connections` connection threads. Request heads are
//! parsed with httparse; bodies come with Content-Length or chunked. Each
//! accepted export's spans go to the sink (the frame writer); every refused
//! export is answered with its status code and counted by reason.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use super::decode::{self, DecodeError, Encoding};
use super::map::{self, AppSpan};
use super::{OtlpCounters, Reject};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:4318";
/// The OTLP path and DeepFlow's.
pub const PATHS: [&str; 2] = ["/v1/traces", "/api/v1/otel/trace"];
pub const DEFAULT_MAX_BODY: usize = 8 << 20;
pub const DEFAULT_MAX_CONNECTIONS: usize = 16;
const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Where accepted spans go. Returns false when they can no longer be taken
/// (the capture is ending): the export is then answered 503.
pub type Sink = Arc<dyn Fn(Vec<AppSpan>) -> bool + Send + Sync>;

#[derive(Debug, Clone)]
pub struct Config {
    pub max_body: usize,
    pub max_connections: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self { max_body: DEFAULT_MAX_BODY, max_connections: DEFAULT_MAX_CONNECTIONS }
    }
}

/// A running receiver.
pub struct Receiver {
    pub local_addr: SocketAddr,
    pub counters: Arc<OtlpCounters>,
    closed: Arc<AtomicBool>,
}

impl Receiver {
    /// Binds `addr` and starts accepting. Errors are the bind's.
    pub fn start(addr: &str, cfg: Config, sink: Sink) -> io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        let local_addr = listener.local_addr()?;
        let counters = Arc::new(OtlpCounters::default());
        let closed = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared { cfg, sink, counters: counters.clone(), closed: closed.clone() });
        thread::Builder::new().name("otlp-accept".into()).spawn(move || accept_loop(listener, shared))?;
        Ok(Self { local_addr, counters, closed })
    }

    /// From now on exports are answered 503 and counted as `shutting_down`.
    pub fn close(&self) {
        self.closed.store(true, Relaxed);
    }
}

struct Shared {
    cfg: Config,
    sink: Sink,
    counters: Arc<OtlpCounters>,
    closed: Arc<AtomicBool>,
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let Ok(mut stream) = conn else { continue };
        let _ = stream.set_nodelay(true);
        let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
        if active.load(Relaxed) >= shared.cfg.max_connections {
            shared.counters.requests.fetch_add(1, Relaxed);
            shared.counters.reject(Reject::Busy);
            let _ =
                respond(&mut stream, 503, "text/plain", b"too many OTLP connections; retry later\n", false);
            continue;
        }
        active.fetch_add(1, Relaxed);
        shared.counters.connections.fetch_add(1, Relaxed);
        let (shared2, active2) = (shared.clone(), active.clone());
        let spawned = thread::Builder::new().name("otlp-conn".into()).spawn(move || {
            serve_connection(stream, &shared2);
            active2.fetch_sub(1, Relaxed);
        });
        if spawned.is_err() {
            active.fetch_sub(1, Relaxed);
            shared.counters.reject(Reject::Busy);
        }
    }
}

fn reason_phrase(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

fn respond(s: &mut TcpStream, code: u16, ctype: &str, body: &[u8], keep_alive: bool) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n",
        reason_phrase(code),
        body.len()
    );
    if code == 405 {
        head.push_str("Allow: POST\r\n");
    }
    if code == 503 {
        head.push_str("Retry-After: 1\r\n");
    }
    head.push_str(if keep_alive { "Connection: keep-alive\r\n\r\n" } else { "Connection: close\r\n\r\n" });
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    s.write_all(&out)
}

/// Reads until the end of a request head; returns (head length, bytes read).
/// Ok(None) on a clean EOF before any byte (the client closed an idle connection).
fn read_head(s: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Option<usize>, Reject> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(p) = find(buf, b"\r\n\r\n") {
            return Ok(Some(p + 4));
        }
        if buf.len() > MAX_HEAD {
            return Err(Reject::BadRequest);
        }
        match s.read(&mut chunk) {
            Ok(0) if buf.is_empty() => return Ok(None),
            Ok(0) => return Err(Reject::IoError),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                let _ = s.set_read_timeout(Some(IO_TIMEOUT));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) if buf.is_empty() => return Ok(None), // idle keep-alive timeout
            Err(_) => return Err(Reject::IoError),
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Moves bytes from the stream into `buf` until it holds `n` bytes.
fn fill(s: &mut TcpStream, buf: &mut Vec<u8>, n: usize) -> Result<(), Reject> {
    let mut chunk = [0u8; 16 * 1024];
    while buf.len() < n {
        let want = (n - buf.len()).min(chunk.len());
        match s.read(&mut chunk[..want]) {
            Ok(0) => return Err(Reject::IoError),
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(Reject::IoError),
        }
    }
    Ok(())
}

/// Decodes a chunked body from `pending` (bytes after the head) and the stream.
/// Returns the body and leaves in `pending` what follows it.
fn read_chunked(s: &mut TcpStream, pending: &mut Vec<u8>, max: usize) -> Result<Vec<u8>, Reject> {
    let mut body = Vec::new();
    loop {
        // Chunk-size line.
        let line_end = loop {
            if let Some(p) = find(pending, b"\r\n") {
                break p;
            }
            if pending.len() > 1024 {
                return Err(Reject::BadRequest);
            }
            let n = pending.len() + 1;
            fill(s, pending, n)?;
        };
        let line = std::str::from_utf8(&pending[..line_end]).map_err(|_| Reject::BadRequest)?;
        let size_hex = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| Reject::BadRequest)?;
        pending.drain(..line_end + 2);
        if size == 0 {
            // Trailers (ignored) up to the empty line.
            loop {
                let p = loop {
                    if let Some(p) = find(pending, b"\r\n") {
                        break p;
                    }
                    if pending.len() > MAX_HEAD {
                        return Err(Reject::BadRequest);
                    }
                    let n = pending.len() + 1;
                    fill(s, pending, n)?;
                };
                pending.drain(..p + 2);
                if p == 0 {
                    return Ok(body);
                }
            }
        }
        if body.len() + size > max {
            return Err(Reject::TooLarge);
        }
        fill(s, pending, size + 2)?;
        if &pending[size..size + 2] != b"\r\n" {
            return Err(Reject::BadRequest);
        }
        body.extend_from_slice(&pending[..size]);
        pending.drain(..size + 2);
    }
}

struct Outcome {
    code: u16,
    ctype: &'static str,
    body: Vec<u8>,
    /// Keep the connection open (false after errors whose body we did not read).
    keep: bool,
}

fn plain(code: u16, msg: &str) -> Outcome {
    Outcome { code, ctype: "text/plain", body: format!("{msg}\n").into_bytes(), keep: false }
}

fn serve_connection(mut s: TcpStream, shared: &Shared) {
    let mut buf = Vec::with_capacity(8192);
    loop {
        let _ = s.set_read_timeout(Some(IDLE_TIMEOUT));
        let head_len = match read_head(&mut s, &mut buf) {
            Ok(Some(n)) => n,
            Ok(None) => return,
            Err(r) => {
                shared.counters.requests.fetch_add(1, Relaxed);
                shared.counters.reject(r);
                if r == Reject::BadRequest {
                    let _ = respond(&mut s, 400, "text/plain", b"request head too large\n", false);
                }
                return;
            }
        };
        shared.counters.requests.fetch_add(1, Relaxed);
        let (out, reject) = handle_request(&mut s, &mut buf, head_len, shared);
        if let Some(r) = reject {
            shared.counters.reject(r);
        }
        if respond(&mut s, out.code, out.ctype, &out.body, out.keep).is_err() || !out.keep {
            return;
        }
    }
}

/// Handles one request whose head is `buf[..head_len]`. On return `buf` holds
/// the bytes after this request (pipelining).
fn handle_request(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    head_len: usize,
    sh: &Shared,
) -> (Outcome, Option<Reject>) {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(&buf[..head_len]) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return (plain(400, "malformed HTTP request head"), Some(Reject::BadRequest)),
    }
    let method = req.method.unwrap_or("").to_string();
    let path = req.path.unwrap_or("").split('?').next().unwrap_or("").to_string();
    let http10 = req.version == Some(0);
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
    };
    let content_type = header("content-type");
    let encoding = header("content-encoding").map(|v| v.to_ascii_lowercase());
    let chunked = header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let length = header("content-length");
    let wants_close = header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")) || http10;
    let mut pending = buf.split_off(head_len);
    buf.clear();

    if !PATHS.contains(&path.as_str()) {
        return (
            plain(404, &format!("no OTLP endpoint at {path}: send traces to {} or {}", PATHS[0], PATHS[1])),
            Some(Reject::NotFound),
        );
    }
    if method != "POST" {
        return (plain(405, "OTLP/HTTP exports use POST"), Some(Reject::MethodNotAllowed));
    }
    let Some(enc) = content_type.as_deref().and_then(Encoding::from_content_type) else {
        return (
            plain(
                415,
                &format!(
                    "unsupported Content-Type {:?}: send application/x-protobuf or application/json",
                    content_type.unwrap_or_default()
                ),
            ),
            Some(Reject::UnsupportedMediaType),
        );
    };
    let gzip = match encoding.as_deref() {
        None | Some("identity") | Some("") => false,
        Some("gzip") => true,
        Some(other) => {
            return (
                plain(415, &format!("unsupported Content-Encoding {other:?}: send gzip or no compression")),
                Some(Reject::UnsupportedMediaType),
            )
        }
    };
    let max = sh.cfg.max_body;
    let body = if chunked {
        match read_chunked(s, &mut pending, max) {
            Ok(b) => b,
            Err(Reject::TooLarge) => {
                return (plain(413, &format!("body larger than {max} bytes")), Some(Reject::TooLarge))
            }
            Err(r) => return (plain(400, "malformed chunked body"), Some(r)),
        }
    } else {
        let Some(n) = length.as_deref().and_then(|v| v.parse::<usize>().ok()) else {
            return (
                Outcome { code: 411, ..plain(411, "send a Content-Length or a chunked body") },
                Some(Reject::BadRequest),
            );
        };
        if n > max {
            return (
                plain(413, &format!("body of {n} bytes is larger than {max} bytes")),
                Some(Reject::TooLarge),
            );
        }
        if let Err(r) = fill(s, &mut pending, n) {
            return (plain(400, "the body ended early"), Some(r));
        }
        let rest = pending.split_off(n);
        std::mem::replace(&mut pending, rest)
    };
    *buf = pending;
    sh.counters.bytes_received.fetch_add(body.len() as u64, Relaxed);
    let keep = !wants_close;

    let request = match decode::decode(&body, enc, gzip, max) {
        Ok(r) => r,
        Err(e) => {
            let code = if matches!(e, DecodeError::TooLarge(_)) { 413 } else { 400 };
            let reject = if code == 413 { Reject::TooLarge } else { Reject::BadBody };
            let msg = format!("{e}; nothing from this export was kept");
            return (
                Outcome { code, ctype: enc.content_type(), body: decode::error_body(enc, 3, &msg), keep },
                Some(reject),
            );
        }
    };
    let spans = map::map_request(&request);
    let n = spans.len() as u64;
    if sh.closed.load(Relaxed) || !(sh.sink)(spans) {
        let msg = "the capture is ending: spans are no longer accepted";
        return (
            Outcome {
                code: 503,
                ctype: enc.content_type(),
                body: decode::error_body(enc, 14, msg),
                keep: false,
            },
            Some(Reject::ShuttingDown),
        );
    }
    sh.counters.exports_accepted.fetch_add(1, Relaxed);
    sh.counters.spans_received.fetch_add(n, Relaxed);
    (Outcome { code: 200, ctype: enc.content_type(), body: decode::success_body(enc), keep }, None)
}
