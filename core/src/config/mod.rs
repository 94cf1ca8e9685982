//! The filter configuration: one JSON document, read once in the host's configure step, validated
//! into typed structures. Requests never re-parse configuration.
//!
//! The entry point is [`Config::parse`]. The document is read in steps, one module per concern:
//! `raw` (the schema as written), `checks` (the field checks they share and [`ConfigError`]),
//! `trust` (directories and the software-JWKS host allow-list), `rules` (the `rules` object), `binding` (`token_client_binding`) and `stores` (JWKS cache and replay
//! store). Per-profile defaults are tables in `crate::profile`.

mod binding;
mod checks;
mod locate;
mod raw;
mod rules;
#[cfg(feature = "schema")]
pub mod schema;
mod status;
mod stores;
mod trust;

#[cfg(test)]
mod tests;

pub(crate) use binding::media_type;
pub use binding::ACCESS_TOKEN_TYP;
pub use binding::{Endpoint, Introspection, JwtBinding, Secrets, TokenMode};
pub use checks::ConfigError;
pub use rules::Rules;
// JWKS sources belong to the key supply; named here too for the code that reads them as part of
// the configuration.
pub use crate::keys::{jwks_source, JwksSource};
pub use stores::Replay;
pub use trust::{Directory, HostPattern, HostRule};

pub use crate::profile::Profile;

use checks::{bounded, non_empty_name, parse_algs, strip_position};
use raw::{
    RawClientCertificate, RawConfig, RawFactHeader, RawLimits, BODY_BYTES, CALLOUT_TIMEOUT_MS,
    JWKS_BYTES, JWKS_KEYS, RETRY_AFTER,
};

/// Size and time bounds (`limits`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest registration body read, bytes.
    pub body_bytes: usize,
    /// Largest JWKS document accepted, bytes.
    pub jwks_bytes: usize,
    /// Most keys one JWKS document may hold.
    pub jwks_keys: usize,
    /// How long a callout (JWKS fetch, introspection) may take, milliseconds.
    pub callout_timeout_ms: u64,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The regime whose defaults apply.
    pub profile: Profile,
    /// The registration path, lower case, without a trailing slash.
    pub path: String,
    /// Request headers are held until the body has been checked.
    pub hold_headers: bool,
    /// The trusted directories.
    pub directories: Vec<Directory>,
    /// The software-JWKS host allow-list ([`Config::software_upstream`] reads it).
    pub software_hosts: Vec<HostRule>,
    /// SSA claim that names the TPP's software JWKS URL.
    pub ssa_software_jwks_claim: String,
    /// Algorithms a request JWT may be signed with.
    pub request_algorithms: Vec<crate::jose::Alg>,
    /// Clock skew allowed, seconds.
    pub leeway: u64,
    /// `Retry-After` of a 503, seconds.
    pub retry_after: u32,
    /// Size and time bounds.
    pub limits: Limits,
    /// Every rule's switch and parameters (`rules`).
    pub rules: Rules,
    /// Evaluate, log and count, but forward everything (spec §9).
    pub report_only: bool,
    /// The registration body is a plain JSON object (Brazil), not a signed JWT.
    pub json_body: bool,
    /// How a valid registration is forwarded (spec §6).
    pub forward: Forward,
    /// Verified SSA claims passed to the AS as request headers: (SSA claim, header name).
    pub fact_headers: Vec<(String, String)>,
    /// The SSA claims that take precedence over request metadata in JSON forwarding (RFC 7591
    /// §3.1.1), in the order they are applied (a later one wins over an earlier one).
    pub ssa_metadata: Vec<SsaMetadata>,
    /// The replay store (`replay`).
    pub replay: Replay,
    /// The JWKS cache (`jwks_cache`).
    pub jwks_cache: crate::keys::CachePolicy,
    /// Where the client certificate comes from.
    pub cert_source: CertSource,
    /// `stats.instance`: the name that keeps this filter's metrics apart from another dcr-guard
    /// filter's in the same Envoy (see [`crate::metrics::instance_name`]); `None`: the plain names.
    pub stats_instance: Option<String>,
}

