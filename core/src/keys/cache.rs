//! JWKS cache policy: shared documents, single-flight fetch leases, unknown-`kid` refetch,
//! stale-if-error and background refresh (spec §4a "JWKS cache and unknown kid", §7).
//!
//! Pure Rust, no host calls: the host's shared data is reached through [`SharedData`] and time is
//! injected. **All times are unix seconds (`i64`); all durations are seconds (`u64`).** Arithmetic
//! saturates; nothing here panics on any bytes read back from the store.
//!
//! # Shared-data layout (per URL)
//!
//! * `{prefix}v1.doc.{url}`: the [`Entry`] (document, fetch time, expiry, generation), see
//!   [`Entry::encode`]. Written with CAS when the key exists, created (`cas = None`) when absent.
//! * `{prefix}v1.lease.{url}`: the fetch lease, 35 bytes: `b'L'`, version `1`, state (`0` free,
//!   `1` held, `2` backoff), holder `u64`, lease id `u64`, until `i64`, started_at `i64` (all
//!   little-endian). Once created the key is never emptied: releasing writes a *free* record with
//!   CAS, so every later transition is CAS-protected on both Envoy and Kong.
//! * `{prefix}v1.fail.{url}`: why the last fetch failed ([`Cache::record_failure`]): `b'U'`
//!   (unusable) or `b'X'` (unavailable), then the reason. Written with CAS when the key exists,
//!   created (`cas = None`) when absent.
//!
//! Bytes that do not decode exactly (wrong magic, version, state, length, or an entry whose expiry
//! precedes its fetch time) mean "absent" for an entry and "free" for a lease. A corrupt value is
//! therefore replaced by the next publish / lease take (with CAS, since the key exists).
//!
//! # Leases (single flight)
//!
//! A lease is *held* from the take until `until = now + lease_ttl`, or until the holder publishes
//! (→ *free*) or reports a failure (→ *backoff* until `now + retry_backoff`, where
//! `retry_backoff = min(kid_refetch_cooldown, 5)`, at least 1 s). Held and backoff leases are busy;
//! once `until` has passed the lease is free whatever its state. Taking: read the record and its
//! CAS token; if busy, don't; if free, write a held record with `Some(cas)`; if the key does not
//! exist, create it with `None` and read it back to confirm (Kong: create-if-absent is atomic; Envoy:
//! a blind create, so the read-back catches most races — two workers that both read "absent" and
//! both confirm before the other's write can still both fetch, once, the first time the key is ever
//! created: a duplicate fetch, never a wrong result). A CAS mismatch means another worker moved
//! first: re-read and decide again (at most [`MAX_ATTEMPTS`] times, then `Err(CasMismatch)`).
//!
//! Each lease gets a fresh id mixed from the previous id, the holder id and the time. Only the
//! holder of the current lease id can release it: a worker whose lease expired and was re-taken
//! may still publish its document (a document is a document) but leaves the newer lease alone.
//!
//! # What the glue does with a [`Decision`]
//!
//! * `Use` / `UseStale`: verify with the document (parse it through [`Parsed`], keyed by the
//!   entry's generation).
//! * `Fetch { lease_id }`: dispatch the callout; on a usable answer [`Cache::publish`] (TTL from
//!   [`ttl_from_cache_control`]), otherwise [`Cache::fetch_failed`] and then ask [`Cache::decide`]
//!   again: it answers `UseStale` while a last-good document is within `stale_if_error`.
//! * `Wait { until }`: pause; on every tick [`Cache::poll`] with the generation seen (None when
//!   there was no document): `Ready` → go on, `TimedOut` → 503. `Waiting` continues only while a
//!   fetch lease is held; the glue should still give up at its own deadline (e.g. `until` plus a
//!   tick) because a new lease may be taken after the one it waited for expired.
//! * `Unavailable { retry_at }`: a fetch failed moments ago and no usable document exists: 503 now
//!   with `Retry-After: retry_at - now` (no fetch is allowed before `retry_at`).

use super::Fetched;
pub use crate::shared::{SharedData, StoreError};

/// How much of a failure's reason a failure record keeps, in bytes.
pub const FAILURE_REASON_BYTES: usize = 200;

/// How many read-decide-write rounds a CAS-protected operation tries before giving up.
pub const MAX_ATTEMPTS: usize = 4;

/// Counter names (the glue increments them; see [`Decision::counter`]).
pub use crate::metrics::{
    JWKS_CACHE_HITS as COUNTER_CACHE_HITS, JWKS_FETCHES as COUNTER_FETCHES,
    JWKS_FETCH_FAILURES as COUNTER_FETCH_FAILURES, JWKS_KID_REFETCHES as COUNTER_KID_REFETCHES,
    JWKS_LEASE_WAITS as COUNTER_LEASE_WAITS, JWKS_STALE_SERVES as COUNTER_STALE_SERVES,
};

/// Cache lifetimes and limits, all in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    /// Lifetime when the response has no usable `Cache-Control: max-age`.
    pub default_ttl: u64,
    /// Lower bound of a lifetime (also the lifetime of a `no-store` / `no-cache` response).
    pub min_ttl: u64,
    /// Upper bound of a lifetime.
    pub max_ttl: u64,
    /// An unknown `kid` refetches only when the URL's last fetch (or fetch attempt) is this old.
    pub kid_refetch_cooldown: u64,
    /// How long past its expiry a last-good document may be served while refreshing fails.
    pub stale_if_error: u64,
    /// How long a fetch lease is valid: the callout timeout plus a margin (time is in whole
    /// seconds, so a lease can end up to a second early: keep the margin ≥ 2 s).
    pub lease_ttl: u64,
    /// Background refresh starts this long before expiry (but never before half the lifetime).
    pub refresh_ahead: u64,
}

impl Default for CachePolicy {
    fn default() -> Self {
        CachePolicy {
            default_ttl: 600,
            min_ttl: 60,
            max_ttl: 86_400,
            kid_refetch_cooldown: 30,
            stale_if_error: 3_600,
            // The default callout timeout (2 s) plus a margin.
            lease_ttl: 5,
            refresh_ahead: 60,
        }
    }
}

impl CachePolicy {
    /// Pause after a failed fetch before the next attempt: `min(kid_refetch_cooldown, 5)`, at
    /// least 1 s (so a failing endpoint sees at most one attempt per URL every few seconds).
    pub fn retry_backoff(&self) -> u64 {
        self.kid_refetch_cooldown.clamp(1, 5)
    }

    /// `ttl` bounded by `min_ttl` and `max_ttl` (`max_ttl` wins if they are inverted).
    fn bound(&self, ttl: u64) -> u64 {
        ttl.max(self.min_ttl).min(self.max_ttl)
    }
}

/// Lifetime of a fetched document from its `Cache-Control` header value (several header lines may
/// be joined with commas).
///
/// * `no-store` or `no-cache` (with or without an argument) anywhere → `min_ttl`;
/// * else the first `max-age` directive (name case-insensitive, value digits, optionally quoted):
///   its value clamped into `[min_ttl, max_ttl]`; values too large for `u64` are "huge" → `max_ttl`;
/// * a `max-age` with an invalid value (`abc`, `-1`, empty), or no `max-age` → `default_ttl`
///   (itself clamped).
///
/// Other directives (`public`, `private`, `must-revalidate`, `s-maxage`, …) are ignored.
pub fn ttl_from_cache_control(value: Option<&str>, p: &CachePolicy) -> u64 {
    let Some(value) = value else {
        return p.bound(p.default_ttl);
    };
    let mut max_age: Option<Option<u64>> = None;
    for directive in value.split(',') {
        let (name, arg) = match directive.split_once('=') {
            Some((n, a)) => (n.trim(), Some(a.trim())),
            None => (directive.trim(), None),
        };
        if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
            return p.bound(p.min_ttl);
        }
        if name.eq_ignore_ascii_case("max-age") && max_age.is_none() {
            max_age = Some(arg.and_then(parse_delta_seconds));
        }
    }
    match max_age {
        Some(Some(secs)) => p.bound(secs),
        _ => p.bound(p.default_ttl),
    }
}

/// RFC 9111 delta-seconds (`1*DIGIT`), accepting a quoted form; overflow saturates.
fn parse_delta_seconds(arg: &str) -> Option<u64> {
    let digits = match arg.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"')?,
        None => arg,
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(digits.bytes().fold(0u64, |acc, b| {
        acc.saturating_mul(10)
            .saturating_add(u64::from(b.saturating_sub(b'0')))
    }))
}

