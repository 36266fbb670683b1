//! Redis (RESP2 and RESP3, https://redis.io/docs/latest/develop/reference/protocol-spec/).
//! Commands are arrays of bulk strings (or inline lines); replies come back in
//! order, so requests and replies pair first in, first out (key 0), pipelines
//! included. Pub/sub pushes (RESP3 `>`, RESP2 `message`/`pmessage`/`smessage`
//! arrays and the extra confirmations of a many-channel SUBSCRIBE) answer no
//! command: they are counted (`redis_push`) and not paired.
//!
//! The parser is incremental: a value may be split across any number of reads
//! and a read may hold several values. Bulk strings are skipped by length, so a
//! value the copy cap cut (`total` > copied bytes) costs nothing beyond what a
//! span shows (command, first argument, error line).

use std::collections::VecDeque;

use crate::event::Direction;
use crate::l7::{Message, Request, Response, Session, Side};
use crate::tracker::Meta;

const LOST: &str =
    "response not captured: the copy cap (--max-payload) or unparseable bytes cut the reply stream";

/// Bytes of a command's first argument or of an error line kept in a span.
pub const MAX_TEXT: usize = 256;
/// A simple line (type byte + text) longer than this is not RESP.
const MAX_LINE: usize = 64 * 1024;
/// Redis itself refuses bulk strings over 512 MB and nesting over a few levels.
const MAX_BULK: i64 = 512 * 1024 * 1024;
const MAX_DEPTH: usize = 32;
const MAX_ELEMENTS: i64 = 1 << 24;
/// Consecutive unparseable reads after which the connection is given up.
const MAX_ERRORS: u32 = 8;
/// Commands remembered for pub/sub bookkeeping (the tracker has its own bound).
const MAX_PENDING: usize = 1024;

/// What a span needs from one complete RESP value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Value {
    /// Type byte of the top-level value (`*`, `+`, `-`, `$`, …; `i` for inline).
    pub kind: u8,
    /// Top-level elements (argc for a command).
    pub elements: u64,
    /// First two strings: the value itself if it is a string, else the first
    /// two string elements of the top-level aggregate (each cut to MAX_TEXT).
    pub strings: Vec<Vec<u8>>,
    /// `-` or `!` error text.
    pub error: Option<Vec<u8>>,
    pub length: u64,
    pub first: Option<Meta>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    Malformed,
    /// The copy cap cut the read where the value's framing was needed.
    Uncaptured,
}

/// Incremental RESP reader for one direction.
#[derive(Debug, Default)]
pub struct RespStream {
    inline_ok: bool,
    line: Vec<u8>,
    /// Remaining elements of each open aggregate, outermost first.
    stack: Vec<u64>,
    /// Bytes left of the current bulk string, CRLF included (0: none open).
    bulk_left: u64,
    /// Keep the current bulk string's bytes (a top-level string or one of the
    /// first two elements).
    bulk_keep: Option<Vec<u8>>,
    bulk_is_error: bool,
    cur: Option<Value>,
    /// The value in progress when the last error reset the reader.
    pub partial: Option<Value>,
}

impl RespStream {
    /// `inline_ok`: the command direction, where inline commands are allowed.
    pub fn new(inline_ok: bool) -> Self {
        Self { inline_ok, ..Default::default() }
    }

    fn reset(&mut self) {
        *self = Self::new(self.inline_ok);
    }

    /// Feeds one read. Complete values go to `done`; an error resets the
    /// reader (the rest of this read is dropped; the next read starts afresh).
    pub fn feed(
        &mut self,
        data: &[u8],
        gap: u64,
        meta: Meta,
        done: &mut Vec<(Value, Meta)>,
    ) -> Result<(), Error> {
        let r = self.feed_bytes(data, meta, done).and_then(|()| self.skip_gap(gap, meta, done));
        if r.is_err() {
            let mut partial = self.cur.take().filter(|v| v.length > 0);
            if let Some(v) = partial.as_mut() {
                v.length += gap; // the uncopied rest of this read belongs to it too
            }
            self.reset();
            self.partial = partial;
        }
        r
    }

