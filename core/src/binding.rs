//! `token_client_binding` (spec §5): the bearer token of a management request (GET, PUT, DELETE on
//! `/register/{client_id}`) must belong to that client. How it is checked depends on the AS:
//! `delegate` (the AS binds its own opaque registration access token; the filter checks that a
//! well-formed bearer token is present) or `jwt` (a JWT access token signed by the AS).

use crate::claims::{opt_date, opt_str, opt_str_or_array, scope_tokens};
use crate::config::media_type;
use crate::config::JwksSource;
pub use crate::config::{Introspection, JwtBinding, TokenMode, ACCESS_TOKEN_TYP};
use crate::error::DcrError;
use crate::jose::{self, Alg, JoseError, Jws};
use crate::pipeline::{Fetched, Step};

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

/// A binding check in progress.
#[derive(Debug)]
pub struct Binding {
    token: Option<Jws>,
    /// The raw bearer token (introspection mode).
    opaque: Option<String>,
    client_id: String,
    docs: Vec<(String, Fetched)>,
    /// `jwt` mode: the AS's documents were asked for again for an unknown `kid` (once).
    kid_retried: bool,
    /// Introspection: whether the call went out, and its answer.
    asked: bool,
    answer: Option<(Option<u16>, Vec<u8>)>,
}

impl Binding {
    /// Read the bearer token; in `jwt` mode parse it and refuse its algorithm before any fetch.
    pub fn start(
        mode: &TokenMode,
        authorization: Option<&str>,
        client_id: &str,
    ) -> Result<Binding, DcrError> {
        let token = bearer(authorization)?;
        let opaque = matches!(mode, TokenMode::Introspection(_)).then(|| token.to_string());
        let parsed = match mode {
            TokenMode::Delegate | TokenMode::Introspection(_) => None,
            TokenMode::Jwt(j) => {
                let jws = Jws::parse(token)
                    .map_err(|_| DcrError::invalid_token("the access token is not a valid JWT"))?;
                let alg = Alg::parse(&jws.header.alg).filter(|a| j.algorithms.contains(a));
                if alg.is_none() {
                    return Err(DcrError::invalid_token(
                        "the access token's algorithm is not allowed",
                    ));
                }
                // Only access tokens manage a registration: an ID token is also a JWT signed by
                // the AS, often with the client as its audience, and it reaches end users.
                if jws.header.typ.as_deref().map(media_type).as_deref() != Some(j.typ.as_str()) {
                    return Err(DcrError::invalid_token(
                        "the token is not an access token (JOSE header `typ`)",
                    ));
                }
                Some(jws)
            }
        };
        Ok(Binding {
            token: parsed,
            opaque,
            client_id: client_id.to_string(),
            docs: Vec::new(),
            kid_retried: false,
            asked: false,
            answer: None,
        })
    }

    pub fn supply(&mut self, url: &str, fetched: Fetched) {
        if !self.docs.iter().any(|(u, _)| u == url) {
            self.docs.push((url.to_string(), fetched));
        }
    }

    /// The introspection endpoint's answer.
    pub fn answer(&mut self, status: Option<u16>, body: Vec<u8>) {
        self.answer = Some((status, body));
    }

