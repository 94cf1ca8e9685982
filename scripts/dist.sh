#!/usr/bin/env bash
# `make dist`: the release artefacts in one folder ($DIST, default dist/), byte for byte the same for
# the same source (no dates, no absolute paths, file lists sorted):
#   dcr_guard.wasm             the filter (wasm-opt'ed when `make build` could), and its .sha256
#   dcr-guard.schema.json      the configuration's JSON schema (Draft 2020-12), generated from the
#                              configuration types by `dcr-guard schema` ($SCHEMA_CLI)
#   dcr_guard.meta.json        Kong's filter metadata (Draft-4 config_schema), `dcr-guard schema --kong`
#   oci/                       the OCI image layout (`make image`; its manifest digest in oci.digest)
#   envoy/                     the deployment kits (Envoy, Istio, Kong, docker-compose)
#   prometheus/, grafana/      the alert rules (with their promtool tests) and the dashboard
#   SHA256SUMS                 every file above
set -euo pipefail
cd "$(dirname "$0")/.."
DIST="${DIST:-dist}"
WASM="${WASM:-target/wasm32-wasip1/release/dcr_guard.wasm}"
VERSION="${VERSION:?VERSION is required}"
SCHEMA_CLI="${SCHEMA_CLI:-cargo run --quiet -p dcr-guard-cli -- schema}"

[ -f "$WASM" ] || { echo "$WASM is missing: run make build"; exit 1; }
case "$DIST" in ""|"/"|".") echo "refusing DIST=$DIST"; exit 1;; esac
rm -rf "$DIST"
mkdir -p "$DIST"

cp "$WASM" "$DIST/dcr_guard.wasm"
(cd "$DIST" && sha256sum dcr_guard.wasm > dcr_guard.wasm.sha256)
# The schemas as the configuration types give them now; the kits' copies (envoy/kong/, committed) must
# be the same bytes, or the release would ship two different schemas.
$SCHEMA_CLI > "$DIST/dcr-guard.schema.json"
$SCHEMA_CLI --kong > "$DIST/dcr_guard.meta.json"
for f in dcr-guard.schema.json dcr_guard.meta.json; do
  cmp -s "$DIST/$f" "envoy/kong/$f" \
    || { echo "envoy/kong/$f is not what the configuration types give: run make schema"; exit 1; }
done
python3 scripts/oci-image.py --wasm "$DIST/dcr_guard.wasm" --out "$DIST/oci" --tag "$VERSION" \
  | tee /dev/stderr | sed -n 's/^digest //p' > "$DIST/oci.digest"
[ -s "$DIST/oci.digest" ] || { echo "no digest from scripts/oci-image.py"; exit 1; }

# The kits: the files of envoy/ under version control (not envoy/as/node_modules), as in the tree.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git ls-files -z envoy prometheus grafana | while IFS= read -r -d '' f; do
    [ -f "$f" ] && install -D -m 0644 "$f" "$DIST/$f"
  done
else
  find envoy prometheus grafana -path envoy/as/node_modules -prune -o -type f -print | sort | while read -r f; do
    install -D -m 0644 "$f" "$DIST/$f"
  done
fi
chmod 0755 "$DIST/envoy/run-demo.sh" 2>/dev/null || true

(cd "$DIST" && find . -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' sha256sum > SHA256SUMS)
echo "release artefacts in $DIST/ ($(wc -l < "$DIST/SHA256SUMS") files); dcr_guard.wasm $(cut -d' ' -f1 "$DIST/dcr_guard.wasm.sha256"), OCI image $(cat "$DIST/oci.digest")"
