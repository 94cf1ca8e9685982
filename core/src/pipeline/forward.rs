//! Forwarding (spec §6): the RFC 7591 JSON body built from the verified claims, verified-facts
//! headers, and the RFC 7592 body rules of an update.

use serde_json::{Map, Value};

use crate::claims::{opt_str, scope_tokens, Claims};
use crate::config::Config;
use crate::error::{DcrError, Source};
use crate::profile::Precedence;

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
/// SSA's value of every registration metadata name it carries winning over the request's
/// (RFC 7591 §3.1.1; [`crate::config::Config::ssa_metadata`]: a request may still narrow a list
/// such as `redirect_uris` to entries the SSA lists), `software_statement` as sent, and on an
/// update the path's `client_id` when the body has none. A `jwks_uri` other than the SSA's is
/// refused, and so is a registration that would carry both `jwks` and `jwks_uri` (RFC 7591 §2:
/// `jwks` by value while the SSA names a JWKS URL).
pub fn json_body(
    cfg: &Config,
    request: &Claims,
    ssa: &Claims,
    client_id: Option<&str>,
) -> Result<Vec<u8>, DcrError> {
    let ssa_jwks_uri = opt_str(ssa, &cfg.ssa_software_jwks_claim).ok().flatten();
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
    for m in &cfg.ssa_metadata {
        if let Some(theirs) = ssa.get(&m.ssa_claim) {
            let value = match m.precedence {
                Precedence::Narrow if narrows(out.get(&m.name), theirs) => continue,
                _ => theirs.clone(),
            };
            // The request's language-tagged variants of a name the SSA supplies (RFC 7591 §2.2:
            // `client_name#en`, `logo_uri#fr`, ...) would let an AS show the request's value
            // after all: they go with it.
            let tagged = format!("{}#", m.name);
            out.retain(|k, _| !k.starts_with(&tagged));
            out.insert(m.name.clone(), value);
        }
    }
    if out.contains_key("jwks") && out.contains_key("jwks_uri") {
        return Err(DcrError::metadata(
            Source::Forwarding,
            if ssa_jwks_uri.is_some() {
                "`jwks` by value cannot be registered: the software statement names a JWKS URL"
            } else {
                "a registration cannot carry both `jwks` and `jwks_uri`"
            },
        ));
    }
    if let Some(id) = client_id {
        out.entry("client_id".to_string())
            .or_insert_with(|| Value::String(id.to_string()));
    }
    serde_json::to_vec(&Value::Object(out))
        .map_err(|_| DcrError::metadata(Source::Forwarding, "cannot encode the registration"))
}

