//! What an operator gets after a wasm trap, per Envoy's `failure_policy`, through a real Envoy.
//!
//! dcr-guard never panics on purpose (clippy denies it, every input is a 4xx), so the trap comes
//! from a deliberately faulty module, `tests/trap-module` (built by `make test` into
//! `target/trap`; `DCR_GUARD_TRAP_WASM` overrides the path): it panics — a wasm `unreachable`
//! trap — on a request with `x-trap`, and tags every answer it let through with
//! `x-vm-requests`, the number of requests its VM instance has seen (a fresh VM starts at 1).
//! One worker (`--concurrency 1`), so "later requests" all meet the VM that trapped.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Envoy, EnvoyConfig, Reply, Response, TestServer};
use serde_json::json;

fn trap_wasm() -> PathBuf {
    let p = match std::env::var_os("DCR_GUARD_TRAP_WASM").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/trap/wasm32-wasip1/release/dcr_guard_test_trap.wasm"),
    };
    assert!(
        p.exists(),
        "the trap test module is not built ({}): run `make test`",
        p.display()
    );
    p
}

/// One Envoy worker running the trap module with `failure_policy: policy`, in front of `upstream`.
fn start(policy: &'static str, upstream: &TestServer) -> Envoy {
    let cfg = EnvoyConfig::new(json!({}), upstream.port())
        .wasm(trap_wasm())
        .concurrency(1)
        .edit(move |b| {
            b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
                ["typed_config"]["http_filters"][0]["typed_config"]["config"]["failure_policy"] =
                json!(policy);
        });
    Envoy::start(&cfg)
}

/// The VM's request count when the module let the request through and it was served.
fn served_by(r: &Response) -> Option<u64> {
    (r.status == 200)
        .then(|| r.header("x-vm-requests").and_then(|v| v.parse().ok()))
        .flatten()
}

/// The module serves requests (its VM has seen `seen` so far), then one request traps it:
/// answered 503, never upstream.
fn serve_then_trap(envoy: &Envoy, upstream: &TestServer, seen: u64) {
    assert_eq!(served_by(&envoy.get("/a")), Some(seen + 1));
    assert_eq!(served_by(&envoy.get("/a")), Some(seen + 2));
    let r = envoy.send("GET", "/trap", &[("x-trap", "1")], b"");
    assert_eq!(r.status, 503, "the trapping request: {}", r.text());
    assert!(
        envoy.wait_for_log("deliberate trap", Duration::from_secs(5)),
        "no trap in the log"
    );
    assert!(
        envoy.log().contains("unreachable"),
        "the log does not show a wasm trap"
    );
    assert_eq!(
        upstream.count("/trap"),
        0,
        "the trapping request went upstream"
    );
}

#[test]
fn fail_closed_answers_503_on_that_worker_until_restart() {
    let upstream = TestServer::always(Reply::status(200));
    let envoy = start("FAIL_CLOSED", &upstream);
    serve_then_trap(&envoy, &upstream, 0);
    let before = upstream.requests().len();
    // Every later request on that worker: 503, nothing upstream. (Only a restart, or a new
    // configuration that creates new VMs, ends this.)
    for i in 0..20 {
        let r = envoy.get("/a");
        assert_eq!(r.status, 503, "request {i} after the trap: {}", r.text());
    }
    assert_eq!(upstream.requests().len(), before, "a request went upstream");
}

#[test]
fn fail_reload_fails_closed_then_serves_from_a_fresh_vm() {
    let upstream = TestServer::always(Reply::status(200));
    let envoy = start("FAIL_RELOAD", &upstream);
    // Twice: a VM that keeps trapping keeps failing closed and keeps being replaced.
    for round in 0..2 {
        // The first VM starts fresh; the reloaded one has served two requests below.
        serve_then_trap(&envoy, &upstream, if round == 0 { 0 } else { 2 });
        // Until the reload (Envoy backs off, 1 s by default) requests are refused with 503; then
        // a new VM serves them: its count starts again at 1. Never a request without the filter.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut refused = 0;
        let fresh = loop {
            let r = envoy.get("/a");
            match served_by(&r) {
                Some(n) => break n,
                None => {
                    assert_eq!(r.status, 503, "round {round}: {} {}", r.status, r.text());
                    refused += 1;
                }
            }
            assert!(Instant::now() < deadline, "round {round}: no reload");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(fresh, 1, "round {round}: not a fresh VM");
        assert_eq!(served_by(&envoy.get("/a")), Some(2), "round {round}");
        eprintln!("round {round}: {refused} requests refused (503) before the reload");
    }
    assert_eq!(upstream.count("/trap"), 0);
}

#[test]
fn fail_open_would_let_every_later_request_bypass_the_filter() {
    // Why the kits never use FAIL_OPEN: after a trap, requests reach the upstream with no filter
    // at all (no `x-vm-requests`), i.e. registrations unchecked.
    let upstream = TestServer::always(Reply::status(200));
    let envoy = start("FAIL_OPEN", &upstream);
    serve_then_trap(&envoy, &upstream, 0);
    let r = envoy.get("/a");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-vm-requests"), None, "the filter still ran");
}
