//! POST /register through a real Envoy running the built filter: a local keystore serves the
//! directory and software JWKS, a local upstream records what reaches the authorization server.
//! Every case runs with held headers (`allow_on_headers_stop_iteration`) and without.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::dcr::{corrupt_signature, Tpp, BANK_AUDIENCE, DIRECTORY_JWKS_URL};
use common::keys::{self, TestKey};
use common::{Envoy, EnvoyConfig, Reply, Response, TestServer};
use serde_json::json;

const DIRECTORY_PATH: &str = "/keystore/openbanking.jwks";

/// How the local keystore behaves for the directory document.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Keystore {
    Normal,
    HangUp,
    Html,
    ServerError,
    Slow,
}

struct Stack {
    tpp: Tpp,
    /// A second TPP key (ES256) published in the software JWKS.
    tpp_ec: TestKey,
    keystore: TestServer,
    upstream: TestServer,
    envoy: Envoy,
    hold: bool,
}

impl Stack {
    fn start(hold: bool) -> Stack {
        Stack::start_with(hold, Keystore::Normal)
    }

    fn start_with(hold: bool, initial: Keystore) -> Stack {
        let tpp = Tpp::new(TestKey::rsa("directory-ps256"), TestKey::rsa("tpp-ps256"));
        let tpp_ec = TestKey::ec("tpp-es256");
        let mode = Arc::new(Mutex::new(initial));
        let directory_doc = tpp.directory_jwks();
        let software_doc = keys::jwks(&[&tpp.key, &tpp_ec]);
        let software_path = tpp.jwks_path();
        let m = Arc::clone(&mode);
        let keystore = TestServer::start(move |r| {
            if r.path == DIRECTORY_PATH {
                return match *m.lock().unwrap() {
                    Keystore::Normal => Reply::json(200, &directory_doc),
                    Keystore::HangUp => Reply::hang_up(),
                    Keystore::Html => {
                        Reply::text(200, "text/html", "<html><body>maintenance</body></html>")
                    }
                    Keystore::ServerError => Reply::text(500, "text/plain", "boom"),
                    Keystore::Slow => {
                        Reply::json(200, &directory_doc).after(Duration::from_millis(1500))
                    }
                };
            }
            if r.path == software_path {
                return Reply::json(200, &software_doc);
            }
            Reply::text(404, "text/plain", "not found")
        });
        let upstream = TestServer::always(
            Reply::json(201, &json!({"client_id": "generated-client-id"}))
                .with_header("x-upstream", "as"),
        );
        let mut filter = tpp.filter_config("keystore", "keystore");
        filter["hold_headers"] = json!(hold);
        filter["limits"] = json!({"callout_timeout_ms": 700});
        let mut cfg = EnvoyConfig::new(filter, upstream.port())
            .cluster("keystore", keystore.port())
            .hold_headers(hold);
        if std::env::var_os("DCR_GUARD_TEST_WITHOUT_FILTER").is_some() {
            // Proof that these tests test the filter: they must fail without it.
            cfg = cfg.without_filter();
        }
        let envoy = Envoy::start(&cfg);
        Stack {
            tpp,
            tpp_ec,
            keystore,
            upstream,
            envoy,
            hold,
        }
    }

    fn post(&self, path: &str, body: &str) -> Response {
        self.envoy.send(
            "POST",
            path,
            &[("content-type", "application/jwt")],
            body.as_bytes(),
        )
    }
}

fn error_of(r: &Response) -> String {
    r.json()["error"].as_str().unwrap_or("").to_string()
}

/// A rejection: status and error code, and the upstream got no body (and, with held headers,
/// nothing at all).
fn assert_rejected(s: &Stack, name: &str, r: &Response, status: u16, code: &str) {
    assert_eq!(r.status, status, "{name}: {} {}", r.status, r.text());
    assert_eq!(error_of(r), code, "{name}: {}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"), "{name}");
    assert!(
        r.header("x-upstream").is_none(),
        "{name}: answered by the upstream"
    );
    let desc = r.json()["error_description"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        !desc.is_empty() && desc.chars().count() <= 500,
        "{name}: {desc}"
    );
    // Let a reset upstream stream be recorded before looking.
    std::thread::sleep(Duration::from_millis(50));
    for req in s.upstream.requests() {
        assert!(
            req.body.is_empty(),
            "{name}: upstream received a body: {} bytes",
            req.body.len()
        );
        assert!(
            !s.hold,
            "{name}: with held headers the upstream must see nothing, saw {} {}",
            req.method, req.path
        );
    }
    s.upstream.clear();
}

