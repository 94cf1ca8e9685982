#!/usr/bin/env bash
# Build the fuzz targets with libFuzzer's coverage instrumentation (the flags cargo-fuzz uses,
# without a sanitizer: the filter is safe Rust, and the properties are asserted by the targets)
# and run each for FUZZ_SECONDS. Needs no cargo-fuzz: `cargo +nightly build` only (the flags are
# stable rustc flags: where nightly cannot be installed, the default toolchain is used).
#
#   fuzz/run.sh [seconds] [target...]      (default: every target in fuzz/fuzz_targets/)
#
# Each target runs on a working copy of its committed seed corpus (fuzz/corpus/<target>/seed-*)
# plus what earlier runs found (fuzz/corpus/<target>/, not committed); a crash leaves its input in
# fuzz/artifacts/<target>/ and fails the script.
set -euo pipefail
cd "$(dirname "$0")"

SECONDS_PER_TARGET="${1:-${FUZZ_SECONDS:-60}}"
shift || true
TOOLCHAIN="${FUZZ_TOOLCHAIN:-nightly}"

if ! rustup run "$TOOLCHAIN" rustc --version >/dev/null 2>&1; then
  echo "fuzz: installing the $TOOLCHAIN toolchain (minimal profile); the default toolchain is unchanged"
  if ! rustup toolchain install "$TOOLCHAIN" --profile minimal; then
    # The instrumentation flags below are stable rustc flags (only a sanitizer would need
    # nightly), so the default toolchain builds the same targets.
    TOOLCHAIN="$(rustup show active-toolchain | cut -d' ' -f1)"
    echo "fuzz: could not install it; building with the default toolchain ($TOOLCHAIN) instead"
  fi
fi
TRIPLE="$(rustc +"$TOOLCHAIN" -vV | sed -n 's/^host: //p')"

export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing \
-Cllvm-args=-simplifycfg-branch-fold-threshold=0 -Cllvm-args=-sanitizer-coverage-stack-depth \
-Cdebug-assertions -Coverflow-checks -Ccodegen-units=1"

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi

start=$(date +%s)
cargo +"$TOOLCHAIN" build --release --target "$TRIPLE" --target-dir target/plain --bins
echo "fuzz: built ${#targets[@]} targets in $(( $(date +%s) - start ))s"

failed=()
for t in "${targets[@]}"; do
  bin="target/plain/$TRIPLE/release/$t"
  work="corpus/$t"
  mkdir -p "$work" "artifacts/$t"
  echo "== fuzz $t (${SECONDS_PER_TARGET}s)"
  if ! "$bin" -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
      -max_len=65536 -artifact_prefix="artifacts/$t/" "$work" >"artifacts/$t/last.log" 2>&1; then
    failed+=("$t")
    grep -E "panicked|ERROR|SUMMARY|Test unit written" "artifacts/$t/last.log" | head -20 || true
  fi
  grep -E "^Done|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb" "artifacts/$t/last.log" || true
  tail -n 3 "artifacts/$t/last.log" | grep -E "cov:" || grep -E "cov:" "artifacts/$t/last.log" | tail -n 1 || true
done
echo "fuzz: ${SECONDS_PER_TARGET}s per target, $(( $(date +%s) - start ))s in all (build included)"
echo "fuzz: $(( ${#targets[@]} - ${#failed[@]} )) passed, ${#failed[@]} failed"
[ ${#failed[@]} -eq 0 ]
