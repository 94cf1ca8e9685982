//! `rules.token_client_binding`'s configuration: how a management request's bearer token is tied
//! to its client (`delegate`, `jwt`, `introspection`), and the secret lookup `introspection` needs.
//! The checks themselves are in `crate::binding`.

use super::checks::{names, non_empty_name, parse_algs, scope_token, ConfigError};
use super::raw::RawBinding;
use crate::jose::Alg;
use crate::keys::{jwks_source, JwksSource};

/// Looks up a secret the configuration names by reference (today `client_secret_env` of
/// `token_client_binding.introspection`): its value, or `None` when there is none. The filter
/// passes its process environment; tests and tools pass what they hold. Secrets never appear in
/// a [`ConfigError`].
pub type Secrets<'a> = &'a dyn Fn(&str) -> Option<String>;

/// `rules.token_client_binding`: how the bearer token of a management request is tied to its
/// client.
#[derive(Debug, Clone)]
pub enum TokenMode {
    /// The AS checks its own registration access token; the filter checks one is present.
    Delegate,
    /// A JWT access token signed by the AS, checked here.
    Jwt(JwtBinding),
    /// An opaque token, asked about at the AS's introspection endpoint.
    Introspection(Introspection),
}

impl TokenMode {
    /// The mode's name as configured (`mode`).
    pub fn as_str(&self) -> &'static str {
        match self {
            TokenMode::Delegate => "delegate",
            TokenMode::Jwt(_) => "jwt",
            TokenMode::Introspection(_) => "introspection",
        }
    }
}

/// Where a call other than a key fetch goes (the introspection endpoint): an https URL checked as
/// strictly as a JWKS URL ([`crate::keys::jwks_source`]), and the upstream it is sent through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The URL as configured.
    pub url: String,
    /// The upstream (Envoy cluster) the call goes through.
    pub upstream: String,
    /// `:authority`: host, plus `:port` when the URL names a non-default port.
    pub authority: String,
    /// `:path`: path and query.
    pub path: String,
}

impl Endpoint {
    /// Check `url` (absolute https, host written plainly, no user information or fragment).
    pub fn parse(url: &str, upstream: &str) -> Result<Endpoint, String> {
        let checked = jwks_source(url, upstream)?;
        Ok(Endpoint {
            url: checked.url,
            upstream: checked.upstream,
            authority: checked.authority,
            path: checked.path,
        })
    }
}

/// RFC 7662 token introspection at the AS.
#[derive(Clone)]
pub struct Introspection {
    /// The introspection endpoint and its upstream.
    pub endpoint: Endpoint,
    /// The filter's client id at the AS (HTTP Basic user).
    pub client_id: String,
    /// Looked up through [`Secrets`] at configure time; never logged.
    pub secret: String,
    /// A scope the token must carry.
    pub scope: Option<String>,
    /// Claims of the introspection answer that may name the client.
    pub client_id_claims: Vec<String>,
}

