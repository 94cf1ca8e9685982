//! The stream state machine against a fake host: what is paused, fetched, resumed and answered.

use std::rc::Rc;

use serde_json::{json, Value};

use super::*;
use dcr_guard_core::config::Secrets;
use dcr_guard_testkit::dcr::{Tpp, DIRECTORY_JWKS_URL};
use dcr_guard_testkit::keys::{now, TestKey};

use super::fake::{self, Fake};

struct World {
    tpp: Tpp,
    host: Fake,
    engine: Engine,
}

fn world_with(cfg_edit: impl FnOnce(&mut Value)) -> World {
    world_with_secrets(cfg_edit, &|_| None)
}

fn world_with_secrets(cfg_edit: impl FnOnce(&mut Value), secrets: Secrets<'_>) -> World {
    let tpp = Tpp::new(TestKey::ec("dir-1"), TestKey::ec("tpp-1"));
    let mut v = tpp.filter_config("directory", "software");
    v["request_algorithms"] = json!(["PS256", "ES256"]);
    cfg_edit(&mut v);
    let cfg = Rc::new(Config::parse(v.to_string().as_bytes(), secrets).unwrap());
    let mut host = Fake::default();
    host.keystore.insert(
        DIRECTORY_JWKS_URL.to_string(),
        (Some(200), tpp.directory_jwks().to_string().into_bytes()),
    );
    host.keystore.insert(
        tpp.jwks_url(),
        (Some(200), tpp.software_jwks().to_string().into_bytes()),
    );
    host.queues = true;
    let mut engine = Engine::new(Rc::clone(&cfg), 1);
    engine.attach_root(&mut host, ROOT, 1);
    World { tpp, host, engine }
}

/// The root context's id in these tests.
const ROOT: u32 = 1000;

fn world() -> World {
    world_with(|_| {})
}

impl World {
    fn request(&mut self, method: &str, path: &str, content_type: &str, body: &str) {
        self.host.headers.insert(":method".into(), method.into());
        self.host.headers.insert(":path".into(), path.into());
        self.host
            .headers
            .insert("content-type".into(), content_type.into());
        self.host
            .headers
            .insert("content-length".into(), body.len().to_string());
        self.host.body = body.as_bytes().to_vec();
    }

    /// Send headers and the whole body; return the flows of both callbacks.
    fn post(&mut self, body: &str) -> (Flow, Flow) {
        self.request("POST", "/register", "application/jwt", body);
        let h = self.engine.on_request_headers(&mut self.host, 1, false);
        if !self.host.responses.is_empty() {
            return (h, Flow::Pause);
        }
        let len = self.host.body.len();
        let b = self.engine.on_request_body(&mut self.host, 1, len, true);
        self.pump();
        (h, b)
    }

    /// Deliver the root context's wake-ups (Envoy runs `on_queue_ready` after the callback
    /// that enqueued returns).
    fn pump(&mut self) {
        while self.host.wakes > 0 {
            self.host.effective = ROOT;
            self.engine.on_queue_ready(&mut self.host, fake::FAKE_QUEUE);
        }
    }

    /// Answer every outstanding callout from the fake keystore, in dispatch order.
    fn answer_callouts(&mut self) {
        let mut answered = 0;
        while answered < self.host.dispatched.len() {
            let (token, src) = self.host.dispatched[answered].clone();
            answered += 1;
            let reply = self.host.keystore[&src.url].clone();
            let size = reply.1.len();
            self.host.current = Some(reply);
            self.engine.on_call_response(&mut self.host, token, size);
            self.pump();
        }
    }

    fn rejected(&self) -> Option<(u16, String)> {
        self.host
            .responses
            .first()
            .map(|(s, _, b)| (*s, b["error"].as_str().unwrap().to_string()))
    }
}

#[test]
fn non_dcr_paths_are_untouched() {
    let mut w = world();
    w.request("GET", "/accounts", "", "");
    assert_eq!(
        w.engine.on_request_headers(&mut w.host, 1, true),
        Flow::Continue
    );
    assert_eq!(
        w.engine.on_request_body(&mut w.host, 1, 0, true),
        Flow::Continue
    );
    assert!(w.host.responses.is_empty() && w.host.dispatched.is_empty());
}

#[test]
fn valid_create_is_held_fetched_once_each_and_resumed() {
    let mut w = world();
    let body = w.tpp.request();
    let (h, b) = w.post(&body);
    assert_eq!((h, b), (Flow::Pause, Flow::Pause));
    // First the directory only: nothing from the SSA is fetched before it verifies.
    assert_eq!(w.host.dispatched.len(), 1);
    assert_eq!(w.host.dispatched[0].1.url, DIRECTORY_JWKS_URL);
    assert_eq!(w.host.dispatched[0].1.upstream, "directory");
    w.answer_callouts();
    assert_eq!(w.host.dispatched.len(), 2);
    assert_eq!(w.host.dispatched[1].1.url, w.tpp.jwks_url());
    assert_eq!(w.host.dispatched[1].1.upstream, "software");
    assert_eq!(w.host.dispatched[1].1.authority, "keystore.tpp.test");
    assert!(w.host.responses.is_empty(), "{:?}", w.host.responses);
    assert_eq!(w.host.resumed, 1);
    // Later callbacks pass.
    assert_eq!(
        w.engine.on_request_body(&mut w.host, 1, body.len(), true),
        Flow::Continue
    );
}

#[test]
fn without_held_headers_headers_continue_and_body_is_held() {
    let mut w = world_with(|v| v["hold_headers"] = json!(false));
    let body = w.tpp.request();
    let (h, b) = w.post(&body);
    assert_eq!((h, b), (Flow::Continue, Flow::Pause));
    w.answer_callouts();
    assert_eq!(w.host.resumed, 1);
}

#[test]
fn chunked_body_is_buffered_until_end_of_stream() {
    let mut w = world();
    let body = w.tpp.request();
    w.request(
        "POST",
        "/register",
        "application/jose; charset=utf-8",
        &body,
    );
    w.host.headers.remove("content-length");
    assert_eq!(
        w.engine.on_request_headers(&mut w.host, 1, false),
        Flow::Pause
    );
    assert_eq!(
        w.engine.on_request_body(&mut w.host, 1, 10, false),
        Flow::Pause
    );
    assert!(w.host.dispatched.is_empty());
    assert_eq!(
        w.engine.on_request_body(&mut w.host, 1, body.len(), true),
        Flow::Pause
    );
    assert_eq!(w.host.dispatched.len(), 1);
}

#[test]
fn same_document_for_directory_and_software_is_fetched_once() {
    let mut w = world_with(|v| {
        v["software_jwks_hosts"] =
            json!([{"host": "keystore.directory.test", "upstream": "directory"}]);
    });
    // One document holding both keys, at the URL the SSA names.
    w.tpp.jwks_host = "keystore.directory.test".into();
    let both = dcr_guard_testkit::keys::jwks(&[&w.tpp.directory, &w.tpp.key])
        .to_string()
        .into_bytes();
    w.host
        .keystore
        .insert(DIRECTORY_JWKS_URL.into(), (Some(200), both));
    let ssa = w
        .tpp
        .ssa_with(|c| c["software_jwks_endpoint"] = json!(DIRECTORY_JWKS_URL));
    let body = w.tpp.key.sign_default(&w.tpp.request_claims(&ssa));
    w.post(&body);
    w.answer_callouts();
    assert_eq!(w.host.dispatched.len(), 1);
    assert_eq!(w.host.resumed, 1, "{:?}", w.host.responses);
}

#[test]
fn a_software_jwks_on_a_port_not_allowed_is_never_fetched() {
    // The allowed host on another port (the host entry names none: 443 only), then the same
    // port once the entry names it.
    for (entry, allowed) in [
        ("keystore.tpp.test", false),
        ("keystore.tpp.test:8443", true),
    ] {
        let mut w = world_with(|v| {
            v["software_jwks_hosts"] = json!([{"host": entry, "upstream": "software"}]);
        });
        w.tpp.jwks_host = "keystore.tpp.test:8443".into();
        w.host.keystore.insert(
            w.tpp.jwks_url(),
            (Some(200), w.tpp.software_jwks().to_string().into_bytes()),
        );
        let body = w.tpp.request();
        w.post(&body);
        w.answer_callouts();
        let fetched = dispatched_urls(&w);
        if allowed {
            assert_eq!(
                fetched,
                vec![DIRECTORY_JWKS_URL.to_string(), w.tpp.jwks_url()]
            );
            assert_eq!(w.host.resumed, 1, "{:?}", w.host.responses);
        } else {
            assert_eq!(fetched, vec![DIRECTORY_JWKS_URL.to_string()]);
            assert_eq!(w.rejected(), Some((400, "invalid_client_metadata".into())));
            let (_, _, body) = &w.host.responses[0];
            assert!(
                body["error_description"]
                    .as_str()
                    .unwrap()
                    .contains("`keystore.tpp.test:8443` is not allowed"),
                "{body}"
            );
        }
    }
}

