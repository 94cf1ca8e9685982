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
    issuer_share_percent: Option<u32>,
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
    typ: Option<String>,
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
    /// The URL's port (443 unless it names another).
    pub port: u16,
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
    /// The one port this entry allows: 443 unless the entry names another (`host:8443`).
    pub port: u16,
    pub upstream: String,
}

/// The port of a software-JWKS host entry that names none.
pub const DEFAULT_SOFTWARE_JWKS_PORT: u16 = 443;

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

impl Replay {
    /// What a request pair is remembered for past `min(exp, iat + max_age)`: `leeway`, and at least
    /// one second. The age check accepts `now − iat = max_age` itself, so with no leeway an entry
    /// expiring at `iat + max_age` (live while `expires_at > now`) would miss that last second.
    pub fn retention_margin(leeway: u64) -> u64 {
        leeway.max(1)
    }

    /// The shortest `max_retention_seconds` allowed: what covers the longest-lived request entry,
    /// one whose `iat` is `leeway` in the future (the most `issuance_time` accepts): `leeway +
    /// max_age + retention margin`, i.e. `max_age + 2 × leeway` (`max_age + 1` with no leeway).
    /// With that cap no request entry is cut short, so a request is remembered through the last
    /// second at which it could be accepted.
    pub fn retention_floor(max_request_age: u64, leeway: u64) -> u64 {
        leeway
            .saturating_add(max_request_age)
            .saturating_add(Self::retention_margin(leeway))
    }
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

/// Looks up a secret the configuration names by reference (today `client_secret_env` of
/// `token_client_binding.introspection`): its value, or `None` when there is none. The filter
/// passes its process environment; tests and tools pass what they hold. Secrets never appear in
/// a [`ConfigError`].
pub type Secrets<'a> = &'a dyn Fn(&str) -> Option<String>;

impl Config {
    /// Parse and validate a configuration document, looking up the secrets it names with
    /// `secrets`. An empty document is refused: at least one trusted directory must be configured.
    pub fn parse(doc: &[u8], secrets: Secrets<'_>) -> Result<Config, ConfigError> {
        let mut de = serde_json::Deserializer::from_slice(doc);
        let raw: RawConfig = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let field = e.path().to_string();
            ConfigError::new(field, strip_position(&e.inner().to_string()))
        })?;
        // One JSON document: anything but whitespace after it is refused.
        de.end()
            .map_err(|e| ConfigError::new("", strip_position(&e.to_string())))?;
        resolve(raw, secrets)
    }

    /// [`Config::parse`] with no secrets at hand: a configuration that names one is refused.
    pub fn from_json(doc: &[u8]) -> Result<Config, ConfigError> {
        Self::parse(doc, &|_| None)
    }

    pub fn directory(&self, issuer: &str) -> Option<&Directory> {
        self.directories.iter().find(|d| d.issuer == issuer)
    }

    /// The upstream allowed to serve a software JWKS at `host` (lower case) and `port`, if any:
    /// an entry matches its host (exactly, or as a `*.` suffix) **and** its port (443 unless the
    /// entry names another), so that a wildcard behind a dynamic forward proxy cannot be pointed
    /// at other ports.
    pub fn software_upstream(&self, host: &str, port: u16) -> Option<&str> {
        if is_ip_literal(host) {
            return None;
        }
        self.software_hosts
            .iter()
            .find(|r| {
                r.port == port
                    && match &r.pattern {
                        HostPattern::Exact(h) => h == host,
                        HostPattern::Suffix(s) => {
                            host.len() > s.len() && host.ends_with(s.as_str())
                        }
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
    host.starts_with('[')
        || host.contains(':')
        || host.parse::<std::net::Ipv4Addr>().is_ok()
        // A DNS name's last label is never all digits (the WHATWG parser would read such a
        // host as an IPv4 address in another notation).
        || host
            .rsplit('.')
            .next()
            .is_some_and(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
}

/// A `software_jwks_hosts[].host` entry: `host`, `*.domain`, either with `:port`.
fn host_entry(field: &str, entry: &str) -> Result<(HostPattern, u16), ConfigError> {
    let entry = entry.trim().to_ascii_lowercase();
    let (host, port) = match entry.split_once(':') {
        None => (entry.as_str(), DEFAULT_SOFTWARE_JWKS_PORT),
        Some((host, port)) => {
            let valid = !port.is_empty()
                && port.len() <= 5
                && port.bytes().all(|b| b.is_ascii_digit())
                && !port.starts_with('0');
            match port.parse::<u16>() {
                Ok(p) if valid && p > 0 => (host, p),
                _ => {
                    return Err(ConfigError::new(
                        field,
                        "a port must follow the host as `:` and a number from 1 to 65535 (IPv6 addresses are not allowed)",
                    ))
                }
            }
        }
    };
    if is_ip_literal(host) {
        return Err(ConfigError::new(
            field,
            "must be a DNS host name, not an IP address",
        ));
    }
    let pattern = if let Some(suffix) = host.strip_prefix("*.") {
        if !valid_dns_name(suffix) || !suffix.contains('.') {
            return Err(ConfigError::new(
                field,
                "a wildcard must be `*.` followed by a domain of at least two labels",
            ));
        }
        HostPattern::Suffix(format!(".{suffix}"))
    } else if valid_dns_name(host) {
        HostPattern::Exact(host.to_string())
    } else {
        return Err(ConfigError::new(
            field,
            "must be a DNS host name or `*.` followed by a domain, optionally with `:port`",
        ));
    };
    Ok((pattern, port))
}

fn parse_algs(field: &str, names: &[String]) -> Result<Vec<Alg>, ConfigError> {
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

fn non_empty_name(field: &str, value: &str) -> Result<String, ConfigError> {
    if value.trim().is_empty() {
        return Err(ConfigError::new(field, "must not be empty"));
    }
    Ok(value.to_string())
}

/// One OAuth scope token (RFC 6749 §3.3: printable ASCII but space, `"` and `\\`): it is quoted
/// in the `WWW-Authenticate` challenge of a 403.
fn scope_token(field: &str, value: &str) -> Result<String, ConfigError> {
    let ok = |b: u8| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b);
    if value.is_empty() || !value.bytes().all(ok) {
        return Err(ConfigError::new(
            field,
            "must be one OAuth scope token (printable ASCII, no space, `\"` or `\\`)",
        ));
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
    // The host fetched must be the host written. The URL parser also reads `https:/h`, `https:h`,
    // `https:\\h`, percent-encoded and IPv4-shorthand hosts and drops tabs and newlines, so the
    // text could name one host while another is fetched: the authority must be written plainly.
    let written = url
        .get(..8)
        .filter(|scheme| scheme.eq_ignore_ascii_case("https://"))
        .and_then(|_| url.get(8..))
        .ok_or("must start with `https://`")?;
    let written = written
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let with_port = parsed
        .port_or_known_default()
        .map(|p| format!("{host}:{p}"));
    if written != host && Some(&written) != with_port.as_ref() {
        return Err(format!(
            "must name its host plainly (`https://host[:port]/…`): it would be fetched from `{host}`"
        ));
    }
    let authority = match parsed.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.clone(),
    };
    // https is the only scheme: its default port when the URL names none.
    let port = parsed.port_or_known_default().unwrap_or(443);
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
        port,
        path,
    })
}

fn resolve(raw: RawConfig, secrets: Secrets<'_>) -> Result<Config, ConfigError> {
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
        let (pattern, port) = host_entry(&format!("{f}.host"), &h.host)?;
        software_hosts.push(HostRule {
            pattern,
            port,
            upstream,
        });
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
    // The regime's invariants cannot be configured away (report-only is the way to roll out).
    for (rule, why) in defaults.mandatory {
        if raw_enabled(&rr, *rule) == Some(false) {
            return Err(ConfigError::new(
                format!("rules.{}.enabled", rule.as_str()),
                format!(
                    "rule `{}` is mandatory in the {} profile and cannot be switched off: {why} (to roll out without enforcing, set `report_only: true`)",
                    rule.as_str(),
                    profile.as_str()
                ),
            ));
        }
    }
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
    let binding = resolve_binding(rr.token_client_binding.as_ref(), secrets)?;
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

/// `rules.<rule>.enabled` as written (`None` when not given).
fn raw_enabled(rr: &RawRules, rule: crate::error::RuleId) -> Option<bool> {
    use crate::error::RuleId as R;
    let t = |t: &Option<RawToggle>| t.as_ref().and_then(|t| t.enabled);
    match rule {
        R::TokenClientBinding => rr.token_client_binding.as_ref().and_then(|r| r.enabled),
        R::CertificateBinding => rr.certificate_binding.as_ref().and_then(|r| r.enabled),
        R::RequestJti => rr.request_jti.as_ref().and_then(|r| r.enabled),
        R::SsaJti => rr.ssa_jti.as_ref().and_then(|r| r.enabled),
        R::SsaIssuer => t(&rr.ssa_issuer),
        R::SsaSignature => t(&rr.ssa_signature),
        R::RequestSignature => t(&rr.request_signature),
        R::IssuanceTime => rr.issuance_time.as_ref().and_then(|r| r.enabled),
        R::SoftwareStatus => rr.software_status.as_ref().and_then(|r| r.enabled),
        R::RequiredAttributes => rr.required_attributes.as_ref().and_then(|r| r.enabled),
        R::Issuer => t(&rr.issuer),
        R::Audience => rr.audience.as_ref().and_then(|r| r.enabled),
        R::RedirectUriFormat => rr.redirect_uri_format.as_ref().and_then(|r| r.enabled),
        R::RedirectUriSubset => t(&rr.redirect_uri_subset),
        R::UriHostname => t(&rr.uri_hostname),
        R::TokenEndpointAuth => rr.token_endpoint_auth.as_ref().and_then(|r| r.enabled),
        R::SigningAlgorithms => rr.signing_algorithms.as_ref().and_then(|r| r.enabled),
        R::GrantAndResponseTypes => rr.grant_and_response_types.as_ref().and_then(|r| r.enabled),
        R::SoftwareRoles => rr.software_roles.as_ref().and_then(|r| r.enabled),
    }
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
    let floor = Replay::retention_floor(max_request_age, leeway);
    let max_retention = raw.max_retention_seconds.unwrap_or(floor.max(86_400));
    if max_retention < floor {
        return Err(ConfigError::new(
            "replay.max_retention_seconds",
            format!("must be at least rules.issuance_time.max_age_seconds + 2 × leeway_seconds ({floor}; max_age_seconds + 1 with no leeway): a request whose `iat` is leeway_seconds ahead is accepted until iat + max_age_seconds, and a shorter memory lets its replay through"),
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
        issuer_share_percent: bounded(
            "replay.issuer_share_percent",
            raw.issuer_share_percent,
            defaults.issuer_share_percent,
            1,
            100,
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

fn resolve_binding(
    raw: Option<&RawBinding>,
    secrets: Secrets<'_>,
) -> Result<Option<TokenMode>, ConfigError> {
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
            let endpoint = jwks_source(&i.url, &upstream)
                .map_err(|m| ConfigError::new(format!("{fi}.url"), m))?;
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
            return Ok(Some(TokenMode::Introspection(
                crate::binding::Introspection {
                    endpoint,
                    client_id,
                    secret,
                    scope: match &r.scope {
                        Some(sc) => Some(scope_token(&format!("{f}.scope"), sc)?),
                        None => None,
                    },
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
            || r.typ.is_some()
    };
    match raw.and_then(|r| r.mode.as_deref()) {
        None | Some("delegate") => {
            if raw.is_some_and(jwt_only) {
                return Err(ConfigError::new(
                    format!("{f}.mode"),
                    "jwks, algorithms, issuer, audiences, scope, client_id_claims and typ are for mode `jwt`",
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
                None => crate::binding::ACCESS_TOKEN_TYP.to_string(),
                Some(t) => {
                    let t = non_empty_name(&format!("{f}.typ"), t)?;
                    crate::binding::media_type(t.trim())
                }
            };
            if typ != crate::binding::ACCESS_TOKEN_TYP && audiences.is_empty() && scope.is_none() {
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
        .find(|(_, a)| crate::jose::alg_is_forbidden(a))
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
        assert_eq!(c.software_upstream("keystore.example.com", 443), Some("a"));
        assert_eq!(c.software_upstream("x.tpp.example", 443), Some("b"));
        assert_eq!(c.software_upstream("a.b.tpp.example", 443), Some("b"));
        assert_eq!(c.software_upstream("tpp.example", 443), None);
        assert_eq!(c.software_upstream("eviltpp.example", 443), None);
        assert_eq!(c.software_upstream("other.example.com", 443), None);
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

    #[test]
    fn jwt_binding_must_pin_issuer_or_audience_and_take_access_tokens() {
        let jwt = |extra: serde_json::Value| {
            let mut v = minimal();
            let mut b = json!({"mode": "jwt", "jwks": [{"url": "https://as.example/jwks", "upstream": "as"}]});
            for (k, val) in extra.as_object().unwrap() {
                b[k] = val.clone();
            }
            v["rules"]["token_client_binding"] = b;
            parse(&v)
        };
        let typ_of = |c: &Config| match &c.binding {
            Some(TokenMode::Jwt(j)) => j.typ.clone(),
            other => panic!("{other:?}"),
        };
        // (extra fields, Ok(the typ required) | Err(the field named))
        let cases: Vec<(serde_json::Value, Result<&str, &str>)> = vec![
            (json!({}), Err("rules.token_client_binding.issuer")),
            (
                json!({"scope": "dcr"}),
                Err("rules.token_client_binding.issuer"),
            ),
            (
                json!({"audiences": []}),
                Err("rules.token_client_binding.audiences"),
            ),
            (
                json!({"issuer": " "}),
                Err("rules.token_client_binding.issuer"),
            ),
            (
                json!({"issuer": "https://as.example"}),
                Ok("application/at+jwt"),
            ),
            (
                json!({"audiences": ["https://bank.example/register"]}),
                Ok("application/at+jwt"),
            ),
            (
                json!({"issuer": "https://as.example", "typ": "AT+JWT"}),
                Ok("application/at+jwt"),
            ),
            (
                json!({"issuer": "https://as.example", "typ": "application/at+jwt"}),
                Ok("application/at+jwt"),
            ),
            // Another typ only with an audience or a scope.
            (
                json!({"issuer": "https://as.example", "typ": "JWT"}),
                Err("rules.token_client_binding.typ"),
            ),
            (
                json!({"issuer": "https://as.example", "typ": "JWT", "scope": "dcr"}),
                Ok("application/jwt"),
            ),
            (
                json!({"issuer": "https://as.example", "typ": "JWT", "audiences": ["api"]}),
                Ok("application/jwt"),
            ),
            (
                json!({"issuer": "https://as.example", "typ": "JWT", "scope": ""}),
                Err("rules.token_client_binding.scope"),
            ),
            // The scope is quoted in a 403's challenge: one RFC 6749 scope token.
            (
                json!({"issuer": "https://as.example", "scope": "a b"}),
                Err("rules.token_client_binding.scope"),
            ),
            (
                json!({"issuer": "https://as.example", "scope": "x\"y"}),
                Err("rules.token_client_binding.scope"),
            ),
            (
                json!({"issuer": "https://as.example", "typ": ""}),
                Err("rules.token_client_binding.typ"),
            ),
        ];
        for (extra, want) in cases {
            match (jwt(extra.clone()), want) {
                (Ok(c), Ok(typ)) => assert_eq!(typ_of(&c), typ, "{extra}"),
                (Err(e), Err(field)) => {
                    assert_eq!(e.field, field, "{extra}: {e}");
                }
                (got, want) => panic!("{extra}: got {got:?}, want {want:?}"),
            }
        }
        // `typ` belongs to mode jwt only.
        let mut v = minimal();
        v["rules"]["token_client_binding"] = json!({"typ": "at+jwt"});
        assert_eq!(refused(v).field, "rules.token_client_binding.mode");
    }

    #[test]
    fn mandatory_rules_per_profile() {
        use crate::error::RuleId as R;
        const ALL: [R; 19] = [
            R::TokenClientBinding,
            R::SsaIssuer,
            R::SsaSignature,
            R::RequestSignature,
            R::IssuanceTime,
            R::SoftwareStatus,
            R::RequiredAttributes,
            R::Issuer,
            R::Audience,
            R::RedirectUriFormat,
            R::RedirectUriSubset,
            R::UriHostname,
            R::TokenEndpointAuth,
            R::SigningAlgorithms,
            R::GrantAndResponseTypes,
            R::SoftwareRoles,
            R::CertificateBinding,
            R::RequestJti,
            R::SsaJti,
        ];
        let dir = |issuer: &str| json!([{"issuer": issuer, "jwks": [{"url": "https://k.example/jwks", "upstream": "k"}]}]);
        let uk = minimal();
        let au = json!({"profile": "au-cdr", "directories": dir("cdr-register"),
                        "rules": {"audience": {"audiences": ["https://holder.example"]}}});
        let br = json!({"profile": "br-ofb", "directories": dir("br")});
        // (profile, base configuration, the rules that cannot be switched off)
        let table: Vec<(&str, serde_json::Value, Vec<R>)> = vec![
            (
                "uk-obie",
                uk,
                vec![
                    R::SsaIssuer,
                    R::SsaSignature,
                    R::RequestSignature,
                    R::RedirectUriSubset,
                ],
            ),
            (
                "au-cdr",
                au,
                vec![
                    R::SsaIssuer,
                    R::SsaSignature,
                    R::RequestSignature,
                    R::RedirectUriSubset,
                    R::Audience,
                ],
            ),
            (
                "br-ofb",
                br,
                vec![
                    R::SsaIssuer,
                    R::SsaSignature,
                    R::RedirectUriSubset,
                    R::CertificateBinding,
                ],
            ),
        ];
        for (profile, base, mandatory) in table {
            for report_only in [false, true] {
                let mut on = base.clone();
                on["report_only"] = json!(report_only);
                let c = parse(&on).unwrap_or_else(|e| panic!("{profile}: {e}"));
                // Report-only keeps every mandatory rule on: it is the way to roll out.
                assert!(c.rules.ssa_issuer && c.rules.ssa_signature, "{profile}");
                if mandatory.contains(&R::CertificateBinding) {
                    assert!(c.certificate_binding.is_some(), "{profile}");
                }
                for rule in ALL {
                    let mut v = on.clone();
                    v["rules"][rule.as_str()]["enabled"] = json!(false);
                    let got = parse(&v);
                    if mandatory.contains(&rule) {
                        let e = got.err().unwrap_or_else(|| {
                            panic!("{profile}: `{}` switched off", rule.as_str())
                        });
                        assert_eq!(e.field, format!("rules.{}.enabled", rule.as_str()));
                        assert!(e.message.contains(profile), "{e}");
                        assert!(e.message.contains("mandatory"), "{e}");
                        assert!(e.message.contains(rule.as_str()), "{e}");
                    } else {
                        assert!(
                            got.is_ok(),
                            "{profile}: `{}` cannot be switched off: {:?}",
                            rule.as_str(),
                            got.err()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn path_is_normalised() {
        let mut v = minimal();
        v["path"] = json!("/Open-Banking/Register/");
        assert_eq!(parse(&v).unwrap().path, "/open-banking/register");
    }

    #[test]
    fn trailing_text_after_the_document_is_refused() {
        // Found by the `config` fuzz target: one stray byte after the object was ignored.
        let doc = minimal().to_string();
        for tail in ["x", "\u{8d}", "}", "{}", " 1", "\n[]", "\0"] {
            let e = Config::from_json(format!("{doc}{tail}").as_bytes()).unwrap_err();
            assert_eq!(e.field, "", "{tail:?}");
            assert!(e.message.contains("trailing"), "{tail:?}: {e}");
        }
        for tail in ["", " ", "\n", "\r\n\t"] {
            assert!(
                Config::from_json(format!("{doc}{tail}").as_bytes()).is_ok(),
                "{tail:?}"
            );
        }
    }

    #[test]
    fn jwks_url_host_is_fetched_as_written() {
        // Found by the `config` fuzz target: `https:/9/…` was accepted and fetched from 0.0.0.9.
        for bad in [
            "https:/9/keystore.directory.test/keystore/openbanking.jwks",
            "https:/k.example/jwks",
            "https:k.example/jwks",
            "https:\\\\k.example/jwks",
            "https://k.example\\jwks",
            "https://k%2Eexample/jwks",
            "https://k.exa\tmple/jwks",
            "https://@k.example/jwks",
            "https://0x7f.1/jwks",
            "https://b\u{fc}cher.example/jwks",
            " https://k.example/jwks",
            "https://k.example:0443/jwks",
        ] {
            let e = jwks_source(bad, "u").unwrap_err();
            assert!(
                e.contains("plainly") || e.contains("`https://`") || e.contains("user"),
                "{bad:?}: {e}"
            );
        }
        for (good, host, authority) in [
            ("https://k.example/jwks", "k.example", "k.example"),
            ("https://K.Example/jwks", "k.example", "k.example"),
            ("HTTPS://k.example/jwks", "k.example", "k.example"),
            ("https://k.example", "k.example", "k.example"),
            ("https://k.example:443/jwks", "k.example", "k.example"),
            ("https://k.example:8443?x", "k.example", "k.example:8443"),
            ("https://[::1]:8443/jwks", "[::1]", "[::1]:8443"),
            ("https://10.0.0.1/jwks", "10.0.0.1", "10.0.0.1"),
        ] {
            let s = jwks_source(good, "u").unwrap_or_else(|e| panic!("{good}: {e}"));
            assert_eq!((s.host.as_str(), s.authority.as_str()), (host, authority));
        }
    }

    #[test]
    fn jwks_source_authority_with_port() {
        let s = jwks_source("https://k.example:8443/a/jwks?x=1", "u").unwrap();
        assert_eq!(s.authority, "k.example:8443");
        assert_eq!(s.path, "/a/jwks?x=1");
    }

    #[test]
    fn replay_retention_floor_is_exact() {
        // (max_age, leeway, floor): max_age + 2 × leeway; max_age + 1 with no leeway.
        for (age, leeway, floor) in [
            (3600u64, 60u64, 3720u64),
            (3600, 0, 3601),
            (3600, 1, 3602),
            (300, 30, 360),
            (1, 600, 1201),
        ] {
            assert_eq!(Replay::retention_floor(age, leeway), floor);
            let at = |retention: u64| {
                let mut v = minimal();
                v["leeway_seconds"] = json!(leeway);
                v["rules"]["issuance_time"] = json!({"max_age_seconds": age});
                v["replay"] = json!({"max_retention_seconds": retention});
                parse(&v)
            };
            let e = at(floor - 1).unwrap_err();
            assert_eq!(e.field, "replay.max_retention_seconds");
            assert!(e.message.contains(&format!("({floor};")), "{e}");
            assert_eq!(at(floor).unwrap().replay.max_retention, floor);
            // The default covers it too.
            let mut v = minimal();
            v["leeway_seconds"] = json!(leeway);
            v["rules"]["issuance_time"] = json!({"max_age_seconds": age});
            assert_eq!(parse(&v).unwrap().replay.max_retention, floor.max(86_400));
        }
    }

    #[test]
    fn replay_issuer_share() {
        assert_eq!(
            parse(&minimal()).unwrap().replay.store.issuer_share_percent,
            10
        );
        for (pct, ok) in [(0, false), (1, true), (10, true), (100, true), (101, false)] {
            let mut v = minimal();
            v["replay"] = json!({"issuer_share_percent": pct});
            match parse(&v) {
                Ok(c) => {
                    assert!(ok, "{pct}");
                    assert_eq!(c.replay.store.issuer_share_percent, pct);
                }
                Err(e) => {
                    assert!(!ok, "{pct}: {e}");
                    assert_eq!(e.field, "replay.issuer_share_percent");
                    assert!(e.message.contains("between 1 and 100"), "{e}");
                }
            }
        }
        let mut v = minimal();
        v["replay"] = json!({"issuer_share_percent": "10"});
        assert_eq!(refused(v).field, "replay.issuer_share_percent");
        let mut v = minimal();
        v["replay"] = json!({"issuer_share": 10});
        assert!(refused(v).to_string().contains("issuer_share"));
    }

    /// `none` and every HMAC algorithm are refused wherever an algorithm list is configured, in
    /// any letter case, with the same message (one check: `jose::alg_is_forbidden`).
    #[test]
    fn never_allowed_algorithms_in_any_case() {
        let sites: Vec<(&str, Box<dyn Fn(&mut serde_json::Value, &str)>)> = vec![
            (
                "directories[0].algorithms[1]",
                Box::new(|v, a| v["directories"][0]["algorithms"] = json!(["PS256", a])),
            ),
            (
                "request_algorithms[1]",
                Box::new(|v, a| v["request_algorithms"] = json!(["PS256", a])),
            ),
            (
                "rules.token_client_binding.algorithms[1]",
                Box::new(|v, a| {
                    v["rules"]["token_client_binding"] = json!({
                        "mode": "jwt",
                        "jwks": [{"url": "https://as.bank.test/jwks", "upstream": "as"}],
                        "issuer": "https://as.bank.test",
                        "algorithms": ["PS256", a]
                    })
                }),
            ),
            (
                "rules.signing_algorithms.algorithms[1]",
                Box::new(|v, a| {
                    v["rules"]["signing_algorithms"] = json!({"algorithms": ["PS256", a]})
                }),
            ),
        ];
        for (field, set) in &sites {
            for alg in ["none", "None", "NONE", "HS256", "hS256", "hs384", "Hs512"] {
                let mut v = minimal();
                set(&mut v, alg);
                let e = refused(v);
                assert_eq!(e.field, *field, "{alg}: {e}");
                assert!(
                    e.message.starts_with(&format!("`{alg}` is never allowed")),
                    "{alg} at {field}: {e}"
                );
            }
        }
    }

    /// The introspection client secret is looked up by name through the function the caller
    /// passes (the filter: its environment); missing or empty, the configuration is refused with
    /// the same message, which never holds a secret.
    #[test]
    fn introspection_secret_comes_from_the_lookup() {
        let mut v = minimal();
        v["rules"]["token_client_binding"] = json!({
            "mode": "introspection",
            "introspection": {
                "url": "https://as.bank.test/introspect",
                "upstream": "as",
                "client_id": "x",
                "client_secret_env": "AS_SECRET"
            }
        });
        let doc = v.to_string();
        let asked = std::cell::RefCell::new(Vec::new());
        let c = Config::parse(doc.as_bytes(), &|n| {
            asked.borrow_mut().push(n.to_string());
            (n == "AS_SECRET").then(|| "s3cr3t".to_string())
        })
        .unwrap();
        assert_eq!(*asked.borrow(), ["AS_SECRET"]);
        match c.binding {
            Some(TokenMode::Introspection(i)) => assert_eq!(i.secret, "s3cr3t"),
            _ => panic!("not introspection"),
        }
        for found in [None, Some("")] {
            let e = Config::parse(doc.as_bytes(), &|_| found.map(String::from)).unwrap_err();
            assert_eq!(
                e.field,
                "rules.token_client_binding.introspection.client_secret_env"
            );
            assert_eq!(
                e.message,
                "environment variable `AS_SECRET` is not set for the filter (Envoy: list it in vm_config.environment_variables.host_env_keys)"
            );
        }
    }
}
