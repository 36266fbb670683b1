//! Per-observation-point TCP flows from packets: per-direction reassembly feeding
//! the HTTP/1 parser (src/http.rs), request/response pairing into N spans, and
//! the L4 flow record (bytes, packets, handshake latency, RTT, retransmissions,
//! resets, zero windows, close reason).
//!
//! One flow = one connection seen on one interface of one network namespace, so
//! the same connection seen on three interfaces is three flows with three sets of
//! N spans, as DeepFlow does.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;

use super::parse::{Segment, ACK, FIN, RST, SYN};
use crate::http::{self, Head, HttpStream, Parsed, StartLine};
use crate::span::status_of;

/// Where a packet was seen. The observation point (c, s, c-nd, ...) also needs
/// the flow's client and server, so it is decided per flow by `Topology`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tap {
    pub netns: u64,
    pub ifindex: u32,
}

/// Decides the observation point and interface name of a flow.
pub trait Topology {
    fn observation_point(&self, tap: &Tap, client: IpAddr, server: IpAddr) -> &'static str;
    fn interface_name(&self, tap: &Tap) -> Arc<str>;
}

/// Per-packet metadata carried through the HTTP parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PMeta {
    pub ts_ns: u64,
    /// TCP sequence number of the first byte of the chunk fed.
    pub seq: u32,
}

/// An N span: the record-model fields (`node` is filled in by the reader; the
/// process fields are null because a packet has no process).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NetSpan {
    pub signal_source: &'static str,
    pub observation_point: &'static str,
    pub start_time_us: u64,
    pub end_time_us: u64,
    pub duration_us: u64,
    pub pid: Option<u32>,
    pub tid: Option<u32>,
    pub process_name: Option<String>,
    pub container_id: Option<String>,
    pub netns: Option<u64>,
    pub interface: Option<String>,
    pub client_ip: String,
    pub client_port: u16,
    pub server_ip: String,
    pub server_port: u16,
    pub l4_protocol: &'static str,
    pub l7_protocol: &'static str,
    pub version: &'static str,
    pub request_type: String,
    pub request_domain: Option<String>,
    pub request_resource: String,
    pub endpoint: String,
    pub response_code: Option<u16>,
    pub response_status: &'static str,
    pub response_exception: Option<String>,
    pub request_length: u64,
    pub response_length: Option<u64>,
    pub x_request_id_0: Option<String>,
    pub x_request_id_1: Option<String>,
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
    pub parent_span_id: Option<String>,
    pub syscall_trace_id_request: Option<u64>,
    pub syscall_trace_id_response: Option<u64>,
    pub req_tcp_seq: u32,
    pub resp_tcp_seq: Option<u32>,
    pub app_service: Option<String>,
    pub app_instance: Option<String>,
    pub attributes: Option<serde_json::Value>,
}

/// The `flow` frame body (STREAM.md). `tx` is client → server, `rx` server → client.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlowRecord {
    pub flow_id: u64,
    pub signal_source: &'static str,
    pub observation_point: &'static str,
    pub netns: u64,
    /// Null for process-side flows (kflows.rs).
    pub interface: Option<String>,
    pub client_ip: String,
    pub client_port: u16,
    pub server_ip: String,
    pub server_port: u16,
    pub l4_protocol: &'static str,
    pub start_time_us: u64,
    pub end_time_us: u64,
    pub duration_us: u64,
    pub packet_tx: u64,
    pub packet_rx: u64,
    pub byte_tx: u64,
    pub byte_rx: u64,
    pub connect_latency_us: Option<u64>,
    pub srtt_us: Option<u64>,
    pub retrans_tx: u64,
    pub retrans_rx: u64,
    pub rst_tx: u64,
    pub rst_rx: u64,
    pub zero_win_tx: u64,
    pub zero_win_rx: u64,
    pub close_reason: Option<&'static str>,
    #[serde(rename = "final")]
    pub is_final: bool,
}

/// Counters the table keeps; the collector reports them in `stats`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TableStats {
    pub spans: u64,
    pub flow_records: u64,
    pub flow_table_full: u64,
    pub reassembly_gaps: u64,
    pub pending_overflow: u64,
    pub response_without_request: u64,
    pub parse_errors: u64,
    pub flows: u64,
}

pub struct Limits {
    pub max_flows: usize,
    pub max_pending: usize,
    pub max_ooo: usize,
    pub idle_ns: u64,
    pub update_ns: u64,
    pub linger_ns: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_flows: 65_536,
            max_pending: 64,
            max_ooo: 32,
            idle_ns: 120_000_000_000,
            update_ns: 5_000_000_000,
            linger_ns: 2_000_000_000,
        }
    }
}

type Ep = (IpAddr, u16);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    tap: Tap,
    a: Ep,
    b: Ep,
}

