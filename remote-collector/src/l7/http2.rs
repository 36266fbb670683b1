//! HTTP/2 over cleartext with prior knowledge (RFC 9113), and gRPC on it.
//!
//! A connection is HTTP/2 when its first payload is the client connection
//! preface (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`); the direction that carried it
//! is the client's. Each direction is a sequence of frames, parsed across
//! syscall boundaries. Header blocks (HEADERS + CONTINUATION, PUSH_PROMISE) are
//! decoded with one HPACK decoder per direction (loona-hpack), so the dynamic
//! table follows the connection. Only the fields a span needs are kept
//! (pseudo-headers, Host, Content-Type, X-Request-ID, traceparent, grpc-status,
//! grpc-message): no other header value is ever copied out of the decoder.
//!
//! A stream's request is reported when its END_STREAM is seen (or when its
//! response starts first), with its length so far; its response when the
//! response's END_STREAM (or a RST_STREAM) is seen. Lengths count frame
//! headers and payloads (HEADERS, CONTINUATION, DATA) of the stream in that
//! direction, including DATA bytes beyond the copy cap.
//!
//! Bytes beyond the copy cap inside a DATA (or other skipped) frame payload are
//! harmless. Anywhere else they hide a frame header or a header block, which
//! breaks framing or the HPACK dynamic table for good: the session then stops
//! parsing the connection, counts why, and reports every open stream as not
//! captured rather than guessing.

use std::collections::HashMap;

use loona_hpack::Decoder;

use super::{Message, Request, Response, Session};
use crate::event::Direction;
use crate::http;
use crate::redact::{self, HeaderPolicy};
use crate::span::{canonical_reason, status_of};
use crate::tracker::Meta;

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
/// Header block bytes (HEADERS + CONTINUATION) buffered for one block.
pub const MAX_BLOCK: usize = 64 * 1024;
/// Largest HPACK dynamic table a peer may ask for (size updates beyond it stop
/// parsing). The protocol default is 4 KiB and common servers stay near it; the
/// bound keeps two tables per connection small whatever a peer announces.
pub const MAX_TABLE: usize = 64 * 1024;
/// Streams with a request but no response yet, per connection.
pub const MAX_STREAMS: usize = 1024;
/// SETTINGS and RST_STREAM payloads larger than this are not HTTP/2 we can follow.
const MAX_CONTROL: usize = 4096;

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PUSH_PROMISE: u8 = 5;
const CONTINUATION: u8 = 9;

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// Picks HTTP/2 when `data` begins with (at least 14 bytes of) the client
/// preface, or with a SETTINGS frame on stream 0: the server's preface, which
/// may be seen first (a client that reads before it writes, a server that
/// writes before it reads); the client is then the other direction.
pub fn detect(dir: Direction, data: &[u8]) -> Option<Box<dyn Session>> {
    let n = data.len().min(PREFACE.len());
    if n >= 14 && data[..n] == PREFACE[..n] {
        return Some(Box::new(Http2::new(dir)));
    }
    if is_server_preface(data) {
        let other = match dir {
            Direction::Ingress => Direction::Egress,
            Direction::Egress => Direction::Ingress,
        };
        return Some(Box::new(Http2::new(other)));
    }
    None
}

/// A SETTINGS frame (not an ACK) on stream 0 with a whole number of settings.
fn is_server_preface(d: &[u8]) -> bool {
    d.len() >= FRAME_HEADER
        && d[0] == 0
        && d[1] == 0
        && d[2] % 6 == 0
        && d[3] == SETTINGS
        && d[4] == 0
        && d[5..9] == [0, 0, 0, 0]
}

/// Where a frame began: the syscall and the offset of its first byte in it.
#[derive(Debug, Clone, Copy)]
struct At {
    meta: Meta,
    offset: usize,
}

impl At {
    /// The syscall's metadata with `seq` moved to the frame's first byte.
    fn meta(self) -> Meta {
        Meta { seq: self.meta.seq.wrapping_add(self.offset as u32), ..self.meta }
    }
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Collecting the 9-byte frame header.
    Header,
    /// Buffering the payload of a frame we parse.
    Payload { ty: u8, flags: u8, stream: u32, len: usize, at: At },
    /// Passing over `left` payload bytes of a frame we only count.
    Skip { left: u64 },
}

struct Block {
    stream: u32,
    end_stream: bool,
    push: bool,
    bytes: Vec<u8>,
    frame_bytes: u64,
    at: At,
}

/// One direction of the connection.
struct Half {
    preface_left: usize,
    hdr: [u8; FRAME_HEADER],
    hdr_n: usize,
    hdr_at: Option<At>,
    phase: Phase,
    buf: Vec<u8>,
    block: Option<Block>,
    hpack: Decoder<'static>,
    table_max: usize,
}

impl Half {
    fn new(preface: bool) -> Self {
        let mut hpack = Decoder::new();
        hpack.set_max_allowed_table_size(MAX_TABLE);
        Self {
            preface_left: if preface { PREFACE.len() } else { 0 },
            hdr: [0; FRAME_HEADER],
            hdr_n: 0,
            hdr_at: None,
            phase: Phase::Header,
            buf: Vec::new(),
            block: None,
            hpack,
            table_max: 4096,
        }
    }
}

/// The fields of a header block that spans use.
#[derive(Debug, Default)]
struct Fields {
    method: Option<String>,
    path: Option<String>,
    authority: Option<String>,
    host: Option<String>,
    status: Option<u16>,
    content_type: Option<String>,
    x_request_id: Option<String>,
    traceparent: Option<String>,
    grpc_status: Option<u16>,
    grpc_message: Option<String>,
    /// Headers asked for with `--capture-header`, as the policy lets them out.
    captured: Vec<(String, String)>,
}

impl Fields {
    fn take(&mut self, name: &[u8], value: &[u8], policy: &HeaderPolicy) {
        let Ok(name) = std::str::from_utf8(name) else { return };
        if policy.captures(name) {
            self.captured.push(policy.captured(name, value));
        }
        let text = || String::from_utf8_lossy(value).into_owned();
        match name {
            ":method" => self.method = Some(text()),
            ":path" => self.path = Some(text()),
            ":authority" => self.authority = policy.field("host", text),
            "host" => self.host = policy.field("host", text),
            ":status" => self.status = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()),
            "content-type" => self.content_type = Some(text()),
            "x-request-id" => self.x_request_id = policy.field(name, text),
            "traceparent" => self.traceparent = policy.field(name, text),
            "grpc-status" => self.grpc_status = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()),
            "grpc-message" => self.grpc_message = policy.field(name, || percent_decode(value)),
            _ => {}
        }
    }
}

