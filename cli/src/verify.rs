//! `dcr-guard verify`: a DCR create validated natively by the filter's engine, driven as the filter
//! drives it (`src/filter/mod.rs`): parse, then step the create machine, fetching the key documents
//! it asks for and handing them back, until it forwards or refuses. Every rule's verdict comes from
//! the machine's trace ([`Create::parse_traced`]); the rules that would run follow from the
//! configuration.

use crate::fetch::Keystores;
use crate::{read_file, value, EXIT_OK, EXIT_REFUSED};
use dcr_guard_core::config::{Config, Forward};
use dcr_guard_core::error::{DcrError, RuleId, Source, MAX_DESCRIPTION};
use dcr_guard_core::pipeline::{Create, Outcome, Step, Trace, Verdicts, Work};
use dcr_guard_core::rules::CLAIM_RULE_ORDER;
use dcr_guard_core::shared::MemoryStore;
use serde_json::{json, Value};

/// The rules of a create in the order the engine runs them (spec §4a), replay last.
fn rule_order() -> Vec<RuleId> {
    let mut order = vec![
        RuleId::SsaIssuer,
        RuleId::SsaSignature,
        RuleId::RequestSignature,
        RuleId::IssuanceTime,
    ];
    order.extend(CLAIM_RULE_ORDER);
    order.extend([
        RuleId::CertificateBinding,
        RuleId::RequestJti,
        RuleId::SsaJti,
    ]);
    order
}

/// Whether the configuration switches `rule` on.
fn is_on(cfg: &Config, rule: RuleId) -> bool {
    match rule {
        RuleId::SsaIssuer => cfg.rules.ssa_issuer,
        RuleId::SsaSignature => cfg.rules.ssa_signature,
        RuleId::RequestSignature => cfg.rules.request_signature,
        RuleId::IssuanceTime => cfg.rules.issuance_time,
        RuleId::CertificateBinding => cfg.rules.certificate_binding.is_some(),
        RuleId::RequestJti => cfg.rules.request_jti,
        RuleId::SsaJti => cfg.rules.ssa_jti,
        other => cfg.rules.claims.is_on(other),
    }
}

struct Args {
    config: String,
    request: String,
    now: Option<i64>,
    jwks: Vec<(String, String)>,
    offline: bool,
    cacert: Option<String>,
    cert: Option<String>,
    xfcc: Option<String>,
    json: bool,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let (mut config, mut request, mut now) = (None, None, None);
    let (mut jwks, mut offline, mut cacert, mut cert, mut xfcc, mut json) =
        (Vec::new(), false, None, None, None, false);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--config" => config = Some(value(arg, &mut it)?.clone()),
            "--now" => {
                let v = value(arg, &mut it)?;
                now = Some(
                    v.parse::<i64>()
                        .map_err(|_| format!("--now takes seconds since the epoch, not `{v}`"))?,
                );
            }
            "--jwks" => {
                let v = value(arg, &mut it)?;
                // The URL has no `=` of its own before the file: split at the last one.
                let (url, file) = v
                    .rsplit_once('=')
                    .filter(|(u, f)| !u.is_empty() && !f.is_empty())
                    .ok_or_else(|| format!("--jwks takes URL=FILE, not `{v}`"))?;
                jwks.push((url.to_string(), file.to_string()));
            }
            "--offline" => offline = true,
            "--cacert" => cacert = Some(value(arg, &mut it)?.clone()),
            "--cert" => cert = Some(value(arg, &mut it)?.clone()),
            "--xfcc" => xfcc = Some(value(arg, &mut it)?.clone()),
            "--json" => json = true,
            flag if flag.starts_with("--") => return Err(format!("unknown option `{flag}`")),
            path if request.is_none() => request = Some(path.to_string()),
            extra => return Err(format!("unexpected argument `{extra}`")),
        }
    }
    if cert.is_some() && xfcc.is_some() {
        return Err("give the client certificate with --cert or --xfcc, not both".into());
    }
    Ok(Args {
        config: config.ok_or("verify needs --config FILE.json")?,
        request: request.ok_or("verify needs the request body file")?,
        now,
        jwks,
        offline,
        cacert,
        cert,
        xfcc,
        json,
    })
}

/// One rule's line of the report.
struct Row {
    rule: &'static str,
    outcome: &'static str,
    error: Option<DcrError>,
    note: Option<String>,
}

