//! The `dcr-guard` CLI against the filter: for a table of requests, `dcr-guard verify` gives the
//! verdict a real Envoy with the built filter answers (forward, or the same status, error code and
//! description); and the CLI's own I/O: JWKS over HTTPS from a server of a throwaway PKI
//! (`--cacert`), and a client certificate from a PEM file (`--cert`).
//!
//! The CLI binary: `DCR_GUARD_CLI` (what `make test` sets), else `target/debug/dcr-guard` beside
//! this test (built by `cargo test --workspace`, or `cargo build -p dcr-guard-cli`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use common::dcr::{corrupt_signature, Tpp, DIRECTORY_JWKS_URL};
use common::keys::{self, TestKey};
use common::tls::Pki;
use common::{Envoy, EnvoyConfig, Reply, TestServer, DIRECTORY_JWKS_PATH};
use serde_json::{json, Value};

fn cli() -> PathBuf {
    let path = match std::env::var_os("DCR_GUARD_CLI") {
        Some(p) => PathBuf::from(p),
        None => {
            let exe = std::env::current_exe().unwrap();
            // target/debug/deps/cli_envoy-… → target/debug/dcr-guard
            exe.parent().unwrap().parent().unwrap().join("dcr-guard")
        }
    };
    assert!(
        path.exists(),
        "{}: the CLI is not built (cargo build -p dcr-guard-cli, or set DCR_GUARD_CLI)",
        path.display()
    );
    path
}

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "dcr-guard-cli-envoy-{name}-{}-{}",
            std::process::id(),
            keys::uuid_v4()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path.to_str().unwrap().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `dcr-guard verify --json …`: exit status and report.
fn verify(args: &[&str]) -> (i32, Value) {
    let out = Command::new(cli())
        .arg("verify")
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout} {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), report)
}

/// What was answered: `Ok(())` forwarded (the AS's 201), or (status, error, description).
type Verdict = Result<(), (u64, String, String)>;

