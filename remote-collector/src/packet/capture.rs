//! Packet capture on every interface of every network namespace.
//!
//! Mechanism: one AF_PACKET/SOCK_DGRAM socket (ETH_P_ALL) per namespace, opened
//! by a helper thread that `setns`es into it, with a classic BPF socket filter
//! attached in the kernel that keeps IPv4/IPv6 TCP packets only and truncates
//! them to the snap length (headers + the payload cap). SOCK_DGRAM hands us the
//! network header whatever the link type (Ethernet, loopback, tun), and the
//! sockaddr_ll tells the interface and the direction. An unbound packet socket
//! sees every interface of its namespace, including ones created later. Loopback
//! packets are seen twice (out and in): the outgoing copy is skipped.
//!
//! Why not tc/eBPF: a socket filter needs no qdisc changes on the node's
//! interfaces (nothing to clean up if the collector is killed) and the kernel
//! removes it with the socket.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use super::netns::{self, NetnsInfo, NodeTopology};
use super::parse;
use super::table::{FlowRecord, FlowTable, Limits, NetSpan, Tap};
use crate::frame::{FrameType, FrameWriter};

pub type Out = Arc<Mutex<FrameWriter<File>>>;

const RESCAN_EVERY: Duration = Duration::from_secs(5);
const TICK_EVERY: Duration = Duration::from_millis(500);
const RCVBUF: i32 = 8 << 20;
const PACKET_OUTGOING: u8 = 4;
const BATCH: usize = 256;

#[derive(Debug, Clone)]
pub struct PacketOptions {
    /// Interface names to keep (empty: all).
    pub interfaces: Vec<String>,
    /// Payload bytes kept per packet.
    pub max_payload: u32,
}

/// Counters of the packet side, reported in `stats` (`packets` and `drops`).
#[derive(Debug, Default)]
pub struct PacketCounters {
    pub packets_seen: AtomicU64,
    pub packets_tcp: AtomicU64,
    pub bytes_seen: AtomicU64,
    pub kernel_drops: AtomicU64,
    pub not_parsed: AtomicU64,
    pub loopback_copies: AtomicU64,
    pub other_interfaces: AtomicU64,
    pub spans_sent: AtomicU64,
    pub flow_records: AtomicU64,
    pub flows: AtomicU64,
    pub flow_table_full: AtomicU64,
    pub reassembly_gaps: AtomicU64,
    pub pending_overflow: AtomicU64,
    pub response_without_request: AtomicU64,
    pub parse_errors: AtomicU64,
    pub namespaces: AtomicU64,
    pub sockets: AtomicU64,
    pub socket_errors: AtomicU64,
    // Process-side flows from socket events (kflows.rs).
    pub kflow_records: AtomicU64,
    pub kflow_ringbuf_full: AtomicU64,
    pub kflow_table_full: AtomicU64,
    pub kflow_decode_error: AtomicU64,
    pub kflow_diag_errors: AtomicU64,
}

/// The `packets` object of a `stats` frame.
#[derive(Debug, Serialize)]
pub struct PacketStats {
    pub packets_seen: u64,
    pub packets_tcp: u64,
    pub bytes_seen: u64,
    pub n_spans_sent: u64,
    pub flow_records_sent: u64,
    pub flows: u64,
    pub namespaces: u64,
    pub sockets: u64,
    pub http_parse_errors: u64,
    pub socket_flow_records_sent: u64,
}

impl PacketCounters {
    pub fn stats(&self) -> PacketStats {
        PacketStats {
            packets_seen: self.packets_seen.load(Relaxed),
            packets_tcp: self.packets_tcp.load(Relaxed),
            bytes_seen: self.bytes_seen.load(Relaxed),
            n_spans_sent: self.spans_sent.load(Relaxed),
            flow_records_sent: self.flow_records.load(Relaxed),
            flows: self.flows.load(Relaxed),
            namespaces: self.namespaces.load(Relaxed),
            sockets: self.sockets.load(Relaxed),
            http_parse_errors: self.parse_errors.load(Relaxed),
            socket_flow_records_sent: self.kflow_records.load(Relaxed),
        }
    }

