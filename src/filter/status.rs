//! The participant status stage of a registration (rule `participant_status`), between the
//! create validation and replay: each configured status document from the shared cache, by a
//! fetch under this worker's lease, or by waiting for the worker that holds it; then the verdict.
//! Also the worker's side: background refresh on the root context's tick, the answers, the
//! waiters.

use std::rc::Rc;

use super::worker::Owner;
use super::{Flow, Host, HostStore, Level, Phase, Stream, Worker};
use dcr_guard_core::config::Config;
use dcr_guard_core::error::RuleId;
use dcr_guard_core::escape::{escape, MAX_REASON};
use dcr_guard_core::keys::{Cache, Decision, Entry, Fetched, Need, Poll};
use dcr_guard_core::metrics;
use dcr_guard_core::pipeline::Work;
use dcr_guard_core::status::{self, Got, StatusDoc, StatusSource, KEY_PREFIX};

/// One status document's shared cache (its own policy) and this worker's parsed copy.
struct Slot {
    cache: Cache,
    /// The parsed document: its generation, until when it is current (unix seconds), the table.
    /// While current it is used without reading shared data (a document can be megabytes; a new
    /// one is only ever published once this one is due).
    parsed: Option<(u64, i64, Rc<StatusDoc>)>,
}

/// A stream paused until another worker's fetch of status document `index` lands.
struct Waiter {
    ctx: u32,
    index: usize,
    seen: Option<u64>,
    deadline: i64,
}

/// The worker's status documents.
#[derive(Default)]
pub struct Statuses {
    slots: Vec<Slot>,
    waiters: Vec<Waiter>,
    next_refresh: i64,
}

/// How often the root context looks for status documents to refresh.
const REFRESH_CHECK_SECONDS: i64 = 1;

/// The status stage of a stream: its work, one slot per source, its fetches, its waits.
type StatusStage = (Box<Work>, Vec<Option<Got>>, Vec<u32>, Vec<usize>);

/// What obtaining one document gave.
enum Obtained {
    Got(Got),
    /// A fetch for this stream is out (its token).
    Fetching(u32),
    /// Another worker is fetching it.
    Waiting,
}

impl Statuses {
    pub fn new(cfg: &Config) -> Statuses {
        let slots = cfg
            .rules
            .participant_status
            .iter()
            .map(|s| Slot {
                cache: Cache::new(s.cache_policy(cfg.limits.callout_timeout_ms), KEY_PREFIX),
                parsed: None,
            })
            .collect();
        Statuses {
            slots,
            waiters: Vec::new(),
            next_refresh: 0,
        }
    }

    pub fn has_waiters(&self) -> bool {
        !self.waiters.is_empty()
    }

    /// The host is done with stream `ctx`.
    pub fn forget(&mut self, ctx: u32) {
        self.waiters.retain(|w| w.ctx != ctx);
    }
}

/// The document of `entry`, parsed once per generation.
fn doc(slot: &mut Slot, src: &StatusSource, entry: &Entry) -> Got {
    if let Some((generation, _, d)) = &slot.parsed {
        if *generation == entry.generation {
            return Got::Doc(Rc::clone(d));
        }
    }
    match status::parse(&entry.doc, src) {
        Ok(d) => {
            let d = Rc::new(d);
            slot.parsed = Some((entry.generation, entry.expires_at, Rc::clone(&d)));
            Got::Doc(d)
        }
        Err(why) => Got::Unavailable(format!("the shared document does not parse: {why}")),
    }
}

/// `t + secs`, saturating.
fn add(t: i64, secs: u64) -> i64 {
    t.saturating_add(i64::try_from(secs).unwrap_or(i64::MAX))
}

impl Worker {
    /// Configure time: a free fetch lease for every status document, so that even the first
    /// fetch is elected by compare-and-swap.
    pub fn precreate_status(&self, host: &mut dyn Host, cfg: &Config) {
        for (slot, src) in self.status.slots.iter().zip(&cfg.rules.participant_status) {
            if let Err(e) = slot
                .cache
                .create_free_lease(&mut HostStore(host), &src.cache_key)
            {
                host.log(Level::Warn, &format!("dcr-guard: status cache: {e}"));
            }
        }
    }

