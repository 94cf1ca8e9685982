//! The shared JWKS cache in a real Envoy with two worker threads: one fetch per document for a
//! cold burst, a rotated directory key picked up after the kid-refetch cooldown, and a keystore
//! outage served from the last good document until the stale bound, then 503.

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
use common::keys::{self, TestKey};
use common::{Envoy, EnvoyConfig, Reply, TestServer};
use serde_json::{json, Value};

const DIRECTORY_PATH: &str = "/keystore/openbanking.jwks";

struct Keystore {
    directory: Mutex<Value>,
    down: Mutex<bool>,
    delay: Duration,
}

struct Stack {
    tpp: Tpp,
    keys: Arc<Keystore>,
    server: TestServer,
    upstream: TestServer,
    envoy: Arc<Envoy>,
}

fn start(delay: Duration, edit: impl FnOnce(&mut Value)) -> Stack {
    let tpp = Tpp::new(TestKey::ec("dir-1"), TestKey::ec("tpp-1"));
    let keys = Arc::new(Keystore {
        directory: Mutex::new(tpp.directory_jwks()),
        down: Mutex::new(false),
        delay,
    });
    let software_doc = tpp.software_jwks();
    let software_path = tpp.jwks_path();
    let k = Arc::clone(&keys);
    let server = TestServer::start(move |r| {
        if *k.down.lock().unwrap() {
            return Reply::text(500, "text/plain", "down");
        }
        let reply = if r.path == DIRECTORY_PATH {
            Reply::json(200, &k.directory.lock().unwrap())
        } else if r.path == software_path {
            Reply::json(200, &software_doc)
        } else {
            Reply::status(404)
        };
        reply.after(k.delay)
    });
    let upstream = TestServer::always(Reply::json(201, &json!({"client_id": "c1"})));
    let mut filter = tpp.filter_config("keystore", "keystore");
    edit(&mut filter);
    let cfg = EnvoyConfig::new(filter, upstream.port())
        .cluster("keystore", server.port())
        .concurrency(2);
    let envoy = Arc::new(Envoy::start(&cfg));
    Stack {
        tpp,
        keys,
        server,
        upstream,
        envoy,
    }
}

impl Stack {
    fn post(&self, body: &str) -> u16 {
        self.envoy
            .send(
                "POST",
                "/register",
                &[("content-type", "application/jwt")],
                body.as_bytes(),
            )
            .status
    }

    fn hits(&self, path: &str) -> usize {
        self.server
            .requests()
            .iter()
            .filter(|r| r.path == path)
            .count()
    }
}

#[test]
fn a_cold_burst_fetches_each_document_once_per_process() {
    let s = start(Duration::from_millis(300), |_| {});
    let bodies: Vec<String> = (0..24).map(|_| s.tpp.request()).collect();
    let threads: Vec<_> = bodies
        .into_iter()
        .map(|b| {
            let envoy = Arc::clone(&s.envoy);
            std::thread::spawn(move || {
                envoy
                    .send(
                        "POST",
                        "/register",
                        &[("content-type", "application/jwt")],
                        b.as_bytes(),
                    )
                    .status
            })
        })
        .collect();
    let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
    assert_eq!(s.upstream.requests().len(), 24);
    assert_eq!(
        s.hits(DIRECTORY_PATH),
        1,
        "directory fetched more than once"
    );
    assert_eq!(
        s.hits(&s.tpp.jwks_path()),
        1,
        "software JWKS fetched more than once"
    );
    let waits = s.envoy.stat("dcr_guard.jwks_lease_waits").unwrap_or(0);
    assert!(waits >= 1, "no request waited for another's fetch");
}

#[test]
fn a_rotated_directory_key_is_picked_up_after_the_cooldown() {
    let s = start(Duration::ZERO, |f| {
        f["jwks_cache"] = json!({"kid_refetch_cooldown_seconds": 3})
    });
    let t0 = Instant::now();
    assert_eq!(s.post(&s.tpp.request()), 201);
    let rotated = TestKey::ec("dir-2");
    *s.keys.directory.lock().unwrap() = keys::jwks(&[&s.tpp.directory, &rotated]);
    let body = || {
        s.tpp.key.sign_default(
            &s.tpp
                .request_claims(&rotated.sign_default(&s.tpp.ssa_claims())),
        )
    };
    // Within the cooldown: the unknown kid does not trigger a fetch.
    assert_eq!(s.post(&body()), 400);
    assert_eq!(s.hits(DIRECTORY_PATH), 1);
    // After it: exactly one refetch, and the new key verifies.
    std::thread::sleep(Duration::from_secs(4).saturating_sub(t0.elapsed()));
    assert_eq!(s.post(&body()), 201);
    assert_eq!(s.post(&body()), 201);
    assert_eq!(s.hits(DIRECTORY_PATH), 2);
    assert_eq!(s.envoy.stat("dcr_guard.jwks_kid_refetches"), Some(1));
}

