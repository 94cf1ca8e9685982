//! `dcr-guard verify` on the filter's fixtures: the verdict, and every rule's line.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{run, Scratch};
use dcr_guard_testkit::dcr::{corrupt_signature, Tpp, DIRECTORY_JWKS_URL};
use dcr_guard_testkit::keys::{now, TestKey};
use serde_json::{json, Value};

/// A UK configuration and the two key documents, written to `dir`: (config path, --jwks args).
fn uk(dir: &Scratch, tpp: &Tpp) -> (String, Vec<String>) {
    let cfg = dir.write(
        "guard.json",
        tpp.filter_config("directory", "software").to_string(),
    );
    (cfg, jwks_args(dir, tpp))
}

fn jwks_args(dir: &Scratch, tpp: &Tpp) -> Vec<String> {
    let d = dir.write("directory.jwks", tpp.directory_jwks().to_string());
    let s = dir.write("software.jwks", tpp.software_jwks().to_string());
    vec![
        "--jwks".into(),
        format!("{DIRECTORY_JWKS_URL}={d}"),
        "--jwks".into(),
        format!("{}={s}", tpp.jwks_url()),
        "--offline".into(),
    ]
}

/// `verify --json` on `body`: exit status and the parsed report.
fn verify(dir: &Scratch, cfg: &str, jwks: &[String], body: &str, extra: &[&str]) -> (i32, Value) {
    let req = dir.write("request.jwt", body);
    let mut args = vec!["verify", "--config", cfg, "--json"];
    args.extend(jwks.iter().map(String::as_str));
    args.extend(extra);
    args.push(&req);
    let out = run(&args);
    let report = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {} {}", out.stdout, out.stderr));
    (out.code, report)
}

