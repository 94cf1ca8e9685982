//! Replay detection across the worker threads of one Envoy: the same registration sent many
//! times in parallel reaches the AS exactly once; one TPP filling its share of the store does not
//! stop another from registering.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::dcr::Tpp;
use common::keys::TestKey;
use common::{Envoy, EnvoyConfig, Reply, TestServer, DIRECTORY_JWKS_PATH};
use serde_json::{json, Value};

#[test]
fn parallel_replays_reach_the_upstream_once() {
    let tpp = Tpp::new(TestKey::ec("dir"), TestKey::ec("tpp"));
    let keystore = common::keystore(&tpp, Vec::new());
    let upstream = TestServer::always(Reply::json(201, &json!({"client_id": "c1"})));
    let cfg = EnvoyConfig::new(tpp.filter_config("keystore", "keystore"), upstream.port())
        .cluster("keystore", keystore.port())
        .concurrency(2);
    let envoy = Arc::new(Envoy::start(&cfg));

    for round in 0..3 {
        let body = Arc::new(tpp.request());
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (envoy, body) = (Arc::clone(&envoy), Arc::clone(&body));
                std::thread::spawn(move || {
                    envoy
                        .send(
                            "POST",
                            "/register",
                            &[("content-type", "application/jwt")],
                            body.as_bytes(),
                        )
                        .status
                })
            })
            .collect();
        let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        std::thread::sleep(Duration::from_millis(50));
        let accepted = statuses.iter().filter(|s| **s == 201).count();
        let replayed = statuses.iter().filter(|s| **s == 400).count();
        assert_eq!(accepted, 1, "round {round}: {statuses:?}");
        assert_eq!(replayed, 15, "round {round}: {statuses:?}");
        assert_eq!(upstream.requests().len(), 1, "round {round}");
        upstream.clear();
    }
    assert_eq!(envoy.stat("dcr_guard.failed.request_jti"), Some(45));
}

#[test]
fn one_issuer_over_its_share_gets_503_while_another_registers() {
    let flood = Tpp::new(TestKey::ec("dir"), TestKey::ec("tpp"));
    // Another TPP vouched for by the same directory (its SSAs are signed with flood.directory).
    let mut other = Tpp::new(TestKey::ec("unused"), TestKey::ec("tpp-2"));
    other.software_id = "Zq9OtherSoftware00001".to_string();
    let other_request = |other: &Tpp| {
        let ssa = flood.directory.sign_default(&other.ssa_claims());
        other.key.sign_default(&other.request_claims(&ssa))
    };
    let docs: Vec<(String, Value)> = vec![
        (DIRECTORY_JWKS_PATH.to_string(), flood.directory_jwks()),
        (flood.jwks_path(), flood.software_jwks()),
        (other.jwks_path(), other.software_jwks()),
    ];
    let keystore = TestServer::start(move |r| match docs.iter().find(|(p, _)| *p == r.path) {
        Some((_, doc)) => Reply::json(200, doc),
        None => Reply::text(404, "text/plain", "not found"),
    });
    let upstream = TestServer::always(Reply::json(201, &json!({"client_id": "c1"})));
    // One bucket of 8 entries; an issuer may hold half of it.
    let mut filter = flood.filter_config("keystore", "keystore");
    filter["replay"] = json!({"buckets": 1, "entries_per_bucket": 8, "issuer_share_percent": 50});
    let cfg = EnvoyConfig::new(filter, upstream.port())
        .cluster("keystore", keystore.port())
        .concurrency(2);
    let envoy = Envoy::start(&cfg);
    let post = |body: &str| {
        envoy.send(
            "POST",
            "/register",
            &[("content-type", "application/jwt")],
            body.as_bytes(),
        )
    };

    let first = flood.request();
    assert_eq!(post(&first).status, 201);
    for i in 1..4 {
        assert_eq!(post(&flood.request()).status, 201, "flood {i}");
    }
    // Its share is used up: its own new registrations get 503, with Retry-After.
    for i in 4..8 {
        let r = post(&flood.request());
        assert_eq!(r.status, 503, "flood {i}");
        assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["error"], "temporarily_unavailable");
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .contains("share of the replay store"),
            "{body}"
        );
    }
    // Its replays are still replays.
    assert_eq!(post(&first).status, 400);
    // The other TPP registers.
    for i in 0..4 {
        assert_eq!(post(&other_request(&other)).status, 201, "other {i}");
    }
    assert_eq!(upstream.requests().len(), 8);
}

#[test]
fn every_counter_exists_from_the_start() {
    let tpp = Tpp::new(TestKey::ec("dir"), TestKey::ec("tpp"));
    let keystore = common::keystore(&tpp, Vec::new());
    let upstream = TestServer::always(Reply::json(201, &json!({"client_id": "c1"})));
    let cfg = EnvoyConfig::new(tpp.filter_config("keystore", "keystore"), upstream.port())
        .cluster("keystore", keystore.port());
    let envoy = Envoy::start(&cfg);
    // Before any request: every counter the filter can touch is there (a dashboard sees a zero,
    // not a missing series) and every request counter is 0. (The JWKS counters may already have
    // moved: the filter prefetches the directory's keys when it is configured.)
    for name in dcr_guard_core::metrics::all() {
        let value = envoy.stat(&name);
        if name.starts_with("dcr_guard.jwks_") {
            assert!(value.is_some(), "{name}");
        } else {
            assert_eq!(value, Some(0), "{name}");
        }
    }
}

#[test]
fn validation_time_is_a_histogram() {
    let tpp = Tpp::new(TestKey::ec("dir"), TestKey::ec("tpp"));
    let keystore = common::keystore(&tpp, Vec::new());
    let upstream = TestServer::always(Reply::json(201, &json!({"client_id": "c1"})));
    let cfg = EnvoyConfig::new(tpp.filter_config("keystore", "keystore"), upstream.port())
        .cluster("keystore", keystore.port());
    let envoy = Envoy::start(&cfg);
    for _ in 0..3 {
        let r = envoy.send(
            "POST",
            "/register",
            &[("content-type", "application/jwt")],
            tpp.request().as_bytes(),
        );
        assert_eq!(r.status, 201);
    }
    // Envoy merges histograms when it flushes stats (every 5 s by default).
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let text = envoy.admin("GET", "/stats?filter=validation_ms").text();
        let line = text
            .lines()
            .find(|l| l.contains("dcr_guard.validation_ms"))
            .unwrap_or_default()
            .to_string();
        if line.contains("P50(") && !line.contains("No recorded values") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no recorded validation times: {text}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
