use serde_json::json;

use super::*;
use crate::error::{Challenge, ErrorCode};
use crate::jose::Alg;
use crate::jose::JwkSet;
use crate::keys::Fetched;
use crate::pipeline::{Binding, Step};
use dcr_guard_testkit::keys::{jwks, now, TestKey};

#[test]
fn bearer_table() {
    let cases: Vec<(Option<&str>, Result<&str, Option<Challenge>>)> = vec![
        (None, Err(Some(Challenge::Bare))),
        (Some("Basic dXNlcjpwYXNz"), Err(Some(Challenge::Bare))),
        (Some("Bearer"), Err(Some(Challenge::InvalidToken))),
        (Some("Bearer "), Err(Some(Challenge::InvalidToken))),
        (Some("Bearer a b"), Err(Some(Challenge::InvalidToken))),
        (Some("Bearer ===="), Err(Some(Challenge::InvalidToken))),
        (Some("Bearer abc\"def"), Err(Some(Challenge::InvalidToken))),
        (Some("Bearer abc-._~+/DEF=="), Ok("abc-._~+/DEF==")),
        (Some("bearer abc"), Ok("abc")),
        (Some("  Bearer   abc  "), Ok("abc")),
    ];
    for (h, want) in cases {
        match (bearer(h), want) {
            (Ok(t), Ok(w)) => assert_eq!(t, w, "{h:?}"),
            (Err(e), Err(c)) => {
                assert_eq!(e.status, 401, "{h:?}");
                assert_eq!(e.challenge, c, "{h:?}");
            }
            (got, want) => panic!("{h:?}: got {got:?}, want {want:?}"),
        }
    }
    let long = format!("Bearer {}", "a".repeat(MAX_BEARER_TOKEN_BYTES + 1));
    assert!(bearer(Some(&long)).is_err());
}

#[test]
fn unauthenticated_has_no_body_and_a_bare_challenge() {
    let e = DcrError::unauthenticated();
    assert_eq!(e.body(), "");
    assert!(e
        .headers()
        .contains(&("www-authenticate", "Bearer".to_string())));
    let e = DcrError::invalid_token("x");
    assert!(e.headers().contains(&(
        "www-authenticate",
        "Bearer error=\"invalid_token\"".to_string()
    )));
    assert_eq!(e.code, ErrorCode::InvalidToken);
    assert!(!e.body().contains("client_id"));
}

fn jwt_mode(key: &TestKey) -> (TokenMode, JwkSet) {
    let src = crate::config::jwks_source("https://as.example/jwks", "as").unwrap();
    let mode = TokenMode::Jwt(JwtBinding {
        jwks: vec![src],
        algorithms: vec![Alg::Es256, Alg::Ps256],
        issuer: Some("https://as.example".into()),
        audiences: vec!["https://as.example/register".into()],
        scope: Some("cdr:registration".into()),
        client_id_claims: vec!["client_id".into(), "azp".into()],
        typ: ACCESS_TOKEN_TYP.into(),
    });
    let set = JwkSet::parse(jwks(&[key]).to_string().as_bytes(), 10).unwrap();
    (mode, set)
}

fn check(mode: &TokenMode, set: &JwkSet, token: &str, client: &str) -> Result<(), DcrError> {
    let header = format!("Bearer {token}");
    let mut b = Binding::start(mode, Some(&header), client)?;
    match b.step(mode, now() as i64, 60, 5) {
        Step::Fetch(srcs) | Step::Refetch(srcs) => {
            for s in srcs {
                b.supply(&s.url, Fetched::Keys(std::rc::Rc::new(set.clone())));
            }
        }
        Step::Forward => return Ok(()),
        Step::Reject(e) => return Err(e),
        Step::Call(_) => panic!("no call in jwt mode"),
    }
    match b.step(mode, now() as i64, 60, 5) {
        Step::Forward => Ok(()),
        Step::Reject(e) => Err(e),
        Step::Fetch(_) | Step::Refetch(_) | Step::Call(_) => panic!("fetched twice"),
    }
}