/// One registration metadata value an SSA can carry ([`Config::ssa_metadata`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsaMetadata {
    /// The SSA claim.
    pub ssa_claim: String,
    /// The registration metadata name it gives a value to.
    pub name: String,
    pub precedence: crate::profile::Precedence,
}

/// Where the filter learns the TPP's client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertSource {
    /// The host's TLS connection (Envoy `connection.*` properties).
    Connection,
    /// The `x-forwarded-client-cert` header, for TLS ended at a trusted proxy in front.
    Xfcc,
}

/// How a valid registration reaches the AS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// The body as it came.
    Jwt,
    /// The verified claims as an RFC 7591 JSON object.
    Json,
}

const DEFAULT_PATH: &str = "/register";
const DEFAULT_LEEWAY: u64 = 60;
const DEFAULT_RETRY_AFTER: u32 = 5;
const DEFAULT_BODY_BYTES: usize = 64 * 1024;
const DEFAULT_JWKS_BYTES: usize = 256 * 1024;
const DEFAULT_JWKS_KEYS: usize = 100;
const DEFAULT_CALLOUT_TIMEOUT_MS: u64 = 2000;

/// Hard ceilings: a configuration above these is refused (bounded everything).
const MAX_BODY_BYTES: usize = 1024 * 1024;
const MAX_JWKS_BYTES: usize = 4 * 1024 * 1024;
const MAX_JWKS_KEYS: usize = 1000;
const MAX_CALLOUT_TIMEOUT_MS: u64 = 60_000;
const MAX_LEEWAY: u64 = 600;

impl Config {
    /// One line saying what was configured (the filter logs it as `dcr-guard: configured …`; the
    /// CLI prints it for a valid configuration).
    pub fn summary(&self) -> String {
        format!(
            "profile={} path={} directories={} hold_headers={} report_only={}",
            self.profile.as_str(),
            self.path,
            self.directories.len(),
            self.hold_headers,
            self.report_only
        )
    }

    /// Parse and validate a configuration document, looking up the secrets it names with
    /// `secrets`. An empty document is refused: at least one trusted directory must be configured.
    pub fn parse(doc: &[u8], secrets: Secrets<'_>) -> Result<Config, ConfigError> {
        let mut de = serde_json::Deserializer::from_slice(doc);
        let raw: RawConfig = serde::Deserialize::deserialize(&mut de).map_err(|e| {
            ConfigError::new(locate::error_path(doc, &e), strip_position(&e.to_string()))
        })?;
        // One JSON document: anything but whitespace after it is refused.
        de.end()
            .map_err(|e| ConfigError::new("", strip_position(&e.to_string())))?;
        // `rules.participant_status` is read by hand from the document itself.
        let participant_status = match raw.rules.as_ref().and_then(|r| r.participant_status) {
            None => None,
            Some(_) => serde_json::from_slice::<serde_json::Value>(doc)
                .ok()
                .and_then(|mut v| Some(v.get_mut("rules")?.get_mut("participant_status")?.take())),
        };
        resolve(raw, secrets, participant_status)
    }

    /// [`Config::parse`] with no secrets at hand: a configuration that names one is refused.
    pub fn from_json(doc: &[u8]) -> Result<Config, ConfigError> {
        Self::parse(doc, &|_| None)
    }

    /// The trusted directory whose SSAs carry `iss` `issuer`.
    pub fn directory(&self, issuer: &str) -> Option<&Directory> {
        self.directories.iter().find(|d| d.issuer == issuer)
    }

    /// The upstream allowed to serve a software JWKS at `host` (lower case) and `port`, if any:
    /// an entry matches its host (exactly, or as a `*.` suffix) **and** its port (443 unless the
    /// entry names another), so that a wildcard behind a dynamic forward proxy cannot be pointed
    /// at other ports.
    pub fn software_upstream(&self, host: &str, port: u16) -> Option<&str> {
        trust::allowed_upstream(&self.software_hosts, host, port)
    }
}

