//! The checks every part of the configuration shares (names, lists, algorithms, scope tokens,
//! bounds) and the error that names the refused field.

use std::fmt;

use crate::jose::Alg;

/// A refused configuration: the field (a JSON path such as `directories[0].jwks[1].url`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where: a JSON path such as `rules.audience.audiences[0]`, or empty for the whole document.
    pub field: String,
    /// Why, naming what to change.
    pub message: String,
}

impl ConfigError {
    pub(super) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() || self.field == "." {
            write!(f, "invalid configuration: {}", self.message)
        } else {
            write!(
                f,
                "invalid configuration field `{}`: {}",
                self.field, self.message
            )
        }
    }
}

impl std::error::Error for ConfigError {}

/// serde_json appends " at line L column C"; the field path already says where.
pub(super) fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg.get(..i).unwrap_or(msg).to_string(),
        None => msg.to_string(),
    }
}

pub(super) fn non_empty_name(field: &str, value: &str) -> Result<String, ConfigError> {
    if value.trim().is_empty() {
        return Err(ConfigError::new(field, "must not be empty"));
    }
    Ok(value.to_string())
}

pub(super) fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// A list of names: each non-blank, no duplicates; empty allowed only with `allow_empty`.
pub(super) fn names(
    field: &str,
    list: Vec<String>,
    allow_empty: bool,
) -> Result<Vec<String>, ConfigError> {
    if list.is_empty() && !allow_empty {
        return Err(ConfigError::new(field, "must not be empty"));
    }
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for (i, n) in list.into_iter().enumerate() {
        if n.trim().is_empty() {
            return Err(ConfigError::new(
                format!("{field}[{i}]"),
                "must not be empty",
            ));
        }
        if out.contains(&n) {
            return Err(ConfigError::new(
                format!("{field}[{i}]"),
                format!("`{n}` is listed twice"),
            ));
        }
        out.push(n);
    }
    Ok(out)
}

pub(super) fn parse_algs(field: &str, names: &[String]) -> Result<Vec<Alg>, ConfigError> {
    if names.is_empty() {
        return Err(ConfigError::new(field, "must list at least one algorithm"));
    }
    let mut out = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let f = format!("{field}[{i}]");
        if crate::jose::alg_is_forbidden(n) {
            return Err(ConfigError::new(
                f,
                format!("`{n}` is never allowed (unsigned and HMAC JWS are always refused)"),
            ));
        }
        let alg = Alg::parse(n).ok_or_else(|| {
            ConfigError::new(
                &f,
                format!("unsupported algorithm `{n}` (supported: PS256, ES256, RS256, EdDSA)"),
            )
        })?;
        if !out.contains(&alg) {
            out.push(alg);
        }
    }
    Ok(out)
}

/// Metadata algorithm names: `none` and HS* are never allowed.
pub(super) fn metadata_algs(field: &str, list: Vec<String>) -> Result<Vec<String>, ConfigError> {
    let list = names(field, list, false)?;
    if let Some((i, a)) = list
        .iter()
        .enumerate()
        .find(|(_, a)| crate::jose::alg_is_forbidden(a))
    {
        return Err(ConfigError::new(
            format!("{field}[{i}]"),
            format!("`{a}` is never allowed"),
        ));
    }
    Ok(list)
}

/// One OAuth scope token (RFC 6749 §3.3: printable ASCII but space, `"` and `\\`): it is quoted
/// in the `WWW-Authenticate` challenge of a 403.
pub(super) fn scope_token(field: &str, value: &str) -> Result<String, ConfigError> {
    let ok = |b: u8| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b);
    if value.is_empty() || !value.bytes().all(ok) {
        return Err(ConfigError::new(
            field,
            "must be one OAuth scope token (printable ASCII, no space, `\"` or `\\`)",
        ));
    }
    Ok(value.to_string())
}

/// The range a number of the document must be in. Each is a named constant (config/raw.rs) that
/// both [`bounded`] enforces and the derived schema states as `minimum`/`maximum`.
#[derive(Clone, Copy)]
pub(super) struct Bounds<T> {
    pub(super) min: T,
    pub(super) max: T,
}

pub(super) fn bounded<T: PartialOrd + Copy + fmt::Display>(
    field: &str,
    value: Option<T>,
    default: T,
    Bounds { min, max }: Bounds<T>,
) -> Result<T, ConfigError> {
    let v = value.unwrap_or(default);
    if v < min || v > max {
        return Err(ConfigError::new(
            field,
            format!("must be between {min} and {max}"),
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests;