#[test]
fn jwt_mode_table() {
    let key = TestKey::ec("as-1");
    let (mode, set) = jwt_mode(&key);
    let t = now();
    let good = json!({"iss": "https://as.example", "aud": "https://as.example/register", "exp": t + 300, "scope": "cdr:registration", "client_id": "c1"});
    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut c = good.clone();
        f(&mut c);
        key.sign_access_token(&c)
    };
    let cases: Vec<(&str, String, &str, Option<&str>)> = vec![
        ("valid", key.sign_access_token(&good), "c1", None),
        (
            "azp fallback",
            edit(&|c| {
                c.as_object_mut().unwrap().remove("client_id");
                c["azp"] = json!("c1");
            }),
            "c1",
            None,
        ),
        (
            "another client",
            key.sign_access_token(&good),
            "c2",
            Some("does not belong"),
        ),
        (
            "expired",
            edit(&|c| c["exp"] = json!(t - 3600)),
            "c1",
            Some("expired"),
        ),
        (
            "no exp",
            edit(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
            "c1",
            Some("exp"),
        ),
        (
            "wrong issuer",
            edit(&|c| c["iss"] = json!("https://evil.example")),
            "c1",
            Some("not issued"),
        ),
        (
            "wrong audience",
            edit(&|c| c["aud"] = json!(["x"])),
            "c1",
            Some("not meant"),
        ),
        (
            "missing scope",
            edit(&|c| c["scope"] = json!("openid")),
            "c1",
            Some("scope"),
        ),
        // Another client's token is 401 whatever its scope: binding first, never a 403 hint.
        (
            "another client's token without the scope",
            edit(&|c| c["scope"] = json!("openid")),
            "c2",
            Some("does not belong"),
        ),
        (
            "signed by another key",
            TestKey::ec("as-1").sign_access_token(&good),
            "c1",
            Some("signature"),
        ),
        (
            "alg none",
            dcr_guard_testkit::keys::unsigned_none(&good),
            "c1",
            Some("not a valid JWT"),
        ),
        (
            "opaque token",
            "abc.def".into(),
            "c1",
            Some("not a valid JWT"),
        ),
        // Only RFC 9068 access tokens: `typ` `at+jwt`, compared as a media type.
        (
            "typ application/at+jwt",
            key.sign("ES256", json!({"typ": "application/at+jwt"}), &good),
            "c1",
            None,
        ),
        (
            "typ AT+JWT",
            key.sign("ES256", json!({"typ": "AT+JWT"}), &good),
            "c1",
            None,
        ),
        (
            "typ JWT (an ID token's)",
            key.sign("ES256", json!({"typ": "JWT"}), &good),
            "c1",
            Some("not an access token"),
        ),
        (
            "no typ",
            key.sign("ES256", json!({"typ": null}), &good),
            "c1",
            Some("not an access token"),
        ),
        (
            "typ at+jwt with parameters",
            key.sign("ES256", json!({"typ": "at+jwt;v=1"}), &good),
            "c1",
            Some("not an access token"),
        ),
        (
            "typ application/jwt",
            key.sign("ES256", json!({"typ": "application/jwt"}), &good),
            "c1",
            Some("not an access token"),
        ),
    ];
    for (name, token, client, want) in cases {
        let got = check(&mode, &set, &token, client);
        match want {
            None => assert!(got.is_ok(), "{name}: {got:?}"),
            Some(w) => {
                let e = got.err().unwrap_or_else(|| panic!("{name}: accepted"));
                // RFC 6750 §3.1 / spec §5: this client's good token without the scope is 403.
                let status = if name == "missing scope" { 403 } else { 401 };
                assert_eq!(e.status, status, "{name}");
                if status == 403 {
                    assert_eq!(e.code.as_str(), "insufficient_scope");
                    assert!(
                        e.headers().contains(&(
                            "www-authenticate",
                            "Bearer error=\"insufficient_scope\", scope=\"cdr:registration\""
                                .to_string()
                        )),
                        "{name}: {:?}",
                        e.headers()
                    );
                }
                assert!(e.description.contains(w), "{name}: {}", e.description);
                assert!(!e.body().contains(client), "{name}: body names the client");
            }
        }
    }
}

