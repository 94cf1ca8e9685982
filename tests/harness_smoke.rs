#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! Smoke tests of the integration-test harness itself (tests/common): the
//! recording server and raw client, token minting, and a real Envoy started
//! without the wasm filter (so this does not need the filter to be built).

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::http::{self, Conn, Reply, TestServer};
use common::keys::{self, TestKey};
use common::{Envoy, EnvoyConfig};
use ring::signature::{self, UnparsedPublicKey};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------
// token minting, checked with ring directly

fn jwk_bytes(jwk: &Value, member: &str) -> Vec<u8> {
    keys::b64_decode(
        jwk[member]
            .as_str()
            .unwrap_or_else(|| panic!("JWK has no {member}")),
    )
}

/// Verifies a compact JWS with ring from the public JWK; returns the claims.
fn verify(token: &str, jwk: &Value) -> Value {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "three parts: {token}");
    let header: Value = serde_json::from_slice(&keys::b64_decode(parts[0])).unwrap();
    let input = format!("{}.{}", parts[0], parts[1]);
    let sig = keys::b64_decode(parts[2]);
    let alg = header["alg"].as_str().unwrap();
    let ok = match alg {
        "PS256" | "RS256" => {
            let params = if alg == "PS256" {
                &signature::RSA_PSS_2048_8192_SHA256
            } else {
                &signature::RSA_PKCS1_2048_8192_SHA256
            };
            signature::RsaPublicKeyComponents {
                n: jwk_bytes(jwk, "n"),
                e: jwk_bytes(jwk, "e"),
            }
            .verify(params, input.as_bytes(), &sig)
            .is_ok()
        }
        "ES256" => {
            assert_eq!(sig.len(), 64, "ES256 signature is r||s");
            let mut point = vec![4u8];
            point.extend(jwk_bytes(jwk, "x"));
            point.extend(jwk_bytes(jwk, "y"));
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(input.as_bytes(), &sig)
                .is_ok()
        }
        "EdDSA" => UnparsedPublicKey::new(&signature::ED25519, jwk_bytes(jwk, "x"))
            .verify(input.as_bytes(), &sig)
            .is_ok(),
        other => panic!("unexpected alg {other}"),
    };
    assert!(ok, "{alg} signature does not verify");
    serde_json::from_slice(&keys::b64_decode(parts[1])).unwrap()
}

fn claims() -> Value {
    let now = keys::now();
    json!({
        "iss": "https://issuer.example",
        "aud": "https://aspsp.example",
        "iat": now,
        "exp": now + 300,
        "jti": keys::uuid_v4(),
    })
}

#[test]
fn minted_tokens_verify_with_ring() {
    let rsa = TestKey::rsa("rsa-1");
    let ec = TestKey::ec("ec-1");
    let ed = TestKey::ed("ed-1");
    let c = claims();

    for (key, alg, kty) in [
        (&rsa, "PS256", "RSA"),
        (&rsa, "RS256", "RSA"),
        (&ec, "ES256", "EC"),
        (&ed, "EdDSA", "OKP"),
    ] {
        let jwk = key.public_jwk();
        assert_eq!(jwk["kty"], kty);
        assert_eq!(jwk["kid"], key.kid());
        assert_eq!(jwk["use"], "sig");
        let token = key.sign(alg, json!({}), &c);
        let (header, _, _) = keys::decode_parts(&token);
        assert_eq!(header, json!({"alg": alg, "kid": key.kid(), "typ": "JWT"}));
        assert_eq!(verify(&token, &jwk), c, "{alg} claims round-trip");
    }
    assert_eq!(rsa.public_jwk()["alg"], "PS256");
    assert_eq!(ec.public_jwk()["crv"], "P-256");
    assert_eq!(ed.public_jwk()["crv"], "Ed25519");
    assert_eq!(rsa.bits(), 2048);

    // The rsa-crate signing path (used for keys ring refuses) agrees with ring.
    for alg in ["PS256", "RS256"] {
        let input = b"header.payload";
        let sig = rsa.sign_rsa_fallback(alg, input);
        let token = format!(
            "{}.{}.{}",
            keys::b64(serde_json::to_vec(&json!({"alg": alg})).unwrap()),
            keys::b64(b"{}"),
            keys::b64(&sig)
        );
        let _ = token;
        let params = if alg == "PS256" {
            &signature::RSA_PSS_2048_8192_SHA256
        } else {
            &signature::RSA_PKCS1_2048_8192_SHA256
        };
        let jwk = rsa.public_jwk();
        signature::RsaPublicKeyComponents {
            n: jwk_bytes(&jwk, "n"),
            e: jwk_bytes(&jwk, "e"),
        }
        .verify(params, input, &sig)
        .unwrap_or_else(|_| panic!("{alg} via the rsa crate does not verify with ring"));
    }
}

