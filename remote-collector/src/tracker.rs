//! Per-connection reassembly: feeds each direction's HttpStream, pairs requests
//! with responses (FIFO, so pipelining works), assigns syscall trace ids and
//! builds one span per exchange. Runs on the worker thread only.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use crate::event::{Direction, Event, Kind};
use crate::http::{self, Head, HttpStream, ParseError, Parsed, StartLine};
use crate::span::{canonical_reason, status_of, Span};
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

#[derive(Debug)]
struct Conn {
    role: Option<Role>,
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

pub struct Limits {
    pub max_connections: usize,
    pub max_pending: usize,
    pub max_header: usize,
    /// Connections idle this long with nothing pending are forgotten.
    pub idle_ns: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 65_536,
            max_pending: 64,
            max_header: http::DEFAULT_MAX_HEADER,
            idle_ns: 300_000_000_000,
        }
    }
}

pub type ProcLookup = fn(u32) -> Option<ProcMeta>;

pub struct Tracker {
    conns: HashMap<u64, Conn>,
    ids: SyscallTraceIds,
    procs: HashMap<u32, ProcMeta>,
    clock: Clock,
    counters: Arc<Counters>,
    lookup: ProcLookup,
    limits: Limits,
    serial: u64,
    parsed: Vec<Parsed<Meta>>,
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
            ids,
            procs: HashMap::new(),
            clock,
            counters,
            lookup,
            limits,
            serial: 0,
            parsed: Vec::new(),
        }
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
        let socks: Vec<u64> = self.conns.iter().filter(|(_, c)| c.pid == pid).map(|(k, _)| *k).collect();
        for s in socks {
            self.close_conn(s, now_ns, WHY_EXITED, out);
        }
    }

    pub fn on_event(&mut self, ev: &Event, out: &mut Vec<Span>) {
        match ev.kind {
            Kind::Data => self.on_data(ev, out),
            Kind::Close => self.close_conn(ev.sock, ev.enter_ns, WHY_CLOSED, out),
            Kind::Accept | Kind::Connect => {
                if self.conns.contains_key(&ev.sock) {
                    self.close_conn(ev.sock, ev.enter_ns, WHY_REPLACED, out);
                }
                let mut c = Conn::new(ev, self.limits.max_header);
                c.role = Some(if ev.kind == Kind::Accept { Role::Server } else { Role::Client });
                self.insert_conn(ev.sock, c, ev.exit_ns, out);
            }
        }
        self.counters.connections.store(self.conns.len() as u64, Relaxed);
    }

    /// End of capture: every exchange still open is emitted once.
    pub fn finish(&mut self, now_ns: u64, out: &mut Vec<Span>) {
        let socks: Vec<u64> = self.conns.keys().copied().collect();
        for s in socks {
            self.close_conn(s, now_ns, WHY_CAPTURE_END, out);
        }
    }

    /// The sampling level went down to `keep` (src/budget.rs): forgets every
    /// connection whose socket is no longer sampled, without emitting spans for
    /// what it had pending. Returns (connections, requests) forgotten.
    pub fn shed(&mut self, keep: u32) -> (u64, u64) {
        let (mut conns, mut requests) = (0u64, 0u64);
        self.conns.retain(|sock, c| {
            if crate::budget::sampled(*sock, keep) {
                return true;
            }
            conns += 1;
            requests += c.pending.len() as u64 + u64::from(c.in_flight.is_some());
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
                && !c.ingress.in_message()
                && !c.egress.in_message())
        });
    }

    fn insert_conn(&mut self, sock: u64, c: Conn, now_ns: u64, out: &mut Vec<Span>) {
        if self.conns.len() >= self.limits.max_connections {
            if let Some(oldest) = self.conns.iter().min_by_key(|(_, c)| c.last_ns).map(|(k, _)| *k) {
                Counters::inc(&self.counters.conn_table_full);
                self.close_conn(oldest, now_ns, WHY_EVICTED, out);
            }
        }
        self.conns.insert(sock, c);
    }

    fn on_data(&mut self, ev: &Event, out: &mut Vec<Span>) {
        let meta = Meta {
            enter_ns: ev.enter_ns,
            exit_ns: ev.exit_ns,
            tid: ev.tid,
            seq: ev.tcp_seq,
            trace_id: self.ids.assign(ev.tid, ev.direction),
        };
        if !self.conns.contains_key(&ev.sock) {
            let c = Conn::new(ev, self.limits.max_header);
            self.insert_conn(ev.sock, c, ev.exit_ns, out);
        }
        let mut parsed = std::mem::take(&mut self.parsed);
        parsed.clear();
        let Some(conn) = self.conns.get_mut(&ev.sock) else { return };
        conn.last_ns = ev.exit_ns;
        conn.pid = ev.tgid;
        conn.comm = ev.comm;
        if ev.local.1 != 0 || ev.remote.1 != 0 {
            conn.local = ev.local;
            conn.remote = ev.remote;
        }
        conn.stream(ev.direction).feed(&ev.payload, ev.total as u64, meta, &mut parsed);
        for p in parsed.drain(..) {
            self.handle(ev.sock, ev.direction, p, meta, out);
        }
        self.parsed = parsed;
    }

    fn handle(&mut self, sock: u64, dir: Direction, p: Parsed<Meta>, now: Meta, out: &mut Vec<Span>) {
        let max_pending = self.limits.max_pending;
        let Some(conn) = self.conns.get_mut(&sock) else { return };
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

    fn close_conn(&mut self, sock: u64, now_ns: u64, why: &'static str, out: &mut Vec<Span>) {
        let Some(conn) = self.conns.get_mut(&sock) else { return };
        let now = Meta { enter_ns: now_ns, exit_ns: now_ns, tid: 0, seq: 0, trace_id: 0 };
        let mut ingress = Vec::new();
        let mut egress = Vec::new();
        conn.ingress.finish(now, &mut ingress);
        conn.egress.finish(now, &mut egress);
        for p in ingress {
            self.handle(sock, Direction::Ingress, p, now, out);
        }
        for p in egress {
            self.handle(sock, Direction::Egress, p, now, out);
        }
        let Some(mut conn) = self.conns.remove(&sock) else { return };
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
        build_span(conn, self.procs.get(&conn.pid), self.clock, req, resp, give_up_ns, why)
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
    let (trace_id, span_id) = match req.head.traceparent.as_deref().and_then(http::parse_traceparent) {
        Some((t, s)) => (Some(t), Some(s)),
        None => (None, None),
    };
    let start_ns = req.meta.enter_ns;
    let (end_ns, code, exception, resp_len, resp_xrid, resp_trace, resp_seq) = match &resp {
        Some((r, len)) => {
            let code = r.head.status();
            let reason = match &r.head.start {
                StartLine::Response { reason, .. } => reason.clone(),
                StartLine::Request { .. } => String::new(),
            };
            let exception = match code {
                Some(c) if c >= 400 => Some(if reason.is_empty() {
                    canonical_reason(c).unwrap_or("").to_string()
                } else {
                    reason
                })
                .filter(|s| !s.is_empty()),
                _ => None,
            };
            (
                r.meta.exit_ns,
                code,
                exception,
                *len,
                r.head.x_request_id.clone(),
                Some(r.meta.trace_id),
                Some(r.meta.seq.wrapping_add(r.offset as u32)),
            )
        }
        None => (give_up_ns.max(start_ns), None, why, None, None, None, None),
    };
    let start_us = clock.wall_us(start_ns);
    let end_us = clock.wall_us(end_ns.max(start_ns));
    let (process_name, netns) = match proc_meta {
        Some(m) => (m.name.clone(), m.netns),
        None => (comm_str(&conn.comm), None),
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
        container_id: None,
        netns,
        interface: None,
        client_ip: client_ip.to_string(),
        client_port,
        server_ip: server_ip.to_string(),
        server_port,
        l4_protocol: "TCP",
        l7_protocol: "HTTP",
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
        req_tcp_seq: req.meta.seq.wrapping_add(req.offset as u32),
        resp_tcp_seq: resp_seq,
        app_service: None,
        app_instance: None,
        attributes: None,
    }
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
}
