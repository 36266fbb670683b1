//! Root-only test of the BPF side: loads the object, traces this very process
//! and checks the records of a loopback HTTP exchange it makes with itself.
//!
//! Tagged by environment so plain `cargo test` stays root-free and hermetic:
//!
//!     sudo TAPDECK_ROOT_TESTS=1 cargo test --test bpf_root
//!
//! It has its own `main` (harness = false) because mounting tracefs privately
//! needs unshare(CLONE_NEWNS), which the kernel refuses to multi-threaded
//! callers such as the default test harness.

use std::io::{IoSlice, Read, Write};
use std::mem::MaybeUninit;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, RingBufferBuilder};
use tapdeck_collector::bpf::TapdeckSkelBuilder;
use tapdeck_collector::event::{decode, Direction, Event, Kind, Syscall};
use tapdeck_collector::probe;

const REQUEST: &[u8] = b"GET /root-test HTTP/1.1\r\nHost: localhost\r\nX-Request-ID: root-1\r\n\r\n";
const DNS_SINK: &str = "127.77.0.53:53";
const RESP_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n";

fn main() {
    if std::env::var_os("TAPDECK_ROOT_TESTS").is_none() {
        println!("bpf_root: skipped (set TAPDECK_ROOT_TESTS=1 and run as root)");
        return;
    }
    let tracefs = probe::ensure_tracefs();
    let report = probe::check(&tracefs);
    assert!(report.missing.is_empty(), "requirements missing: {:?}", report.missing);

    let mut open_object = MaybeUninit::uninit();
    let mut open = TapdeckSkelBuilder::default().open(&mut open_object).expect("open");
    open.maps.rodata_data.as_deref_mut().expect("rodata").max_payload = 4096;
    let skel = open.load().expect("load (verifier)");
    let links: Vec<_> = skel.object().progs_mut().map(|p| p.attach().expect("attach")).collect();
    assert_eq!(links.len(), 3, "raw_syscalls sys_enter + sys_exit, sched_process_fork");
    let me = std::process::id();
    skel.maps.pids.update(&me.to_ne_bytes(), &[1u8], MapFlags::ANY).expect("pids map");

    let mut events: Vec<Event> = Vec::new();
    let collected = std::cell::RefCell::new(&mut events);
    let mut builder = RingBufferBuilder::new();
    builder
        .add(&skel.maps.events, |data: &[u8]| {
            collected.borrow_mut().push(decode(data).expect("decodable record"));
            0
        })
        .expect("ring buffer");
    let rb = builder.build().expect("ring buffer");

    // --- the exchange: client sends (sendto), server recvs (recvfrom), server
    // answers with writev (head + 10000-byte body), client reads it all.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut buf = vec![0u8; 1024];
        let n = s.read(&mut buf).expect("server read");
        assert_eq!(&buf[..n], REQUEST);
        let body = vec![b'b'; 10_000];
        let written = s.write_vectored(&[IoSlice::new(RESP_HEAD), IoSlice::new(&body)]).expect("writev");
        let all = [RESP_HEAD, &body[..]].concat();
        s.write_all(&all[written..]).expect("write the rest");
    });
    let mut c = TcpStream::connect(addr).expect("connect");
    c.write_all(REQUEST).expect("client write");
    let mut got = Vec::new();
    while got.len() < RESP_HEAD.len() + 10_000 {
        let mut buf = vec![0u8; 65536];
        let n = c.read(&mut buf).expect("client read");
        assert!(n > 0, "server closed early");
        got.extend_from_slice(&buf[..n]);
    }
    server.join().expect("server thread");
    drop(c);

    // --- UDP: only datagrams to or from port 53 are traced (DNS). A sink on a
    // loopback address of its own takes them (so no ICMP error fails the sends);
    // it is not traced: it reads nothing.
    let sink = UdpSocket::bind(DNS_SINK).expect("bind a UDP sink on port 53 (root)");
    let u = UdpSocket::bind("127.0.0.1:0").expect("udp bind");
    u.send_to(b"dns-unconnected", DNS_SINK).expect("sendto :53");
    u.send_to(b"not-dns", "127.0.0.1:9").expect("sendto :9");
    let m = UdpSocket::bind("127.0.0.1:0").expect("udp bind");
    m.connect(DNS_SINK).expect("udp connect");
    send_two_datagrams(&m, b"mmsg-one", b"mmsg-two");
    drop((u, m, sink));

    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        rb.poll(Duration::from_millis(50)).expect("poll");
        rb.consume().expect("consume");
    }
    drop(rb);
    drop(links);
    let events = events;

    let accept = events.iter().find(|e| e.kind == Kind::Accept).expect("accept4 event");
    let connect = events.iter().find(|e| e.kind == Kind::Connect).expect("connect event");
    let (srv, cli) = (accept.sock, connect.sock);
    assert_ne!(srv, cli);
    assert_eq!(accept.local.1, addr.port(), "server socket's local port");
    assert_eq!(connect.remote.1, addr.port(), "client socket's remote port");
    assert_eq!(connect.local.1, accept.remote.1, "the two ends agree on the client port");

    let data = |sock: u64, dir: Direction| -> Vec<&Event> {
        events.iter().filter(|e| e.kind == Kind::Data && e.sock == sock && e.direction == dir).collect()
    };
    let c_out = data(cli, Direction::Egress);
    let s_in = data(srv, Direction::Ingress);
    assert_eq!(c_out.len(), 1, "one client send");
    assert_eq!(c_out[0].syscall, Syscall::Sendto);
    assert_eq!(c_out[0].payload, REQUEST);
    assert_eq!(s_in.len(), 1, "one server recv");
    assert_eq!(s_in[0].syscall, Syscall::Recvfrom);
    assert_eq!(s_in[0].payload, REQUEST);
    assert_eq!(c_out[0].tcp_seq, s_in[0].tcp_seq, "both ends report the request's first sequence number");
    assert!(s_in[0].enter_ns <= s_in[0].exit_ns);
    assert!(c_out[0].comm().starts_with("bpf_root"), "comm {:?}", c_out[0].comm());

    let s_out = data(srv, Direction::Egress);
    assert_eq!(s_out[0].syscall, Syscall::Writev);
    let total: u64 = s_out.iter().map(|e| e.total as u64).sum();
    assert_eq!(total, (RESP_HEAD.len() + 10_000) as u64, "response bytes");
    assert_eq!(s_out[0].payload.len(), (s_out[0].total as usize).min(4096), "payload capped at 4096");
    assert_eq!(&s_out[0].payload[..RESP_HEAD.len()], RESP_HEAD, "iovecs concatenated in order");
    assert!(s_out[0].payload[RESP_HEAD.len()..].iter().all(|&b| b == b'b'));
    let c_in = data(cli, Direction::Ingress);
    let brief = |v: &[&Event]| {
        v.iter().map(|e| (e.syscall, e.tcp_seq, e.total, e.enter_ns, e.exit_ns, e.tid)).collect::<Vec<_>>()
    };
    assert_eq!(
        c_in[0].tcp_seq,
        s_out[0].tcp_seq,
        "response sequence numbers agree: {:?} {:?}",
        brief(&c_in),
        brief(&s_out)
    );

    let udp: Vec<&Event> = events.iter().filter(|e| e.kind == Kind::Data && e.udp).collect();
    let payloads: Vec<&[u8]> = udp.iter().map(|e| &e.payload[..]).collect();
    assert_eq!(
        payloads,
        vec![&b"dns-unconnected"[..], b"mmsg-one", b"mmsg-two"],
        "UDP records: port 53 only"
    );
    assert_eq!(udp[0].syscall, Syscall::Sendto);
    assert_eq!(udp[0].remote, ("127.77.0.53".parse().unwrap(), 53), "peer from sendto's address");
    assert_eq!(
        (udp[1].syscall, udp[1].total, udp[2].total),
        (Syscall::Sendmsg, 8, 8),
        "sendmmsg: one record per datagram"
    );
    assert_eq!(udp[1].remote.1, 53);
    assert!(events
        .iter()
        .filter(|e| e.kind == Kind::Data)
        .all(|e| e.udp || e.remote.1 == addr.port() || e.local.1 == addr.port()));

    let closes: Vec<u64> = events.iter().filter(|e| e.kind == Kind::Close).map(|e| e.sock).collect();
    assert!(closes.contains(&srv) && closes.contains(&cli), "close events for both sockets");
    assert!(events.iter().all(|e| e.tgid == me), "only this process is traced");

    let per_cpu = skel.maps.counters.lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY).unwrap().unwrap();
    let ringbuf_full: u64 = per_cpu.iter().map(|v| u64::from_ne_bytes(v[..8].try_into().unwrap())).sum();
    assert_eq!(ringbuf_full, 0);
    println!("bpf_root: ok ({} records)", events.len());
}

/// sendmmsg(2) of two datagrams on a connected UDP socket, as glibc's resolver does.
fn send_two_datagrams(sock: &UdpSocket, a: &[u8], b: &[u8]) {
    use std::os::fd::AsRawFd;
    let mut iov = [
        libc::iovec { iov_base: a.as_ptr() as *mut libc::c_void, iov_len: a.len() },
        libc::iovec { iov_base: b.as_ptr() as *mut libc::c_void, iov_len: b.len() },
    ];
    // SAFETY: zeroed mmsghdr is valid (null name and control); the iovecs point at
    // buffers that outlive the call.
    let mut msgs: [libc::mmsghdr; 2] = unsafe { std::mem::zeroed() };
    for (m, v) in msgs.iter_mut().zip(iov.iter_mut()) {
        m.msg_hdr.msg_iov = v;
        m.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: msgs holds two initialised headers.
    let n = unsafe { libc::sendmmsg(sock.as_raw_fd(), msgs.as_mut_ptr(), 2, 0) };
    assert_eq!(n, 2, "sendmmsg sent both datagrams");
}
