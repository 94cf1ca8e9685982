//! The whole create/management state machine (`filter::Engine`) over the fake host the stream
//! tests use, with fixed keys and configurations (`fixtures/pipeline.json`, written by
//! `examples/seeds.rs`): the seeds are real, validly signed registrations, so the fuzzer starts
//! on the accepting path and mutates from there.
//!
//! Input: one byte `n`, then `n` control bytes, then the request body. The control bytes are read
//! in order with `arbitrary::Unstructured` (missing bytes read as 0, so `[0] ++ body` is a plain
//! `POST /register` of `body` under the first configuration):
//! configuration, method, path, content type, authorization, body delivery, clock offset (i16,
//! seconds from the fixtures' mint time), content-length, flags (client certificate, forged
//! `x-dcr-guard-*` header, method-override header, replay of the same request on a second stream),
//! then one byte per callout answer (keystore document, timeout, 5xx, 404, empty, garbage, another
//! document), strings where a "raw" choice was made.
//!
//! Properties:
//! * the verdict is deterministic: the same input on a fresh engine and host gives the same
//!   replies, forwarded request, counters, filter state and callouts;
//! * at most one local reply; a reply is never combined with a forward; its status is one the
//!   filter documents and its body is JSON (or empty);
//! * nothing is forwarded as a registration unless every check passed: a forwarded create/update
//!   (outside report-only) carries the exact signing input of a fixture registration (no other
//!   body can carry a valid signature by our keys), within its validity window (with leeway); a
//!   forwarded `br-ofb` JSON body is a duplicate-free object carrying the fixture SSA; a forwarded
//!   management call carries a Bearer token (in `jwt` mode, the fixture access token, unexpired);
//! * a registration request ends with a verdict (a reply or a forward) once its callouts are
//!   answered;
//! * the same registration replayed on a second stream is not forwarded twice (request `jti`);
//! * counters agree with the outcome: a registration request counts `requests` once; a reply
//!   counts `rejected` once with exactly one `failed.*`; a forward counts `accepted` or
//!   `management_forwarded` once; the `verdict` filter state says the same.
#![no_main]

use std::collections::BTreeMap;
use std::rc::Rc;

use arbitrary::Unstructured;
use dcr_guard::filter::{Engine, Flow};
use dcr_guard::fuzzing::Fake;
use dcr_guard_core::config::Config;
use dcr_guard_fuzz::{unique_object_at_every_depth, PIPELINE_FIXTURES};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

struct Fixtures {
    now: i64,
    client_id: String,
    configs: Vec<(Rc<Config>, Value)>,
    keystore: Vec<(String, Vec<u8>)>,
    bodies: Vec<String>,
    token: String,
}

fn load() -> Fixtures {
    let f: Value = serde_json::from_str(PIPELINE_FIXTURES).unwrap();
    Fixtures {
        now: f["now"].as_i64().unwrap(),
        client_id: f["client_id"].as_str().unwrap().to_string(),
        configs: f["configs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    Rc::new(Config::from_json(c.to_string().as_bytes()).unwrap()),
                    c.clone(),
                )
            })
            .collect(),
        keystore: f["keystore"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(u, d)| (u.clone(), d.to_string().into_bytes()))
            .collect(),
        bodies: f["bodies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_str().unwrap().to_string())
            .collect(),
        token: f["tokens"][0].as_str().unwrap().to_string(),
    }
}

thread_local! {
    // Config holds Rc: per thread (libFuzzer runs the target on one thread).
    static FIXTURES: &'static Fixtures = Box::leak(Box::new(load()));
}

fn fixtures() -> &'static Fixtures {
    FIXTURES.with(|f| *f)
}

/// Everything observable about one run.
#[derive(Debug, PartialEq)]
struct Outcome {
    flows: Vec<Flow>,
    responses: Vec<(u16, Vec<(String, String)>, Value)>,
    resumed: usize,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
    counters: BTreeMap<String, u64>,
    state: BTreeMap<String, String>,
    dispatched: Vec<String>,
    calls: usize,
}

impl Outcome {
    /// Sent on to the AS: resumed, or the last callback let it go on (a `Continue` from the body
    /// callback also releases headers that were held).
    /// Sent on to the AS: resumed, or the last callback let it go on (a `Continue` from the body
    /// callback also releases headers that were held).
    fn forwarded(&self) -> bool {
        self.responses.is_empty()
            && (self.resumed > 0 || self.flows.last() == Some(&Flow::Continue))
    }
    fn count(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }
}

/// The request one input describes.
#[derive(Debug, Clone)]
struct Request {
    config: usize,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// 0: one chunk, 1: two chunks, 2: no body (headers end the stream), 3: body then trailers.
    delivery: u8,
    clock: i64,
    replay: bool,
    answers: Vec<u8>,
    garbage: Vec<u8>,
}

