//! dcr-guard: in-line validation of Open Banking Dynamic Client Registration (DCR).
//!
//! The core (everything but [`filter`]'s wasm glue) is plain Rust: it takes time, keys and stored
//! state as inputs and never calls a host, so it is tested natively.

pub mod binding;
pub mod cert;
pub mod claims;
pub mod config;
pub mod dn;
pub mod error;
pub mod escape;
pub mod filter;
pub mod forward;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod jose;
pub mod jwks_cache;
pub mod path;
pub mod pipeline;
pub mod profile;
pub mod replay;
pub mod rules;
pub mod shared;
#[cfg(test)]
mod testkit;
