//! `token_client_binding` (spec §5): the bearer token of a management request (GET, PUT, DELETE on
//! `/register/{client_id}`) must belong to that client. How it is checked depends on the AS:
//! `delegate` (the AS binds its own opaque registration access token; the filter checks that a
//! well-formed bearer token is present) or `jwt` (a JWT access token signed by the AS).

use crate::claims::{opt_date, opt_str, opt_str_or_array, scope_tokens};
pub(crate) use crate::config::media_type;
pub use crate::config::{Endpoint, Introspection, JwtBinding, TokenMode, ACCESS_TOKEN_TYP};
use crate::error::DcrError;

/// Longest bearer token accepted (the `Authorization: Bearer` value of a management request), in
/// bytes.
pub const MAX_BEARER_TOKEN_BYTES: usize = 8192;

/// An HTTP call other than a JWKS fetch (an introspection request).
#[derive(Debug, Clone)]
pub struct Callout {
    pub upstream: String,
    pub authority: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The token of an `Authorization: Bearer …` header (RFC 6750 §2.1). No header, or another scheme,
/// is a request without bearer credentials (401 with a bare challenge); an empty or malformed
/// token is `invalid_token`.
pub fn bearer(header: Option<&str>) -> Result<&str, DcrError> {
    let h = match header {
        None => return Err(DcrError::unauthenticated()),
        Some(h) => h.trim(),
    };
    let (scheme, rest) = match h.split_once(' ') {
        Some((s, r)) => (s, r.trim_start_matches(' ')),
        None => (h, ""),
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(DcrError::unauthenticated());
    }
    if rest.is_empty() {
        return Err(DcrError::invalid_token("empty bearer token"));
    }
    if rest.len() > MAX_BEARER_TOKEN_BYTES {
        return Err(DcrError::invalid_token("bearer token too long"));
    }
    let body = rest.trim_end_matches('=');
    let ok = !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
    if !ok {
        return Err(DcrError::invalid_token("malformed bearer token"));
    }
    Ok(rest)
}

/// Why a bearer token does not pass the binding.
pub(crate) enum TokenRefusal {
    /// The AS could not answer usefully: a dependency fault.
    Unavailable(String),
    /// The token is not good for this client.
    Invalid(String),
    /// The token is good for this client but lacks the configured scope (403).
    Scope(String),
}

/// The RFC 7662 request: `POST` form `token=…&token_type_hint=access_token`, the introspection
/// client authenticated with HTTP Basic (RFC 6749 §2.3.1 form-encodes id and secret first).
pub(crate) fn introspection_call(i: &Introspection, token: &str) -> Callout {
    use base64::Engine as _;
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("token", token)
        .append_pair("token_type_hint", "access_token")
        .finish();
    let enc = |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        enc(&i.client_id),
        enc(&i.secret)
    ));
    Callout {
        upstream: i.endpoint.upstream.clone(),
        authority: i.endpoint.authority.clone(),
        path: i.endpoint.path.clone(),
        headers: vec![
            (
                "content-type".into(),
                "application/x-www-form-urlencoded".into(),
            ),
            ("accept".into(), "application/json".into()),
            ("authorization".into(), format!("Basic {basic}")),
        ],
        body: form.into_bytes(),
    }
}

pub(crate) fn introspected(
    i: &Introspection,
    status: Option<u16>,
    body: &[u8],
    client_id: &str,
    now: i64,
    leeway: i64,
) -> Result<(), TokenRefusal> {
    match status {
        Some(200) => {}
        Some(s) => {
            // 401/403 mean the filter's own credentials are wrong: an operator's problem, not
            // the TPP's.
            return Err(TokenRefusal::Unavailable(format!(
                "token introspection answered HTTP {s}"
            )));
        }
        None => {
            return Err(TokenRefusal::Unavailable(
                "token introspection did not answer".into(),
            ))
        }
    }
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|_| {
        TokenRefusal::Unavailable("token introspection answered something other than JSON".into())
    })?;
    let claims = v.as_object().ok_or_else(|| {
        TokenRefusal::Unavailable(
            "token introspection answered something other than a JSON object".into(),
        )
    })?;
    if claims.get("active") != Some(&serde_json::Value::Bool(true)) {
        return Err(TokenRefusal::Invalid(
            "the access token is not active".into(),
        ));
    }
    if let Ok(Some(exp)) = opt_date(claims, "exp") {
        if now >= exp.saturating_add(leeway) {
            return Err(TokenRefusal::Invalid("the access token has expired".into()));
        }
    }
    let holder = i
        .client_id_claims
        .iter()
        .find_map(|c| opt_str(claims, c).ok().flatten());
    if holder != Some(client_id) {
        return Err(TokenRefusal::Invalid(
            "the access token does not belong to this client".into(),
        ));
    }
    required_scope(i.scope.as_deref(), claims)
}

/// RFC 6750 §3.1: a good token for this client without the configured scope is 403, not 401.
fn required_scope(scope: Option<&str>, claims: &crate::claims::Claims) -> Result<(), TokenRefusal> {
    match scope {
        Some(scope)
            if !scope_tokens(opt_str(claims, "scope").ok().flatten().unwrap_or(""))
                .contains(&scope) =>
        {
            Err(TokenRefusal::Scope(scope.to_string()))
        }
        _ => Ok(()),
    }
}

pub(crate) fn check_claims(
    j: &JwtBinding,
    claims: &crate::claims::Claims,
    client_id: &str,
    now: i64,
    leeway: i64,
) -> Result<(), TokenRefusal> {
    check_token_claims(j, claims, client_id, now, leeway).map_err(TokenRefusal::Invalid)?;
    required_scope(j.scope.as_deref(), claims)
}

/// Everything but the scope: expiry, issuer, audience, and that the token is this client's.
fn check_token_claims(
    j: &JwtBinding,
    claims: &crate::claims::Claims,
    client_id: &str,
    now: i64,
    leeway: i64,
) -> Result<(), String> {
    let exp = opt_date(claims, "exp")
        .ok()
        .flatten()
        .ok_or("the access token has no valid `exp`")?;
    if now >= exp.saturating_add(leeway) {
        return Err("the access token has expired".to_string());
    }
    if let Ok(Some(nbf)) = opt_date(claims, "nbf") {
        if nbf > now.saturating_add(leeway) {
            return Err("the access token is not valid yet".to_string());
        }
    }
    if let Some(iss) = &j.issuer {
        if opt_str(claims, "iss").ok().flatten() != Some(iss.as_str()) {
            return Err("the access token was not issued by this authorization server".to_string());
        }
    }
    if !j.audiences.is_empty() {
        let aud = opt_str_or_array(claims, "aud")
            .ok()
            .flatten()
            .unwrap_or_default();
        if !aud.iter().any(|a| j.audiences.iter().any(|x| x == a)) {
            return Err("the access token is not meant for this endpoint".to_string());
        }
    }
    let holder = j
        .client_id_claims
        .iter()
        .find_map(|c| opt_str(claims, c).ok().flatten());
    match holder {
        Some(id) if id == client_id => Ok(()),
        // Never say which client the token belongs to.
        _ => Err("the access token does not belong to this client".to_string()),
    }
}

#[cfg(test)]
#[allow(clippy::type_complexity)]
mod tests;
