#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! `certificate_binding` through a real Envoy that terminates mutual TLS: the TPP's client
//! certificate (made by a throwaway PKI, `common::tls`) must belong to the software and the
//! organisation of the SSA. Envoy hands the filter its own rendering of the subject (RFC 2253
//! order, attribute types it has no name for as `OID=#hex`, e.g. `2.5.4.97=#0C…` for the Brazilian
//! `organizationIdentifier`), so these tests prove the filter reads that real rendering, not only
//! the hand-written strings of the unit tests.
//!
//! Also the `x-forwarded-client-cert` source, where TLS ends at a proxy in front of this Envoy.

mod common;

use common::{br_cert, br_tpp, BR_ORG, BR_SOFTWARE};

use std::time::Duration;

use common::dcr::Tpp;
use common::keys::TestKey;
use common::tls::{self, ClientIdentity, DnKind, Pki, ServerFiles};
use common::{Envoy, EnvoyConfig, Recorded, Reply, Response, TestServer};
use serde_json::{json, Value};

const OTHER_ID: &str = "00000000-0000-4000-8000-000000000000";
/// The upstream echoes Envoy's rendering of the client certificate subject in this header (added
/// by the route, after the filter ran) so that the test can show what the filter was given.
const PEER_SUBJECT_HEADER: &str = "x-test-peer-subject";

/// A keystore serving the directory JWKS and the TPP's software JWKS, with `transport_keys` added
/// to the latter.
fn keystore(tpp: &Tpp, transport_keys: Vec<Value>) -> TestServer {
    common::keystore(tpp, transport_keys)
}

fn upstream() -> TestServer {
    TestServer::start(|r| {
        Reply::json(
            if r.method == "POST" { 201 } else { 200 },
            &json!({"client_id": "c1"}),
        )
    })
}

/// Adds `x-test-peer-subject: %DOWNSTREAM_PEER_SUBJECT%` to what the route sends upstream.
fn echo_peer_subject(b: &mut Value) {
    b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        ["route_config"]["virtual_hosts"][0]["request_headers_to_add"] = json!([{
        "header": {"key": PEER_SUBJECT_HEADER, "value": "%DOWNSTREAM_PEER_SUBJECT%"},
        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"
    }]);
}

/// `DCR_GUARD_TEST_WITHOUT_FILTER=1`: leave the filter out (these tests must then fail, which
/// shows they test the filter).
fn without_filter_if_asked(cfg: EnvoyConfig) -> EnvoyConfig {
    if std::env::var_os("DCR_GUARD_TEST_WITHOUT_FILTER").is_some() {
        cfg.without_filter()
    } else {
        cfg
    }
}

struct Stack {
    tpp: Tpp,
    pki: Pki,
    upstream: TestServer,
    envoy: Envoy,
    _keystore: TestServer,
}

/// Envoy with mTLS on the listener (the server certificate and the client CA from `pki`),
/// `filter` as the dcr-guard configuration (cluster `keystore` serves the JWKS documents).
fn start_tls(
    tpp: Tpp,
    pki: Pki,
    filter: impl FnOnce(&Tpp) -> Value,
    require_client_certificate: bool,
    transport_keys: Vec<Value>,
) -> Stack {
    let files: ServerFiles = pki.server(&["localhost", "127.0.0.1"]);
    let ks = keystore(&tpp, transport_keys);
    let up = upstream();
    let cfg = EnvoyConfig::new(filter(&tpp), up.port())
        .cluster("keystore", ks.port())
        .downstream_tls(
            &files.cert,
            &files.key,
            &files.ca,
            require_client_certificate,
        )
        .edit(echo_peer_subject);
    let envoy = Envoy::start(&without_filter_if_asked(cfg));
    Stack {
        tpp,
        pki,
        upstream: up,
        envoy,
        _keystore: ks,
    }
}