/// The document, field by field; the first refusal wins.
fn resolve(
    raw: RawConfig,
    secrets: Secrets<'_>,
    participant_status: Option<serde_json::Value>,
) -> Result<Config, ConfigError> {
    let profile = resolve_profile(raw.profile.as_deref())?;
    let defaults = profile.defaults();
    let path = resolve_path(raw.path)?;
    // The limits first: a pinned JWKS is held to them.
    let limits = resolve_limits(raw.limits.unwrap_or_default())?;
    let directories = trust::resolve_directories(raw.directories, defaults, &limits)?;
    let software_hosts = trust::resolve_software_hosts(raw.software_jwks_hosts)?;
    let (ssa_software_jwks_claim, claim_names) =
        rules::resolve_ssa_claims(raw.ssa_claims, defaults)?;
    let request_algorithms = match raw.request_algorithms {
        Some(a) => parse_algs("request_algorithms", &a)?,
        None => defaults.algorithms.to_vec(),
    };
    let (leeway, retry_after) = resolve_timing(raw.leeway_seconds, raw.retry_after_seconds)?;
    let rules = rules::resolve_rules(
        profile,
        defaults,
        raw.rules.unwrap_or_default(),
        claim_names,
        secrets,
        participant_status,
    )?;
    let hold_headers = raw.hold_headers.unwrap_or(true);
    let forward = resolve_forward(raw.forward.as_deref(), defaults.json_body, hold_headers)?;
    let fact_headers = resolve_fact_headers(raw.fact_headers.unwrap_or_default(), hold_headers)?;
    let replay = stores::resolve_replay(
        raw.replay.unwrap_or_default(),
        rules.max_request_age,
        leeway,
    )?;
    let ssa_metadata = resolve_ssa_metadata(
        defaults,
        &rules.claims.redirect_uris.ssa_claim,
        &ssa_software_jwks_claim,
    );
    let cert_source = resolve_cert_source(raw.client_certificate.as_ref())?;
    let stats_instance = resolve_stats_instance(raw.stats.unwrap_or_default().instance)?;
    let jwks_cache = stores::resolve_cache(
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
        ssa_metadata,
        replay,
        jwks_cache,
        cert_source,
        stats_instance,
    })
}

/// Longest `stats.instance`.
const MAX_STATS_INSTANCE: usize = 32;

/// `stats.instance`: 1 to 32 of `a-z`, `0-9`, `_` (it becomes part of every metric's name, and the
/// kits' `stats_tags` recipe finds it there between dots).
fn resolve_stats_instance(raw: Option<String>) -> Result<Option<String>, ConfigError> {
    let Some(name) = raw else {
        return Ok(None);
    };
    let ok = !name.is_empty()
        && name.len() <= MAX_STATS_INSTANCE
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !ok {
        return Err(ConfigError::new(
            "stats.instance",
            format!(
                "must be 1 to {MAX_STATS_INSTANCE} characters of a-z, 0-9 and `_` (it is part of every metric's name)"
            ),
        ));
    }
    Ok(Some(name))
}

/// The SSA claims that win over request metadata (RFC 7591 §3.1.1): every registration metadata
/// name (RFC 7591, OpenID Connect, the regime's) under its own name, then the regime's renamed
/// claims (UK `software_client_name` → `client_name`, …) and the configured redirect and software
/// JWKS claims, which win over a same-named claim.
fn resolve_ssa_metadata(
    defaults: &crate::profile::Defaults,
    redirect_claim: &str,
    jwks_claim: &str,
) -> Vec<SsaMetadata> {
    let names: Vec<(&str, crate::profile::Precedence)> = crate::profile::REGISTRATION_METADATA
        .iter()
        .chain(defaults.regime_metadata)
        .copied()
        .collect();
    let precedence = |name: &str| {
        names
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(crate::profile::Precedence::Replace, |(_, p)| *p)
    };
    let renamed = defaults
        .ssa_metadata
        .iter()
        .copied()
        .chain([(redirect_claim, "redirect_uris"), (jwks_claim, "jwks_uri")]);
    names
        .iter()
        .map(|(n, _)| (*n, *n))
        .chain(renamed)
        .map(|(claim, name)| SsaMetadata {
            ssa_claim: claim.to_string(),
            name: name.to_string(),
            precedence: precedence(name),
        })
        .collect()
}

