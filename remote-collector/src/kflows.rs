//! Process-side L4 flows from kernel socket events (src/bpf/net.bpf.c): one flow
//! per TCP connection at its socket, observation point `c-p` for the side that
//! connected and `s-p` for the side that accepted, with the kernel's own counters
//! (struct tcp_sock) at close. A record when the connection opens, the final one
//! when the socket closes.

use std::collections::HashMap;
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{Context, Result};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, RingBufferBuilder};
use thiserror::Error;

use crate::bpf_net::NetSkelBuilder;
use crate::frame::FrameType;
use crate::packet::capture::{Out, PacketCounters};
use crate::packet::netns::{self, DiagTcp};
use crate::packet::table::FlowRecord;
use crate::tracker::Clock;

pub const EVENT_SIZE: usize = 144;
const KIND_OPEN: u32 = 1;
const KIND_CLOSE: u32 = 2;
/// Not from the kernel: a periodic update built from sock_diag's tcp_info.
const KIND_UPDATE: u32 = 3;
/// How often live socket flows get an update record.
const UPDATE_EVERY: Duration = Duration::from_secs(5);
const AF_INET: u8 = 2;

// include/net/tcp_states.h
const TCP_ESTABLISHED: u8 = 1;
const TCP_SYN_SENT: u8 = 2;
const TCP_SYN_RECV: u8 = 3;
const TCP_FIN_WAIT1: u8 = 4;
const TCP_FIN_WAIT2: u8 = 5;
const TCP_TIME_WAIT: u8 = 6;
const TCP_CLOSE_WAIT: u8 = 8;
const TCP_LAST_ACK: u8 = 9;
const TCP_CLOSING: u8 = 11;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum KflowError {
    #[error("flow record of {0} bytes, expected {EVENT_SIZE}")]
    Size(usize),
    #[error("unknown flow record kind {0}")]
    Kind(u32),
}

/// One record of the `flow_events` ring buffer (struct td_flow_event, net.h).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KflowEvent {
    pub ts_ns: u64,
    pub start_ns: u64,
    pub sk: u64,
    pub bytes_received: u64,
    pub bytes_acked: u64,
    pub kind: u32,
    pub netns: u32,
    pub pid: u32,
    pub connect_us: u32,
    pub srtt_us: u32,
    pub segs_in: u32,
    pub segs_out: u32,
    pub total_retrans: u32,
    pub retrans: u32,
    pub rst_sent: u32,
    pub rst_recv: u32,
    pub local: (IpAddr, u16),
    pub remote: (IpAddr, u16),
    pub active: bool,
    pub oldstate: u8,
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}

fn addr(family: u8, b: &[u8]) -> IpAddr {
    if family == AF_INET {
        IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    } else {
        let mut o = [0u8; 16];
        o.copy_from_slice(&b[..16]);
        let a = Ipv6Addr::from(o);
        a.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(a))
    }
}

/// Decodes one ring-buffer record (layout: struct td_flow_event, 144 bytes).
pub fn decode(b: &[u8]) -> Result<KflowEvent, KflowError> {
    if b.len() != EVENT_SIZE {
        return Err(KflowError::Size(b.len()));
    }
    let kind = u32_at(b, 40);
    if kind != KIND_OPEN && kind != KIND_CLOSE {
        return Err(KflowError::Kind(kind));
    }
    let family = b[92];
    Ok(KflowEvent {
        ts_ns: u64_at(b, 0),
        start_ns: u64_at(b, 8),
        sk: u64_at(b, 16),
        bytes_received: u64_at(b, 24),
        bytes_acked: u64_at(b, 32),
        kind,
        netns: u32_at(b, 44),
        pid: u32_at(b, 48),
        connect_us: u32_at(b, 52),
        srtt_us: u32_at(b, 56),
        segs_in: u32_at(b, 60),
        segs_out: u32_at(b, 64),
        total_retrans: u32_at(b, 68),
        retrans: u32_at(b, 72),
        rst_sent: u32_at(b, 76),
        rst_recv: u32_at(b, 80),
        local: (addr(family, &b[96..112]), u16_at(b, 88)),
        remote: (addr(family, &b[112..128]), u16_at(b, 90)),
        active: b[93] == 1,
        oldstate: b[94],
    })
}