impl Stack {
    fn send(
        &self,
        id: Option<&ClientIdentity>,
        content_type: &str,
        body: &str,
    ) -> Result<Response, String> {
        tls::https_send(
            self.envoy.port,
            id,
            &self.pki.ca_pem,
            "POST",
            "/register",
            &[("content-type", content_type)],
            body.as_bytes(),
        )
    }

    fn br(&self, id: Option<&ClientIdentity>, body: &str) -> Response {
        self.send(id, "application/json", body)
            .unwrap_or_else(|e| panic!("HTTPS request failed: {e}\n{}", self.envoy.log()))
    }

    /// What the upstream received since the last call.
    fn upstream_saw(&self) -> Vec<Recorded> {
        std::thread::sleep(Duration::from_millis(30));
        let r = self.upstream.requests();
        self.upstream.clear();
        r
    }

    /// A Brazilian registration body with edited request metadata.
    fn br_body_with(&self, edit: impl FnOnce(&mut Value)) -> String {
        let ssa = self
            .tpp
            .directory
            .sign("PS256", Value::Null, &self.tpp.br_ssa_claims());
        let mut claims = self.tpp.br_request_claims(&ssa);
        edit(&mut claims);
        claims.to_string()
    }
}

/// 400 `error` whose description contains `fragment`, and nothing reached the AS.
fn assert_refused(s: &Stack, r: &Response, error: &str, fragment: &str, name: &str) {
    assert_eq!(r.status, 400, "{name}: {}", r.text());
    let body = r.json();
    assert_eq!(body["error"], error, "{name}: {body}");
    let description = body["error_description"].as_str().unwrap_or_default();
    assert!(
        description.contains(fragment),
        "{name}: {description:?} lacks {fragment:?}"
    );
    assert!(s.upstream_saw().is_empty(), "{name}: reached the AS");
}

/// `tls_client_auth` metadata naming `subject_dn`.
fn tls_client_auth(subject_dn: String) -> impl FnOnce(&mut Value) {
    move |c: &mut Value| {
        c["token_endpoint_auth_method"] = json!("tls_client_auth");
        c.as_object_mut()
            .unwrap()
            .remove("token_endpoint_auth_signing_alg");
        c["tls_client_auth_subject_dn"] = json!(subject_dn);
    }
}