/// One direction of a flow. Index 0 is a→b of the key, 1 is b→a.
#[derive(Debug)]
struct Side {
    packets: u64,
    bytes: u64,
    retrans: u64,
    rst: u64,
    zero_win: u64,
    fin: bool,
    next_seq: Option<u32>,
    /// Out-of-order segments waiting for a hole: seq → (captured bytes, wire length, ts).
    ooo: BTreeMap<u32, (Vec<u8>, u32, u64)>,
    http: HttpStream<PMeta>,
    /// RTT sampling: end seq and time of a segment waiting for its ACK.
    rtt_probe: Option<(u32, u64)>,
}

impl Side {
    fn new() -> Self {
        Self {
            packets: 0,
            bytes: 0,
            retrans: 0,
            rst: 0,
            zero_win: 0,
            fin: false,
            next_seq: None,
            ooo: BTreeMap::new(),
            http: HttpStream::new(http::DEFAULT_MAX_HEADER),
            rtt_probe: None,
        }
    }
}

#[derive(Debug)]
struct Req {
    head: Head,
    meta: PMeta,
    offset: usize,
    length: u64,
    serial: u64,
}

#[derive(Debug)]
struct Resp {
    head: Head,
    meta: PMeta,
    offset: usize,
}

#[derive(Debug)]
struct Flow {
    id: u64,
    /// Index of the side that sends requests (the client), once known.
    client: Option<usize>,
    sides: [Side; 2],
    first_ns: u64,
    last_ns: u64,
    syn_ns: Option<u64>,
    synack_ns: Option<u64>,
    connect_ns: Option<u64>,
    srtt_ns: Option<u64>,
    pending: VecDeque<Req>,
    in_flight: Option<(Req, Resp)>,
    open_req: Option<u64>,
    open_resp: bool,
    closed: Option<(&'static str, u64)>,
    dirty: bool,
    last_emit_ns: u64,
}

const WHY_CLOSED: &str = "connection closed before a response was seen";
const WHY_CAPTURE_END: &str = "capture ended before a response was seen";
const WHY_OVERFLOW: &str = "too many pipelined requests waiting for responses";
const WHY_IDLE: &str = "connection idle before a response was seen";

pub struct FlowTable<T: Topology> {
    flows: HashMap<Key, Flow>,
    topo: T,
    limits: Limits,
    id_prefix: u64,
    next_id: u64,
    serial: u64,
    pub stats: TableStats,
}

fn s_diff(a: u32, b: u32) -> i64 {
    a.wrapping_sub(b) as i32 as i64
}

impl<T: Topology> FlowTable<T> {
    /// `id_prefix` (20 bits) makes flow ids of captures stored together differ.
    pub fn new(topo: T, limits: Limits, id_prefix: u32) -> Self {
        Self {
            flows: HashMap::new(),
            topo,
            limits,
            id_prefix: ((id_prefix & 0xf_ffff) as u64) << 32,
            next_id: 0,
            serial: 0,
            stats: TableStats::default(),
        }
    }

