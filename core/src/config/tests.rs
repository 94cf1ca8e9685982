//! The configuration parser against documents: what is accepted, what each field resolves to, and
//! what is refused with which field named.
#![allow(clippy::type_complexity)]

use super::*;
use crate::jose::Alg;
use serde_json::json;

pub fn minimal() -> serde_json::Value {
    json!({
        "directories": [{
            "issuer": "OpenBanking Ltd",
            "jwks": [{"url": "https://keystore.openbanking.org.uk/keystore/openbanking.jwks", "upstream": "ob_keystore"}]
        }],
        "software_jwks_hosts": [{"host": "keystore.openbanking.org.uk", "upstream": "ob_keystore"}],
        "rules": {"audience": {"audiences": ["0015800001HQQrZAAX"]}}
    })
}

fn parse(v: &serde_json::Value) -> Result<Config, ConfigError> {
    Config::from_json(v.to_string().as_bytes())
}

fn refused(v: serde_json::Value) -> ConfigError {
    parse(&v).unwrap_err()
}

#[test]
fn defaults() {
    let c = parse(&minimal()).unwrap();
    assert_eq!(c.profile, Profile::UkObie);
    assert_eq!(c.path, "/register");
    assert!(c.hold_headers);
    assert_eq!(c.leeway, 60);
    assert_eq!(c.rules.max_request_age, 3600);
    assert_eq!(c.limits.body_bytes, 65536);
    assert_eq!(c.limits.jwks_bytes, 262144);
    assert_eq!(c.limits.jwks_keys, 100);
    assert_eq!(c.limits.callout_timeout_ms, 2000);
    assert_eq!(c.request_algorithms, vec![Alg::Ps256, Alg::Es256]);
    assert_eq!(c.ssa_software_jwks_claim, "software_jwks_endpoint");
    let d = c.directory("OpenBanking Ltd").unwrap();
    assert_eq!(d.jwks[0].authority, "keystore.openbanking.org.uk");
    assert_eq!(d.jwks[0].path, "/keystore/openbanking.jwks");
    assert!(c.rules.ssa_issuer && c.rules.ssa_signature && c.rules.request_signature);
}

#[test]
fn unknown_fields_are_named() {
    let mut v = minimal();
    v["directories"][0]["jwks"][0]["urll"] = json!("x");
    let e = refused(v);
    assert_eq!(e.field, "directories[0].jwks[0].urll");
    assert!(e.message.contains("unknown field `urll`"), "{e}");

    let mut v = minimal();
    v["bogus"] = json!(1);
    let e = refused(v);
    assert!(e.to_string().contains("bogus"), "{e}");

    let mut v = minimal();
    v["rules"]["not_a_rule"] = json!({"enabled": true});
    assert!(refused(v).to_string().contains("not_a_rule"));
}

#[test]
fn wrong_types_are_named() {
    let mut v = minimal();
    v["leeway_seconds"] = json!("60");
    let e = refused(v);
    assert_eq!(e.field, "leeway_seconds");
}

