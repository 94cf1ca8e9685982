//! Management endpoints (GET, PUT, DELETE on /register/{client_id}) in the `delegate` and `jwt`
//! token modes, and JSON forwarding with verified-facts headers, through a real Envoy.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::dcr::Tpp;
use common::keys::{self, TestKey};
use common::{Envoy, EnvoyConfig, Reply, Response, TestServer};
use serde_json::{json, Value};

const DIRECTORY_PATH: &str = "/keystore/openbanking.jwks";
const AS_JWKS_PATH: &str = "/as/jwks";
const AS_ISSUER: &str = "https://as.bank.test";

struct Stack {
    tpp: Tpp,
    as_key: TestKey,
    /// The AS's JWKS document the keystore serves (a test may rotate it).
    as_doc: Arc<Mutex<Value>>,
    upstream: TestServer,
    envoy: Envoy,
    _keystore: TestServer,
}

fn start(edit: impl FnOnce(&mut Value)) -> Stack {
    let tpp = Tpp::new(TestKey::ec("dir"), TestKey::ec("tpp"));
    let as_key = TestKey::ec("as-1");
    let directory_doc = tpp.directory_jwks();
    let software_doc = tpp.software_jwks();
    let as_doc = Arc::new(Mutex::new(keys::jwks(&[&as_key])));
    let served = Arc::clone(&as_doc);
    let software_path = tpp.jwks_path();
    let keystore = TestServer::start(move |r| {
        if r.path == DIRECTORY_PATH {
            Reply::json(200, &directory_doc)
        } else if r.path == software_path {
            Reply::json(200, &software_doc)
        } else if r.path == AS_JWKS_PATH {
            Reply::json(200, &served.lock().unwrap())
        } else {
            Reply::text(404, "text/plain", "not found")
        }
    });
    let upstream = TestServer::start(|r| match r.method.as_str() {
        "DELETE" => Reply::status(204),
        "GET" => Reply::json(200, &json!({"client_id": "c1"})),
        _ => Reply::json(
            if r.method == "POST" { 201 } else { 200 },
            &json!({"client_id": "c1"}),
        ),
    });
    let mut filter = tpp.filter_config("keystore", "keystore");
    edit(&mut filter);
    let cfg = EnvoyConfig::new(filter, upstream.port()).cluster("keystore", keystore.port());
    let envoy = Envoy::start(&cfg);
    Stack {
        tpp,
        as_key,
        as_doc,
        upstream,
        envoy,
        _keystore: keystore,
    }
}

impl Stack {
    fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> Response {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(a) = &auth {
            headers.push(("authorization", a.as_str()));
        }
        if body.is_some() {
            headers.push(("content-type", "application/jwt"));
        }
        self.envoy
            .send(method, path, &headers, body.unwrap_or("").as_bytes())
    }

    fn upstream_saw(&self) -> Vec<common::Recorded> {
        std::thread::sleep(Duration::from_millis(30));
        let r = self.upstream.requests();
        self.upstream.clear();
        r
    }

    /// An RFC 9068 access token (`typ` `at+jwt`) signed by the AS.
    fn as_token(&self, claims: Value) -> String {
        self.as_key.sign_access_token(&claims)
    }
}

fn assert_401(r: &Response, challenge: &str, name: &str) {
    assert_eq!(r.status, 401, "{name}: {}", r.text());
    assert_eq!(r.header("www-authenticate"), Some(challenge), "{name}");
    assert!(
        !r.text().contains("c1") && !r.text().contains("c2"),
        "{name}: a client id in the body"
    );
}

