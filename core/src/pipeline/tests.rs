//! The create pipeline end to end (without a host): profiles, order, report-only, robustness.

use serde_json::{json, Value};

use super::*;
use crate::error::{ErrorCode, RuleId, Source};
use crate::jose::JwkSet;
use dcr_guard_testkit::dcr::{Tpp, DIRECTORY_JWKS_URL};
use dcr_guard_testkit::keys::{now, TestKey};

struct Run {
    result: Result<(), DcrError>,
    fetched: Vec<String>,
    report: (Vec<DcrError>, Vec<RuleId>),
}

/// Validate `body` with documents served from `docs` (url → JWKS); a URL not in `docs` is down.
fn run(cfg: &Config, body: &str, docs: &[(String, Value)]) -> Run {
    run_with_cert(cfg, body, docs, None)
}

fn run_with_cert(cfg: &Config, body: &str, docs: &[(String, Value)], subject: Option<&str>) -> Run {
    run_full(cfg, body, docs, subject, &mut Verdicts::default())
}

fn run_full(
    cfg: &Config,
    body: &str,
    docs: &[(String, Value)],
    subject: Option<&str>,
    verdicts: &mut Verdicts,
) -> Run {
    let mut fetched = Vec::new();
    let cert = subject.map(|s| crate::cert::ClientCert::from_envoy(s, None, None).unwrap());
    let mut create = match Create::parse(cfg, body.as_bytes(), verdicts) {
        Ok(c) => c,
        Err(e) => {
            return Run {
                result: Err(e),
                fetched,
                report: (vec![], vec![]),
            }
        }
    };
    create.set_client_cert(Ok(cert));
    for _ in 0..10 {
        match create.step(cfg, now() as i64, verdicts) {
            Step::Forward => {
                let (f, s) = create.report();
                return Run {
                    result: Ok(()),
                    fetched,
                    report: (f.to_vec(), s.to_vec()),
                };
            }
            Step::Reject(e) => {
                return Run {
                    result: Err(e),
                    fetched,
                    report: (vec![], vec![]),
                }
            }
            Step::Call(_) => panic!("a create makes no calls"),
            Step::Fetch(srcs) | Step::Refetch(srcs) => {
                for src in srcs {
                    fetched.push(src.url.clone());
                    let f = match docs.iter().find(|(u, _)| *u == src.url) {
                        Some((_, doc)) => {
                            let bytes = doc.to_string().into_bytes();
                            Fetched::from_response(Some(200), &bytes, bytes.len(), 1 << 20, 100)
                        }
                        None => Fetched::Unavailable("down".into()),
                    };
                    create.supply(&src.url, f);
                }
            }
        }
    }
    panic!("validation did not finish");
}

fn uk() -> (Tpp, Config, Vec<(String, Value)>) {
    let tpp = Tpp::new(TestKey::ec("dir"), TestKey::ec("tpp"));
    let mut v = tpp.filter_config("d", "s");
    v["rules"]["software_status"] = json!({"environment": "sandbox"});
    let cfg = Config::from_json(v.to_string().as_bytes()).unwrap();
    let docs = vec![
        (DIRECTORY_JWKS_URL.to_string(), tpp.directory_jwks()),
        (tpp.jwks_url(), tpp.software_jwks()),
    ];
    (tpp, cfg, docs)
}

fn au() -> (Tpp, Config, Vec<(String, Value)>) {
    let tpp = Tpp::new(TestKey::ec("register"), TestKey::ec("adr"));
    let cfg = Config::from_json(tpp.au_filter_config("d", "s").to_string().as_bytes()).unwrap();
    let docs = vec![
        (DIRECTORY_JWKS_URL.to_string(), tpp.directory_jwks()),
        (tpp.jwks_url(), tpp.software_jwks()),
    ];
    (tpp, cfg, docs)
}

fn failure(r: &Run) -> (Source, ErrorCode, String) {
    let e = r
        .result
        .as_ref()
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    (e.source, e.code, e.description.clone())
}

#[test]
fn uk_realistic_request_passes() {
    let (tpp, cfg, docs) = uk();
    let r = run(&cfg, &tpp.request(), &docs);
    assert!(r.result.is_ok(), "{:?}", r.result);
    assert_eq!(
        r.fetched,
        vec![DIRECTORY_JWKS_URL.to_string(), tpp.jwks_url()]
    );
}

#[test]
fn au_realistic_request_passes() {
    let (tpp, cfg, docs) = au();
    let r = run(&cfg, &tpp.au_request(), &docs);
    assert!(r.result.is_ok(), "{:?}", r.result);
}

fn uk_case(edit_ssa: impl FnOnce(&mut Value), edit_req: impl FnOnce(&mut Value)) -> Run {
    let (tpp, cfg, docs) = uk();
    let ssa = tpp.ssa_with(edit_ssa);
    let mut c = tpp.request_claims(&ssa);
    edit_req(&mut c);
    run(&cfg, &tpp.key.sign_default(&c), &docs)
}

fn au_case(edit_ssa: impl FnOnce(&mut Value), edit_req: impl FnOnce(&mut Value)) -> Run {
    let (tpp, cfg, docs) = au();
    let mut s = tpp.au_ssa_claims();
    edit_ssa(&mut s);
    let ssa = tpp.directory.sign_default(&s);
    let mut c = tpp.au_request_claims(&ssa);
    edit_req(&mut c);
    run(&cfg, &tpp.key.sign_default(&c), &docs)
}