#[test]
fn refusals() {
    let cases: Vec<(&str, Box<dyn Fn(&mut serde_json::Value)>, &str)> = vec![
        (
            "no directories",
            Box::new(|v| v["directories"] = json!([])),
            "directories",
        ),
        (
            "missing directories",
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("directories");
            }),
            "directories",
        ),
        (
            "http jwks",
            Box::new(|v| v["directories"][0]["jwks"][0]["url"] = json!("http://k.example/jwks")),
            "directories[0].jwks[0].url",
        ),
        (
            "relative jwks",
            Box::new(|v| v["directories"][0]["jwks"][0]["url"] = json!("/jwks")),
            "directories[0].jwks[0].url",
        ),
        (
            "userinfo jwks",
            Box::new(|v| {
                v["directories"][0]["jwks"][0]["url"] = json!("https://u:p@k.example/jwks")
            }),
            "directories[0].jwks[0].url",
        ),
        (
            "empty upstream",
            Box::new(|v| v["directories"][0]["jwks"][0]["upstream"] = json!("")),
            "directories[0].jwks[0].upstream",
        ),
        (
            "no jwks",
            Box::new(|v| v["directories"][0]["jwks"] = json!([])),
            "directories[0].jwks",
        ),
        (
            "empty issuer",
            Box::new(|v| v["directories"][0]["issuer"] = json!(" ")),
            "directories[0].issuer",
        ),
        (
            "hs256",
            Box::new(|v| v["request_algorithms"] = json!(["PS256", "HS256"])),
            "request_algorithms[1]",
        ),
        (
            "none",
            Box::new(|v| v["directories"][0]["algorithms"] = json!(["none"])),
            "directories[0].algorithms[0]",
        ),
        (
            "unknown alg",
            Box::new(|v| v["request_algorithms"] = json!(["PS512"])),
            "request_algorithms[0]",
        ),
        (
            "empty algs",
            Box::new(|v| v["request_algorithms"] = json!([])),
            "request_algorithms",
        ),
        (
            "bad wildcard",
            Box::new(|v| v["software_jwks_hosts"][0]["host"] = json!("*.com")),
            "software_jwks_hosts[0].host",
        ),
        (
            "bad host",
            Box::new(|v| v["software_jwks_hosts"][0]["host"] = json!("a/b")),
            "software_jwks_hosts[0].host",
        ),
        (
            "profile",
            Box::new(|v| v["profile"] = json!("xx")),
            "profile",
        ),
        ("path", Box::new(|v| v["path"] = json!("register")), "path"),
        (
            "path dots",
            Box::new(|v| v["path"] = json!("/a/../register")),
            "path",
        ),
        ("path root", Box::new(|v| v["path"] = json!("/")), "path"),
        (
            "path backslash",
            Box::new(|v| v["path"] = json!("/a\\register")),
            "path",
        ),
        (
            "path space",
            Box::new(|v| v["path"] = json!("/reg ister")),
            "path",
        ),
        (
            "path non-ascii",
            Box::new(|v| v["path"] = json!("/régister")),
            "path",
        ),
        (
            "body limit",
            Box::new(|v| v["limits"] = json!({"body_bytes": 10})),
            "limits.body_bytes",
        ),
        (
            "jwks keys",
            Box::new(|v| v["limits"] = json!({"jwks_keys": 0})),
            "limits.jwks_keys",
        ),
        (
            "timeout",
            Box::new(|v| v["limits"] = json!({"callout_timeout_ms": 600000})),
            "limits.callout_timeout_ms",
        ),
        (
            "leeway",
            Box::new(|v| v["leeway_seconds"] = json!(100000)),
            "leeway_seconds",
        ),
        (
            "max age",
            Box::new(|v| v["rules"]["issuance_time"] = json!({"max_age_seconds": 0})),
            "rules.issuance_time.max_age_seconds",
        ),
        (
            "ssa sig off",
            Box::new(|v| v["rules"]["ssa_signature"] = json!({"enabled": false})),
            "rules.ssa_signature.enabled",
        ),
        (
            "dup issuer",
            Box::new(|v| {
                let d = v["directories"][0].clone();
                v["directories"].as_array_mut().unwrap().push(d);
            }),
            "directories[1].issuer",
        ),
    ];
    for (name, mutate, field) in cases {
        let mut v = minimal();
        mutate(&mut v);
        let e = parse(&v)
            .err()
            .unwrap_or_else(|| panic!("{name}: accepted"));
        assert_eq!(e.field, field, "{name}: {e}");
    }
}

#[test]
fn not_json_is_refused() {
    assert!(Config::from_json(b"{").is_err());
    assert!(Config::from_json(b"").is_err());
    assert!(Config::from_json(b"[]").is_err());
}

#[test]
fn host_allow_list() {
    let mut v = minimal();
    v["software_jwks_hosts"] = json!([
        {"host": "Keystore.Example.COM", "upstream": "a"},
        {"host": "*.tpp.example", "upstream": "b"}
    ]);
    let c = parse(&v).unwrap();
    assert_eq!(c.software_upstream("keystore.example.com", 443), Some("a"));
    assert_eq!(c.software_upstream("x.tpp.example", 443), Some("b"));
    assert_eq!(c.software_upstream("a.b.tpp.example", 443), Some("b"));
    assert_eq!(c.software_upstream("tpp.example", 443), None);
    assert_eq!(c.software_upstream("eviltpp.example", 443), None);
    assert_eq!(c.software_upstream("other.example.com", 443), None);
}