/// Why the socket closed, from its last state and the resets seen.
pub fn close_reason(ev: &KflowEvent) -> &'static str {
    let (own, peer) =
        if ev.active { ("client_reset", "server_reset") } else { ("server_reset", "client_reset") };
    if ev.rst_recv > 0 {
        return peer;
    }
    match ev.oldstate {
        TCP_SYN_SENT => "connect_failed",
        TCP_SYN_RECV => "handshake_failed",
        TCP_FIN_WAIT1 | TCP_FIN_WAIT2 | TCP_TIME_WAIT | TCP_LAST_ACK | TCP_CLOSING => "fin",
        // Straight from ESTABLISHED or CLOSE_WAIT to CLOSE: this side aborted (RST).
        TCP_ESTABLISHED | TCP_CLOSE_WAIT => own,
        _ => "closed",
    }
}

/// Payload bytes (acked, received) from the kernel's counters, which count sequence
/// space: the SYN once acked, and a FIN once acked (sent) or received. Which of them
/// are in the counters follows from the state the socket closed from.
pub fn payload_bytes(ev: &KflowEvent) -> (u64, u64) {
    let fin_sent_acked = matches!(ev.oldstate, TCP_FIN_WAIT2 | TCP_TIME_WAIT | TCP_CLOSING);
    let fin_received = matches!(ev.oldstate, TCP_FIN_WAIT2 | TCP_TIME_WAIT | TCP_CLOSING | TCP_LAST_ACK);
    let closing = ev.kind == KIND_CLOSE;
    let acked = ev.bytes_acked.saturating_sub(1 + (closing && fin_sent_acked) as u64);
    let received = ev.bytes_received.saturating_sub((closing && fin_received) as u64);
    (acked, received)
}

#[derive(Debug, Clone)]
struct Live {
    id: u64,
    start_ns: u64,
    netns: u32,
    local: (IpAddr, u16),
    remote: (IpAddr, u16),
    active: bool,
    connect_us: u32,
    /// Counters of the last record, so unchanged flows are not re-sent.
    last: (u64, u64, u32, u32),
}

/// Turns socket events into flow records. Pure: no kernel access.
pub struct KflowTable {
    clock: Clock,
    live: HashMap<u64, Live>,
    id_prefix: u64,
    next_id: u64,
}

impl KflowTable {
    pub fn new(clock: Clock, id_prefix: u32) -> Self {
        // Bit 31 of the counter part keeps these ids apart from packet flow ids.
        Self {
            clock,
            live: HashMap::new(),
            id_prefix: (((id_prefix & 0xf_ffff) as u64) << 32) | (1 << 31),
            next_id: 0,
        }
    }

    /// Namespaces that hold live flows (for the periodic sock_diag updates).
    pub fn live_netns(&self) -> std::collections::BTreeSet<u32> {
        self.live.values().map(|l| l.netns).collect()
    }

    /// Update records of the live flows of `netns` whose counters moved, from the
    /// namespace's sock_diag dump.
    pub fn updates(&mut self, netns: u32, socks: &[DiagTcp], now_ns: u64) -> Vec<FlowRecord> {
        type Tuple = ((IpAddr, u16), (IpAddr, u16));
        let by_tuple: HashMap<Tuple, &DiagTcp> = socks.iter().map(|d| ((d.local, d.remote), d)).collect();
        let mut evs = Vec::new();
        for (sk, l) in self.live.iter().filter(|(_, l)| l.netns == netns) {
            let Some(d) = by_tuple.get(&(l.local, l.remote)) else { continue };
            if l.last == (d.bytes_acked, d.bytes_received, d.segs_in, d.segs_out) {
                continue;
            }
            evs.push(KflowEvent {
                ts_ns: now_ns,
                start_ns: l.start_ns,
                sk: *sk,
                bytes_received: d.bytes_received,
                bytes_acked: d.bytes_acked,
                kind: KIND_UPDATE,
                netns,
                pid: 0,
                connect_us: l.connect_us,
                srtt_us: d.rtt_us,
                segs_in: d.segs_in,
                segs_out: d.segs_out,
                total_retrans: d.total_retrans,
                retrans: 0,
                rst_sent: 0,
                rst_recv: 0,
                local: l.local,
                remote: l.remote,
                active: l.active,
                oldstate: d.state,
            });
        }
        evs.iter().map(|e| self.on_event(e)).collect()
    }

