//! Any OTLP/HTTP body, in either encoding, compressed or not, decodes to an error or
//! to spans that map and serialise without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tapdeck_collector::otlp::decode::{decode, Encoding};
use tapdeck_collector::otlp::map::map_request;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else { return };
    let enc = if mode & 1 == 0 { Encoding::Protobuf } else { Encoding::Json };
    if let Ok(req) = decode(body, enc, mode & 2 != 0, 1 << 20) {
        for span in map_request(&req) {
            serde_json::to_vec(&span).expect("a mapped span serialises");
        }
    }
});