#[test]
fn host_allow_list_matches_host_and_port() {
    let mut v = minimal();
    v["software_jwks_hosts"] = json!([
        {"host": "keys.example.com", "upstream": "default-port"},
        {"host": "keys.example.com:8443", "upstream": "explicit"},
        {"host": "*.tpp.example", "upstream": "wild"},
        {"host": "*.alt.example:9443", "upstream": "wild-port"},
        {"host": "443.Example.COM:443", "upstream": "explicit-443"}
    ]);
    let c = parse(&v).unwrap();
    // The software JWKS URL from a verified SSA → the upstream allowed (None: refused).
    let cases: Vec<(&str, Option<&str>)> = vec![
        ("https://keys.example.com/jwks", Some("default-port")),
        ("https://keys.example.com:443/jwks", Some("default-port")),
        ("https://KEYS.example.com/jwks", Some("default-port")),
        ("https://keys.example.com:8443/jwks", Some("explicit")),
        ("https://keys.example.com:8080/jwks", None),
        ("https://keys.example.com:1/jwks", None),
        ("https://keys.example.com:65535/jwks", None),
        ("https://a.tpp.example/jwks", Some("wild")),
        ("https://a.b.tpp.example:443/jwks", Some("wild")),
        ("https://a.tpp.example:8443/jwks", None),
        ("https://a.tpp.example:22/jwks", None),
        ("https://a.alt.example:9443/jwks", Some("wild-port")),
        ("https://a.alt.example/jwks", None),
        ("https://a.alt.example:9444/jwks", None),
        ("https://443.example.com/jwks", Some("explicit-443")),
        // IP literals and odd forms never match.
        ("https://127.0.0.1/jwks", None),
        ("https://[::1]/jwks", None),
        ("https://[::ffff:7f00:1]:8443/jwks", None),
        ("https://0x7f.1/jwks", None),
        ("https://keys.example.com./jwks", None),
    ];
    for (url, want) in cases {
        let got = jwks_source(url, "")
            .ok()
            .and_then(|s| c.software_upstream(&s.host, s.port));
        assert_eq!(got, want, "{url}");
    }
    let src = jwks_source("https://keys.example.com:8443/jwks", "").unwrap();
    assert_eq!(
        (src.port, src.authority.as_str()),
        (8443, "keys.example.com:8443")
    );

    // Entries: the forms refused.
    for bad in [
        "keys.example.com:",
        "keys.example.com:0",
        "keys.example.com:65536",
        "keys.example.com:08443",
        "keys.example.com:+443",
        "keys.example.com:44 3",
        "keys.example.com:443:443",
        "*.tpp.example:x",
        "[::1]",
        "[::1]:443",
        "::1",
        "127.0.0.1",
        "127.0.0.1:8443",
        "10.0.0.1",
        "*.0.0.1",
        "keys.example.com/path",
        "user@keys.example.com",
        "*.com:443",
    ] {
        let mut v = minimal();
        v["software_jwks_hosts"] = json!([{"host": bad, "upstream": "u"}]);
        let e = parse(&v).err().unwrap_or_else(|| panic!("{bad}: accepted"));
        assert_eq!(e.field, "software_jwks_hosts[0].host", "{bad}");
    }
}

