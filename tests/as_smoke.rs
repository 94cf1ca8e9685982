#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! The demo AS (`envoy/as/server.mjs`, node `oidc-provider`) on its own, without Envoy: RFC 7591
//! registration and RFC 7592 management of the JSON bodies dcr-guard forwards with
//! `"forward": "json"`, and the admin endpoint the end-to-end tests rely on.

mod common;

use common::http::{self, Response};
use common::oidc::Oidc;
use serde_json::{json, Value};

const UK_JWKS_URI: &str =
    "https://keystore.tpp.test/0015800001041REAAY/Cy7LCjSi0o7xDkt4mcZgDW.jwks";
const BR_JWKS_URI: &str = "https://keystore.sandbox.directory.test/74e929d9-33b6-4d85-8ba7-c146c867a817/67c57882-043b-11ec-9a03-0242ac130003/application.jwks";
const BR_SUBJECT_DN: &str = "UID=67c57882-043b-11ec-9a03-0242ac130003,2.5.4.97=OFBBR-74e929d9-33b6-4d85-8ba7-c146c867a817,CN=tpp.example.com.br";

/// A UK registration as dcr-guard forwards it in JSON mode.
fn uk_body() -> Value {
    json!({
        "redirect_uris": ["https://tpp.example.com/callback"],
        "token_endpoint_auth_method": "private_key_jwt",
        "token_endpoint_auth_signing_alg": "PS256",
        "grant_types": ["authorization_code", "client_credentials", "refresh_token"],
        "response_types": ["code id_token"],
        "application_type": "web",
        "id_token_signed_response_alg": "PS256",
        "request_object_signing_alg": "PS256",
        "scope": "openid accounts payments",
        "software_id": "Cy7LCjSi0o7xDkt4mcZgDW",
        "software_statement": "eyJhbGciOiJQUzI1NiJ9.eyJzb2Z0d2FyZV9pZCI6IkN5N0xDalNpMG83eERrdDRtY1pnRFcifQ.c2ln",
        "client_name": "Demo TPP",
        "logo_uri": "https://tpp.example.com/logo.png",
        "tos_uri": "https://tpp.example.com/tos",
        "policy_uri": "https://tpp.example.com/policy",
        "client_uri": "https://tpp.example.com",
        "jwks_uri": UK_JWKS_URI
    })
}

/// A Brazilian registration as dcr-guard forwards it (Brazil's body is JSON to begin with).
fn br_body() -> Value {
    json!({
        "redirect_uris": ["https://tpp.example.com.br/callback"],
        "token_endpoint_auth_method": "tls_client_auth",
        "tls_client_auth_subject_dn": BR_SUBJECT_DN,
        "grant_types": ["authorization_code", "client_credentials", "implicit", "refresh_token"],
        "response_types": ["code id_token"],
        "application_type": "web",
        "id_token_signed_response_alg": "PS256",
        "id_token_encrypted_response_alg": "RSA-OAEP",
        "id_token_encrypted_response_enc": "A256GCM",
        "request_object_signing_alg": "PS256",
        "require_signed_request_object": true,
        "tls_client_certificate_bound_access_tokens": true,
        "webhook_uris": ["https://tpp.example.com.br/webhook"],
        "scope": "openid payments consents resources accounts customers credit-cards-accounts",
        "software_id": "67c57882-043b-11ec-9a03-0242ac130003",
        "software_statement": "eyJhbGciOiJQUzI1NiJ9.eyJzb2Z0d2FyZV9pZCI6IjY3YzU3ODgyIn0.c2ln",
        "client_name": "Demo TPP Brasil",
        "jwks_uri": BR_JWKS_URI
    })
}

/// `body` with `client_id` (an RFC 7592 update).
fn with_client_id(mut body: Value, id: &str) -> Value {
    body["client_id"] = json!(id);
    body
}

fn register(oidc: &Oidc, body: &Value) -> Response {
    http::send(
        oidc.port,
        "POST",
        "/register",
        &[("Content-Type", "application/json")],
        &serde_json::to_vec(body).unwrap(),
    )
}

/// GET, PUT (with `body`) or DELETE `/register/{id}` with `Authorization: Bearer {token}`.
fn manage(oidc: &Oidc, method: &str, id: &str, token: &str, body: Option<&Value>) -> Response {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("Authorization", auth.as_str())];
    let bytes = body
        .map(|b| serde_json::to_vec(b).unwrap())
        .unwrap_or_default();
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    http::send(
        oidc.port,
        method,
        &format!("/register/{id}"),
        &headers,
        &bytes,
    )
}

