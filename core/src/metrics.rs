//! Every counter the filter keeps, by name (Envoy's `/stats` shows them as
//! `wasmcustom.dcr_guard.…`, `/stats/prometheus` as `dcr_guard_…`, and with the kits' `stats_tags`
//! `failed.<rule>` / `skipped.<rule>` as `dcr_guard_failed{rule="…"}`). The filter defines all of them when it is configured, so that a dashboard sees 0 for a
//! rule that never failed rather than no series at all.

use crate::error::{RuleId, Source};

/// Requests on the registration paths.
pub const REQUESTS: &str = "dcr_guard.requests";
/// Registrations (creates and updates) forwarded with every check passed.
pub const ACCEPTED: &str = "dcr_guard.accepted";
/// Management reads and deletes forwarded after `token_client_binding`.
pub const MANAGEMENT_FORWARDED: &str = "dcr_guard.management_forwarded";
/// Requests answered with an error.
pub const REJECTED: &str = "dcr_guard.rejected";
/// Report-only mode: requests forwarded despite failures.
pub const REPORTED: &str = "dcr_guard.reported";
/// Dependency faults (503, or reported): keystores, the replay store.
pub const DEPENDENCY_FAILURES: &str = "dcr_guard.dependency_failures";
/// JWKS callouts started (requests' and background refreshes).
pub const JWKS_FETCHES: &str = "dcr_guard.jwks_fetches";
/// JWKS callouts that could not be started, or answered unusably.
pub const JWKS_FETCH_FAILURES: &str = "dcr_guard.jwks_fetch_failures";
/// Documents taken from the shared cache.
pub const JWKS_CACHE_HITS: &str = "dcr_guard.jwks_cache_hits";
/// Expired documents served because a refresh failed.
pub const JWKS_STALE_SERVES: &str = "dcr_guard.jwks_stale_serves";
/// Refetches for an unknown `kid`.
pub const JWKS_KID_REFETCHES: &str = "dcr_guard.jwks_kid_refetches";
/// Requests that waited for another worker's fetch.
pub const JWKS_LEASE_WAITS: &str = "dcr_guard.jwks_lease_waits";
/// Leased fetches started again by the root context because the client that started them left.
pub const JWKS_ORPHANED_FETCHES: &str = "dcr_guard.jwks_orphaned_fetches";

/// gRPC calls sent to the fleet replay store (etcd), of every kind.
pub const REPLAY_ETCD_CALLS: &str = "dcr_guard.replay_etcd_calls";
/// Registrations' Txns sent to the fleet replay store, alone or nested in a batch
/// (`replay_etcd_txns` / `replay_etcd_calls` is how much the batching saves).
pub const REPLAY_ETCD_TXNS: &str = "dcr_guard.replay_etcd_txns";
/// Registrations whose headers were held (`hold_headers`) while the host received a body it did
/// not give the filter: Envoy without `allow_on_headers_stop_iteration: true` (they end in 504).
pub const BODY_NOT_DELIVERED: &str = "dcr_guard.body_not_delivered";
/// Participant status documents fetched (requests' and background refreshes).
pub const STATUS_FETCHES: &str = "dcr_guard.status_fetches";
/// Participant status fetches that could not start, failed, or answered a document that was
/// not used (oversized, malformed): the last good document stays.
pub const STATUS_FETCH_FAILURES: &str = "dcr_guard.status_fetch_failures";
/// Registrations checked against a status document past its refresh time (within the maximum
/// staleness) because refreshing it failed or was under way.
pub const STATUS_STALE_SERVES: &str = "dcr_guard.status_stale_serves";

/// Histogram: milliseconds from a registration request's headers to its verdict (forwarded,
/// refused or reported), key fetches and the replay store included.
pub const VALIDATION_MS: &str = "dcr_guard.validation_ms";

/// Histogram: milliseconds from a JWKS callout's dispatch to its answer, per fetch (requests' and
/// background refreshes; failed answers included, a callout that could not start is not one).
pub const JWKS_FETCH_MS: &str = "dcr_guard.jwks_fetch_ms";

/// The histograms.
pub const HISTOGRAMS: [&str; 2] = [VALIDATION_MS, JWKS_FETCH_MS];

/// Gauge: live entries in the node-local replay store (shared data; with `replay.store: etcd`, its
/// first tier), over every bucket. Read on the root context's tick.
pub const REPLAY_ENTRIES: &str = "dcr_guard.replay_entries";
/// Gauge: the node-local replay store's capacity, `buckets × entries_per_bucket` (set at configure).
pub const REPLAY_CAPACITY: &str = "dcr_guard.replay_capacity";
/// Gauge: the fullest replay bucket's live entries, in percent of `entries_per_bucket` (a full
/// bucket refuses new pairs with 503 before the store as a whole is full).
pub const REPLAY_FULLEST_BUCKET_PERCENT: &str = "dcr_guard.replay_fullest_bucket_percent";

/// The gauges with a fixed name.
pub const GAUGES: [&str; 3] = [
    REPLAY_ENTRIES,
    REPLAY_CAPACITY,
    REPLAY_FULLEST_BUCKET_PERCENT,
];

/// The prefix of the per-directory JWKS age gauges (see [`jwks_age`]).
pub const JWKS_AGE_PREFIX: &str = "dcr_guard.jwks_age_seconds.";