#[test]
fn an_outage_is_served_stale_then_refused_after_the_bound() {
    let s = start(Duration::ZERO, |f| {
        f["jwks_cache"] =
            json!({"min_ttl_seconds": 1, "default_ttl_seconds": 1, "stale_if_error_seconds": 3});
        f["rules"]["issuance_time"] = json!({"max_age_seconds": 60});
    });
    assert_eq!(s.post(&s.tpp.request()), 201);
    *s.keys.down.lock().unwrap() = true;
    // Expired, the refresh fails: served stale.
    std::thread::sleep(Duration::from_millis(1600));
    assert_eq!(s.post(&s.tpp.request()), 201);
    assert!(s.envoy.stat("dcr_guard.jwks_stale_serves").unwrap_or(0) >= 1);
    // Past expiry + stale bound: 503.
    std::thread::sleep(Duration::from_millis(3500));
    let r = s.envoy.send(
        "POST",
        "/register",
        &[("content-type", "application/jwt")],
        s.tpp.request().as_bytes(),
    );
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.header("retry-after").is_some());
    // The keystore is back: the next refresh heals it.
    *s.keys.down.lock().unwrap() = false;
    std::thread::sleep(Duration::from_millis(6000));
    assert_eq!(s.post(&s.tpp.request()), 201);
}

#[test]
fn the_directory_document_is_fetched_before_the_first_registration() {
    let s = start(Duration::ZERO, |_| {});
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.hits(DIRECTORY_PATH) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(s.hits(DIRECTORY_PATH), 1, "no background fetch");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(s.hits(DIRECTORY_PATH), 1, "two workers both refreshed");
    assert_eq!(s.post(&s.tpp.request()), 201);
    assert_eq!(s.hits(DIRECTORY_PATH), 1);
}

/// Issue 10 §2: a request whose SSA names an unknown kid takes the directory's fetch lease; if its
/// client hangs up before the answer, the fetch must still be published (the root context fetches
/// again under the lease), so that the next registration signed with the rotated key is accepted
/// at once instead of waiting out the lease and the kid cooldown. On the old code the answer was
/// dropped with the stream and the next registration got 503/400.
#[test]
fn a_client_that_hangs_up_mid_fetch_cannot_hold_off_a_rotation() {
    use std::io::Write;
    let s = start(Duration::from_millis(700), |f| {
        f["jwks_cache"] = json!({"kid_refetch_cooldown_seconds": 2})
    });
    // The background fetch at start-up, then past the cooldown.
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.hits(DIRECTORY_PATH) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(s.post(&s.tpp.request()), 201);
    std::thread::sleep(Duration::from_millis(2500));
    let rotated = TestKey::ec("dir-2");
    *s.keys.directory.lock().unwrap() = keys::jwks(&[&s.tpp.directory, &rotated]);
    let body = || {
        s.tpp.key.sign_default(
            &s.tpp
                .request_claims(&rotated.sign_default(&s.tpp.ssa_claims())),
        )
    };
    let before = s.hits(DIRECTORY_PATH);
    // The attacker: an unknown kid (its own signature does not matter), then it hangs up.
    let attack = body();
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", s.envoy.port)).unwrap();
    write!(
        conn,
        "POST /register HTTP/1.1\r\nhost: bank\r\ncontent-type: application/jwt\r\ncontent-length: {}\r\n\r\n{attack}",
        attack.len()
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    while s.hits(DIRECTORY_PATH) == before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        s.hits(DIRECTORY_PATH),
        before + 1,
        "the unknown kid did not refetch"
    );
    std::thread::sleep(Duration::from_millis(150));
    conn.shutdown(std::net::Shutdown::Both).unwrap();
    drop(conn);
    // A TPP signed with the rotated key, right after: accepted, within the cooldown.
    std::thread::sleep(Duration::from_millis(100));
    let r = s.envoy.send(
        "POST",
        "/register",
        &[("content-type", "application/jwt")],
        body().as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(s.post(&body()), 201);
    assert!(
        s.envoy.stat("dcr_guard.jwks_orphaned_fetches").unwrap_or(0) >= 1,
        "the fetch was not taken over by the root context"
    );
}
