//! Arbitrary datagrams must never make the DNS session panic, and a name it
//! reports stays within DNS's 255-octet limit (escapes included, ×4).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tapdeck_collector::l7::dns::{parse, DnsSession};

include!("../l7_common.rs");

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = parse(data) {
        if let Some((name, _)) = h.question {
            assert!(name.len() <= 4 * 255, "name of {} bytes", name.len());
        }
    }
    drive(&mut DnsSession::new(), data, 4 * 255);
});
