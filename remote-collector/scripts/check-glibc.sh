#!/usr/bin/env bash
# Checks that a collector binary can run on the target nodes:
#   - it is an ELF executable for the expected architecture (`file`);
#   - it needs no glibc symbol version newer than 2.17 (`objdump -T`, or `readelf`
#     where this machine's objdump cannot read the architecture);
#   - its only shared libraries are glibc's own (libbpf, libelf and zlib are linked
#     statically).
#
#   scripts/check-glibc.sh BINARY x86_64|aarch64 [MAX_GLIBC]
#
# Prints one line per check; exits 1 with a sentence naming what is wrong.
set -euo pipefail

bin=${1:?usage: check-glibc.sh BINARY x86_64|aarch64 [MAX_GLIBC]}
arch=${2:?usage: check-glibc.sh BINARY x86_64|aarch64 [MAX_GLIBC]}
max=${3:-2.17}
fail() {
  printf 'check-glibc: %s: %s\n' "$bin" "$*" >&2
  exit 1
}
[ -f "$bin" ] || fail "no such file: build it first (npm run build:collector)"

desc=$(file -b "$bin")
case $arch in
  x86_64) want='x86-64' ;;
  aarch64) want='ARM aarch64' ;;
  *) fail "unknown architecture $arch: use x86_64 or aarch64" ;;
esac
case $desc in
  ELF\ 64-bit*"$want"*) printf 'check-glibc: %s: %s\n' "$bin" "${desc%%,*}, $want" ;;
  *) fail "is not a 64-bit ELF for $arch: file says \"$desc\"" ;;
esac

# Symbol versions the binary requires, e.g. GLIBC_2.14.
if objdump -T "$bin" >/dev/null 2>&1; then
  tool="objdump -T"
  versions=$(objdump -T "$bin" | grep -o 'GLIBC_[0-9][0-9.]*' | sort -u -V || true)
else
  tool="readelf -V"
  versions=$(readelf -V -W "$bin" | grep -o 'GLIBC_[0-9][0-9.]*' | sort -u -V || true)
fi
[ -n "$versions" ] || fail "$tool shows no GLIBC symbol versions: is it dynamically linked against glibc?"
newest=$(printf '%s\n' "$versions" | tail -n1)
too_new=$(printf '%s\n' "$versions" | sed 's/^GLIBC_//' | while read -r v; do
  [ "$(printf '%s\n%s\n' "$v" "$max" | sort -V | tail -n1)" = "$max" ] || printf 'GLIBC_%s ' "$v"
done)
[ -z "$too_new" ] || fail "needs ${too_new% }, newer than glibc $max ($tool): build it with scripts/build-portable.sh"
printf 'check-glibc: %s: newest glibc symbol version %s <= %s (%s)\n' "$bin" "$newest" "$max" "$tool"

# Shared libraries: glibc's only.
needed=$(readelf -d -W "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort -u)
bad=$(printf '%s\n' "$needed" | grep -Ev '^(libc\.so\.6|libm\.so\.6|libdl\.so\.2|libpthread\.so\.0|librt\.so\.1|ld-linux[-a-z0-9_]*\.so\.[0-9]+)$' || true)
[ -z "$bad" ] || fail "links shared libraries that nodes may lack: $(echo $bad) (libbpf, libelf and zlib must be static)"
printf 'check-glibc: %s: shared libraries %s\n' "$bin" "$(echo $needed)"
