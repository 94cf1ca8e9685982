//! The create validation (spec §3 steps 2–7) as a state machine: parse the request and the SSA,
//! refuse what needs no key, then verify the SSA against its directory's JWKS, the request JWT
//! against the software JWKS the verified SSA names, and run the claim rules. It says which key
//! documents it needs ([`Step::Fetch`]); the host fetches them through the key supply and hands
//! them back ([`Create::supply`]). Within one request each document is fetched once.

use super::Step;
use crate::claims::{opt_str, Claims};
use crate::config::Config;
use crate::error::{clip, DcrError, ErrorCode, RuleId};
use crate::jose::{self, Alg, JoseError, Jws};
use crate::keys::source::{software_source, SoftwareSourceError};
use crate::keys::{
    Docs, Fetched, JwksSource, KeyFailure, KeyStep, KeystoreFault, SsaMemo, Verdicts,
};
use crate::rules::{time, Ctx, CLAIM_RULE_ORDER};
use std::rc::Rc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Ssa,
    Request,
    Claims,
    Done,
}

/// Facts about a request, for logs and filter state. Raw values as the client sent them (cut to
/// a bound): every sink escapes them with [`crate::escape::escape`]. A value is only under its
/// own name once the token that carries it verified; until then it is only *claimed*.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The `software_id` of an SSA whose signature (and time checks) verified.
    pub software_id: Option<String>,
    /// The `software_id` an SSA that has not verified (or failed) claims: never attributed.
    pub claimed_software_id: Option<String>,
    /// The `jti` of a request JWT whose signature verified.
    pub jti: Option<String>,
    /// The `jti` a request claims whose signature has not verified (or that has none: a JSON
    /// body).
    pub claimed_jti: Option<String>,
}

/// Longest fact kept (sinks bound them again when they escape them).
const MAX_FACT: usize = 256;

/// What became of one rule in a traced create ([`Create::parse_traced`], [`Create::trace`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The rule ran and passed.
    Pass,
    /// The rule ran and failed with this error (what the filter answers in enforcing mode).
    Fail(DcrError),
    /// Report-only mode: not run because a rule it depends on failed.
    Skipped,
}

/// The rules a traced create ran, in the order it ran them (spec §4a), each once with its outcome.
/// Rules that are off, and rules not reached because an earlier one failed in enforcing mode,
/// are absent. Replay (`request_jti`, `ssa_jti`) is not part of the create machine
/// ([`Work::replay`] runs after it) and never appears.
pub type Trace = Vec<(RuleId, Outcome)>;

/// A create (POST) being validated.
#[derive(Debug)]
pub struct Create {
    /// The request JWT (absent for a JSON body).
    request: Option<Jws>,
    /// The request's claims: the JWT payload, or the JSON body.
    claims: Claims,
    /// The SSA, parsed (shared with the verdict cache when it came from there).
    ssa: Rc<Jws>,
    /// A verdict cache hit, until it is used: the key-set identity the SSA verified against,
    /// until when that verdict holds, and the SSA's memo.
    hit: Option<([u8; 32], i64, Rc<SsaMemo>)>,
    /// What is known of this SSA from earlier requests; set once its signature is known good.
    memo: Option<Rc<SsaMemo>>,
    stage: Stage,
    /// The key documents handed back so far.
    keys: Docs,
    software: Option<JwksSource>,
    pub facts: Facts,
    /// The client certificate (`certificate_binding`).
    cert: Result<Option<crate::cert::ClientCert>, String>,
    report_only: bool,
    /// Report-only mode: every failure found (enforcing mode stops at the first).
    failures: Vec<DcrError>,
    /// Report-only mode: rules not run because one they depend on failed.
    skipped: Vec<RuleId>,
    /// Every rule's outcome, when traced ([`Create::parse_traced`]); `None` in the filter.
    trace: Option<Trace>,
}

/// Algorithms `none` and HS* are refused whatever the allow-list; others must be on it.
fn check_alg(name: &str, allowed: &[Alg]) -> Result<Alg, String> {
    if crate::jose::alg_is_forbidden(name) {
        return Err(format!("algorithm `{}` is never accepted", clip(name, 16)));
    }
    match Alg::parse(name) {
        Some(a) if allowed.contains(&a) => Ok(a),
        _ => Err(format!("algorithm `{}` is not allowed", clip(name, 16))),
    }
}