#[derive(Debug, Default)]
struct Stream {
    serial: u64,
    req: Option<Request>,
    req_first: Option<Meta>,
    req_len: u64,
    req_sent: bool,
    grpc: bool,
    resp_first: Option<Meta>,
    resp_len: u64,
    status: Option<u16>,
    resp_x_request_id: Option<String>,
    grpc_status: Option<u16>,
    grpc_message: Option<String>,
    resp_headers: Vec<(String, String)>,
}

pub struct Http2 {
    /// The direction that carries requests (the client's writes).
    req_dir: Direction,
    halves: [Half; 2],
    streams: HashMap<u32, Stream>,
    serial: u64,
    dead: bool,
    policy: &'static HeaderPolicy,
}

fn index(d: Direction) -> usize {
    match d {
        Direction::Ingress => 0,
        Direction::Egress => 1,
    }
}

impl Http2 {
    /// `req_dir`: the direction that carried the connection preface.
    pub fn new(req_dir: Direction) -> Self {
        Self::with_policy(req_dir, redact::global())
    }

    /// `new` under an explicit header policy (tests; the collector installs the global one).
    pub fn with_policy(req_dir: Direction, policy: &'static HeaderPolicy) -> Self {
        let client = index(req_dir);
        Self {
            req_dir,
            halves: [Half::new(client == 0), Half::new(client == 1)],
            streams: HashMap::new(),
            serial: 0,
            dead: false,
            policy,
        }
    }

    /// Stops parsing for good: framing or HPACK state is lost. Every stream
    /// with a request is reported, its response as not captured.
    fn die(&mut self, reason: &'static str, now: Meta, out: &mut Vec<Message>) {
        if self.dead {
            return;
        }
        self.dead = true;
        out.push(Message::Error(reason));
        let mut open: Vec<(u32, Stream)> = self.streams.drain().collect();
        open.sort_by_key(|(_, s)| s.serial);
        for (id, mut s) in open {
            if s.req.is_none() {
                continue;
            }
            send_request(id, &mut s, now, out);
            out.push(Message::Response {
                key: id.into(),
                first: now,
                last: now,
                resp: Response {
                    status: "unknown",
                    exception: Some(format!("response not captured: HTTP/2 parsing stopped ({reason})")),
                    length: s.resp_len,
                    ..Default::default()
                },
            });
        }
    }

    fn on_frame_header(&mut self, di: usize, at: At, now: Meta, out: &mut Vec<Message>) {
        let h = self.halves[di].hdr;
        let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
        let (ty, flags) = (h[3], h[4]);
        let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
        if self.halves[di].block.is_some() && ty != CONTINUATION {
            return self.die("continuation_expected", now, out);
        }
        let parse = match ty {
            HEADERS | CONTINUATION | PUSH_PROMISE => {
                let held = self.halves[di].block.as_ref().map_or(0, |b| b.bytes.len());
                if held + len > MAX_BLOCK {
                    return self.die("header_block_too_large", now, out);
                }
                true
            }
            SETTINGS | RST_STREAM => {
                if len > MAX_CONTROL {
                    return self.die("bad_frame", now, out);
                }
                true
            }
            DATA => {
                self.on_data(di, stream, len, flags, now, out);
                false
            }
            _ => false,
        };
        let half = &mut self.halves[di];
        half.buf.clear();
        half.phase = if parse {
            Phase::Payload { ty, flags, stream, len, at }
        } else {
            Phase::Skip { left: len as u64 }
        };
        if len == 0 {
            self.end_payload(di, now, out);
        }
    }

    /// The current frame's payload is complete (or was skipped).
    fn end_payload(&mut self, di: usize, now: Meta, out: &mut Vec<Message>) {
        let phase = std::mem::replace(&mut self.halves[di].phase, Phase::Header);
        let Phase::Payload { ty, flags, stream, len, at } = phase else { return };
        let payload = std::mem::take(&mut self.halves[di].buf);
        self.on_frame(di, ty, flags, stream, len, at, &payload, now, out);
        self.halves[di].buf = payload;
    }

    #[allow(clippy::too_many_arguments)]
    fn on_frame(
        &mut self,
        di: usize,
        ty: u8,
        flags: u8,
        stream: u32,
        len: usize,
        at: At,
        p: &[u8],
        now: Meta,
        out: &mut Vec<Message>,
    ) {
        let frame_bytes = (FRAME_HEADER + len) as u64;
        match ty {
            HEADERS | PUSH_PROMISE => {
                let mut start = 0;
                let mut end = p.len();
                if flags & PADDED != 0 {
                    let Some(&pad) = p.first() else { return self.die("bad_frame", now, out) };
                    start = 1;
                    end = match end.checked_sub(pad as usize) {
                        Some(e) => e,
                        None => return self.die("bad_frame", now, out),
                    };
                }
                if ty == HEADERS && flags & PRIORITY != 0 {
                    start += 5;
                }
                if ty == PUSH_PROMISE {
                    start += 4;
                }
                if start > end {
                    return self.die("bad_frame", now, out);
                }
                let block = Block {
                    stream,
                    end_stream: ty == HEADERS && flags & END_STREAM != 0,
                    push: ty == PUSH_PROMISE,
                    bytes: p[start..end].to_vec(),
                    frame_bytes,
                    at,
                };
                self.halves[di].block = Some(block);
                if flags & END_HEADERS != 0 {
                    self.end_block(di, now, out);
                }
            }
            CONTINUATION => {
                let Some(block) = self.halves[di].block.as_mut().filter(|b| b.stream == stream) else {
                    return self.die("continuation_expected", now, out);
                };
                block.bytes.extend_from_slice(p);
                block.frame_bytes += frame_bytes;
                if flags & END_HEADERS != 0 {
                    self.end_block(di, now, out);
                }
            }
            SETTINGS if flags & ACK == 0 => {
                if p.len() % 6 != 0 {
                    return self.die("bad_frame", now, out);
                }
                for e in p.chunks_exact(6) {
                    let id = u16::from_be_bytes([e[0], e[1]]);
                    let v = u32::from_be_bytes([e[2], e[3], e[4], e[5]]) as usize;
                    // SETTINGS_HEADER_TABLE_SIZE bounds the table of the blocks this
                    // endpoint receives, i.e. those of the other direction. A table
                    // larger than the encoder's keeps entries it evicted, which it
                    // never refers to again, so growing is safe; shrinking is
                    // announced in the blocks themselves.
                    let other = &mut self.halves[1 - di];
                    if id == 1 && v > other.table_max {
                        other.table_max = v.min(MAX_TABLE);
                        other.hpack.set_max_table_size(other.table_max);
                    }
                }
            }
            RST_STREAM => {
                if p.len() != 4 {
                    return self.die("bad_frame", now, out);
                }
                let code = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
                self.on_reset(di, stream, code, now, out);
            }
            _ => {}
        }
    }

