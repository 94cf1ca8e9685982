#!/usr/bin/env bash
# `make dist-check`: same source → same bytes. `make dist` from the usual build into one folder, then a
# build FROM SCRATCH (a fresh cargo target directory: compile, link, wasm-opt) and `make dist` into a
# second folder; every file of the two must be identical. Takes a full release build (minutes), so it
# is not part of `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=target/dist-check
rm -rf "$OUT"
mkdir -p "$OUT"
make --no-print-directory dist DIST="$OUT/a"
CARGO_TARGET_DIR="$OUT/target" make --no-print-directory dist DIST="$OUT/b" CARGO_TARGET_DIR="$OUT/target"
if diff -r "$OUT/a" "$OUT/b"; then
  echo "dist-check: the two builds are identical ($(find "$OUT/a" -type f | wc -l) files)"
else
  echo "dist-check: the two builds DIFFER (above)"; exit 1
fi