    /// Document `index` for stream `ctx`.
    fn obtain_status(
        &mut self,
        host: &mut dyn Host,
        cfg: &Config,
        index: usize,
        ctx: u32,
        now: i64,
    ) -> Obtained {
        let (Some(src), Some(slot)) = (
            cfg.rules.participant_status.get(index),
            self.status.slots.get_mut(index),
        ) else {
            return Obtained::Got(Got::Unavailable("no such status source".into()));
        };
        // The hot path: this worker's parsed copy while it is current.
        if let Some((_, until, d)) = &slot.parsed {
            if now < *until {
                return Obtained::Got(Got::Doc(Rc::clone(d)));
            }
        }
        let lease = match slot.cache.decide(
            &mut HostStore(host),
            &src.cache_key,
            Need::Any,
            now,
            self.holder,
        ) {
            Ok(Decision::Use(entry)) => return Obtained::Got(doc(slot, src, &entry)),
            Ok(Decision::UseStale(entry)) => {
                host.count(metrics::STATUS_STALE_SERVES);
                return Obtained::Got(doc(slot, src, &entry));
            }
            Ok(Decision::Wait { until }) => {
                let seen = slot
                    .cache
                    .peek(&HostStore(host), &src.cache_key)
                    .ok()
                    .flatten()
                    .map(|e| e.generation);
                self.status.waiters.push(Waiter {
                    ctx,
                    index,
                    seen,
                    deadline: until,
                });
                return Obtained::Waiting;
            }
            Ok(Decision::Unavailable { .. }) => {
                let why = match slot.cache.last_failure(&HostStore(host), &src.cache_key) {
                    Fetched::Unavailable(w) | Fetched::Unusable(w) => w,
                    Fetched::Keys(_) => String::new(),
                };
                return Obtained::Got(Got::Unavailable(why));
            }
            Ok(Decision::Fetch { lease_id }) => Some(lease_id),
            Err(e) => {
                // The shared cache is out of order: fetch for this request alone.
                host.log(Level::Warn, &format!("dcr-guard: status cache: {e}"));
                None
            }
        };
        self.fetch_status(host, cfg, index, lease, Some(ctx), now)
    }

    /// Dispatch the fetch of document `index` (for stream `owner`, or in the background).
    fn fetch_status(
        &mut self,
        host: &mut dyn Host,
        cfg: &Config,
        index: usize,
        lease: Option<u64>,
        owner: Option<u32>,
        now: i64,
    ) -> Obtained {
        let Some(src) = cfg.rules.participant_status.get(index) else {
            return Obtained::Got(Got::Unavailable("no such status source".into()));
        };
        host.count(metrics::STATUS_FETCHES);
        match host.dispatch_status(src, cfg.limits.callout_timeout_ms) {
            Ok(token) => {
                let who = match (owner, lease) {
                    (Some(ctx), lease) => Owner::Status { ctx, index, lease },
                    (None, Some(lease)) => Owner::StatusRefresh { index, lease },
                    (None, None) => return Obtained::Fetching(token),
                };
                self.tokens.insert(token, who);
                Obtained::Fetching(token)
            }
            Err(why) => {
                host.log(
                    Level::Warn,
                    &format!(
                        "dcr-guard: status fetch of `{}` could not start: {why}",
                        escape(&src.url, MAX_REASON)
                    ),
                );
                let why = format!("could not be reached ({why})");
                Obtained::Got(self.status_failed(
                    host,
                    cfg,
                    index,
                    lease,
                    why,
                    now,
                    owner.is_some(),
                ))
            }
        }
    }

