//! The stream reader must survive any byte sequence.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tapdeck_collector::frame::FrameDecoder;

fuzz_target!(|data: &[u8]| {
    let mut d = FrameDecoder::new();
    for chunk in data.chunks(7) {
        d.push(chunk);
        while d.next_frame().is_some() {}
    }
});
