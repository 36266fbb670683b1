//! Arbitrary packets — garbage, truncated, out of order, any flags — must never
//! make the packet parser or the flow table panic, and the table stays bounded.
#![no_main]

use std::net::IpAddr;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use tapdeck_collector::packet::parse::{parse, ETH_P_IP, ETH_P_IPV6};
use tapdeck_collector::packet::table::{FlowTable, Limits, Tap, Topology};

struct AnyNic;

impl Topology for AnyNic {
    fn observation_point(&self, _: &Tap, _: IpAddr, _: IpAddr) -> &'static str {
        "rest"
    }
    fn interface_name(&self, _: &Tap) -> Arc<str> {
        Arc::from("eth0")
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_flows: 8, max_pending: 4, max_ooo: 4, ..Limits::default() };
    let mut t = FlowTable::new(AnyNic, limits, 1);
    let (mut spans, mut flows) = (Vec::new(), Vec::new());
    // First byte of each piece: length (low 7 bits) and IPv6 flag.
    let mut rest = data;
    let mut ts = 0u64;
    while let Some((&ctl, tail)) = rest.split_first() {
        let n = ((ctl & 0x7f) as usize).min(tail.len());
        let (pkt, tail) = tail.split_at(n);
        let proto = if ctl & 0x80 != 0 { ETH_P_IPV6 } else { ETH_P_IP };
        if let Ok(seg) = parse(proto, pkt) {
            ts += 1_000_000;
            t.on_segment(&Tap { netns: 1, ifindex: (ctl & 3) as u32 }, ts, &seg, &mut spans, &mut flows);
        }
        assert!(t.len() <= 8);
        rest = tail;
    }
    t.tick(ts + 10_000_000_000, &mut spans, &mut flows);
    t.finish(ts + 20_000_000_000, &mut spans, &mut flows);
});
