//! Live participant status (rule `participant_status`) in a real Envoy, against a small status
//! server on 127.0.0.1 whose document the test changes between requests: the verdict follows the
//! document (ACTIVE forwards, INACTIVE / REMOVED refuse naming the status, an unlisted product is
//! 503), management requests are never blocked, garbage after a good document keeps the good one,
//! the document is refreshed in the background (the server counts fetches that no request
//! caused), and a status server that is down from the start fails closed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::dcr::Tpp;
use common::keys::TestKey;
use common::{Envoy, EnvoyConfig, Reply, TestServer};
use serde_json::{json, Value};

const STATUS_PATH: &str = "/cdr-register/v1/all/data-recipients/brands/software-products/status";

/// What the status server answers.
#[derive(Clone)]
enum Doc {
    Json(Value),
    Garbage,
}

struct Stack {
    tpp: Tpp,
    doc: Arc<Mutex<Doc>>,
    status: TestServer,
    upstream: TestServer,
    envoy: Envoy,
    _keystore: TestServer,
}

/// Envoy with dcr-guard checking a CDR-shaped software product status document. `status_port`:
/// the status server's port (`None`: one whose server is up), else a port nothing listens on.
fn start(status_port: Option<u16>) -> Stack {
    let tpp = Tpp::new(TestKey::ec("dir-1"), TestKey::ec("tpp-1"));
    let keystore = common::keystore(&tpp, vec![]);
    let doc = Arc::new(Mutex::new(Doc::Json(json!({"data": []}))));
    let d = Arc::clone(&doc);
    let status = TestServer::start(move |r| {
        if r.path != STATUS_PATH {
            return Reply::status(404);
        }
        match &*d.lock().unwrap() {
            Doc::Json(v) => Reply::json(200, v),
            Doc::Garbage => Reply::text(200, "application/json", "{\"data\": [ oops"),
        }
    });
    let upstream = TestServer::always(Reply::json(201, &json!({"client_id": "c1"})));
    let mut filter = tpp.filter_config("keystore", "keystore");
    filter["rules"]["participant_status"] = json!({"sources": [{
        "name": "software product",
        "url": format!("https://register.test{STATUS_PATH}"),
        "upstream": "register",
        "headers": {"x-v": "3"},
        "refresh_seconds": 1,
        "max_staleness_seconds": 3600,
        "array": "data", "id_member": "softwareProductId", "status_member": "status",
        "ssa_claim": "software_id", "allowed": ["ACTIVE"]
    }]});
    let register_port = status_port.unwrap_or(status.port());
    let cfg = EnvoyConfig::new(filter, upstream.port())
        .cluster("keystore", keystore.port())
        .cluster("register", register_port)
        .concurrency(2);
    let envoy = Envoy::start(&cfg);
    Stack {
        tpp,
        doc,
        status,
        upstream,
        envoy,
        _keystore: keystore,
    }
}

impl Stack {
    fn software_id(&self) -> String {
        self.tpp.ssa_claims()["software_id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn fetches(&self) -> usize {
        self.status
            .requests()
            .iter()
            .filter(|r| r.path == STATUS_PATH)
            .count()
    }

    /// Serve `doc` from now on and wait until Envoy fetched it at least twice more (so that the
    /// fetch that read it has certainly published it) — with no registration sent meanwhile:
    /// only the background refresh fetches.
    fn serve(&self, doc: Doc) {
        *self.doc.lock().unwrap() = doc;
        let before = self.fetches();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.fetches() < before + 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            self.fetches() >= before + 2,
            "no background refresh of the status document"
        );
    }

    fn product(&self, status: &str) -> Doc {
        Doc::Json(json!({
            "data": [{"softwareProductId": "someone-else", "status": "ACTIVE"},
                     {"softwareProductId": self.software_id(), "status": status}],
            "links": {"self": "https://register.test/"}, "meta": {}
        }))
    }

    fn send(&self, method: &str, path: &str, body: &str) -> common::Response {
        let mut headers = vec![("authorization", "Bearer rat-1")];
        if !body.is_empty() {
            headers.push(("content-type", "application/jwt"));
        }
        self.envoy.send(method, path, &headers, body.as_bytes())
    }

    fn register(&self) -> common::Response {
        self.send("POST", "/register", &self.tpp.request())
    }
}

#[test]
fn the_verdict_follows_the_registers_current_document() {
    let s = start(None);
    // Fetched in the background before any registration, with the configured `x-v`.
    s.serve(s.product("ACTIVE"));
    let fetch = s.status.requests().into_iter().last().unwrap();
    assert_eq!(fetch.header("x-v"), Some("3"));
    assert_eq!(
        fetch.header(":authority").or(fetch.header("host")),
        Some("register.test")
    );

    // ACTIVE: forwarded, the AS sees it.
    let r = s.register();
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(s.upstream.requests().len(), 1);

    // INACTIVE, then REMOVED: refused naming the status, for a create and an update; the AS
    // sees nothing. The new verdict needed no fetch by a request: the server counted the
    // background refreshes above.
    for status in ["INACTIVE", "REMOVED"] {
        s.serve(s.product(status));
        let before = s.upstream.requests().len();
        for (method, path) in [("POST", "/register"), ("PUT", "/register/c1")] {
            let r = s.send(method, path, &s.tpp.request());
            assert_eq!(r.status, 400, "{method} {status}: {}", r.text());
            assert_eq!(r.json()["error"], "unapproved_software_statement");
            assert_eq!(
                r.json()["error_description"],
                format!("software product status is {status}")
            );
        }
        assert_eq!(
            s.upstream.requests().len(),
            before,
            "the AS saw a refused request"
        );
        // A removed product still reads and deletes its registration.
        for method in ["GET", "DELETE"] {
            let r = s.send(method, "/register/c1", "");
            assert_eq!(r.status, 201, "{method} {status}: {}", r.text());
        }
        assert_eq!(s.upstream.requests().len(), before + 2);
    }
    assert_eq!(s.envoy.stat("dcr_guard.failed.participant_status"), Some(4));

    // Not listed: unknown, not removed — 503 with Retry-After until a document lists it.
    s.serve(Doc::Json(
        json!({"data": [{"softwareProductId": "someone-else", "status": "ACTIVE"}]}),
    ));
    let before = s.upstream.requests().len();
    let r = s.register();
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"], "temporarily_unavailable");
    assert!(r.header("retry-after").is_some());
    assert!(r.text().contains("is not listed"), "{}", r.text());
    assert_eq!(s.upstream.requests().len(), before);

    // Listed ACTIVE again, then the server answers garbage: the last good document stays.
    s.serve(s.product("ACTIVE"));
    assert_eq!(s.register().status, 201);
    s.serve(Doc::Garbage);
    let r = s.register();
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(s.envoy.stat("dcr_guard.status_fetch_failures").unwrap_or(0) >= 2);
    assert!(s.envoy.stat("dcr_guard.status_stale_serves").unwrap_or(0) >= 1);
}

#[test]
fn a_status_server_down_from_the_start_fails_closed() {
    let closed = common::http::free_port();
    let s = start(Some(closed));
    let r = s.register();
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"], "temporarily_unavailable");
    assert!(r.header("retry-after").is_some());
    assert!(
        r.text()
            .contains("software product status cannot be checked now"),
        "{}",
        r.text()
    );
    assert!(s.upstream.requests().is_empty(), "the AS saw the request");
    // Still no document: every registration is refused, never let through.
    assert_eq!(s.register().status, 503);
    assert!(s.upstream.requests().is_empty());
    assert!(s.envoy.stat("dcr_guard.status_fetch_failures").unwrap_or(0) >= 1);
}
