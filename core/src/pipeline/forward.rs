//! Forwarding (spec §6): the RFC 7591 JSON body built from the verified claims, verified-facts
//! headers, and the RFC 7592 body rules of an update.

use serde_json::{Map, Value};

use crate::claims::{opt_str, Claims};
use crate::config::Config;
use crate::error::{DcrError, Source};

/// JWT envelope claims that are not client metadata.
const ENVELOPE_CLAIMS: [&str; 6] = ["iss", "aud", "exp", "iat", "nbf", "jti"];

/// Members an update (PUT) must not carry (RFC 7592 §2.2).
const SERVER_ISSUED: [&str; 4] = [
    "registration_access_token",
    "registration_client_uri",
    "client_secret_expires_at",
    "client_id_issued_at",
];

/// RFC 7592 §2.2: no server-issued members; a `client_id`, when sent, equals the path's.
pub fn update_rules(request: &Claims, client_id: &str) -> Result<(), DcrError> {
    if let Some(m) = SERVER_ISSUED.iter().find(|m| request.contains_key(**m)) {
        return Err(DcrError::metadata(
            Source::Update,
            format!("an update must not carry `{m}`"),
        ));
    }
    match request.get("client_id") {
        None => Ok(()),
        Some(Value::String(id)) if id == client_id => Ok(()),
        Some(_) => Err(DcrError::metadata(
            Source::Update,
            "`client_id` in the body differs from the one in the path",
        )),
    }
}

/// The JSON body for the AS: the verified request claims without the JWT envelope claims, the
/// SSA's values winning over conflicting request metadata (RFC 7591 §3.1.1), `software_statement`
/// as sent, and on an update the path's `client_id` when the body has none. A request carrying
/// `jwks` by value while the SSA names a JWKS URL is refused (RFC 7591 forbids both), and so is
/// a `jwks_uri` other than the SSA's.
pub fn json_body(
    cfg: &Config,
    request: &Claims,
    ssa: &Claims,
    client_id: Option<&str>,
) -> Result<Vec<u8>, DcrError> {
    let ssa_jwks_uri = opt_str(ssa, &cfg.ssa_software_jwks_claim).ok().flatten();
    if request.contains_key("jwks") && ssa_jwks_uri.is_some() {
        return Err(DcrError::metadata(
            Source::Forwarding,
            "`jwks` by value cannot be registered: the software statement names a JWKS URL",
        ));
    }
    if let (Some(sent), Some(ssa_uri)) = (request.get("jwks_uri"), ssa_jwks_uri) {
        if sent.as_str() != Some(ssa_uri) {
            return Err(DcrError::metadata(
                Source::Forwarding,
                "`jwks_uri` must be the software statement's JWKS URL",
            ));
        }
    }
    let mut out: Map<String, Value> = request
        .iter()
        .filter(|(k, _)| !ENVELOPE_CLAIMS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (ssa_claim, name) in &cfg.ssa_metadata {
        if let Some(v @ Value::String(_)) = ssa.get(ssa_claim) {
            out.insert(name.clone(), v.clone());
        }
    }
    if let Some(id) = client_id {
        out.entry("client_id".to_string())
            .or_insert_with(|| Value::String(id.to_string()));
    }
    serde_json::to_vec(&Value::Object(out))
        .map_err(|_| DcrError::metadata(Source::Forwarding, "cannot encode the registration"))
}

/// Longest value of a verified-facts header.
const MAX_FACT_LEN: usize = 256;

/// The verified-facts headers: (header, value) for each configured SSA claim that is a non-empty
/// string of at most 256 characters, escaped like every client-derived value
/// ([`crate::escape::escape`]: printable ASCII, quotes and backslashes escaped). Other values
/// (not a string, empty, longer) are left out rather than cut.
pub fn fact_headers(cfg: &Config, ssa: &Claims) -> Vec<(String, String)> {
    cfg.fact_headers
        .iter()
        .filter_map(|(claim, header)| {
            let v = opt_str(ssa, claim).ok().flatten()?;
            let fit = !v.is_empty() && v.chars().count() <= MAX_FACT_LEN;
            // An escaped value can be longer than the value: bounded by the worst case.
            fit.then(|| {
                (
                    header.clone(),
                    crate::escape::escape(v, MAX_FACT_LEN.saturating_mul(10)),
                )
            })
        })
        .collect()
}

/// How a request that passed goes on ([`super::Work::forwarding`]).
#[derive(Debug)]
pub enum Forwarding<'a> {
    /// A management read or delete: only its token was checked.
    Management,
    /// A registration (create or update) that passed every check: the verified-fact headers to
    /// set and, with `forward: json`, the body replacing the client's (or why it cannot be built).
    Accepted {
        fact_headers: Vec<(String, String)>,
        body: Option<Result<Vec<u8>, DcrError>>,
    },
    /// Report-only mode: a registration that failed checks goes on anyway; the failures and the
    /// rules skipped because of them are reported (no fact headers: nothing is verified enough).
    Reported {
        failures: &'a [DcrError],
        skipped: &'a [crate::error::RuleId],
        body: Option<Result<Vec<u8>, DcrError>>,
    },
}

