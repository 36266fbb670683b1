//! Per-connection reassembly: feeds each direction's HttpStream, pairs requests
//! with responses (FIFO, so pipelining works), assigns syscall trace ids and
//! builds one span per exchange. Runs on the worker thread only.
//!
//! A connection whose first payload an `l7::detect` recognises (HTTP/2, gRPC,
//! DNS, ...) gets an `l7::Session` instead: every later payload goes to it, and
//! the Requests and Responses it reports are paired by key (first in, first out
//! within a key) into spans built the same way.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use crate::event::{Direction, Event, Kind};
use crate::http::{self, Head, HttpStream, ParseError, Parsed, StartLine};
use crate::l7::{self, Message};
use crate::span::{status_of, Span};
use crate::stats::Counters;
use crate::syscall_trace::SyscallTraceIds;

/// What the tracker knows about one syscall, carried through the parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub enter_ns: u64,
    pub exit_ns: u64,
    pub tid: u32,
    pub seq: u32,
    pub trace_id: u64,
}

/// Monotonic (bpf_ktime_get_ns) to wall clock, measured once at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    offset_ns: i128,
}

impl Clock {
    pub fn from_offset_ns(offset_ns: i128) -> Self {
        Self { offset_ns }
    }

    /// realtime − monotonic, sampled between two monotonic reads.
    pub fn measure() -> Self {
        let read = |clk| {
            let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            // SAFETY: clock_gettime writes into the timespec we own.
            unsafe { libc::clock_gettime(clk, &mut ts) };
            ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
        };
        let m1 = read(libc::CLOCK_MONOTONIC);
        let r = read(libc::CLOCK_REALTIME);
        let m2 = read(libc::CLOCK_MONOTONIC);
        Self { offset_ns: r - (m1 + m2) / 2 }
    }

    pub fn now_mono_ns() -> u64 {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: as above.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }

    pub fn wall_us(&self, mono_ns: u64) -> u64 {
        ((mono_ns as i128 + self.offset_ns).max(0) / 1000) as u64
    }
}

/// Process metadata used in spans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcMeta {
    pub name: String,
    pub netns: Option<u64>,
    pub container_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Server,
    Client,
}

impl Role {
    fn request_dir(self) -> Direction {
        match self {
            Role::Server => Direction::Ingress,
            Role::Client => Direction::Egress,
        }
    }

    fn observation_point(self) -> &'static str {
        match self {
            Role::Server => "s-p",
            Role::Client => "c-p",
        }
    }
}

#[derive(Debug)]
struct Request {
    head: Head,
    meta: Meta,
    offset: usize,
    length: u64,
    serial: u64,
}

#[derive(Debug)]
struct Response {
    head: Head,
    meta: Meta,
    offset: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Request(u64),
    Response,
    Ignored,
}

/// A request reported by an L7 session, waiting for its response.
/// A connection's key: the kernel socket for syscall data, or (process, SSL
/// pointer) for TLS plaintext (SSL pointers are user addresses, unique per process
/// only: forked nginx workers often have equal ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ConnKey {
    Sock(u64),
    Tls(u32, u64),
}

/// A data syscall recently seen on a thread: the candidate socket of an SSL call
/// of that thread that spans it.
#[derive(Debug, Clone, Copy)]
struct RecentSyscall {
    sock: u64,
    enter_ns: u64,
    exit_ns: u64,
    seq: u32,
    dir: Direction,
    local: (IpAddr, u16),
    remote: (IpAddr, u16),
}

/// Syscalls remembered per thread (an SSL call makes one or two).
const RECENT_PER_THREAD: usize = 4;
const MAX_RECENT_THREADS: usize = 1 << 16;

#[derive(Debug)]
struct L7Request {
    first: Meta,
    req: l7::Request,
    serial: u64,
}

struct Conn {
    role: Option<Role>,
    /// The L7 session chosen from the first payload; None: HTTP/1.x.
    l7: Option<Box<dyn l7::Session>>,
    /// `l7::detect` ran (on the first non-empty payload).
    detected: bool,
    udp: bool,
    /// Requests by pairing key, oldest first, and how many in all.
    l7_pending: HashMap<u64, VecDeque<L7Request>>,
    l7_waiting: usize,
    /// Plaintext from OpenSSL uprobes rather than socket syscalls.
    is_tls: bool,
    ingress: HttpStream<Meta>,
    egress: HttpStream<Meta>,
    pending: VecDeque<Request>,
    in_flight: Option<(Request, Response)>,
    open: [Option<Open>; 2],
    pid: u32,
    comm: [u8; 16],
    local: (IpAddr, u16),
    remote: (IpAddr, u16),
    last_ns: u64,
    http_seen: bool,
    counted_non_http: bool,
}

fn dir_index(d: Direction) -> usize {
    match d {
        Direction::Ingress => 0,
        Direction::Egress => 1,
    }
}

impl Conn {
    fn new(ev: &Event, max_header: usize) -> Self {
        Self {
            role: None,
            l7: None,
            detected: false,
            udp: is_udp(ev),
            l7_pending: HashMap::new(),
            l7_waiting: 0,
            is_tls: false,
            ingress: HttpStream::new(max_header),
            egress: HttpStream::new(max_header),
            pending: VecDeque::new(),
            in_flight: None,
            open: [None, None],
            pid: ev.tgid,
            comm: ev.comm,
            local: ev.local,
            remote: ev.remote,
            last_ns: ev.exit_ns,
            http_seen: false,
            counted_non_http: false,
        }
    }

    /// Takes the oldest waiting L7 request (any key).
    fn pop_oldest_l7(&mut self) -> Option<L7Request> {
        let key = self
            .l7_pending
            .iter()
            .filter_map(|(k, q)| q.front().map(|r| (r.serial, *k)))
            .min()
            .map(|(_, k)| k)?;
        self.pop_l7(key)
    }

    fn pop_l7(&mut self, key: u64) -> Option<L7Request> {
        let q = self.l7_pending.get_mut(&key)?;
        let r = q.pop_front();
        if q.is_empty() {
            self.l7_pending.remove(&key);
        }
        if r.is_some() {
            self.l7_waiting -= 1;
        }
        r
    }

    fn stream(&mut self, d: Direction) -> &mut HttpStream<Meta> {
        match d {
            Direction::Ingress => &mut self.ingress,
            Direction::Egress => &mut self.egress,
        }
    }
}

/// Why a request is emitted without a response.
const WHY_CLOSED: &str = "connection closed before a response was seen";
const WHY_CAPTURE_END: &str = "capture ended before a response was seen";
const WHY_EVICTED: &str = "connection state evicted: too many open connections";
const WHY_OVERFLOW: &str = "too many pipelined requests waiting for responses";
const WHY_EXITED: &str = "process exited before a response was seen";
const WHY_REPLACED: &str = "socket reused before a response was seen";

/// Whether the event's socket is UDP (the BPF side passes UDP sockets to or
/// from port 53 only).
fn is_udp(ev: &Event) -> bool {
    ev.udp
}

pub struct Limits {
    pub max_connections: usize,
    pub max_pending: usize,
    /// Requests an L7 session may have waiting for responses on one
    /// connection (HTTP/2 multiplexes up to ~128 streams by default).
    pub max_l7_pending: usize,
    pub max_header: usize,
    /// Connections idle this long with nothing pending are forgotten.
    pub idle_ns: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 65_536,
            max_pending: 64,
            max_l7_pending: 1024,
            max_header: http::DEFAULT_MAX_HEADER,
            idle_ns: 300_000_000_000,
        }
    }
}

pub type ProcLookup = fn(u32) -> Option<ProcMeta>;

/// Chooses an L7 session from a connection's first payload (`l7::detect`).
pub type Detector = fn(Direction, &[u8], u16, u16, bool) -> Option<Box<dyn l7::Session>>;

pub struct Tracker {
    conns: HashMap<ConnKey, Conn>,
    /// Per thread, its last data syscalls (newest last).
    recent: HashMap<u32, VecDeque<RecentSyscall>>,
    /// Sockets that carry TLS -> the key of their plaintext connection. Their
    /// encrypted bytes are not parsed.
    tls_socks: HashMap<u64, ConnKey>,
    /// (pid, SSL pointer) -> the socket its calls were seen to use.
    ssl_sock: HashMap<(u32, u64), u64>,
    ids: SyscallTraceIds,
    procs: HashMap<u32, ProcMeta>,
    clock: Clock,
    counters: Arc<Counters>,
    lookup: ProcLookup,
    limits: Limits,
    serial: u64,
    parsed: Vec<Parsed<Meta>>,
    messages: Vec<Message>,
    detect: Detector,
}

impl Tracker {
    pub fn new(
        clock: Clock,
        counters: Arc<Counters>,
        ids: SyscallTraceIds,
        lookup: ProcLookup,
        limits: Limits,
    ) -> Self {
        Self {
            conns: HashMap::new(),
            recent: HashMap::new(),
            tls_socks: HashMap::new(),
            ssl_sock: HashMap::new(),
            ids,
            procs: HashMap::new(),
            clock,
            counters,
            lookup,
            limits,
            serial: 0,
            parsed: Vec::new(),
            messages: Vec::new(),
            detect: l7::detect,
        }
    }

    /// Replaces `l7::detect` (tests plug in their own sessions).
    pub fn with_detector(mut self, detect: Detector) -> Self {
        self.detect = detect;
        self
    }

    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    pub fn set_process(&mut self, pid: u32, meta: ProcMeta) {
        self.procs.insert(pid, meta);
    }

    /// The process is gone: its sockets closed without close(2) calls we could see.
    pub fn process_exited(&mut self, pid: u32, now_ns: u64, out: &mut Vec<Span>) {
        self.procs.remove(&pid);
        let keys: Vec<ConnKey> = self.conns.iter().filter(|(_, c)| c.pid == pid).map(|(k, _)| *k).collect();
        for k in keys {
            self.close_conn(k, now_ns, WHY_EXITED, out);
        }
        self.ssl_sock.retain(|(p, _), _| *p != pid);
        self.tls_socks.retain(|_, k| !matches!(k, ConnKey::Tls(p, _) if *p == pid));
    }

