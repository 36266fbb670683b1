//! HTTP/1.x message framing over one direction of a TCP connection.
//!
//! The input is the sequence of syscalls that moved bytes in that direction. Each
//! syscall is a chunk of `total` bytes of which only the first `data.len()` were
//! captured (the BPF copy cap); the rest is a gap. Gaps inside a body are harmless
//! (bodies are skipped by length); a gap where a header block or chunk-size line
//! should be makes the stream lose sync. A stream out of sync drops bytes until a
//! syscall begins with something that looks like a start line, then parses again.
//!
//! The stream reports message heads and message ends; pairing requests with
//! responses is the connection tracker's job (`tracker.rs`).

use std::collections::VecDeque;

use thiserror::Error;

use crate::redact::{self, HeaderPolicy};

/// Default limit of one header block (start line + headers + blank line).
pub const DEFAULT_MAX_HEADER: usize = 16 * 1024;
const MAX_HEADERS: usize = 128;
const MAX_CHUNK_LINE: u32 = 4096;
const MAX_TRAILER_LINE: u32 = 16 * 1024;
/// Expected-response bookkeeping per stream, bounded against garbage.
const MAX_EXPECTED: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    #[error("bytes at a message boundary do not start an HTTP/1.x message")]
    NotHttp,
    #[error("header block exceeds {limit} bytes")]
    HeaderTooLarge { limit: usize },
    #[error("header block continues in bytes beyond the capture cap")]
    Truncated,
    #[error("a message starts in bytes beyond the capture cap")]
    Uncaptured,
    #[error("malformed start line or header: {0}")]
    Malformed(httparse::Error),
    #[error("invalid Content-Length header")]
    BadContentLength,
    #[error("invalid chunked encoding")]
    BadChunk,
    #[error("chunked framing continues in bytes beyond the capture cap")]
    ChunkUncaptured,
}

impl ParseError {
    /// Stable snake_case name used as a `stats` key.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotHttp => "not_http",
            Self::HeaderTooLarge { .. } => "header_too_large",
            Self::Truncated => "header_truncated",
            Self::Uncaptured => "uncaptured_message",
            Self::Malformed(_) => "malformed",
            Self::BadContentLength => "bad_content_length",
            Self::BadChunk => "bad_chunk",
            Self::ChunkUncaptured => "chunk_uncaptured",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request { method: String, target: String },
    Response { code: u16, reason: String },
}

/// What the tracker needs from a header block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub start: StartLine,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version_minor: u8,
    pub host: Option<String>,
    pub x_request_id: Option<String>,
    pub traceparent: Option<String>,
    pub content_length: Option<u64>,
    pub chunked: bool,
    pub connection_close: bool,
    /// Length of the header block including the blank line.
    pub header_len: usize,
    /// Headers asked for with `--capture-header` (lowercase name, value or
    /// `[REDACTED]`), in order.
    pub captured: Vec<(String, String)>,
}

impl Head {
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    pub fn method(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { code, .. } => Some(*code),
            StartLine::Request { .. } => None,
        }
    }

    /// `response_exception` of a response head: its reason phrase for a 4xx/5xx
    /// status, or the canonical one when the server sent none.
    pub fn exception(&self) -> Option<String> {
        let StartLine::Response { code, reason } = &self.start else { return None };
        if *code < 400 {
            return None;
        }
        let reason =
            if reason.is_empty() { crate::span::canonical_reason(*code).unwrap_or("") } else { reason };
        Some(reason.to_string()).filter(|s| !s.is_empty())
    }

    /// `trace_id` and `span_id` from this head's W3C traceparent, if any.
    pub fn trace_ids(&self) -> (Option<String>, Option<String>) {
        match self.traceparent.as_deref().and_then(parse_traceparent) {
            Some((t, s)) => (Some(t), Some(s)),
            None => (None, None),
        }
    }

    pub fn version(&self) -> &'static str {
        if self.version_minor == 0 {
            "1.0"
        } else {
            "1.1"
        }
    }
}

/// What one `feed` produced, in stream order. `M` is the caller's per-syscall
/// metadata (timestamps, thread, sequence number...).
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed<M> {
    /// A header block was parsed. `meta`/`offset`: the syscall chunk holding the
    /// message's first byte and the byte's position in it.
    Head { head: Head, meta: M, offset: usize },
    /// The message that began with the last `Head` ended. `length` counts header
    /// block and body bytes; `complete` is false when the stream lost sync inside
    /// the body (the length then counts what was seen). `meta` is the chunk
    /// holding the message's last byte seen.
    End { length: u64, meta: M, complete: bool },
    /// Bytes that could not be parsed; the stream resynchronises on its own.
    /// `lost_message` is true when a message (most likely) began in the bytes
    /// that were lost, so a request waiting for it will never see it.
    Error { error: ParseError, lost_message: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading the hex size; `digits` seen, `ext` after ';', `cr` after '\r'.
    Size {
        value: u64,
        digits: u8,
        ext: bool,
        cr: bool,
        line: u32,
    },
    Data(u64),
    /// CRLF after chunk data; `cr` once '\r' was seen.
    DataEnd {
        cr: bool,
    },
    /// Trailer section; `line` bytes in the current line.
    Trailer {
        line: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Head,
    Body(u64),
    Chunked(Chunk),
    UntilClose,
    Desync,
    Upgraded,
}

/// Framing of a response decided by the request it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Expect {
    head: bool,
    connect: bool,
}

/// One direction of one connection.
#[derive(Debug)]
pub struct HttpStream<M: Copy> {
    state: State,
    buf: Vec<u8>,
    scan_from: usize,
    start: Option<(M, usize)>,
    msg_len: u64,
    /// After the current message ends the stream switches to Upgraded (101).
    upgrade_after: bool,
    expected: VecDeque<Expect>,
    max_header: usize,
}

impl<M: Copy> Default for HttpStream<M> {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_HEADER)
    }
}

