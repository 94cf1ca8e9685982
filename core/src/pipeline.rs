//! The validation of a DCR create (spec §3 steps 2–7) as a host-agnostic state machine: it says
//! which JWKS documents it needs, the host glue fetches them and hands them back, and it goes on.
//! Within one request each document is fetched once.

use crate::claims::{opt_str, Claims};
use crate::config::{jwks_source, Config, JwksSource};
use crate::error::{clip, DcrError, ErrorCode, RuleId};
use crate::jose::{self, Alg, JoseError, JwkSet, Jws};
use crate::replay::{Pair, Share};
use crate::rules::{time, Ctx, CLAIM_RULE_ORDER};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

/// The outcome of fetching one JWKS document.
#[derive(Debug, Clone)]
pub enum Fetched {
    Keys(std::rc::Rc<JwkSet>),
    /// Timed out, refused, reset, or answered 5xx: a dependency fault (503).
    Unavailable(String),
    /// Answered, but with 4xx, a non-JSON or oversized document: the client's fault (400).
    Unusable(String),
}

impl Fetched {
    /// Interpret a callout response. `status` is `None` when the host reports no response at all.
    pub fn from_response(
        status: Option<u16>,
        body: &[u8],
        body_size: usize,
        max_bytes: usize,
        max_keys: usize,
    ) -> Fetched {
        let status = match status {
            None => return Fetched::Unavailable("no response".to_string()),
            Some(s) => s,
        };
        if status >= 500 {
            return Fetched::Unavailable(format!("answered HTTP {status}"));
        }
        if !(200..300).contains(&status) {
            return Fetched::Unusable(format!("answered HTTP {status}"));
        }
        if body_size > max_bytes || body.len() > max_bytes {
            return Fetched::Unusable(format!("document larger than {max_bytes} bytes"));
        }
        match JwkSet::parse(body, max_keys) {
            Ok(set) => Fetched::Keys(std::rc::Rc::new(set)),
            Err(e) => Fetched::Unusable(format!("unusable document: {e}")),
        }
    }
}