/// A JSON registration body (Brazil): a JSON object, duplicate member names refused.
fn json_object(body: &[u8]) -> Result<Claims, DcrError> {
    crate::jose::jws::parse_object(body, "body").map_err(|e| match e {
        JoseError::Malformed(m) => DcrError::invalid_request(format!("the registration {m}")),
        dup @ JoseError::DuplicateMember { .. } => {
            DcrError::invalid_request(dup.duplicate_sentence(None).unwrap_or_default())
        }
        other => DcrError::invalid_request(other.to_string()),
    })
}

fn jose_description(what: &str, e: &JoseError) -> String {
    format!("{what}: {e}")
}

impl Create {
    /// Steps 2–4: parse the request JWT and the SSA, check the SSA issuer, and refuse algorithms
    /// before anything is fetched.
    pub fn parse(cfg: &Config, body: &[u8], verdicts: &Verdicts) -> Result<Create, DcrError> {
        Create::parse_with(cfg, body, verdicts, None).map_err(|(e, _)| e)
    }

    /// [`Create::parse`] for a tool that shows every rule's verdict (the `dcr-guard` CLI): the
    /// create records each rule's [`Outcome`] as it runs ([`Create::trace`]). On an error, the
    /// trace so far (the failing rule last; empty when the envelope failed before any rule ran).
    pub fn parse_traced(
        cfg: &Config,
        body: &[u8],
        verdicts: &Verdicts,
    ) -> Result<Create, (DcrError, Trace)> {
        Create::parse_with(cfg, body, verdicts, Some(Trace::new()))
    }

    fn parse_with(
        cfg: &Config,
        body: &[u8],
        verdicts: &Verdicts,
        trace: Option<Trace>,
    ) -> Result<Create, (DcrError, Trace)> {
        // A rule that fails before the create exists (an algorithm refused while parsing).
        let traced = trace.is_some();
        let early = |e: DcrError| {
            let trace = match e.source {
                crate::error::Source::Rule(rule) if traced => {
                    vec![(rule, Outcome::Fail(e.clone()))]
                }
                _ => Trace::new(),
            };
            (e, trace)
        };
        let (request, claims) = if cfg.json_body {
            let claims = json_object(body).map_err(early)?;
            (None, claims)
        } else {
            let text = std::str::from_utf8(body)
                .map_err(|_| {
                    early(DcrError::invalid_request(
                        "the body is not a compact JWS (not UTF-8)",
                    ))
                })?
                .trim_matches(|c: char| c.is_ascii_whitespace());
            if text.is_empty() {
                return Err(early(DcrError::invalid_request(
                    "a signed JWT body is required",
                )));
            }
            let mut request = Jws::parse(text)
                .map_err(|e| match e {
                    JoseError::AlgForbidden(_) | JoseError::CritUnsupported(_) => DcrError::rule(
                        RuleId::RequestSignature,
                        jose_description("request JWT", &e),
                    ),
                    JoseError::DuplicateMember { .. } => DcrError::invalid_request(
                        e.duplicate_sentence(Some("the request JWT"))
                            .unwrap_or_default(),
                    ),
                    other => DcrError::invalid_request(jose_description(
                        "the body is not a compact JWS with a JSON object payload",
                        &other,
                    )),
                })
                .map_err(early)?;
            // The claims live in `Create::claims`; the request JWT keeps what verification needs.
            let claims = std::mem::take(&mut request.claims);
            (Some(request), claims)
        };
        let facts = Facts {
            claimed_jti: opt_str(&claims, "jti")
                .ok()
                .flatten()
                .map(|s| clip(s, MAX_FACT)),
            ..Facts::default()
        };

        let ssa_text = match claims.get("software_statement") {
            Some(serde_json::Value::String(s)) => s.as_str(),
            None => {
                return Err(early(DcrError::envelope(
                    ErrorCode::InvalidSoftwareStatement,
                    "claim `software_statement` not found",
                )))
            }
            Some(other) => {
                return Err(early(DcrError::envelope(
                    ErrorCode::InvalidSoftwareStatement,
                    format!(
                        "claim `software_statement` must be a string, not {}",
                        crate::claims::type_name(other)
                    ),
                )))
            }
        };
        // A TPP reuses its SSA: one verified before is taken parsed from the verdict cache.
        let (ssa, hit) = match verdicts.lookup(ssa_text) {
            Some(hit) => (hit.ssa, Some((hit.sets, hit.until, hit.memo))),
            None => {
                let ssa = Jws::parse(ssa_text)
                    .map_err(|e| match e {
                        JoseError::AlgForbidden(_) | JoseError::CritUnsupported(_) => {
                            DcrError::rule(RuleId::SsaSignature, jose_description("SSA", &e))
                        }
                        JoseError::DuplicateMember { .. } => DcrError::envelope(
                            ErrorCode::InvalidSoftwareStatement,
                            e.duplicate_sentence(Some("the software statement"))
                                .unwrap_or_default(),
                        ),
                        other => DcrError::envelope(
                            ErrorCode::InvalidSoftwareStatement,
                            jose_description("`software_statement` is not a compact JWS", &other),
                        ),
                    })
                    .map_err(early)?;
                (Rc::new(ssa), None)
            }
        };

        let mut create = Create {
            request,
            claims,
            ssa,
            hit,
            memo: None,
            stage: Stage::Ssa,
            keys: Docs::default(),
            software: None,
            facts,
            cert: Ok(None),
            report_only: cfg.report_only,
            failures: Vec::new(),
            skipped: Vec::new(),
            trace,
        };
        create.facts.claimed_software_id = opt_str(&create.ssa.claims, "software_id")
            .ok()
            .flatten()
            .map(|s| clip(s, MAX_FACT));

        match create.checks_before_fetch(cfg) {
            Ok(()) => Ok(create),
            Err(e) => Err((e, create.trace.take().unwrap_or_default())),
        }
    }