#[test]
fn cli_verdict_equals_envoys_for_a_table_of_requests() {
    let tpp = Tpp::new(TestKey::rsa("directory-ps256"), TestKey::rsa("tpp-ps256"));
    let keystore = common::keystore(&tpp, vec![]);
    let upstream = TestServer::always(Reply::json(201, &json!({"client_id": "generated"})));
    let mut filter = tpp.filter_config("keystore", "keystore");
    // The replay rules' checks of the claims' form run in the CLI too (only the store is not).
    filter["rules"]["request_jti"] = json!({"format": "uuid4"});
    let mut envoy_cfg =
        EnvoyConfig::new(filter.clone(), upstream.port()).cluster("keystore", keystore.port());
    if std::env::var_os("DCR_GUARD_TEST_WITHOUT_FILTER").is_some() {
        // Proof that this test tests the filter: it must fail without it.
        envoy_cfg = envoy_cfg.without_filter();
    }
    let envoy = Envoy::start(&envoy_cfg);
    let dir = Scratch::new("table");
    let cfg = dir.write("guard.json", filter.to_string());
    let d = dir.write("directory.jwks", tpp.directory_jwks().to_string());
    let s = dir.write("software.jwks", tpp.software_jwks().to_string());
    let (d, s) = (
        format!("{DIRECTORY_JWKS_URL}={d}"),
        format!("{}={s}", tpp.jwks_url()),
    );
    let t = keys::now();
    let fresh_ssa = || tpp.ssa();
    let cases: Vec<(&str, String)> = vec![
        ("valid", tpp.request()),
        ("not a JWT", "hello".into()),
        (
            "bad SSA signature",
            tpp.key
                .sign_default(&tpp.request_claims(&corrupt_signature(&fresh_ssa()))),
        ),
        (
            "untrusted SSA issuer",
            tpp.key.sign_default(
                &tpp.request_claims(&tpp.ssa_with(|c| c["iss"] = json!("Evil Directory"))),
            ),
        ),
        ("bad request signature", corrupt_signature(&tpp.request())),
        (
            "request signed by an unknown key",
            TestKey::rsa("stranger").sign_default(&tpp.request_claims(&fresh_ssa())),
        ),
        (
            "alg none",
            keys::unsigned_none(&tpp.request_claims(&fresh_ssa())),
        ),
        (
            "expired",
            tpp.request_with(|c| {
                c["iat"] = json!(t - 7200);
                c["exp"] = json!(t - 3600);
            }),
        ),
        (
            "wrong audience",
            tpp.request_with(|c| c["aud"] = json!("another-bank")),
        ),
        (
            "redirect URI not in the SSA",
            tpp.request_with(|c| c["redirect_uris"] = json!(["https://evil.example/cb"])),
        ),
        (
            "no software_statement",
            tpp.request_with(|c| {
                c.as_object_mut().unwrap().remove("software_statement");
            }),
        ),
        (
            "software JWKS host not allowed",
            tpp.key.sign_default(&tpp.request_claims(
                &tpp.ssa_with(|c| c["software_jwks_endpoint"] = json!("https://evil.example/jwks")),
            )),
        ),
        (
            "jti not a UUIDv4",
            tpp.request_with(|c| c["jti"] = json!("not-a-uuid")),
        ),
        (
            "jti missing",
            tpp.request_with(|c| {
                c.as_object_mut().unwrap().remove("jti");
            }),
        ),
    ];
    let mut forwarded = 0;
    for (name, body) in cases {
        let r = envoy.send(
            "POST",
            "/register",
            &[("content-type", "application/jwt")],
            body.as_bytes(),
        );
        let envoy_says: Verdict = if r.status == 201 {
            Ok(())
        } else {
            let j = r.json();
            Err((
                u64::from(r.status),
                j["error"].as_str().unwrap_or("").to_string(),
                j["error_description"].as_str().unwrap_or("").to_string(),
            ))
        };
        let req = dir.write("request.jwt", &body);
        let (code, report) = verify(&[
            "--config",
            &cfg,
            "--offline",
            "--jwks",
            &d,
            "--jwks",
            &s,
            &req,
        ]);
        let cli_says: Verdict = match report["verdict"].as_str() {
            Some("forward") => Ok(()),
            _ => {
                let f = &report["refusal"];
                Err((
                    f["status"].as_u64().unwrap(),
                    f["error"].as_str().unwrap().to_string(),
                    f["error_description"].as_str().unwrap().to_string(),
                ))
            }
        };
        assert_eq!(cli_says, envoy_says, "{name}: {report:#}");
        assert_eq!(code, if envoy_says.is_ok() { 0 } else { 1 }, "{name}");
        forwarded += usize::from(envoy_says.is_ok());
    }
    // The table is not all one verdict.
    assert_eq!(forwarded, 1);
}