fn byte(u: &mut Unstructured) -> u8 {
    u.arbitrary::<u8>().unwrap_or(0)
}

fn raw(u: &mut Unstructured) -> String {
    let s: String = u.arbitrary().unwrap_or_default();
    s.chars().take(256).collect()
}

fn decode(data: &[u8]) -> Option<Request> {
    let f = fixtures();
    let (&n, rest) = data.split_first()?;
    let n = usize::from(n).min(rest.len());
    let (ctl, body) = rest.split_at(n);
    let mut u = Unstructured::new(ctl);
    let config = usize::from(byte(&mut u)) % f.configs.len();
    let json_body = f.configs[config].0.json_body;
    let method = match byte(&mut u) % 9 {
        0 => "POST".to_string(),
        1 => "PUT".into(),
        2 => "GET".into(),
        3 => "DELETE".into(),
        4 => "PATCH".into(),
        5 => "HEAD".into(),
        6 => "OPTIONS".into(),
        7 => "post".into(),
        _ => raw(&mut u),
    };
    let id = &f.client_id;
    let path = match byte(&mut u) % 9 {
        0 => "/register".to_string(),
        1 => "/register/".into(),
        2 => format!("/register/{id}"),
        3 => "/register?x=1".into(),
        4 => "/REGISTER".into(),
        5 => "/accounts".into(),
        6 => format!("/register/{id}/x"),
        7 => format!("/register/{id}?a=b"),
        _ => raw(&mut u),
    };
    let content_type = match byte(&mut u) % 8 {
        0 if json_body => Some("application/json".to_string()),
        0 => Some("application/jwt".into()),
        1 => Some("application/jose".into()),
        2 => Some("application/json".into()),
        3 => Some("application/jwt; charset=utf-8".into()),
        4 => None,
        5 => Some("text/plain".into()),
        6 => Some("APPLICATION/JWT".into()),
        _ => Some(raw(&mut u)),
    };
    let management = path.starts_with(&format!("/register/{id}"));
    let authorization = match byte(&mut u) % 6 {
        0 if management => Some(format!("Bearer {}", f.token)),
        0 => None,
        1 => None,
        2 => Some("Bearer abc.def.ghi".into()),
        3 => Some("Basic dXNlcjpwYXNz".into()),
        4 => Some(format!("bearer {}", f.token)),
        _ => Some(raw(&mut u)),
    };
    let d = byte(&mut u);
    let (delivery, body) = match d % 6 {
        4 | 5 => (
            d % 2,
            f.bodies[usize::from(byte(&mut u)) % f.bodies.len()]
                .clone()
                .into_bytes(),
        ),
        x => (x, body.to_vec()),
    };
    let clock = i64::from(i16::from_le_bytes([byte(&mut u), byte(&mut u)]));
    let content_length = match byte(&mut u) % 4 {
        0 => Some(body.len().to_string()),
        1 => None,
        2 => Some((body.len() + 1).to_string()),
        _ => Some("12abc".into()),
    };
    let flags = byte(&mut u);
    let mut headers = vec![(":method".to_string(), method), (":path".to_string(), path)];
    headers.push((":authority".into(), "bank.test".into()));
    if let Some(ct) = content_type {
        headers.push(("content-type".into(), ct));
    }
    if let Some(cl) = content_length {
        headers.push(("content-length".into(), cl));
    }
    if let Some(a) = authorization {
        headers.push(("authorization".into(), a));
    }
    if flags & 1 != 0 {
        // The fixture TPP's certificate subject, as each regime writes it.
        let subject = if json_body {
            "UID=Cy7LCjSi0o7xDkt4mcZgDW,organizationIdentifier=OFBBR-0015800001041REAAY,CN=tpp.example.com.br,O=TPP Brasil,C=BR"
        } else {
            "CN=Cy7LCjSi0o7xDkt4mcZgDW,OU=0015800001041REAAY,O=OpenBanking,C=GB"
        };
        headers.push(("test-client-subject".into(), subject.into()));
    }
    if flags & 2 != 0 {
        for (_, name) in &f.configs[config].0.fact_headers {
            headers.push((name.clone(), "forged".into()));
        }
    }
    if flags & 4 != 0 {
        headers.push(("x-http-method-override".into(), "PUT".into()));
    }
    let replay = flags & 8 != 0;
    let answers: Vec<u8> = (0..8).map(|_| byte(&mut u)).collect();
    let garbage: Vec<u8> = u.arbitrary().unwrap_or_default();
    Some(Request {
        config,
        headers,
        body,
        delivery,
        clock,
        replay,
        answers,
        garbage,
    })
}