fn outcomes(report: &Value) -> Vec<(String, String)> {
    report["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["rule"].as_str().unwrap().to_string(),
                r["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn rule<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == name)
        .unwrap_or_else(|| panic!("no row {name}: {report}"))
}

/// The Brazilian TPP's certificate subject (as the engine's tests present it).
fn br_subject(tpp: &Tpp) -> String {
    format!(
        "UID={},organizationIdentifier=OFBBR-{},CN=tpp.example.com.br,O=TPP Brasil,C=BR",
        tpp.software_id, tpp.org_id
    )
}

const REPLAY: [&str; 2] = ["request_jti", "ssa_jti"];

#[test]
fn valid_registrations_are_forwarded_with_every_rule_passing() {
    let uk = Tpp::new(TestKey::ec("dir"), TestKey::ec("tpp"));
    let au = Tpp::new(TestKey::ec("register"), TestKey::ec("adr"));
    let br = Tpp::new(TestKey::rsa("br-dir"), TestKey::rsa("br-tpp"));
    let br_xfcc = format!("Subject=\"{}\"", br_subject(&br));
    // (name, TPP, config, request body, extra arguments)
    let cases = [
        ("uk", &uk, uk.filter_config("d", "s"), uk.request(), vec![]),
        (
            "au",
            &au,
            au.au_filter_config("d", "s"),
            au.au_request(),
            vec![],
        ),
        (
            "br",
            &br,
            br.br_filter_config("d", "s"),
            br.br_request(),
            vec!["--xfcc", br_xfcc.as_str()],
        ),
    ];
    for (name, tpp, cfg, body, extra) in cases {
        let dir = Scratch::new(name);
        let jwks = jwks_args(&dir, tpp);
        let cfg = dir.write("guard.json", cfg.to_string());
        let (code, report) = verify(&dir, &cfg, &jwks, &body, &extra);
        assert_eq!(code, 0, "{name}: {report:#}");
        assert_eq!(report["verdict"], "forward", "{name}");
        assert_eq!(report["refusal"], Value::Null, "{name}");
        let rows = outcomes(&report);
        assert!(
            rows.iter().filter(|(_, o)| o == "pass").count() >= 5,
            "{name}: {rows:?}"
        );
        for (rule, outcome) in rows {
            let expected: &[&str] = if REPLAY.contains(&rule.as_str()) {
                &["skipped", "off"]
            } else {
                &["pass", "off"]
            };
            assert!(
                expected.contains(&outcome.as_str()),
                "{name}: {rule} {outcome}"
            );
        }
    }
}

/// One failure class: the request, and the rule, status, code and description the filter answers.
struct Refused {
    name: &'static str,
    body: String,
    rule: &'static str,
    status: u16,
    error: &'static str,
    description: &'static str,
}

#[test]
fn each_failure_names_its_rule_and_error_and_skips_the_rest() {
    let tpp = Tpp::new(TestKey::ec("dir"), TestKey::ec("tpp"));
    let t = now();
    let cases = [
        Refused {
            name: "not a JWT",
            body: "hello".into(),
            rule: "envelope",
            status: 400,
            error: "invalid_request",
            description: "the body is not a compact JWS with a JSON object payload: malformed JOSE object: not a compact JWS (need 3 parts)",
        },
        Refused {
            name: "untrusted SSA issuer",
            body: tpp.key.sign_default(&tpp.request_claims(&tpp.ssa_with(|c| c["iss"] = json!("Evil Directory")))),
            rule: "ssa_issuer",
            status: 400,
            error: "unapproved_software_statement",
            description: "SSA issuer `Evil Directory` is not trusted",
        },
        Refused {
            name: "bad SSA signature",
            body: tpp.key.sign_default(&tpp.request_claims(&corrupt_signature(&tpp.ssa()))),
            rule: "ssa_signature",
            status: 400,
            error: "invalid_software_statement",
            description: "SSA signature: signature verification failed",
        },
        Refused {
            name: "bad request signature",
            body: corrupt_signature(&tpp.request()),
            rule: "request_signature",
            status: 400,
            error: "invalid_client_metadata",
            description: "request JWT signature: signature verification failed",
        },
        Refused {
            name: "expired request",
            body: tpp.request_with(|c| {
                c["iat"] = json!(t - 7200);
                c["exp"] = json!(t - 3600);
            }),
            rule: "issuance_time",
            status: 400,
            error: "invalid_client_metadata",
            description: "request JWT has expired",
        },
        Refused {
            name: "wrong audience",
            body: tpp.request_with(|c| c["aud"] = json!("another-bank")),
            rule: "audience",
            status: 400,
            error: "invalid_client_metadata",
            description: "request `aud` does not name this authorization server",
        },
        Refused {
            name: "redirect URI not in the SSA",
            body: tpp.request_with(|c| c["redirect_uris"] = json!(["https://evil.example/cb"])),
            rule: "redirect_uri_subset",
            status: 400,
            error: "invalid_redirect_uri",
            description: "redirect URI `https://evil.example/cb` is not registered in the software statement",
        },
    ];
    let order: Vec<String> = {
        let dir = Scratch::new("order");
        let (cfg, jwks) = uk(&dir, &tpp);
        let (_, report) = verify(&dir, &cfg, &jwks, &tpp.request(), &[]);
        outcomes(&report).into_iter().map(|(r, _)| r).collect()
    };
    for case in cases {
        let name = case.name;
        let dir = Scratch::new("refused");
        let (cfg, jwks) = uk(&dir, &tpp);
        let (code, report) = verify(&dir, &cfg, &jwks, &case.body, &[]);
        assert_eq!(code, 1, "{name}: {report:#}");
        assert_eq!(report["verdict"], "refuse", "{name}");
        assert_eq!(
            report["refusal"],
            json!({"status": case.status, "error": case.error,
                   "error_description": case.description, "source": case.rule}),
            "{name}"
        );
        let failing = rule(&report, case.rule);
        assert_eq!(failing["outcome"], "fail", "{name}");
        assert_eq!(failing["error"], case.error, "{name}");
        assert_eq!(failing["error_description"], case.description, "{name}");
        // Before the failing rule: passes (or off); after it: skipped (or off). Exactly one fail.
        let rows = outcomes(&report);
        assert_eq!(
            rows.iter().filter(|(_, o)| o == "fail").count(),
            1,
            "{name}: {rows:?}"
        );
        let at = order.iter().position(|r| r == case.rule);
        for (rule, outcome) in rows {
            if rule == case.rule || outcome == "off" {
                continue;
            }
            let before = match (at, order.iter().position(|r| *r == rule)) {
                (Some(a), Some(i)) => i < a,
                _ => false,
            };
            let expected = if before { "pass" } else { "skipped" };
            assert_eq!(outcome, expected, "{name}: {rule}");
            if !before && !REPLAY.contains(&rule.as_str()) {
                let note = self::rule(&report, &rule)["note"]
                    .as_str()
                    .unwrap()
                    .to_string();
                assert!(note.starts_with("not run:"), "{name}: {rule}: {note}");
            }
        }
    }
}

/// The table: one line per rule, the verdict last; the fetched documents listed.
#[test]
fn table_output_lists_every_rule_and_the_verdict() {
    let tpp = Tpp::new(TestKey::ec("dir"), TestKey::ec("tpp"));
    let dir = Scratch::new("table");
    let (cfg, jwks) = uk(&dir, &tpp);
    // (body, exit status, the verdict line, a rule's line)
    let bad = tpp.request_with(|c| c["aud"] = json!("another-bank"));
    let cases = [
        (
            tpp.request(),
            0,
            "verdict: forwarded (replay not checked)",
            "ssa_signature             pass",
        ),
        (
            bad,
            1,
            r#"verdict: refused: 400 {"error":"invalid_client_metadata","error_description":"request `aud` does not name this authorization server"} (from `audience`)"#,
            "redirect_uri_format       skipped  not run: `audience` failed",
        ),
    ];
    for (body, code, verdict, line) in cases {
        let req = dir.write("request.jwt", &body);
        let mut args = vec!["verify", "--config", &cfg];
        args.extend(jwks.iter().map(String::as_str));
        args.push(&req);
        let out = run(&args);
        println!("{}", out.stdout);
        assert_eq!(out.code, code, "{}{}", out.stdout, out.stderr);
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(
            lines.first().copied(),
            Some("RULE                      RESULT   DETAIL")
        );
        assert_eq!(lines.last().copied(), Some(verdict), "{}", out.stdout);
        assert!(lines.contains(&line), "{line:?} not in\n{}", out.stdout);
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("fetched {DIRECTORY_JWKS_URL} from file:"))),
            "{}",
            out.stdout
        );
    }
}

