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
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
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
    // Every segment on lo, as a packet capture (tcpdump, the N side) sees it.
    let capture = open_capture();

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
        listener
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
    let listener = server.join().expect("server thread");
    drop(c);

    // --- a response read after the server closed: the client waits until the FIN
    // is queued behind the response, peeks at it, then takes the response and the
    // FIN in one read. tcp_recvmsg counts the FIN in copied_seq, so copied_seq - ret
    // was one past the response's first byte (the intermittent failure of the
    // "response sequence numbers agree" check below, which hit when the first read
    // came after the FIN); and the peek, which moves nothing, must leave no record.
    let server = thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept (second connection)");
        s.write_all(&[RESP_HEAD, &[b'f'; 10_000][..]].concat()).expect("write then close");
    });
    let mut c = TcpStream::connect(addr).expect("connect (second connection)");
    server.join().expect("server thread (second connection)");
    wait_for_fin(&c);
    let mut buf = vec![0u8; 65536];
    let peeked = c.peek(&mut buf).expect("peek");
    assert!(peeked >= RESP_HEAD.len(), "peeked {peeked} bytes");
    let n = c.read(&mut buf).expect("read the response and the FIN");
    assert_eq!(n, RESP_HEAD.len() + 10_000, "one read takes the whole response");
    assert_eq!(c.read(&mut buf).expect("read at end of stream"), 0);
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
    let segments = drain_capture(&capture);

    let accepts: Vec<&Event> = events.iter().filter(|e| e.kind == Kind::Accept).collect();
    let connects: Vec<&Event> = events.iter().filter(|e| e.kind == Kind::Connect && !e.udp).collect();
    assert_eq!((accepts.len(), connects.len()), (2, 2), "two TCP connections");
    let (accept, connect) = (accepts[0], connects[0]);
    let (srv, cli) = (accept.sock, connect.sock);
    assert_ne!(srv, cli);
    assert_eq!(accept.local.1, addr.port(), "server socket's local port");
    assert_eq!(connect.remote.1, addr.port(), "client socket's remote port");
    assert_eq!(connect.local.1, accept.remote.1, "the two ends agree on the client port");

    // The kernel may give the second connection's sockets the addresses of the
    // first's (freed, then reused), so the records are split where it begins.
    let second =
        events.iter().position(|e| std::ptr::eq(e, accepts[1]) || std::ptr::eq(e, connects[1])).unwrap();
    let data_in = |of_second: bool, sock: u64, dir: Direction| -> Vec<&Event> {
        let range = if of_second { &events[second..] } else { &events[..second] };
        range.iter().filter(|e| e.kind == Kind::Data && e.sock == sock && e.direction == dir).collect()
    };
    let data = |sock: u64, dir: Direction| data_in(false, sock, dir);
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

    // The FIN regression: one record for the read that took the response and the
    // FIN (none for the peek), numbered like the server's write.
    let (srv2, cli2) = (accepts[1].sock, connects[1].sock);
    let s2_out = data_in(true, srv2, Direction::Egress);
    let c2_in = data_in(true, cli2, Direction::Ingress);
    assert_eq!(c2_in.len(), 1, "the peek leaves no record; the read leaves one");
    assert_eq!(c2_in[0].total as usize, RESP_HEAD.len() + 10_000);
    assert_eq!(&c2_in[0].payload[..RESP_HEAD.len()], RESP_HEAD);
    assert_eq!(c2_in[0].tcp_seq, s2_out[0].tcp_seq, "a read that consumed the FIN: sequence numbers agree");

    // Every TCP record's number is the seq a packet capture gives its first byte:
    // the seq of the segment carrying it plus the byte's offset in that segment,
    // and the bytes there are the record's bytes.
    let tcp_records: Vec<&Event> = events.iter().filter(|e| e.kind == Kind::Data && !e.udp).collect();
    assert!(tcp_records.len() >= 6, "{} TCP records", tcp_records.len());
    for e in &tcp_records {
        let (from, to) = match e.direction {
            Direction::Egress => (e.local.1, e.remote.1),
            Direction::Ingress => (e.remote.1, e.local.1),
        };
        let hit = segments.iter().find_map(|g| {
            let off = e.tcp_seq.wrapping_sub(g.seq) as usize;
            (g.ports == (from, to) && off < g.payload.len()).then(|| &g.payload[off..])
        });
        let Some(wire) = hit else {
            panic!(
                "no captured segment {from}->{to} carries seq {} ({:?} {:?})",
                e.tcp_seq, e.syscall, e.direction
            )
        };
        let k = wire.len().min(e.payload.len());
        assert!(
            k > 0 && wire[..k] == e.payload[..k],
            "bytes at seq {} on the wire ({:?} {:?})",
            e.tcp_seq,
            e.syscall,
            e.direction
        );
    }

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