    /// Steps 4 and the algorithm checks that need no key: refuse before fetching anything.
    fn checks_before_fetch(&mut self, cfg: &Config) -> Result<(), DcrError> {
        let ssa = Rc::clone(&self.ssa);
        // Step 4: ssa_issuer.
        let ssa_iss = opt_str(&ssa.claims, "iss")
            .map_err(|m| format!("SSA {m}"))
            .and_then(|i| i.ok_or_else(|| "SSA claim `iss` not found".to_string()));
        let directory = ssa_iss.as_ref().ok().and_then(|i| cfg.directory(i));
        if cfg.rules.ssa_issuer && directory.is_none() {
            let why = match &ssa_iss {
                Ok(iss) => format!("SSA issuer `{}` is not trusted", clip(iss, 64)),
                Err(m) => m.clone(),
            };
            self.fail(DcrError::rule(RuleId::SsaIssuer, why))?;
        } else if cfg.rules.ssa_issuer {
            self.note(RuleId::SsaIssuer, Outcome::Pass);
        }
        // Algorithm checks that need no key: refuse before fetching anything.
        if cfg.rules.ssa_signature {
            match directory {
                None => self.fail(DcrError::rule(
                    RuleId::SsaSignature,
                    "no trusted directory for the SSA issuer",
                ))?,
                Some(dir) => {
                    if let Err(m) = check_alg(&ssa.header.alg, &dir.algorithms) {
                        self.fail(DcrError::rule(RuleId::SsaSignature, format!("SSA {m}")))?;
                    }
                }
            }
        }
        let refused = match (cfg.rules.request_signature, &self.request) {
            (true, Some(request)) => check_alg(&request.header.alg, &cfg.request_algorithms).err(),
            _ => None,
        };
        if let Some(m) = refused {
            self.fail(DcrError::rule(
                RuleId::RequestSignature,
                format!("request JWT {m}"),
            ))?;
        }
        Ok(())
    }

    /// Record a failure: in enforcing mode it ends the validation (`Err`); in report-only mode it
    /// is kept and the validation goes on.
    fn fail(&mut self, e: DcrError) -> Result<(), DcrError> {
        if let (Some(trace), crate::error::Source::Rule(rule)) = (&mut self.trace, e.source) {
            trace.push((rule, Outcome::Fail(e.clone())));
        }
        if self.report_only {
            self.failures.push(e);
            Ok(())
        } else {
            Err(e)
        }
    }

    fn failed(&self, rule: RuleId) -> bool {
        self.failures
            .iter()
            .any(|f| f.source == crate::error::Source::Rule(rule))
    }

    /// Record a rule's outcome when traced.
    fn note(&mut self, rule: RuleId, outcome: Outcome) {
        if let Some(trace) = &mut self.trace {
            trace.push((rule, outcome));
        }
    }

    /// The rules run so far with their outcomes, in order (empty unless made by
    /// [`Create::parse_traced`]).
    pub fn trace(&self) -> &[(RuleId, Outcome)] {
        self.trace.as_deref().unwrap_or_default()
    }