/// What the CLI cannot decide: no verdict, exit status 2, one line on stderr.
#[test]
fn usage_and_input_errors_exit_2() {
    let tpp = Tpp::new(TestKey::ec("dir"), TestKey::ec("tpp"));
    let dir = Scratch::new("errors");
    let (cfg, _) = uk(&dir, &tpp);
    let req = dir.write("request.jwt", tpp.request());
    let bad_cfg = dir.write("bad.json", "{\"profile\": \"nope\"}");
    let dir_jwks = dir.write("d.jwks", tpp.directory_jwks().to_string());
    let only_dir = format!("{DIRECTORY_JWKS_URL}={dir_jwks}");
    // (arguments, what stderr says)
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["verify", &req],
            "verify needs --config FILE.json".into(),
        ),
        (
            vec!["verify", "--config", &cfg],
            "verify needs the request body file".into(),
        ),
        (
            vec!["verify", "--config", &cfg, "--now", "soon", &req],
            "--now takes seconds since the epoch, not `soon`".into(),
        ),
        (
            vec!["verify", "--config", &cfg, "--jwks", "nofile", &req],
            "--jwks takes URL=FILE, not `nofile`".into(),
        ),
        (
            vec!["verify", "--config", &bad_cfg, &req],
            format!("{bad_cfg}: invalid configuration field `profile`"),
        ),
        (
            vec!["verify", "--config", &cfg, "--frobnicate", &req],
            "unknown option `--frobnicate`".into(),
        ),
        (
            vec![
                "verify",
                "--config",
                &cfg,
                "--offline",
                "--jwks",
                &only_dir,
                &req,
            ],
            format!(
                "the validation needs `{}` and --offline is set: give it with --jwks {}=FILE",
                tpp.jwks_url(),
                tpp.jwks_url()
            ),
        ),
        (
            vec!["verify", "--config", &cfg, "/nonexistent/request.jwt"],
            "cannot read `/nonexistent/request.jwt`".into(),
        ),
        (vec!["frobnicate"], "unknown command `frobnicate`".into()),
    ];
    for (args, says) in cases {
        let out = run(&args);
        assert_eq!(out.code, 2, "{args:?}: {}{}", out.stdout, out.stderr);
        assert!(out.stdout.is_empty(), "{args:?}: {}", out.stdout);
        assert!(
            out.stderr.contains(&says),
            "{args:?}: {says:?} not in {}",
            out.stderr
        );
    }
}

