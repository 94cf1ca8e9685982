#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! Bench-only proxy-wasm plugins used by `make bench` (see bench/README.md). Never part of the
//! release filter: this is a separate crate that compiles dcr-guard's own JOSE sources
//! (`core/src/jose`) unchanged.
//!
//! Configuration (JSON, the plugin configuration):
//! - `{"mode": "verify", "ssa_jwks": {...}, "request_jwks": {...}}`: an HTTP filter that verifies
//!   the JWS in `x-ssa` with `ssa_jwks` and the one in `x-request-jwt` with `request_jwks` (PS256,
//!   key sets parsed once at configure time) and answers 401 when either fails. Nothing else: the
//!   floor for two verifications inside V8.
//! - `{"mode": "prefill", "buckets": B, "entries": N, "key_prefix": "dcr_guard.replay.",
//!   "expires_at": T}`: at configure time, writes N live replay entries (random 16-byte ids,
//!   expiry T) spread over B buckets in dcr-guard's bucket format (core/src/replay.rs, version 2; random issuer
//!   tags).
//!   Meant as a singleton wasm service sharing dcr-guard's `vm_id`.

#[path = "../../../core/src/jose/mod.rs"]
#[allow(dead_code)]
pub mod jose;

use jose::{Alg, JwkSet, Jws};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel};
use std::rc::Rc;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { keys: None }) });
}}

struct Keys {
    ssa: JwkSet,
    request: JwkSet,
    /// Hostcalls made before verifying (`probe_kind`: `header`, the default, reads `:path`;
    /// `property` sets a filter-state property; `metric` increments a counter; `shared` reads a
    /// 1 KiB shared-data value; `time` reads the clock).
    probe_calls: u64,
    probe_kind: String,
    probe_metric: Option<u32>,
    /// Make the probe calls only, verify nothing.
    probe_only: bool,
    /// Probe: hold the headers and buffer the body as dcr-guard does, read it, then continue.
    probe_buffer: bool,
    /// The algorithm both signatures use (`"alg"`, default PS256).
    alg: Alg,
    /// Probe: one callout per request after the verification (`probe_callout`), the request
    /// waiting for its answer: what a callout costs Envoy, by transport.
    callout: Option<Callout>,
}

/// `{"kind": "grpc" | "grpc_put" | "http", "cluster": NAME}`: a read of one key of an etcd cluster,
/// as a gRPC `etcdserverpb.KV/Range` call or as an HTTP `POST /v3/kv/range` to etcd's JSON gateway
/// (HTTP/1.1 or HTTP/2, as the cluster speaks); `grpc_put` writes the key instead (`KV/Put`: the
/// answer waits for etcd's log to reach the disk, as the fleet store's `Txn` does).
struct Callout {
    grpc: bool,
    put: bool,
    cluster: String,
}

struct Root {
    keys: Option<Rc<Keys>>,
}

impl Context for Root {}