/// Waits (at most 2 s) until the peer's FIN has reached the socket (CLOSE_WAIT).
fn wait_for_fin(sock: &TcpStream) {
    const TCP_CLOSE_WAIT: u8 = 8;
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        // SAFETY: tcp_info is plain data; the length passed is its size.
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let rc = unsafe {
            libc::getsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&mut info as *mut libc::tcp_info).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0, "TCP_INFO");
        if info.tcpi_state == TCP_CLOSE_WAIT {
            return;
        }
        assert!(Instant::now() < deadline, "the server's FIN did not arrive (state {})", info.tcpi_state);
        thread::sleep(Duration::from_millis(5));
    }
}

/// One TCP segment seen on lo.
struct Segment {
    ports: (u16, u16),
    seq: u32,
    payload: Vec<u8>,
}

/// A packet socket on lo (cooked: IP header first), non-blocking, with a buffer
/// that holds every segment of the test's exchanges.
fn open_capture() -> OwnedFd {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2).
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            proto.into(),
        )
    };
    assert!(fd >= 0, "AF_PACKET socket (root): {}", std::io::Error::last_os_error());
    // SAFETY: fd was just opened and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let size: libc::c_int = 16 << 20;
    // SAFETY: sockaddr_ll is plain data; pointers and lengths match their values.
    unsafe {
        let rc = libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "SO_RCVBUFFORCE");
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = libc::if_nametoindex(c"lo".as_ptr()) as i32;
        let rc = libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "bind to lo: {}", std::io::Error::last_os_error());
    }
    fd
}

/// The IPv4 TCP segments with payload captured so far (each appears twice on lo:
/// sent and received). Panics if the socket dropped any.
fn drain_capture(fd: &OwnedFd) -> Vec<Segment> {
    let mut segments = Vec::new();
    let mut buf = vec![0u8; 1 << 17];
    loop {
        // SAFETY: buf is writable for its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock, "capture: {err}");
            break;
        }
        let p = &buf[..n as usize];
        if p.len() < 20 || p[0] >> 4 != 4 || p[9] != libc::IPPROTO_TCP as u8 {
            continue;
        }
        let ihl = usize::from(p[0] & 0x0f) * 4;
        let end = usize::from(u16::from_be_bytes([p[2], p[3]])).min(p.len());
        let t = &p[ihl..end];
        let doff = usize::from(t[12] >> 4) * 4;
        if t.len() > doff {
            segments.push(Segment {
                ports: (u16::from_be_bytes([t[0], t[1]]), u16::from_be_bytes([t[2], t[3]])),
                seq: u32::from_be_bytes([t[4], t[5], t[6], t[7]]),
                payload: t[doff..].to_vec(),
            });
        }
    }
    // SAFETY: tpacket_stats is plain data; the length passed is its size.
    let mut stats: libc::tpacket_stats = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&mut stats as *mut libc::tpacket_stats).cast(),
            &mut len,
        )
    };
    assert_eq!((rc, stats.tp_drops), (0, 0), "the capture lost no packet");
    segments
}

/// sendmmsg(2) of two datagrams on a connected UDP socket, as glibc's resolver does.
fn send_two_datagrams(sock: &UdpSocket, a: &[u8], b: &[u8]) {
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
