//! The filter configuration: one JSON document, read once in the host's configure step, validated
//! into typed structures. Requests never re-parse configuration.

use std::fmt;

use serde::Deserialize;
use url::Url;

use crate::jose::Alg;

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
    ssa_issuer: Option<RawToggle>,
    ssa_signature: Option<RawToggle>,
    request_signature: Option<RawToggle>,
    issuance_time: Option<RawIssuanceTime>,
}

// ---------------------------------------------------------------------------------------------
// The validated configuration.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    UkObie,
}

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::UkObie => "uk-obie",
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

#[derive(Debug, Clone, Copy)]
pub struct Rules {
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
}

pub const DEFAULT_PATH: &str = "/register";
pub const DEFAULT_LEEWAY: u64 = 60;
pub const DEFAULT_MAX_REQUEST_AGE: u64 = 3600;
pub const DEFAULT_RETRY_AFTER: u32 = 5;
pub const DEFAULT_BODY_BYTES: usize = 64 * 1024;
pub const DEFAULT_JWKS_BYTES: usize = 256 * 1024;
pub const DEFAULT_JWKS_KEYS: usize = 100;
pub const DEFAULT_CALLOUT_TIMEOUT_MS: u64 = 2000;

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
        Some(other) => {
            return Err(ConfigError::new(
                "profile",
                format!("unknown profile `{other}` (supported: uk-obie)"),
            ))
        }
    };
    let default_algs = vec![Alg::Ps256, Alg::Es256];

    let path = {
        let p = raw.path.unwrap_or_else(|| DEFAULT_PATH.to_string());
        if !p.starts_with('/') || p.contains(['?', '#', '%', ';']) || p.contains("//") {
            return Err(ConfigError::new(
                "path",
                "must be an absolute path starting with `/`, without query, fragment, `%`, `;` or empty segments",
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
            max_ssa_age: d.max_ssa_age_seconds,
            require_exp: d.require_exp.unwrap_or(false),
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
    let ssa_software_jwks_claim = non_empty_name(
        "ssa_claims.software_jwks",
        ssa_claims
            .software_jwks
            .as_deref()
            .unwrap_or("software_jwks_endpoint"),
    )?;

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
    let it = rr.issuance_time.unwrap_or_default();
    let max_request_age = it.max_age_seconds.unwrap_or(DEFAULT_MAX_REQUEST_AGE);
    if max_request_age == 0 {
        return Err(ConfigError::new(
            "rules.issuance_time.max_age_seconds",
            "must be greater than 0",
        ));
    }
    let rules = Rules {
        ssa_issuer: on(&rr.ssa_issuer),
        ssa_signature: on(&rr.ssa_signature),
        request_signature: on(&rr.request_signature),
        issuance_time: it.enabled.unwrap_or(true),
        max_request_age,
    };
    if rules.request_signature && !rules.ssa_signature {
        return Err(ConfigError::new(
            "rules.ssa_signature.enabled",
            "cannot be false while request_signature is on: the software JWKS URL is only ever taken from a verified SSA",
        ));
    }

    Ok(Config {
        profile,
        path,
        hold_headers: raw.hold_headers.unwrap_or(true),
        directories,
        software_hosts,
        ssa_software_jwks_claim,
        request_algorithms,
        leeway,
        retry_after,
        limits,
        rules,
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
            "software_jwks_hosts": [{"host": "keystore.openbanking.org.uk", "upstream": "ob_keystore"}]
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
        v["rules"] = json!({"not_a_rule": {"enabled": true}});
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
                Box::new(|v| v["rules"] = json!({"issuance_time": {"max_age_seconds": 0}})),
                "rules.issuance_time.max_age_seconds",
            ),
            (
                "ssa sig off",
                Box::new(|v| v["rules"] = json!({"ssa_signature": {"enabled": false}})),
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