    /// Drop reasons added to `stats.drops` (STREAM.md).
    pub fn drops(&self) -> BTreeMap<&'static str, u64> {
        [
            ("packet_socket_full", self.kernel_drops.load(Relaxed)),
            ("packet_not_parsed", self.not_parsed.load(Relaxed)),
            ("packet_flow_table_full", self.flow_table_full.load(Relaxed)),
            ("packet_reassembly_gap", self.reassembly_gaps.load(Relaxed)),
            ("packet_pending_overflow", self.pending_overflow.load(Relaxed)),
            ("packet_response_without_request", self.response_without_request.load(Relaxed)),
            ("packet_socket_error", self.socket_errors.load(Relaxed)),
            ("socket_flow_ringbuf_full", self.kflow_ringbuf_full.load(Relaxed)),
            ("socket_flow_table_full", self.kflow_table_full.load(Relaxed)),
            ("socket_flow_decode_error", self.kflow_decode_error.load(Relaxed)),
            ("socket_flow_update_failed", self.kflow_diag_errors.load(Relaxed)),
        ]
        .into_iter()
        .collect()
    }
}

/// Classic BPF: keep IPv4/IPv6 TCP, truncated to `snap` bytes. The socket is
/// SOCK_DGRAM, so offset 0 is the network header.
fn filter(snap: u32) -> Vec<libc::sock_filter> {
    let op = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter { code: code as u16, jt, jf, k };
    let ld_proto = libc::BPF_LD | libc::BPF_H | libc::BPF_ABS;
    let ldb = libc::BPF_LD | libc::BPF_B | libc::BPF_ABS;
    let jeq = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
    let ret = libc::BPF_RET | libc::BPF_K;
    let skf_ad_protocol = (libc::SKF_AD_OFF + libc::SKF_AD_PROTOCOL) as u32;
    vec![
        op(ld_proto, 0, 0, skf_ad_protocol), // 0: A = ethertype
        op(jeq, 0, 2, 0x0800),               // 1: IPv4 → 2, else → 4
        op(ldb, 0, 0, 9),                    // 2: A = IPv4 protocol
        op(jeq, 3, 4, 6),                    // 3: TCP → 7, else → 8
        op(jeq, 0, 3, 0x86dd),               // 4: IPv6 → 5, else → 8
        op(ldb, 0, 0, 6),                    // 5: A = IPv6 next header
        op(jeq, 0, 1, 6),                    // 6: TCP → 7, else → 8
        op(ret, 0, 0, snap),                 // 7: keep snap bytes
        op(ret, 0, 0, 0),                    // 8: drop
    ]
}

fn setsockopt<T>(fd: i32, level: i32, name: i32, v: &T) -> io::Result<()> {
    // SAFETY: v points to a live T of the given size.
    let r = unsafe { libc::setsockopt(fd, level, name, (v as *const T).cast(), size_of::<T>() as u32) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Opens the filtered packet socket of the calling thread's namespace.
fn open_socket(snap: u32) -> io::Result<OwnedFd> {
    let proto = (libc::ETH_P_ALL as u16).to_be() as i32;
    // SAFETY: socket(2); result checked.
    let fd = unsafe {
        libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, proto)
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor we own.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let prog = filter(snap);
    let fprog = libc::sock_fprog { len: prog.len() as u16, filter: prog.as_ptr() as *mut _ };
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)?;
    if setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &RCVBUF).is_err() {
        let _ = setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &RCVBUF);
    }
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, &1i32)?;
    // Packets queued before the filter was attached are not filtered: drain them.
    let mut junk = [0u8; 64];
    // SAFETY: recv writes into `junk`.
    while unsafe { libc::recv(fd, junk.as_mut_ptr().cast(), junk.len(), libc::MSG_DONTWAIT) } >= 0 {}
    Ok(sock)
}