#[test]
fn header_overrides_and_attack_tokens() {
    let key = TestKey::ec("ec-2");
    let token = key.sign(
        "ES256",
        json!({"kid": null, "typ": "oauth-authz-req+jwt", "x5t#S256": "abc"}),
        &json!({"a": 1}),
    );
    let (header, payload, sig) = keys::decode_parts(&token);
    assert_eq!(
        header,
        json!({"alg": "ES256", "typ": "oauth-authz-req+jwt", "x5t#S256": "abc"})
    );
    assert_eq!(payload, br#"{"a":1}"#);
    assert_eq!(sig.len(), 64);

    // Header claims another alg than the one used to sign.
    let lying = key.sign("ES256", json!({"alg": "RS256"}), &json!({}));
    assert_eq!(keys::decode_parts(&lying).0["alg"], "RS256");

    let jwk = key.public_jwk_with(json!({"use": "enc", "kid": null, "x5c": ["AA"]}));
    assert_eq!(jwk["use"], "enc");
    assert!(jwk.get("kid").is_none());
    assert_eq!(jwk["x5c"], json!(["AA"]));

    let set = keys::jwks(&[&key, &TestKey::ed("ed-2")]);
    assert_eq!(set["keys"].as_array().unwrap().len(), 2);

    let none = keys::unsigned_none(&json!({"sub": "x"}));
    assert!(none.ends_with('.'));
    assert_eq!(none.matches('.').count(), 2);
    assert_eq!(keys::decode_parts(&none).0, json!({"alg": "none"}));

    let rsa = TestKey::rsa("victim");
    let secret = rsa.public_key_bytes();
    let hs = keys::hs256(&secret, &json!({"sub": "x"}));
    let parts: Vec<&str> = hs.split('.').collect();
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
    ring::hmac::verify(
        &k,
        format!("{}.{}", parts[0], parts[1]).as_bytes(),
        &keys::b64_decode(parts[2]),
    )
    .expect("HS256 tag verifies");
    assert!(rsa
        .public_key_pem()
        .starts_with("-----BEGIN PUBLIC KEY-----\n"));
    assert!(key
        .public_key_pem()
        .starts_with("-----BEGIN PUBLIC KEY-----\n"));

    let u = keys::uuid_v4();
    assert_eq!(u.len(), 36);
    assert_eq!(&u[14..15], "4");
    assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"), "{u}");
    assert_ne!(u, keys::uuid_v4());

    // Keys are distinct per call.
    assert_ne!(
        rsa.public_jwk()["n"],
        TestKey::rsa("other").public_jwk()["n"]
    );
}

#[test]
fn small_rsa_key_signs_with_the_rsa_crate() {
    let key = TestKey::rsa_bits("weak", 1024);
    assert_eq!(key.bits(), 1024);
    for alg in ["PS256", "RS256"] {
        let token = key.sign(alg, json!({}), &json!({"x": 1}));
        let (_, _, sig) = keys::decode_parts(&token);
        assert_eq!(sig.len(), 128, "{alg} signature has the modulus size");
    }
    // RS256: check the PKCS#1 v1.5 encoding by raw RSA with the public key.
    let jwk = key.public_jwk();
    let token = key.sign("RS256", json!({}), &json!({"x": 1}));
    let parts: Vec<&str> = token.split('.').collect();
    let n = rsa::BigUint::from_bytes_be(&jwk_bytes(&jwk, "n"));
    let e = rsa::BigUint::from_bytes_be(&jwk_bytes(&jwk, "e"));
    let s = rsa::BigUint::from_bytes_be(&keys::b64_decode(parts[2]));
    let em = s.modpow(&e, &n).to_bytes_be(); // leading 0x00 dropped
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{}.{}", parts[0], parts[1]).as_bytes(),
    );
    let mut expected = vec![0x01u8];
    expected.resize(128 - 1 - 1 - 19 - 32, 0xff);
    expected.push(0);
    expected.extend([
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0x04, 0x20,
    ]);
    expected.extend(digest.as_ref());
    assert_eq!(em, expected);
}

// ---------------------------------------------------------------------------
// server and client without Envoy

#[test]
fn server_records_requests_and_incomplete_bodies() {
    let server = TestServer::start(|req| match req.path.as_str() {
        "/slow" => Reply::text(200, "text/plain", "late").after(Duration::from_millis(300)),
        "/hangup" => Reply::hang_up(),
        "/panic" => panic!("handler panic (expected by the test)"),
        _ => Reply::json(200, &json!({"echo": req.text()})).with_header("x-test", "1"),
    });
    let port = server.port();

    let r = http::send(port, "POST", "/echo?q=1", &[("X-A", "b")], b"hello");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("X-TEST"), Some("1"));
    assert_eq!(r.json(), json!({"echo": "hello"}));
    let rec = server.last().unwrap();
    assert_eq!(rec.method, "POST");
    assert_eq!(rec.path, "/echo?q=1");
    assert_eq!(rec.header("x-a"), Some("b"));
    assert_eq!(rec.header("content-length"), Some("5"));
    assert!(rec.complete);

    // Verbatim path and a chunked body.
    let body = http::chunked_parts(&[b"abc", b"defgh"]);
    let r = http::send(
        port,
        "POST",
        "//x/%2F",
        &[("Transfer-Encoding", "chunked")],
        &body,
    );
    assert_eq!(r.status, 200);
    let rec = server.last().unwrap();
    assert_eq!(rec.path, "//x/%2F");
    assert_eq!(rec.body, b"abcdefgh");

    // Keep-alive from the client side: one connection, two requests.
    let before = server.connections();
    let mut conn = Conn::open(port);
    assert_eq!(conn.send("GET", "/a", &[], b"").status, 200);
    assert_eq!(conn.send("POST", "/b", &[], b"xyz").json()["echo"], "xyz");
    assert_eq!(server.connections(), before + 1);

    // Delayed reply, and a hang-up reported as an error.
    let t = Instant::now();
    assert_eq!(http::get(port, "/slow").text(), "late");
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert!(http::try_send(port, "GET", "/hangup", &[], b"").is_err());
    assert_eq!(http::get(port, "/panic").status, 500);

    // Body cut off: recorded as incomplete with what arrived.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"POST /cut HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        .unwrap();
    s.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.count("/cut") == 0 || server.last().unwrap().body.len() < 10 {
        assert!(Instant::now() < deadline, "cut request not recorded");
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(s);
    std::thread::sleep(Duration::from_millis(100));
    let cut = server.last().unwrap();
    assert_eq!(cut.path, "/cut");
    assert!(!cut.complete);
    assert_eq!(cut.body, b"0123456789");

    assert_eq!(server.count("/"), server.requests().len());
    server.clear();
    assert!(server.requests().is_empty());
}