/// `t + secs`, saturating.
fn add(t: i64, secs: u64) -> i64 {
    t.saturating_add(i64::try_from(secs).unwrap_or(i64::MAX))
}

/// The shared record for one URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// When the document was fetched (unix seconds).
    pub fetched_at: i64,
    /// When it stops being fresh (unix seconds).
    pub expires_at: i64,
    /// The raw JWKS bytes as fetched.
    pub doc: Vec<u8>,
    /// Changes on every publish (previous + 1); when there is no decodable previous entry it
    /// starts at `now << 20`, so a re-created entry (Kong eviction, corrupt value) never reuses a
    /// generation a worker may still hold parsed keys for.
    pub generation: u64,
}

const ENTRY_MAGIC: u8 = b'J';
const LEASE_MAGIC: u8 = b'L';
const VERSION: u8 = 1;
const ENTRY_HEADER_LEN: usize = 2 + 8 + 8 + 8 + 4;
const LEASE_LEN: usize = 2 + 1 + 8 + 8 + 8 + 8;

impl Entry {
    /// `b'J'`, version `1`, fetched_at `i64`, expires_at `i64`, generation `u64`, document length
    /// `u32`, document bytes (integers little-endian). Documents longer than `u32::MAX` are
    /// truncated to it (the glue bounds them far below).
    pub fn encode(&self) -> Vec<u8> {
        let doc = self.doc.get(..u32::MAX as usize).unwrap_or(&self.doc);
        let len = u32::try_from(doc.len()).unwrap_or(u32::MAX);
        let mut out = Vec::with_capacity(ENTRY_HEADER_LEN + doc.len());
        out.push(ENTRY_MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&self.fetched_at.to_le_bytes());
        out.extend_from_slice(&self.expires_at.to_le_bytes());
        out.extend_from_slice(&self.generation.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(doc);
        out
    }

    /// The inverse of [`Entry::encode`]; `None` for anything else (including trailing bytes and
    /// an expiry before the fetch time).
    pub fn decode(bytes: &[u8]) -> Option<Entry> {
        let mut r = Reader(bytes);
        if r.u8()? != ENTRY_MAGIC || r.u8()? != VERSION {
            return None;
        }
        let fetched_at = r.i64()?;
        let expires_at = r.i64()?;
        let generation = r.u64()?;
        let len = usize::try_from(r.u32()?).ok()?;
        let doc = r.take(len)?.to_vec();
        if !r.0.is_empty() || expires_at < fetched_at {
            return None;
        }
        Some(Entry {
            fetched_at,
            expires_at,
            doc,
            generation,
        })
    }
}

/// Bounds-checked little-endian reader.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    fn u8(&mut self) -> Option<u8> {
        let (first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*first)
    }
    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.array().map(i64::from_le_bytes)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeaseState {
    Free = 0,
    Held = 1,
    Backoff = 2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LeaseRecord {
    state: LeaseState,
    holder: u64,
    lease_id: u64,
    /// Held: lease expiry. Backoff: no new attempt before this. Free: release time.
    until: i64,
    /// When the latest lease was taken (the latest fetch attempt started).
    started_at: i64,
}

impl LeaseRecord {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(LEASE_LEN);
        out.push(LEASE_MAGIC);
        out.push(VERSION);
        out.push(self.state as u8);
        out.extend_from_slice(&self.holder.to_le_bytes());
        out.extend_from_slice(&self.lease_id.to_le_bytes());
        out.extend_from_slice(&self.until.to_le_bytes());
        out.extend_from_slice(&self.started_at.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<LeaseRecord> {
        let mut r = Reader(bytes);
        if r.u8()? != LEASE_MAGIC || r.u8()? != VERSION {
            return None;
        }
        let state = match r.u8()? {
            0 => LeaseState::Free,
            1 => LeaseState::Held,
            2 => LeaseState::Backoff,
            _ => return None,
        };
        let rec = LeaseRecord {
            state,
            holder: r.u64()?,
            lease_id: r.u64()?,
            until: r.i64()?,
            started_at: r.i64()?,
        };
        r.0.is_empty().then_some(rec)
    }

    fn status(&self, now: i64) -> Status {
        match self.state {
            LeaseState::Held if now < self.until => Status::Fetching { until: self.until },
            LeaseState::Backoff if now < self.until => Status::Backoff { until: self.until },
            _ => Status::Free,
        }
    }
}

/// A lease as seen at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Free,
    Fetching { until: i64 },
    Backoff { until: i64 },
}

/// What a request (or the background refresher) should do for a URL now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Use this document (fresh).
    Use(Entry),
    /// Use this document although expired (within `stale_if_error` of its expiry) because a
    /// refresh is in flight elsewhere or failed moments ago. Counted as a stale serve.
    UseStale(Entry),
    /// This caller holds the lease: dispatch the fetch now, then call [`Cache::publish`] or
    /// [`Cache::fetch_failed`] with this id.
    Fetch { lease_id: u64 },
    /// Someone else is fetching: pause and [`Cache::poll`] on each tick (`until`: that lease's
    /// expiry; past it with no document → 503).
    Wait { until: i64 },
    /// A fetch failed moments ago and no usable document exists: 503 now, retry after
    /// `retry_at` (no fetch is allowed before it).
    Unavailable { retry_at: i64 },
}

impl Decision {
    /// The counter this decision increments: `Use` → cache hits, `UseStale` → stale serves,
    /// `Wait` → lease waits, `Fetch` under [`Need::Kid`] → kid-miss refetches. Fetches and fetch
    /// failures are counted by the glue where it dispatches and where the answer arrives
    /// ([`COUNTER_FETCHES`], [`COUNTER_FETCH_FAILURES`]).
    pub fn counter(&self, need: Need) -> Option<&'static str> {
        match (self, need) {
            (Decision::Use(_), _) => Some(COUNTER_CACHE_HITS),
            (Decision::UseStale(_), _) => Some(COUNTER_STALE_SERVES),
            (Decision::Wait { .. }, _) => Some(COUNTER_LEASE_WAITS),
            (Decision::Fetch { .. }, Need::Kid) => Some(COUNTER_KID_REFETCHES),
            (Decision::Fetch { .. }, Need::Any) | (Decision::Unavailable { .. }, _) => None,
        }
    }
}

/// What the caller needs from the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Any current document.
    Any,
    /// A `kid` missing from the current document (the caller saw "unknown kid" in the current
    /// generation).
    Kid,
}

/// The answer to a waiting request's tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poll {
    /// A document other than the one seen was published.
    Ready(Entry),
    /// The fetch is still in flight (a lease is held).
    Waiting,
    /// No new document and no fetch in flight (the lease expired, or the fetch failed): 503.
    TimedOut,
}

/// What became of a fetch's answer ([`Cache::settle`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// The document is the URL's shared entry now, under this generation.
    Published { generation: u64 },
    /// The document is usable but could not be stored (the lease went to backoff).
    NotStored(StoreError),
    /// The fetch failed: recorded, the lease in backoff (`released`: the error if releasing it
    /// failed); `stale`: the last good document, when it may be served meanwhile.
    Failed {
        stale: Option<Entry>,
        released: Option<StoreError>,
    },
}

/// Outcome of one planning round.
enum Plan {
    Done(Decision),
    Take,
}

/// The JWKS cache policy over host shared data.
#[derive(Debug, Clone)]
pub struct Cache {
    policy: CachePolicy,
    prefix: String,
}

impl Cache {
    /// `key_prefix`, e.g. `"dcr_guard.jwks."`, is prepended to `v1.doc.{url}` and
    /// `v1.lease.{url}` (the format version is in the key, as in the replay store, so that a build
    /// with another format sharing the `vm_id` during a rolling update never reads these values).
    pub fn new(policy: CachePolicy, key_prefix: &str) -> Cache {
        Cache {
            policy,
            prefix: key_prefix.to_string(),
        }
    }

    pub fn policy(&self) -> &CachePolicy {
        &self.policy
    }

    /// The shared-data key of the document for `url`.
    pub fn doc_key(&self, url: &str) -> String {
        format!("{}v1.doc.{url}", self.prefix)
    }

    /// The shared-data key of the fetch lease for `url`.
    pub fn lease_key(&self, url: &str) -> String {
        format!("{}v1.lease.{url}", self.prefix)
    }