fn answer(f: &Fixtures, req: &Request, url: &str, nth: usize) -> (Option<u16>, Vec<u8>) {
    let doc = f
        .keystore
        .iter()
        .find(|(u, _)| u == url)
        .map(|(_, d)| d.clone())
        .unwrap_or_default();
    match req.answers.get(nth).copied().unwrap_or(0) % 8 {
        0 | 7 => (Some(200), doc),
        1 => (None, Vec::new()),
        2 => (Some(503), doc),
        3 => (Some(404), Vec::new()),
        4 => (Some(200), Vec::new()),
        5 => (Some(200), req.garbage.clone()),
        _ => {
            let other = &f.keystore[(nth + 1) % f.keystore.len()].1;
            (Some(200), other.clone())
        }
    }
}

/// Drive one request on stream `ctx` of `engine`; return its flows.
fn drive(
    engine: &mut Engine,
    host: &mut Fake,
    req: &Request,
    ctx: u32,
    answered: &mut usize,
) -> Vec<Flow> {
    let f = fixtures();
    host.headers = req.headers.iter().cloned().collect();
    host.body = req.body.clone();
    let mut flows = Vec::new();
    let no_body = req.delivery == 2 || req.body.is_empty();
    flows.push(engine.on_request_headers(host, ctx, no_body));
    if !no_body && host.responses.is_empty() {
        let len = req.body.len();
        if req.delivery == 1 && len > 1 {
            flows.push(engine.on_request_body(host, ctx, len / 2, false));
        }
        let end = req.delivery != 3;
        flows.push(engine.on_request_body(host, ctx, len, end));
        if !end {
            flows.push(engine.on_request_trailers(host, ctx));
        }
    }
    // Answer callouts in the order they were made, until none is outstanding (bounded).
    for _ in 0..32 {
        let mut pending: Vec<(u32, Option<String>)> = host
            .dispatched
            .iter()
            .map(|(t, s)| (*t, Some(s.url.clone())))
            .chain(host.calls.iter().map(|(t, _)| (*t, None)))
            .filter(|(t, _)| *t as usize > *answered)
            .collect();
        pending.sort_by_key(|(t, _)| *t);
        let Some((token, url)) = pending.first().cloned() else {
            break;
        };
        *answered = token as usize;
        let reply = match url {
            Some(url) => answer(f, req, &url, token as usize - 1),
            None => (Some(200), br#"{"active":false}"#.to_vec()),
        };
        let size = reply.1.len();
        host.current = Some(reply);
        engine.on_call_response(host, token, size);
    }
    flows
}

fn run(req: &Request) -> (Outcome, Option<Outcome>) {
    let f = fixtures();
    let (cfg, _) = &f.configs[req.config];
    let mut host = Fake::default();
    host.frozen = Some(f.now + req.clock);
    for (url, doc) in &f.keystore {
        host.keystore.insert(url.clone(), (Some(200), doc.clone()));
    }
    let mut engine = Engine::new(Rc::clone(cfg), 1);
    let mut answered = 0usize;
    let flows = drive(&mut engine, &mut host, req, 1, &mut answered);
    let first = snapshot(&host, flows);
    let second = if req.replay {
        engine.remove(1);
        host.responses.clear();
        host.resumed = 0;
        host.counters.clear();
        host.state.clear();
        let flows = drive(&mut engine, &mut host, req, 2, &mut answered);
        Some(snapshot(&host, flows))
    } else {
        None
    };
    (first, second)
}

fn snapshot(host: &Fake, flows: Vec<Flow>) -> Outcome {
    Outcome {
        flows,
        responses: host.responses.clone(),
        resumed: host.resumed,
        headers: host
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        body: host.body.clone(),
        counters: host.counters.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        state: host
            .state
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        dispatched: host.dispatched.iter().map(|(_, s)| s.url.clone()).collect(),
        calls: host.calls.len(),
    }
}

/// `DCR_FUZZ_DEBUG=1`: print each request and its outcome (to look at what a seed reaches).
fn debug() -> bool {
    static DEBUG: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DEBUG.get_or_init(|| std::env::var_os("DCR_FUZZ_DEBUG").is_some())
}

fn signing_input(token: &str) -> Option<&str> {
    let t = token.trim_matches(|c: char| c.is_ascii_whitespace());
    t.rsplit_once('.').map(|(si, _)| si)
}

fn claims(token: &str) -> Value {
    let p = token.split('.').nth(1).unwrap();
    let bytes = dcr_guard_core::jose::b64::decode(p).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// A forwarded create/update body must be one the fixtures signed (and be within its window).
fn check_forwarded_body(req: &Request, out: &Outcome) {
    let f = fixtures();
    let (cfg, _) = &f.configs[req.config];
    let now = f.now + req.clock;
    let leeway = cfg.leeway as i64;
    let sent = String::from_utf8_lossy(&req.body);
    if cfg.json_body {
        assert!(
            unique_object_at_every_depth(&req.body),
            "forwarded a body with duplicate members"
        );
        let v: Value = serde_json::from_slice(&req.body).unwrap();
        let ssa = v["software_statement"]
            .as_str()
            .expect("forwarded without an SSA");
        let fixture: Value = serde_json::from_str(&f.bodies[2]).unwrap();
        let want = fixture["software_statement"].as_str().unwrap();
        assert_eq!(
            signing_input(ssa),
            signing_input(want),
            "forwarded an SSA we did not sign"
        );
        return;
    }
    let si = signing_input(&sent);
    let Some(fixture) = f.bodies.iter().find(|b| signing_input(b) == si) else {
        panic!("forwarded a registration whose signing input no fixture has: {out:?}");
    };
    let c = claims(fixture);
    if let Some(exp) = c["exp"].as_i64() {
        assert!(
            now <= exp + leeway,
            "forwarded an expired request ({now} > {exp} + {leeway})"
        );
    }
    if let Some(iat) = c["iat"].as_i64() {
        assert!(
            now + leeway >= iat,
            "forwarded a request issued in the future"
        );
    }
}

fn check(req: &Request, out: &Outcome) {
    let f = fixtures();
    let (cfg, raw_cfg) = &f.configs[req.config];
    assert!(
        out.responses.len() <= 1,
        "more than one local reply: {out:?}"
    );
    if let Some((status, _, body)) = out.responses.first() {
        assert!(out.resumed == 0, "replied and resumed");
        assert!(
            [400, 401, 403, 405, 413, 415, 503].contains(status),
            "undocumented status {status}"
        );
        assert!(body.is_null() || body["error"].is_string(), "{body}");
        assert_eq!(out.count("dcr_guard.rejected"), 1);
        let failed: u64 = out
            .counters
            .iter()
            .filter(|(k, _)| k.starts_with("dcr_guard.failed."))
            .map(|(_, v)| *v)
            .sum();
        assert_eq!(failed, 1, "{:?}", out.counters);
        assert_eq!(
            out.state.get("dcr_guard.verdict").map(String::as_str),
            Some("rejected")
        );
    }
    assert!(out.resumed <= 1);
    let dcr = out.count("dcr_guard.requests");
    assert!(dcr <= 1);
    if dcr == 0 {
        assert!(
            out.responses.is_empty() && out.forwarded(),
            "a non-registration request was held"
        );
        return;
    }
    // Every registration request ends, once its callouts are answered, with a verdict: a reply or
    // a forward (never held for ever).
    assert!(
        out.forwarded() || out.responses.len() == 1,
        "a registration request is still held: {out:?}"
    );
    if !out.forwarded() || cfg.report_only {
        return;
    }
    // Forwarded, not in report-only: every check passed.
    assert_eq!(out.count("dcr_guard.rejected"), 0);
    let created = out.count("dcr_guard.accepted");
    let managed = out.count("dcr_guard.management_forwarded");
    assert_eq!(created + managed, 1, "{:?}", out.counters);
    assert_eq!(
        out.state.get("dcr_guard.verdict").map(String::as_str),
        Some("accepted")
    );
    if created == 1 {
        check_forwarded_body(req, out);
    }
    for (_, name) in &cfg.fact_headers {
        assert_ne!(
            out.headers.get(name).map(String::as_str),
            Some("forged"),
            "client-sent {name} forwarded"
        );
    }
    let binding = raw_cfg["rules"]["token_client_binding"].clone();
    if managed == 1 || (created == 1 && !out.headers.get(":method").is_some_and(|m| m == "POST")) {
        let auth = out
            .headers
            .get("authorization")
            .expect("management forwarded without a token");
        assert!(
            auth.len() > 7 && auth[..7].eq_ignore_ascii_case("bearer "),
            "{auth}"
        );
        if binding["mode"] == "jwt" {
            let token = auth[7..].trim();
            assert_eq!(
                signing_input(token),
                signing_input(&f.token),
                "forwarded a token we did not sign"
            );
            let exp = claims(&f.token)["exp"].as_i64().unwrap();
            assert!(f.now + req.clock <= exp + cfg.leeway as i64);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(req) = decode(data) else { return };
    let (first, second) = run(&req);
    if debug() {
        eprintln!("{req:?}\n=> {first:#?}\n=> replayed: {second:#?}");
    }
    let (again, second_again) = run(&req);
    assert_eq!(first, again, "the verdict is not deterministic");
    assert_eq!(
        second, second_again,
        "the replayed verdict is not deterministic"
    );
    check(&req, &first);
    if let Some(second) = &second {
        check(&req, second);
        let cfg = &fixtures().configs[req.config].0;
        if cfg.rules.request_jti && !cfg.report_only {
            assert!(
                !(first.count("dcr_guard.accepted") == 1
                    && second.count("dcr_guard.accepted") == 1),
                "the same registration was accepted twice"
            );
        }
    }
});
