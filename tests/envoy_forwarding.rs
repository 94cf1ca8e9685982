//! What reaches the AS, through a real Envoy: JSON forwarding gives the SSA's registration
//! metadata precedence (RFC 7591 §3.1.1) and carries no header that described the client's body;
//! a body with a content coding is refused with 415 and `Accept-Encoding: identity`; a member name
//! sent twice in a nested object of the request JWT or of the SSA is refused, naming it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::dcr::Tpp;
use common::keys::TestKey;
use common::{Envoy, EnvoyConfig, Reply, Response, TestServer};
use serde_json::{json, Value};

const DIRECTORY_PATH: &str = "/keystore/openbanking.jwks";

struct Stack {
    tpp: Tpp,
    upstream: TestServer,
    envoy: Envoy,
    _keystore: TestServer,
}

fn start(edit: impl FnOnce(&mut Value)) -> Stack {
    let tpp = Tpp::new(TestKey::ec("dir"), TestKey::ec("tpp"));
    let (directory_doc, software_doc, software_path) =
        (tpp.directory_jwks(), tpp.software_jwks(), tpp.jwks_path());
    let keystore = TestServer::start(move |r| {
        if r.path == DIRECTORY_PATH {
            Reply::json(200, &directory_doc)
        } else if r.path == software_path {
            Reply::json(200, &software_doc)
        } else {
            Reply::text(404, "text/plain", "not found")
        }
    });
    let upstream = TestServer::always(
        Reply::json(201, &json!({"client_id": "c1"})).with_header("x-upstream", "as"),
    );
    let mut filter = tpp.filter_config("keystore", "keystore");
    edit(&mut filter);
    let cfg = EnvoyConfig::new(filter, upstream.port()).cluster("keystore", keystore.port());
    let envoy = Envoy::start(&cfg);
    Stack {
        tpp,
        upstream,
        envoy,
        _keystore: keystore,
    }
}

impl Stack {
    fn post(&self, headers: &[(&str, &str)], body: &str) -> Response {
        let mut all = vec![("content-type", "application/jwt")];
        all.extend_from_slice(headers);
        self.envoy.send("POST", "/register", &all, body.as_bytes())
    }

    fn upstream_saw(&self) -> Vec<common::Recorded> {
        std::thread::sleep(Duration::from_millis(30));
        let r = self.upstream.requests();
        self.upstream.clear();
        r
    }

