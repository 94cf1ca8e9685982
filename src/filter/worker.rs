//! Per-worker state shared by every stream of one VM (one worker thread): the JWKS cache policy
//! over host shared data, the parsed key sets, who owns each callout, and the streams waiting for
//! a document another worker is fetching.

use std::collections::HashMap;
use std::rc::Rc;

use super::{Host, HostStore, Level};
use dcr_guard_core::config::Config;
use dcr_guard_core::escape::{escape, MAX_REASON};
use dcr_guard_core::jose::JwkSet;
use dcr_guard_core::keys::{
    ttl_from_cache_control, Cache, Entry, Fetched, JwksSource, Parsed, Poll, Settled, Verdicts,
};
use dcr_guard_core::metrics;
use dcr_guard_core::replay::etcd::batch::Batcher;

/// Who a callout answers to.
#[derive(Debug, Clone)]
pub enum Owner {
    /// A stream's fetch; `lease` when this worker holds the URL's fetch lease.
    Stream {
        ctx: u32,
        src: JwksSource,
        lease: Option<u64>,
    },
    /// A stream's one-off call (token introspection).
    Call { ctx: u32 },
    /// A background refresh from the root context's tick.
    Refresh { url: String, lease: u64 },
    /// A stream's fetch of participant status document `index`; `lease` when this worker holds
    /// its fetch lease.
    Status {
        ctx: u32,
        index: usize,
        lease: Option<u64>,
    },
    /// A background refresh of participant status document `index`.
    StatusRefresh { index: usize, lease: u64 },
}

/// Whose answer a gRPC call carries.
#[derive(Debug, Clone)]
pub struct GrpcOwner {
    /// The streams, in the order of a batch's nested Txns (one unless `nested`).
    pub members: Vec<u32>,
    /// A batch (see [`dcr_guard_core::replay::etcd::batch`]).
    pub nested: bool,
    /// A `Txn` (alone or a batch), rather than another call.
    pub txn: bool,
    /// Sent by the root context from [`Worker::fleet`] (`false`: by the stream itself).
    pub batched: bool,
    /// The most bytes of answer to read.
    pub max: usize,
    /// When it was sent (ms): a batched call the host never answered is given up on the tick.
    pub sent_ms: u64,
}

/// A stream paused until another worker's fetch of `url` lands.
#[derive(Debug, Clone)]
pub struct Waiter {
    pub ctx: u32,
    pub url: String,
    pub seen: Option<u64>,
    pub deadline: i64,
}

/// What a waiting stream learns on a tick.
pub enum WaitOver {
    Ready(Fetched),
    TimedOut,
}

pub struct Worker {
    pub cache: Cache,
    pub parsed: Parsed<Rc<JwkSet>>,
    /// This worker's lease-holder id.
    pub holder: u64,
    /// HTTP callouts in flight, by token.
    pub tokens: HashMap<u32, Owner>,
    /// gRPC calls in flight (the fleet replay store), by token → whose answer it carries. A map
    /// of its own: hosts number gRPC calls apart from HTTP callouts (Envoy starts both at 1).
    pub grpc: HashMap<u32, GrpcOwner>,
    /// The fleet store's calls waiting to be sent by the root context, batched.
    pub fleet: Batcher<u32>,
    /// This worker's shared queue: enqueueing on it wakes the root context (`on_queue_ready`),
    /// which sends the fleet store's calls. `None`: no fleet store, or the host has no queues
    /// (each stream then sends its own call).
    pub fleet_queue: Option<u32>,
    pub waiters: Vec<Waiter>,
    /// SSA signature verdicts (TPPs reuse their SSA).
    pub verdicts: Verdicts,
    /// Leased fetches whose stream the host finished before the answer came: the proxy-wasm SDK
    /// routes a callout's answer to the context that dispatched it and drops it when that context
    /// is gone, so the root context fetches again under the same lease ([`Worker::adopt_orphans`])
    /// — otherwise a client that hangs up mid-fetch would leave the lease held and the rotated
    /// document unpublished until the lease and the kid cooldown ran out.
    pub orphans: Vec<(JwksSource, u64)>,
    /// The same for participant status fetches: (source index, lease).
    pub status_orphans: Vec<(usize, u64)>,
    /// When each JWKS callout in flight was dispatched (ms), by token: `dcr_guard.jwks_fetch_ms`.
    pub fetch_started: HashMap<u32, u64>,
    /// The participant status documents (`rules.participant_status`).
    pub status: super::status::Statuses,
    next_refresh: i64,
    next_replay_fill: i64,
    /// The replay store's fill, read a bounded number of buckets at a time.
    replay_fill: dcr_guard_core::replay::FillScan,
    /// A held request's body reached the filter: the host honours `hold_headers`.
    pub body_delivered: bool,
    /// The missing hold was logged (once per worker).
    pub body_withheld_logged: bool,
}