#[test]
fn br_profile_binds_the_client_certificate_to_the_ssa() {
    let s = start_tls(
        br_tpp(),
        Pki::new(),
        |t| t.br_filter_config("keystore", "keystore"),
        true,
        Vec::new(),
    );
    let good = br_cert(&s.pki, BR_SOFTWARE, BR_ORG);

    // The certificate of the SSA's software and organisation.
    let r = s.br(Some(&good), &s.tpp.br_request());
    assert_eq!(r.status, 201, "{}\n{}", r.text(), s.envoy.log());
    let saw = s.upstream_saw();
    assert_eq!(saw.len(), 1);
    assert_eq!(saw[0].header("content-type"), Some("application/json"));
    let forwarded = saw[0].json();
    assert_eq!(forwarded["software_id"], BR_SOFTWARE);
    assert!(forwarded["software_statement"].is_string());
    // What Envoy rendered (and the filter parsed): RFC 2253 order, organizationIdentifier as
    // `2.5.4.97=#0C<len><UTF-8 bytes>` (Envoy has no name for it), UID by name.
    let rendered = saw[0].header(PEER_SUBJECT_HEADER).unwrap_or_default();
    eprintln!("Envoy's rendering of the client certificate subject: {rendered}");
    let oi_hex: String = format!("OFBBR-{BR_ORG}")
        .bytes()
        .map(|b| format!("{b:02X}"))
        .collect();
    assert_eq!(
        rendered,
        format!(
            "CN=tpp.example.com.br,UID={BR_SOFTWARE},2.5.4.97=#0C{:02X}{oi_hex},OU={BR_ORG},O=TPP Brasil Ltda,C=BR",
            oi_hex.len() / 2
        ),
        "Envoy's subject rendering changed"
    );

    // Another software of the same organisation.
    let other_software = br_cert(&s.pki, OTHER_ID, BR_ORG);
    let r = s.br(Some(&other_software), &s.tpp.br_request());
    assert_refused(
        &s,
        &r,
        "invalid_client_metadata",
        "client certificate `UID`",
        "another software",
    );

    // Another organisation, same software id.
    let other_org = br_cert(&s.pki, BR_SOFTWARE, OTHER_ID);
    let r = s.br(Some(&other_org), &s.tpp.br_request());
    assert_refused(
        &s,
        &r,
        "invalid_client_metadata",
        "`organizationIdentifier`",
        "another organisation",
    );

    // The right attributes, but issued by a CA Envoy does not trust: refused in the handshake.
    let rogue = Pki::untrusted();
    let forged = br_cert(&rogue, BR_SOFTWARE, BR_ORG);
    let r = s.send(Some(&forged), "application/json", &s.tpp.br_request());
    assert!(r.is_err(), "untrusted CA accepted: {r:?}");
    eprintln!("untrusted CA: {}", r.unwrap_err());
    assert!(s.upstream_saw().is_empty(), "untrusted CA reached the AS");

    // No certificate at all: `require_client_certificate: true` refuses the handshake.
    let r = s.send(None, "application/json", &s.tpp.br_request());
    assert!(r.is_err(), "no client certificate accepted: {r:?}");
    eprintln!("no client certificate: {}", r.unwrap_err());
    assert!(s.upstream_saw().is_empty());

    // tls_client_auth: the subject DN the TPP registers must be its certificate's. RFC 4514 order
    // (CN first) and certificate order (C first) both name it.
    for (name, dn) in [
        ("RFC 4514 order", good.subject_rfc4514()),
        ("certificate order", good.subject_cert_order()),
        (
            "RFC 4514 order, spaces and other case",
            format!(
                "cn=TPP.example.com.br, UID={BR_SOFTWARE}, organizationIdentifier=OFBBR-{BR_ORG}, \
                 OU={BR_ORG}, O=TPP Brasil Ltda, C=br"
            ),
        ),
    ] {
        let r = s.br(Some(&good), &s.br_body_with(tls_client_auth(dn.clone())));
        assert_eq!(r.status, 201, "{name} ({dn}): {}", r.text());
        let saw = s.upstream_saw();
        assert_eq!(saw.len(), 1, "{name}");
        assert_eq!(saw[0].json()["tls_client_auth_subject_dn"], json!(dn));
    }
    for (name, dn) in [
        (
            "another CN",
            good.subject_rfc4514()
                .replace("CN=tpp.example.com.br", "CN=evil.example.com.br"),
        ),
        (
            "another organizationIdentifier",
            good.subject_rfc4514().replace(
                &format!("organizationIdentifier=OFBBR-{BR_ORG}"),
                &format!("organizationIdentifier=OFBBR-{OTHER_ID}"),
            ),
        ),
        (
            "an attribute missing",
            good.subject_rfc4514().replace(",O=TPP Brasil Ltda", ""),
        ),
        ("rotated", {
            let mut parts: Vec<String> = good
                .subject_rfc4514()
                .split(',')
                .map(str::to_string)
                .collect();
            parts.rotate_left(1);
            parts.join(",")
        }),
    ] {
        assert_ne!(dn, good.subject_rfc4514(), "{name}: the edit did nothing");
        let r = s.br(Some(&good), &s.br_body_with(tls_client_auth(dn)));
        assert_refused(
            &s,
            &r,
            "invalid_client_metadata",
            "does not match the client certificate subject",
            name,
        );
    }

    // Envoy escapes what RFC 2253 needs escaped: a `,` in a value as `\,`, and (OpenSSL's
    // ESC_MSB) every non-ASCII byte as `\XX`. The TPP writes its DN in plain UTF-8.
    let org_name = "Instituição de Pagamento, S.A.";
    let tricky = s.pki.client(&[
        (DnKind::C, "BR"),
        (DnKind::O, org_name),
        (DnKind::Ou, BR_ORG),
        (DnKind::OrganizationIdentifier, &format!("OFBBR-{BR_ORG}")),
        (DnKind::Uid, BR_SOFTWARE),
        (DnKind::Cn, "tpp.example.com.br"),
    ]);
    let dn = tricky.subject_rfc4514();
    assert!(dn.contains("O=Instituição de Pagamento\\, S.A."), "{dn}");
    let r = s.br(Some(&tricky), &s.br_body_with(tls_client_auth(dn.clone())));
    assert_eq!(r.status, 201, "{dn}: {}", r.text());
    let saw = s.upstream_saw();
    assert_eq!(saw.len(), 1);
    let rendered = saw[0].header(PEER_SUBJECT_HEADER).unwrap_or_default();
    eprintln!("Envoy's rendering of a subject with `,` and non-ASCII: {rendered}");
    assert!(
        rendered.contains("O=Institui\\C3\\A7\\C3\\A3o de Pagamento\\, S.A.,"),
        "{rendered}"
    );
    let r = s.br(
        Some(&tricky),
        &s.br_body_with(tls_client_auth(dn.replace("ção", "cao"))),
    );
    assert_refused(
        &s,
        &r,
        "invalid_client_metadata",
        "does not match the client certificate subject",
        "non-ASCII letters replaced",
    );

    assert_eq!(
        s.envoy.stat("dcr_guard.failed.certificate_binding"),
        Some(7)
    );
}