/// The request's value chooses within the SSA's ([`Precedence::Narrow`]): both are JSON arrays,
/// or both space-separated strings, the request's is not empty (an empty one would leave the
/// choice to the AS's defaults, which may be wider than the SSA's) and every entry of it is in
/// the SSA's.
fn narrows(request: Option<&Value>, ssa: &Value) -> bool {
    match (request, ssa) {
        (Some(Value::Array(mine)), Value::Array(theirs)) => {
            !mine.is_empty() && mine.iter().all(|v| theirs.contains(v))
        }
        (Some(Value::String(mine)), Value::String(theirs)) => {
            let theirs = scope_tokens(theirs);
            let mine = scope_tokens(mine);
            !mine.is_empty() && mine.iter().all(|t| theirs.contains(t))
        }
        _ => false,
    }
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
        // The directory's value, whatever its type: the AS judges it (the request's never wins).
        assert_eq!(body["logo_uri"], json!(5));
        assert!(body.get("client_id").is_none());

        let with_id: Value =
            serde_json::from_slice(&json_body(&c, &req, &ssa, Some("c1")).unwrap()).unwrap();
        assert_eq!(with_id["client_id"], "c1");
    }

    /// The configuration of `profile` for a test TPP.
    fn profile_cfg(profile: &str) -> Config {
        use dcr_guard_testkit::{dcr::Tpp, keys::TestKey};
        let tpp = Tpp::new(TestKey::ec("dir"), TestKey::ec("tpp"));
        let v = match profile {
            "au-cdr" => tpp.au_filter_config("d", "s"),
            "br-ofb" => tpp.br_filter_config("d", "s"),
            _ => tpp.filter_config("d", "s"),
        };
        Config::from_json(v.to_string().as_bytes()).unwrap()
    }

    /// A forwarded member and its value (`None`: absent).
    type Member = (&'static str, Option<Value>);

    #[test]
    fn every_registration_metadata_name_the_ssa_carries_wins() {
        // (profile, SSA claims, request claims, forwarded members: Some(value) or None = absent)
        let a = "https://tpp.example/a";
        let b = "https://tpp.example/b";
        let cases: Vec<(&str, Value, Value, Vec<Member>)> = vec![
            // RFC 7591 names the SSA carries under their own name win, whatever the fixed list.
            (
                "uk-obie",
                json!({"software_version": "2.0", "software_id": "sw", "contacts": ["ops@tpp.example"]}),
                json!({"software_version": "9.9", "software_id": "other", "contacts": ["x@evil.example"]}),
                vec![
                    ("software_version", Some(json!("2.0"))),
                    ("software_id", Some(json!("sw"))),
                    ("contacts", Some(json!(["ops@tpp.example"]))),
                ],
            ),
            // The UK names, mapped; what is not registration metadata is not copied.
            (
                "uk-obie",
                json!({
                    "software_client_name": "Dir", "software_client_uri": "https://c", "software_logo_uri": "https://l",
                    "software_tos_uri": "https://t", "software_policy_uri": "https://p",
                    "software_jwks_endpoint": "https://k", "iss": "OpenBanking Ltd", "iat": 1, "jti": "j",
                    "org_id": "o", "org_name": "n", "org_status": "Active", "software_roles": ["AISP"],
                    "software_environment": "sandbox", "software_client_id": "cid", "software_mode": "Live",
                    "client_id": "cid2", "registration_access_token": "rat",
                    "software_client_description": "d"
                }),
                json!({"client_name": "Mine", "logo_uri": "https://mine"}),
                vec![
                    ("client_name", Some(json!("Dir"))),
                    ("client_uri", Some(json!("https://c"))),
                    ("logo_uri", Some(json!("https://l"))),
                    ("tos_uri", Some(json!("https://t"))),
                    ("policy_uri", Some(json!("https://p"))),
                    ("jwks_uri", Some(json!("https://k"))),
                    ("iss", None),
                    ("iat", None),
                    ("jti", None),
                    ("org_id", None),
                    ("org_name", None),
                    ("org_status", None),
                    ("software_roles", None),
                    ("software_environment", None),
                    ("client_id", None),
                    ("registration_access_token", None),
                    ("software_client_id", None),
                    ("software_client_name", None),
                    ("client_description", None),
                ],
            ),
            // Redirect URIs: the request may choose among the SSA's; anything else is the SSA's.
            (
                "uk-obie",
                json!({"software_redirect_uris": [a, b]}),
                json!({"redirect_uris": [a]}),
                vec![("redirect_uris", Some(json!([a])))],
            ),
            (
                "uk-obie",
                json!({"software_redirect_uris": [a, b]}),
                json!({"redirect_uris": [a, "https://evil.example/cb"]}),
                vec![("redirect_uris", Some(json!([a, b])))],
            ),
            (
                "uk-obie",
                json!({"software_redirect_uris": [a]}),
                json!({"redirect_uris": a}),
                vec![("redirect_uris", Some(json!([a])))],
            ),
            (
                "uk-obie",
                json!({"software_redirect_uris": [a]}),
                json!({}),
                vec![("redirect_uris", Some(json!([a])))],
            ),
            // An empty choice is no choice: the SSA's list (not the AS's defaults).
            (
                "uk-obie",
                json!({"software_redirect_uris": [a], "scope": "openid accounts"}),
                json!({"redirect_uris": [], "scope": ""}),
                vec![
                    ("redirect_uris", Some(json!([a]))),
                    ("scope", Some(json!("openid accounts"))),
                ],
            ),
            // The request's language-tagged variants (RFC 7591 §2.2) of a name the SSA supplies
            // go with the request's value; other tagged names stay.
            (
                "uk-obie",
                json!({"software_client_name": "Dir", "software_logo_uri": "https://l"}),
                json!({"client_name#en": "Evil", "logo_uri#fr": "https://evil", "tos_uri#en": "https://t-en"}),
                vec![
                    ("client_name", Some(json!("Dir"))),
                    ("client_name#en", None),
                    ("logo_uri", Some(json!("https://l"))),
                    ("logo_uri#fr", None),
                    ("tos_uri#en", Some(json!("https://t-en"))),
                ],
            ),
            // A same-named claim loses to the regime's mapped one.
            (
                "uk-obie",
                json!({"client_name": "plain", "software_client_name": "mapped"}),
                json!({}),
                vec![("client_name", Some(json!("mapped")))],
            ),
            // AU: the CDR's own registration metadata comes from the SSA; scope narrows.
            (
                "au-cdr",
                json!({
                    "client_name": "Dir", "org_id": "o", "org_name": "n", "legal_entity_id": "le",
                    "legal_entity_name": "len", "client_description": "d", "revocation_uri": "https://r",
                    "recipient_base_uri": "https://b", "software_roles": "data-recipient-software-product",
                    "redirect_uris": [a, b], "scope": "openid bank:accounts.basic:read cdr:registration",
                    "iss": "cdr-register", "iat": 1, "exp": 2, "jti": "j"
                }),
                json!({"client_name": "Mine", "org_id": "mine", "redirect_uris": [b], "scope": "openid cdr:registration"}),
                vec![
                    ("client_name", Some(json!("Dir"))),
                    ("org_id", Some(json!("o"))),
                    ("org_name", Some(json!("n"))),
                    ("legal_entity_id", Some(json!("le"))),
                    ("legal_entity_name", Some(json!("len"))),
                    ("client_description", Some(json!("d"))),
                    ("revocation_uri", Some(json!("https://r"))),
                    ("recipient_base_uri", Some(json!("https://b"))),
                    (
                        "software_roles",
                        Some(json!("data-recipient-software-product")),
                    ),
                    ("redirect_uris", Some(json!([b]))),
                    ("scope", Some(json!("openid cdr:registration"))),
                    ("iss", None),
                    ("iat", None),
                    ("exp", None),
                    ("jti", None),
                ],
            ),
            (
                "au-cdr",
                json!({"scope": "openid cdr:registration"}),
                json!({"scope": "openid bank:transactions:read"}),
                vec![("scope", Some(json!("openid cdr:registration")))],
            ),
            // BR: the Open Finance names, webhooks within the SSA's.
            (
                "br-ofb",
                json!({
                    "software_client_name": "Dir", "software_version": "3", "software_api_webhook_uris": [a, b],
                    "software_redirect_uris": [a], "software_jwks_uri": "https://k",
                    "org_number": "1", "software_statement_roles": [], "software_mode": "Live"
                }),
                json!({"software_version": "1", "webhook_uris": [b], "redirect_uris": [a]}),
                vec![
                    ("client_name", Some(json!("Dir"))),
                    ("software_version", Some(json!("3"))),
                    ("webhook_uris", Some(json!([b]))),
                    ("redirect_uris", Some(json!([a]))),
                    ("jwks_uri", Some(json!("https://k"))),
                    ("org_number", None),
                    ("software_statement_roles", None),
                    ("software_mode", None),
                ],
            ),
            (
                "br-ofb",
                json!({"software_api_webhook_uris": [a]}),
                json!({"webhook_uris": [b]}),
                vec![("webhook_uris", Some(json!([a])))],
            ),
        ];
        for (i, (profile, ssa, req, want)) in cases.into_iter().enumerate() {
            let c = profile_cfg(profile);
            let body: Value =
                serde_json::from_slice(&json_body(&c, &obj(req), &obj(ssa), None).unwrap())
                    .unwrap();
            for (name, value) in want {
                assert_eq!(
                    body.get(name),
                    value.as_ref(),
                    "case {i} ({profile}): {name}"
                );
            }
        }
    }

    #[test]
    fn a_registration_never_carries_both_jwks_and_jwks_uri() {
        let c = cfg(json!({}));
        let both = obj(json!({"jwks": {"keys": []}, "jwks_uri": "https://k.example/jwks"}));
        let e = json_body(&c, &both, &obj(json!({})), None).unwrap_err();
        assert_eq!(
            (e.status, e.code.as_str()),
            (400, "invalid_client_metadata")
        );
        // A key set by value from the SSA, a URL from the request: the same contradiction.
        let e = json_body(
            &c,
            &obj(json!({"jwks_uri": "https://k.example/jwks"})),
            &obj(json!({"jwks": {"keys": []}})),
            None,
        )
        .unwrap_err();
        assert_eq!(e.status, 400);
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