    /// Run as far as possible: `Forward` means the token is bound to the path's client.
    pub fn step(&mut self, mode: &TokenMode, now: i64, leeway: i64, retry_after: u32) -> Step {
        if let (TokenMode::Introspection(i), Some(token)) = (mode, &self.opaque) {
            if !self.asked {
                self.asked = true;
                return Step::Call(introspection_call(i, token));
            }
            return match &self.answer {
                None => Step::Reject(DcrError::unavailable(
                    crate::error::RuleId::TokenClientBinding,
                    "token introspection did not answer",
                    retry_after,
                )),
                Some((status, body)) => {
                    match introspected(i, *status, body, &self.client_id, now, leeway) {
                        Ok(()) => Step::Forward,
                        Err(Verdict::Unavailable(m)) => Step::Reject(DcrError::unavailable(
                            crate::error::RuleId::TokenClientBinding,
                            m,
                            retry_after,
                        )),
                        Err(Verdict::Invalid(m)) => Step::Reject(DcrError::invalid_token(m)),
                        Err(Verdict::Scope(s)) => Step::Reject(DcrError::insufficient_scope(&s)),
                    }
                }
            };
        }
        let (j, token) = match (mode, &self.token) {
            (TokenMode::Jwt(j), Some(t)) => (j, t),
            _ => return Step::Forward,
        };
        let missing: Vec<JwksSource> = j
            .jwks
            .iter()
            .filter(|s| !self.docs.iter().any(|(u, _)| *u == s.url))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Step::Fetch(missing);
        }
        let mut sets = Vec::new();
        let mut unavailable = false;
        for (_, f) in &self.docs {
            match f {
                Fetched::Keys(k) => sets.push(k.as_ref()),
                Fetched::Unavailable(_) => unavailable = true,
                Fetched::Unusable(_) => {}
            }
        }
        if let Err(e) = jose::verify(token, &sets, &j.algorithms) {
            // An unknown kid in documents that were all read: the AS may have rotated its keys.
            // Ask once for the documents again (the cache refetches them only past its
            // cooldown, as for directories).
            let all_read = self.docs.iter().all(|(_, f)| matches!(f, Fetched::Keys(_)));
            if matches!(e, JoseError::UnknownKid(_)) && all_read && !self.kid_retried {
                self.kid_retried = true;
                self.docs.clear();
                return Step::Refetch(j.jwks.clone());
            }
            if unavailable && matches!(e, JoseError::UnknownKid(_) | JoseError::NoKey) {
                return Step::Reject(DcrError::unavailable(
                    crate::error::RuleId::TokenClientBinding,
                    "the authorization server's keystore is unavailable",
                    retry_after,
                ));
            }
            return Step::Reject(DcrError::invalid_token(
                "the access token's signature is not valid",
            ));
        }
        match check_claims(j, &token.claims, &self.client_id, now, leeway) {
            Ok(()) => Step::Forward,
            Err(Verdict::Scope(s)) => Step::Reject(DcrError::insufficient_scope(&s)),
            Err(Verdict::Invalid(m) | Verdict::Unavailable(m)) => {
                Step::Reject(DcrError::invalid_token(m))
            }
        }
    }
}

enum Verdict {
    /// The AS could not answer usefully: a dependency fault.
    Unavailable(String),
    /// The token is not good for this client.
    Invalid(String),
    /// The token is good for this client but lacks the configured scope (403).
    Scope(String),
}

/// The RFC 7662 request: `POST` form `token=…&token_type_hint=access_token`, the introspection
/// client authenticated with HTTP Basic (RFC 6749 §2.3.1 form-encodes id and secret first).
fn introspection_call(i: &Introspection, token: &str) -> Callout {
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

fn introspected(
    i: &Introspection,
    status: Option<u16>,
    body: &[u8],
    client_id: &str,
    now: i64,
    leeway: i64,
) -> Result<(), Verdict> {
    match status {
        Some(200) => {}
        Some(s) => {
            // 401/403 mean the filter's own credentials are wrong: an operator's problem, not
            // the TPP's.
            return Err(Verdict::Unavailable(format!(
                "token introspection answered HTTP {s}"
            )));
        }
        None => {
            return Err(Verdict::Unavailable(
                "token introspection did not answer".into(),
            ))
        }
    }
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|_| {
        Verdict::Unavailable("token introspection answered something other than JSON".into())
    })?;
    let claims = v.as_object().ok_or_else(|| {
        Verdict::Unavailable(
            "token introspection answered something other than a JSON object".into(),
        )
    })?;
    if claims.get("active") != Some(&serde_json::Value::Bool(true)) {
        return Err(Verdict::Invalid("the access token is not active".into()));
    }
    if let Ok(Some(exp)) = opt_date(claims, "exp") {
        if now >= exp.saturating_add(leeway) {
            return Err(Verdict::Invalid("the access token has expired".into()));
        }
    }
    let holder = i
        .client_id_claims
        .iter()
        .find_map(|c| opt_str(claims, c).ok().flatten());
    if holder != Some(client_id) {
        return Err(Verdict::Invalid(
            "the access token does not belong to this client".into(),
        ));
    }
    required_scope(i.scope.as_deref(), claims)
}

/// RFC 6750 §3.1: a good token for this client without the configured scope is 403, not 401.
fn required_scope(scope: Option<&str>, claims: &crate::claims::Claims) -> Result<(), Verdict> {
    match scope {
        Some(scope)
            if !scope_tokens(opt_str(claims, "scope").ok().flatten().unwrap_or(""))
                .contains(&scope) =>
        {
            Err(Verdict::Scope(scope.to_string()))
        }
        _ => Ok(()),
    }
}

fn check_claims(
    j: &JwtBinding,
    claims: &crate::claims::Claims,
    client_id: &str,
    now: i64,
    leeway: i64,
) -> Result<(), Verdict> {
    check_token_claims(j, claims, client_id, now, leeway).map_err(Verdict::Invalid)?;
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