#[test]
fn br_profile_requires_a_client_certificate() {
    // The listener lets clients without a certificate in; the filter must refuse them.
    let s = start_tls(
        br_tpp(),
        Pki::new(),
        |t| t.br_filter_config("keystore", "keystore"),
        false,
        Vec::new(),
    );
    let r = s.br(None, &s.tpp.br_request());
    assert_refused(
        &s,
        &r,
        "invalid_client_metadata",
        "a client certificate is required",
        "no client certificate",
    );
    // The same listener with the right certificate.
    let good = br_cert(&s.pki, BR_SOFTWARE, BR_ORG);
    let r = s.br(Some(&good), &s.tpp.br_request());
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(s.upstream_saw().len(), 1);
    // A certificate from an untrusted CA is still refused by Envoy (it validates what it gets).
    let forged = br_cert(&Pki::untrusted(), BR_SOFTWARE, BR_ORG);
    let r = s.send(Some(&forged), "application/json", &s.tpp.br_request());
    assert!(r.is_err(), "untrusted CA accepted: {r:?}");
    assert!(s.upstream_saw().is_empty());
}

#[test]
fn uk_profile_certificate_binding() {
    // OBIE transport certificates: OU = organisation id, CN = software id (the defaults).
    let s = start_tls(
        Tpp::new(TestKey::ec("dir"), TestKey::ec("tpp")),
        Pki::new(),
        |t| {
            let mut f = t.filter_config("keystore", "keystore");
            f["rules"]["certificate_binding"] = json!({"enabled": true});
            f
        },
        true,
        Vec::new(),
    );
    let cert = |cn: &str, ou: &str| {
        s.pki.client(&[
            (DnKind::C, "GB"),
            (DnKind::O, "OpenBanking"),
            (DnKind::Ou, ou),
            (DnKind::Cn, cn),
        ])
    };
    let good = cert(&s.tpp.software_id, &s.tpp.org_id);
    let r = s
        .send(Some(&good), "application/jwt", &s.tpp.request())
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    let saw = s.upstream_saw();
    assert_eq!(saw.len(), 1);
    eprintln!(
        "Envoy's rendering of a UK subject: {}",
        saw[0].header(PEER_SUBJECT_HEADER).unwrap_or_default()
    );

    let other_software = cert("2kiXQyo0tedjW2somjSgH7", &s.tpp.org_id);
    let r = s
        .send(Some(&other_software), "application/jwt", &s.tpp.request())
        .unwrap();
    assert_refused(
        &s,
        &r,
        "invalid_client_metadata",
        "client certificate `CN` `2kiXQyo0tedjW2somjSgH7` does not match the SSA's `software_id`",
        "CN of another software",
    );
    let other_org = cert(&s.tpp.software_id, "0015800001ZZZZZZZZ");
    let r = s
        .send(Some(&other_org), "application/jwt", &s.tpp.request())
        .unwrap();
    assert_refused(
        &s,
        &r,
        "invalid_client_metadata",
        "`OU` `0015800001ZZZZZZZZ` does not match the SSA's `org_id`",
        "OU of another organisation",
    );
}