#[test]
fn jwt_binding_must_pin_issuer_or_audience_and_take_access_tokens() {
    let jwt = |extra: serde_json::Value| {
        let mut v = minimal();
        let mut b =
            json!({"mode": "jwt", "jwks": [{"url": "https://as.example/jwks", "upstream": "as"}]});
        for (k, val) in extra.as_object().unwrap() {
            b[k] = val.clone();
        }
        v["rules"]["token_client_binding"] = b;
        parse(&v)
    };
    let typ_of = |c: &Config| match &c.rules.token_client_binding {
        Some(TokenMode::Jwt(j)) => j.typ.clone(),
        other => panic!("{other:?}"),
    };
    // (extra fields, Ok(the typ required) | Err(the field named))
    let cases: Vec<(serde_json::Value, Result<&str, &str>)> = vec![
        (json!({}), Err("rules.token_client_binding.issuer")),
        (
            json!({"scope": "dcr"}),
            Err("rules.token_client_binding.issuer"),
        ),
        (
            json!({"audiences": []}),
            Err("rules.token_client_binding.audiences"),
        ),
        (
            json!({"issuer": " "}),
            Err("rules.token_client_binding.issuer"),
        ),
        (
            json!({"issuer": "https://as.example"}),
            Ok("application/at+jwt"),
        ),
        (
            json!({"audiences": ["https://bank.example/register"]}),
            Ok("application/at+jwt"),
        ),
        (
            json!({"issuer": "https://as.example", "typ": "AT+JWT"}),
            Ok("application/at+jwt"),
        ),
        (
            json!({"issuer": "https://as.example", "typ": "application/at+jwt"}),
            Ok("application/at+jwt"),
        ),
        // Another typ only with an audience or a scope.
        (
            json!({"issuer": "https://as.example", "typ": "JWT"}),
            Err("rules.token_client_binding.typ"),
        ),
        (
            json!({"issuer": "https://as.example", "typ": "JWT", "scope": "dcr"}),
            Ok("application/jwt"),
        ),
        (
            json!({"issuer": "https://as.example", "typ": "JWT", "audiences": ["api"]}),
            Ok("application/jwt"),
        ),
        (
            json!({"issuer": "https://as.example", "typ": "JWT", "scope": ""}),
            Err("rules.token_client_binding.scope"),
        ),
        // The scope is quoted in a 403's challenge: one RFC 6749 scope token.
        (
            json!({"issuer": "https://as.example", "scope": "a b"}),
            Err("rules.token_client_binding.scope"),
        ),
        (
            json!({"issuer": "https://as.example", "scope": "x\"y"}),
            Err("rules.token_client_binding.scope"),
        ),
        (
            json!({"issuer": "https://as.example", "typ": ""}),
            Err("rules.token_client_binding.typ"),
        ),
    ];
    for (extra, want) in cases {
        match (jwt(extra.clone()), want) {
            (Ok(c), Ok(typ)) => assert_eq!(typ_of(&c), typ, "{extra}"),
            (Err(e), Err(field)) => {
                assert_eq!(e.field, field, "{extra}: {e}");
            }
            (got, want) => panic!("{extra}: got {got:?}, want {want:?}"),
        }
    }
    // `typ` belongs to mode jwt only.
    let mut v = minimal();
    v["rules"]["token_client_binding"] = json!({"typ": "at+jwt"});
    assert_eq!(refused(v).field, "rules.token_client_binding.mode");
}

#[test]
fn mandatory_rules_per_profile() {
    use crate::error::RuleId as R;
    const ALL: [R; 19] = [
        R::TokenClientBinding,
        R::SsaIssuer,
        R::SsaSignature,
        R::RequestSignature,
        R::IssuanceTime,
        R::SoftwareStatus,
        R::RequiredAttributes,
        R::Issuer,
        R::Audience,
        R::RedirectUriFormat,
        R::RedirectUriSubset,
        R::UriHostname,
        R::TokenEndpointAuth,
        R::SigningAlgorithms,
        R::GrantAndResponseTypes,
        R::SoftwareRoles,
        R::CertificateBinding,
        R::RequestJti,
        R::SsaJti,
    ];
    let dir = |issuer: &str| json!([{"issuer": issuer, "jwks": [{"url": "https://k.example/jwks", "upstream": "k"}]}]);
    let uk = minimal();
    let au = json!({"profile": "au-cdr", "directories": dir("cdr-register"),
                    "rules": {"audience": {"audiences": ["https://holder.example"]}}});
    let br = json!({"profile": "br-ofb", "directories": dir("br")});
    // (profile, base configuration, the rules that cannot be switched off)
    let table: Vec<(&str, serde_json::Value, Vec<R>)> = vec![
        (
            "uk-obie",
            uk,
            vec![
                R::SsaIssuer,
                R::SsaSignature,
                R::RequestSignature,
                R::RedirectUriSubset,
            ],
        ),
        (
            "au-cdr",
            au,
            vec![
                R::SsaIssuer,
                R::SsaSignature,
                R::RequestSignature,
                R::RedirectUriSubset,
                R::Audience,
            ],
        ),
        (
            "br-ofb",
            br,
            vec![
                R::SsaIssuer,
                R::SsaSignature,
                R::RedirectUriSubset,
                R::CertificateBinding,
            ],
        ),
    ];
    for (profile, base, mandatory) in table {
        for report_only in [false, true] {
            let mut on = base.clone();
            on["report_only"] = json!(report_only);
            let c = parse(&on).unwrap_or_else(|e| panic!("{profile}: {e}"));
            // Report-only keeps every mandatory rule on: it is the way to roll out.
            assert!(c.rules.ssa_issuer && c.rules.ssa_signature, "{profile}");
            if mandatory.contains(&R::CertificateBinding) {
                assert!(c.rules.certificate_binding.is_some(), "{profile}");
            }
            for rule in ALL {
                let mut v = on.clone();
                v["rules"][rule.as_str()]["enabled"] = json!(false);
                let got = parse(&v);
                if mandatory.contains(&rule) {
                    let e = got
                        .err()
                        .unwrap_or_else(|| panic!("{profile}: `{}` switched off", rule.as_str()));
                    assert_eq!(e.field, format!("rules.{}.enabled", rule.as_str()));
                    assert!(e.message.contains(profile), "{e}");
                    assert!(e.message.contains("mandatory"), "{e}");
                    assert!(e.message.contains(rule.as_str()), "{e}");
                } else {
                    assert!(
                        got.is_ok(),
                        "{profile}: `{}` cannot be switched off: {:?}",
                        rule.as_str(),
                        got.err()
                    );
                }
            }
        }
    }
}

