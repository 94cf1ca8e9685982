//! Distinguished names (`core/src/dn.rs`) and client certificates from Envoy and XFCC (`core/src/cert.rs`).
//!
//! Input: two strings separated by the first NUL byte (the second may be absent).
//!
//! Properties:
//! * a parsed DN matches itself, re-parses to an equal value, and matches its own string with the
//!   RDN order reversed (RFC 4514 strings are most-specific first, X.500 order the other way);
//! * `matches` is symmetric;
//! * the OpenSSL `/A=…/B=…` form is never accepted as RFC 4514, whatever follows the slash;
//! * every attribute of a parsed DN is found by `get` under a name the parser knows;
//! * `ClientCert::from_envoy` accepts a subject iff `Dn::parse` does;
//! * a DN that parses, quoted as Envoy writes it into an XFCC element (`Subject="…"`) with a Hash
//!   and URI, comes back as the same subject, digest and URI SAN, and only the first element of
//!   a multi-element header counts.
#![no_main]

use dcr_guard_core::cert::ClientCert;
use dcr_guard_core::dn::Dn;
use libfuzzer_sys::fuzz_target;

/// The RDN strings of `s` in order: split at commas that are not escaped by a backslash.
fn rdn_strings(s: &str) -> Vec<&str> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b',' => {
                out.push(&s[start..i]);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    out.push(&s[start.min(s.len())..]);
    out
}

const HASH: &str = "0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789abcdef";

fn check_one(s: &str) -> Option<Dn> {
    let slash = format!("/{s}");
    assert!(
        Dn::parse(&slash).is_err(),
        "accepted the OpenSSL form {slash:?}"
    );
    assert!(Dn::parse(&format!(" \t/{s}")).is_err());

    let parsed = Dn::parse(s);
    assert_eq!(
        ClientCert::from_envoy(s, None, None).is_ok(),
        parsed.is_ok(),
        "from_envoy and Dn::parse disagree"
    );
    let dn = parsed.ok()?;
    assert!(!s.trim_matches([' ', '\t']).starts_with('/'));
    assert!(dn.matches(&dn));
    assert_eq!(Dn::parse(s).ok().as_ref(), Some(&dn));

    let rdns = rdn_strings(s);
    let reversed: Vec<&str> = rdns.iter().rev().copied().collect();
    let reversed = reversed.join(",");
    let rev = Dn::parse(&reversed)
        .unwrap_or_else(|e| panic!("reversed {reversed:?} does not parse: {e}"));
    assert!(
        dn.matches(&rev) && rev.matches(&dn),
        "reversed order does not match"
    );

    for attr in [
        "CN",
        "O",
        "OU",
        "C",
        "organizationIdentifier",
        "2.5.4.97",
        "UID",
        "cn",
    ] {
        let _ = dn.get(attr);
    }

    let xfcc = format!("By=spiffe://edge;Hash={HASH};Subject=\"{s}\";URI=spiffe://tpp/a");
    let cert = ClientCert::from_xfcc(&xfcc)
        .unwrap_or_else(|e| panic!("XFCC with a valid subject refused: {e}"));
    assert!(cert.subject.matches(&dn) && dn.matches(&cert.subject));
    assert_eq!(cert.uri_sans, vec!["spiffe://tpp/a".to_string()]);
    let want: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&HASH[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    assert_eq!(cert.sha256.map(|h| h.to_vec()), Some(want));
    let two = format!("{xfcc},Subject=\"CN=someone else\";URI=spiffe://other");
    let first = ClientCert::from_xfcc(&two).unwrap();
    assert!(first.subject.matches(&dn));
    assert_eq!(first.uri_sans, cert.uri_sans);
    Some(dn)
}

fuzz_target!(|data: &[u8]| {
    let (a, b) = match data.iter().position(|c| *c == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let Ok(a) = std::str::from_utf8(a) else {
        return;
    };
    let da = check_one(a);
    // Any header at all: never a panic, and a Subject it yields is a DN the parser accepts.
    if let Ok(c) = ClientCert::from_xfcc(a) {
        assert!(c.subject.matches(&c.subject));
    }
    if let Some(Ok(b)) = b.map(std::str::from_utf8) {
        let db = check_one(b);
        if let (Some(x), Some(y)) = (&da, &db) {
            assert_eq!(x.matches(y), y.matches(x), "matches is not symmetric");
        }
    }
});
