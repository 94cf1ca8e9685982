// A minimal proxy-wasm host in Node, to profile dcr-guard's `.wasm` in V8 (the engine Envoy
// embeds) with function names, and to compare scenarios without Envoy's own cost.
//
//   node bench/v8/harness.mjs INPUT.json WASM CONFIG SCENARIO [PASSES]
//
// INPUT.json comes from `BENCH_V8_DUMP=INPUT.json target/release/examples/bench`; CONFIG is
// `guard_config` or `bare_config`; SCENARIO is `unique` or `mix` (warmed with `warm` / `warm_mix`).
// Prints the CPU time per request. Run under `node --cpu-prof` for a per-function profile
// (`bench/v8/top.mjs` summarises it). Not a measurement of Envoy: Envoy's part (HTTP, hostcall
// glue) is missing here, the bench's Envoy table is the measurement.
import { readFileSync } from 'node:fs';
import { WASI } from 'node:wasi';

const [input, wasmPath, configName, scenario, nArg] = process.argv.slice(2);
const data = JSON.parse(readFileSync(input, 'utf8'));
const PASSES = Number(nArg || 3);
const started = Date.now();

const enc = new TextEncoder();
const dec = new TextDecoder();
let mem;
let ex;

const u8 = () => new Uint8Array(mem.buffer);
const dv = () => new DataView(mem.buffer);
const str = (p, n) => dec.decode(u8().subarray(p, p + n));
const bytes = (p, n) => u8().slice(p, p + n);

// Hand bytes to the module: allocate with its allocator, copy, write ptr/len at the out params.
function give(buf, ptrPtr, sizePtr) {
  const b = typeof buf === 'string' ? enc.encode(buf) : buf;
  if (b.length) allocs++;
  const p = b.length ? ex.proxy_on_memory_allocate(b.length) : 0;
  if (b.length) u8().set(b, p);
  dv().setUint32(ptrPtr, p, true);
  dv().setUint32(sizePtr, b.length, true);
}

function pairsEncode(pairs) {
  const parts = pairs.map(([k, v]) => [enc.encode(k), enc.encode(v)]);
  let size = 4 + parts.length * 8;
  for (const [k, v] of parts) size += k.length + v.length + 2;
  const out = new Uint8Array(size);
  const d = new DataView(out.buffer);
  d.setUint32(0, parts.length, true);
  let o = 4;
  for (const [k, v] of parts) {
    d.setUint32(o, k.length, true);
    d.setUint32(o + 4, v.length, true);
    o += 8;
  }
  for (const [k, v] of parts) {
    out.set(k, o); o += k.length + 1;
    out.set(v, o); o += v.length + 1;
  }
  return out;
}

function pairsDecode(b) {
  const d = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const n = d.getUint32(0, true);
  const lens = [];
  for (let i = 0; i < n; i++) lens.push([d.getUint32(4 + i * 8, true), d.getUint32(8 + i * 8, true)]);
  let o = 4 + n * 8;
  const out = [];
  for (const [kl, vl] of lens) {
    const k = dec.decode(b.subarray(o, o + kl)); o += kl + 1;
    const v = dec.decode(b.subarray(o, o + vl)); o += vl + 1;
    out.push([k, v]);
  }
  return out;
}

// Host state.
const shared = new Map(); // key -> {value: Uint8Array, cas}
let casSeq = 1;
const metrics = new Map();
let metricSeq = 1;
let current = null; // the stream being served: {headers: Map, body, status}
const calls = []; // pending http calls: {token, ctx, path}
let tokenSeq = 1;
let configBytes;
const OK = 0, NOT_FOUND = 1, CAS_MISMATCH = 8;