#[test]
fn path_is_normalised() {
    let mut v = minimal();
    v["path"] = json!("/Open-Banking/Register/");
    assert_eq!(parse(&v).unwrap().path, "/open-banking/register");
}

#[test]
fn trailing_text_after_the_document_is_refused() {
    // Found by the `config` fuzz target: one stray byte after the object was ignored.
    let doc = minimal().to_string();
    for tail in ["x", "\u{8d}", "}", "{}", " 1", "\n[]", "\0"] {
        let e = Config::from_json(format!("{doc}{tail}").as_bytes()).unwrap_err();
        assert_eq!(e.field, "", "{tail:?}");
        assert!(e.message.contains("trailing"), "{tail:?}: {e}");
    }
    for tail in ["", " ", "\n", "\r\n\t"] {
        assert!(
            Config::from_json(format!("{doc}{tail}").as_bytes()).is_ok(),
            "{tail:?}"
        );
    }
}

#[test]
fn jwks_url_host_is_fetched_as_written() {
    // Found by the `config` fuzz target: `https:/9/…` was accepted and fetched from 0.0.0.9.
    for bad in [
        "https:/9/keystore.directory.test/keystore/openbanking.jwks",
        "https:/k.example/jwks",
        "https:k.example/jwks",
        "https:\\\\k.example/jwks",
        "https://k.example\\jwks",
        "https://k%2Eexample/jwks",
        "https://k.exa\tmple/jwks",
        "https://@k.example/jwks",
        "https://0x7f.1/jwks",
        "https://b\u{fc}cher.example/jwks",
        " https://k.example/jwks",
        "https://k.example:0443/jwks",
    ] {
        let e = jwks_source(bad, "u").unwrap_err();
        assert!(
            e.contains("plainly") || e.contains("`https://`") || e.contains("user"),
            "{bad:?}: {e}"
        );
    }
    for (good, host, authority) in [
        ("https://k.example/jwks", "k.example", "k.example"),
        ("https://K.Example/jwks", "k.example", "k.example"),
        ("HTTPS://k.example/jwks", "k.example", "k.example"),
        ("https://k.example", "k.example", "k.example"),
        ("https://k.example:443/jwks", "k.example", "k.example"),
        ("https://k.example:8443?x", "k.example", "k.example:8443"),
        ("https://[::1]:8443/jwks", "[::1]", "[::1]:8443"),
        ("https://10.0.0.1/jwks", "10.0.0.1", "10.0.0.1"),
    ] {
        let s = jwks_source(good, "u").unwrap_or_else(|e| panic!("{good}: {e}"));
        assert_eq!((s.host.as_str(), s.authority.as_str()), (host, authority));
    }
}

#[test]
fn jwks_source_authority_with_port() {
    let s = jwks_source("https://k.example:8443/a/jwks?x=1", "u").unwrap();
    assert_eq!(s.authority, "k.example:8443");
    assert_eq!(s.path, "/a/jwks?x=1");
}

#[test]
fn replay_retention_floor_is_exact() {
    // (max_age, leeway, floor): max_age + 2 × leeway; max_age + 1 with no leeway.
    for (age, leeway, floor) in [
        (3600u64, 60u64, 3720u64),
        (3600, 0, 3601),
        (3600, 1, 3602),
        (300, 30, 360),
        (1, 600, 1201),
    ] {
        assert_eq!(Replay::retention_floor(age, leeway), floor);
        let at = |retention: u64| {
            let mut v = minimal();
            v["leeway_seconds"] = json!(leeway);
            v["rules"]["issuance_time"] = json!({"max_age_seconds": age});
            v["replay"] = json!({"max_retention_seconds": retention});
            parse(&v)
        };
        let e = at(floor - 1).unwrap_err();
        assert_eq!(e.field, "replay.max_retention_seconds");
        assert!(e.message.contains(&format!("({floor};")), "{e}");
        assert_eq!(at(floor).unwrap().replay.max_retention, floor);
        // The default covers it too.
        let mut v = minimal();
        v["leeway_seconds"] = json!(leeway);
        v["rules"]["issuance_time"] = json!({"max_age_seconds": age});
        assert_eq!(parse(&v).unwrap().replay.max_retention, floor.max(86_400));
    }
}

