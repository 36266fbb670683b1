#!/usr/bin/env bash
# Regenerates src/bpf/vmlinux/<arch>/vmlinux.h, the kernel type header the BPF
# programs are compiled against (CO-RE relocates field offsets at load time, so one
# header per architecture serves every kernel of that architecture).
#
#   scripts/gen-vmlinux.sh x86_64    from this machine's /sys/kernel/btf/vmlinux
#                                    (needs an x86_64 kernel with BTF)
#   scripts/gen-vmlinux.sh aarch64   from Debian 12's own arm64 kernel package: the
#                                    raw .BTF blob embedded in its vmlinuz
#
# Needs root (apt-get), bpftool and python3. The output is committed; run this only to
# refresh it. Debian's arm64 architecture is added to dpkg for the download and removed
# again afterwards when this script added it.
set -euo pipefail

arch=${1:-}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out_dir=$here/src/bpf/vmlinux/$arch
die() {
  printf 'gen-vmlinux: %s\n' "$*" >&2
  exit 1
}
command -v bpftool >/dev/null || die "bpftool is missing: apt-get install bpftool"

case $arch in
  x86_64)
    [ "$(uname -m)" = x86_64 ] || die "run the x86_64 generation on an x86_64 machine (this is $(uname -m))"
    [ -r /sys/kernel/btf/vmlinux ] || die "/sys/kernel/btf/vmlinux is missing: this kernel has no BTF"
    mkdir -p "$out_dir"
    bpftool btf dump file /sys/kernel/btf/vmlinux format c >"$out_dir/vmlinux.h.tmp"
    ;;
  aarch64)
    [ "$(id -u)" -eq 0 ] || die "run me as root: I use dpkg --add-architecture and apt-get"
    work=$(mktemp -d)
    added=0
    cleanup() {
      rm -rf "$work"
      if [ $added -eq 1 ]; then dpkg --remove-architecture arm64 || true; fi
    }
    trap cleanup EXIT
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
      dpkg --add-architecture arm64
      added=1
    fi
    apt-get -q update >/dev/null
    # linux-image-arm64 is Debian's metapackage for the current arm64 kernel.
    pkg=$(apt-cache depends linux-image-arm64:arm64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
    [ -n "$pkg" ] || die "cannot find the package behind linux-image-arm64:arm64"
    (cd "$work" && apt-get -q download "$pkg" >/dev/null)
    dpkg-deb -x "$work"/*.deb "$work/root"
    vmlinuz=$(ls "$work"/root/boot/vmlinuz-* | head -n1)
    printf 'gen-vmlinux: %s (%s)\n' "$pkg" "$(basename "$vmlinuz")"
    # Debian's arm64 vmlinuz is a gzip'd Image; the .BTF section sits inside it as a
    # raw blob starting with the BTF magic 0xeB9F.
    if gzip -t "$vmlinuz" 2>/dev/null; then gzip -dc "$vmlinuz" >"$work/Image"; else cp "$vmlinuz" "$work/Image"; fi
    python3 - "$work/Image" "$work/vmlinux.btf" <<'PY'
import struct, sys
data = open(sys.argv[1], 'rb').read()
best = None
i = data.find(b'\x9f\xeb\x01\x00')
while i >= 0:
    if i + 24 <= len(data):
        hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from('<5I', data, i + 4)
        size = hdr_len + max(type_off + type_len, str_off + str_len)
        if hdr_len == 24 and type_off == 0 and str_off == type_len and i + size <= len(data):
            if best is None or size > best[1]:
                best = (i, size)
    i = data.find(b'\x9f\xeb\x01\x00', i + 1)
if best is None:
    sys.exit('gen-vmlinux: no BTF blob found in the kernel image')
open(sys.argv[2], 'wb').write(data[best[0]:best[0] + best[1]])
print(f'gen-vmlinux: BTF blob at offset {best[0]}, {best[1]} bytes')
PY
    mkdir -p "$out_dir"
    bpftool btf dump file "$work/vmlinux.btf" format c >"$out_dir/vmlinux.h.tmp"
    ;;
  *) die "usage: $0 x86_64|aarch64" ;;
esac
grep -q 'struct task_struct {' "$out_dir/vmlinux.h.tmp" || die "the generated header has no struct task_struct"
mv "$out_dir/vmlinux.h.tmp" "$out_dir/vmlinux.h"
printf 'gen-vmlinux: wrote %s (%s lines)\n' "$out_dir/vmlinux.h" "$(wc -l <"$out_dir/vmlinux.h")"