/// `profile`: `uk-obie` unless named.
fn resolve_profile(name: Option<&str>) -> Result<Profile, ConfigError> {
    match name {
        None => Ok(Profile::UkObie),
        Some(name) => Profile::from_name(name).ok_or_else(|| {
            let supported: Vec<&str> = Profile::ALL.iter().map(|p| p.as_str()).collect();
            ConfigError::new(
                "profile",
                format!(
                    "unknown profile `{name}` (supported: {})",
                    supported.join(", ")
                ),
            )
        }),
    }
}

/// `path`: an absolute path of plain characters, lower case, without a trailing slash.
fn resolve_path(raw: Option<String>) -> Result<String, ConfigError> {
    let p = raw.unwrap_or_else(|| DEFAULT_PATH.to_string());
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
    Ok(trimmed.to_ascii_lowercase())
}

/// `leeway_seconds` and `retry_after_seconds`.
fn resolve_timing(
    leeway: Option<u64>,
    retry_after: Option<u32>,
) -> Result<(u64, u32), ConfigError> {
    let leeway = leeway.unwrap_or(DEFAULT_LEEWAY);
    if leeway > MAX_LEEWAY {
        return Err(ConfigError::new(
            "leeway_seconds",
            format!("must be at most {MAX_LEEWAY}"),
        ));
    }
    let retry_after = bounded(
        "retry_after_seconds",
        retry_after,
        DEFAULT_RETRY_AFTER,
        RETRY_AFTER,
    )?;

    Ok((leeway, retry_after))
}

/// `limits`: each between its floor and a hard ceiling.
fn resolve_limits(rl: RawLimits) -> Result<Limits, ConfigError> {
    Ok(Limits {
        body_bytes: bounded(
            "limits.body_bytes",
            rl.body_bytes,
            DEFAULT_BODY_BYTES,
            BODY_BYTES,
        )?,
        jwks_bytes: bounded(
            "limits.jwks_bytes",
            rl.jwks_bytes,
            DEFAULT_JWKS_BYTES,
            JWKS_BYTES,
        )?,
        jwks_keys: bounded(
            "limits.jwks_keys",
            rl.jwks_keys,
            DEFAULT_JWKS_KEYS,
            JWKS_KEYS,
        )?,
        callout_timeout_ms: bounded(
            "limits.callout_timeout_ms",
            rl.callout_timeout_ms,
            DEFAULT_CALLOUT_TIMEOUT_MS,
            CALLOUT_TIMEOUT_MS,
        )?,
    })
}

/// `forward`: `json` by default for a JSON body, else `jwt`; `json` needs held headers.
fn resolve_forward(
    raw: Option<&str>,
    json_body: bool,
    hold_headers: bool,
) -> Result<Forward, ConfigError> {
    let forward = match raw {
        None if json_body => Forward::Json,
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
    Ok(forward)
}

/// `fact_headers`: (SSA claim, header name) pairs, each header a plain name once; they need held
/// headers.
fn resolve_fact_headers(
    raw: Vec<RawFactHeader>,
    hold_headers: bool,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut fact_headers: Vec<(String, String)> = Vec::new();
    for (i, f) in raw.into_iter().enumerate() {
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
    Ok(fact_headers)
}

/// `client_certificate.source`: the connection unless named.
fn resolve_cert_source(raw: Option<&RawClientCertificate>) -> Result<CertSource, ConfigError> {
    match raw.and_then(|c| c.source.as_deref()) {
        None | Some("connection") => Ok(CertSource::Connection),
        Some("x-forwarded-client-cert") => Ok(CertSource::Xfcc),
        Some(other) => Err(ConfigError::new(
            "client_certificate.source",
            format!("unknown source `{other}` (connection, x-forwarded-client-cert)"),
        )),
    }
}