impl std::fmt::Debug for Introspection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Introspection")
            .field("endpoint", &self.endpoint.url)
            .field("client_id", &self.client_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// `mode: jwt`: what a JWT access token must be to manage a registration.
#[derive(Debug, Clone)]
pub struct JwtBinding {
    /// The AS's JWKS.
    pub jwks: Vec<JwksSource>,
    /// Algorithms the token may be signed with.
    pub algorithms: Vec<Alg>,
    /// The `iss` required, if pinned.
    pub issuer: Option<String>,
    /// One of these must be in `aud` (none: `aud` not checked).
    pub audiences: Vec<String>,
    /// A scope the token must carry.
    pub scope: Option<String>,
    /// Claims that may name the client (the first present wins).
    pub client_id_claims: Vec<String>,
    /// The JOSE header `typ` a token must carry, as [`media_type`] gives it: RFC 9068's
    /// `application/at+jwt` unless the operator configured another one.
    pub typ: String,
}

/// RFC 9068 §2.1: JWT access tokens carry `typ` `at+jwt`.
pub const ACCESS_TOKEN_TYP: &str = "application/at+jwt";

/// A JOSE `typ` value as a media type to compare: lower case (media types are
/// case-insensitive), and with `application/` prepended when it has no `/` (RFC 7515 §4.1.9), so
/// that `at+jwt`, `AT+JWT` and `application/at+jwt` are the same type.
pub(crate) fn media_type(typ: &str) -> String {
    let t = typ.to_ascii_lowercase();
    if t.contains('/') {
        t
    } else {
        format!("application/{t}")
    }
}

/// `rules.token_client_binding`: on (`delegate`) unless switched off; each mode takes only its own
/// fields.
pub(super) fn resolve_binding(
    raw: Option<&RawBinding>,
    secrets: Secrets<'_>,
) -> Result<Option<TokenMode>, ConfigError> {
    let f = "rules.token_client_binding";
    if !raw.and_then(|r| r.enabled).unwrap_or(true) {
        return Ok(None);
    }
    let Some(r) = raw else {
        return Ok(Some(TokenMode::Delegate));
    };
    let introspection = r.mode.as_deref() == Some("introspection");
    if r.introspection.is_some() != introspection {
        return Err(ConfigError::new(
            format!("{f}.introspection"),
            "is required by mode `introspection` and only allowed with it",
        ));
    }
    match r.mode.as_deref() {
        None | Some("delegate") => delegate(r),
        Some("introspection") => introspection_mode(r, secrets),
        Some("jwt") => jwt(r),
        Some(other) => Err(ConfigError::new(
            format!("{f}.mode"),
            format!("unknown mode `{other}` (delegate, jwt, introspection)"),
        )),
    }
}

/// `mode: delegate` takes none of the other modes' fields.
fn delegate(r: &RawBinding) -> Result<Option<TokenMode>, ConfigError> {
    let jwt_fields = r.jwks.is_some()
        || r.algorithms.is_some()
        || r.issuer.is_some()
        || r.audiences.is_some()
        || r.scope.is_some()
        || r.client_id_claims.is_some()
        || r.typ.is_some();
    if jwt_fields {
        return Err(ConfigError::new(
            "rules.token_client_binding.mode",
            "jwks, algorithms, issuer, audiences, scope, client_id_claims and typ are for mode `jwt`",
        ));
    }
    Ok(Some(TokenMode::Delegate))
}

/// `mode: introspection`: the endpoint, the filter's client id and its secret (looked up through
/// `secrets`).
fn introspection_mode(
    r: &RawBinding,
    secrets: Secrets<'_>,
) -> Result<Option<TokenMode>, ConfigError> {
    let f = "rules.token_client_binding";
    let jwt_fields = r.jwks.is_some()
        || r.algorithms.is_some()
        || r.issuer.is_some()
        || r.audiences.is_some()
        || r.typ.is_some();
    if jwt_fields {
        return Err(ConfigError::new(
            format!("{f}.mode"),
            "jwks, algorithms, issuer, audiences and typ are for mode `jwt`",
        ));
    }
    let i = r
        .introspection
        .as_ref()
        .ok_or_else(|| ConfigError::new(f, "missing"))?;
    let fi = format!("{f}.introspection");
    let upstream = non_empty_name(&format!("{fi}.upstream"), &i.upstream)?;
    let endpoint =
        Endpoint::parse(&i.url, &upstream).map_err(|m| ConfigError::new(format!("{fi}.url"), m))?;
    let client_id = non_empty_name(&format!("{fi}.client_id"), &i.client_id)?;
    let env = non_empty_name(&format!("{fi}.client_secret_env"), &i.client_secret_env)?;
    let secret = secrets(&env).filter(|v| !v.is_empty()).ok_or_else(|| {
        ConfigError::new(
            format!("{fi}.client_secret_env"),
            format!("environment variable `{env}` is not set for the filter (Envoy: list it in vm_config.environment_variables.host_env_keys)"),
        )
    })?;
    let client_id_claims = match &r.client_id_claims {
        Some(c) => names(&format!("{f}.client_id_claims"), c.clone(), false)?,
        None => vec!["client_id".to_string()],
    };
    Ok(Some(TokenMode::Introspection(Introspection {
        endpoint,
        client_id,
        secret,
        scope: match &r.scope {
            Some(sc) => Some(scope_token(&format!("{f}.scope"), sc)?),
            None => None,
        },
        client_id_claims,
    })))
}

/// `mode: jwt`: the AS's JWKS, and a token pinned to this AS or this endpoint.
fn jwt(r: &RawBinding) -> Result<Option<TokenMode>, ConfigError> {
    let f = "rules.token_client_binding";
    let sources = r.jwks.as_ref().filter(|j| !j.is_empty()).ok_or_else(|| {
        ConfigError::new(
            format!("{f}.jwks"),
            "mode `jwt` needs the authorization server's JWKS URL(s)",
        )
    })?;
    let mut jwks = Vec::new();
    for (i, s) in sources.iter().enumerate() {
        let sf = format!("{f}.jwks[{i}]");
        let upstream = non_empty_name(&format!("{sf}.upstream"), &s.upstream)?;
        jwks.push(
            jwks_source(&s.url, &upstream).map_err(|m| ConfigError::new(format!("{sf}.url"), m))?,
        );
    }
    let algorithms = match &r.algorithms {
        Some(a) => parse_algs(&format!("{f}.algorithms"), a)?,
        None => vec![Alg::Ps256, Alg::Es256],
    };
    let client_id_claims = match &r.client_id_claims {
        Some(c) => names(&format!("{f}.client_id_claims"), c.clone(), false)?,
        None => vec!["client_id".to_string(), "azp".to_string()],
    };
    let issuer = match &r.issuer {
        Some(i) => Some(non_empty_name(&format!("{f}.issuer"), i)?),
        None => None,
    };
    let audiences = match &r.audiences {
        Some(a) => names(&format!("{f}.audiences"), a.clone(), false)?,
        None => Vec::new(),
    };
    let scope = match &r.scope {
        Some(s) => Some(scope_token(&format!("{f}.scope"), s)?),
        None => None,
    };
    // A token from any issuer the AS JWKS vouches for, meant for anyone, is too much.
    if issuer.is_none() && audiences.is_empty() {
        return Err(ConfigError::new(
            format!("{f}.issuer"),
            "mode `jwt` needs `issuer` or `audiences` (or both): the tokens that may manage a registration must be pinned to this authorization server or to this endpoint",
        ));
    }
    // RFC 9068 access tokens by default; another `typ` (e.g. `JWT`, which ID tokens
    // carry too) only with an audience or scope that an ID token does not have.
    let typ = match &r.typ {
        None => ACCESS_TOKEN_TYP.to_string(),
        Some(t) => {
            let t = non_empty_name(&format!("{f}.typ"), t)?;
            media_type(t.trim())
        }
    };
    if typ != ACCESS_TOKEN_TYP && audiences.is_empty() && scope.is_none() {
        return Err(ConfigError::new(
            format!("{f}.typ"),
            "a `typ` other than RFC 9068's `at+jwt` needs `audiences` or `scope` as well, so that an ID token (also a JWT signed by the authorization server) cannot pass for an access token",
        ));
    }
    Ok(Some(TokenMode::Jwt(JwtBinding {
        jwks,
        algorithms,
        issuer,
        audiences,
        scope,
        client_id_claims,
        typ,
    })))
}

#[cfg(test)]
mod tests;
