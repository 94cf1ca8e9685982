//! Test support shared by every crate of the workspace (dev-dependency only, never shipped): test
//! keys and JWS minting (`keys`), and a UK/AU/BR TPP as a directory would describe it (`dcr`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod dcr;
pub mod keys;