impl<M: Copy> HttpStream<M> {
    pub fn new(max_header: usize) -> Self {
        Self {
            state: State::Idle,
            buf: Vec::new(),
            scan_from: 0,
            start: None,
            msg_len: 0,
            upgrade_after: false,
            expected: VecDeque::new(),
            max_header,
        }
    }

    /// Tells a response stream the method of a request sent the other way, so it
    /// knows a HEAD response has no body and a CONNECT 2xx starts a tunnel.
    pub fn expect_response_to(&mut self, method: &str) {
        if self.expected.len() >= MAX_EXPECTED {
            self.expected.pop_front();
        }
        self.expected.push_back(Expect {
            head: method.eq_ignore_ascii_case("HEAD"),
            connect: method.eq_ignore_ascii_case("CONNECT"),
        });
    }

    /// Stop parsing: the connection switched protocols.
    pub fn set_upgraded(&mut self) {
        self.state = State::Upgraded;
        self.buf = Vec::new();
    }

    pub fn is_upgraded(&self) -> bool {
        self.state == State::Upgraded
    }

    pub fn in_sync(&self) -> bool {
        self.state != State::Desync
    }

    /// True between a `Head` and its `End`.
    pub fn in_message(&self) -> bool {
        matches!(self.state, State::Body(_) | State::Chunked(_) | State::UntilClose)
    }

    /// Feeds one syscall: `data` are the captured leading bytes of the `total`
    /// bytes it moved.
    pub fn feed(&mut self, data: &[u8], total: u64, meta: M, out: &mut Vec<Parsed<M>>) {
        let total = total.max(data.len() as u64);
        if self.state == State::Upgraded {
            return;
        }
        if self.state == State::Desync {
            if data.is_empty() || !looks_like_start(data) {
                return;
            }
            self.state = State::Idle;
        }
        let mut pos = 0usize;
        while pos < data.len() {
            match self.state {
                State::Idle => {
                    while pos < data.len() && (data[pos] == b'\r' || data[pos] == b'\n') {
                        pos += 1;
                    }
                    if pos == data.len() {
                        break;
                    }
                    if !looks_like_start(&data[pos..]) {
                        self.lose_sync(ParseError::NotHttp, false, meta, out);
                        return;
                    }
                    self.state = State::Head;
                    self.buf.clear();
                    self.scan_from = 0;
                    self.start = Some((meta, pos));
                }
                State::Head => {
                    let before = self.buf.len();
                    let room = self.max_header.saturating_sub(before);
                    let take = (data.len() - pos).min(room.max(1));
                    self.buf.extend_from_slice(&data[pos..pos + take]);
                    match find_head_end(&self.buf, self.scan_from) {
                        Some(end) => {
                            pos += end - before;
                            self.buf.truncate(end);
                            if let Err(e) = self.on_head(meta, out) {
                                self.lose_sync(e, true, meta, out);
                                return;
                            }
                        }
                        None => {
                            pos += take;
                            if self.buf.len() >= self.max_header {
                                let limit = self.max_header;
                                self.salvage_head(ParseError::HeaderTooLarge { limit }, 0, meta, out);
                                return;
                            }
                            if let Err(e) = precheck(&self.buf) {
                                self.lose_sync(e, true, meta, out);
                                return;
                            }
                            self.scan_from = self.buf.len().saturating_sub(2);
                        }
                    }
                }
                State::Body(remaining) => {
                    let n = remaining.min((data.len() - pos) as u64);
                    pos += n as usize;
                    self.msg_len += n;
                    if n == remaining {
                        self.end_message(meta, true, out);
                    } else {
                        self.state = State::Body(remaining - n);
                    }
                }
                State::Chunked(c) => {
                    let (used, next) = match step_chunked(c, &data[pos..]) {
                        Ok(v) => v,
                        Err(e) => {
                            self.lose_sync(e, false, meta, out);
                            return;
                        }
                    };
                    pos += used;
                    self.msg_len += used as u64;
                    match next {
                        Some(c) => self.state = State::Chunked(c),
                        None => self.end_message(meta, true, out),
                    }
                }
                State::UntilClose => {
                    self.msg_len += (data.len() - pos) as u64;
                    pos = data.len();
                }
                State::Desync | State::Upgraded => return,
            }
        }

        let gap = total - data.len() as u64;
        if gap > 0 {
            self.skip_gap(gap, meta, out);
        }
    }

    /// The connection closed (or the capture ends): a body delimited by the close
    /// ends now; any other unfinished message ends incomplete.
    pub fn finish(&mut self, meta: M, out: &mut Vec<Parsed<M>>) {
        match self.state {
            State::UntilClose => self.end_message(meta, true, out),
            State::Body(_) | State::Chunked(_) => self.end_message(meta, false, out),
            _ => {}
        }
        self.state = State::Idle;
        self.buf = Vec::new();
    }