#[test]
fn two_directory_urls_are_fetched_together_and_either_may_hold_the_key() {
    let mut w = world_with(|v| {
        v["directories"][0]["jwks"] = json!([
            {"url": "https://a.directory.test/jwks", "upstream": "a"},
            {"url": DIRECTORY_JWKS_URL, "upstream": "b"}
        ]);
    });
    w.host.keystore.insert(
        "https://a.directory.test/jwks".into(),
        (Some(200), br#"{"keys":[]}"#.to_vec()),
    );
    let body = w.tpp.request();
    w.post(&body);
    assert_eq!(w.host.dispatched.len(), 2);
    w.answer_callouts();
    assert_eq!(w.host.resumed, 1, "{:?}", w.host.responses);
}

#[test]
fn keystore_faults() {
    let cases: Vec<(&str, Option<(Option<u16>, &[u8])>, u16, &str)> = vec![
        ("dispatch fails", None, 503, "temporarily_unavailable"),
        (
            "no status",
            Some((None, b"")),
            503,
            "temporarily_unavailable",
        ),
        (
            "503",
            Some((Some(503), b"down")),
            503,
            "temporarily_unavailable",
        ),
        (
            "504 timeout",
            Some((Some(504), b"upstream request timeout")),
            503,
            "temporarily_unavailable",
        ),
        (
            "404",
            Some((Some(404), b"nope")),
            400,
            "invalid_software_statement",
        ),
        (
            "html",
            Some((Some(200), b"<html>hi</html>")),
            400,
            "invalid_software_statement",
        ),
        (
            "no keys",
            Some((Some(200), br#"{"keys":[]}"#)),
            400,
            "invalid_software_statement",
        ),
        (
            "redirect",
            Some((Some(302), b"")),
            400,
            "invalid_software_statement",
        ),
    ];
    for (name, reply, status, code) in cases {
        let mut w = world();
        match reply {
            None => {
                w.host.keystore.remove(DIRECTORY_JWKS_URL);
            }
            Some((s, b)) => {
                w.host
                    .keystore
                    .insert(DIRECTORY_JWKS_URL.into(), (s, b.to_vec()));
            }
        }
        let body = w.tpp.request();
        w.post(&body);
        w.answer_callouts();
        assert_eq!(w.rejected(), Some((status, code.to_string())), "{name}");
        assert_eq!(w.host.resumed, 0, "{name}");
        let headers = &w.host.responses[0].1;
        let has_retry = headers.iter().any(|(k, _)| k == "retry-after");
        assert_eq!(has_retry, status == 503, "{name}");
    }
}

#[test]
fn oversized_keystore_document_is_a_client_fault() {
    let mut w = world_with(|v| v["limits"] = json!({"jwks_bytes": 1024}));
    let big = json!({"keys": [], "pad": "x".repeat(2000)})
        .to_string()
        .into_bytes();
    w.host
        .keystore
        .insert(DIRECTORY_JWKS_URL.into(), (Some(200), big));
    let body = w.tpp.request();
    w.post(&body);
    w.answer_callouts();
    assert_eq!(
        w.rejected(),
        Some((400, "invalid_software_statement".into()))
    );
}

#[test]
fn software_keystore_faults_use_the_request_rule() {
    let mut w = world();
    let url = w.tpp.jwks_url();
    w.host.keystore.insert(url.clone(), (Some(500), vec![]));
    let body = w.tpp.request();
    w.post(&body);
    w.answer_callouts();
    assert_eq!(w.rejected(), Some((503, "temporarily_unavailable".into())));

    let mut w = world();
    w.host.keystore.insert(url, (Some(403), vec![]));
    let body = w.tpp.request();
    w.post(&body);
    w.answer_callouts();
    assert_eq!(w.rejected(), Some((400, "invalid_client_metadata".into())));
}

#[test]
fn envelope_rejections() {
    let cases: Vec<(&str, &str, &str, &str, bool, u16)> = vec![
        (
            "GET collection",
            "GET",
            "/register",
            "application/jwt",
            true,
            405,
        ),
        ("PATCH", "PATCH", "/register", "application/jwt", true, 405),
        (
            "GET client without a token",
            "GET",
            "/register/abc",
            "",
            true,
            401,
        ),
        ("PATCH client", "PATCH", "/register/abc", "", true, 405),
        (
            "POST client",
            "POST",
            "/register/abc",
            "application/jwt",
            false,
            405,
        ),
        (
            "bad segment",
            "POST",
            "/register/a%2Fb",
            "application/jwt",
            true,
            400,
        ),
        (
            "json body",
            "POST",
            "/register",
            "application/json",
            false,
            400,
        ),
        ("no content type", "POST", "/register", "", false, 400),
        ("no body", "POST", "/register", "application/jwt", true, 400),
    ];
    for (name, method, path, ct, eos, status) in cases {
        let mut w = world();
        w.request(method, path, ct, "x");
        assert_eq!(
            w.engine.on_request_headers(&mut w.host, 1, eos),
            Flow::Pause,
            "{name}"
        );
        assert_eq!(w.host.responses.len(), 1, "{name}");
        assert_eq!(w.host.responses[0].0, status, "{name}");
        if status == 405 {
            assert!(
                w.host.responses[0].1.iter().any(|(k, _)| k == "allow"),
                "{name}"
            );
        }
    }
}

#[test]
fn size_limits() {
    let mut w = world();
    w.request("POST", "/register", "application/jwt", "x");
    w.host
        .headers
        .insert("content-length".into(), "65537".into());
    w.engine.on_request_headers(&mut w.host, 1, false);
    assert_eq!(w.rejected(), Some((413, "invalid_request".into())));

    // No content-length (chunked): the buffered size decides.
    let mut w = world();
    w.request("POST", "/register", "application/jwt", "x");
    w.host.headers.remove("content-length");
    assert_eq!(
        w.engine.on_request_headers(&mut w.host, 1, false),
        Flow::Pause
    );
    assert_eq!(
        w.engine.on_request_body(&mut w.host, 1, 70_000, false),
        Flow::Pause
    );
    assert_eq!(w.rejected(), Some((413, "invalid_request".into())));
    // Nothing more happens on this stream.
    assert_eq!(
        w.engine.on_request_body(&mut w.host, 1, 80_000, true),
        Flow::Pause
    );
    assert_eq!(w.host.responses.len(), 1);
}

#[test]
fn garbage_and_refused_algorithms_fetch_nothing() {
    let tpp = Tpp::new(TestKey::ec("d"), TestKey::ec("t"));
    let ssa = tpp.ssa();
    let claims = tpp.request_claims(&ssa);
    let cases: Vec<(&str, String, &str)> = vec![
        ("garbage", "not a jwt".into(), "invalid_request"),
        (
            "none",
            dcr_guard_testkit::keys::unsigned_none(&claims),
            "invalid_client_metadata",
        ),
        (
            "hs256",
            dcr_guard_testkit::keys::hs256(b"secret", &claims),
            "invalid_client_metadata",
        ),
        (
            "unknown issuer",
            tpp.key.sign_default(
                &tpp.request_claims(&tpp.ssa_with(|c| c["iss"] = json!("Evil Directory"))),
            ),
            "unapproved_software_statement",
        ),
        (
            "no ssa",
            tpp.key.sign_default(&json!({"iss": "x"})),
            "invalid_software_statement",
        ),
        (
            "ssa not a string",
            tpp.key.sign_default(&json!({"software_statement": 5})),
            "invalid_software_statement",
        ),
        (
            "ssa garbage",
            tpp.key.sign_default(&json!({"software_statement": "a.b"})),
            "invalid_software_statement",
        ),
    ];
    for (name, body, code) in cases {
        let mut w = world();
        w.post(&body);
        assert_eq!(w.rejected().map(|r| r.1), Some(code.to_string()), "{name}");
        assert!(w.host.dispatched.is_empty(), "{name}");
    }
}

#[test]
fn a_late_callout_after_rejection_is_ignored() {
    let mut w = world();
    w.host
        .keystore
        .insert(DIRECTORY_JWKS_URL.into(), (Some(404), vec![]));
    let body = w.tpp.request();
    w.post(&body);
    w.answer_callouts();
    assert_eq!(w.host.responses.len(), 1);
    w.host.current = Some((Some(200), vec![]));
    w.engine.on_call_response(&mut w.host, 99, 0);
    assert_eq!(w.host.responses.len(), 1);
    assert_eq!(w.host.resumed, 0);
}

#[test]
fn unconfigured_filter_fails_closed() {
    let mut host = Fake::default();
    host.headers.insert(":path".into(), "/register".into());
    host.headers.insert(":method".into(), "POST".into());
    assert_eq!(unconfigured(&mut host), Flow::Pause);
    assert_eq!(host.responses[0].0, 503);
    let mut host = Fake::default();
    host.headers.insert(":path".into(), "/accounts".into());
    host.headers.insert(":method".into(), "GET".into());
    assert_eq!(unconfigured(&mut host), Flow::Pause);
    assert_eq!(host.responses[0].0, 503);
}

#[test]
fn rejections_are_logged_once_without_tokens() {
    let mut w = world();
    let body = w.tpp.request_with(|c| c["exp"] = json!(1));
    w.post(&body);
    w.answer_callouts();
    assert_eq!(w.rejected(), Some((400, "invalid_client_metadata".into())));
    let logs = w.host.logs.borrow();
    let lines: Vec<&String> = logs.iter().filter(|l| l.contains("rejected")).collect();
    assert_eq!(lines.len(), 1, "{logs:?}");
    let line = lines[0];
    assert!(line.contains("rule=issuance_time"), "{line}");
    assert!(line.contains("error=invalid_client_metadata"), "{line}");
    assert!(
        line.contains(&format!(" software_id=\"{}\"", w.tpp.software_id)),
        "{line}"
    );
    assert!(line.contains(" jti=\""), "{line}");
    assert!(!line.contains(&body[..20]), "token echoed: {line}");
}

/// What a forged SSA may claim: a known TPP's software_id followed by a forged log line.
const FORGED_ID: &str =
    "Cy7LCjSi0o7xDkt4mcZgDW\n[2099-01-01 00:00:00.000][1][info][wasm] FORGED dcr-guard: accepted \"x\"\r\u{7f}\u{2028}";

/// No log line and no filter state value carries a character that could end a line, start a
/// forged one or leave a quoted field: printable ASCII only.
fn assert_sinks_clean(w: &World) {
    for line in w.host.logs.borrow().iter() {
        assert!(
            line.bytes().all(|b| (0x20..0x7f).contains(&b)),
            "raw control or non-ASCII in a log line: {line:?}"
        );
    }
    for (k, v) in &w.host.state {
        assert!(
            v.bytes().all(|b| (0x20..0x7f).contains(&b)),
            "raw control or non-ASCII in filter state {k}: {v:?}"
        );
    }
}

#[test]
fn a_forged_ssa_is_never_attributed_nor_logged_raw() {
    for report_only in [false, true] {
        let mut w = world_with(|v| v["report_only"] = json!(report_only));
        let forged = dcr_guard_testkit::dcr::corrupt_signature(&w.tpp.ssa_with(|c| {
            c["software_id"] = json!(FORGED_ID);
        }));
        let body = w.tpp.key.sign_default(&{
            let mut c = w.tpp.request_claims(&forged);
            c["jti"] = json!("j\nforged jti");
            c
        });
        w.post(&body);
        w.answer_callouts();
        if report_only {
            assert!(w.host.responses.is_empty());
            assert_eq!(w.host.state["dcr_guard.verdict"], "reported");
        } else {
            assert_eq!(
                w.rejected(),
                Some((400, "invalid_software_statement".into()))
            );
            assert_eq!(w.host.state["dcr_guard.verdict"], "rejected");
        }
        assert_sinks_clean(&w);
        // Never recorded as the TPP's software_id: only as what an unverified SSA claims.
        assert!(
            !w.host.state.contains_key("dcr_guard.software_id"),
            "{report_only}: {:?}",
            w.host.state
        );
        assert_eq!(
            w.host.state["dcr_guard.claimed_software_id"],
            "Cy7LCjSi0o7xDkt4mcZgDW\\n[2099-01-01 00:00:00.000][1][info][wasm] FORGED dcr-guard: accepted \\\"x\\\"\\r\\u{7f}\\u{2028}"
        );
        let logs = w.host.logs.borrow();
        let lines: Vec<&String> = logs.iter().filter(|l| l.contains("rule=")).collect();
        assert!(!lines.is_empty(), "{logs:?}");
        for line in lines {
            assert!(!line.contains(" software_id=\""), "attributed: {line}");
            assert!(
                !line.contains(" jti=\""),
                "unverified jti as a fact: {line}"
            );
            assert!(
                line.contains(" claimed_software_id=\"Cy7LCjSi0o7xDkt4mcZgDW\\n[2099"),
                "{line}"
            );
            if line.contains("status=") {
                assert!(line.contains(" claimed_jti=\"j\\nforged jti\""), "{line}");
            }
        }
    }
}

#[test]
fn a_verified_ssa_is_attributed_and_an_unverified_request_jti_stays_claimed() {
    // A genuine SSA (verified) on a request whose own signature is forged: the SSA's
    // software_id is a fact, the request's jti only a claim.
    let mut w = world();
    let body = dcr_guard_testkit::dcr::corrupt_signature(&w.tpp.request_with(|c| {
        c["jti"] = json!("j-\"1\"");
    }));
    w.post(&body);
    w.answer_callouts();
    assert_eq!(w.rejected(), Some((400, "invalid_client_metadata".into())));
    assert_sinks_clean(&w);
    assert_eq!(w.host.state["dcr_guard.software_id"], w.tpp.software_id);
    assert!(!w.host.state.contains_key("dcr_guard.claimed_software_id"));
    let logs = w.host.logs.borrow();
    let line = logs.iter().find(|l| l.contains("rejected")).unwrap();
    assert!(line.contains("rule=request_signature"), "{line}");
    assert!(
        line.contains(&format!(" software_id=\"{}\"", w.tpp.software_id)),
        "{line}"
    );
    assert!(line.contains(" claimed_jti=\"j-\\\"1\\\"\""), "{line}");
}

#[test]
fn a_reason_quoting_a_claim_is_escaped_in_the_log() {
    // An untrusted SSA issuer is quoted in the description: one line, escaped.
    let mut w = world();
    let ssa = w
        .tpp
        .ssa_with(|c| c["iss"] = json!("Evil\n[info] accepted \"q\""));
    let body = w.tpp.key.sign_default(&w.tpp.request_claims(&ssa));
    w.post(&body);
    assert_eq!(
        w.rejected(),
        Some((400, "unapproved_software_statement".into()))
    );
    assert_sinks_clean(&w);
    let logs = w.host.logs.borrow();
    let line = logs.iter().find(|l| l.contains("rejected")).unwrap();
    assert!(
        line.contains("reason=\"SSA issuer `Evil\\n[info] accepted \\\"q\\\"` is not trusted\""),
        "{line}"
    );
}

#[test]
fn management_in_delegate_mode() {
    // GET/DELETE with a well-formed token go on untouched (the AS binds its own token).
    for method in ["GET", "DELETE"] {
        let mut w = world();
        w.request(method, "/register/client-1", "", "");
        w.host
            .headers
            .insert("authorization".into(), "Bearer opaque.token-1".into());
        assert_eq!(
            w.engine.on_request_headers(&mut w.host, 1, true),
            Flow::Continue,
            "{method}"
        );
        assert!(w.host.responses.is_empty());
    }
    // No token: 401 with a bare challenge and no body; an empty one: invalid_token.
    let mut w = world();
    w.request("GET", "/register/client-1", "", "");
    w.engine.on_request_headers(&mut w.host, 1, true);
    let (status, headers, body) = &w.host.responses[0];
    assert_eq!(*status, 401);
    assert!(headers.contains(&("www-authenticate".into(), "Bearer".into())));
    assert_eq!(*body, Value::Null);
    let mut w = world();
    w.request("DELETE", "/register/client-1", "", "");
    w.host
        .headers
        .insert("authorization".into(), "Bearer ".into());
    w.engine.on_request_headers(&mut w.host, 1, true);
    assert_eq!(w.rejected(), Some((401, "invalid_token".into())));
}

fn put(w: &mut World, path: &str, body: &str) {
    w.request("PUT", path, "application/jwt", body);
    w.host
        .headers
        .insert("authorization".into(), "Bearer rat-1".into());
    let h = w.engine.on_request_headers(&mut w.host, 1, false);
    assert_eq!(h, Flow::Pause);
    let len = w.host.body.len();
    w.engine.on_request_body(&mut w.host, 1, len, true);
    w.answer_callouts();
}

#[test]
fn update_is_validated_then_checked_against_rfc7592() {
    let mut w = world();
    let body = w.tpp.request();
    put(&mut w, "/register/client-1", &body);
    assert!(w.host.responses.is_empty(), "{:?}", w.host.responses);
    assert_eq!(w.host.resumed, 1);

    let mut w = world();
    let body = w
        .tpp
        .request_with(|c| c["registration_access_token"] = json!("x"));
    put(&mut w, "/register/client-1", &body);
    assert_eq!(w.rejected(), Some((400, "invalid_client_metadata".into())));

    let mut w = world();
    let body = w.tpp.request_with(|c| c["client_id"] = json!("client-2"));
    put(&mut w, "/register/client-1", &body);
    assert_eq!(w.rejected(), Some((400, "invalid_client_metadata".into())));
    assert!(!w.host.responses[0].2.to_string().contains("client-2"));

    // The body is still fully validated.
    let mut w = world();
    let body = w.tpp.request_with(|c| c["aud"] = json!("another-bank"));
    put(&mut w, "/register/client-1", &body);
    assert_eq!(w.rejected(), Some((400, "invalid_client_metadata".into())));

    // Binding before the envelope: no token and a wrong content type is a 401.
    let mut w = world();
    w.request("PUT", "/register/client-1", "text/plain", "x");
    w.engine.on_request_headers(&mut w.host, 1, false);
    assert_eq!(w.host.responses[0].0, 401);
}

#[test]
fn json_forwarding_rewrites_the_body_and_adds_facts() {
    let mut w = world_with(|v| {
        v["forward"] = json!("json");
        v["fact_headers"] = json!([{"claim": "software_id", "header": "x-tpp-software-id"}, {"claim": "org_id", "header": "x-tpp-org-id"}]);
    });
    let body = w.tpp.request();
    w.request("POST", "/register", "application/jwt", &body);
    w.host
        .headers
        .insert("x-tpp-software-id".into(), "forged".into());
    w.engine.on_request_headers(&mut w.host, 1, false);
    assert!(
        !w.host.headers.contains_key("x-tpp-software-id"),
        "client's fact header kept"
    );
    let len = w.host.body.len();
    w.engine.on_request_body(&mut w.host, 1, len, true);
    w.answer_callouts();
    assert_eq!(w.host.resumed, 1, "{:?}", w.host.responses);
    assert_eq!(w.host.headers["content-type"], "application/json");
    assert_eq!(
        w.host.headers["content-length"],
        w.host.body.len().to_string()
    );
    assert_eq!(w.host.headers["x-tpp-software-id"], w.tpp.software_id);
    assert_eq!(w.host.headers["x-tpp-org-id"], w.tpp.org_id);
    let forwarded: Value = serde_json::from_slice(&w.host.body).unwrap();
    assert_eq!(forwarded["jwks_uri"], w.tpp.jwks_url());
    assert_eq!(forwarded["client_name"], "Demo TPP");
    assert!(forwarded.get("iss").is_none() && forwarded.get("jti").is_none());

    // PUT in JSON mode fills client_id from the path.
    let mut w = world_with(|v| v["forward"] = json!("json"));
    let body = w.tpp.request();
    put(&mut w, "/register/client-1", &body);
    let forwarded: Value = serde_json::from_slice(&w.host.body).unwrap();
    assert_eq!(forwarded["client_id"], "client-1");
}

#[test]
fn jwks_by_value_is_refused_in_json_forwarding() {
    let mut w = world_with(|v| v["forward"] = json!("json"));
    let body = w.tpp.request_with(|c| c["jwks"] = json!({"keys": []}));
    w.post(&body);
    w.answer_callouts();
    assert_eq!(w.rejected(), Some((400, "invalid_client_metadata".into())));
}

#[test]
fn replay_is_checked_last_and_shared_between_workers() {
    let mut w = world();
    let ssa = w.tpp.ssa();
    let mut claims = w.tpp.request_claims(&ssa);
    claims["aud"] = json!("another-bank");
    let rejected = w.tpp.key.sign_default(&claims);
    w.post(&rejected);
    w.answer_callouts();
    assert_eq!(w.rejected(), Some((400, "invalid_client_metadata".into())));

    // Same jti, now valid: a rejected request did not burn it. A new stream on a host sharing
    // the same shared data stands for another worker.
    claims["aud"] = json!(dcr_guard_testkit::dcr::BANK_AUDIENCE);
    let valid = w.tpp.key.sign_default(&claims);
    for (round, want_ok) in [(1, true), (2, false)] {
        w.engine = Engine::new(Rc::clone(w.engine.config()), 2);
        w.host.responses.clear();
        w.host.dispatched.clear();
        w.host.resumed = 0;
        w.post(&valid);
        w.answer_callouts();
        if want_ok {
            assert!(
                w.host.responses.is_empty(),
                "round {round}: {:?}",
                w.host.responses
            );
            // Keys come from the shared cache now: accepted synchronously, nothing fetched.
            assert!(w.host.dispatched.is_empty(), "round {round}: fetched again");
            assert_eq!(w.host.counters.get("dcr_guard.accepted"), Some(&1));
        } else {
            assert_eq!(
                w.rejected(),
                Some((400, "invalid_client_metadata".into())),
                "round {round}"
            );
            let desc = w.host.responses[0].2["error_description"]
                .as_str()
                .unwrap()
                .to_string();
            assert!(desc.contains("used before"), "{desc}");
        }
    }
}

/// Spec §7: with `replay.max_retention_seconds` at the smallest value the configuration accepts, a
/// request whose `iat` is `leeway` in the future (the most `issuance_time` accepts) is still a
/// replay at the last second it can be accepted (`iat + max_age`); one second later the request
/// itself is too old.
#[test]
fn a_replay_cap_at_its_floor_leaves_no_replay_window() {
    let age = 3600i64;
    for leeway in [60i64, 1, 0] {
        let config = move |v: &mut Value, retention: i64| {
            v["leeway_seconds"] = json!(leeway);
            v["rules"]["issuance_time"] = json!({"max_age_seconds": age});
            v["replay"] = json!({"max_retention_seconds": retention});
        };
        // The smallest cap the configuration accepts, whatever the formula.
        let floor = (1..=age + 3 * leeway + 5)
            .find(|r| {
                let mut v = Tpp::new(TestKey::ec("d"), TestKey::ec("t")).filter_config("d", "s");
                config(&mut v, *r);
                Config::from_json(v.to_string().as_bytes()).is_ok()
            })
            .unwrap();

        let mut w = world_with(|v| config(v, floor));
        let t0 = now() as i64;
        w.host.frozen = Some(t0);
        let ssa = w.tpp.ssa();
        let mut claims = w.tpp.request_claims(&ssa);
        claims["iat"] = json!(t0 + leeway);
        claims["exp"] = json!(t0 + 2 * leeway + age + 10);
        let body = w.tpp.key.sign_default(&claims);
        w.post(&body);
        w.answer_callouts();
        assert!(w.host.responses.is_empty(), "{:?}", w.host.responses);
        assert_eq!(w.host.resumed, 1);

        // Another worker, at the last second the request can be accepted, then one later.
        let last = t0 + leeway + age;
        for (at, want) in [(last, "used before"), (last + 1, "too old")] {
            w.engine = Engine::new(Rc::clone(w.engine.config()), 2);
            again(&mut w);
            w.host.frozen = Some(at);
            w.post(&body);
            w.answer_callouts();
            assert_eq!(
                w.rejected(),
                Some((400, "invalid_client_metadata".into())),
                "leeway {leeway} at {}",
                at - t0
            );
            let desc = w.host.responses[0].2["error_description"]
                .as_str()
                .unwrap()
                .to_string();
            assert!(desc.contains(want), "leeway {leeway}: {desc}");
        }
        assert_eq!(floor, age + leeway + leeway.max(1), "leeway {leeway}");
    }
}

/// The per-issuer share limits the request `iss` (the TPP); SSA pairs, whose issuer is the
/// directory of every TPP, are not limited, so two TPPs' SSAs do not compete for one share.
#[test]
fn the_issuer_share_limits_tpps_not_their_directory() {
    let mut w = world_with(|v| {
        v["rules"]["ssa_jti"] = json!({"enabled": true});
        // One bucket of 8; an issuer may hold 2.
        v["replay"] = json!({"buckets": 1, "entries_per_bucket": 8, "issuer_share_percent": 25});
    });
    let mut other = Tpp::new(TestKey::ec("unused"), TestKey::ec("tpp-2"));
    other.software_id = "Zq9OtherSoftware00001".to_string();
    w.host.keystore.insert(
        other.jwks_url(),
        (Some(200), other.software_jwks().to_string().into_bytes()),
    );
    let post = |w: &mut World, body: String| {
        again(w);
        w.post(&body);
        w.answer_callouts();
        w.rejected()
    };
    for _ in 0..2 {
        let body = w.tpp.request();
        assert_eq!(post(&mut w, body), None);
        let ssa = w.tpp.directory.sign_default(&other.ssa_claims());
        let body = other.key.sign_default(&other.request_claims(&ssa));
        assert_eq!(post(&mut w, body), None, "{:?}", w.host.responses);
    }
    // Each TPP now holds its share (2 request pairs); the directory holds 4 SSA pairs.
    let body = w.tpp.request();
    assert_eq!(
        post(&mut w, body),
        Some((503, "temporarily_unavailable".into()))
    );
}

#[test]
fn a_request_refused_by_ssa_jti_keeps_its_request_jti() {
    let mut w = world_with(|v| v["rules"]["ssa_jti"] = json!({"enabled": true}));
    let ssa = w.tpp.ssa();
    let first = w.tpp.key.sign_default(&w.tpp.request_claims(&ssa));
    w.post(&first);
    w.answer_callouts();
    assert!(w.host.responses.is_empty(), "{:?}", w.host.responses);

    // A fresh request jti with the same SSA: refused by ssa_jti...
    let mut claims = w.tpp.request_claims(&ssa);
    again(&mut w);
    w.post(&w.tpp.key.sign_default(&claims));
    assert_eq!(
        w.rejected(),
        Some((400, "invalid_software_statement".into()))
    );
    // ...which did not use up that request jti: with a fresh SSA it passes.
    claims["software_statement"] = json!(w.tpp.ssa());
    again(&mut w);
    w.post(&w.tpp.key.sign_default(&claims));
    assert!(w.host.responses.is_empty(), "{:?}", w.host.responses);
    // And now it is used.
    claims["software_statement"] = json!(w.tpp.ssa());
    again(&mut w);
    w.post(&w.tpp.key.sign_default(&claims));
    assert_eq!(w.rejected(), Some((400, "invalid_client_metadata".into())));
}

#[test]
fn jti_format_can_be_required() {
    let mut w = world_with(|v| v["rules"]["request_jti"] = json!({"format": "uuid4"}));
    let body = w.tpp.request_with(|c| c["jti"] = json!("not-a-uuid"));
    w.post(&body);
    w.answer_callouts();
    assert_eq!(w.rejected(), Some((400, "invalid_client_metadata".into())));
    let mut w = world_with(|v| v["rules"]["request_jti"] = json!({"format": "uuid4"}));
    let body = w.tpp.request();
    w.post(&body);
    w.answer_callouts();
    assert!(w.host.responses.is_empty(), "{:?}", w.host.responses);
}

/// A fresh request on the same engine (same worker).
fn again(w: &mut World) {
    w.host.responses.clear();
    w.host.dispatched.clear();
    w.host.resumed = 0;
}

fn dispatched_urls(w: &World) -> Vec<String> {
    w.host
        .dispatched
        .iter()
        .map(|(_, s)| s.url.clone())
        .collect()
}

#[test]
fn documents_are_cached_for_the_next_request() {
    let mut w = world();
    let body = w.tpp.request();
    w.post(&body);
    w.answer_callouts();
    assert_eq!(w.host.dispatched.len(), 2);
    again(&mut w);
    let body = w.tpp.request();
    let (_, flow) = w.post(&body);
    assert_eq!(flow, Flow::Continue, "served from the cache, synchronously");
    assert!(w.host.dispatched.is_empty());
    assert_eq!(w.host.counters.get("dcr_guard.jwks_cache_hits"), Some(&2));
}

#[test]
fn the_shared_entry_is_read_at_most_once_a_second_unless_a_kid_is_missing() {
    let mut w = world();
    let t = now() as i64;
    w.host.frozen = Some(t);
    let doc_key = dcr_guard_core::keys::Cache::new(Default::default(), "dcr_guard.jwks.")
        .doc_key(DIRECTORY_JWKS_URL);
    let reads = |w: &World| {
        w.host
            .shared_reads
            .borrow()
            .get(&doc_key)
            .copied()
            .unwrap_or(0)
    };
    let body = w.tpp.request();
    w.post(&body);
    w.answer_callouts();
    // The first request after the fetch reads the shared entry; the next ones in the same second
    // use what it read.
    for expected_reads in [1, 0, 0] {
        again(&mut w);
        let before = reads(&w);
        let body = w.tpp.request();
        assert_eq!(w.post(&body).1, Flow::Continue);
        assert_eq!(reads(&w) - before, expected_reads);
    }
    assert_eq!(w.host.counters.get("dcr_guard.jwks_cache_hits"), Some(&6));

    // Another worker publishes a new generation with a rotated key (a kid-miss refetch of its
    // own). A request signed with the new key in the same second reads the shared entry again
    // and passes, without fetching anything.
    let rotated = TestKey::ec("dir-2");
    let (raw, _) = w.host.shared_get(&doc_key).unwrap();
    let mut entry = dcr_guard_core::keys::Entry::decode(&raw.unwrap()).unwrap();
    entry.generation += 1;
    entry.doc = dcr_guard_testkit::keys::jwks(&[&w.tpp.directory, &rotated])
        .to_string()
        .into_bytes();
    w.host.shared_set(&doc_key, &entry.encode(), None).unwrap();
    let ssa = rotated.sign_default(&w.tpp.ssa_claims());
    let body = w.tpp.key.sign_default(&w.tpp.request_claims(&ssa));
    again(&mut w);
    let before = reads(&w);
    assert_eq!(w.post(&body).1, Flow::Continue, "{:?}", w.host.responses);
    assert!(w.host.dispatched.is_empty());
    assert!(reads(&w) > before);

    // The next second reads the shared entry again.
    w.host.clock += 1;
    let before = reads(&w);
    again(&mut w);
    let body = w.tpp.request();
    assert_eq!(w.post(&body).1, Flow::Continue);
    assert_eq!(reads(&w), before + 1);
}

#[test]
fn a_cold_burst_on_two_workers_fetches_once() {
    let mut w = world();
    let cfg = Rc::clone(w.engine.config());
    let mut other = Engine::new(cfg, 2);
    // Worker 1 takes the lease and fetches the directory document.
    let body = w.tpp.request();
    w.post(&body);
    assert_eq!(dispatched_urls(&w), vec![DIRECTORY_JWKS_URL.to_string()]);
    // Worker 2, same moment: waits, fetches nothing.
    let body2 = w.tpp.request();
    w.host.body = body2.as_bytes().to_vec();
    assert_eq!(other.on_request_headers(&mut w.host, 7, false), Flow::Pause);
    assert_eq!(
        other.on_request_body(&mut w.host, 7, body2.len(), true),
        Flow::Pause
    );
    assert_eq!(w.host.dispatched.len(), 1, "worker 2 fetched too");
    assert_eq!(w.host.counters.get("dcr_guard.jwks_lease_waits"), Some(&1));
    // Worker 1's fetch lands (and then its software fetch).
    w.answer_callouts();
    assert_eq!(w.host.resumed, 1);
    // Worker 2's tick wakes it; the software document is in the cache by now too.
    other.on_tick(&mut w.host, 0);
    assert_eq!(w.host.resumed, 2, "{:?}", w.host.responses);
    assert!(w.host.responses.is_empty());
    assert_eq!(
        dispatched_urls(&w),
        vec![DIRECTORY_JWKS_URL.to_string(), w.tpp.jwks_url()],
        "one fetch per document for both workers"
    );
}

#[test]
fn an_unknown_kid_refetches_only_after_the_cooldown() {
    let mut w = world();
    let body = w.tpp.request();
    w.post(&body);
    w.answer_callouts();
    // The directory rotates to a new key.
    let rotated = TestKey::ec("dir-2");
    let doc = dcr_guard_testkit::keys::jwks(&[&w.tpp.directory, &rotated])
        .to_string()
        .into_bytes();
    w.host
        .keystore
        .insert(DIRECTORY_JWKS_URL.into(), (Some(200), doc));
    let ssa = rotated.sign_default(&w.tpp.ssa_claims());
    let body = w.tpp.key.sign_default(&w.tpp.request_claims(&ssa));
    // Within the cooldown: no refetch, the kid is unknown.
    again(&mut w);
    w.post(&body);
    w.answer_callouts();
    assert!(w.host.dispatched.is_empty());
    assert_eq!(
        w.rejected(),
        Some((400, "invalid_software_statement".into()))
    );
    // After the cooldown: exactly one refetch, and the new key verifies.
    w.host.clock += 31;
    again(&mut w);
    w.engine = Engine::new(Rc::clone(w.engine.config()), 1);
    let body = w.tpp.key.sign_default(&w.tpp.request_claims(&ssa));
    w.post(&body);
    w.answer_callouts();
    assert_eq!(dispatched_urls(&w), vec![DIRECTORY_JWKS_URL.to_string()]);
    assert!(w.host.responses.is_empty(), "{:?}", w.host.responses);
    assert_eq!(
        w.host.counters.get("dcr_guard.jwks_kid_refetches"),
        Some(&1)
    );
}

#[test]
fn a_failed_refresh_serves_the_last_good_document_for_a_bounded_time() {
    // The clock jumps by hours: request times are not what this test is about.
    let mut w = world_with(|v| v["rules"]["issuance_time"] = json!({"enabled": false}));
    let body = w.tpp.request();
    w.post(&body);
    w.answer_callouts();
    w.host
        .keystore
        .insert(DIRECTORY_JWKS_URL.into(), (Some(503), vec![]));
    w.host
        .keystore
        .insert(w.tpp.jwks_url(), (Some(503), vec![]));
    // Expired (default lifetime 600 s) but within stale-if-error (3600 s).
    w.host.clock += 700;
    again(&mut w);
    let body = w.tpp.request();
    w.post(&body);
    w.answer_callouts();
    assert!(w.host.responses.is_empty(), "{:?}", w.host.responses);
    assert!(
        w.host
            .counters
            .get("dcr_guard.jwks_stale_serves")
            .copied()
            .unwrap_or(0)
            >= 1
    );
    // Far past the bound: 503.
    w.host.clock += 7200;
    again(&mut w);
    let body = w.tpp.request();
    w.post(&body);
    w.answer_callouts();
    assert_eq!(w.rejected(), Some((503, "temporarily_unavailable".into())));
}

#[test]
fn the_directory_document_is_fetched_in_the_background() {
    let mut w = world();
    w.engine.on_tick(&mut w.host, 0);
    assert_eq!(dispatched_urls(&w), vec![DIRECTORY_JWKS_URL.to_string()]);
    w.answer_callouts();
    again(&mut w);
    let body = w.tpp.request();
    w.post(&body);
    assert_eq!(
        dispatched_urls(&w),
        vec![w.tpp.jwks_url()],
        "the directory came from the cache"
    );
}

#[test]
fn while_the_cache_backs_off_a_failure_keeps_its_answer() {
    for (reply, status, code) in [
        (
            (Some(200), b"<html></html>".to_vec()),
            400,
            "invalid_software_statement",
        ),
        ((Some(503), vec![]), 503, "temporarily_unavailable"),
    ] {
        let mut w = world();
        w.host
            .keystore
            .insert(DIRECTORY_JWKS_URL.into(), reply.clone());
        for attempt in 1..=2 {
            again(&mut w);
            let body = w.tpp.request();
            w.post(&body);
            w.answer_callouts();
            assert_eq!(
                w.rejected(),
                Some((status, code.to_string())),
                "{reply:?} attempt {attempt}"
            );
        }
        assert_eq!(
            w.host.dispatched.len(),
            0,
            "the second attempt fetched again"
        );
    }
}

fn introspection_world(env: &str) -> World {
    let name = env.to_string();
    let secrets = move |n: &str| (n == name).then(|| "s3cr3t/+=".to_string());
    let env = env.to_string();
    world_with_secrets(
        move |v| {
            v["rules"]["token_client_binding"] = json!({
                "mode": "introspection",
                "introspection": {
                    "url": "https://as.bank.test/introspect",
                    "upstream": "as",
                    "client_id": "dcr guard",
                    "client_secret_env": env
                },
                "scope": "dcr"
            });
        },
        &secrets,
    )
}

fn introspect(w: &mut World, token: &str, answer: (Option<u16>, Value)) {
    again(w);
    w.host.calls.clear();
    w.request("GET", "/register/c1", "", "");
    w.host
        .headers
        .insert("authorization".into(), format!("Bearer {token}"));
    assert_eq!(
        w.engine.on_request_headers(&mut w.host, 1, true),
        Flow::Pause
    );
    assert_eq!(w.host.calls.len(), 1);
    let (tok, _) = w.host.calls[0].clone();
    let body = if answer.1.is_null() {
        vec![]
    } else {
        answer.1.to_string().into_bytes()
    };
    let size = body.len();
    w.host.current = Some((answer.0, body));
    w.engine.on_call_response(&mut w.host, tok, size);
}

#[test]
fn introspection_mode() {
    let mut w = introspection_world("DCR_GUARD_TEST_SECRET_1");
    let ok = json!({"active": true, "client_id": "c1", "scope": "dcr other"});
    introspect(&mut w, "opaque+token/1=", (Some(200), ok.clone()));
    assert!(w.host.responses.is_empty(), "{:?}", w.host.responses);
    assert_eq!(w.host.resumed, 1);
    // The call: RFC 7662 form, client authenticated with HTTP Basic over form-encoded parts.
    let call = &w.host.calls[0].1;
    assert_eq!(call.upstream, "as");
    assert_eq!(call.path, "/introspect");
    assert_eq!(
        String::from_utf8(call.body.clone()).unwrap(),
        "token=opaque%2Btoken%2F1%3D&token_type_hint=access_token"
    );
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode("dcr+guard:s3cr3t%2F%2B%3D");
    assert!(call
        .headers
        .contains(&("authorization".into(), format!("Basic {basic}"))));

    let cases: Vec<(&str, (Option<u16>, Value), u16)> = vec![
        ("inactive", (Some(200), json!({"active": false})), 401),
        (
            "another client",
            (
                Some(200),
                json!({"active": true, "client_id": "c2", "scope": "dcr"}),
            ),
            401,
        ),
        (
            "no scope",
            (Some(200), json!({"active": true, "client_id": "c1"})),
            403,
        ),
        (
            "another client's, no scope",
            (Some(200), json!({"active": true, "client_id": "c2"})),
            401,
        ),
        (
            "expired",
            (
                Some(200),
                json!({"active": true, "client_id": "c1", "scope": "dcr", "exp": 1}),
            ),
            401,
        ),
        ("AS down", (Some(503), Value::Null), 503),
        (
            "filter's credentials refused",
            (Some(401), Value::Null),
            503,
        ),
        ("not JSON", (Some(200), json!("x")), 503),
        ("no answer", (None, Value::Null), 503),
    ];
    for (name, answer, status) in cases {
        introspect(&mut w, "opaque-token", answer);
        assert_eq!(w.host.responses.len(), 1, "{name}");
        assert_eq!(w.host.responses[0].0, status, "{name}");
        assert!(!w.host.responses[0].2.to_string().contains("c2"), "{name}");
    }
    for line in w.host.logs.borrow().iter() {
        assert!(!line.contains("s3cr3t"), "secret logged: {line}");
    }
}

#[test]
fn introspection_secret_must_be_in_the_environment() {
    let v = json!({
        "directories": [{"issuer": "i", "jwks": [{"url": "https://k.example/jwks", "upstream": "k"}]}],
        "rules": {
            "audience": {"audiences": ["bank"]},
            "token_client_binding": {"mode": "introspection", "introspection": {
                "url": "https://as.example/introspect", "upstream": "as", "client_id": "x",
                "client_secret_env": "DCR_GUARD_TEST_SECRET_UNSET"}}
        }
    });
    let e = Config::from_json(v.to_string().as_bytes()).unwrap_err();
    assert_eq!(
        e.field,
        "rules.token_client_binding.introspection.client_secret_env"
    );
    let mut v2 = v.clone();
    v2["rules"]["token_client_binding"]["mode"] = json!("jwt");
    assert!(Config::from_json(v2.to_string().as_bytes()).is_err());
}

#[test]
fn a_finished_stream_leaves_nothing_behind() {
    let mut w = world();
    let body = w.tpp.request();
    w.post(&body);
    assert_eq!(
        w.engine.worker.tokens.len(),
        1,
        "the directory fetch is in flight"
    );
    assert_eq!(w.engine.tracked(), 1);
    // The client went away before the keystore answered.
    w.engine.remove(1);
    assert_eq!(w.engine.tracked(), 0);
    assert!(w.engine.worker.tokens.is_empty());
    assert!(w.engine.worker.waiters.is_empty());
}

#[test]
fn a_waiter_that_saw_the_new_document_too_early_still_gets_it() {
    // Worker 1 fetches and publishes the directory document.
    let mut w = world();
    let body = w.tpp.request();
    w.post(&body);
    w.answer_callouts();
    // Worker 2 decided to wait, but read the generation after the publish (the race): polling
    // finds no newer generation and a free lease. The fresh document is still what it waited for.
    let cfg = Rc::clone(w.engine.config());
    let mut other = Engine::new(Rc::clone(&cfg), 2);
    let seen = other
        .worker
        .cache
        .peek(&HostStore(&mut w.host), DIRECTORY_JWKS_URL)
        .unwrap()
        .map(|e| e.generation);
    assert!(seen.is_some());
    other.worker.waiters.push(Waiter {
        ctx: 9,
        url: DIRECTORY_JWKS_URL.to_string(),
        seen,
        deadline: now() as i64 + 5,
    });
    let done = other.worker.poll_waiters(&mut w.host, &cfg, now() as i64);
    assert_eq!(done.len(), 1);
    assert!(
        matches!(done[0].2, WaitOver::Ready(Fetched::Keys(_))),
        "timed out instead"
    );
}

/// Spec §1: nothing under the registration path reaches the AS unvalidated. Every method on every
/// path an upstream could decode or normalise into the registration path is answered 400 by the
/// filter itself (on the old classifier these were "not DCR" and went upstream untouched).
#[test]
fn paths_that_normalise_to_the_registration_path_are_refused_not_passed() {
    let paths = [
        "/register%2F",
        "/REGISTER%2f",
        "/register%5C",
        "/register%2Fabc",
        "/register.json",
        "/register%2e",
        "/register%20",
        "/register%3B",
        "/register%252F",
        "/register\\abc",
        "/x/../register",
        "/register/abc/..",
        "http://bank.example/register%2F",
    ];
    for path in paths {
        for method in ["POST", "PUT", "GET", "DELETE", "PATCH"] {
            let mut w = world();
            w.request(method, path, "application/jwt", "x");
            w.host
                .headers
                .insert("authorization".into(), "Bearer t".into());
            let flow = w.engine.on_request_headers(&mut w.host, 1, false);
            assert_eq!(flow, Flow::Pause, "{method} {path}");
            assert_eq!(
                w.rejected(),
                Some((400, "invalid_request".into())),
                "{method} {path}"
            );
            assert_eq!(w.host.resumed, 0);
        }
    }
}

#[test]
fn fact_headers_are_stripped_from_every_request() {
    let edit = |v: &mut Value| {
        v["fact_headers"] = json!([{"claim": "software_id", "header": "x-tpp-software-id"}]);
    };
    for (method, path) in [
        ("GET", "/other"),
        ("POST", "/registers"),
        ("GET", "/register-x/abc"),
        ("POST", "/register"),
        ("GET", "/register/abc"),
    ] {
        let mut w = world_with(edit);
        w.request(method, path, "application/jwt", "");
        w.host
            .headers
            .insert("authorization".into(), "Bearer t".into());
        w.host
            .headers
            .insert("x-tpp-software-id".into(), "forged".into());
        w.engine.on_request_headers(&mut w.host, 1, true);
        assert_eq!(
            w.host.headers.get("x-tpp-software-id"),
            None,
            "{method} {path}"
        );
    }
}

#[test]
fn method_override_headers_are_refused_on_the_registration_path() {
    for header in [
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
    ] {
        for (method, path) in [
            ("POST", "/register"),
            ("GET", "/register/abc"),
            ("PUT", "/register/abc"),
        ] {
            let mut w = world();
            w.request(method, path, "application/jwt", "");
            w.host
                .headers
                .insert("authorization".into(), "Bearer t".into());
            w.host.headers.insert(header.into(), "DELETE".into());
            let flow = w.engine.on_request_headers(&mut w.host, 1, false);
            assert_eq!(flow, Flow::Pause, "{header} {method} {path}");
            assert_eq!(w.rejected(), Some((400, "invalid_request".into())));
        }
        // Elsewhere they are none of the filter's business.
        let mut w = world();
        w.request("POST", "/other", "text/plain", "");
        w.host.headers.insert(header.into(), "DELETE".into());
        let flow = w.engine.on_request_headers(&mut w.host, 1, false);
        assert_eq!(flow, Flow::Continue);
        assert!(w.host.responses.is_empty());
    }
}

#[test]
fn a_body_on_get_or_delete_is_refused() {
    for method in ["GET", "DELETE"] {
        let start = |w: &mut World, headers: &[(&str, &str)]| {
            w.request(method, "/register/client-1", "", "");
            w.host.headers.remove("content-length");
            w.host
                .headers
                .insert("authorization".into(), "Bearer opaque.token-1".into());
            for (k, v) in headers {
                w.host.headers.insert(k.to_string(), v.to_string());
            }
            w.engine.on_request_headers(&mut w.host, 1, false)
        };
        // A declared body: refused at the headers.
        for declared in [("content-length", "5"), ("transfer-encoding", "chunked")] {
            let mut w = world();
            assert_eq!(
                start(&mut w, &[declared]),
                Flow::Pause,
                "{method} {declared:?}"
            );
            assert_eq!(w.rejected(), Some((400, "invalid_request".into())));
        }
        // HTTP/2 without a length: held; a body byte is refused; an empty end goes on.
        let mut w = world();
        assert_eq!(start(&mut w, &[]), Flow::Pause);
        assert!(w.host.responses.is_empty());
        assert_eq!(
            w.engine.on_request_body(&mut w.host, 1, 5, false),
            Flow::Pause
        );
        assert_eq!(
            w.rejected(),
            Some((400, "invalid_request".into())),
            "{method}"
        );
        let mut w = world();
        assert_eq!(start(&mut w, &[]), Flow::Pause);
        assert_eq!(
            w.engine.on_request_body(&mut w.host, 1, 0, true),
            Flow::Continue,
            "{method}: an empty body is no body"
        );
        assert!(w.host.responses.is_empty());
        // Headers the host cannot hold: they go on, and a body that follows is answered
        // locally (the host then resets the upstream stream).
        let mut w = world_with(|v| v["hold_headers"] = json!(false));
        assert_eq!(start(&mut w, &[]), Flow::Continue);
        w.engine.on_request_body(&mut w.host, 1, 3, true);
        assert_eq!(
            w.rejected(),
            Some((400, "invalid_request".into())),
            "{method}"
        );
    }
}

/// Issue: a client that hangs up while its request holds a document's fetch lease must not stop
/// the document from being published (the SDK drops the answer of a finished context's callout).
#[test]
fn a_fetch_whose_stream_went_away_is_finished_by_the_root_context() {
    let mut w = world();
    let body = w.tpp.request();
    w.post(&body);
    assert_eq!(dispatched_urls(&w), vec![DIRECTORY_JWKS_URL.to_string()]);
    // The client resets: the host finishes the stream before the answer arrives, and the
    // answer to that stream's callout never reaches the filter.
    w.engine.remove(1);
    assert_eq!(w.engine.tracked(), 0);
    // The next tick fetches again from the root context, under the same lease.
    w.engine.on_tick(&mut w.host, 0);
    assert_eq!(
        dispatched_urls(&w),
        vec![
            DIRECTORY_JWKS_URL.to_string(),
            DIRECTORY_JWKS_URL.to_string()
        ]
    );
    assert_eq!(w.host.counters["dcr_guard.jwks_orphaned_fetches"], 1);
    let (token, _) = w.host.dispatched[1].clone();
    let reply = w.host.keystore[DIRECTORY_JWKS_URL].clone();
    let size = reply.1.len();
    w.host.current = Some(reply);
    w.engine.on_call_response(&mut w.host, token, size);
    // Published for every worker: the next registration uses it without a fetch of its own.
    let entry = w
        .engine
        .worker
        .cache
        .peek(&HostStore(&mut w.host), DIRECTORY_JWKS_URL)
        .unwrap();
    assert!(entry.is_some(), "the document was not published");
    w.host.dispatched.clear();
    w.host.responses.clear();
    let body = w.tpp.request();
    w.request("POST", "/register", "application/jwt", &body);
    assert_eq!(
        w.engine.on_request_headers(&mut w.host, 2, false),
        Flow::Pause
    );
    let len = w.host.body.len();
    w.engine.on_request_body(&mut w.host, 2, len, true);
    assert_eq!(dispatched_urls(&w), vec![w.tpp.jwks_url()]);
    w.answer_callouts();
    assert!(w.host.responses.is_empty(), "{:?}", w.host.responses);
    assert_eq!(w.host.resumed, 1);
    // A fetch without a lease (or a finished one) leaves nothing behind.
    w.engine.remove(2);
    w.engine.on_tick(&mut w.host, 0);
    assert_eq!(w.host.counters["dcr_guard.jwks_orphaned_fetches"], 1);
}

#[test]
fn singleton_headers_sent_twice_are_refused_on_the_registration_path() {
    for name in [
        "authorization",
        "content-type",
        "content-length",
        "transfer-encoding",
        "content-encoding",
        "x-forwarded-client-cert",
    ] {
        for (method, path) in [("POST", "/register"), ("GET", "/register/abc")] {
            let mut w = world();
            w.request(method, path, "application/jwt", "x");
            w.host
                .headers
                .insert("authorization".into(), "Bearer t".into());
            w.host.repeated.push(name.into());
            assert_eq!(
                w.engine.on_request_headers(&mut w.host, 1, false),
                Flow::Pause
            );
            assert_eq!(
                w.rejected(),
                Some((400, "invalid_request".into())),
                "{name} {method}"
            );
        }
        // Not the filter's business elsewhere.
        let mut w = world();
        w.request("POST", "/other", "text/plain", "x");
        w.host.repeated.push(name.into());
        assert_eq!(
            w.engine.on_request_headers(&mut w.host, 1, false),
            Flow::Continue
        );
    }
}

#[test]
fn a_coded_body_is_refused_and_json_forwarding_drops_what_described_the_old_body() {
    for coding in ["gzip", "deflate", "br", "identity,gzip", "x-unknown", ""] {
        let mut w = world();
        let body = w.tpp.request();
        w.request("POST", "/register", "application/jwt", &body);
        w.host
            .headers
            .insert("content-encoding".into(), coding.into());
        assert_eq!(
            w.engine.on_request_headers(&mut w.host, 1, false),
            Flow::Pause
        );
        // 415 with what the filter accepts (RFC 7694 §3).
        assert_eq!(
            w.rejected(),
            Some((415, "invalid_request".into())),
            "{coding}"
        );
        assert!(
            w.host.responses[0]
                .1
                .contains(&("accept-encoding".into(), "identity".into())),
            "{coding}: {:?}",
            w.host.responses[0].1
        );
    }
    // `identity` is no coding at all.
    let mut w = world();
    let body = w.tpp.request();
    w.request("POST", "/register", "application/jwt", &body);
    w.host
        .headers
        .insert("content-encoding".into(), "Identity".into());
    assert_eq!(
        w.engine.on_request_headers(&mut w.host, 1, false),
        Flow::Pause
    );
    assert!(w.host.responses.is_empty());
    // JSON forwarding: the new body is described by nothing the client sent.
    let mut w = world_with(|v| v["forward"] = json!("json"));
    for h in ["content-md5", "digest", "content-digest", "repr-digest"] {
        w.host.headers.insert(h.into(), "sha-256=:AAAA:".into());
    }
    let body = w.tpp.request();
    w.post(&body);
    w.answer_callouts();
    assert!(w.host.responses.is_empty(), "{:?}", w.host.responses);
    assert_eq!(w.host.headers["content-type"], "application/json");
    for h in [
        "content-md5",
        "digest",
        "content-digest",
        "repr-digest",
        "content-encoding",
    ] {
        assert!(!w.host.headers.contains_key(h), "{h} forwarded");
    }
}

#[test]
fn a_later_fetch_failure_replaces_the_failure_record_on_envoy_and_on_kong() {
    // The record tells every worker why the last fetch failed (503 for a keystore that is down,
    // 400 for a document that is unusable). On Kong a write without a CAS token only creates: a
    // second failure must still replace the first one's record.
    use dcr_guard_core::keys::Fetched;
    use dcr_guard_core::shared::MemoryStore;
    // A failure: the keystore was down (503), or answered junk (404).
    const DOWN: bool = false;
    const JUNK: bool = true;
    let failed = |junk: bool| match junk {
        JUNK => Fetched::Unusable("answered HTTP 404".into()),
        DOWN => Fetched::Unavailable("answered HTTP 503".into()),
    };
    // (failures, in order) → (the last record says unusable?, why).
    let cases: [(&[bool], (bool, &str)); 4] = [
        (&[DOWN], (false, "answered HTTP 503")),
        (&[DOWN, JUNK], (true, "answered HTTP 404")),
        (&[JUNK, DOWN], (false, "answered HTTP 503")),
        (&[DOWN, JUNK, DOWN, JUNK], (true, "answered HTTP 404")),
    ];
    for store in [MemoryStore::envoy(), MemoryStore::kong()] {
        for (failures, (unusable, why)) in &cases {
            let semantics = store.semantics();
            let mut host = Fake {
                shared: Rc::new(std::cell::RefCell::new(store.clone())),
                ..Fake::default()
            };
            let mut worker = worker::Worker::with_policy(Default::default(), 1);
            for junk in failures.iter() {
                worker.record_failure(&mut host, DIRECTORY_JWKS_URL, &failed(*junk));
            }
            let got = worker.last_failure(&mut host, DIRECTORY_JWKS_URL);
            let ok = match (&got, unusable) {
                (Fetched::Unusable(w), true) | (Fetched::Unavailable(w), false) => w == why,
                _ => false,
            };
            assert!(
                ok,
                "{semantics:?} after {} failures: {got:?}",
                failures.len()
            );
        }
    }
}

/// A world whose replay store is the fleet's etcd (`replay.store: etcd`).
fn fleet_world() -> World {
    world_with(|v| {
        v["replay"] = json!({"store": "etcd", "etcd": {"upstream": "etcd", "timeout_ms": 300}});
    })
}

impl World {
    /// Deliver a gRPC answer to the latest gRPC call.
    fn answer_grpc(&mut self, status: Option<u32>, message: &str, body: &[u8]) {
        let token = self.host.grpc_calls.last().unwrap().0;
        self.answer_grpc_token(token, status, message, body);
    }

    /// Deliver a gRPC answer to the call `token`.
    fn answer_grpc_token(&mut self, token: u32, status: Option<u32>, message: &str, body: &[u8]) {
        self.host.grpc_current = Some((message.to_string(), body.to_vec()));
        self.engine
            .on_grpc_call_response(&mut self.host, token, status, body.len());
        self.pump();
    }
}

/// etcd's TxnResponse{succeeded: true}.
const TXN_RECORDED: &[u8] = &[0x10, 0x01];
/// etcd's TxnResponse{succeeded: false, responses: [range{count: 1}]}.
const TXN_SEEN: &[u8] = &[0x1a, 0x04, 0x0a, 0x02, 0x20, 0x01];

#[test]
fn with_the_fleet_store_etcd_decides_and_the_worker_remembers() {
    let mut w = fleet_world();
    let body = w.tpp.request();
    w.post(&body);
    w.answer_callouts();
    // Every check passed: held while one Txn goes to the etcd cluster.
    assert_eq!(w.host.resumed, 0);
    assert_eq!(w.host.grpc_calls.len(), 1);
    let (_, target, service, method, _) = &w.host.grpc_calls[0];
    assert_eq!(
        (service.as_str(), method.as_str()),
        ("etcdserverpb.KV", "Txn")
    );
    assert!(target.contains("etcd"), "{target:?}");
    w.answer_grpc(Some(0), "", TXN_RECORDED);
    assert_eq!(w.host.resumed, 1);
    assert!(w.host.responses.is_empty());
    // The same registration again on this worker: refused from its own memory, no call.
    w.engine.remove(1);
    w.post(&body);
    w.answer_callouts();
    assert_eq!(w.rejected(), Some((400, "invalid_client_metadata".into())));
    assert_eq!(w.host.grpc_calls.len(), 1);
}

#[test]
fn with_the_fleet_store_a_pair_seen_elsewhere_is_a_replay() {
    let mut w = fleet_world();
    let body = w.tpp.request();
    w.post(&body);
    w.answer_callouts();
    w.answer_grpc(Some(0), "", TXN_SEEN);
    assert_eq!(w.rejected(), Some((400, "invalid_client_metadata".into())));
    assert_eq!(w.host.resumed, 0);
    assert_eq!(
        w.host.counters.get("dcr_guard.failed.request_jti"),
        Some(&1)
    );
}

#[test]
fn with_the_fleet_store_a_missing_lease_is_granted_then_the_txn_sent_again() {
    let mut w = fleet_world();
    w.post(&w.tpp.request());
    w.answer_callouts();
    w.answer_grpc(Some(5), "etcdserver: requested lease not found", &[]);
    assert_eq!(w.host.grpc_calls.len(), 2);
    assert_eq!(w.host.grpc_calls[1].3, "LeaseGrant");
    w.answer_grpc(Some(0), "", &[]);
    assert_eq!(w.host.grpc_calls.len(), 3);
    assert_eq!(w.host.grpc_calls[2].3, "Txn");
    assert_eq!(w.host.grpc_calls[2].4, w.host.grpc_calls[0].4);
    w.answer_grpc(Some(0), "", TXN_RECORDED);
    assert_eq!(w.host.resumed, 1);
}

#[test]
fn with_the_fleet_store_every_fault_is_a_503_and_nothing_goes_upstream() {
    // (what goes wrong, the gRPC status, its message)
    let cases: [(&str, Option<u32>, &str); 4] = [
        ("no leader", Some(14), "etcdserver: no leader"),
        ("deadline", Some(4), ""),
        ("no answer", None, ""),
        ("junk", Some(0), "\u{1}"),
    ];
    for (name, status, message) in cases {
        let mut w = fleet_world();
        w.post(&w.tpp.request());
        w.answer_callouts();
        let body: &[u8] = if name == "junk" { &[0xff, 0xff] } else { &[] };
        w.answer_grpc(status, message, body);
        assert_eq!(
            w.rejected(),
            Some((503, "temporarily_unavailable".into())),
            "{name}"
        );
        assert_eq!(w.host.resumed, 0, "{name}");
        let retry = w.host.responses[0]
            .1
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("retry-after"));
        assert!(retry, "{name}");
    }
    // A call the host refuses to start.
    let mut w = fleet_world();
    w.host.grpc_refused = Some("BadArgument".into());
    w.post(&w.tpp.request());
    w.answer_callouts();
    assert_eq!(w.rejected(), Some((503, "temporarily_unavailable".into())));
    assert_eq!(w.host.resumed, 0);
}

#[test]
fn log_lines_carry_the_request_id_and_traceparent_escaped() {
    let mut w = world();
    let body = w.tpp.request_with(|c| c["exp"] = json!(1));
    w.host
        .headers
        .insert("x-request-id".into(), "4f1c0e3a-\nforged=\"1\"".into());
    w.host.headers.insert(
        "traceparent".into(),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
    );
    w.post(&body);
    w.answer_callouts();
    assert_eq!(w.rejected(), Some((400, "invalid_client_metadata".into())));
    let logs = w.host.logs.borrow();
    let line = logs.iter().find(|l| l.contains("rejected")).unwrap();
    assert!(
        line.contains(r#" request_id="4f1c0e3a-\nforged=\"1\"""#),
        "{line}"
    );
    assert!(
        line.contains(r#" traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01""#),
        "{line}"
    );
    assert!(!line.contains('\n'), "{line}");
    // Without them, nothing is added.
    let mut w = world();
    let body = w.tpp.request_with(|c| c["exp"] = json!(1));
    w.post(&body);
    w.answer_callouts();
    let logs = w.host.logs.borrow();
    let line = logs.iter().find(|l| l.contains("rejected")).unwrap();
    assert!(
        !line.contains("request_id") && !line.contains("traceparent"),
        "{line}"
    );
}

#[test]
fn grpc_and_http_tokens_are_routed_apart_even_when_equal() {
    // Envoy numbers gRPC calls and HTTP callouts separately: the same token can be in flight as
    // both at once. Stream 1 waits on etcd (gRPC token 1) while stream 2 waits on a JWKS fetch
    // that the host also numbers 1: each answer must reach its own stream.
    let mut w = fleet_world();
    let body = w.tpp.request();
    w.post(&body);
    w.answer_callouts();
    assert_eq!(w.host.grpc_calls.len(), 1);
    let grpc_token = w.host.grpc_calls[0].0;

    // A second TPP of the same directory: its software JWKS is not cached yet.
    let mut other = Tpp::new(TestKey::ec("unused"), TestKey::ec("tpp-2"));
    other.software_id = "Zq9OtherSoftware00001".to_string();
    w.host.keystore.insert(
        other.jwks_url(),
        (Some(200), other.software_jwks().to_string().into_bytes()),
    );
    let ssa = w.tpp.directory.sign_default(&other.ssa_claims());
    let body2 = other.key.sign_default(&other.request_claims(&ssa));
    w.host.next_token = grpc_token - 1; // the host's next HTTP token equals the gRPC one
    w.request("POST", "/register", "application/jwt", &body2);
    assert_eq!(
        w.engine.on_request_headers(&mut w.host, 2, false),
        Flow::Pause
    );
    let len = w.host.body.len();
    assert_eq!(
        w.engine.on_request_body(&mut w.host, 2, len, true),
        Flow::Pause
    );
    let (http_token, src) = w.host.dispatched.last().cloned().unwrap();
    assert_eq!(src.url, other.jwks_url());
    assert_eq!(http_token, grpc_token);

    // etcd answers stream 1: it goes on.
    w.answer_grpc(Some(0), "", TXN_RECORDED);
    assert_eq!(w.host.resumed, 1);
    // The keystore answers stream 2: it reaches etcd in turn, and goes on.
    let reply = w.host.keystore[&src.url].clone();
    let size = reply.1.len();
    w.host.current = Some(reply);
    w.engine.on_call_response(&mut w.host, http_token, size);
    w.pump();
    assert_eq!(w.host.grpc_calls.len(), 2, "stream 2 lost its JWKS answer");
    w.answer_grpc(Some(0), "", TXN_RECORDED);
    assert_eq!(w.host.resumed, 2);
    assert!(w.host.responses.is_empty(), "{:?}", w.host.responses);
}

#[test]
fn every_verdict_records_its_validation_time_once() {
    let mut w = world();
    // Refused, then (another world) forwarded; a request that is not a registration records none.
    let body = w.tpp.request_with(|c| c["exp"] = json!(1));
    w.post(&body);
    w.answer_callouts();
    assert!(w.rejected().is_some());
    assert_eq!(w.host.histograms["dcr_guard.validation_ms"].len(), 1);
    let mut w = world();
    let body = w.tpp.request();
    w.post(&body);
    w.answer_callouts();
    assert_eq!(w.host.resumed, 1);
    assert_eq!(w.host.histograms["dcr_guard.validation_ms"].len(), 1);
    w.request("GET", "/accounts", "", "");
    w.engine.on_request_headers(&mut w.host, 7, true);
    assert_eq!(w.host.histograms["dcr_guard.validation_ms"].len(), 1);
}

impl World {
    /// Send a registration on stream `ctx` (headers and whole body).
    fn post_as(&mut self, ctx: u32, body: &str) {
        self.request("POST", "/register", "application/jwt", body);
        self.engine.on_request_headers(&mut self.host, ctx, false);
        let len = self.host.body.len();
        self.engine.on_request_body(&mut self.host, ctx, len, true);
        self.pump();
    }
}

/// How many nested Txns an outer TxnRequest holds (every top-level field must be a success op,
/// field 2, holding exactly a request_txn, field 4).
fn nested_txns(outer: &[u8]) -> usize {
    fn varint(b: &mut &[u8]) -> usize {
        let mut v = 0usize;
        for shift in (0..).step_by(7) {
            let (first, rest) = b.split_first().unwrap();
            *b = rest;
            v |= usize::from(first & 0x7f) << shift;
            if first & 0x80 == 0 {
                break;
            }
        }
        v
    }
    let mut rest = outer;
    let mut n = 0;
    while !rest.is_empty() {
        assert_eq!(varint(&mut rest), 0x12, "not a success op");
        let len = varint(&mut rest);
        let (mut op, after) = rest.split_at(len);
        assert_eq!(varint(&mut op), 0x22, "not a nested Txn");
        assert_eq!(varint(&mut op), op.len());
        n += 1;
        rest = after;
    }
    n
}

/// A batch's TxnResponse: one nested TxnResponse per member (`true`: recorded, `false`: seen).
fn batch_answer(members: &[bool]) -> Vec<u8> {
    let mut out = vec![0x10, 0x01]; // succeeded
    for recorded in members {
        let inner: &[u8] = if *recorded { TXN_RECORDED } else { TXN_SEEN };
        let mut op = vec![0x22, inner.len() as u8]; // response_txn (4)
        op.extend_from_slice(inner);
        out.push(0x1a); // responses (3)
        out.push(op.len() as u8);
        out.extend_from_slice(&op);
    }
    out
}

#[test]
fn fleet_calls_that_queue_behind_one_in_flight_go_out_as_one_batch_from_the_root() {
    let mut w = fleet_world();
    let first = w.tpp.request();
    w.post_as(1, &first);
    w.answer_callouts();
    assert_eq!(w.host.grpc_calls.len(), 1);
    // Sent by the root context, so that no one request's end can take the answer with it.
    assert_eq!(w.host.grpc_from[0], (ROOT, "Txn".to_string()));
    // Two more registrations reach the store while the first Txn is on its way: they wait.
    let (second, third) = (w.tpp.request(), w.tpp.request());
    w.post_as(2, &second);
    w.post_as(3, &third);
    assert_eq!(w.host.grpc_calls.len(), 1);
    w.answer_grpc(Some(0), "", TXN_RECORDED);
    assert_eq!(w.host.resumed, 1);
    // ...and go out together when it lands: one call, two nested Txns.
    assert_eq!(w.host.grpc_calls.len(), 2);
    assert_eq!(w.host.grpc_from[1], (ROOT, "Txn".to_string()));
    let outer = &w.host.grpc_calls[1].4;
    assert_eq!(nested_txns(outer), 2);
    // Each learns its own outcome: the second recorded, the third seen elsewhere.
    w.answer_grpc(Some(0), "", &batch_answer(&[true, false]));
    assert_eq!(w.host.resumed, 2);
    assert_eq!(w.rejected(), Some((400, "invalid_client_metadata".into())));
    assert_eq!(w.host.responses.len(), 1);
    assert_eq!(w.engine.worker.fleet.waiting(), 0);
    assert!(w.engine.worker.grpc.is_empty());
}

#[test]
fn a_member_that_hangs_up_does_not_cost_the_others_their_answer() {
    let mut w = fleet_world();
    w.post_as(1, &w.tpp.request());
    w.answer_callouts();
    w.post_as(2, &w.tpp.request());
    w.post_as(3, &w.tpp.request());
    w.post_as(4, &w.tpp.request());
    // Stream 4's client hangs up while it waits in the queue, stream 2's while in the batch.
    w.engine.remove(4);
    w.answer_grpc(Some(0), "", TXN_RECORDED);
    assert_eq!(w.host.grpc_calls.len(), 2);
    w.engine.remove(2);
    w.answer_grpc(Some(0), "", &batch_answer(&[true, true]));
    assert_eq!(w.host.resumed, 2, "streams 1 and 3 go on");
    assert!(w.host.responses.is_empty(), "{:?}", w.host.responses);
    assert!(w.engine.worker.grpc.is_empty());
    // A batch whose answer cannot be read fails every member closed.
    w.post_as(5, &w.tpp.request());
    w.answer_grpc(Some(0), "", TXN_RECORDED);
    w.post_as(6, &w.tpp.request());
    w.post_as(7, &w.tpp.request());
    w.post_as(8, &w.tpp.request());
    w.answer_grpc(Some(0), "", TXN_RECORDED);
    w.answer_grpc(Some(0), "", &batch_answer(&[true]));
    assert_eq!(w.host.responses.len(), 2);
    for (status, _, body) in &w.host.responses {
        assert_eq!(
            (*status, body["error"].as_str()),
            (503, Some("temporarily_unavailable"))
        );
    }
}

#[test]
fn a_missing_lease_in_a_batch_is_granted_and_each_member_sent_again() {
    let mut w = fleet_world();
    w.post_as(1, &w.tpp.request());
    w.answer_callouts();
    w.post_as(2, &w.tpp.request());
    w.post_as(3, &w.tpp.request());
    w.answer_grpc(Some(0), "", TXN_RECORDED);
    // The batch fails as a whole: every member grants (the same lease) and sends its Txn again.
    w.answer_grpc(Some(5), "etcdserver: requested lease not found", &[]);
    let methods: Vec<&str> = w.host.grpc_calls[2..]
        .iter()
        .map(|c| c.3.as_str())
        .collect();
    assert_eq!(methods, ["LeaseGrant", "LeaseGrant"]);
    let grants: Vec<u32> = w.host.grpc_calls[2..].iter().map(|c| c.0).collect();
    w.answer_grpc_token(grants[0], Some(0), "", &[]);
    w.answer_grpc_token(grants[1], Some(9), "etcdserver: lease already exists", &[]);
    // Each Txn again: the first goes as soon as its grant lands, the second waits behind it.
    assert_eq!(w.host.grpc_calls.len(), 5);
    assert_eq!(w.host.grpc_calls[4].3, "Txn");
    w.answer_grpc(Some(0), "", TXN_RECORDED);
    assert_eq!(w.host.grpc_calls.len(), 6);
    w.answer_grpc(Some(0), "", TXN_RECORDED);
    assert_eq!(w.host.resumed, 3);
    assert!(w.host.responses.is_empty(), "{:?}", w.host.responses);
}

#[test]
fn without_a_queue_each_stream_sends_its_own_fleet_call() {
    for refused in [false, true] {
        let mut w = fleet_world();
        if refused {
            w.host.enqueue_refused = true;
        } else {
            w.host.queues = false;
            w.engine = Engine::new(Rc::clone(w.engine.config()), 1);
            w.engine.attach_root(&mut w.host, ROOT, 1);
        }
        w.host.effective = 1;
        w.post_as(1, &w.tpp.request());
        w.answer_callouts();
        w.host.effective = 2;
        w.post_as(2, &w.tpp.request());
        assert_eq!(w.host.grpc_calls.len(), 2, "refused={refused}");
        assert_ne!(w.host.grpc_from[0].0, ROOT);
        assert_ne!(w.host.grpc_from[1].0, ROOT);
        let tokens: Vec<u32> = w.host.grpc_calls.iter().map(|c| c.0).collect();
        w.answer_grpc_token(tokens[1], Some(0), "", TXN_RECORDED);
        w.answer_grpc_token(tokens[0], Some(0), "", TXN_SEEN);
        assert_eq!(w.host.resumed, 1, "refused={refused}");
        assert_eq!(w.rejected(), Some((400, "invalid_client_metadata".into())));
    }
}

#[test]
fn a_batched_call_the_host_never_answers_is_given_up_on_the_tick() {
    let mut w = fleet_world();
    w.host.frozen = Some(now() as i64);
    w.post_as(1, &w.tpp.request());
    w.answer_callouts();
    w.post_as(2, &w.tpp.request());
    // Within the deadline and its margin: still waiting.
    w.host.clock = 1;
    w.engine.on_tick(&mut w.host, ROOT);
    assert!(w.host.responses.is_empty());
    assert_eq!(w.host.grpc_calls.len(), 1);
    // Past it: stream 1 fails closed and the queue moves on (stream 2's call goes out).
    w.host.clock = 4;
    w.engine.on_tick(&mut w.host, ROOT);
    assert_eq!(w.rejected(), Some((503, "temporarily_unavailable".into())));
    assert_eq!(w.host.grpc_calls.len(), 2);
    assert_eq!(w.host.grpc_from[1].0, ROOT);
    w.answer_grpc(Some(0), "", TXN_RECORDED);
    assert_eq!(w.host.resumed, 1);
}

/// A directory whose keys are pinned in the configuration (`directories[].jwks[].inline`, an
/// air-gapped deployment or an incident): its SSAs verify without any directory fetch, only the
/// software JWKS the verified SSA names is fetched, and nothing of the pinned document is leased,
/// cached or refreshed in shared data.
#[test]
fn a_pinned_directory_jwks_is_used_without_a_fetch() {
    let tpp = Tpp::new(TestKey::ec("dir-1"), TestKey::ec("tpp-1"));
    let pinned = tpp.directory_jwks();
    let mut w = world_with(move |v| {
        v["directories"][0]["jwks"] = json!([{"inline": pinned}]);
    });
    w.tpp = tpp;
    w.host.keystore.insert(
        w.tpp.jwks_url(),
        (Some(200), w.tpp.software_jwks().to_string().into_bytes()),
    );
    let cfg = Rc::clone(w.engine.config());
    w.engine.worker.precreate(&mut w.host, &cfg);
    assert_eq!(
        w.host.shared.borrow().len(),
        0,
        "a lease for a pinned document"
    );
    let body = w.tpp.request();
    assert_eq!(w.post(&body), (Flow::Pause, Flow::Pause));
    assert_eq!(dispatched_urls(&w), vec![w.tpp.jwks_url()]);
    w.answer_callouts();
    assert!(w.host.responses.is_empty(), "{:?}", w.host.responses);
    assert_eq!(w.host.resumed, 1);
    // Background refresh: nothing to fetch for a pinned document.
    w.host.dispatched.clear();
    w.host.clock += 100_000;
    w.engine.on_tick(&mut w.host, 0);
    assert_eq!(dispatched_urls(&w), Vec::<String>::new());

    // A directory key that is not pinned (and no URL to fetch it from): refused, still no fetch.
    let other = Tpp::new(TestKey::ec("dir-2"), TestKey::ec("tpp-1"));
    let mut w2 = world_with(|v| {
        v["directories"][0]["jwks"] = json!([{"inline": other.directory_jwks()}]);
    });
    w2.host.dispatched.clear();
    let body = w2.tpp.request();
    w2.post(&body);
    assert_eq!(dispatched_urls(&w2), Vec::<String>::new());
    assert_eq!(
        w2.rejected(),
        Some((400, "invalid_software_statement".into()))
    );
}

#[test]
fn every_jwks_fetch_records_its_latency_once() {
    let mut w = world();
    w.host.frozen = Some(now() as i64);
    let body = w.tpp.request();
    w.post(&body);
    // The directory answers 2 s after its dispatch; the software JWKS (dispatched then) at once.
    w.host.clock += 2;
    w.answer_callouts();
    assert_eq!(w.host.resumed, 1);
    assert_eq!(w.host.histograms["dcr_guard.jwks_fetch_ms"], vec![2000, 0]);
    assert!(w.engine.worker.fetch_started.is_empty());
    // A background refresh (the root context's) is a fetch too, and so is an answer that fails.
    let mut w = world();
    w.host.frozen = Some(now() as i64);
    w.host.keystore.get_mut(DIRECTORY_JWKS_URL).unwrap().0 = Some(503);
    w.engine.on_tick(&mut w.host, 0);
    w.host.clock += 1;
    w.answer_callouts();
    assert_eq!(w.host.histograms["dcr_guard.jwks_fetch_ms"], vec![1000]);
    // A stream that goes away with its fetch in flight leaves nothing behind; a callout that
    // could not start records nothing.
    let mut w = world();
    w.host.keystore.remove(&w.tpp.jwks_url());
    let body = w.tpp.request();
    w.post(&body);
    assert_eq!(w.engine.worker.fetch_started.len(), 1);
    w.engine.remove(1);
    assert!(w.engine.worker.fetch_started.is_empty());
    assert!(!w.host.histograms.contains_key("dcr_guard.jwks_fetch_ms"));
}

#[test]
fn the_tick_sets_the_jwks_age_and_replay_fill_gauges() {
    // One bucket of 4: the registration's pair (its request's `jti`) fills a quarter of it.
    let mut w = world_with(|v| {
        v["replay"] = json!({"buckets": 1, "entries_per_bucket": 4, "issuer_share_percent": 100})
    });
    let t0 = now() as i64;
    w.host.frozen = Some(t0);
    // Nothing cached, nothing recorded: no age yet, an empty store.
    w.engine.on_tick(&mut w.host, 0);
    assert!(!w.host.gauges.contains_key("dcr_guard.jwks_age_seconds.0"));
    assert_eq!(w.host.gauges["dcr_guard.replay_entries"], 0);
    assert_eq!(w.host.gauges["dcr_guard.replay_fullest_bucket_percent"], 0);
    w.answer_callouts();
    let body = w.tpp.request();
    w.post(&body);
    w.answer_callouts();
    assert_eq!(w.host.resumed, 1);
    // 7 s later the directory's document (fetched at t0) is 7 s old; the registration's pair is
    // live in the store.
    w.host.clock = 7;
    w.engine.on_tick(&mut w.host, 0);
    assert_eq!(w.host.gauges["dcr_guard.jwks_age_seconds.0"], 7);
    assert_eq!(w.host.gauges["dcr_guard.replay_entries"], 1);
    assert_eq!(w.host.gauges["dcr_guard.replay_fullest_bucket_percent"], 25);
    // The age moves on every tick (a second apart); the fill is read every few seconds.
    w.host.clock = 8;
    w.engine.on_tick(&mut w.host, 0);
    assert_eq!(w.host.gauges["dcr_guard.jwks_age_seconds.0"], 8);
}

#[test]
fn a_body_the_host_keeps_from_held_headers_is_counted_and_logged_once() {
    const FLAG: &str = "allow_on_headers_stop_iteration: true";
    // (hold_headers, bytes when the headers came → on the tick, seconds waited, a held body was
    // delivered before on this worker) → counted
    let cases = [
        (true, Some(300), Some(800), 2, false, true),
        (true, Some(300), Some(800), 0, false, false),
        (true, Some(300), Some(300), 2, false, false),
        (true, None, None, 2, false, false),
        (false, Some(300), Some(800), 2, false, false),
        (true, Some(300), Some(800), 2, true, false),
    ];
    for (hold, then, later, waited, delivered, counted) in cases {
        let case = format!("{hold} {then:?}→{later:?} {waited}s delivered={delivered}");
        let mut w = world_with(|v| v["hold_headers"] = json!(hold));
        w.host.frozen = Some(now() as i64);
        if delivered {
            let body = w.tpp.request();
            w.post(&body);
            w.engine.remove(1);
        }
        let body = w.tpp.request();
        w.request("POST", "/register", "application/jwt", &body);
        w.host.request_bytes = then;
        w.engine.on_request_headers(&mut w.host, 2, false);
        w.host.request_bytes = later;
        w.host.clock += waited;
        w.engine.on_tick(&mut w.host, 0);
        w.engine.on_tick(&mut w.host, 0);
        let n = w.host.counters.get("dcr_guard.body_not_delivered").copied();
        assert_eq!(n, counted.then_some(1), "{case}");
        let logs = w
            .host
            .logs
            .borrow()
            .iter()
            .filter(|l| l.contains(FLAG))
            .count();
        assert_eq!(logs, usize::from(counted), "{case}");
    }
    // Every such request is counted; the log line is written once per worker.
    let mut w = world();
    w.host.frozen = Some(now() as i64);
    for ctx in [1, 2] {
        let body = w.tpp.request();
        w.request("POST", "/register", "application/jwt", &body);
        w.host.request_bytes = Some(300);
        w.engine.on_request_headers(&mut w.host, ctx, false);
    }
    w.host.request_bytes = Some(900);
    w.host.clock += 2;
    w.engine.on_tick(&mut w.host, 0);
    assert_eq!(w.host.counters["dcr_guard.body_not_delivered"], 2);
    assert_eq!(
        w.host
            .logs
            .borrow()
            .iter()
            .filter(|l| l.contains(FLAG))
            .count(),
        1
    );
}

// ---- Live participant status (rules.participant_status) ----

const STATUS_URL: &str = "https://register.example/cdr-register/v1/all/software-products/status";

/// A world whose registrations are checked against a software-product status document at
/// [`STATUS_URL`] (served by the fake keystore: `doc`).
fn status_world(doc: Value, edit: impl FnOnce(&mut Value)) -> World {
    let mut w = world_with(|v| {
        let mut source = json!({
            "name": "software product", "url": STATUS_URL, "upstream": "register",
            "headers": {"x-v": "3"}, "refresh_seconds": 10, "max_staleness_seconds": 60,
            "array": "data", "id_member": "softwareProductId", "status_member": "status",
            "ssa_claim": "software_id", "allowed": ["ACTIVE"]
        });
        edit(&mut source);
        v["rules"]["participant_status"] = json!({"sources": [source]});
    });
    w.host.frozen = Some(now() as i64);
    let id = w.software_id();
    let doc = doc.to_string().replace("{id}", &id);
    serve_status(&mut w, Some(200), doc.into_bytes());
    w
}

fn serve_status(w: &mut World, code: Option<u16>, body: Vec<u8>) {
    w.host.keystore.insert(STATUS_URL.into(), (code, body));
}

fn products(entries: &[(&str, &str)]) -> Value {
    let data: Vec<Value> = entries
        .iter()
        .map(|(id, s)| json!({"softwareProductId": id, "status": s}))
        .collect();
    json!({"data": data, "links": {"self": STATUS_URL}, "meta": {}})
}

impl World {
    fn software_id(&self) -> String {
        self.tpp.ssa_claims()["software_id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Answer the status fetches not answered yet, in order.
    fn answer_status(&mut self) {
        while let Some((token, src)) = self.host.status_calls.first().cloned() {
            self.host.status_calls.remove(0);
            let reply = self.host.keystore[&src.url].clone();
            let size = reply.1.len();
            self.host.current = Some(reply);
            self.engine.on_call_response(&mut self.host, token, size);
        }
    }

    /// POST a fresh registration and answer every fetch; the verdict.
    fn register(&mut self) -> Option<(u16, String)> {
        again(self);
        let body = self.tpp.request();
        self.post(&body);
        self.answer_callouts();
        self.answer_status();
        self.rejected()
    }

    fn described(&self) -> String {
        self.host.responses[0].2["error_description"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

#[test]
fn participant_status_policy_table() {
    // (document, the SSA's product listed as, verdict, words in the description)
    let cases: Vec<(Value, Option<(u16, &str, &str)>)> = vec![
        (products(&[("{id}", "ACTIVE")]), None),
        (products(&[("{id}", "active")]), None),
        (
            products(&[("{id}", "INACTIVE")]),
            Some((
                400,
                "unapproved_software_statement",
                "software product status is INACTIVE",
            )),
        ),
        (
            products(&[("{id}", "REMOVED")]),
            Some((
                400,
                "unapproved_software_statement",
                "software product status is REMOVED",
            )),
        ),
        // Parses but does not list it, or lists no one: unknown, not removed.
        (
            products(&[("someone-else", "ACTIVE")]),
            Some((503, "temporarily_unavailable", "is not listed")),
        ),
        (
            products(&[]),
            Some((503, "temporarily_unavailable", "is not listed")),
        ),
        // Never a good document: fail closed.
        (
            json!({"data": "nope"}),
            Some((503, "temporarily_unavailable", "cannot be checked now")),
        ),
    ];
    for (doc, want) in cases {
        let mut w = status_world(doc.clone(), |_| {});
        let got = w.register();
        match want {
            None => {
                assert_eq!(got, None, "{doc}: {:?}", w.host.responses);
                assert_eq!(w.host.resumed, 1, "{doc}");
                assert_eq!(w.host.counters.get("dcr_guard.accepted"), Some(&1));
            }
            Some((status, code, words)) => {
                assert_eq!(got, Some((status, code.to_string())), "{doc}");
                assert!(w.described().contains(words), "{doc}: {}", w.described());
                assert_eq!(w.host.resumed, 0, "{doc}");
                assert_eq!(
                    w.host.counters.get("dcr_guard.failed.participant_status"),
                    Some(&1),
                    "{doc}"
                );
                let retry = w.host.responses[0]
                    .1
                    .iter()
                    .any(|(k, _)| k == "retry-after");
                assert_eq!(retry, status == 503, "{doc}");
            }
        }
        // The document was fetched once, with the configured header, through its upstream.
        assert_eq!(w.host.counters.get("dcr_guard.status_fetches"), Some(&1));
    }
}

#[test]
fn the_status_fetch_names_its_upstream_and_headers_and_is_shared() {
    let mut w = status_world(products(&[("{id}", "ACTIVE")]), |_| {});
    again(&mut w);
    let body = w.tpp.request();
    w.post(&body);
    w.answer_callouts();
    // The status document is asked for only once every other check passed.
    let (_, src) = w.host.status_calls[0].clone();
    assert_eq!(
        (
            src.upstream.as_str(),
            src.authority.as_str(),
            src.path.as_str()
        ),
        (
            "register",
            "register.example",
            "/cdr-register/v1/all/software-products/status"
        )
    );
    assert_eq!(src.headers, vec![("x-v".to_string(), "3".to_string())]);
    w.answer_status();
    assert_eq!(w.host.resumed, 1);
    // The next registration, on another worker: from the shared cache, no fetch.
    let cfg = Rc::clone(w.engine.config());
    let mut other = Engine::new(cfg, 2);
    again(&mut w);
    let body = w.tpp.request();
    w.host.body = body.as_bytes().to_vec();
    other.on_request_headers(&mut w.host, 9, false);
    assert_eq!(
        other.on_request_body(&mut w.host, 9, body.len(), true),
        Flow::Continue
    );
    assert!(w.host.status_calls.is_empty());
    assert_eq!(w.host.counters.get("dcr_guard.status_fetches"), Some(&1));
}

#[test]
fn a_status_refusal_does_not_use_up_the_jti_and_management_is_never_blocked() {
    let mut w = status_world(products(&[("{id}", "REMOVED")]), |_| {});
    let id = w.software_id();
    again(&mut w);
    let body = w.tpp.request();
    w.post(&body);
    w.answer_callouts();
    w.answer_status();
    assert_eq!(
        w.rejected(),
        Some((400, "unapproved_software_statement".into()))
    );
    // Reinstated (another document generation): the same request is not a replay.
    w.host.clock += 11;
    serve_status(
        &mut w,
        Some(200),
        products(&[(&id, "ACTIVE")]).to_string().into_bytes(),
    );
    again(&mut w);
    w.post(&body);
    w.answer_callouts();
    w.answer_status();
    assert_eq!(w.rejected(), None, "{:?}", w.host.responses);
    // A removed product still reads and deletes its registration: no status fetch at all.
    let mut w = status_world(products(&[(&id, "REMOVED")]), |_| {});
    for method in ["GET", "DELETE"] {
        again(&mut w);
        w.request(method, "/register/client-1", "", "");
        w.host
            .headers
            .insert("authorization".into(), "Bearer opaque.token-1".into());
        assert_eq!(
            w.engine.on_request_headers(&mut w.host, 1, true),
            Flow::Continue,
            "{method}"
        );
        assert!(w.host.responses.is_empty() && w.host.status_calls.is_empty());
    }
}

#[test]
fn status_cache_transitions() {
    let mut w = status_world(products(&[("{id}", "ACTIVE")]), |_| {});
    let id = w.software_id();
    let good = products(&[(&id, "ACTIVE")]).to_string().into_bytes();
    assert_eq!(w.register(), None);
    // Due (refresh 60 s), the register answers garbage: the last good document is used.
    for (code, body) in [
        (Some(200), b"<html>oops</html>".to_vec()),
        (Some(500), good.clone()),
        (None, vec![]),
        (Some(200), vec![b' '; 2 * 1024 * 1024]),
    ] {
        w.host.clock += 11;
        serve_status(&mut w, code, body);
        assert_eq!(w.register(), None, "{code:?}: {:?}", w.host.responses);
    }
    assert!(w.host.counters["dcr_guard.status_fetch_failures"] >= 4);
    assert!(w.host.counters["dcr_guard.status_stale_serves"] >= 4);
    // The last good document was fetched at +0 and expired at +10; past +10+60 it is too stale.
    w.host.clock = 10 + 60 + 1;
    serve_status(&mut w, Some(503), vec![]);
    assert_eq!(w.register(), Some((503, "temporarily_unavailable".into())));
    assert!(
        w.described().contains("cannot be checked now"),
        "{}",
        w.described()
    );
    // A good document again: accepted; the verdict follows the new document.
    w.host.clock += 10;
    serve_status(
        &mut w,
        Some(200),
        products(&[(&id, "INACTIVE")]).to_string().into_bytes(),
    );
    assert_eq!(
        w.register(),
        Some((400, "unapproved_software_statement".into()))
    );
}

#[test]
fn a_status_source_never_fetched_fails_closed() {
    let mut w = status_world(products(&[("{id}", "ACTIVE")]), |_| {});
    // The upstream cannot be called at all.
    w.host.keystore.remove(STATUS_URL);
    assert_eq!(w.register(), Some((503, "temporarily_unavailable".into())));
    // Within the backoff: the recorded failure answers, no new fetch.
    let fetches = w.host.counters["dcr_guard.status_fetches"];
    assert_eq!(w.register(), Some((503, "temporarily_unavailable".into())));
    assert_eq!(w.host.counters["dcr_guard.status_fetches"], fetches);
    // Unknown allowed by configuration: still refused without any document.
    let mut w = status_world(products(&[]), |s| s["unknown"] = json!("allow"));
    serve_status(&mut w, Some(404), vec![]);
    assert_eq!(w.register(), Some((503, "temporarily_unavailable".into())));
    // …and allowed once a document that does not list it arrived.
    w.host.clock += 6;
    serve_status(&mut w, Some(200), products(&[]).to_string().into_bytes());
    assert_eq!(w.register(), None, "{:?}", w.host.responses);
}

#[test]
fn the_tick_refreshes_status_documents_in_the_background() {
    let mut w = status_world(products(&[("{id}", "ACTIVE")]), |_| {});
    let id = w.software_id();
    assert_eq!(w.host.counters.get("dcr_guard.status_fetches"), None);
    // The first tick fetches the document before any registration asked for it.
    w.engine.on_tick(&mut w.host, 0);
    w.answer_callouts();
    assert_eq!(w.host.status_calls.len(), 1);
    w.answer_status();
    assert_eq!(w.register(), None);
    assert!(w.host.status_calls.is_empty());
    // Not due yet: nothing; due: one fetch, whose new verdict the next registration sees
    // without fetching.
    w.host.clock += 5;
    w.engine.on_tick(&mut w.host, 0);
    w.answer_callouts();
    assert!(w.host.status_calls.is_empty());
    w.host.clock += 6;
    serve_status(
        &mut w,
        Some(200),
        products(&[(&id, "INACTIVE")]).to_string().into_bytes(),
    );
    w.engine.on_tick(&mut w.host, 0);
    w.answer_callouts();
    assert_eq!(w.host.status_calls.len(), 1);
    w.answer_status();
    let fetches = w.host.counters["dcr_guard.status_fetches"];
    assert_eq!(
        w.register(),
        Some((400, "unapproved_software_statement".into()))
    );
    assert_eq!(w.host.counters["dcr_guard.status_fetches"], fetches);
}

#[test]
fn a_worker_waits_for_the_status_fetch_of_another() {
    let mut w = status_world(products(&[("{id}", "INACTIVE")]), |_| {});
    let cfg = Rc::clone(w.engine.config());
    let mut other = Engine::new(cfg, 2);
    // Worker 1 reaches the status stage and fetches.
    again(&mut w);
    let body = w.tpp.request();
    w.post(&body);
    w.answer_callouts();
    assert_eq!(w.host.status_calls.len(), 1);
    // Worker 2 reaches it meanwhile: waits, fetches nothing.
    let body2 = w.tpp.request();
    w.host.body = body2.as_bytes().to_vec();
    other.on_request_headers(&mut w.host, 7, false);
    assert_eq!(
        other.on_request_body(&mut w.host, 7, body2.len(), true),
        Flow::Pause
    );
    assert_eq!(w.host.status_calls.len(), 1);
    // Worker 1's fetch lands; worker 2's tick wakes it with the same verdict.
    w.answer_status();
    assert_eq!(w.host.responses.len(), 1);
    other.on_tick(&mut w.host, 0);
    assert_eq!(w.host.responses.len(), 2, "worker 2 still waits");
    assert!(w.host.responses.iter().all(|(s, _, _)| *s == 400));
    assert_eq!(w.host.counters["dcr_guard.status_fetches"], 1);
}

/// Two filter configurations in one VM share its shared data: a document fetched with other
/// request headers (or through another upstream) is another document, never the same cache entry.
#[test]
fn status_documents_fetched_differently_are_cached_apart() {
    let mut w = status_world(products(&[("{id}", "ACTIVE")]), |_| {});
    assert_eq!(w.register(), None);
    assert_eq!(w.host.counters["dcr_guard.status_fetches"], 1);
    // The same URL asked for at another version: its own fetch, not the first one's document.
    let v1 = status_world(products(&[]), |s| s["headers"]["x-v"] = json!("1"));
    let mut other = Engine::new(Rc::clone(v1.engine.config()), 2);
    again(&mut w);
    let body = w.tpp.request();
    w.host.body = body.as_bytes().to_vec();
    other.on_request_headers(&mut w.host, 7, false);
    assert_eq!(
        other.on_request_body(&mut w.host, 7, body.len(), true),
        Flow::Pause
    );
    assert_eq!(
        w.host.status_calls.len(),
        1,
        "the x-v 1 document is fetched"
    );
    // The same configuration again does reuse the first document.
    let same = status_world(products(&[]), |_| {});
    let mut third = Engine::new(Rc::clone(same.engine.config()), 3);
    again(&mut w);
    let body = w.tpp.request();
    w.host.body = body.as_bytes().to_vec();
    third.on_request_headers(&mut w.host, 9, false);
    third.on_request_body(&mut w.host, 9, body.len(), true);
    assert_eq!(
        w.host.status_calls.len(),
        1,
        "no second fetch of the x-v 3 document"
    );
}

#[test]
fn a_current_status_document_is_not_read_from_shared_data_again() {
    let mut w = status_world(products(&[("{id}", "ACTIVE")]), |_| {});
    let key = format!(
        "dcr_guard.status.v1.doc.{}",
        w.engine.config().rules.participant_status[0].cache_key
    );
    let reads = |w: &World| w.host.shared_reads.borrow().get(&key).copied().unwrap_or(0);
    assert_eq!(w.register(), None);
    let after_first = reads(&w);
    // Within the refresh period: this worker's parsed copy, no shared-data read (a status
    // document can be megabytes).
    w.host.clock += 9;
    assert_eq!(w.register(), None);
    assert_eq!(reads(&w), after_first);
    // Due: read (and fetched) again.
    w.host.clock += 2;
    assert_eq!(w.register(), None);
    assert!(reads(&w) > after_first);
}

#[test]
fn the_tick_does_not_copy_a_current_status_document_out_of_shared_data() {
    let mut w = status_world(products(&[("{id}", "ACTIVE")]), |_| {});
    let key = format!(
        "dcr_guard.status.v1.doc.{}",
        w.engine.config().rules.participant_status[0].cache_key
    );
    let reads = |w: &World| w.host.shared_reads.borrow().get(&key).copied().unwrap_or(0);
    assert_eq!(w.register(), None);
    // Nine ticks within the refresh period (one a second): no read of the document.
    let before = reads(&w);
    for _ in 0..9 {
        w.host.clock += 1;
        w.engine.on_tick(&mut w.host, 0);
    }
    assert_eq!(reads(&w), before);
    // Another worker, which never fetched it, reads it once and then keeps its parsed copy.
    let cfg = Rc::clone(w.engine.config());
    let mut other = Engine::new(cfg, 2);
    let before = reads(&w);
    for _ in 0..5 {
        other.on_tick(&mut w.host, 0);
    }
    assert_eq!(reads(&w), before + 1);
}

#[test]
fn an_empty_list_after_one_that_listed_entries_keeps_the_last_good_document() {
    // `unknown: allow` is where it matters: an empty answer would make a removed product
    // "unknown" and let it register.
    let allow = |s: &mut Value| s["unknown"] = json!("allow");
    let mut w = status_world(products(&[("{id}", "REMOVED")]), allow);
    assert_eq!(
        w.register(),
        Some((400, "unapproved_software_statement".into()))
    );
    w.host.clock += 11;
    serve_status(&mut w, Some(200), br#"{"data": []}"#.to_vec());
    w.engine.on_tick(&mut w.host, 0);
    w.answer_status();
    assert_eq!(w.host.counters["dcr_guard.status_fetch_failures"], 1);
    assert_eq!(
        w.register(),
        Some((400, "unapproved_software_statement".into())),
        "the empty list replaced the one that listed the product"
    );
    // A source that has never listed anyone may answer an empty list: that is a document.
    let mut w = status_world(json!({"data": []}), allow);
    assert_eq!(w.register(), None);
    w.host.clock += 11;
    w.engine.on_tick(&mut w.host, 0);
    w.answer_status();
    assert_eq!(w.host.counters.get("dcr_guard.status_fetch_failures"), None);
    assert_eq!(w.register(), None);
}

#[test]
fn a_lost_wake_up_is_made_good_on_the_next_tick() {
    let mut w = fleet_world();
    w.request("POST", "/register", "application/jwt", &w.tpp.request());
    w.engine.on_request_headers(&mut w.host, 1, false);
    let len = w.host.body.len();
    w.engine.on_request_body(&mut w.host, 1, len, true);
    w.answer_callouts_without_pump();
    // The root was asked to wake and never ran (the host lost it): nothing went out.
    assert_eq!(w.host.wakes, 1);
    w.host.wakes = 0;
    assert!(w.host.grpc_calls.is_empty());
    w.engine.on_tick(&mut w.host, ROOT);
    assert_eq!(w.host.grpc_calls.len(), 1);
    assert_eq!(w.host.grpc_from[0].0, ROOT);
    w.answer_grpc(Some(0), "", TXN_RECORDED);
    assert_eq!(w.host.resumed, 1);
}

impl World {
    /// [`World::answer_callouts`] without delivering the root's wake-ups.
    fn answer_callouts_without_pump(&mut self) {
        let mut answered = 0;
        while answered < self.host.dispatched.len() {
            let (token, src) = self.host.dispatched[answered].clone();
            answered += 1;
            let reply = self.host.keystore[&src.url].clone();
            let size = reply.1.len();
            self.host.current = Some(reply);
            self.engine.on_call_response(&mut self.host, token, size);
        }
    }
}

#[test]
fn a_status_fetch_whose_client_hung_up_is_finished_by_the_root_context() {
    let mut w = status_world(products(&[("{id}", "ACTIVE")]), |_| {});
    again(&mut w);
    let body = w.tpp.request();
    w.post(&body);
    w.answer_callouts();
    assert_eq!(w.host.status_calls.len(), 1);
    // The client hangs up before the document comes: the SDK drops that answer.
    w.host.status_calls.clear();
    w.engine.remove(1);
    // The next tick fetches it again under the same lease (no one waits the lease out).
    w.engine.on_tick(&mut w.host, 0);
    assert_eq!(w.host.status_calls.len(), 1);
    w.answer_status();
    assert_eq!(w.register(), None);
    assert_eq!(w.host.counters["dcr_guard.status_fetches"], 2);
}