pub use dcr_guard_core::metrics::JWKS_ORPHANED_FETCHES as COUNTER_ORPHANED_FETCHES;

/// How often the root context looks for directory documents to refresh.
const REFRESH_CHECK_SECONDS: i64 = 1;

/// How often the root context reads the replay store's fill.
pub const REPLAY_FILL_SECONDS: i64 = 5;

/// Most bytes of replay buckets one fill reading copies out of shared data (the defaults' whole
/// store, 64 buckets of at most 8 KiB, is half of it; a larger store is read over several readings).
pub const REPLAY_FILL_BYTES: u64 = 1024 * 1024;

impl Worker {
    pub fn with_policy(policy: dcr_guard_core::keys::CachePolicy, holder: u64) -> Worker {
        Worker {
            cache: Cache::new(policy, "dcr_guard.jwks."),
            parsed: Parsed::default(),
            holder,
            tokens: HashMap::new(),
            grpc: HashMap::new(),
            fleet: Batcher::default(),
            fleet_queue: None,
            waiters: Vec::new(),
            verdicts: Verdicts::default(),
            orphans: Vec::new(),
            status_orphans: Vec::new(),
            fetch_started: HashMap::new(),
            status: super::status::Statuses::default(),
            next_refresh: 0,
            next_replay_fill: 0,
            replay_fill: Default::default(),
            body_delivered: false,
            body_withheld_logged: false,
        }
    }

    /// The key set of `url` as read from the shared cache earlier in this same second, if it was
    /// fresh then: the hot path reads the shared entry at most once a second per URL.
    pub fn recent_keys(&self, url: &str, now: i64) -> Option<Fetched> {
        self.parsed
            .recent(url, now)
            .map(|set| Fetched::Keys(Rc::clone(set)))
    }

    /// The fresh shared entry of `url` read at `now`, its keys now parsed: see
    /// [`Worker::recent_keys`].
    pub fn mark_read(&mut self, url: &str, entry: &Entry, now: i64) {
        self.parsed
            .mark_read(url, entry.generation, entry.expires_at, now);
    }

    /// The parsed key set of a shared document, reparsed only when its generation changed.
    pub fn keys(&mut self, cfg: &Config, url: &str, entry: &Entry) -> Fetched {
        if let Some(set) = self.parsed.get(url, entry.generation) {
            return Fetched::Keys(Rc::clone(set));
        }
        if entry.doc.len() > cfg.limits.jwks_bytes {
            return Fetched::Unusable(format!(
                "document larger than {} bytes",
                cfg.limits.jwks_bytes
            ));
        }
        match JwkSet::parse(&entry.doc, cfg.limits.jwks_keys) {
            Ok(set) => {
                let set = Rc::new(set);
                self.parsed.insert(url, entry.generation, Rc::clone(&set));
                Fetched::Keys(set)
            }
            Err(e) => Fetched::Unusable(format!("unusable document: {e}")),
        }
    }

    /// A fetched answer for `url`: publish a good document under our lease (so every worker uses
    /// it), or record the failure and fall back to a stale document within the bound.
    #[allow(clippy::too_many_arguments)]
    pub fn fetched(
        &mut self,
        host: &mut dyn Host,
        cfg: &Config,
        url: &str,
        lease: Option<u64>,
        fetched: Fetched,
        body: &[u8],
        now: i64,
    ) -> Fetched {
        let lease = match lease {
            Some(l) => l,
            None => return fetched,
        };
        let ttl = match fetched {
            Fetched::Keys(_) => ttl_from_cache_control(
                host.call_response_header("cache-control").as_deref(),
                self.cache.policy(),
            ),
            Fetched::Unavailable(_) | Fetched::Unusable(_) => 0,
        };
        let settled = self.cache.settle(
            &mut HostStore(host),
            url,
            &fetched,
            body,
            ttl,
            now,
            lease,
            self.holder,
        );
        match (settled, fetched) {
            (Settled::Published { generation }, Fetched::Keys(set)) => {
                self.parsed.insert(url, generation, Rc::clone(&set));
                Fetched::Keys(set)
            }
            (Settled::NotStored(e), keys) => {
                host.log(
                    Level::Warn,
                    &format!(
                        "dcr-guard: JWKS cache: cannot store `{}`: {e}",
                        escape(url, MAX_REASON)
                    ),
                );
                keys
            }
            (Settled::Failed { stale, released }, failed) => {
                if let Some(e) = released {
                    host.log(Level::Warn, &format!("dcr-guard: JWKS cache: {e}"));
                }
                match stale {
                    Some(entry) => {
                        host.count(dcr_guard_core::keys::COUNTER_STALE_SERVES);
                        host.log(
                            Level::Warn,
                            &format!(
                                "dcr-guard: serving the last good `{}` after a failed refresh",
                                escape(url, MAX_REASON)
                            ),
                        );
                        self.keys(cfg, url, &entry)
                    }
                    None => failed,
                }
            }
            (Settled::Published { .. }, other) => other,
        }
    }