#[test]
fn regime_specific_violations() {
    use RuleId::*;
    let cases: Vec<(&str, Run, RuleId, ErrorCode, &str)> = vec![
        (
            "UK RS256 metadata algorithm",
            uk_case(
                |_| {},
                |c| c["id_token_signed_response_alg"] = json!("RS256"),
            ),
            SigningAlgorithms,
            ErrorCode::InvalidClientMetadata,
            "RS256",
        ),
        (
            "UK payments scope without PISP",
            uk_case(|s| s["software_roles"] = json!(["AISP"]), |_| {}),
            SoftwareRoles,
            ErrorCode::InvalidClientMetadata,
            "PISP",
        ),
        (
            "UK org not active",
            uk_case(|s| s["org_status"] = json!("Revoked"), |_| {}),
            SoftwareStatus,
            ErrorCode::UnapprovedSoftwareStatement,
            "Revoked",
        ),
        (
            "UK production SSA in sandbox",
            uk_case(|s| s["software_environment"] = json!("production"), |_| {}),
            SoftwareStatus,
            ErrorCode::UnapprovedSoftwareStatement,
            "environment",
        ),
        (
            "UK redirect not in SSA",
            uk_case(
                |_| {},
                |c| c["redirect_uris"] = json!(["https://tpp.example.com/other"]),
            ),
            RedirectUriSubset,
            ErrorCode::InvalidRedirectUri,
            "not registered",
        ),
        (
            "UK localhost redirect",
            uk_case(
                |s| s["software_redirect_uris"] = json!(["https://localhost/cb"]),
                |c| c["redirect_uris"] = json!(["https://localhost/cb"]),
            ),
            RedirectUriFormat,
            ErrorCode::InvalidRedirectUri,
            "localhost",
        ),
        (
            "UK iss not software_id",
            uk_case(|_| {}, |c| c["iss"] = json!("someone-else")),
            Issuer,
            ErrorCode::InvalidClientMetadata,
            "software_id",
        ),
        (
            "UK aud of another bank",
            uk_case(|_| {}, |c| c["aud"] = json!("another-bank")),
            Audience,
            ErrorCode::InvalidClientMetadata,
            "aud",
        ),
        (
            "UK missing scope",
            uk_case(
                |_| {},
                |c| {
                    c.as_object_mut().unwrap().remove("scope");
                },
            ),
            RequiredAttributes,
            ErrorCode::InvalidClientMetadata,
            "scope not found",
        ),
        (
            "UK response_types id_token token",
            uk_case(
                |_| {},
                |c| c["response_types"] = json!(["id_token", "token"]),
            ),
            GrantAndResponseTypes,
            ErrorCode::InvalidClientMetadata,
            "id_token",
        ),
        (
            "UK client_secret_basic",
            uk_case(
                |_| {},
                |c| c["token_endpoint_auth_method"] = json!("client_secret_basic"),
            ),
            TokenEndpointAuth,
            ErrorCode::InvalidClientMetadata,
            "client_secret_basic",
        ),
        (
            "UK logo on another host",
            uk_case(
                |s| s["software_logo_uri"] = json!("https://cdn.example.net/logo.png"),
                |_| {},
            ),
            UriHostname,
            ErrorCode::InvalidClientMetadata,
            "software_logo_uri",
        ),
        (
            "UK exp an hour ago",
            uk_case(
                |_| {},
                |c| {
                    c["exp"] = json!(now() - 3600);
                },
            ),
            IssuanceTime,
            ErrorCode::InvalidClientMetadata,
            "expired",
        ),
        (
            "AU aud mismatch",
            au_case(|_| {}, |c| c["aud"] = json!("https://other-holder.example")),
            Audience,
            ErrorCode::InvalidClientMetadata,
            "aud",
        ),
        (
            "AU missing SSA exp",
            au_case(
                |s| {
                    s.as_object_mut().unwrap().remove("exp");
                },
                |_| {},
            ),
            SsaSignature,
            ErrorCode::InvalidSoftwareStatement,
            "`exp` not found",
        ),
        (
            "AU tls_client_auth",
            au_case(
                |_| {},
                |c| {
                    c["token_endpoint_auth_method"] = json!("tls_client_auth");
                    c["tls_client_auth_subject_dn"] = json!("CN=x");
                },
            ),
            TokenEndpointAuth,
            ErrorCode::InvalidClientMetadata,
            "tls_client_auth",
        ),
        (
            "AU no authorization_code",
            au_case(|_| {}, |c| c["grant_types"] = json!(["client_credentials"])),
            GrantAndResponseTypes,
            ErrorCode::InvalidClientMetadata,
            "authorization_code",
        ),
        (
            "AU scope beyond SSA",
            au_case(|_| {}, |c| c["scope"] = json!("openid bank:payees:read")),
            SoftwareRoles,
            ErrorCode::InvalidClientMetadata,
            "bank:payees:read",
        ),
        (
            "AU missing signing alg",
            au_case(
                |_| {},
                |c| {
                    c.as_object_mut()
                        .unwrap()
                        .remove("token_endpoint_auth_signing_alg");
                },
            ),
            RequiredAttributes,
            ErrorCode::InvalidClientMetadata,
            "token_endpoint_auth_signing_alg not found",
        ),
    ];
    for (name, r, rule, code, why) in cases {
        let (source, c, desc) = failure(&r);
        assert_eq!(source, Source::Rule(rule), "{name}: {desc}");
        assert_eq!(c, code, "{name}");
        assert!(desc.contains(why), "{name}: {desc:?} lacks {why:?}");
    }
}

#[test]
fn first_failure_in_the_documented_order_wins() {
    // Violates software_roles, signing_algorithms, redirect_uri_subset and audience at once.
    let r = uk_case(
        |s| s["software_roles"] = json!(["AISP"]),
        |c| {
            c["id_token_signed_response_alg"] = json!("RS256");
            c["redirect_uris"] = json!(["https://tpp.example.com/other"]);
            c["aud"] = json!("another-bank");
        },
    );
    assert_eq!(failure(&r).0, Source::Rule(RuleId::Audience));
    for _ in 0..5 {
        let again = uk_case(
            |s| s["software_roles"] = json!(["AISP"]),
            |c| {
                c["id_token_signed_response_alg"] = json!("RS256");
                c["redirect_uris"] = json!(["https://tpp.example.com/other"]);
                c["aud"] = json!("another-bank");
            },
        );
        assert_eq!(failure(&again).2, failure(&r).2, "deterministic");
    }
}

