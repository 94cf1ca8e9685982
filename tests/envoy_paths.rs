//! Nothing under the registration path reaches the AS unvalidated (spec §1), through a real Envoy
//! with the built filter, over HTTP/1.1 and HTTP/2 (h2c, prior knowledge).
//!
//! The harness's Envoy (`normalize_path`, `merge_slashes`, `path_with_escaped_slashes_action:
//! KEEP_UNCHANGED`, Envoy's default) rewrites some spellings itself (`\` → `/`, `%65` → `e`, dot
//! segments). So that every case is judged on what the filter saw, each request is first sent
//! through a second Envoy without the filter (same listener settings): what that Envoy delivers
//! upstream is the path the filter is given. A clean registration path is then validated like any
//! registration (and the body each case carries fails validation); anything else under the
//! registration path is 400 `invalid_request`; in no case does the upstream receive anything.
//! Also: other literal paths (`/registers`, `/register-x`) pass untouched; method-override headers
//! and bodies on GET/DELETE under the registration path are refused; client-sent verified-fact
//! headers are stripped from every request, DCR or not.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::dcr::Tpp;
use common::keys::TestKey;
use common::{h2c, http, Envoy, EnvoyConfig, Recorded, Reply, Response, TestServer};
use serde_json::json;

/// Verified-fact headers configured in `fact_headers`.
const FACT_SOFTWARE: &str = "x-dcr-guard-software-id";
const FACT_ORG: &str = "x-dcr-guard-org-id";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    H1,
    H2,
}

const PROTOS: [Proto; 2] = [Proto::H1, Proto::H2];

struct Stack {
    tpp: Tpp,
    upstream: TestServer,
    envoy: Envoy,
    /// The same listener without the filter, and what it delivers upstream.
    plain_upstream: TestServer,
    plain: Envoy,
    _keystore: TestServer,
}

fn recording_upstream() -> TestServer {
    TestServer::always(
        Reply::json(201, &json!({"client_id": "c1"})).with_header("x-upstream", "as"),
    )
}

fn start() -> Stack {
    start_with(None)
}

/// With `escaped_slashes`, both Envoys use that `path_with_escaped_slashes_action` instead of the
/// harness's (Envoy's default, `KEEP_UNCHANGED`).
fn start_with(escaped_slashes: Option<&'static str>) -> Stack {
    let tpp = Tpp::new(TestKey::ec("dir"), TestKey::ec("tpp"));
    let keystore = common::keystore(&tpp, vec![]);
    let upstream = recording_upstream();
    let plain_upstream = recording_upstream();
    let mut filter = tpp.filter_config("keystore", "keystore");
    filter["fact_headers"] = json!([
        {"claim": "software_id", "header": FACT_SOFTWARE},
        {"claim": "org_id", "header": FACT_ORG}
    ]);
    let edit = move |b: &mut serde_json::Value| {
        if let Some(action) = escaped_slashes {
            b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
                ["typed_config"]["path_with_escaped_slashes_action"] = json!(action);
        }
    };
    let envoy = Envoy::start(
        &EnvoyConfig::new(filter.clone(), upstream.port())
            .cluster("keystore", keystore.port())
            .edit(edit),
    );
    let plain = Envoy::start(
        &EnvoyConfig::new(filter, plain_upstream.port())
            .without_filter()
            .edit(edit),
    );
    Stack {
        tpp,
        upstream,
        envoy,
        plain_upstream,
        plain,
        _keystore: keystore,
    }
}

fn send(
    proto: Proto,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    match proto {
        Proto::H1 => http::send(port, method, path, headers, body),
        Proto::H2 => h2c::send(port, method, path, headers, body),
    }
}

/// What `server` has received since the last look (after a moment for a stream in flight).
fn take(server: &TestServer) -> Vec<Recorded> {
    std::thread::sleep(Duration::from_millis(30));
    let got = server.requests();
    server.clear();
    got
}

fn error_of(r: &Response) -> String {
    serde_json::from_slice::<serde_json::Value>(&r.body)
        .ok()
        .and_then(|v| v["error"].as_str().map(String::from))
        .unwrap_or_default()
}