#[track_caller]
fn expect_status(oidc: &Oidc, r: &Response, status: u16, what: &str) {
    assert_eq!(
        r.status,
        status,
        "{what}: body {}\n--- AS output ---\n{}",
        r.text(),
        oidc.output()
    );
}

/// Registers `body` and returns (client id, registration access token, response JSON).
fn register_ok(oidc: &Oidc, body: &Value) -> (String, String, Value) {
    let r = register(oidc, body);
    expect_status(oidc, &r, 201, "registration");
    let j = r.json();
    let id = j["client_id"].as_str().expect("client_id").to_string();
    let rat = j["registration_access_token"]
        .as_str()
        .expect("registration_access_token")
        .to_string();
    let uri = j["registration_client_uri"]
        .as_str()
        .expect("registration_client_uri");
    assert!(
        uri.ends_with(&format!("/register/{id}")),
        "registration_client_uri {uri}"
    );
    (id, rat, j)
}

#[test]
fn uk_registration_read_update_delete() {
    let oidc = Oidc::start();
    assert!(oidc.client("no-such-client").is_none());

    let (id, rat, created) = register_ok(&oidc, &uk_body());
    for (k, v) in [
        ("software_id", json!("Cy7LCjSi0o7xDkt4mcZgDW")),
        (
            "software_statement",
            uk_body()["software_statement"].clone(),
        ),
        ("jwks_uri", json!(UK_JWKS_URI)),
        ("token_endpoint_auth_method", json!("private_key_jwt")),
        ("token_endpoint_auth_signing_alg", json!("PS256")),
        ("id_token_signed_response_alg", json!("PS256")),
        ("request_object_signing_alg", json!("PS256")),
        ("scope", json!("openid accounts payments")),
        ("response_types", json!(["code id_token"])),
        ("client_name", json!("Demo TPP")),
    ] {
        assert_eq!(created[k], v, "{k} in {created}");
    }
    // The implied "implicit" is added (Open Banking leniency), nothing is lost.
    let grants = created["grant_types"].as_array().unwrap();
    for g in [
        "authorization_code",
        "client_credentials",
        "refresh_token",
        "implicit",
    ] {
        assert!(grants.contains(&json!(g)), "{g} missing: {created}");
    }

    // The admin endpoint sees the stored client.
    let stored = oidc.client(&id).expect("the AS stored the client");
    assert_eq!(stored["client_id"], json!(id));
    assert_eq!(stored["software_id"], json!("Cy7LCjSi0o7xDkt4mcZgDW"));
    assert_eq!(stored["jwks_uri"], json!(UK_JWKS_URI));

    // Read.
    let r = manage(&oidc, "GET", &id, &rat, None);
    expect_status(&oidc, &r, 200, "read");
    assert_eq!(r.json()["client_id"], json!(id));
    assert_eq!(r.json()["registration_access_token"], json!(rat));

    // Update: the same body with client_id; the token is not rotated.
    let mut update = with_client_id(uk_body(), &id);
    update["client_name"] = json!("Demo TPP (renamed)");
    let r = manage(&oidc, "PUT", &id, &rat, Some(&update));
    expect_status(&oidc, &r, 200, "update");
    assert_eq!(r.json()["client_name"], json!("Demo TPP (renamed)"));
    assert_eq!(r.json()["registration_access_token"], json!(rat));
    assert_eq!(
        oidc.client(&id).unwrap()["client_name"],
        json!("Demo TPP (renamed)")
    );

    // Another client's token is refused. oidc-provider also destroys a token presented for a
    // client it does not belong to.
    let (other, other_rat, _) = register_ok(&oidc, &uk_body());
    assert_ne!(other, id);
    let r = manage(&oidc, "GET", &id, &other_rat, None);
    expect_status(&oidc, &r, 401, "read with another client's token");
    assert!(
        r.header("www-authenticate")
            .is_some_and(|v| v.contains("invalid_token")),
        "www-authenticate: {:?}",
        r.header("www-authenticate")
    );
    let r = manage(&oidc, "GET", &other, &other_rat, None);
    expect_status(&oidc, &r, 401, "the misused token was revoked");
    let r = manage(&oidc, "GET", &id, &rat, None);
    expect_status(&oidc, &r, 200, "the owner's token still works");

    // Delete.
    let r = manage(&oidc, "DELETE", &id, &rat, None);
    expect_status(&oidc, &r, 204, "delete");
    let r = manage(&oidc, "GET", &id, &rat, None);
    expect_status(&oidc, &r, 401, "read after delete");
    assert!(oidc.client(&id).is_none(), "the client is gone");
    assert!(oidc.client(&other).is_some(), "the other client stays");
    assert_eq!(oidc.clients(), vec![other.clone()]);

    // One log line per registration API call; the AS never reached for the jwks_uri.
    let out = oidc.output();
    for line in [
        "POST /register 201".to_string(),
        format!("GET /register/{id} 200"),
        format!("PUT /register/{id} 200"),
        format!("GET /register/{id} 401"),
        format!("DELETE /register/{id} 204"),
    ] {
        assert!(out.contains(&line), "no `{line}` in:\n{out}");
    }
    assert!(!out.contains("outbound"), "the AS made a request:\n{out}");
}