    /// A fetch of document `index` failed (`why`): counted, recorded for every worker, the lease
    /// (if ours) in backoff; the last good document if it is within the maximum staleness.
    #[allow(clippy::too_many_arguments)]
    fn status_failed(
        &mut self,
        host: &mut dyn Host,
        cfg: &Config,
        index: usize,
        lease: Option<u64>,
        why: String,
        now: i64,
        serving: bool,
    ) -> Got {
        host.count(metrics::STATUS_FETCH_FAILURES);
        let (Some(src), Some(slot)) = (
            cfg.rules.participant_status.get(index),
            self.status.slots.get_mut(index),
        ) else {
            return Got::Unavailable(why);
        };
        let last_good = {
            let mut store = HostStore(host);
            let failed = Fetched::Unavailable(why.clone());
            let _ = slot
                .cache
                .record_failure(&mut store, &src.cache_key, &failed);
            if let Some(lease) = lease {
                let _ = slot
                    .cache
                    .fetch_failed(&mut store, &src.cache_key, now, lease);
            }
            slot.cache.peek(&store, &src.cache_key).ok().flatten()
        };
        match last_good {
            Some(e) if now < add(e.expires_at, src.max_staleness) => {
                if serving && now >= e.expires_at {
                    host.count(metrics::STATUS_STALE_SERVES);
                }
                doc(slot, src, &e)
            }
            _ => Got::Unavailable(why),
        }
    }
}

impl Stream {
    /// The status stage: every document, then the verdict of each; replay and forwarding after.
    pub(super) fn check_status(
        &mut self,
        host: &mut dyn Host,
        worker: &mut Worker,
        cfg: &Config,
        work: Box<Work>,
        mut gate: Vec<Option<Got>>,
        in_callback: bool,
    ) -> Flow {
        let now = host.now();
        let (mut pending, mut waiting) = (Vec::new(), Vec::new());
        for (index, slot) in gate.iter_mut().enumerate() {
            if slot.is_some() {
                continue;
            }
            match worker.obtain_status(host, cfg, index, self.ctx, now) {
                Obtained::Got(got) => *slot = Some(got),
                Obtained::Fetching(token) => pending.push(token),
                Obtained::Waiting => waiting.push(index),
            }
        }
        if !pending.is_empty() || !waiting.is_empty() {
            self.phase = Phase::Status {
                work,
                gate,
                pending,
                waiting,
            };
            return Flow::Pause;
        }
        let verdict = match work.created() {
            None => Ok(()),
            Some(create) => {
                cfg.rules
                    .participant_status
                    .iter()
                    .zip(&gate)
                    .try_for_each(|(src, got)| {
                        let none = Got::Unavailable(String::new());
                        status::verdict(
                            src,
                            got.as_ref().unwrap_or(&none),
                            create.ssa_claims(),
                            cfg.retry_after,
                        )
                    })
            }
        };
        match verdict {
            Ok(()) => self.replay_then_forward(host, worker, cfg, work, in_callback),
            Err(e) => {
                let facts = work.facts();
                self.refuse(host, e, &facts, in_callback)
            }
        }
    }

    /// Take the status stage's state; `None` (phase unchanged) when not in it.
    fn take_status(&mut self) -> Option<StatusStage> {
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Status {
                work,
                gate,
                pending,
                waiting,
            } => Some((work, gate, pending, waiting)),
            other => {
                self.phase = other;
                None
            }
        }
    }

    /// Document `index` arrived for this stream: by its own fetch (`token`) or by a wait.
    pub(super) fn on_status(
        &mut self,
        host: &mut dyn Host,
        worker: &mut Worker,
        token: Option<u32>,
        index: usize,
        got: Got,
    ) {
        let cfg = Rc::clone(&self.cfg);
        let Some((work, mut gate, mut pending, mut waiting)) = self.take_status() else {
            return;
        };
        let mine = match token {
            Some(t) => pending.iter().position(|p| *p == t).map(|i| {
                pending.swap_remove(i);
            }),
            None => waiting.iter().position(|w| *w == index).map(|i| {
                waiting.swap_remove(i);
            }),
        };
        if mine.is_some() {
            if let Some(slot) = gate.get_mut(index) {
                *slot = Some(got);
            }
        }
        if pending.is_empty() && waiting.is_empty() {
            self.check_status(host, worker, &cfg, work, gate, true);
        } else {
            self.phase = Phase::Status {
                work,
                gate,
                pending,
                waiting,
            };
        }
    }
}

