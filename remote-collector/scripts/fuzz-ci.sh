#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/fuzz_targets/ briefly (CI, and by hand):
#
#   remote-collector/scripts/fuzz-ci.sh            # each target for $FUZZ_SECONDS (default 20)
#   FUZZ_SECONDS=300 remote-collector/scripts/fuzz-ci.sh http2_session
#
# The stable toolchain runs cargo-fuzz with RUSTC_BOOTSTRAP=1 (it needs -Z flags).
# Each run starts from an empty corpus in a temporary directory (nothing is written
# to the repository). A crash fails the script and leaves the crashing input in
# fuzz/artifacts/<target>/, with the command to replay it. Needs cargo-fuzz
# (scripts/bootstrap installs it).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
SECONDS_EACH=${FUZZ_SECONDS:-20}
[[ $SECONDS_EACH =~ ^[0-9]+$ ]] && [ "$SECONDS_EACH" -ge 1 ] ||
  { echo "fuzz-ci: FUZZ_SECONDS must be a whole number of seconds, got '$SECONDS_EACH'." >&2; exit 2; }
command -v cargo-fuzz >/dev/null || cargo fuzz --version >/dev/null 2>&1 ||
  { echo "fuzz-ci: cargo-fuzz is missing: run scripts/bootstrap (or cargo install cargo-fuzz --locked)." >&2; exit 2; }
export RUSTC_BOOTSTRAP=1

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(find fuzz/fuzz_targets -maxdepth 1 -name '*.rs' -printf '%f\n' | sed 's/\.rs$//' | sort)
fi
[ ${#targets[@]} -gt 0 ] || { echo "fuzz-ci: no targets in fuzz/fuzz_targets/." >&2; exit 2; }

echo "fuzz-ci: building the fuzz targets (then running ${targets[*]})"
t0=$SECONDS
cargo fuzz build -O
echo "fuzz-ci: built in $((SECONDS - t0)) s"

corpus_root=$(mktemp -d /tmp/tapdeck-fuzz.XXXXXX)
trap 'rm -rf "$corpus_root"' EXIT
failed=()
for t in "${targets[@]}"; do
  mkdir -p "$corpus_root/$t"
  echo "fuzz-ci: $t for ${SECONDS_EACH} s"
  if cargo fuzz run -O "$t" "$corpus_root/$t" -- -max_total_time="$SECONDS_EACH" -max_len=4096 \
    -print_final_stats=1 >"$corpus_root/$t.log" 2>&1; then
    grep -E '^stat::number_of_executed_units|^Done [0-9]+ runs' "$corpus_root/$t.log" | tail -n 1 | sed "s/^/fuzz-ci: $t: /"
  else
    failed+=("$t")
    echo "fuzz-ci: $t FAILED; the last lines of its log:" >&2
    tail -n 40 "$corpus_root/$t.log" >&2
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz-ci: ${#failed[@]} target(s) failed: ${failed[*]}. Replay a crash with: RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/<file>" >&2
  exit 1
fi
echo "fuzz-ci: all ${#targets[@]} targets ran ${SECONDS_EACH} s without a failure."
