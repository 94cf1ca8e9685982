//! JWKS document parsing and key selection (`core/src/jose/jwk.rs`, `core/src/jose/verify.rs`).
//!
//! Input: one byte for the `max_keys` bound (1..=16), then the document.
//!
//! Properties:
//! * a document is accepted iff serde_json reads it as an object with a `keys` array of at most
//!   `max_keys` entries; then every entry is either a usable key or counted as skipped;
//! * every usable key is a public signature key the spec allows: `use` absent or `sig`, `alg`
//!   absent or a signature algorithm, no private members, EC P-256 points of 65 bytes, Ed25519 keys
//!   of 32 bytes, RSA modulus and exponent without leading zeros;
//! * parsing is deterministic (same keys, same fingerprint);
//! * selection, for every algorithm and for no kid / every kid present / an absent kid, is
//!   deterministic and agrees with a reference: a selected key fits the algorithm (key type, curve,
//!   `alg`, `use`), carries the requested kid, and is the only distinct material that does;
//!   `UnknownKid` only when no key has the kid; `NoKey`/`KeyUnsuitable` only when none fits;
//!   `AmbiguousKey` only when two distinct materials fit; the same set given twice selects the
//!   same key (identical material is one key).
#![no_main]

use dcr_guard_core::jose::{select_key, Alg, JoseError, Jwk, JwkSet, JwsHeader, KeyMaterial};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const PRIVATE: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];
const SIG_ALGS: [&str; 13] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "ES256K",
    "EdDSA", "Ed25519", "Ed448",
];

fn header(kid: Option<&str>, alg: Alg) -> JwsHeader {
    JwsHeader {
        alg: alg.name().to_string(),
        kid: kid.map(str::to_string),
        typ: None,
        cty: None,
        crit: Vec::new(),
        embedded_key_hints: false,
    }
}

fn type_fits(k: &Jwk, alg: Alg) -> bool {
    matches!(
        (alg, &k.material),
        (Alg::Rs256 | Alg::Ps256, KeyMaterial::Rsa { .. })
            | (Alg::Es256, KeyMaterial::EcP256 { .. })
            | (Alg::EdDsa, KeyMaterial::Ed25519 { .. })
    )
}

/// The reference's "fits": written from the spec, not from `Jwk::fits`.
fn fits(k: &Jwk, alg: Alg) -> bool {
    type_fits(k, alg)
        && k.alg.as_deref().is_none_or(|a| a == alg.name())
        && k.use_.as_deref().is_none_or(|u| u == "sig")
}

fn distinct_fitting<'a>(keys: impl Iterator<Item = &'a Jwk>, alg: Alg) -> Vec<&'a KeyMaterial> {
    let mut out: Vec<&KeyMaterial> = Vec::new();
    for k in keys.filter(|k| fits(k, alg)) {
        if !out.contains(&&k.material) {
            out.push(&k.material);
        }
    }
    out
}

fn check_selection(set: &JwkSet, kid: Option<&str>, alg: Alg) {
    let h = header(kid, alg);
    let got = select_key(&[set], &h, alg);
    let again = select_key(&[set], &h, alg);
    let twice = select_key(&[set, set], &h, alg);
    match (&got, &again, &twice) {
        (Ok(a), Ok(b), Ok(c)) => assert!(std::ptr::eq(*a, *b) && a.material == c.material),
        (Err(a), Err(b), Err(c)) => assert!(a == b && a == c),
        _ => panic!("selection not deterministic: {got:?} / {again:?} / {twice:?}"),
    }
    let named: Vec<&Jwk> = match kid {
        Some(kid) => set
            .keys
            .iter()
            .filter(|k| k.kid.as_deref() == Some(kid))
            .collect(),
        None => set.keys.iter().collect(),
    };
    let fitting = distinct_fitting(named.iter().copied(), alg);
    match got {
        Ok(k) => {
            assert!(fits(k, alg) && k.fits(alg));
            if let Some(kid) = kid {
                assert_eq!(k.kid.as_deref(), Some(kid));
            }
            assert_eq!(fitting, vec![&k.material]);
        }
        Err(JoseError::UnknownKid(_)) => assert!(kid.is_some() && named.is_empty()),
        Err(JoseError::KeyUnsuitable(_)) => {
            assert!(kid.is_some() && !named.is_empty() && fitting.is_empty())
        }
        Err(JoseError::NoKey) => assert!(kid.is_none() && fitting.is_empty()),
        Err(JoseError::AmbiguousKey) => assert!(fitting.len() > 1),
        Err(e) => panic!("unexpected selection error {e:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((bound, doc)) = data.split_first() else {
        return;
    };
    let max_keys = usize::from(bound % 16) + 1;
    let parsed = JwkSet::parse(doc, max_keys);
    let entries = match serde_json::from_slice::<Value>(doc) {
        Ok(Value::Object(o)) => match o.get("keys") {
            Some(Value::Array(a)) if a.len() <= max_keys => Some(a.clone()),
            _ => None,
        },
        _ => None,
    };
    let (set, entries) = match (parsed, entries) {
        (Ok(s), Some(e)) => (s, e),
        (Err(_), None) => return,
        (p, e) => panic!("parse and reference disagree: {p:?} vs {e:?}"),
    };
    assert_eq!(set.keys.len() + set.skipped, entries.len());
    let again = JwkSet::parse(doc, max_keys).unwrap();
    assert_eq!(format!("{:?}", set), format!("{:?}", again));

    for k in &set.keys {
        assert!(k.use_.as_deref().is_none_or(|u| u == "sig"));
        assert!(k.alg.as_deref().is_none_or(|a| SIG_ALGS.contains(&a)));
        match &k.material {
            KeyMaterial::EcP256 { point } => assert!(point.len() == 65 && point[0] == 4),
            KeyMaterial::Ed25519 { x } => assert_eq!(x.len(), 32),
            KeyMaterial::Rsa { n, e } => {
                assert!(n.first().is_some_and(|b| *b != 0) && e.first().is_some_and(|b| *b != 0))
            }
        }
    }
    // A usable key came from an entry without private members.
    let usable_entries = entries
        .iter()
        .filter(|e| {
            e.as_object()
                .is_some_and(|o| !PRIVATE.iter().any(|m| o.contains_key(*m)))
        })
        .count();
    assert!(set.keys.len() <= usable_entries);

    let mut kids: Vec<Option<&str>> = vec![None, Some("no-such-kid")];
    kids.extend(set.keys.iter().filter_map(|k| k.kid.as_deref()).map(Some));
    kids.truncate(8);
    for alg in Alg::ALL {
        for kid in &kids {
            check_selection(&set, *kid, alg);
        }
    }
});