    pub fn on_event(&mut self, ev: &Event, out: &mut Vec<Span>) {
        match ev.kind {
            Kind::Data => self.on_data(ev, out),
            Kind::TlsData => self.on_tls(ev, out),
            Kind::Close => {
                self.close_conn(ConnKey::Sock(ev.sock), ev.enter_ns, WHY_CLOSED, out);
                if let Some(k) = self.tls_socks.remove(&ev.sock) {
                    self.close_conn(k, ev.enter_ns, WHY_CLOSED, out);
                }
            }
            Kind::Accept | Kind::Connect => {
                if self.conns.contains_key(&ConnKey::Sock(ev.sock)) {
                    self.close_conn(ConnKey::Sock(ev.sock), ev.enter_ns, WHY_REPLACED, out);
                }
                if let Some(k) = self.tls_socks.remove(&ev.sock) {
                    self.close_conn(k, ev.enter_ns, WHY_REPLACED, out);
                }
                let mut c = Conn::new(ev, self.limits.max_header);
                c.role = Some(if ev.kind == Kind::Accept { Role::Server } else { Role::Client });
                self.insert_conn(ConnKey::Sock(ev.sock), c, ev.exit_ns, out);
            }
        }
        self.counters.connections.store(self.conns.len() as u64, Relaxed);
    }

    /// End of capture: every exchange still open is emitted once.
    pub fn finish(&mut self, now_ns: u64, out: &mut Vec<Span>) {
        let keys: Vec<ConnKey> = self.conns.keys().copied().collect();
        for k in keys {
            self.close_conn(k, now_ns, WHY_CAPTURE_END, out);
        }
    }

    /// The sampling level went down to `keep` (src/budget.rs): forgets every
    /// connection whose socket is no longer sampled, without emitting spans for
    /// what it had pending. Returns (connections, requests) forgotten.
    pub fn shed(&mut self, keep: u32) -> (u64, u64) {
        let (mut conns, mut requests) = (0u64, 0u64);
        self.conns.retain(|key, c| {
            // TLS plaintext connections follow their socket's syscalls, which the
            // kernel side already samples; only socket connections are shed here.
            let ConnKey::Sock(sock) = key else { return true };
            if crate::budget::sampled(*sock, keep) {
                return true;
            }
            conns += 1;
            requests += c.pending.len() as u64 + u64::from(c.in_flight.is_some()) + c.l7_waiting as u64;
            false
        });
        self.counters.shed_connections.fetch_add(conns, Relaxed);
        self.counters.shed_requests.fetch_add(requests, Relaxed);
        self.counters.connections.store(self.conns.len() as u64, Relaxed);
        (conns, requests)
    }

    /// Forgets idle connections that have nothing pending.
    pub fn sweep(&mut self, now_ns: u64) {
        let idle = self.limits.idle_ns;
        self.conns.retain(|_, c| {
            !(now_ns.saturating_sub(c.last_ns) > idle
                && c.pending.is_empty()
                && c.in_flight.is_none()
                && c.l7_waiting == 0
                && !c.ingress.in_message()
                && !c.egress.in_message())
        });
        let conns = &self.conns;
        self.ssl_sock.retain(|(p, ssl), _| conns.contains_key(&ConnKey::Tls(*p, *ssl)));
        self.tls_socks.retain(|_, k| conns.contains_key(k));
    }

    fn insert_conn(&mut self, key: ConnKey, c: Conn, now_ns: u64, out: &mut Vec<Span>) {
        if self.conns.len() >= self.limits.max_connections {
            if let Some(oldest) = self.conns.iter().min_by_key(|(_, c)| c.last_ns).map(|(k, _)| *k) {
                Counters::inc(&self.counters.conn_table_full);
                self.close_conn(oldest, now_ns, WHY_EVICTED, out);
            }
        }
        self.conns.insert(key, c);
    }

    fn on_data(&mut self, ev: &Event, out: &mut Vec<Span>) {
        let meta = Meta {
            enter_ns: ev.enter_ns,
            exit_ns: ev.exit_ns,
            tid: ev.tid,
            seq: ev.tcp_seq,
            trace_id: self.ids.assign(ev.tid, ev.direction),
        };
        self.remember(ev);
        let key = ConnKey::Sock(ev.sock);
        if self.tls_socks.contains_key(&ev.sock) {
            // Encrypted bytes: their plaintext comes from the OpenSSL uprobes.
            Counters::inc(&self.counters.tls_encrypted_skipped);
            if let Some(c) = self.conns.get_mut(&key) {
                c.last_ns = ev.exit_ns;
            }
            return;
        }
        self.feed(key, ev, meta, out);
    }

    fn remember(&mut self, ev: &Event) {
        if self.recent.len() >= MAX_RECENT_THREADS && !self.recent.contains_key(&ev.tid) {
            self.recent.clear();
        }
        let q = self.recent.entry(ev.tid).or_default();
        if q.len() >= RECENT_PER_THREAD {
            q.pop_front();
        }
        q.push_back(RecentSyscall {
            sock: ev.sock,
            enter_ns: ev.enter_ns,
            exit_ns: ev.exit_ns,
            seq: ev.tcp_seq,
            dir: ev.direction,
            local: ev.local,
            remote: ev.remote,
        });
    }

    /// Plaintext of one SSL_read/SSL_write call. Its connection is the socket of
    /// the data syscall(s) the same thread made inside the call (OpenSSL's socket
    /// BIO reads and writes the SSL object's fd from the calling thread), or, when
    /// the call was served from OpenSSL's buffer without a syscall, the socket
    /// this SSL object used before. Spans then carry that socket's addresses, the
    /// TCP sequence number and syscall trace id of that syscall.
    fn on_tls(&mut self, ev: &Event, out: &mut Vec<Span>) {
        Counters::inc(&self.counters.tls_events);
        let ssl = (ev.tgid, ev.sock);
        let key = ConnKey::Tls(ev.tgid, ev.sock);
        let known = self.ssl_sock.get(&ssl).copied();
        let tls_socks = &self.tls_socks;
        let inside = self.recent.get(&ev.tid).and_then(|q| {
            let within = q
                .iter()
                .filter(|r| r.dir == ev.direction && r.enter_ns >= ev.enter_ns && r.exit_ns <= ev.exit_ns)
                .min_by_key(|r| r.enter_ns)
                .copied();
            // Served from OpenSSL's buffer: the bytes came with this thread's last
            // syscall in that direction (typically the handshake's last read, which
            // also brought the first request), if that syscall's socket is this SSL
            // object's or is no other SSL object's.
            within.or_else(|| {
                q.iter()
                    .rev()
                    .find(|r| r.dir == ev.direction && r.exit_ns <= ev.enter_ns)
                    .filter(|r| match known {
                        Some(k) => r.sock == k,
                        None => !matches!(tls_socks.get(&r.sock), Some(k) if *k != key),
                    })
                    .copied()
            })
        });
        if let Some(r) = inside {
            let old = known;
            if old.is_some_and(|o| o != r.sock) {
                // The SSL object was freed and its memory reused for another connection.
                self.close_conn(key, ev.enter_ns, WHY_REPLACED, out);
                if let Some(o) = old {
                    self.tls_socks.remove(&o);
                }
            }
            self.ssl_sock.insert(ssl, r.sock);
            if let Some(prev) = self.tls_socks.insert(r.sock, key) {
                if prev != key {
                    self.close_conn(prev, ev.enter_ns, WHY_REPLACED, out);
                }
            }
        }
        let sock = inside.map(|r| r.sock).or_else(|| self.ssl_sock.get(&ssl).copied());
        if sock.is_none() {
            Counters::inc(&self.counters.tls_without_socket);
        }
        let meta = Meta {
            enter_ns: ev.enter_ns,
            exit_ns: ev.exit_ns,
            tid: ev.tid,
            seq: inside.map(|r| r.seq).unwrap_or(0),
            // The SSL call counts as one more ingress/egress of its thread, after the
            // encrypted syscalls it made (whose ids it then shares). For a request
            // served from OpenSSL's buffer this gives the id that the upstream call
            // the request causes will carry, where the older read's id would not.
            trace_id: self.ids.assign(ev.tid, ev.direction),
        };
        // Addresses and role from the socket (its accept/connect, or the syscall).
        let raw = sock.and_then(|s| self.conns.get(&ConnKey::Sock(s)));
        let addrs = raw.map(|c| (c.local, c.remote)).or(inside.map(|r| (r.local, r.remote)));
        let role = raw.and_then(|c| c.role);
        if !self.conns.contains_key(&key) {
            let mut c = Conn::new(ev, self.limits.max_header);
            c.is_tls = true;
            c.role = role;
            self.insert_conn(key, c, ev.exit_ns, out);
        }
        if let (Some(c), Some((local, remote))) = (self.conns.get_mut(&key), addrs) {
            if local.1 != 0 || remote.1 != 0 {
                c.local = local;
                c.remote = remote;
            }
        }
        self.feed(key, ev, meta, out);
    }

    fn feed(&mut self, key: ConnKey, ev: &Event, meta: Meta, out: &mut Vec<Span>) {
        if !self.conns.contains_key(&key) {
            let c = Conn::new(ev, self.limits.max_header);
            self.insert_conn(key, c, ev.exit_ns, out);
        }
        let mut parsed = std::mem::take(&mut self.parsed);
        parsed.clear();
        let Some(conn) = self.conns.get_mut(&key) else { return };
        conn.last_ns = ev.exit_ns;
        conn.pid = ev.tgid;
        conn.comm = ev.comm;
        if ev.local.1 != 0 || ev.remote.1 != 0 {
            conn.local = ev.local;
            conn.remote = ev.remote;
        }
        if !conn.detected && !ev.payload.is_empty() {
            conn.detected = true;
            conn.l7 = (self.detect)(ev.direction, &ev.payload, conn.local.1, conn.remote.1, conn.udp);
            if let Some(s) = &conn.l7 {
                self.counters.l7_connection(s.protocol());
            }
        }
        if let Some(session) = conn.l7.as_mut() {
            let mut msgs = std::mem::take(&mut self.messages);
            msgs.clear();
            session.feed(ev.direction, &ev.payload, ev.total as u64, meta, &mut msgs);
            let protocol = session.protocol();
            for m in msgs.drain(..) {
                self.handle_l7(key, ev.direction, protocol, m, meta, out);
            }
            self.messages = msgs;
            self.parsed = parsed;
            return;
        }
        conn.stream(ev.direction).feed(&ev.payload, ev.total as u64, meta, &mut parsed);
        for p in parsed.drain(..) {
            self.handle(key, ev.direction, p, meta, out);
        }
        self.parsed = parsed;
    }

