//! The dcr-guard demo: a local directory keystore, a demo PKI, and a demo TPP that registers,
//! reads, updates and deletes its client through the gateway over mutual TLS. `make run` starts
//! `demo serve`, the demo AS (node oidc-provider, envoy/as) and Envoy.
//!
//!   demo pki      [--state DIR]            the demo CA, Envoy's server certificate, the TPP's client certificate
//!   demo serve    [--state DIR] [--keystore-port 18081] [--as-port PORT] [--bind 127.0.0.1]
//!                 (the keystore; with --as-port also a minimal AS without TLS, for docker-compose)
//!   demo register [--state DIR] [--gateway-port 10000] [--break WHAT] [--plain]
//!   demo show | update | delete [--state DIR] [--gateway-port 10000] [--token other]
//!
//! WHAT: ssa-signature | request-signature | expired | issuer | alg-none | jwks-host | redirect | no-cert | other-cert
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
use common::tls::{https_send, ClientIdentity, DnKind, Pki};
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
        Some("pki") => {
            demo_pki(&state);
            println!("demo PKI in {}", state.join("pki").display());
        }
        Some("serve") => serve(&state, &args),
        Some("register") => register(&state, &args),
        Some(cmd @ ("show" | "update" | "delete")) => manage(&state, &args, cmd),
        _ => {
            eprintln!("usage: demo pki|serve|register|show|update|delete [options] (see examples/demo.rs)");
            std::process::exit(2);
        }
    }
}

fn serve(state: &Path, args: &[String]) {
    let tpp = demo_tpp(state);
    let keystore_port: u16 = arg(args, "--keystore-port", "18081").parse().expect("port");
    let as_port: Option<u16> = args
        .iter()
        .position(|a| a == "--as-port")
        .and_then(|i| args.get(i + 1))
        .map(|p| p.parse().expect("port"));
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
    let authorization_server = as_port.map(|as_port| {
        TestServer::start_at(&bind, as_port, |r| {
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
        })
    });
    println!(
        "demo keystore on {bind}:{} (keys in {}){}",
        keystore.port(),
        state.display(),
        authorization_server
            .as_ref()
            .map(|a| format!(", minimal demo AS on {bind}:{}", a.port()))
            .unwrap_or_default()
    );
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// The demo PKI (demo-only material, made on first use): the demo directory's CA, Envoy's server
/// certificate for `localhost`, the TPP's transport certificate (CN = software_id, OU = org_id, as
/// OBIE transport certificates carry them) and another TPP's, for the negative cases.
fn demo_pki(state: &Path) -> PathBuf {
    let dir = state.join("pki");
    if dir.join("tpp.der").exists() {
        return dir;
    }
    std::fs::create_dir_all(&dir).expect("create pki dir");
    let tpp = demo_tpp(state);
    let pki = Pki::named("dcr-guard demo directory CA (DEMO ONLY)");
    let server = pki.server(&["localhost"]);
    std::fs::copy(&server.cert, dir.join("server.pem")).expect("server.pem");
    std::fs::copy(&server.key, dir.join("server-key.pem")).expect("server-key.pem");
    std::fs::write(dir.join("ca.pem"), &pki.ca_pem).expect("ca.pem");
    for (name, software) in [
        ("tpp", tpp.software_id.as_str()),
        ("other", "another-software-id"),
    ] {
        let id = pki.client(&[
            (DnKind::C, "GB"),
            (DnKind::O, "Demo TPP Ltd"),
            (DnKind::Ou, tpp.org_id.as_str()),
            (DnKind::Cn, software),
        ]);
        std::fs::write(dir.join(format!("{name}.pem")), &id.cert_pem).expect("cert");
        std::fs::write(dir.join(format!("{name}-key.pem")), &id.key_pem).expect("key");
        std::fs::write(dir.join(format!("{name}.der")), &id.cert_der).expect("cert der");
        std::fs::write(dir.join(format!("{name}-key.der")), &id.key_der).expect("key der");
    }
    dir
}

fn identity(state: &Path, name: &str) -> ClientIdentity {
    let dir = demo_pki(state);
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    ClientIdentity {
        cert_pem: String::from_utf8(read(&format!("{name}.pem"))).expect("pem"),
        key_pem: String::from_utf8(read(&format!("{name}-key.pem"))).expect("pem"),
        cert_der: read(&format!("{name}.der")),
        key_der: read(&format!("{name}-key.der")),
        subject: Vec::new(),
    }
}

/// One request to the gateway over mutual TLS (or plain HTTP with `--plain`), printed.
fn call(
    state: &Path,
    args: &[String],
    who: Option<&str>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<common::http::Response> {
    let port: u16 = arg(args, "--gateway-port", "10000").parse().expect("port");
    let plain = args.iter().any(|a| a == "--plain");
    let cert = match who {
        Some(w) if !plain => format!(" (client certificate: {w})"),
        _ if !plain => " (no client certificate)".to_string(),
        _ => String::new(),
    };
    let scheme = if plain { "http" } else { "https" };
    println!("{method} {scheme}://localhost:{port}{path}{cert}");
    let result = if plain {
        common::http::try_send(port, method, path, headers, body).map_err(|e| e.to_string())
    } else {
        let ca = std::fs::read_to_string(demo_pki(state).join("ca.pem")).expect("ca.pem");
        let id = who.map(|w| identity(state, w));
        https_send(port, id.as_ref(), &ca, method, path, headers, body)
    };
    match result {
        Ok(r) => {
            println!("HTTP {}", r.status);
            match serde_json::from_slice::<Value>(&r.body) {
                Ok(v) => println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default()),
                Err(_) if r.body.is_empty() => {}
                Err(_) => println!("{}", r.text()),
            }
            Some(r)
        }
        Err(e) => {
            eprintln!("no answer from the gateway on localhost:{port}: {e}");
            None
        }
    }
}

fn client_file(state: &Path) -> PathBuf {
    state.join("client.json")
}

fn register(state: &Path, args: &[String]) {
    let tpp = demo_tpp(state);
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
        "redirect" => tpp.request_with(|c| {
            c["redirect_uris"] = json!(["https://tpp.example.com/not-in-the-ssa"])
        }),
        "no-cert" | "other-cert" => tpp.request(),
        other => {
            eprintln!("unknown --break {other}: ssa-signature | request-signature | expired | issuer | alg-none | jwks-host | redirect | no-cert | other-cert");
            std::process::exit(2);
        }
    };
    let who = match what.as_str() {
        "no-cert" => None,
        "other-cert" => Some("other"),
        _ => Some("tpp"),
    };
    let headers = [("content-type", "application/jwt")];
    if let Some(r) = call(
        state,
        args,
        who,
        "POST",
        "/register",
        &headers,
        body.as_bytes(),
    ) {
        if r.status == 201 {
            std::fs::write(client_file(state), &r.body).expect("save the client");
            println!(
                "(saved to {}: `demo show|update|delete` use its registration access token)",
                client_file(state).display()
            );
        }
    }
}

