//! Replay detection across the worker threads of one Envoy: the same registration sent many
//! times in parallel reaches the AS exactly once.

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
use common::{Envoy, EnvoyConfig, Reply, TestServer};
use serde_json::json;

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
