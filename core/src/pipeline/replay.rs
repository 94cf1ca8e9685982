//! Replay detection, last of all (spec §7): a request rejected for anything else must not use up
//! its `jti`; in report-only mode only a request that passed everything else is recorded.

use super::{Create, Work};
use crate::config::Config;
use crate::error::{DcrError, RuleId};
use crate::replay::{Pair, Share};

/// What the replay check did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayCheck {
    /// Checked and recorded (or nothing to check: no registration body, or the rules are off).
    Passed,
    /// Not checked: report-only mode, and the request failed something else (its `jti`s are not
    /// used up). `request_jti`: the request-`jti` rule is on (the glue counts it as skipped).
    Skipped { request_jti: bool },
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
        replay(create, cfg, store, now).map(|()| ReplayCheck::Passed)
    }
}

/// `request_jti` then `ssa_jti` (spec §7): remember (issuer, jti) in the shared replay store
/// until `min(exp, iat + max_request_age) + leeway` (at least + 1 s: the age check accepts its
/// last second) (SSA: its `exp`, or the configured
/// window), never longer than `replay.max_retention_seconds`. With both on, both are looked
/// up before either is recorded, so that a request refused by `ssa_jti` has not used up its
/// request `jti` (only two concurrent requests racing for the same SSA `jti` can still do
/// that: the recording itself is atomic per pair).
pub fn replay(
    create: &Create,
    cfg: &Config,
    store: &mut dyn crate::replay::SharedData,
    now: i64,
) -> Result<(), DcrError> {
    let leeway = i64::try_from(cfg.leeway).unwrap_or(0);
    let cap = now.saturating_add(i64::try_from(cfg.replay.max_retention).unwrap_or(i64::MAX));
    // (rule, pair, until, what a replay is called)
    let mut pairs: Vec<(RuleId, Pair<'_>, i64, &str)> = Vec::new();
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
        let pair = Pair {
            issuer: iss,
            jti,
            share: Share::Limited,
        };
        pairs.push((rule, pair, until, "the request `jti` has been used before"));
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
        let pair = Pair {
            issuer: iss,
            jti,
            share: Share::Exempt,
        };
        pairs.push((rule, pair, until, "the SSA `jti` has been used before"));
    }
    let Some(first_rule) = pairs.first().map(|p| p.0) else {
        return Ok(());
    };
    let secret = crate::replay::load_secret(store, &cfg.replay.store)
        .map_err(|e| store_failure(cfg, first_rule, e))?;
    if pairs.len() > 1 {
        for (rule, pair, _, replayed) in &pairs {
            match crate::replay::seen(&*store, &cfg.replay.store, &secret, pair, now) {
                Ok(false) => {}
                Ok(true) => return Err(DcrError::rule(*rule, *replayed)),
                Err(e) => return Err(store_failure(cfg, *rule, e)),
            }
        }
    }
    for (rule, pair, until, replayed) in pairs {
        record(store, cfg, &secret, rule, &pair, now, until, replayed)?;
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