    pub fn set_topology(&mut self, topo: T) {
        self.topo = topo;
    }

    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// One captured segment at `tap`, `ts_ns` wall-clock nanoseconds.
    pub fn on_segment(
        &mut self,
        tap: &Tap,
        ts_ns: u64,
        seg: &Segment<'_>,
        spans: &mut Vec<NetSpan>,
        flows: &mut Vec<FlowRecord>,
    ) {
        let (key, dir) = if seg.src <= seg.dst {
            (Key { tap: tap.clone(), a: seg.src, b: seg.dst }, 0usize)
        } else {
            (Key { tap: tap.clone(), a: seg.dst, b: seg.src }, 1usize)
        };
        let syn_only = seg.has(SYN) && !seg.has(ACK);
        if let Some(f) = self.flows.get(&key) {
            if f.closed.is_some() {
                if !syn_only {
                    return; // trailing ACKs of a closed connection
                }
                self.flows.remove(&key);
            }
        }
        if !self.flows.contains_key(&key) {
            if self.flows.len() >= self.limits.max_flows {
                self.stats.flow_table_full += 1;
                return;
            }
            self.next_id += 1;
            let f = Flow {
                id: self.id_prefix | self.next_id,
                client: None,
                sides: [Side::new(), Side::new()],
                first_ns: ts_ns,
                last_ns: ts_ns,
                syn_ns: None,
                synack_ns: None,
                connect_ns: None,
                srtt_ns: None,
                pending: VecDeque::new(),
                in_flight: None,
                open_req: None,
                open_resp: false,
                closed: None,
                dirty: true,
                last_emit_ns: ts_ns,
            };
            self.flows.insert(key.clone(), f);
            self.stats.flows += 1;
        }
        let max_pending = self.limits.max_pending;
        let max_ooo = self.limits.max_ooo;
        let mut parsed = Vec::new();
        let Some(f) = self.flows.get_mut(&key) else { return };
        f.last_ns = ts_ns;
        f.dirty = true;
        let other = 1 - dir;

        // Handshake: who is the client, and how long connect takes here.
        if syn_only {
            f.client = Some(dir);
            f.syn_ns.get_or_insert(ts_ns);
            f.sides[dir].next_seq = Some(seg.seq.wrapping_add(1));
        } else if seg.has(SYN) {
            f.client.get_or_insert(other);
            if f.synack_ns.is_none() {
                f.synack_ns = Some(ts_ns);
                if let Some(s) = f.syn_ns {
                    f.connect_ns = Some(ts_ns.saturating_sub(s));
                }
            }
            f.sides[dir].next_seq = Some(seg.seq.wrapping_add(1));
        } else if f.client == Some(dir) && f.synack_ns.is_some() && f.srtt_ns.is_none() && seg.has(ACK) {
            if let Some(s) = f.syn_ns {
                f.srtt_ns = Some(ts_ns.saturating_sub(s));
            }
        }
        if f.client.is_none() && !seg.payload.is_empty() {
            if seg.payload.starts_with(b"HTTP/") {
                f.client = Some(other);
            } else if http::looks_like_start(seg.payload) {
                f.client = Some(dir);
            }
        }

        let side = &mut f.sides[dir];
        side.packets += 1;
        side.bytes += seg.payload_len as u64;
        if seg.window == 0 && !seg.has(SYN) && !seg.has(RST) {
            side.zero_win += 1;
        }
        // RTT samples from data/ACK pairs, smoothed like TCP (RFC 6298, α = 1/8).
        if seg.has(ACK) {
            if let Some((end, t)) = f.sides[other].rtt_probe {
                if s_diff(seg.ack, end) >= 0 {
                    let sample = ts_ns.saturating_sub(t);
                    f.srtt_ns = Some(match f.srtt_ns {
                        Some(s) => (s * 7 + sample) / 8,
                        None => sample,
                    });
                    f.sides[other].rtt_probe = None;
                }
            }
        }
        let side = &mut f.sides[dir];
        if seg.has(RST) {
            side.rst += 1;
        }

        if seg.payload_len > 0 {
            let meta = PMeta { ts_ns, seq: seg.seq };
            match side.next_seq {
                None => {
                    side.next_seq = Some(seg.seq.wrapping_add(seg.payload_len));
                    side.rtt_probe = Some((seg.seq.wrapping_add(seg.payload_len), ts_ns));
                    side.http.feed(seg.payload, seg.payload_len as u64, meta, &mut parsed);
                }
                Some(next) => {
                    let d = s_diff(seg.seq, next);
                    let end = d + seg.payload_len as i64;
                    if end <= 0 {
                        side.retrans += 1;
                    } else if d <= 0 {
                        if d < 0 {
                            side.retrans += 1;
                        }
                        let skip = (-d) as usize;
                        let data = seg.payload.get(skip..).unwrap_or(&[]);
                        let m = PMeta { ts_ns, seq: next };
                        side.http.feed(data, (seg.payload_len as u64) - skip as u64, m, &mut parsed);
                        side.next_seq = Some(seg.seq.wrapping_add(seg.payload_len));
                        if side.rtt_probe.is_none() {
                            side.rtt_probe = Some((seg.seq.wrapping_add(seg.payload_len), ts_ns));
                        }
                    } else if d > (1 << 30) {
                        // Not a plausible hole: the stream jumped (state lost); start over here.
                        self.stats.reassembly_gaps += 1;
                        side.next_seq = Some(seg.seq.wrapping_add(seg.payload_len));
                        side.http.feed(seg.payload, seg.payload_len as u64, meta, &mut parsed);
                    } else {
                        match side.ooo.entry(seg.seq) {
                            std::collections::btree_map::Entry::Occupied(_) => side.retrans += 1,
                            std::collections::btree_map::Entry::Vacant(v) => {
                                v.insert((seg.payload.to_vec(), seg.payload_len, ts_ns));
                            }
                        }
                        if side.ooo.len() > max_ooo {
                            // Give up on the hole: tell the parser bytes are missing.
                            self.stats.reassembly_gaps += 1;
                            let (&first, _) =
                                side.ooo.iter().min_by_key(|(s, _)| s_diff(**s, next)).expect("non-empty");
                            let gap = s_diff(first, next).max(0) as u64;
                            side.http.feed(&[], gap, PMeta { ts_ns, seq: next }, &mut parsed);
                            side.next_seq = Some(first);
                        }
                    }
                    drain_ooo(side, &mut parsed);
                }
            }
        }
        if seg.has(FIN) {
            f.sides[dir].fin = true;
        }
        let client_dir = f.client;
        for p in parsed {
            handle(
                f,
                client_dir,
                dir,
                p,
                max_pending,
                &self.topo,
                &key,
                &mut self.stats,
                &mut self.serial,
                spans,
            );
        }
        let f = self.flows.get_mut(&key).expect("present");
        let reason = if seg.has(RST) {
            Some(match f.client {
                Some(c) if c == dir => "client_reset",
                Some(_) => "server_reset",
                None => "reset",
            })
        } else if f.sides[0].fin && f.sides[1].fin {
            Some("fin")
        } else {
            None
        };
        if let Some(r) = reason {
            self.close(&key, r, ts_ns, WHY_CLOSED, spans, flows);
        }
    }