/// What the host should do next.
#[derive(Debug)]
pub enum Step {
    /// Fetch these documents and hand each back with [`Create::supply`], then call `step` again.
    Fetch(Vec<JwksSource>),
    /// The documents handed back lack the token's `kid`: fetch them again if the cache policy
    /// allows (a key rotation), or hand back the same documents.
    Refetch(Vec<JwksSource>),
    /// Make this call and hand its answer back with [`Work::answer`], then call `step` again.
    Call(crate::binding::Callout),
    Forward,
    Reject(DcrError),
}

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
    docs: Vec<(String, Fetched)>,
    software: Option<JwksSource>,
    pub facts: Facts,
    /// URLs already asked again for an unknown `kid` (once per request).
    kid_retried: Vec<String>,
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
    if name == "none" || name.starts_with("HS") {
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
            docs: Vec::new(),
            software: None,
            facts,
            kid_retried: Vec::new(),
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
        if !self.docs.iter().any(|(u, _)| u == url) {
            self.docs.push((url.to_string(), fetched));
        }
    }

    fn doc(&self, url: &str) -> Option<&Fetched> {
        self.docs.iter().find(|(u, _)| u == url).map(|(_, f)| f)
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

    /// The documents among `sources` not fetched yet, and the outcome of those that were.
    fn gather<'a>(&'a self, sources: &[JwksSource]) -> Result<Gathered<'a>, Vec<JwksSource>> {
        let mut missing = Vec::new();
        let mut g = Gathered::default();
        for src in sources {
            match self.doc(&src.url) {
                None => missing.push(src.clone()),
                Some(Fetched::Keys(set)) => g.sets.push(set.as_ref()),
                Some(Fetched::Unavailable(m)) => {
                    g.unavailable.push(format!("{} {m}", src.authority))
                }
                Some(Fetched::Unusable(m)) => g.unusable.push(format!("{} {m}", src.authority)),
            }
        }
        if missing.is_empty() {
            Ok(g)
        } else {
            Err(missing)
        }
    }

    /// An unknown `kid`: ask once for the documents again (the cache decides whether that is a
    /// refetch, by its cooldown).
    fn retry_kid(&mut self, sources: &[JwksSource]) -> Option<Progress> {
        // Only a document that was read and lacks the kid is worth asking for again.
        let all_read = sources
            .iter()
            .all(|s| matches!(self.doc(&s.url), Some(Fetched::Keys(_))));
        if !all_read || sources.iter().any(|s| self.kid_retried.contains(&s.url)) {
            return None;
        }
        for s in sources {
            self.kid_retried.push(s.url.clone());
            self.docs.retain(|(u, _)| *u != s.url);
        }
        Some(Progress::NeedKid(sources.to_vec()))
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
        let verified = match self.gather(&dir.jwks) {
            Err(missing) => return Ok(Progress::Need(missing)),
            // The same SSA verified against the same key set before: no second verification.
            Ok(g)
                if self.hit.as_ref().is_some_and(|(sets, until, _)| {
                    now < *until && *sets == Verdicts::set_id(&g.sets)
                }) =>
            {
                hit_used = true;
                Ok(())
            }
            Ok(g) => jose::verify(&self.ssa, &g.sets, &dir.algorithms)
                .map(|_| {
                    if let Some(serde_json::Value::String(text)) =
                        self.claims.get("software_statement")
                    {
                        remembered = verdicts.remember(text, &self.ssa, &g.sets, now);
                    }
                })
                .map_err(|e| {
                    let unknown_kid = matches!(e, JoseError::UnknownKid(_));
                    (
                        unknown_kid,
                        key_error(rule, "SSA", &e, &g, "directory", cfg.retry_after),
                    )
                }),
        };
        if hit_used {
            self.memo = self.hit.take().map(|(_, _, memo)| memo);
        } else if remembered.is_some() {
            self.memo = remembered;
        }
        if let Err((true, _)) = &verified {
            if let Some(again) = self.retry_kid(&dir.jwks) {
                return Ok(again);
            }
        }
        let verified = verified.map_err(|(_, e)| e).and_then(|_| {
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
        let mut src = jwks_source(url, "")
            .map_err(|m| DcrError::rule(rule, format!("software JWKS URL in the SSA {m}")))?;
        match cfg.software_upstream(&src.host, src.port) {
            Some(upstream) => {
                src.upstream = upstream.to_string();
                Ok(src)
            }
            None => Err(DcrError::rule(
                rule,
                format!(
                    "software JWKS host `{}` is not allowed",
                    clip(&src.authority, 64)
                ),
            )),
        }
    }

    /// Step 6: `request_signature` against the software JWKS.
    fn verify_request(&mut self, cfg: &Config) -> Result<Progress, DcrError> {
        if !cfg.rules.request_signature {
            // Only the certificate binding may need the software JWKS (its transport keys).
            if let (true, Some(src)) = (needs_thumbprints(cfg), self.software.clone()) {
                if let Err(missing) = self.gather(std::slice::from_ref(&src)) {
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
        let verified = match self.gather(std::slice::from_ref(&src)) {
            Err(missing) => return Ok(Progress::Need(missing)),
            Ok(g) => match &self.request {
                Some(request) => jose::verify(request, &g.sets, &cfg.request_algorithms),
                None => Err(JoseError::Malformed("no request JWT".into())),
            }
            .map(|_| ())
            .map_err(|e| {
                let unknown_kid = matches!(e, JoseError::UnknownKid(_));
                let err = key_error(
                    RuleId::RequestSignature,
                    "request JWT",
                    &e,
                    &g,
                    "software",
                    cfg.retry_after,
                );
                (unknown_kid, err)
            }),
        };
        if let Err((true, _)) = &verified {
            if let Some(again) = self.retry_kid(std::slice::from_ref(&src)) {
                return Ok(again);
            }
        }
        match verified {
            Err((_, e)) => self.fail(e)?,
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
        if let Some(p) = &cfg.certificate_binding {
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
    cfg.certificate_binding
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
        let doc = self.software.as_ref().and_then(|s| self.doc(&s.url));
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

#[derive(Default)]
struct Gathered<'a> {
    sets: Vec<&'a JwkSet>,
    unavailable: Vec<String>,
    unusable: Vec<String>,
}

/// Map a verification failure. A key that could not be found while a keystore was down is a
/// dependency fault (503); while a keystore answered with junk, the client's 400 names it.
fn key_error(
    rule: RuleId,
    what: &str,
    e: &JoseError,
    g: &Gathered<'_>,
    keystore: &str,
    retry_after: u32,
) -> DcrError {
    let not_found = matches!(e, JoseError::UnknownKid(_) | JoseError::NoKey);
    if not_found {
        if let Some(m) = g.unavailable.first() {
            return DcrError::unavailable(
                rule,
                format!("{keystore} keystore unavailable: {m}"),
                retry_after,
            );
        }
        if let Some(m) = g.unusable.first() {
            return DcrError::rule(rule, format!("{keystore} keystore {m}"));
        }
    }
    DcrError::rule(rule, format!("{what} signature: {e}"))
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

/// A per-worker cache of SSA signature verdicts: TPPs reuse their SSA, so its signature need not
/// be verified (nor the SSA parsed) again while the directory's key set is the same. Keyed by the
/// exact SSA text (compared whole; the map's hash covers its length and last 64 bytes, the
/// signature, which cannot collide by accident and cannot be chosen: only verified SSAs get in),
/// it keeps the parsed SSA, the identity of the key sets it verified against (SHA-256 of their
/// documents) and an [`SsaMemo`]; bounded in entries and bytes, expiring, first in first out.
/// Only successes are remembered, and the SSA's time checks still run on every request.
#[derive(Debug)]
pub struct Verdicts {
    entries: HashMap<u64, Verdict>,
    order: VecDeque<(u64, Rc<str>)>,
    capacity: usize,
    max_bytes: usize,
    bytes: usize,
    ttl: i64,
}

#[derive(Debug)]
struct Verdict {
    text: Rc<str>,
    ssa: Rc<Jws>,
    sets: [u8; 32],
    until: i64,
    memo: Rc<SsaMemo>,
}

/// What was worked out from one verified SSA under this worker's configuration, for the next
/// request that brings the same SSA (the configuration cannot change under a worker: a new
/// configuration gets new workers).
#[derive(Debug, Default)]
pub struct SsaMemo {
    /// The software JWKS named by the SSA (its URL parsed, its host allowed).
    pub software: std::cell::RefCell<Option<JwksSource>>,
    /// The SSA-only claim rules ([`crate::rules::SSA_ONLY_RULES`]) that passed, as a mask of
    /// [`crate::rules::rule_bit`]s.
    pub passed: std::cell::Cell<u32>,
}

/// A verdict cache hit.
pub struct Hit {
    pub ssa: Rc<Jws>,
    pub sets: [u8; 32],
    pub until: i64,
    pub memo: Rc<SsaMemo>,
}

/// An SSA longer than this is verified every time (never cached).
pub const VERDICT_MAX_SSA_BYTES: usize = 16 * 1024;

impl Default for Verdicts {
    fn default() -> Self {
        Verdicts::new(4096, 600)
    }
}

/// Whole-text equality, eight bytes at a time (the byte-wise `memcmp` of wasm32 is slow).
fn same_text(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    ca.zip(cb).all(|(x, y)| x == y) && ra == rb
}

impl Verdicts {
    /// At most `capacity` SSAs and about 8 MiB (text and parsed form) per worker.
    pub fn new(capacity: usize, ttl_seconds: i64) -> Verdicts {
        Verdicts {
            entries: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            max_bytes: 8 * 1024 * 1024,
            bytes: 0,
            ttl: ttl_seconds,
        }
    }

    /// What an entry is charged: its text, and about twice that for the parsed claims.
    fn cost(text: &str) -> usize {
        text.len().saturating_mul(3).saturating_add(256)
    }

    fn key(text: &str) -> u64 {
        use std::hash::{Hash, Hasher};
        let bytes = text.as_bytes();
        let tail = bytes.get(bytes.len().saturating_sub(64)..).unwrap_or(bytes);
        let mut h = std::collections::hash_map::DefaultHasher::new();
        bytes.len().hash(&mut h);
        tail.hash(&mut h);
        h.finish()
    }

    /// The identity of the key sets a signature was checked against.
    pub fn set_id(sets: &[&JwkSet]) -> [u8; 32] {
        let mut ids = ring::digest::Context::new(&ring::digest::SHA256);
        for s in sets {
            ids.update(&s.fingerprint);
        }
        <[u8; 32]>::try_from(ids.finish().as_ref()).unwrap_or([0; 32])
    }

    /// The parsed SSA, the key-set identity it verified against, until when that verdict holds
    /// (the caller compares both) and its memo.
    pub fn lookup(&self, text: &str) -> Option<Hit> {
        self.entries
            .get(&Self::key(text))
            .filter(|v| same_text(&v.text, text))
            .map(|v| Hit {
                ssa: Rc::clone(&v.ssa),
                sets: v.sets,
                until: v.until,
                memo: Rc::clone(&v.memo),
            })
    }

    /// Remember that `text` (parsed as `ssa`) verified against `sets`; returns the SSA's memo
    /// (`None` when it is too large to keep).
    pub fn remember(
        &mut self,
        text: &str,
        ssa: &Rc<Jws>,
        sets: &[&JwkSet],
        now: i64,
    ) -> Option<Rc<SsaMemo>> {
        if text.len() > VERDICT_MAX_SSA_BYTES {
            return None;
        }
        let key = Self::key(text);
        let sets = Self::set_id(sets);
        let until = now.saturating_add(self.ttl);
        if let Some(v) = self.entries.get_mut(&key) {
            if same_text(&v.text, text) {
                v.sets = sets;
                v.until = until;
                return Some(Rc::clone(&v.memo));
            }
        }
        let text: Rc<str> = Rc::from(text);
        let memo = Rc::new(SsaMemo::default());
        self.bytes = self.bytes.saturating_add(Self::cost(&text));
        // A different SSA with the same key (never seen in practice) takes the slot.
        self.entries.insert(
            key,
            Verdict {
                text: Rc::clone(&text),
                ssa: Rc::clone(ssa),
                sets,
                until,
                memo: Rc::clone(&memo),
            },
        );
        self.order.push_back((key, text));
        while self.order.len() > self.capacity || self.bytes > self.max_bytes {
            match self.order.pop_front() {
                Some((old_key, old)) => {
                    if self
                        .entries
                        .get(&old_key)
                        .is_some_and(|v| Rc::ptr_eq(&v.text, &old))
                    {
                        self.entries.remove(&old_key);
                    }
                    self.bytes = self.bytes.saturating_sub(Self::cost(&old));
                }
                None => break,
            }
        }
        Some(memo)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// One request's validation: the management binding (GET, PUT, DELETE), then for a create or an
/// update the create pipeline, then for an update the RFC 7592 body rules.
#[derive(Debug)]
pub struct Work {
    binding: Option<crate::binding::Binding>,
    /// An update's body, parsed once the binding passed.
    body: Option<Vec<u8>>,
    create: Option<Create>,
    /// The path's client id (management requests).
    pub client_id: Option<String>,
    /// The client certificate, handed to the create once it is parsed.
    cert: Option<Result<Option<crate::cert::ClientCert>, String>>,
}

impl Work {
    /// A create (POST).
    pub fn create(create: Create) -> Work {
        Work {
            binding: None,
            body: None,
            create: Some(create),
            client_id: None,
            cert: None,
        }
    }

    /// A GET or DELETE: the binding only.
    pub fn manage(binding: Option<crate::binding::Binding>, client_id: &str) -> Work {
        Work {
            binding,
            body: None,
            create: None,
            client_id: Some(client_id.to_string()),
            cert: None,
        }
    }

    /// An update (PUT): the binding, then the body as a create, then RFC 7592.
    pub fn update(
        binding: Option<crate::binding::Binding>,
        client_id: &str,
        body: Vec<u8>,
    ) -> Work {
        Work {
            binding,
            body: Some(body),
            create: None,
            client_id: Some(client_id.to_string()),
            cert: None,
        }
    }

    /// The client certificate the host reported, for `certificate_binding`.
    pub fn with_cert(mut self, cert: Result<Option<crate::cert::ClientCert>, String>) -> Work {
        match &mut self.create {
            Some(c) => c.set_client_cert(cert),
            None => self.cert = Some(cert),
        }
        self
    }

    pub fn created(&self) -> Option<&Create> {
        self.create.as_ref()
    }

    pub fn facts(&self) -> Facts {
        self.create
            .as_ref()
            .map(|c| c.facts.clone())
            .unwrap_or_default()
    }

    /// `request_jti` then `ssa_jti` (spec §7): remember (issuer, jti) in the shared replay store
    /// until `min(exp, iat + max_request_age) + leeway` (at least + 1 s: the age check accepts its
    /// last second) (SSA: its `exp`, or the configured
    /// window), never longer than `replay.max_retention_seconds`. With both on, both are looked
    /// up before either is recorded, so that a request refused by `ssa_jti` has not used up its
    /// request `jti` (only two concurrent requests racing for the same SSA `jti` can still do
    /// that: the recording itself is atomic per pair).
    pub fn replay(
        &self,
        cfg: &Config,
        store: &mut dyn crate::replay::SharedData,
        now: i64,
    ) -> Result<(), DcrError> {
        let create = match &self.create {
            Some(c) => c,
            None => return Ok(()),
        };
        let leeway = i64::try_from(cfg.leeway).unwrap_or(0);
        let cap = now.saturating_add(i64::try_from(cfg.replay.max_retention).unwrap_or(i64::MAX));
        // (rule, pair, until, what a replay is called)
        let mut pairs: Vec<(RuleId, Pair<'_>, i64, &str)> = Vec::new();
        if cfg.replay.request_jti {
            let rule = RuleId::RequestJti;
            let c = create.request_claims();
            let iss = crate::claims::req_str(c, "iss").map_err(|m| DcrError::rule(rule, m))?;
            let jti = crate::claims::req_str(c, "jti").map_err(|m| DcrError::rule(rule, m))?;
            if cfg.replay.uuid4 && !is_uuid4(jti) {
                return Err(DcrError::rule(rule, "claim `jti` must be a UUIDv4"));
            }
            let exp = crate::claims::opt_date(c, "exp").ok().flatten();
            let by_age = crate::claims::opt_date(c, "iat").ok().flatten().map(|i| {
                i.saturating_add(i64::try_from(cfg.rules.max_request_age).unwrap_or(i64::MAX))
            });
            // `leeway`, at least 1 s: see `Replay::retention_margin` (the cap is at least
            // `Replay::retention_floor`, so it never cuts this short for an accepted request).
            let margin = i64::try_from(crate::config::Replay::retention_margin(cfg.leeway))
                .unwrap_or(i64::MAX);
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
        if cfg.replay.ssa_jti {
            let rule = RuleId::SsaJti;
            let c = create.ssa_claims();
            let iss = crate::claims::req_str(c, "iss")
                .map_err(|m| DcrError::rule(rule, format!("SSA {m}")))?;
            let jti = crate::claims::req_str(c, "jti")
                .map_err(|m| DcrError::rule(rule, format!("SSA {m}")))?;
            let window = i64::try_from(cfg.replay.ssa_window).unwrap_or(i64::MAX);
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

    /// The answer to a [`Step::Call`].
    pub fn answer(&mut self, status: Option<u16>, body: Vec<u8>) {
        if let Some(b) = &mut self.binding {
            b.answer(status, body);
        }
    }

    pub fn supply(&mut self, url: &str, fetched: Fetched) {
        match (&mut self.binding, &mut self.create) {
            (Some(b), _) => b.supply(url, fetched),
            (None, Some(c)) => c.supply(url, fetched),
            (None, None) => {}
        }
    }

    pub fn step(&mut self, cfg: &Config, now: i64, verdicts: &mut Verdicts) -> Step {
        if let (Some(b), Some(mode)) = (&mut self.binding, &cfg.binding) {
            match b.step(
                mode,
                now,
                i64::try_from(cfg.leeway).unwrap_or(0),
                cfg.retry_after,
            ) {
                Step::Forward => self.binding = None,
                other => return other,
            }
        }
        if let Some(body) = self.body.take() {
            match Create::parse(cfg, &body, verdicts) {
                Ok(mut c) => {
                    if let Some(cert) = self.cert.take() {
                        c.set_client_cert(cert);
                    }
                    self.create = Some(c)
                }
                Err(e) => return Step::Reject(e),
            }
        }
        let create = match &mut self.create {
            Some(c) => c,
            None => return Step::Forward,
        };
        match create.step(cfg, now, verdicts) {
            Step::Forward => {}
            other => return other,
        }
        if let Some(id) = &self.client_id {
            if let Err(e) = crate::forward::update_rules(create.request_claims(), id) {
                return Step::Reject(e);
            }
        }
        Step::Forward
    }
}

#[cfg(test)]
mod tests;
