//! Time checks: `issuance_time` (the request JWT) and the SSA time checks of `ssa_signature`.
//! Leeway applies to `exp`, `nbf` and a future `iat` (spec §4a), not to the maximum age.

use crate::claims::{opt_date, Claims};

/// `issuance_time`: `exp` present and in the future; `iat` present, not in the future, and at most
/// `max_age` seconds old; `nbf`, when present, not in the future.
pub(crate) fn check_request(
    claims: &Claims,
    now: i64,
    leeway: i64,
    max_age: i64,
) -> Result<(), String> {
    let exp = opt_date(claims, "exp")?.ok_or("claim `exp` not found")?;
    let iat = opt_date(claims, "iat")?.ok_or("claim `iat` not found")?;
    expiry(exp, now, leeway, "request JWT")?;
    issued(iat, now, leeway, "request JWT")?;
    if now.saturating_sub(iat) > max_age {
        return Err(format!(
            "request JWT is too old: issued {} s ago, the limit is {max_age} s",
            now.saturating_sub(iat)
        ));
    }
    not_before(claims, now, leeway, "request JWT")
}

/// The SSA time checks of `ssa_signature`: `iat` not in the future and, when the directory sets a
/// maximum age, present and not older than it; `exp` in the future when present, and present when
/// the directory requires it; `nbf` not in the future.
pub(crate) fn check_ssa(
    claims: &Claims,
    now: i64,
    leeway: i64,
    max_age: Option<u64>,
    require_exp: bool,
) -> Result<(), String> {
    match opt_date(claims, "iat")? {
        Some(iat) => {
            issued(iat, now, leeway, "SSA")?;
            if let Some(max) = max_age {
                let max = i64::try_from(max).unwrap_or(i64::MAX);
                if now.saturating_sub(iat) > max {
                    return Err(format!(
                        "SSA is too old: issued {} s ago, the directory allows {max} s",
                        now.saturating_sub(iat)
                    ));
                }
            }
        }
        None if max_age.is_some() => return Err("SSA claim `iat` not found".to_string()),
        None => {}
    }
    match opt_date(claims, "exp")? {
        Some(exp) => expiry(exp, now, leeway, "SSA")?,
        None if require_exp => return Err("SSA claim `exp` not found".to_string()),
        None => {}
    }
    not_before(claims, now, leeway, "SSA")
}

fn expiry(exp: i64, now: i64, leeway: i64, what: &str) -> Result<(), String> {
    if now >= exp.saturating_add(leeway) {
        return Err(format!("{what} has expired"));
    }
    Ok(())
}

fn issued(iat: i64, now: i64, leeway: i64, what: &str) -> Result<(), String> {
    if iat > now.saturating_add(leeway) {
        return Err(format!("{what} `iat` is in the future"));
    }
    Ok(())
}

fn not_before(claims: &Claims, now: i64, leeway: i64, what: &str) -> Result<(), String> {
    if let Some(nbf) = opt_date(claims, "nbf")? {
        if nbf > now.saturating_add(leeway) {
            return Err(format!("{what} is not valid yet (`nbf`)"));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::type_complexity)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

    fn c(v: serde_json::Value) -> Claims {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn request_table() {
        let cases: Vec<(&str, serde_json::Value, Option<&str>)> = vec![
            ("fresh", json!({"iat": NOW, "exp": NOW + 300}), None),
            (
                "exp at now+leeway-1 … still ok",
                json!({"iat": NOW, "exp": NOW - 59}),
                None,
            ),
            (
                "exp exactly leeway ago",
                json!({"iat": NOW, "exp": NOW - 60}),
                Some("expired"),
            ),
            (
                "exp an hour ago",
                json!({"iat": NOW - 3600, "exp": NOW - 3600}),
                Some("expired"),
            ),
            (
                "iat leeway in future",
                json!({"iat": NOW + 60, "exp": NOW + 300}),
                None,
            ),
            (
                "iat leeway+1 in future",
                json!({"iat": NOW + 61, "exp": NOW + 300}),
                Some("future"),
            ),
            (
                "age at limit",
                json!({"iat": NOW - 3600, "exp": NOW + 300}),
                None,
            ),
            (
                "age over limit",
                json!({"iat": NOW - 3601, "exp": NOW + 300}),
                Some("too old"),
            ),
            (
                "nbf leeway",
                json!({"iat": NOW, "exp": NOW + 300, "nbf": NOW + 60}),
                None,
            ),
            (
                "nbf future",
                json!({"iat": NOW, "exp": NOW + 300, "nbf": NOW + 61}),
                Some("not valid yet"),
            ),
            ("no exp", json!({"iat": NOW}), Some("`exp` not found")),
            ("no iat", json!({"exp": NOW + 10}), Some("`iat` not found")),
            (
                "exp string",
                json!({"iat": NOW, "exp": "soon"}),
                Some("`exp` must be a NumericDate"),
            ),
            (
                "iat null",
                json!({"iat": null, "exp": NOW + 10}),
                Some("`iat` must be a NumericDate"),
            ),
            (
                "nbf array",
                json!({"iat": NOW, "exp": NOW + 10, "nbf": []}),
                Some("`nbf`"),
            ),
            (
                "fractional",
                json!({"iat": NOW as f64 + 0.5, "exp": NOW as f64 + 10.5}),
                None,
            ),
        ];
        for (name, claims, want) in cases {
            let got = check_request(&c(claims), NOW, 60, 3600);
            match want {
                None => assert!(got.is_ok(), "{name}: {got:?}"),
                Some(w) => assert!(
                    got.as_ref().is_err_and(|e| e.contains(w)),
                    "{name}: {got:?}"
                ),
            }
        }
    }

    #[test]
    fn ssa_table() {
        let cases: Vec<(&str, serde_json::Value, Option<u64>, bool, Option<&str>)> = vec![
            (
                "uk: no exp, no age",
                json!({"iat": NOW - 86400 * 365}),
                None,
                false,
                None,
            ),
            ("no iat, no age", json!({}), None, false, None),
            (
                "iat future",
                json!({"iat": NOW + 61}),
                None,
                false,
                Some("future"),
            ),
            (
                "br age ok",
                json!({"iat": NOW - 300}),
                Some(300),
                false,
                None,
            ),
            (
                "br age over",
                json!({"iat": NOW - 301}),
                Some(300),
                false,
                Some("too old"),
            ),
            (
                "br no iat",
                json!({}),
                Some(300),
                false,
                Some("`iat` not found"),
            ),
            (
                "au exp ok",
                json!({"iat": NOW, "exp": NOW + 600}),
                None,
                true,
                None,
            ),
            (
                "au no exp",
                json!({"iat": NOW}),
                None,
                true,
                Some("`exp` not found"),
            ),
            (
                "expired",
                json!({"iat": NOW - 700, "exp": NOW - 100}),
                None,
                false,
                Some("expired"),
            ),
            (
                "exp wrong type",
                json!({"exp": "x"}),
                None,
                false,
                Some("NumericDate"),
            ),
            (
                "nbf future",
                json!({"nbf": NOW + 100}),
                None,
                false,
                Some("not valid yet"),
            ),
        ];
        for (name, claims, age, req, want) in cases {
            let got = check_ssa(&c(claims), NOW, 60, age, req);
            match want {
                None => assert!(got.is_ok(), "{name}: {got:?}"),
                Some(w) => assert!(
                    got.as_ref().is_err_and(|e| e.contains(w)),
                    "{name}: {got:?}"
                ),
            }
        }
    }
}