/// Kernel drops since the last call (PACKET_STATISTICS resets on read).
fn kernel_drops(fd: i32) -> u64 {
    let mut st = libc::tpacket_stats { tp_packets: 0, tp_drops: 0 };
    let mut len = size_of::<libc::tpacket_stats>() as u32;
    // SAFETY: getsockopt writes at most len bytes into st.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&mut st as *mut libc::tpacket_stats).cast(),
            &mut len,
        )
    };
    if r == 0 {
        st.tp_drops as u64
    } else {
        0
    }
}

struct NsSocket {
    netns: u64,
    sock: OwnedFd,
}

struct Received {
    len: usize,
    wire_len: usize,
    ifindex: u32,
    pkttype: u8,
    proto: u16,
    ts_ns: u64,
}

fn recv_one(fd: i32, buf: &mut [u8]) -> io::Result<Option<Received>> {
    // SAFETY: all-zero is a valid sockaddr_ll / msghdr / cmsg buffer.
    let mut addr: libc::sockaddr_ll = unsafe { zeroed() };
    let mut cbuf = [0u64; 8];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_name = (&mut addr as *mut libc::sockaddr_ll).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_ll>() as u32;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = size_of::<[u64; 8]>();
    // SAFETY: msg points at buffers that live across the call.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT | libc::MSG_TRUNC) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
            _ => Err(e),
        };
    }
    let mut ts_ns = 0u64;
    // SAFETY: the CMSG_* macros walk the control buffer the kernel filled.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                ts_ns = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    if ts_ns == 0 {
        ts_ns = wall_ns();
    }
    let wire_len = n as usize;
    Ok(Some(Received {
        len: wire_len.min(buf.len()),
        wire_len,
        ifindex: addr.sll_ifindex as u32,
        pkttype: addr.sll_pkttype,
        proto: u16::from_be(addr.sll_protocol),
        ts_ns,
    }))
}

pub fn wall_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into ts.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub struct PacketCapture {
    pub counters: Arc<PacketCounters>,
    handle: JoinHandle<()>,
}

impl PacketCapture {
    /// Opens the sockets of the namespaces present now (errors here fail the run)
    /// and starts the capture thread. It stops when `stop` is set.
    pub fn start(opts: PacketOptions, out: Out, stop: Arc<AtomicBool>, id_prefix: u32) -> Result<Self> {
        let counters = Arc::new(PacketCounters::default());
        let snap = opts.max_payload + 128;
        let mut st = State {
            opts,
            out,
            counters: counters.clone(),
            sockets: Vec::new(),
            topo: Arc::new(NodeTopology::default()),
            keep: None,
            loopbacks: HashSet::new(),
            snap,
            warned: HashSet::new(),
        };
        st.rescan(true).context("opening packet sockets in the node's network namespaces")?;
        let mut table = FlowTable::new(st.topo.clone(), Limits::default(), id_prefix);
        let handle = thread::Builder::new()
            .name("packet-capture".into())
            .spawn(move || st.run(&mut table, &stop))
            .context("spawning the packet capture thread")?;
        Ok(Self { counters, handle })
    }