    fn handle(&mut self, key: ConnKey, dir: Direction, p: Parsed<Meta>, now: Meta, out: &mut Vec<Span>) {
        let max_pending = self.limits.max_pending;
        let Some(conn) = self.conns.get_mut(&key) else { return };
        let mut em = Emitter {
            procs: &mut self.procs,
            lookup: self.lookup,
            clock: self.clock,
            counters: &self.counters,
        };
        let di = dir_index(dir);
        match p {
            Parsed::Head { head, meta, offset } => {
                conn.http_seen = true;
                if head.is_request() {
                    let role = *conn.role.get_or_insert(if dir == Direction::Ingress {
                        Role::Server
                    } else {
                        Role::Client
                    });
                    if role.request_dir() != dir {
                        conn.open[di] = Some(Open::Ignored);
                        return;
                    }
                    self.serial += 1;
                    let serial = self.serial;
                    let method = head.method().unwrap_or("").to_string();
                    let length = head.header_len as u64;
                    conn.pending.push_back(Request { head, meta, offset, length, serial });
                    conn.open[di] = Some(Open::Request(serial));
                    conn.stream(opposite(dir)).expect_response_to(&method);
                    if conn.pending.len() > max_pending {
                        Counters::inc(&em.counters.pending_overflow);
                        let req = conn.pending.pop_front().expect("non-empty");
                        out.push(em.span(conn, req, None, now.exit_ns, Some(WHY_OVERFLOW.into())));
                    }
                } else {
                    let role = *conn.role.get_or_insert(if dir == Direction::Ingress {
                        Role::Client
                    } else {
                        Role::Server
                    });
                    let code = head.status().unwrap_or(0);
                    if role.request_dir() == dir || ((100..200).contains(&code) && code != 101) {
                        conn.open[di] = Some(Open::Ignored);
                        return;
                    }
                    if code == 101 {
                        conn.stream(opposite(dir)).set_upgraded();
                    }
                    match conn.pending.pop_front() {
                        Some(req) => {
                            conn.in_flight = Some((req, Response { head, meta, offset }));
                            conn.open[di] = Some(Open::Response);
                        }
                        None => {
                            Counters::inc(&em.counters.response_without_request);
                            conn.open[di] = Some(Open::Ignored);
                        }
                    }
                }
            }
            Parsed::End { length, meta: _, complete: _ } => match conn.open[di].take() {
                Some(Open::Request(serial)) => {
                    if let Some(r) = conn.pending.iter_mut().rev().find(|r| r.serial == serial) {
                        r.length = length;
                    } else if let Some((r, _)) = conn.in_flight.as_mut().filter(|(r, _)| r.serial == serial) {
                        r.length = length;
                    }
                }
                Some(Open::Response) => {
                    if let Some((req, resp)) = conn.in_flight.take() {
                        out.push(em.span(conn, req, Some((resp, Some(length))), now.exit_ns, None));
                    }
                }
                Some(Open::Ignored) | None => {}
            },
            Parsed::Error { error, lost_message } => {
                if error != ParseError::NotHttp || conn.http_seen {
                    em.counters.parse_error(&error);
                } else if !conn.counted_non_http {
                    conn.counted_non_http = true;
                    Counters::inc(&em.counters.non_http_connections);
                }
                let response_lost = lost_message
                    && conn.role.is_some_and(|r| r.request_dir() != dir)
                    && conn.in_flight.is_none();
                if response_lost {
                    if let Some(req) = conn.pending.pop_front() {
                        let why = format!("response not captured: {error}");
                        out.push(em.span(conn, req, None, now.exit_ns, Some(why)));
                    }
                }
            }
        }
    }

    fn handle_l7(
        &mut self,
        key: ConnKey,
        dir: Direction,
        protocol: &'static str,
        m: Message,
        now: Meta,
        out: &mut Vec<Span>,
    ) {
        let max_pending = self.limits.max_l7_pending;
        let Some(conn) = self.conns.get_mut(&key) else { return };
        let mut em = Emitter {
            procs: &mut self.procs,
            lookup: self.lookup,
            clock: self.clock,
            counters: &self.counters,
        };
        match m {
            Message::Request { key, first, last: _, req } => {
                let role = *conn.role.get_or_insert(if dir == Direction::Ingress {
                    Role::Server
                } else {
                    Role::Client
                });
                if role.request_dir() != dir {
                    em.counters.l7_error(protocol, "request_in_response_direction");
                    return;
                }
                self.serial += 1;
                conn.l7_pending.entry(key).or_default().push_back(L7Request {
                    first,
                    req,
                    serial: self.serial,
                });
                conn.l7_waiting += 1;
                if conn.l7_waiting > max_pending {
                    Counters::inc(&em.counters.pending_overflow);
                    if let Some(old) = conn.pop_oldest_l7() {
                        out.push(em.l7_span(conn, old, None, now.exit_ns, Some(WHY_OVERFLOW.into())));
                    }
                }
            }
            Message::Response { key, first, last: _, resp } => {
                let role = *conn.role.get_or_insert(if dir == Direction::Ingress {
                    Role::Client
                } else {
                    Role::Server
                });
                if role.request_dir() == dir {
                    em.counters.l7_error(protocol, "response_in_request_direction");
                    return;
                }
                match conn.pop_l7(key) {
                    Some(req) => out.push(em.l7_span(conn, req, Some((first, resp)), now.exit_ns, None)),
                    None => Counters::inc(&em.counters.response_without_request),
                }
            }
            Message::Error(reason) => em.counters.l7_error(protocol, reason),
        }
    }

    fn close_conn(&mut self, key: ConnKey, now_ns: u64, why: &'static str, out: &mut Vec<Span>) {
        if let ConnKey::Tls(pid, ssl) = key {
            self.ssl_sock.remove(&(pid, ssl));
        }
        let Some(conn) = self.conns.get_mut(&key) else { return };
        let now = Meta { enter_ns: now_ns, exit_ns: now_ns, tid: 0, seq: 0, trace_id: 0 };
        let mut ingress = Vec::new();
        let mut egress = Vec::new();
        conn.ingress.finish(now, &mut ingress);
        conn.egress.finish(now, &mut egress);
        for p in ingress {
            self.handle(key, Direction::Ingress, p, now, out);
        }
        for p in egress {
            self.handle(key, Direction::Egress, p, now, out);
        }
        let Some(mut conn) = self.conns.remove(&key) else { return };
        let mut em = Emitter {
            procs: &mut self.procs,
            lookup: self.lookup,
            clock: self.clock,
            counters: &self.counters,
        };
        if let Some((req, resp)) = conn.in_flight.take() {
            // A response head was seen but not its end: emit what is known.
            out.push(em.span(&conn, req, Some((resp, None)), now_ns, None));
        }
        while let Some(req) = conn.pending.pop_front() {
            out.push(em.span(&conn, req, None, now_ns, Some(why.into())));
        }
        while let Some(req) = conn.pop_oldest_l7() {
            out.push(em.l7_span(&conn, req, None, now_ns, Some(why.into())));
        }
        self.counters.connections.store(self.conns.len() as u64, Relaxed);
    }
}

fn opposite(d: Direction) -> Direction {
    match d {
        Direction::Ingress => Direction::Egress,
        Direction::Egress => Direction::Ingress,
    }
}

/// Builds spans; holds the pieces of Tracker that span building needs so the
/// connection table can stay mutably borrowed meanwhile.
struct Emitter<'a> {
    procs: &'a mut HashMap<u32, ProcMeta>,
    lookup: ProcLookup,
    clock: Clock,
    counters: &'a Counters,
}

impl Emitter<'_> {
    fn span(
        &mut self,
        conn: &Conn,
        req: Request,
        resp: Option<(Response, Option<u64>)>,
        give_up_ns: u64,
        why: Option<String>,
    ) -> Span {
        if !self.procs.contains_key(&conn.pid) {
            if let Some(m) = (self.lookup)(conn.pid) {
                self.procs.insert(conn.pid, m);
            }
        }
        Counters::inc(&self.counters.spans_sent);
        self.counters.span_of("HTTP");
        build_span(conn, self.procs.get(&conn.pid), self.clock, req, resp, give_up_ns, why)
    }

    fn l7_span(
        &mut self,
        conn: &Conn,
        req: L7Request,
        resp: Option<(Meta, l7::Response)>,
        give_up_ns: u64,
        why: Option<String>,
    ) -> Span {
        if !self.procs.contains_key(&conn.pid) {
            if let Some(m) = (self.lookup)(conn.pid) {
                self.procs.insert(conn.pid, m);
            }
        }
        Counters::inc(&self.counters.spans_sent);
        self.counters.span_of(req.req.l7_protocol);
        build_l7_span(conn, self.procs.get(&conn.pid), self.clock, req, resp, give_up_ns, why)
    }
}

/// Request attributes overlaid with response attributes (objects merge key by key).
fn merge_attributes(a: Option<serde_json::Value>, b: Option<serde_json::Value>) -> Option<serde_json::Value> {
    match (a, b) {
        (Some(serde_json::Value::Object(mut x)), Some(serde_json::Value::Object(y))) => {
            x.extend(y);
            Some(serde_json::Value::Object(x))
        }
        (a, None) => a,
        (_, b) => b,
    }
}

fn build_l7_span(
    conn: &Conn,
    proc_meta: Option<&ProcMeta>,
    clock: Clock,
    req: L7Request,
    resp: Option<(Meta, l7::Response)>,
    give_up_ns: u64,
    why: Option<String>,
) -> Span {
    let role = conn.role.unwrap_or(Role::Server);
    let ((client_ip, client_port), (server_ip, server_port)) = match role {
        Role::Server => (conn.remote, conn.local),
        Role::Client => (conn.local, conn.remote),
    };
    let (process_name, netns) = match proc_meta {
        Some(m) => (m.name.clone(), m.netns),
        None => (comm_str(&conn.comm), None),
    };
    let first = req.first;
    let r = req.req;
    let (trace_id, span_id) = match r.traceparent.as_deref().and_then(http::parse_traceparent) {
        Some((t, s)) => (Some(t), Some(s)),
        None => (None, None),
    };
    let start_ns = first.enter_ns;
    let (end_ns, code, status, exception, resp_len, resp_xrid, resp_trace, resp_seq, attributes) = match resp
    {
        Some((m, p)) => (
            m.exit_ns,
            p.code,
            p.status,
            p.exception,
            Some(p.length),
            p.x_request_id,
            Some(m.trace_id),
            (!conn.udp).then_some(m.seq),
            merge_attributes(r.attributes, p.attributes),
        ),
        None => (give_up_ns.max(start_ns), None, "unknown", why, None, None, None, None, r.attributes),
    };
    let start_us = clock.wall_us(start_ns);
    let end_us = clock.wall_us(end_ns.max(start_ns));
    Span {
        signal_source: "ebpf",
        observation_point: role.observation_point(),
        start_time_us: start_us,
        end_time_us: end_us,
        duration_us: end_us - start_us,
        pid: conn.pid,
        tid: first.tid,
        process_name,
        container_id: None,
        netns,
        interface: None,
        client_ip: client_ip.to_string(),
        client_port,
        server_ip: server_ip.to_string(),
        server_port,
        l4_protocol: if conn.udp { "UDP" } else { "TCP" },
        is_tls: conn.is_tls,
        l7_protocol: r.l7_protocol,
        version: r.version,
        request_type: r.request_type,
        request_domain: r.request_domain,
        request_resource: r.request_resource,
        endpoint: r.endpoint,
        response_code: code,
        response_status: status,
        response_exception: exception,
        request_length: r.length,
        response_length: resp_len,
        x_request_id_0: r.x_request_id,
        x_request_id_1: resp_xrid,
        trace_id,
        span_id,
        parent_span_id: None,
        syscall_trace_id_request: first.trace_id,
        syscall_trace_id_response: resp_trace,
        req_tcp_seq: if conn.udp { 0 } else { first.seq },
        resp_tcp_seq: resp_seq,
        app_service: None,
        app_instance: None,
        attributes,
    }
}