impl super::Work {
    /// What goes on to the authorization server, once the validation said [`super::Step::Forward`]
    /// and the replay check passed.
    pub fn forwarding(&self, cfg: &Config) -> Forwarding<'_> {
        let Some(create) = self.created() else {
            return Forwarding::Management;
        };
        let body = (cfg.forward == crate::config::Forward::Json).then(|| {
            json_body(
                cfg,
                create.request_claims(),
                create.ssa_claims(),
                self.client_id(),
            )
        });
        let (failures, skipped) = create.report();
        if failures.is_empty() {
            Forwarding::Accepted {
                fact_headers: fact_headers(cfg, create.ssa_claims()),
                body,
            }
        } else {
            Forwarding::Reported {
                failures,
                skipped,
                body,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(extra: Value) -> Config {
        let mut v = json!({
            "directories": [{"issuer": "OpenBanking Ltd", "jwks": [{"url": "https://k.example/jwks", "upstream": "k"}]}],
            "rules": {"audience": {"audiences": ["bank"]}},
            "fact_headers": [{"claim": "software_id", "header": "X-TPP-Software-Id"}, {"claim": "org_id", "header": "x-tpp-org-id"}]
        });
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        Config::from_json(v.to_string().as_bytes()).unwrap()
    }

    fn obj(v: Value) -> Claims {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn json_body_drops_envelope_and_prefers_the_ssa() {
        let c = cfg(json!({"forward": "json"}));
        let req = obj(json!({
            "iss": "sw", "aud": "bank", "exp": 1, "iat": 1, "nbf": 1, "jti": "j",
            "redirect_uris": ["https://a.example/cb"], "client_name": "Mine",
            "software_statement": "a.b.c", "software_id": "other"
        }));
        let ssa = obj(json!({
            "software_id": "sw", "software_client_name": "Directory name",
            "software_jwks_endpoint": "https://keystore.example/sw.jwks", "software_logo_uri": 5
        }));
        let body: Value =
            serde_json::from_slice(&json_body(&c, &req, &ssa, None).unwrap()).unwrap();
        for k in ENVELOPE_CLAIMS {
            assert!(body.get(k).is_none(), "{k} kept");
        }
        assert_eq!(body["client_name"], "Directory name");
        assert_eq!(body["jwks_uri"], "https://keystore.example/sw.jwks");
        assert_eq!(body["software_id"], "sw");
        assert_eq!(body["software_statement"], "a.b.c");
        assert_eq!(body["redirect_uris"], json!(["https://a.example/cb"]));
        assert!(
            body.get("logo_uri").is_none(),
            "non-string SSA value copied"
        );
        assert!(body.get("client_id").is_none());

        let with_id: Value =
            serde_json::from_slice(&json_body(&c, &req, &ssa, Some("c1")).unwrap()).unwrap();
        assert_eq!(with_id["client_id"], "c1");
    }

    #[test]
    fn a_jwks_uri_other_than_the_ssas_is_refused() {
        let c = cfg(json!({}));
        let ssa = obj(json!({"software_jwks_endpoint": "https://k.example/jwks"}));
        let e = json_body(
            &c,
            &obj(json!({"jwks_uri": "https://evil.example/jwks"})),
            &ssa,
            None,
        )
        .unwrap_err();
        assert!(e.description.contains("jwks_uri"));
        assert!(json_body(&c, &obj(json!({"jwks_uri": 5})), &ssa, None).is_err());
        assert!(json_body(
            &c,
            &obj(json!({"jwks_uri": "https://k.example/jwks"})),
            &ssa,
            None
        )
        .is_ok());
    }

    #[test]
    fn jwks_by_value_is_refused_when_the_ssa_names_a_url() {
        let c = cfg(json!({}));
        let req = obj(json!({"jwks": {"keys": []}}));
        let ssa = obj(json!({"software_jwks_endpoint": "https://k.example/jwks"}));
        let e = json_body(&c, &req, &ssa, None).unwrap_err();
        assert_eq!(
            (e.status, e.code.as_str()),
            (400, "invalid_client_metadata")
        );
        assert!(json_body(&c, &req, &obj(json!({})), None).is_ok());
    }

    #[test]
    fn update_rules_table() {
        for m in SERVER_ISSUED {
            let e = update_rules(&obj(json!({ m: "x" })), "c1").unwrap_err();
            assert!(e.description.contains(m));
        }
        assert!(update_rules(&obj(json!({"client_id": "c1"})), "c1").is_ok());
        assert!(update_rules(&obj(json!({})), "c1").is_ok());
        let e = update_rules(&obj(json!({"client_id": "c2"})), "c1").unwrap_err();
        assert!(!e.description.contains("c2") && !e.description.contains("c1"));
        assert!(update_rules(&obj(json!({"client_id": 5})), "c1").is_err());
    }

    #[test]
    fn facts_are_strings_fit_for_headers() {
        let c = cfg(json!({}));
        assert_eq!(c.fact_headers[0].1, "x-tpp-software-id");
        let f = fact_headers(
            &c,
            &obj(json!({"software_id": "sw-1", "org_id": "bad\r\nx: y"})),
        );
        assert_eq!(
            f,
            vec![
                ("x-tpp-software-id".to_string(), "sw-1".to_string()),
                ("x-tpp-org-id".to_string(), "bad\\r\\nx: y".to_string())
            ]
        );
        // Escaped like every sink: printable ASCII, quotes and backslashes escaped; values that
        // are not strings, empty or too long are left out.
        let cases = [
            (
                json!("Soci\u{e9}t\u{e9} \"G\""),
                Some("Soci\\u{e9}t\\u{e9} \\\"G\\\""),
            ),
            (json!("a\tb\u{7f}"), Some("a\\tb\\u{7f}")),
            (json!(""), None),
            (json!(5), None),
            (json!("x".repeat(MAX_FACT_LEN + 1)), None),
        ];
        for (org, want) in cases {
            let f = fact_headers(&c, &obj(json!({ "org_id": org })));
            assert_eq!(f.first().map(|(_, v)| v.as_str()), want, "{org}");
            assert!(f
                .iter()
                .all(|(_, v)| v.bytes().all(|b| (0x20..0x7f).contains(&b))));
        }
    }

    #[test]
    fn config_refusals() {
        let base = |extra: Value| {
            let mut v = json!({
                "directories": [{"issuer": "i", "jwks": [{"url": "https://k.example/jwks", "upstream": "k"}]}],
                "rules": {"audience": {"audiences": ["bank"]}}
            });
            for (k, val) in extra.as_object().unwrap() {
                v[k] = val.clone();
            }
            Config::from_json(v.to_string().as_bytes())
        };
        let cases = vec![
            (json!({"forward": "json", "hold_headers": false}), "forward"),
            (json!({"forward": "xml"}), "forward"),
            (
                json!({"fact_headers": [{"claim": "software_id", "header": "x"}], "hold_headers": false}),
                "fact_headers",
            ),
            (
                json!({"fact_headers": [{"claim": "software_id", "header": "Host"}]}),
                "fact_headers[0].header",
            ),
            (
                json!({"fact_headers": [{"claim": "software_id", "header": "x a"}]}),
                "fact_headers[0].header",
            ),
        ];
        for (extra, field) in cases {
            let e = base(extra.clone()).unwrap_err();
            assert_eq!(e.field, field, "{extra}");
        }
    }
}
