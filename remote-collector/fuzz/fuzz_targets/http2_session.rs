//! Arbitrary bytes, cut into syscalls in both directions with arbitrary capture
//! gaps, must never make the HTTP/2 session panic, and every response it reports
//! must answer a request it reported (or be counted as an orphan by the tracker).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tapdeck_collector::event::Direction;
use tapdeck_collector::l7::http2::{Http2, PREFACE};
use tapdeck_collector::l7::{Message, Session};
use tapdeck_collector::tracker::Meta;

fuzz_target!(|data: &[u8]| {
    // Half the inputs start with a valid preface so the fuzzer reaches the frames.
    let (prefaced, data) = match data.split_first() {
        Some((&b, rest)) => (b & 1 == 1, rest),
        None => return,
    };
    let mut s = Http2::new(Direction::Ingress);
    let mut out: Vec<Message> = Vec::new();
    let meta = |i: u64| Meta { enter_ns: i, exit_ns: i + 1, tid: 1, seq: i as u32, trace_id: i };
    if prefaced {
        s.feed(Direction::Ingress, PREFACE, PREFACE.len() as u64, meta(0), &mut out);
    }
    // First byte of each piece: length (low 6 bits), direction (0x40), gap (0x80).
    let mut rest = data;
    let mut i = 1u64;
    while let Some((&ctl, tail)) = rest.split_first() {
        let n = ((ctl & 0x3f) as usize).min(tail.len());
        let (piece, tail) = tail.split_at(n);
        let dir = if ctl & 0x40 != 0 { Direction::Egress } else { Direction::Ingress };
        let gap = if ctl & 0x80 != 0 { u64::from(ctl) * 13 } else { 0 };
        s.feed(dir, piece, piece.len() as u64 + gap, meta(i), &mut out);
        rest = tail;
        i += 1;
    }
    let mut open = std::collections::HashMap::<u64, i64>::new();
    for m in &out {
        match m {
            Message::Request { key, .. } => *open.entry(*key).or_default() += 1,
            Message::Response { key, .. } => *open.entry(*key).or_default() -= 1,
            Message::Error(_) => {}
        }
    }
    // A stream's request is reported at most once before its response.
    assert!(open.values().all(|&n| n <= 1), "{open:?}");
});