    pub fn join(self) -> bool {
        self.handle.join().is_ok()
    }

    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

struct State {
    opts: PacketOptions,
    out: Out,
    counters: Arc<PacketCounters>,
    sockets: Vec<NsSocket>,
    topo: Arc<NodeTopology>,
    /// (netns, ifindex) kept when --interfaces is given.
    keep: Option<HashSet<(u64, u32)>>,
    loopbacks: HashSet<(u64, u32)>,
    snap: u32,
    warned: HashSet<u64>,
}

impl State {
    /// Finds namespaces, opens sockets in new ones, refreshes interfaces, writes
    /// `netns` frames for what changed.
    fn rescan(&mut self, first: bool) -> Result<()> {
        // The node's namespace is the one the collector runs in (started over SSH).
        let host = netns::inode_of(std::path::Path::new("/proc/self/ns/net")).unwrap_or(0);
        let found = netns::list();
        let mut infos: HashMap<u64, NetnsInfo> = HashMap::new();
        let snap = self.snap;
        for (ino, (path, names)) in found {
            let want_socket = !self.sockets.iter().any(|s| s.netns == ino);
            let r = netns::in_netns(&path, move || {
                let ifs = netns::interfaces()?;
                let sock = if want_socket { Some(open_socket(snap)?) } else { None };
                Ok((ifs, sock))
            });
            match r {
                Ok((interfaces, sock)) => {
                    if let Some(sock) = sock {
                        self.sockets.push(NsSocket { netns: ino, sock });
                    }
                    infos.insert(ino, NetnsInfo { netns: ino, names, host: ino == host, interfaces, path });
                }
                Err(e) => {
                    // A namespace may vanish between listing and entering it.
                    if first && ino == host {
                        return Err(anyhow::Error::new(e).context("capturing in the host network namespace"));
                    }
                    if self.warned.insert(ino) {
                        Counters::inc(&self.counters.socket_errors);
                        eprintln!("tapdeck-collector: cannot capture in network namespace {ino}: {e}");
                    }
                }
            }
        }
        // Sockets of namespaces that are gone.
        self.sockets.retain(|s| infos.contains_key(&s.netns));
        let mut changed: Vec<&NetnsInfo> =
            infos.values().filter(|n| self.topo.netns.get(&n.netns) != Some(*n)).collect();
        changed.sort_by_key(|n| n.netns);
        if !changed.is_empty() {
            let mut w = lock(&self.out);
            for n in changed {
                let _ = w.write(FrameType::Netns, n);
            }
        }
        self.loopbacks = infos
            .values()
            .flat_map(|n| n.interfaces.iter().filter(|i| i.loopback).map(move |i| (n.netns, i.ifindex)))
            .collect();
        if !self.opts.interfaces.is_empty() {
            let names = &self.opts.interfaces;
            self.keep = Some(
                infos
                    .values()
                    .flat_map(|n| {
                        n.interfaces
                            .iter()
                            .filter(|i| names.contains(&i.name))
                            .map(move |i| (n.netns, i.ifindex))
                    })
                    .collect(),
            );
        }
        self.counters.namespaces.store(infos.len() as u64, Relaxed);
        self.counters.sockets.store(self.sockets.len() as u64, Relaxed);
        self.topo = Arc::new(NodeTopology { host, netns: infos });
        Ok(())
    }