    /// Periodic work: update records of live flows, close idle ones, forget
    /// closed ones after a short linger (their trailing ACKs are ignored).
    pub fn tick(&mut self, now_ns: u64, spans: &mut Vec<NetSpan>, flows: &mut Vec<FlowRecord>) {
        let linger = self.limits.linger_ns;
        self.flows.retain(|_, f| !matches!(f.closed, Some((_, t)) if now_ns.saturating_sub(t) > linger));
        let idle: Vec<Key> = self
            .flows
            .iter()
            .filter(|(_, f)| f.closed.is_none() && now_ns.saturating_sub(f.last_ns) > self.limits.idle_ns)
            .map(|(k, _)| k.clone())
            .collect();
        for k in idle {
            self.close(&k, "idle", now_ns, WHY_IDLE, spans, flows);
        }
        let update = self.limits.update_ns;
        for (k, f) in self.flows.iter_mut() {
            if f.closed.is_none() && f.dirty && now_ns.saturating_sub(f.last_emit_ns) >= update {
                f.dirty = false;
                f.last_emit_ns = now_ns;
                self.stats.flow_records += 1;
                flows.push(record(f, k, &self.topo, None));
            }
        }
    }

    /// End of capture: every open flow gets its final record.
    pub fn finish(&mut self, now_ns: u64, spans: &mut Vec<NetSpan>, flows: &mut Vec<FlowRecord>) {
        let keys: Vec<Key> =
            self.flows.iter().filter(|(_, f)| f.closed.is_none()).map(|(k, _)| k.clone()).collect();
        for k in keys {
            self.close(&k, "capture_end", now_ns, WHY_CAPTURE_END, spans, flows);
        }
        self.flows.clear();
    }