/// Whether a validated registration goes through the status stage: some source is configured,
/// it is a create or an update, and (report-only mode) nothing else failed.
pub(super) fn needed(cfg: &Config, work: &Work, host: &mut dyn Host) -> bool {
    if cfg.rules.participant_status.is_empty() {
        return false;
    }
    match work.created() {
        None => false,
        Some(c) if c.report().0.is_empty() => true,
        Some(_) => {
            host.count(&metrics::skipped(RuleId::ParticipantStatus));
            false
        }
    }
}

impl Worker {
    /// A status fetch answered (document `index`, under `lease` when this worker holds it;
    /// `serving`: for a registration, not a background refresh): published for every worker when
    /// it parses, otherwise the failure recorded and the last good document kept.
    pub fn status_answer(
        &mut self,
        host: &mut dyn Host,
        cfg: &Config,
        index: usize,
        lease: Option<u64>,
        body_size: usize,
        serving: bool,
    ) -> Got {
        let Some(src) = cfg.rules.participant_status.get(index) else {
            return Got::Unavailable("no such status source".into());
        };
        let now = host.now();
        let (code, body) = host.call_response(body_size, src.max_bytes);
        let parsed = match code {
            None => Err("no response".to_string()),
            Some(c) if !(200..300).contains(&c) => Err(format!("answered HTTP {c}")),
            Some(_) if body_size > src.max_bytes => {
                Err(format!("document larger than {} bytes", src.max_bytes))
            }
            Some(_) => status::parse(&body, src),
        };
        // An empty list after one that listed entries is a source answering badly (an export
        // written half-way, a register mid-deploy), not every participant gone: it would turn
        // refused products into "unknown". The last good document stays, as for a failure.
        let parsed = match parsed {
            Ok(d) if d.is_empty() && self.last_good_lists_someone(host, index, src) => {
                Err("answered an empty list after a document that listed entries".to_string())
            }
            other => other,
        };
        match parsed {
            Ok(d) => {
                let d = Rc::new(d);
                if let (Some(lease), Some(slot)) = (lease, self.status.slots.get_mut(index)) {
                    match slot.cache.publish(
                        &mut HostStore(host),
                        &src.cache_key,
                        &body,
                        src.refresh,
                        now,
                        lease,
                    ) {
                        Ok(generation) => {
                            let until = now.saturating_add_unsigned(src.refresh);
                            slot.parsed = Some((generation, until, Rc::clone(&d)));
                        }
                        Err(e) => host.log(
                            Level::Warn,
                            &format!(
                                "dcr-guard: status cache: cannot store `{}`: {e}",
                                escape(&src.url, MAX_REASON)
                            ),
                        ),
                    }
                }
                Got::Doc(d)
            }
            Err(why) => {
                host.log(
                    Level::Info,
                    &format!(
                        "dcr-guard: status fetch from `{}` {} (the last good document stays)",
                        escape(&src.url, MAX_REASON),
                        escape(&why, MAX_REASON)
                    ),
                );
                self.status_failed(host, cfg, index, lease, why, now, serving)
            }
        }
    }

    /// Whether the last good document of source `index` (this worker's parsed copy, else the
    /// shared one) lists any entry.
    fn last_good_lists_someone(
        &mut self,
        host: &mut dyn Host,
        index: usize,
        src: &StatusSource,
    ) -> bool {
        let Some(slot) = self.status.slots.get_mut(index) else {
            return false;
        };
        if let Some((_, _, d)) = &slot.parsed {
            return !d.is_empty();
        }
        match slot.cache.peek(&HostStore(host), &src.cache_key) {
            Ok(Some(entry)) => matches!(doc(slot, src, &entry), Got::Doc(d) if !d.is_empty()),
            _ => false,
        }
    }

