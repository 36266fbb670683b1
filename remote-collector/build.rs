//! Compiles the BPF sources with clang and generates their libbpf-rs skeletons:
//! src/bpf/tapdeck.bpf.c (syscalls) → `$OUT_DIR/tapdeck.skel.rs`, src/bpf/tls.bpf.c
//! (OpenSSL uprobes) → `$OUT_DIR/tls.skel.rs`, src/bpf/net.bpf.c (socket
//! lifecycle) → `$OUT_DIR/net.skel.rs`. The skeletons are never committed.

use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const SOURCES: [(&str, &str); 3] = [
    ("src/bpf/tapdeck.bpf.c", "tapdeck.skel.rs"),
    ("src/bpf/tls.bpf.c", "tls.skel.rs"),
    ("src/bpf/net.bpf.c", "net.skel.rs"),
];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let arch = env::var("CARGO_CFG_TARGET_ARCH").expect("CARGO_CFG_TARGET_ARCH");
    let vmlinux_dir = manifest_dir.join("src/bpf/vmlinux").join(&arch);
    if !vmlinux_dir.join("vmlinux.h").exists() {
        panic!(
            "{} is missing: generate it on a {arch} machine with \
             `bpftool btf dump file /sys/kernel/btf/vmlinux format c > {}/vmlinux.h` and commit it",
            vmlinux_dir.join("vmlinux.h").display(),
            vmlinux_dir.display()
        );
    }

    for (src, skel) in SOURCES {
        SkeletonBuilder::new()
            .source(manifest_dir.join(src))
            .clang_args([
                "-Wall".into(),
                "-Werror".into(),
                "-I".into(),
                manifest_dir.join("src/bpf").into_os_string(),
                "-I".into(),
                vmlinux_dir.clone().into_os_string(),
            ])
            .build_and_generate(out_dir.join(skel))
            .unwrap_or_else(|e| panic!("building {src} (see the clang output above): {e}"));
    }

    println!("cargo:rerun-if-changed=src/bpf");
}
