#!/usr/bin/env bash
# Builds the collectors that Tapdeck uploads to nodes: one per architecture, for
# glibc 2.17 and newer, with libbpf, libelf and zlib built from libbpf-sys's vendored
# sources and linked statically (cargo feature `vendored`). cargo-zigbuild links
# against glibc 2.17's symbol versions with zig's cross toolchain; scripts/bootstrap
# installs both (zig from PyPI into /opt/tapdeck-zig).
#
#   scripts/build-portable.sh [x86_64] [aarch64]     (default: both)
#
# Output: target/<arch>-unknown-linux-gnu/release/tapdeck-collector, each checked
# with scripts/check-glibc.sh.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ZIG_VENV=${TAPDECK_ZIG_VENV:-/opt/tapdeck-zig}
export PATH="$ZIG_VENV/bin:${HOME:-/root}/.cargo/bin:$PATH"
die() {
  printf 'build-portable: %s\n' "$*" >&2
  exit 1
}
command -v cargo-zigbuild >/dev/null || die "cargo-zigbuild is missing: run scripts/bootstrap (cargo install --locked cargo-zigbuild)"
command -v zig >/dev/null || die "zig is missing: run scripts/bootstrap (pip install ziglang into $ZIG_VENV)"

arches=("$@")
[ ${#arches[@]} -gt 0 ] || arches=(x86_64 aarch64)
for arch in "${arches[@]}"; do
  case $arch in x86_64 | aarch64) ;; *) die "unknown architecture $arch: use x86_64 or aarch64" ;; esac
  rustup target list --installed 2>/dev/null | grep -qx "$arch-unknown-linux-gnu" ||
    die "the Rust target $arch-unknown-linux-gnu is missing: rustup target add $arch-unknown-linux-gnu (scripts/bootstrap does)"
  t=$SECONDS
  cargo zigbuild --release --locked --features vendored --target "$arch-unknown-linux-gnu.2.17" --bin tapdeck-collector
  scripts/check-glibc.sh "target/$arch-unknown-linux-gnu/release/tapdeck-collector" "$arch" 2.17
  printf 'build-portable: %s built and checked in %d s\n' "$arch" $((SECONDS - t))
done
