//! dcr-guard's engine: everything that decides whether a Dynamic Client Registration request goes
//! on to the authorization server. Plain Rust: it takes time, keys and stored state as inputs and
//! never calls a host (this crate does not depend on proxy-wasm), so it is tested natively and
//! shared by the filter (the workspace's root crate) and the `dcr-guard` CLI.

pub mod binding;
pub mod cert;
pub mod claims;
pub mod config;
pub mod dn;
pub mod error;
pub mod escape;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod jose;
pub mod keys;
pub mod metrics;
pub mod path;
pub mod pipeline;
pub mod profile;
pub mod replay;
pub mod rules;
pub mod shared;
pub mod status;
