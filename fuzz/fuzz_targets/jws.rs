//! Compact JWS and JOSE header parsing (`core/src/jose/`), and verification against fixed keys.
//!
//! The input is tried twice: as a whole compact token, and as the bytes of a JOSE header inside a
//! token built around it (so that header rules are reached without base64 in the way).
//!
//! Properties:
//! * a token that parses has exactly three parts, re-serialises to the same signing input
//!   (`<header>.<payload>`) and the same signature part (strict, canonical base64url), and its
//!   header and claims are what serde_json reads from the decoded parts;
//! * a header with duplicate member names (at any depth), a `crit` member, a non-string `alg`/`kid`/`typ`/`cty`, or
//!   alg `none`/`HS*` (any case) is never accepted; `none`/`HS*` are refused as `AlgForbidden`;
//!   every other header object is accepted (the parser and a reference agree both ways);
//! * verification is deterministic, never succeeds for an algorithm outside the allow-list, and a
//!   key it returns fits the algorithm and, when the header names a `kid`, has that `kid`.
#![no_main]

use std::sync::OnceLock;

use dcr_guard_core::jose::{self, Alg, JoseError, JwkSet, Jws};
use dcr_guard_fuzz::{b64, unique_object_at_every_depth, JWKS_FIXTURE};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn keys() -> &'static JwkSet {
    static SET: OnceLock<JwkSet> = OnceLock::new();
    SET.get_or_init(|| JwkSet::parse(JWKS_FIXTURE.as_bytes(), 100).unwrap())
}

fn forbidden(alg: &str) -> bool {
    alg.eq_ignore_ascii_case("none") || alg.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("hs"))
}

/// The reference verdict on a decoded header: `Ok(alg)` when it must be accepted.
fn header_reference(bytes: &[u8]) -> Result<String, &'static str> {
    if !unique_object_at_every_depth(bytes) {
        return Err("not an object without duplicate members at every depth");
    }
    let Ok(Value::Object(h)) = serde_json::from_slice::<Value>(bytes) else {
        return Err("not an object");
    };
    let Some(Value::String(alg)) = h.get("alg") else {
        return Err("alg");
    };
    if forbidden(alg) {
        return Err("forbidden");
    }
    for m in ["kid", "typ", "cty"] {
        if h.get(m).is_some_and(|v| !v.is_string()) {
            return Err("member type");
        }
    }
    if h.contains_key("crit") {
        return Err("crit");
    }
    Ok(alg.clone())
}

fn check_token(token: &str, allowed: &[Alg]) {
    let Ok(jws) = Jws::parse(token) else { return };
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let signing_input = format!("{}.{}", parts[0], parts[1]);
    assert_eq!(jws.signing_input(), signing_input.as_bytes());
    assert_eq!(
        b64(&jws.signature),
        parts[2],
        "signature part not canonical"
    );
    let header = jose::b64::decode(parts[0]).unwrap();
    assert_eq!(b64(&header), parts[0], "header part not canonical");
    let alg = header_reference(&header).unwrap_or_else(|e| panic!("accepted a bad header: {e}"));
    assert_eq!(jws.header.alg, alg);
    assert!(jws.header.crit.is_empty());
    let payload = jose::b64::decode(parts[1]).unwrap();
    assert!(unique_object_at_every_depth(&payload));
    let Ok(Value::Object(claims)) = serde_json::from_slice::<Value>(&payload) else {
        panic!("payload is not an object")
    };
    assert_eq!(jws.claims, claims);

    let sets = [keys()];
    let first = jose::verify(&jws, &sets, allowed);
    let again = jose::verify(&jws, &sets, allowed);
    match (&first, &again) {
        (Ok(a), Ok(b)) => assert!(std::ptr::eq(*a, *b)),
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("verification is not deterministic"),
    }
    if let Ok(key) = first {
        let a = Alg::parse(&jws.header.alg).expect("verified with an unknown alg");
        assert!(allowed.contains(&a) && key.fits(a));
        if let Some(kid) = &jws.header.kid {
            assert_eq!(key.kid.as_deref(), Some(kid.as_str()));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (mask, rest) = data.split_first().map_or((0xff, data), |(m, r)| (*m, r));
    // The allow-list comes from the first byte (all four for the usual seeds' '{' / 'e' bytes).
    let allowed: Vec<Alg> = Alg::ALL
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0 || mask & 0x30 != 0)
        .map(|(_, a)| *a)
        .collect();
    if let Ok(token) = std::str::from_utf8(data) {
        check_token(token, &allowed);
    }

    // The input as a header, the payload and signature fixed.
    let token = format!("{}.{}.AAAA", b64(rest), b64(br#"{"iss":"x"}"#));
    let parsed = Jws::parse(&token);
    match header_reference(rest) {
        Ok(alg) => {
            let jws = parsed.unwrap_or_else(|e| panic!("refused a good header: {e:?}"));
            assert_eq!(jws.header.alg, alg);
            check_token(&token, &allowed);
        }
        Err("forbidden") => assert!(
            matches!(parsed, Err(JoseError::AlgForbidden(_))),
            "{parsed:?}"
        ),
        Err(_) => assert!(parsed.is_err()),
    }
});
