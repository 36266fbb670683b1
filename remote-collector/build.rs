//! Compiles src/bpf/tapdeck.bpf.c with clang and generates its libbpf-rs skeleton
//! (`$OUT_DIR/tapdeck.skel.rs`). The skeleton is never committed.

use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const SRC: &str = "src/bpf/tapdeck.bpf.c";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR")).join("tapdeck.skel.rs");
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

    SkeletonBuilder::new()
        .source(manifest_dir.join(SRC))
        .clang_args([
            "-Wall".into(),
            "-Werror".into(),
            target_arch_define.into(),
            "-I".into(),
            manifest_dir.join("src/bpf").into_os_string(),
            "-I".into(),
            vmlinux_dir.into_os_string(),
        ])
        .build_and_generate(&out)
        .expect("building src/bpf/tapdeck.bpf.c (see the clang output above)");

    println!("cargo:rerun-if-changed=src/bpf");
}