    /// Report-only mode: the failures found and the rules skipped because of them.
    pub fn report(&self) -> (&[DcrError], &[RuleId]) {
        (&self.failures, &self.skipped)
    }

    pub fn request_claims(&self) -> &Claims {
        &self.claims
    }

    pub fn ssa_claims(&self) -> &Claims {
        &self.ssa.claims
    }

    /// Hand back a fetched document.
    pub fn supply(&mut self, url: &str, fetched: Fetched) {
        self.keys.supply(url, fetched);
    }

    /// Run as far as possible.
    pub fn step(&mut self, cfg: &Config, now: i64, verdicts: &mut Verdicts) -> Step {
        loop {
            let progress = match self.stage {
                Stage::Ssa => self.verify_ssa(cfg, now, verdicts),
                Stage::Request => self.verify_request(cfg),
                Stage::Claims => self.claim_rules(cfg, now),
                Stage::Done => return Step::Forward,
            };
            match progress {
                Ok(Progress::Next(stage)) => self.stage = stage,
                Ok(Progress::Need(sources)) => return Step::Fetch(sources),
                Ok(Progress::NeedKid(sources)) => return Step::Refetch(sources),
                Err(e) => {
                    self.stage = Stage::Done;
                    return Step::Reject(e);
                }
            }
        }
    }

    /// Step 5: `ssa_signature` (signature against the issuer's directory JWKS, then SSA time).
    fn verify_ssa(
        &mut self,
        cfg: &Config,
        now: i64,
        verdicts: &mut Verdicts,
    ) -> Result<Progress, DcrError> {
        let rule = RuleId::SsaSignature;
        if !cfg.rules.ssa_signature || self.failed(rule) {
            return Ok(Progress::Next(Stage::Request));
        }
        let dir = match opt_str(&self.ssa.claims, "iss")
            .ok()
            .flatten()
            .and_then(|i| cfg.directory(i))
        {
            Some(d) => d,
            None => {
                // Only reachable in report-only mode with `ssa_issuer` failed or off.
                self.fail(DcrError::rule(
                    rule,
                    "no trusted directory for the SSA issuer",
                ))?;
                return Ok(Progress::Next(Stage::Request));
            }
        };
        let (mut hit_used, mut remembered) = (false, None);
        let (ssa, hit, claims) = (&self.ssa, &self.hit, &self.claims);
        let step = self.keys.check(&dir.jwks, |g| {
            // The same SSA verified against the same key set before: no second verification.
            if hit
                .as_ref()
                .is_some_and(|(sets, until, _)| now < *until && *sets == Verdicts::set_id(&g.sets))
            {
                hit_used = true;
                return Ok(());
            }
            jose::verify(ssa, &g.sets, &dir.algorithms).map(|_| {
                if let Some(serde_json::Value::String(text)) = claims.get("software_statement") {
                    remembered = verdicts.remember(text, ssa, &g.sets, now);
                }
            })
        });
        if hit_used {
            self.memo = self.hit.take().map(|(_, _, memo)| memo);
        } else if remembered.is_some() {
            self.memo = remembered;
        }
        let verified = match step {
            KeyStep::Fetch(missing) => return Ok(Progress::Need(missing)),
            KeyStep::Refetch(again) => return Ok(Progress::NeedKid(again)),
            KeyStep::Passed(()) => Ok(()),
            KeyStep::Failed(f) => Err(key_error(rule, "SSA", &f, "directory", cfg.retry_after)),
        };
        let verified = verified.and_then(|_| {
            time::check_ssa(
                &self.ssa.claims,
                now,
                i64::try_from(cfg.leeway).unwrap_or(0),
                dir.max_ssa_age,
                dir.require_exp,
            )
            .map_err(|m| DcrError::rule(rule, m))
        });
        if let Err(e) = verified {
            self.fail(e)?;
            return Ok(Progress::Next(Stage::Request));
        }
        self.note(rule, Outcome::Pass);
        // The SSA verified: its `software_id` is now a fact, no longer a claim.
        if let Some(id) = self.facts.claimed_software_id.take() {
            self.facts.software_id = Some(id);
        }
        let thumbprints = needs_thumbprints(cfg);
        let rule = if cfg.rules.request_signature {
            RuleId::RequestSignature
        } else {
            RuleId::CertificateBinding
        };
        if (cfg.rules.request_signature || thumbprints) && !self.failed(rule) {
            let known = self.memo.as_ref().and_then(|m| m.software.borrow().clone());
            match known.map_or_else(|| self.software_source(cfg, rule), Ok) {
                Ok(src) => {
                    if let Some(m) = &self.memo {
                        m.software.replace(Some(src.clone()));
                    }
                    self.software = Some(src)
                }
                Err(e) => self.fail(e)?,
            }
        }
        Ok(Progress::Next(Stage::Request))
    }

