//! Arbitrary bytes, cut into reads in both directions with copy-cap gaps, must
//! never make the PostgreSQL session panic or report more statement text than
//! a span keeps; both the startup phase and a joined connection are covered.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tapdeck_collector::l7::postgres::{PostgresSession, MAX_STATEMENT};
use tapdeck_collector::l7::Side;

include!("../l7_common.rs");

fuzz_target!(|data: &[u8]| {
    let ctl = data.first().copied().unwrap_or(0);
    let side = if ctl & 1 == 1 { Side::Server } else { Side::Client };
    drive(&mut PostgresSession::new(side, ctl & 2 != 0), data, MAX_STATEMENT);
});
