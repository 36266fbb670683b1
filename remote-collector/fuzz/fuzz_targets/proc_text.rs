//! Arbitrary text as /proc/PID/cgroup, /proc/PID/maps and a command line must never
//! make the process-metadata parsers panic, and what they return must be well formed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tapdeck_collector::procs::{container_id_of_cgroup, detect_gateway};
use tapdeck_collector::tls::libssl_paths_in_maps;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Some(id) = container_id_of_cgroup(&text) {
        assert!(id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()));
    }
    for p in libssl_paths_in_maps(&text) {
        assert!(p.starts_with('/'));
    }
    let (exe, rest) = text.split_once('\n').unwrap_or(("", &text));
    let (cmd, parent) = rest.split_once('\n').unwrap_or((rest, ""));
    let _ = detect_gateway(Some(exe), cmd, Some(parent));
    let _ = detect_gateway(None, cmd, None);
});
