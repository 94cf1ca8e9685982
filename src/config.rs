//! The filter configuration: one JSON document, read once in the host's configure step, validated
//! into typed structures. Requests never re-parse configuration.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use url::Url;

use crate::binding::{JwtBinding, TokenMode};
use crate::jose::Alg;
use crate::profile;
use crate::rules::{
    Audience, ClaimRules, GrantTypes, RedirectUris, RequiredAttributes, RolesMode,
    SigningAlgorithms, SoftwareRoles, SoftwareStatus, StatusCheck, TokenEndpointAuth,
};

/// A refused configuration: the field (a JSON path such as `directories[0].jwks[1].url`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
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

// ---------------------------------------------------------------------------------------------
// The document as written (every field optional where a default exists; unknown fields refused).

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    profile: Option<String>,
    path: Option<String>,
    hold_headers: Option<bool>,
    directories: Option<Vec<RawDirectory>>,
    software_jwks_hosts: Option<Vec<RawHostRule>>,
    ssa_claims: Option<RawSsaClaims>,
    request_algorithms: Option<Vec<String>>,
    leeway_seconds: Option<u64>,
    retry_after_seconds: Option<u32>,
    limits: Option<RawLimits>,
    rules: Option<RawRules>,
    report_only: Option<bool>,
    forward: Option<String>,
    fact_headers: Option<Vec<RawFactHeader>>,
    replay: Option<RawReplay>,
    jwks_cache: Option<RawJwksCache>,
    client_certificate: Option<RawClientCertificate>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawJwksCache {
    default_ttl_seconds: Option<u64>,
    min_ttl_seconds: Option<u64>,
    max_ttl_seconds: Option<u64>,
    kid_refetch_cooldown_seconds: Option<u64>,
    stale_if_error_seconds: Option<u64>,
    refresh_ahead_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFactHeader {
    claim: String,
    header: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCertBinding {
    enabled: Option<bool>,
    org: Option<RawOrgCheck>,
    software: Option<RawSoftwareCheck>,
    thumbprint: Option<bool>,
    subject_dn: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrgCheck {
    attribute: String,
    #[serde(default)]
    prefix: String,
    ssa_claim: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSoftwareCheck {
    attribute: String,
    ssa_claim: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawClientCertificate {
    source: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRequestJti {
    enabled: Option<bool>,
    format: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSsaJti {
    enabled: Option<bool>,
    window_seconds: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawReplay {
    buckets: Option<u32>,
    entries_per_bucket: Option<u32>,
    max_retention_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIntrospection {
    url: String,
    upstream: String,
    client_id: String,
    client_secret_env: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBinding {
    enabled: Option<bool>,
    mode: Option<String>,
    introspection: Option<RawIntrospection>,
    jwks: Option<Vec<RawJwksSource>>,
    algorithms: Option<Vec<String>>,
    issuer: Option<String>,
    audiences: Option<Vec<String>>,
    scope: Option<String>,
    client_id_claims: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDirectory {
    issuer: String,
    jwks: Vec<RawJwksSource>,
    algorithms: Option<Vec<String>>,
    max_ssa_age_seconds: Option<u64>,
    require_exp: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwksSource {
    url: String,
    upstream: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHostRule {
    host: String,
    upstream: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSsaClaims {
    software_jwks: Option<String>,
    redirect_uris: Option<String>,
    uris: Option<Vec<String>>,
    roles: Option<String>,
    scope: Option<String>,
    environment: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    body_bytes: Option<usize>,
    jwks_bytes: Option<usize>,
    jwks_keys: Option<usize>,
    callout_timeout_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawToggle {
    enabled: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawIssuanceTime {
    enabled: Option<bool>,
    max_age_seconds: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRules {
    token_client_binding: Option<RawBinding>,
    certificate_binding: Option<RawCertBinding>,
    request_jti: Option<RawRequestJti>,
    ssa_jti: Option<RawSsaJti>,
    ssa_issuer: Option<RawToggle>,
    ssa_signature: Option<RawToggle>,
    request_signature: Option<RawToggle>,
    issuance_time: Option<RawIssuanceTime>,
    software_status: Option<RawSoftwareStatus>,
    required_attributes: Option<RawRequiredAttributes>,
    issuer: Option<RawToggle>,
    audience: Option<RawAudience>,
    redirect_uri_format: Option<RawRedirectFormat>,
    redirect_uri_subset: Option<RawToggle>,
    uri_hostname: Option<RawToggle>,
    token_endpoint_auth: Option<RawTokenEndpointAuth>,
    signing_algorithms: Option<RawSigningAlgorithms>,
    grant_and_response_types: Option<RawGrantTypes>,
    software_roles: Option<RawSoftwareRoles>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStatusCheck {
    claim: String,
    equals: String,
    #[serde(default)]
    required: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSoftwareStatus {
    enabled: Option<bool>,
    checks: Option<Vec<RawStatusCheck>>,
    environment: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRequiredAttributes {
    enabled: Option<bool>,
    claims: Option<Vec<String>>,
    allowed_values: Option<BTreeMap<String, Vec<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAudience {
    enabled: Option<bool>,
    audiences: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRedirectFormat {
    enabled: Option<bool>,
    max_length: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTokenEndpointAuth {
    enabled: Option<bool>,
    methods: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSigningAlgorithms {
    enabled: Option<bool>,
    algorithms: Option<Vec<String>>,
    claims: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGrantTypes {
    enabled: Option<bool>,
    grant_types: Option<Vec<String>>,
    required_grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
    application_types: Option<Vec<String>>,
    ciba_delivery_modes: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSoftwareRoles {
    enabled: Option<bool>,
    mode: Option<String>,
    scope_roles: Option<BTreeMap<String, Vec<String>>>,
    free_scopes: Option<Vec<String>>,
}

// ---------------------------------------------------------------------------------------------
// The validated configuration.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    UkObie,
    AuCdr,
    BrOfb,
}

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::UkObie => "uk-obie",
            Profile::AuCdr => "au-cdr",
            Profile::BrOfb => "br-ofb",
        }
    }
}

/// Where a JWKS document is fetched from: its URL and the host upstream (Envoy cluster) to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksSource {
    /// The URL as configured or as found in a verified SSA (the cache key).
    pub url: String,
    pub upstream: String,
    /// The URL's host, lower case.
    pub host: String,
    /// `:authority` for the callout: host, plus `:port` when the URL names a non-default port.
    pub authority: String,
    /// `:path` for the callout: path and query.
    pub path: String,
}

#[derive(Debug, Clone)]
pub struct Directory {
    pub issuer: String,
    pub jwks: Vec<JwksSource>,
    pub algorithms: Vec<Alg>,
    pub max_ssa_age: Option<u64>,
    pub require_exp: bool,
}

/// One entry of the software-JWKS host allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// Exactly this host (lower case).
    Exact(String),
    /// Any host ending in `.suffix` with at least one more label (suffix stored with its dot).
    Suffix(String),
}

#[derive(Debug, Clone)]
pub struct HostRule {
    pub pattern: HostPattern,
    pub upstream: String,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub body_bytes: usize,
    pub jwks_bytes: usize,
    pub jwks_keys: usize,
    pub callout_timeout_ms: u64,
}

#[derive(Debug, Clone)]
pub struct Rules {
    pub claims: crate::rules::ClaimRules,
    pub ssa_issuer: bool,
    pub ssa_signature: bool,
    pub request_signature: bool,
    pub issuance_time: bool,
    /// Maximum age of a request JWT (`now − iat`), seconds.
    pub max_request_age: u64,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub profile: Profile,
    /// The registration path, lower case, without a trailing slash.
    pub path: String,
    pub hold_headers: bool,
    pub directories: Vec<Directory>,
    pub software_hosts: Vec<HostRule>,
    /// SSA claim that names the TPP's software JWKS URL.
    pub ssa_software_jwks_claim: String,
    pub request_algorithms: Vec<Alg>,
    pub leeway: u64,
    pub retry_after: u32,
    pub limits: Limits,
    pub rules: Rules,
    /// Evaluate, log and count, but forward everything (spec §9).
    pub report_only: bool,
    /// The registration body is a plain JSON object (Brazil), not a signed JWT.
    pub json_body: bool,
    /// How a valid registration is forwarded (spec §6).
    pub forward: Forward,
    /// Verified SSA claims passed to the AS as request headers: (SSA claim, header name).
    pub fact_headers: Vec<(String, String)>,
    /// `token_client_binding`: `None` when switched off.
    pub binding: Option<TokenMode>,
    /// SSA claims that take precedence over request metadata in JSON forwarding: (SSA claim,
    /// metadata name).
    pub ssa_metadata: Vec<(String, String)>,
    pub replay: Replay,
    pub jwks_cache: crate::jwks_cache::CachePolicy,
    /// Where the client certificate comes from.
    pub cert_source: CertSource,
    /// `certificate_binding`: `None` when switched off.
    pub certificate_binding: Option<crate::rules::certificate::CertificateBinding>,
}

/// Where the filter learns the TPP's client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertSource {
    /// The host's TLS connection (Envoy `connection.*` properties).
    Connection,
    /// The `x-forwarded-client-cert` header, for TLS ended at a trusted proxy in front.
    Xfcc,
}

/// `request_jti`, `ssa_jti` and the replay store.
#[derive(Debug, Clone)]
pub struct Replay {
    pub request_jti: bool,
    /// Require the request `jti` to be a UUIDv4.
    pub uuid4: bool,
    pub ssa_jti: bool,
    /// How long an SSA `jti` without `exp` is remembered.
    pub ssa_window: u64,
    /// No entry is kept longer than this.
    pub max_retention: u64,
    pub store: crate::replay::ReplayConfig,
}

/// How a valid registration reaches the AS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// The body as it came.
    Jwt,
    /// The verified claims as an RFC 7591 JSON object.
    Json,
}

pub const DEFAULT_PATH: &str = "/register";
pub const DEFAULT_LEEWAY: u64 = 60;
pub const DEFAULT_MAX_REQUEST_AGE: u64 = 3600;
pub const DEFAULT_RETRY_AFTER: u32 = 5;
pub const DEFAULT_BODY_BYTES: usize = 64 * 1024;
pub const DEFAULT_JWKS_BYTES: usize = 256 * 1024;
pub const DEFAULT_JWKS_KEYS: usize = 100;
pub const DEFAULT_CALLOUT_TIMEOUT_MS: u64 = 2000;
pub const DEFAULT_REDIRECT_URI_LENGTH: usize = 256;

/// Hard ceilings: a configuration above these is refused (bounded everything).
const MAX_BODY_BYTES: usize = 1024 * 1024;
const MAX_JWKS_BYTES: usize = 4 * 1024 * 1024;
const MAX_JWKS_KEYS: usize = 1000;
const MAX_CALLOUT_TIMEOUT_MS: u64 = 60_000;
const MAX_LEEWAY: u64 = 600;

impl Config {
    /// Parse and validate a configuration document. An empty document is refused: at least one
    /// trusted directory must be configured.
    pub fn from_json(doc: &[u8]) -> Result<Config, ConfigError> {
        let de = &mut serde_json::Deserializer::from_slice(doc);
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            ConfigError::new(field, strip_position(&e.inner().to_string()))
        })?;
        resolve(raw)
    }

    pub fn directory(&self, issuer: &str) -> Option<&Directory> {
        self.directories.iter().find(|d| d.issuer == issuer)
    }

    /// The upstream allowed to serve a software JWKS at `host` (lower case), if any.
    pub fn software_upstream(&self, host: &str) -> Option<&str> {
        self.software_hosts
            .iter()
            .find(|r| match &r.pattern {
                HostPattern::Exact(h) => h == host,
                HostPattern::Suffix(s) => {
                    host.len() > s.len() && host.ends_with(s.as_str()) && !is_ip_literal(host)
                }
            })
            .map(|r| r.upstream.as_str())
    }
}

/// serde_json appends " at line L column C"; the field path already says where.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg.get(..i).unwrap_or(msg).to_string(),
        None => msg.to_string(),
    }
}

fn is_ip_literal(host: &str) -> bool {
    host.starts_with('[') || host.parse::<std::net::Ipv4Addr>().is_ok()
}

fn parse_algs(field: &str, names: &[String]) -> Result<Vec<Alg>, ConfigError> {
    if names.is_empty() {
        return Err(ConfigError::new(field, "must list at least one algorithm"));
    }
    let mut out = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let f = format!("{field}[{i}]");
        if n == "none" || n.starts_with("HS") {
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

fn non_empty_name(field: &str, value: &str) -> Result<String, ConfigError> {
    if value.trim().is_empty() {
        return Err(ConfigError::new(field, "must not be empty"));
    }
    Ok(value.to_string())
}

/// Validate a JWKS URL: absolute https URL with a host, no user info, no fragment.
pub fn jwks_source(url: &str, upstream: &str) -> Result<JwksSource, String> {
    let parsed = Url::parse(url).map_err(|e| format!("not an absolute URL ({e})"))?;
    if parsed.scheme() != "https" {
        return Err("must use https".to_string());
    }
    let host = match parsed.host_str() {
        Some(h) if !h.is_empty() => h.to_ascii_lowercase(),
        _ => return Err("has no host".to_string()),
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not carry user information".to_string());
    }
    if parsed.fragment().is_some() {
        return Err("must not carry a fragment".to_string());
    }
    let authority = match parsed.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.clone(),
    };
    let mut path = parsed.path().to_string();
    if let Some(q) = parsed.query() {
        path.push('?');
        path.push_str(q);
    }
    Ok(JwksSource {
        url: url.to_string(),
        upstream: upstream.to_string(),
        host,
        authority,
        path,
    })
}

fn resolve(raw: RawConfig) -> Result<Config, ConfigError> {
    let profile = match raw.profile.as_deref() {
        None | Some("uk-obie") => Profile::UkObie,
        Some("au-cdr") => Profile::AuCdr,
        Some("br-ofb") => Profile::BrOfb,
        Some(other) => {
            return Err(ConfigError::new(
                "profile",
                format!("unknown profile `{other}` (supported: uk-obie, au-cdr, br-ofb)"),
            ))
        }
    };
    let defaults = match profile {
        Profile::UkObie => &profile::UK_OBIE,
        Profile::AuCdr => &profile::AU_CDR,
        Profile::BrOfb => &profile::BR_OFB,
    };
    let default_algs: Vec<Alg> = defaults
        .algorithms
        .iter()
        .filter_map(|a| Alg::parse(a))
        .collect();

    let path = {
        let p = raw.path.unwrap_or_else(|| DEFAULT_PATH.to_string());
        let path_char = |b: u8| b.is_ascii_alphanumeric() || b"/-._~!$&'()*+,=:@".contains(&b);
        if !p.starts_with('/') || !p.bytes().all(path_char) || p.contains("//") {
            return Err(ConfigError::new(
                "path",
                "must be an absolute path starting with `/` of plain path characters (letters, digits, `/-._~!$&'()*+,=:@`): no query, fragment, `%`, `;`, `\\`, spaces or empty segments",
            ));
        }
        let trimmed = p.trim_end_matches('/');
        if trimmed.is_empty() {
            return Err(ConfigError::new("path", "must not be `/`"));
        }
        if trimmed.split('/').any(|s| s == "." || s == "..") {
            return Err(ConfigError::new(
                "path",
                "must not contain `.` or `..` segments",
            ));
        }
        trimmed.to_ascii_lowercase()
    };

    let raw_dirs = raw.directories.unwrap_or_default();
    if raw_dirs.is_empty() {
        return Err(ConfigError::new(
            "directories",
            "at least one trusted directory (SSA issuer and its JWKS URLs) is required",
        ));
    }
    let mut directories: Vec<Directory> = Vec::new();
    for (i, d) in raw_dirs.into_iter().enumerate() {
        let f = format!("directories[{i}]");
        let issuer = non_empty_name(&format!("{f}.issuer"), &d.issuer)?;
        if directories.iter().any(|x| x.issuer == issuer) {
            return Err(ConfigError::new(
                format!("{f}.issuer"),
                "the same issuer is configured twice",
            ));
        }
        if d.jwks.is_empty() {
            return Err(ConfigError::new(
                format!("{f}.jwks"),
                "at least one JWKS URL is required",
            ));
        }
        let mut jwks = Vec::new();
        for (j, s) in d.jwks.into_iter().enumerate() {
            let sf = format!("{f}.jwks[{j}]");
            let upstream = non_empty_name(&format!("{sf}.upstream"), &s.upstream)?;
            let src = jwks_source(&s.url, &upstream)
                .map_err(|m| ConfigError::new(format!("{sf}.url"), m))?;
            jwks.push(src);
        }
        let algorithms = match d.algorithms {
            Some(a) => parse_algs(&format!("{f}.algorithms"), &a)?,
            None => default_algs.clone(),
        };
        directories.push(Directory {
            issuer,
            jwks,
            algorithms,
            max_ssa_age: d.max_ssa_age_seconds.or(defaults.max_ssa_age),
            require_exp: d.require_exp.unwrap_or(defaults.require_ssa_exp),
        });
    }

    let mut software_hosts = Vec::new();
    for (i, h) in raw
        .software_jwks_hosts
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let f = format!("software_jwks_hosts[{i}]");
        let upstream = non_empty_name(&format!("{f}.upstream"), &h.upstream)?;
        let host = h.host.trim().to_ascii_lowercase();
        let pattern = if let Some(suffix) = host.strip_prefix("*.") {
            if !valid_dns_name(suffix) || !suffix.contains('.') {
                return Err(ConfigError::new(
                    format!("{f}.host"),
                    "a wildcard must be `*.` followed by a domain of at least two labels",
                ));
            }
            HostPattern::Suffix(format!(".{suffix}"))
        } else if valid_dns_name(&host) {
            HostPattern::Exact(host)
        } else {
            return Err(ConfigError::new(
                format!("{f}.host"),
                "must be a DNS host name or `*.` followed by a domain",
            ));
        };
        software_hosts.push(HostRule { pattern, upstream });
    }

    let ssa_claims = raw.ssa_claims.unwrap_or_default();
    let claim_name = |field: &str, v: Option<String>, d: &str| {
        non_empty_name(&format!("ssa_claims.{field}"), v.as_deref().unwrap_or(d))
    };
    let ssa_software_jwks_claim = claim_name(
        "software_jwks",
        ssa_claims.software_jwks,
        defaults.ssa_software_jwks,
    )?;
    let ssa_redirect_claim = claim_name(
        "redirect_uris",
        ssa_claims.redirect_uris,
        defaults.ssa_redirect_uris,
    )?;
    let ssa_roles_claim = claim_name("roles", ssa_claims.roles, defaults.ssa_roles)?;
    let ssa_scope_claim = claim_name("scope", ssa_claims.scope, defaults.ssa_scope)?;
    let ssa_environment_claim = claim_name(
        "environment",
        ssa_claims.environment,
        defaults.ssa_environment,
    )?;
    let ssa_uri_claims = match ssa_claims.uris {
        Some(list) => names("ssa_claims.uris", list, true)?,
        None => strings(defaults.ssa_uris),
    };

    let request_algorithms = match raw.request_algorithms {
        Some(a) => parse_algs("request_algorithms", &a)?,
        None => default_algs,
    };

    let leeway = raw.leeway_seconds.unwrap_or(DEFAULT_LEEWAY);
    if leeway > MAX_LEEWAY {
        return Err(ConfigError::new(
            "leeway_seconds",
            format!("must be at most {MAX_LEEWAY}"),
        ));
    }
    let retry_after = raw.retry_after_seconds.unwrap_or(DEFAULT_RETRY_AFTER);
    if retry_after == 0 || retry_after > 3600 {
        return Err(ConfigError::new(
            "retry_after_seconds",
            "must be between 1 and 3600",
        ));
    }

    let rl = raw.limits.unwrap_or_default();
    let limits = Limits {
        body_bytes: bounded(
            "limits.body_bytes",
            rl.body_bytes,
            DEFAULT_BODY_BYTES,
            1024,
            MAX_BODY_BYTES,
        )?,
        jwks_bytes: bounded(
            "limits.jwks_bytes",
            rl.jwks_bytes,
            DEFAULT_JWKS_BYTES,
            1024,
            MAX_JWKS_BYTES,
        )?,
        jwks_keys: bounded(
            "limits.jwks_keys",
            rl.jwks_keys,
            DEFAULT_JWKS_KEYS,
            1,
            MAX_JWKS_KEYS,
        )?,
        callout_timeout_ms: bounded(
            "limits.callout_timeout_ms",
            rl.callout_timeout_ms,
            DEFAULT_CALLOUT_TIMEOUT_MS,
            10,
            MAX_CALLOUT_TIMEOUT_MS,
        )?,
    };

    let rr = raw.rules.unwrap_or_default();
    let on = |t: &Option<RawToggle>| t.as_ref().and_then(|t| t.enabled).unwrap_or(true);
    let it = rr.issuance_time.as_ref();
    let max_request_age = it
        .and_then(|t| t.max_age_seconds)
        .unwrap_or(DEFAULT_MAX_REQUEST_AGE);
    if max_request_age == 0 {
        return Err(ConfigError::new(
            "rules.issuance_time.max_age_seconds",
            "must be greater than 0",
        ));
    }
    let claims = claim_rules(
        profile,
        defaults,
        &rr,
        ClaimNames {
            redirect: ssa_redirect_claim,
            uris: ssa_uri_claims,
            roles: ssa_roles_claim,
            scope: ssa_scope_claim,
            environment: ssa_environment_claim,
        },
    )?;
    let rules = Rules {
        claims,
        ssa_issuer: on(&rr.ssa_issuer),
        ssa_signature: on(&rr.ssa_signature),
        request_signature: jwt_only(
            defaults.json_body,
            "request_signature",
            rr.request_signature.as_ref().and_then(|t| t.enabled),
        )?,
        issuance_time: jwt_only(
            defaults.json_body,
            "issuance_time",
            it.and_then(|t| t.enabled),
        )?,
        max_request_age,
    };
    if rules.request_signature && !rules.ssa_signature {
        return Err(ConfigError::new(
            "rules.ssa_signature.enabled",
            "cannot be false while request_signature is on: the software JWKS URL is only ever taken from a verified SSA",
        ));
    }

    let hold_headers = raw.hold_headers.unwrap_or(true);
    let forward = match raw.forward.as_deref() {
        None if defaults.json_body => Forward::Json,
        None | Some("jwt") => Forward::Jwt,
        Some("json") => Forward::Json,
        Some(other) => {
            return Err(ConfigError::new(
                "forward",
                format!("unknown value `{other}` (jwt, json)"),
            ))
        }
    };
    if forward == Forward::Json && !hold_headers {
        return Err(ConfigError::new(
            "forward",
            "`json` rewrites the body and its headers, which needs held headers (`hold_headers: true`)",
        ));
    }
    let mut fact_headers: Vec<(String, String)> = Vec::new();
    for (i, f) in raw.fact_headers.unwrap_or_default().into_iter().enumerate() {
        let field = format!("fact_headers[{i}]");
        let claim = non_empty_name(&format!("{field}.claim"), &f.claim)?;
        let header = f.header.trim().to_ascii_lowercase();
        let valid = !header.is_empty()
            && header
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !matches!(
                header.as_str(),
                "host"
                    | "content-length"
                    | "content-type"
                    | "authorization"
                    | "transfer-encoding"
                    | "connection"
            );
        if !valid {
            return Err(ConfigError::new(
                format!("{field}.header"),
                "must be a header name (letters, digits, `-`, `_`) other than a hop-by-hop, host, authorization or content header",
            ));
        }
        if fact_headers.iter().any(|(_, h)| *h == header) {
            return Err(ConfigError::new(
                format!("{field}.header"),
                "is listed twice",
            ));
        }
        fact_headers.push((claim, header));
    }
    if !fact_headers.is_empty() && !hold_headers {
        return Err(ConfigError::new(
            "fact_headers",
            "adding headers after the body was checked needs held headers (`hold_headers: true`)",
        ));
    }
    let binding = resolve_binding(rr.token_client_binding.as_ref())?;
    let replay = resolve_replay(
        defaults.json_body,
        rr.request_jti.as_ref(),
        rr.ssa_jti.as_ref(),
        raw.replay.unwrap_or_default(),
        max_request_age,
        leeway,
    )?;
    let ssa_metadata = defaults
        .ssa_metadata
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .chain(std::iter::once((
            ssa_software_jwks_claim.clone(),
            "jwks_uri".to_string(),
        )))
        .collect();

    let cert_source = match raw
        .client_certificate
        .as_ref()
        .and_then(|c| c.source.as_deref())
    {
        None | Some("connection") => CertSource::Connection,
        Some("x-forwarded-client-cert") => CertSource::Xfcc,
        Some(other) => {
            return Err(ConfigError::new(
                "client_certificate.source",
                format!("unknown source `{other}` (connection, x-forwarded-client-cert)"),
            ))
        }
    };
    let certificate_binding = resolve_cert_binding(profile, rr.certificate_binding.as_ref())?;
    let jwks_cache = resolve_cache(
        raw.jwks_cache.unwrap_or_default(),
        limits.callout_timeout_ms,
    )?;

    Ok(Config {
        profile,
        path,
        hold_headers,
        directories,
        software_hosts,
        ssa_software_jwks_claim,
        request_algorithms,
        leeway,
        retry_after,
        limits,
        rules,
        report_only: raw.report_only.unwrap_or(false),
        json_body: defaults.json_body,
        forward,
        fact_headers,
        binding,
        ssa_metadata,
        replay,
        jwks_cache,
        cert_source,
        certificate_binding,
    })
}

fn resolve_cert_binding(
    profile: Profile,
    raw: Option<&RawCertBinding>,
) -> Result<Option<crate::rules::certificate::CertificateBinding>, ConfigError> {
    use crate::rules::certificate::{CertificateBinding, OrgCheck, SoftwareCheck};
    let f = "rules.certificate_binding";
    // Brazil requires it; elsewhere it is on once configured.
    let enabled = raw
        .and_then(|r| r.enabled)
        .unwrap_or(profile == Profile::BrOfb);
    if !enabled {
        return Ok(None);
    }
    let (org, software) = match profile {
        Profile::BrOfb => (
            Some(("organizationIdentifier", "OFBBR-", "org_id")),
            Some(("UID", "software_id")),
        ),
        // OBIE transport certificates: OU = organisation id, CN = software id.
        Profile::UkObie => (Some(("OU", "", "org_id")), Some(("CN", "software_id"))),
        Profile::AuCdr => (None, None),
    };
    let org = match raw.and_then(|r| r.org.as_ref()) {
        Some(o) => Some(OrgCheck {
            attribute: non_empty_name(&format!("{f}.org.attribute"), &o.attribute)?,
            prefix: o.prefix.clone(),
            ssa_claim: non_empty_name(&format!("{f}.org.ssa_claim"), &o.ssa_claim)?,
        }),
        None => org.map(|(a, p, c)| OrgCheck {
            attribute: a.into(),
            prefix: p.into(),
            ssa_claim: c.into(),
        }),
    };
    let software = match raw.and_then(|r| r.software.as_ref()) {
        Some(s) => Some(SoftwareCheck {
            attribute: non_empty_name(&format!("{f}.software.attribute"), &s.attribute)?,
            ssa_claim: non_empty_name(&format!("{f}.software.ssa_claim"), &s.ssa_claim)?,
        }),
        None => software.map(|(a, c)| SoftwareCheck {
            attribute: a.into(),
            ssa_claim: c.into(),
        }),
    };
    for (field, attr) in [
        ("org", org.as_ref().map(|o| o.attribute.as_str())),
        ("software", software.as_ref().map(|s| s.attribute.as_str())),
    ] {
        if let Some(a) = attr {
            if crate::dn::Dn::parse(&format!("{a}=x")).is_err() {
                return Err(ConfigError::new(
                    format!("{f}.{field}.attribute"),
                    format!("`{a}` is not an attribute type"),
                ));
            }
        }
    }
    let binding = CertificateBinding {
        org,
        software,
        thumbprint: raw.and_then(|r| r.thumbprint).unwrap_or(false),
        subject_dn: raw.and_then(|r| r.subject_dn).unwrap_or(true),
    };
    if binding.org.is_none()
        && binding.software.is_none()
        && !binding.thumbprint
        && !binding.subject_dn
    {
        return Err(ConfigError::new(
            f,
            "is on but checks nothing: configure org, software, thumbprint or subject_dn",
        ));
    }
    Ok(Some(binding))
}

fn resolve_cache(
    raw: RawJwksCache,
    callout_timeout_ms: u64,
) -> Result<crate::jwks_cache::CachePolicy, ConfigError> {
    let d = crate::jwks_cache::CachePolicy::default();
    let f = "jwks_cache";
    let min_ttl = bounded(
        &format!("{f}.min_ttl_seconds"),
        raw.min_ttl_seconds,
        d.min_ttl,
        1,
        86_400,
    )?;
    let max_ttl = bounded(
        &format!("{f}.max_ttl_seconds"),
        raw.max_ttl_seconds,
        d.max_ttl,
        1,
        7 * 86_400,
    )?;
    if max_ttl < min_ttl {
        return Err(ConfigError::new(
            format!("{f}.max_ttl_seconds"),
            "must not be below min_ttl_seconds",
        ));
    }
    let default_ttl = bounded(
        &format!("{f}.default_ttl_seconds"),
        raw.default_ttl_seconds,
        d.default_ttl,
        min_ttl,
        max_ttl,
    )?;
    Ok(crate::jwks_cache::CachePolicy {
        default_ttl,
        min_ttl,
        max_ttl,
        kid_refetch_cooldown: bounded(
            &format!("{f}.kid_refetch_cooldown_seconds"),
            raw.kid_refetch_cooldown_seconds,
            d.kid_refetch_cooldown,
            1,
            3600,
        )?,
        stale_if_error: bounded(
            &format!("{f}.stale_if_error_seconds"),
            raw.stale_if_error_seconds,
            d.stale_if_error,
            0,
            7 * 86_400,
        )?,
        // A lease outlives the callout it covers.
        lease_ttl: callout_timeout_ms.div_ceil(1000).saturating_add(2),
        refresh_ahead: bounded(
            &format!("{f}.refresh_ahead_seconds"),
            raw.refresh_ahead_seconds,
            d.refresh_ahead,
            0,
            3600,
        )?,
    })
}

/// A rule that needs a request JWT: off by default for a JSON body, and refused on there.
fn jwt_only(json_body: bool, rule: &str, enabled: Option<bool>) -> Result<bool, ConfigError> {
    match (json_body, enabled) {
        (true, Some(true)) => Err(ConfigError::new(
            format!("rules.{rule}.enabled"),
            "does not apply to a JSON registration body (there is no request JWT)",
        )),
        (true, _) => Ok(false),
        (false, e) => Ok(e.unwrap_or(true)),
    }
}

fn resolve_replay(
    json_body: bool,
    rj: Option<&RawRequestJti>,
    sj: Option<&RawSsaJti>,
    raw: RawReplay,
    max_request_age: u64,
    leeway: u64,
) -> Result<Replay, ConfigError> {
    let uuid4 = match rj.and_then(|r| r.format.as_deref()) {
        None | Some("any") => false,
        Some("uuid4") => true,
        Some(other) => {
            return Err(ConfigError::new(
                "rules.request_jti.format",
                format!("unknown format `{other}` (any, uuid4)"),
            ))
        }
    };
    let floor = max_request_age.saturating_add(leeway);
    let max_retention = raw.max_retention_seconds.unwrap_or(floor.max(86_400));
    if max_retention < floor {
        return Err(ConfigError::new(
            "replay.max_retention_seconds",
            format!("must be at least rules.issuance_time.max_age_seconds + leeway_seconds ({floor}): a shorter memory lets a replay through while the request is still accepted"),
        ));
    }
    let defaults = crate::replay::ReplayConfig::default();
    let store = crate::replay::ReplayConfig {
        buckets: bounded("replay.buckets", raw.buckets, defaults.buckets, 1, 4096)?,
        entries_per_bucket: bounded(
            "replay.entries_per_bucket",
            raw.entries_per_bucket,
            defaults.entries_per_bucket,
            1,
            4096,
        )?,
        ..defaults
    };
    Ok(Replay {
        request_jti: jwt_only(json_body, "request_jti", rj.and_then(|r| r.enabled))?,
        uuid4,
        ssa_jti: sj.and_then(|r| r.enabled).unwrap_or(false),
        ssa_window: sj.and_then(|r| r.window_seconds).unwrap_or(86_400),
        max_retention,
        store,
    })
}

fn resolve_binding(raw: Option<&RawBinding>) -> Result<Option<TokenMode>, ConfigError> {
    let f = "rules.token_client_binding";
    if !raw.and_then(|r| r.enabled).unwrap_or(true) {
        return Ok(None);
    }
    if let Some(r) = raw {
        let introspection = r.mode.as_deref() == Some("introspection");
        if r.introspection.is_some() != introspection {
            return Err(ConfigError::new(
                format!("{f}.introspection"),
                "is required by mode `introspection` and only allowed with it",
            ));
        }
        if introspection {
            let jwt_fields = r.jwks.is_some()
                || r.algorithms.is_some()
                || r.issuer.is_some()
                || r.audiences.is_some();
            if jwt_fields {
                return Err(ConfigError::new(
                    format!("{f}.mode"),
                    "jwks, algorithms, issuer and audiences are for mode `jwt`",
                ));
            }
            let i = r
                .introspection
                .as_ref()
                .ok_or_else(|| ConfigError::new(f, "missing"))?;
            let fi = format!("{f}.introspection");
            let upstream = non_empty_name(&format!("{fi}.upstream"), &i.upstream)?;
            let endpoint = jwks_source(&i.url, &upstream)
                .map_err(|m| ConfigError::new(format!("{fi}.url"), m))?;
            let client_id = non_empty_name(&format!("{fi}.client_id"), &i.client_id)?;
            let env = non_empty_name(&format!("{fi}.client_secret_env"), &i.client_secret_env)?;
            let secret = std::env::var(&env).ok().filter(|v| !v.is_empty()).ok_or_else(|| {
                ConfigError::new(
                    format!("{fi}.client_secret_env"),
                    format!("environment variable `{env}` is not set for the filter (Envoy: list it in vm_config.environment_variables.host_env_keys)"),
                )
            })?;
            let client_id_claims = match &r.client_id_claims {
                Some(c) => names(&format!("{f}.client_id_claims"), c.clone(), false)?,
                None => vec!["client_id".to_string()],
            };
            return Ok(Some(TokenMode::Introspection(
                crate::binding::Introspection {
                    endpoint,
                    client_id,
                    secret,
                    scope: r.scope.clone(),
                    client_id_claims,
                },
            )));
        }
    }
    let jwt_only = |r: &RawBinding| {
        r.jwks.is_some()
            || r.algorithms.is_some()
            || r.issuer.is_some()
            || r.audiences.is_some()
            || r.scope.is_some()
            || r.client_id_claims.is_some()
    };
    match raw.and_then(|r| r.mode.as_deref()) {
        None | Some("delegate") => {
            if raw.is_some_and(jwt_only) {
                return Err(ConfigError::new(
                    format!("{f}.mode"),
                    "jwks, algorithms, issuer, audiences, scope and client_id_claims are for mode `jwt`",
                ));
            }
            Ok(Some(TokenMode::Delegate))
        }
        Some("jwt") => {
            let r = raw.ok_or_else(|| ConfigError::new(f, "missing"))?;
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
                    jwks_source(&s.url, &upstream)
                        .map_err(|m| ConfigError::new(format!("{sf}.url"), m))?,
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
            Ok(Some(TokenMode::Jwt(JwtBinding {
                jwks,
                algorithms,
                issuer: r.issuer.clone(),
                audiences: r.audiences.clone().unwrap_or_default(),
                scope: r.scope.clone(),
                client_id_claims,
            })))
        }
        Some(other) => Err(ConfigError::new(
            format!("{f}.mode"),
            format!("unknown mode `{other}` (delegate, jwt, introspection)"),
        )),
    }
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// A list of names: each non-blank, no duplicates; empty allowed only with `allow_empty`.
fn names(field: &str, list: Vec<String>, allow_empty: bool) -> Result<Vec<String>, ConfigError> {
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

/// Metadata algorithm names: `none` and HS* are never allowed.
fn metadata_algs(field: &str, list: Vec<String>) -> Result<Vec<String>, ConfigError> {
    let list = names(field, list, false)?;
    if let Some((i, a)) = list
        .iter()
        .enumerate()
        .find(|(_, a)| a.as_str() == "none" || a.starts_with("HS"))
    {
        return Err(ConfigError::new(
            format!("{field}[{i}]"),
            format!("`{a}` is never allowed"),
        ));
    }
    Ok(list)
}

struct ClaimNames {
    redirect: String,
    uris: Vec<String>,
    roles: String,
    scope: String,
    environment: String,
}

fn claim_rules(
    profile: Profile,
    d: &profile::Defaults,
    rr: &RawRules,
    n: ClaimNames,
) -> Result<ClaimRules, ConfigError> {
    let on = |e: Option<bool>| e.unwrap_or(true);
    let list = |field: &str, v: &Option<Vec<String>>, def: &[&str], allow_empty: bool| match v {
        Some(l) => names(field, l.clone(), allow_empty),
        None => Ok(strings(def)),
    };

    let ss = rr.software_status.as_ref();
    let software_status = if on(ss.and_then(|r| r.enabled)) {
        let checks = match ss.and_then(|r| r.checks.as_ref()) {
            Some(c) => c
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let f = format!("rules.software_status.checks[{i}]");
                    Ok(StatusCheck {
                        claim: non_empty_name(&format!("{f}.claim"), &c.claim)?,
                        equals: c.equals.clone(),
                        required: c.required,
                    })
                })
                .collect::<Result<Vec<_>, ConfigError>>()?,
            None => d
                .status_checks
                .iter()
                .map(|(c, v, r)| StatusCheck {
                    claim: c.to_string(),
                    equals: v.to_string(),
                    required: *r,
                })
                .collect(),
        };
        let environment = match ss.and_then(|r| r.environment.clone()) {
            Some(e) => Some(non_empty_name("rules.software_status.environment", &e)?),
            None => None,
        };
        Some(SoftwareStatus {
            checks,
            environment_claim: n.environment,
            environment,
            active_role_claim: d.active_role_claim.map(String::from),
        })
    } else {
        None
    };

    let ra = rr.required_attributes.as_ref();
    let required_attributes = if on(ra.and_then(|r| r.enabled)) {
        let claims = list(
            "rules.required_attributes.claims",
            &ra.and_then(|r| r.claims.clone()),
            d.required_claims,
            true,
        )?;
        let mut allowed_values = Vec::new();
        for (claim, values) in ra
            .and_then(|r| r.allowed_values.clone())
            .unwrap_or_default()
        {
            let f = format!("rules.required_attributes.allowed_values.{claim}");
            allowed_values.push((claim, names(&f, values, false)?));
        }
        Some(RequiredAttributes {
            claims,
            allowed_values,
        })
    } else {
        None
    };

    let au = rr.audience.as_ref();
    let audience_on = match au.and_then(|r| r.enabled) {
        Some(e) => e,
        None => !d.json_body,
    };
    let audience = if audience_on {
        let audiences = match au.and_then(|r| r.audiences.clone()) {
            Some(a) => names("rules.audience.audiences", a, false)?,
            None => {
                return Err(ConfigError::new(
                    "rules.audience.audiences",
                    format!(
                        "is required in the {} profile: list the `aud` values that name this bank, so that a request minted for another bank is not accepted here",
                        profile.as_str()
                    ),
                ))
            }
        };
        Some(Audience { audiences })
    } else {
        None
    };

    let rf = rr.redirect_uri_format.as_ref();
    let max_length = bounded(
        "rules.redirect_uri_format.max_length",
        rf.and_then(|r| r.max_length),
        DEFAULT_REDIRECT_URI_LENGTH,
        16,
        4096,
    )?;

    let rs = rr.signing_algorithms.as_ref();
    let metadata_algorithms = match rs.and_then(|r| r.algorithms.clone()) {
        Some(a) => metadata_algs("rules.signing_algorithms.algorithms", a)?,
        None => strings(d.metadata_algorithms),
    };
    let signing_algorithms = if on(rs.and_then(|r| r.enabled)) {
        Some(SigningAlgorithms {
            algorithms: metadata_algorithms.clone(),
            claims: list(
                "rules.signing_algorithms.claims",
                &rs.and_then(|r| r.claims.clone()),
                d.signing_claims,
                false,
            )?,
        })
    } else {
        None
    };

    let ta = rr.token_endpoint_auth.as_ref();
    let token_endpoint_auth = if on(ta.and_then(|r| r.enabled)) {
        Some(TokenEndpointAuth {
            methods: list(
                "rules.token_endpoint_auth.methods",
                &ta.and_then(|r| r.methods.clone()),
                d.auth_methods,
                false,
            )?,
            signing_algorithms: metadata_algorithms.clone(),
        })
    } else {
        None
    };

    let gt = rr.grant_and_response_types.as_ref();
    let grant_and_response_types = if on(gt.and_then(|r| r.enabled)) {
        let f = "rules.grant_and_response_types";
        let g = GrantTypes {
            grant_types: list(
                &format!("{f}.grant_types"),
                &gt.and_then(|r| r.grant_types.clone()),
                d.grant_types,
                false,
            )?,
            required_grant_types: list(
                &format!("{f}.required_grant_types"),
                &gt.and_then(|r| r.required_grant_types.clone()),
                d.required_grant_types,
                true,
            )?,
            response_types: list(
                &format!("{f}.response_types"),
                &gt.and_then(|r| r.response_types.clone()),
                d.response_types,
                false,
            )?,
            application_types: list(
                &format!("{f}.application_types"),
                &gt.and_then(|r| r.application_types.clone()),
                d.application_types,
                false,
            )?,
            ciba_delivery_modes: list(
                &format!("{f}.ciba_delivery_modes"),
                &gt.and_then(|r| r.ciba_delivery_modes.clone()),
                d.ciba_delivery_modes,
                false,
            )?,
            ciba_signing_algorithms: metadata_algorithms.clone(),
        };
        if let Some(r) = g
            .required_grant_types
            .iter()
            .find(|r| !g.grant_types.contains(r))
        {
            return Err(ConfigError::new(
                format!("{f}.required_grant_types"),
                format!("`{r}` is required but not in grant_types"),
            ));
        }
        Some(g)
    } else {
        None
    };

    let sr = rr.software_roles.as_ref();
    let software_roles = if on(sr.and_then(|r| r.enabled)) {
        let mode = match sr.and_then(|r| r.mode.as_deref()) {
            None => d.roles_mode,
            Some("role_mapping") => RolesMode::RoleMapping,
            Some("ssa_scope") => RolesMode::SsaScope,
            Some(other) => {
                return Err(ConfigError::new(
                    "rules.software_roles.mode",
                    format!("unknown mode `{other}` (role_mapping, ssa_scope)"),
                ))
            }
        };
        let scope_roles = match sr.and_then(|r| r.scope_roles.clone()) {
            Some(m) => {
                let mut out = Vec::new();
                for (scope, roles) in m {
                    let f = format!("rules.software_roles.scope_roles.{scope}");
                    out.push((scope, names(&f, roles, false)?));
                }
                out
            }
            None => d
                .scope_roles
                .iter()
                .map(|(s, r)| (s.to_string(), strings(r)))
                .collect(),
        };
        if mode == RolesMode::RoleMapping && scope_roles.is_empty() {
            return Err(ConfigError::new(
                "rules.software_roles.scope_roles",
                "role_mapping needs at least one scope → roles entry",
            ));
        }
        Some(SoftwareRoles {
            mode,
            roles_claim: n.roles,
            ssa_scope_claim: n.scope,
            scope_roles,
            free_scopes: list(
                "rules.software_roles.free_scopes",
                &sr.and_then(|r| r.free_scopes.clone()),
                d.free_scopes,
                true,
            )?,
        })
    } else {
        None
    };

    let toggle = |t: &Option<RawToggle>| t.as_ref().and_then(|t| t.enabled).unwrap_or(true);
    Ok(ClaimRules {
        software_status,
        required_attributes,
        issuer: jwt_only(
            d.json_body,
            "issuer",
            rr.issuer.as_ref().and_then(|t| t.enabled),
        )?,
        audience,
        redirect_uri_format: on(rf.and_then(|r| r.enabled)),
        redirect_uri_subset: toggle(&rr.redirect_uri_subset),
        uri_hostname: toggle(&rr.uri_hostname),
        redirect_uris: RedirectUris {
            max_length,
            ssa_claim: n.redirect,
            ssa_uri_claims: n.uris,
        },
        token_endpoint_auth,
        signing_algorithms,
        grant_and_response_types,
        software_roles,
    })
}

fn bounded<T: PartialOrd + Copy + fmt::Display>(
    field: &str,
    value: Option<T>,
    default: T,
    min: T,
    max: T,
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

fn valid_dns_name(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
#[allow(clippy::type_complexity)]
mod tests {
    use super::*;
    use serde_json::json;

    pub fn minimal() -> serde_json::Value {
        json!({
            "directories": [{
                "issuer": "OpenBanking Ltd",
                "jwks": [{"url": "https://keystore.openbanking.org.uk/keystore/openbanking.jwks", "upstream": "ob_keystore"}]
            }],
            "software_jwks_hosts": [{"host": "keystore.openbanking.org.uk", "upstream": "ob_keystore"}],
            "rules": {"audience": {"audiences": ["0015800001HQQrZAAX"]}}
        })
    }

    fn parse(v: &serde_json::Value) -> Result<Config, ConfigError> {
        Config::from_json(v.to_string().as_bytes())
    }

    fn refused(v: serde_json::Value) -> ConfigError {
        parse(&v).unwrap_err()
    }

    #[test]
    fn defaults() {
        let c = parse(&minimal()).unwrap();
        assert_eq!(c.profile, Profile::UkObie);
        assert_eq!(c.path, "/register");
        assert!(c.hold_headers);
        assert_eq!(c.leeway, 60);
        assert_eq!(c.rules.max_request_age, 3600);
        assert_eq!(c.limits.body_bytes, 65536);
        assert_eq!(c.limits.jwks_bytes, 262144);
        assert_eq!(c.limits.jwks_keys, 100);
        assert_eq!(c.limits.callout_timeout_ms, 2000);
        assert_eq!(c.request_algorithms, vec![Alg::Ps256, Alg::Es256]);
        assert_eq!(c.ssa_software_jwks_claim, "software_jwks_endpoint");
        let d = c.directory("OpenBanking Ltd").unwrap();
        assert_eq!(d.jwks[0].authority, "keystore.openbanking.org.uk");
        assert_eq!(d.jwks[0].path, "/keystore/openbanking.jwks");
        assert!(c.rules.ssa_issuer && c.rules.ssa_signature && c.rules.request_signature);
    }

    #[test]
    fn unknown_fields_are_named() {
        let mut v = minimal();
        v["directories"][0]["jwks"][0]["urll"] = json!("x");
        let e = refused(v);
        assert_eq!(e.field, "directories[0].jwks[0].urll");
        assert!(e.message.contains("unknown field `urll`"), "{e}");

        let mut v = minimal();
        v["bogus"] = json!(1);
        let e = refused(v);
        assert!(e.to_string().contains("bogus"), "{e}");

        let mut v = minimal();
        v["rules"]["not_a_rule"] = json!({"enabled": true});
        assert!(refused(v).to_string().contains("not_a_rule"));
    }

    #[test]
    fn wrong_types_are_named() {
        let mut v = minimal();
        v["leeway_seconds"] = json!("60");
        let e = refused(v);
        assert_eq!(e.field, "leeway_seconds");
    }

    #[test]
    fn refusals() {
        let cases: Vec<(&str, Box<dyn Fn(&mut serde_json::Value)>, &str)> = vec![
            (
                "no directories",
                Box::new(|v| v["directories"] = json!([])),
                "directories",
            ),
            (
                "missing directories",
                Box::new(|v| {
                    v.as_object_mut().unwrap().remove("directories");
                }),
                "directories",
            ),
            (
                "http jwks",
                Box::new(|v| {
                    v["directories"][0]["jwks"][0]["url"] = json!("http://k.example/jwks")
                }),
                "directories[0].jwks[0].url",
            ),
            (
                "relative jwks",
                Box::new(|v| v["directories"][0]["jwks"][0]["url"] = json!("/jwks")),
                "directories[0].jwks[0].url",
            ),
            (
                "userinfo jwks",
                Box::new(|v| {
                    v["directories"][0]["jwks"][0]["url"] = json!("https://u:p@k.example/jwks")
                }),
                "directories[0].jwks[0].url",
            ),
            (
                "empty upstream",
                Box::new(|v| v["directories"][0]["jwks"][0]["upstream"] = json!("")),
                "directories[0].jwks[0].upstream",
            ),
            (
                "no jwks",
                Box::new(|v| v["directories"][0]["jwks"] = json!([])),
                "directories[0].jwks",
            ),
            (
                "empty issuer",
                Box::new(|v| v["directories"][0]["issuer"] = json!(" ")),
                "directories[0].issuer",
            ),
            (
                "hs256",
                Box::new(|v| v["request_algorithms"] = json!(["PS256", "HS256"])),
                "request_algorithms[1]",
            ),
            (
                "none",
                Box::new(|v| v["directories"][0]["algorithms"] = json!(["none"])),
                "directories[0].algorithms[0]",
            ),
            (
                "unknown alg",
                Box::new(|v| v["request_algorithms"] = json!(["PS512"])),
                "request_algorithms[0]",
            ),
            (
                "empty algs",
                Box::new(|v| v["request_algorithms"] = json!([])),
                "request_algorithms",
            ),
            (
                "bad wildcard",
                Box::new(|v| v["software_jwks_hosts"][0]["host"] = json!("*.com")),
                "software_jwks_hosts[0].host",
            ),
            (
                "bad host",
                Box::new(|v| v["software_jwks_hosts"][0]["host"] = json!("a/b")),
                "software_jwks_hosts[0].host",
            ),
            (
                "profile",
                Box::new(|v| v["profile"] = json!("xx")),
                "profile",
            ),
            ("path", Box::new(|v| v["path"] = json!("register")), "path"),
            (
                "path dots",
                Box::new(|v| v["path"] = json!("/a/../register")),
                "path",
            ),
            ("path root", Box::new(|v| v["path"] = json!("/")), "path"),
            (
                "path backslash",
                Box::new(|v| v["path"] = json!("/a\\register")),
                "path",
            ),
            (
                "path space",
                Box::new(|v| v["path"] = json!("/reg ister")),
                "path",
            ),
            (
                "path non-ascii",
                Box::new(|v| v["path"] = json!("/régister")),
                "path",
            ),
            (
                "body limit",
                Box::new(|v| v["limits"] = json!({"body_bytes": 10})),
                "limits.body_bytes",
            ),
            (
                "jwks keys",
                Box::new(|v| v["limits"] = json!({"jwks_keys": 0})),
                "limits.jwks_keys",
            ),
            (
                "timeout",
                Box::new(|v| v["limits"] = json!({"callout_timeout_ms": 600000})),
                "limits.callout_timeout_ms",
            ),
            (
                "leeway",
                Box::new(|v| v["leeway_seconds"] = json!(100000)),
                "leeway_seconds",
            ),
            (
                "max age",
                Box::new(|v| v["rules"]["issuance_time"] = json!({"max_age_seconds": 0})),
                "rules.issuance_time.max_age_seconds",
            ),
            (
                "ssa sig off",
                Box::new(|v| v["rules"]["ssa_signature"] = json!({"enabled": false})),
                "rules.ssa_signature.enabled",
            ),
            (
                "dup issuer",
                Box::new(|v| {
                    let d = v["directories"][0].clone();
                    v["directories"].as_array_mut().unwrap().push(d);
                }),
                "directories[1].issuer",
            ),
        ];
        for (name, mutate, field) in cases {
            let mut v = minimal();
            mutate(&mut v);
            let e = parse(&v)
                .err()
                .unwrap_or_else(|| panic!("{name}: accepted"));
            assert_eq!(e.field, field, "{name}: {e}");
        }
    }

    #[test]
    fn not_json_is_refused() {
        assert!(Config::from_json(b"{").is_err());
        assert!(Config::from_json(b"").is_err());
        assert!(Config::from_json(b"[]").is_err());
    }

    #[test]
    fn host_allow_list() {
        let mut v = minimal();
        v["software_jwks_hosts"] = json!([
            {"host": "Keystore.Example.COM", "upstream": "a"},
            {"host": "*.tpp.example", "upstream": "b"}
        ]);
        let c = parse(&v).unwrap();
        assert_eq!(c.software_upstream("keystore.example.com"), Some("a"));
        assert_eq!(c.software_upstream("x.tpp.example"), Some("b"));
        assert_eq!(c.software_upstream("a.b.tpp.example"), Some("b"));
        assert_eq!(c.software_upstream("tpp.example"), None);
        assert_eq!(c.software_upstream("eviltpp.example"), None);
        assert_eq!(c.software_upstream("other.example.com"), None);
    }

    #[test]
    fn path_is_normalised() {
        let mut v = minimal();
        v["path"] = json!("/Open-Banking/Register/");
        assert_eq!(parse(&v).unwrap().path, "/open-banking/register");
    }

    #[test]
    fn jwks_source_authority_with_port() {
        let s = jwks_source("https://k.example:8443/a/jwks?x=1", "u").unwrap();
        assert_eq!(s.authority, "k.example:8443");
        assert_eq!(s.path, "/a/jwks?x=1");
    }
}