    /// Remember why the last fetch of `url` failed, for every worker (see
    /// [`Cache::record_failure`]; written by CAS like the documents).
    pub fn record_failure(&mut self, host: &mut dyn Host, url: &str, failed: &Fetched) {
        let _ = self.cache.record_failure(&mut HostStore(host), url, failed);
    }

    /// The last recorded failure for `url`, as the answer to give while the cache backs off.
    pub fn last_failure(&self, host: &mut dyn Host, url: &str) -> Fetched {
        self.cache.last_failure(&HostStore(host), url)
    }

    /// Configure time: a free fetch lease for every document known in advance, so that even the
    /// first fetch of each is elected by compare-and-swap.
    pub fn precreate(&self, host: &mut dyn Host, cfg: &Config) {
        for src in background_sources(cfg) {
            if let Err(e) = self.cache.create_free_lease(&mut HostStore(host), &src.url) {
                host.log(Level::Warn, &format!("dcr-guard: JWKS cache: {e}"));
            }
        }
    }

    /// Root-context tick: refresh directory (and AS) documents ahead of expiry under the lease,
    /// one worker at a time. Returns nothing; callouts are recorded in `tokens`.
    pub fn refresh(&mut self, host: &mut dyn Host, cfg: &Config, now: i64) {
        if now < self.next_refresh {
            return;
        }
        self.next_refresh = now.saturating_add(REFRESH_CHECK_SECONDS);
        self.set_gauges(host, cfg, now);
        for src in background_sources(cfg) {
            match self
                .cache
                .needs_refresh(&mut HostStore(host), &src.url, now, self.holder)
            {
                Ok(Some(lease)) => self.fetch_in_background(host, cfg, src, lease, now),
                Ok(None) => {}
                Err(e) => host.log(Level::Warn, &format!("dcr-guard: JWKS cache: {e}")),
            }
        }
    }

    /// Root-context tick (with the refresh check, once a second): the age of each directory's
    /// cached JWKS, and every [`REPLAY_FILL_SECONDS`] the replay store's fill. Read from shared
    /// data, so every worker sets the same values; on the tick rather than on use so that an idle
    /// filter's gauges still move (a JWKS growing old while no registration comes is what an
    /// operator wants to see).
    fn set_gauges(&mut self, host: &mut dyn Host, cfg: &Config, now: i64) {
        for (index, dir) in cfg.directories.iter().enumerate() {
            let mut oldest: Option<i64> = None;
            // Pinned documents (`inline`) are never cached: they have no age.
            for src in dir.jwks.iter().filter(|s| s.pinned.is_none()) {
                if let Ok(Some(entry)) = self.cache.peek(&HostStore(host), &src.url) {
                    oldest = Some(oldest.map_or(entry.fetched_at, |o| o.min(entry.fetched_at)));
                }
            }
            if let Some(fetched_at) = oldest {
                let age = u64::try_from(now.saturating_sub(fetched_at)).unwrap_or(0);
                host.gauge(&metrics::jwks_age(index), age);
            }
        }
        if now < self.next_replay_fill {
            return;
        }
        self.next_replay_fill = now.saturating_add(REPLAY_FILL_SECONDS);
        let store = &cfg.replay.store;
        match self
            .replay_fill
            .advance(&HostStore(host), store, now, REPLAY_FILL_BYTES)
        {
            Ok(fill) => {
                host.gauge(metrics::REPLAY_ENTRIES, fill.entries);
                host.gauge(
                    metrics::REPLAY_FULLEST_BUCKET_PERCENT,
                    fill.fullest_percent(&cfg.replay.store),
                );
            }
            Err(e) => host.log(
                Level::Warn,
                &format!("dcr-guard: replay store fill unknown: {e}"),
            ),
        }
    }

    /// Root context only: fetch again, under the lease they hold, the documents whose stream went
    /// away while its fetch was in flight (see [`Worker::orphans`]). The answer comes back to the
    /// root context and is published for every worker.
    pub fn adopt_orphans(&mut self, host: &mut dyn Host, cfg: &Config, now: i64) {
        for (src, lease) in std::mem::take(&mut self.orphans) {
            host.count(COUNTER_ORPHANED_FETCHES);
            self.fetch_in_background(host, cfg, &src, lease, now);
        }
    }