    /// The software JWKS named by the *verified* SSA, if its host is allowed. Never fetched otherwise.
    fn software_source(&self, cfg: &Config, rule: RuleId) -> Result<JwksSource, DcrError> {
        let claim = cfg.ssa_software_jwks_claim.as_str();
        let url = opt_str(&self.ssa.claims, claim)
            .map_err(|m| DcrError::rule(rule, format!("SSA {m}")))?
            .ok_or_else(|| DcrError::rule(rule, format!("SSA claim `{claim}` not found")))?;
        software_source(url, |host, port| cfg.software_upstream(host, port)).map_err(|e| match e {
            SoftwareSourceError::Url(m) => {
                DcrError::rule(rule, format!("software JWKS URL in the SSA {m}"))
            }
            SoftwareSourceError::NotAllowed(authority) => DcrError::rule(
                rule,
                format!(
                    "software JWKS host `{}` is not allowed",
                    clip(&authority, 64)
                ),
            ),
        })
    }

    /// Step 6: `request_signature` against the software JWKS.
    fn verify_request(&mut self, cfg: &Config) -> Result<Progress, DcrError> {
        if !cfg.rules.request_signature {
            // Only the certificate binding may need the software JWKS (its transport keys).
            if let (true, Some(src)) = (needs_thumbprints(cfg), self.software.clone()) {
                if let Err(missing) = self.keys.gather(std::slice::from_ref(&src)) {
                    return Ok(Progress::Need(missing));
                }
            }
            return Ok(Progress::Next(Stage::Claims));
        }
        let src = match (&self.software, cfg.rules.request_signature) {
            (Some(src), true) => src.clone(),
            (None, true) => {
                // No verified SSA to take the software JWKS from: never fetched, reported skipped
                // (only reachable in report-only mode).
                if !self.failed(RuleId::RequestSignature) {
                    self.skipped.push(RuleId::RequestSignature);
                    self.note(RuleId::RequestSignature, Outcome::Skipped);
                }
                return Ok(Progress::Next(Stage::Claims));
            }
            _ => return Ok(Progress::Next(Stage::Claims)),
        };
        let request = &self.request;
        let step = self
            .keys
            .check(std::slice::from_ref(&src), |g| match request {
                Some(request) => {
                    jose::verify(request, &g.sets, &cfg.request_algorithms).map(|_| ())
                }
                None => Err(JoseError::Malformed("no request JWT".into())),
            });
        let verified = match step {
            KeyStep::Fetch(missing) => return Ok(Progress::Need(missing)),
            KeyStep::Refetch(again) => return Ok(Progress::NeedKid(again)),
            KeyStep::Passed(()) => Ok(()),
            KeyStep::Failed(f) => Err(key_error(
                RuleId::RequestSignature,
                "request JWT",
                &f,
                "software",
                cfg.retry_after,
            )),
        };
        match verified {
            Err(e) => self.fail(e)?,
            // The request JWT verified: its `jti` is now a fact, no longer a claim.
            Ok(()) => {
                self.note(RuleId::RequestSignature, Outcome::Pass);
                if let Some(jti) = self.facts.claimed_jti.take() {
                    self.facts.jti = Some(jti);
                }
            }
        }
        Ok(Progress::Next(Stage::Claims))
    }

