//! The configuration parser (`Config::from_json`).
//!
//! Properties, for every document it accepts:
//! * limits and bounds are within their documented ranges (body, JWKS size and key count,
//!   callout timeout, leeway, retry-after, JWKS cache lifetimes, replay store, retention floor);
//! * the registration path is absolute, lower case, without a trailing `/`, `.`/`..` segments,
//!   `%`, `;`, `?`, `#` or empty segments;
//! * at least one directory, each with at least one `https` JWKS URL whose written host is the
//!   host fetched, and algorithms; the request
//!   algorithms are non-empty; `none`/`HS*` can never be configured (the type cannot hold them);
//! * parsing is deterministic, and insensitive to the document's formatting (the same JSON value
//!   re-serialised compactly gives the same configuration);
//! * a refused document's error names a field and a reason, and refusal is deterministic.
#![no_main]

use dcr_guard_core::config::Config;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn check(c: &Config) {
    let l = &c.limits;
    assert!((1024..=1024 * 1024).contains(&l.body_bytes));
    assert!((1024..=4 * 1024 * 1024).contains(&l.jwks_bytes));
    assert!((1..=1000).contains(&l.jwks_keys));
    assert!((10..=60_000).contains(&l.callout_timeout_ms));
    assert!(c.leeway <= 600);
    assert!((1..=3600).contains(&c.retry_after));
    assert!(c.rules.max_request_age > 0);

    let j = &c.jwks_cache;
    assert!(1 <= j.min_ttl && j.min_ttl <= j.default_ttl && j.default_ttl <= j.max_ttl);
    assert!(j.max_ttl <= 7 * 86_400 && j.min_ttl <= 86_400);
    assert!((1..=3600).contains(&j.kid_refetch_cooldown));
    assert!(j.refresh_ahead <= 3600 && j.stale_if_error <= 7 * 86_400);
    assert!(j.lease_ttl >= 2 && j.lease_ttl * 1000 >= l.callout_timeout_ms);

    let r = &c.replay;
    assert!((1..=4096).contains(&r.store.buckets));
    assert!((1..=4096).contains(&r.store.entries_per_bucket));
    assert!(r.max_retention >= c.rules.max_request_age + c.leeway);
    if c.json_body {
        assert!(!c.rules.request_jti, "request_jti on a JSON body");
    }

    let p = &c.path;
    assert!(
        p.starts_with('/') && p.len() > 1 && !p.ends_with('/'),
        "{p:?}"
    );
    assert_eq!(p, &p.to_ascii_lowercase());
    assert!(!p.contains(['?', '#', '%', ';']) && !p.contains("//"));
    assert!(!p.split('/').any(|s| s == "." || s == ".."));

    assert!(!c.directories.is_empty());
    for d in &c.directories {
        assert!(!d.issuer.trim().is_empty());
        assert!(!d.jwks.is_empty() && !d.algorithms.is_empty());
        for s in &d.jwks {
            // The host written is the host fetched (the `https:/9/…` find).
            assert!(
                s.url
                    .get(..8)
                    .is_some_and(|p| p.eq_ignore_ascii_case("https://")),
                "{}",
                s.url
            );
            let written = s.url[8..]
                .split(['/', '?', '#'])
                .next()
                .unwrap()
                .to_ascii_lowercase();
            assert!(
                written == s.host || written.starts_with(&format!("{}:", s.host)),
                "{}",
                s.url
            );
            assert!(!s.upstream.is_empty() && !s.host.is_empty() && s.path.starts_with('/'));
            assert_eq!(s.host, s.host.to_ascii_lowercase());
        }
    }
    assert!(!c.request_algorithms.is_empty());
    for h in &c.software_hosts {
        assert!(!h.upstream.is_empty());
    }
}

fuzz_target!(|data: &[u8]| {
    let first = Config::from_json(data);
    let again = Config::from_json(data);
    match (&first, &again) {
        (Ok(a), Ok(b)) => assert_eq!(format!("{a:?}"), format!("{b:?}")),
        (Err(a), Err(b)) => {
            assert_eq!(a.to_string(), b.to_string());
            assert!(!a.to_string().is_empty());
        }
        _ => panic!("configuration parsing is not deterministic"),
    }
    let Ok(cfg) = first else { return };
    check(&cfg);
    let value: Value = serde_json::from_slice(data).expect("accepted a document that is not JSON");
    let compact = serde_json::to_vec(&value).unwrap();
    let re = Config::from_json(&compact).expect("the same document, reformatted, is refused");
    assert_eq!(format!("{cfg:?}"), format!("{re:?}"));
});
