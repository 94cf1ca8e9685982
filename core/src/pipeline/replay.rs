//! Replay detection, last of all (spec §7): a request rejected for anything else must not use up
//! its `jti`; in report-only mode only a request that passed everything else is recorded.

use super::{Create, Work};
use crate::config::Config;
use crate::error::{DcrError, RuleId};
use crate::replay::etcd::{GrpcCall, Next, Recording};
use crate::replay::{Pair, Share};

/// What the replay check did.
#[derive(Debug)]
pub enum ReplayCheck {
    /// Checked and recorded (or nothing to check: no registration body, or the rules are off).
    Passed,
    /// Not checked: report-only mode, and the request failed something else (its `jti`s are not
    /// used up). `request_jti`: the request-`jti` rule is on (the glue counts it as skipped).
    Skipped { request_jti: bool },
    /// `replay.store: etcd`: not seen by this gateway; the fleet store decides. Drive it with
    /// [`FleetReplay::start`] and [`FleetReplay::answer`].
    Fleet(Box<FleetReplay>),
}

impl Work {
    /// The replay check, once every other check let the request through ([`super::Step::Forward`]).
    pub fn check_replay(
        &self,
        cfg: &Config,
        store: &mut dyn crate::replay::SharedData,
        now: i64,
    ) -> Result<ReplayCheck, DcrError> {
        let Some(create) = self.created() else {
            return Ok(ReplayCheck::Passed);
        };
        if !create.report().0.is_empty() {
            return Ok(ReplayCheck::Skipped {
                request_jti: cfg.rules.request_jti,
            });
        }
        match &cfg.replay.fleet {
            None => replay(create, cfg, store, now).map(|()| ReplayCheck::Passed),
            Some(settings) => {
                let pairs = pending(create, cfg, now)?;
                if pairs.is_empty() {
                    return Ok(ReplayCheck::Passed);
                }
                // First tier: a pair this gateway recorded (only ever after the fleet store
                // did) is a replay without a round trip. A local store that cannot be read is
                // no reason to refuse: the fleet store decides.
                if let Ok(secret) = crate::replay::load_secret(store, &cfg.replay.store) {
                    for p in &pairs {
                        let pair = p.pair();
                        if let Ok(true) =
                            crate::replay::seen(&*store, &cfg.replay.store, &secret, &pair, now)
                        {
                            return Err(DcrError::rule(p.rule, p.replayed));
                        }
                    }
                }
                let keys: Vec<(&str, &str, i64)> = pairs
                    .iter()
                    .map(|p| (p.issuer.as_str(), p.jti.as_str(), p.until))
                    .collect();
                let recording = Recording::new(settings, &keys, now);
                Ok(ReplayCheck::Fleet(Box::new(FleetReplay {
                    target: settings.grpc_service(),
                    timeout_ms: settings.timeout_ms,
                    retry_after: cfg.retry_after,
                    pairs,
                    recording,
                    now,
                })))
            }
        }
    }
}

/// One pair to check, owned: its rule, (issuer, jti), share, how long it is remembered, and what
/// a replay of it is called.
#[derive(Debug, Clone)]
struct Pending {
    rule: RuleId,
    issuer: String,
    jti: String,
    share: Share,
    until: i64,
    replayed: &'static str,
}

impl Pending {
    fn pair(&self) -> Pair<'_> {
        Pair {
            issuer: &self.issuer,
            jti: &self.jti,
            share: self.share,
        }
    }
}

/// The fleet replay store's part of one registration (`replay.store: etcd`): the gRPC calls to
/// send, and the verdict once etcd has answered.
#[derive(Debug)]
pub struct FleetReplay {
    target: String,
    timeout_ms: u64,
    retry_after: u32,
    pairs: Vec<Pending>,
    recording: Recording,
    now: i64,
}

/// What the glue does next for a [`FleetReplay`].
#[derive(Debug)]
pub enum FleetStep {
    /// Send this call to [`FleetReplay::target`] with [`FleetReplay::timeout_ms`], and hand the
    /// answer to [`FleetReplay::answer`].
    Call(GrpcCall),
    /// The verdict: `Ok` forward; `Err` a replay (400) or a store fault (503).
    Done(Result<(), DcrError>),
}

impl FleetReplay {
    /// The host's `grpc_service` argument (the etcd cluster, see [`EtcdSettings::grpc_service`]).
    ///
    /// [`EtcdSettings::grpc_service`]: crate::replay::etcd::EtcdSettings::grpc_service
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The deadline of each call.
    pub fn timeout_ms(&self) -> u64 {
        self.timeout_ms
    }

