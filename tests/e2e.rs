#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! End to end: a TPP with a client certificate → Envoy terminating mutual TLS with dcr-guard
//! (Brazil profile: JSON bodies, `certificate_binding`, JSON forwarding, `delegate` management) →
//! the real demo AS (node `oidc-provider`, `envoy/as/server.mjs`). The whole RFC 7591/7592
//! lifecycle, and for every refused request proof that the AS never acted: its client list
//! (admin endpoint) and its log of registration API calls are unchanged.

mod common;

use common::{br_cert, br_tpp, BR_ORG, BR_SOFTWARE};

use std::time::Duration;

use common::dcr::{corrupt_signature, Tpp};
use common::keys::TestKey;
use common::oidc::Oidc;
use common::tls::{self, ClientIdentity, DnKind, Pki, ServerFiles};
use common::{Envoy, EnvoyConfig, Response, TestServer};
use serde_json::{json, Value};

const OTHER_SOFTWARE: &str = "00000000-0000-4000-8000-000000000000";

/// The directory JWKS and the TPP's software JWKS.
fn keystore(tpp: &Tpp) -> TestServer {
    common::keystore(tpp, Vec::new())
}

/// Envoy with mTLS (certificates from `pki`) and `filter`, in front of the AS.
/// `DCR_GUARD_TEST_WITHOUT_FILTER=1` leaves the filter out: these tests must then fail.
fn envoy(
    filter: Value,
    oidc: &Oidc,
    keystore: &TestServer,
    files: &ServerFiles,
    require: bool,
) -> Envoy {
    let mut cfg = EnvoyConfig::new(filter, oidc.port)
        .cluster("keystore", keystore.port())
        .downstream_tls(&files.cert, &files.key, &files.ca, require);
    if std::env::var_os("DCR_GUARD_TEST_WITHOUT_FILTER").is_some() {
        cfg = cfg.without_filter();
    }
    Envoy::start(&cfg)
}

/// The Brazilian stack: the AS, a keystore, Envoy requiring a client certificate.
struct Stack {
    tpp: Tpp,
    pki: Pki,
    files: ServerFiles,
    /// The TPP's own certificate.
    cert: ClientIdentity,
    keystore: TestServer,
    envoy: Envoy,
    /// Declared last: dropped after Envoy.
    oidc: Oidc,
}

fn start() -> Stack {
    let tpp = br_tpp();
    let pki = Pki::new();
    let files = pki.server(&["localhost", "127.0.0.1"]);
    let cert = br_cert(&pki, BR_SOFTWARE, BR_ORG);
    let ks = keystore(&tpp);
    let oidc = Oidc::start();
    let envoy = envoy(
        tpp.br_filter_config("keystore", "keystore"),
        &oidc,
        &ks,
        &files,
        true,
    );
    Stack {
        tpp,
        pki,
        files,
        cert,
        keystore: ks,
        envoy,
        oidc,
    }
}

