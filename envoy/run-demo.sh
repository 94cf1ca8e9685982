#!/usr/bin/env bash
# `make run`: the demo PKI and keystore, the demo AS (node oidc-provider), then Envoy with dcr-guard
# on https://localhost:10000 (mutual TLS). Ctrl-C stops all.
set -euo pipefail
cd "$(dirname "$0")/.."

ENVOY="${ENVOY:-.venv/bin/envoy}"
STATE=.run/demo
DEMO=target/debug/examples/demo
mkdir -p "$STATE"

for port in 10000 9901 18080 18081 18082; do
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

"$DEMO" pki --state "$STATE" >/dev/null
"$DEMO" serve --state "$STATE" --keystore-port 18081 &
pids+=($!)
node envoy/as/server.mjs --port 18080 --admin-port 18082 > "$STATE/as.log" 2>&1 &
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

dcr-guard is running: Envoy on https://localhost:10000 (mutual TLS; admin http://127.0.0.1:9901),
in front of the demo AS (oidc-provider, 127.0.0.1:18080) and the demo directory keystore
(127.0.0.1:18081). The demo PKI and keys (demo-only) are in $STATE.
Logs: $STATE/envoy.log (dcr-guard's rejections), $STATE/as.log (the AS).

Try, in another terminal — the lifecycle of a UK registration:
  $DEMO register        # 201 from the AS: client_id and registration access token (saved)
  $DEMO show            # GET    /register/{client_id}  200
  $DEMO update          # PUT    /register/{client_id}  200
  $DEMO delete          # DELETE /register/{client_id}  204
  $DEMO show            # 401: the client is gone

Refused by dcr-guard before the AS sees anything:
  $DEMO register --break ssa-signature       # 400 invalid_software_statement
  $DEMO register --break request-signature   # 400 invalid_client_metadata
  $DEMO register --break redirect            # 400 invalid_redirect_uri
  $DEMO register --break other-cert          # 400: the certificate is another software's
  $DEMO register --break no-cert             # refused in the TLS handshake
  $DEMO register --break jwks-host           # 400, and the keystore is never asked
  $DEMO show --token other                   # 401 from the AS (dcr-guard's delegate mode)
  curl -s http://127.0.0.1:9901/stats | grep dcr_guard

Ctrl-C stops everything.
MSG

# Whichever of the two ends first (Ctrl-C, or a crash) ends the demo.
wait -n