    fn on_data(&mut self, di: usize, id: u32, len: usize, flags: u8, now: Meta, out: &mut Vec<Message>) {
        let is_req = di == index(self.req_dir);
        let Some(s) = self.streams.get_mut(&id) else { return };
        let bytes = (FRAME_HEADER + len) as u64;
        if is_req {
            s.req_len += bytes;
            if flags & END_STREAM != 0 {
                send_request(id, s, now, out);
            }
        } else {
            s.resp_len += bytes;
            if flags & END_STREAM != 0 {
                self.end_response(id, now, out);
            }
        }
    }

    fn end_block(&mut self, di: usize, now: Meta, out: &mut Vec<Message>) {
        let Some(block) = self.halves[di].block.take() else { return };
        let mut f = Fields::default();
        let policy = self.policy;
        let decoded = self.halves[di].hpack.decode_with_cb(&block.bytes, |n, v| f.take(&n, &v, policy));
        if decoded.is_err() {
            return self.die("hpack_error", now, out);
        }
        if block.push {
            return; // decoded only to keep the dynamic table in step
        }
        let id = block.stream;
        if di == index(self.req_dir) {
            self.on_request_headers(id, f, &block, now, out);
        } else {
            self.on_response_headers(id, f, &block, now, out);
        }
    }

    fn on_request_headers(&mut self, id: u32, f: Fields, block: &Block, now: Meta, out: &mut Vec<Message>) {
        if let Some(s) = self.streams.get_mut(&id) {
            // Request trailers.
            s.req_len += block.frame_bytes;
            if block.end_stream {
                send_request(id, s, now, out);
            }
            return;
        }
        if id == 0 || id % 2 == 0 {
            out.push(Message::Error("bad_stream_id"));
            return;
        }
        if self.streams.len() >= MAX_STREAMS {
            out.push(Message::Error("too_many_streams"));
            return;
        }
        let grpc = f.content_type.as_deref().is_some_and(|c| c.starts_with("application/grpc"));
        let resource = f.path.unwrap_or_default();
        let endpoint = if grpc { resource.clone() } else { http::endpoint_of(&resource).to_string() };
        self.serial += 1;
        let mut s = Stream {
            serial: self.serial,
            req: Some(Request {
                l7_protocol: if grpc { "gRPC" } else { "HTTP2" },
                version: "2",
                request_type: f.method.unwrap_or_default(),
                request_domain: f.authority.or(f.host),
                request_resource: resource,
                endpoint,
                length: 0,
                x_request_id: f.x_request_id,
                traceparent: f.traceparent,
                attributes: crate::tracker::header_attributes(&f.captured, &[]),
            }),
            req_first: Some(block.at.meta()),
            req_len: block.frame_bytes,
            grpc,
            ..Default::default()
        };
        if block.end_stream {
            send_request(id, &mut s, now, out);
        }
        self.streams.insert(id, s);
    }

    fn on_response_headers(&mut self, id: u32, f: Fields, block: &Block, now: Meta, out: &mut Vec<Message>) {
        let Some(s) = self.streams.get_mut(&id) else {
            // A response to a request we did not see: let the tracker count it.
            out.push(Message::Response {
                key: id.into(),
                first: block.at.meta(),
                last: now,
                resp: Response { code: f.status, status: status_of(f.status), ..Default::default() },
            });
            return;
        };
        s.resp_len += block.frame_bytes;
        s.resp_headers.extend(f.captured);
        let informational = f.status.is_some_and(|c| (100..200).contains(&c));
        if s.resp_first.is_none() && !informational {
            s.resp_first = Some(block.at.meta());
            s.status = f.status;
            s.resp_x_request_id = f.x_request_id;
        }
        if f.grpc_status.is_some() {
            s.grpc_status = f.grpc_status;
            s.grpc_message = f.grpc_message;
        }
        if s.resp_first.is_some() {
            // The response started: the request is as complete as it will be
            // before its answer (bidirectional streams, early responses).
            send_request(id, s, now, out);
        }
        if block.end_stream {
            self.end_response(id, now, out);
        }
    }

    fn end_response(&mut self, id: u32, now: Meta, out: &mut Vec<Message>) {
        let Some(mut s) = self.streams.remove(&id) else { return };
        send_request(id, &mut s, now, out);
        let (code, status, exception) = if s.grpc && s.grpc_status.is_some() {
            let g = s.grpc_status.unwrap_or(0);
            let exception = (g != 0).then(|| {
                s.grpc_message
                    .clone()
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| grpc_code_name(g).to_string())
            });
            (Some(g), grpc_status_class(g), exception)
        } else {
            let exception = s.status.filter(|c| *c >= 400).and_then(canonical_reason).map(str::to_string);
            (s.status, status_of(s.status), exception)
        };
        out.push(Message::Response {
            key: id.into(),
            first: s.resp_first.unwrap_or(now),
            last: now,
            resp: Response {
                code,
                status,
                exception,
                length: s.resp_len,
                x_request_id: s.resp_x_request_id,
                attributes: crate::tracker::header_attributes(&[], &s.resp_headers),
            },
        });
    }

    fn on_reset(&mut self, di: usize, id: u32, code: u32, now: Meta, out: &mut Vec<Message>) {
        let Some(mut s) = self.streams.remove(&id) else { return };
        send_request(id, &mut s, now, out);
        let by_client = di == index(self.req_dir);
        let exception = format!(
            "RST_STREAM {} from the {}",
            h2_error_name(code),
            if by_client { "client" } else { "server" }
        );
        let (code, status) = match (s.grpc, s.grpc_status) {
            (true, Some(g)) => (Some(g), grpc_status_class(g)),
            _ if by_client => (s.status, "client_error"),
            _ => (s.status, "server_error"),
        };
        out.push(Message::Response {
            key: id.into(),
            first: s.resp_first.unwrap_or(now),
            last: now,
            resp: Response {
                code,
                status,
                exception: Some(exception),
                length: s.resp_len,
                x_request_id: s.resp_x_request_id,
                attributes: None,
            },
        });
    }
}