fn comm_str(c: &[u8; 16]) -> String {
    let end = c.iter().position(|&b| b == 0).unwrap_or(16);
    String::from_utf8_lossy(&c[..end]).into_owned()
}

fn build_span(
    conn: &Conn,
    proc_meta: Option<&ProcMeta>,
    clock: Clock,
    req: Request,
    resp: Option<(Response, Option<u64>)>,
    give_up_ns: u64,
    why: Option<String>,
) -> Span {
    let role = conn.role.unwrap_or(Role::Server);
    let ((client_ip, client_port), (server_ip, server_port)) = match role {
        Role::Server => (conn.remote, conn.local),
        Role::Client => (conn.local, conn.remote),
    };
    let (method, target) = match &req.head.start {
        StartLine::Request { method, target } => (method.clone(), target.clone()),
        StartLine::Response { .. } => (String::new(), String::new()),
    };
    let resource = http::resource_of(&target).to_string();
    let endpoint = http::endpoint_of(&resource).to_string();
    let domain = req.head.host.clone().or_else(|| http::host_of_target(&target).map(str::to_string));
    let (trace_id, span_id) = req.head.trace_ids();
    let attributes =
        header_attributes(&req.head.captured, resp.as_ref().map_or(&[][..], |(r, _)| &r.head.captured[..]));
    let start_ns = req.meta.enter_ns;
    let (end_ns, code, exception, resp_len, resp_xrid, resp_trace, resp_seq) = match &resp {
        Some((r, len)) => {
            let code = r.head.status();
            let exception = r.head.exception();
            (
                r.meta.exit_ns,
                code,
                exception,
                *len,
                r.head.x_request_id.clone(),
                Some(r.meta.trace_id),
                Some(if conn.is_tls { r.meta.seq } else { r.meta.seq.wrapping_add(r.offset as u32) }),
            )
        }
        None => (give_up_ns.max(start_ns), None, why, None, None, None, None),
    };
    let start_us = clock.wall_us(start_ns);
    let end_us = clock.wall_us(end_ns.max(start_ns));
    let (process_name, netns, container_id) = match proc_meta {
        Some(m) => (m.name.clone(), m.netns, m.container_id.clone()),
        None => (comm_str(&conn.comm), None, None),
    };
    Span {
        signal_source: "ebpf",
        observation_point: role.observation_point(),
        start_time_us: start_us,
        end_time_us: end_us,
        duration_us: end_us - start_us,
        pid: conn.pid,
        tid: req.meta.tid,
        process_name,
        container_id,
        netns,
        interface: None,
        client_ip: client_ip.to_string(),
        client_port,
        server_ip: server_ip.to_string(),
        server_port,
        l4_protocol: if conn.udp { "UDP" } else { "TCP" },
        l7_protocol: "HTTP",
        is_tls: conn.is_tls,
        version: req.head.version(),
        request_type: method,
        request_domain: domain,
        request_resource: resource,
        endpoint,
        response_code: code,
        response_status: status_of(code),
        response_exception: exception,
        request_length: req.length,
        response_length: resp_len,
        x_request_id_0: req.head.x_request_id.clone(),
        x_request_id_1: resp_xrid,
        trace_id,
        span_id,
        parent_span_id: None,
        syscall_trace_id_request: req.meta.trace_id,
        syscall_trace_id_response: resp_trace,
        // TLS: the sequence number of the encrypted syscall (no plaintext offset maps to it).
        req_tcp_seq: if conn.is_tls { req.meta.seq } else { req.meta.seq.wrapping_add(req.offset as u32) },
        resp_tcp_seq: resp_seq,
        app_service: None,
        app_instance: None,
        attributes,
    }
}