#[test]
fn report_only_collects_everything_and_never_fetches_from_an_unverified_ssa() {
    let (tpp, _, docs) = uk();
    let mut v = tpp.filter_config("d", "s");
    v["report_only"] = json!(true);
    let cfg = Config::from_json(v.to_string().as_bytes()).unwrap();
    // SSA signed by a rogue key; wrong aud; RS256 metadata.
    let ssa = TestKey::ec("dir").sign_default(&tpp.ssa_claims());
    let mut c = tpp.request_claims(&ssa);
    c["aud"] = json!("another-bank");
    c["id_token_signed_response_alg"] = json!("RS256");
    let r = run(&cfg, &tpp.key.sign_default(&c), &docs);
    assert!(r.result.is_ok(), "report-only forwards: {:?}", r.result);
    let rules: Vec<Source> = r.report.0.iter().map(|e| e.source).collect();
    assert_eq!(
        rules,
        vec![
            Source::Rule(RuleId::SsaSignature),
            Source::Rule(RuleId::Audience),
            Source::Rule(RuleId::SigningAlgorithms)
        ]
    );
    assert_eq!(r.report.1, vec![RuleId::RequestSignature]);
    assert_eq!(
        r.fetched,
        vec![DIRECTORY_JWKS_URL.to_string()],
        "software JWKS fetched from an unverified SSA"
    );

    // Unknown issuer: no directory, nothing fetched at all.
    let ssa = tpp.ssa_with(|s| s["iss"] = json!("Elsewhere"));
    let r = run(
        &cfg,
        &tpp.key.sign_default(&tpp.request_claims(&ssa)),
        &docs,
    );
    assert!(r.result.is_ok());
    assert!(r.fetched.is_empty());
    assert_eq!(r.report.0[0].source, Source::Rule(RuleId::SsaIssuer));
    assert_eq!(r.report.1, vec![RuleId::RequestSignature]);

    // A clean request in report-only mode reports nothing.
    let r = run(&cfg, &tpp.request(), &docs);
    assert!(r.result.is_ok() && r.report.0.is_empty() && r.report.1.is_empty());
}

#[test]
fn switched_off_rules_do_not_run() {
    let (tpp, _, docs) = uk();
    let mut v = tpp.filter_config("d", "s");
    v["rules"]["audience"] = json!({"enabled": false});
    v["rules"]["signing_algorithms"] = json!({"enabled": false});
    let cfg = Config::from_json(v.to_string().as_bytes()).unwrap();
    let mut c = tpp.request_claims(&tpp.ssa());
    c["aud"] = json!("another-bank");
    c["id_token_signed_response_alg"] = json!("RS256");
    let r = run(&cfg, &tpp.key.sign_default(&c), &docs);
    assert!(r.result.is_ok(), "{:?}", r.result);
}

/// xorshift: deterministic, no dependencies.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn random_value(rng: &mut Rng, depth: u32) -> Value {
    match rng.below(if depth > 2 { 8 } else { 10 }) {
        0 => Value::Null,
        1 => json!(rng.below(2) == 0),
        2 => json!(rng.next() as i64),
        3 => json!(-1.5e300),
        4 => json!(""),
        5 => json!("https://localhost/x#y"),
        6 => json!("é\u{0}\u{202e}".repeat(rng.below(200))),
        7 => json!(["a", 1, null, "https://tpp.example.com/callback"]),
        8 => json!({"k": random_value(rng, depth + 1)}),
        _ => Value::Array(
            (0..rng.below(4))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
    }
}

#[test]
fn random_mutations_never_panic() {
    let (tpp, cfg, docs) = uk();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let ssa_keys: Vec<String> = tpp
        .ssa_claims()
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let req_keys: Vec<String> = tpp
        .request_claims("x")
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    for _ in 0..400 {
        let mut s = tpp.ssa_claims();
        let mut c = tpp.request_claims("");
        for _ in 0..1 + rng.below(3) {
            let (obj, keys) = if rng.below(2) == 0 {
                (&mut s, &ssa_keys)
            } else {
                (&mut c, &req_keys)
            };
            let k = &keys[rng.below(keys.len())];
            if rng.below(4) == 0 {
                obj.as_object_mut().unwrap().remove(k);
            } else {
                obj[k.as_str()] = random_value(&mut rng, 0);
            }
        }
        if c.get("software_statement").is_some() {
            c["software_statement"] = json!(tpp.directory.sign_default(&s));
        }
        let r = run(&cfg, &tpp.key.sign_default(&c), &docs);
        if let Err(e) = &r.result {
            assert!(!e.description.is_empty());
            assert!(e.status == 400 || e.status == 503, "{e}");
        }
    }
    // Byte-level mutations of a valid body.
    let body = tpp.request();
    for _ in 0..400 {
        let mut b = body.clone().into_bytes();
        for _ in 0..1 + rng.below(4) {
            let i = rng.below(b.len());
            b[i] = (rng.next() & 0xff) as u8;
        }
        let text = String::from_utf8_lossy(&b).into_owned();
        let _ = run(&cfg, &text, &docs);
    }
}

