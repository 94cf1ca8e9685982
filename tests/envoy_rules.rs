//! The claim rules, profiles, report-only mode, metrics and access-log facts through a real Envoy.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::{Duration, Instant};

use common::dcr::{corrupt_signature, Tpp};
use common::keys::TestKey;
use common::{Envoy, EnvoyConfig, Reply, Response, TestServer};
use serde_json::{json, Value};

struct Stack {
    tpp: Tpp,
    keystore: TestServer,
    upstream: TestServer,
    envoy: Envoy,
}

/// The access-log line format used to check the facts dcr-guard records for each request.
const ACCESS_FORMAT: &str = "ACCESS status=%RESPONSE_CODE% verdict=%FILTER_STATE(wasm.dcr_guard.verdict:PLAIN)% rule=%FILTER_STATE(wasm.dcr_guard.rule:PLAIN)% software_id=%FILTER_STATE(wasm.dcr_guard.software_id:PLAIN)% claimed_software_id=%FILTER_STATE(wasm.dcr_guard.claimed_software_id:PLAIN)%\n";

fn start(tpp: Tpp, filter: impl FnOnce(&Tpp) -> Value) -> Stack {
    let keystore = common::keystore(&tpp, Vec::new());
    let upstream = TestServer::always(
        Reply::json(201, &json!({"client_id": "c1"})).with_header("x-upstream", "as"),
    );
    let cfg = EnvoyConfig::new(filter(&tpp), upstream.port())
        .cluster("keystore", keystore.port())
        .edit(|b| {
            b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["access_log"] = json!([{
                "name": "envoy.access_loggers.stderr",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StderrAccessLog",
                    "log_format": {"text_format_source": {"inline_string": ACCESS_FORMAT}}
                }
            }]);
        });
    let envoy = Envoy::start(&cfg);
    Stack {
        tpp,
        keystore,
        upstream,
        envoy,
    }
}

impl Stack {
    fn post(&self, body: &str) -> Response {
        self.envoy.send(
            "POST",
            "/register",
            &[("content-type", "application/jwt")],
            body.as_bytes(),
        )
    }

    fn counter(&self, name: &str) -> u64 {
        self.envoy.stat(name).unwrap_or(0)
    }

