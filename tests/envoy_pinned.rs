//! `directories[].jwks[].inline` through a real Envoy: a directory's keys pinned in the
//! configuration verify SSAs without any fetch (an air-gapped deployment: no directory cluster at
//! all), keep verifying while the directory's keystore is down (pinned beside the URL during an
//! incident), and a bad pinned key stops the configuration from loading, named.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::dcr::Tpp;
use common::keys::TestKey;
use common::{Envoy, EnvoyConfig, Reply, TestServer};
use serde_json::json;

/// The software keystore only: nothing serves the directory's document.
fn software_keystore(tpp: &Tpp) -> TestServer {
    let (path, doc) = (tpp.jwks_path(), tpp.software_jwks());
    TestServer::start(move |r| {
        if r.path == path {
            Reply::json(200, &doc)
        } else {
            Reply::text(404, "text/plain", "not found")
        }
    })
}

fn post(envoy: &Envoy, body: &str) -> common::Response {
    envoy.send(
        "POST",
        "/register",
        &[("content-type", "application/jwt")],
        body.as_bytes(),
    )
}

#[test]
fn pinned_directory_keys_verify_without_a_fetch() {
    let tpp = Tpp::new(TestKey::rsa("ob-signing"), TestKey::ec("tpp-1"));
    let keystore = software_keystore(&tpp);
    let upstream = TestServer::always(Reply::json(201, &json!({"client_id": "c-1"})));

    // Only pinned keys: no directory cluster exists in this Envoy.
    let mut filter = tpp.filter_config("unused", "software");
    filter["directories"][0]["jwks"] = json!([{"inline": tpp.directory_jwks()}]);
    let envoy = Envoy::start(
        &EnvoyConfig::new(filter.clone(), upstream.port()).cluster("software", keystore.port()),
    );
    for _ in 0..2 {
        let r = post(&envoy, &tpp.request());
        assert_eq!(r.status, 201, "{}", r.text());
    }
    // An SSA signed by a key that is not pinned: refused, still no directory fetch.
    let stranger = Tpp::new(TestKey::rsa("not-pinned"), TestKey::ec("tpp-1"));
    let r = post(&envoy, &stranger.request());
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"], "invalid_software_statement");
    // Only the software JWKS was ever fetched (once: cached after).
    assert_eq!(
        keystore
            .requests()
            .iter()
            .map(|r| r.path.clone())
            .collect::<Vec<_>>(),
        vec![tpp.jwks_path()]
    );
    assert_eq!(upstream.requests().len(), 2);
    drop(envoy);

    // Pinned beside the directory's URL while its keystore is down (a cluster to a closed port):
    // the pinned key still verifies.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut filter = tpp.filter_config("directory", "software");
    filter["directories"][0]["jwks"] = json!([
        filter["directories"][0]["jwks"][0].clone(),
        {"inline": tpp.directory_jwks()}
    ]);
    filter["limits"] = json!({"callout_timeout_ms": 500});
    let envoy = Envoy::start(
        &EnvoyConfig::new(filter, upstream.port())
            .cluster("software", keystore.port())
            .cluster("directory", closed_port),
    );
    let r = post(&envoy, &tpp.request());
    assert_eq!(r.status, 201, "{}", r.text());
}

#[test]
fn a_bad_pinned_key_stops_the_configuration_named() {
    let tpp = Tpp::new(TestKey::ec("ob-signing"), TestKey::ec("tpp-1"));
    let upstream = TestServer::always(Reply::status(201));
    let mut private = tpp.directory.public_jwk();
    private["d"] = json!("c2VjcmV0");
    let mut filter = tpp.filter_config("directory", "software");
    filter["directories"][0]["jwks"] = json!([{"inline": {"keys": [private]}}]);
    let failure = Envoy::try_start(&EnvoyConfig::new(filter, upstream.port()))
        .err()
        .expect("Envoy started with a private key pinned");
    assert!(
        failure.log.contains(
            "invalid configuration field `directories[0].jwks[0].inline.keys[0]`: the key (kid `ob-signing`) carries the private key member `d`"
        ),
        "{}",
        failure.log
    );
    assert!(
        !failure.log.contains("c2VjcmV0"),
        "the private member was echoed"
    );
}