/// TLS ends at a proxy in front of this Envoy, which passes the certificate on in
/// `x-forwarded-client-cert`. **This mode is only safe behind a proxy that sanitises XFCC** (sets
/// it itself and never forwards a client's): the filter believes whatever the header says, so on a
/// listener that clients reach directly anyone could claim any certificate, as this test does.
///
/// Envoy's own `forward_client_cert_details` matters on this (plain-HTTP) listener: with the
/// default `SANITIZE` (and with every mode but `ALWAYS_FORWARD_ONLY` on a connection without a
/// client certificate) the HTTP connection manager removes the header before any filter runs, so
/// the filter sees no certificate. The Envoy that trusts a proxy in front of it needs
/// `ALWAYS_FORWARD_ONLY`.
#[test]
fn xfcc_source() {
    let tpp = br_tpp();
    let ks = keystore(&tpp, Vec::new());
    let up = upstream();
    let mut filter = tpp.br_filter_config("keystore", "keystore");
    filter["client_certificate"] = json!({"source": "x-forwarded-client-cert"});
    let base =
        without_filter_if_asked(EnvoyConfig::new(filter, up.port()).cluster("keystore", ks.port()));
    let trusting = Envoy::start(&base.clone().edit(|b| {
        b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
            ["forward_client_cert_details"] = json!("ALWAYS_FORWARD_ONLY");
    }));
    let sanitising = Envoy::start(&base);
    let saw = || {
        std::thread::sleep(Duration::from_millis(30));
        let r = up.requests();
        up.clear();
        r
    };

    let hash = "9d1f4b2e6a0c8e7d5b3a1f0e9d8c7b6a5f4e3d2c1b0a99887766554433221100";
    let xfcc = |uid: &str, org: &str| {
        format!("Hash={hash};Subject=\"UID={uid},2.5.4.97=OFBBR-{org},CN=tpp.example.com.br\"")
    };
    let post = |envoy: &Envoy, header: Option<&str>| {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(h) = header {
            headers.push(("x-forwarded-client-cert", h));
        }
        envoy.send("POST", "/register", &headers, tpp.br_request().as_bytes())
    };

    let good = xfcc(BR_SOFTWARE, BR_ORG);
    let r = post(&trusting, Some(&good));
    assert_eq!(r.status, 201, "{}\n{}", r.text(), trusting.log());
    assert_eq!(saw().len(), 1);

    for (name, header, fragment) in [
        (
            "another software",
            xfcc(OTHER_ID, BR_ORG),
            "client certificate `UID`",
        ),
        (
            "another organisation",
            xfcc(BR_SOFTWARE, OTHER_ID),
            "`organizationIdentifier`",
        ),
        (
            "not a DN",
            format!("Hash={hash};Subject=\"/C=BR/CN=tpp\""),
            "could not be read",
        ),
    ] {
        let r = post(&trusting, Some(&header));
        assert_eq!(r.status, 400, "{name}: {}", r.text());
        assert_eq!(r.json()["error"], "invalid_client_metadata", "{name}");
        let d = r.json()["error_description"].as_str().unwrap().to_string();
        assert!(d.contains(fragment), "{name}: {d}");
        assert!(saw().is_empty(), "{name}: reached the AS");
    }
    let r = post(&trusting, None);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("a client certificate is required"));
    assert!(saw().is_empty());

    // Default SANITIZE: the header never reaches the filter.
    let r = post(&sanitising, Some(&good));
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains("a client certificate is required"),
        "{}",
        r.text()
    );
    assert!(saw().is_empty());
}