    /// The first call.
    pub fn start(&mut self) -> FleetStep {
        let next = self.recording.start();
        self.step(next, None)
    }

    /// etcd's answer to the last call (gRPC status, `None` when there was no answer; its message;
    /// the response message). `store` is this gateway's shared data, where a recorded pair is
    /// also remembered (the first tier).
    pub fn answer(
        &mut self,
        cfg: &Config,
        store: &mut dyn crate::replay::SharedData,
        status: Option<u32>,
        message: &str,
        body: &[u8],
    ) -> FleetStep {
        let next = self.recording.answer(status, message, body);
        self.step(next, Some((cfg, store)))
    }

    /// Tell the engine the last call failed outside etcd (it could not start, or its answer was
    /// not read): a fault.
    pub fn fault(&mut self, why: String) -> FleetStep {
        self.step(Next::Fault(crate::replay::etcd::Fault(why)), None)
    }

    fn step(
        &mut self,
        next: Next,
        local: Option<(&Config, &mut dyn crate::replay::SharedData)>,
    ) -> FleetStep {
        let first = self.pairs.first().map_or(RuleId::RequestJti, |p| p.rule);
        match next {
            Next::Call(call) => FleetStep::Call(call),
            Next::Recorded => {
                if let Some((cfg, store)) = local {
                    self.remember_locally(cfg, store);
                }
                FleetStep::Done(Ok(()))
            }
            Next::Replayed(i) => {
                let p = self.pairs.get(i).or(self.pairs.first());
                FleetStep::Done(Err(match p {
                    Some(p) => DcrError::rule(p.rule, p.replayed),
                    None => DcrError::rule(first, "the `jti` has been used before"),
                }))
            }
            Next::Fault(f) => FleetStep::Done(Err(DcrError::unavailable(
                first,
                format!("the fleet replay store failed: {}", f.0),
                self.retry_after,
            ))),
        }
    }

    /// The first tier: remember what the fleet store just recorded, so that a replay to this
    /// gateway needs no round trip. Best effort: a full or failing local store changes nothing
    /// (the fleet store has the pair).
    fn remember_locally(&self, cfg: &Config, store: &mut dyn crate::replay::SharedData) {
        let Ok(secret) = crate::replay::load_secret(store, &cfg.replay.store) else {
            return;
        };
        for p in &self.pairs {
            let _ = crate::replay::check_and_record(
                store,
                &cfg.replay.store,
                &secret,
                &p.pair(),
                self.now,
                p.until,
            );
        }
    }
}

/// `request_jti` then `ssa_jti` (spec §7): remember (issuer, jti) in the shared replay store
/// until `min(exp, iat + max_request_age) + leeway` (at least + 1 s: the age check accepts its
/// last second) (SSA: its `exp`, or the configured
/// window), never longer than `replay.max_retention_seconds`. With both on, both are looked
/// up before either is recorded, so that a request refused by `ssa_jti` has not used up its
/// request `jti` (only two concurrent requests racing for the same SSA `jti` can still do
/// that: the recording itself is atomic per pair).
fn pending(create: &Create, cfg: &Config, now: i64) -> Result<Vec<Pending>, DcrError> {
    let leeway = i64::try_from(cfg.leeway).unwrap_or(0);
    let cap = now.saturating_add(i64::try_from(cfg.replay.max_retention).unwrap_or(i64::MAX));
    let mut pairs: Vec<Pending> = Vec::new();
    if cfg.rules.request_jti {
        let rule = RuleId::RequestJti;
        let c = create.request_claims();
        let iss = crate::claims::req_str(c, "iss").map_err(|m| DcrError::rule(rule, m))?;
        let jti = crate::claims::req_str(c, "jti").map_err(|m| DcrError::rule(rule, m))?;
        if cfg.rules.request_jti_uuid4 && !is_uuid4(jti) {
            return Err(DcrError::rule(rule, "claim `jti` must be a UUIDv4"));
        }
        let exp = crate::claims::opt_date(c, "exp").ok().flatten();
        let by_age = crate::claims::opt_date(c, "iat").ok().flatten().map(|i| {
            i.saturating_add(i64::try_from(cfg.rules.max_request_age).unwrap_or(i64::MAX))
        });
        // `leeway`, at least 1 s: see `Replay::retention_margin` (the cap is at least
        // `Replay::retention_floor`, so it never cuts this short for an accepted request).
        let margin =
            i64::try_from(crate::config::Replay::retention_margin(cfg.leeway)).unwrap_or(i64::MAX);
        let until = match (exp, by_age) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => cap,
        }
        .saturating_add(margin)
        .min(cap);
        // The TPP chooses its request `jti`s: limited to the issuer's share of the store.
        pairs.push(Pending {
            rule,
            issuer: iss.to_string(),
            jti: jti.to_string(),
            share: Share::Limited,
            until,
            replayed: "the request `jti` has been used before",
        });
    }
    if cfg.rules.ssa_jti {
        let rule = RuleId::SsaJti;
        let c = create.ssa_claims();
        let iss = crate::claims::req_str(c, "iss")
            .map_err(|m| DcrError::rule(rule, format!("SSA {m}")))?;
        let jti = crate::claims::req_str(c, "jti")
            .map_err(|m| DcrError::rule(rule, format!("SSA {m}")))?;
        let window = i64::try_from(cfg.rules.ssa_jti_window).unwrap_or(i64::MAX);
        let until = match crate::claims::opt_date(c, "exp").ok().flatten() {
            Some(exp) => exp,
            None => crate::claims::opt_date(c, "iat")
                .ok()
                .flatten()
                .unwrap_or(now)
                .saturating_add(window),
        }
        .saturating_add(leeway)
        .min(cap);
        // The directory issues every TPP's SSAs and no TPP can mint an SSA `jti`: not
        // limited by the share (it would make one directory's pairs compete for 10 %).
        pairs.push(Pending {
            rule,
            issuer: iss.to_string(),
            jti: jti.to_string(),
            share: Share::Exempt,
            until,
            replayed: "the SSA `jti` has been used before",
        });
    }
    Ok(pairs)
}