    fn skip_gap(&mut self, mut gap: u64, meta: M, out: &mut Vec<Parsed<M>>) {
        loop {
            match self.state {
                State::Body(remaining) => {
                    let n = remaining.min(gap);
                    gap -= n;
                    self.msg_len += n;
                    if n == remaining {
                        self.end_message(meta, true, out);
                    } else {
                        self.state = State::Body(remaining - n);
                    }
                }
                State::Chunked(Chunk::Data(remaining)) if gap <= remaining => {
                    self.msg_len += gap;
                    self.state = State::Chunked(if gap == remaining {
                        Chunk::DataEnd { cr: false }
                    } else {
                        Chunk::Data(remaining - gap)
                    });
                    gap = 0;
                }
                State::Chunked(_) => {
                    // The next chunk-size line is not captured: the end is unknowable.
                    self.msg_len += gap;
                    self.lose_sync(ParseError::ChunkUncaptured, false, meta, out);
                    return;
                }
                State::UntilClose => {
                    self.msg_len += gap;
                    gap = 0;
                }
                State::Head => {
                    self.salvage_head(ParseError::Truncated, gap, meta, out);
                    return;
                }
                State::Idle => {
                    self.lose_sync(ParseError::Uncaptured, true, meta, out);
                    return;
                }
                State::Desync | State::Upgraded => return,
            }
            if gap == 0 {
                return;
            }
        }
    }

    /// The header block continues in bytes that were not captured, or exceeds the
    /// limit. The complete lines seen are parsed so the exchange is still
    /// reported (method, target, status, headers seen so far); the message ends
    /// incomplete (its framing is unknowable) and the stream resynchronises.
    /// Without even a complete start line the message is lost.
    fn salvage_head(&mut self, error: ParseError, lost_bytes: u64, meta: M, out: &mut Vec<Parsed<M>>) {
        let seen = self.buf.len();
        let head = self.buf.iter().rposition(|&b| b == b'\n').and_then(|end| {
            let mut block = self.buf[..=end].to_vec();
            block.extend_from_slice(b"\r\n");
            parse_head(&block).ok()
        });
        let Some(mut head) = head else {
            self.lose_sync(error, true, meta, out);
            return;
        };
        head.header_len = seen;
        let (start_meta, offset) = self.start.take().unwrap_or((meta, 0));
        if head.status().is_some_and(|c| !(100..200).contains(&c) || c == 101) {
            self.expected.pop_front();
        }
        out.push(Parsed::Head { head, meta: start_meta, offset });
        out.push(Parsed::End { length: seen as u64 + lost_bytes, meta, complete: false });
        out.push(Parsed::Error { error, lost_message: false });
        self.msg_len = 0;
        self.upgrade_after = false;
        self.state = State::Desync;
        self.buf.clear();
    }

    fn on_head(&mut self, meta: M, out: &mut Vec<Parsed<M>>) -> Result<(), ParseError> {
        let head = parse_head(&self.buf)?;
        let (start_meta, offset) = self.start.take().unwrap_or((meta, 0));
        self.msg_len = head.header_len as u64;
        self.buf.clear();
        self.upgrade_after = false;

        enum Framing {
            None,
            Length(u64),
            Chunked,
            UntilClose,
        }
        let framing = match &head.start {
            StartLine::Request { .. } => {
                if head.chunked {
                    Framing::Chunked
                } else {
                    match head.content_length {
                        Some(n) if n > 0 => Framing::Length(n),
                        _ => Framing::None,
                    }
                }
            }
            StartLine::Response { code, .. } => {
                let code = *code;
                let expect = if (100..200).contains(&code) && code != 101 {
                    None // informational: the final response follows
                } else {
                    self.expected.pop_front()
                };
                let expect = expect.unwrap_or(Expect { head: false, connect: false });
                if code == 101 || (expect.connect && (200..300).contains(&code)) {
                    self.upgrade_after = true;
                    Framing::None
                } else if (100..200).contains(&code) || code == 204 || code == 304 || expect.head {
                    Framing::None
                } else if head.chunked {
                    Framing::Chunked
                } else if let Some(n) = head.content_length {
                    if n > 0 {
                        Framing::Length(n)
                    } else {
                        Framing::None
                    }
                } else {
                    Framing::UntilClose
                }
            }
        };
        out.push(Parsed::Head { head, meta: start_meta, offset });
        match framing {
            Framing::None => self.end_message(meta, true, out),
            Framing::Length(n) => self.state = State::Body(n),
            Framing::Chunked => {
                self.state =
                    State::Chunked(Chunk::Size { value: 0, digits: 0, ext: false, cr: false, line: 0 })
            }
            Framing::UntilClose => self.state = State::UntilClose,
        }
        Ok(())
    }

    fn end_message(&mut self, meta: M, complete: bool, out: &mut Vec<Parsed<M>>) {
        out.push(Parsed::End { length: self.msg_len, meta, complete });
        self.msg_len = 0;
        self.state = if self.upgrade_after { State::Upgraded } else { State::Idle };
        self.upgrade_after = false;
    }

    fn lose_sync(&mut self, error: ParseError, lost_message: bool, meta: M, out: &mut Vec<Parsed<M>>) {
        if self.in_message() {
            self.end_message(meta, false, out);
        }
        out.push(Parsed::Error { error, lost_message });
        self.state = State::Desync;
        self.buf.clear();
        self.start = None;
        self.upgrade_after = false;
    }
}