    /// Dispatch a fetch owned by the root context under `lease`; if it cannot start, record the
    /// failure and release the lease into backoff so that the next request may try again.
    fn fetch_in_background(
        &mut self,
        host: &mut dyn Host,
        cfg: &Config,
        src: &JwksSource,
        lease: u64,
        now: i64,
    ) {
        host.count(metrics::JWKS_FETCHES);
        match host.dispatch_get(src, cfg.limits.callout_timeout_ms) {
            Ok(token) => {
                self.fetch_started.insert(token, host.now_ms());
                self.tokens.insert(
                    token,
                    Owner::Refresh {
                        url: src.url.clone(),
                        lease,
                    },
                );
            }
            Err(why) => {
                host.count(metrics::JWKS_FETCH_FAILURES);
                host.log(
                    Level::Warn,
                    &format!(
                        "dcr-guard: background fetch of `{}` could not start: {why}",
                        escape(&src.url, MAX_REASON)
                    ),
                );
                let failed = Fetched::Unavailable(format!("could not be reached ({why})"));
                self.record_failure(host, &src.url, &failed);
                if let Err(e) = self
                    .cache
                    .fetch_failed(&mut HostStore(host), &src.url, now, lease)
                {
                    host.log(Level::Warn, &format!("dcr-guard: JWKS cache: {e}"));
                }
            }
        }
    }

    /// Which waiters can go on now: (ctx, url, outcome). Waiters of streams that are gone are
    /// dropped by the caller.
    pub fn poll_waiters(
        &mut self,
        host: &mut dyn Host,
        cfg: &Config,
        now: i64,
    ) -> Vec<(u32, String, WaitOver)> {
        let mut done = Vec::new();
        let mut still = Vec::new();
        for w in std::mem::take(&mut self.waiters) {
            let outcome = match self.cache.poll(&HostStore(host), &w.url, w.seen, now) {
                Ok(Poll::Ready(entry)) => Some(WaitOver::Ready(self.keys(cfg, &w.url, &entry))),
                // The fetch we waited for may have landed between our decision to wait and our
                // reading of the generation we had seen: a fresh document is what we waited for.
                Ok(Poll::TimedOut) => match self.cache.peek(&HostStore(host), &w.url) {
                    Ok(Some(entry)) if now < entry.expires_at => {
                        Some(WaitOver::Ready(self.keys(cfg, &w.url, &entry)))
                    }
                    _ => Some(WaitOver::TimedOut),
                },
                Ok(Poll::Waiting) if now > w.deadline.saturating_add(1) => Some(WaitOver::TimedOut),
                Ok(Poll::Waiting) => None,
                Err(_) => Some(WaitOver::TimedOut),
            };
            match outcome {
                Some(o) => done.push((w.ctx, w.url, o)),
                None => still.push(w),
            }
        }
        self.waiters = still;
        done
    }
}

/// Documents refreshed in the background: every directory's (but those pinned in the
/// configuration, which are never fetched), and the AS's in `jwt` mode.
fn background_sources(cfg: &Config) -> impl Iterator<Item = &JwksSource> {
    let binding = match &cfg.rules.token_client_binding {
        Some(dcr_guard_core::binding::TokenMode::Jwt(j)) => j.jwks.as_slice(),
        _ => &[],
    };
    cfg.directories
        .iter()
        .flat_map(|d| d.jwks.iter())
        .chain(binding.iter())
        .filter(|s| s.pinned.is_none())
}

impl Worker {
    /// Read a JWKS callout's answer for `url` and publish it (or record the failure) under
    /// `lease`; done even when the stream that asked is gone, since other requests may wait on it.
    pub fn read_answer(
        &mut self,
        host: &mut dyn Host,
        cfg: &Config,
        url: &str,
        lease: Option<u64>,
        body_size: usize,
    ) -> Fetched {
        let max = cfg.limits.jwks_bytes;
        let (status, body) = host.call_response(body_size, max);
        let fetched = Fetched::from_response(status, &body, body_size, max, cfg.limits.jwks_keys);
        if let Fetched::Unavailable(why) | Fetched::Unusable(why) = &fetched {
            host.count(metrics::JWKS_FETCH_FAILURES);
            host.log(
                Level::Info,
                &format!(
                    "dcr-guard: JWKS fetch from `{}` {}",
                    escape(url, MAX_REASON),
                    escape(why, MAX_REASON)
                ),
            );
        }
        let now = host.now();
        self.fetched(host, cfg, url, lease, fetched, &body, now)
    }
}
