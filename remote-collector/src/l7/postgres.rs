//! PostgreSQL frontend/backend protocol 3.x
//! (https://www.postgresql.org/docs/current/protocol-flow.html).
//!
//! One span per round trip that ends in ReadyForQuery: a simple Query, or an
//! extended-protocol batch (Parse/Bind/Describe/Execute/Close … Sync). The
//! StartupMessage gives the database name; SSLRequest/GSSENCRequest answered
//! `N` continue in plaintext, answered `S`/`G` the connection is encrypted and
//! given up. Authentication, ParameterStatus, BackendKeyData and the first
//! ReadyForQuery answer no request and are skipped. Round trips answer in
//! order, so pairing is first in, first out (key 0).
//!
//! Every message carries its length, so the parser skips bodies it does not
//! need without buffering them (DataRow, CopyData…), and bytes the copy cap
//! left out inside a body are skipped the same way.

use std::collections::{HashMap, VecDeque};

use serde_json::json;

use crate::event::Direction;
use crate::l7::{Message, Request, Response, Session, Side};
use crate::tracker::Meta;

/// Bytes of statement text kept in `request_resource`.
pub const MAX_STATEMENT: usize = 256;
/// Bytes of an ErrorResponse message kept in `response_exception`.
const MAX_EXCEPTION: usize = 256;
/// PostgreSQL refuses messages over 1 GB; a StartupMessage is at most 10000 bytes.
const MAX_MESSAGE: u64 = 1 << 30;
const MAX_STARTUP: u64 = 10_000;
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;
/// Consecutive unparseable reads after which the connection is given up.
const MAX_ERRORS: u32 = 8;
/// Named prepared statements remembered per connection (for Bind without Parse).
const MAX_STATEMENTS: usize = 256;

const FRONTEND_TYPES: &[u8] = b"BCcdDEfFHPpQSX";
const BACKEND_TYPES: &[u8] = b"123AcCdDEGHIKnNRsStTvVWZ";

/// One message, with the first bytes of its body.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// Type byte; 0 for the untyped startup-phase messages.
    pub ty: u8,
    /// The body's first bytes (as many as this type needs).
    pub body: Vec<u8>,
    /// Bytes on the wire, header included.
    pub length: u64,
    pub first: Meta,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    Malformed,
    /// The copy cap cut a read where a message header was.
    Uncaptured,
}

/// Incremental reader of one direction's messages.
#[derive(Debug)]
pub struct PgStream {
    frontend: bool,
    /// Next message is an untyped startup-phase message (frontend).
    untyped: bool,
    /// SSLRequest/GSSENCRequest answers still due: one bare byte each (backend).
    answers_due: u32,
    hdr: Vec<u8>,
    body_left: u64,
    keep_left: usize,
    cur: Option<Frame>,
    /// Bytes of the last read that were neither copied nor skipped (after an
    /// Uncaptured error).
    pub lost: u64,
}

impl PgStream {
    pub fn new(frontend: bool, untyped: bool) -> Self {
        Self {
            frontend,
            untyped,
            answers_due: 0,
            hdr: Vec::new(),
            body_left: 0,
            keep_left: 0,
            cur: None,
            lost: 0,
        }
    }

    fn reset(&mut self) {
        self.hdr.clear();
        self.body_left = 0;
        self.cur = None;
    }

    /// Feeds one read (`gap` bytes of it were not copied). On error the rest
    /// of the read is dropped and the next read starts with a message header.
    pub fn feed(
        &mut self,
        data: &[u8],
        gap: u64,
        meta: Meta,
        done: &mut Vec<(Frame, Meta)>,
    ) -> Result<(), Error> {
        let r = self.feed_bytes(data, meta, done).and_then(|()| self.skip_gap(gap, meta, done));
        if r.is_err() {
            self.reset();
        }
        r
    }

    fn skip_gap(&mut self, gap: u64, meta: Meta, done: &mut Vec<(Frame, Meta)>) -> Result<(), Error> {
        let n = gap.min(self.body_left);
        if self.cur.is_some() && self.hdr.is_empty() && n > 0 {
            self.body_left -= n;
            self.keep_left = 0;
            if let Some(f) = self.cur.as_mut() {
                f.length += n;
            }
            if self.body_left == 0 {
                self.finish(meta, done);
            }
        }
        if gap > n {
            self.lost = gap - n;
            return Err(Error::Uncaptured);
        }
        Ok(())
    }

    fn finish(&mut self, meta: Meta, done: &mut Vec<(Frame, Meta)>) {
        if let Some(f) = self.cur.take() {
            if f.ty == 0 {
                // SSLRequest/GSSENCRequest: the client sends its StartupMessage next
                // (after a refusal), still untyped.
                let code = be32(&f.body);
                self.untyped = matches!(code, Some(SSL_REQUEST | GSSENC_REQUEST));
            }
            done.push((f, meta));
        }
    }

