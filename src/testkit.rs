//! Test-only: the minting helpers shared with the integration tests.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    dead_code
)]

#[path = "../tests/common/keys.rs"]
pub mod keys;

#[path = "../tests/common/dcr.rs"]
pub mod dcr;