/// Gauge: seconds since the cached JWKS of `directories[index]` was fetched (the oldest of its
/// documents when it has several; 0 until one is cached). Updated on the root context's tick.
pub fn jwks_age(index: usize) -> String {
    format!("{JWKS_AGE_PREFIX}{index}")
}

/// Every gauge of a configuration with `directories` directories: [`GAUGES`] and one
/// [`jwks_age`] per directory.
pub fn gauges(directories: usize) -> Vec<String> {
    GAUGES
        .iter()
        .map(|s| s.to_string())
        .chain((0..directories).map(jwks_age))
        .collect()
}

/// Whether `name` is one of the gauges (of some configuration).
pub fn is_gauge(name: &str) -> bool {
    GAUGES.contains(&name)
        || name
            .strip_prefix(JWKS_AGE_PREFIX)
            .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
}

/// The counters with a fixed name.
pub const FIXED: [&str; 19] = [
    REQUESTS,
    ACCEPTED,
    MANAGEMENT_FORWARDED,
    REJECTED,
    REPORTED,
    DEPENDENCY_FAILURES,
    JWKS_FETCHES,
    JWKS_FETCH_FAILURES,
    JWKS_CACHE_HITS,
    JWKS_STALE_SERVES,
    JWKS_KID_REFETCHES,
    JWKS_LEASE_WAITS,
    JWKS_ORPHANED_FETCHES,
    REPLAY_ETCD_CALLS,
    REPLAY_ETCD_TXNS,
    BODY_NOT_DELIVERED,
    STATUS_FETCHES,
    STATUS_FETCH_FAILURES,
    STATUS_STALE_SERVES,
];

/// `name` (`dcr_guard.…`) as the filter with `stats.instance` `instance` defines it:
/// `dcr_guard.instance.<instance>.…`, which the kits' `stats_tags` recipe turns back into
/// `dcr_guard_…{dcr_guard_instance="<instance>"}`. Without an instance, or for a name outside
/// `dcr_guard.`, the name as it is.
pub fn instance_name(instance: Option<&str>, name: &str) -> String {
    match (instance, name.strip_prefix("dcr_guard.")) {
        (Some(i), Some(rest)) => format!("dcr_guard.instance.{i}.{rest}"),
        _ => name.to_string(),
    }
}

/// Failures by rule id, or `envelope` / `rfc7592` / `forwarding` (both modes).
pub fn failed(source: Source) -> String {
    format!("dcr_guard.failed.{}", source.as_str())
}

/// Report-only mode: rules skipped because one they depend on failed.
pub fn skipped(rule: RuleId) -> String {
    format!("dcr_guard.skipped.{}", rule.as_str())
}

/// Every counter the filter can touch: the fixed ones, `failed.<source>` for every source and
/// `skipped.<rule>` for every rule.
pub fn all() -> Vec<String> {
    let sources = [Source::Envelope, Source::Update, Source::Forwarding]
        .into_iter()
        .chain(RuleId::ALL.into_iter().map(Source::Rule));
    FIXED
        .iter()
        .map(|s| s.to_string())
        .chain(sources.map(failed))
        .chain(RuleId::ALL.into_iter().map(skipped))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_is_listed_once_and_named_like_the_others() {
        let all = all();
        let mut unique = all.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), all.len(), "a counter listed twice");
        assert_eq!(all.len(), FIXED.len() + 3 + 2 * RuleId::ALL.len());
        for name in &all {
            assert!(name.starts_with("dcr_guard."), "{name}");
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase()
                    || b == b'_'
                    || b == b'.'
                    || b.is_ascii_digit()),
                "{name}"
            );
        }
        assert!(all.contains(&"dcr_guard.failed.audience".to_string()));
        assert!(all.contains(&"dcr_guard.failed.envelope".to_string()));
        assert!(all.contains(&"dcr_guard.skipped.request_jti".to_string()));
    }

    #[test]
    fn an_instance_goes_after_the_namespace() {
        let cases = [
            (None, "dcr_guard.requests", "dcr_guard.requests"),
            (
                Some("edge"),
                "dcr_guard.requests",
                "dcr_guard.instance.edge.requests",
            ),
            (
                Some("b2"),
                "dcr_guard.failed.audience",
                "dcr_guard.instance.b2.failed.audience",
            ),
            (Some("edge"), "other.requests", "other.requests"),
        ];
        for (instance, name, expected) in cases {
            assert_eq!(instance_name(instance, name), expected);
        }
    }

    #[test]
    fn gauges_and_histograms_are_named_apart_from_the_counters() {
        let counters = all();
        let gauges = gauges(3);
        assert_eq!(gauges.len(), GAUGES.len() + 3);
        assert!(gauges.contains(&"dcr_guard.jwks_age_seconds.2".to_string()));
        for name in gauges.iter().map(String::as_str).chain(HISTOGRAMS) {
            assert!(name.starts_with("dcr_guard."), "{name}");
            assert!(
                !counters.iter().any(|c| c == name),
                "{name} is also a counter"
            );
        }
        for g in &gauges {
            assert!(is_gauge(g), "{g}");
        }
        for not in [
            "dcr_guard.jwks_age_seconds.",
            "dcr_guard.jwks_age_seconds.x",
            "dcr_guard.requests",
        ] {
            assert!(!is_gauge(not), "{not}");
        }
    }
}