/// `--now` validates at another time: a request that has expired by now passed when it was sent.
#[test]
fn now_pins_the_time_of_validation() {
    let tpp = Tpp::new(TestKey::ec("dir"), TestKey::ec("tpp"));
    let dir = Scratch::new("now");
    let (cfg, jwks) = uk(&dir, &tpp);
    let sent = now() - 7200;
    let ssa = tpp.ssa_with(|c| c["iat"] = json!(sent));
    let mut claims = tpp.request_claims(&ssa);
    claims["iat"] = json!(sent);
    claims["exp"] = json!(sent + 300);
    let body = tpp.key.sign_default(&claims);
    let at = (sent + 10).to_string();
    // (arguments, exit status, issuance_time's outcome)
    for (extra, code, outcome) in [(vec![], 1, "fail"), (vec!["--now", at.as_str()], 0, "pass")] {
        let (got, report) = verify(&dir, &cfg, &jwks, &body, &extra);
        assert_eq!(got, code, "{extra:?}: {report:#}");
        assert_eq!(
            rule(&report, "issuance_time")["outcome"],
            outcome,
            "{extra:?}"
        );
        if !extra.is_empty() {
            assert_eq!(report["now"], json!(sent + 10));
        }
    }
}

/// Report-only mode: every failure listed, the rules depending on a failed one skipped, and the
/// verdict is to forward (as the filter forwards), exit status 0.
#[test]
fn report_only_lists_the_failures_and_forwards() {
    let tpp = Tpp::new(TestKey::ec("dir"), TestKey::ec("tpp"));
    let dir = Scratch::new("report-only");
    let mut cfg = tpp.filter_config("directory", "software");
    cfg["report_only"] = json!(true);
    let cfg = dir.write("guard.json", cfg.to_string());
    let jwks = jwks_args(&dir, &tpp);
    let body = tpp.key.sign_default(&tpp.request_claims(&corrupt_signature(
        &tpp.ssa_with(|c| c["software_redirect_uris"] = json!(["https://elsewhere.example/cb"])),
    )));
    let (code, report) = verify(&dir, &cfg, &jwks, &body, &[]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["verdict"], "forward");
    assert_eq!(report["report_only"], true);
    // (rule, outcome)
    for (name, outcome) in [
        ("ssa_issuer", "pass"),
        ("ssa_signature", "fail"),
        ("request_signature", "skipped"),
        ("issuance_time", "pass"),
        ("redirect_uri_subset", "fail"),
        ("software_roles", "pass"),
    ] {
        assert_eq!(
            rule(&report, name)["outcome"],
            outcome,
            "{name}: {report:#}"
        );
    }
}

/// The software JWKS named by an SSA that did not verify is never fetched: offline with only the
/// directory's document, a forged SSA pointing elsewhere is refused (exit 1), not stopped for
/// want of its URL (exit 2).
#[test]
fn a_url_from_an_unverified_ssa_is_never_fetched() {
    let tpp = Tpp::new(TestKey::ec("dir"), TestKey::ec("tpp"));
    let dir = Scratch::new("unverified");
    let (cfg, _) = uk(&dir, &tpp);
    let d = dir.write("directory.jwks", tpp.directory_jwks().to_string());
    let only_directory = vec![
        "--jwks".to_string(),
        format!("{DIRECTORY_JWKS_URL}={d}"),
        "--offline".to_string(),
    ];
    let forged = corrupt_signature(&tpp.ssa_with(|c| {
        c["software_jwks_endpoint"] = json!("https://keystore.tpp.test/attacker.jwks")
    }));
    let body = tpp.key.sign_default(&tpp.request_claims(&forged));
    let (code, report) = verify(&dir, &cfg, &only_directory, &body, &[]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(rule(&report, "ssa_signature")["outcome"], "fail");
    let fetched: Vec<&str> = report["fetches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["url"].as_str().unwrap())
        .collect();
    assert_eq!(fetched, vec![DIRECTORY_JWKS_URL], "{report:#}");
}