/// Reports the stream's request once, with the length seen so far.
fn send_request(id: u32, s: &mut Stream, now: Meta, out: &mut Vec<Message>) {
    if s.req_sent {
        return;
    }
    let (Some(req), Some(first)) = (s.req.as_ref(), s.req_first) else { return };
    s.req_sent = true;
    let mut req = req.clone();
    req.length = s.req_len;
    out.push(Message::Request { key: id.into(), first, last: now, req });
}

impl Session for Http2 {
    fn protocol(&self) -> &'static str {
        "HTTP2"
    }

    fn feed(&mut self, dir: Direction, data: &[u8], total: u64, meta: Meta, out: &mut Vec<Message>) {
        if self.dead {
            return;
        }
        let di = index(dir);
        let mut pos = 0;
        while pos < data.len() && !self.dead {
            let half = &mut self.halves[di];
            if half.preface_left > 0 {
                let done = PREFACE.len() - half.preface_left;
                let n = half.preface_left.min(data.len() - pos);
                if data[pos..pos + n] != PREFACE[done..done + n] {
                    return self.die("bad_preface", meta, out);
                }
                half.preface_left -= n;
                pos += n;
                continue;
            }
            match half.phase {
                Phase::Header => {
                    if half.hdr_n == 0 {
                        half.hdr_at = Some(At { meta, offset: pos });
                    }
                    let n = (FRAME_HEADER - half.hdr_n).min(data.len() - pos);
                    half.hdr[half.hdr_n..half.hdr_n + n].copy_from_slice(&data[pos..pos + n]);
                    half.hdr_n += n;
                    pos += n;
                    if half.hdr_n == FRAME_HEADER {
                        half.hdr_n = 0;
                        let at = half.hdr_at.take().unwrap_or(At { meta, offset: pos });
                        self.on_frame_header(di, at, meta, out);
                    }
                }
                Phase::Payload { len, .. } => {
                    let n = (len - half.buf.len()).min(data.len() - pos);
                    half.buf.extend_from_slice(&data[pos..pos + n]);
                    pos += n;
                    if half.buf.len() == len {
                        self.end_payload(di, meta, out);
                    }
                }
                Phase::Skip { left } => {
                    let n = left.min((data.len() - pos) as u64);
                    pos += n as usize;
                    half.phase = if n == left { Phase::Header } else { Phase::Skip { left: left - n } };
                }
            }
        }
        let gap = total.saturating_sub(data.len() as u64);
        if gap == 0 || self.dead {
            return;
        }
        // Bytes the copy cap left out: only a payload we skip anyway may hide them.
        let half = &mut self.halves[di];
        match half.phase {
            Phase::Skip { left } if gap <= left && half.preface_left == 0 => {
                half.phase = if gap == left { Phase::Header } else { Phase::Skip { left: left - gap } };
            }
            Phase::Payload { ty: HEADERS | CONTINUATION | PUSH_PROMISE, .. } => {
                self.die("header_block_uncaptured", meta, out)
            }
            _ => self.die("frame_uncaptured", meta, out),
        }
    }
}

/// `response_status` of a grpc-status: the codes that the gRPC spec maps to
/// 4xx HTTP statuses (the caller's fault) are client errors, the rest server
/// errors.
pub fn grpc_status_class(code: u16) -> &'static str {
    match code {
        0 => "ok",
        1 | 3 | 5 | 6 | 7 | 8 | 9 | 10 | 11 | 16 => "client_error",
        2 | 4 | 12 | 13 | 14 | 15 => "server_error",
        _ => "unknown",
    }
}

pub fn grpc_code_name(code: u16) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "grpc-status unknown",
    }
}

fn h2_error_name(code: u32) -> String {
    let name = match code {
        0 => "NO_ERROR",
        1 => "PROTOCOL_ERROR",
        2 => "INTERNAL_ERROR",
        3 => "FLOW_CONTROL_ERROR",
        4 => "SETTINGS_TIMEOUT",
        5 => "STREAM_CLOSED",
        6 => "FRAME_SIZE_ERROR",
        7 => "REFUSED_STREAM",
        8 => "CANCEL",
        9 => "COMPRESSION_ERROR",
        10 => "CONNECT_ERROR",
        11 => "ENHANCE_YOUR_CALM",
        12 => "INADEQUATE_SECURITY",
        13 => "HTTP_1_1_REQUIRED",
        _ => return format!("error {code}"),
    };
    name.to_string()
}