    /// Bytes the copy cap left out: only the rest of a bulk string (its CRLF
    /// included) can be skipped blind.
    fn skip_gap(&mut self, gap: u64, meta: Meta, done: &mut Vec<(Value, Meta)>) -> Result<(), Error> {
        let n = gap.min(self.bulk_left);
        if n > 0 {
            self.consume_bulk(n, meta, done);
        }
        if gap > n {
            return Err(Error::Uncaptured);
        }
        Ok(())
    }

    /// `n` bytes of the open bulk string were read (copied or not).
    fn consume_bulk(&mut self, n: u64, meta: Meta, done: &mut Vec<(Value, Meta)>) {
        self.bulk_left -= n;
        if let Some(v) = self.cur.as_mut() {
            v.length += n;
        }
        if self.bulk_left > 0 {
            return;
        }
        let mut s = self.bulk_keep.take();
        if let Some(s) = s.as_mut() {
            // The kept bytes end with the CRLF only when the string was short.
            if s.ends_with(b"\r\n") && s.len() <= MAX_TEXT + 2 {
                s.truncate(s.len() - 2);
            }
            s.truncate(MAX_TEXT);
        }
        let is_error = std::mem::take(&mut self.bulk_is_error);
        self.element(s, is_error, meta, done);
    }

    fn feed_bytes(&mut self, data: &[u8], meta: Meta, done: &mut Vec<(Value, Meta)>) -> Result<(), Error> {
        let mut pos = 0;
        while pos < data.len() {
            let rest = &data[pos..];
            if self.bulk_left > 0 {
                let n = (self.bulk_left as usize).min(rest.len());
                if let Some(keep) = self.bulk_keep.as_mut() {
                    let room = (MAX_TEXT + 2).saturating_sub(keep.len());
                    keep.extend_from_slice(&rest[..n.min(room)]);
                }
                pos += n;
                self.consume_bulk(n as u64, meta, done);
                continue;
            }
            if self.line.is_empty() {
                let t = rest[0];
                let typed = b"*>~%|$=!+-:,#_(".contains(&t);
                let inline = self.inline_ok
                    && self.stack.is_empty()
                    && (t == b'\r' || t == b'\n' || t == b'\t' || (b' '..0x7f).contains(&t));
                if !typed && !inline {
                    return Err(Error::Malformed);
                }
            }
            if self.cur.is_none() {
                self.cur = Some(Value { first: Some(meta), ..Default::default() });
            }
            let (line_end, consumed) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (true, i + 1),
                None => (false, rest.len()),
            };
            if self.line.len() + consumed > MAX_LINE {
                return Err(Error::Malformed);
            }
            self.line.extend_from_slice(&rest[..consumed]);
            if let Some(v) = self.cur.as_mut() {
                v.length += consumed as u64;
            }
            pos += consumed;
            if line_end {
                let mut line = std::mem::take(&mut self.line);
                line.pop();
                let inline = self.inline_ok && self.stack.is_empty();
                if line.last() == Some(&b'\r') {
                    line.pop();
                } else if !inline {
                    return Err(Error::Malformed);
                }
                self.line_done(&line, meta, done)?;
            }
        }
        Ok(())
    }

    fn line_done(&mut self, line: &[u8], meta: Meta, done: &mut Vec<(Value, Meta)>) -> Result<(), Error> {
        let top = self.stack.is_empty();
        let Some(&t) = line.first() else {
            // Redis ignores empty inline lines between commands.
            if top && self.inline_ok {
                self.cur = None;
                return Ok(());
            }
            return Err(Error::Malformed);
        };
        if top {
            if let Some(v) = self.cur.as_mut() {
                v.kind = t;
            }
        }
        let text = &line[1..];
        match t {
            b'*' | b'>' | b'~' | b'%' | b'|' => {
                let n = int(text)?;
                if !(-1..=MAX_ELEMENTS).contains(&n) {
                    return Err(Error::Malformed);
                }
                let n = if matches!(t, b'%' | b'|') { n * 2 } else { n };
                if top {
                    if let Some(v) = self.cur.as_mut() {
                        v.elements = n.max(0) as u64;
                    }
                }
                if n <= 0 {
                    self.element(None, false, meta, done);
                } else {
                    if self.stack.len() >= MAX_DEPTH {
                        return Err(Error::Malformed);
                    }
                    self.stack.push(n as u64);
                }
            }
            b'$' | b'=' | b'!' => {
                let n = int(text)?;
                if n == -1 {
                    self.element(None, false, meta, done);
                } else if (0..=MAX_BULK).contains(&n) {
                    self.bulk_left = n as u64 + 2;
                    self.bulk_is_error = t == b'!';
                    self.bulk_keep = self.wants_string().then(Vec::new);
                } else {
                    return Err(Error::Malformed);
                }
            }
            b'+' | b'-' | b':' | b',' | b'#' | b'_' | b'(' => {
                // Big numbers may exceed i64; plain integers may not.
                if t == b':' {
                    int(text)?;
                }
                let keep = self.wants_string().then(|| text[..text.len().min(MAX_TEXT)].to_vec());
                self.element(keep, t == b'-', meta, done);
            }
            _ if top && self.inline_ok => {
                // Inline command: words separated by spaces (redis-cli never
                // sends these; telnet users and some health checks do).
                if !line.iter().all(|&b| b == b'\t' || (b' '..0x7f).contains(&b)) {
                    return Err(Error::Malformed);
                }
                let words: Vec<&[u8]> =
                    line.split(|&b| b == b' ' || b == b'\t').filter(|w| !w.is_empty()).collect();
                if let Some(v) = self.cur.as_mut() {
                    v.kind = b'i';
                    v.elements = words.len() as u64;
                    v.strings = words.iter().take(2).map(|w| w[..w.len().min(MAX_TEXT)].to_vec()).collect();
                }
                self.element(None, false, meta, done);
            }
            _ => return Err(Error::Malformed),
        }
        Ok(())
    }

    /// Whether the string about to be read is one a span shows.
    fn wants_string(&self) -> bool {
        match self.stack.len() {
            0 => true,
            1 => self.cur.as_ref().is_some_and(|v| v.strings.len() < 2 && v.elements - self.stack[0] < 2),
            _ => false,
        }
    }

    fn element(&mut self, s: Option<Vec<u8>>, is_error: bool, meta: Meta, done: &mut Vec<(Value, Meta)>) {
        if let (Some(s), Some(v)) = (s, self.cur.as_mut()) {
            if is_error && self.stack.is_empty() {
                v.error = Some(s);
            } else {
                v.strings.push(s);
            }
        }
        while let Some(top) = self.stack.last_mut() {
            *top -= 1;
            if *top > 0 {
                return;
            }
            self.stack.pop();
        }
        if let Some(v) = self.cur.take() {
            done.push((v, meta));
        }
    }
}