    /// A refusal that never reached the AS: status, error code, and the description.
    fn refused(&self, name: &str, r: &Response, status: u16, code: &str) -> String {
        assert_eq!(r.status, status, "{name}: {}", r.text());
        assert_eq!(r.json()["error"], code, "{name}: {}", r.text());
        assert!(r.header("x-upstream").is_none(), "{name}: the AS answered");
        assert!(self.upstream_saw().is_empty(), "{name}: reached the AS");
        r.json()["error_description"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

/// `claims` as JSON text with `member` (a `"name":value` pair) spliced in first.
fn spliced(claims: &Value, member: &str) -> String {
    let text = claims.to_string();
    format!("{{{member},{}", &text[1..])
}

#[test]
fn json_forwarding_gives_the_ssa_the_last_word_and_drops_what_described_the_old_body() {
    let s = start(|f| f["forward"] = json!("json"));
    // The request says other things than the SSA for metadata the SSA carries (the SSA's
    // `software_version` is "1.0", its client name "Demo TPP"), and chooses one of its two
    // redirect URIs.
    let body = s.tpp.request_with(|c| {
        c["software_version"] = json!("9.9-from-the-request");
        c["client_name"] = json!("Not the directory's name");
        c["logo_uri"] = json!("https://elsewhere.example/logo.png");
    });
    let described = [
        ("content-md5", "Q2hlY2sgSW50ZWdyaXR5IQ=="),
        (
            "digest",
            "SHA-256=X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=",
        ),
        (
            "content-digest",
            "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
        ),
        (
            "repr-digest",
            "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
        ),
        ("content-encoding", "identity"),
    ];
    let r = s.post(&described, &body);
    assert_eq!(r.status, 201, "{}", r.text());
    let saw = s.upstream_saw();
    assert_eq!(saw.len(), 1);
    let req = &saw[0];
    let forwarded: Value = serde_json::from_slice(&req.body).expect("the AS received JSON");
    assert_eq!(forwarded["software_version"], "1.0");
    assert_eq!(forwarded["client_name"], "Demo TPP");
    assert_eq!(forwarded["logo_uri"], "https://tpp.example.com/logo.png");
    assert_eq!(forwarded["software_id"], s.tpp.software_id);
    assert_eq!(forwarded["jwks_uri"], s.tpp.jwks_url());
    assert_eq!(
        forwarded["redirect_uris"],
        json!(["https://tpp.example.com/callback"]),
        "the request's choice among the SSA's redirect URIs"
    );
    // The SSA's claims that are not registration metadata are not copied.
    for k in [
        "org_id",
        "org_status",
        "software_roles",
        "software_environment",
        "iat",
    ] {
        assert!(forwarded.get(k).is_none(), "{k} copied from the SSA");
    }
    // The new body is described by nothing the client sent.
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(
        req.header("content-length"),
        Some(req.body.len().to_string().as_str())
    );
    for (h, _) in described {
        assert!(req.header(h).is_none(), "{h} reached the AS");
    }

    // A redirect URI outside the SSA is refused before anything is forwarded.
    let body = s.tpp.request_with(|c| {
        c["redirect_uris"] = json!(["https://evil.example/cb"]);
    });
    s.refused(
        "redirect outside the SSA",
        &s.post(&[], &body),
        400,
        "invalid_redirect_uri",
    );
}

#[test]
fn a_body_with_a_content_coding_is_refused_with_415() {
    let s = start(|_| {});
    for coding in [
        "gzip",
        "br",
        "deflate",
        "zstd",
        "identity, gzip",
        "x-custom",
    ] {
        let r = s.post(&[("content-encoding", coding)], &s.tpp.request());
        s.refused(coding, &r, 415, "invalid_request");
        assert_eq!(r.header("accept-encoding"), Some("identity"), "{coding}");
    }
    // `identity`, listed any number of times, is no coding: the body passes as it came.
    let body = s.tpp.request();
    let r = s.post(&[("content-encoding", "Identity, identity")], &body);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(s.upstream_saw()[0].body, body.as_bytes());
}

#[test]
fn a_member_name_sent_twice_in_a_nested_object_is_refused() {
    let s = start(|_| {});
    let tpp = &s.tpp;
    let ssa = tpp.ssa();
    // The request JWT, signed by the TPP over a payload with a nested duplicate.
    let payload = spliced(
        &tpp.request_claims(&ssa),
        r#""jwks":{"keys":[{"kty":"EC","kty":"RSA"}]}"#,
    );
    let body = tpp
        .key
        .sign_payload("ES256", Value::Null, payload.as_bytes());
    let why = s.refused("request JWT", &s.post(&[], &body), 400, "invalid_request");
    assert_eq!(
        why,
        "the request JWT's payload has the member \"kty\" twice in the object at jwks.keys[0]"
    );
    // The SSA, signed by the directory over a payload whose competent-authority claims say
    // `status` twice (a parser keeping the last would read "Revoked").
    let mut claims = tpp.ssa_claims();
    claims
        .as_object_mut()
        .unwrap()
        .remove("organisation_competent_authority_claims");
    let ssa_payload = spliced(
        &claims,
        r#""organisation_competent_authority_claims":{"status":"Active","status":"Revoked"}"#,
    );
    let ssa = tpp
        .directory
        .sign_payload("ES256", Value::Null, ssa_payload.as_bytes());
    let body = tpp.key.sign_default(&tpp.request_claims(&ssa));
    let why = s.refused(
        "SSA",
        &s.post(&[], &body),
        400,
        "invalid_software_statement",
    );
    assert_eq!(
        why,
        "the software statement's payload has the member \"status\" twice in the object at organisation_competent_authority_claims"
    );
}