/// `attributes.headers` / `attributes.response_headers`: the headers asked for
/// with `--capture-header`, as the header policy let them out.
pub fn header_attributes(req: &[(String, String)], resp: &[(String, String)]) -> Option<serde_json::Value> {
    let mut m = serde_json::Map::new();
    if let Some(v) = crate::redact::to_json(req) {
        m.insert("headers".into(), v);
    }
    if let Some(v) = crate::redact::to_json(resp) {
        m.insert("response_headers".into(), v);
    }
    (!m.is_empty()).then_some(serde_json::Value::Object(m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Syscall;

    const SRV_SOCK: u64 = 0xAAAA;
    const UP_SOCK: u64 = 0xBBBB;

    fn tracker() -> (Tracker, Arc<Counters>) {
        let counters = Arc::new(Counters::default());
        let t = Tracker::new(
            Clock::from_offset_ns(1_700_000_000_000_000_000),
            counters.clone(),
            SyscallTraceIds::new(0),
            |_| None,
            Limits::default(),
        );
        (t, counters)
    }

    fn ev(sock: u64, dir: Direction, t_ns: u64, tid: u32, seq: u32, data: &[u8]) -> Event {
        let (local, remote) = if sock == SRV_SOCK {
            (("127.0.0.1".parse().unwrap(), 8080), ("127.0.0.1".parse().unwrap(), 40000))
        } else {
            (("127.0.0.1".parse().unwrap(), 41000), ("127.0.0.1".parse().unwrap(), 9090))
        };
        let mut comm = [0u8; 16];
        comm[..5].copy_from_slice(b"nginx");
        Event {
            kind: Kind::Data,
            syscall: if dir == Direction::Ingress { Syscall::Recvfrom } else { Syscall::Writev },
            direction: dir,
            enter_ns: t_ns,
            exit_ns: t_ns + 500,
            sock,
            tgid: 42,
            tid,
            fd: 3,
            total: data.len() as u32,
            tcp_seq: seq,
            local,
            remote,
            comm,
            flags: 0,
            udp: false,
            payload: data.to_vec(),
        }
    }

    fn lifecycle(sock: u64, kind: Kind, t_ns: u64) -> Event {
        let mut e = ev(sock, Direction::Ingress, t_ns, 1, 0, b"");
        e.kind = kind;
        e.syscall = Syscall::Close;
        e
    }

    const REQ: &[u8] = b"GET /items?id=1 HTTP/1.1\r\nHost: shop\r\nX-Request-ID: rid-1\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n";
    const RESP: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Request-ID: rid-1\r\n\r\nok";

    #[test]
    fn server_exchange_builds_one_sp_span() {
        let (mut t, c) = tracker();
        let mut out = Vec::new();
        t.on_event(&ev(SRV_SOCK, Direction::Ingress, 1_000_000, 7, 1000, REQ), &mut out);
        assert!(out.is_empty());
        t.on_event(&ev(SRV_SOCK, Direction::Egress, 3_000_000, 7, 5000, RESP), &mut out);
        assert_eq!(out.len(), 1);
        let s = &out[0];
        assert_eq!(s.observation_point, "s-p");
        assert_eq!((s.client_ip.as_str(), s.client_port), ("127.0.0.1", 40000));
        assert_eq!(s.server_port, 8080);
        assert_eq!(s.request_type, "GET");
        assert_eq!(s.request_resource, "/items?id=1");
        assert_eq!(s.endpoint, "/items");
        assert_eq!(s.request_domain.as_deref(), Some("shop"));
        assert_eq!(s.response_code, Some(200));
        assert_eq!(s.response_status, "ok");
        assert_eq!(s.response_exception, None);
        assert_eq!(s.request_length, REQ.len() as u64);
        assert_eq!(s.response_length, Some(RESP.len() as u64));
        assert_eq!(s.x_request_id_0.as_deref(), Some("rid-1"));
        assert_eq!(s.x_request_id_1.as_deref(), Some("rid-1"));
        assert_eq!(s.trace_id.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(s.span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert_eq!(s.req_tcp_seq, 1000);
        assert_eq!(s.resp_tcp_seq, Some(5000));
        // start = enter of the request syscall, end = exit of the response syscall.
        assert_eq!(s.start_time_us, 1_700_000_000_000_000 + 1_000);
        assert_eq!(s.end_time_us, 1_700_000_000_000_000 + 3_000);
        assert_eq!(s.duration_us, 2_000);
        assert_eq!(s.process_name, "nginx");
        assert_eq!((s.pid, s.tid), (42, 7));
        assert_eq!(s.version, "1.1");
        assert_eq!(c.spans_sent.load(Relaxed), 1);
    }

    #[test]
    fn client_exchange_is_cp_with_local_client() {
        let (mut t, _) = tracker();
        let mut out = Vec::new();
        t.on_event(
            &ev(UP_SOCK, Direction::Egress, 10, 7, 1, b"POST /up HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc"),
            &mut out,
        );
        t.on_event(
            &ev(
                UP_SOCK,
                Direction::Ingress,
                20,
                7,
                9,
                b"HTTP/1.0 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n",
            ),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        let s = &out[0];
        assert_eq!(s.observation_point, "c-p");
        assert_eq!((s.client_port, s.server_port), (41000, 9090));
        assert_eq!(s.request_length, 43);
        assert_eq!(s.response_status, "server_error");
        assert_eq!(s.response_exception.as_deref(), Some("Bad Gateway"));
        assert_eq!(s.version, "1.0");
    }

    #[test]
    fn keep_alive_three_exchanges_in_order() {
        let (mut t, _) = tracker();
        let mut out = Vec::new();
        for i in 0..3u64 {
            let r = format!("GET /n/{i} HTTP/1.1\r\nHost: h\r\n\r\n");
            t.on_event(&ev(SRV_SOCK, Direction::Ingress, 100 * i, 1, 0, r.as_bytes()), &mut out);
            t.on_event(
                &ev(
                    SRV_SOCK,
                    Direction::Egress,
                    100 * i + 50,
                    1,
                    0,
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
                ),
                &mut out,
            );
        }
        let paths: Vec<&str> = out.iter().map(|s| s.request_resource.as_str()).collect();
        assert_eq!(paths, vec!["/n/0", "/n/1", "/n/2"]);
        assert!(out
            .iter()
            .all(|s| s.response_status == "client_error"
                && s.response_exception.as_deref() == Some("Not Found")));
    }

    #[test]
    fn pipelined_requests_pair_in_order() {
        let (mut t, _) = tracker();
        let mut out = Vec::new();
        let two = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n";
        t.on_event(&ev(SRV_SOCK, Direction::Ingress, 0, 1, 100, two), &mut out);
        t.on_event(
            &ev(SRV_SOCK, Direction::Egress, 10, 1, 0, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"),
            &mut out,
        );
        t.on_event(
            &ev(SRV_SOCK, Direction::Egress, 20, 1, 0, b"HTTP/1.1 500 Oops\r\nContent-Length: 1\r\n\r\nb"),
            &mut out,
        );
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].request_resource.as_str(), out[0].response_code), ("/a", Some(200)));
        assert_eq!((out[1].request_resource.as_str(), out[1].response_code), ("/b", Some(500)));
        assert_eq!(out[1].req_tcp_seq, 128, "second request starts 28 bytes into the syscall");
        assert_eq!(out[1].response_exception.as_deref(), Some("Oops"));
    }

    #[test]
    fn pending_request_emitted_once_on_close() {
        let (mut t, _) = tracker();
        let mut out = Vec::new();
        t.on_event(&ev(SRV_SOCK, Direction::Ingress, 1_000, 1, 0, REQ), &mut out);
        t.on_event(&lifecycle(SRV_SOCK, Kind::Close, 9_000), &mut out);
        t.finish(20_000, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].response_status, "unknown");
        assert_eq!(out[0].response_code, None);
        assert_eq!(out[0].response_exception.as_deref(), Some(WHY_CLOSED));
        assert_eq!(out[0].duration_us, 8);
        assert_eq!(t.connections(), 0);
    }

    #[test]
    fn shed_forgets_unsampled_connections_and_counts_their_requests() {
        use crate::budget::{sock_bucket, SAMPLE_ALL};
        let (mut t, c) = tracker();
        let mut out = Vec::new();
        t.on_event(&ev(SRV_SOCK, Direction::Ingress, 1_000, 1, 0, REQ), &mut out);
        t.on_event(&ev(UP_SOCK, Direction::Egress, 1_100, 1, 0, REQ), &mut out);
        assert_eq!(t.connections(), 2);
        assert_eq!(t.shed(SAMPLE_ALL), (0, 0));
        // A level between the two buckets keeps exactly the lower one.
        let (lo, hi) = if sock_bucket(SRV_SOCK) < sock_bucket(UP_SOCK) {
            (SRV_SOCK, UP_SOCK)
        } else {
            (UP_SOCK, SRV_SOCK)
        };
        assert_ne!(sock_bucket(lo), sock_bucket(hi), "test sockets must differ in bucket");
        assert_eq!(t.shed(sock_bucket(hi)), (1, 1));
        assert_eq!(t.connections(), 1);
        assert_eq!(c.drops()["shed_connections"], 1);
        assert_eq!(c.drops()["shed_requests"], 1);
        t.finish(20_000, &mut out);
        // Only the kept connection's pending request becomes a span; the shed one is
        // counted, not reported as a timeout.
        assert_eq!(out.len(), 1);
        let _ = lo;
        assert_eq!(t.shed(0), (0, 0));
    }

    #[test]
    fn pending_request_emitted_at_capture_end() {
        let (mut t, _) = tracker();
        let mut out = Vec::new();
        t.on_event(&ev(SRV_SOCK, Direction::Ingress, 0, 1, 0, REQ), &mut out);
        t.finish(5_000, &mut out);
        t.finish(6_000, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].response_exception.as_deref(), Some(WHY_CAPTURE_END));
    }

    #[test]
    fn proxy_links_through_syscall_trace_ids() {
        let (mut t, _) = tracker();
        let mut out = Vec::new();
        let tid = 77;
        t.on_event(&ev(SRV_SOCK, Direction::Ingress, 0, tid, 0, REQ), &mut out);
        t.on_event(&ev(UP_SOCK, Direction::Egress, 10, tid, 0, REQ), &mut out);
        t.on_event(&ev(UP_SOCK, Direction::Ingress, 20, tid, 0, RESP), &mut out);
        t.on_event(&ev(SRV_SOCK, Direction::Egress, 30, tid, 0, RESP), &mut out);
        assert_eq!(out.len(), 2);
        let (cp, sp) = (&out[0], &out[1]);
        assert_eq!((cp.observation_point, sp.observation_point), ("c-p", "s-p"));
        assert_eq!(cp.syscall_trace_id_request, sp.syscall_trace_id_request);
        assert_eq!(cp.syscall_trace_id_response, sp.syscall_trace_id_response);
        assert_ne!(Some(sp.syscall_trace_id_request), sp.syscall_trace_id_response);
    }

    #[test]
    fn response_head_cut_by_the_cap_still_gives_its_status() {
        let (mut t, c) = tracker();
        let mut out = Vec::new();
        t.on_event(&ev(SRV_SOCK, Direction::Ingress, 0, 1, 0, REQ), &mut out);
        let mut resp = ev(SRV_SOCK, Direction::Egress, 10, 1, 0, b"HTTP/1.1 503 Busy\r\nConte");
        resp.total = 30_000;
        t.on_event(&resp, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].response_code, Some(503));
        assert_eq!(out[0].response_exception.as_deref(), Some("Busy"));
        assert_eq!(out[0].response_length, Some(30_000));
        assert_eq!(c.parse_error_count("header_truncated"), 1);
    }

    #[test]
    fn lost_response_head_releases_its_request() {
        let (mut t, c) = tracker();
        let mut out = Vec::new();
        t.on_event(&ev(SRV_SOCK, Direction::Ingress, 0, 1, 0, REQ), &mut out);
        let mut resp = ev(SRV_SOCK, Direction::Egress, 10, 1, 0, b"HTTP/1.1 20");
        resp.total = 30_000; // header block continues past the capture cap
        t.on_event(&resp, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].response_status, "unknown");
        assert!(out[0].response_exception.as_deref().unwrap().starts_with("response not captured"));
        assert_eq!(c.parse_error_count("header_truncated"), 1);
        // The next exchange pairs correctly.
        t.on_event(&ev(SRV_SOCK, Direction::Ingress, 20, 1, 0, REQ), &mut out);
        t.on_event(&ev(SRV_SOCK, Direction::Egress, 30, 1, 0, RESP), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].response_code, Some(200));
    }

    #[test]
    fn response_until_close_is_emitted_at_close() {
        let (mut t, _) = tracker();
        let mut out = Vec::new();
        t.on_event(&ev(UP_SOCK, Direction::Egress, 0, 1, 0, b"GET / HTTP/1.0\r\n\r\n"), &mut out);
        t.on_event(&ev(UP_SOCK, Direction::Ingress, 10, 1, 0, b"HTTP/1.0 200 OK\r\n\r\nstream"), &mut out);
        assert!(out.is_empty());
        t.on_event(&lifecycle(UP_SOCK, Kind::Close, 50), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].response_length, Some(25));
        assert_eq!(out[0].response_exception, None);
    }

    #[test]
    fn accept_sets_role_and_non_http_is_counted_once() {
        let (mut t, c) = tracker();
        let mut out = Vec::new();
        t.on_event(&lifecycle(SRV_SOCK, Kind::Accept, 0), &mut out);
        t.on_event(&ev(SRV_SOCK, Direction::Ingress, 1, 1, 0, b"\x16\x03\x01binary"), &mut out);
        t.on_event(&ev(SRV_SOCK, Direction::Ingress, 2, 1, 0, b"\x17\x03\x03more"), &mut out);
        t.on_event(&lifecycle(SRV_SOCK, Kind::Close, 3), &mut out);
        assert!(out.is_empty());
        assert_eq!(c.non_http_connections.load(Relaxed), 1);
        assert_eq!(c.parse_error_count("not_http"), 0);
    }

    #[test]
    fn response_first_sets_role_and_is_counted_as_orphan() {
        let (mut t, c) = tracker();
        let mut out = Vec::new();
        // Capture started mid-exchange: the first thing seen is a response we write.
        t.on_event(&ev(SRV_SOCK, Direction::Egress, 0, 1, 0, RESP), &mut out);
        t.on_event(&ev(SRV_SOCK, Direction::Ingress, 10, 1, 0, REQ), &mut out);
        t.on_event(&ev(SRV_SOCK, Direction::Egress, 20, 1, 0, RESP), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].observation_point, "s-p");
        assert_eq!(c.response_without_request.load(Relaxed), 1);
    }

    #[test]
    fn process_exit_flushes_its_connections() {
        let (mut t, _) = tracker();
        let mut out = Vec::new();
        t.on_event(&ev(SRV_SOCK, Direction::Ingress, 0, 1, 0, REQ), &mut out);
        t.process_exited(42, 100, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].response_exception.as_deref(), Some(WHY_EXITED));
        assert_eq!(t.connections(), 0);
    }

    const SSL: u64 = 0x5555_0000_1000;
    const REC_IN: &[u8] = b"\x17\x03\x03\x00\x40encrypted-request-record";
    const REC_OUT: &[u8] = b"\x17\x03\x03\x00\x40encrypted-response-record";

    /// A plaintext record of SSL_read/SSL_write, as tls.bpf.c sends it.
    fn tls_ev(ssl: u64, dir: Direction, enter: u64, exit: u64, tid: u32, data: &[u8]) -> Event {
        let mut e = ev(ssl, dir, enter, tid, 0, data);
        e.kind = Kind::TlsData;
        e.syscall = if dir == Direction::Ingress { Syscall::SslRead } else { Syscall::SslWrite };
        e.exit_ns = exit;
        e.fd = -1;
        e.local = ("0.0.0.0".parse().unwrap(), 0);
        e.remote = ("0.0.0.0".parse().unwrap(), 0);
        e
    }

    /// SSL_read whose read(2) brings the record, then SSL_write whose write(2) sends one.
    fn tls_exchange(t: &mut Tracker, out: &mut Vec<Span>, t0: u64, tid: u32, req: &[u8], resp: &[u8]) {
        t.on_event(&ev(SRV_SOCK, Direction::Ingress, t0 + 10, tid, 7000 + t0 as u32, REC_IN), out);
        t.on_event(&tls_ev(SSL, Direction::Ingress, t0, t0 + 600, tid, req), out);
        t.on_event(&ev(SRV_SOCK, Direction::Egress, t0 + 1010, tid, 9000 + t0 as u32, REC_OUT), out);
        t.on_event(&tls_ev(SSL, Direction::Egress, t0 + 1000, t0 + 1600, tid, resp), out);
    }

    #[test]
    fn tls_plaintext_builds_a_tls_span_on_its_socket() {
        let (mut t, c) = tracker();
        let mut out = Vec::new();
        t.on_event(&lifecycle(SRV_SOCK, Kind::Accept, 0), &mut out);
        // The handshake: not HTTP, counted once.
        t.on_event(&ev(SRV_SOCK, Direction::Ingress, 5, 9, 0, b"\x16\x03\x01\x02\x00client-hello"), &mut out);
        tls_exchange(&mut t, &mut out, 1_000, 9, REQ, RESP);
        assert_eq!(out.len(), 1, "one span, none from the encrypted bytes");
        let s = &out[0];
        assert!(s.is_tls);
        assert_eq!(s.observation_point, "s-p");
        assert_eq!((s.client_ip.as_str(), s.client_port, s.server_port), ("127.0.0.1", 40000, 8080));
        assert_eq!((s.request_type.as_str(), s.request_resource.as_str()), ("GET", "/items?id=1"));
        assert_eq!(s.response_code, Some(200));
        assert_eq!(s.x_request_id_0.as_deref(), Some("rid-1"));
        // Sequence numbers of the encrypted syscalls; timing of the SSL calls.
        assert_eq!((s.req_tcp_seq, s.resp_tcp_seq), (8000, Some(10_000)));
        assert_eq!(s.start_time_us, 1_700_000_000_000_000 + 1);
        assert_eq!(s.end_time_us, 1_700_000_000_000_000 + 2);
        assert_eq!(c.non_http_connections.load(Relaxed), 1);
        assert_eq!(c.parse_error_count("not_http"), 0);
        assert_eq!(c.tls_without_socket.load(Relaxed), 0);
        // The response record came after the socket was known to be TLS: skipped.
        assert_eq!(c.tls_encrypted_skipped.load(Relaxed), 1);
        // Keep-alive: the next exchange on the same SSL object pairs too.
        tls_exchange(&mut t, &mut out, 5_000, 9, REQ, RESP);
        assert_eq!(out.len(), 2);
        assert!(out[1].is_tls && out[1].client_port == 40000);
    }

    #[test]
    fn tls_syscall_trace_ids_link_to_a_plain_upstream_call() {
        let (mut t, _) = tracker();
        let mut out = Vec::new();
        let tid = 5;
        t.on_event(&lifecycle(SRV_SOCK, Kind::Accept, 0), &mut out);
        t.on_event(&ev(SRV_SOCK, Direction::Ingress, 110, tid, 1, REC_IN), &mut out);
        t.on_event(&tls_ev(SSL, Direction::Ingress, 100, 700, tid, REQ), &mut out);
        t.on_event(&ev(UP_SOCK, Direction::Egress, 800, tid, 0, REQ), &mut out);
        t.on_event(&ev(UP_SOCK, Direction::Ingress, 900, tid, 0, RESP), &mut out);
        t.on_event(&ev(SRV_SOCK, Direction::Egress, 1510, tid, 2, REC_OUT), &mut out);
        t.on_event(&tls_ev(SSL, Direction::Egress, 1500, 2100, tid, RESP), &mut out);
        assert_eq!(out.len(), 2);
        let (cp, sp) = (&out[0], &out[1]);
        assert_eq!((cp.observation_point, cp.is_tls), ("c-p", false));
        assert_eq!((sp.observation_point, sp.is_tls), ("s-p", true));
        assert_eq!(cp.syscall_trace_id_request, sp.syscall_trace_id_request);
    }

    #[test]
    fn tls_request_from_the_handshake_buffer_uses_the_last_read() {
        let (mut t, c) = tracker();
        let mut out = Vec::new();
        t.on_event(&lifecycle(SRV_SOCK, Kind::Accept, 0), &mut out);
        // TLS 1.3: the read that finished the handshake also brought the request
        // record; SSL_read then returns it without a syscall.
        t.on_event(&ev(SRV_SOCK, Direction::Ingress, 10, 3, 4242, REC_IN), &mut out);
        t.on_event(&tls_ev(SSL, Direction::Ingress, 600, 620, 3, REQ), &mut out);
        t.on_event(&ev(SRV_SOCK, Direction::Egress, 710, 3, 0, REC_OUT), &mut out);
        t.on_event(&tls_ev(SSL, Direction::Egress, 700, 1300, 3, RESP), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].req_tcp_seq, out[0].client_port), (4242, 40000));
        assert_eq!(c.tls_without_socket.load(Relaxed), 0);
    }

    #[test]
    fn tls_pending_request_is_emitted_when_its_socket_closes() {
        let (mut t, _) = tracker();
        let mut out = Vec::new();
        t.on_event(&lifecycle(SRV_SOCK, Kind::Accept, 0), &mut out);
        t.on_event(&ev(SRV_SOCK, Direction::Ingress, 110, 1, 0, REC_IN), &mut out);
        t.on_event(&tls_ev(SSL, Direction::Ingress, 100, 700, 1, REQ), &mut out);
        t.on_event(&lifecycle(SRV_SOCK, Kind::Close, 9_000), &mut out);
        assert_eq!(out.len(), 1);
        assert!(out[0].is_tls);
        assert_eq!(out[0].response_exception.as_deref(), Some(WHY_CLOSED));
        assert_eq!(t.connections(), 0);
        // The SSL object's memory is reused for the next connection on another socket.
        let other = SRV_SOCK + 1;
        t.on_event(&ev(other, Direction::Ingress, 10_010, 1, 0, REC_IN), &mut out);
        t.on_event(&tls_ev(SSL, Direction::Ingress, 10_000, 10_600, 1, REQ), &mut out);
        t.on_event(&ev(other, Direction::Egress, 10_710, 1, 0, REC_OUT), &mut out);
        t.on_event(&tls_ev(SSL, Direction::Egress, 10_700, 11_300, 1, RESP), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].response_code, Some(200));
    }

    #[test]
    fn equal_ssl_pointers_in_two_processes_stay_apart() {
        let (mut t, _) = tracker();
        let mut out = Vec::new();
        let (a, b) = (SRV_SOCK, SRV_SOCK + 2);
        let mut req_a = tls_ev(SSL, Direction::Ingress, 100, 700, 1, b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n");
        req_a.tgid = 100;
        let mut req_b = tls_ev(SSL, Direction::Ingress, 150, 700, 2, b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n");
        req_b.tgid = 200;
        let mut raw_a = ev(a, Direction::Ingress, 110, 1, 0, REC_IN);
        raw_a.tgid = 100;
        let mut raw_b = ev(b, Direction::Ingress, 160, 2, 0, REC_IN);
        raw_b.tgid = 200;
        t.on_event(&raw_a, &mut out);
        t.on_event(&raw_b, &mut out);
        t.on_event(&req_a, &mut out);
        t.on_event(&req_b, &mut out);
        let mut resp_b = tls_ev(SSL, Direction::Egress, 800, 900, 2, RESP);
        resp_b.tgid = 200;
        t.on_event(&resp_b, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].pid, out[0].request_resource.as_str()), (200, "/b"));
    }

    #[test]
    fn span_json_has_record_model_fields() {
        let (mut t, _) = tracker();
        let mut out = Vec::new();
        t.on_event(&ev(SRV_SOCK, Direction::Ingress, 0, 1, 0, REQ), &mut out);
        t.on_event(&ev(SRV_SOCK, Direction::Egress, 10, 1, 0, RESP), &mut out);
        let v = serde_json::to_value(&out[0]).unwrap();
        for k in [
            "signal_source",
            "observation_point",
            "start_time_us",
            "end_time_us",
            "duration_us",
            "pid",
            "tid",
            "process_name",
            "container_id",
            "netns",
            "client_ip",
            "client_port",
            "server_ip",
            "server_port",
            "l4_protocol",
            "l7_protocol",
            "is_tls",
            "version",
            "request_type",
            "request_domain",
            "request_resource",
            "endpoint",
            "response_code",
            "response_status",
            "response_exception",
            "request_length",
            "response_length",
            "x_request_id_0",
            "x_request_id_1",
            "trace_id",
            "span_id",
            "syscall_trace_id_request",
            "syscall_trace_id_response",
            "req_tcp_seq",
            "resp_tcp_seq",
        ] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        assert!(v.get("node").is_none(), "node is filled in by the reader");
        assert!(v["container_id"].is_null());
        assert_eq!(v["signal_source"], "ebpf");
    }

    /// A toy line protocol standing in for an L7 session: `Q <key> <name>` is a
    /// request, `A <key> <code>` a response (code ≥ 500 is a server error),
    /// anything else an error. One message per line.
    struct Toy;

    impl l7::Session for Toy {
        fn protocol(&self) -> &'static str {
            "Toy"
        }

        fn feed(&mut self, _dir: Direction, data: &[u8], total: u64, meta: Meta, out: &mut Vec<Message>) {
            let mut off = 0u32;
            for line in data.split_inclusive(|&b| b == b'\n') {
                let text = String::from_utf8_lossy(line);
                let f: Vec<&str> = text.split_whitespace().collect();
                let first = Meta { seq: meta.seq.wrapping_add(off), ..meta };
                off += line.len() as u32;
                let key = f.get(1).and_then(|k| k.parse::<u64>().ok());
                match (f.first().copied(), key, f.get(2)) {
                    (Some("Q"), Some(key), Some(name)) => out.push(Message::Request {
                        key,
                        first,
                        last: meta,
                        req: l7::Request {
                            l7_protocol: "Toy",
                            version: "1",
                            request_type: "Q".into(),
                            request_resource: name.to_string(),
                            endpoint: name.to_string(),
                            length: line.len() as u64,
                            x_request_id: Some(format!("x-{name}")),
                            attributes: Some(serde_json::json!({"q": name})),
                            ..Default::default()
                        },
                    }),
                    (Some("A"), Some(key), Some(code)) => {
                        let code: u16 = code.parse().unwrap_or(0);
                        out.push(Message::Response {
                            key,
                            first,
                            last: meta,
                            resp: l7::Response {
                                code: Some(code),
                                status: if code >= 500 { "server_error" } else { "ok" },
                                exception: (code >= 500).then(|| "boom".to_string()),
                                length: total.min(line.len() as u64),
                                x_request_id: None,
                                attributes: Some(serde_json::json!({"a": code})),
                            },
                        })
                    }
                    _ => out.push(Message::Error("garbage")),
                }
            }
        }
    }

    fn toy_detect(_: Direction, data: &[u8], _: u16, _: u16, _: bool) -> Option<Box<dyn l7::Session>> {
        (data.starts_with(b"Q ") || data.starts_with(b"A ")).then(|| Box::new(Toy) as Box<dyn l7::Session>)
    }

    fn toy_tracker(max_l7_pending: usize) -> (Tracker, Arc<Counters>) {
        let counters = Arc::new(Counters::default());
        let t = Tracker::new(
            Clock::from_offset_ns(1_700_000_000_000_000_000),
            counters.clone(),
            SyscallTraceIds::new(0),
            |_| None,
            Limits { max_l7_pending, ..Limits::default() },
        )
        .with_detector(toy_detect);
        (t, counters)
    }

    #[test]
    fn l7_session_pairs_by_key_out_of_order() {
        let (mut t, c) = toy_tracker(16);
        let mut out = Vec::new();
        t.on_event(&ev(SRV_SOCK, Direction::Ingress, 1_000, 7, 100, b"Q 1 alpha\nQ 3 beta\n"), &mut out);
        t.on_event(&ev(SRV_SOCK, Direction::Egress, 5_000, 7, 900, b"A 3 503\n"), &mut out);
        assert_eq!(out.len(), 1, "stream 3 answered first");
        t.on_event(&ev(SRV_SOCK, Direction::Egress, 9_000, 7, 908, b"A 1 200\n"), &mut out);
        assert_eq!(out.len(), 2);
        let (beta, alpha) = (&out[0], &out[1]);
        assert_eq!((beta.request_resource.as_str(), beta.response_code), ("beta", Some(503)));
        assert_eq!((alpha.request_resource.as_str(), alpha.response_code), ("alpha", Some(200)));
        assert_eq!(beta.response_status, "server_error");
        assert_eq!(beta.response_exception.as_deref(), Some("boom"));
        assert_eq!(alpha.response_status, "ok");
        assert_eq!(alpha.observation_point, "s-p");
        assert_eq!((alpha.client_port, alpha.server_port), (40000, 8080));
        assert_eq!((alpha.l7_protocol, alpha.version, alpha.l4_protocol), ("Toy", "1", "TCP"));
        assert_eq!(alpha.x_request_id_0.as_deref(), Some("x-alpha"));
        assert_eq!(alpha.req_tcp_seq, 100);
        assert_eq!(beta.req_tcp_seq, 110, "second request starts 10 bytes into the read");
        assert_eq!(alpha.resp_tcp_seq, Some(908));
        assert_eq!(alpha.start_time_us, 1_700_000_000_000_000 + 1);
        assert_eq!(alpha.end_time_us, 1_700_000_000_000_000 + 9, "exit of the response syscall");
        assert_eq!(alpha.attributes, Some(serde_json::json!({"q": "alpha", "a": 200})));
        assert_eq!(alpha.syscall_trace_id_request, beta.syscall_trace_id_request, "one read carried both");
        assert!(alpha.syscall_trace_id_response.is_some());
        assert_eq!(c.protocols().spans.get("Toy"), Some(&2));
        assert_eq!(c.protocols().connections.get("Toy"), Some(&1));
        assert_eq!(c.spans_sent.load(Relaxed), 2);
    }

    #[test]
    fn l7_requests_of_an_evicted_or_exited_connection_are_emitted_once() {
        let counters = Arc::new(Counters::default());
        let mut t = Tracker::new(
            Clock::from_offset_ns(0),
            counters.clone(),
            SyscallTraceIds::new(0),
            |_| None,
            Limits { max_connections: 1, ..Limits::default() },
        )
        .with_detector(toy_detect);
        let mut out = Vec::new();
        t.on_event(&ev(SRV_SOCK, Direction::Ingress, 0, 1, 0, b"Q 1 first\n"), &mut out);
        t.on_event(&ev(UP_SOCK, Direction::Egress, 10, 1, 0, b"Q 1 second\n"), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].request_resource, "first");
        assert_eq!(out[0].response_exception.as_deref(), Some(WHY_EVICTED));
        assert_eq!(counters.conn_table_full.load(Relaxed), 1);
        t.process_exited(42, 20, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].response_exception.as_deref(), Some(WHY_EXITED));
        t.finish(30, &mut out);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn l7_same_key_pairs_first_in_first_out() {
        let (mut t, _) = toy_tracker(16);
        let mut out = Vec::new();
        t.on_event(&lifecycle(UP_SOCK, Kind::Connect, 0), &mut out);
        t.on_event(&ev(UP_SOCK, Direction::Egress, 10, 1, 0, b"Q 0 one\nQ 0 two\n"), &mut out);
        t.on_event(&ev(UP_SOCK, Direction::Ingress, 20, 1, 0, b"A 0 201\nA 0 202\n"), &mut out);
        let got: Vec<(&str, Option<u16>, &str)> =
            out.iter().map(|s| (s.request_resource.as_str(), s.response_code, s.observation_point)).collect();
        assert_eq!(got, vec![("one", Some(201), "c-p"), ("two", Some(202), "c-p")]);
        assert_eq!((out[0].client_port, out[0].server_port), (41000, 9090));
    }

    #[test]
    fn l7_unanswered_requests_emitted_once_at_close_and_end() {
        let (mut t, _) = toy_tracker(16);
        let mut out = Vec::new();
        t.on_event(&ev(SRV_SOCK, Direction::Ingress, 1_000, 1, 0, b"Q 5 lost\nQ 7 also\n"), &mut out);
        t.on_event(&lifecycle(SRV_SOCK, Kind::Close, 4_000), &mut out);
        t.on_event(&ev(UP_SOCK, Direction::Egress, 5_000, 1, 0, b"Q 1 late\n"), &mut out);
        t.finish(9_000, &mut out);
        t.finish(10_000, &mut out);
        let got: Vec<(&str, &str, Option<&str>)> = out
            .iter()
            .map(|s| (s.request_resource.as_str(), s.response_status, s.response_exception.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("lost", "unknown", Some(WHY_CLOSED)),
                ("also", "unknown", Some(WHY_CLOSED)),
                ("late", "unknown", Some(WHY_CAPTURE_END)),
            ]
        );
        assert_eq!(out[0].response_code, None);
        assert_eq!(out[0].response_length, None);
        assert_eq!(out[0].duration_us, 3);
        assert_eq!(out[0].attributes, Some(serde_json::json!({"q": "lost"})));
        assert_eq!(t.connections(), 0);
    }

    #[test]
    fn l7_pending_cap_evicts_the_oldest_as_unknown() {
        let (mut t, c) = toy_tracker(2);
        let mut out = Vec::new();
        t.on_event(&ev(SRV_SOCK, Direction::Ingress, 0, 1, 0, b"Q 1 a\nQ 3 b\nQ 5 c\n"), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].request_resource, "a");
        assert_eq!(out[0].response_exception.as_deref(), Some(WHY_OVERFLOW));
        assert_eq!(c.pending_overflow.load(Relaxed), 1);
        t.on_event(&ev(SRV_SOCK, Direction::Egress, 10, 1, 0, b"A 1 200\nA 5 200\n"), &mut out);
        assert_eq!(out.len(), 2, "key 1 was evicted, so its response is an orphan");
        assert_eq!(out[1].request_resource, "c");
        assert_eq!(c.response_without_request.load(Relaxed), 1);
    }

    #[test]
    fn l7_detection_uses_the_first_payload_only() {
        let (mut t, c) = toy_tracker(16);
        let mut out = Vec::new();
        // First payload is HTTP/1: the connection stays HTTP/1 for good.
        t.on_event(&ev(SRV_SOCK, Direction::Ingress, 0, 1, 0, REQ), &mut out);
        t.on_event(&ev(SRV_SOCK, Direction::Egress, 10, 1, 0, RESP), &mut out);
        t.on_event(&ev(SRV_SOCK, Direction::Ingress, 20, 1, 0, b"Q 1 x\n"), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].l7_protocol, "HTTP");
        // First payload is the toy protocol: HTTP/1 bytes later go to the session.
        t.on_event(&ev(UP_SOCK, Direction::Egress, 30, 1, 0, b"Q 2 y\n"), &mut out);
        t.on_event(&ev(UP_SOCK, Direction::Egress, 40, 1, 0, REQ), &mut out);
        t.on_event(&ev(UP_SOCK, Direction::Ingress, 50, 1, 0, b"A 2 200\n"), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!((out[1].l7_protocol, out[1].request_resource.as_str()), ("Toy", "y"));
        let p = c.protocols();
        assert_eq!(p.errors["Toy"]["garbage"], 5, "each line of the HTTP/1 request, blank line included");
        assert_eq!((p.spans["HTTP"], p.spans["Toy"]), (1, 1));
        let v = serde_json::to_value(crate::stats::StatsFrame::collect(
            &c,
            Default::default(),
            1,
            false,
            Default::default(),
        ))
        .unwrap();
        assert_eq!(v["spans_by_protocol"], serde_json::json!({"HTTP": 1, "Toy": 1}));
        assert_eq!(v["l7_parse_errors"]["Toy"]["garbage"], 5);
        assert_eq!(v["l7_connections"]["Toy"], 1);
    }

    #[test]
    fn l7_empty_payload_does_not_decide_the_protocol() {
        let (mut t, _) = toy_tracker(16);
        let mut out = Vec::new();
        let mut empty = ev(SRV_SOCK, Direction::Ingress, 0, 1, 0, b"");
        empty.total = 100; // payload could not be read
        t.on_event(&empty, &mut out);
        t.on_event(&ev(SRV_SOCK, Direction::Ingress, 10, 1, 0, b"Q 9 z\n"), &mut out);
        t.on_event(&ev(SRV_SOCK, Direction::Egress, 20, 1, 0, b"A 9 204\n"), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].response_code, Some(204));
    }

    #[test]
    fn l7_messages_in_the_wrong_direction_are_counted_not_paired() {
        let (mut t, c) = toy_tracker(16);
        let mut out = Vec::new();
        t.on_event(&lifecycle(SRV_SOCK, Kind::Accept, 0), &mut out);
        // A server that writes a "request" and reads a "response": nonsense for its role.
        t.on_event(&ev(SRV_SOCK, Direction::Egress, 10, 1, 0, b"Q 1 x\n"), &mut out);
        t.on_event(&ev(SRV_SOCK, Direction::Ingress, 20, 1, 0, b"A 1 200\n"), &mut out);
        assert!(out.is_empty());
        let p = c.protocols();
        assert_eq!(p.errors["Toy"]["request_in_response_direction"], 1);
        assert_eq!(p.errors["Toy"]["response_in_request_direction"], 1);
    }

    fn h2_frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, ty, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn http2_preface_goes_to_the_http2_session_not_http1() {
        let (mut t, c) = tracker();
        let mut out = Vec::new();
        let mut enc = loona_hpack::Encoder::new();
        let mut req = crate::l7::http2::PREFACE.to_vec();
        let block = enc.encode([
            (&b":method"[..], &b"GET"[..]),
            (b":path", b"/v1/items?x=1"),
            (b":authority", b"svca"),
            (b"x-request-id", b"rid-h2"),
        ]);
        req.extend(h2_frame(1, 0x5, 1, &block));
        t.on_event(&lifecycle(UP_SOCK, Kind::Connect, 0), &mut out);
        t.on_event(&ev(UP_SOCK, Direction::Egress, 1_000, 3, 500, &req), &mut out);
        let mut senc = loona_hpack::Encoder::new();
        let block = senc.encode([(&b":status"[..], &b"502"[..])]);
        let mut resp = h2_frame(4, 0, 0, &[]);
        resp.extend(h2_frame(1, 0x5, 1, &block));
        t.on_event(&ev(UP_SOCK, Direction::Ingress, 4_000, 3, 900, &resp), &mut out);
        assert_eq!(out.len(), 1);
        let s = &out[0];
        assert_eq!((s.l7_protocol, s.version, s.observation_point), ("HTTP2", "2", "c-p"));
        assert_eq!(
            (s.request_type.as_str(), s.request_resource.as_str(), s.endpoint.as_str()),
            ("GET", "/v1/items?x=1", "/v1/items")
        );
        assert_eq!(s.request_domain.as_deref(), Some("svca"));
        assert_eq!((s.response_code, s.response_status), (Some(502), "server_error"));
        assert_eq!(s.response_exception.as_deref(), Some("Bad Gateway"));
        assert_eq!(s.x_request_id_0.as_deref(), Some("rid-h2"));
        assert_eq!(s.req_tcp_seq, 500 + 24, "the HEADERS frame follows the 24-byte preface");
        assert_eq!(s.resp_tcp_seq, Some(900 + 9), "after the empty SETTINGS frame");
        assert_eq!(s.duration_us, 3);
        assert_eq!(c.protocols().spans["HTTP2"], 1);
        assert_eq!(c.non_http_connections.load(Relaxed), 0);
        assert_eq!(c.parse_error_count("not_http"), 0);
    }

    /// An HTTP/1.x conversation on one server socket: (direction, syscall bytes).
    fn conversation() -> Vec<(Direction, Vec<u8>)> {
        let i = Direction::Ingress;
        let e = Direction::Egress;
        vec![
            // 100-continue: the interim response does not pair; the body follows it.
            (i, b"PUT /up HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n".to_vec()),
            (e, b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()),
            (i, b"hello".to_vec()),
            (e, b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok".to_vec()),
            // 103 Early Hints before the final response.
            (i, b"GET /page HTTP/1.1\r\nHost: h\r\n\r\n".to_vec()),
            (e, b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n".to_vec()),
            (e, b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc".to_vec()),
            // HEAD: Content-Length announced, no body follows.
            (i, b"HEAD /big HTTP/1.1\r\nHost: h\r\n\r\n".to_vec()),
            (e, b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n".to_vec()),
            // 204 and 304 carry no body whatever their headers say.
            (i, b"DELETE /x HTTP/1.1\r\nHost: h\r\n\r\nGET /cached HTTP/1.1\r\nHost: h\r\n\r\n".to_vec()),
            (e, b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n".to_vec()),
            // Chunked response.
            (i, b"GET /chunks HTTP/1.1\r\nHost: h\r\n\r\n".to_vec()),
            (e, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n".to_vec()),
            // WebSocket: after the 101 nothing on this socket is HTTP.
            (
                i,
                b"GET /ws/chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Request-ID: ws-1\r\n\r\n"
                    .to_vec(),
            ),
            (e, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n".to_vec()),
            (i, b"\x81\x92GET / HTTP/1.1\r\n\r\n".to_vec()),
            (e, b"\x81\x12HTTP/1.1 200 OK\r\n\r\n".to_vec()),
            (i, b"GET /not-a-request HTTP/1.1\r\nHost: h\r\n\r\n".to_vec()),
        ]
    }

    fn run_conversation(split: usize) -> (Vec<Span>, Arc<Counters>) {
        let (mut t, c) = tracker();
        let mut out = Vec::new();
        t.on_event(&lifecycle(SRV_SOCK, Kind::Accept, 0), &mut out);
        let mut n = 0u64;
        for (dir, bytes) in conversation() {
            for piece in bytes.chunks(split.max(1)) {
                n += 1;
                t.on_event(&ev(SRV_SOCK, dir, n * 100_000, 1, 0, piece), &mut out);
            }
        }
        t.on_event(&lifecycle(SRV_SOCK, Kind::Close, (n + 1) * 100_000), &mut out);
        (out, c)
    }

    /// (method, resource, code, request length, response length) per span.
    type Summary = (String, String, Option<u16>, u64, Option<u64>);

    fn summary(spans: &[Span]) -> Vec<Summary> {
        spans
            .iter()
            .map(|s| {
                (
                    s.request_type.clone(),
                    s.request_resource.clone(),
                    s.response_code,
                    s.request_length,
                    s.response_length,
                )
            })
            .collect()
    }

    #[test]
    fn http1_interim_head_no_body_chunked_and_websocket() {
        let (out, c) = run_conversation(usize::MAX);
        let got = summary(&out);
        // Lengths straight from the fixture: each request with its body, each final
        // response with its body (interim responses are not part of the exchange).
        let conv = conversation();
        let len = |k: usize| conv[k].1.len() as u64;
        let want: Vec<Summary> = vec![
            ("PUT".into(), "/up".into(), Some(201), len(0) + len(2), Some(len(3))),
            ("GET".into(), "/page".into(), Some(200), len(4), Some(len(6))),
            ("HEAD".into(), "/big".into(), Some(200), len(7), Some(len(8))),
            ("DELETE".into(), "/x".into(), Some(204), 31, Some(27)),
            ("GET".into(), "/cached".into(), Some(304), len(9) - 31, Some(len(10) - 27)),
            ("GET".into(), "/chunks".into(), Some(200), len(11), Some(len(12))),
            ("GET".into(), "/ws/chat".into(), Some(101), len(13), Some(len(14))),
        ];
        assert_eq!(b"DELETE /x HTTP/1.1\r\nHost: h\r\n\r\n".len(), 31);
        assert_eq!(b"HTTP/1.1 204 No Content\r\n\r\n".len(), 27);
        assert_eq!(got, want);
        assert!(out.iter().all(|s| s.response_status == "ok" && s.response_exception.is_none()));
        assert_eq!(out[6].x_request_id_0.as_deref(), Some("ws-1"));
        // The 100 Continue does not end the exchange: time to first byte is the 201's.
        // 100 µs per syscall: request at the 1st, 100 Continue at the 2nd, 201 at the 4th.
        assert_eq!(out[0].duration_us, 300);
        assert_eq!(c.parse_error_map().values().sum::<u64>(), 0, "{:?}", c.parse_error_map());
        assert_eq!(c.non_http_connections.load(Relaxed), 0);
        assert_eq!(c.response_without_request.load(Relaxed), 0);
    }

    #[test]
    fn http1_conversation_split_at_every_size_gives_the_same_spans() {
        let whole = summary(&run_conversation(usize::MAX).0);
        for split in [1, 2, 3, 5, 7, 13, 64] {
            let (out, c) = run_conversation(split);
            assert_eq!(summary(&out), whole, "split into {split}-byte reads");
            assert_eq!(c.parse_error_map().values().sum::<u64>(), 0, "split {split}");
        }
    }

    fn big_request(filler: usize) -> Vec<u8> {
        let mut r = b"GET /large HTTP/1.1\r\nHost: h\r\n".to_vec();
        for k in 0..filler {
            r.extend(format!("X-Filler-{k}: {}\r\n", "f".repeat(1000)).as_bytes());
        }
        r.extend(b"X-Request-ID: after-the-filler\r\n\r\n");
        r
    }

    #[test]
    fn large_header_block_over_many_reads_up_to_the_limit() {
        // 12 KB of headers in 1 KB reads: parsed whole under the 16 KiB default.
        let req = big_request(12);
        let (mut t, c) = tracker();
        let mut out = Vec::new();
        for (k, piece) in req.chunks(1024).enumerate() {
            t.on_event(&ev(SRV_SOCK, Direction::Ingress, k as u64, 1, 0, piece), &mut out);
        }
        t.on_event(&ev(SRV_SOCK, Direction::Egress, 100, 1, 0, RESP), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].x_request_id_0.as_deref(), Some("after-the-filler"));
        assert_eq!(out[0].request_length, req.len() as u64);
        assert_eq!(c.parse_error_count("header_too_large"), 0);

        // Over a smaller --max-header: method and target survive, later headers do not.
        let counters = Arc::new(Counters::default());
        let mut t = Tracker::new(
            Clock::from_offset_ns(0),
            counters.clone(),
            SyscallTraceIds::new(0),
            |_| None,
            Limits { max_header: 8 * 1024, ..Limits::default() },
        );
        let mut out = Vec::new();
        for (k, piece) in req.chunks(1024).enumerate() {
            t.on_event(&ev(SRV_SOCK, Direction::Ingress, k as u64, 1, 0, piece), &mut out);
        }
        t.on_event(&ev(SRV_SOCK, Direction::Egress, 100, 1, 0, RESP), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].request_type.as_str(), out[0].request_resource.as_str()), ("GET", "/large"));
        assert_eq!(out[0].x_request_id_0, None);
        assert_eq!(out[0].response_code, Some(200));
        assert_eq!(counters.parse_error_count("header_too_large"), 1);
    }

    #[test]
    fn garbage_and_truncated_http1_input() {
        let (mut t, c) = tracker();
        let mut out = Vec::new();
        // A request cut short by the close: emitted once as unknown.
        t.on_event(&ev(SRV_SOCK, Direction::Ingress, 0, 1, 0, b"GET /cut HTTP/1.1\r\nHost: h\r\n"), &mut out);
        t.on_event(&lifecycle(SRV_SOCK, Kind::Close, 10), &mut out);
        assert!(out.is_empty(), "no start line and headers complete: nothing to report");
        // Garbage after a valid exchange is counted, and the next request still pairs.
        t.on_event(&ev(UP_SOCK, Direction::Egress, 20, 1, 0, REQ), &mut out);
        t.on_event(&ev(UP_SOCK, Direction::Ingress, 30, 1, 0, RESP), &mut out);
        t.on_event(&ev(UP_SOCK, Direction::Ingress, 40, 1, 0, b"\x00\x01garbage\xff"), &mut out);
        t.on_event(&ev(UP_SOCK, Direction::Egress, 50, 1, 0, REQ), &mut out);
        t.on_event(&ev(UP_SOCK, Direction::Ingress, 60, 1, 0, RESP), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(c.parse_error_count("not_http"), 1);
        // An oversized single syscall whose header block the cap cut: still a span.
        let mut big = ev(UP_SOCK, Direction::Egress, 70, 1, 0, &big_request(20)[..4096]);
        big.total = 30_000;
        t.on_event(&big, &mut out);
        t.on_event(&ev(UP_SOCK, Direction::Ingress, 80, 1, 0, RESP), &mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(out[2].request_resource, "/large");
        assert_eq!(out[2].request_length, 30_000);
        assert_eq!(c.parse_error_count("header_truncated"), 1);
    }
}