#[test]
fn delegate_mode() {
    let s = start(|_| {});
    for (method, status) in [("GET", 200), ("DELETE", 204)] {
        let r = s.call(method, "/register/c1", Some("opaque-rat"), None);
        assert_eq!(r.status, status, "{method}: {}", r.text());
        let saw = s.upstream_saw();
        assert_eq!(saw.len(), 1);
        assert_eq!(
            saw[0].header("authorization"),
            Some("Bearer opaque-rat"),
            "the AS binds its token"
        );
    }
    let r = s.call("GET", "/register/c1", None, None);
    assert_401(&r, "Bearer", "no token");
    assert!(r.body.is_empty(), "no error details without credentials");
    let r = s.call("DELETE", "/register/c1", Some(""), None);
    assert_401(&r, "Bearer error=\"invalid_token\"", "empty token");
    assert_eq!(r.json()["error"], "invalid_token");
    assert!(s.upstream_saw().is_empty());

    // PUT: binding, full validation, RFC 7592 rules.
    let r = s.call(
        "PUT",
        "/register/c1",
        Some("opaque-rat"),
        Some(&s.tpp.request()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.upstream_saw().len(), 1);
    for (name, body) in [
        (
            "server-issued member",
            s.tpp.request_with(|c| c["client_id_issued_at"] = json!(1)),
        ),
        (
            "another client_id",
            s.tpp.request_with(|c| c["client_id"] = json!("c2")),
        ),
        (
            "redirect outside the SSA",
            s.tpp
                .request_with(|c| c["redirect_uris"] = json!(["https://x.example/cb"])),
        ),
    ] {
        let r = s.call("PUT", "/register/c1", Some("opaque-rat"), Some(&body));
        assert_eq!(r.status, 400, "{name}: {}", r.text());
        assert!(!r.text().contains("c2"), "{name}");
        assert!(s.upstream_saw().is_empty(), "{name}: reached the AS");
    }
    let r = s.call("PATCH", "/register/c1", Some("opaque-rat"), None);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, PUT, DELETE"));
}

/// `token_client_binding` in `jwt` mode against the AS's JWKS on the keystore.
fn jwt_binding(f: &mut Value) {
    f["rules"]["token_client_binding"] = json!({
        "mode": "jwt",
        "jwks": [{"url": format!("https://as.bank.test{AS_JWKS_PATH}"), "upstream": "keystore"}],
        "issuer": AS_ISSUER,
        "scope": "dcr"
    });
}

#[test]
fn jwt_mode() {
    let s = start(|f| {
        jwt_binding(f);
    });
    let t = keys::now();
    let token = |client: &str, exp: u64| {
        s.as_token(json!({"iss": AS_ISSUER, "client_id": client, "exp": exp, "scope": "dcr"}))
    };
    let r = s.call("GET", "/register/c1", Some(&token("c1", t + 300)), None);
    assert_eq!(r.status, 200, "{}", r.text());
    let r = s.call("DELETE", "/register/c1", Some(&token("c1", t + 300)), None);
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(s.upstream_saw().len(), 2);

    let cases = [
        ("another client's token", token("c2", t + 300)),
        ("expired", token("c1", t - 3600)),
        ("wrong issuer", s.as_token(json!({"iss": "https://evil.test", "client_id": "c1", "exp": t + 300, "scope": "dcr"}))),
        ("forged", TestKey::ec("as-1").sign_access_token(&json!({"iss": AS_ISSUER, "client_id": "c1", "exp": t + 300, "scope": "dcr"}))),
        ("opaque", "not-a-jwt".to_string()),
        // An ID token the AS signed for the client (`aud` and `azp` the client, `typ` JWT, even
        // with the scope): not an access token.
        ("ID token", s.as_key.sign("ES256", json!({"typ": "JWT"}), &json!({"iss": AS_ISSUER, "sub": "user-1", "aud": "c1", "azp": "c1", "exp": t + 300, "scope": "dcr"}))),
        ("no typ", s.as_key.sign("ES256", json!({"typ": null}), &json!({"iss": AS_ISSUER, "client_id": "c1", "exp": t + 300, "scope": "dcr"}))),
    ];
    for (name, tok) in cases {
        let r = s.call("GET", "/register/c1", Some(&tok), None);
        assert_401(&r, "Bearer error=\"invalid_token\"", name);
        assert_eq!(r.json()["error"], "invalid_token", "{name}");
    }
    assert!(s.upstream_saw().is_empty());

    let r = s.call(
        "PUT",
        "/register/c1",
        Some(&token("c1", t + 300)),
        Some(&s.tpp.request()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = s.call(
        "PUT",
        "/register/c1",
        Some(&token("c2", t + 300)),
        Some(&s.tpp.request()),
    );
    assert_401(
        &r,
        "Bearer error=\"invalid_token\"",
        "PUT with another client's token",
    );
}

/// RFC 6750 §3.1: this client's valid token without the configured scope is 403
/// `insufficient_scope` naming the scope; every other token failure stays 401 `invalid_token`.
#[test]
fn jwt_mode_a_token_without_the_scope_is_403_insufficient_scope() {
    let s = start(|f| {
        jwt_binding(f);
    });
    let t = keys::now();
    for (name, scope) in [
        ("no scope", None),
        ("other scopes", Some("openid accounts")),
        ("a scope that only starts with it", Some("dcr-admin")),
    ] {
        let mut claims = json!({"iss": AS_ISSUER, "client_id": "c1", "exp": t + 300});
        if let Some(sc) = scope {
            claims["scope"] = json!(sc);
        }
        let token = s.as_token(claims);
        for (method, body) in [
            ("GET", None),
            ("DELETE", None),
            ("PUT", Some(s.tpp.request())),
        ] {
            let r = s.call(method, "/register/c1", Some(&token), body.as_deref());
            assert_eq!(r.status, 403, "{name} {method}: {}", r.text());
            assert_eq!(
                r.header("www-authenticate"),
                Some("Bearer error=\"insufficient_scope\", scope=\"dcr\""),
                "{name} {method}"
            );
            assert_eq!(r.json()["error"], "insufficient_scope", "{name} {method}");
            assert!(!r.text().contains("c1"), "{name}: a client id in the body");
        }
    }
    assert!(s.upstream_saw().is_empty(), "reached the AS");
    // Another client's token is 401 whatever its scope: the binding is checked first.
    let r = s.call(
        "GET",
        "/register/c1",
        Some(&s.as_token(json!({"iss": AS_ISSUER, "client_id": "c2", "exp": t + 300}))),
        None,
    );
    assert_401(
        &r,
        "Bearer error=\"invalid_token\"",
        "another client's, no scope",
    );
}

#[test]
fn jwt_mode_follows_an_as_key_rotation_after_the_cooldown() {
    let s = start(|f| {
        jwt_binding(f);
        f["jwks_cache"] = json!({"kid_refetch_cooldown_seconds": 2});
    });
    let t = keys::now();
    let claims = json!({"iss": AS_ISSUER, "client_id": "c1", "exp": t + 300, "scope": "dcr"});
    let r = s.call(
        "GET",
        "/register/c1",
        Some(&s.as_token(claims.clone())),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // The AS rotates in a new key and signs with it.
    let rotated = TestKey::ec("as-2");
    *s.as_doc.lock().unwrap() = keys::jwks(&[&s.as_key, &rotated]);
    let token = rotated.sign_access_token(&claims);
    // Within the cooldown (2 s: the cache counts whole seconds, and these calls are milliseconds
    // apart) the cached document is asked for again but not refetched: 401.
    let r = s.call("GET", "/register/c1", Some(&token), None);
    assert_401(&r, "Bearer error=\"invalid_token\"", "within the cooldown");
    // Past it, one refetch brings the new key.
    std::thread::sleep(Duration::from_millis(2100));
    let r = s.call("GET", "/register/c1", Some(&token), None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.envoy.stat("dcr_guard.jwks_kid_refetches"), Some(1));
}

#[test]
fn json_forwarding_with_facts() {
    let s = start(|f| {
        f["forward"] = json!("json");
        f["fact_headers"] = json!([
            {"claim": "software_id", "header": "x-tpp-software-id"},
            {"claim": "org_id", "header": "x-tpp-org-id"}
        ]);
    });
    let body = s.tpp.request();
    let r = s.envoy.send(
        "POST",
        "/register",
        &[
            ("content-type", "application/jwt"),
            ("x-tpp-software-id", "forged"),
        ],
        body.as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let saw = s.upstream_saw();
    assert_eq!(saw.len(), 1);
    let req = &saw[0];
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(
        req.header_all("x-tpp-software-id"),
        vec![s.tpp.software_id.as_str()]
    );
    assert_eq!(req.header("x-tpp-org-id"), Some(s.tpp.org_id.as_str()));
    let forwarded: Value = serde_json::from_slice(&req.body).expect("the AS received JSON");
    assert_eq!(forwarded["jwks_uri"], s.tpp.jwks_url());
    assert_eq!(forwarded["software_id"], s.tpp.software_id);
    assert_eq!(forwarded["client_name"], "Demo TPP");
    assert_eq!(
        forwarded["redirect_uris"],
        json!(["https://tpp.example.com/callback"])
    );
    assert!(forwarded["software_statement"].is_string());
    for k in ["iss", "aud", "exp", "iat", "jti"] {
        assert!(forwarded.get(k).is_none(), "{k} forwarded");
    }

    // A forged fact header never reaches the AS, even on a rejected-then-... or a management call.
    let r = s.envoy.send(
        "GET",
        "/register/c1",
        &[("authorization", "Bearer rat"), ("x-tpp-org-id", "forged")],
        b"",
    );
    assert_eq!(r.status, 200);
    let saw = s.upstream_saw();
    assert!(
        saw[0].header("x-tpp-org-id").is_none(),
        "a client-sent fact header reached the AS"
    );

    let r = s.envoy.send(
        "PUT",
        "/register/c1",
        &[
            ("content-type", "application/jwt"),
            ("authorization", "Bearer rat"),
        ],
        s.tpp.request().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let saw = s.upstream_saw();
    let forwarded: Value = serde_json::from_slice(&saw[0].body).unwrap();
    assert_eq!(
        forwarded["client_id"], "c1",
        "client_id filled in from the path"
    );
}

#[test]
fn introspection_mode() {
    // The secret reaches the filter through Envoy's vm_config, from Envoy's own environment.
    let tpp = Tpp::new(TestKey::ec("dir"), TestKey::ec("tpp"));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let s2 = std::sync::Arc::clone(&seen);
    let (directory_doc, software_doc, software_path) =
        (tpp.directory_jwks(), tpp.software_jwks(), tpp.jwks_path());
    let as_server = TestServer::start(move |r| {
        if r.path == DIRECTORY_PATH {
            return Reply::json(200, &directory_doc);
        }
        if r.path == software_path {
            return Reply::json(200, &software_doc);
        }
        if r.path != "/introspect" || r.method != "POST" {
            return Reply::status(404);
        }
        s2.lock()
            .unwrap()
            .push(r.header("authorization").unwrap_or("").to_string());
        let form = r.text();
        let body = if form.starts_with("token=good-c1") {
            json!({"active": true, "client_id": "c1", "scope": "dcr"})
        } else if form.starts_with("token=noscope-c1") {
            json!({"active": true, "client_id": "c1", "scope": "openid"})
        } else if form.starts_with("token=good-c2") {
            json!({"active": true, "client_id": "c2", "scope": "dcr"})
        } else {
            json!({"active": false})
        };
        Reply::json(200, &body)
    });
    let upstream = TestServer::always(Reply::json(200, &json!({"client_id": "c1"})));
    let mut filter = tpp.filter_config("keystore", "keystore");
    filter["rules"]["token_client_binding"] = json!({
        "mode": "introspection",
        "introspection": {
            "url": "https://as.bank.test/introspect",
            "upstream": "as",
            "client_id": "dcr-guard",
            "client_secret_env": "DCR_GUARD_TEST_INTROSPECTION_SECRET"
        },
        "scope": "dcr"
    });
    let cfg = EnvoyConfig::new(filter, upstream.port())
        .cluster("keystore", as_server.port())
        .cluster("as", as_server.port())
        .env("DCR_GUARD_TEST_INTROSPECTION_SECRET", "s3cr3t")
        .edit(|b| {
            b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
                ["typed_config"]["http_filters"][0]["typed_config"]["config"]["vm_config"]
                ["environment_variables"] =
                json!({"host_env_keys": ["DCR_GUARD_TEST_INTROSPECTION_SECRET"]});
        });
    let envoy = Envoy::start(&cfg);
    let get = |token: &str| {
        envoy.send(
            "GET",
            "/register/c1",
            &[("authorization", &format!("Bearer {token}"))],
            b"",
        )
    };
    let r = get("good-c1");
    assert_eq!(r.status, 200, "{}", r.text());
    for (name, token) in [("another client's", "good-c2"), ("inactive", "revoked")] {
        let r = get(token);
        assert_eq!(r.status, 401, "{name}: {}", r.text());
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer error=\"invalid_token\"")
        );
    }
    // Active, this client's, without the scope: 403 naming the scope (RFC 6750 §3.1).
    let r = get("noscope-c1");
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer error=\"insufficient_scope\", scope=\"dcr\"")
    );
    assert_eq!(r.json()["error"], "insufficient_scope");
    let r = envoy.send(
        "DELETE",
        "/register/c1",
        &[("authorization", "Bearer good-c1")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = envoy.send(
        "DELETE",
        "/register/c1",
        &[("authorization", "Bearer good-c2")],
        b"",
    );
    assert_eq!(r.status, 401);
    let put = |token: &str| {
        envoy.send(
            "PUT",
            "/register/c1",
            &[
                ("authorization", &format!("Bearer {token}")),
                ("content-type", "application/jwt"),
            ],
            tpp.request().as_bytes(),
        )
    };
    assert_eq!(put("good-c1").status, 200);
    assert_eq!(put("revoked").status, 401);
    assert_eq!(upstream.requests().len(), 3);
    use base64::Engine as _;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("dcr-guard:s3cr3t")
    );
    assert!(
        seen.lock().unwrap().iter().all(|a| *a == basic),
        "{:?}",
        seen.lock().unwrap()
    );
    assert!(!envoy.log().contains("s3cr3t"), "the secret was logged");
}
