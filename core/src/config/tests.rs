//! The configuration parser against documents: what is accepted, what each field resolves to, and
//! what is refused with which field named.
#![allow(clippy::type_complexity)]

use super::*;
use crate::jose::Alg;
use serde_json::json;

pub(super) fn minimal() -> serde_json::Value {
    json!({
        "directories": [{
            "issuer": "OpenBanking Ltd",
            "jwks": [{"url": "https://keystore.openbanking.org.uk/keystore/openbanking.jwks", "upstream": "ob_keystore"}]
        }],
        "software_jwks_hosts": [{"host": "keystore.openbanking.org.uk", "upstream": "ob_keystore"}],
        "rules": {"audience": {"audiences": ["0015800001HQQrZAAX"]}}
    })
}

pub(super) fn parse(v: &serde_json::Value) -> Result<Config, ConfigError> {
    Config::from_json(v.to_string().as_bytes())
}

pub(super) fn refused(v: serde_json::Value) -> ConfigError {
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

/// A missing field names the object that lacks it.
#[test]
fn missing_fields_name_their_object() {
    let mut v = minimal();
    v["replay"] = json!({"store": "etcd", "etcd": {"key_prefix": "/dcr/"}});
    let e = refused(v);
    assert_eq!(e.field, "replay.etcd", "{e}");
    assert!(e.message.contains("missing field `upstream`"), "{e}");

    let mut v = minimal();
    v["directories"][0]["jwks"] = json!([{"url": "https://k/k.jwks", "upstream": "k"}]);
    v["directories"][0]
        .as_object_mut()
        .unwrap()
        .remove("issuer");
    assert_eq!(refused(v).field, "directories[0]");
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
fn a_stats_instance_is_a_short_lower_case_name() {
    assert_eq!(parse(&minimal()).unwrap().stats_instance, None);
    for ok in ["edge", "b2b_2", "0", &"a".repeat(32)] {
        let mut v = minimal();
        v["stats"] = json!({"instance": ok});
        assert_eq!(parse(&v).unwrap().stats_instance.as_deref(), Some(ok));
    }
    let long = "a".repeat(33);
    let bad: [serde_json::Value; 7] = [
        json!(""),
        json!("Edge"),
        json!("a.b"),
        json!("a-b"),
        json!(long),
        json!(7),
        json!("edge\n"),
    ];
    for bad in bad {
        let mut v = minimal();
        v["stats"] = json!({"instance": bad});
        assert_eq!(refused(v).field, "stats.instance", "{bad}");
    }
    let mut v = minimal();
    v["stats"] = json!({"prefix": "x"});
    assert!(refused(v).to_string().contains("unknown field `prefix`"));
}

#[test]
fn not_json_is_refused() {
    assert!(Config::from_json(b"{").is_err());
    assert!(Config::from_json(b"").is_err());
    assert!(Config::from_json(b"[]").is_err());
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
