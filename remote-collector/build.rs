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
            "{} is missing: generate it on a {arch} machine with \
             `bpftool btf dump file /sys/kernel/btf/vmlinux format c > {}/vmlinux.h` and commit it",
            vmlinux_dir.join("vmlinux.h").display(),
            vmlinux_dir.display()
        );
    }

    SkeletonBuilder::new()
        .source(manifest_dir.join(SRC))
        .clang_args([
            "-Wall".into(),
            "-Werror".into(),
            "-I".into(),
            manifest_dir.join("src/bpf").into_os_string(),
            "-I".into(),
            vmlinux_dir.into_os_string(),
        ])
        .build_and_generate(&out)
        .expect("building src/bpf/tapdeck.bpf.c (see the clang output above)");

    println!("cargo:rerun-if-changed=src/bpf");
}
