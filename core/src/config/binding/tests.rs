//! `token_client_binding`'s configuration: what each mode requires, and where its secret comes
//! from.
#![allow(clippy::type_complexity)]

use serde_json::json;

use super::*;
use crate::config::tests::{minimal, parse, refused};
use crate::config::Config;

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