    /// The current shared document for `url`, if any (no decision, no lease).
    pub fn peek(&self, store: &dyn SharedData, url: &str) -> Result<Option<Entry>, StoreError> {
        let (value, _) = store.get(&self.doc_key(url))?;
        Ok(value.as_deref().and_then(Entry::decode))
    }

    fn read_lease(
        &self,
        store: &dyn SharedData,
        url: &str,
    ) -> Result<(Option<LeaseRecord>, Option<u32>), StoreError> {
        let (value, cas) = store.get(&self.lease_key(url))?;
        Ok((value.as_deref().and_then(LeaseRecord::decode), cas))
    }

    /// Decide for a request.
    ///
    /// * fresh document: `Use`; with [`Need::Kid`], a refetch when the document was fetched at
    ///   least `kid_refetch_cooldown` ago and no attempt started within the cooldown: take the
    ///   lease → `Fetch`; a fetch already in flight → `Wait` (it may bring the key); in backoff
    ///   or within the cooldown → `Use` (the caller then fails the signature check);
    /// * expired document: lease free → take it → `Fetch`; a fetch in flight or in backoff →
    ///   `UseStale` while within `stale_if_error` of the expiry, else `Wait` (in flight) or
    ///   `Unavailable` (backoff);
    /// * no document: lease free → `Fetch`; in flight → `Wait`; backoff → `Unavailable`.
    pub fn decide(
        &self,
        store: &mut dyn SharedData,
        url: &str,
        need: Need,
        now: i64,
        lease_holder: u64,
    ) -> Result<Decision, StoreError> {
        for _ in 0..MAX_ATTEMPTS {
            let entry = match self.peek(&*store, url)? {
                // The hot path: one shared-data read.
                Some(e) if need == Need::Any && now < e.expires_at => return Ok(Decision::Use(e)),
                other => other,
            };
            let (lease, cas) = self.read_lease(&*store, url)?;
            match self.plan(entry, lease.as_ref(), need, now) {
                Plan::Done(d) => return Ok(d),
                Plan::Take => {
                    if let Some(lease_id) =
                        self.try_take(store, url, lease.as_ref(), cas, now, lease_holder)?
                    {
                        return Ok(Decision::Fetch { lease_id });
                    }
                }
            }
        }
        Err(StoreError::CasMismatch)
    }

    fn plan(
        &self,
        entry: Option<Entry>,
        lease: Option<&LeaseRecord>,
        need: Need,
        now: i64,
    ) -> Plan {
        let p = &self.policy;
        let status = lease.map_or(Status::Free, |l| l.status(now));
        let Some(e) = entry else {
            return match status {
                Status::Free => Plan::Take,
                Status::Fetching { until } => Plan::Done(Decision::Wait { until }),
                Status::Backoff { until } => Plan::Done(Decision::Unavailable { retry_at: until }),
            };
        };
        if now < e.expires_at {
            if need == Need::Any || now < add(e.fetched_at, p.kid_refetch_cooldown) {
                return Plan::Done(Decision::Use(e));
            }
            return match status {
                Status::Fetching { until } => Plan::Done(Decision::Wait { until }),
                Status::Backoff { .. } => Plan::Done(Decision::Use(e)),
                Status::Free => {
                    let recent_attempt =
                        lease.is_some_and(|l| now < add(l.started_at, p.kid_refetch_cooldown));
                    if recent_attempt {
                        Plan::Done(Decision::Use(e))
                    } else {
                        Plan::Take
                    }
                }
            };
        }
        let stale_ok = now < add(e.expires_at, p.stale_if_error);
        match status {
            Status::Free => Plan::Take,
            Status::Fetching { .. } | Status::Backoff { .. } if stale_ok => {
                Plan::Done(Decision::UseStale(e))
            }
            Status::Fetching { until } => Plan::Done(Decision::Wait { until }),
            Status::Backoff { until } => Plan::Done(Decision::Unavailable { retry_at: until }),
        }
    }

    /// Take a free lease. `Ok(None)`: another worker got there first (re-read and decide again).
    fn try_take(
        &self,
        store: &mut dyn SharedData,
        url: &str,
        prev: Option<&LeaseRecord>,
        cas: Option<u32>,
        now: i64,
        holder: u64,
    ) -> Result<Option<u64>, StoreError> {
        let prev_id = prev.map_or(0, |l| l.lease_id);
        if cas.is_none() {
            // No lease record yet. A write without a token is blind on Envoy (it overwrites), so
            // it only ever creates a *free* record; the lease itself is always taken with a
            // compare-and-swap on the next round. (Creating a held lease blindly let two workers
            // both believe they held it.)
            self.create_free_lease(store, url)?;
            return Ok(None);
        }
        let rec = LeaseRecord {
            state: LeaseState::Held,
            holder,
            lease_id: new_lease_id(prev_id, holder, now),
            until: add(now, self.policy.lease_ttl),
            started_at: now,
        };
        let key = self.lease_key(url);
        match store.set(&key, &rec.encode(), cas) {
            Ok(()) => {}
            Err(StoreError::CasMismatch) => return Ok(None),
            Err(e) => return Err(e),
        }
        if cas.is_none() {
            // Created without a token: on Envoy that was a blind write, confirm it stuck.
            let (now_there, _) = self.read_lease(&*store, url)?;
            if now_there != Some(rec) {
                return Ok(None);
            }
        }
        Ok(Some(rec.lease_id))
    }