impl Stack {
    /// One HTTPS request through `envoy` presenting `id`.
    fn call(
        &self,
        envoy: &Envoy,
        id: Option<&ClientIdentity>,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Response {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(a) = &auth {
            headers.push(("authorization", a));
        }
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        tls::https_send(
            envoy.port,
            id,
            &self.pki.ca_pem,
            method,
            path,
            &headers,
            body.unwrap_or("").as_bytes(),
        )
        .unwrap_or_else(|e| {
            panic!(
                "{method} {path}: {e}\n--- Envoy ---\n{}\n--- AS ---\n{}",
                envoy.log(),
                self.oidc.output()
            )
        })
    }

    /// Through the main Envoy with the TPP's certificate.
    fn tpp_call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Response {
        self.call(&self.envoy, Some(&self.cert), method, path, token, body)
    }

    /// A BR registration body whose request metadata is edited.
    fn body_with(&self, ssa: Option<String>, edit: impl FnOnce(&mut Value)) -> String {
        let ssa = ssa.unwrap_or_else(|| self.ssa());
        let mut claims = self.tpp.br_request_claims(&ssa);
        edit(&mut claims);
        claims.to_string()
    }

    fn ssa(&self) -> String {
        self.tpp
            .directory
            .sign("PS256", Value::Null, &self.tpp.br_ssa_claims())
    }

    /// Registers through Envoy: (client id, registration access token).
    fn register(&self) -> (String, String) {
        let r = self.tpp_call("POST", "/register", None, Some(&self.tpp.br_request()));
        self.expect(&r, 201, "create");
        let j = r.json();
        (
            j["client_id"].as_str().expect("client_id").to_string(),
            j["registration_access_token"]
                .as_str()
                .expect("registration_access_token")
                .to_string(),
        )
    }

    #[track_caller]
    fn expect(&self, r: &Response, status: u16, what: &str) {
        assert_eq!(
            r.status,
            status,
            "{what}: {}\n--- AS ---\n{}",
            r.text(),
            self.oidc.output()
        );
    }

    /// The AS's registration API log lines (`POST /register 201`, ...).
    fn as_calls(&self) -> Vec<String> {
        std::thread::sleep(Duration::from_millis(50));
        self.oidc
            .output()
            .lines()
            .filter(|l| {
                l.starts_with("POST /register")
                    || l.starts_with("GET /register")
                    || l.starts_with("PUT /register")
                    || l.starts_with("DELETE /register")
            })
            .map(str::to_string)
            .collect()
    }
}

#[test]
fn lifecycle() {
    let s = start();
    assert!(s.oidc.clients().is_empty());

    // Create: validated, forwarded as JSON, registered by the AS.
    let r = s.tpp_call("POST", "/register", None, Some(&s.tpp.br_request()));
    s.expect(&r, 201, "create");
    let created = r.json();
    let id = created["client_id"]
        .as_str()
        .expect("client_id")
        .to_string();
    let rat = created["registration_access_token"]
        .as_str()
        .expect("registration_access_token")
        .to_string();
    assert_eq!(created["software_id"], BR_SOFTWARE);
    // Facts from the SSA win (RFC 7591 §3.1.1): the client name is the SSA's.
    assert_eq!(created["client_name"], "TPP Brasil");
    let stored = s.oidc.client(&id).expect("the AS stored the client");
    assert_eq!(stored["software_id"], BR_SOFTWARE);
    assert_eq!(stored["jwks_uri"], json!(s.tpp.jwks_url()));
    // Behind a TLS-terminating Envoy the AS names an https management URI.
    let uri = created["registration_client_uri"].as_str().unwrap();
    assert!(
        uri.starts_with("https://") && uri.ends_with(&format!("/register/{id}")),
        "{uri}"
    );

    let path = format!("/register/{id}");
    let r = s.tpp_call("GET", &path, Some(&rat), None);
    s.expect(&r, 200, "read");
    assert_eq!(r.json()["client_id"], json!(id));

    // Update: the BR body (a fresh SSA) with client_id, validated again by the filter.
    let update = s.body_with(None, |c| {
        c["client_id"] = json!(id);
        c["redirect_uris"] = json!(["https://tpp.example.com.br/cb"]);
        c["scope"] = json!("openid consents resources accounts");
    });
    let r = s.tpp_call("PUT", &path, Some(&rat), Some(&update));
    s.expect(&r, 200, "update");
    assert_eq!(
        s.oidc.client(&id).unwrap()["scope"],
        json!("openid consents resources accounts")
    );

    let r = s.tpp_call("DELETE", &path, Some(&rat), None);
    s.expect(&r, 204, "delete");
    assert!(s.oidc.client(&id).is_none(), "the AS still has the client");
    let r = s.tpp_call("GET", &path, Some(&rat), None);
    s.expect(&r, 401, "read after delete");

    let calls = s.as_calls();
    for line in [
        "POST /register 201".to_string(),
        format!("GET {path} 200"),
        format!("PUT {path} 200"),
        format!("DELETE {path} 204"),
        format!("GET {path} 401"),
    ] {
        assert!(
            calls.iter().any(|l| l.starts_with(&line)),
            "no `{line}` in {calls:#?}"
        );
    }
    assert_eq!(calls.len(), 5, "{calls:#?}");
}

/// README (Observability): `dcr_guard.accepted` counts registrations (creates and updates) that
/// passed every check; management reads and deletes are `dcr_guard.management_forwarded`.
#[test]
fn accepted_counts_registrations_and_management_apart() {
    let s = start();
    let (id, rat) = s.register();
    let r = s.tpp_call("GET", &format!("/register/{id}"), Some(&rat), None);
    s.expect(&r, 200, "read");
    assert_eq!(s.envoy.stat("dcr_guard.accepted"), Some(1));
    assert_eq!(s.envoy.stat("dcr_guard.management_forwarded"), Some(1));
}

/// (name, through which Envoy, client certificate, body, expected error, description fragment)
type Refusal<'a> = (
    &'static str,
    &'a Envoy,
    Option<&'a ClientIdentity>,
    String,
    &'static str,
    &'static str,
);