/// Whether the answer is the filter's own: a JSON error body, or the bare bearer challenge of a
/// management request without a token.
fn from_filter(r: &Response) -> bool {
    if r.header("x-upstream").is_some() {
        return false;
    }
    let json_error =
        r.header("content-type") == Some("application/json") && !error_of(r).is_empty();
    let challenge = r.status == 401 && r.header("www-authenticate") == Some("Bearer");
    json_error || challenge
}

/// The shape a path has for a correct filter when it is clean: the model of spec §1.
#[derive(Debug, PartialEq, Eq)]
enum Shape {
    Collection,
    Client,
    /// Under the registration path, not clean.
    Unclean,
}

fn shape(path: &str) -> Shape {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let lower = path.to_ascii_lowercase();
    if lower == "/register" || lower == "/register/" {
        return Shape::Collection;
    }
    if let Some(seg) = lower.strip_prefix("/register/") {
        let clean = !seg.is_empty()
            && seg != "."
            && seg != ".."
            && !seg.contains(['/', '\\', '%', ';'])
            && seg.bytes().all(|b| b > 0x20 && b < 0x7f);
        if clean {
            return Shape::Client;
        }
    }
    Shape::Unclean
}

/// What the filter must answer (status, `error`) to `method` on a path Envoy delivered as
/// `delivered`, when the request carries a registration that fails validation and no management
/// token (401 without a token has no body, so no `error`).
fn expected(method: &str, delivered: &str) -> (u16, &'static str) {
    match (shape(delivered), method) {
        (Shape::Collection, "POST") => (400, "invalid_client_metadata"),
        (Shape::Collection, _) => (405, "invalid_request"),
        (Shape::Client, "GET" | "PUT" | "DELETE") => (401, ""),
        (Shape::Client, _) => (405, "invalid_request"),
        (Shape::Unclean, _) => (400, "invalid_request"),
    }
}

/// Every case: (method, path). Each must be refused and never reach the upstream.
const UNDER_THE_PATH: &[(&str, &str)] = &[
    ("POST", "/register%2F"),
    ("POST", "/REGISTER%2f"),
    ("POST", "/register%5C"),
    ("POST", "/register%5Cabc"),
    ("PUT", "/register%2Fabc"),
    ("GET", "/register%2Fabc"),
    ("DELETE", "/register%2Fabc"),
    ("POST", "/register.json"),
    ("POST", "/register%2e"),
    ("POST", "/register%2E%2E"),
    ("POST", "/register%20"),
    ("POST", "/register%3B"),
    ("POST", "/register;x"),
    ("POST", "/register;jsessionid=1"),
    ("POST", "/register%252F"),
    ("GET", "/register%252Fabc"),
    ("POST", "/regist%65r"),
    ("POST", "/%72egister%2F"),
    ("POST", "/register\\"),
    ("GET", "/register\\abc"),
    ("POST", "/register/./abc"),
    ("PUT", "/register/./abc"),
    ("GET", "/register/abc/.."),
    ("POST", "/register/abc/.."),
    ("POST", "/x/../register"),
    ("GET", "/register/abc%2F.."),
    ("GET", "/register/abc;x"),
    ("GET", "/register/%2e%2e%2fother"),
    ("POST", "/Register/"),
    ("POST", "//register"),
    ("GET", "/register/abc%00"),
];