/// One step of the chunked-body machine over `data`: bytes used and the next
/// state (`None`: the body ended with the last trailer line).
fn step_chunked(mut c: Chunk, data: &[u8]) -> Result<(usize, Option<Chunk>), ParseError> {
    let mut i = 0;
    while i < data.len() {
        match c {
            Chunk::Data(remaining) => {
                let n = remaining.min((data.len() - i) as u64);
                i += n as usize;
                c = if n == remaining { Chunk::DataEnd { cr: false } } else { Chunk::Data(remaining - n) };
                continue;
            }
            Chunk::Size { value, digits, ext, cr, line } => {
                let b = data[i];
                i += 1;
                if line >= MAX_CHUNK_LINE {
                    return Err(ParseError::BadChunk);
                }
                let line = line + 1;
                match b {
                    b'\n' => {
                        if digits == 0 {
                            return Err(ParseError::BadChunk);
                        }
                        c = if value == 0 { Chunk::Trailer { line: 0 } } else { Chunk::Data(value) };
                    }
                    _ if cr => return Err(ParseError::BadChunk),
                    b'\r' => c = Chunk::Size { value, digits, ext, cr: true, line },
                    _ if ext => c = Chunk::Size { value, digits, ext, cr, line },
                    b';' | b' ' | b'\t' => c = Chunk::Size { value, digits, ext: true, cr, line },
                    _ => {
                        let d = (b as char).to_digit(16).ok_or(ParseError::BadChunk)? as u64;
                        if digits >= 15 {
                            return Err(ParseError::BadChunk);
                        }
                        c = Chunk::Size { value: value * 16 + d, digits: digits + 1, ext, cr, line };
                    }
                }
            }
            Chunk::DataEnd { cr } => {
                let b = data[i];
                i += 1;
                c = match (b, cr) {
                    (b'\r', false) => Chunk::DataEnd { cr: true },
                    (b'\n', _) => Chunk::Size { value: 0, digits: 0, ext: false, cr: false, line: 0 },
                    _ => return Err(ParseError::BadChunk),
                };
            }
            Chunk::Trailer { line } => {
                let b = data[i];
                i += 1;
                match b {
                    b'\n' if line == 0 => return Ok((i, None)),
                    b'\n' => c = Chunk::Trailer { line: 0 },
                    b'\r' => {}
                    _ if line >= MAX_TRAILER_LINE => return Err(ParseError::BadChunk),
                    _ => c = Chunk::Trailer { line: line + 1 },
                }
            }
        }
    }
    Ok((i, Some(c)))
}

/// End of the header block (index after the blank line), searching from `from`.
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(p) = memchr(b'\n', &buf[i..]) {
        let nl = i + p;
        match buf.get(nl + 1) {
            Some(b'\n') => return Some(nl + 2),
            Some(b'\r') if buf.get(nl + 2) == Some(&b'\n') => return Some(nl + 3),
            _ => i = nl + 1,
        }
    }
    None
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

const METHODS: &[&[u8]] = &[
    b"GET ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"HEAD ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
    b"PROPFIND ",
    b"PROPPATCH ",
    b"MKCOL ",
    b"COPY ",
    b"MOVE ",
    b"LOCK ",
    b"UNLOCK ",
    b"PURGE ",
];
const RESPONSE_PREFIX: &[u8] = b"HTTP/1.";

/// Whether `data` can be (the beginning of) an HTTP/1.x start line. Short inputs
/// that are a prefix of one count: the header parser decides later.
pub fn looks_like_start(data: &[u8]) -> bool {
    let prefix_of = |pat: &[u8]| {
        let n = data.len().min(pat.len());
        data[..n] == pat[..n]
    };
    prefix_of(RESPONSE_PREFIX) || METHODS.iter().any(|m| prefix_of(m))
}

/// Early rejection of a partial header block that can never parse.
fn precheck(buf: &[u8]) -> Result<(), ParseError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let r = if buf.starts_with(b"HTTP/") {
        httparse::Response::new(&mut headers).parse(buf).map(|_| ())
    } else {
        httparse::Request::new(&mut headers).parse(buf).map(|_| ())
    };
    match r {
        Ok(()) | Err(httparse::Error::TooManyHeaders) => Ok(()),
        Err(e) => Err(ParseError::Malformed(e)),
    }
}

/// Parses a complete header block.
pub fn parse_head(buf: &[u8]) -> Result<Head, ParseError> {
    parse_head_with(buf, redact::global())
}