/// The local store (`replay.store: local`): with both rules on, both pairs are looked up before
/// either is recorded.
pub fn replay(
    create: &Create,
    cfg: &Config,
    store: &mut dyn crate::replay::SharedData,
    now: i64,
) -> Result<(), DcrError> {
    let pairs = pending(create, cfg, now)?;
    let Some(first_rule) = pairs.first().map(|p| p.rule) else {
        return Ok(());
    };
    let secret = crate::replay::load_secret(store, &cfg.replay.store)
        .map_err(|e| store_failure(cfg, first_rule, e))?;
    if pairs.len() > 1 {
        for p in &pairs {
            match crate::replay::seen(&*store, &cfg.replay.store, &secret, &p.pair(), now) {
                Ok(false) => {}
                Ok(true) => return Err(DcrError::rule(p.rule, p.replayed)),
                Err(e) => return Err(store_failure(cfg, p.rule, e)),
            }
        }
    }
    for p in &pairs {
        record(
            store,
            cfg,
            &secret,
            p.rule,
            &p.pair(),
            now,
            p.until,
            p.replayed,
        )?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn record(
    store: &mut dyn crate::replay::SharedData,
    cfg: &Config,
    secret: &crate::replay::Secret,
    rule: RuleId,
    pair: &crate::replay::Pair<'_>,
    now: i64,
    until: i64,
    replayed: &str,
) -> Result<(), DcrError> {
    use crate::replay::{check_and_record, ReplayOutcome};
    match check_and_record(store, &cfg.replay.store, secret, pair, now, until) {
        Ok(ReplayOutcome::Fresh) => Ok(()),
        Ok(ReplayOutcome::Replayed) => Err(DcrError::rule(rule, replayed)),
        Err(e) => Err(store_failure(cfg, rule, e)),
    }
}

fn store_failure(cfg: &Config, rule: RuleId, e: crate::replay::ReplayError) -> DcrError {
    use crate::replay::ReplayError;
    let why = match e {
        ReplayError::Full => "the replay store is full".to_string(),
        ReplayError::Contention => "the replay store is busy".to_string(),
        ReplayError::IssuerShare => {
            "this issuer holds its whole share of the replay store".to_string()
        }
        ReplayError::Store(m) => format!("the replay store failed: {m}"),
    };
    DcrError::unavailable(rule, why, cfg.retry_after)
}

/// `8-4-4-4-12` hexadecimal with version 4 and the RFC 4122 variant.
fn is_uuid4(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            14 => *c == b'4',
            19 => matches!(c.to_ascii_lowercase(), b'8' | b'9' | b'a' | b'b'),
            _ => c.is_ascii_hexdigit(),
        })
}