/// A software JWKS entry for a transport certificate (`use: tls`), as directories publish them:
/// the certificate in `x5c` and its `x5t#S256`.
fn transport_key(cert: &ClientIdentity) -> Value {
    use base64::Engine as _;
    json!({
        "kty": "EC",
        "use": "tls",
        "kid": format!("tls-{}", &cert.sha256_hex()[..8]),
        "x5c": [base64::engine::general_purpose::STANDARD.encode(&cert.cert_der)],
        "x5t#S256": common::keys::b64(cert.sha256()),
    })
}

/// `thumbprint: true`: the certificate must be one the software JWKS publishes as a transport key,
/// compared with the SHA-256 digest Envoy reports for the connection's certificate.
#[test]
fn br_profile_thumbprint_binding() {
    let pki = Pki::new();
    let published = br_cert(&pki, BR_SOFTWARE, BR_ORG);
    // The same subject, another key: passes the attribute checks, not the thumbprint.
    let unpublished = br_cert(&pki, BR_SOFTWARE, BR_ORG);
    assert_ne!(published.sha256(), unpublished.sha256());
    let s = start_tls(
        br_tpp(),
        pki,
        |t| {
            let mut f = t.br_filter_config("keystore", "keystore");
            f["rules"] = json!({"certificate_binding": {"thumbprint": true}});
            f
        },
        true,
        vec![transport_key(&published)],
    );
    let r = s.br(Some(&published), &s.tpp.br_request());
    assert_eq!(r.status, 201, "{}\n{}", r.text(), s.envoy.log());
    assert_eq!(s.upstream_saw().len(), 1);
    let r = s.br(Some(&unpublished), &s.tpp.br_request());
    assert_refused(
        &s,
        &r,
        "invalid_client_metadata",
        "not among the software JWKS's transport keys",
        "certificate not published",
    );
}

