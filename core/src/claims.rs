//! Typed access to JWT claims. A claim of the wrong JSON type is an error naming the claim, never a
//! crash (spec §4: "Claims of the wrong JSON type … fail the rule that reads them").

use serde_json::{Map, Value};

/// A JWT's (or a JSON body's) claims.
pub type Claims = Map<String, Value>;

/// The member helpers every JSON object of the engine shares (JOSE headers, JWKs, claims).
pub(crate) use crate::jose::{opt_str, type_name};

/// A required, non-blank string claim.
pub(crate) fn req_str<'a>(claims: &'a Claims, name: &str) -> Result<&'a str, String> {
    match opt_str(claims, name)? {
        None => Err(format!("claim `{name}` not found")),
        Some(s) if s.trim().is_empty() => Err(format!("claim `{name}` cannot be empty")),
        Some(s) => Ok(s),
    }
}

/// A NumericDate claim (RFC 7519 §2: seconds, possibly fractional), as whole seconds (floor).
pub(crate) fn opt_date(claims: &Claims, name: &str) -> Result<Option<i64>, String> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                return Ok(Some(i));
            }
            match n.as_f64() {
                Some(f) if f.is_finite() && f.abs() < 1e15 => Ok(Some(f.floor() as i64)),
                _ => Err(format!("claim `{name}` is not a valid NumericDate")),
            }
        }
        Some(other) => Err(format!(
            "claim `{name}` must be a NumericDate (a number), not {}",
            type_name(other)
        )),
    }
}

/// An array-of-strings claim: `Ok(None)` when absent; `Err` naming the claim when it is not an array
/// or holds something other than strings.
pub(crate) fn opt_str_array<'a>(
    claims: &'a Claims,
    name: &str,
) -> Result<Option<Vec<&'a str>>, String> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.as_str()),
                other => Err(format!(
                    "claim `{name}` must hold only strings, not {}",
                    type_name(other)
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => Err(format!(
            "claim `{name}` must be an array of strings, not {}",
            type_name(other)
        )),
    }
}

/// A claim that may be a string or an array of strings (`aud`).
pub(crate) fn opt_str_or_array<'a>(
    claims: &'a Claims,
    name: &str,
) -> Result<Option<Vec<&'a str>>, String> {
    match claims.get(name) {
        Some(Value::String(s)) => Ok(Some(vec![s.as_str()])),
        _ => opt_str_array(claims, name),
    }
}

/// The space-separated tokens of a `scope` value.
pub(crate) fn scope_tokens(scope: &str) -> Vec<&str> {
    scope.split(' ').filter(|t| !t.is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn c(v: Value) -> Claims {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn strings() {
        let m = c(json!({"a": "x", "b": 1, "c": null, "d": " ", "e": ["x"]}));
        assert_eq!(opt_str(&m, "a"), Ok(Some("x")));
        assert_eq!(opt_str(&m, "z"), Ok(None));
        assert!(opt_str(&m, "b")
            .unwrap_err()
            .contains("`b` must be a string, not a number"));
        assert!(opt_str(&m, "c").unwrap_err().contains("null"));
        assert!(req_str(&m, "d").unwrap_err().contains("cannot be empty"));
        assert!(req_str(&m, "z").unwrap_err().contains("not found"));
        assert!(req_str(&m, "e").unwrap_err().contains("an array"));
    }

    #[test]
    fn dates() {
        let m = c(json!({"a": 10, "b": 10.9, "c": "10", "d": 1e300, "e": -5}));
        assert_eq!(opt_date(&m, "a"), Ok(Some(10)));
        assert_eq!(opt_date(&m, "b"), Ok(Some(10)));
        assert!(opt_date(&m, "c").is_err());
        assert!(opt_date(&m, "d").is_err());
        assert_eq!(opt_date(&m, "e"), Ok(Some(-5)));
        assert_eq!(opt_date(&m, "z"), Ok(None));
    }
}
