//! Arbitrary bytes, cut into reads in both directions with copy-cap gaps, must
//! never make the Redis session panic or report more text than a span keeps.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tapdeck_collector::l7::redis::{RedisSession, MAX_TEXT};
use tapdeck_collector::l7::Side;

include!("../l7_common.rs");

fuzz_target!(|data: &[u8]| {
    let side = if data.first().is_some_and(|b| b & 1 == 1) { Side::Server } else { Side::Client };
    // Command name (up to MAX_TEXT) + space + first argument (up to MAX_TEXT).
    drive(&mut RedisSession::new(side), data, 2 * MAX_TEXT + 1);
});
