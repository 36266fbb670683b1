//! Arbitrary bytes, cut into syscalls with arbitrary capture gaps, must never
//! make the HTTP/1.x stream panic or hold more than its header limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tapdeck_collector::http::{parse_head, parse_traceparent, HttpStream};

fuzz_target!(|data: &[u8]| {
    let _ = parse_head(data);
    let _ = parse_traceparent(&String::from_utf8_lossy(data));
    let mut s = HttpStream::<u32>::new(1024);
    let mut out = Vec::new();
    // First byte of each piece: piece length (low 6 bits), gap flag, HEAD flag.
    let mut rest = data;
    let mut i = 0u32;
    while let Some((&ctl, tail)) = rest.split_first() {
        let n = ((ctl & 0x3f) as usize).min(tail.len());
        let (piece, tail) = tail.split_at(n);
        let gap = if ctl & 0x40 != 0 { (ctl as u64) * 37 } else { 0 };
        if ctl & 0x80 != 0 {
            s.expect_response_to("HEAD");
        }
        s.feed(piece, piece.len() as u64 + gap, i, &mut out);
        out.clear();
        rest = tail;
        i += 1;
    }
    s.finish(i, &mut out);
});
