//! Who is trusted and where keys may come from: the directories (SSA issuers and their JWKS
//! URLs) and the software-JWKS host allow-list (`software_jwks_hosts`).

use serde_json::Value;

use super::checks::{non_empty_name, parse_algs, ConfigError};
use super::raw::{RawDirectory, RawDirectoryJwks, RawHostRule};
use super::Limits;
use crate::error::clip;
use crate::jose::{pinned_key, Alg, JwkSet};
use crate::keys::{jwks_source, pinned_source, JwksSource};
use crate::profile::Defaults;

/// A trusted directory (`directories[]`): the SSA issuer it signs as, and how its SSAs are checked.
#[derive(Debug, Clone)]
pub struct Directory {
    /// The SSA `iss` this directory signs as.
    pub issuer: String,
    /// Where its signing keys are fetched from, or the keys pinned in the configuration.
    pub jwks: Vec<JwksSource>,
    /// Algorithms its SSAs may be signed with.
    pub algorithms: Vec<Alg>,
    /// Oldest SSA accepted (`now − iat`), seconds; `None`: no limit.
    pub max_ssa_age: Option<u64>,
    /// An SSA without `exp` is refused.
    pub require_exp: bool,
}

/// One entry of the software-JWKS host allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// Exactly this host (lower case).
    Exact(String),
    /// Any host ending in `.suffix` with at least one more label (suffix stored with its dot).
    Suffix(String),
    /// `*`: any DNS host name of at least two labels other than `localhost` and `*.localhost`
    /// (an accredited recipient's own domain, fetched through a dynamic forward proxy cluster).
    Any,
}

/// One entry of the software-JWKS host allow-list (`software_jwks_hosts[]`).
#[derive(Debug, Clone)]
pub struct HostRule {
    /// The host (or `*.` suffix) allowed.
    pub pattern: HostPattern,
    /// The one port this entry allows: 443 unless the entry names another (`host:8443`).
    pub port: u16,
    /// The upstream (Envoy cluster) that fetches from it.
    pub upstream: String,
}

/// The port of a software-JWKS host entry that names none.
const DEFAULT_SOFTWARE_JWKS_PORT: u16 = 443;

/// `directories`: at least one, each issuer once, each with at least one key document (a JWKS URL
/// or a pinned document); algorithms, maximum SSA age and `require_exp` default to the profile's.
pub(super) fn resolve_directories(
    raw: Option<Vec<RawDirectory>>,
    defaults: &Defaults,
    limits: &Limits,
) -> Result<Vec<Directory>, ConfigError> {
    let raw_dirs = raw.unwrap_or_default();
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
                "at least one key document (a JWKS URL or an inline JWKS) is required",
            ));
        }
        let mut jwks: Vec<JwksSource> = Vec::new();
        for (j, s) in d.jwks.into_iter().enumerate() {
            let sf = format!("{f}.jwks[{j}]");
            jwks.push(directory_source(&sf, s, limits)?);
        }
        let algorithms = match d.algorithms {
            Some(a) => parse_algs(&format!("{f}.algorithms"), &a)?,
            None => defaults.algorithms.to_vec(),
        };
        directories.push(Directory {
            issuer,
            jwks,
            algorithms,
            max_ssa_age: d.max_ssa_age_seconds.or(defaults.max_ssa_age),
            require_exp: d.require_exp.unwrap_or(defaults.require_ssa_exp),
        });
    }
    Ok(directories)
}

/// One `directories[].jwks[]` entry: `url` with `upstream` (fetched), or `inline` (pinned).
fn directory_source(
    field: &str,
    raw: RawDirectoryJwks,
    limits: &Limits,
) -> Result<JwksSource, ConfigError> {
    match (raw.url, raw.upstream, raw.inline) {
        (Some(url), Some(upstream), None) => {
            let upstream = non_empty_name(&format!("{field}.upstream"), &upstream)?;
            jwks_source(&url, &upstream).map_err(|m| ConfigError::new(format!("{field}.url"), m))
        }
        (Some(_), None, None) => Err(ConfigError::new(
            format!("{field}.upstream"),
            "missing: a JWKS URL needs the upstream it is fetched through",
        )),
        (None, None, Some(doc)) => pinned(field, &doc, limits),
        (Some(_), _, Some(_)) => Err(ConfigError::new(
            field,
            "either `url` (a JWKS fetched) or `inline` (a JWKS pinned in the configuration), not both",
        )),
        (None, Some(_), Some(_)) => Err(ConfigError::new(
            format!("{field}.upstream"),
            "an inline JWKS is never fetched: remove `upstream`",
        )),
        (None, _, None) => Err(ConfigError::new(
            field,
            "needs `url` and `upstream` (a JWKS fetched) or `inline` (a JWKS pinned in the configuration)",
        )),
    }
}