    /// Create a free lease record for `url` when there is none (configure time, for the URLs
    /// known in advance), so that the first fetch lease is taken by compare-and-swap too.
    pub fn create_free_lease(
        &self,
        store: &mut dyn SharedData,
        url: &str,
    ) -> Result<(), StoreError> {
        let (existing, _) = store.get(&self.lease_key(url))?;
        if existing.is_some() {
            return Ok(());
        }
        let free = LeaseRecord {
            state: LeaseState::Free,
            holder: 0,
            lease_id: 0,
            until: 0,
            started_at: i64::MIN,
        };
        match store.set(&self.lease_key(url), &free.encode(), None) {
            // Kong: someone created it first.
            Ok(()) | Err(StoreError::CasMismatch) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Publish a fetched document (`fetched_at = now`, `expires_at = now + ttl`) and release the
    /// lease if `lease_id` still holds it. Returns the new generation.
    ///
    /// The document is stored even when the lease expired and was re-taken (a late but good
    /// document); the newer lease is then left alone. If the document cannot be stored
    /// (`Full`, `Other`, contention), the lease moves to backoff as in [`Cache::fetch_failed`], so
    /// waiters time out now instead of at the lease expiry, and the error is returned. Once the
    /// document is stored, a failure to release the lease is ignored (it expires by itself and
    /// waiters already see the new generation).
    pub fn publish(
        &self,
        store: &mut dyn SharedData,
        url: &str,
        doc: &[u8],
        ttl: u64,
        now: i64,
        lease_id: u64,
    ) -> Result<u64, StoreError> {
        let key = self.doc_key(url);
        let mut outcome = Err(StoreError::CasMismatch);
        for _ in 0..MAX_ATTEMPTS {
            let (value, cas) = store.get(&key)?;
            let previous = value.as_deref().and_then(Entry::decode);
            let entry = Entry {
                fetched_at: now,
                expires_at: add(now, ttl),
                doc: doc.to_vec(),
                generation: next_generation(previous.map(|e| e.generation), now),
            };
            match store.set(&key, &entry.encode(), cas) {
                Ok(()) => {
                    outcome = Ok(entry.generation);
                    break;
                }
                Err(StoreError::CasMismatch) => continue,
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        match outcome {
            Ok(generation) => {
                let _ = self.release(store, url, now, lease_id, LeaseState::Free);
                Ok(generation)
            }
            Err(e) => {
                let _ = self.release(store, url, now, lease_id, LeaseState::Backoff);
                Err(e)
            }
        }
    }

    /// The fetch failed (unreachable, 5xx, unusable document — whatever the glue will not
    /// publish): if `lease_id` still holds the lease, it moves to backoff until
    /// `now + retry_backoff` (see [`CachePolicy::retry_backoff`]). Waiters then time out; new
    /// requests get `UseStale` (last-good document within `stale_if_error`) or `Unavailable`.
    /// A lease re-taken by another worker is left alone (`Ok`).
    pub fn fetch_failed(
        &self,
        store: &mut dyn SharedData,
        url: &str,
        now: i64,
        lease_id: u64,
    ) -> Result<(), StoreError> {
        self.release(store, url, now, lease_id, LeaseState::Backoff)
    }

    fn release(
        &self,
        store: &mut dyn SharedData,
        url: &str,
        now: i64,
        lease_id: u64,
        to: LeaseState,
    ) -> Result<(), StoreError> {
        let key = self.lease_key(url);
        for _ in 0..MAX_ATTEMPTS {
            let (current, cas) = self.read_lease(&*store, url)?;
            let (Some(cur), Some(cas)) = (current, cas) else {
                return Ok(());
            };
            if cur.state != LeaseState::Held || cur.lease_id != lease_id {
                return Ok(());
            }
            let until = match to {
                LeaseState::Backoff => add(now, self.policy.retry_backoff()),
                LeaseState::Free | LeaseState::Held => now,
            };
            let rec = LeaseRecord {
                state: to,
                until,
                ..cur
            };
            match store.set(&key, &rec.encode(), Some(cas)) {
                Ok(()) => return Ok(()),
                Err(StoreError::CasMismatch) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::CasMismatch)
    }

    /// The shared-data key of the last failure record of `url`.
    pub fn failure_key(&self, url: &str) -> String {
        format!("{}v1.fail.{url}", self.prefix)
    }

    /// Remember why the last fetch of `url` failed, for every worker: while the cache backs off,
    /// requests get the same answer (400 for a document that is unusable, 503 for a keystore that
    /// is down) instead of a blanket 503. A [`Fetched::Keys`] is not a failure: nothing is written.
    ///
    /// The record is `b'U'` (unusable) or `b'X'` (unavailable) and the first
    /// [`FAILURE_REASON_BYTES`] bytes of the reason. Like the documents it is written with CAS
    /// once the key exists (created with `cas: None` only when absent), so a later failure
    /// replaces it on Kong too, where a write without a token only creates.
    pub fn record_failure(
        &self,
        store: &mut dyn SharedData,
        url: &str,
        failed: &Fetched,
    ) -> Result<(), StoreError> {
        let (kind, why) = match failed {
            Fetched::Unusable(w) => (b'U', w),
            Fetched::Unavailable(w) => (b'X', w),
            Fetched::Keys(_) => return Ok(()),
        };
        let mut value = vec![kind];
        value.extend(why.bytes().take(FAILURE_REASON_BYTES));
        let key = self.failure_key(url);
        for _ in 0..MAX_ATTEMPTS {
            let (_, cas) = store.get(&key)?;
            match store.set(&key, &value, cas) {
                Ok(()) => return Ok(()),
                // Another worker wrote in between (or, on Kong, created it first): read again.
                Err(StoreError::CasMismatch) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::CasMismatch)
    }

    /// The last failure recorded for `url` ([`Cache::record_failure`]), as the answer to give
    /// while the cache backs off; without a readable record, "unavailable".
    pub fn last_failure(&self, store: &dyn SharedData, url: &str) -> Fetched {
        let value = store
            .get(&self.failure_key(url))
            .ok()
            .and_then(|(v, _)| v)
            .unwrap_or_default();
        let why = String::from_utf8_lossy(value.get(1..).unwrap_or(&[])).into_owned();
        match value.first() {
            Some(b'U') => Fetched::Unusable(why),
            Some(b'X') => Fetched::Unavailable(why),
            _ => Fetched::Unavailable("its last fetch failed moments ago".to_string()),
        }
    }

    /// A fetch made under `lease_id` answered (`fetched`; `doc`: the bytes of a usable document,
    /// `ttl` its lifetime): publish a usable document for every worker; otherwise record why it
    /// failed ([`Cache::record_failure`]), release the lease into backoff
    /// ([`Cache::fetch_failed`]) and say whether the last good document may be served meanwhile
    /// (within `stale_if_error` of its expiry).
    #[allow(clippy::too_many_arguments)]
    pub fn settle(
        &self,
        store: &mut dyn SharedData,
        url: &str,
        fetched: &Fetched,
        doc: &[u8],
        ttl: u64,
        now: i64,
        lease_id: u64,
        holder: u64,
    ) -> Settled {
        if let Fetched::Keys(_) = fetched {
            return match self.publish(store, url, doc, ttl, now, lease_id) {
                Ok(generation) => Settled::Published { generation },
                Err(e) => Settled::NotStored(e),
            };
        }
        let _ = self.record_failure(store, url, fetched);
        let released = self.fetch_failed(store, url, now, lease_id).err();
        let stale = match self.decide(store, url, Need::Any, now, holder) {
            Ok(Decision::UseStale(entry)) => Some(entry),
            _ => None,
        };
        Settled::Failed { stale, released }
    }

    /// For a paused request on tick. `seen_generation`: the generation it decided on (None when
    /// there was no document). `Ready` once the shared generation differs from it, `Waiting`
    /// while a fetch lease is held, else `TimedOut` (lease expired, fetch failed, lease free).
    pub fn poll(
        &self,
        store: &dyn SharedData,
        url: &str,
        seen_generation: Option<u64>,
        now: i64,
    ) -> Result<Poll, StoreError> {
        if let Some(e) = self.peek(store, url)? {
            if seen_generation != Some(e.generation) {
                return Ok(Poll::Ready(e));
            }
        }
        let (lease, _) = self.read_lease(store, url)?;
        Ok(match lease.map(|l| l.status(now)) {
            Some(Status::Fetching { .. }) => Poll::Waiting,
            _ => Poll::TimedOut,
        })
    }

    /// Background refresh (root context tick): `Some(lease_id)` — fetch now — when the document is
    /// missing or due (from `expires_at - refresh_ahead`, but not before half its lifetime, so a
    /// short lifetime does not refresh continuously) and the lease is free; else `None`.
    pub fn needs_refresh(
        &self,
        store: &mut dyn SharedData,
        url: &str,
        now: i64,
        lease_holder: u64,
    ) -> Result<Option<u64>, StoreError> {
        for _ in 0..MAX_ATTEMPTS {
            let due = match self.peek(&*store, url)? {
                None => true,
                Some(e) => now >= self.refresh_at(&e),
            };
            if !due {
                return Ok(None);
            }
            let (lease, cas) = self.read_lease(&*store, url)?;
            if lease.map_or(Status::Free, |l| l.status(now)) != Status::Free {
                return Ok(None);
            }
            if let Some(id) = self.try_take(store, url, lease.as_ref(), cas, now, lease_holder)? {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    fn refresh_at(&self, e: &Entry) -> i64 {
        let ahead = e
            .expires_at
            .saturating_sub(i64::try_from(self.policy.refresh_ahead).unwrap_or(i64::MAX));
        let half = e
            .fetched_at
            .saturating_add(e.expires_at.saturating_sub(e.fetched_at) / 2);
        ahead.max(half)
    }
}

/// The generation after `previous`; a fresh chain starts at `now << 20` (at least 1).
fn next_generation(previous: Option<u64>, now: i64) -> u64 {
    match previous {
        Some(g) => g.wrapping_add(1),
        None => (u64::try_from(now).unwrap_or(0) << 20).max(1),
    }
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A lease id that differs from the previous one of the URL and (with overwhelming probability)
/// from any other worker's; never 0.
fn new_lease_id(prev: u64, holder: u64, now: i64) -> u64 {
    let id = splitmix64(prev ^ splitmix64(holder ^ splitmix64(now as u64)));
    if id == 0 || id == prev {
        prev.wrapping_add(1).max(1)
    } else {
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::shared::{MemoryStore, Semantics};

    type Hook = Box<dyn FnOnce(&mut MemoryStore)>;

    /// A fault injector over the in-memory store: runs a hook once, just before the next write
    /// whose key contains the given text (another worker's move landing at that very moment — a
    /// race a real store cannot be asked to produce).
    struct Racing {
        store: MemoryStore,
        hook: Option<(String, Hook)>,
    }

    impl Racing {
        fn new(semantics: Semantics) -> Racing {
            Racing {
                store: MemoryStore::new(semantics),
                hook: None,
            }
        }
        fn raw_set(&mut self, key: &str, value: &[u8]) {
            self.store.put_raw(key, value);
        }
        /// No room for anything larger than what is stored now (creating a key fails `Full`).
        fn fill(&mut self) {
            self.store.set_capacity(Some(self.store.used()));
        }
    }

    impl SharedData for Racing {
        fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
            self.store.get(key)
        }
        fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
            if let Some((pat, _)) = &self.hook {
                if key.contains(pat.as_str()) {
                    if let Some((_, h)) = self.hook.take() {
                        h(&mut self.store);
                    }
                }
            }
            self.store.set(key, value, cas)
        }
    }

    const URL: &str = "https://keystore.example/jwks";
    const T0: i64 = 1_700_000_000;

    fn cache() -> Cache {
        Cache::new(CachePolicy::default(), "dcr_guard.jwks.")
    }

    fn both() -> [Racing; 2] {
        [Racing::new(Semantics::Envoy), Racing::new(Semantics::Kong)]
    }

    fn fetch_id(d: &Decision) -> u64 {
        match d {
            Decision::Fetch { lease_id } => *lease_id,
            other => panic!("expected Fetch, got {other:?}"),
        }
    }

    /// Cold fetch by holder 1 at `now`, published with `ttl`. Returns the generation.
    fn warm(c: &Cache, s: &mut Racing, now: i64, ttl: u64) -> u64 {
        let d = c.decide(s, URL, Need::Any, now, 1).unwrap();
        let id = fetch_id(&d);
        c.publish(s, URL, b"{\"keys\":[]}", ttl, now, id).unwrap()
    }

    fn lease_of(c: &Cache, s: &Racing) -> Option<LeaseRecord> {
        c.read_lease(s, URL).unwrap().0
    }

    #[test]
    fn cache_control_parsing_and_clamping() {
        let p = CachePolicy::default();
        let t = |v: Option<&str>| ttl_from_cache_control(v, &p);
        assert_eq!(t(None), 600);
        assert_eq!(t(Some("")), 600);
        assert_eq!(t(Some("public")), 600);
        assert_eq!(t(Some("max-age=300")), 300);
        assert_eq!(t(Some("public, max-age=300, must-revalidate")), 300);
        assert_eq!(t(Some("MAX-AGE=120")), 120);
        assert_eq!(t(Some(" max-age = 120 ")), 120);
        assert_eq!(t(Some("max-age=\"120\"")), 120);
        assert_eq!(t(Some("max-age=0")), 60);
        assert_eq!(t(Some("max-age=59")), 60);
        assert_eq!(t(Some("max-age=abc")), 600);
        assert_eq!(t(Some("max-age=-1")), 600);
        assert_eq!(t(Some("max-age=")), 600);
        assert_eq!(t(Some("max-age")), 600);
        assert_eq!(t(Some("max-age=\"12")), 600);
        assert_eq!(t(Some("max-age=1e3")), 600);
        assert_eq!(t(Some("max-age=86401")), 86_400);
        assert_eq!(t(Some("max-age=99999999999999999999999999999")), 86_400);
        assert_eq!(t(Some("no-store")), 60);
        assert_eq!(t(Some("no-cache")), 60);
        assert_eq!(t(Some("max-age=3600, no-cache")), 60);
        assert_eq!(t(Some("No-Store, max-age=3600")), 60);
        assert_eq!(t(Some("no-cache=\"set-cookie\"")), 60);
        assert_eq!(t(Some("max-age=100, max-age=200")), 100);
        assert_eq!(t(Some("s-maxage=100")), 600);
        assert_eq!(t(Some("max-age=ü")), 600);
        // An inverted configuration does not panic; max_ttl wins.
        let odd = CachePolicy {
            min_ttl: 100,
            max_ttl: 10,
            ..p
        };
        assert_eq!(ttl_from_cache_control(Some("max-age=50"), &odd), 10);
        assert_eq!(ttl_from_cache_control(None, &odd), 10);
    }

    #[test]
    fn fresh_until_expiry_then_fetch() {
        for mut s in both() {
            let c = cache();
            let g = warm(&c, &mut s, T0, 600);
            for now in [T0, T0 + 1, T0 + 599] {
                match c.decide(&mut s, URL, Need::Any, now, 2).unwrap() {
                    Decision::Use(e) => {
                        assert_eq!(e.generation, g);
                        assert_eq!(e.fetched_at, T0);
                        assert_eq!(e.expires_at, T0 + 600);
                        assert_eq!(e.doc, b"{\"keys\":[]}");
                    }
                    other => panic!("{other:?}"),
                }
            }
            let d = c.decide(&mut s, URL, Need::Any, T0 + 600, 2).unwrap();
            fetch_id(&d);
            // The lease is now held: others serve the expired doc as stale meanwhile.
            assert!(matches!(
                c.decide(&mut s, URL, Need::Any, T0 + 600, 3).unwrap(),
                Decision::UseStale(_)
            ));
        }
    }

    #[test]
    fn single_flight_one_fetch_for_a_burst() {
        for mut s in both() {
            let c = cache();
            let mut fetches = Vec::new();
            let mut waits = 0;
            for i in 0..200u64 {
                let worker = 100 + i % 4;
                let d = c.decide(&mut s, URL, Need::Any, T0, worker).unwrap();
                assert_eq!(
                    d.counter(Need::Any),
                    match &d {
                        Decision::Wait { .. } => Some(COUNTER_LEASE_WAITS),
                        _ => None,
                    }
                );
                match d {
                    Decision::Fetch { lease_id } => fetches.push(lease_id),
                    Decision::Wait { until } => {
                        assert_eq!(until, T0 + 5);
                        waits += 1;
                    }
                    other => panic!("{other:?}"),
                }
            }
            assert_eq!(fetches.len(), 1, "{:?}", s.store.semantics());
            assert_eq!(waits, 199);
            for _ in 0..199 {
                assert_eq!(c.poll(&s, URL, None, T0 + 1).unwrap(), Poll::Waiting);
            }
            let g = c
                .publish(&mut s, URL, b"doc", 600, T0 + 1, fetches[0])
                .unwrap();
            for _ in 0..199 {
                match c.poll(&s, URL, None, T0 + 2).unwrap() {
                    Poll::Ready(e) => {
                        assert_eq!(e.generation, g);
                        assert_eq!(e.doc, b"doc");
                    }
                    other => panic!("{other:?}"),
                }
            }
            assert_eq!(lease_of(&c, &s).unwrap().state, LeaseState::Free);
            // Everyone now uses it.
            let d = c.decide(&mut s, URL, Need::Any, T0 + 2, 101).unwrap();
            assert_eq!(d.counter(Need::Any), Some(COUNTER_CACHE_HITS));
            assert!(matches!(d, Decision::Use(_)));
        }
    }

    #[test]
    fn lease_expiry_times_out_waiters_then_one_new_fetch() {
        for mut s in both() {
            let c = cache();
            let first = c.decide(&mut s, URL, Need::Any, T0, 1).unwrap();
            fetch_id(&first);
            for w in 2..6 {
                assert_eq!(
                    c.decide(&mut s, URL, Need::Any, T0 + 1, w).unwrap(),
                    Decision::Wait { until: T0 + 5 }
                );
            }
            assert_eq!(c.poll(&s, URL, None, T0 + 4).unwrap(), Poll::Waiting);
            assert_eq!(c.poll(&s, URL, None, T0 + 5).unwrap(), Poll::TimedOut);
            let mut fetches = 0;
            for i in 0..50 {
                match c.decide(&mut s, URL, Need::Any, T0 + 5, 2 + i % 4).unwrap() {
                    Decision::Fetch { .. } => fetches += 1,
                    Decision::Wait { until } => assert_eq!(until, T0 + 10),
                    other => panic!("{other:?}"),
                }
            }
            assert_eq!(fetches, 1);
        }
    }

    #[test]
    fn kid_miss_right_after_cold_fetch_uses_document() {
        for mut s in both() {
            let c = cache();
            let g = warm(&c, &mut s, T0, 600);
            for now in [T0, T0 + 10, T0 + 29] {
                match c.decide(&mut s, URL, Need::Kid, now, 2).unwrap() {
                    Decision::Use(e) => assert_eq!(e.generation, g),
                    other => panic!("{other:?}"),
                }
            }
        }
    }

    #[test]
    fn kid_miss_after_cooldown_fetches_once() {
        for mut s in both() {
            let c = cache();
            let g = warm(&c, &mut s, T0, 600);
            let now = T0 + 30;
            let mut fetch = None;
            for i in 0..100u64 {
                let d = c.decide(&mut s, URL, Need::Kid, now, 1 + i % 4).unwrap();
                match d {
                    Decision::Fetch { lease_id } => {
                        assert_eq!(d.counter(Need::Kid), Some(COUNTER_KID_REFETCHES));
                        assert!(fetch.replace(lease_id).is_none());
                    }
                    // The refetch in flight may bring the key: wait for it.
                    Decision::Wait { until } => assert_eq!(until, now + 5),
                    other => panic!("{other:?}"),
                }
            }
            let id = fetch.unwrap();
            // Requests that do not need a new kid keep using the fresh document.
            assert!(matches!(
                c.decide(&mut s, URL, Need::Any, now, 3).unwrap(),
                Decision::Use(_)
            ));
            let g2 = c.publish(&mut s, URL, b"new", 600, now + 1, id).unwrap();
            assert_eq!(g2, g + 1);
            assert!(matches!(
                c.poll(&s, URL, Some(g), now + 1).unwrap(),
                Poll::Ready(_)
            ));
            // A flood of unknown kids within the cooldown: no further fetch.
            for t in now + 1..now + 31 {
                for w in 1..5 {
                    match c.decide(&mut s, URL, Need::Kid, t, w).unwrap() {
                        Decision::Use(e) => assert_eq!(e.generation, g2),
                        other => panic!("{other:?}"),
                    }
                }
            }
            fetch_id(&c.decide(&mut s, URL, Need::Kid, now + 31, 1).unwrap());
        }
    }

    #[test]
    fn kid_refetch_that_fails_is_not_retried_within_cooldown() {
        for mut s in both() {
            let c = cache();
            warm(&c, &mut s, T0, 600);
            let now = T0 + 40;
            let id = fetch_id(&c.decide(&mut s, URL, Need::Kid, now, 1).unwrap());
            c.fetch_failed(&mut s, URL, now + 1, id).unwrap();
            // Backoff, then the cooldown since the attempt: still no fetch.
            for t in now + 1..now + 30 {
                assert!(matches!(
                    c.decide(&mut s, URL, Need::Kid, t, 2).unwrap(),
                    Decision::Use(_)
                ));
                assert_eq!(c.needs_refresh(&mut s, URL, t, 2).unwrap(), None);
            }
            fetch_id(&c.decide(&mut s, URL, Need::Kid, now + 30, 2).unwrap());
        }
    }

    #[test]
    fn stale_if_error_bounded() {
        for mut s in both() {
            let c = cache();
            warm(&c, &mut s, T0, 60);
            let expiry = T0 + 60;
            let id = fetch_id(&c.decide(&mut s, URL, Need::Any, expiry, 1).unwrap());
            c.fetch_failed(&mut s, URL, expiry, id).unwrap();
            // Backoff (5 s): everyone is served the last good document.
            for t in expiry..expiry + 5 {
                let d = c.decide(&mut s, URL, Need::Any, t, 2).unwrap();
                assert_eq!(d.counter(Need::Any), Some(COUNTER_STALE_SERVES));
                match d {
                    Decision::UseStale(e) => assert_eq!(e.expires_at, expiry),
                    other => panic!("{other:?}"),
                }
            }
            // Backoff over: one retry, the others stale meanwhile.
            let id = fetch_id(&c.decide(&mut s, URL, Need::Any, expiry + 5, 3).unwrap());
            assert!(matches!(
                c.decide(&mut s, URL, Need::Any, expiry + 6, 4).unwrap(),
                Decision::UseStale(_)
            ));
            c.fetch_failed(&mut s, URL, expiry + 6, id).unwrap();
            // Near the end of the window, failing again.
            let end = expiry + 3_600;
            let id = fetch_id(&c.decide(&mut s, URL, Need::Any, end - 2, 1).unwrap());
            c.fetch_failed(&mut s, URL, end - 2, id).unwrap();
            assert!(matches!(
                c.decide(&mut s, URL, Need::Any, end - 1, 2).unwrap(),
                Decision::UseStale(_)
            ));
            // Window over: no longer served.
            assert_eq!(
                c.decide(&mut s, URL, Need::Any, end, 2).unwrap(),
                Decision::Unavailable { retry_at: end + 3 }
            );
            let id = fetch_id(&c.decide(&mut s, URL, Need::Any, end + 3, 2).unwrap());
            assert_eq!(
                c.decide(&mut s, URL, Need::Any, end + 3, 3).unwrap(),
                Decision::Wait { until: end + 8 }
            );
            // A successful refresh ends it all.
            c.publish(&mut s, URL, b"ok", 600, end + 4, id).unwrap();
            assert!(matches!(
                c.decide(&mut s, URL, Need::Any, end + 4, 3).unwrap(),
                Decision::Use(_)
            ));
        }
    }

    #[test]
    fn cold_fetch_failure_is_unavailable_then_retried() {
        for mut s in both() {
            let c = cache();
            let id = fetch_id(&c.decide(&mut s, URL, Need::Any, T0, 1).unwrap());
            assert!(matches!(
                c.decide(&mut s, URL, Need::Any, T0, 2).unwrap(),
                Decision::Wait { .. }
            ));
            c.fetch_failed(&mut s, URL, T0 + 1, id).unwrap();
            // The waiter learns at once.
            assert_eq!(c.poll(&s, URL, None, T0 + 1).unwrap(), Poll::TimedOut);
            assert_eq!(
                c.decide(&mut s, URL, Need::Any, T0 + 2, 2).unwrap(),
                Decision::Unavailable { retry_at: T0 + 6 }
            );
            assert_eq!(c.needs_refresh(&mut s, URL, T0 + 2, 2).unwrap(), None);
            fetch_id(&c.decide(&mut s, URL, Need::Any, T0 + 6, 2).unwrap());
        }
    }

    #[test]
    fn background_refresh_ahead_of_expiry() {
        for mut s in both() {
            let c = cache();
            // Missing document: fetched soon after start, by one worker.
            let id = c.needs_refresh(&mut s, URL, T0, 1).unwrap().unwrap();
            for w in 2..5 {
                assert_eq!(c.needs_refresh(&mut s, URL, T0, w).unwrap(), None);
            }
            c.publish(&mut s, URL, b"d", 600, T0, id).unwrap();
            assert_eq!(c.needs_refresh(&mut s, URL, T0 + 539, 2).unwrap(), None);
            let id = c.needs_refresh(&mut s, URL, T0 + 540, 2).unwrap().unwrap();
            for w in 1..5 {
                assert_eq!(c.needs_refresh(&mut s, URL, T0 + 541, w).unwrap(), None);
                // Requests are not held up by it.
                assert!(matches!(
                    c.decide(&mut s, URL, Need::Any, T0 + 541, w).unwrap(),
                    Decision::Use(_)
                ));
            }
            c.publish(&mut s, URL, b"d2", 600, T0 + 542, id).unwrap();
            assert_eq!(c.needs_refresh(&mut s, URL, T0 + 543, 3).unwrap(), None);
            // A lifetime no longer than refresh_ahead refreshes at half-life, not continuously.
            let mut k = Racing::new(s.store.semantics());
            let g = c.needs_refresh(&mut k, URL, T0, 1).unwrap().unwrap();
            c.publish(&mut k, URL, b"d", 60, T0, g).unwrap();
            assert_eq!(c.needs_refresh(&mut k, URL, T0 + 29, 1).unwrap(), None);
            assert!(c.needs_refresh(&mut k, URL, T0 + 30, 1).unwrap().is_some());
        }
    }

    #[test]
    fn late_publish_does_not_release_a_newer_lease() {
        for mut s in both() {
            let c = cache();
            let old = fetch_id(&c.decide(&mut s, URL, Need::Any, T0, 1).unwrap());
            let new = fetch_id(&c.decide(&mut s, URL, Need::Any, T0 + 5, 2).unwrap());
            assert_ne!(old, new);
            let g1 = c.publish(&mut s, URL, b"late", 600, T0 + 6, old).unwrap();
            let l = lease_of(&c, &s).unwrap();
            assert_eq!((l.state, l.lease_id, l.holder), (LeaseState::Held, new, 2));
            c.fetch_failed(&mut s, URL, T0 + 6, old).unwrap();
            assert_eq!(lease_of(&c, &s).unwrap().state, LeaseState::Held);
            // The late document is served.
            match c.decide(&mut s, URL, Need::Any, T0 + 6, 3).unwrap() {
                Decision::Use(e) => assert_eq!(e.doc, b"late"),
                other => panic!("{other:?}"),
            }
            let g2 = c.publish(&mut s, URL, b"new", 600, T0 + 7, new).unwrap();
            assert_eq!(g2, g1 + 1);
            assert_eq!(lease_of(&c, &s).unwrap().state, LeaseState::Free);
            // Publishing again with a released lease id is harmless.
            c.publish(&mut s, URL, b"again", 600, T0 + 8, new).unwrap();
            assert_eq!(lease_of(&c, &s).unwrap().state, LeaseState::Free);
        }
    }

    #[test]
    fn generation_increments_and_restarts_high() {
        for mut s in both() {
            let c = cache();
            let g1 = warm(&c, &mut s, T0, 600);
            assert_eq!(g1, (T0 as u64) << 20);
            let g2 = c.publish(&mut s, URL, b"2", 600, T0 + 1, 0).unwrap();
            let g3 = c.publish(&mut s, URL, b"3", 600, T0 + 2, 0).unwrap();
            assert_eq!((g2, g3), (g1 + 1, g1 + 2));
            // The entry is lost (corrupted / evicted): the next chain starts above the old one.
            let key = c.doc_key(URL);
            s.raw_set(&key, b"garbage");
            let g4 = c.publish(&mut s, URL, b"4", 600, T0 + 10, 0).unwrap();
            assert!(g4 > g3);
            assert_eq!(next_generation(None, -5), 1);
            assert_eq!(next_generation(Some(u64::MAX), T0), 0);
        }
    }

    #[test]
    fn corrupt_values_never_panic() {
        let c = cache();
        let entry = Entry {
            fetched_at: T0,
            expires_at: T0 + 600,
            doc: b"{}".to_vec(),
            generation: 7,
        }
        .encode();
        let lease = LeaseRecord {
            state: LeaseState::Held,
            holder: 1,
            lease_id: 9,
            until: T0 + 1_000,
            started_at: T0,
        }
        .encode();
        let mut samples: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            b"J".to_vec(),
            b"L".to_vec(),
            vec![b'J', 2],
            vec![b'L', 1, 9],
            vec![0xff; 64],
        ];
        for base in [&entry, &lease] {
            for cut in 0..base.len() {
                samples.push(base.get(..cut).unwrap().to_vec());
            }
            let mut long = base.clone();
            long.push(0);
            samples.push(long);
            for i in 0..base.len() {
                let mut flipped = base.clone();
                flipped[i] ^= 0xA5;
                samples.push(flipped);
            }
        }
        // Pseudo-random junk.
        let mut x = 42u64;
        for len in 0..120usize {
            let mut v = Vec::with_capacity(len);
            for _ in 0..len {
                x = splitmix64(x);
                v.push(x as u8);
            }
            samples.push(v);
        }
        // A length field claiming far more than present.
        let mut huge = entry.clone();
        huge[26..30].copy_from_slice(&u32::MAX.to_le_bytes());
        samples.push(huge);
        for host in [Semantics::Envoy, Semantics::Kong] {
            for bytes in &samples {
                for (in_doc, in_lease) in [(true, false), (false, true), (true, true)] {
                    let mut s = Racing::new(host);
                    if in_doc {
                        s.raw_set(&c.doc_key(URL), bytes);
                    }
                    if in_lease {
                        s.raw_set(&c.lease_key(URL), bytes);
                    }
                    let _ = c.peek(&s, URL);
                    let _ = c.poll(&s, URL, Some(7), T0);
                    let _ = c.poll(&s, URL, None, T0);
                    let _ = c.decide(&mut s, URL, Need::Kid, T0 + 100, 3);
                    let d = c.decide(&mut s, URL, Need::Any, T0 + 700, 2).unwrap();
                    let _ = c.needs_refresh(&mut s, URL, T0 + 700, 4);
                    if let Decision::Fetch { lease_id } = d {
                        c.fetch_failed(&mut s, URL, T0 + 700, lease_id).unwrap();
                    }
                    let _ = c.publish(&mut s, URL, b"x", 600, T0 + 800, 1);
                    assert!(c.peek(&s, URL).unwrap().is_some());
                }
            }
        }
    }

    #[test]
    fn corrupt_entry_is_absent_and_corrupt_lease_is_free() {
        for mut s in both() {
            let c = cache();
            s.raw_set(&c.doc_key(URL), b"\x00\x01garbage");
            s.raw_set(&c.lease_key(URL), b"L\x01\x07junk");
            assert_eq!(c.peek(&s, URL).unwrap(), None);
            assert_eq!(c.poll(&s, URL, None, T0).unwrap(), Poll::TimedOut);
            let id = fetch_id(&c.decide(&mut s, URL, Need::Any, T0, 1).unwrap());
            assert!(matches!(
                c.decide(&mut s, URL, Need::Any, T0, 2).unwrap(),
                Decision::Wait { .. }
            ));
            c.publish(&mut s, URL, b"good", 600, T0, id).unwrap();
            assert!(matches!(
                c.decide(&mut s, URL, Need::Any, T0, 2).unwrap(),
                Decision::Use(_)
            ));
            // An entry whose expiry precedes its fetch time is refused.
            let bad = Entry {
                fetched_at: T0,
                expires_at: T0 - 1,
                doc: vec![],
                generation: 1,
            };
            assert_eq!(Entry::decode(&bad.encode()), None);
        }
    }

    #[test]
    fn entry_round_trip() {
        let e = Entry {
            fetched_at: -3,
            expires_at: i64::MAX,
            doc: (0..=255u8).collect(),
            generation: u64::MAX,
        };
        assert_eq!(Entry::decode(&e.encode()), Some(e));
        let l = LeaseRecord {
            state: LeaseState::Backoff,
            holder: u64::MAX,
            lease_id: 3,
            until: i64::MIN,
            started_at: 5,
        };
        assert_eq!(l.encode().len(), LEASE_LEN);
        assert_eq!(LeaseRecord::decode(&l.encode()), Some(l));
    }

    #[test]
    fn kong_create_race_loses_to_the_first_and_waits() {
        let c = cache();
        let mut s = Racing::new(Semantics::Kong);
        let other = c.clone();
        // Between A's read (absent) and A's create, B takes the lease.
        s.hook = Some((
            "lease.".to_string(),
            Box::new(move |inner: &mut MemoryStore| {
                let d = other.decide(inner, URL, Need::Any, T0, 2).unwrap();
                assert!(matches!(d, Decision::Fetch { .. }));
            }),
        ));
        assert_eq!(
            c.decide(&mut s, URL, Need::Any, T0, 1).unwrap(),
            Decision::Wait { until: T0 + 5 }
        );
        assert_eq!(lease_of(&c, &s).unwrap().holder, 2);
    }

    #[test]
    fn cas_race_on_expired_lease_grants_one() {
        for host in [Semantics::Envoy, Semantics::Kong] {
            let c = cache();
            let mut s = Racing::new(host);
            fetch_id(&c.decide(&mut s, URL, Need::Any, T0, 1).unwrap());
            let other = c.clone();
            s.hook = Some((
                "lease.".to_string(),
                Box::new(move |inner: &mut MemoryStore| {
                    let d = other.decide(inner, URL, Need::Any, T0 + 5, 2).unwrap();
                    assert!(matches!(d, Decision::Fetch { .. }));
                }),
            ));
            assert_eq!(
                c.decide(&mut s, URL, Need::Any, T0 + 5, 3).unwrap(),
                Decision::Wait { until: T0 + 10 }
            );
            assert_eq!(lease_of(&c, &s).unwrap().holder, 2);
        }
    }

    #[test]
    fn envoy_blind_create_is_confirmed_by_read_back() {
        // A creates the lease key, but B's blind create lands before A reads it back: A yields.
        let c = cache();
        let rival = LeaseRecord {
            state: LeaseState::Held,
            holder: 2,
            lease_id: 77,
            until: T0 + 5,
            started_at: T0,
        };
        let key = c.lease_key(URL);
        // After each write to the lease key, a racing blind create lands.
        struct Overwrite<'a>(&'a mut MemoryStore, Vec<u8>, String);
        impl SharedData for Overwrite<'_> {
            fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
                self.0.get(key)
            }
            fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
                self.0.set(key, value, cas)?;
                if key == self.2 {
                    let v = self.1.clone();
                    self.0.put_raw(key, &v);
                }
                Ok(())
            }
        }
        let mut fresh = MemoryStore::envoy();
        let mut o = Overwrite(&mut fresh, rival.encode(), key);
        assert_eq!(c.try_take(&mut o, URL, None, None, T0, 1).unwrap(), None);
        assert_eq!(
            c.decide(&mut o, URL, Need::Any, T0, 1).unwrap(),
            Decision::Wait { until: T0 + 5 }
        );
    }

    #[test]
    fn store_errors_propagate_and_failed_publish_backs_off() {
        let c = cache();
        let mut s = Racing::new(Semantics::Envoy);
        s.fill();
        assert_eq!(
            c.decide(&mut s, URL, Need::Any, T0, 1),
            Err(StoreError::Full)
        );
        let mut s = Racing::new(Semantics::Envoy);
        let id = fetch_id(&c.decide(&mut s, URL, Need::Any, T0, 1).unwrap());
        s.fill();
        assert_eq!(
            c.publish(&mut s, URL, b"d", 600, T0 + 1, id),
            Err(StoreError::Full)
        );
        let l = lease_of(&c, &s).unwrap();
        assert_eq!((l.state, l.until), (LeaseState::Backoff, T0 + 6));
        assert_eq!(c.poll(&s, URL, None, T0 + 1).unwrap(), Poll::TimedOut);
    }

    #[test]
    fn poll_sees_any_new_generation() {
        let c = cache();
        let mut s = Racing::new(Semantics::Kong);
        let g = warm(&c, &mut s, T0, 60);
        assert_eq!(c.poll(&s, URL, Some(g), T0 + 1).unwrap(), Poll::TimedOut);
        assert!(matches!(
            c.poll(&s, URL, Some(g + 12345), T0 + 1).unwrap(),
            Poll::Ready(_)
        ));
        assert!(matches!(
            c.poll(&s, URL, None, T0 + 1).unwrap(),
            Poll::Ready(_)
        ));
    }

    #[test]
    fn retry_backoff_bounds() {
        let mut p = CachePolicy::default();
        assert_eq!(p.retry_backoff(), 5);
        p.kid_refetch_cooldown = 2;
        assert_eq!(p.retry_backoff(), 2);
        p.kid_refetch_cooldown = 0;
        assert_eq!(p.retry_backoff(), 1);
    }

    #[test]
    fn lease_ids_are_distinct_and_nonzero() {
        let mut seen = std::collections::HashSet::new();
        let mut prev = 0;
        for i in 0..1000 {
            let id = new_lease_id(prev, 1 + i % 3, T0 + (i / 10) as i64);
            assert_ne!(id, 0);
            assert!(seen.insert(id));
            prev = id;
        }
    }

    #[test]
    fn failure_records_are_replaced_by_cas_on_both_hosts() {
        let c = cache();
        let down = Fetched::Unavailable("answered HTTP 503".into());
        let junk = Fetched::Unusable("answered HTTP 404".into());
        let said = |f: &Fetched| match f {
            Fetched::Unavailable(w) => format!("X {w}"),
            Fetched::Unusable(w) => format!("U {w}"),
            Fetched::Keys(_) => "keys".to_string(),
        };
        for mut s in both() {
            let host = s.store.semantics();
            // Nothing recorded yet: "unavailable", in general terms.
            assert_eq!(
                said(&c.last_failure(&s, URL)),
                "X its last fetch failed moments ago"
            );
            for f in [&down, &junk, &down, &junk] {
                c.record_failure(&mut s, URL, f).unwrap();
                assert_eq!(said(&c.last_failure(&s, URL)), said(f), "{host:?}");
            }
            // Keys are not a failure: the record stays.
            let keys = Fetched::Keys(std::rc::Rc::new(
                crate::jose::JwkSet::parse(b"{\"keys\":[]}", 10).unwrap(),
            ));
            c.record_failure(&mut s, URL, &keys).unwrap();
            assert_eq!(said(&c.last_failure(&s, URL)), said(&junk), "{host:?}");
            // The reason is bounded.
            let long = Fetched::Unavailable("x".repeat(1000));
            c.record_failure(&mut s, URL, &long).unwrap();
            let raw = s.store.raw(&c.failure_key(URL)).unwrap();
            assert_eq!(raw.len(), 1 + FAILURE_REASON_BYTES, "{host:?}");
        }
    }

    #[test]
    fn a_failure_record_written_concurrently_is_read_again_and_replaced() {
        let c = cache();
        for host in [Semantics::Envoy, Semantics::Kong] {
            // Another worker creates (then, second case, updates) the record between our read and
            // our write: our write is refused (CAS), we read again and replace it.
            for existing in [false, true] {
                let mut s = Racing::new(host);
                let key = c.failure_key(URL);
                if existing {
                    s.raw_set(&key, b"Xold");
                }
                let other = c.clone();
                s.hook = Some((
                    "fail.".to_string(),
                    Box::new(move |inner: &mut MemoryStore| {
                        let f = Fetched::Unavailable("the other worker's".into());
                        other.record_failure(inner, URL, &f).unwrap();
                    }),
                ));
                let mine = Fetched::Unusable("mine".into());
                c.record_failure(&mut s, URL, &mine).unwrap();
                assert!(
                    matches!(c.last_failure(&s, URL), Fetched::Unusable(w) if w == "mine"),
                    "{host:?} existing {existing}"
                );
            }
        }
        // A store without room: the error is reported (the glue ignores it and answers 503).
        let mut s = Racing::new(Semantics::Kong);
        s.fill();
        assert_eq!(
            c.record_failure(&mut s, URL, &Fetched::Unavailable("x".into())),
            Err(StoreError::Full)
        );
    }

    #[test]
    fn settle_publishes_or_records_and_offers_the_last_good_document() {
        let c = cache();
        let set = || {
            Fetched::Keys(std::rc::Rc::new(
                crate::jose::JwkSet::parse(b"{\"keys\":[]}", 10).unwrap(),
            ))
        };
        let down = Fetched::Unavailable("answered HTTP 503".into());
        for mut s in both() {
            let host = s.store.semantics();
            // A usable document: published, the lease released.
            let id = fetch_id(&c.decide(&mut s, URL, Need::Any, T0, 1).unwrap());
            let doc = b"{\"keys\":[]}";
            let settled = c.settle(&mut s, URL, &set(), doc, 60, T0, id, 1);
            let Settled::Published { generation } = settled else {
                panic!("{host:?}: {settled:?}")
            };
            assert_eq!(c.peek(&s, URL).unwrap().unwrap().generation, generation);
            assert_eq!(lease_of(&c, &s).unwrap().state, LeaseState::Free);
            // Expired; the refresh fails: recorded, backoff, the last good one may be served.
            let id = fetch_id(&c.decide(&mut s, URL, Need::Any, T0 + 61, 1).unwrap());
            match c.settle(&mut s, URL, &down, &[], 0, T0 + 61, id, 1) {
                Settled::Failed {
                    stale: Some(e),
                    released: None,
                } => assert_eq!(e.generation, generation, "{host:?}"),
                other => panic!("{host:?}: {other:?}"),
            }
            assert_eq!(lease_of(&c, &s).unwrap().state, LeaseState::Backoff);
            assert!(matches!(c.last_failure(&s, URL), Fetched::Unavailable(_)));
            // Past stale_if_error: nothing to serve.
            let late = T0 + 61 + 3_600 + 10;
            let id = fetch_id(&c.decide(&mut s, URL, Need::Any, late, 1).unwrap());
            let junk = Fetched::Unusable("answered HTTP 404".into());
            assert_eq!(
                c.settle(&mut s, URL, &junk, &[], 0, late, id, 1),
                Settled::Failed {
                    stale: None,
                    released: None
                },
                "{host:?}"
            );
            // The second failure replaced the first one's record (on Kong too).
            assert!(
                matches!(c.last_failure(&s, URL), Fetched::Unusable(_)),
                "{host:?}"
            );
        }
        // A usable document that cannot be stored.
        let mut s = Racing::new(Semantics::Kong);
        let id = fetch_id(&c.decide(&mut s, URL, Need::Any, T0, 1).unwrap());
        s.fill();
        assert_eq!(
            c.settle(&mut s, URL, &set(), b"{}", 60, T0, id, 1),
            Settled::NotStored(StoreError::Full)
        );
    }
}
