//! Replay store (spec §7): remembers `(issuer, jti)` pairs in host shared data until they expire,
//! so that a request (or SSA) presented twice is refused. Plain Rust: the host's shared data is
//! reached through the [`SharedData`] trait, implemented over proxy-wasm in the glue and by fakes
//! in the tests.
//!
//! # Why buckets
//!
//! Envoy and Kong disagree on shared data (see `hosts.md`): on Envoy a write with `cas = 0`
//! overwrites, "remove" only stores an empty value and nothing is ever evicted; on Kong `cas = 0`
//! only creates an absent key, delete is real, entries can be evicted and a full zone fails. The one
//! operation with the same meaning on both is *write with the CAS token of an existing key*. So the
//! store is a fixed set of bucket keys, created once ([`precreate`]), and every entry is added by a
//! read → decide → write-with-`Some(cas)` cycle ([`check_and_record`]), retried on contention and
//! failing closed when it persists.
//!
//! # Placement is keyed by a secret (no client can aim at a bucket)
//!
//! Buckets are shared by every TPP and a full bucket answers 503. With an unkeyed hash a TPP could
//! grind `jti`s offline until thousands land in one bucket, fill it with valid registrations and
//! jam every other TPP whose pair lands there. So the entry id, the bucket index and the issuer
//! tag are HMAC-SHA-256 values under a [`Secret`]: 32 random bytes (ring's `SystemRandom`) drawn
//! once per Envoy process (per `vm_id`) and kept in shared data at [`secret_key`], where every worker
//! reads it. It never leaves shared data: it is not logged, not in any header, and its `Debug` is
//! redacted. How the first worker creates it without any other worker ever overwriting it is
//! described on [`ensure_secret`]. A filter configuration reload (same `vm_id`) finds the secret
//! and the buckets in shared data and keeps both.
//!
//! The entry id is `HMAC(secret, DIGEST_DOMAIN || u64le(len(issuer)) || issuer || u64le(len(jti))
//! || jti)`, so `("ab", "c")` and `("a", "bc")` differ: its first 16 bytes are stored, the next 8
//! (little-endian `u64`) modulo the bucket count choose the bucket. The issuer tag is the first 8
//! bytes of `HMAC(secret, ISSUER_DOMAIN || u64le(len(issuer)) || issuer)`.
//!
//! # One issuer cannot take the store: its share
//!
//! Within a bucket an issuer may hold at most [`ReplayConfig::issuer_cap`] live entries
//! (`issuer_share_percent` of `entries_per_bucket`, at least 1), counted by the issuer tag stored
//! with each entry. An issuer over its share is refused with [`ReplayError::IssuerShare`] (503), while
//! other issuers keep registering. Pairs recorded with [`Share::Exempt`] (SSA `jti`s: their issuer
//! is a trusted directory that issues every TPP's SSAs, and no TPP can mint an SSA `jti`) are not
//! limited, but their entries are tagged like any other.
//!
//! Bucket `i` lives at the key `{key_prefix}v2.{i}` (see [`bucket_key`]); the format version is in
//! the key so that a build with another format, sharing the same `vm_id` during a rolling update,
//! never reads or writes these buckets.
//!
//! # Bucket value format (version 2)
//!
//! ```text
//! [0x02]                       1 byte: format version (BUCKET_VERSION)
//! then N entries, each 32 bytes (ReplayConfig::ENTRY_BYTES):
//!   [id: 16 bytes]             truncated HMAC-SHA-256 of (issuer, jti), see above
//!   [issuer tag: 8 bytes]      truncated HMAC-SHA-256 of the issuer
//!   [expires_at: 8 bytes]      i64 little-endian, unix seconds
//! ```
//!
//! An empty value means "empty bucket" (that is what Envoy's "remove" leaves). A full bucket takes
//! `1 + entries_per_bucket * 32` bytes: 8 193 bytes with the defaults (256 entries).
//!
//! # Corrupt buckets: fail closed
//!
//! A non-empty value whose version byte is not `0x02`, or whose length is not `1 + 32·N`, can only
//! come from a bug or from a foreign writer using our keys. It is *not* reset: resetting would
//! silently forget every live entry of the bucket (letting replays through) and would fight any
//! writer that believes in the other format. Instead [`check_and_record`] returns
//! [`ReplayError::Store`] ("replay bucket has an unknown format"), which the filter turns into a
//! 503 and logs; the value is left untouched for inspection. Requests hashing to other buckets are
//! unaffected. Parsing is defensive and never panics on any byte string. A secret value that is not
//! 32 bytes fails every replay check closed the same way.
//!
//! # Expiry
//!
//! An entry is live while `expires_at > now`. Entries whose expiry is `≤ now` are pruned whenever
//! their bucket is rewritten; a pruned `(issuer, jti)` counts as fresh again. A bucket never holds
//! more than `entries_per_bucket` live entries: when it is full of live entries the new pair is
//! refused with [`ReplayError::Full`] (503) — a live entry is never evicted.

use ring::{hmac, rand::SecureRandom};

pub use crate::shared::{SharedData, StoreError};

pub mod etcd;

/// Shape of the replay store.
#[derive(Debug, Clone, Copy)]
pub struct ReplayConfig {
    /// Number of pre-created bucket keys (default 64). `0` is treated as `1`.
    pub buckets: u32,
    /// Cap of live entries per bucket (default 256). `0` refuses every new entry ([`ReplayError::Full`]).
    pub entries_per_bucket: u32,
    /// CAS retries before giving up with [`ReplayError::Contention`] (default 8): at most
    /// `max_retries + 1` conditional writes per call.
    pub max_retries: u32,
    /// Prefix of the bucket keys, e.g. `"dcr_guard.replay."`.
    pub key_prefix: &'static str,
    /// Most of a bucket one issuer may hold, in percent of `entries_per_bucket` (default 10; 100
    /// switches the limit off). See [`ReplayConfig::issuer_cap`].
    pub issuer_share_percent: u32,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig {
            buckets: 64,
            entries_per_bucket: 256,
            max_retries: 8,
            key_prefix: "dcr_guard.replay.",
            issuer_share_percent: 10,
        }
    }
}

/// Format version stored in the first byte of every non-empty bucket value.
pub const BUCKET_VERSION: u8 = 2;
/// Bytes of the bucket header (the version byte).
pub const HEADER_BYTES: usize = 1;
/// Bytes of the truncated HMAC that identifies an entry.
const ID_BYTES: usize = 16;
/// Bytes of the truncated HMAC of the issuer stored with each entry.
const TAG_BYTES: usize = 8;
/// Bytes of the placement secret.
pub const SECRET_BYTES: usize = 32;
/// Domain separation for the entry id and bucket.
const DIGEST_DOMAIN: &[u8] = b"dcr-guard/replay/v2/pair\0";
/// Domain separation for the issuer tag.
const ISSUER_DOMAIN: &[u8] = b"dcr-guard/replay/v2/issuer\0";
/// The CAS token of the write that creates the secret when it is absent (see [`ensure_secret`]).
const CREATE_TOKEN: u32 = u32::MAX;

impl ReplayConfig {
    /// Bytes one entry takes in a bucket value: a 16-byte truncated HMAC of `(issuer, jti)`, an
    /// 8-byte issuer tag and the expiry as an 8-byte little-endian `i64` (unix seconds).
    pub const ENTRY_BYTES: usize = ID_BYTES + TAG_BYTES + 8;

    /// The bucket count actually used (`buckets`, at least 1).
    pub fn bucket_count(&self) -> u32 {
        self.buckets.max(1)
    }

    /// Most live entries the store can hold: `buckets * entries_per_bucket`. Because pairs are
    /// spread by hash, a bucket can fill (→ [`ReplayError::Full`]) before the whole store does.
    pub fn capacity(&self) -> u64 {
        u64::from(self.bucket_count()) * u64::from(self.entries_per_bucket)
    }

    /// Most live entries one issuer may hold in one bucket: `entries_per_bucket ×
    /// issuer_share_percent / 100`, rounded down, at least 1 (and never more than the bucket).
    pub fn issuer_cap(&self) -> u32 {
        let share = u64::from(self.issuer_share_percent.min(100));
        let cap = u64::from(self.entries_per_bucket) * share / 100;
        u32::try_from(cap)
            .unwrap_or(u32::MAX)
            .max(1)
            .min(self.entries_per_bucket.max(1))
    }

    /// Upper bound of the shared-data bytes used: for every bucket, its key plus a full value
    /// (`HEADER_BYTES + entries_per_bucket * ENTRY_BYTES`), plus the secret's key and its
    /// [`SECRET_BYTES`]. The host's own per-key bookkeeping is not included.
    pub fn max_bytes(&self) -> u64 {
        let value =
            HEADER_BYTES as u64 + u64::from(self.entries_per_bucket) * Self::ENTRY_BYTES as u64;
        let secret = (secret_key(self).len() + SECRET_BYTES) as u64;
        (0..self.bucket_count()).fold(secret, |total, i| {
            total
                .saturating_add(bucket_key(self, i).len() as u64)
                .saturating_add(value)
        })
    }
}

/// Result of [`check_and_record`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayOutcome {
    /// First time seen: recorded until `expires_at`.
    Fresh,
    /// Seen before and still live: a replay.
    Replayed,
}

/// Why the replay store could not decide; every variant fails closed (503).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayError {
    /// CAS contention persisted after the retries: fail closed (503).
    Contention,
    /// The bucket is full of live entries: fail closed (503); never evict a live entry.
    Full,
    /// The issuer already holds its share of the bucket ([`ReplayConfig::issuer_cap`]): that
    /// issuer's new pair is refused (503); other issuers still register.
    IssuerShare,
    /// The host store failed (incl. Kong's full zone), a bucket or the secret holds an unknown
    /// format, or no random secret could be drawn: fail closed (503).
    Store(String),
}

impl std::fmt::Display for ReplayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplayError::Contention => {
                f.write_str("replay store contention persisted after retries")
            }
            ReplayError::Full => f.write_str("replay store bucket is full of live entries"),
            ReplayError::IssuerShare => {
                f.write_str("replay store: the issuer holds its whole share of a bucket")
            }
            ReplayError::Store(m) => write!(f, "replay store: {m}"),
        }
    }
}

impl std::error::Error for ReplayError {}

/// Whether the per-issuer share limits a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Share {
    /// The issuer chooses the `jti` (a TPP's request JWT): at most [`ReplayConfig::issuer_cap`]
    /// live entries per bucket.
    Limited,
    /// The issuer is a trusted directory and no client can mint its `jti`s (SSA `jti`): not
    /// limited.
    Exempt,
}

/// One pair to look up or record.
#[derive(Debug, Clone, Copy)]
pub struct Pair<'a> {
    pub issuer: &'a str,
    pub jti: &'a str,
    pub share: Share,
}