/// `directories[].jwks[].inline`: a JWKS document pinned in the configuration, within the JWKS
/// limits, every entry a usable public signature key (named when it is not), each `kid` once.
fn pinned(field: &str, doc: &Value, limits: &Limits) -> Result<JwksSource, ConfigError> {
    let f = format!("{field}.inline");
    let keys = match doc.get("keys") {
        Some(Value::Array(keys)) if doc.is_object() && !keys.is_empty() => keys,
        _ => {
            return Err(ConfigError::new(
                f,
                "must be a JWKS document: a JSON object with a non-empty `keys` array",
            ))
        }
    };
    if let Some(other) = doc
        .as_object()
        .and_then(|o| o.keys().find(|k| k.as_str() != "keys"))
    {
        return Err(ConfigError::new(
            format!("{f}.{}", clip(other, 64)),
            "unknown member: a pinned JWKS holds `keys` only",
        ));
    }
    if keys.len() > limits.jwks_keys {
        return Err(ConfigError::new(
            format!("{f}.keys"),
            format!(
                "holds {} keys, more than limits.jwks_keys ({})",
                keys.len(),
                limits.jwks_keys
            ),
        ));
    }
    let mut kids: Vec<&str> = Vec::new();
    for (k, entry) in keys.iter().enumerate() {
        let kf = format!("{f}.keys[{k}]");
        pinned_key(entry).map_err(|m| {
            let kid = entry
                .get("kid")
                .and_then(Value::as_str)
                .map_or_else(String::new, |kid| format!(" (kid `{}`)", clip(kid, 64)));
            ConfigError::new(kf.clone(), format!("the key{kid} {m}"))
        })?;
        if let Some(kid) = entry.get("kid").and_then(Value::as_str) {
            if kids.contains(&kid) {
                return Err(ConfigError::new(
                    kf,
                    format!(
                        "the kid `{}` is used by another key of this document",
                        clip(kid, 64)
                    ),
                ));
            }
            kids.push(kid);
        }
    }
    let text = serde_json::to_vec(doc).map_err(|e| ConfigError::new(f.clone(), e.to_string()))?;
    if text.len() > limits.jwks_bytes {
        return Err(ConfigError::new(
            f,
            format!(
                "is {} bytes, more than limits.jwks_bytes ({})",
                text.len(),
                limits.jwks_bytes
            ),
        ));
    }
    let set =
        JwkSet::parse(&text, limits.jwks_keys).map_err(|e| ConfigError::new(f, e.to_string()))?;
    Ok(pinned_source(field, set))
}

/// `software_jwks_hosts`: the hosts a verified SSA's software JWKS URL may name.
pub(super) fn resolve_software_hosts(
    raw: Option<Vec<RawHostRule>>,
) -> Result<Vec<HostRule>, ConfigError> {
    let mut software_hosts = Vec::new();
    for (i, h) in raw.unwrap_or_default().into_iter().enumerate() {
        let f = format!("software_jwks_hosts[{i}]");
        let upstream = non_empty_name(&format!("{f}.upstream"), &h.upstream)?;
        let (pattern, port) = host_entry(&format!("{f}.host"), &h.host)?;
        software_hosts.push(HostRule {
            pattern,
            port,
            upstream,
        });
    }
    Ok(software_hosts)
}

/// The upstream of the first entry of `hosts` that allows `host` (lower case) at `port`.
pub(super) fn allowed_upstream<'a>(
    hosts: &'a [HostRule],
    host: &str,
    port: u16,
) -> Option<&'a str> {
    if is_ip_literal(host) {
        return None;
    }
    // The most specific entry for this port wins, whatever the order (as Envoy picks a virtual
    // host): the exact host, then the longest `*.` domain, then `*`; the first of equals.
    let mut best: Option<(usize, &HostRule)> = None;
    for r in hosts.iter().filter(|r| r.port == port) {
        let rank = match &r.pattern {
            HostPattern::Exact(h) if h == host => usize::MAX,
            HostPattern::Suffix(s) if host.len() > s.len() && host.ends_with(s.as_str()) => {
                s.len().saturating_add(1)
            }
            HostPattern::Any if public_dns_name(host) => 0,
            _ => continue,
        };
        if best.is_none_or(|(b, _)| rank > b) {
            best = Some((rank, r));
        }
    }
    best.map(|(_, r)| r.upstream.as_str())
}

/// Top-level names that are never a recipient's public host: special-use names (RFC 6761,
/// RFC 6762 `local`, RFC 8375 `home.arpa`, RFC 7686 `onion`, RFC 9476 `alt`, `internal` reserved
/// for private use) and the suffixes private networks and Kubernetes use (`svc`, `cluster.local`
/// via `local`, `lan`, `corp`, ...). `test` and `example` stay usable (test deployments).
const NOT_PUBLIC: [&str; 14] = [
    "localhost",
    "local",
    "internal",
    "intranet",
    "private",
    "corp",
    "home",
    "lan",
    "localdomain",
    "arpa",
    "invalid",
    "onion",
    "alt",
    "svc",
];

/// What `*` allows: a DNS name (letters, digits, `-`; no empty label, so no trailing dot) of at
/// least two labels whose last label is not one of [`NOT_PUBLIC`]. A single label would be
/// completed by the resolver's search domains into an internal name.
fn public_dns_name(host: &str) -> bool {
    valid_dns_name(host)
        && host.contains('.')
        && host
            .rsplit('.')
            .next()
            .is_some_and(|tld| !NOT_PUBLIC.contains(&tld))
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

/// A `software_jwks_hosts[].host` entry: `host`, `*.domain` or `*` (any host), each with an
/// optional `:port`.
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
    let pattern = if host == "*" {
        HostPattern::Any
    } else if let Some(suffix) = host.strip_prefix("*.") {
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
            "must be a DNS host name, `*.` followed by a domain, or `*` (any host), optionally with `:port`",
        ));
    };
    Ok((pattern, port))
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
mod tests;