const env = {
  proxy_log(level, p, n) {
    if (level >= 3) console.error(`wasm log ${level}: ${str(p, n)}`);
    return OK;
  },
  proxy_get_buffer_bytes(type, start, max, ptrPtr, sizePtr) {
    let b;
    if (type === 7) b = configBytes;
    else if (type === 6) b = new Uint8Array(0);
    else if (type === 0) b = current.body;
    else if (type === 4) b = current.callBody;
    else return NOT_FOUND;
    give(b.subarray(start, start + max), ptrPtr, sizePtr);
    return OK;
  },
  proxy_set_buffer_bytes(type, start, size, p, n) {
    if (type === 0) current.body = bytes(p, n);
    return OK;
  },
  proxy_get_header_map_value(type, kp, kn, ptrPtr, sizePtr) {
    const map = type === 0 ? current.headers : type === 6 ? current.callHeaders : null;
    const v = map && map.get(str(kp, kn));
    if (v === undefined) return NOT_FOUND;
    give(v, ptrPtr, sizePtr);
    return OK;
  },
  proxy_get_header_map_pairs(type, ptrPtr, sizePtr) {
    const map = type === 0 ? current.headers : type === 6 ? current.callHeaders : new Map();
    give(pairsEncode([...map]), ptrPtr, sizePtr);
    return OK;
  },
  proxy_set_header_map_pairs() { return OK; },
  proxy_add_header_map_value(type, kp, kn, vp, vn) {
    if (type === 0) current.headers.set(str(kp, kn), str(vp, vn));
    return OK;
  },
  proxy_replace_header_map_value(type, kp, kn, vp, vn) {
    if (type === 0) current.headers.set(str(kp, kn), str(vp, vn));
    return OK;
  },
  proxy_remove_header_map_value(type, kp, kn) {
    if (type === 0) current.headers.delete(str(kp, kn));
    return OK;
  },
  proxy_get_shared_data(kp, kn, ptrPtr, sizePtr, casPtr) {
    const e = shared.get(str(kp, kn));
    if (!e) return NOT_FOUND;
    give(e.value, ptrPtr, sizePtr);
    dv().setUint32(casPtr, e.cas, true);
    return OK;
  },
  proxy_set_shared_data(kp, kn, vp, vn, cas) {
    const key = str(kp, kn);
    const e = shared.get(key);
    if (cas !== 0 && e && e.cas !== cas) return CAS_MISMATCH;
    shared.set(key, { value: bytes(vp, vn), cas: casSeq++ });
    return OK;
  },
  proxy_set_property() { return OK; },
  proxy_get_property() { return NOT_FOUND; },
  proxy_define_metric(type, p, n, idPtr) {
    const name = str(p, n);
    if (!metrics.has(name)) metrics.set(name, { id: metricSeq++, value: 0n });
    dv().setUint32(idPtr, metrics.get(name).id, true);
    return OK;
  },
  proxy_increment_metric(id, by) {
    for (const m of metrics.values()) if (m.id === id) m.value += by;
    return OK;
  },
  proxy_get_current_time_nanoseconds(p) {
    // The clock of the dump (its tokens expire after minutes), advancing with the run.
    const ms = data.now ? data.now * 1000 + (Date.now() - started) : Date.now();
    dv().setBigUint64(p, BigInt(ms) * 1000000n, true);
    return OK;
  },
  proxy_set_tick_period_milliseconds() { return OK; },
  proxy_send_local_response(status, dp, dn, bp, bn) {
    current.status = status;
    current.reply = str(bp, bn);
    return OK;
  },
  proxy_http_call(up, un, hp, hn, bp, bn, tp, tn, timeout, tokenPtr) {
    const headers = new Map(pairsDecode(bytes(hp, hn)));
    const token = tokenSeq++;
    calls.push({ token, ctx: current.ctx, path: headers.get(':path') });
    dv().setUint32(tokenPtr, token, true);
    return OK;
  },
  proxy_continue_stream() { current.resumed = true; return OK; },
  proxy_close_stream() { return OK; },
  proxy_set_effective_context() { return OK; },
  proxy_done() { return OK; },
  proxy_get_status() { return NOT_FOUND; },
  proxy_call_foreign_function() { return NOT_FOUND; },
};
for (const name of ['proxy_grpc_cancel', 'proxy_grpc_close', 'proxy_grpc_send', 'proxy_grpc_stream',
  'proxy_grpc_call', 'proxy_dequeue_shared_queue', 'proxy_enqueue_shared_queue',
  'proxy_resolve_shared_queue', 'proxy_register_shared_queue']) {
  env[name] = () => NOT_FOUND;
}

// HOSTCALLS=1: count the calls each way (printed per request).
const counts = new Map();
let allocs = 0;
if (process.env.HOSTCALLS) {
  for (const [name, f] of Object.entries(env)) {
    env[name] = (...args) => { counts.set(name, (counts.get(name) || 0) + 1); return f(...args); };
  }
}

