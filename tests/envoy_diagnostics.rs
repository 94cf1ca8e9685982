//! What an operator reads when a deployment is wrong: a callout to a cluster that does not exist
//! names the cluster (Envoy only answers `BadArgument`), and the registration fails closed; held
//! headers on a filter config without `allow_on_headers_stop_iteration` are logged at error level
//! naming the flag, and counted.

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
use common::{Envoy, EnvoyConfig, Reply, TestServer};
use serde_json::json;

#[test]
fn a_callout_to_a_missing_cluster_names_it() {
    let tpp = Tpp::new(TestKey::ec("dir"), TestKey::ec("tpp"));
    let upstream = TestServer::always(Reply::json(201, &json!({"client_id": "c1"})));
    // The directory's upstream is not a cluster of this Envoy.
    let cfg = EnvoyConfig::new(
        tpp.filter_config("no-such-cluster", "keystore"),
        upstream.port(),
    );
    let envoy = Envoy::start(&cfg);
    let r = envoy.send(
        "POST",
        "/register",
        &[("content-type", "application/jwt")],
        tpp.request().as_bytes(),
    );
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(upstream.requests().is_empty());
    assert!(
        envoy.wait_for_log(
            "is `no-such-cluster` a cluster of this Envoy?",
            Duration::from_secs(5)
        ),
        "{}",
        envoy.log()
    );
}

#[test]
fn held_headers_without_allow_on_headers_stop_iteration_are_logged_loudly() {
    let tpp = Tpp::new(TestKey::ec("dir"), TestKey::ec("tpp"));
    let keystore = common::keystore(&tpp, vec![]);
    let upstream = TestServer::always(Reply::json(201, &json!({"client_id": "c1"})));
    // The filter holds headers (`hold_headers` defaults to true), the kit lacks the flag; a
    // request timeout of 3 s ends (504) the request Envoy never lets the filter see.
    let cfg = EnvoyConfig::new(tpp.filter_config("keystore", "keystore"), upstream.port())
        .cluster("keystore", keystore.port())
        .hold_headers(false)
        .edit(|b| {
            b.pointer_mut("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config")
                .unwrap()["request_timeout"] = json!("3s");
        });
    let envoy = Envoy::start(&cfg);
    let r = envoy.send(
        "POST",
        "/register",
        &[("content-type", "application/jwt")],
        tpp.request().as_bytes(),
    );
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(upstream.requests().is_empty());
    let line = "dcr-guard: \"hold_headers\" is true but the host does not give the filter the \
                request body while it holds the headers";
    assert!(
        envoy.wait_for_log(line, Duration::from_secs(5)),
        "{}",
        envoy.log()
    );
    let log = envoy.log();
    let logged: Vec<&str> = log.lines().filter(|l| l.contains(line)).collect();
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert!(logged[0].contains("[error]"), "{}", logged[0]);
    assert!(logged[0].contains("allow_on_headers_stop_iteration: true"));
    assert_eq!(envoy.stat("dcr_guard.body_not_delivered"), Some(1));

    // With the flag, the same request goes through and nothing is counted or logged.
    let envoy = Envoy::start(
        &EnvoyConfig::new(tpp.filter_config("keystore", "keystore"), upstream.port())
            .cluster("keystore", keystore.port()),
    );
    let r = envoy.send(
        "POST",
        "/register",
        &[("content-type", "application/jwt")],
        tpp.request().as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!envoy.log().contains(line), "{}", envoy.log());
    assert_eq!(envoy.stat("dcr_guard.body_not_delivered"), Some(0));
}
