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

/// The histograms.
pub const HISTOGRAMS: [&str; 1] = [VALIDATION_MS];

/// The counters with a fixed name.
pub const FIXED: [&str; 16] = [
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
    STATUS_FETCHES,
    STATUS_FETCH_FAILURES,
    STATUS_STALE_SERVES,
];

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
}