/// A TLS server on 127.0.0.1 with a certificate for `localhost` from `pki`, answering GET `path`
/// with its document (404 otherwise), one request per connection.
fn tls_keystore(pki: &Pki, docs: Vec<(String, Value)>) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let files = pki.server(&["localhost"]);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(&files.key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let Ok(conn) = rustls::ServerConnection::new(Arc::clone(&config)) else {
                continue;
            };
            let mut tls = rustls::StreamOwned::new(conn, stream);
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && head.len() < 16384 {
                match tls.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            let text = String::from_utf8_lossy(&head).to_string();
            let path = text.split_whitespace().nth(1).unwrap_or("").to_string();
            let (status, body) = match docs.iter().find(|(p, _)| *p == path) {
                Some((_, doc)) => ("200 OK", doc.to_string()),
                None => ("404 Not Found", "not found".to_string()),
            };
            let _ = write!(
                tls,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tls.flush();
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    port
}

#[test]
fn cli_fetches_jwks_over_https_and_verifies_the_server() {
    let pki = Pki::new();
    let mut tpp = Tpp::new(TestKey::ec("dir"), TestKey::ec("tpp"));
    // The TPP's JWKS path does not depend on its host (which names the port).
    let port = tls_keystore(
        &pki,
        vec![
            (DIRECTORY_JWKS_PATH.to_string(), tpp.directory_jwks()),
            (tpp.jwks_path(), tpp.software_jwks()),
        ],
    );
    tpp.jwks_host = format!("localhost:{port}");
    let mut filter = tpp.filter_config("keystore", "keystore");
    filter["directories"][0]["jwks"][0]["url"] =
        json!(format!("https://localhost:{port}{DIRECTORY_JWKS_PATH}"));
    let dir = Scratch::new("https");
    let cfg = dir.write("guard.json", filter.to_string());
    let req = dir.write("request.jwt", tpp.request());
    let ca = pki.ca_path();
    let ca = ca.to_str().unwrap();
    // Trusting the test CA: both documents over HTTPS, forwarded.
    let (code, report) = verify(&["--config", &cfg, "--cacert", ca, &req]);
    assert_eq!(code, 0, "{report:#}");
    let fetches = report["fetches"].as_array().unwrap();
    assert_eq!(fetches.len(), 2, "{report:#}");
    assert!(
        fetches
            .iter()
            .all(|f| f["from"] == "https" && f["result"] == "keys"),
        "{report:#}"
    );
    // Without it (the built-in web PKI roots): the server is not trusted, the directory keystore
    // is unavailable, and the filter would answer 503.
    let (code, report) = verify(&["--config", &cfg, &req]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["refusal"]["status"], 503, "{report:#}");
    assert_eq!(report["fetches"][0]["result"], "unavailable", "{report:#}");
    // A document larger than limits.jwks_bytes: read no further than the bound, refused as the
    // filter refuses it.
    let mut small = filter.clone();
    small["limits"] = json!({"jwks_bytes": 1024});
    let padded = tls_keystore(
        &pki,
        vec![(
            DIRECTORY_JWKS_PATH.to_string(),
            json!({"keys": tpp.directory_jwks()["keys"], "padding": "x".repeat(4096)}),
        )],
    );
    small["directories"][0]["jwks"][0]["url"] =
        json!(format!("https://localhost:{padded}{DIRECTORY_JWKS_PATH}"));
    let cfg_small = dir.write("small.json", small.to_string());
    let (code, report) = verify(&["--config", &cfg_small, "--cacert", ca, &req]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["fetches"][0]["result"], "unusable", "{report:#}");
    assert_eq!(
        report["fetches"][0]["detail"], "document larger than 1024 bytes",
        "{report:#}"
    );
    // A document missing on the server (404): the filter's 400 for an unusable keystore.
    let mut missing = filter.clone();
    missing["directories"][0]["jwks"][0]["url"] =
        json!(format!("https://localhost:{port}/nothing-here.jwks"));
    let cfg = dir.write("missing.json", missing.to_string());
    let (code, report) = verify(&["--config", &cfg, "--cacert", ca, &req]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["fetches"][0]["result"], "unusable", "{report:#}");
    assert_eq!(
        report["fetches"][0]["detail"], "answered HTTP 404",
        "{report:#}"
    );
}

#[test]
fn cli_reads_the_client_certificate_from_a_pem_file() {
    let pki = Pki::new();
    let tpp = common::br_tpp();
    let dir = Scratch::new("cert");
    let cfg = dir.write("guard.json", tpp.br_filter_config("d", "s").to_string());
    let d = dir.write("directory.jwks", tpp.directory_jwks().to_string());
    let s = dir.write("software.jwks", tpp.software_jwks().to_string());
    let (d, s) = (
        format!("{DIRECTORY_JWKS_URL}={d}"),
        format!("{}={s}", tpp.jwks_url()),
    );
    let req = dir.write("request.json", tpp.br_request());
    let own = common::br_cert(&pki, common::BR_SOFTWARE, common::BR_ORG);
    let other = common::br_cert(&pki, "0b0b0b0b-1111-4a2b-9c3d-0123456789ab", common::BR_ORG);
    // (name, certificate, forwarded)
    for (name, cert, ok) in [("own", &own, true), ("another software's", &other, false)] {
        let pem = dir.write("tpp.pem", &cert.cert_pem);
        let (code, report) = verify(&[
            "--config",
            &cfg,
            "--offline",
            "--jwks",
            &d,
            "--jwks",
            &s,
            "--cert",
            &pem,
            &req,
        ]);
        assert_eq!(code, if ok { 0 } else { 1 }, "{name}: {report:#}");
        let row = report["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["rule"] == "certificate_binding")
            .unwrap();
        assert_eq!(
            row["outcome"],
            if ok { "pass" } else { "fail" },
            "{name}: {report:#}"
        );
    }
}