/// grpc-message is percent-encoded (gRPC over HTTP/2 spec).
fn percent_decode(v: &[u8]) -> String {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if v[i] == b'%' && i + 2 < v.len() {
            if let (Some(h), Some(l)) = (hex(v[i + 1]), hex(v[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(v[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use loona_hpack::Encoder;

    fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, ty, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn meta(n: u64) -> Meta {
        Meta { enter_ns: n * 10, exit_ns: n * 10 + 5, tid: 1, seq: 1000, trace_id: n }
    }

    fn hdrs(enc: &mut Encoder, list: &[(&str, &str)]) -> Vec<u8> {
        enc.encode(list.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
    }

    /// A traced server: reads the client's bytes (Ingress), writes its own (Egress).
    struct Conn {
        s: Http2,
        out: Vec<Message>,
        n: u64,
    }

    impl Conn {
        fn server() -> Self {
            Self { s: Http2::new(Direction::Ingress), out: Vec::new(), n: 0 }
        }
        fn feed(&mut self, dir: Direction, data: &[u8]) {
            self.n += 1;
            self.s.feed(dir, data, data.len() as u64, meta(self.n), &mut self.out);
        }
        fn feed_capped(&mut self, dir: Direction, data: &[u8], cap: usize) {
            self.n += 1;
            let n = cap.min(data.len());
            self.s.feed(dir, &data[..n], data.len() as u64, meta(self.n), &mut self.out);
        }
        fn requests(&self) -> Vec<(u64, Request)> {
            self.out
                .iter()
                .filter_map(|m| match m {
                    Message::Request { key, req, .. } => Some((*key, req.clone())),
                    _ => None,
                })
                .collect()
        }
        fn responses(&self) -> Vec<(u64, Response)> {
            self.out
                .iter()
                .filter_map(|m| match m {
                    Message::Response { key, resp, .. } => Some((*key, resp.clone())),
                    _ => None,
                })
                .collect()
        }
        fn errors(&self) -> Vec<&'static str> {
            self.out
                .iter()
                .filter_map(|m| match m {
                    Message::Error(e) => Some(*e),
                    _ => None,
                })
                .collect()
        }
    }

    const IN: Direction = Direction::Ingress;
    const OUT: Direction = Direction::Egress;

    fn client_start() -> Vec<u8> {
        let mut v = PREFACE.to_vec();
        v.extend(frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]));
        v
    }

    fn get(enc: &mut Encoder, stream: u32, path: &str) -> Vec<u8> {
        let block = hdrs(
            enc,
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", path),
                (":authority", "gw.lab"),
                ("x-request-id", "rid-7"),
                ("authorization", "Bearer SECRET-TOKEN"),
                ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            ],
        );
        frame(HEADERS, END_STREAM | END_HEADERS, stream, &block)
    }

    fn ok(enc: &mut Encoder, stream: u32, code: &str, body: &[u8]) -> Vec<u8> {
        let block =
            hdrs(enc, &[(":status", code), ("content-type", "text/plain"), ("set-cookie", "s=SECRET")]);
        let mut v = frame(HEADERS, END_HEADERS, stream, &block);
        v.extend(frame(DATA, END_STREAM, stream, body));
        v
    }

    #[test]
    fn detects_the_preface_only() {
        assert!(detect(IN, PREFACE).is_some());
        assert!(detect(OUT, &PREFACE[..14]).is_some());
        assert!(detect(IN, b"PRI * HTTP/1.1\r\n").is_none());
        assert!(detect(IN, b"GET / HTTP/1.1\r\n\r\n").is_none());
        assert!(detect(IN, b"PRI").is_none(), "too short to tell");
        assert!(detect(IN, &[0, 0, 0, 4, 1, 0, 0, 0, 0]).is_none(), "a SETTINGS ACK is not a preface");
        assert!(detect(IN, &[0, 0, 7, 4, 0, 0, 0, 0, 0]).is_none(), "settings are 6 bytes each");
    }

    #[test]
    fn server_preface_seen_first_makes_the_other_direction_the_client() {
        // A traced client (nginx to a gRPC upstream) that reads the server's
        // SETTINGS before it writes its own preface.
        let (mut ce, mut se) = (Encoder::new(), Encoder::new());
        let server_settings = frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]);
        let mut s = detect(IN, &server_settings).expect("server preface");
        let mut out = Vec::new();
        s.feed(IN, &server_settings, server_settings.len() as u64, meta(1), &mut out);
        let mut client = client_start();
        client.extend(get(&mut ce, 1, "/x"));
        s.feed(OUT, &client, client.len() as u64, meta(2), &mut out);
        let resp = ok(&mut se, 1, "200", b"y");
        s.feed(IN, &resp, resp.len() as u64, meta(3), &mut out);
        assert!(matches!(&out[0], Message::Request { key: 1, req, .. } if req.request_resource == "/x"));
        assert!(matches!(&out[1], Message::Response { key: 1, resp, .. } if resp.code == Some(200)));
        assert_eq!(out.len(), 2);
        // A traced server that writes its SETTINGS first: the client's preface follows.
        let mut s = detect(OUT, &server_settings).expect("server preface");
        let mut out = Vec::new();
        s.feed(OUT, &server_settings, server_settings.len() as u64, meta(1), &mut out);
        s.feed(IN, b"GET / HTTP/1.1\r\n\r\n", 18, meta(2), &mut out);
        assert!(matches!(out.as_slice(), [Message::Error("bad_preface")]));
    }

    #[test]
    fn get_request_and_response() {
        let (mut ce, mut se) = (Encoder::new(), Encoder::new());
        let mut c = Conn::server();
        let mut client = client_start();
        let get1 = get(&mut ce, 1, "/items?id=3");
        client.extend(&get1);
        c.feed(IN, &client);
        c.feed(OUT, &frame(SETTINGS, 0, 0, &[]));
        let resp = ok(&mut se, 1, "200", b"hello");
        c.feed(OUT, &resp);
        let reqs = c.requests();
        assert_eq!(reqs.len(), 1);
        let (key, r) = &reqs[0];
        assert_eq!(*key, 1);
        assert_eq!((r.l7_protocol, r.version), ("HTTP2", "2"));
        assert_eq!(r.request_type, "GET");
        assert_eq!(r.request_domain.as_deref(), Some("gw.lab"));
        assert_eq!(r.request_resource, "/items?id=3");
        assert_eq!(r.endpoint, "/items");
        assert_eq!(r.x_request_id.as_deref(), Some("rid-7"));
        assert_eq!(r.traceparent.as_deref(), Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
        assert_eq!(r.length, get1.len() as u64);
        let resps = c.responses();
        assert_eq!(resps.len(), 1);
        let (key, p) = &resps[0];
        assert_eq!((*key, p.code, p.status, p.exception.as_deref()), (1, Some(200), "ok", None));
        assert_eq!(p.length, resp.len() as u64);
        assert!(c.errors().is_empty());
        // The request's first byte: after the preface and the 15-byte SETTINGS frame.
        let Message::Request { first, .. } = &c.out[0] else { panic!() };
        assert_eq!(first.seq, 1000 + PREFACE.len() as u32 + 15);
    }

    #[test]
    fn rfc7541_huffman_and_dynamic_table_across_requests() {
        // RFC 7541 C.4.1 and C.4.2: two requests, Huffman-coded, the second
        // naming :authority by its dynamic-table index (0xbe = 62).
        let b1 = [
            0x82, 0x86, 0x84, 0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4,
            0xff,
        ];
        let b2 = [0x82, 0x86, 0x84, 0xbe, 0x58, 0x86, 0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf];
        let mut c = Conn::server();
        let mut client = client_start();
        client.extend(frame(HEADERS, END_STREAM | END_HEADERS, 1, &b1));
        client.extend(frame(HEADERS, END_STREAM | END_HEADERS, 3, &b2));
        c.feed(IN, &client);
        let reqs = c.requests();
        assert_eq!(reqs.len(), 2);
        for (_, r) in &reqs {
            assert_eq!(r.request_domain.as_deref(), Some("www.example.com"));
            assert_eq!((r.request_type.as_str(), r.request_resource.as_str()), ("GET", "/"));
        }
    }

    #[test]
    fn streams_pair_by_id_out_of_order_and_split_at_every_byte() {
        let (mut ce, mut se) = (Encoder::new(), Encoder::new());
        let mut client = client_start();
        for (id, p) in [(1, "/a"), (3, "/b"), (5, "/c")] {
            client.extend(get(&mut ce, id, p));
        }
        let mut server = frame(SETTINGS, 0, 0, &[]);
        for (id, code) in [(5, "404"), (1, "200"), (3, "503")] {
            server.extend(ok(&mut se, id, code, b"x"));
        }
        let expect = |c: &Conn| {
            let r: Vec<(u64, String)> =
                c.requests().into_iter().map(|(k, r)| (k, r.request_resource)).collect();
            assert_eq!(r, vec![(1, "/a".into()), (3, "/b".into()), (5, "/c".into())]);
            let p: Vec<(u64, Option<u16>, &str, Option<String>)> =
                c.responses().into_iter().map(|(k, p)| (k, p.code, p.status, p.exception)).collect();
            assert_eq!(
                p,
                vec![
                    (5, Some(404), "client_error", Some("Not Found".into())),
                    (1, Some(200), "ok", None),
                    (3, Some(503), "server_error", Some("Service Unavailable".into())),
                ]
            );
            assert!(c.errors().is_empty(), "{:?}", c.errors());
        };
        let mut whole = Conn::server();
        whole.feed(IN, &client);
        whole.feed(OUT, &server);
        expect(&whole);
        let mut split = Conn::server();
        for b in &client {
            split.feed(IN, std::slice::from_ref(b));
        }
        for b in &server {
            split.feed(OUT, std::slice::from_ref(b));
        }
        expect(&split);
        // Every split point of the client's bytes into two reads.
        for cut in 1..client.len() {
            let mut c = Conn::server();
            c.feed(IN, &client[..cut]);
            c.feed(IN, &client[cut..]);
            c.feed(OUT, &server);
            expect(&c);
        }
    }

    #[test]
    fn continuation_padding_and_priority() {
        let mut ce = Encoder::new();
        let block = hdrs(&mut ce, &[(":method", "POST"), (":path", "/long"), (":authority", "h")]);
        let (a, b) = block.split_at(4);
        let mut p = vec![3u8]; // pad length
        p.extend([0x80, 0, 0, 1, 16]); // priority: exclusive, depends on 1, weight
        p.extend(a);
        p.extend([0, 0, 0]);
        let mut client = client_start();
        client.extend(frame(HEADERS, PADDED | PRIORITY, 1, &p));
        client.extend(frame(CONTINUATION, END_HEADERS, 1, b));
        client.extend(frame(DATA, END_STREAM, 1, b"body"));
        let mut c = Conn::server();
        c.feed(IN, &client);
        let reqs = c.requests();
        assert_eq!(reqs.len(), 1);
        assert_eq!((reqs[0].1.request_type.as_str(), reqs[0].1.request_resource.as_str()), ("POST", "/long"));
        assert_eq!(reqs[0].1.length, (9 + p.len() + 9 + b.len() + 9 + 4) as u64);
    }

    #[test]
    fn other_frame_between_headers_and_continuation_stops_parsing() {
        let mut ce = Encoder::new();
        let block = hdrs(&mut ce, &[(":method", "GET"), (":path", "/")]);
        let mut client = client_start();
        client.extend(frame(HEADERS, END_STREAM, 1, &block));
        client.extend(frame(DATA, 0, 1, b"x"));
        let mut c = Conn::server();
        c.feed(IN, &client);
        assert_eq!(c.errors(), vec!["continuation_expected"]);
        assert!(c.requests().is_empty());
    }

    fn grpc_request(enc: &mut Encoder, stream: u32, method: &str) -> Vec<u8> {
        let block = hdrs(
            enc,
            &[
                (":method", "POST"),
                (":scheme", "http"),
                (":path", method),
                (":authority", "svcb:8080"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ],
        );
        let mut v = frame(HEADERS, END_HEADERS, stream, &block);
        v.extend(frame(DATA, END_STREAM, stream, &[0, 0, 0, 0, 2, 8, 1]));
        v
    }

    #[test]
    fn grpc_status_in_trailers_and_trailers_only() {
        let (mut ce, mut se) = (Encoder::new(), Encoder::new());
        let mut client = client_start();
        client.extend(grpc_request(&mut ce, 1, "/lab.Echo/Say"));
        client.extend(grpc_request(&mut ce, 3, "/lab.Echo/Fail"));
        client.extend(grpc_request(&mut ce, 5, "/lab.Echo/Down"));
        let mut server = Vec::new();
        // 1: headers, a message, trailers with grpc-status 0.
        let h = hdrs(&mut se, &[(":status", "200"), ("content-type", "application/grpc")]);
        server.extend(frame(HEADERS, END_HEADERS, 1, &h));
        server.extend(frame(DATA, 0, 1, &[0, 0, 0, 0, 1, 7]));
        let t = hdrs(&mut se, &[("grpc-status", "0"), ("grpc-message", "")]);
        server.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, &t));
        // 3: NOT_FOUND with a percent-encoded message, in trailers.
        server.extend(frame(HEADERS, END_HEADERS, 3, &hdrs(&mut se, &[(":status", "200")])));
        let t = hdrs(&mut se, &[("grpc-status", "5"), ("grpc-message", "no such item %E2%9C%93")]);
        server.extend(frame(HEADERS, END_HEADERS | END_STREAM, 3, &t));
        // 5: trailers-only UNAVAILABLE without a message.
        let t = hdrs(&mut se, &[(":status", "200"), ("grpc-status", "14")]);
        server.extend(frame(HEADERS, END_HEADERS | END_STREAM, 5, &t));
        let mut c = Conn::server();
        c.feed(IN, &client);
        c.feed(OUT, &server);
        let reqs = c.requests();
        assert_eq!(reqs.len(), 3);
        assert!(reqs.iter().all(|(_, r)| r.l7_protocol == "gRPC" && r.request_type == "POST"));
        assert_eq!(reqs[0].1.endpoint, "/lab.Echo/Say");
        assert_eq!(reqs[0].1.request_domain.as_deref(), Some("svcb:8080"));
        let p: Vec<(u64, Option<u16>, &str, Option<String>)> =
            c.responses().into_iter().map(|(k, p)| (k, p.code, p.status, p.exception)).collect();
        assert_eq!(
            p,
            vec![
                (1, Some(0), "ok", None),
                (3, Some(5), "client_error", Some("no such item ✓".into())),
                (5, Some(14), "server_error", Some("UNAVAILABLE".into())),
            ]
        );
    }

    #[test]
    fn rst_stream_ends_the_exchange_with_an_exception() {
        let mut ce = Encoder::new();
        let mut client = client_start();
        let block = hdrs(&mut ce, &[(":method", "GET"), (":path", "/slow")]);
        client.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, &block));
        client.extend(frame(RST_STREAM, 0, 1, &8u32.to_be_bytes()));
        let mut c = Conn::server();
        c.feed(IN, &client);
        let p = c.responses();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].1.status, "client_error");
        assert_eq!(p[0].1.exception.as_deref(), Some("RST_STREAM CANCEL from the client"));
        // A late response on the reset stream is not paired again.
        let mut se = Encoder::new();
        c.feed(OUT, &ok(&mut se, 1, "200", b""));
        assert_eq!(c.responses().len(), 2, "reported as an orphan for the tracker to count");
        assert_eq!(c.requests().len(), 1);
    }

    #[test]
    fn data_beyond_the_copy_cap_is_skipped() {
        let (mut ce, mut se) = (Encoder::new(), Encoder::new());
        let mut c = Conn::server();
        let mut client = client_start();
        client.extend(get(&mut ce, 1, "/big"));
        c.feed(IN, &client);
        let h = hdrs(&mut se, &[(":status", "200")]);
        let mut server = frame(HEADERS, END_HEADERS, 1, &h);
        server.extend(frame(DATA, 0, 1, &vec![b'z'; 20_000]));
        c.feed_capped(OUT, &server, 4096);
        c.feed_capped(OUT, &frame(DATA, END_STREAM, 1, &vec![b'y'; 9000]), 4096);
        assert!(c.errors().is_empty());
        let p = c.responses();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].1.length, (server.len() + 9 + 9000) as u64);
        // The connection still parses: the next exchange pairs.
        c.feed(IN, &get(&mut ce, 3, "/next"));
        c.feed(OUT, &ok(&mut se, 3, "200", b"ok"));
        assert_eq!(c.responses().len(), 2);
    }

    #[test]
    fn header_block_beyond_the_copy_cap_stops_parsing_and_reports_open_streams() {
        let (mut ce, mut se) = (Encoder::new(), Encoder::new());
        let mut c = Conn::server();
        let mut client = client_start();
        client.extend(get(&mut ce, 1, "/a"));
        client.extend(get(&mut ce, 3, "/b"));
        c.feed(IN, &client);
        let big = "v".repeat(6000);
        let block = hdrs(&mut se, &[(":status", "200"), ("x-padding", &big)]);
        c.feed_capped(OUT, &frame(HEADERS, END_HEADERS | END_STREAM, 1, &block), 4096);
        assert_eq!(c.errors(), vec!["header_block_uncaptured"]);
        let p = c.responses();
        assert_eq!(p.len(), 2, "both open streams are reported");
        assert!(p.iter().all(|(_, r)| r.status == "unknown"
            && r.exception.as_deref().unwrap().starts_with("response not captured")));
        // Nothing more is parsed on this connection.
        c.feed(IN, &get(&mut ce, 5, "/c"));
        assert_eq!(c.requests().len(), 2);
        assert_eq!(c.errors().len(), 1);
    }

    #[test]
    fn truncated_stream_reports_nothing_half_parsed() {
        let mut ce = Encoder::new();
        let mut client = client_start();
        let g = get(&mut ce, 1, "/a");
        client.extend(&g[..g.len() - 3]);
        let mut c = Conn::server();
        c.feed(IN, &client);
        assert!(c.out.is_empty());
    }

    #[test]
    fn garbage_stops_parsing_with_a_reason() {
        let mut c = Conn::server();
        c.feed(IN, b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n");
        assert_eq!(c.errors(), vec!["bad_preface"]);
        // A HEADERS frame whose block is not HPACK.
        let mut c = Conn::server();
        let mut client = client_start();
        client.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            1,
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
        ));
        c.feed(IN, &client);
        assert_eq!(c.errors(), vec!["hpack_error"]);
        // A header block announced larger than the limit.
        let mut c = Conn::server();
        let mut client = client_start();
        client.extend(&frame(HEADERS, 0, 1, &[])[..5]);
        client[PREFACE.len() + 15..PREFACE.len() + 18].copy_from_slice(&[0x02, 0, 0]);
        client.extend([0, 0, 0, 1]);
        c.feed(IN, &client);
        assert_eq!(c.errors(), vec!["header_block_too_large"]);
    }

    #[test]
    fn settings_table_size_grows_the_decoders_table() {
        // The traced server allows the client a larger table; the client's
        // encoder uses it without a size update (as nghttp2 does when the
        // setting only raises its limit). Without the SETTINGS frame the
        // decoder would evict the 5 KB entry the second block refers to.
        let run = |settings: bool| {
            let mut ce = Encoder::new();
            ce.set_max_table_size(8192);
            let mut c = Conn::server();
            c.feed(IN, &client_start());
            if settings {
                c.feed(OUT, &frame(SETTINGS, 0, 0, &[0, 1, 0, 0, 0x20, 0]));
            }
            let big = "w".repeat(5000);
            let list = [(":method", "GET"), (":path", "/t"), ("x-big", big.as_str())];
            let b1 = hdrs(&mut ce, &list);
            let b2 = hdrs(&mut ce, &list);
            assert!(b2.len() < 10, "the second block refers to the 5 KB entry by index");
            let mut client = frame(HEADERS, END_HEADERS | END_STREAM, 1, &b1);
            client.extend(frame(HEADERS, END_HEADERS | END_STREAM, 3, &b2));
            c.feed(IN, &client);
            (c.requests().len(), c.errors())
        };
        assert_eq!(run(true), (2, vec![]));
        assert_eq!(run(false), (1, vec!["hpack_error"]));
    }

    #[test]
    fn dynamic_table_size_update_in_a_block() {
        let mut ce = Encoder::new();
        let mut c = Conn::server();
        c.feed(IN, &client_start());
        let mut b1 = vec![0x3f, 0xe1, 0x3f]; // dynamic table size update to 8192
        b1.extend(hdrs(&mut ce, &[(":method", "GET"), (":path", "/u")]));
        let mut too_big = vec![0x3f, 0xe1, 0xff, 0x7f]; // far beyond MAX_TABLE
        too_big.extend(hdrs(&mut ce, &[(":method", "GET")]));
        let mut client = frame(HEADERS, END_HEADERS | END_STREAM, 1, &b1);
        client.extend(frame(HEADERS, END_HEADERS | END_STREAM, 3, &too_big));
        c.feed(IN, &client);
        assert_eq!(c.requests().len(), 1);
        assert_eq!(c.errors(), vec!["hpack_error"]);
    }

    #[test]
    fn too_many_open_streams_are_counted() {
        let mut ce = Encoder::new();
        let mut c = Conn::server();
        let mut client = client_start();
        for i in 0..(MAX_STREAMS as u32 + 2) {
            let block = hdrs(&mut ce, &[(":method", "GET"), (":path", "/")]);
            client.extend(frame(HEADERS, END_HEADERS | END_STREAM, 2 * i + 1, &block));
        }
        c.feed(IN, &client);
        assert_eq!(c.requests().len(), MAX_STREAMS);
        assert_eq!(c.errors(), vec!["too_many_streams"; 2]);
    }

    #[test]
    fn pseudo_random_input_never_panics() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for round in 0..300 {
            let mut c = Conn::server();
            let mut data = client_start();
            for _ in 0..(round % 64) * 8 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                data.push(x as u8);
            }
            let cut = (x as usize) % data.len();
            c.feed(IN, &data[..cut]);
            c.feed(OUT, &data[cut..]);
            c.feed_capped(IN, &data, (x >> 8) as usize % 64);
        }
    }

    #[test]
    fn sensitive_headers_are_redacted_in_http2_too() {
        let policy: &'static HeaderPolicy = Box::leak(Box::new(HeaderPolicy::new(
            &["x-api-key".into()],
            &["authorization".into(), "set-cookie".into(), "x-api-key".into(), "user-agent".into()],
        )));
        let (mut ce, mut se) = (Encoder::new(), Encoder::new());
        let mut s = Http2::with_policy(IN, policy);
        let mut out = Vec::new();
        let mut client = client_start();
        let block = hdrs(
            &mut ce,
            &[
                (":method", "GET"),
                (":path", "/"),
                ("authorization", "Bearer SECRET-1"),
                ("cookie", "sid=SECRET-2"),
                ("x-api-key", "SECRET-3"),
                ("user-agent", "h2-client"),
            ],
        );
        client.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, &block));
        s.feed(IN, &client, client.len() as u64, meta(1), &mut out);
        let resp = ok(&mut se, 1, "200", b"x"); // carries set-cookie: s=SECRET
        s.feed(OUT, &resp, resp.len() as u64, meta(2), &mut out);
        let dump = format!("{out:?}");
        assert!(!dump.contains("SECRET"), "{dump}");
        let Message::Request { req, .. } = &out[0] else { panic!() };
        assert_eq!(
            req.attributes,
            Some(serde_json::json!({"headers": {
                "authorization": "[REDACTED]", "x-api-key": "[REDACTED]", "user-agent": "h2-client"
            }}))
        );
        let Message::Response { resp, .. } = &out[1] else { panic!() };
        assert_eq!(
            resp.attributes,
            Some(serde_json::json!({"response_headers": {"set-cookie": "[REDACTED]"}}))
        );
    }

    #[test]
    fn streaming_request_is_reported_when_its_response_starts() {
        // A bidirectional gRPC stream: the server answers before the client ends
        // its side. The request is reported with the bytes seen until then; the
        // client's later messages are not counted, and the exchange still pairs.
        let (mut ce, mut se) = (Encoder::new(), Encoder::new());
        let mut c = Conn::server();
        let mut client = client_start();
        let block = hdrs(
            &mut ce,
            &[(":method", "POST"), (":path", "/lab.Chat/Talk"), ("content-type", "application/grpc")],
        );
        let headers = frame(HEADERS, END_HEADERS, 1, &block);
        client.extend(&headers);
        client.extend(frame(DATA, 0, 1, &[0, 0, 0, 0, 1, 9]));
        c.feed(IN, &client);
        assert!(c.requests().is_empty(), "the request has not ended yet");
        c.feed(OUT, &frame(HEADERS, END_HEADERS, 1, &hdrs(&mut se, &[(":status", "200")])));
        let reqs = c.requests();
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].1.length, (headers.len() + 9 + 6) as u64);
        c.feed(IN, &frame(DATA, END_STREAM, 1, &[0, 0, 0, 0, 1, 8]));
        c.feed(OUT, &frame(DATA, 0, 1, &[0, 0, 0, 0, 1, 7]));
        c.feed(OUT, &frame(HEADERS, END_HEADERS | END_STREAM, 1, &hdrs(&mut se, &[("grpc-status", "0")])));
        assert_eq!(c.requests().len(), 1, "reported once");
        let p = c.responses();
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].1.code, p[0].1.status), (Some(0), "ok"));
    }
}