#[test]
fn an_id_token_for_the_client_cannot_manage_its_registration() {
    // An ID token the AS signed for client A: `aud` and `azp` are the client, header `typ` JWT.
    let key = TestKey::ec("as-1");
    let t = now();
    let id_token = key.sign(
        "ES256",
        json!({"typ": "JWT"}),
        &json!({"iss": "https://as.example", "sub": "user-1", "aud": "client-A", "azp": "client-A",
                "exp": t + 300, "iat": t, "nonce": "n"}),
    );
    let (mode, set) = jwt_mode(&key);
    let TokenMode::Jwt(full) = &mode else {
        panic!()
    };
    // Pinned to the AS's issuer only (the least a configuration may say): the ID token's `iss`,
    // `exp` and `azp` all fit, only its `typ` tells it apart.
    let issuer_only = JwtBinding {
        audiences: Vec::new(),
        scope: None,
        ..full.clone()
    };
    // An operator whose AS mints access tokens with `typ` JWT must require an audience (or a
    // scope), which the ID token does not have.
    let jwt_typ = JwtBinding {
        typ: media_type("JWT"),
        ..full.clone()
    };
    for mode in [
        mode.clone(),
        TokenMode::Jwt(issuer_only.clone()),
        TokenMode::Jwt(jwt_typ),
    ] {
        let e = check(&mode, &set, &id_token, "client-A").unwrap_err();
        assert_eq!((e.status, e.code), (401, ErrorCode::InvalidToken));
        assert_eq!(e.challenge, Some(Challenge::InvalidToken));
    }
    // Control: the same claims in an access token are accepted by the issuer-only mode.
    let access = key.sign_access_token(
        &json!({"iss": "https://as.example", "azp": "client-A", "exp": t + 300}),
    );
    assert!(check(&TokenMode::Jwt(issuer_only), &set, &access, "client-A").is_ok());
}

#[test]
fn media_type_table() {
    for (typ, want) in [
        ("at+jwt", "application/at+jwt"),
        ("AT+JWT", "application/at+jwt"),
        ("application/at+jwt", "application/at+jwt"),
        ("Application/AT+JWT", "application/at+jwt"),
        ("JWT", "application/jwt"),
        ("text/at+jwt", "text/at+jwt"),
    ] {
        assert_eq!(media_type(typ), want, "{typ}");
    }
}

#[test]
fn jwt_mode_keystore_down_is_503() {
    let key = TestKey::ec("as-1");
    let (mode, _) = jwt_mode(&key);
    let token = key.sign_access_token(&json!({"exp": now() + 60, "client_id": "c1"}));
    let header = format!("Bearer {token}");
    let mut b = Binding::start(&mode, Some(&header), "c1").unwrap();
    if let Step::Fetch(srcs) = b.step(&mode, now() as i64, 60, 5) {
        b.supply(&srcs[0].url, Fetched::Unavailable("down".into()));
    }
    match b.step(&mode, now() as i64, 60, 5) {
        Step::Reject(e) => assert_eq!(e.status, 503),
        other => panic!("{other:?}"),
    }
}

#[test]
fn jwt_mode_asks_once_more_for_an_unknown_kid() {
    let old = TestKey::ec("as-1");
    let rotated = TestKey::ec("as-2");
    let (mode, old_set) = jwt_mode(&old);
    let new_set = JwkSet::parse(jwks(&[&old, &rotated]).to_string().as_bytes(), 10).unwrap();
    let token = rotated.sign_access_token(&json!({
        "iss": "https://as.example", "aud": "https://as.example/register", "exp": now() + 300,
        "scope": "cdr:registration", "client_id": "c1"
    }));
    let header = format!("Bearer {token}");
    // The first fetch brings the old document, the refetch `second`; the outcome of the step after.
    let run = |second: &JwkSet| {
        let mut b = Binding::start(&mode, Some(&header), "c1").unwrap();
        for (want_refetch, set) in [(false, &old_set), (true, second)] {
            let srcs = match b.step(&mode, now() as i64, 60, 5) {
                Step::Fetch(srcs) if !want_refetch => srcs,
                Step::Refetch(srcs) if want_refetch => srcs,
                other => panic!("refetch {want_refetch}: {other:?}"),
            };
            for s in srcs {
                b.supply(&s.url, Fetched::Keys(std::rc::Rc::new(set.clone())));
            }
        }
        b.step(&mode, now() as i64, 60, 5)
    };
    // The cached document lacks the AS's new key: asked for again, then verified.
    assert!(matches!(run(&new_set), Step::Forward));
    // Still unknown after the second look (or within the cache's cooldown): refused, once.
    match run(&old_set) {
        Step::Reject(e) => assert_eq!(e.status, 401),
        other => panic!("{other:?}"),
    }
}

#[test]
fn delegate_needs_only_a_well_formed_token() {
    let mode = TokenMode::Delegate;
    let mut b =
        Binding::start(&mode, Some("Bearer opaque-registration-access-token"), "c1").unwrap();
    assert!(matches!(b.step(&mode, 0, 60, 5), Step::Forward));
    assert_eq!(Binding::start(&mode, None, "c1").unwrap_err().status, 401);
}