fn prefill(cfg: &serde_json::Value) -> Result<u64, String> {
    let buckets = cfg["buckets"].as_u64().unwrap_or(64).max(1);
    let entries = cfg["entries"].as_u64().unwrap_or(0);
    let prefix = cfg["key_prefix"].as_str().unwrap_or("dcr_guard.replay.");
    let expires_at = cfg["expires_at"].as_i64().unwrap_or(i64::MAX / 2);
    // Bucket by bucket, so that this VM never holds more than one bucket value: ids are SHA-256 of
    // (bucket, n) — never equal to a real (issuer, jti) digest in practice — placed round-robin
    // (entries / buckets per bucket, the remainder one more each in the first buckets).
    let mut max = 0u64;
    let mut v = Vec::new();
    for b in 0..buckets {
        let count = entries / buckets + u64::from(b < entries % buckets);
        v.clear();
        v.push(2u8);
        for j in 0..count {
            let mut seed = [0u8; 16];
            seed[..8].copy_from_slice(&b.to_le_bytes());
            seed[8..].copy_from_slice(&j.to_le_bytes());
            let d = ring::digest::digest(&ring::digest::SHA256, &seed);
            // id (16 bytes), issuer tag (8 bytes, never a real issuer's), expiry.
            v.extend_from_slice(&d.as_ref()[..24]);
            v.extend_from_slice(&expires_at.to_le_bytes());
        }
        max = max.max(count);
        let key = format!("{prefix}v2.{b}");
        hostcalls::set_shared_data(&key, Some(&v), None).map_err(|e| format!("{e:?}"))?;
    }
    Ok(max)
}

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        let doc = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default();
        let cfg: serde_json::Value = match serde_json::from_slice(&doc) {
            Ok(v) => v,
            Err(e) => {
                let _ = hostcalls::log(LogLevel::Error, &format!("bench-bare: bad config: {e}"));
                return false;
            }
        };
        match cfg["mode"].as_str() {
            Some("prefill") => match prefill(&cfg) {
                Ok(max) => {
                    let _ = hostcalls::log(
                        LogLevel::Info,
                        &format!(
                            "bench-bare: prefilled {} replay entries, fullest bucket {max} entries",
                            cfg["entries"]
                        ),
                    );
                    true
                }
                Err(e) => {
                    let _ = hostcalls::log(LogLevel::Error, &format!("bench-bare: prefill: {e}"));
                    false
                }
            },
            _ => {
                let parse = |v: &serde_json::Value| {
                    JwkSet::parse(v.to_string().as_bytes(), 64).map_err(|e| e.to_string())
                };
                match (parse(&cfg["ssa_jwks"]), parse(&cfg["request_jwks"])) {
                    (Ok(ssa), Ok(request)) => {
                        self.keys = Some(Rc::new(Keys {
                            ssa,
                            request,
                            probe_calls: cfg["probe_calls"].as_u64().unwrap_or(0),
                            probe_kind: cfg["probe_kind"].as_str().unwrap_or("header").to_string(),
                            probe_metric: hostcalls::define_metric(
                                proxy_wasm::types::MetricType::Counter,
                                "bench_probe",
                            )
                            .ok(),
                            probe_only: cfg["probe_only"].as_bool().unwrap_or(false),
                            probe_buffer: cfg["probe_buffer"].as_bool().unwrap_or(false),
                            alg: cfg["alg"]
                                .as_str()
                                .and_then(Alg::parse)
                                .unwrap_or(Alg::Ps256),
                            callout: cfg["probe_callout"]["cluster"].as_str().map(|c| Callout {
                                grpc: cfg["probe_callout"]["kind"] != "http",
                                put: cfg["probe_callout"]["kind"] == "grpc_put",
                                cluster: c.to_string(),
                            }),
                        }));
                        true
                    }
                    (Err(e), _) | (_, Err(e)) => {
                        let _ =
                            hostcalls::log(LogLevel::Error, &format!("bench-bare: bad JWKS: {e}"));
                        false
                    }
                }
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            keys: self.keys.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    keys: Option<Rc<Keys>>,
}

impl Context for Stream {
    fn on_grpc_call_response(&mut self, _token: u32, _status: u32, size: usize) {
        let _ = self.get_grpc_call_response_body(0, size);
        self.resume_http_request();
    }

    fn on_http_call_response(
        &mut self,
        _token: u32,
        _headers: usize,
        size: usize,
        _trailers: usize,
    ) {
        let _ = self.get_http_call_response_headers();
        let _ = self.get_http_call_response_body(0, size);
        self.resume_http_request();
    }
}

impl Stream {
    /// The probe callout, if configured: `Pause` until it is answered.
    fn callout(&mut self, keys: &Keys) -> Action {
        let Some(c) = &keys.callout else {
            return Action::Continue;
        };
        let timeout = std::time::Duration::from_secs(5);
        let sent = if c.grpc {
            // GrpcService { envoy_grpc { cluster_name } }, as dcr-guard sends it.
            let mut inner = vec![0x0a, c.cluster.len() as u8];
            inner.extend_from_slice(c.cluster.as_bytes());
            let mut service = vec![0x0a, inner.len() as u8];
            service.extend_from_slice(&inner);
            let service = String::from_utf8_lossy(&service).into_owned();
            // RangeRequest { key: "bench", serializable: true } or PutRequest { key, value: "x" }
            let (method, message): (&str, &[u8]) = if c.put {
                ("Put", b"\x0a\x05bench\x12\x01x")
            } else {
                ("Range", b"\x0a\x05bench\x38\x01")
            };
            self.dispatch_grpc_call(
                &service,
                "etcdserverpb.KV",
                method,
                vec![],
                Some(message),
                timeout,
            )
            .is_ok()
        } else {
            let body = br#"{"key":"YmVuY2g=","serializable":true}"#;
            self.dispatch_http_call(
                &c.cluster,
                vec![
                    (":method", "POST"),
                    (":path", "/v3/kv/range"),
                    (":authority", "etcd"),
                    ("content-type", "application/json"),
                ],
                Some(body),
                vec![],
                timeout,
            )
            .is_ok()
        };
        if sent {
            Action::Pause
        } else {
            self.send_http_response(503, vec![], Some(b"bench-bare: callout"));
            Action::Pause
        }
    }
}

fn verify_one(token: Option<String>, set: &JwkSet, alg: Alg) -> bool {
    let Some(token) = token else { return false };
    match Jws::parse(&token) {
        Ok(jws) => jose::verify(&jws, &[set], &[alg]).is_ok(),
        Err(_) => false,
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _n: usize, _end_of_stream: bool) -> Action {
        let Some(keys) = self.keys.clone() else {
            return Action::Continue;
        };
        // Probe (bench/README.md): the cost of a hostcall that returns a value.
        if keys.probe_kind == "shared" && keys.probe_calls > 0 {
            let _ = hostcalls::set_shared_data("bench_probe", Some(&[7u8; 1024]), None);
        }
        for i in 0..keys.probe_calls {
            match keys.probe_kind.as_str() {
                "property" => {
                    let _ = hostcalls::set_property(vec![&format!("bench_probe_{i}")], Some(b"x"));
                }
                "metric" => {
                    if let Some(id) = keys.probe_metric {
                        let _ = hostcalls::increment_metric(id, 1);
                    }
                }
                "shared" => {
                    let _ = hostcalls::get_shared_data("bench_probe");
                }
                "time" => {
                    let _ = hostcalls::get_current_time();
                }
                _ => {
                    let _ = self.get_http_request_header(":path");
                }
            }
        }
        if keys.probe_buffer {
            return Action::Pause;
        }
        if keys.probe_only {
            return self.callout(&keys);
        }
        let ssa = self.get_http_request_header("x-ssa");
        let req = self.get_http_request_header("x-request-jwt");
        if verify_one(ssa, &keys.ssa, keys.alg) && verify_one(req, &keys.request, keys.alg) {
            self.callout(&keys)
        } else {
            self.send_http_response(401, vec![], Some(b"bench-bare: signature"));
            Action::Pause
        }
    }

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        if !self.keys.as_ref().is_some_and(|k| k.probe_buffer) {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let _ = self.get_http_request_body(0, size);
        Action::Continue
    }
}
