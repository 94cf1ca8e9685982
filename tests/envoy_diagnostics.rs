//! What an operator reads when a deployment is wrong: a callout to a cluster that does not exist
//! names the cluster (Envoy only answers `BadArgument`), and the registration fails closed.

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