/// The placement secret, as an HMAC key. Its bytes are never exposed; `Debug` is redacted.
#[derive(Clone)]
pub struct Secret(hmac::Key);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

impl Secret {
    fn from_stored(value: &[u8]) -> Result<Secret, ReplayError> {
        if value.len() != SECRET_BYTES {
            return Err(ReplayError::Store(
                "replay secret has an unknown format".to_string(),
            ));
        }
        Ok(Secret(hmac::Key::new(hmac::HMAC_SHA256, value)))
    }
}

/// The shared-data key of the placement secret: `{key_prefix}v2.secret`.
pub fn secret_key(cfg: &ReplayConfig) -> String {
    format!("{}v{}.secret", cfg.key_prefix, BUCKET_VERSION)
}

/// The shared-data key of bucket `index`: `{key_prefix}v2.{index}`.
pub fn bucket_key(cfg: &ReplayConfig, index: u32) -> String {
    format!("{}v{}.{}", cfg.key_prefix, BUCKET_VERSION, index)
}

/// A bucket value with no entries.
pub fn empty_bucket() -> Vec<u8> {
    vec![BUCKET_VERSION]
}

/// The placement secret from shared data, created (with ring's `SystemRandom`) when there is none
/// yet — see [`ensure_secret`]. Every replay check reads it, so all workers always use the one in
/// shared data: the secret is never cached per worker.
pub fn load_secret(store: &mut dyn SharedData, cfg: &ReplayConfig) -> Result<Secret, ReplayError> {
    let rng = ring::rand::SystemRandom::new();
    ensure_secret(store, cfg, &mut || {
        let mut b = [0u8; SECRET_BYTES];
        rng.fill(&mut b).ok().map(|()| b)
    })
}

/// Read the placement secret, creating it from `draw` (32 random bytes) when absent, so that every worker of the
/// process ends up with the same one. Returns what shared data holds, never a local candidate.
///
/// # Creating it without a blind write
///
/// A write without a CAS token is a blind overwrite on Envoy, so two workers configuring at the
/// same moment could each write their own secret and keep using it (the same pair would land in
/// different buckets on different workers, and cross-worker replay detection would break). So the
/// secret is never written with `cas: None` on a host where that overwrites:
/// - absent key (`get` gave no value and no token): write with the token `u32::MAX`. Envoy creates a
///   missing key whatever the token, under its lock, and refuses a present key whose token differs;
///   Kong refuses any token on an absent key (`CasMismatch`);
/// - after that `CasMismatch`, read again: if the key is present another worker created it (we use
///   theirs); if it is still absent the host refuses tokens on absent keys, which is Kong, whose
///   `cas: None` write only creates an absent key — so that write is used there, and only there;
/// - present with an empty value (Envoy's "remove"): replaced by CAS with its token;
/// - then read again and use what is stored. Everything is bounded by `max_retries + 1` writing
///   rounds and a last read, then [`ReplayError::Contention`]. No randomness → [`ReplayError::Store`].
///
/// The one residual case: on Envoy, a concurrent creation whose write took the global CAS token
/// `u32::MAX` (that is, the 4 294 967 295th shared-data write of the process happening exactly
/// then, between our read and our write) would be overwritten. Creation happens at configure time,
/// and the read-per-use of [`load_secret`] means the workers still all agree afterwards; at worst
/// entries recorded in that window under the overwritten secret are not found again.
///
/// On Kong an evicted secret is created again (like an evicted bucket, the entries recorded under
/// the old one are then not found: the documented Kong limitation).
pub fn ensure_secret(
    store: &mut dyn SharedData,
    cfg: &ReplayConfig,
    draw: &mut dyn FnMut() -> Option<[u8; SECRET_BYTES]>,
) -> Result<Secret, ReplayError> {
    let key = secret_key(cfg);
    let mut candidate: Option<[u8; SECRET_BYTES]> = None;
    let rounds = cfg.max_retries.saturating_add(1);
    for round in 0..=rounds {
        let (value, cas) = store.get(&key).map_err(store_error)?;
        if let Some(v) = value {
            return Secret::from_stored(&v);
        }
        if round == rounds {
            break;
        }
        let bytes = match candidate {
            Some(b) => b,
            None => {
                let b = draw().ok_or_else(|| {
                    ReplayError::Store("no randomness for the replay secret".to_string())
                })?;
                candidate = Some(b);
                b
            }
        };
        let token = cas.unwrap_or(CREATE_TOKEN);
        match store.set(&key, &bytes, Some(token)) {
            Ok(()) => continue,
            Err(StoreError::CasMismatch) if cas.is_none() => {
                let (again, again_cas) = store.get(&key).map_err(store_error)?;
                if again.is_none() && again_cas.is_none() {
                    // Still absent although a token write was refused: the host refuses tokens on
                    // absent keys (Kong), where a write without a token only creates.
                    match store.set(&key, &bytes, None) {
                        Ok(()) | Err(StoreError::CasMismatch) => {}
                        Err(e) => return Err(store_error(e)),
                    }
                }
            }
            Err(StoreError::CasMismatch) => {}
            Err(e) => return Err(store_error(e)),
        }
    }
    Err(ReplayError::Contention)
}

/// Create every bucket key that does not exist yet and the secret (see [`ensure_secret`], with
/// ring's `SystemRandom`) when there is none (root context, configure step). Never overwrites an
/// existing bucket: reads first, creates only when absent.
///
/// A key whose value is empty but which has a CAS token (what Envoy's "remove" leaves) already
/// exists and is an empty bucket: it is left alone, [`check_and_record`] updates it through CAS.
///
/// # The residual race (Envoy only)
///
/// On Kong a create (`cas: None`) only succeeds on an absent key, so precreate can never clobber.
/// On Envoy it overwrites, so if worker B reads key `k` as absent, and before B's immediately
/// following write worker A both creates `k` *and* records an entry into it, B's write replaces that
/// bucket with an empty one and the entry is forgotten. This is acceptable because:
/// - entries are only ever added by [`check_and_record`] with `Some(cas)` after a `get` returned a
///   token, and its own create path writes only an *empty* bucket with `None` and then re-reads, so
///   a `None` write never carries or replaces an entry except in this window;
/// - every worker pre-creates all buckets in its configure step before serving, so A must finish
///   pre-creating, configure, receive a request hashing to `k` and record it, all between B's `get(k)`
///   and `set(k)` — two host calls with no code between them;
/// - the worst case is one bucket's entries forgotten once, i.e. a replay inside that window could be
///   accepted once; no entry is ever corrupted.
pub fn precreate(store: &mut dyn SharedData, cfg: &ReplayConfig) -> Result<(), ReplayError> {
    // Both are tried; the first failure is reported.
    let buckets = precreate_buckets(store, cfg);
    let secret = load_secret(store, cfg).map(|_| ());
    buckets.and(secret)
}

/// The bucket part of [`precreate`].
fn precreate_buckets(store: &mut dyn SharedData, cfg: &ReplayConfig) -> Result<(), ReplayError> {
    let empty = empty_bucket();
    for index in 0..cfg.bucket_count() {
        let key = bucket_key(cfg, index);
        let (value, cas) = store.get(&key).map_err(store_error)?;
        if value.is_some() || cas.is_some() {
            continue;
        }
        match store.set(&key, &empty, None) {
            // CasMismatch: Kong found the key present, another worker created it first.
            Ok(()) | Err(StoreError::CasMismatch) => {}
            Err(e) => return Err(store_error(e)),
        }
    }
    Ok(())
}

/// Check-and-record `pair`, remembering it until `expires_at` (unix seconds), with its placement
/// keyed by `secret` (from [`load_secret`]).
///
/// Entries whose expiry is `≤ now` are pruned in place while the bucket is rewritten. Atomic across
/// workers through CAS on the bucket key: read `(value, cas)` → decide → write with `Some(cas)`; on
/// `CasMismatch` re-read and retry, at most `max_retries + 1` conditional writes in all, then
/// [`ReplayError::Contention`]. A replay of a live entry returns [`ReplayOutcome::Replayed`] without
/// writing. A new pair whose issuer already holds [`ReplayConfig::issuer_cap`] live entries of the
/// bucket ([`Share::Limited`]) is refused with [`ReplayError::IssuerShare`]; a bucket full of live
/// entries with [`ReplayError::Full`].
///
/// A bucket that does not exist (not pre-created, or evicted by Kong — its entries are then lost) is
/// created empty with `cas: None` only when `get` reported it absent without a token, then re-read
/// and retried, so the entry itself is always written with `Some(cas)`. Creations are bounded by
/// `max_retries + 1` too. On Kong that create cannot clobber (it only succeeds on an absent key);
/// on Envoy it overwrites, with the same residual race as [`precreate`] — but once the buckets are
/// pre-created Envoy never takes this path (it has no delete and no eviction; its "remove" leaves
/// an empty value with a token, which is updated through CAS like any bucket).
///
/// An `expires_at ≤ now` is remembered until `now + 1`, so that a duplicate racing within the same
/// second is still caught (callers reject expired tokens before this anyway).
///
/// A bucket value in an unknown format fails closed with [`ReplayError::Store`] and is left as is.
pub fn check_and_record(
    store: &mut dyn SharedData,
    cfg: &ReplayConfig,
    secret: &Secret,
    pair: &Pair<'_>,
    now: i64,
    expires_at: i64,
) -> Result<ReplayOutcome, ReplayError> {
    let (id, index) = locate(cfg, secret, pair.issuer, pair.jti);
    let tag = issuer_tag(secret, pair.issuer);
    let key = bucket_key(cfg, index);
    let expires_at = expires_at.max(now.saturating_add(1));
    let cap = usize::try_from(cfg.entries_per_bucket).unwrap_or(usize::MAX);
    let issuer_cap = usize::try_from(cfg.issuer_cap()).unwrap_or(usize::MAX);

    let mut cas_writes: u32 = 0;
    let mut creates: u32 = 0;
    loop {
        let (value, cas) = store.get(&key).map_err(store_error)?;
        let Some(cas) = cas else {
            if value.as_deref().is_some_and(|v| !v.is_empty()) {
                return Err(ReplayError::Store(
                    "replay bucket has a value but no CAS token".to_string(),
                ));
            }
            // Absent: create an empty bucket, then start over to get a token.
            if creates > cfg.max_retries {
                return Err(ReplayError::Contention);
            }
            creates += 1;
            match store.set(&key, &empty_bucket(), None) {
                Ok(()) | Err(StoreError::CasMismatch) => continue,
                Err(e) => return Err(store_error(e)),
            }
        };

        let entries = parse_bucket(value.as_deref().unwrap_or_default())?;
        let mut live: Vec<Entry> = entries.into_iter().filter(|e| e.expires_at > now).collect();
        if live.iter().any(|e| e.id == id) {
            return Ok(ReplayOutcome::Replayed);
        }
        if live.len() >= cap {
            return Err(ReplayError::Full);
        }
        if pair.share == Share::Limited
            && live.iter().filter(|e| e.tag == tag).count() >= issuer_cap
        {
            return Err(ReplayError::IssuerShare);
        }
        live.push(Entry {
            id,
            tag,
            expires_at,
        });
        let encoded = encode_bucket(&live);

        cas_writes += 1;
        match store.set(&key, &encoded, Some(cas)) {
            Ok(()) => return Ok(ReplayOutcome::Fresh),
            Err(StoreError::CasMismatch) => {
                if cas_writes > cfg.max_retries {
                    return Err(ReplayError::Contention);
                }
            }
            Err(e) => return Err(store_error(e)),
        }
    }
}