#[test]
fn replay_issuer_share() {
    assert_eq!(
        parse(&minimal()).unwrap().replay.store.issuer_share_percent,
        10
    );
    for (pct, ok) in [(0, false), (1, true), (10, true), (100, true), (101, false)] {
        let mut v = minimal();
        v["replay"] = json!({"issuer_share_percent": pct});
        match parse(&v) {
            Ok(c) => {
                assert!(ok, "{pct}");
                assert_eq!(c.replay.store.issuer_share_percent, pct);
            }
            Err(e) => {
                assert!(!ok, "{pct}: {e}");
                assert_eq!(e.field, "replay.issuer_share_percent");
                assert!(e.message.contains("between 1 and 100"), "{e}");
            }
        }
    }
    let mut v = minimal();
    v["replay"] = json!({"issuer_share_percent": "10"});
    assert_eq!(refused(v).field, "replay.issuer_share_percent");
    let mut v = minimal();
    v["replay"] = json!({"issuer_share": 10});
    assert!(refused(v).to_string().contains("issuer_share"));
}

/// `none` and every HMAC algorithm are refused wherever an algorithm list is configured, in
/// any letter case, with the same message (one check: `jose::alg_is_forbidden`).
#[test]
fn never_allowed_algorithms_in_any_case() {
    let sites: Vec<(&str, Box<dyn Fn(&mut serde_json::Value, &str)>)> = vec![
        (
            "directories[0].algorithms[1]",
            Box::new(|v, a| v["directories"][0]["algorithms"] = json!(["PS256", a])),
        ),
        (
            "request_algorithms[1]",
            Box::new(|v, a| v["request_algorithms"] = json!(["PS256", a])),
        ),
        (
            "rules.token_client_binding.algorithms[1]",
            Box::new(|v, a| {
                v["rules"]["token_client_binding"] = json!({
                    "mode": "jwt",
                    "jwks": [{"url": "https://as.bank.test/jwks", "upstream": "as"}],
                    "issuer": "https://as.bank.test",
                    "algorithms": ["PS256", a]
                })
            }),
        ),
        (
            "rules.signing_algorithms.algorithms[1]",
            Box::new(|v, a| v["rules"]["signing_algorithms"] = json!({"algorithms": ["PS256", a]})),
        ),
    ];
    for (field, set) in &sites {
        for alg in ["none", "None", "NONE", "HS256", "hS256", "hs384", "Hs512"] {
            let mut v = minimal();
            set(&mut v, alg);
            let e = refused(v);
            assert_eq!(e.field, *field, "{alg}: {e}");
            assert!(
                e.message.starts_with(&format!("`{alg}` is never allowed")),
                "{alg} at {field}: {e}"
            );
        }
    }
}

/// The introspection client secret is looked up by name through the function the caller
/// passes (the filter: its environment); missing or empty, the configuration is refused with
/// the same message, which never holds a secret.
#[test]
fn introspection_secret_comes_from_the_lookup() {
    let mut v = minimal();
    v["rules"]["token_client_binding"] = json!({
        "mode": "introspection",
        "introspection": {
            "url": "https://as.bank.test/introspect",
            "upstream": "as",
            "client_id": "x",
            "client_secret_env": "AS_SECRET"
        }
    });
    let doc = v.to_string();
    let asked = std::cell::RefCell::new(Vec::new());
    let c = Config::parse(doc.as_bytes(), &|n| {
        asked.borrow_mut().push(n.to_string());
        (n == "AS_SECRET").then(|| "s3cr3t".to_string())
    })
    .unwrap();
    assert_eq!(*asked.borrow(), ["AS_SECRET"]);
    match c.rules.token_client_binding {
        Some(TokenMode::Introspection(i)) => assert_eq!(i.secret, "s3cr3t"),
        _ => panic!("not introspection"),
    }
    for found in [None, Some("")] {
        let e = Config::parse(doc.as_bytes(), &|_| found.map(String::from)).unwrap_err();
        assert_eq!(
            e.field,
            "rules.token_client_binding.introspection.client_secret_env"
        );
        assert_eq!(
            e.message,
            "environment variable `AS_SECRET` is not set for the filter (Envoy: list it in vm_config.environment_variables.host_env_keys)"
        );
    }
}