    fn run(mut self, table: &mut FlowTable<Arc<NodeTopology>>, stop: &AtomicBool) {
        let mut buf = vec![0u8; self.snap as usize + 64];
        let mut spans: Vec<NetSpan> = Vec::new();
        let mut flows: Vec<FlowRecord> = Vec::new();
        let mut last_rescan = Instant::now();
        let mut last_tick = Instant::now();
        let mut pfds: Vec<libc::pollfd> = Vec::new();
        while !stop.load(Relaxed) {
            pfds.clear();
            pfds.extend(self.sockets.iter().map(|s| libc::pollfd {
                fd: s.sock.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }));
            // SAFETY: pfds is a live array of pollfd.
            let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 50) };
            if r > 0 {
                for (i, p) in pfds.iter().enumerate() {
                    if p.revents == 0 {
                        continue;
                    }
                    let netns = self.sockets[i].netns;
                    let fd = p.fd;
                    for _ in 0..BATCH {
                        match recv_one(fd, &mut buf) {
                            Ok(Some(rx)) => {
                                self.on_packet(table, netns, &rx, &buf[..rx.len], &mut spans, &mut flows)
                            }
                            Ok(None) => break,
                            Err(e) => {
                                Counters::inc(&self.counters.socket_errors);
                                if self.warned.insert(netns) {
                                    eprintln!("tapdeck-collector: reading packets in namespace {netns}: {e}");
                                }
                                break;
                            }
                        }
                    }
                }
            }
            if last_tick.elapsed() >= TICK_EVERY {
                last_tick = Instant::now();
                table.tick(wall_ns(), &mut spans, &mut flows);
                let drops: u64 = self.sockets.iter().map(|s| kernel_drops(s.sock.as_raw_fd())).sum();
                self.counters.kernel_drops.fetch_add(drops, Relaxed);
                self.sync_table_stats(table);
            }
            if last_rescan.elapsed() >= RESCAN_EVERY {
                last_rescan = Instant::now();
                if self.rescan(false).is_ok() {
                    table.set_topology(self.topo.clone());
                }
            }
            self.write(&mut spans, &mut flows);
        }
        // Drain what the kernel still holds, then close every flow.
        for s in &self.sockets {
            while let Ok(Some(rx)) = recv_one(s.sock.as_raw_fd(), &mut buf) {
                self.on_packet(table, s.netns, &rx, &buf[..rx.len], &mut spans, &mut flows);
            }
        }
        let drops: u64 = self.sockets.iter().map(|s| kernel_drops(s.sock.as_raw_fd())).sum();
        self.counters.kernel_drops.fetch_add(drops, Relaxed);
        table.finish(wall_ns(), &mut spans, &mut flows);
        self.sync_table_stats(table);
        self.write(&mut spans, &mut flows);
    }

    fn sync_table_stats(&self, table: &FlowTable<Arc<NodeTopology>>) {
        let s = &table.stats;
        let c = &self.counters;
        c.spans_sent.store(s.spans, Relaxed);
        c.flow_records.store(s.flow_records, Relaxed);
        c.flows.store(s.flows, Relaxed);
        c.flow_table_full.store(s.flow_table_full, Relaxed);
        c.reassembly_gaps.store(s.reassembly_gaps, Relaxed);
        c.pending_overflow.store(s.pending_overflow, Relaxed);
        c.response_without_request.store(s.response_without_request, Relaxed);
        c.parse_errors.store(s.parse_errors, Relaxed);
    }

    fn on_packet(
        &self,
        table: &mut FlowTable<Arc<NodeTopology>>,
        netns: u64,
        rx: &Received,
        pkt: &[u8],
        spans: &mut Vec<NetSpan>,
        flows: &mut Vec<FlowRecord>,
    ) {
        let (counters, loopbacks, keep) = (&self.counters, &self.loopbacks, &self.keep);
        Counters::inc(&counters.packets_seen);
        counters.bytes_seen.fetch_add(rx.wire_len as u64, Relaxed);
        let key = (netns, rx.ifindex);
        if rx.pkttype == PACKET_OUTGOING && loopbacks.contains(&key) {
            Counters::inc(&counters.loopback_copies);
            return;
        }
        if let Some(k) = keep {
            if !k.contains(&key) {
                Counters::inc(&counters.other_interfaces);
                return;
            }
        }
        match parse::parse(rx.proto, pkt) {
            Ok(seg) => {
                Counters::inc(&counters.packets_tcp);
                table.on_segment(&Tap { netns, ifindex: rx.ifindex }, rx.ts_ns, &seg, spans, flows);
            }
            Err(_) => Counters::inc(&counters.not_parsed),
        }
    }

    fn write(&self, spans: &mut Vec<NetSpan>, flows: &mut Vec<FlowRecord>) {
        if spans.is_empty() && flows.is_empty() {
            return;
        }
        let mut w = lock(&self.out);
        for s in spans.drain(..) {
            let _ = w.write(FrameType::Span, &s);
        }
        for f in flows.drain(..) {
            let _ = w.write(FrameType::Flow, &f);
        }
    }
}

struct Counters;

impl Counters {
    fn inc(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }
}

fn lock(w: &Out) -> std::sync::MutexGuard<'_, FrameWriter<File>> {
    w.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_shape() {
        let f = filter(4224);
        assert_eq!(f.len(), 9);
        // Every jump lands inside the program.
        for (i, op) in f.iter().enumerate() {
            if op.code as u32 & 0x07 == libc::BPF_JMP {
                assert!(i + 1 + (op.jt as usize) < f.len() && i + 1 + (op.jf as usize) < f.len());
            }
        }
        assert_eq!(f[7].k, 4224);
        assert_eq!(f[8].k, 0);
    }
}