fn run_cases(hold: bool) {
    let s = Stack::start(hold);
    let tpp = &s.tpp;

    // --- valid requests reach the upstream unchanged
    let body = tpp.request();
    let r = s.post("/register", &body);
    assert_eq!(r.status, 201, "valid PS256: {}", r.text());
    assert_eq!(r.header("x-upstream"), Some("as"));
    let got = s.upstream.wait_for(1, Duration::from_secs(5));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, body.as_bytes(), "body forwarded unchanged");
    assert_eq!(got[0].path, "/register");
    assert_eq!(got[0].header("content-type"), Some("application/jwt"));
    s.upstream.clear();

    let ssa = tpp.ssa();
    let es = s.tpp_ec.sign("ES256", json!({}), &tpp.request_claims(&ssa));
    let r = s.envoy.send(
        "POST",
        "/register?x=1",
        &[("content-type", "application/jose; charset=UTF-8")],
        es.as_bytes(),
    );
    assert_eq!(r.status, 201, "valid ES256: {}", r.text());
    let got = s.upstream.wait_for(1, Duration::from_secs(5));
    assert_eq!(got[0].path, "/register?x=1", "query forwarded as sent");
    s.upstream.clear();

    // --- header values that are not UTF-8 (HTTP/1.1 obs-text, which Envoy passes on): refused
    // like any unsupported value, and the filter keeps working afterwards.
    for (name, value) in [
        ("content-type", &b"application/jwt\xff"[..]),
        ("content-length", &b"1\xff"[..]),
    ] {
        let body = tpp.request();
        let mut raw = b"POST /register HTTP/1.1\r\nhost: bank.example\r\n".to_vec();
        for (n, v) in [
            ("content-type", &b"application/jwt"[..]),
            ("content-length", body.len().to_string().as_bytes()),
        ] {
            raw.extend_from_slice(n.as_bytes());
            raw.extend_from_slice(b": ");
            raw.extend_from_slice(if n == name { value } else { v });
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"connection: close\r\n\r\n");
        raw.extend_from_slice(body.as_bytes());
        let r = common::http::send_raw(s.envoy.port, &raw);
        assert_eq!(r.status, 400, "non-UTF-8 {name}: {} {}", r.status, r.text());
        let body = tpp.request();
        let r = s.post("/register", &body);
        assert_eq!(r.status, 201, "after a non-UTF-8 {name}: {}", r.text());
        s.upstream.clear();
    }

    // --- the SSA
    let corrupted = corrupt_signature(&tpp.ssa());
    let cases: Vec<(&str, String, u16, &str, &str)> = vec![
        (
            "corrupted SSA signature",
            tpp.key.sign_default(&tpp.request_claims(&corrupted)),
            400,
            "invalid_software_statement",
            "signature verification failed",
        ),
        (
            "SSA signed by a key the directory does not publish",
            tpp.key.sign_default(
                &tpp.request_claims(
                    &TestKey::rsa("directory-ps256").sign_default(&tpp.ssa_claims()),
                ),
            ),
            400,
            "invalid_software_statement",
            "signature verification failed",
        ),
        (
            "SSA signed by an unpublished key with another kid",
            tpp.key.sign_default(
                &tpp.request_claims(&TestKey::ec("rogue").sign_default(&tpp.ssa_claims())),
            ),
            400,
            "invalid_software_statement",
            "no key with kid \"rogue\"",
        ),
        (
            "unknown SSA issuer",
            tpp.key.sign_default(
                &tpp.request_claims(&tpp.ssa_with(|c| c["iss"] = json!("Some Other Directory"))),
            ),
            400,
            "unapproved_software_statement",
            "is not trusted",
        ),
        (
            "expired SSA",
            tpp.key.sign_default(
                &tpp.request_claims(&tpp.ssa_with(|c| c["exp"] = json!(keys::now() - 3600))),
            ),
            400,
            "invalid_software_statement",
            "SSA has expired",
        ),
        // --- the request
        (
            "request signed by a key not in the software JWKS",
            TestKey::rsa("tpp-ps256").sign_default(&tpp.request_claims(&tpp.ssa())),
            400,
            "invalid_client_metadata",
            "request JWT signature: signature verification failed",
        ),
        (
            "alg none",
            keys::unsigned_none(&tpp.request_claims(&tpp.ssa())),
            400,
            "invalid_client_metadata",
            "forbidden algorithm",
        ),
        (
            "HS256 keyed with the RSA public key",
            keys::hs256(&tpp.key.public_key_bytes(), &tpp.request_claims(&tpp.ssa())),
            400,
            "invalid_client_metadata",
            "forbidden algorithm",
        ),
        (
            "RS256 (not allowed)",
            tpp.key
                .sign("RS256", json!({}), &tpp.request_claims(&tpp.ssa())),
            400,
            "invalid_client_metadata",
            "`RS256` is not allowed",
        ),
        (
            "expired request",
            tpp.request_with(|c| {
                c["exp"] = json!(keys::now() - 3600);
                c["iat"] = json!(keys::now() - 3700);
            }),
            400,
            "invalid_client_metadata",
            "request JWT has expired",
        ),
        (
            "garbage body",
            "this is not a JWT".to_string(),
            400,
            "invalid_request",
            "not a compact JWS",
        ),
        (
            "JSON payload that is not an object",
            tpp.key.sign_payload("PS256", json!({}), b"[1,2,3]"),
            400,
            "invalid_request",
            "payload",
        ),
    ];
    for (name, body, status, code, why) in &cases {
        let r = s.post("/register", body);
        let desc = r.json()["error_description"]
            .as_str()
            .unwrap_or("")
            .to_string();
        assert!(
            desc.contains(why),
            "{name}: description {desc:?} lacks {why:?}"
        );
        assert_rejected(&s, name, &r, *status, code);
    }

    // --- software JWKS host outside the allow-list: refused without fetching
    let before = s.keystore.requests().len();
    let ssa =
        tpp.ssa_with(|c| c["software_jwks_endpoint"] = json!("https://evil.example.net/jwks"));
    let r = s.post(
        "/register",
        &tpp.key.sign_default(&tpp.request_claims(&ssa)),
    );
    assert_rejected(
        &s,
        "software JWKS host not allowed",
        &r,
        400,
        "invalid_client_metadata",
    );
    let after = s.keystore.requests();
    assert!(
        after[before..].iter().all(|q| q.path == DIRECTORY_PATH),
        "keystore was asked for the software JWKS: {:?}",
        after[before..].iter().map(|q| &q.path).collect::<Vec<_>>()
    );
    let ssa = tpp.ssa_with(|c| {
        c["software_jwks_endpoint"] = json!(format!("http://{}{}", tpp.jwks_host, tpp.jwks_path()))
    });
    let r = s.post(
        "/register",
        &tpp.key.sign_default(&tpp.request_claims(&ssa)),
    );
    assert_rejected(
        &s,
        "software JWKS over http",
        &r,
        400,
        "invalid_client_metadata",
    );

    // --- the envelope
    let big = "a".repeat(70 * 1024);
    let r = s.post("/register", &big);
    assert_rejected(&s, "body over the limit", &r, 413, "invalid_request");
    let r = s.envoy.send(
        "POST",
        "/register",
        &[("content-type", "application/json")],
        br#"{"redirect_uris":[]}"#,
    );
    assert_rejected(
        &s,
        "JSON body on the JWT profile",
        &r,
        400,
        "invalid_request",
    );
    let r = s.envoy.send(
        "PATCH",
        "/register",
        &[("content-type", "application/jwt")],
        tpp.request().as_bytes(),
    );
    assert_rejected(&s, "PATCH /register", &r, 405, "invalid_request");
    assert_eq!(r.header("allow"), Some("POST"));
    let r = s.envoy.send("GET", "/register", &[], b"");
    assert_rejected(&s, "GET /register", &r, 405, "invalid_request");
    let r = s.envoy.send("GET", "/register/some-client/", &[], b"");
    assert_rejected(
        &s,
        "trailing slash after client id",
        &r,
        400,
        "invalid_request",
    );
    let r = s.envoy.send("GET", "/register/a%2Fb", &[], b"");
    assert_rejected(&s, "encoded slash in client id", &r, 400, "invalid_request");

    // Path tricks are still validated.
    for path in ["//register", "/./register", "/x/../register", "/REGISTER"] {
        let r = s.post(path, "garbage");
        assert_rejected(&s, path, &r, 400, "invalid_request");
        let r = s.post(path, &tpp.request());
        assert_eq!(r.status, 201, "{path}: valid request: {}", r.text());
        s.upstream.clear();
    }

    // --- other paths pass untouched
    let r = s
        .envoy
        .send("GET", "/accounts/123?x=1", &[("x-test", "1")], b"");
    assert_eq!(r.status, 201);
    assert_eq!(r.header("x-upstream"), Some("as"));
    let got = s.upstream.wait_for(1, Duration::from_secs(5));
    assert_eq!(got[0].path, "/accounts/123?x=1");
    assert_eq!(got[0].header("x-test"), Some("1"));
    s.upstream.clear();
    let r = s.envoy.send(
        "POST",
        "/registers",
        &[("content-type", "text/plain")],
        b"hello",
    );
    assert_eq!(r.status, 201, "/registers is another path");
    assert_eq!(
        s.upstream.wait_for(1, Duration::from_secs(5))[0].body,
        b"hello"
    );
    s.upstream.clear();

    // Singleton headers sent twice on a registration path: refused (Envoy hands the filter the
    // first value only; an upstream might use the last).
    let body = s.tpp.request();
    let raw = format!(
        "POST /register HTTP/1.1\r\nhost: bank\r\ncontent-type: application/jwt\r\ncontent-type: application/jwt\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let r = common::http::send_raw(s.envoy.port, raw.as_bytes());
    assert_rejected(&s, "content-type twice", &r, 400, "invalid_request");
    let raw = "GET /register/some-client HTTP/1.1\r\nhost: bank\r\nauthorization: Bearer a\r\nauthorization: Bearer b\r\nconnection: close\r\n\r\n";
    let r = common::http::send_raw(s.envoy.port, raw.as_bytes());
    // Envoy joins the two values ("Bearer a,Bearer b"): not a bearer token, refused by the binding.
    assert_rejected(&s, "authorization twice", &r, 401, "invalid_token");
    let raw = format!(
        "POST /register HTTP/1.1\r\nhost: bank\r\ncontent-type: application/jwt\r\ncontent-encoding: identity\r\ncontent-encoding: gzip\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let r = common::http::send_raw(s.envoy.port, raw.as_bytes());
    // Envoy joins the two values into one list ("identity,gzip"), which names a coding: 415.
    assert_rejected(&s, "content-encoding twice", &r, 415, "invalid_request");
    assert_eq!(r.header("accept-encoding"), Some("identity"));

    // The audience constant is what the demo AS and the README use.
    assert!(!BANK_AUDIENCE.is_empty());
    assert!(
        s.envoy.log().contains("dcr-guard: rejected"),
        "rejections are logged"
    );
    assert!(!s.envoy.log().contains(&body[..40]), "a token was logged");
}

/// Keystore faults, each on a fresh Envoy: documents are cached once fetched, so a fault shows
/// only on a cold cache (or once the cached copy has expired, see envoy_cache.rs).
#[test]
fn keystore_faults_on_a_cold_cache() {
    for (mode, status, code) in [
        (Keystore::HangUp, 503, "temporarily_unavailable"),
        (Keystore::ServerError, 503, "temporarily_unavailable"),
        (Keystore::Slow, 503, "temporarily_unavailable"),
        (Keystore::Html, 400, "invalid_software_statement"),
    ] {
        let s = Stack::start_with(true, mode);
        // Twice: the first answer comes from the fetch (or the background fetch), the second from
        // the cache's memory of the failure while it backs off; both must be the same.
        for attempt in 1..=2 {
            let r = s.post("/register", &s.tpp.request());
            let name = format!("keystore {mode:?}, attempt {attempt}");
            assert_rejected(&s, &name, &r, status, code);
            if status == 503 {
                let retry: u32 = r.header("retry-after").unwrap_or("").parse().unwrap_or(0);
                assert!(retry > 0, "{name}: Retry-After missing");
            }
        }
    }
}

#[test]
fn create_with_held_headers() {
    run_cases(true);
}

#[test]
fn create_without_held_headers() {
    run_cases(false);
}

#[test]
fn refused_configuration_keeps_envoy_from_starting() {
    let upstream = TestServer::always(Reply::status(200));
    let tpp = Tpp::new(TestKey::ec("d"), TestKey::ec("t"));
    let mut filter = tpp.filter_config("keystore", "keystore");
    filter["directories"][0]["jwks"][0]["urll"] = json!(DIRECTORY_JWKS_URL);
    let cfg = EnvoyConfig::new(filter, upstream.port()).cluster("keystore", upstream.port());
    match Envoy::try_start(&cfg) {
        Ok(_) => panic!("Envoy started on a refused configuration"),
        Err(f) => {
            assert!(
                f.log.contains("directories[0].jwks[0].urll") && f.log.contains("unknown field"),
                "the log does not name the field:\n{}",
                f.log
            );
        }
    }
    let cfg = EnvoyConfig::new(json!({"software_jwks_hosts": []}), upstream.port());
    let f = Envoy::try_start(&cfg)
        .err()
        .expect("started without directories");
    assert!(f.log.contains("`directories`"), "{}", f.log);
}