/// The `x-forwarded-client-cert` a real front Envoy writes: the TPP's TLS ends at a front Envoy
/// (mTLS, `SANITIZE_SET` with the subject), which talks plain HTTP to the Envoy running the filter
/// (`ALWAYS_FORWARD_ONLY`, source `x-forwarded-client-cert`). The subject carries Envoy's escapes
/// (`\,`, `\C3\A7`) inside the quoted `Subject`, and `Hash` is the certificate's SHA-256, checked
/// against the software JWKS.
#[test]
fn xfcc_from_a_front_envoy() {
    let tpp = br_tpp();
    let pki = Pki::new();
    let files = pki.server(&["localhost", "127.0.0.1"]);
    let subject = |uid: &str| {
        vec![
            (DnKind::C, "BR".to_string()),
            (DnKind::O, "Instituição de Pagamento, S.A.".to_string()),
            (DnKind::Ou, BR_ORG.to_string()),
            (DnKind::OrganizationIdentifier, format!("OFBBR-{BR_ORG}")),
            (DnKind::Uid, uid.to_string()),
            (DnKind::Cn, "tpp.example.com.br".to_string()),
        ]
    };
    let issue = |uid: &str| {
        let attrs = subject(uid);
        let refs: Vec<(DnKind, &str)> =
            attrs.iter().map(|(k, v)| (k.clone(), v.as_str())).collect();
        pki.client(&refs)
    };
    let good = issue(BR_SOFTWARE);
    let unpublished = issue(BR_SOFTWARE);
    let other_software = issue(OTHER_ID);
    let ks = keystore(
        &tpp,
        vec![transport_key(&good), transport_key(&other_software)],
    );
    let up = upstream();

    let mut filter = tpp.br_filter_config("keystore", "keystore");
    filter["client_certificate"] = json!({"source": "x-forwarded-client-cert"});
    filter["rules"] = json!({"certificate_binding": {"thumbprint": true}});
    let back = Envoy::start(&without_filter_if_asked(
        EnvoyConfig::new(filter, up.port())
            .cluster("keystore", ks.port())
            .edit(|b| {
                b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
                    ["typed_config"]["forward_client_cert_details"] = json!("ALWAYS_FORWARD_ONLY");
            }),
    ));
    let front = Envoy::start(
        &EnvoyConfig::new(json!({}), back.port)
            .without_filter()
            .downstream_tls(&files.cert, &files.key, &files.ca, true)
            .edit(|b| {
                let hcm = &mut b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]
                    [0]["typed_config"];
                hcm["forward_client_cert_details"] = json!("SANITIZE_SET");
                hcm["set_current_client_cert_details"] = json!({"subject": true, "uri": true});
            }),
    );
    let saw = || {
        std::thread::sleep(Duration::from_millis(30));
        let r = up.requests();
        up.clear();
        r
    };
    let post = |id: &ClientIdentity, body: &str, forged_xfcc: Option<&str>| {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(x) = forged_xfcc {
            headers.push(("x-forwarded-client-cert", x));
        }
        tls::https(
            front.port,
            Some(id),
            &pki.ca_pem,
            "POST",
            "/register",
            &headers,
            body.as_bytes(),
        )
    };
    let body_with_dn = |dn: &str| {
        let ssa = tpp
            .directory
            .sign("PS256", Value::Null, &tpp.br_ssa_claims());
        let mut c = tpp.br_request_claims(&ssa);
        tls_client_auth(dn.to_string())(&mut c);
        c.to_string()
    };

    let r = post(&good, &body_with_dn(&good.subject_rfc4514()), None);
    assert_eq!(r.status, 201, "{}\n{}", r.text(), back.log());
    let got = saw();
    assert_eq!(got.len(), 1);
    let xfcc = got[0].header("x-forwarded-client-cert").unwrap_or_default();
    eprintln!("the front Envoy's x-forwarded-client-cert: {xfcc}");
    assert!(
        xfcc.contains(&format!("Hash={}", good.sha256_hex())),
        "{xfcc}"
    );
    assert!(xfcc.contains("Subject=\""), "{xfcc}");

    // A client's own XFCC is replaced by the front Envoy (SANITIZE_SET): claiming another
    // certificate gets it nowhere.
    let forged = format!(
        "Hash={};Subject=\"{}\"",
        other_software.sha256_hex(),
        other_software.subject_rfc4514()
    );
    let r = post(&good, &tpp.br_request(), Some(&forged));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(saw().len(), 1);

    for (name, id, fragment) in [
        (
            "certificate not published",
            &unpublished,
            "not among the software JWKS's transport keys",
        ),
        (
            "another software's published certificate",
            &other_software,
            "client certificate `UID`",
        ),
    ] {
        let r = post(id, &tpp.br_request(), None);
        assert_eq!(r.status, 400, "{name}: {}", r.text());
        let d = r.json()["error_description"].as_str().unwrap().to_string();
        assert!(d.contains(fragment), "{name}: {d}");
        assert!(saw().is_empty(), "{name}: reached the AS");
    }
    let r = post(
        &good,
        &body_with_dn(&other_software.subject_rfc4514()),
        None,
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r
        .text()
        .contains("does not match the client certificate subject"));
    assert!(saw().is_empty());
}