/// Sends the case through the plain Envoy: the path its upstream received (what the filter sees),
/// or Envoy's own answer when it refused the request itself.
fn delivered(
    s: &Stack,
    proto: Proto,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<String, Response> {
    let r = send(proto, s.plain.port, method, path, headers, body);
    let got = take(&s.plain_upstream);
    match got.as_slice() {
        [one] => Ok(one.path.clone()),
        [] => Err(r),
        more => panic!("{proto:?} {method} {path}: plain Envoy delivered {more:?}"),
    }
}

/// One refused case: the answer matches the model and the upstream received nothing. `Ok` is a
/// line for the table of which layer answered, `Err` what went wrong.
fn check_refused(
    s: &Stack,
    proto: Proto,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<String, String> {
    let name = format!("{proto:?} {method} {path}");
    let seen = delivered(s, proto, method, path, headers, body);
    let r = send(proto, s.envoy.port, method, path, headers, body);
    let got = take(&s.upstream);
    if !got.is_empty() {
        return Err(format!(
            "{name}: the upstream received {:?} (answer {} {})",
            got.iter()
                .map(|g| format!("{} {}", g.method, g.path))
                .collect::<Vec<_>>(),
            r.status,
            r.text()
        ));
    }
    match seen {
        Err(envoy_answer) => {
            // Envoy refused it before any filter: the filtered Envoy must refuse it too.
            if matches!(r.status, 400 | 404) && !from_filter(&r) {
                Ok(format!("{name}: refused by Envoy ({})", r.status))
            } else {
                Err(format!(
                    "{name}: Envoy alone answers {}, with the filter {} {}",
                    envoy_answer.status,
                    r.status,
                    r.text()
                ))
            }
        }
        Ok(seen_path) => {
            let (status, code) = expected(method, &seen_path);
            if !from_filter(&r) || (r.status, error_of(&r).as_str()) != (status, code) {
                return Err(format!(
                    "{name} (the filter sees {seen_path}): expected {status} {code:?} from the \
                     filter, got {} {}",
                    r.status,
                    r.text()
                ));
            }
            let how = if shape(&seen_path) == Shape::Unclean {
                "refused by the filter (shape)"
            } else if seen_path == path {
                "a clean registration path: the filter validated it"
            } else {
                "Envoy normalised it to a clean path: the filter validated it"
            };
            Ok(format!("{name}: filter sees {seen_path}: {how} ({status})"))
        }
    }
}

/// Panics listing every failure, if any.
fn assert_none(what: &str, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{what}: {} failure(s):\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

#[test]
fn nothing_under_the_registration_path_reaches_the_as_unvalidated() {
    under_the_registration_path(&start());
}

/// What the kits ship: Envoy refuses `%2F` and `%5C` itself; the rest as above.
#[test]
fn nothing_under_the_registration_path_reaches_the_as_with_escaped_slashes_rejected() {
    under_the_registration_path(&start_with(Some("REJECT_REQUEST")));
}

fn under_the_registration_path(s: &Stack) {
    // A registration that fails validation (signed by a key the software JWKS does not hold).
    let rogue = TestKey::ec("tpp").sign_default(&s.tpp.request_claims(&s.tpp.ssa()));
    let jwt = [("content-type", "application/jwt")];
    let mut table = Vec::new();
    let mut failures = Vec::new();
    for proto in PROTOS {
        for (method, path) in UNDER_THE_PATH {
            let body: &[u8] = if matches!(*method, "POST" | "PUT") {
                rogue.as_bytes()
            } else {
                b""
            };
            let headers: &[(&str, &str)] = if body.is_empty() { &[] } else { &jwt };
            match check_refused(s, proto, method, path, headers, body) {
                Ok(line) => table.push(line),
                Err(e) => failures.push(e),
            }
        }
    }

    // Absolute-form request targets (HTTP/1.1): Envoy turns them into a path and a host.
    for target in [
        format!("http://127.0.0.1:{}/register", s.envoy.port),
        format!("http://127.0.0.1:{}/register%2F", s.envoy.port),
        "http://bank.example/REGISTER%2fabc".to_string(),
        "https://bank.example/register;x".to_string(),
    ] {
        let raw = {
            let mut r = format!(
                "POST {target} HTTP/1.1\r\nhost: bank.example\r\ncontent-type: application/jwt\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n",
                rogue.len()
            )
            .into_bytes();
            r.extend_from_slice(rogue.as_bytes());
            r
        };
        let plain_r = http::send_raw(s.plain.port, &raw);
        let plain_got = take(&s.plain_upstream);
        let r = http::send_raw(s.envoy.port, &raw);
        let got = take(&s.upstream);
        let name = format!("H1 POST {target}");
        if !got.is_empty() {
            failures.push(format!(
                "{name}: the upstream received {:?} (answer {} {})",
                got.iter().map(|g| &g.path).collect::<Vec<_>>(),
                r.status,
                r.text()
            ));
            continue;
        }
        match plain_got.as_slice() {
            [] if matches!(r.status, 400 | 404) => {
                table.push(format!("{name}: refused by Envoy ({})", plain_r.status));
            }
            [one]
                if from_filter(&r)
                    && (r.status, error_of(&r).as_str()) == expected("POST", &one.path) =>
            {
                table.push(format!(
                    "{name}: filter sees {}: answered by the filter ({})",
                    one.path, r.status
                ));
            }
            seen => failures.push(format!(
                "{name}: Envoy alone delivers {:?}, with the filter {} {}",
                seen.iter().map(|g| &g.path).collect::<Vec<_>>(),
                r.status,
                r.text()
            )),
        }
    }
    eprintln!("which layer answered:\n  {}", table.join("\n  "));
    assert_none("requests under the registration path", &failures);
}

#[test]
fn other_literal_paths_pass_untouched() {
    let s = start();
    for proto in PROTOS {
        for path in ["/registers", "/register-x", "/registerx?a=1", "/x/register"] {
            let r = send(
                proto,
                s.envoy.port,
                "POST",
                path,
                &[("content-type", "application/jwt")],
                b"hello",
            );
            assert_eq!(r.header("x-upstream"), Some("as"), "{proto:?} {path}");
            let got = take(&s.upstream);
            assert_eq!(got.len(), 1, "{proto:?} {path}");
            assert_eq!(got[0].path, path, "{proto:?} {path}");
            assert_eq!(got[0].body, b"hello", "{proto:?} {path}");
        }
    }
}

#[test]
fn method_overrides_and_bodies_on_reads_are_refused() {
    let s = start();
    let bearer = [("authorization", "Bearer management-token")];
    let mut failures = Vec::new();
    for proto in PROTOS {
        // Controls: without the override each of these reaches the AS, so a refusal below is the
        // override's doing.
        let valid = s.tpp.request();
        let r = send(
            proto,
            s.envoy.port,
            "POST",
            "/register",
            &[("content-type", "application/jwt")],
            valid.as_bytes(),
        );
        assert_eq!(r.status, 201, "{proto:?} control POST: {}", r.text());
        assert_eq!(take(&s.upstream).len(), 1);
        for method in ["GET", "DELETE"] {
            let r = send(proto, s.envoy.port, method, "/register/c1", &bearer, b"");
            assert_eq!(
                r.header("x-upstream"),
                Some("as"),
                "{proto:?} control {method}"
            );
            assert_eq!(take(&s.upstream).len(), 1);
        }

        for header in [
            "X-HTTP-Method-Override",
            "x-http-method",
            "X-Method-Override",
        ] {
            for (method, path, value) in [
                ("POST", "/register", "PUT"),
                ("POST", "/register", "GET"),
                ("POST", "/register/", "DELETE"),
                ("PUT", "/register/c1", "DELETE"),
                ("GET", "/register/c1", "DELETE"),
                ("DELETE", "/register/c1", "GET"),
                ("GET", "/register/c1", "GET"),
            ] {
                let name = format!("{proto:?} {method} {path} with {header}: {value}");
                let body = if matches!(method, "POST" | "PUT") {
                    s.tpp.request()
                } else {
                    String::new()
                };
                let mut headers = vec![(header, value), bearer[0]];
                if !body.is_empty() {
                    headers.push(("content-type", "application/jwt"));
                }
                let r = send(proto, s.envoy.port, method, path, &headers, body.as_bytes());
                let got = take(&s.upstream);
                if r.status != 400 || error_of(&r) != "invalid_request" || !got.is_empty() {
                    failures.push(format!(
                        "{name}: {} {}; the upstream received {} request(s)",
                        r.status,
                        r.text(),
                        got.len()
                    ));
                }
            }
        }

        // A body on a read or a delete is refused, not forwarded.
        for method in ["GET", "DELETE"] {
            for (what, headers, body) in [
                ("a body", vec![bearer[0]], &b"x"[..]),
                (
                    "a JSON body",
                    vec![bearer[0], ("content-type", "application/json")],
                    &br#"{"client_id":"c2"}"#[..],
                ),
            ] {
                let name = format!("{proto:?} {method} /register/c1 with {what}");
                let r = send(proto, s.envoy.port, method, "/register/c1", &headers, body);
                let got = take(&s.upstream);
                if r.status != 400 || error_of(&r) != "invalid_request" || !got.is_empty() {
                    failures.push(format!(
                        "{name}: {} {}; the upstream received {:?}",
                        r.status,
                        r.text(),
                        got.iter().map(|g| g.text()).collect::<Vec<_>>()
                    ));
                }
            }
        }
    }
    // HTTP/2 bodies without a content-length on GET and DELETE (the stream is held until it ends).
    for method in ["GET", "DELETE"] {
        let req = h2c::Request::new(method, "/register/c1")
            .header("authorization", "Bearer management-token")
            .body(b"undeclared")
            .without_length();
        let r = h2c::Client::connect(s.envoy.port)
            .and_then(|mut c| c.send(&req))
            .unwrap_or_else(|e| panic!("H2 {method} with an undeclared body: {e}"));
        let got = take(&s.upstream);
        if r.status != 400 || error_of(&r) != "invalid_request" || !got.is_empty() {
            failures.push(format!(
                "H2 {method} /register/c1 with a body and no content-length: {} {}; the upstream \
                 received {:?}",
                r.status,
                r.text(),
                got.iter().map(|g| g.text()).collect::<Vec<_>>()
            ));
        }
    }
    // HTTP/1.1 chunked body on GET (no content-length).
    let raw = format!(
        "GET /register/c1 HTTP/1.1\r\nhost: bank.example\r\nauthorization: Bearer t\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n{}",
        String::from_utf8(http::chunked(b"payload")).unwrap()
    );
    let r = http::send_raw(s.envoy.port, raw.as_bytes());
    let got = take(&s.upstream);
    if r.status != 400 || !got.is_empty() {
        failures.push(format!(
            "H1 GET /register/c1 with a chunked body: {} {}; the upstream received {} request(s)",
            r.status,
            r.text(),
            got.len()
        ));
    }
    assert_none("method overrides and bodies on reads", &failures);
}

#[test]
fn client_sent_fact_headers_are_stripped_from_every_request() {
    let s = start();
    let mut failures = Vec::new();
    for proto in PROTOS {
        type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, &'a [u8]);
        let cases: Vec<Case> = vec![
            ("GET", "/other", vec![], b""),
            (
                "POST",
                "/registers",
                vec![("content-type", "text/plain")],
                b"hi",
            ),
            ("GET", "/accounts/1?x=1", vec![], b""),
            (
                "GET",
                "/register/c1",
                vec![("authorization", "Bearer management-token")],
                b"",
            ),
        ];
        for (method, path, mut headers, body) in cases {
            let name = format!("{proto:?} {method} {path}");
            headers.extend([
                (FACT_SOFTWARE, "forged-software"),
                ("X-DCR-Guard-Org-Id", "forged-org"),
                ("x-dcr-guard-org-id", "forged-again"),
                ("x-keep", "1"),
            ]);
            let r = send(proto, s.envoy.port, method, path, &headers, body);
            assert_eq!(r.header("x-upstream"), Some("as"), "{name}: {}", r.text());
            let got = take(&s.upstream);
            assert_eq!(got.len(), 1, "{name}");
            let req = &got[0];
            assert_eq!(req.path, path, "{name}");
            assert_eq!(
                req.header("x-keep"),
                Some("1"),
                "{name}: other headers kept"
            );
            for fact in [FACT_SOFTWARE, FACT_ORG] {
                if !req.header_all(fact).is_empty() {
                    failures.push(format!(
                        "{name}: the upstream received client-sent {fact}: {:?}",
                        req.header_all(fact)
                    ));
                }
            }
        }
        // A valid registration: the verified value only.
        let body = s.tpp.request();
        let r = send(
            proto,
            s.envoy.port,
            "POST",
            "/register",
            &[
                ("content-type", "application/jwt"),
                (FACT_SOFTWARE, "forged-software"),
                (FACT_ORG, "forged-org"),
            ],
            body.as_bytes(),
        );
        assert_eq!(r.status, 201, "{proto:?}: {}", r.text());
        let got = take(&s.upstream);
        assert_eq!(
            got[0].header_all(FACT_SOFTWARE),
            vec![s.tpp.software_id.as_str()]
        );
        assert_eq!(got[0].header_all(FACT_ORG), vec![s.tpp.org_id.as_str()]);
    }
    assert_none("client-sent fact headers", &failures);
}