pub fn main(args: &[String]) -> Result<u8, String> {
    let args = parse_args(args)?;
    let doc = read_file(&args.config)?;
    let cfg = Config::parse(&doc, &|name| std::env::var(name).ok())
        .map_err(|e| format!("{}: {e}", args.config))?;
    let body = read_file(&args.request)?;
    let mut files = Vec::new();
    for (url, path) in &args.jwks {
        files.push((url.clone(), path.clone(), read_file(path)?));
    }
    let cacert = args.cacert.as_deref().map(read_file).transpose()?;
    let cert = match (&args.cert, &args.xfcc) {
        (Some(path), _) => Some(crate::cert::from_pem(&read_file(path)?)),
        (None, Some(xfcc)) => Some(dcr_guard_core::cert::ClientCert::from_xfcc(xfcc)),
        (None, None) => None,
    };
    let now = match args.now {
        Some(n) => n,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| "the clock is before 1970")?
            .as_secs()
            .try_into()
            .map_err(|_| "the clock is out of range")?,
    };
    let mut keystores = Keystores::new(files, args.offline, cacert);
    let result = validate(&cfg, &body, cert, now, &mut keystores)?;
    // Report-only mode forwards whatever was found (logged and counted).
    let forwarded = result.verdict.is_ok() || cfg.report_only;
    if args.json {
        println!("{}", to_json(&cfg, &result, forwarded, now, &keystores));
    } else {
        print!("{}", to_table(&cfg, &result, forwarded, &keystores));
    }
    Ok(if forwarded { EXIT_OK } else { EXIT_REFUSED })
}

struct Validation {
    /// `Ok` when the create machine forwards (report-only mode: also with failures).
    verdict: Result<(), DcrError>,
    trace: Trace,
}

/// Drive the create machine as the filter does, to its verdict.
fn validate(
    cfg: &Config,
    body: &[u8],
    cert: Option<Result<dcr_guard_core::cert::ClientCert, String>>,
    now: i64,
    keystores: &mut Keystores,
) -> Result<Validation, String> {
    // The filter's envelope check on the body's size (413).
    if body.len() > cfg.limits.body_bytes {
        return Ok(Validation {
            verdict: Err(DcrError::too_large(cfg.limits.body_bytes)),
            trace: Trace::new(),
        });
    }
    // A fresh verdict cache: nothing is known of this SSA.
    let mut verdicts = Verdicts::default();
    let mut create = match Create::parse_traced(cfg, body, &verdicts) {
        Ok(c) => c,
        Err((e, trace)) => {
            return Ok(Validation {
                verdict: Err(e),
                trace,
            });
        }
    };
    if cfg.rules.certificate_binding.is_some() {
        create.set_client_cert(cert.transpose());
    }
    // Each step either ends or asks for documents not handed back yet: bounded by the documents a
    // create can need (directory keystores, one software JWKS, one refetch each).
    for _ in 0..64 {
        match create.step(cfg, now, &mut verdicts) {
            Step::Forward => return Ok(forward(cfg, create, now)),
            Step::Reject(e) => {
                return Ok(Validation {
                    verdict: Err(e),
                    trace: create.trace().to_vec(),
                })
            }
            Step::Fetch(sources) | Step::Refetch(sources) => {
                for src in sources {
                    let fetched = keystores.get(cfg, &src)?;
                    create.supply(&src.url, fetched);
                }
            }
            Step::Call(_) => return Err("the engine asked for a call a create never makes".into()),
        }
    }
    Err("the validation did not finish".into())
}

/// What the filter does after the rules passed: the replay checks (here against an empty store:
/// the claims' presence and form are checked, whether the `jti` was used before is not), then for
/// JSON forwarding the body rewrite, which can still refuse.
fn forward(cfg: &Config, create: Create, now: i64) -> Validation {
    let mut trace = create.trace().to_vec();
    let rewrite = match cfg.forward {
        Forward::Json => dcr_guard_core::pipeline::forward::json_body(
            cfg,
            create.request_claims(),
            create.ssa_claims(),
            None,
        )
        .map(|_| ()),
        Forward::Jwt => Ok(()),
    };
    // As the filter: replay only for a request that passed everything else (report-only mode).
    let clean = create.report().0.is_empty();
    let work = Work::create(create);
    let replay = if clean {
        // An empty store with Envoy's shared-data semantics, for this one run.
        work.check_replay(cfg, &mut MemoryStore::envoy(), now)
            .map(|_| ())
    } else {
        Ok(())
    };
    if let Err(e) = &replay {
        if let Source::Rule(rule) = e.source {
            trace.push((rule, Outcome::Fail(e.clone())));
        }
    }
    Validation {
        verdict: replay.and(rewrite),
        trace,
    }
}

