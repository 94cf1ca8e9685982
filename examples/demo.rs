//! The dcr-guard demo: a local directory keystore, a demo authorization server, and a demo TPP
//! that mints registrations. `make run` starts `demo serve` and Envoy; then try `demo register`.
//!
//!   demo serve    [--state DIR] [--keystore-port 18081] [--as-port 18080] [--bind 127.0.0.1]
//!   demo register [--state DIR] [--gateway-port 10000] [--break WHAT]
//!
//! WHAT: ssa-signature | request-signature | expired | issuer | alg-none | redirect
//! The keys in DIR are demo-only material, generated on first use; never trust them anywhere else.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::dcr::{corrupt_signature, Tpp};
use common::keys::{self, TestKey};
use common::{Reply, TestServer};
use serde_json::{json, Value};

const DIRECTORY_PATH: &str = "/keystore/openbanking.jwks";
const DEMO_JWKS_HOST: &str = "keystore.tpp.demo";

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

fn load_or_make(dir: &Path, file: &str, kid: &str) -> TestKey {
    let path = dir.join(file);
    if let Ok(der) = std::fs::read(&path) {
        return TestKey::from_rsa_pkcs8(kid, &der);
    }
    let key = TestKey::rsa(kid);
    std::fs::create_dir_all(dir).expect("create state dir");
    std::fs::write(&path, key.pkcs8_der()).expect("write demo key");
    key
}

fn demo_tpp(state: &Path) -> Tpp {
    let directory = load_or_make(state, "directory-DEMO-ONLY.pk8", "demo-directory-1");
    let key = load_or_make(state, "tpp-DEMO-ONLY.pk8", "demo-tpp-1");
    let mut tpp = Tpp::new(directory, key);
    tpp.jwks_host = DEMO_JWKS_HOST.to_string();
    tpp
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let state = PathBuf::from(arg(&args, "--state", ".run/demo"));
    match args.first().map(String::as_str) {
        Some("serve") => serve(&state, &args),
        Some("register") => register(&state, &args),
        _ => {
            eprintln!("usage: demo serve|register [options] (see examples/demo.rs)");
            std::process::exit(2);
        }
    }
}

fn serve(state: &Path, args: &[String]) {
    let tpp = demo_tpp(state);
    let keystore_port: u16 = arg(args, "--keystore-port", "18081").parse().expect("port");
    let as_port: u16 = arg(args, "--as-port", "18080").parse().expect("port");
    let directory_doc = tpp.directory_jwks();
    let software_doc = tpp.software_jwks();
    let software_path = tpp.jwks_path();
    // 127.0.0.1 unless told otherwise (the docker-compose demo binds 0.0.0.0).
    let bind = arg(args, "--bind", "127.0.0.1");
    let keystore = TestServer::start_at(&bind, keystore_port, move |r| {
        println!("keystore: GET {}", r.path);
        if r.path == DIRECTORY_PATH {
            Reply::json(200, &directory_doc)
        } else if r.path == software_path {
            Reply::json(200, &software_doc)
        } else {
            Reply::text(404, "text/plain", "not found")
        }
    });
    let authorization_server = TestServer::start_at(&bind, as_port, |r| {
        // The demo AS trusts the gateway: whatever reaches it passed dcr-guard.
        if r.method == "POST" && r.path.starts_with("/register") {
            let text = r.text();
            let claims: Value = text
                .split('.')
                .nth(1)
                .map(|p| serde_json::from_slice(&keys::b64_decode(p)).unwrap_or(Value::Null))
                .unwrap_or(Value::Null);
            let client_id = format!("demo-{}", &keys::uuid_v4()[..8]);
            println!(
                "demo AS: registered client {client_id} for software_id {}",
                claims["software_id"].as_str().unwrap_or("?")
            );
            let mut out = json!({
                "client_id": client_id,
                "client_id_issued_at": keys::now(),
            });
            for k in [
                "redirect_uris",
                "token_endpoint_auth_method",
                "grant_types",
                "response_types",
                "scope",
                "software_id",
                "software_statement",
                "application_type",
            ] {
                if let Some(v) = claims.get(k) {
                    out[k] = v.clone();
                }
            }
            return Reply::json(201, &out);
        }
        println!("demo AS: {} {}", r.method, r.path);
        Reply::json(404, &json!({"error": "not_found"}))
    });
    println!(
        "demo keystore on 127.0.0.1:{}, demo AS on 127.0.0.1:{} (keys in {})",
        keystore.port(),
        authorization_server.port(),
        state.display()
    );
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn register(state: &Path, args: &[String]) {
    let tpp = demo_tpp(state);
    let port: u16 = arg(args, "--gateway-port", "10000").parse().expect("port");
    let what = arg(args, "--break", "");
    let body = match what.as_str() {
        "" => tpp.request(),
        "ssa-signature" => tpp
            .key
            .sign_default(&tpp.request_claims(&corrupt_signature(&tpp.ssa()))),
        "request-signature" => {
            TestKey::ec("demo-tpp-1").sign("ES256", json!({}), &tpp.request_claims(&tpp.ssa()))
        }
        "expired" => tpp.request_with(|c| {
            c["iat"] = json!(keys::now() - 7200);
            c["exp"] = json!(keys::now() - 3600);
        }),
        "issuer" => tpp.key.sign_default(
            &tpp.request_claims(&tpp.ssa_with(|c| c["iss"] = json!("Unknown Directory"))),
        ),
        "alg-none" => keys::unsigned_none(&tpp.request_claims(&tpp.ssa())),
        "jwks-host" => {
            tpp.key.sign_default(&tpp.request_claims(&tpp.ssa_with(|c| {
                c["software_jwks_endpoint"] = json!("https://attacker.example/jwks")
            })))
        }
        other => {
            eprintln!("unknown --break {other}: ssa-signature | request-signature | expired | issuer | alg-none | jwks-host");
            std::process::exit(2);
        }
    };
    println!(
        "POST http://127.0.0.1:{port}/register ({} bytes, software_id {})",
        body.len(),
        tpp.software_id
    );
    match common::http::try_send(
        port,
        "POST",
        "/register",
        &[("content-type", "application/jwt")],
        body.as_bytes(),
    ) {
        Ok(r) => {
            println!("HTTP {}", r.status);
            match serde_json::from_slice::<Value>(&r.body) {
                Ok(v) => println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default()),
                Err(_) => println!("{}", r.text()),
            }
        }
        Err(e) => {
            eprintln!("cannot reach the gateway on 127.0.0.1:{port}: {e} (is `make run` running?)");
            std::process::exit(1);
        }
    }
}
