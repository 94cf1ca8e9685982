#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    dead_code,
    unused_imports
)]
//! Integration-test support: test keys and JWS minting (`keys`), a recording
//! HTTP/1.1 test server and raw client (`http`), an HTTP/2 (h2c) client (`h2c`), and a real
//! Envoy (`envoy`).
//!
//! Use from an integration test with `mod common;`, from an example with
//! `#[path = "../tests/common/mod.rs"] mod common;`.

pub mod dns;
pub mod envoy;
pub mod etcd;
pub mod h2c;
pub mod http;
pub mod oidc;
pub mod prometheus;
pub mod tls;
pub mod yaml;

pub use dcr_guard_testkit::{dcr, keys};

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

/// A Brazilian TPP for the mTLS tests: UUID software and organisation ids, an RSA directory key
/// (the BR profile allows PS256 only).
pub const BR_SOFTWARE: &str = "5f4d1e9a-1111-4a2b-9c3d-0123456789ab";
pub const BR_ORG: &str = "74e929d9-33b6-4d85-8ba7-c146c867a817";

pub fn br_tpp() -> dcr::Tpp {
    let mut tpp = dcr::Tpp::new(keys::TestKey::rsa("dir"), keys::TestKey::ec("tpp"));
    tpp.software_id = BR_SOFTWARE.to_string();
    tpp.org_id = BR_ORG.to_string();
    tpp
}

/// An Open Finance Brasil-style transport certificate, in certificate order (C first, CN last).
pub fn br_cert(pki: &tls::Pki, software_id: &str, org_id: &str) -> tls::ClientIdentity {
    let oi = format!("OFBBR-{org_id}");
    pki.client(&[
        (tls::DnKind::C, "BR"),
        (tls::DnKind::O, "TPP Brasil Ltda"),
        (tls::DnKind::Ou, org_id),
        (tls::DnKind::OrganizationIdentifier, &oi),
        (tls::DnKind::Uid, software_id),
        (tls::DnKind::Cn, "tpp.example.com.br"),
    ])
}