#[test]
fn brazilian_registration() {
    let oidc = Oidc::start();
    let (id, rat, created) = register_ok(&oidc, &br_body());
    for (k, v) in [
        ("token_endpoint_auth_method", json!("tls_client_auth")),
        ("tls_client_auth_subject_dn", json!(BR_SUBJECT_DN)),
        ("jwks_uri", json!(BR_JWKS_URI)),
        ("id_token_encrypted_response_alg", json!("RSA-OAEP")),
        ("id_token_encrypted_response_enc", json!("A256GCM")),
        ("require_signed_request_object", json!(true)),
        ("tls_client_certificate_bound_access_tokens", json!(true)),
        (
            "webhook_uris",
            json!(["https://tpp.example.com.br/webhook"]),
        ),
        ("software_id", json!("67c57882-043b-11ec-9a03-0242ac130003")),
    ] {
        assert_eq!(created[k], v, "{k} in {created}");
    }
    let stored = oidc.client(&id).expect("stored");
    assert_eq!(stored["tls_client_auth_subject_dn"], json!(BR_SUBJECT_DN));

    let r = manage(
        &oidc,
        "PUT",
        &id,
        &rat,
        Some(&with_client_id(br_body(), &id)),
    );
    expect_status(&oidc, &r, 200, "update");
    let r = manage(&oidc, "DELETE", &id, &rat, None);
    expect_status(&oidc, &r, 204, "delete");
    assert!(oidc.client(&id).is_none());
    assert!(!oidc.output().contains("outbound"), "{}", oidc.output());
}

#[test]
fn refused_registrations_store_nothing() {
    let oidc = Oidc::start();

    // A scope the AS does not know.
    let mut body = uk_body();
    body["scope"] = json!("openid no-such-scope");
    let r = register(&oidc, &body);
    expect_status(&oidc, &r, 400, "unknown scope");
    assert_eq!(r.json()["error"], json!("invalid_client_metadata"));

    // A signed request (dcr-guard's `"forward": "jwt"`): oidc-provider takes JSON only.
    let r = http::send(
        oidc.port,
        "POST",
        "/register",
        &[("Content-Type", "application/jwt")],
        b"eyJhbGciOiJQUzI1NiJ9.e30.c2ln",
    );
    expect_status(&oidc, &r, 400, "JWT body");
    assert_eq!(r.json()["error"], json!("invalid_request"));

    // Not JSON.
    let r = http::send(
        oidc.port,
        "POST",
        "/register",
        &[("Content-Type", "application/json")],
        b"{not json",
    );
    expect_status(&oidc, &r, 400, "malformed JSON");

    // Management without a token, or with an unknown one.
    let r = http::send(oidc.port, "GET", "/register/nope", &[], b"");
    assert!(r.status == 400 || r.status == 401, "no token: {}", r.status);
    let r = manage(&oidc, "DELETE", "nope", "unknown-token", None);
    expect_status(&oidc, &r, 401, "unknown token");

    assert!(oidc.clients().is_empty(), "{:?}", oidc.clients());
    let out = oidc.output();
    assert!(
        out.contains("POST /register 400 invalid_client_metadata"),
        "{out}"
    );
}