fn int(text: &[u8]) -> Result<i64, Error> {
    std::str::from_utf8(text).ok().and_then(|s| s.parse().ok()).ok_or(Error::Malformed)
}

/// Lossy UTF-8, at most MAX_TEXT bytes (replacement characters are longer
/// than the bytes they replace).
fn text(b: &[u8]) -> String {
    let mut s = String::from_utf8_lossy(b).into_owned();
    if s.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[derive(Debug, Clone)]
struct Pending {
    command: String,
    channels: u64,
}

fn is_subscribe(cmd: &str) -> bool {
    matches!(cmd, "SUBSCRIBE" | "PSUBSCRIBE" | "SSUBSCRIBE" | "UNSUBSCRIBE" | "PUNSUBSCRIBE" | "SUNSUBSCRIBE")
}

/// One Redis connection.
pub struct RedisSession {
    command_dir: Direction,
    commands: RespStream,
    replies: RespStream,
    pending: VecDeque<Pending>,
    /// Confirmations still due for a SUBSCRIBE of several channels.
    extra_confirmations: u64,
    subscribed: bool,
    /// The reply stream lost its framing (copy cap or garbage): replies are
    /// skipped until the client writes again, when the reader starts afresh.
    replies_lost: bool,
    errors: u32,
    dead: bool,
}

impl RedisSession {
    pub fn new(side: Side) -> Self {
        Self {
            command_dir: if side == Side::Server { Direction::Ingress } else { Direction::Egress },
            commands: RespStream::new(true),
            replies: RespStream::new(false),
            pending: VecDeque::new(),
            extra_confirmations: 0,
            subscribed: false,
            replies_lost: false,
            errors: 0,
            dead: false,
        }
    }

    fn command(&mut self, v: Value, last: Meta, out: &mut Vec<Message>) {
        let Some(first) = v.first else { return };
        let command = v.strings.first().map(|c| text(c).to_ascii_uppercase()).unwrap_or_default();
        let mut resource = command.clone();
        // AUTH carries a password; HELLO's AUTH option comes later, past the first argument.
        if let (Some(arg), false) = (v.strings.get(1), command == "AUTH") {
            resource.push(' ');
            resource.push_str(&text(arg));
        }
        if matches!(command.as_str(), "SUBSCRIBE" | "PSUBSCRIBE" | "SSUBSCRIBE") {
            self.subscribed = true;
        }
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_front();
        }
        self.pending.push_back(Pending { command: command.clone(), channels: v.elements.saturating_sub(1) });
        out.push(Message::Request {
            key: 0,
            first,
            last,
            req: Request {
                l7_protocol: "Redis",
                version: "",
                request_type: command.clone(),
                request_resource: resource,
                endpoint: command,
                length: v.length,
                ..Default::default()
            },
        });
    }

    fn reply(&mut self, v: Value, last: Meta, out: &mut Vec<Message>) {
        let Some(first) = v.first else { return };
        let head = v.strings.first().map(|s| text(s).to_ascii_lowercase());
        let push = match (v.kind, head.as_deref()) {
            (b'>', _) => true,
            (b'*', Some("message" | "pmessage" | "smessage")) if self.subscribed => true,
            (b'*', Some(h)) if self.subscribed && is_subscribe(&h.to_ascii_uppercase()) => {
                if self.extra_confirmations > 0 {
                    self.extra_confirmations -= 1;
                    true
                } else {
                    !self.pending.front().is_some_and(|p| is_subscribe(&p.command))
                }
            }
            _ => false,
        };
        if push {
            return out.push(Message::Error("redis_push"));
        }
        if let Some(p) = self.pending.pop_front() {
            if is_subscribe(&p.command) {
                self.extra_confirmations = p.channels.saturating_sub(1);
            }
        }
        let exception = v.error.as_deref().map(text);
        out.push(Message::Response {
            key: 0,
            first,
            last,
            resp: Response {
                code: None,
                status: if exception.is_some() { "server_error" } else { "ok" },
                exception,
                length: v.length,
                ..Default::default()
            },
        });
    }
}