const wasi = new WASI({ version: 'preview1', env: {}, returnOnExit: true });
const module = new WebAssembly.Module(readFileSync(wasmPath));
const instance = new WebAssembly.Instance(module, {
  env,
  wasi_snapshot_preview1: wasi.wasiImport,
});
ex = instance.exports;
mem = ex.memory;
wasi.initialize(instance);

const ROOT = 1;
configBytes = enc.encode(JSON.stringify(data[configName]));
ex.proxy_on_context_create(ROOT, 0);
ex.proxy_on_vm_start(ROOT, 0);
if (!ex.proxy_on_configure(ROOT, configBytes.length)) throw new Error('configure refused');

function parseRaw(raw) {
  const i = raw.indexOf('\r\n\r\n');
  const lines = raw.slice(0, i).split('\r\n');
  const [method, path] = lines[0].split(' ');
  const headers = new Map([[':method', method], [':path', path], [':authority', 'bank.example'], [':scheme', 'https']]);
  for (const l of lines.slice(1)) {
    const c = l.indexOf(':');
    headers.set(l.slice(0, c).toLowerCase(), l.slice(c + 1).trim());
  }
  return { headers, body: enc.encode(raw.slice(i + 4)) };
}

let ctxSeq = 100;
let failures = 0;
function serve(parsed) {
  const ctx = ctxSeq++;
  current = { ctx, headers: new Map(parsed.headers), body: parsed.body, status: 0 };
  ex.proxy_on_context_create(ctx, ROOT);
  ex.proxy_on_request_headers(ctx, current.headers.size, 0);
  let action = 1;
  if (!current.status) action = ex.proxy_on_request_body(ctx, current.body.length, 1);
  while (calls.length) {
    const c = calls.shift();
    const doc = data.docs[c.path];
    current.callHeaders = new Map([[':status', doc ? '200' : '404'], ['cache-control', 'max-age=3600']]);
    current.callBody = enc.encode(doc ? JSON.stringify(doc) : 'not found');
    ex.proxy_on_http_call_response(c.ctx, c.token, current.callHeaders.size, current.callBody.length, 0);
  }
  if (!current.status && action !== 0 && !current.resumed) {
    failures++;
    if (failures <= 3) console.error('request neither answered nor continued');
  }
  if (current.status) {
    failures++;
    if (failures <= 3) console.error(`rejected ${current.status}: ${current.reply}`);
  }
  ex.proxy_on_done(ctx);
  ex.proxy_on_log(ctx);
  ex.proxy_on_delete(ctx);
}

const warmPool = (scenario === 'mix' ? data.warm_mix : data.warm).map(parseRaw);
const pool = data[scenario].slice(0, Number(process.env.LIMIT || 1e9)).map(parseRaw);
for (const r of warmPool) serve(r);
counts.clear();
allocs = 0;
// Every request of the pool has a fresh jti: restore the shared data (JWKS cache, replay store)
// of the warmed state before each pass, so that no pass sees a replay.
const snapshot = new Map(shared);
const perPass = [];
for (let pass = 0; pass < PASSES + 1; pass++) {
  shared.clear();
  for (const [k, v] of snapshot) shared.set(k, v);
  failures = 0;
  const t0 = process.cpuUsage();
  for (const r of pool) serve(r);
  const t = process.cpuUsage(t0);
  if (failures) throw new Error(`${failures} requests refused`);
  if (pass > 0) perPass.push((t.user + t.system) / pool.length); // pass 0 lets V8 tier up
}
perPass.sort((a, b) => a - b);
if (process.env.HOSTCALLS) {
  const per = (v) => Number((v / ((PASSES + 1) * pool.length)).toFixed(2));
  console.log(JSON.stringify({ per_request: Object.fromEntries([...counts].map(([k, v]) => [k, per(v)])), memory_allocate: per(allocs) }));
}
console.log(JSON.stringify({
  config: configName, scenario, requests: pool.length, passes: PASSES,
  cpu_us_per_req_min: Number(perPass[0].toFixed(1)),
  cpu_us_per_req_median: Number(perPass[perPass.length >> 1].toFixed(1)),
}));