// ---------------------------------------------------------------------------
// real Envoy, without the filter

#[test]
fn envoy_without_filter_proxies_to_the_upstream() {
    let upstream = TestServer::start(|req| {
        Reply::json(
            201,
            &json!({"client_id": "abc", "len": req.body.len(), "path": req.path}),
        )
    });
    let started = Instant::now();
    let envoy = Envoy::start(&EnvoyConfig::new(json!({}), upstream.port()).without_filter());
    eprintln!("Envoy ready in {:?}", started.elapsed());
    assert_ne!(envoy.port, 0);
    assert_ne!(envoy.admin_port, 0);

    let body = br#"{"software_statement":"x.y.z"}"#;
    let r = envoy.send(
        "POST",
        "/register",
        &[("Content-Type", "application/jwt")],
        body,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["client_id"], "abc");
    let rec = upstream.last().unwrap();
    assert_eq!(rec.method, "POST");
    assert_eq!(rec.path, "/register");
    assert_eq!(rec.body, body);
    assert!(rec.complete);
    assert_eq!(rec.header("content-type"), Some("application/jwt"));

    // Chunked request with raw headers, on a kept-alive downstream connection.
    let mut conn = Conn::open(envoy.port);
    let r = conn.send(
        "POST",
        "/register",
        &[("Transfer-Encoding", "chunked")],
        &http::chunked_parts(&[b"{\"a\":", b"1}"]),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(upstream.last().unwrap().body, b"{\"a\":1}");
    let r = conn.send("GET", "/again", &[], b"");
    assert_eq!(r.status, 201);
    assert_eq!(upstream.count("/"), 3);
    // Envoy reuses its upstream connection (keep-alive on the test server).
    assert_eq!(upstream.connections(), 1, "upstream connections");

    // Path normalisation as configured: slashes merged, %2F kept.
    assert_eq!(envoy.get("//register").json()["path"], "/register");
    assert_eq!(envoy.get("/register/%2F").json()["path"], "/register/%2F");

    // Admin stats.
    let total = envoy.stat("http.ingress.downstream_rq_total").unwrap();
    assert!(total >= 5, "downstream_rq_total = {total}");
    let stats = envoy.stats("cluster\\.upstream\\.upstream_rq_2");
    assert!(
        stats
            .iter()
            .any(|(n, v)| n == "cluster.upstream.upstream_rq_201" && *v >= 5),
        "{stats:?}"
    );
    assert!(
        envoy.log().contains("starting main dispatch loop"),
        "{}",
        envoy.log()
    );
}

#[test]
fn envoy_try_start_reports_a_refused_config() {
    let cfg = EnvoyConfig::new(json!({}), http::free_port())
        .without_filter()
        .edit(|b| b["static_resources"]["clusters"][0]["type"] = json!("BOGUS"));
    let started = Instant::now();
    match Envoy::try_start(&cfg) {
        Ok(_) => panic!("Envoy accepted a bogus cluster type"),
        Err(failure) => {
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "{:?}",
                started.elapsed()
            );
            assert_ne!(failure.status, Some(0));
            assert!(failure.status.is_some(), "{failure}");
            assert!(failure.log.contains("BOGUS"), "{failure}");
        }
    }
}

#[test]
fn envoy_validate_mode() {
    let dir = std::env::temp_dir().join(format!("dcr-guard-validate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.yaml");
    std::fs::write(
        &good,
        "static_resources:\n  clusters:\n  - name: a\n    type: STATIC\n    connect_timeout: 1s\n",
    )
    .unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "static_resources:\n  clusters:\n  - name: a\n    type: NOPE\n",
    )
    .unwrap();
    let (ok, out) = common::envoy::validate(&good);
    assert!(ok, "{out}");
    let (ok, out) = common::envoy::validate(&bad);
    assert!(!ok, "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}
