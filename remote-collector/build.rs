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
            "{} is missing: generate it with `scripts/gen-vmlinux.sh {arch}` and commit it",
            vmlinux_dir.join("vmlinux.h").display()
        );
    }

    // The BPF side needs the target's register layout (bpf_tracing.h's PT_REGS_*),
    // whatever machine builds it.
    let target_arch_define = match arch.as_str() {
        "x86_64" => "-D__TARGET_ARCH_x86",
        "aarch64" => "-D__TARGET_ARCH_arm64",
        other => panic!("no BPF build for target architecture {other}: x86_64 and aarch64 are supported"),
    };

    for (src, skel) in SOURCES {
        SkeletonBuilder::new()
            .source(manifest_dir.join(src))
            .clang_args([
                "-Wall".into(),
                "-Werror".into(),
                target_arch_define.into(),
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