fn br() -> (Tpp, Config, Vec<(String, Value)>) {
    let tpp = Tpp::new(TestKey::rsa("br-dir"), TestKey::rsa("br-tpp"));
    let cfg = Config::from_json(tpp.br_filter_config("d", "s").to_string().as_bytes()).unwrap();
    let docs = vec![
        (DIRECTORY_JWKS_URL.to_string(), tpp.directory_jwks()),
        (tpp.jwks_url(), tpp.software_jwks()),
    ];
    (tpp, cfg, docs)
}

/// The certificate the Brazilian TPP's connection presents (RFC 4514 order, as Envoy prints it).
fn br_subject(tpp: &Tpp) -> String {
    format!(
        "UID={},organizationIdentifier=OFBBR-{},CN=tpp.example.com.br,O=TPP Brasil,C=BR",
        tpp.software_id, tpp.org_id
    )
}

fn br_case(
    edit_ssa: impl FnOnce(&mut Value),
    edit_req: impl FnOnce(&mut Value),
) -> (Run, Config, Value, Value) {
    let (tpp, cfg, docs) = br();
    let mut s = tpp.br_ssa_claims();
    edit_ssa(&mut s);
    let ssa = tpp.directory.sign("PS256", Value::Null, &s);
    let mut c = tpp.br_request_claims(&ssa);
    edit_req(&mut c);
    let subject = br_subject(&tpp);
    (
        run_with_cert(&cfg, &c.to_string(), &docs, Some(&subject)),
        cfg,
        c,
        s,
    )
}