    fn close(
        &mut self,
        key: &Key,
        reason: &'static str,
        now_ns: u64,
        why: &str,
        spans: &mut Vec<NetSpan>,
        flows: &mut Vec<FlowRecord>,
    ) {
        let Some(f) = self.flows.get_mut(key) else { return };
        let mut parsed = [Vec::new(), Vec::new()];
        for (i, p) in parsed.iter_mut().enumerate() {
            let seq = f.sides[i].next_seq.unwrap_or(0);
            f.sides[i].http.finish(PMeta { ts_ns: now_ns, seq }, p);
        }
        let client_dir = f.client;
        for (i, ps) in parsed.into_iter().enumerate() {
            for p in ps {
                handle(
                    f,
                    client_dir,
                    i,
                    p,
                    self.limits.max_pending,
                    &self.topo,
                    key,
                    &mut self.stats,
                    &mut self.serial,
                    spans,
                );
            }
        }
        if let Some((req, resp)) = f.in_flight.take() {
            self.stats.spans += 1;
            spans.push(build_span(f, key, &self.topo, req, Some((resp, None)), now_ns, None));
        }
        while let Some(req) = f.pending.pop_front() {
            self.stats.spans += 1;
            spans.push(build_span(f, key, &self.topo, req, None, now_ns, Some(why.to_string())));
        }
        f.closed = Some((reason, now_ns));
        f.dirty = false;
        self.stats.flow_records += 1;
        flows.push(record(f, key, &self.topo, Some(reason)));
        // Free the reassembly state at once; the entry itself lingers.
        for s in f.sides.iter_mut() {
            s.ooo.clear();
            s.http = HttpStream::new(0);
        }
    }
}

fn drain_ooo(side: &mut Side, parsed: &mut Vec<Parsed<PMeta>>) {
    while let Some(next) = side.next_seq {
        let Some((&seq, _)) = side.ooo.iter().find(|(s, (_, len, _))| {
            let d = s_diff(**s, next);
            d <= 0 && d + *len as i64 > 0
        }) else {
            // Drop segments now entirely behind the stream.
            side.ooo.retain(|s, (_, len, _)| s_diff(*s, next) + *len as i64 > 0);
            return;
        };
        let (data, len, ts) = side.ooo.remove(&seq).expect("present");
        let skip = (-s_diff(seq, next)) as usize;
        let d = data.get(skip..).unwrap_or(&[]);
        side.http.feed(d, len as u64 - skip as u64, PMeta { ts_ns: ts, seq: next }, parsed);
        side.next_seq = Some(seq.wrapping_add(len));
    }
}

#[allow(clippy::too_many_arguments)]
fn handle<T: Topology>(
    f: &mut Flow,
    client_dir: Option<usize>,
    dir: usize,
    p: Parsed<PMeta>,
    max_pending: usize,
    topo: &T,
    key: &Key,
    stats: &mut TableStats,
    serial: &mut u64,
    out: &mut Vec<NetSpan>,
) {
    let is_request_dir = client_dir.map(|c| c == dir);
    match p {
        Parsed::Head { head, meta, offset } => {
            if head.is_request() {
                if is_request_dir == Some(false) {
                    return;
                }
                if f.client.is_none() {
                    f.client = Some(dir);
                }
                *serial += 1;
                let method = head.method().unwrap_or("").to_string();
                let length = head.header_len as u64;
                f.pending.push_back(Req { head, meta, offset, length, serial: *serial });
                f.open_req = Some(*serial);
                f.sides[1 - dir].http.expect_response_to(&method);
                if f.pending.len() > max_pending {
                    stats.pending_overflow += 1;
                    stats.spans += 1;
                    let req = f.pending.pop_front().expect("non-empty");
                    out.push(build_span(f, key, topo, req, None, meta.ts_ns, Some(WHY_OVERFLOW.into())));
                }
            } else {
                if is_request_dir == Some(true) {
                    return;
                }
                let code = head.status().unwrap_or(0);
                if (100..200).contains(&code) && code != 101 {
                    f.open_resp = false;
                    return;
                }
                if code == 101 {
                    f.sides[1 - dir].http.set_upgraded();
                }
                match f.pending.pop_front() {
                    Some(req) => {
                        f.in_flight = Some((req, Resp { head, meta, offset }));
                        f.open_resp = true;
                    }
                    None => {
                        stats.response_without_request += 1;
                        f.open_resp = false;
                    }
                }
            }
        }
        Parsed::End { length, .. } => {
            if is_request_dir == Some(false) || (is_request_dir.is_none() && f.open_resp) {
                if f.open_resp {
                    f.open_resp = false;
                    if let Some((req, resp)) = f.in_flight.take() {
                        let ts = resp.meta.ts_ns;
                        stats.spans += 1;
                        out.push(build_span(f, key, topo, req, Some((resp, Some(length))), ts, None));
                    }
                }
            } else if let Some(serial) = f.open_req.take() {
                if let Some(r) = f.pending.iter_mut().rev().find(|r| r.serial == serial) {
                    r.length = length;
                } else if let Some((r, _)) = f.in_flight.as_mut().filter(|(r, _)| r.serial == serial) {
                    r.length = length;
                }
            }
        }
        Parsed::Error { .. } => {
            stats.parse_errors += 1;
        }
    }
}

fn endpoints(f: &Flow, key: &Key) -> (Ep, Ep) {
    match f.client {
        Some(1) => (key.b, key.a),
        Some(_) => (key.a, key.b),
        // Unknown direction (no handshake, no HTTP seen): the lower port is the server.
        None if key.a.1 < key.b.1 => (key.b, key.a),
        None => (key.a, key.b),
    }
}

fn us(ns: u64) -> u64 {
    ns / 1000
}

fn record<T: Topology>(f: &Flow, key: &Key, topo: &T, close: Option<&'static str>) -> FlowRecord {
    let (c, s) = endpoints(f, key);
    let ci = if c == key.a { 0 } else { 1 };
    let (tx, rx) = (&f.sides[ci], &f.sides[1 - ci]);
    let end = f.closed.map(|(_, t)| t).unwrap_or(f.last_ns).max(f.first_ns);
    FlowRecord {
        flow_id: f.id,
        signal_source: "packet",
        observation_point: topo.observation_point(&key.tap, c.0, s.0),
        netns: key.tap.netns,
        interface: Some(topo.interface_name(&key.tap).to_string()),
        client_ip: c.0.to_string(),
        client_port: c.1,
        server_ip: s.0.to_string(),
        server_port: s.1,
        l4_protocol: "TCP",
        start_time_us: us(f.first_ns),
        end_time_us: us(end),
        duration_us: us(end) - us(f.first_ns),
        packet_tx: tx.packets,
        packet_rx: rx.packets,
        byte_tx: tx.bytes,
        byte_rx: rx.bytes,
        connect_latency_us: f.connect_ns.map(|n| n.div_ceil(1000)),
        srtt_us: f.srtt_ns.map(|n| n.div_ceil(1000)),
        retrans_tx: tx.retrans,
        retrans_rx: rx.retrans,
        rst_tx: tx.rst,
        rst_rx: rx.rst,
        zero_win_tx: tx.zero_win,
        zero_win_rx: rx.zero_win,
        close_reason: close,
        is_final: close.is_some(),
    }
}

fn build_span<T: Topology>(
    f: &Flow,
    key: &Key,
    topo: &T,
    req: Req,
    resp: Option<(Resp, Option<u64>)>,
    give_up_ns: u64,
    why: Option<String>,
) -> NetSpan {
    let (c, s) = endpoints(f, key);
    let (method, target) = match &req.head.start {
        StartLine::Request { method, target } => (method.clone(), target.clone()),
        StartLine::Response { .. } => (String::new(), String::new()),
    };
    let resource = http::resource_of(&target).to_string();
    let endpoint = http::endpoint_of(&resource).to_string();
    let domain = req.head.host.clone().or_else(|| http::host_of_target(&target).map(str::to_string));
    let (trace_id, span_id) = req.head.trace_ids();
    let start_ns = req.meta.ts_ns;
    let (end_ns, code, exception, resp_len, resp_xrid, resp_seq) = match &resp {
        Some((r, len)) => {
            let code = r.head.status();
            let exception = r.head.exception();
            (
                r.meta.ts_ns,
                code,
                exception,
                *len,
                r.head.x_request_id.clone(),
                Some(r.meta.seq.wrapping_add(r.offset as u32)),
            )
        }
        None => (give_up_ns.max(start_ns), None, why, None, None, None),
    };
    let (start_us, end_us) = (us(start_ns), us(end_ns.max(start_ns)));
    NetSpan {
        signal_source: "packet",
        observation_point: topo.observation_point(&key.tap, c.0, s.0),
        start_time_us: start_us,
        end_time_us: end_us,
        duration_us: end_us - start_us,
        pid: None,
        tid: None,
        process_name: None,
        container_id: None,
        netns: Some(key.tap.netns),
        interface: Some(topo.interface_name(&key.tap).to_string()),
        client_ip: c.0.to_string(),
        client_port: c.1,
        server_ip: s.0.to_string(),
        server_port: s.1,
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
        syscall_trace_id_request: None,
        syscall_trace_id_response: None,
        req_tcp_seq: req.meta.seq.wrapping_add(req.offset as u32),
        resp_tcp_seq: resp_seq,
        app_service: None,
        app_instance: None,
        attributes: None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse::{fixtures, parse, ETH_P_IP};
    use super::*;

    struct OneNic;

    impl Topology for OneNic {
        fn observation_point(&self, _: &Tap, client: IpAddr, _: IpAddr) -> &'static str {
            if client.to_string() == "10.0.0.1" {
                "c"
            } else {
                "rest"
            }
        }
        fn interface_name(&self, _: &Tap) -> Arc<str> {
            Arc::from("eth0")
        }
    }

    const C: &str = "10.0.0.1";
    const S: &str = "10.0.0.2";
    const CISN: u32 = 0xFFFF_FF00; // wraps during the exchange
    const SISN: u32 = 5000;
    const MS: u64 = 1_000_000;

    struct Rig {
        t: FlowTable<OneNic>,
        spans: Vec<NetSpan>,
        flows: Vec<FlowRecord>,
    }

    impl Rig {
        fn new() -> Self {
            Self::with(Limits::default())
        }
        fn with(limits: Limits) -> Self {
            Self { t: FlowTable::new(OneNic, limits, 7), spans: vec![], flows: vec![] }
        }
        /// A packet from the client (`up`) or the server, `ts_ms` after t0.
        fn pkt(&mut self, up: bool, ts_ms: u64, seq: u32, ack: u32, flags: u8, payload: &[u8]) {
            self.pkt_cut(up, ts_ms, seq, ack, flags, payload, usize::MAX);
        }
        #[allow(clippy::too_many_arguments)]
        fn pkt_cut(
            &mut self,
            up: bool,
            ts_ms: u64,
            seq: u32,
            ack: u32,
            flags: u8,
            payload: &[u8],
            snap: usize,
        ) {
            let (c, s) = ((C.parse().unwrap(), 40000), (S.parse().unwrap(), 80));
            let (src, dst) = if up { (c, s) } else { (s, c) };
            let bytes = fixtures::tcp(src, dst, seq, ack, flags, payload);
            let bytes = &bytes[..bytes.len().min(snap)];
            let seg = parse(ETH_P_IP, bytes).unwrap();
            let tap = Tap { netns: 42, ifindex: 2 };
            self.t.on_segment(&tap, 1_000_000 * MS + ts_ms * MS, &seg, &mut self.spans, &mut self.flows);
        }
        fn handshake(&mut self) {
            self.pkt(true, 0, CISN, 0, SYN, b"");
            self.pkt(false, 1, SISN, CISN.wrapping_add(1), SYN | ACK, b"");
            self.pkt(true, 2, CISN.wrapping_add(1), SISN + 1, ACK, b"");
        }
    }

    const REQ: &[u8] = b"GET /api/items?id=7 HTTP/1.1\r\nHost: gw\r\nX-Request-ID: abc\r\n\
traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n";
    const RESP: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nX-Request-ID: abc\r\n\r\n0123456789";

    #[test]
    fn exchange_split_across_packets_links_by_tcp_seq() {
        let mut r = Rig::new();
        r.handshake();
        let c1 = CISN.wrapping_add(1);
        r.pkt(true, 10, c1, SISN + 1, ACK, &REQ[..20]);
        r.pkt(true, 11, c1.wrapping_add(20), SISN + 1, ACK, &REQ[20..]);
        let s1 = SISN + 1;
        r.pkt(false, 15, s1, c1.wrapping_add(REQ.len() as u32), ACK, &RESP[..30]);
        assert!(r.spans.is_empty(), "the response has not ended yet");
        r.pkt(false, 16, s1 + 30, c1.wrapping_add(REQ.len() as u32), ACK, &RESP[30..]);
        assert_eq!(r.spans.len(), 1);
        let s = &r.spans[0];
        assert_eq!(
            (s.signal_source, s.observation_point, s.interface.as_deref()),
            ("packet", "c", Some("eth0"))
        );
        assert_eq!(s.netns, Some(42));
        assert_eq!(
            (s.client_ip.as_str(), s.client_port, s.server_ip.as_str(), s.server_port),
            (C, 40000, S, 80)
        );
        assert_eq!(s.req_tcp_seq, c1, "first request byte = ISN + 1, across the 2^32 wrap");
        assert_eq!(s.resp_tcp_seq, Some(s1));
        assert_eq!(
            (s.request_type.as_str(), s.request_resource.as_str(), s.endpoint.as_str()),
            ("GET", "/api/items?id=7", "/api/items")
        );
        assert_eq!(s.request_domain.as_deref(), Some("gw"));
        assert_eq!(s.response_code, Some(200));
        assert_eq!((s.request_length, s.response_length), (REQ.len() as u64, Some(RESP.len() as u64)));
        assert_eq!((s.x_request_id_0.as_deref(), s.x_request_id_1.as_deref()), (Some("abc"), Some("abc")));
        assert_eq!(s.trace_id.as_deref(), Some("0af7651916cd43dd8448eb211c80319c"));
        assert_eq!(s.duration_us, 5_000, "first request packet → first response packet");
        assert_eq!((s.pid, s.syscall_trace_id_request), (None, None));

        // Close: FIN both ways → one final flow record.
        let c_end = c1.wrapping_add(REQ.len() as u32);
        r.pkt(true, 20, c_end, s1 + RESP.len() as u32, FIN | ACK, b"");
        r.pkt(false, 21, s1 + RESP.len() as u32, c_end.wrapping_add(1), FIN | ACK, b"");
        assert_eq!(r.flows.len(), 1);
        let f = &r.flows[0];
        assert!(f.is_final);
        assert_eq!(f.close_reason, Some("fin"));
        assert_eq!((f.byte_tx, f.byte_rx), (REQ.len() as u64, RESP.len() as u64));
        assert_eq!((f.packet_tx, f.packet_rx), (5, 4));
        assert_eq!(f.connect_latency_us, Some(1_000), "SYN → SYN-ACK");
        assert!(f.srtt_us.unwrap() > 0);
        assert_eq!((f.retrans_tx, f.retrans_rx, f.rst_tx, f.rst_rx), (0, 0, 0, 0));
        // A trailing ACK after close changes nothing.
        r.pkt(true, 22, c_end.wrapping_add(1), s1 + RESP.len() as u32 + 1, ACK, b"");
        assert_eq!(r.flows.len(), 1);
    }

    #[test]
    fn retransmitted_and_out_of_order_segments() {
        let mut r = Rig::new();
        r.handshake();
        let c1 = CISN.wrapping_add(1);
        let s1 = SISN + 1;
        r.pkt(true, 10, c1, s1, ACK, &REQ[..20]);
        r.pkt(true, 11, c1, s1, ACK, &REQ[..20]); // retransmission
        r.pkt(true, 12, c1.wrapping_add(10), s1, ACK, &REQ[10..40]); // overlapping
        r.pkt(true, 13, c1.wrapping_add(40), s1, ACK, &REQ[40..]);
        // Response: second half first.
        r.pkt(false, 20, s1 + 30, c1, ACK, &RESP[30..]);
        assert!(r.spans.is_empty());
        r.pkt(false, 21, s1, c1, ACK, &RESP[..30]);
        assert_eq!(r.spans.len(), 1, "the hole filled: the response ends");
        let s = &r.spans[0];
        assert_eq!(s.req_tcp_seq, c1);
        assert_eq!(s.resp_tcp_seq, Some(s1));
        assert_eq!(s.response_length, Some(RESP.len() as u64));
        assert_eq!(s.request_length, REQ.len() as u64);
        r.t.finish(1_000_100 * MS, &mut r.spans, &mut r.flows);
        let f = r.flows.last().unwrap();
        assert_eq!(f.retrans_tx, 2);
        assert_eq!(f.close_reason, Some("capture_end"));
        assert_eq!(
            f.byte_tx,
            20 + 20 + 30 + (REQ.len() as u64 - 40),
            "bytes on the wire, retransmissions included"
        );
    }

    #[test]
    fn pipelined_requests_in_one_segment_and_truncated_body() {
        let mut r = Rig::new();
        r.handshake();
        let c1 = CISN.wrapping_add(1);
        let s1 = SISN + 1;
        let two = [REQ, REQ].concat();
        r.pkt(true, 10, c1, s1, ACK, &two);
        let body = vec![b'x'; 3000];
        let big = [b"HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n".as_slice(), &body].concat();
        // Captured only up to 100 bytes: the body is skipped by its length.
        r.pkt_cut(false, 12, s1, c1, ACK, &big, 40 + 100);
        r.pkt(false, 13, s1 + big.len() as u32, c1, ACK, RESP);
        assert_eq!(r.spans.len(), 2);
        assert_eq!(r.spans[0].req_tcp_seq, c1);
        assert_eq!(
            r.spans[1].req_tcp_seq,
            c1.wrapping_add(REQ.len() as u32),
            "second request starts mid-segment"
        );
        assert_eq!(r.spans[0].response_length, Some(big.len() as u64));
        assert_eq!(r.spans[1].resp_tcp_seq, Some(s1 + big.len() as u32));
    }

    #[test]
    fn reset_on_a_closed_port() {
        let mut r = Rig::new();
        r.pkt(true, 0, CISN, 0, SYN, b"");
        r.pkt(false, 1, 0, CISN.wrapping_add(1), RST | ACK, b"");
        assert_eq!(r.flows.len(), 1);
        let f = &r.flows[0];
        assert_eq!((f.close_reason, f.is_final, f.rst_rx, f.rst_tx), (Some("server_reset"), true, 1, 0));
        assert_eq!((f.packet_tx, f.packet_rx, f.connect_latency_us), (1, 1, None));
        assert_eq!((f.client_ip.as_str(), f.server_port), (C, 80));
    }

    #[test]
    fn garbage_and_mid_stream_start() {
        let mut r = Rig::new();
        // No handshake seen; the first bytes are the tail of a response.
        let tail = b"HTTP/1.1 204 No Content\r\n\r\n";
        let s1 = 900 + tail.len() as u32;
        r.pkt(false, 0, 900, 100, ACK, tail);
        assert_eq!(r.t.stats.response_without_request, 1);
        r.pkt(true, 1, 100, s1, ACK, REQ);
        r.pkt(false, 2, s1, 100 + REQ.len() as u32, ACK, RESP);
        assert_eq!(r.spans.len(), 1);
        assert_eq!(r.spans[0].client_ip, C, "direction from the request");
        // Garbage in the client direction: counted, no span, the stream recovers.
        let c2 = 100 + REQ.len() as u32;
        r.pkt(true, 3, c2, 0, ACK, b"\x16\x03\x01\x02\x00garbage-not-http");
        assert!(r.t.stats.parse_errors >= 1);
        let c3 = c2 + 21;
        r.pkt(true, 4, c3, 0, ACK, REQ);
        r.pkt(false, 5, s1 + RESP.len() as u32, c3 + REQ.len() as u32, ACK, RESP);
        assert_eq!(r.spans.len(), 2);
        assert_eq!(r.spans[1].req_tcp_seq, c3);
    }

    #[test]
    fn unanswered_request_at_close_and_updates_while_alive() {
        let mut r = Rig::with(Limits { update_ns: 5_000 * MS, idle_ns: 60_000 * MS, ..Limits::default() });
        r.handshake();
        let c1 = CISN.wrapping_add(1);
        r.pkt(true, 10, c1, SISN + 1, ACK, REQ);
        let t0 = 1_000_000 * MS;
        r.t.tick(t0 + 6_000 * MS, &mut r.spans, &mut r.flows);
        assert_eq!(r.flows.len(), 1, "one update after 5 s");
        assert!(!r.flows[0].is_final);
        r.t.tick(t0 + 7_000 * MS, &mut r.spans, &mut r.flows);
        assert_eq!(r.flows.len(), 1, "nothing new: no update");
        r.t.tick(t0 + 70_000 * MS, &mut r.spans, &mut r.flows);
        assert_eq!(r.flows.len(), 2);
        assert_eq!(r.flows[1].close_reason, Some("idle"));
        assert_eq!(r.spans.len(), 1);
        assert_eq!(r.spans[0].response_status, "unknown");
        assert_eq!(r.spans[0].response_exception.as_deref(), Some(WHY_IDLE));
    }

    #[test]
    fn flow_table_is_bounded() {
        let mut r = Rig::with(Limits { max_flows: 1, ..Limits::default() });
        r.pkt(true, 0, 1, 0, SYN, b"");
        let other = fixtures::tcp(
            ("10.0.0.9".parse().unwrap(), 1),
            ("10.0.0.2".parse().unwrap(), 80),
            1,
            0,
            SYN,
            b"",
        );
        let seg = parse(ETH_P_IP, &other).unwrap();
        r.t.on_segment(&Tap { netns: 1, ifindex: 1 }, 5, &seg, &mut r.spans, &mut r.flows);
        assert_eq!(r.t.len(), 1);
        assert_eq!(r.t.stats.flow_table_full, 1);
    }
}
