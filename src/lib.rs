//! dcr-guard, the proxy-wasm filter: the HTTP stream state machine ([`filter`]) over a small host
//! trait, bound to proxy-wasm for Envoy, Istio and Kong. Every decision about a registration is
//! made by the engine, [`dcr_guard_core`] (re-exported as `core`), which never calls the host.

pub use dcr_guard_core as core;

pub mod filter;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
