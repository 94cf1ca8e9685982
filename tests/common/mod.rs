#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    dead_code,
    unused_imports
)]
//! Integration-test support: test keys and JWS minting (`keys`), a recording
//! HTTP/1.1 test server and raw client (`http`), and a real Envoy (`envoy`).
//!
//! Use from an integration test with `mod common;`, from an example with
//! `#[path = "../tests/common/mod.rs"] mod common;`.

pub mod dcr;
pub mod envoy;
pub mod http;
pub mod keys;
pub mod oidc;
pub mod tls;

pub use envoy::{Envoy, EnvoyConfig, StartFailure};
pub use http::{Recorded, Reply, Response, TestServer};
pub use keys::TestKey;

/// The path of the directory JWKS in test configurations (`dcr::DIRECTORY_JWKS_URL`).
pub const DIRECTORY_JWKS_PATH: &str = "/keystore/openbanking.jwks";

/// A keystore serving the directory's JWKS and the TPP's software JWKS (with
/// `extra_software_keys`, e.g. `use: tls` transport keys, appended); 404 for anything else.
pub fn keystore(tpp: &dcr::Tpp, extra_software_keys: Vec<serde_json::Value>) -> TestServer {
    let directory_doc = tpp.directory_jwks();
    let mut software_doc = tpp.software_jwks();
    if let Some(keys) = software_doc["keys"].as_array_mut() {
        keys.extend(extra_software_keys);
    }
    let software_path = tpp.jwks_path();
    TestServer::start(move |r| {
        if r.path == DIRECTORY_JWKS_PATH {
            Reply::json(200, &directory_doc)
        } else if r.path == software_path {
            Reply::json(200, &software_doc)
        } else {
            Reply::text(404, "text/plain", "not found")
        }
    })
}