/// Every rule's line, in the engine's order.
fn rows(cfg: &Config, v: &Validation) -> Vec<Row> {
    let failed_rule = v
        .trace
        .iter()
        .find(|(_, o)| matches!(o, Outcome::Fail(_)))
        .map(|(r, _)| r.as_str());
    let stopped_by = match (&v.verdict, failed_rule) {
        (_, Some(rule)) if !cfg.report_only => Some(format!("not run: `{rule}` failed")),
        (Err(e), None) if matches!(e.source, Source::Envelope) => {
            Some("not run: the request was refused before the rules".to_string())
        }
        _ => None,
    };
    let mut rows = Vec::new();
    if let Err(e) = &v.verdict {
        if matches!(e.source, Source::Envelope) {
            rows.push(Row {
                rule: "envelope",
                outcome: "fail",
                error: Some(e.clone()),
                note: None,
            });
        }
    }
    for rule in rule_order() {
        let traced = v.trace.iter().find(|(r, _)| *r == rule).map(|(_, o)| o);
        let row = |outcome, error, note| Row {
            rule: rule.as_str(),
            outcome,
            error,
            note,
        };
        rows.push(match traced {
            // What ran is shown as it ran; of the rest, what the configuration switches off.
            Some(Outcome::Pass) => row("pass", None, None),
            Some(Outcome::Fail(e)) => row("fail", Some(e.clone()), None),
            Some(Outcome::Skipped) => row(
                "skipped",
                None,
                Some("not run: a rule it depends on failed".into()),
            ),
            None if !is_on(cfg, rule) => row(
                "off",
                None,
                Some("switched off by the configuration".into()),
            ),
            None if matches!(rule, RuleId::RequestJti | RuleId::SsaJti) && stopped_by.is_none() => row(
                "skipped",
                None,
                Some("not checked: only the filter's shared store knows whether this jti was used before (its claims were checked)".into()),
            ),
            None => row(
                "skipped",
                None,
                Some(
                    stopped_by
                        .clone()
                        .unwrap_or_else(|| "not run".to_string()),
                ),
            ),
        });
    }
    if let Err(e) = &v.verdict {
        if matches!(e.source, Source::Forwarding | Source::Update) {
            rows.push(Row {
                rule: e.source.as_str(),
                outcome: "fail",
                error: Some(e.clone()),
                note: None,
            });
        }
    }
    rows
}

/// The description as the filter's answer carries it (bounded).
fn description(e: &DcrError) -> String {
    e.description.chars().take(MAX_DESCRIPTION).collect()
}

/// The failure that ends the validation (report-only mode: logged, and the request forwarded).
fn answer(v: &Validation) -> Option<DcrError> {
    v.verdict.as_ref().err().cloned()
}

fn to_table(cfg: &Config, v: &Validation, forwarded: bool, keystores: &Keystores) -> String {
    let rows = rows(cfg, v);
    let width = rows.iter().map(|r| r.rule.len()).max().unwrap_or(4).max(4);
    let mut out = format!("{:width$}  {:7}  DETAIL\n", "RULE", "RESULT");
    for r in &rows {
        let detail = match (&r.error, &r.note) {
            (Some(e), _) => format!("{} {}: {}", e.status, e.code.as_str(), description(e)),
            (None, Some(n)) => n.clone(),
            (None, None) => String::new(),
        };
        out.push_str(format!("{:width$}  {:7}  {detail}", r.rule, r.outcome).trim_end());
        out.push('\n');
    }
    for f in &keystores.log {
        out.push_str(&format!(
            "fetched {} from {}: {}{}\n",
            f.url,
            f.from,
            f.result,
            f.detail
                .as_ref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        ));
    }
    match (answer(v), forwarded) {
        (Some(e), false) => out.push_str(&format!(
            "verdict: refused: {} {} (from `{}`)\n",
            e.status,
            e.body(),
            e.source.as_str()
        )),
        (_, true) if cfg.report_only && rows.iter().any(|r| r.outcome == "fail") => out.push_str(
            "verdict: forwarded (report_only: the failures above are logged and counted, not enforced)\n",
        ),
        _ => out.push_str("verdict: forwarded (replay not checked)\n"),
    }
    out
}

fn to_json(
    cfg: &Config,
    v: &Validation,
    forwarded: bool,
    now: i64,
    keystores: &Keystores,
) -> Value {
    let rules: Vec<Value> = rows(cfg, v)
        .iter()
        .map(|r| {
            let mut o = serde_json::Map::new();
            o.insert("rule".into(), json!(r.rule));
            o.insert("outcome".into(), json!(r.outcome));
            if let Some(e) = &r.error {
                o.insert("status".into(), json!(e.status));
                o.insert("error".into(), json!(e.code.as_str()));
                o.insert("error_description".into(), json!(description(e)));
            }
            if let Some(n) = &r.note {
                o.insert("note".into(), json!(n));
            }
            Value::Object(o)
        })
        .collect();
    let refusal = answer(v).filter(|_| !forwarded).map(|e| {
        json!({
            "status": e.status,
            "error": e.code.as_str(),
            "error_description": description(&e),
            "source": e.source.as_str(),
        })
    });
    let fetches: Vec<Value> = keystores
        .log
        .iter()
        .map(|f| json!({"url": f.url, "from": f.from, "result": f.result, "detail": f.detail}))
        .collect();
    json!({
        "verdict": if forwarded { "forward" } else { "refuse" },
        "refusal": refusal,
        "report_only": cfg.report_only,
        "replay_checked": false,
        "now": now,
        "rules": rules,
        "fetches": fetches,
    })
}
