#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 30), one
# after the other, nice'd, one libFuzzer job and one worker at a time.
# Works on a stable toolchain: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass the
# nightly-only sanitizer flags. Needs a C++ compiler (libFuzzer is built
# from source by libfuzzer-sys). Not part of scripts/test.sh.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Crashes land in fuzz/artifacts/<target>/; the script stops at the first.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECONDS_EACH="${1:-30}"
shift || true
export RUSTC_BOOTSTRAP=1
export PATH="$HOME/.cargo/bin:$PATH"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi

cargo fuzz build -O -a
echo "date: $(date -u +%FT%TZ)  nproc: $(nproc)  commit: $(git rev-parse --short HEAD)"
for t in "${targets[@]}"; do
  echo "== $t (${SECONDS_EACH}s)"
  mkdir -p "corpus/$t"
  start=$(date +%s)
  nice -n 19 cargo fuzz run -O -a "$t" -- \
    -max_total_time="$SECONDS_EACH" -jobs=1 -workers=1 -print_final_stats=1 \
    >"fuzz-$t.log" 2>&1 || {
      tail -n 60 fuzz-0.log "fuzz-$t.log" 2>/dev/null || true
      echo "!! $t crashed; see fuzz/artifacts/$t/" >&2
      exit 1
    }
  # With -jobs=1 libFuzzer's own report goes to fuzz-0.log.
  cat fuzz-0.log >>"fuzz-$t.log" 2>/dev/null || true
  runs=$(grep -h 'stat::number_of_executed_units' "fuzz-$t.log" | tail -1 | awk '{print $2}')
  echo "$t: ${runs:-?} executions in $(( $(date +%s) - start ))s, no crash"
done