    pub fn on_event(&mut self, ev: &KflowEvent) -> FlowRecord {
        let start = if ev.start_ns != 0 { ev.start_ns } else { ev.ts_ns };
        let counters = (ev.bytes_acked, ev.bytes_received, ev.segs_in, ev.segs_out);
        let (id, start_ns) = match ev.kind {
            KIND_OPEN => {
                self.next_id += 1;
                let l = Live {
                    id: self.id_prefix | self.next_id,
                    start_ns: start,
                    netns: ev.netns,
                    local: ev.local,
                    remote: ev.remote,
                    active: ev.active,
                    connect_us: ev.connect_us,
                    last: counters,
                };
                let v = (l.id, l.start_ns);
                self.live.insert(ev.sk, l);
                v
            }
            KIND_UPDATE => match self.live.get_mut(&ev.sk) {
                Some(l) => {
                    l.last = counters;
                    (l.id, l.start_ns)
                }
                None => {
                    self.next_id += 1;
                    (self.id_prefix | self.next_id, start)
                }
            },
            _ => match self.live.remove(&ev.sk) {
                Some(l) => (l.id, l.start_ns),
                None => {
                    // Opened before the capture (or never established): a flow of its own.
                    self.next_id += 1;
                    (self.id_prefix | self.next_id, start)
                }
            },
        };
        let closing = ev.kind == KIND_CLOSE;
        let (client, server) = if ev.active { (ev.local, ev.remote) } else { (ev.remote, ev.local) };
        // tx is client → server: the client's acked bytes, the server's received ones.
        let (acked, received) = payload_bytes(ev);
        let (byte_tx, byte_rx, packet_tx, packet_rx, retrans_tx, retrans_rx, rst_tx, rst_rx) = if ev.active {
            (
                acked,
                received,
                ev.segs_out as u64,
                ev.segs_in as u64,
                ev.total_retrans as u64,
                0,
                ev.rst_sent as u64,
                ev.rst_recv as u64,
            )
        } else {
            (
                received,
                acked,
                ev.segs_in as u64,
                ev.segs_out as u64,
                0,
                ev.total_retrans as u64,
                ev.rst_recv as u64,
                ev.rst_sent as u64,
            )
        };
        let (start_us, end_us) = (self.clock.wall_us(start_ns), self.clock.wall_us(ev.ts_ns.max(start_ns)));
        FlowRecord {
            flow_id: id,
            signal_source: "ebpf",
            observation_point: if ev.active { "c-p" } else { "s-p" },
            netns: ev.netns as u64,
            interface: None,
            client_ip: client.0.to_string(),
            client_port: client.1,
            server_ip: server.0.to_string(),
            server_port: server.1,
            l4_protocol: "TCP",
            start_time_us: start_us,
            end_time_us: end_us,
            duration_us: end_us - start_us,
            packet_tx,
            packet_rx,
            byte_tx,
            byte_rx,
            connect_latency_us: (ev.active && ev.connect_us > 0).then_some(ev.connect_us as u64),
            srtt_us: (ev.srtt_us > 0).then_some(ev.srtt_us as u64),
            retrans_tx,
            retrans_rx,
            rst_tx,
            rst_rx,
            zero_win_tx: 0,
            zero_win_rx: 0,
            close_reason: closing.then(|| close_reason(ev)),
            is_final: closing,
        }
    }
}

/// The socket-lifecycle programs, loaded, attached and polled on their own thread.
pub struct KernelFlows {
    handle: JoinHandle<()>,
}