#[test]
fn refused_registrations_never_reach_the_as() {
    let s = start();
    // A second Envoy whose listener lets clients without a certificate in.
    let lax = envoy(
        s.tpp.br_filter_config("keystore", "keystore"),
        &s.oidc,
        &s.keystore,
        &s.files,
        false,
    );
    let another_software = br_cert(&s.pki, OTHER_SOFTWARE, BR_ORG);
    let redirect_elsewhere = s.body_with(None, |c| {
        c["redirect_uris"] = json!(["https://tpp.example.com.br/elsewhere"]);
    });
    let forged_ssa = s.body_with(Some(corrupt_signature(&s.ssa())), |_| {});

    let cases: Vec<Refusal<'_>> = vec![
        (
            "no client certificate",
            &lax,
            None,
            s.tpp.br_request(),
            "invalid_client_metadata",
            "a client certificate is required",
        ),
        (
            "certificate of another software",
            &s.envoy,
            Some(&another_software),
            s.tpp.br_request(),
            "invalid_client_metadata",
            "client certificate `UID`",
        ),
        (
            "forged SSA",
            &s.envoy,
            Some(&s.cert),
            forged_ssa,
            "invalid_software_statement",
            "",
        ),
        (
            "redirect URI outside the SSA",
            &s.envoy,
            Some(&s.cert),
            redirect_elsewhere,
            "invalid_redirect_uri",
            "is not registered in the software statement",
        ),
    ];
    for (name, envoy, id, body, error, fragment) in cases {
        let clients = s.oidc.clients();
        let calls = s.as_calls();
        let r = s.call(envoy, id, "POST", "/register", None, Some(&body));
        s.expect(&r, 400, name);
        assert_eq!(r.json()["error"], error, "{name}: {}", r.text());
        let d = r.json()["error_description"].as_str().unwrap().to_string();
        assert!(d.contains(fragment), "{name}: {d:?} lacks {fragment:?}");
        assert_eq!(s.oidc.clients(), clients, "{name}: the AS created a client");
        assert_eq!(s.as_calls(), calls, "{name}: the request reached the AS");
    }
    assert!(s.oidc.clients().is_empty());

    // The same requests done right do get through (the refusals were the filter's).
    let r = s.call(
        &lax,
        Some(&s.cert),
        "POST",
        "/register",
        None,
        Some(&s.tpp.br_request()),
    );
    s.expect(&r, 201, "lax listener with a certificate");
    assert_eq!(s.oidc.clients().len(), 1);
}