/// `parse_head` under an explicit header policy: redacted headers never feed
/// `host`, `x_request_id`, `traceparent` or `captured` with their values.
pub fn parse_head_with(buf: &[u8], policy: &HeaderPolicy) -> Result<Head, ParseError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let (start, version, len, hdrs): (StartLine, u8, usize, &[httparse::Header<'_>]);
    if buf.starts_with(b"HTTP/") {
        let mut resp = httparse::Response::new(&mut headers);
        let status = resp.parse(buf).map_err(ParseError::Malformed)?;
        let httparse::Status::Complete(n) = status else {
            return Err(ParseError::Truncated);
        };
        start = StartLine::Response {
            code: resp.code.unwrap_or(0),
            reason: resp.reason.unwrap_or("").to_string(),
        };
        version = resp.version.unwrap_or(1);
        len = n;
        hdrs = resp.headers;
    } else {
        let mut req = httparse::Request::new(&mut headers);
        let status = req.parse(buf).map_err(ParseError::Malformed)?;
        let httparse::Status::Complete(n) = status else {
            return Err(ParseError::Truncated);
        };
        start = StartLine::Request {
            method: req.method.unwrap_or("").to_string(),
            target: req.path.unwrap_or("").to_string(),
        };
        version = req.version.unwrap_or(1);
        len = n;
        hdrs = req.headers;
    }

    let mut head = Head {
        start,
        version_minor: version,
        host: None,
        x_request_id: None,
        traceparent: None,
        content_length: None,
        chunked: false,
        connection_close: version == 0,
        header_len: len,
        captured: Vec::new(),
    };
    let capturing = policy.captures_any();
    for h in hdrs {
        let name = h.name;
        let value = || String::from_utf8_lossy(h.value).trim().to_string();
        if capturing && policy.captures(name) {
            head.captured.push(policy.captured(name, h.value));
        }
        if name.eq_ignore_ascii_case("host") {
            if head.host.is_none() {
                head.host = policy.field("host", value);
            }
        } else if name.eq_ignore_ascii_case("x-request-id") {
            if head.x_request_id.is_none() {
                head.x_request_id = policy.field("x-request-id", value);
            }
        } else if name.eq_ignore_ascii_case("traceparent") {
            if head.traceparent.is_none() {
                head.traceparent = policy.field("traceparent", value);
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or(ParseError::BadContentLength)?;
            if head.content_length.is_some_and(|old| old != v) {
                return Err(ParseError::BadContentLength);
            }
            head.content_length = Some(v);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            let v = String::from_utf8_lossy(h.value);
            head.chunked =
                v.rsplit(',').next().is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        } else if name.eq_ignore_ascii_case("connection") {
            let v = String::from_utf8_lossy(h.value);
            for token in v.split(',') {
                let t = token.trim();
                if t.eq_ignore_ascii_case("close") {
                    head.connection_close = true;
                } else if t.eq_ignore_ascii_case("keep-alive") {
                    head.connection_close = false;
                }
            }
        }
    }
    Ok(head)
}

/// W3C trace context: (trace-id, parent-id) from a `traceparent` value.
pub fn parse_traceparent(v: &str) -> Option<(String, String)> {
    let mut parts = v.trim().split('-');
    let version = parts.next()?;
    let trace_id = parts.next()?;
    let parent_id = parts.next()?;
    let flags = parts.next()?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex(version, 2) || version.eq_ignore_ascii_case("ff") || !hex(flags, 2) {
        return None;
    }
    if version == "00" && parts.next().is_some() {
        return None;
    }
    if !hex(trace_id, 32) || !hex(parent_id, 16) {
        return None;
    }
    if trace_id.bytes().all(|b| b == b'0') || parent_id.bytes().all(|b| b == b'0') {
        return None;
    }
    Some((trace_id.to_ascii_lowercase(), parent_id.to_ascii_lowercase()))
}

/// Path with query from a request target (origin-form or absolute-form).
pub fn resource_of(target: &str) -> &str {
    if let Some(rest) = target.strip_prefix("http://").or_else(|| target.strip_prefix("https://")) {
        match rest.find('/') {
            Some(i) => &rest[i..],
            None => "/",
        }
    } else {
        target
    }
}

/// Host from an absolute-form target, for requests without a Host header.
pub fn host_of_target(target: &str) -> Option<&str> {
    let rest = target.strip_prefix("http://").or_else(|| target.strip_prefix("https://"))?;
    let end = rest.find('/').unwrap_or(rest.len());
    Some(&rest[..end]).filter(|h| !h.is_empty())
}

/// Path without query or fragment.
pub fn endpoint_of(resource: &str) -> &str {
    let end = resource.find(['?', '#']).unwrap_or(resource.len());
    &resource[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    type Out = Vec<Parsed<u32>>;

    fn feed_all(s: &mut HttpStream<u32>, chunks: &[&[u8]]) -> Out {
        let mut out = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            s.feed(c, c.len() as u64, i as u32, &mut out);
        }
        out
    }

    fn heads(out: &Out) -> Vec<Head> {
        out.iter()
            .filter_map(|p| match p {
                Parsed::Head { head, .. } => Some(head.clone()),
                _ => None,
            })
            .collect()
    }

    fn ends(out: &Out) -> Vec<(u64, bool)> {
        out.iter()
            .filter_map(|p| match p {
                Parsed::End { length, complete, .. } => Some((*length, *complete)),
                _ => None,
            })
            .collect()
    }

    fn errors(out: &Out) -> Vec<ParseError> {
        out.iter()
            .filter_map(|p| match p {
                Parsed::Error { error, .. } => Some(error.clone()),
                _ => None,
            })
            .collect()
    }

    const REQ: &[u8] = b"GET /api/items?id=7 HTTP/1.1\r\nHost: shop.example\r\nX-Request-ID: req-42\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nUser-Agent: t\r\n\r\n";
    const RESP: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Request-ID: req-42\r\n\r\nhello";

    #[test]
    fn request_and_response_pair() {
        let mut req = HttpStream::<u32>::default();
        let out = feed_all(&mut req, &[REQ]);
        let h = &heads(&out)[0];
        assert_eq!(h.start, StartLine::Request { method: "GET".into(), target: "/api/items?id=7".into() });
        assert_eq!(h.version(), "1.1");
        assert_eq!(h.host.as_deref(), Some("shop.example"));
        assert_eq!(h.x_request_id.as_deref(), Some("req-42"));
        assert_eq!(ends(&out), vec![(REQ.len() as u64, true)]);

        let mut resp = HttpStream::<u32>::default();
        resp.expect_response_to("GET");
        let out = feed_all(&mut resp, &[RESP]);
        let h = &heads(&out)[0];
        assert_eq!(h.status(), Some(200));
        assert_eq!(h.x_request_id.as_deref(), Some("req-42"));
        assert_eq!(ends(&out), vec![(RESP.len() as u64, true)]);
    }

    #[test]
    fn headers_split_at_every_byte_position() {
        for at in 1..REQ.len() {
            let mut s = HttpStream::<u32>::default();
            let out = feed_all(&mut s, &[&REQ[..at], &REQ[at..]]);
            assert!(errors(&out).is_empty(), "split at {at}: {:?}", errors(&out));
            let hs = heads(&out);
            assert_eq!(hs.len(), 1, "split at {at}");
            assert_eq!(hs[0].x_request_id.as_deref(), Some("req-42"));
            assert_eq!(ends(&out), vec![(REQ.len() as u64, true)], "split at {at}");
        }
        for at in 1..RESP.len() {
            let mut s = HttpStream::<u32>::default();
            let out = feed_all(&mut s, &[&RESP[..at], &RESP[at..]]);
            assert_eq!(heads(&out).len(), 1, "split at {at}");
            assert_eq!(ends(&out), vec![(RESP.len() as u64, true)], "split at {at}");
        }
    }

    #[test]
    fn every_byte_in_its_own_syscall() {
        let mut s = HttpStream::<u32>::default();
        let chunks: Vec<&[u8]> = RESP.chunks(1).collect();
        let out = feed_all(&mut s, &chunks);
        assert_eq!(heads(&out).len(), 1);
        assert_eq!(ends(&out), vec![(RESP.len() as u64, true)]);
        // The message started in chunk 0 and ended in the last chunk.
        assert!(matches!(out[0], Parsed::Head { meta: 0, offset: 0, .. }));
        assert!(matches!(out.last(), Some(Parsed::End { meta, .. }) if *meta as usize == RESP.len() - 1));
    }

    #[test]
    fn keep_alive_three_exchanges() {
        let mut req = HttpStream::<u32>::default();
        let mut resp = HttpStream::<u32>::default();
        let mut rq = Vec::new();
        let mut rs = Vec::new();
        for i in 0..3u32 {
            let r = format!("GET /k/{i} HTTP/1.1\r\nHost: a\r\n\r\n");
            req.feed(r.as_bytes(), r.len() as u64, i, &mut rq);
            resp.expect_response_to("GET");
            let body = "x".repeat(i as usize * 10);
            let s = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            resp.feed(s.as_bytes(), s.len() as u64, i, &mut rs);
        }
        let paths: Vec<String> = heads(&rq)
            .into_iter()
            .map(|h| match h.start {
                StartLine::Request { target, .. } => target,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(paths, vec!["/k/0", "/k/1", "/k/2"]);
        assert_eq!(heads(&rs).len(), 3);
        assert_eq!(ends(&rs).iter().filter(|e| e.1).count(), 3);
    }

    #[test]
    fn pipelined_requests_in_one_syscall() {
        let mut s = HttpStream::<u32>::default();
        let data = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nPOST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET /c HTTP/1.1\r\nHost: h\r\n\r\n";
        let out = feed_all(&mut s, &[data]);
        let hs = heads(&out);
        assert_eq!(hs.len(), 3);
        assert_eq!(hs[1].method(), Some("POST"));
        // Offsets locate each message inside the syscall.
        let offsets: Vec<usize> = out
            .iter()
            .filter_map(|p| match p {
                Parsed::Head { offset, .. } => Some(*offset),
                _ => None,
            })
            .collect();
        assert_eq!(offsets, vec![0, 28, 28 + 51]);
        assert_eq!(ends(&out).len(), 3);
        assert!(errors(&out).is_empty());
    }

    #[test]
    fn pipelined_responses_use_expected_methods() {
        let mut s = HttpStream::<u32>::default();
        s.expect_response_to("HEAD");
        s.expect_response_to("GET");
        // The HEAD response announces a length but carries no body.
        let data = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno";
        let out = feed_all(&mut s, &[data]);
        let hs = heads(&out);
        assert_eq!(hs.iter().map(|h| h.status().unwrap()).collect::<Vec<_>>(), vec![200, 404]);
        assert_eq!(ends(&out).len(), 2);
    }

    #[test]
    fn chunked_response_across_syscalls() {
        let mut s = HttpStream::<u32>::default();
        let parts: &[&[u8]] = &[
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"5\r\nhel",
            b"lo\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r",
            b"\n0\r\n",
            b"Trailer: x\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
        ];
        let out = feed_all(&mut s, parts);
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let e = ends(&out);
        assert!(errors(&out).is_empty(), "{:?}", errors(&out));
        assert_eq!(heads(&out).len(), 2);
        let second = b"HTTP/1.1 204 No Content\r\n\r\n".len();
        assert_eq!(e, vec![((total - second) as u64, true), (second as u64, true)]);
    }

    #[test]
    fn chunked_split_at_every_byte() {
        let msg: &[u8] =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n";
        for at in 1..msg.len() {
            let mut s = HttpStream::<u32>::default();
            let out = feed_all(&mut s, &[&msg[..at], &msg[at..]]);
            assert_eq!(ends(&out), vec![(msg.len() as u64, true)], "split at {at}");
        }
    }

    #[test]
    fn bad_chunk_size_resyncs() {
        let mut s = HttpStream::<u32>::default();
        let out = feed_all(
            &mut s,
            &[
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n",
            ],
        );
        assert_eq!(errors(&out), vec![ParseError::BadChunk]);
        assert_eq!(heads(&out).len(), 2);
        assert!(!ends(&out)[0].1, "first body ended incomplete");
        assert_eq!(heads(&out)[1].status(), Some(500));
    }

    #[test]
    fn body_bytes_beyond_the_capture_cap_are_skipped() {
        let mut s = HttpStream::<u32>::default();
        let mut out = Vec::new();
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n";
        let mut first = head.to_vec();
        first.extend(vec![b'x'; 4096 - head.len()]);
        // Syscall of 8000 bytes, 4096 captured; then 2000 + next response.
        s.feed(&first, 8000, 0, &mut out);
        let mut second = vec![b'y'; 10000 + head.len() - 8000];
        second.extend_from_slice(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        s.feed(&second, second.len() as u64, 1, &mut out);
        assert!(errors(&out).is_empty());
        assert_eq!(heads(&out).len(), 2);
        assert_eq!(ends(&out)[0], ((head.len() + 10000) as u64, true));
    }

    #[test]
    fn sendfile_body_without_payload() {
        let mut s = HttpStream::<u32>::default();
        let mut out = Vec::new();
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 50000\r\n\r\n";
        s.feed(head, head.len() as u64, 0, &mut out);
        s.feed(&[], 50000, 1, &mut out);
        let next = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        s.feed(next, next.len() as u64, 2, &mut out);
        assert_eq!(heads(&out).len(), 2);
        assert_eq!(ends(&out), vec![((head.len() + 50000) as u64, true), (next.len() as u64, true)]);
    }

    #[test]
    fn truncated_header_then_recovery() {
        let mut s = HttpStream::<u32>::default();
        let mut out = Vec::new();
        // Only 20 of 200 header bytes captured.
        s.feed(&REQ[..20], 200, 0, &mut out);
        assert_eq!(errors(&out), vec![ParseError::Truncated]);
        assert!(heads(&out).is_empty());
        // Continuation bytes of the lost block are discarded...
        s.feed(b"ue\r\nMore: x\r\n\r\n", 17, 1, &mut out);
        assert!(heads(&out).is_empty());
        // ...and the next request parses.
        s.feed(REQ, REQ.len() as u64, 2, &mut out);
        assert_eq!(heads(&out).len(), 1);
    }

    #[test]
    fn header_cut_by_capture_cap_keeps_start_line() {
        let mut s = HttpStream::<u32>::default();
        let mut out = Vec::new();
        // 64 bytes captured of a 150-byte header block.
        s.feed(&REQ[..64], 150, 0, &mut out);
        let h = &heads(&out)[0];
        assert_eq!(h.start, StartLine::Request { method: "GET".into(), target: "/api/items?id=7".into() });
        assert_eq!(h.host.as_deref(), Some("shop.example"));
        assert_eq!(h.x_request_id, None, "that line was not captured");
        assert_eq!(ends(&out), vec![(150, false)]);
        assert_eq!(errors(&out), vec![ParseError::Truncated]);
        assert!(matches!(out.last(), Some(Parsed::Error { lost_message: false, .. })));
        let out = feed_all(&mut s, &[REQ]);
        assert_eq!(heads(&out).len(), 1, "next syscall starting a request resyncs");
    }

    #[test]
    fn truncated_stream_end() {
        let mut s = HttpStream::<u32>::default();
        let mut out = Vec::new();
        s.feed(&RESP[..RESP.len() - 2], (RESP.len() - 2) as u64, 0, &mut out);
        assert_eq!(heads(&out).len(), 1);
        assert!(ends(&out).is_empty(), "body not finished");
        s.finish(1, &mut out);
        assert_eq!(ends(&out), vec![((RESP.len() - 2) as u64, false)]);
    }

    #[test]
    fn garbage_is_rejected_without_output() {
        let mut s = HttpStream::<u32>::default();
        let out =
            feed_all(&mut s, &[b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", b"more binary \x00\xff"]);
        assert!(heads(&out).is_empty());
        assert_eq!(errors(&out), vec![ParseError::NotHttp]);
        // Recovers on the next start line.
        let out = feed_all(&mut s, &[REQ]);
        assert_eq!(heads(&out).len(), 1);
    }

    #[test]
    fn garbage_after_valid_method_prefix() {
        let mut s = HttpStream::<u32>::default();
        let out = feed_all(&mut s, &[b"GET \x01\x02\x03 nonsense\r\n\r\n"]);
        assert!(heads(&out).is_empty());
        assert!(matches!(errors(&out)[0], ParseError::Malformed(_)));
    }

    #[test]
    fn http2_preface_is_not_http1() {
        let mut s = HttpStream::<u32>::default();
        let out = feed_all(&mut s, &[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]);
        assert!(heads(&out).is_empty());
        assert_eq!(errors(&out).len(), 1);
    }

    #[test]
    fn oversized_headers_error_without_panic() {
        let mut s = HttpStream::<u32>::new(1024);
        let mut big = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..200 {
            big.extend(format!("X-Fill-{i}: {}\r\n", "v".repeat(20)).as_bytes());
        }
        big.extend(b"\r\n");
        let out = feed_all(&mut s, &[&big]);
        assert_eq!(errors(&out), vec![ParseError::HeaderTooLarge { limit: 1024 }]);
        // The lines seen are still reported; the message ends incomplete.
        assert_eq!(heads(&out)[0].method(), Some("GET"));
        assert_eq!(heads(&out)[0].host.as_deref(), Some("a"));
        assert_eq!(ends(&out), vec![(1024, false)]);
        // Same block fed in small syscalls; the rest of the block is discarded
        // and the next request parses.
        let mut s = HttpStream::<u32>::new(1024);
        let mut chunks: Vec<&[u8]> = big.chunks(100).collect();
        chunks.push(REQ);
        let out = feed_all(&mut s, &chunks);
        assert_eq!(errors(&out), vec![ParseError::HeaderTooLarge { limit: 1024 }]);
        assert_eq!(heads(&out).len(), 2);
        assert_eq!(heads(&out)[1].x_request_id.as_deref(), Some("req-42"));
    }

    #[test]
    fn missing_host() {
        let mut s = HttpStream::<u32>::default();
        let out = feed_all(&mut s, &[b"GET /nohost HTTP/1.0\r\n\r\n"]);
        let h = &heads(&out)[0];
        assert_eq!(h.host, None);
        assert_eq!(h.version(), "1.0");
        assert!(h.connection_close);
    }

    #[test]
    fn error_statuses_and_reasons() {
        for (raw, code, reason) in [
            (&b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"[..], 404, "Not Found"),
            (&b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 3\r\n\r\nbad"[..], 502, "Bad Gateway"),
        ] {
            let mut s = HttpStream::<u32>::default();
            let out = feed_all(&mut s, &[raw]);
            let h = &heads(&out)[0];
            assert_eq!(h.start, StartLine::Response { code, reason: reason.into() });
            assert_eq!(ends(&out), vec![(raw.len() as u64, true)]);
        }
    }

    #[test]
    fn response_without_length_ends_at_close() {
        let mut s = HttpStream::<u32>::default();
        let mut out = Vec::new();
        let raw = b"HTTP/1.0 200 OK\r\n\r\nbody until close";
        s.feed(raw, raw.len() as u64, 0, &mut out);
        assert!(ends(&out).is_empty());
        s.finish(1, &mut out);
        assert_eq!(ends(&out), vec![(raw.len() as u64, true)]);
    }

    #[test]
    fn informational_and_upgrade() {
        let mut s = HttpStream::<u32>::default();
        s.expect_response_to("GET");
        let out = feed_all(
            &mut s,
            &[b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello"],
        );
        assert_eq!(heads(&out).iter().map(|h| h.status().unwrap()).collect::<Vec<_>>(), vec![100, 101]);
        assert!(s.is_upgraded());
        assert!(errors(&out).is_empty(), "websocket bytes are not parsed");
    }

    #[test]
    fn conflicting_content_length_is_an_error() {
        let mut s = HttpStream::<u32>::default();
        let out =
            feed_all(&mut s, &[b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc"]);
        assert_eq!(errors(&out), vec![ParseError::BadContentLength]);
    }

    #[test]
    fn gap_at_message_boundary_reports_uncaptured() {
        let mut s = HttpStream::<u32>::default();
        let mut out = Vec::new();
        // A syscall whose captured part ends exactly where a second response begins.
        s.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 200, 0, &mut out);
        assert_eq!(heads(&out).len(), 1);
        assert!(matches!(
            out.last(),
            Some(Parsed::Error { error: ParseError::Uncaptured, lost_message: true })
        ));
    }

    #[test]
    fn traceparent_extraction() {
        assert_eq!(
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            Some(("4bf92f3577b34da6a3ce929d0e0e4736".into(), "00f067aa0ba902b7".into()))
        );
        assert_eq!(parse_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01"), None);
        assert_eq!(parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"), None);
        assert_eq!(parse_traceparent("00-4bf92f35-00f067aa0ba902b7-01"), None);
        assert_eq!(parse_traceparent("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), None);
        assert_eq!(parse_traceparent("garbage"), None);
        // Future versions may append fields.
        assert!(parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x").is_some());
        let head = parse_head(REQ).unwrap();
        assert_eq!(
            parse_traceparent(head.traceparent.as_deref().unwrap()).unwrap().0,
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }

    #[test]
    fn resource_and_endpoint() {
        assert_eq!(resource_of("/a/b?x=1"), "/a/b?x=1");
        assert_eq!(resource_of("http://h:8080/a?x"), "/a?x");
        assert_eq!(resource_of("http://h"), "/");
        assert_eq!(host_of_target("http://h:8080/a"), Some("h:8080"));
        assert_eq!(host_of_target("/a"), None);
        assert_eq!(endpoint_of("/a/b?x=1"), "/a/b");
        assert_eq!(endpoint_of("/a#frag"), "/a");
        assert_eq!(endpoint_of("*"), "*");
    }

    #[test]
    fn pseudo_random_input_never_panics() {
        // Deterministic xorshift; mixes valid fragments with noise and gaps.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let pieces: &[&[u8]] =
            &[REQ, RESP, b"\r\n", b"0\r\n\r\n", b"Transfer-Encoding: chunked\r\n", b"HTTP/1.1 "];
        for _ in 0..2000 {
            let mut s = HttpStream::<u32>::new(512);
            let mut out = Vec::new();
            for i in 0..20 {
                let mut chunk = Vec::new();
                for _ in 0..(next() % 4) {
                    let r = next();
                    if r % 3 == 0 {
                        chunk.extend((0..(r % 64)).map(|_| next() as u8));
                    } else {
                        let p = pieces[(r % pieces.len() as u64) as usize];
                        let a = (next() as usize) % (p.len() + 1);
                        chunk.extend_from_slice(&p[a..]);
                    }
                }
                let gap = if next() % 5 == 0 { next() % 3000 } else { 0 };
                s.feed(&chunk, chunk.len() as u64 + gap, i, &mut out);
                if next() % 7 == 0 {
                    s.expect_response_to("HEAD");
                }
            }
            s.finish(99, &mut out);
        }
    }

    #[test]
    fn sensitive_headers_never_reach_the_head() {
        let policy = HeaderPolicy::new(
            &["x-api-key".into(), "x-request-id".into()],
            &["authorization".into(), "cookie".into(), "user-agent".into(), "x-api-key".into()],
        );
        let req = b"GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer SECRET-1\r\nCookie: sid=SECRET-2\r\n\
Proxy-Authorization: Basic SECRET-3\r\nX-Api-Key: SECRET-4\r\nX-Request-ID: SECRET-5\r\nUser-Agent: curl/8\r\n\r\n";
        let head = parse_head_with(req, &policy).unwrap();
        assert_eq!(
            head.captured,
            vec![
                ("authorization".to_string(), "[REDACTED]".to_string()),
                ("cookie".into(), "[REDACTED]".into()),
                ("x-api-key".into(), "[REDACTED]".into()),
                ("user-agent".into(), "curl/8".into()),
            ]
        );
        assert_eq!(head.x_request_id, None, "redacted on request: the field stays empty");
        assert_eq!(head.host.as_deref(), Some("h"));
        assert!(!format!("{head:?}").contains("SECRET"), "{head:?}");
        let resp = b"HTTP/1.1 200 OK\r\nSet-Cookie: sid=SECRET-6\r\nContent-Length: 0\r\n\r\n";
        let head = parse_head_with(resp, &HeaderPolicy::new(&[], &["set-cookie".into()])).unwrap();
        assert_eq!(head.captured, vec![("set-cookie".to_string(), "[REDACTED]".to_string())]);
        // The default policy captures nothing at all.
        assert!(parse_head(req).unwrap().captured.is_empty());
    }
}