    fn keep_for(&self, ty: u8) -> usize {
        match (self.frontend, ty) {
            (true, 0) => 2048,
            (true, b'Q') => MAX_STATEMENT + 1,
            (true, b'P' | b'B') => 2 * MAX_STATEMENT,
            (false, b'E') => 1024,
            (false, b'C') => 64,
            (false, b'Z') => 1,
            _ => 0,
        }
    }

    fn feed_bytes(&mut self, data: &[u8], meta: Meta, done: &mut Vec<(Frame, Meta)>) -> Result<(), Error> {
        let mut pos = 0;
        while pos < data.len() {
            if self.cur.is_some() && self.hdr.is_empty() {
                // Inside a body.
                let n = (self.body_left as usize).min(data.len() - pos);
                let keep = n.min(self.keep_left);
                if let Some(f) = self.cur.as_mut() {
                    f.body.extend_from_slice(&data[pos..pos + keep]);
                    f.length += n as u64;
                }
                self.keep_left -= keep;
                self.body_left -= n as u64;
                pos += n;
                if self.body_left == 0 {
                    self.finish(meta, done);
                }
                continue;
            }
            if self.answers_due > 0 && self.hdr.is_empty() {
                // The bare one-byte answer to SSLRequest/GSSENCRequest.
                self.answers_due -= 1;
                let b = data[pos];
                if !matches!(b, b'S' | b'N' | b'G') {
                    return Err(Error::Malformed);
                }
                done.push((Frame { ty: b, body: b"answer".to_vec(), length: 1, first: meta }, meta));
                pos += 1;
                continue;
            }
            let need = if self.untyped { 4 } else { 5 };
            let n = (need - self.hdr.len()).min(data.len() - pos);
            self.hdr.extend_from_slice(&data[pos..pos + n]);
            pos += n;
            if self.hdr.len() == 1 && !self.untyped {
                let types = if self.frontend { FRONTEND_TYPES } else { BACKEND_TYPES };
                if !types.contains(&self.hdr[0]) {
                    return Err(Error::Malformed);
                }
            }
            if self.hdr.len() < need {
                continue;
            }
            let (ty, len) = if self.untyped { (0, &self.hdr[..4]) } else { (self.hdr[0], &self.hdr[1..5]) };
            let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as u64;
            let ok =
                if ty == 0 { (8..=MAX_STARTUP).contains(&len) } else { (4..=MAX_MESSAGE).contains(&len) };
            if !ok {
                return Err(Error::Malformed);
            }
            let hdr_len = self.hdr.len() as u64;
            self.hdr.clear();
            self.keep_left = self.keep_for(ty);
            self.body_left = len - 4;
            self.cur = Some(Frame { ty, body: Vec::new(), length: hdr_len, first: meta });
            if self.body_left == 0 {
                self.finish(meta, done);
            }
        }
        Ok(())
    }
}