    /// Root-context tick: status fetches whose stream the host finished before the answer came
    /// (the SDK drops that answer) are fetched again by the root under the same lease, so that
    /// a client hanging up does not leave the lease held and everyone else waiting.
    pub fn adopt_status_orphans(&mut self, host: &mut dyn Host, cfg: &Config, now: i64) {
        for (index, lease) in std::mem::take(&mut self.status_orphans) {
            let _ = self.fetch_status(host, cfg, index, Some(lease), None, now);
        }
    }

    /// Root-context tick: fetch the status documents that are missing or due, under the lease,
    /// one worker at a time.
    pub fn refresh_status(&mut self, host: &mut dyn Host, cfg: &Config, now: i64) {
        if self.status.slots.is_empty() || now < self.status.next_refresh {
            return;
        }
        self.status.next_refresh = now.saturating_add(REFRESH_CHECK_SECONDS);
        for index in 0..self.status.slots.len() {
            let (Some(src), Some(slot)) = (
                cfg.rules.participant_status.get(index),
                self.status.slots.get_mut(index),
            ) else {
                continue;
            };
            // This worker's parsed copy is current: nothing is due (a document is only replaced
            // once it expires), and reading shared data would copy the whole document.
            if matches!(&slot.parsed, Some((_, until, _)) if now < *until) {
                continue;
            }
            // Another worker may have refreshed it: take that copy (parsed once per period)
            // instead of copying it out of shared data on every tick.
            if let Ok(Some(entry)) = slot.cache.peek(&HostStore(host), &src.cache_key) {
                if now < entry.expires_at {
                    let _ = doc(slot, src, &entry);
                    continue;
                }
            }
            match slot
                .cache
                .needs_refresh(&mut HostStore(host), &src.cache_key, now, self.holder)
            {
                Ok(Some(lease)) => {
                    let _ = self.fetch_status(host, cfg, index, Some(lease), None, now);
                }
                Ok(None) => {}
                Err(e) => host.log(Level::Warn, &format!("dcr-guard: status cache: {e}")),
            }
        }
    }

    /// Which status waiters can go on now: (ctx, index, what they got).
    pub fn poll_status_waiters(
        &mut self,
        host: &mut dyn Host,
        cfg: &Config,
        now: i64,
    ) -> Vec<(u32, usize, Got)> {
        let mut done = Vec::new();
        let mut still = Vec::new();
        for w in std::mem::take(&mut self.status.waiters) {
            let (Some(src), Some(slot)) = (
                cfg.rules.participant_status.get(w.index),
                self.status.slots.get_mut(w.index),
            ) else {
                continue;
            };
            let store = HostStore(host);
            let outcome = match slot.cache.poll(&store, &src.cache_key, w.seen, now) {
                // New to this waiter, but never used past the maximum staleness either.
                Ok(Poll::Ready(entry)) if now < add(entry.expires_at, src.max_staleness) => {
                    Some(doc(slot, src, &entry))
                }
                Ok(Poll::Ready(_)) => Some(Got::Unavailable(
                    "the status document is older than its maximum staleness".into(),
                )),
                Ok(Poll::TimedOut) => match slot.cache.peek(&store, &src.cache_key) {
                    Ok(Some(e)) if now < add(e.expires_at, src.max_staleness) => {
                        Some(doc(slot, src, &e))
                    }
                    _ => Some(Got::Unavailable(
                        "the fetch by another worker did not complete".into(),
                    )),
                },
                Ok(Poll::Waiting) if now > w.deadline.saturating_add(1) => Some(Got::Unavailable(
                    "the fetch by another worker did not complete".into(),
                )),
                Ok(Poll::Waiting) => None,
                Err(e) => Some(Got::Unavailable(format!("status cache: {e}"))),
            };
            match outcome {
                Some(got) => done.push((w.ctx, w.index, got)),
                None => still.push(w),
            }
        }
        self.status.waiters = still;
        done
    }
}