    /// Wait for the access-log line of the n-th request (1-based).
    fn access_line(&self, n: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let lines: Vec<String> = self
                .envoy
                .log()
                .lines()
                .filter(|l| l.starts_with("ACCESS "))
                .map(String::from)
                .collect();
            if lines.len() >= n {
                return lines[n - 1].clone();
            }
            assert!(
                Instant::now() < deadline,
                "no access-log line {n}:\n{}",
                self.envoy.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn uk_request(
    tpp: &Tpp,
    edit_ssa: impl FnOnce(&mut Value),
    edit_req: impl FnOnce(&mut Value),
) -> String {
    let ssa = tpp.ssa_with(edit_ssa);
    let mut c = tpp.request_claims(&ssa);
    edit_req(&mut c);
    tpp.key.sign_default(&c)
}

#[test]
fn uk_rules_one_per_error_code_with_metrics_and_access_log() {
    let s = start(Tpp::new(TestKey::rsa("dir"), TestKey::rsa("tpp")), |t| {
        t.filter_config("keystore", "keystore")
    });
    let t = &s.tpp;
    let cases: Vec<(&str, String, u16, &str, &str)> = vec![
        ("valid", t.request(), 201, "", ""),
        (
            "redirect not in the SSA",
            uk_request(
                t,
                |_| {},
                |c| c["redirect_uris"] = json!(["https://tpp.example.com/elsewhere"]),
            ),
            400,
            "invalid_redirect_uri",
            "redirect_uri_subset",
        ),
        (
            "aud of another bank",
            uk_request(t, |_| {}, |c| c["aud"] = json!("0015800000jfQ9aAAE")),
            400,
            "invalid_client_metadata",
            "audience",
        ),
        (
            "organisation not active",
            uk_request(t, |s| s["org_status"] = json!("Revoked"), |_| {}),
            400,
            "unapproved_software_statement",
            "software_status",
        ),
        (
            "corrupted SSA",
            t.key
                .sign_default(&t.request_claims(&corrupt_signature(&t.ssa()))),
            400,
            "invalid_software_statement",
            "ssa_signature",
        ),
        (
            "garbage",
            "garbage".to_string(),
            400,
            "invalid_request",
            "envelope",
        ),
        (
            "payments without PISP",
            uk_request(t, |s| s["software_roles"] = json!(["AISP"]), |_| {}),
            400,
            "invalid_client_metadata",
            "software_roles",
        ),
        (
            "scope as a number (fails the rule that reads it)",
            uk_request(t, |_| {}, |c| c["scope"] = json!(42)),
            400,
            "invalid_client_metadata",
            "software_roles",
        ),
    ];
    for (i, (name, body, status, code, rule)) in cases.iter().enumerate() {
        let r = s.post(body);
        assert_eq!(r.status, *status, "{name}: {}", r.text());
        let line = s.access_line(i + 1);
        if *status == 201 {
            assert_eq!(r.header("x-upstream"), Some("as"), "{name}");
            assert!(line.contains("verdict=accepted"), "{name}: {line}");
            assert!(
                line.contains(&format!("software_id={}", t.software_id)),
                "{name}: {line}"
            );
        } else {
            assert_eq!(r.json()["error"], *code, "{name}: {}", r.text());
            assert!(line.contains("verdict=rejected"), "{name}: {line}");
            assert!(line.contains(&format!("rule={rule}")), "{name}: {line}");
            assert!(
                s.counter(&format!("dcr_guard.failed.{rule}")) >= 1,
                "{name}: no counter"
            );
        }
    }
    assert_eq!(s.counter("dcr_guard.requests"), cases.len() as u64);
    assert_eq!(s.counter("dcr_guard.accepted"), 1);
    assert_eq!(s.counter("dcr_guard.rejected"), cases.len() as u64 - 1);
    assert_eq!(
        s.upstream.requests().len(),
        1,
        "only the valid request reached the AS"
    );
}

#[test]
fn report_only_forwards_and_counts() {
    let s = start(Tpp::new(TestKey::rsa("dir"), TestKey::rsa("tpp")), |t| {
        let mut f = t.filter_config("keystore", "keystore");
        f["report_only"] = json!(true);
        f
    });
    let t = &s.tpp;
    // A forged SSA (signed by a key the directory does not publish) and a foreign aud.
    let forged = TestKey::rsa("dir").sign_default(&t.ssa_claims());
    let mut c = t.request_claims(&forged);
    c["aud"] = json!("another-bank");
    let r = s.post(&t.key.sign_default(&c));
    assert_eq!(r.status, 201, "report-only forwards: {}", r.text());
    assert_eq!(s.upstream.requests().len(), 1);
    assert_eq!(s.counter("dcr_guard.reported"), 1);
    assert_eq!(s.counter("dcr_guard.failed.ssa_signature"), 1);
    assert_eq!(s.counter("dcr_guard.failed.audience"), 1);
    assert_eq!(s.counter("dcr_guard.skipped.request_signature"), 1);
    assert_eq!(s.counter("dcr_guard.rejected"), 0);
    assert_eq!(
        s.keystore.count(&t.jwks_path()),
        0,
        "the software JWKS was fetched from an SSA that did not verify"
    );
    let line = s.access_line(1);
    assert!(
        line.contains("verdict=reported") && line.contains("rule=ssa_signature"),
        "{line}"
    );
    // The forged SSA's software_id is only a claim, never the TPP's.
    assert!(
        line.contains(" software_id=- ")
            && line.contains(&format!("claimed_software_id={}", t.software_id)),
        "{line}"
    );
    assert!(s.envoy.log().contains("report-only: would reject"));

    // Garbage is forwarded too, and counted as an envelope failure.
    let r = s.post("garbage");
    assert_eq!(r.status, 201);
    assert_eq!(s.counter("dcr_guard.failed.envelope"), 1);
    // A clean request is accepted, not reported.
    let r = s.post(&t.request());
    assert_eq!(r.status, 201);
    assert_eq!(s.counter("dcr_guard.accepted"), 1);
    assert_eq!(s.counter("dcr_guard.reported"), 2);
}

#[test]
fn a_forged_ssa_cannot_write_log_lines_or_be_attributed() {
    let s = start(Tpp::new(TestKey::ec("dir"), TestKey::ec("tpp")), |t| {
        t.filter_config("keystore", "keystore")
    });
    let t = &s.tpp;
    let forged_id = format!(
        "{}\n[2099-01-01 00:00:00.000][1][info][wasm] FORGED dcr-guard: accepted software_id=\"{}\"",
        t.software_id, t.software_id
    );
    let ssa = corrupt_signature(&t.ssa_with(|c| c["software_id"] = json!(forged_id)));
    let r = s.post(&t.key.sign_default(&t.request_claims(&ssa)));
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"], "invalid_software_statement");
    let line = s.access_line(1);
    assert!(line.contains(" software_id=- "), "attributed: {line}");
    assert!(
        line.contains("claimed_software_id=Cy7LCjSi0o7xDkt4mcZgDW\\n[2099-01-01"),
        "{line}"
    );
    let log = s.envoy.log();
    assert!(
        !log.lines().any(|l| l.starts_with("[2099")
            || l.contains("FORGED dcr-guard: accepted") && !l.contains("claimed_software_id=")),
        "a forged line in Envoy's log:\n{log}"
    );
    let rejected = log
        .lines()
        .find(|l| l.contains("dcr-guard: rejected"))
        .expect("no rejection logged");
    assert!(
        rejected.contains("claimed_software_id=\"Cy7LCjSi0o7xDkt4mcZgDW\\n[2099-01-01"),
        "{rejected}"
    );
    assert!(!rejected.contains(" software_id=\""), "{rejected}");
}

#[test]
fn australian_profile() {
    let s = start(
        Tpp::new(TestKey::rsa("register"), TestKey::rsa("adr")),
        |t| t.au_filter_config("keystore", "keystore"),
    );
    let t = &s.tpp;
    let r = s.post(&t.au_request());
    assert_eq!(r.status, 201, "valid AU registration: {}", r.text());

    let mut ssa = t.au_ssa_claims();
    ssa.as_object_mut().unwrap().remove("exp");
    let body = t
        .key
        .sign_default(&t.au_request_claims(&t.directory.sign_default(&ssa)));
    let r = s.post(&body);
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["error"],
        "invalid_software_statement",
        "{}",
        r.text()
    );

    let mut c = t.au_request_claims(&t.directory.sign_default(&t.au_ssa_claims()));
    c["aud"] = json!("https://another-holder.example/as");
    let r = s.post(&t.key.sign_default(&c));
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "invalid_client_metadata");
    assert!(r.json()["error_description"]
        .as_str()
        .unwrap()
        .contains("aud"));
    assert_eq!(s.upstream.requests().len(), 1);
}

#[test]
fn profiles_refuse_to_start_without_audiences() {
    let upstream = TestServer::always(Reply::status(200));
    let tpp = Tpp::new(TestKey::ec("d"), TestKey::ec("t"));
    for mut filter in [tpp.filter_config("k", "k"), tpp.au_filter_config("k", "k")] {
        filter["rules"].as_object_mut().unwrap().remove("audience");
        let cfg = EnvoyConfig::new(filter, upstream.port()).cluster("k", upstream.port());
        let f = Envoy::try_start(&cfg)
            .err()
            .expect("started without audiences");
        assert!(f.log.contains("rules.audience.audiences"), "{}", f.log);
    }
}
