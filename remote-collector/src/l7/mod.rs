//! L7 protocols other than HTTP/1.x, behind one interface. The tracker keeps
//! one Session per connection (chosen by `detect` from the first payload),
//! pairs the Requests and Responses it reports by key, and builds spans.

pub mod dns;
pub mod http2;
pub mod postgres;
pub mod redis;

use crate::event::Direction;
use crate::tracker::Meta;

/// Which end of the connection the traced process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

/// What the tracker needs from a request to build a span.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Request {
    /// Record-model `l7_protocol`: "HTTP2", "gRPC", "DNS", "Redis", "PostgreSQL".
    pub l7_protocol: &'static str,
    pub version: &'static str,
    pub request_type: String,
    pub request_domain: Option<String>,
    pub request_resource: String,
    pub endpoint: String,
    pub length: u64,
    pub x_request_id: Option<String>,
    pub traceparent: Option<String>,
    pub attributes: Option<serde_json::Value>,
}

/// What the tracker needs from a response.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Response {
    pub code: Option<u16>,
    /// Record-model `response_status`: ok, client_error, server_error, timeout, unknown.
    pub status: &'static str,
    pub exception: Option<String>,
    pub length: u64,
    pub x_request_id: Option<String>,
    pub attributes: Option<serde_json::Value>,
}

/// One parsed message. `key` pairs a response with its request (HTTP/2 stream
/// id, DNS id); protocols that answer in order use key 0 and pair first in,
/// first out. `first` is the syscall that carried the message's first bytes
/// (span start = request.first.enter_ns, span end = response.first.exit_ns,
/// DeepFlow's rule), `last` the one that completed it.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Request {
        key: u64,
        first: Meta,
        last: Meta,
        req: Request,
    },
    Response {
        key: u64,
        first: Meta,
        last: Meta,
        resp: Response,
    },
    /// Bytes the session could not parse, by reason (counted in stats); the
    /// session resynchronises if the protocol allows it.
    Error(&'static str),
}

pub trait Session: Send {
    /// Record-model protocol name, for stats.
    fn protocol(&self) -> &'static str;
    /// Bytes the traced process read (Ingress) or wrote (Egress) in one
    /// syscall or datagram; `total` is the byte count of the syscall, which
    /// may exceed `data.len()` when the copy cap truncated it.
    fn feed(&mut self, dir: Direction, data: &[u8], total: u64, meta: Meta, out: &mut Vec<Message>);
}

/// Picks a Session from the first payload seen on a connection (and its
/// ports, and whether it is UDP); None when no protocol here recognises it,
/// in which case the tracker falls back to HTTP/1.x.
pub fn detect(
    dir: Direction,
    data: &[u8],
    local_port: u16,
    remote_port: u16,
    udp: bool,
) -> Option<Box<dyn Session>> {
    let on_port = |p: u16| local_port == p || remote_port == p;
    // The end that opened the exchange: the writer of a request, else the end
    // away from the well-known port.
    let opener = if dir == Direction::Egress { Side::Client } else { Side::Server };
    let by_port = |p: u16| {
        if remote_port == p {
            Side::Client
        } else if local_port == p {
            Side::Server
        } else {
            opener
        }
    };
    if udp {
        if on_port(53) && dns::looks_like_dns(data) {
            return Some(Box::new(dns::DnsSession::new()));
        }
        return None;
    }
    if let Some(s) = http2::detect(dir, data) {
        return Some(s);
    }
    if postgres::looks_like_startup(data) {
        return Some(Box::new(postgres::PostgresSession::new(opener, true)));
    }
    if redis::looks_like_command(data) {
        return Some(Box::new(redis::RedisSession::new(opener)));
    }
    if on_port(5432) {
        return Some(Box::new(postgres::PostgresSession::new(by_port(5432), false)));
    }
    if on_port(6379) {
        return Some(Box::new(redis::RedisSession::new(by_port(6379))));
    }
    None
}