impl Session for RedisSession {
    fn protocol(&self) -> &'static str {
        "Redis"
    }

    fn feed(&mut self, dir: Direction, data: &[u8], total: u64, meta: Meta, out: &mut Vec<Message>) {
        if self.dead {
            return;
        }
        let gap = total.saturating_sub(data.len() as u64);
        let mut done = Vec::new();
        let is_command = dir == self.command_dir;
        if !is_command && self.replies_lost {
            return;
        }
        if is_command && self.replies_lost {
            // The client writes again: the replies it waited for have all come. Those
            // that were lost answer their commands as not captured, so the pairing
            // of the commands that follow stays right.
            self.replies_lost = false;
            self.replies = RespStream::new(false);
            for _ in 0..self.pending.len() {
                self.pending.pop_front();
                out.push(Message::Response {
                    key: 0,
                    first: meta,
                    last: meta,
                    resp: Response {
                        status: "unknown",
                        exception: Some(LOST.to_string()),
                        ..Default::default()
                    },
                });
            }
        }
        let stream = if is_command { &mut self.commands } else { &mut self.replies };
        let r = stream.feed(data, gap, meta, &mut done);
        if !done.is_empty() {
            self.errors = 0;
        }
        for (v, last) in done {
            if is_command {
                self.command(v, last, out);
            } else {
                self.reply(v, last, out);
            }
        }
        if r.is_err() {
            if is_command {
                // A command cut where its framing was: report what is known of it
                // (not one that turned out to be garbage).
                let partial = self.commands.partial.take().filter(|v| !v.strings.is_empty());
                if let (Some(v), Err(Error::Uncaptured)) = (partial, r) {
                    self.command(v, meta, out);
                }
            } else {
                // A reply's type is its first byte: a cut reply still answers its command.
                if let Some(v) = self.replies.partial.take() {
                    self.reply(v, meta, out);
                }
                self.replies_lost = true;
            }
        }
        match r {
            Ok(()) => {}
            Err(Error::Uncaptured) => out.push(Message::Error("redis_uncaptured")),
            Err(Error::Malformed) => {
                out.push(Message::Error("redis_malformed"));
                self.errors += 1;
                if self.errors >= MAX_ERRORS {
                    self.dead = true;
                    out.push(Message::Error("redis_gave_up"));
                }
            }
        }
    }
}