    /// Steps 7–8: request time, then the claim rules.
    fn claim_rules(&mut self, cfg: &Config, now: i64) -> Result<Progress, DcrError> {
        if cfg.rules.issuance_time {
            if let Err(m) = time::check_request(
                &self.claims,
                now,
                i64::try_from(cfg.leeway).unwrap_or(0),
                i64::try_from(cfg.rules.max_request_age).unwrap_or(i64::MAX),
            ) {
                self.fail(DcrError::rule(RuleId::IssuanceTime, m))?;
            } else {
                self.note(RuleId::IssuanceTime, Outcome::Pass);
            }
        }
        let ctx = Ctx {
            request: &self.claims,
            ssa: &self.ssa.claims,
        };
        let mut found = Vec::new();
        let known = self.memo.as_ref().map_or(0, |m| m.passed.get());
        let passed = cfg
            .rules
            .claims
            .run_known(&ctx, !self.report_only, known, &mut |id, why| {
                found.push(DcrError::rule(id, why))
            });
        if let Some(m) = &self.memo {
            m.passed.set(passed);
        }
        let mut passes = Vec::new();
        if self.trace.is_some() {
            // The claim rules that ran and did not fail: in enforcing mode those before the first
            // failure (`run_known` stops there).
            let first_failed = found.first().and_then(|e| match e.source {
                crate::error::Source::Rule(r) => CLAIM_RULE_ORDER.iter().position(|x| *x == r),
                _ => None,
            });
            for (i, id) in CLAIM_RULE_ORDER.into_iter().enumerate() {
                let ran = self.report_only || first_failed.is_none_or(|f| i < f);
                let failed = found
                    .iter()
                    .any(|e| e.source == crate::error::Source::Rule(id));
                if ran && !failed && cfg.rules.claims.is_on(id) {
                    passes.push(id);
                }
            }
        }
        if let Some(p) = &cfg.rules.certificate_binding {
            if found.is_empty() || self.report_only {
                match self.certificate_check(cfg, p, &ctx) {
                    Some(e) => found.push(e),
                    None if self.trace.is_some() => passes.push(RuleId::CertificateBinding),
                    None => {}
                }
            }
        }
        if self.trace.is_some() {
            // Traced: each rule's outcome in the order the rules ran (`found` is in that order).
            let ran = CLAIM_RULE_ORDER
                .into_iter()
                .chain([RuleId::CertificateBinding]);
            for id in ran {
                if passes.contains(&id) {
                    self.note(id, Outcome::Pass);
                }
                if let Some(i) = found
                    .iter()
                    .position(|e| e.source == crate::error::Source::Rule(id))
                {
                    let e = found.remove(i);
                    self.fail(e)?;
                }
            }
        }
        for e in found {
            self.fail(e)?;
        }
        Ok(Progress::Next(Stage::Done))
    }
}

/// `certificate_binding` compares the certificate with the software JWKS's transport keys.
fn needs_thumbprints(cfg: &Config) -> bool {
    cfg.rules
        .certificate_binding
        .as_ref()
        .is_some_and(|p| p.thumbprint)
}

impl Create {
    /// The client certificate the host reported (`Ok(None)`: the connection had none).
    pub fn set_client_cert(&mut self, cert: Result<Option<crate::cert::ClientCert>, String>) {
        self.cert = cert;
    }

    fn certificate_check(
        &self,
        cfg: &Config,
        p: &crate::rules::certificate::CertificateBinding,
        ctx: &Ctx<'_>,
    ) -> Option<DcrError> {
        let rule = RuleId::CertificateBinding;
        let cert = match &self.cert {
            Err(m) => {
                return Some(DcrError::rule(
                    rule,
                    format!("the client certificate could not be read: {m}"),
                ))
            }
            Ok(c) => c.as_ref(),
        };
        let doc = self.software.as_ref().and_then(|s| self.keys.get(&s.url));
        if p.thumbprint {
            if let Some(Fetched::Unavailable(m)) = doc {
                return Some(DcrError::unavailable(
                    rule,
                    format!("software keystore unavailable: {m}"),
                    cfg.retry_after,
                ));
            }
        }
        let thumbprints = match doc {
            Some(Fetched::Keys(set)) => Some(set.tls_thumbprints.as_slice()),
            _ => None,
        };
        crate::rules::certificate::certificate_binding(ctx, cert, thumbprints, p)
            .err()
            .map(|m| DcrError::rule(rule, m))
    }
}

enum Progress {
    Next(Stage),
    Need(Vec<JwksSource>),
    NeedKid(Vec<JwksSource>),
}

/// Map a verification failure. A key that could not be found while a keystore was down is a
/// dependency fault (503); while a keystore answered with junk, the client's 400 names it.
fn key_error(
    rule: RuleId,
    what: &str,
    f: &KeyFailure,
    keystore: &str,
    retry_after: u32,
) -> DcrError {
    match f.keystore_fault() {
        Some(KeystoreFault::Unavailable(m)) => DcrError::unavailable(
            rule,
            format!("{keystore} keystore unavailable: {m}"),
            retry_after,
        ),
        Some(KeystoreFault::Unusable(m)) => {
            DcrError::rule(rule, format!("{keystore} keystore {m}"))
        }
        None => DcrError::rule(rule, format!("{what} signature: {}", f.error)),
    }
}