#[test]
fn another_clients_registration_access_token() {
    let s = start();
    let (victim, victim_rat) = s.register();
    let (attacker, attacker_rat) = s.register();
    assert_ne!(victim, attacker);
    let victim_path = format!("/register/{victim}");

    // The filter (delegate mode) passes a well-formed token on; the AS binds it to its client and
    // refuses it for another one.
    for method in ["GET", "DELETE"] {
        let r = s.tpp_call(method, &victim_path, Some(&attacker_rat), None);
        s.expect(&r, 401, &format!("{method} with another client's token"));
        assert!(
            r.header("www-authenticate")
                .is_some_and(|v| v.contains("invalid_token")),
            "{method}: {:?}",
            r.header("www-authenticate")
        );
        assert!(
            s.oidc.client(&victim).is_some(),
            "{method}: the victim client is gone"
        );
    }
    // What the filter itself refuses never reaches the AS: no bearer token, a malformed one.
    let calls = s.as_calls();
    let r = s.tpp_call("DELETE", &victim_path, None, None);
    s.expect(&r, 401, "DELETE without a token");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert!(r.body.is_empty(), "{}", r.text());
    let r = s.tpp_call("DELETE", &victim_path, Some("not a token"), None);
    s.expect(&r, 401, "DELETE with a malformed token");
    assert_eq!(r.json()["error"], "invalid_token");
    assert_eq!(
        s.as_calls(),
        calls,
        "the AS saw a request the filter refused"
    );
    assert!(s.oidc.client(&victim).is_some());

    // oidc-provider destroys a registration access token presented for a client it does not
    // belong to (`client mismatch`): after the misuse the attacker's token no longer works even
    // for its own client, which itself stays registered. The victim's token is untouched.
    let r = s.tpp_call(
        "GET",
        &format!("/register/{attacker}"),
        Some(&attacker_rat),
        None,
    );
    s.expect(&r, 401, "the misused token was burnt");
    assert!(s.oidc.client(&attacker).is_some());
    let r = s.tpp_call("GET", &victim_path, Some(&victim_rat), None);
    s.expect(&r, 200, "the victim's own token");
    let mut clients = s.oidc.clients();
    clients.sort();
    let mut want = vec![victim.clone(), attacker.clone()];
    want.sort();
    assert_eq!(clients, want);
    let calls = s.as_calls();
    assert_eq!(
        calls
            .iter()
            .filter(|l| l.starts_with(&format!("DELETE {victim_path} 401")))
            .count(),
        1,
        "{calls:#?}"
    );
    assert!(!calls.iter().any(|l| l.contains(" 204")), "{calls:#?}");
}

/// Brazil's registration body is plain JSON without a `jti`, so replay protection is the UK
/// profile's `request_jti`: the same signed request sent twice through an Envoy with
/// `"forward": "json"` (the AS takes JSON only) creates exactly one client.
#[test]
fn replayed_create_creates_one_client() {
    let tpp = Tpp::new(TestKey::ec("uk-dir"), TestKey::ec("uk-tpp"));
    let pki = Pki::new();
    let files = pki.server(&["localhost", "127.0.0.1"]);
    let ks = keystore(&tpp);
    let oidc = Oidc::start();
    let mut filter = tpp.filter_config("keystore", "keystore");
    filter["forward"] = json!("json");
    filter["rules"]["certificate_binding"] = json!({"enabled": true});
    let envoy = envoy(filter, &oidc, &ks, &files, true);
    let cert = pki.client(&[
        (DnKind::C, "GB"),
        (DnKind::O, "OpenBanking"),
        (DnKind::Ou, &tpp.org_id),
        (DnKind::Cn, &tpp.software_id),
    ]);
    let jwt = tpp.request();
    let post = || {
        tls::https(
            envoy.port,
            Some(&cert),
            &pki.ca_pem,
            "POST",
            "/register",
            &[("content-type", "application/jwt")],
            jwt.as_bytes(),
        )
    };
    let r = post();
    assert_eq!(r.status, 201, "{}\n{}", r.text(), oidc.output());
    let id = r.json()["client_id"].as_str().unwrap().to_string();
    assert_eq!(
        oidc.client(&id).unwrap()["software_id"],
        json!(tpp.software_id)
    );

    let r = post();
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"], "invalid_client_metadata");
    assert!(
        r.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("has been used before"),
        "{}",
        r.text()
    );
    assert_eq!(oidc.clients(), vec![id]);
    std::thread::sleep(Duration::from_millis(50));
    let posts = oidc
        .output()
        .lines()
        .filter(|l| l.starts_with("POST /register"))
        .count();
    assert_eq!(posts, 1, "{}", oidc.output());
}
