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