#[test]
fn brazil_json_registration() {
    let (tpp, cfg, docs) = br();
    assert!(cfg.json_body);
    assert_eq!(cfg.forward, crate::config::Forward::Json);
    let subject = br_subject(&tpp);
    let r = run_with_cert(&cfg, &tpp.br_request(), &docs, Some(&subject));
    assert!(r.result.is_ok(), "{:?}", r.result);
    assert_eq!(
        r.fetched,
        vec![DIRECTORY_JWKS_URL.to_string()],
        "no software JWKS without a request JWT"
    );

    // The certificate is the identity: none, another software's, another organisation's.
    let cert_cases: Vec<(&str, Option<String>, &str)> = vec![
        ("no certificate", None, "required"),
        (
            "another software",
            Some(subject.replace(&tpp.software_id, "other-software")),
            "UID",
        ),
        (
            "another organisation",
            Some(subject.replace("OFBBR-", "OFBBR-X")),
            "organizationIdentifier",
        ),
    ];
    for (name, cert, why) in cert_cases {
        let r = run_with_cert(&cfg, &tpp.br_request(), &docs, cert.as_deref());
        let e = r.result.err().unwrap_or_else(|| panic!("{name}: accepted"));
        assert_eq!(
            e.source,
            Source::Rule(RuleId::CertificateBinding),
            "{name}: {e}"
        );
        assert_eq!(e.code, ErrorCode::InvalidClientMetadata, "{name}");
        assert!(e.description.contains(why), "{name}: {}", e.description);
    }
    // tls_client_auth: the subject DN sent must be the certificate's (in either order).
    let reversed = "C=BR,O=TPP Brasil,CN=tpp.example.com.br,2.5.4.97=OFBBR-0015800001041REAAY,0.9.2342.19200300.100.1.1=Cy7LCjSi0o7xDkt4mcZgDW";
    let (r, ..) = br_case(
        |_| {},
        |c| {
            c["token_endpoint_auth_method"] = json!("tls_client_auth");
            c["tls_client_auth_subject_dn"] = json!(reversed);
        },
    );
    assert!(r.result.is_ok(), "{:?}", r.result);
    let (r, ..) = br_case(
        |_| {},
        |c| {
            c["token_endpoint_auth_method"] = json!("tls_client_auth");
            c["tls_client_auth_subject_dn"] = json!("/C=BR/O=TPP Brasil/CN=tpp.example.com.br");
        },
    );
    assert_eq!(
        r.result.unwrap_err().source,
        Source::Rule(RuleId::CertificateBinding)
    );

    use RuleId::*;
    let cases: Vec<(&str, Run, Source, &str)> = vec![
        ("SSA older than 300 s", br_case(|s| s["iat"] = json!(now() - 400), |_| {}).0, Source::Rule(SsaSignature), "too old"),
        ("no Active role", br_case(|s| s["software_statement_roles"] = json!([{"role": "DADOS", "status": "Inactive"}]), |_| {}).0, Source::Rule(SoftwareStatus), "Active"),
        ("payments without an active PAGTO", br_case(|s| s["software_statement_roles"] = json!([{"role": "DADOS", "status": "Active"}, {"role": "PAGTO", "status": "Inactive"}]), |_| {}).0, Source::Rule(SoftwareRoles), "PAGTO"),
        ("redirect outside the SSA", br_case(|_| {}, |c| c["redirect_uris"] = json!(["https://other.example.com.br/cb"])).0, Source::Rule(RedirectUriSubset), "not registered"),
        ("ES256 metadata", br_case(|_| {}, |c| c["id_token_signed_response_alg"] = json!("ES256")).0, Source::Rule(SigningAlgorithms), "ES256"),
        ("no software statement", br_case(|_| {}, |c| { c.as_object_mut().unwrap().remove("software_statement"); }).0, Source::Envelope, "software_statement"),
    ];
    for (name, r, source, why) in cases {
        let e = r
            .result
            .as_ref()
            .err()
            .unwrap_or_else(|| panic!("{name}: accepted"));
        assert_eq!(e.source, source, "{name}: {e}");
        assert!(e.description.contains(why), "{name}: {}", e.description);
    }

    // An SSA signed ES256 is refused (PS256 only) before anything is fetched.
    let (tpp, cfg, docs) = br();
    let ssa = TestKey::ec("br-dir").sign_default(&tpp.br_ssa_claims());
    let r = run(&cfg, &tpp.br_request_claims(&ssa).to_string(), &docs);
    assert_eq!(
        r.result.unwrap_err().source,
        Source::Rule(RuleId::SsaSignature)
    );
    assert!(r.fetched.is_empty());

    // The JSON body forwarded refuses jwks by value and a foreign jwks_uri.
    let (_, cfg, c, s) = br_case(|_| {}, |c| c["jwks"] = json!({"keys": []}));
    let e = crate::pipeline::forward::json_body(
        &cfg,
        c.as_object().unwrap(),
        s.as_object().unwrap(),
        None,
    )
    .unwrap_err();
    assert!(e.description.contains("jwks"));
    let (_, cfg, c, s) = br_case(
        |_| {},
        |c| c["jwks_uri"] = json!("https://evil.example/jwks"),
    );
    let e = crate::pipeline::forward::json_body(
        &cfg,
        c.as_object().unwrap(),
        s.as_object().unwrap(),
        None,
    )
    .unwrap_err();
    assert!(e.description.contains("jwks_uri"));

    // Not a JSON object; a JWT body on the JSON profile.
    assert!(run(&cfg, "[1,2]", &docs).result.is_err());
    assert!(run(&cfg, &tpp.request(), &docs).result.is_err());
    assert!(run(&cfg, r#"{"a":1,"a":2}"#, &docs).result.is_err());
}

#[test]
fn brazil_refuses_rules_that_need_a_request_jwt() {
    let tpp = Tpp::new(TestKey::ec("d"), TestKey::ec("t"));
    for rule in [
        "request_signature",
        "issuance_time",
        "issuer",
        "request_jti",
    ] {
        let mut v = tpp.br_filter_config("d", "s");
        v["rules"] = json!({ rule: {"enabled": true} });
        let e = Config::from_json(v.to_string().as_bytes()).unwrap_err();
        assert_eq!(e.field, format!("rules.{rule}.enabled"), "{e}");
    }
}

#[test]
fn ssa_verdicts_are_reused_only_for_the_same_ssa_and_key_set() {
    let (tpp, cfg, docs) = uk();
    let mut verdicts = Verdicts::default();
    let ssa = tpp.ssa();
    let body = |ssa: &str| tpp.key.sign_default(&tpp.request_claims(ssa));
    assert!(run_full(&cfg, &body(&ssa), &docs, None, &mut verdicts)
        .result
        .is_ok());
    assert_eq!(verdicts.len(), 1);
    // The same SSA again (a fresh request each time): the verdict is reused.
    assert!(run_full(&cfg, &body(&ssa), &docs, None, &mut verdicts)
        .result
        .is_ok());
    assert_eq!(verdicts.len(), 1);
    // A corrupted copy is another SSA: verified, and refused.
    let bad = dcr_guard_testkit::dcr::corrupt_signature(&ssa);
    let r = run_full(&cfg, &body(&bad), &docs, None, &mut verdicts);
    assert_eq!(
        r.result.unwrap_err().source,
        Source::Rule(RuleId::SsaSignature)
    );
    // The directory rotates its key away: the old verdict no longer counts.
    let rotated = TestKey::ec("dir-2");
    let mut docs2 = docs.clone();
    docs2[0].1 = dcr_guard_testkit::keys::jwks(&[&rotated]);
    let r = run_full(&cfg, &body(&ssa), &docs2, None, &mut verdicts);
    assert_eq!(
        r.result.unwrap_err().source,
        Source::Rule(RuleId::SsaSignature)
    );
    // Time checks still run on a cached verdict: an expired SSA is refused every time, although
    // its signature verdict is remembered after the first.
    let expired = tpp.ssa_with(|c| c["exp"] = json!(now() - 3600));
    for _ in 0..2 {
        let r = run_full(&cfg, &body(&expired), &docs, None, &mut verdicts);
        let e = r.result.unwrap_err();
        assert!(e.description.contains("expired"), "{}", e.description);
    }
    assert_eq!(verdicts.len(), 2);
}

#[test]
fn the_verdict_cache_is_bounded_and_expires() {
    let (tpp, cfg, docs) = uk();
    let mut verdicts = Verdicts::new(2, 600);
    for _ in 0..5 {
        let body = tpp.request();
        assert!(run_full(&cfg, &body, &docs, None, &mut verdicts)
            .result
            .is_ok());
    }
    assert_eq!(verdicts.len(), 2);
    let text = tpp.ssa();
    let jws = std::rc::Rc::new(crate::jose::Jws::parse(&text).unwrap());
    let set = JwkSet::parse(tpp.directory_jwks().to_string().as_bytes(), 10).unwrap();
    let mut v = Verdicts::new(8, 10);
    v.remember(&text, &jws, &[&set], 100);
    let crate::keys::Hit {
        ssa: cached,
        sets,
        until,
        ..
    } = v.lookup(&text).unwrap();
    // The parsed SSA is handed out again (not parsed anew), with its key-set identity and expiry.
    assert!(std::rc::Rc::ptr_eq(&cached, &jws));
    assert_eq!(sets, Verdicts::set_id(&[&set]));
    assert_eq!(until, 110);
    // Compared whole: any other text (one character more or less) is a miss.
    assert!(v.lookup(&text[..text.len() - 1]).is_none());
    assert!(v.lookup(&format!("{text}A")).is_none());
    // Oversized SSAs are never kept.
    let big = "a".repeat(crate::keys::VERDICT_MAX_SSA_BYTES + 1);
    v.remember(&big, &jws, &[&set], 100);
    assert!(v.lookup(&big).is_none());
    // The byte budget bounds the entries too: ~8 MiB of 16 KiB SSAs is fewer than 200.
    let mut v = Verdicts::new(100_000, 600);
    for i in 0..1000 {
        let t = format!("{i:0>16384}");
        v.remember(&t, &jws, &[&set], 100);
    }
    assert!(v.len() < 200 && v.len() > 100, "{}", v.len());
    assert!(v.lookup(&format!("{:0>16384}", 999)).is_some());
    assert!(v.lookup(&format!("{:0>16384}", 0)).is_none());
}

#[test]
fn a_reused_ssa_skips_its_ssa_only_rules_and_software_url_parsing() {
    let (tpp, cfg, docs) = uk();
    let mut verdicts = Verdicts::default();
    let ssa = tpp.ssa();
    let body = || tpp.key.sign_default(&tpp.request_claims(&ssa));
    assert!(run_full(&cfg, &body(), &docs, None, &mut verdicts)
        .result
        .is_ok());
    let memo = verdicts.lookup(&ssa).unwrap().memo;
    let expected = crate::rules::SSA_ONLY_RULES
        .iter()
        .fold(0, |m, id| m | crate::rules::rule_bit(*id));
    assert_ne!(expected, 0);
    assert_eq!(memo.passed.get(), expected);
    assert_eq!(
        memo.software.borrow().as_ref().map(|s| s.url.clone()),
        Some(tpp.jwks_url())
    );
    // Planted facts are trusted on the next request with the same SSA: a software source that
    // points elsewhere is fetched (and fails here: the test keystore does not have it), and the
    // SSA-only rules are not run again.
    let mut elsewhere = memo.software.borrow().clone().unwrap();
    elsewhere.url = "https://elsewhere.example/jwks".into();
    memo.software.replace(Some(elsewhere));
    let r = run_full(&cfg, &body(), &docs, None, &mut verdicts);
    assert!(
        r.fetched
            .contains(&"https://elsewhere.example/jwks".to_string()),
        "{:?}",
        r.fetched
    );
    // A different SSA has its own memo, and an SSA that fails an SSA-only rule never records it.
    let inactive = tpp.ssa_with(|c| c["org_status"] = json!("Revoked"));
    let body = tpp.key.sign_default(&tpp.request_claims(&inactive));
    let r = run_full(&cfg, &body, &docs, None, &mut verdicts);
    assert_eq!(
        r.result.unwrap_err().source,
        Source::Rule(RuleId::SoftwareStatus)
    );
    let memo = verdicts.lookup(&inactive).unwrap().memo;
    assert_eq!(
        memo.passed.get() & crate::rules::rule_bit(RuleId::SoftwareStatus),
        0
    );
    // Planting the pass shows the rule is then skipped (only ever recorded after a real pass).
    memo.passed
        .set(memo.passed.get() | crate::rules::rule_bit(RuleId::SoftwareStatus));
    let body = tpp.key.sign_default(&tpp.request_claims(&inactive));
    assert!(run_full(&cfg, &body, &docs, None, &mut verdicts)
        .result
        .is_ok());
}

#[test]
fn a_remembered_verdict_is_trusted_without_verifying_again() {
    // Only successes are ever remembered (the pipeline's invariant). Planting a verdict for an
    // SSA whose signature is broken shows that a hit really skips the verification, and that
    // the key set's identity and the expiry are honoured.
    let (tpp, cfg, docs) = uk();
    let bad = dcr_guard_testkit::dcr::corrupt_signature(&tpp.ssa());
    let body = |ssa: &str| tpp.key.sign_default(&tpp.request_claims(ssa));
    let set = JwkSet::parse(docs[0].1.to_string().as_bytes(), 10).unwrap();
    let parsed = std::rc::Rc::new(crate::jose::Jws::parse(&bad).unwrap());
    let t = now() as i64;

    let mut verdicts = Verdicts::new(8, 600);
    verdicts.remember(&bad, &parsed, &[&set], t);
    assert!(run_full(&cfg, &body(&bad), &docs, None, &mut verdicts)
        .result
        .is_ok());
    // Remembered for another key set: verified, and refused.
    let other = JwkSet::parse(
        dcr_guard_testkit::keys::jwks(&[&TestKey::ec("x")])
            .to_string()
            .as_bytes(),
        10,
    )
    .unwrap();
    let mut verdicts = Verdicts::new(8, 600);
    verdicts.remember(&bad, &parsed, &[&other], t);
    let r = run_full(&cfg, &body(&bad), &docs, None, &mut verdicts);
    assert_eq!(
        r.result.unwrap_err().source,
        Source::Rule(RuleId::SsaSignature)
    );
    // Expired: verified, and refused.
    let mut verdicts = Verdicts::new(8, 600);
    verdicts.remember(&bad, &parsed, &[&set], t - 601);
    let r = run_full(&cfg, &body(&bad), &docs, None, &mut verdicts);
    assert_eq!(
        r.result.unwrap_err().source,
        Source::Rule(RuleId::SsaSignature)
    );
}

/// Drive `work` to its verdict with the documents of `docs`; `None` when it passed.
fn finish(cfg: &Config, work: &mut Work, docs: &[(String, Value)]) -> Option<DcrError> {
    let mut verdicts = Verdicts::default();
    for _ in 0..10 {
        match work.step(cfg, now() as i64, &mut verdicts) {
            Step::Forward => return None,
            Step::Reject(e) => return Some(e),
            Step::Call(_) => panic!("no calls here"),
            Step::Fetch(srcs) | Step::Refetch(srcs) => {
                for src in srcs {
                    let (_, doc) = docs.iter().find(|(u, _)| *u == src.url).unwrap();
                    let bytes = doc.to_string().into_bytes();
                    let f = Fetched::from_response(Some(200), &bytes, bytes.len(), 1 << 20, 100);
                    work.supply(&src.url, f);
                }
            }
        }
    }
    panic!("validation did not finish");
}

/// Validate `body` traced ([`Create::parse_traced`]): the verdict and each rule's outcome, in order
/// (`P` pass, `F` fail, `S` skipped).
fn traced(
    cfg: &Config,
    body: &str,
    docs: &[(String, Value)],
) -> (Result<(), DcrError>, Vec<(RuleId, char)>) {
    let short = |t: &[(RuleId, Outcome)]| -> Vec<(RuleId, char)> {
        t.iter()
            .map(|(r, o)| {
                let c = match o {
                    Outcome::Pass => 'P',
                    Outcome::Fail(_) => 'F',
                    Outcome::Skipped => 'S',
                };
                (*r, c)
            })
            .collect()
    };
    let mut verdicts = Verdicts::default();
    let mut create = match Create::parse_traced(cfg, body.as_bytes(), &verdicts) {
        Ok(c) => c,
        Err((e, t)) => {
            // The failing rule, when there is one, is the trace's last entry, with this error.
            if let Some((_, o)) = t.last() {
                assert_eq!(*o, Outcome::Fail(e.clone()));
            }
            return (Err(e), short(&t));
        }
    };
    for _ in 0..10 {
        match create.step(cfg, now() as i64, &mut verdicts) {
            Step::Forward => return (Ok(()), short(create.trace())),
            Step::Reject(e) => {
                assert_eq!(
                    create.trace().last().map(|(_, o)| o.clone()),
                    Some(Outcome::Fail(e.clone()))
                );
                return (Err(e), short(create.trace()));
            }
            Step::Fetch(srcs) | Step::Refetch(srcs) => {
                for src in srcs {
                    let doc = docs.iter().find(|(u, _)| *u == src.url).unwrap();
                    let bytes = doc.1.to_string().into_bytes();
                    let f = Fetched::from_response(Some(200), &bytes, bytes.len(), 1 << 20, 100);
                    create.supply(&src.url, f);
                }
            }
            Step::Call(_) => panic!("a create makes no calls"),
        }
    }
    panic!("validation did not finish");
}

#[test]
fn forwarding_says_how_a_request_that_passed_goes_on() {
    use crate::config::Forward;
    use crate::pipeline::forward::Forwarding;
    let (tpp, cfg, docs) = uk();
    let create = |cfg: &Config, body: &str| {
        Work::create(Create::parse(cfg, body.as_bytes(), &Verdicts::default()).unwrap())
    };

    // A create that passed: the fact headers of its SSA, the body as sent.
    let mut work = create(&cfg, &tpp.request());
    assert!(finish(&cfg, &mut work, &docs).is_none());
    match work.forwarding(&cfg) {
        Forwarding::Accepted { fact_headers, body } => {
            let ssa = work.created().unwrap().ssa_claims();
            assert_eq!(
                fact_headers,
                crate::pipeline::forward::fact_headers(&cfg, ssa)
            );
            assert!(body.is_none());
        }
        other => panic!("{other:?}"),
    }

    // `forward: json`: the JSON body to send instead.
    let mut json = cfg.clone();
    json.forward = Forward::Json;
    let mut work = create(&json, &tpp.request());
    assert!(finish(&json, &mut work, &docs).is_none());
    match work.forwarding(&json) {
        Forwarding::Accepted {
            body: Some(Ok(body)),
            ..
        } => {
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert!(v.get("software_statement").is_some());
            assert!(
                v.get("jti").is_none(),
                "envelope claims are not client metadata"
            );
        }
        other => panic!("{other:?}"),
    }

    // Report-only: a request that fails goes on, reported.
    let mut reporting = cfg.clone();
    reporting.report_only = true;
    let ssa = tpp.ssa();
    let mut claims = tpp.request_claims(&ssa);
    claims["aud"] = json!("another-bank");
    let failing = tpp.key.sign_default(&claims);
    let mut work = create(&reporting, &failing);
    assert!(finish(&reporting, &mut work, &docs).is_none());
    match work.forwarding(&reporting) {
        Forwarding::Reported { failures, body, .. } => {
            assert_eq!(failures.len(), 1);
            assert_eq!(failures[0].source, Source::Rule(RuleId::Audience));
            assert!(body.is_none());
        }
        other => panic!("{other:?}"),
    }

    // A management read: only its token was checked.
    let binding = crate::pipeline::Binding::start(
        &crate::binding::TokenMode::Delegate,
        Some("Bearer abc"),
        "client-1",
    )
    .unwrap();
    let work = Work::manage(binding, "client-1");
    assert!(matches!(work.forwarding(&cfg), Forwarding::Management));
}

/// (name, config, body, forwarded, trace)
type TraceCase<'a> = (&'a str, &'a Config, String, bool, Vec<(RuleId, char)>);

#[test]
fn trace_records_each_rule_in_order_and_stops_where_the_filter_stops() {
    use RuleId::*;
    let (tpp, cfg, docs) = uk();
    let mut report_only = cfg.clone();
    report_only.report_only = true;
    let claims = [
        SoftwareStatus,
        RequiredAttributes,
        Issuer,
        Audience,
        RedirectUriFormat,
        RedirectUriSubset,
        UriHostname,
        TokenEndpointAuth,
        SigningAlgorithms,
        GrantAndResponseTypes,
        SoftwareRoles,
    ];
    assert!(claims.iter().all(|r| cfg.rules.claims.is_on(*r)));
    let head = [
        (SsaIssuer, 'P'),
        (SsaSignature, 'P'),
        (RequestSignature, 'P'),
        (IssuanceTime, 'P'),
    ];
    let all_pass: Vec<(RuleId, char)> = head
        .into_iter()
        .chain(claims.iter().map(|r| (*r, 'P')))
        .collect();
    let bad_aud = tpp.request_with(|c| c["aud"] = json!("another-bank"));
    let mut aud_fails = all_pass.clone();
    aud_fails[7] = (Audience, 'F');
    let bad_ssa = tpp
        .key
        .sign_default(&tpp.request_claims(&dcr_guard_testkit::dcr::corrupt_signature(&tpp.ssa())));
    let evil = tpp
        .key
        .sign_default(&tpp.request_claims(&tpp.ssa_with(|c| c["iss"] = json!("Evil"))));
    let unsigned = dcr_guard_testkit::keys::unsigned_none(&tpp.request_claims(&tpp.ssa()));
    let cases: Vec<TraceCase<'_>> = vec![
        ("valid", &cfg, tpp.request(), true, all_pass.clone()),
        (
            "wrong audience",
            &cfg,
            bad_aud.clone(),
            false,
            aud_fails[..8].to_vec(),
        ),
        (
            "bad SSA signature",
            &cfg,
            bad_ssa.clone(),
            false,
            vec![(SsaIssuer, 'P'), (SsaSignature, 'F')],
        ),
        (
            "untrusted issuer",
            &cfg,
            evil,
            false,
            vec![(SsaIssuer, 'F')],
        ),
        // Refused while parsing, before the create exists.
        (
            "alg none",
            &cfg,
            unsigned,
            false,
            vec![(RequestSignature, 'F')],
        ),
        ("not a JWS", &cfg, "hello".into(), false, vec![]),
        // Report-only: every rule runs; one that depends on a failed one is skipped.
        (
            "report-only wrong audience",
            &report_only,
            bad_aud,
            true,
            aud_fails.clone(),
        ),
        (
            "report-only bad SSA signature",
            &report_only,
            bad_ssa,
            true,
            [
                (SsaIssuer, 'P'),
                (SsaSignature, 'F'),
                (RequestSignature, 'S'),
                (IssuanceTime, 'P'),
            ]
            .into_iter()
            .chain(claims.iter().map(|r| (*r, 'P')))
            .collect(),
        ),
    ];
    for (name, cfg, body, forwarded, want) in cases {
        let (verdict, trace) = traced(cfg, &body, &docs);
        assert_eq!(verdict.is_ok(), forwarded, "{name}: {verdict:?}");
        assert_eq!(trace, want, "{name}");
        // The untraced create is not affected: same verdict.
        let plain = run(cfg, &body, &docs);
        assert_eq!(plain.result, verdict, "{name}");
    }
}

#[test]
fn a_member_name_twice_anywhere_in_a_clients_json_is_refused_with_a_sentence() {
    use dcr_guard_testkit::keys::b64;
    // Splice `dup` into a JSON object's text as its first member.
    let spliced = |v: &Value, dup: &str| format!("{{{dup},{}", &v.to_string()[1..]);
    let (tpp, uk_cfg, _) = uk();
    let (_, br_cfg, _) = br();
    let nested = r#""jwks":{"keys":[{"kty":"EC","kty":"RSA"}]}"#;
    let mut ssa_claims = tpp.ssa_claims();
    ssa_claims
        .as_object_mut()
        .unwrap()
        .remove("organisation_competent_authority_claims");
    let ssa = tpp.ssa();
    let raw_ssa = |payload: String| {
        tpp.directory
            .sign_payload("ES256", Value::Null, payload.as_bytes())
    };
    let request_with_ssa = |ssa: &str| tpp.key.sign_default(&tpp.request_claims(ssa));
    let raw_request = |payload: String| {
        tpp.key
            .sign_payload("ES256", Value::Null, payload.as_bytes())
    };
    // The request JWT's header, assembled by hand (a signature is not needed: parsing refuses).
    let with_header = |header: &str| {
        let t = request_with_ssa(&ssa);
        let rest = t.split_once('.').unwrap().1.to_string();
        format!("{}.{rest}", b64(header))
    };
    let cases: Vec<(&str, &Config, String, ErrorCode, &str)> = vec![
        (
            "request JWT payload, nested in an array",
            &uk_cfg,
            raw_request(spliced(&tpp.request_claims(&ssa), nested)),
            ErrorCode::InvalidRequest,
            "the request JWT's payload has the member \"kty\" twice in the object at jwks.keys[0]",
        ),
        (
            "request JWT payload, top level",
            &uk_cfg,
            raw_request(spliced(&tpp.request_claims(&ssa), r#""iss":"x""#)),
            ErrorCode::InvalidRequest,
            "the request JWT's payload has the member \"iss\" twice",
        ),
        (
            "request JWT header",
            &uk_cfg,
            with_header(r#"{"alg":"ES256","kid":"tpp","x":{"a":1,"a":2}}"#),
            ErrorCode::InvalidRequest,
            "the request JWT's header has the member \"a\" twice in the object at x",
        ),
        (
            "SSA payload, nested",
            &uk_cfg,
            request_with_ssa(&raw_ssa(spliced(
                &ssa_claims,
                r#""organisation_competent_authority_claims":{"status":"Active","status":"Revoked"}"#,
            ))),
            ErrorCode::InvalidSoftwareStatement,
            "the software statement's payload has the member \"status\" twice in the object at organisation_competent_authority_claims",
        ),
        (
            "JSON body, nested",
            &br_cfg,
            spliced(&tpp.br_request_claims(&ssa), nested),
            ErrorCode::InvalidRequest,
            "the request body has the member \"kty\" twice in the object at jwks.keys[0]",
        ),
    ];
    for (name, cfg, body, code, want) in cases {
        let e = Create::parse(cfg, body.as_bytes(), &Verdicts::default())
            .err()
            .unwrap_or_else(|| panic!("{name}: accepted"));
        assert_eq!((e.status, e.code), (400, code), "{name}: {e}");
        assert_eq!(e.description, want, "{name}");
    }
}
