//! Arbitrary syscall events on a few sockets (accept, connect, data either way
//! with capture gaps, close) through the whole tracker: protocol detection, the
//! HTTP/1.x streams and every L7 session. Nothing may panic, and every span must
//! be well formed.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use tapdeck_collector::event::{Direction, Event, Kind, Syscall};
use tapdeck_collector::stats::Counters;
use tapdeck_collector::syscall_trace::SyscallTraceIds;
use tapdeck_collector::tracker::{Clock, Limits, Tracker};

fuzz_target!(|data: &[u8]| {
    let counters = Arc::new(Counters::default());
    let limits = Limits { max_connections: 4, max_pending: 4, max_l7_pending: 8, ..Limits::default() };
    let mut t = Tracker::new(Clock::from_offset_ns(0), counters, SyscallTraceIds::new(1), |_| None, limits);
    let mut spans = Vec::new();
    // Control byte: socket (2 bits), kind (2 bits), direction (1 bit), gap (1 bit),
    // then a length byte and that many payload bytes.
    let mut rest = data;
    let mut now = 1u64;
    while let [ctl, len, tail @ ..] = rest {
        let n = (*len as usize).min(tail.len());
        let (payload, tail) = tail.split_at(n);
        rest = tail;
        now += 1000;
        let kind = match (ctl >> 2) & 3 {
            0 | 1 => Kind::Data,
            2 => Kind::Close,
            _ if ctl & 0x10 != 0 => Kind::Accept,
            _ => Kind::Connect,
        };
        let dir = if ctl & 0x10 != 0 { Direction::Egress } else { Direction::Ingress };
        let gap = if ctl & 0x20 != 0 { u32::from(*len) * 31 } else { 0 };
        // The fourth socket is a UDP socket talking to port 53 (the DNS session).
        let udp = ctl & 3 == 3;
        let ev = Event {
            kind,
            syscall: Syscall::Read,
            direction: dir,
            enter_ns: now,
            exit_ns: now + 10,
            sock: u64::from(ctl & 3) + 1,
            tgid: 7,
            tid: 7 + u32::from(ctl >> 6),
            fd: 3,
            total: payload.len() as u32 + gap,
            tcp_seq: now as u32,
            local: ("127.0.0.1".parse().unwrap(), 80),
            remote: ("127.0.0.1".parse().unwrap(), if udp { 53 } else { 40000 + u16::from(ctl & 3) }),
            comm: *b"nginx\0\0\0\0\0\0\0\0\0\0\0",
            flags: 0,
            udp,
            payload: payload.to_vec(),
        };
        t.on_event(&ev, &mut spans);
    }
    t.finish(now + 1, &mut spans);
    for s in &spans {
        assert!(s.end_time_us >= s.start_time_us);
        assert_eq!(s.duration_us, s.end_time_us - s.start_time_us);
        assert!(s.response_code.is_some() || s.response_status == "unknown" || s.l7_protocol != "HTTP");
    }
    assert_eq!(t.connections(), 0, "finish forgets every connection");
});