/// Whether a connection's first bytes are a RESP command: an array of bulk strings.
pub fn looks_like_command(data: &[u8]) -> bool {
    let Some(rest) = data.strip_prefix(b"*") else { return false };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 8 {
        return false;
    }
    let rest = &rest[digits..];
    match rest {
        [b'\r', b'\n', b'$', ..] => true,
        // Cut by the copy cap right after the array header.
        [] | [b'\r'] | [b'\r', b'\n'] => true,
        _ => false,
    }
}

/// Whether the first bytes on port 6379 are an inline command (a word of letters).
pub fn looks_like_inline(data: &[u8]) -> bool {
    let word = data.iter().take_while(|b| b.is_ascii_alphabetic()).count();
    word > 0 && matches!(data.get(word), Some(b' ' | b'\r' | b'\n') | None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(n: u64) -> Meta {
        Meta { enter_ns: n * 10, exit_ns: n * 10 + 5, tid: 1, seq: 0, trace_id: n }
    }

    fn cmd(args: &[&str]) -> Vec<u8> {
        let mut v = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            v.extend_from_slice(format!("${}\r\n{}\r\n", a.len(), a).as_bytes());
        }
        v
    }

    /// Feeds client-side traffic: commands written, replies read.
    fn run(s: &mut RedisSession, steps: &[(Direction, &[u8])]) -> Vec<Message> {
        let mut out = Vec::new();
        for (i, (d, b)) in steps.iter().enumerate() {
            s.feed(*d, b, b.len() as u64, meta(i as u64), &mut out);
        }
        out
    }

    fn reqs(out: &[Message]) -> Vec<(String, String)> {
        out.iter()
            .filter_map(|m| match m {
                Message::Request { req, .. } => {
                    Some((req.request_type.clone(), req.request_resource.clone()))
                }
                _ => None,
            })
            .collect()
    }

    fn resps(out: &[Message]) -> Vec<(&'static str, Option<String>, u64)> {
        out.iter()
            .filter_map(|m| match m {
                Message::Response { resp, .. } => Some((resp.status, resp.exception.clone(), resp.length)),
                _ => None,
            })
            .collect()
    }

    use Direction::{Egress as W, Ingress as R};

    #[test]
    fn commands_and_replies_pair_in_order() {
        let set = cmd(&["set", "user:1", "alice"]);
        let get = cmd(&["GET", "user:1"]);
        let mut s = RedisSession::new(Side::Client);
        let out = run(&mut s, &[(W, &set), (R, b"+OK\r\n"), (W, &get), (R, b"$5\r\nalice\r\n")]);
        assert_eq!(
            reqs(&out),
            vec![("SET".into(), "SET user:1".into()), ("GET".into(), "GET user:1".into())]
        );
        assert_eq!(resps(&out), vec![("ok", None, 5), ("ok", None, 11)]);
        let Message::Request { req, first, last, .. } = &out[0] else { panic!() };
        assert_eq!(
            (req.length, req.endpoint.as_str(), *first, *last),
            (set.len() as u64, "SET", meta(0), meta(0))
        );
    }

    #[test]
    fn errors_pipelines_and_nested_replies() {
        let mut batch = cmd(&["LPUSH", "k", "a"]);
        batch.extend(cmd(&["GET", "k"]));
        batch.extend(cmd(&["LRANGE", "k", "0", "-1"]));
        batch.extend(cmd(&["AUTH", "hunter2"]));
        let replies = b":1\r\n-WRONGTYPE Operation against a key holding the wrong kind of value\r\n*2\r\n$1\r\na\r\n*1\r\n:5\r\n-ERR AUTH <password> called without any password configured\r\n";
        let mut s = RedisSession::new(Side::Client);
        let out = run(&mut s, &[(W, &batch), (R, replies)]);
        assert_eq!(reqs(&out).len(), 4);
        assert_eq!(reqs(&out)[3], ("AUTH".into(), "AUTH".into()), "the password never leaves the node");
        let r = resps(&out);
        assert_eq!(r.len(), 4);
        assert_eq!(r[1].0, "server_error");
        assert_eq!(
            r[1].1.as_deref(),
            Some("WRONGTYPE Operation against a key holding the wrong kind of value")
        );
        assert_eq!((r[2].0, r[2].2), ("ok", 19));
        assert_eq!(r[3].0, "server_error");
    }

    #[test]
    fn split_at_every_byte() {
        let c = cmd(&["HSET", "h", "field", "value"]);
        let reply = b"*3\r\n$3\r\nfoo\r\n%1\r\n+k\r\n:1\r\n_\r\n";
        for cut in 0..=c.len() {
            for rcut in 0..=reply.len() {
                let mut s = RedisSession::new(Side::Client);
                let out =
                    run(&mut s, &[(W, &c[..cut]), (W, &c[cut..]), (R, &reply[..rcut]), (R, &reply[rcut..])]);
                assert_eq!(reqs(&out), vec![("HSET".into(), "HSET h".into())], "cut {cut}");
                assert_eq!(resps(&out), vec![("ok", None, reply.len() as u64)], "cut {cut}/{rcut}");
                let Message::Request { first, last, .. } = &out[0] else { panic!() };
                let expect = match cut {
                    0 => (meta(1), meta(1)),
                    n if n == c.len() => (meta(0), meta(0)),
                    _ => (meta(0), meta(1)),
                };
                assert_eq!((*first, *last), expect, "cut {cut}");
            }
        }
    }

    #[test]
    fn oversized_value_beyond_copy_cap() {
        let big = "x".repeat(100_000);
        let set = cmd(&["SET", "blob", &big]);
        let mut s = RedisSession::new(Side::Client);
        let mut out = Vec::new();
        // The copy cap kept 4096 of the write's bytes.
        s.feed(W, &set[..4096], set.len() as u64, meta(1), &mut out);
        s.feed(R, b"+OK\r\n", 5, meta(2), &mut out);
        s.feed(W, &cmd(&["GET", "blob"]), 23, meta(3), &mut out);
        let get_reply = format!("$100000\r\n{big}\r\n");
        s.feed(R, &get_reply.as_bytes()[..4096], get_reply.len() as u64, meta(4), &mut out);
        assert_eq!(reqs(&out), vec![("SET".into(), "SET blob".into()), ("GET".into(), "GET blob".into())]);
        assert_eq!(resps(&out), vec![("ok", None, 5), ("ok", None, get_reply.len() as u64)]);
        let Message::Request { req, .. } = &out[0] else { panic!() };
        assert_eq!(req.length, set.len() as u64);
        // A cap that cuts framing (a second command after the big one) is counted, and
        // the next read is parsed afresh.
        let mut two = cmd(&["SET", "a", &big]);
        two.extend(cmd(&["PING"]));
        let mut out = Vec::new();
        s.feed(W, &two[..4096], two.len() as u64, meta(5), &mut out);
        assert!(out.contains(&Message::Error("redis_uncaptured")), "{out:?}");
        s.feed(W, &cmd(&["PING"]), 14, meta(6), &mut out);
        assert_eq!(reqs(&out), vec![("SET".into(), "SET a".into()), ("PING".into(), "PING".into())]);
        // A long first argument is cut to MAX_TEXT bytes.
        let long_key = "k".repeat(1000);
        let mut out = Vec::new();
        let get = cmd(&["GET", &long_key]);
        s.feed(W, &get, get.len() as u64, meta(7), &mut out);
        assert_eq!(reqs(&out)[0].1.len(), 4 + MAX_TEXT);
    }

    #[test]
    fn nested_reply_beyond_copy_cap_answers_its_command() {
        // COMMAND DOCS (redis-cli sends it first): a big nested reply of small elements,
        // read 16 KiB at a time with 4 KiB copied.
        let mut reply = b"*400\r\n".to_vec();
        for i in 0..400 {
            reply.extend(
                format!(
                    "*2\r\n$7\r\ncommand\r\n%1\r\n+summary\r\n$30\r\nsome words about command {i:05}\r\n"
                )
                .as_bytes(),
            );
        }
        let mut s = RedisSession::new(Side::Client);
        let mut out = Vec::new();
        s.feed(W, &cmd(&["COMMAND", "DOCS"]), 24, meta(1), &mut out);
        for (i, chunk) in reply.chunks(16384).enumerate() {
            let n = chunk.len().min(4096);
            s.feed(R, &chunk[..n], chunk.len() as u64, meta(2 + i as u64), &mut out);
        }
        s.feed(W, &cmd(&["GET", "k"]), 20, meta(10), &mut out);
        s.feed(R, b"$1\r\nv\r\n", 7, meta(11), &mut out);
        assert_eq!(
            reqs(&out),
            vec![("COMMAND".into(), "COMMAND DOCS".into()), ("GET".into(), "GET k".into())]
        );
        let r = resps(&out);
        assert_eq!(r.len(), 2, "{out:?}");
        assert_eq!(r[0].0, "ok");
        assert!(
            (16384..reply.len() as u64).contains(&r[0].2),
            "the cut reply counts the reads it was seen in: {}",
            r[0].2
        );
        assert_eq!(r[1], ("ok", None, 7));
        assert_eq!(out.iter().filter(|m| matches!(m, Message::Error(_))).count(), 1, "{out:?}");

        // Pipelined: replies lost mid-way answer their commands as unknown.
        let mut s = RedisSession::new(Side::Client);
        let mut out = Vec::new();
        let three = [cmd(&["COMMAND", "DOCS"]), cmd(&["PING"]), cmd(&["PING"])].concat();
        s.feed(W, &three, three.len() as u64, meta(1), &mut out);
        let mut replies = reply.clone();
        replies.extend(b"+PONG\r\n+PONG\r\n");
        s.feed(R, &replies[..4096], replies.len() as u64, meta(2), &mut out);
        s.feed(W, &cmd(&["PING"]), 14, meta(3), &mut out);
        s.feed(R, b"+PONG\r\n", 7, meta(4), &mut out);
        let statuses: Vec<_> = resps(&out).iter().map(|r| r.0).collect();
        assert_eq!(statuses, vec!["ok", "unknown", "unknown", "ok"]);
    }

    #[test]
    fn garbage_resyncs_then_gives_up() {
        let mut s = RedisSession::new(Side::Client);
        let out = run(&mut s, &[(W, b"*2\r\n$3\r\nGET\r\nxx\r\n"), (W, &cmd(&["PING"])), (R, b"+PONG\r\n")]);
        assert_eq!(out[0], Message::Error("redis_malformed"));
        assert_eq!(reqs(&out), vec![("PING".into(), "PING".into())]);
        assert_eq!(resps(&out).len(), 1);
        let mut s = RedisSession::new(Side::Client);
        let junk: Vec<(Direction, &[u8])> = (0..20).map(|_| (W, &b"\x16\x03\x01\x00\xff"[..])).collect();
        let out = run(&mut s, &junk);
        assert_eq!(
            out.iter().filter(|m| **m == Message::Error("redis_malformed")).count(),
            MAX_ERRORS as usize
        );
        assert_eq!(out.last(), Some(&Message::Error("redis_gave_up")));
        // Overlong lines and absurd lengths are errors, not allocations.
        let mut s = RedisSession::new(Side::Client);
        let long = vec![b'+'; MAX_LINE + 10];
        assert_eq!(run(&mut s, &[(W, &long)]), vec![Message::Error("redis_malformed")]);
        assert_eq!(run(&mut s, &[(W, b"$99999999999\r\n")]), vec![Message::Error("redis_malformed")]);
        assert_eq!(run(&mut s, &[(W, b"*-5\r\n")]), vec![Message::Error("redis_malformed")]);
        // Garbage in the replies: skipped until the client writes again.
        let mut s = RedisSession::new(Side::Client);
        let out = run(
            &mut s,
            &[
                (W, &cmd(&["PING"])),
                (R, b"\x16\x03"),
                (R, b"+PONG\r\n"),
                (W, &cmd(&["PING"])),
                (R, b"+PONG\r\n"),
            ],
        );
        let statuses: Vec<_> = resps(&out).iter().map(|r| r.0).collect();
        assert_eq!(statuses, vec!["unknown", "ok"], "{out:?}");
    }

    #[test]
    fn pubsub_pushes_are_counted_not_paired() {
        let mut s = RedisSession::new(Side::Client);
        let sub = cmd(&["SUBSCRIBE", "news", "alerts"]);
        let confirm =
            b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$6\r\nalerts\r\n:2\r\n";
        let msg = b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n";
        let resp3 = b">3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nyo\r\n";
        let out = run(
            &mut s,
            &[
                (W, &sub),
                (R, confirm),
                (R, msg),
                (R, resp3),
                (W, &cmd(&["PING"])),
                (R, b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"),
            ],
        );
        assert_eq!(reqs(&out).len(), 2);
        assert_eq!(resps(&out).len(), 2, "{out:?}");
        assert_eq!(out.iter().filter(|m| **m == Message::Error("redis_push")).count(), 3);
    }

    #[test]
    fn server_side_and_inline() {
        let mut s = RedisSession::new(Side::Server);
        let out = run(&mut s, &[(R, b"PING\r\n"), (W, b"+PONG\r\n"), (R, b"\r\nget  k1\n"), (W, b"$-1\r\n")]);
        assert_eq!(reqs(&out), vec![("PING".into(), "PING".into()), ("GET".into(), "GET k1".into())]);
        assert_eq!(resps(&out).len(), 2);
        assert!(looks_like_command(&cmd(&["PING"])));
        assert!(looks_like_command(b"*3"));
        assert!(!looks_like_command(b"*3 GET"));
        assert!(!looks_like_command(b"GET / HTTP/1.1\r\n"));
        assert!(looks_like_inline(b"PING\r\n"));
        assert!(!looks_like_inline(b"\x00\x00\x00\x08"));
    }
}

#[cfg(test)]
mod detect_tests {
    use crate::event::Direction::{Egress as W, Ingress as R};
    use crate::l7::{detect, Message};
    use crate::tracker::Meta;

    fn spans(s: &mut dyn crate::l7::Session, steps: &[(crate::event::Direction, &[u8])]) -> Vec<Message> {
        let mut out = Vec::new();
        for (d, b) in steps {
            s.feed(
                *d,
                b,
                b.len() as u64,
                Meta { enter_ns: 1, exit_ns: 2, tid: 1, seq: 0, trace_id: 1 },
                &mut out,
            );
        }
        out
    }

    #[test]
    fn detect_redis() {
        let ping = b"*1\r\n$4\r\nPING\r\n";
        // Any port: a RESP array of bulk strings is a command; its writer is the client.
        let mut s = detect(W, ping, 40000, 7000, false).expect("RESP command");
        assert_eq!(s.protocol(), "Redis");
        assert_eq!(spans(s.as_mut(), &[(W, ping), (R, b"+PONG\r\n")]).len(), 2);
        let mut s = detect(R, ping, 7000, 40000, false).expect("server side");
        assert_eq!(spans(s.as_mut(), &[(R, ping), (W, b"+PONG\r\n")]).len(), 2);
        // Port 6379: inline commands, or a capture that starts with a reply.
        let mut s = detect(R, b"+PONG\r\n", 40000, 6379, false).expect("port 6379");
        // The orphan reply is reported (the tracker counts it as response_without_request).
        let out = spans(s.as_mut(), &[(R, b"+PONG\r\n"), (W, ping), (R, b"+PONG\r\n")]);
        assert!(matches!(
            out[..],
            [Message::Response { .. }, Message::Request { .. }, Message::Response { .. }]
        ));
        assert!(detect(W, b"GET / HTTP/1.1\r\n\r\n", 40000, 80, false).is_none());
        assert!(detect(W, ping, 40000, 53, true).is_none(), "RESP is not DNS over UDP");
    }
}