/// How full the node-local store is (the `dcr_guard.replay_*` gauges): live entries over all
/// buckets, and the fullest bucket's live entries — a bucket full of live entries refuses new
/// pairs (503) before the store as a whole is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fill {
    /// Live entries (`expires_at > now`) over every bucket.
    pub entries: u64,
    /// Live entries of the fullest bucket.
    pub fullest: u32,
}

impl Fill {
    /// The fullest bucket's live entries in percent of `entries_per_bucket` (100 when the cap is 0:
    /// such a store refuses every pair).
    pub fn fullest_percent(&self, cfg: &ReplayConfig) -> u64 {
        match u64::from(cfg.entries_per_bucket) {
            0 => 100,
            cap => (u64::from(self.fullest) * 100 / cap).min(100),
        }
    }
}

/// The store's fill, read a few buckets at a time so that one reading copies a bounded number of
/// bytes out of shared data however large the store is (4096 buckets of 4096 entries would be
/// 512 MiB): each [`FillScan::advance`] reads the next buckets in turn and answers the fill as last
/// read of every bucket. A read: nothing is written or pruned.
#[derive(Debug, Default)]
pub struct FillScan {
    /// Live entries per bucket as last read (unread buckets count as empty).
    counts: Vec<u32>,
    /// The next bucket to read.
    next: u32,
}

impl FillScan {
    /// How many buckets one [`FillScan::advance`] reads: as many as fit in `max_bytes` at their
    /// largest (`1 + entries_per_bucket × 32` bytes each), at least one, at most all of them.
    pub fn buckets_per_pass(cfg: &ReplayConfig, max_bytes: u64) -> u32 {
        let bucket = HEADER_BYTES as u64
            + u64::from(cfg.entries_per_bucket) * ReplayConfig::ENTRY_BYTES as u64;
        let n = max_bytes / bucket.max(1);
        u32::try_from(n)
            .unwrap_or(u32::MAX)
            .clamp(1, cfg.bucket_count())
    }

    /// Read the next [`FillScan::buckets_per_pass`] buckets (an absent bucket is empty; one that
    /// cannot be read or parsed is an error: its fill is unknown, and [`check_and_record`] fails
    /// closed on it too), then the fill over every bucket as last read.
    pub fn advance(
        &mut self,
        store: &dyn SharedData,
        cfg: &ReplayConfig,
        now: i64,
        max_bytes: u64,
    ) -> Result<Fill, ReplayError> {
        let buckets = cfg.bucket_count();
        let len = usize::try_from(buckets).unwrap_or(usize::MAX);
        if self.counts.len() != len {
            self.counts = vec![0; len];
            self.next = 0;
        }
        for _ in 0..Self::buckets_per_pass(cfg, max_bytes) {
            let index = self.next % buckets;
            self.next = (index + 1) % buckets;
            let (value, _) = store.get(&bucket_key(cfg, index)).map_err(store_error)?;
            let live = parse_bucket(value.as_deref().unwrap_or_default())?
                .iter()
                .filter(|e| e.expires_at > now)
                .count();
            if let Some(c) = usize::try_from(index)
                .ok()
                .and_then(|i| self.counts.get_mut(i))
            {
                *c = u32::try_from(live).unwrap_or(u32::MAX);
            }
        }
        Ok(Fill {
            entries: self.counts.iter().map(|c| u64::from(*c)).sum(),
            fullest: self.counts.iter().copied().max().unwrap_or(0),
        })
    }
}

