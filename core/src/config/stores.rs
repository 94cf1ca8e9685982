//! Where the filter keeps state between requests, and for how long: the JWKS cache (`jwks_cache`)
//! and the replay store (`replay`).

use super::checks::Bounds;
use super::checks::{bounded, ConfigError};
use super::raw::{
    RawEtcd, RawJwksCache, RawReplay, BUCKETS, ENTRIES_PER_BUCKET, ETCD_KEY_PREFIX_LEN,
    ETCD_TIMEOUT_MS, ISSUER_SHARE_PERCENT, KID_REFETCH_COOLDOWN, MAX_TTL, MIN_TTL, REFRESH_AHEAD,
    STALE_IF_ERROR,
};
use crate::keys::CachePolicy;
use crate::replay::etcd::{EtcdSettings, MAX_NAME_LEN};
use crate::replay::ReplayConfig;

/// The replay store (`replay`): how long entries are kept and how the store is laid out. Which
/// `jti`s are remembered is `rules.request_jti` and `rules.ssa_jti` ([`super::Rules`]).
#[derive(Debug, Clone)]
pub struct Replay {
    /// No entry is kept longer than this.
    pub max_retention: u64,
    /// The store's layout in shared data (the only store with `replay.store: local`, the first
    /// tier with `etcd`).
    pub store: ReplayConfig,
    /// `replay.store: etcd`: the fleet store, authoritative (shared data is its first tier).
    pub fleet: Option<EtcdSettings>,
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

/// `replay`: the retention cap (at least what covers the longest-lived request entry) and the
/// store's bounds.
pub(super) fn resolve_replay(
    raw: RawReplay,
    max_request_age: u64,
    leeway: u64,
) -> Result<Replay, ConfigError> {
    let floor = Replay::retention_floor(max_request_age, leeway);
    let max_retention = raw.max_retention_seconds.unwrap_or(floor.max(86_400));
    if max_retention < floor {
        return Err(ConfigError::new(
            "replay.max_retention_seconds",
            format!("must be at least rules.issuance_time.max_age_seconds + 2 × leeway_seconds ({floor}; max_age_seconds + 1 with no leeway): a request whose `iat` is leeway_seconds ahead is accepted until iat + max_age_seconds, and a shorter memory lets its replay through"),
        ));
    }
    let defaults = ReplayConfig::default();
    let store = ReplayConfig {
        buckets: bounded("replay.buckets", raw.buckets, defaults.buckets, BUCKETS)?,
        entries_per_bucket: bounded(
            "replay.entries_per_bucket",
            raw.entries_per_bucket,
            defaults.entries_per_bucket,
            ENTRIES_PER_BUCKET,
        )?,
        issuer_share_percent: bounded(
            "replay.issuer_share_percent",
            raw.issuer_share_percent,
            defaults.issuer_share_percent,
            ISSUER_SHARE_PERCENT,
        )?,
        ..defaults
    };
    let fleet = match (raw.store.as_deref(), raw.etcd) {
        (None | Some("local"), None) => None,
        (None | Some("local"), Some(_)) => {
            return Err(ConfigError::new(
                "replay.etcd",
                "is only used with replay.store `etcd` (the store is `local`)",
            ))
        }
        (Some("etcd"), Some(etcd)) => Some(resolve_etcd(etcd, max_retention)?),
        (Some("etcd"), None) => {
            return Err(ConfigError::new(
                "replay.etcd",
                "is required with replay.store `etcd` (at least `upstream`, the Envoy cluster of the etcd members)",
            ))
        }
        (Some(_), _) => {
            return Err(ConfigError::new(
                "replay.store",
                "must be `local` (this gateway's shared data) or `etcd` (the fleet's etcd)",
            ))
        }
    };
    Ok(Replay {
        max_retention,
        store,
        fleet,
    })
}

/// Default `replay.etcd.timeout_ms`.
pub(super) const DEFAULT_ETCD_TIMEOUT_MS: u64 = 500;

/// Default `replay.etcd.key_prefix`.
pub const DEFAULT_ETCD_KEY_PREFIX: &str = "/dcr-guard/replay/";

/// `replay.etcd`: the cluster and authority the gRPC calls go to (short ASCII names), the key
/// prefix, the call deadline; lease slots of an eighth of the retention (5 s – 1 h), so that a
/// pair is forgotten at most about an eighth of the retention after its own end.
fn resolve_etcd(raw: RawEtcd, max_retention: u64) -> Result<EtcdSettings, ConfigError> {
    let name = |field: &str, v: &str| -> Result<String, ConfigError> {
        let ok = !v.is_empty()
            && v.len() <= MAX_NAME_LEN
            && v.bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
        if ok {
            Ok(v.to_string())
        } else {
            Err(ConfigError::new(
                field,
                format!(
                    "must be 1–{MAX_NAME_LEN} printable ASCII characters without spaces or quotes"
                ),
            ))
        }
    };
    let upstream = name("replay.etcd.upstream", &raw.upstream)?;
    let authority = match raw.authority {
        None => None,
        Some(a) => Some(name("replay.etcd.authority", &a)?),
    };
    let key_prefix = raw
        .key_prefix
        .unwrap_or_else(|| DEFAULT_ETCD_KEY_PREFIX.to_string());
    if key_prefix.len() < ETCD_KEY_PREFIX_LEN.min
        || key_prefix.len() > ETCD_KEY_PREFIX_LEN.max
        || !key_prefix.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(ConfigError::new(
            "replay.etcd.key_prefix",
            "must be 1–128 printable ASCII characters without spaces",
        ));
    }
    let timeout_ms = bounded(
        "replay.etcd.timeout_ms",
        raw.timeout_ms,
        DEFAULT_ETCD_TIMEOUT_MS,
        ETCD_TIMEOUT_MS,
    )?;
    let slot_seconds = i64::try_from((max_retention / 8).clamp(5, 3600)).unwrap_or(3600);
    Ok(EtcdSettings {
        upstream,
        authority,
        key_prefix,
        timeout_ms,
        slot_seconds,
    })
}

pub(super) fn resolve_cache(
    raw: RawJwksCache,
    callout_timeout_ms: u64,
) -> Result<CachePolicy, ConfigError> {
    let d = CachePolicy::default();
    let f = "jwks_cache";
    let min_ttl = bounded(
        &format!("{f}.min_ttl_seconds"),
        raw.min_ttl_seconds,
        d.min_ttl,
        MIN_TTL,
    )?;
    let max_ttl = bounded(
        &format!("{f}.max_ttl_seconds"),
        raw.max_ttl_seconds,
        d.max_ttl,
        MAX_TTL,
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
        Bounds {
            min: min_ttl,
            max: max_ttl,
        },
    )?;
    Ok(CachePolicy {
        default_ttl,
        min_ttl,
        max_ttl,
        kid_refetch_cooldown: bounded(
            &format!("{f}.kid_refetch_cooldown_seconds"),
            raw.kid_refetch_cooldown_seconds,
            d.kid_refetch_cooldown,
            KID_REFETCH_COOLDOWN,
        )?,
        stale_if_error: bounded(
            &format!("{f}.stale_if_error_seconds"),
            raw.stale_if_error_seconds,
            d.stale_if_error,
            STALE_IF_ERROR,
        )?,
        // A lease outlives the callout it covers.
        lease_ttl: callout_timeout_ms.div_ceil(1000).saturating_add(2),
        refresh_ahead: bounded(
            &format!("{f}.refresh_ahead_seconds"),
            raw.refresh_ahead_seconds,
            d.refresh_ahead,
            REFRESH_AHEAD,
        )?,
    })
}

#[cfg(test)]
mod tests;
