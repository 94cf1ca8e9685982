//! The software-JWKS host allow-list: which host and port each entry allows, and which entries
//! are refused.
#![allow(clippy::type_complexity)]

use serde_json::json;

use super::*;
use crate::config::tests::{minimal, parse, refused};

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

/// The most specific entry wins whatever the order, as in Envoy's virtual host domains: an exact
/// host, then the longest `*.` domain, then `*` — a `*` (a dynamic forward proxy) listed first
/// must not take a host the operator pinned to its own cluster.
#[test]
fn the_most_specific_host_entry_wins_whatever_the_order() {
    let entries = [
        json!({"host": "*", "upstream": "any"}),
        json!({"host": "*.example.com", "upstream": "domain"}),
        json!({"host": "*.tpp.example.com", "upstream": "subdomain"}),
        json!({"host": "keys.tpp.example.com", "upstream": "exact"}),
    ];
    // Every order of the four entries.
    let orders = [
        [0, 1, 2, 3],
        [0, 1, 3, 2],
        [0, 2, 1, 3],
        [0, 2, 3, 1],
        [0, 3, 1, 2],
        [0, 3, 2, 1],
        [1, 0, 2, 3],
        [1, 0, 3, 2],
        [1, 2, 0, 3],
        [1, 2, 3, 0],
        [1, 3, 0, 2],
        [1, 3, 2, 0],
        [2, 0, 1, 3],
        [2, 0, 3, 1],
        [2, 1, 0, 3],
        [2, 1, 3, 0],
        [2, 3, 0, 1],
        [2, 3, 1, 0],
        [3, 0, 1, 2],
        [3, 0, 2, 1],
        [3, 1, 0, 2],
        [3, 1, 2, 0],
        [3, 2, 0, 1],
        [3, 2, 1, 0],
    ];
    for order in orders {
        let mut v = minimal();
        v["software_jwks_hosts"] = json!(order
            .iter()
            .map(|i| entries[*i].clone())
            .collect::<Vec<_>>());
        let c = parse(&v).unwrap();
        for (host, want) in [
            ("keys.tpp.example.com", "exact"),
            ("other.tpp.example.com", "subdomain"),
            ("a.b.tpp.example.com", "subdomain"),
            ("tpp.example.com", "domain"),
            ("keys.example.com", "domain"),
            ("keys.example.org", "any"),
        ] {
            assert_eq!(
                c.software_upstream(host, 443),
                Some(want),
                "{host} with {order:?}"
            );
        }
    }
    // A more specific entry for another port does not hide a less specific one for this port.
    let mut v = minimal();
    v["software_jwks_hosts"] = json!([
        {"host": "keys.tpp.example.com:8443", "upstream": "exact-8443"},
        {"host": "*.tpp.example.com", "upstream": "subdomain"}
    ]);
    let c = parse(&v).unwrap();
    assert_eq!(
        c.software_upstream("keys.tpp.example.com", 443),
        Some("subdomain")
    );
    assert_eq!(
        c.software_upstream("keys.tpp.example.com", 8443),
        Some("exact-8443")
    );
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

/// `*` (any host, for an accredited recipient's own domain behind a dynamic forward proxy): every
/// DNS name of two labels or more on the entry's one port; never an IP literal, a single label,
/// `localhost`, or another port. Entries before it win for their hosts.
#[test]
fn any_host_entry() {
    let mut v = minimal();
    v["software_jwks_hosts"] = json!([
        {"host": "keys.bank-partner.example", "upstream": "partner"},
        {"host": "*", "upstream": "dfp"},
        {"host": "*:9443", "upstream": "dfp-9443"}
    ]);
    let c = parse(&v).unwrap();
    let cases: Vec<(&str, Option<&str>)> = vec![
        ("https://keys.bank-partner.example/jwks", Some("partner")),
        ("https://jwks.adr.example/jwks", Some("dfp")),
        ("https://JWKS.ADR.example:443/a/b.jwks?v=1", Some("dfp")),
        ("https://a.b.c.adr.example.com.au/jwks", Some("dfp")),
        ("https://xn--bcher-kva.example/jwks", Some("dfp")),
        ("https://jwks.adr.example:9443/jwks", Some("dfp-9443")),
        // Ports not listed.
        ("https://jwks.adr.example:8443/jwks", None),
        ("https://jwks.adr.example:80/jwks", None),
        // Not a public DNS name.
        ("https://adr/jwks", None),
        ("https://localhost/jwks", None),
        ("https://keys.localhost/jwks", None),
        // Special-use and private-network names (search-domain completion and internal DNS).
        ("https://vault.svc/jwks", None),
        ("https://vault.default.svc/jwks", None),
        ("https://keys.cluster.local/jwks", None),
        ("https://printer.local/jwks", None),
        ("https://jwks.corp/jwks", None),
        ("https://db.internal/jwks", None),
        ("https://router.home.arpa/jwks", None),
        ("https://x.onion/jwks", None),
        ("https://keys.lan/jwks", None),
        ("https://jwks.adr.example./jwks", None),
        ("https://under_score.example/jwks", None),
        // IP literals in every spelling.
        ("https://127.0.0.1/jwks", None),
        ("https://10.1.2.3/jwks", None),
        ("https://169.254.169.254/jwks", None),
        ("https://[::1]/jwks", None),
        ("https://[::ffff:a9fe:a9fe]/jwks", None),
        ("https://0x7f.1/jwks", None),
        ("https://2130706433/jwks", None),
        ("https://1.2.3.4.5/jwks", None),
    ];
    for (url, want) in cases {
        let got = jwks_source(url, "")
            .ok()
            .and_then(|s| c.software_upstream(&s.host, s.port));
        assert_eq!(got, want, "{url}");
    }
    // The URL checks come first, whatever the allow-list: no user information, https only.
    for (url, why) in [
        (
            "https://user@jwks.adr.example/jwks",
            "must not carry user information",
        ),
        ("http://jwks.adr.example/jwks", "must use https"),
    ] {
        let got = crate::keys::software_source(url, |h, p| c.software_upstream(h, p));
        assert_eq!(
            got.err(),
            Some(crate::keys::SoftwareSourceError::Url(why.into())),
            "{url}"
        );
    }

    // Entry forms: `*` and `*:port` only.
    for (entry, ok) in [
        ("*", true),
        ("*:8443", true),
        (" * ", true),
        ("**", false),
        ("*:", false),
        ("*:0", false),
        ("*.*", false),
        ("*x.example", false),
        ("*.", false),
    ] {
        let mut v = minimal();
        v["software_jwks_hosts"] = json!([{"host": entry, "upstream": "u"}]);
        match parse(&v) {
            Ok(c) => {
                assert!(ok, "{entry}: accepted");
                assert_eq!(c.software_hosts[0].pattern, HostPattern::Any, "{entry}");
            }
            Err(e) => {
                assert!(!ok, "{entry}: {e:?}");
                assert_eq!(e.field, "software_jwks_hosts[0].host", "{entry}");
            }
        }
    }
}

/// `directories[].jwks[]` entries that pin a JWKS document (`inline`): parsed at configure, held
/// to the JWKS limits, every entry a usable public signature key, named when it is not.
#[test]
fn inline_jwks_is_parsed_and_checked_at_configure() {
    use dcr_guard_testkit::keys::{jwks, TestKey};
    let (ec, rsa, ed) = (
        TestKey::ec("pinned-ec"),
        TestKey::rsa("pinned-rsa"),
        TestKey::ed("pinned-ed"),
    );
    let with_inline = |doc: serde_json::Value| {
        let mut v = minimal();
        v["directories"][0]["jwks"] = json!([
            {"url": "https://keystore.openbanking.org.uk/keystore/openbanking.jwks", "upstream": "ob"},
            {"inline": doc}
        ]);
        v
    };
    // Accepted: fetched and pinned side by side, in configuration order.
    let c = parse(&with_inline(jwks(&[&ec, &rsa, &ed]))).unwrap();
    let d = c.directory("OpenBanking Ltd").unwrap();
    assert!(d.jwks[0].pinned.is_none());
    assert_eq!(d.jwks[0].upstream, "ob");
    let pinned = d.jwks[1].pinned.as_ref().unwrap();
    assert_eq!(pinned.0.keys.len(), 3);
    assert_eq!(d.jwks[1].url, "inline:directories[0].jwks[1]");
    // Only pinned keys (an air-gapped deployment): no URL at all.
    let mut v = minimal();
    v["directories"][0]["jwks"] = json!([{"inline": jwks(&[&ec])}]);
    assert!(parse(&v).unwrap().directories[0].jwks[0].pinned.is_some());

    let small_rsa = TestKey::rsa_bits("small", 1024);
    let mut private = ec.public_jwk();
    private["d"] = json!("AAAA");
    let (field, bad_keys) = (
        "directories[0].jwks[1].inline",
        "directories[0].jwks[1].inline.keys",
    );
    // (inline document, field named, words of the message)
    let cases: Vec<(serde_json::Value, String, &str)> = vec![
        (
            json!("{\"keys\": []}"),
            field.into(),
            "must be a JWKS document",
        ),
        (json!({"keys": []}), field.into(), "non-empty `keys` array"),
        (
            json!({"key": [ec.public_jwk()]}),
            field.into(),
            "non-empty `keys` array",
        ),
        (
            json!([ec.public_jwk()]),
            field.into(),
            "must be a JWKS document",
        ),
        (
            json!({"keys": [ec.public_jwk(), private]}),
            format!("{bad_keys}[1]"),
            "the key (kid `pinned-ec`) carries the private key member `d`",
        ),
        (
            json!({"keys": [small_rsa.public_jwk()]}),
            format!("{bad_keys}[0]"),
            "the key (kid `small`) is an RSA key of 1024 bits",
        ),
        (
            json!({"keys": [ec.public_jwk_with(json!({"use": "enc"}))]}),
            format!("{bad_keys}[0]"),
            "is not a usable public signature key",
        ),
        (
            json!({"keys": [ec.public_jwk_with(json!({"crv": "P-384"}))]}),
            format!("{bad_keys}[0]"),
            "is not a usable public signature key",
        ),
        (
            json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "AAAA"}]}),
            format!("{bad_keys}[0]"),
            "the key is not a usable public signature key",
        ),
        (
            json!({"keys": ["x"]}),
            format!("{bad_keys}[0]"),
            "is not a JSON object",
        ),
        (
            json!({"keys": [ec.public_jwk(), ec.with_kid("other").public_jwk_with(json!({"kid": "pinned-ec"}))]}),
            format!("{bad_keys}[1]"),
            "the kid `pinned-ec` is used by another key",
        ),
    ];
    for (doc, want_field, words) in cases {
        let e = refused(with_inline(doc.clone()));
        assert_eq!(e.field, want_field, "{doc}");
        assert!(e.message.contains(words), "{doc}: {e}");
    }

    // The JWKS limits hold for a pinned document as for a fetched one.
    let mut v = with_inline(jwks(&[&ec, &rsa]));
    v["limits"] = json!({"jwks_keys": 1});
    let e = refused(v);
    assert_eq!(e.field, format!("{bad_keys}"));
    assert!(e.message.contains("more than limits.jwks_keys (1)"), "{e}");
    let mut v = with_inline(jwks(&[&rsa, &rsa.with_kid("r2"), &rsa.with_kid("r3")]));
    v["limits"] = json!({"jwks_bytes": 1024});
    let e = refused(v);
    assert_eq!(e.field, field);
    assert!(
        e.message.contains("more than limits.jwks_bytes (1024)"),
        "{e}"
    );

    // The entry's shape: `url` + `upstream`, or `inline` alone.
    let shapes: Vec<(serde_json::Value, &str, &str)> = vec![
        (
            json!({"url": "https://ks.example/jwks", "upstream": "u", "inline": jwks(&[&ec])}),
            "directories[0].jwks[0]",
            "not both",
        ),
        (
            json!({"upstream": "u", "inline": jwks(&[&ec])}),
            "directories[0].jwks[0].upstream",
            "never fetched",
        ),
        (
            json!({"url": "https://ks.example/jwks"}),
            "directories[0].jwks[0].upstream",
            "missing",
        ),
        (
            json!({"upstream": "u"}),
            "directories[0].jwks[0]",
            "needs `url`",
        ),
        (json!({}), "directories[0].jwks[0]", "needs `url`"),
        (
            json!({"file": "/etc/dcr-guard/ob.jwks"}),
            "directories[0].jwks[0].file",
            "unknown field `file`",
        ),
    ];
    for (entry, want_field, words) in shapes {
        let mut v = minimal();
        v["directories"][0]["jwks"] = json!([entry.clone()]);
        let e = refused(v);
        assert_eq!(e.field, want_field, "{entry}");
        assert!(e.message.contains(words), "{entry}: {e}");
    }
}
