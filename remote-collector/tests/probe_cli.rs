//! `--probe` and a normal start on a node that cannot run the collector: both name
//! the missing requirement in a sentence. The kernel release and the BTF path are
//! injected through the debug-build-only variables TAPDECK_TEST_KERNEL_RELEASE and
//! TAPDECK_TEST_BTF_PATH (src/probe.rs); everything else is this machine's.
//! No root needed: nothing is loaded when a requirement is missing.

use std::process::{Command, Output};

use tapdeck_collector::frame::{FrameDecoder, FrameType};

const BIN: &str = env!("CARGO_BIN_EXE_tapdeck-collector");

fn run(args: &[&str], release: Option<&str>, btf: Option<&str>) -> Output {
    let mut c = Command::new(BIN);
    c.args(args).stdin(std::process::Stdio::null());
    if let Some(r) = release {
        c.env("TAPDECK_TEST_KERNEL_RELEASE", r);
    }
    if let Some(b) = btf {
        c.env("TAPDECK_TEST_BTF_PATH", b);
    }
    c.output().expect("running tapdeck-collector")
}

fn probe_missing(out: &Output) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--probe prints JSON");
    v["missing"].as_array().expect("missing[]").iter().map(|m| m.as_str().unwrap().to_string()).collect()
}

/// (frame type, JSON body) of every frame on stdout.
fn frames(out: &Output) -> Vec<(FrameType, serde_json::Value)> {
    let mut d = FrameDecoder::new();
    d.push(&out.stdout);
    let mut v = Vec::new();
    while let Some(f) = d.next_frame() {
        let f = f.expect("well-formed frame");
        v.push((f.frame_type().expect("known type"), serde_json::from_slice(&f.body).expect("JSON body")));
    }
    v
}

fn skip_in_release() -> bool {
    if !cfg!(debug_assertions) {
        println!("probe_cli: skipped (the test overrides exist in debug builds only)");
        return true;
    }
    false
}

#[test]
fn probe_names_an_old_kernel() {
    if skip_in_release() {
        return;
    }
    let out = run(&["--probe"], Some("5.4.0-150-generic"), None);
    assert_eq!(out.status.code(), Some(2), "exit code 2 = a requirement is missing");
    let missing = probe_missing(&out);
    assert!(
        missing.iter().any(|m| m.starts_with("kernel 5.4.0-150-generic is older than 5.8")),
        "{missing:?}"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["can_run"], false);
    assert_eq!(v["kernel_version"], serde_json::json!([5, 4, 0]));
}

#[test]
fn probe_names_missing_btf() {
    if skip_in_release() {
        return;
    }
    let out = run(&["--probe"], None, Some("/nonexistent/sys/kernel/btf/vmlinux"));
    assert_eq!(out.status.code(), Some(2));
    let missing = probe_missing(&out);
    assert!(
        missing.iter().any(|m| m.starts_with("kernel BTF is missing (/nonexistent/sys/kernel/btf/vmlinux")
            && m.contains("CONFIG_DEBUG_INFO_BTF")),
        "{missing:?}"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["btf"], false);
}

#[test]
fn start_names_both_and_loads_nothing() {
    if skip_in_release() {
        return;
    }
    let out = run(
        &["--process", "no-such-process", "--duration", "2s"],
        Some("4.19.0-27-amd64"),
        Some("/nonexistent/btf"),
    );
    assert_eq!(out.status.code(), Some(2), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let f = frames(&out);
    assert_eq!(f.len(), 2, "hello then error: {f:?}");
    assert_eq!(f[0].0, FrameType::Hello);
    assert_eq!(f[0].1["kernel"], "4.19.0-27-amd64");
    assert_eq!(f[0].1["capabilities"]["btf"], false);
    assert_eq!(f[1].0, FrameType::Error);
    assert_eq!(f[1].1["code"], "missing_requirement");
    let message = f[1].1["message"].as_str().unwrap();
    assert!(message.contains("kernel 4.19.0-27-amd64 is older than 5.8"), "{message}");
    assert!(message.contains("kernel BTF is missing"), "{message}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("older than 5.8"), "the sentence also goes to the log: {stderr}");
    assert!(!stderr.contains("attached"), "nothing may be attached: {stderr}");
}

#[test]
fn real_kernel_is_not_reported_missing() {
    // Without overrides, this machine's own kernel (≥ 5.8 with BTF on the build
    // machines) must not be named.
    let out = run(&["--probe"], None, None);
    let missing = probe_missing(&out);
    assert!(!missing.iter().any(|m| m.contains("older than") || m.contains("BTF is missing")), "{missing:?}");
}