fn be32(b: &[u8]) -> Option<u32> {
    b.get(..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// The NUL-terminated strings of a body (the last one may be cut).
fn cstrings(b: &[u8]) -> impl Iterator<Item = &[u8]> {
    b.split(|&c| c == 0)
}

/// Lossy UTF-8 of at most `max` bytes.
fn text(b: &[u8], max: usize) -> String {
    let mut s = String::from_utf8_lossy(&b[..b.len().min(max)]).into_owned();
    // A multi-byte character cut at `max` became U+FFFD: drop it.
    if b.len() > max {
        s = s.trim_end_matches('\u{fffd}').to_string();
    }
    cut(&mut s, max);
    s
}

/// Truncates to at most `max` bytes, on a character boundary.
fn cut(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// Client errors by SQLSTATE class (https://www.postgresql.org/docs/current/errcodes-appendix.html):
/// bad input, constraint violations, unknown objects, privileges, bad SQL.
/// Everything else (resources, operator intervention, system, internal,
/// connection, transaction rollback) is the server's.
pub fn sqlstate_status(code: &str) -> &'static str {
    match code.get(..2) {
        Some(
            "0A" | "21" | "22" | "23" | "24" | "25" | "26" | "27" | "28" | "2B" | "2D" | "2F" | "34" | "3D"
            | "3F" | "42" | "44",
        ) => "client_error",
        _ => "server_error",
    }
}

#[derive(Debug)]
struct Batch {
    first: Meta,
    kind: &'static str,
    text: Option<String>,
    length: u64,
}

#[derive(Debug)]
struct Reply {
    first: Meta,
    length: u64,
    error: Option<(String, String)>,
    tag: Option<String>,
    rows: u64,
}

/// One PostgreSQL connection.
pub struct PostgresSession {
    frontend_dir: Direction,
    front: PgStream,
    back: PgStream,
    database: Option<String>,
    statements: HashMap<Vec<u8>, String>,
    batch: Option<Batch>,
    /// One entry per round trip awaiting ReadyForQuery: whether it is a span
    /// (false for a Sync with nothing before it).
    round_trips: VecDeque<bool>,
    reply: Option<Reply>,
    /// The startup phase ended (the first ReadyForQuery was seen).
    ready: bool,
    /// The backend stream lost its framing (copy cap or garbage): its bytes are
    /// skipped until the client sends again, when the reader starts afresh.
    back_lost: bool,
    errors: u32,
    dead: bool,
}

impl PostgresSession {
    /// `startup`: the connection's first frontend bytes are a startup-phase
    /// message (else the capture joined an established connection).
    pub fn new(side: Side, startup: bool) -> Self {
        Self {
            frontend_dir: if side == Side::Server { Direction::Ingress } else { Direction::Egress },
            front: PgStream::new(true, startup),
            back: PgStream::new(false, false),
            database: None,
            statements: HashMap::new(),
            batch: None,
            round_trips: VecDeque::new(),
            reply: None,
            ready: !startup,
            back_lost: false,
            errors: 0,
            dead: false,
        }
    }

    fn request(
        &self,
        kind: &str,
        statement: Option<String>,
        first: Meta,
        last: Meta,
        length: u64,
    ) -> Message {
        let statement = statement.unwrap_or_default();
        let verb = statement.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
        Message::Request {
            key: 0,
            first,
            last,
            req: Request {
                l7_protocol: "PostgreSQL",
                version: "3",
                request_type: kind.to_string(),
                request_domain: self.database.clone(),
                request_resource: statement,
                endpoint: verb,
                length,
                ..Default::default()
            },
        }
    }

    fn frontend(&mut self, f: Frame, last: Meta, out: &mut Vec<Message>) {
        let mut strings = cstrings(&f.body);
        match f.ty {
            0 => match be32(&f.body) {
                Some(SSL_REQUEST | GSSENC_REQUEST) => self.back.answers_due += 1,
                Some(CANCEL_REQUEST) => {}
                Some(v) if v >> 16 == 3 => {
                    let mut params = cstrings(&f.body[4..]);
                    let (mut user, mut db) = (None, None);
                    while let (Some(k), Some(v)) = (params.next(), params.next()) {
                        match k {
                            b"database" => db = Some(text(v, 128)),
                            b"user" => user = Some(text(v, 128)),
                            _ => {}
                        }
                    }
                    // The server's default database is the user's name.
                    self.database = db.filter(|d| !d.is_empty()).or(user);
                }
                _ => out.push(Message::Error("postgres_malformed")),
            },
            b'Q' => {
                let sql = strings.next().map(|s| text(s, MAX_STATEMENT));
                self.round_trips.push_back(true);
                out.push(self.request("QUERY", sql, f.first, last, f.length));
            }
            b'P' | b'B' | b'D' | b'E' | b'C' | b'H' => {
                let (kind, sql) = match f.ty {
                    b'P' => {
                        let name = strings.next().unwrap_or_default().to_vec();
                        let sql = strings.next().map(|s| text(s, MAX_STATEMENT)).unwrap_or_default();
                        if self.statements.len() >= MAX_STATEMENTS && !self.statements.contains_key(&name) {
                            self.statements.clear();
                        }
                        self.statements.insert(name, sql.clone());
                        ("PARSE", Some(sql))
                    }
                    b'B' => {
                        let _portal = strings.next();
                        let sql = strings.next().and_then(|n| self.statements.get(n).cloned());
                        ("BIND", sql)
                    }
                    b'D' => ("DESCRIBE", None),
                    b'E' => ("EXECUTE", None),
                    b'C' => ("CLOSE", None),
                    _ => ("FLUSH", None),
                };
                let b = self.batch.get_or_insert(Batch { first: f.first, kind, text: None, length: 0 });
                b.length += f.length;
                if b.text.is_none() {
                    b.text = sql;
                }
            }
            b'S' => match self.batch.take() {
                Some(b) => {
                    self.round_trips.push_back(true);
                    out.push(self.request(b.kind, b.text, b.first, last, b.length + f.length));
                }
                None => self.round_trips.push_back(false),
            },
            b'F' => {
                self.round_trips.push_back(true);
                out.push(self.request("FUNCTION_CALL", None, f.first, last, f.length));
            }
            // Terminate, password/SASL, COPY data: no span of their own.
            _ => {}
        }
    }

    fn backend(&mut self, f: Frame, last: Meta, out: &mut Vec<Message>) {
        if f.body == b"answer" && f.length == 1 {
            if f.ty != b'N' {
                // TLS or GSSAPI encryption follows: nothing more to read here.
                self.dead = true;
                out.push(Message::Error("postgres_encrypted"));
            }
            return;
        }
        if !self.ready {
            // Authentication, ParameterStatus, BackendKeyData up to the first ReadyForQuery.
            self.ready = f.ty == b'Z';
            return;
        }
        if self.round_trips.is_empty() {
            // Asynchronous messages between queries.
            return;
        }
        if self.reply.is_none() {
            if matches!(f.ty, b'N' | b'A' | b'S') {
                return;
            }
            self.reply = Some(Reply { first: f.first, length: 0, error: None, tag: None, rows: 0 });
        }
        let Some(r) = self.reply.as_mut() else { return };
        r.length += f.length;
        match f.ty {
            b'E' if r.error.is_none() => {
                let (mut code, mut msg) = (String::new(), String::new());
                for field in cstrings(&f.body) {
                    match field.split_first() {
                        Some((b'C', v)) => code = text(v, 5),
                        Some((b'M', v)) => msg = text(v, MAX_EXCEPTION),
                        _ => {}
                    }
                }
                r.error = Some((code, msg));
            }
            b'C' => r.tag = cstrings(&f.body).next().map(|t| text(t, 64)),
            b'D' => r.rows += 1,
            b'Z' => {
                let Some(r) = self.reply.take() else { return };
                if self.round_trips.pop_front() != Some(true) {
                    return;
                }
                let (status, exception) = match &r.error {
                    Some((code, msg)) => (sqlstate_status(code), Some(exception(code, msg))),
                    None => ("ok", None),
                };
                let mut attrs = json!({ "rows": r.rows });
                if let Some(tag) = r.tag {
                    attrs["command_tag"] = json!(tag);
                }
                out.push(Message::Response {
                    key: 0,
                    first: r.first,
                    last,
                    resp: Response {
                        code: None,
                        status,
                        exception,
                        length: r.length,
                        attributes: Some(attrs),
                        ..Default::default()
                    },
                });
            }
            _ => {}
        }
    }
}

const LOST: &str = "response not captured: the copy cap (--max-payload) or unparseable bytes cut the reply";

impl PostgresSession {
    /// The client sends again after the backend stream was lost: clients wait for
    /// ReadyForQuery, so every round trip sent so far has ended. The one in
    /// progress ends with what was seen of it (its error, if any), the others as
    /// not captured, so the pairing of what follows stays right.
    fn recover(&mut self, meta: Meta, out: &mut Vec<Message>) {
        self.back_lost = false;
        self.back = PgStream::new(false, false);
        self.ready = true;
        let mut partial = self.reply.take();
        while let Some(emit) = self.round_trips.pop_front() {
            let r = partial.take();
            if !emit {
                continue;
            }
            let (status, exception) = match r.as_ref().and_then(|r| r.error.as_ref()) {
                Some((code, msg)) => (sqlstate_status(code), Some(exception(code, msg))),
                None => ("unknown", Some(LOST.to_string())),
            };
            out.push(Message::Response {
                key: 0,
                first: r.as_ref().map_or(meta, |r| r.first),
                last: meta,
                resp: Response { status, exception, length: r.map_or(0, |r| r.length), ..Default::default() },
            });
        }
    }
}

fn exception(code: &str, msg: &str) -> String {
    let mut e = format!("{code}: {msg}");
    cut(&mut e, MAX_EXCEPTION);
    e
}

impl Session for PostgresSession {
    fn protocol(&self) -> &'static str {
        "PostgreSQL"
    }

    fn feed(&mut self, dir: Direction, data: &[u8], total: u64, meta: Meta, out: &mut Vec<Message>) {
        if self.dead {
            return;
        }
        let gap = total.saturating_sub(data.len() as u64);
        let frontend = dir == self.frontend_dir;
        if self.back_lost {
            if !frontend {
                return;
            }
            self.recover(meta, out);
        }
        let mut done = Vec::new();
        let stream = if frontend { &mut self.front } else { &mut self.back };
        let r = stream.feed(data, gap, meta, &mut done);
        if !done.is_empty() {
            self.errors = 0;
        }
        for (f, last) in done {
            if frontend {
                self.frontend(f, last, out);
            } else {
                self.backend(f, last, out);
            }
            if self.dead {
                return;
            }
        }
        if r.is_err() && !frontend {
            self.back_lost = true;
        }
        if r == Err(Error::Uncaptured) && frontend {
            // The rest of a write was not copied (copy cap, or more iovecs than the
            // collector copies). Drivers send an extended round trip in one write, so
            // a batch under way ends with the Sync in the uncopied bytes.
            if let Some(mut b) = self.batch.take() {
                b.length += self.front.lost;
                self.round_trips.push_back(true);
                out.push(self.request(b.kind, b.text, b.first, meta, b.length));
            }
        }
        match r {
            Ok(()) => {}
            Err(Error::Uncaptured) => out.push(Message::Error("postgres_uncaptured")),
            Err(Error::Malformed) => {
                out.push(Message::Error("postgres_malformed"));
                self.errors += 1;
                if self.errors >= MAX_ERRORS {
                    self.dead = true;
                    out.push(Message::Error("postgres_gave_up"));
                }
            }
        }
    }
}

/// Whether a connection's first bytes are a StartupMessage (protocol 3.x),
/// SSLRequest, GSSENCRequest or CancelRequest.
pub fn looks_like_startup(data: &[u8]) -> bool {
    let (Some(len), Some(code)) = (be32(data), data.get(4..).and_then(be32)) else { return false };
    match code {
        SSL_REQUEST | GSSENC_REQUEST => len == 8,
        CANCEL_REQUEST => len == 16,
        c if c >> 16 == 3 && c & 0xffff < 16 => (9..=MAX_STARTUP as u32).contains(&len),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Direction::{Egress as W, Ingress as R};

    fn meta(n: u64) -> Meta {
        Meta { enter_ns: n * 10, exit_ns: n * 10 + 5, tid: 1, seq: 0, trace_id: n }
    }

    fn msg(ty: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![ty];
        v.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    fn cstr(parts: &[&str]) -> Vec<u8> {
        parts.iter().flat_map(|p| p.bytes().chain([0])).collect()
    }

    fn startup(user: &str, db: &str) -> Vec<u8> {
        let mut body = 196_608u32.to_be_bytes().to_vec();
        body.extend(cstr(&["user", user, "database", db, "application_name", "psql", ""]));
        let mut v = (body.len() as u32 + 4).to_be_bytes().to_vec();
        v.extend(body);
        v
    }

    fn ssl_request() -> Vec<u8> {
        [8u32.to_be_bytes(), SSL_REQUEST.to_be_bytes()].concat()
    }

    /// What a server sends from AuthenticationOk to the first ReadyForQuery.
    fn auth_ok() -> Vec<u8> {
        [
            msg(b'R', &0u32.to_be_bytes()),
            msg(b'S', &cstr(&["server_version", "15.8"])),
            msg(b'K', &[0, 0, 1, 2, 3, 4, 5, 6]),
            msg(b'Z', b"I"),
        ]
        .concat()
    }

    fn query(sql: &str) -> Vec<u8> {
        msg(b'Q', &cstr(&[sql]))
    }

    fn rows(n: usize, tag: &str) -> Vec<u8> {
        let mut v = msg(b'T', b"\0\x01id\0\0\0\0\0\0\0\0\0\0\x17\0\x04\xff\xff\xff\xff\0\0");
        for i in 0..n {
            let val = i.to_string();
            let mut body = vec![0, 1];
            body.extend_from_slice(&(val.len() as u32).to_be_bytes());
            body.extend_from_slice(val.as_bytes());
            v.extend(msg(b'D', &body));
        }
        v.extend(msg(b'C', &cstr(&[tag])));
        v.extend(msg(b'Z', b"I"));
        v
    }

    fn error(code: &str, message: &str) -> Vec<u8> {
        let mut body = Vec::new();
        for (t, v) in [("S", "ERROR"), ("V", "ERROR"), ("C", code), ("M", message), ("F", "scan.l")] {
            body.extend(cstr(&[&format!("{t}{v}")]));
        }
        body.push(0);
        [msg(b'E', &body), msg(b'Z', b"I")].concat()
    }

    fn extended(name: &str, sql: &str) -> Vec<u8> {
        let mut v = msg(b'P', &[cstr(&[name, sql]), vec![0, 0]].concat());
        v.extend(msg(b'B', &[cstr(&["", name]), vec![0, 0, 0, 1, 0, 0, 0, 1, b'7', 0, 0]].concat()));
        v.extend(msg(b'D', b"P\0"));
        v.extend(msg(b'E', b"\0\0\0\0\0"));
        v.extend(msg(b'S', b""));
        v
    }

    fn bind_execute(name: &str) -> Vec<u8> {
        let mut v = msg(b'B', &[cstr(&["", name]), vec![0, 0, 0, 0, 0, 0]].concat());
        v.extend(msg(b'E', b"\0\0\0\0\0"));
        v.extend(msg(b'S', b""));
        v
    }

    fn run(s: &mut PostgresSession, steps: &[(Direction, &[u8])]) -> Vec<Message> {
        let mut out = Vec::new();
        for (i, (d, b)) in steps.iter().enumerate() {
            s.feed(*d, b, b.len() as u64, meta(i as u64), &mut out);
        }
        out
    }

    type Summary = (String, String, Option<String>, String);

    fn reqs(out: &[Message]) -> Vec<Summary> {
        out.iter()
            .filter_map(|m| match m {
                Message::Request { req, .. } => Some((
                    req.request_type.clone(),
                    req.request_resource.clone(),
                    req.request_domain.clone(),
                    req.endpoint.clone(),
                )),
                _ => None,
            })
            .collect()
    }

    fn resps(out: &[Message]) -> Vec<Response> {
        out.iter()
            .filter_map(|m| match m {
                Message::Response { resp, .. } => Some(resp.clone()),
                _ => None,
            })
            .collect()
    }

    /// A client session: startup, a SELECT, an extended INSERT, a reuse of the
    /// prepared statement, a syntax error and a unique violation.
    fn conversation() -> Vec<(Direction, Vec<u8>)> {
        vec![
            (W, startup("app", "shop")),
            (
                R,
                [
                    msg(b'R', &[0, 0, 0, 10, b'S', b'C', b'R', b'A', b'M', 0, 0]),
                    msg(b'R', &0u32.to_be_bytes()),
                ]
                .concat(),
            ),
            (R, auth_ok()),
            (W, query("SELECT id FROM items")),
            (R, rows(3, "SELECT 3")),
            (W, extended("ins", "INSERT INTO items(id) VALUES ($1)")),
            (
                R,
                [
                    msg(b'1', b""),
                    msg(b'2', b""),
                    msg(b'n', b""),
                    msg(b'C', &cstr(&["INSERT 0 1"])),
                    msg(b'Z', b"I"),
                ]
                .concat(),
            ),
            (W, bind_execute("ins")),
            (
                R,
                [
                    msg(b'2', b""),
                    error("23505", "duplicate key value violates unique constraint \"items_pkey\""),
                ]
                .concat(),
            ),
            (W, query("SELEC 1")),
            (R, error("42601", "syntax error at or near \"SELEC\"")),
            (W, msg(b'X', b"")),
        ]
    }

    fn check_conversation(out: &[Message]) {
        let r = reqs(out);
        let db = Some("shop".to_string());
        assert_eq!(
            r,
            vec![
                ("QUERY".into(), "SELECT id FROM items".into(), db.clone(), "SELECT".into()),
                ("PARSE".into(), "INSERT INTO items(id) VALUES ($1)".into(), db.clone(), "INSERT".into()),
                ("BIND".into(), "INSERT INTO items(id) VALUES ($1)".into(), db.clone(), "INSERT".into()),
                ("QUERY".into(), "SELEC 1".into(), db, "SELEC".into()),
            ]
        );
        let p = resps(out);
        assert_eq!(p.len(), 4);
        assert_eq!((p[0].status, p[0].code, &p[0].exception), ("ok", None, &None));
        assert_eq!(p[0].attributes, Some(json!({"rows": 3, "command_tag": "SELECT 3"})));
        assert_eq!(p[1].attributes, Some(json!({"rows": 0, "command_tag": "INSERT 0 1"})));
        assert_eq!(p[2].status, "client_error");
        assert_eq!(
            p[2].exception.as_deref(),
            Some("23505: duplicate key value violates unique constraint \"items_pkey\"")
        );
        assert_eq!(p[3].exception.as_deref(), Some("42601: syntax error at or near \"SELEC\""));
        assert!(!out.iter().any(|m| matches!(m, Message::Error(_))), "{out:?}");
    }

    #[test]
    fn simple_and_extended_round_trips() {
        let conv = conversation();
        let steps: Vec<(Direction, &[u8])> = conv.iter().map(|(d, b)| (*d, &b[..])).collect();
        let out = run(&mut PostgresSession::new(Side::Client, true), &steps);
        check_conversation(&out);
        let Message::Request { first, last, req, .. } = &out[0] else { panic!() };
        assert_eq!((*first, *last, req.length), (meta(3), meta(3), conv[3].1.len() as u64));
        let Message::Response { first, last, resp, .. } = &out[1] else { panic!() };
        assert_eq!((*first, *last, resp.length), (meta(4), meta(4), conv[4].1.len() as u64));
        let Message::Request { req, .. } = &out[2] else { panic!() };
        assert_eq!(req.length, conv[5].1.len() as u64, "the whole batch up to Sync");
        // The server's view of the same bytes.
        let server: Vec<(Direction, &[u8])> =
            conv.iter().map(|(d, b)| (if *d == W { R } else { W }, &b[..])).collect();
        check_conversation(&run(&mut PostgresSession::new(Side::Server, true), &server));
    }

    #[test]
    fn split_at_every_byte() {
        // Whole conversation as two streams, each cut into two reads at every offset.
        let conv = conversation();
        let front: Vec<u8> = conv.iter().filter(|(d, _)| *d == W).flat_map(|(_, b)| b.clone()).collect();
        let back: Vec<u8> = conv.iter().filter(|(d, _)| *d == R).flat_map(|(_, b)| b.clone()).collect();
        for cut in 0..=front.len() {
            let s = &mut PostgresSession::new(Side::Client, true);
            let bcut = cut * back.len() / front.len();
            let out =
                run(s, &[(W, &front[..cut]), (W, &front[cut..]), (R, &back[..bcut]), (R, &back[bcut..])]);
            assert_eq!(reqs(&out).len(), 4, "cut {cut}");
            assert_eq!(resps(&out).len(), 4, "cut {cut}");
            assert_eq!(
                resps(&out)[3].exception.as_deref(),
                Some("42601: syntax error at or near \"SELEC\""),
                "cut {cut}"
            );
        }
        for cut in 0..=back.len() {
            let s = &mut PostgresSession::new(Side::Client, true);
            let out = run(s, &[(W, &front), (R, &back[..cut]), (R, &back[cut..])]);
            check_conversation(&out);
        }
    }

    #[test]
    fn ssl_refused_then_plaintext_or_encrypted() {
        let mut s = PostgresSession::new(Side::Client, true);
        let out = run(
            &mut s,
            &[
                (W, &ssl_request()),
                (R, b"N"),
                (W, &startup("bob", "")),
                (R, &auth_ok()),
                (W, &query("SELECT 1")),
                (R, &rows(1, "SELECT 1")),
            ],
        );
        assert_eq!(
            reqs(&out),
            vec![("QUERY".into(), "SELECT 1".into(), Some("bob".into()), "SELECT".into())]
        );
        assert_eq!(resps(&out).len(), 1);
        let mut s = PostgresSession::new(Side::Client, true);
        let out = run(
            &mut s,
            &[
                (W, &ssl_request()),
                (R, b"S"),
                (W, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc"),
                (R, b"\x16\x03\x03"),
            ],
        );
        assert_eq!(out, vec![Message::Error("postgres_encrypted")]);
    }

    #[test]
    fn statement_cut_by_copy_cap_and_big_rows_skipped() {
        let long = format!("INSERT INTO blobs VALUES ('{}')", "é".repeat(50_000));
        let q = query(&long);
        let mut s = PostgresSession::new(Side::Client, false);
        let mut out = Vec::new();
        s.feed(W, &q[..4096], q.len() as u64, meta(1), &mut out);
        // A result whose DataRow is bigger than the copy cap.
        let mut res = rows(0, "SELECT 1");
        let tail = res.split_off(res.len() - 20); // CommandComplete + ReadyForQuery
        res.extend(msg(b'D', &[vec![0, 1], 100_000u32.to_be_bytes().to_vec(), vec![b'x'; 100_000]].concat()));
        let head = res.len();
        res.extend(tail);
        // One read of RowDescription + DataRow, of which 200 bytes were copied; then the rest.
        s.feed(R, &res[..200], head as u64, meta(2), &mut out);
        s.feed(R, &res[head..], (res.len() - head) as u64, meta(3), &mut out);
        let r = reqs(&out);
        assert_eq!(r.len(), 1, "{out:?}");
        assert!(
            r[0].1.len() <= MAX_STATEMENT && r[0].1.starts_with("INSERT INTO blobs VALUES ('é"),
            "{}",
            r[0].1
        );
        assert!(!r[0].1.contains('\u{fffd}'));
        let Message::Request { req, .. } = &out[0] else { panic!() };
        assert_eq!(req.length, q.len() as u64);
        let p = resps(&out);
        assert_eq!((p.len(), p[0].length), (1, res.len() as u64), "{out:?}");
        assert_eq!(p[0].attributes, Some(json!({"rows": 1, "command_tag": "SELECT 1"})));
    }

    #[test]
    fn cap_cutting_framing_is_counted_and_resyncs() {
        let mut s = PostgresSession::new(Side::Client, false);
        let mut two = query(&"x".repeat(5000));
        two.extend(query("SELECT 2"));
        let mut out = Vec::new();
        s.feed(W, &two[..4096], two.len() as u64, meta(1), &mut out);
        assert!(out.contains(&Message::Error("postgres_uncaptured")), "{out:?}");
        s.feed(W, &query("SELECT 3"), 14, meta(2), &mut out);
        assert_eq!(reqs(&out).len(), 2);
        assert_eq!(reqs(&out)[1].1, "SELECT 3");
    }

    #[test]
    fn many_small_rows_beyond_copy_cap() {
        // A result of many small DataRows read 16 KiB at a time with 4 KiB copied: the
        // cut lands in a header, the rest of the result is skipped, and the round trip
        // ends when the client sends its next query.
        let mut s = PostgresSession::new(Side::Client, false);
        let mut out = Vec::new();
        s.feed(W, &query("SELECT * FROM big"), 23, meta(1), &mut out);
        let res = rows(3000, "SELECT 3000");
        for (i, chunk) in res.chunks(16384).enumerate() {
            s.feed(R, &chunk[..chunk.len().min(4096)], chunk.len() as u64, meta(2 + i as u64), &mut out);
        }
        assert_eq!(out.iter().filter(|m| **m == Message::Error("postgres_uncaptured")).count(), 1, "{out:?}");
        assert_eq!(resps(&out).len(), 0);
        let q2 = query("SELECT 1");
        s.feed(W, &q2, q2.len() as u64, meta(20), &mut out);
        s.feed(R, &error("42703", "column \"x\" does not exist"), 0, meta(21), &mut out);
        let p = resps(&out);
        assert_eq!(p.len(), 2, "{out:?}");
        assert_eq!((p[0].status, p[0].exception.as_deref()), ("unknown", Some(LOST)));
        assert!(
            (4096..16384).contains(&p[0].length),
            "the messages seen whole before the cut: {}",
            p[0].length
        );
        assert_eq!(p[1].status, "client_error");
    }

    #[test]
    fn extended_batch_whose_tail_was_not_copied() {
        // Parse/Bind/Describe/Execute/Sync in one writev, of which only the first
        // iovecs (or the first bytes, with a big parameter) were copied.
        let batch = extended("", "INSERT INTO items(id) VALUES ($1)");
        let mut s = PostgresSession::new(Side::Client, false);
        let mut out = Vec::new();
        let cut = batch.len() - 16; // Execute and Sync missing
        s.feed(W, &batch[..cut], batch.len() as u64, meta(1), &mut out);
        s.feed(
            R,
            &[
                msg(b'1', b""),
                msg(b'2', b""),
                msg(b'n', b""),
                msg(b'C', &cstr(&["INSERT 0 1"])),
                msg(b'Z', b"I"),
            ]
            .concat(),
            40,
            meta(2),
            &mut out,
        );
        assert_eq!(
            reqs(&out),
            vec![("PARSE".into(), "INSERT INTO items(id) VALUES ($1)".into(), None, "INSERT".into())]
        );
        let Message::Request { req, .. } = &out[0] else { panic!("{out:?}") };
        assert_eq!(req.length, batch.len() as u64);
        assert_eq!(resps(&out).len(), 1);
        assert_eq!(resps(&out)[0].status, "ok");
    }

    #[test]
    fn garbage_and_absurd_lengths() {
        let mut s = PostgresSession::new(Side::Client, false);
        let out =
            run(&mut s, &[(W, b"GET / HTTP/1.1\r\n"), (W, &query("SELECT 1")), (R, &rows(1, "SELECT 1"))]);
        assert_eq!(out[0], Message::Error("postgres_malformed"));
        assert_eq!((reqs(&out).len(), resps(&out).len()), (1, 1));
        let out = run(&mut s, &[(W, b"Q\xff\xff\xff\xff"), (R, b"D\x00\x00\x00\x02")]);
        assert_eq!(out, vec![Message::Error("postgres_malformed"), Message::Error("postgres_malformed")]);
        let mut s = PostgresSession::new(Side::Client, true);
        let steps: Vec<(Direction, &[u8])> = (0..12).map(|_| (W, &b"\xff\xff\xff\xff"[..])).collect();
        let out = run(&mut s, &steps);
        assert_eq!(
            out.iter().filter(|m| **m == Message::Error("postgres_malformed")).count(),
            MAX_ERRORS as usize
        );
        assert_eq!(out.last(), Some(&Message::Error("postgres_gave_up")));
    }

    #[test]
    fn bare_sync_and_async_messages_do_not_shift_pairing() {
        let mut s = PostgresSession::new(Side::Client, false);
        let notice = msg(b'N', &cstr(&["SNOTICE", "Mhello", ""]));
        let out = run(
            &mut s,
            &[
                (W, &msg(b'S', b"")),
                (R, &[notice.clone(), msg(b'Z', b"I")].concat()),
                (W, &query("SELECT 1")),
                (R, &[notice, rows(1, "SELECT 1")].concat()),
            ],
        );
        assert_eq!(reqs(&out).len(), 1);
        let p = resps(&out);
        assert_eq!((p.len(), p[0].status), (1, "ok"));
        assert_eq!(sqlstate_status("57P01"), "server_error");
        assert_eq!(sqlstate_status("53100"), "server_error");
        assert_eq!(sqlstate_status("28P01"), "client_error");
    }

    #[test]
    fn detects_startup_messages() {
        assert!(looks_like_startup(&startup("u", "d")));
        assert!(looks_like_startup(&ssl_request()));
        assert!(!looks_like_startup(b"GET / HTTP/1.1\r\n"));
        assert!(!looks_like_startup(&query("SELECT 1")));
        assert!(!looks_like_startup(b"\x00\x00"));
    }
}

#[cfg(test)]
mod detect_tests {
    use crate::event::Direction::{Egress as W, Ingress as R};
    use crate::l7::detect;

    #[test]
    fn detect_postgres() {
        let ssl = [0, 0, 0, 8, 4, 210, 22, 47];
        assert_eq!(detect(W, &ssl, 40000, 6543, false).map(|s| s.protocol()), Some("PostgreSQL"));
        assert_eq!(detect(R, &ssl, 5432, 40000, false).map(|s| s.protocol()), Some("PostgreSQL"));
        // Port 5432 mid-connection: typed messages from the start.
        let q = b"Q\0\0\0\x0dSELECT 1\0";
        let mut s = detect(W, q, 40000, 5432, false).expect("port 5432");
        let mut out = Vec::new();
        let m = crate::tracker::Meta { enter_ns: 1, exit_ns: 2, tid: 1, seq: 0, trace_id: 1 };
        s.feed(W, q, q.len() as u64, m, &mut out);
        s.feed(R, b"Z\0\0\0\x05I", 6, m, &mut out);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(detect(W, b"\x16\x03\x01\x00\x10", 40000, 8443, false).is_none());
    }
}
