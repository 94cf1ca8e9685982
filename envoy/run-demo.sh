#!/usr/bin/env bash
# `make run`: the demo keystore and AS, then Envoy with dcr-guard on 127.0.0.1:10000. Ctrl-C stops all.
set -euo pipefail
cd "$(dirname "$0")/.."

ENVOY="${ENVOY:-.venv/bin/envoy}"
STATE=.run/demo
DEMO=target/debug/examples/demo
mkdir -p "$STATE"

for port in 10000 9901 18080 18081; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port on 127.0.0.1 is in use: stop what listens there (an earlier make run?) and retry"
    exit 1
  fi
done

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$DEMO" serve --state "$STATE" --keystore-port 18081 --as-port 18080 &
pids+=($!)

"$ENVOY" -c envoy/demo.yaml --disable-hot-restart --concurrency 2 --file-flush-interval-msec 500 \
  -l warn --component-log-level wasm:info --log-path "$STATE/envoy.log" &
pids+=($!)

for _ in $(seq 1 100); do
  if curl -fs http://127.0.0.1:9901/ready >/dev/null 2>&1 || \
     (exec 3<>/dev/tcp/127.0.0.1/10000) 2>/dev/null; then
    break
  fi
  sleep 0.1
done
if ! (exec 3<>/dev/tcp/127.0.0.1/10000) 2>/dev/null; then
  echo "Envoy did not start; its log:"; tail -n 30 "$STATE/envoy.log"; exit 1
fi

cat <<MSG

dcr-guard is running: Envoy on http://127.0.0.1:10000 (admin http://127.0.0.1:9901),
in front of the demo AS (127.0.0.1:18080) and the demo directory keystore (127.0.0.1:18081).
Envoy's log: $STATE/envoy.log (rejections are logged there by dcr-guard).

Try, in another terminal:
  $DEMO register                             # a valid UK registration: 201 from the demo AS
  $DEMO register --break ssa-signature       # 400 invalid_software_statement
  $DEMO register --break request-signature   # 400 invalid_client_metadata
  $DEMO register --break expired             # 400 invalid_client_metadata
  $DEMO register --break issuer              # 400 unapproved_software_statement
  $DEMO register --break jwks-host           # 400, and the keystore is never asked
  curl -si -X POST http://127.0.0.1:10000/register -H 'content-type: application/jwt' -d garbage
  curl -si http://127.0.0.1:9901/stats | grep -i wasm

Ctrl-C stops everything.
MSG

# Whichever of the two ends first (Ctrl-C, or a crash) ends the demo.
wait -n