/// Whether `(issuer, jti)` is live in the store, without recording it (a read; the decision is
/// still [`check_and_record`]'s, which is atomic).
pub fn seen(
    store: &dyn SharedData,
    cfg: &ReplayConfig,
    secret: &Secret,
    pair: &Pair<'_>,
    now: i64,
) -> Result<bool, ReplayError> {
    let (id, index) = locate(cfg, secret, pair.issuer, pair.jti);
    let (value, _) = store.get(&bucket_key(cfg, index)).map_err(store_error)?;
    match value {
        None => Ok(false),
        Some(v) => Ok(parse_bucket(&v)?
            .iter()
            .any(|e| e.id == id && e.expires_at > now)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    id: [u8; ID_BYTES],
    tag: [u8; TAG_BYTES],
    expires_at: i64,
}

fn store_error(e: StoreError) -> ReplayError {
    match e {
        StoreError::Full => ReplayError::Store("host shared data is full".to_string()),
        StoreError::CasMismatch => ReplayError::Store("unexpected CAS mismatch".to_string()),
        StoreError::Other(m) => ReplayError::Store(m),
    }
}

/// Copy the first `N` bytes of `src` (zero-padded if shorter; never panics).
fn take<const N: usize>(src: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    for (dst, s) in out.iter_mut().zip(src.iter()) {
        *dst = *s;
    }
    out
}

/// The entry id (truncated HMAC) and the bucket index of `(issuer, jti)`.
fn locate(cfg: &ReplayConfig, secret: &Secret, issuer: &str, jti: &str) -> ([u8; ID_BYTES], u32) {
    let mut ctx = hmac::Context::with_key(&secret.0);
    ctx.update(DIGEST_DOMAIN);
    ctx.update(&(issuer.len() as u64).to_le_bytes());
    ctx.update(issuer.as_bytes());
    ctx.update(&(jti.len() as u64).to_le_bytes());
    ctx.update(jti.as_bytes());
    let tag = ctx.sign();
    let bytes = tag.as_ref();

    let id = take::<ID_BYTES>(bytes);
    let pick = take::<8>(bytes.get(ID_BYTES..).unwrap_or_default());
    let index = u64::from_le_bytes(pick) % u64::from(cfg.bucket_count());
    // index < bucket_count ≤ u32::MAX.
    (id, u32::try_from(index).unwrap_or(0))
}

/// The issuer tag stored with each entry (truncated HMAC of the issuer).
fn issuer_tag(secret: &Secret, issuer: &str) -> [u8; TAG_BYTES] {
    let mut ctx = hmac::Context::with_key(&secret.0);
    ctx.update(ISSUER_DOMAIN);
    ctx.update(&(issuer.len() as u64).to_le_bytes());
    ctx.update(issuer.as_bytes());
    take::<TAG_BYTES>(ctx.sign().as_ref())
}

/// Parse a bucket value; empty means an empty bucket. Anything else that is not version 2 with a
/// whole number of entries is an unknown format (fail closed).
fn parse_bucket(value: &[u8]) -> Result<Vec<Entry>, ReplayError> {
    let unknown = || ReplayError::Store("replay bucket has an unknown format".to_string());
    let Some((&version, body)) = value.split_first() else {
        return Ok(Vec::new());
    };
    if version != BUCKET_VERSION || body.len() % ReplayConfig::ENTRY_BYTES != 0 {
        return Err(unknown());
    }
    let mut entries = Vec::with_capacity(body.len() / ReplayConfig::ENTRY_BYTES);
    for chunk in body.chunks_exact(ReplayConfig::ENTRY_BYTES) {
        let rest = chunk.get(ID_BYTES..).unwrap_or_default();
        let exp = rest.get(TAG_BYTES..).unwrap_or_default();
        entries.push(Entry {
            id: take::<ID_BYTES>(chunk),
            tag: take::<TAG_BYTES>(rest),
            expires_at: i64::from_le_bytes(take::<8>(exp)),
        });
    }
    Ok(entries)
}

fn encode_bucket(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + entries.len() * ReplayConfig::ENTRY_BYTES);
    out.push(BUCKET_VERSION);
    for e in entries {
        out.extend_from_slice(&e.id);
        out.extend_from_slice(&e.tag);
        out.extend_from_slice(&e.expires_at.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::MemoryStore;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;

    const ISS: &str = "https://tpp.example/issuer";

    // ---------------------------------------------------------------- fakes

    // Envoy's and Kong's shared data are the core's in-memory store (`MemoryStore::envoy()`,
    // `MemoryStore::kong()`). The stores below are fault injectors for what a real store cannot
    // be asked to do: refuse CAS writes on demand (`Flaky`), fail every call (`Broken`), hold a
    // value without a token (`NoToken`), lose every key at once (`Forgetful`).

    /// Fault injector over an Envoy store: fails the first `mismatches` conditional writes with
    /// `CasMismatch` (as if another worker had just written) and counts conditional writes.
    struct Flaky {
        inner: MemoryStore,
        mismatches: u32,
        cas_sets: u32,
    }

    impl SharedData for Flaky {
        fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
            self.inner.get(key)
        }
        fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
            // The secret is created once by `pre` and not part of the contention under test.
            if cas.is_some() && !key.ends_with(".secret") {
                self.cas_sets += 1;
                if self.mismatches > 0 {
                    self.mismatches -= 1;
                    return Err(StoreError::CasMismatch);
                }
            }
            self.inner.set(key, value, cas)
        }
    }

    /// Fault injector: a store whose calls fail.
    struct Broken {
        get_fails: bool,
    }

    impl SharedData for Broken {
        fn get(&self, _key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
            if self.get_fails {
                Err(StoreError::Other("boom".to_string()))
            } else {
                Ok((Some(empty_bucket()), Some(1)))
            }
        }
        fn set(&mut self, _: &str, _: &[u8], _: Option<u32>) -> Result<(), StoreError> {
            Err(StoreError::Other("write failed".to_string()))
        }
    }

    /// A store shape with the per-issuer share off (100 %), for the tests of the bucket mechanics.
    fn cfg(buckets: u32, entries: u32) -> ReplayConfig {
        ReplayConfig {
            buckets,
            entries_per_bucket: entries,
            issuer_share_percent: 100,
            ..ReplayConfig::default()
        }
    }

    const TEST_SECRET: [u8; SECRET_BYTES] = [7; SECRET_BYTES];

    fn secret() -> Secret {
        Secret::from_stored(&TEST_SECRET).unwrap()
    }

    /// `precreate` with [`TEST_SECRET`] as the random draw.
    fn pre(store: &mut dyn SharedData, c: &ReplayConfig) -> Result<(), ReplayError> {
        ensure_secret(store, c, &mut || Some(TEST_SECRET))?;
        precreate_buckets(store, c)
    }

    fn loc(c: &ReplayConfig, iss: &str, jti: &str) -> ([u8; ID_BYTES], u32) {
        locate(c, &secret(), iss, jti)
    }

    fn rec(
        store: &mut dyn SharedData,
        c: &ReplayConfig,
        iss: &str,
        jti: &str,
        now: i64,
        exp: i64,
    ) -> Result<ReplayOutcome, ReplayError> {
        let pair = Pair {
            issuer: iss,
            jti,
            share: Share::Limited,
        };
        check_and_record(store, c, &secret(), &pair, now, exp)
    }

    /// `n` distinct jtis that all land in bucket `index`.
    fn jtis_in_bucket(c: &ReplayConfig, index: u32, n: usize) -> Vec<String> {
        (0u64..)
            .map(|i| format!("jti-{i}"))
            .filter(|j| loc(c, ISS, j).1 == index)
            .take(n)
            .collect()
    }

    // ---------------------------------------------------------------- basics

    #[test]
    fn defaults_and_sizes() {
        let c = ReplayConfig::default();
        assert_eq!(
            (c.buckets, c.entries_per_bucket, c.max_retries, c.key_prefix),
            (64, 256, 8, "dcr_guard.replay.")
        );
        assert_eq!(c.issuer_share_percent, 10);
        assert_eq!(c.issuer_cap(), 25);
        assert_eq!(ReplayConfig::ENTRY_BYTES, 32);
        assert_eq!(c.capacity(), 64 * 256);
        // 64 keys "dcr_guard.replay.v2.N" (10 with one digit, 54 with two) + 64 full values, and
        // the secret (its key and 32 bytes).
        let keys = 10 * "dcr_guard.replay.v2.0".len() + 54 * "dcr_guard.replay.v2.10".len();
        let secret = "dcr_guard.replay.v2.secret".len() + 32;
        assert_eq!(c.max_bytes(), (keys + 64 * (1 + 256 * 32) + secret) as u64);
        assert_eq!(c.max_bytes(), 525_808);
        assert_eq!(bucket_key(&c, 7), "dcr_guard.replay.v2.7");
        assert_eq!(secret_key(&c), "dcr_guard.replay.v2.secret");
    }

    #[test]
    fn fresh_then_replayed_on_both_hosts() {
        let c = ReplayConfig::default();
        let mut envoy = MemoryStore::envoy();
        let mut kong = MemoryStore::kong();
        pre(&mut envoy, &c).unwrap();
        pre(&mut kong, &c).unwrap();
        for store in [&mut envoy as &mut dyn SharedData, &mut kong] {
            assert_eq!(
                rec(store, &c, ISS, "j1", 100, 400),
                Ok(ReplayOutcome::Fresh)
            );
            assert_eq!(
                rec(store, &c, ISS, "j1", 101, 400),
                Ok(ReplayOutcome::Replayed)
            );
            assert_eq!(
                rec(store, &c, ISS, "j2", 101, 400),
                Ok(ReplayOutcome::Fresh)
            );
        }
    }

    #[test]
    fn replayed_does_not_write() {
        let c = ReplayConfig::default();
        let mut s = MemoryStore::envoy();
        pre(&mut s, &c).unwrap();
        rec(&mut s, &c, ISS, "j", 0, 100).unwrap();
        let sets = s.sets();
        let snapshot = s.clone();
        assert_eq!(
            rec(&mut s, &c, ISS, "j", 1, 100),
            Ok(ReplayOutcome::Replayed)
        );
        assert_eq!(s.sets(), sets);
        assert_eq!(s, snapshot);
    }

    #[test]
    fn different_issuer_same_jti_is_fresh() {
        let c = ReplayConfig::default();
        let mut s = MemoryStore::envoy();
        pre(&mut s, &c).unwrap();
        assert_eq!(
            rec(&mut s, &c, "iss-a", "j", 0, 100),
            Ok(ReplayOutcome::Fresh)
        );
        assert_eq!(
            rec(&mut s, &c, "iss-b", "j", 0, 100),
            Ok(ReplayOutcome::Fresh)
        );
        assert_eq!(
            rec(&mut s, &c, "iss-a", "j", 0, 100),
            Ok(ReplayOutcome::Replayed)
        );
        assert_eq!(
            rec(&mut s, &c, "iss-b", "j", 0, 100),
            Ok(ReplayOutcome::Replayed)
        );
    }

    #[test]
    fn length_prefix_prevents_concatenation_collisions() {
        let c = cfg(1, 16);
        assert_ne!(loc(&c, "ab", "c").0, loc(&c, "a", "bc").0);
        assert_ne!(loc(&c, "", "abc").0, loc(&c, "abc", "").0);
        let mut s = MemoryStore::envoy();
        pre(&mut s, &c).unwrap();
        assert_eq!(rec(&mut s, &c, "ab", "c", 0, 100), Ok(ReplayOutcome::Fresh));
        assert_eq!(rec(&mut s, &c, "a", "bc", 0, 100), Ok(ReplayOutcome::Fresh));
        assert_eq!(rec(&mut s, &c, "abc", "", 0, 100), Ok(ReplayOutcome::Fresh));
        assert_eq!(rec(&mut s, &c, "", "abc", 0, 100), Ok(ReplayOutcome::Fresh));
    }

    #[test]
    fn buckets_are_spread_uniformly() {
        let c = ReplayConfig::default();
        let mut counts = [0u32; 64];
        for i in 0..64 * 200 {
            let (_, b) = loc(&c, ISS, &format!("{i}"));
            counts[b as usize] += 1;
        }
        for n in counts {
            assert!((120..=280).contains(&n), "{counts:?}");
        }
    }

    // ---------------------------------------------------------------- expiry and bounds

    #[test]
    fn expired_entry_is_fresh_again() {
        let c = ReplayConfig::default();
        let mut s = MemoryStore::envoy();
        pre(&mut s, &c).unwrap();
        assert_eq!(
            rec(&mut s, &c, ISS, "j", 100, 200),
            Ok(ReplayOutcome::Fresh)
        );
        assert_eq!(
            rec(&mut s, &c, ISS, "j", 199, 300),
            Ok(ReplayOutcome::Replayed)
        );
        // expiry ≤ now: pruned, fresh again, now remembered until 400.
        assert_eq!(
            rec(&mut s, &c, ISS, "j", 200, 400),
            Ok(ReplayOutcome::Fresh)
        );
        assert_eq!(
            rec(&mut s, &c, ISS, "j", 399, 500),
            Ok(ReplayOutcome::Replayed)
        );
        let key = bucket_key(&c, loc(&c, ISS, "j").1);
        let entries = parse_bucket(&s.raw(&key).unwrap()).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].expires_at, 400);
    }

    #[test]
    fn expiry_in_the_past_is_remembered_for_one_second() {
        let c = ReplayConfig::default();
        let mut s = MemoryStore::envoy();
        pre(&mut s, &c).unwrap();
        assert_eq!(rec(&mut s, &c, ISS, "j", 100, 50), Ok(ReplayOutcome::Fresh));
        assert_eq!(
            rec(&mut s, &c, ISS, "j", 100, 50),
            Ok(ReplayOutcome::Replayed)
        );
        assert_eq!(rec(&mut s, &c, ISS, "j", 101, 50), Ok(ReplayOutcome::Fresh));
        // Extremes do not overflow.
        assert_eq!(
            rec(&mut s, &c, ISS, "k", i64::MAX, i64::MIN),
            Ok(ReplayOutcome::Fresh)
        );
        assert_eq!(
            rec(&mut s, &c, ISS, "l", i64::MIN, i64::MAX),
            Ok(ReplayOutcome::Fresh)
        );
        assert_eq!(
            rec(&mut s, &c, ISS, "l", i64::MAX - 1, 0),
            Ok(ReplayOutcome::Replayed)
        );
    }

    /// The whole store read in one pass.
    fn fill(store: &dyn SharedData, c: &ReplayConfig, now: i64) -> Result<Fill, ReplayError> {
        FillScan::default().advance(store, c, now, u64::MAX)
    }

    #[test]
    fn fill_counts_live_entries_and_the_fullest_bucket() {
        // (pairs recorded at t=100 expiring at 200, time of the reading) → live entries
        let c = cfg(4, 8);
        let cases: [(&[&str], i64, u64); 4] = [
            (&[], 150, 0),
            (&["a"], 150, 1),
            (&["a", "b", "c", "d", "e", "f", "g", "h", "i"], 150, 9),
            (&["a", "b", "c"], 200, 0),
        ];
        for (jtis, at, entries) in cases {
            let mut s = MemoryStore::default();
            pre(&mut s, &c).unwrap();
            let mut per_bucket = [0u32; 4];
            for jti in jtis {
                rec(&mut s, &c, "iss", jti, 100, 200).unwrap();
                per_bucket[loc(&c, "iss", jti).1 as usize] += 1;
            }
            let fill = fill(&s, &c, at).unwrap();
            assert_eq!(fill.entries, entries, "{jtis:?} at {at}");
            let fullest = if at < 200 {
                *per_bucket.iter().max().unwrap()
            } else {
                0
            };
            assert_eq!(fill.fullest, fullest, "{jtis:?} at {at}");
            assert_eq!(fill.fullest_percent(&c), u64::from(fullest) * 100 / 8);
        }
        // A bucket in an unknown format: the fill is unknown.
        let mut s = MemoryStore::default();
        pre(&mut s, &c).unwrap();
        s.set(&bucket_key(&c, 2), b"\x09junk", None).unwrap();
        assert!(fill(&s, &c, 0).is_err());
        // No bucket at all (not pre-created): empty.
        assert_eq!(
            fill(&MemoryStore::default(), &c, 0).unwrap(),
            Fill::default()
        );
        assert_eq!(
            Fill {
                entries: 0,
                fullest: 0
            }
            .fullest_percent(&cfg(1, 0)),
            100
        );
    }

    #[test]
    fn a_fill_reading_copies_a_bounded_number_of_bytes() {
        /// A store that counts the buckets read.
        struct Counting(MemoryStore, Cell<u32>);
        impl SharedData for Counting {
            fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
                self.1.set(self.1.get() + 1);
                self.0.get(key)
            }
            fn set(&mut self, k: &str, v: &[u8], c: Option<u32>) -> Result<(), StoreError> {
                self.0.set(k, v, c)
            }
        }
        // Buckets of 8 entries: 257 bytes at most each.
        let c = cfg(10, 8);
        let cases = [
            (0, 1),
            (257, 1),
            (3 * 257, 3),
            (3 * 257 + 256, 3),
            (u64::MAX, 10),
        ];
        for (budget, per_pass) in cases {
            assert_eq!(FillScan::buckets_per_pass(&c, budget), per_pass, "{budget}");
        }
        let mut s = Counting(MemoryStore::default(), Cell::new(0));
        pre(&mut s.0, &c).unwrap();
        let jtis: Vec<String> = (0..20).map(|i| format!("j{i}")).collect();
        for jti in &jtis {
            rec(&mut s.0, &c, "iss", jti, 100, 200).unwrap();
        }
        // Three buckets a pass: every bucket read once in four passes, then the whole fill.
        let mut scan = FillScan::default();
        let mut last = Fill::default();
        for pass in 1..=4 {
            s.1.set(0);
            last = scan.advance(&s, &c, 150, 3 * 257).unwrap();
            assert!(s.1.get() <= 3, "pass {pass} read {} buckets", s.1.get());
            if pass == 1 {
                assert!(last.entries < 20, "pass {pass}: {last:?}");
            }
        }
        assert_eq!(last, fill(&s, &c, 150).unwrap());
        assert_eq!(last.entries, 20);
    }

    #[test]
    fn pruning_makes_room_for_new_entries() {
        let c = cfg(1, 4);
        let mut s = MemoryStore::envoy();
        pre(&mut s, &c).unwrap();
        for i in 0..4 {
            assert_eq!(
                rec(&mut s, &c, ISS, &format!("old{i}"), 100, 150),
                Ok(ReplayOutcome::Fresh)
            );
        }
        assert_eq!(
            rec(&mut s, &c, ISS, "new0", 149, 500),
            Err(ReplayError::Full)
        );
        // At 150 the old entries have expired (expiry ≤ now): four new ones fit.
        for i in 0..4 {
            assert_eq!(
                rec(&mut s, &c, ISS, &format!("new{i}"), 150, 500),
                Ok(ReplayOutcome::Fresh)
            );
        }
        let key = bucket_key(&c, 0);
        let entries = parse_bucket(&s.raw(&key).unwrap()).unwrap();
        assert_eq!(entries.len(), 4);
        assert!(entries.iter().all(|e| e.expires_at == 500));
        assert_eq!(
            rec(&mut s, &c, ISS, "old0", 151, 500),
            Err(ReplayError::Full)
        );
    }

    #[test]
    fn partially_expired_bucket_is_pruned_on_write() {
        let c = cfg(1, 8);
        let mut s = MemoryStore::envoy();
        pre(&mut s, &c).unwrap();
        rec(&mut s, &c, ISS, "a", 0, 10).unwrap();
        rec(&mut s, &c, ISS, "b", 0, 30).unwrap();
        rec(&mut s, &c, ISS, "c", 20, 40).unwrap(); // prunes "a"
        let entries = parse_bucket(&s.raw(&bucket_key(&c, 0)).unwrap()).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(
            rec(&mut s, &c, ISS, "b", 21, 40),
            Ok(ReplayOutcome::Replayed)
        );
        assert_eq!(rec(&mut s, &c, ISS, "a", 21, 40), Ok(ReplayOutcome::Fresh));
    }

    #[test]
    fn full_of_live_entries_is_refused_and_nothing_is_evicted() {
        let c = cfg(2, 3);
        let jtis = jtis_in_bucket(&c, 1, 4);
        for store in [
            &mut MemoryStore::envoy() as &mut dyn SharedData,
            &mut MemoryStore::kong(),
        ] {
            pre(store, &c).unwrap();
            for j in &jtis[..3] {
                assert_eq!(rec(store, &c, ISS, j, 0, 100), Ok(ReplayOutcome::Fresh));
            }
            let key = bucket_key(&c, 1);
            let before = store.get(&key).unwrap();
            assert_eq!(
                rec(store, &c, ISS, &jtis[3], 50, 100),
                Err(ReplayError::Full)
            );
            assert_eq!(store.get(&key).unwrap(), before);
            for j in &jtis[..3] {
                assert_eq!(rec(store, &c, ISS, j, 50, 100), Ok(ReplayOutcome::Replayed));
            }
            // The other bucket is unaffected.
            let other = jtis_in_bucket(&c, 0, 1);
            assert_eq!(
                rec(store, &c, ISS, &other[0], 50, 100),
                Ok(ReplayOutcome::Fresh)
            );
        }
    }

    #[test]
    fn degenerate_config_never_panics() {
        let c = cfg(0, 0);
        let mut s = MemoryStore::envoy();
        pre(&mut s, &c).unwrap();
        assert_eq!(s.len(), 2); // one bucket and the secret
        assert_eq!(rec(&mut s, &c, ISS, "j", 0, 10), Err(ReplayError::Full));
        assert_eq!(c.capacity(), 0);
        assert_eq!(c.issuer_cap(), 1);
        assert_eq!(
            c.max_bytes(),
            (bucket_key(&c, 0).len() + 1 + secret_key(&c).len() + SECRET_BYTES) as u64
        );
    }

    #[test]
    fn entry_bytes_and_max_bytes_match_a_full_store() {
        let c = cfg(4, 8);
        let mut s = MemoryStore::envoy();
        pre(&mut s, &c).unwrap();
        let mut stored = 0u64;
        for i in 0u64.. {
            match rec(&mut s, &c, ISS, &format!("j{i}"), 0, 1000) {
                Ok(ReplayOutcome::Fresh) => stored += 1,
                Err(ReplayError::Full) => {}
                other => panic!("{other:?}"),
            }
            if stored == c.capacity() {
                break;
            }
        }
        for b in 0..4 {
            let v = s.raw(&bucket_key(&c, b)).unwrap();
            assert_eq!(v.len(), HEADER_BYTES + 8 * ReplayConfig::ENTRY_BYTES);
            assert_eq!(parse_bucket(&v).unwrap().len(), 8);
        }
        let used: usize = s.used();
        assert_eq!(used as u64, c.max_bytes());
        assert_eq!(
            encode_bucket(&[Entry {
                id: [7; 16],
                tag: [9; 8],
                expires_at: -2
            }])
            .len(),
            HEADER_BYTES + ReplayConfig::ENTRY_BYTES
        );
    }

    #[test]
    fn format_round_trips() {
        let entries = vec![
            Entry {
                id: [1; 16],
                tag: [9; 8],
                expires_at: 0,
            },
            Entry {
                id: [2; 16],
                tag: [9; 8],
                expires_at: i64::MIN,
            },
            Entry {
                id: [3; 16],
                tag: [9; 8],
                expires_at: i64::MAX,
            },
        ];
        let bytes = encode_bucket(&entries);
        assert_eq!(bytes[0], BUCKET_VERSION);
        assert_eq!(&bytes[1..17], &[1u8; 16]);
        assert_eq!(&bytes[17..25], &[9u8; 8]);
        assert_eq!(&bytes[25..33], &0i64.to_le_bytes());
        assert_eq!(parse_bucket(&bytes).unwrap(), entries);
        assert_eq!(parse_bucket(&[]).unwrap(), vec![]);
        assert_eq!(parse_bucket(&empty_bucket()).unwrap(), vec![]);
    }

    // ---------------------------------------------------------------- contention

    #[test]
    fn contention_then_success_is_fresh() {
        let c = ReplayConfig::default();
        let mut s = Flaky {
            inner: MemoryStore::envoy(),
            mismatches: 3,
            cas_sets: 0,
        };
        pre(&mut s, &c).unwrap();
        assert_eq!(rec(&mut s, &c, ISS, "j", 0, 100), Ok(ReplayOutcome::Fresh));
        assert_eq!(s.cas_sets, 4);
        assert_eq!(
            rec(&mut s, &c, ISS, "j", 0, 100),
            Ok(ReplayOutcome::Replayed)
        );
        // Exactly max_retries mismatches still succeeds on the last attempt.
        let mut s = Flaky {
            inner: MemoryStore::envoy(),
            mismatches: 8,
            cas_sets: 0,
        };
        pre(&mut s, &c).unwrap();
        assert_eq!(rec(&mut s, &c, ISS, "j", 0, 100), Ok(ReplayOutcome::Fresh));
        assert_eq!(s.cas_sets, 9);
    }

    #[test]
    fn persistent_contention_gives_up_after_max_retries_plus_one_attempts() {
        for retries in [0, 1, 8] {
            let c = ReplayConfig {
                max_retries: retries,
                ..ReplayConfig::default()
            };
            let mut s = Flaky {
                inner: MemoryStore::envoy(),
                mismatches: u32::MAX,
                cas_sets: 0,
            };
            pre(&mut s, &c).unwrap();
            assert_eq!(
                rec(&mut s, &c, ISS, "j", 0, 100),
                Err(ReplayError::Contention)
            );
            assert_eq!(s.cas_sets, retries + 1);
            // Nothing was recorded.
            s.mismatches = 0;
            assert_eq!(rec(&mut s, &c, ISS, "j", 0, 100), Ok(ReplayOutcome::Fresh));
        }
    }

    /// Two workers on one store. Worker A's calls go through `Interleave`, which runs worker B's
    /// whole `check_and_record` just before A's `n`-th host call; every `n` is tried.
    struct Handle<S>(Rc<RefCell<S>>);

    impl<S: SharedData> SharedData for Handle<S> {
        fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
            self.0.borrow().get(key)
        }
        fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
            self.0.borrow_mut().set(key, value, cas)
        }
    }

    struct Interleave<S> {
        handle: Handle<S>,
        ops: Cell<usize>,
        at: usize,
        other: RefCell<Option<Box<dyn FnOnce()>>>,
    }

    impl<S> Interleave<S> {
        fn before_op(&self) {
            if self.ops.get() == self.at {
                let f = self.other.borrow_mut().take();
                if let Some(f) = f {
                    f();
                }
            }
            self.ops.set(self.ops.get() + 1);
        }
    }

    impl<S: SharedData> SharedData for Interleave<S> {
        fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
            self.before_op();
            self.handle.get(key)
        }
        fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
            self.before_op();
            self.handle.set(key, value, cas)
        }
    }

    /// Runs A on `a_jti` with B (on `b_jti`) inserted before A's host call number `at`; returns the
    /// store, A's outcome and B's (None when A finished in fewer than `at` calls).
    fn race(
        new: fn() -> MemoryStore,
        c: ReplayConfig,
        precreated: bool,
        at: usize,
        a_jti: &str,
        b_jti: &'static str,
    ) -> (
        Rc<RefCell<MemoryStore>>,
        ReplayOutcome,
        Option<ReplayOutcome>,
    ) {
        let shared = Rc::new(RefCell::new(new()));
        if precreated {
            pre(&mut Handle(shared.clone()), &c).unwrap();
        }
        let b_result: Rc<RefCell<Option<ReplayOutcome>>> = Rc::new(RefCell::new(None));
        let (b_store, b_out) = (shared.clone(), b_result.clone());
        let other: Box<dyn FnOnce()> = Box::new(move || {
            let r = rec(&mut Handle(b_store), &c, ISS, b_jti, 0, 100).unwrap();
            *b_out.borrow_mut() = Some(r);
        });
        let mut a = Interleave {
            handle: Handle(shared.clone()),
            ops: Cell::new(0),
            at,
            other: RefCell::new(Some(other)),
        };
        let ra = rec(&mut a, &c, ISS, a_jti, 0, 100).unwrap();
        let rb = b_result.borrow().clone();
        (shared, ra, rb)
    }

    fn fresh_count(ra: &ReplayOutcome, rb: &ReplayOutcome) -> usize {
        [ra, rb]
            .iter()
            .filter(|r| ***r == ReplayOutcome::Fresh)
            .count()
    }

    #[test]
    fn two_workers_same_jti_exactly_one_fresh() {
        let c = cfg(1, 16);
        let mut tried = 0;
        for at in 0..8 {
            if let (_, ra, Some(rb)) = race(MemoryStore::envoy, c, true, at, "same", "same") {
                assert_eq!(fresh_count(&ra, &rb), 1, "envoy at={at}: {ra:?} {rb:?}");
                tried += 1;
            }
            for precreated in [true, false] {
                if let (_, ra, Some(rb)) =
                    race(MemoryStore::kong, c, precreated, at, "same", "same")
                {
                    assert_eq!(fresh_count(&ra, &rb), 1, "kong {precreated} at={at}");
                    tried += 1;
                }
            }
        }
        // Envoy precreated: get+set → B before op 0 and op 1; likewise for Kong; Kong without
        // precreate: get, create, get, set.
        assert!(tried >= 8, "{tried}");
    }

    #[test]
    fn two_workers_same_bucket_lose_no_update() {
        fn check(new: fn() -> MemoryStore, c: ReplayConfig, precreated: bool) {
            for at in 0..8 {
                let (shared, ra, rb) = race(new, c, precreated, at, "a-jti", "b-jti");
                assert_eq!(ra, ReplayOutcome::Fresh);
                if rb.is_none() {
                    continue;
                }
                assert_eq!(rb, Some(ReplayOutcome::Fresh));
                let mut h = Handle(shared);
                assert_eq!(
                    rec(&mut h, &c, ISS, "a-jti", 1, 100),
                    Ok(ReplayOutcome::Replayed)
                );
                assert_eq!(
                    rec(&mut h, &c, ISS, "b-jti", 1, 100),
                    Ok(ReplayOutcome::Replayed)
                );
            }
        }
        let c = cfg(1, 16);
        check(MemoryStore::envoy, c, true);
        check(MemoryStore::kong, c, true);
        check(MemoryStore::kong, c, false);
    }

    /// The residual race documented on [`precreate`], pinned: on Envoy, without pre-created
    /// buckets, B can create the bucket and record into it between A's "absent" read and A's
    /// create, which overwrites it. This is why buckets are pre-created at configure time (after
    /// which Envoy never takes the create path: it has no delete and no eviction).
    #[test]
    fn envoy_without_precreate_has_the_documented_create_race() {
        let c = cfg(1, 16);
        let (_, ra, rb) = race(MemoryStore::envoy, c, false, 1, "same", "same");
        assert_eq!((ra, rb), (ReplayOutcome::Fresh, Some(ReplayOutcome::Fresh)));
        // Every other insertion point is still exact.
        for at in [0, 2, 3] {
            let (_, ra, rb) = race(MemoryStore::envoy, c, false, at, "same", "same");
            assert_eq!(fresh_count(&ra, &rb.unwrap()), 1, "at={at}");
        }
    }

    #[test]
    fn a_cas_mismatch_actually_happens_in_the_race() {
        // Both read the same token; B writes first; A's write mismatches and A retries.
        let c = cfg(1, 16);
        let shared = Rc::new(RefCell::new(MemoryStore::envoy()));
        pre(&mut Handle(shared.clone()), &c).unwrap();
        let mut a = Handle(shared.clone());
        let mut b = Handle(shared.clone());
        let key = bucket_key(&c, 0);
        let (_, cas_a) = a.get(&key).unwrap();
        let (_, cas_b) = b.get(&key).unwrap();
        assert_eq!(cas_a, cas_b);
        assert_eq!(rec(&mut b, &c, ISS, "x", 0, 10), Ok(ReplayOutcome::Fresh));
        assert_eq!(
            a.set(&key, &empty_bucket(), cas_a),
            Err(StoreError::CasMismatch)
        );
        assert_eq!(
            rec(&mut a, &c, ISS, "x", 0, 10),
            Ok(ReplayOutcome::Replayed)
        );
    }

    // ---------------------------------------------------------------- precreate

    #[test]
    fn precreate_creates_every_bucket_empty() {
        let c = cfg(5, 4);
        let mut s = MemoryStore::kong();
        pre(&mut s, &c).unwrap();
        assert_eq!(s.len(), 6);
        assert_eq!(s.raw(&secret_key(&c)), Some(TEST_SECRET.to_vec()));
        for i in 0..5 {
            assert_eq!(s.raw(&bucket_key(&c, i)), Some(empty_bucket()));
        }
    }

    #[test]
    fn precreate_twice_does_not_clobber() {
        let c = cfg(4, 8);
        let key = bucket_key(&c, loc(&c, ISS, "j").1);
        let mut envoy = MemoryStore::envoy();
        pre(&mut envoy, &c).unwrap();
        rec(&mut envoy, &c, ISS, "j", 0, 100).unwrap();
        let before = envoy.raw(&key);
        let sets = envoy.sets();
        pre(&mut envoy, &c).unwrap();
        assert_eq!(envoy.sets(), sets);
        assert_eq!(envoy.raw(&key), before);
        assert_eq!(
            rec(&mut envoy, &c, ISS, "j", 1, 100),
            Ok(ReplayOutcome::Replayed)
        );

        let mut kong = MemoryStore::kong();
        pre(&mut kong, &c).unwrap();
        rec(&mut kong, &c, ISS, "j", 0, 100).unwrap();
        let before = kong.raw(&key);
        pre(&mut kong, &c).unwrap();
        assert_eq!(kong.raw(&key), before);
        assert_eq!(
            rec(&mut kong, &c, ISS, "j", 1, 100),
            Ok(ReplayOutcome::Replayed)
        );
    }

    #[test]
    fn precreate_leaves_corrupt_and_removed_buckets_alone() {
        let c = cfg(2, 8);
        let mut s = MemoryStore::envoy();
        s.put_raw(&bucket_key(&c, 0), b"\x09garbage");
        s.remove(&bucket_key(&c, 1));
        ensure_secret(&mut s, &c, &mut || Some(TEST_SECRET)).unwrap();
        let sets = s.sets();
        pre(&mut s, &c).unwrap();
        assert_eq!(s.sets(), sets);
        assert_eq!(s.raw(&bucket_key(&c, 0)).unwrap(), b"\x09garbage");
    }

    #[test]
    fn envoy_removed_bucket_is_empty_and_updated_by_cas() {
        let c = cfg(1, 8);
        let mut s = MemoryStore::envoy();
        pre(&mut s, &c).unwrap();
        rec(&mut s, &c, ISS, "j", 0, 100).unwrap();
        s.remove(&bucket_key(&c, 0)); // stores an empty value
        assert_eq!(s.get(&bucket_key(&c, 0)).unwrap().0, None);
        assert_eq!(rec(&mut s, &c, ISS, "j", 1, 100), Ok(ReplayOutcome::Fresh));
        assert_eq!(
            rec(&mut s, &c, ISS, "j", 2, 100),
            Ok(ReplayOutcome::Replayed)
        );
    }

    #[test]
    fn missing_bucket_is_created_then_written_by_cas() {
        let c = cfg(4, 8);
        for store in [
            &mut MemoryStore::envoy() as &mut dyn SharedData,
            &mut MemoryStore::kong(),
        ] {
            // No precreate.
            assert_eq!(rec(store, &c, ISS, "j", 0, 100), Ok(ReplayOutcome::Fresh));
            assert_eq!(
                rec(store, &c, ISS, "j", 1, 100),
                Ok(ReplayOutcome::Replayed)
            );
        }
    }

    // ---------------------------------------------------------------- Kong specifics

    #[test]
    fn kong_eviction_recreates_the_bucket_and_loses_its_entries() {
        let c = cfg(4, 8);
        let mut s = MemoryStore::kong();
        pre(&mut s, &c).unwrap();
        let key = bucket_key(&c, loc(&c, ISS, "j").1);
        assert_eq!(rec(&mut s, &c, ISS, "j", 0, 100), Ok(ReplayOutcome::Fresh));
        s.remove(&key);
        // Documented Kong limitation: the evicted bucket's entries are gone.
        assert_eq!(rec(&mut s, &c, ISS, "j", 1, 100), Ok(ReplayOutcome::Fresh));
        assert!(s.raw(&key).is_some());
        assert_eq!(
            rec(&mut s, &c, ISS, "j", 2, 100),
            Ok(ReplayOutcome::Replayed)
        );
    }

    #[test]
    fn kong_full_zone_fails_closed() {
        let c = cfg(4, 8);
        let mut s = MemoryStore::kong().with_capacity(10);
        assert!(matches!(pre(&mut s, &c), Err(ReplayError::Store(_))));
        assert!(matches!(
            rec(&mut s, &c, ISS, "j", 0, 100),
            Err(ReplayError::Store(_))
        ));

        // Room for the secret and the empty buckets but not for one more entry.
        let room = (0..4).map(|i| bucket_key(&c, i).len() + 1).sum::<usize>()
            + secret_key(&c).len()
            + SECRET_BYTES;
        let mut s = MemoryStore::kong().with_capacity(room);
        pre(&mut s, &c).unwrap();
        assert_eq!(
            rec(&mut s, &c, ISS, "j", 0, 100),
            Err(ReplayError::Store("host shared data is full".to_string()))
        );
        assert_eq!(
            ReplayError::Store("host shared data is full".into()).to_string(),
            "replay store: host shared data is full"
        );
    }

    #[test]
    fn host_failures_fail_closed() {
        let c = ReplayConfig::default();
        let mut s = Broken { get_fails: true };
        assert_eq!(pre(&mut s, &c), Err(ReplayError::Store("boom".into())));
        assert_eq!(
            rec(&mut s, &c, ISS, "j", 0, 1),
            Err(ReplayError::Store("boom".into()))
        );
        let mut s = Broken { get_fails: false };
        assert_eq!(
            rec(&mut s, &c, ISS, "j", 0, 1),
            Err(ReplayError::Store("write failed".into()))
        );
    }

    #[test]
    fn value_without_token_fails_closed() {
        struct NoToken;
        impl SharedData for NoToken {
            fn get(&self, _: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
                Ok((Some(empty_bucket()), None))
            }
            fn set(&mut self, _: &str, _: &[u8], _: Option<u32>) -> Result<(), StoreError> {
                panic!("must not write without a token")
            }
        }
        let c = ReplayConfig::default();
        assert!(matches!(
            rec(&mut NoToken, &c, ISS, "j", 0, 1),
            Err(ReplayError::Store(_))
        ));
    }

    #[test]
    fn a_bucket_that_never_appears_gives_up() {
        // A host that accepts creates but keeps losing the key (constant eviction).
        let c = ReplayConfig {
            max_retries: 3,
            ..ReplayConfig::default()
        };
        let mut s = Forgetful::default();
        assert_eq!(
            rec(&mut s, &c, ISS, "j", 0, 1),
            Err(ReplayError::Contention)
        );
        assert_eq!(s.creates, 4);
        // Every attempt was a create (no CAS: there was never a value to compare with).
        assert!(s.cas.iter().all(Option::is_none), "{:?}", s.cas);
    }

    // ---------------------------------------------------------------- corrupt values

    #[test]
    fn corrupt_bucket_fails_closed_and_is_left_untouched() {
        let c = cfg(1, 8);
        let key = bucket_key(&c, 0);
        let unknown = Err(ReplayError::Store(
            "replay bucket has an unknown format".to_string(),
        ));
        let mut one_entry = encode_bucket(&[Entry {
            id: [0; 16],
            tag: [9; 8],
            expires_at: 9,
        }]);
        one_entry.push(0); // trailing byte
        for bad in [
            vec![0u8],
            vec![1u8], // version 1 (the unkeyed format) is not read
            vec![3u8],
            vec![BUCKET_VERSION, 1, 2, 3],
            one_entry,
            b"{\"json\":true}".to_vec(),
            vec![0xff; 1 + 24],
        ] {
            let mut s = MemoryStore::envoy();
            s.put_raw(&key, &bad);
            assert_eq!(rec(&mut s, &c, ISS, "j", 0, 100), unknown, "{bad:?}");
            assert_eq!(s.raw(&key).unwrap(), bad);
            assert_eq!(s.sets(), 0);
        }
    }

    #[test]
    fn random_bytes_in_buckets_never_panic() {
        let c = cfg(4, 8);
        let mut rng = StdRng::seed_from_u64(0x5eed);
        for round in 0..2000 {
            let mut s = MemoryStore::envoy();
            for b in 0..4 {
                let len = rng.gen_range(0..(1 + 10 * 24));
                let mut v: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
                if round % 2 == 0 {
                    // Well-formed framing with random contents, to exercise the entry paths.
                    v.truncate(1 + (v.len().saturating_sub(1) / 24) * 24);
                    if let Some(first) = v.first_mut() {
                        *first = BUCKET_VERSION;
                    }
                }
                s.put_raw(&bucket_key(&c, b), &v);
            }
            for j in 0..8 {
                let now = rng.gen_range(-1000..1000);
                match rec(&mut s, &c, ISS, &format!("j{j}"), now, now + 500) {
                    Ok(_) | Err(ReplayError::Full) => {}
                    Err(ReplayError::Store(m)) => {
                        assert_eq!(m, "replay bucket has an unknown format")
                    }
                    Err(e) => panic!("{e:?}"),
                }
            }
        }
    }

    // ---------------------------------------------------------------- keyed placement

    /// The bucket the code before keyed placement chose: an unkeyed SHA-256 of the pair, bytes
    /// 16..24 modulo the bucket count. Anyone could compute it offline.
    fn unkeyed_bucket(c: &ReplayConfig, issuer: &str, jti: &str) -> u32 {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(b"dcr-guard/replay/v1\0");
        ctx.update(&(issuer.len() as u64).to_le_bytes());
        ctx.update(issuer.as_bytes());
        ctx.update(&(jti.len() as u64).to_le_bytes());
        ctx.update(jti.as_bytes());
        let d = ctx.finish();
        let pick = u64::from_le_bytes(d.as_ref()[16..24].try_into().unwrap());
        (pick % u64::from(c.bucket_count())) as u32
    }

    /// `n` jtis an attacker ground offline to land in `bucket` under the unkeyed hash.
    fn ground(c: &ReplayConfig, issuer: &str, bucket: u32, n: usize) -> Vec<String> {
        (0u64..)
            .map(|i| format!("ground-{i}"))
            .filter(|j| unkeyed_bucket(c, issuer, j) == bucket)
            .take(n)
            .collect()
    }

    #[test]
    fn jtis_ground_against_the_unkeyed_hash_do_not_jam_a_bucket() {
        // The share is off here: this is about placement alone.
        let c = cfg(64, 16);
        let attacker = "attacker-software";
        let jtis = ground(&c, attacker, 0, 64);
        // A victim whose pair the unkeyed hash also puts in bucket 0.
        let victim = ground(&c, ISS, 0, 8);

        // Keyed placement spreads them like any other jtis.
        let buckets: std::collections::HashSet<u32> =
            jtis.iter().map(|j| loc(&c, attacker, j).1).collect();
        assert!(buckets.len() >= 20, "{} buckets", buckets.len());
        for other in [[1u8; 32], [2u8; 32]] {
            let s = Secret::from_stored(&other).unwrap();
            let b: std::collections::HashSet<u32> =
                jtis.iter().map(|j| locate(&c, &s, attacker, j).1).collect();
            assert!(b.len() >= 20, "{} buckets", b.len());
        }

        for store in [
            &mut MemoryStore::envoy() as &mut dyn SharedData,
            &mut MemoryStore::kong(),
        ] {
            pre(store, &c).unwrap();
            // Under the unkeyed hash the 17th of these filled bucket 0 (503 for everyone there).
            for j in &jtis {
                assert_eq!(
                    rec(store, &c, attacker, j, 0, 3600),
                    Ok(ReplayOutcome::Fresh),
                    "{j}"
                );
            }
            for j in &victim {
                assert_eq!(rec(store, &c, ISS, j, 1, 3600), Ok(ReplayOutcome::Fresh));
            }
        }
    }

    #[test]
    fn placement_depends_on_the_secret() {
        let c = ReplayConfig::default();
        let a = Secret::from_stored(&[1; 32]).unwrap();
        let b = Secret::from_stored(&[2; 32]).unwrap();
        let same = (0..256)
            .filter(|i| {
                let j = format!("j{i}");
                locate(&c, &a, ISS, &j).1 == locate(&c, &b, ISS, &j).1
            })
            .count();
        // About 256 / 64 = 4 by chance.
        assert!(same < 20, "{same}");
        assert_ne!(locate(&c, &a, ISS, "j").0, locate(&c, &b, ISS, "j").0);
        assert_ne!(issuer_tag(&a, ISS), issuer_tag(&b, ISS));
        assert_ne!(issuer_tag(&a, "x"), issuer_tag(&a, "y"));
    }

    #[test]
    fn the_secret_is_not_shown() {
        let s = Secret::from_stored(&[0x41; 32]).unwrap();
        let shown = format!("{s:?}");
        assert_eq!(shown, "Secret(redacted)");
        let e = ReplayError::Store("replay secret has an unknown format".into()).to_string();
        assert!(!e.contains("AAAA"), "{e}");
    }

    // ---------------------------------------------------------------- the secret across workers

    /// Something comparable standing for a secret: where it puts a few pairs.
    fn fingerprint(s: &Secret) -> Vec<[u8; ID_BYTES]> {
        (0..4)
            .map(|i| locate(&ReplayConfig::default(), s, ISS, &format!("{i}")).0)
            .collect()
    }

    fn draw(byte: u8) -> impl FnMut() -> Option<[u8; SECRET_BYTES]> {
        move || Some([byte; SECRET_BYTES])
    }

    /// Worker A's `ensure_secret` (drawing 0xAA…) with worker B's whole `ensure_secret` (0xBB…)
    /// run before A's host call number `at`. Returns A's and B's secrets and the stored value.
    fn secret_race<S: SharedData + 'static>(
        shared: Rc<RefCell<S>>,
        at: usize,
    ) -> (Secret, Option<Secret>, Option<Vec<u8>>) {
        let c = ReplayConfig::default();
        let b_out: Rc<RefCell<Option<Secret>>> = Rc::new(RefCell::new(None));
        let (b_store, b_res) = (shared.clone(), b_out.clone());
        let other: Box<dyn FnOnce()> = Box::new(move || {
            let s = ensure_secret(&mut Handle(b_store), &c, &mut draw(0xBB)).unwrap();
            *b_res.borrow_mut() = Some(s);
        });
        let mut a = Interleave {
            handle: Handle(shared.clone()),
            ops: Cell::new(0),
            at,
            other: RefCell::new(Some(other)),
        };
        let sa = ensure_secret(&mut a, &c, &mut draw(0xAA)).unwrap();
        let stored = shared.borrow().get(&secret_key(&c)).unwrap().0;
        let sb = b_out.borrow_mut().take();
        (sa, sb, stored)
    }

    #[test]
    fn two_workers_configuring_at_once_get_the_same_secret() {
        fn check(
            new: fn() -> MemoryStore,
            host: &str,
            start: impl Fn(&Rc<RefCell<MemoryStore>>),
        ) -> usize {
            let mut raced = 0;
            for at in 0..8 {
                let shared = Rc::new(RefCell::new(new()));
                start(&shared);
                let (sa, sb, stored) = secret_race(shared, at);
                let stored = stored.expect("a secret is stored");
                assert_eq!(stored.len(), SECRET_BYTES);
                let stored = Secret::from_stored(&stored).unwrap();
                assert_eq!(fingerprint(&sa), fingerprint(&stored), "{host} at={at}");
                if let Some(sb) = sb {
                    assert_eq!(fingerprint(&sb), fingerprint(&stored), "{host} at={at}");
                    raced += 1;
                }
            }
            raced
        }
        // Absent key; and on Envoy a key "removed" (empty value with a token).
        let envoy = check(MemoryStore::envoy, "envoy", |_| {});
        let removed = check(MemoryStore::envoy, "envoy removed", |s| {
            s.borrow_mut().remove(&secret_key(&ReplayConfig::default()))
        });
        let kong = check(MemoryStore::kong, "kong", |_| {});
        // Every host call of A was an insertion point: get + create + get on Envoy, get + refused
        // token write + get + create + get on Kong.
        assert!(
            envoy >= 3 && removed >= 3 && kong >= 5,
            "{envoy} {removed} {kong}"
        );
    }

    /// The race the CAS creation avoids, pinned on the Envoy fake: a worker that creates the
    /// secret with a blind write (`cas: None`) and keeps its own candidate can end up with a
    /// different secret than the other worker. (This is what the test above would catch.)
    #[test]
    fn a_blind_create_would_split_the_workers() {
        let c = ReplayConfig::default();
        let key = secret_key(&c);
        let shared = Rc::new(RefCell::new(MemoryStore::envoy()));
        // A: reads "absent"...
        assert_eq!(Handle(shared.clone()).get(&key).unwrap(), (None, None));
        // ...B creates its secret properly and starts using it...
        let sb = ensure_secret(&mut Handle(shared.clone()), &c, &mut draw(0xBB)).unwrap();
        // ...A writes blindly and uses its own.
        Handle(shared.clone())
            .set(&key, &[0xAA; SECRET_BYTES], None)
            .unwrap();
        let sa = Secret::from_stored(&[0xAA; SECRET_BYTES]).unwrap();
        assert_ne!(fingerprint(&sa), fingerprint(&sb));
        // Whereas ensure_secret's token write at that point is refused and A adopts what is stored.
        let shared = Rc::new(RefCell::new(MemoryStore::envoy()));
        let sb = ensure_secret(&mut Handle(shared.clone()), &c, &mut draw(0xBB)).unwrap();
        assert_eq!(
            Handle(shared.clone()).set(&key, &[0xAA; SECRET_BYTES], Some(CREATE_TOKEN)),
            Err(StoreError::CasMismatch)
        );
        let sa = ensure_secret(&mut Handle(shared), &c, &mut draw(0xAA)).unwrap();
        assert_eq!(fingerprint(&sa), fingerprint(&sb));
    }

    #[test]
    fn a_second_configure_keeps_the_secret_and_finds_the_entries() {
        // A filter configuration reload runs the configure step again against the same shared
        // data (same vm_id): the secret is read, not drawn again, and old entries are found.
        let c = ReplayConfig::default();
        for store in [
            &mut MemoryStore::envoy() as &mut dyn SharedData,
            &mut MemoryStore::kong(),
        ] {
            let first = ensure_secret(store, &c, &mut draw(1)).unwrap();
            precreate_buckets(store, &c).unwrap();
            let pair = Pair {
                issuer: ISS,
                jti: "j",
                share: Share::Limited,
            };
            assert_eq!(
                check_and_record(store, &c, &first, &pair, 0, 100),
                Ok(ReplayOutcome::Fresh)
            );
            let mut drew = false;
            let again = ensure_secret(store, &c, &mut || {
                drew = true;
                Some([2; SECRET_BYTES])
            })
            .unwrap();
            assert!(!drew, "no new secret is drawn when one is stored");
            precreate(store, &c).unwrap(); // the real configure step, with SystemRandom
            let loaded = load_secret(store, &c).unwrap();
            assert_eq!(fingerprint(&again), fingerprint(&first));
            assert_eq!(fingerprint(&loaded), fingerprint(&first));
            assert_eq!(
                check_and_record(store, &c, &loaded, &pair, 1, 100),
                Ok(ReplayOutcome::Replayed)
            );
        }
    }

    #[test]
    fn precreate_draws_a_random_secret_once() {
        let c = ReplayConfig::default();
        let mut a = MemoryStore::envoy();
        let mut b = MemoryStore::envoy();
        precreate(&mut a, &c).unwrap();
        precreate(&mut b, &c).unwrap();
        let sa = a.raw(&secret_key(&c)).unwrap();
        let sb = b.raw(&secret_key(&c)).unwrap();
        assert_eq!((sa.len(), sb.len()), (SECRET_BYTES, SECRET_BYTES));
        // Two processes, two secrets (SystemRandom).
        assert_ne!(sa, sb);
        assert_ne!(sa, vec![0u8; SECRET_BYTES]);
        precreate(&mut a, &c).unwrap();
        assert_eq!(a.raw(&secret_key(&c)).unwrap(), sa);
    }

    #[test]
    fn kong_evicted_secret_is_created_again_for_everyone() {
        let c = ReplayConfig::default();
        let mut s = MemoryStore::kong();
        let first = ensure_secret(&mut s, &c, &mut draw(1)).unwrap();
        s.remove(&secret_key(&c));
        let second = ensure_secret(&mut s, &c, &mut draw(2)).unwrap();
        let third = ensure_secret(&mut s, &c, &mut draw(3)).unwrap();
        assert_ne!(fingerprint(&first), fingerprint(&second));
        assert_eq!(fingerprint(&second), fingerprint(&third));
    }

    #[test]
    fn a_bad_secret_or_no_randomness_fails_closed() {
        let c = ReplayConfig::default();
        let mut s = MemoryStore::envoy();
        s.put_raw(&secret_key(&c), b"short");
        let sets = s.sets();
        assert_eq!(
            load_secret(&mut s, &c).map(|_| ()),
            Err(ReplayError::Store(
                "replay secret has an unknown format".to_string()
            ))
        );
        assert_eq!(s.sets(), sets);
        // The configure step reports it (and still pre-creates the buckets).
        assert!(precreate(&mut s, &c).is_err());
        assert_eq!(s.raw(&secret_key(&c)).unwrap(), b"short");
        assert_eq!(s.raw(&bucket_key(&c, 0)), Some(empty_bucket()));

        let mut s = MemoryStore::envoy();
        assert_eq!(
            ensure_secret(&mut s, &c, &mut || None).map(|_| ()),
            Err(ReplayError::Store(
                "no randomness for the replay secret".to_string()
            ))
        );
        assert_eq!(s.sets(), 0);

        // A host that loses every write: bounded, then contention.
        let mut f = Forgetful::default();
        let c3 = ReplayConfig {
            max_retries: 3,
            ..ReplayConfig::default()
        };
        assert_eq!(
            ensure_secret(&mut f, &c3, &mut draw(1)).map(|_| ()),
            Err(ReplayError::Contention)
        );
        assert!(f.creates <= 2 * 4, "{}", f.creates);
    }

    /// Fault injector: accepts every write and keeps nothing (constant eviction); records the
    /// CAS of every write.
    #[derive(Default)]
    struct Forgetful {
        creates: u32,
        cas: Vec<Option<u32>>,
    }

    impl SharedData for Forgetful {
        fn get(&self, _: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
            Ok((None, None))
        }
        fn set(&mut self, _: &str, _: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
            self.creates += 1;
            self.cas.push(cas);
            Ok(())
        }
    }

    // ---------------------------------------------------------------- the issuer's share

    #[test]
    fn issuer_cap_rounds_down_and_stays_in_range() {
        for (entries, pct, want) in [
            (256, 10, 25),
            (256, 100, 256),
            (256, 1, 2),
            (8, 50, 4),
            (8, 10, 1), // 0.8 → at least 1
            (1, 1, 1),
            (4096, 100, 4096),
            (0, 10, 1),
            (16, 250, 16), // above 100 % (not configurable) is the whole bucket
        ] {
            let c = ReplayConfig {
                entries_per_bucket: entries,
                issuer_share_percent: pct,
                ..ReplayConfig::default()
            };
            assert_eq!(c.issuer_cap(), want, "{entries} {pct}");
        }
    }

    #[test]
    fn an_issuer_over_its_share_is_refused_and_others_still_register() {
        let c = ReplayConfig {
            buckets: 1,
            entries_per_bucket: 8,
            issuer_share_percent: 50,
            ..ReplayConfig::default()
        };
        assert_eq!(c.issuer_cap(), 4);
        for store in [
            &mut MemoryStore::envoy() as &mut dyn SharedData,
            &mut MemoryStore::kong(),
        ] {
            pre(store, &c).unwrap();
            for i in 0..4 {
                assert_eq!(
                    rec(store, &c, "flood", &format!("f{i}"), 0, 100),
                    Ok(ReplayOutcome::Fresh)
                );
            }
            let key = bucket_key(&c, 0);
            let before = store.get(&key).unwrap();
            for i in 4..20 {
                assert_eq!(
                    rec(store, &c, "flood", &format!("f{i}"), 0, 100),
                    Err(ReplayError::IssuerShare)
                );
            }
            assert_eq!(store.get(&key).unwrap(), before, "nothing written");
            // Its own replays are still replays (400), not 503.
            assert_eq!(
                rec(store, &c, "flood", "f0", 1, 100),
                Ok(ReplayOutcome::Replayed)
            );
            // Another issuer registers, up to its own share.
            for i in 0..4 {
                assert_eq!(
                    rec(store, &c, ISS, &format!("v{i}"), 1, 100),
                    Ok(ReplayOutcome::Fresh)
                );
            }
            // The bucket is now full: that is Full, whoever asks.
            assert_eq!(rec(store, &c, "third", "t", 1, 100), Err(ReplayError::Full));
            // Exempt pairs are not held to a share, but a full bucket is full.
            let exempt = Pair {
                issuer: "flood",
                jti: "x",
                share: Share::Exempt,
            };
            assert_eq!(
                check_and_record(store, &c, &secret(), &exempt, 1, 100),
                Err(ReplayError::Full)
            );
            // When the flood's entries expire its share is free again.
            assert_eq!(
                rec(store, &c, "flood", "later", 100, 200),
                Ok(ReplayOutcome::Fresh)
            );
        }
    }

    #[test]
    fn exempt_pairs_are_not_limited_by_the_share() {
        let c = ReplayConfig {
            buckets: 1,
            entries_per_bucket: 8,
            issuer_share_percent: 25,
            ..ReplayConfig::default()
        };
        let mut s = MemoryStore::envoy();
        pre(&mut s, &c).unwrap();
        for i in 0..8 {
            let pair = Pair {
                issuer: "directory",
                jti: &format!("ssa{i}"),
                share: Share::Exempt,
            };
            assert_eq!(
                check_and_record(&mut s, &c, &secret(), &pair, 0, 100),
                Ok(ReplayOutcome::Fresh)
            );
        }
    }

    /// The attack of the issue at the default shape: one issuer records as fast as it can; it gets
    /// at most its share of every bucket, and another issuer's registrations all pass.
    #[test]
    fn one_issuer_flooding_the_default_store_leaves_room_for_the_others() {
        let c = ReplayConfig::default();
        for store in [
            &mut MemoryStore::envoy() as &mut dyn SharedData,
            &mut MemoryStore::kong(),
        ] {
            pre(store, &c).unwrap();
            let mut held = 0u64;
            let mut refused = 0u64;
            for i in 0..(c.capacity()) {
                match rec(store, &c, "flood", &format!("f{i}"), 0, 3600) {
                    Ok(ReplayOutcome::Fresh) => held += 1,
                    Err(ReplayError::IssuerShare) => refused += 1,
                    other => panic!("{other:?}"),
                }
            }
            assert_eq!(held + refused, c.capacity());
            // 16 384 tries fill its share of every bucket exactly: 64 × 25.
            assert_eq!(
                held,
                u64::from(c.bucket_count()) * u64::from(c.issuer_cap())
            );
            assert_eq!(held, 1600);
            assert!(refused > 0);
            // Nine other issuers still register (600 each: spread by the keyed hash, about 9 a
            // bucket, below their own share of 25).
            for other in 0..9 {
                for i in 0..600 {
                    assert_eq!(
                        rec(
                            store,
                            &c,
                            &format!("tpp-{other}"),
                            &format!("j{i}"),
                            1,
                            3600
                        ),
                        Ok(ReplayOutcome::Fresh),
                        "tpp-{other} j{i}"
                    );
                }
            }
        }
    }
}