/// GET, PUT or DELETE the registered client with the registration access token the AS issued.
fn manage(state: &Path, args: &[String], cmd: &str) {
    let saved: Value = match std::fs::read(client_file(state))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
    {
        Some(v) => v,
        None => {
            eprintln!("no registered client yet: run `demo register` first");
            std::process::exit(1);
        }
    };
    let id = saved["client_id"].as_str().unwrap_or_default().to_string();
    let token = match arg(args, "--token", "").as_str() {
        "" => saved["registration_access_token"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        "other" => "not-this-clients-token".to_string(),
        t => t.to_string(),
    };
    let auth = format!("Bearer {token}");
    let path = format!("/register/{id}");
    let tpp = demo_tpp(state);
    match cmd {
        "show" => {
            call(
                state,
                args,
                Some("tpp"),
                "GET",
                &path,
                &[("authorization", &auth)],
                b"",
            );
        }
        "update" => {
            let body = tpp.request_with(|c| c["client_id"] = json!(id));
            let headers = [
                ("authorization", auth.as_str()),
                ("content-type", "application/jwt"),
            ];
            call(
                state,
                args,
                Some("tpp"),
                "PUT",
                &path,
                &headers,
                body.as_bytes(),
            );
        }
        _ => {
            // The saved client stays, so that `demo show` can show the AS's 401 afterwards.
            call(
                state,
                args,
                Some("tpp"),
                "DELETE",
                &path,
                &[("authorization", &auth)],
                b"",
            );
        }
    }
}