impl KernelFlows {
    /// Loads and attaches net.bpf.c; returns once attached (or the error).
    pub fn start(
        out: Out,
        stop: Arc<AtomicBool>,
        counters: Arc<PacketCounters>,
        id_prefix: u32,
    ) -> Result<Self> {
        let (ready_tx, ready_rx) = mpsc::channel::<Result<usize, String>>();
        let handle = thread::Builder::new()
            .name("kernel-flows".into())
            .spawn(move || {
                if let Err(e) = run(&out, &stop, &counters, id_prefix, &ready_tx) {
                    let _ = ready_tx.send(Err(format!("{e:#}")));
                }
            })
            .context("spawning the kernel flow thread")?;
        match ready_rx.recv() {
            Ok(Ok(n)) => {
                eprintln!("tapdeck-collector: attached {n} socket lifecycle programs (flows c-p/s-p)");
                Ok(Self { handle })
            }
            Ok(Err(e)) => {
                let _ = handle.join();
                Err(anyhow::anyhow!(e))
            }
            Err(_) => {
                let _ = handle.join();
                Err(anyhow::anyhow!("the kernel flow thread stopped before attaching"))
            }
        }
    }

    pub fn join(self) -> bool {
        self.handle.join().is_ok()
    }

    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

fn read_counter(map: &dyn MapCore, idx: u32) -> u64 {
    match map.lookup_percpu(&idx.to_ne_bytes(), MapFlags::ANY) {
        Ok(Some(per_cpu)) => per_cpu
            .iter()
            .filter_map(|v| v.get(..8).map(|b| u64::from_ne_bytes(b.try_into().expect("8 bytes"))))
            .sum(),
        _ => 0,
    }
}

fn run(
    out: &Out,
    stop: &AtomicBool,
    counters: &PacketCounters,
    id_prefix: u32,
    ready: &mpsc::Sender<Result<usize, String>>,
) -> Result<()> {
    let mut open_object = MaybeUninit::uninit();
    let open = NetSkelBuilder::default()
        .open(&mut open_object)
        .context("opening the socket lifecycle BPF object")?;
    let skel = open.load().context("loading the socket lifecycle programs (verifier output above)")?;
    let mut links = Vec::new();
    for prog in skel.object().progs_mut() {
        let name = prog.name().to_string_lossy().into_owned();
        links.push(prog.attach().with_context(|| format!("attaching {name}"))?);
    }
    let _ = ready.send(Ok(links.len()));

    let mut table = KflowTable::new(Clock::measure(), id_prefix);
    let mut records: Vec<FlowRecord> = Vec::new();
    let pending = std::cell::RefCell::new(Vec::<KflowEvent>::new());
    let mut builder = RingBufferBuilder::new();
    builder
        .add(&skel.maps.flow_events, |data: &[u8]| {
            match decode(data) {
                Ok(ev) => pending.borrow_mut().push(ev),
                Err(_) => {
                    counters.kflow_decode_error.fetch_add(1, Relaxed);
                }
            }
            0
        })
        .context("registering the flow ring buffer")?;
    let rb = builder.build().context("creating the flow ring-buffer poller")?;
    let write = |records: &mut Vec<FlowRecord>| {
        if records.is_empty() {
            return;
        }
        let mut w = out.lock().unwrap_or_else(|p| p.into_inner());
        for r in records.drain(..) {
            let _ = w.write(FrameType::Flow, &r);
        }
    };
    let drain = |table: &mut KflowTable, records: &mut Vec<FlowRecord>| {
        for ev in pending.borrow_mut().drain(..) {
            records.push(table.on_event(&ev));
            counters.kflow_records.fetch_add(1, Relaxed);
        }
    };
    let mut last_update = std::time::Instant::now();
    while !stop.load(Relaxed) {
        let _ = rb.poll(Duration::from_millis(100));
        drain(&mut table, &mut records);
        if last_update.elapsed() >= UPDATE_EVERY {
            last_update = std::time::Instant::now();
            let live = table.live_netns();
            if !live.is_empty() {
                let paths = netns::list();
                for ns in live {
                    let Some((path, _)) = paths.get(&(ns as u64)) else { continue };
                    match netns::in_netns(path, netns::tcp_sockets) {
                        Ok(socks) => {
                            let ups = table.updates(ns, &socks, Clock::now_mono_ns());
                            counters.kflow_records.fetch_add(ups.len() as u64, Relaxed);
                            records.extend(ups);
                        }
                        Err(_) => {
                            counters.kflow_diag_errors.fetch_add(1, Relaxed);
                        }
                    }
                }
            }
        }
        write(&mut records);
        counters.kflow_ringbuf_full.store(read_counter(&skel.maps.net_counters, 0), Relaxed);
        counters.kflow_table_full.store(read_counter(&skel.maps.net_counters, 1), Relaxed);
    }
    drop(links);
    let _ = rb.consume();
    drain(&mut table, &mut records);
    write(&mut records);
    counters.kflow_ringbuf_full.store(read_counter(&skel.maps.net_counters, 0), Relaxed);
    counters.kflow_table_full.store(read_counter(&skel.maps.net_counters, 1), Relaxed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(active: bool, kind: u32, oldstate: u8) -> Vec<u8> {
        let mut b = vec![0u8; EVENT_SIZE];
        b[0..8].copy_from_slice(&2_000_000_000u64.to_ne_bytes()); // ts
        b[8..16].copy_from_slice(&1_000_000_000u64.to_ne_bytes()); // start
        b[16..24].copy_from_slice(&0xffff_8880_1234_5678u64.to_ne_bytes());
        // What a client that closed first reports for 107 bytes out, 304 in: + SYN, + FINs.
        b[24..32].copy_from_slice(&305u64.to_ne_bytes()); // bytes_received
        b[32..40].copy_from_slice(&109u64.to_ne_bytes()); // bytes_acked
        b[40..44].copy_from_slice(&kind.to_ne_bytes());
        b[44..48].copy_from_slice(&4026532178u32.to_ne_bytes());
        b[52..56].copy_from_slice(&63u32.to_ne_bytes()); // connect_us
        b[56..60].copy_from_slice(&45u32.to_ne_bytes()); // srtt
        b[60..64].copy_from_slice(&4u32.to_ne_bytes()); // segs_in
        b[64..68].copy_from_slice(&5u32.to_ne_bytes()); // segs_out
        b[68..72].copy_from_slice(&1u32.to_ne_bytes()); // total_retrans
        b[88..90].copy_from_slice(&40000u16.to_ne_bytes());
        b[90..92].copy_from_slice(&80u16.to_ne_bytes());
        b[92] = AF_INET;
        b[93] = active as u8;
        b[94] = oldstate;
        b[96..100].copy_from_slice(&[198, 18, 0, 10]);
        b[112..116].copy_from_slice(&[198, 18, 0, 20]);
        b
    }

    #[test]
    fn decodes_the_c_layout() {
        let e = decode(&raw(true, KIND_CLOSE, TCP_FIN_WAIT2)).unwrap();
        assert_eq!(e.local, ("198.18.0.10".parse().unwrap(), 40000));
        assert_eq!(e.remote, ("198.18.0.20".parse().unwrap(), 80));
        assert_eq!((e.bytes_received, e.bytes_acked, e.connect_us, e.srtt_us), (305, 109, 63, 45));
        assert_eq!(payload_bytes(&e), (107, 304));
        assert!(e.active);
        assert_eq!(decode(&[0u8; 100]), Err(KflowError::Size(100)));
        assert_eq!(decode(&raw(true, 9, 0)), Err(KflowError::Kind(9)));
    }

    #[test]
    fn client_and_server_sides_of_one_connection() {
        let mut t = KflowTable::new(Clock::from_offset_ns(0), 5);
        let open = t.on_event(&decode(&raw(true, KIND_OPEN, TCP_SYN_SENT)).unwrap());
        assert!(!open.is_final);
        let c = t.on_event(&decode(&raw(true, KIND_CLOSE, TCP_FIN_WAIT2)).unwrap());
        assert_eq!(c.flow_id, open.flow_id, "open and close records share the flow id");
        assert_eq!(c.observation_point, "c-p");
        assert_eq!((c.client_ip.as_str(), c.client_port, c.server_port), ("198.18.0.10", 40000, 80));
        assert_eq!((c.byte_tx, c.byte_rx, c.packet_tx, c.packet_rx), (107, 304, 5, 4));
        assert_eq!((c.connect_latency_us, c.srtt_us, c.retrans_tx), (Some(63), Some(45), 1));
        assert_eq!((c.close_reason, c.is_final), (Some("fin"), true));
        assert_eq!((c.start_time_us, c.end_time_us, c.duration_us), (1_000_000, 2_000_000, 1_000_000));
        assert_ne!(c.flow_id & (1 << 31), 0, "kernel flow ids are apart from packet flow ids");

        // The accepting side: local is the server; its received bytes are the client's.
        let mut b = raw(false, KIND_CLOSE, TCP_LAST_ACK);
        b[96..100].copy_from_slice(&[198, 18, 0, 20]);
        b[112..116].copy_from_slice(&[198, 18, 0, 10]);
        b[88..90].copy_from_slice(&80u16.to_ne_bytes());
        b[90..92].copy_from_slice(&40000u16.to_ne_bytes());
        // The server closed second (LAST_ACK): its FIN is not yet counted as acked.
        b[24..32].copy_from_slice(&108u64.to_ne_bytes());
        b[32..40].copy_from_slice(&305u64.to_ne_bytes());
        let s = t.on_event(&decode(&b).unwrap());
        assert_eq!(s.observation_point, "s-p");
        assert_eq!((s.client_ip.as_str(), s.client_port, s.server_port), ("198.18.0.10", 40000, 80));
        assert_eq!((s.byte_tx, s.byte_rx, s.retrans_rx, s.connect_latency_us), (107, 304, 1, None));
        assert_eq!(s.close_reason, Some("fin"));
    }

    #[test]
    fn periodic_updates_from_sock_diag() {
        let mut t = KflowTable::new(Clock::from_offset_ns(0), 5);
        let open = t.on_event(&decode(&raw(true, KIND_OPEN, TCP_SYN_SENT)).unwrap());
        assert_eq!(t.live_netns().into_iter().collect::<Vec<_>>(), vec![4026532178]);
        let d = DiagTcp {
            local: ("198.18.0.10".parse().unwrap(), 40000),
            remote: ("198.18.0.20".parse().unwrap(), 80),
            state: TCP_ESTABLISHED,
            bytes_acked: 1 + 5000,
            bytes_received: 12000,
            segs_out: 9,
            segs_in: 12,
            rtt_us: 300,
            total_retrans: 0,
        };
        let other = DiagTcp { local: ("198.18.0.10".parse().unwrap(), 1), ..d.clone() };
        let ups = t.updates(4026532178, &[other, d.clone()], 3_000_000_000);
        assert_eq!(ups.len(), 1);
        let u = &ups[0];
        assert_eq!((u.flow_id, u.is_final, u.close_reason), (open.flow_id, false, None));
        assert_eq!((u.byte_tx, u.byte_rx, u.packet_tx, u.packet_rx), (5000, 12000, 9, 12), "SYN not counted");
        assert_eq!((u.srtt_us, u.connect_latency_us, u.end_time_us), (Some(300), Some(63), 3_000_000));
        assert!(
            t.updates(4026532178, std::slice::from_ref(&d), 4_000_000_000).is_empty(),
            "nothing moved: no record"
        );
        assert!(t.updates(1, &[d], 4_000_000_000).is_empty(), "another namespace");
        let c = t.on_event(&decode(&raw(true, KIND_CLOSE, TCP_FIN_WAIT2)).unwrap());
        assert_eq!(c.flow_id, open.flow_id);
        assert!(t.live_netns().is_empty());
    }

    #[test]
    fn close_reasons() {
        let mut e = decode(&raw(true, KIND_CLOSE, TCP_SYN_SENT)).unwrap();
        assert_eq!(close_reason(&e), "connect_failed");
        e.rst_recv = 1;
        assert_eq!(close_reason(&e), "server_reset", "refused: the server side answered with RST");
        e.rst_recv = 0;
        e.oldstate = TCP_ESTABLISHED;
        assert_eq!(close_reason(&e), "client_reset", "aborted by this (client) side");
        e.active = false;
        assert_eq!(close_reason(&e), "server_reset");
        e.oldstate = TCP_CLOSE_WAIT;
        e.rst_recv = 2;
        assert_eq!(close_reason(&e), "client_reset");
    }
}
