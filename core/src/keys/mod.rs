//! Key supply: everything between "this signature needs the keys of that URL" and a parsed key
//! set (spec §4a "JWKS cache and unknown kid", §7).
//!
//! * [`source`]: where a document comes from (a checked https URL and its upstream), including the
//!   software JWKS a verified SSA names, fetched only from allowed hosts;
//! * [`cache`]: the documents shared by every worker, single-flight fetch leases, unknown-`kid`
//!   refetch, stale-if-error, background refresh and the failure records, all over host shared
//!   data written by CAS;
//! * [`parsed`]: each worker's parsed key sets, by generation;
//! * [`fetched`]: the outcome of one fetch;
//! * [`docs`]: one validation's documents and the one wait / gather / unknown-`kid` retry routine
//!   (with the mapping of a key not found to 503 or 400) used by the create validation and the
//!   token binding;
//! * [`verdicts`]: the SSA signature verdict cache.
//!
//! No host calls: the host's shared data is reached through [`crate::shared::SharedData`] and time
//! is an argument.

pub mod cache;
pub mod docs;
pub mod fetched;
pub mod parsed;
pub mod source;
pub mod verdicts;

pub use cache::{
    ttl_from_cache_control, Cache, CachePolicy, Decision, Entry, Need, Poll, Settled,
    COUNTER_CACHE_HITS, COUNTER_FETCHES, COUNTER_FETCH_FAILURES, COUNTER_KID_REFETCHES,
    COUNTER_LEASE_WAITS, COUNTER_STALE_SERVES,
};
pub use docs::{Docs, Gathered, KeyFailure, KeyStep, KeystoreFault};
pub use fetched::Fetched;
pub use parsed::Parsed;
pub use source::{
    jwks_source, pinned_source, software_source, JwksSource, Pinned, SoftwareSourceError,
};
pub use verdicts::{Hit, SsaMemo, Verdicts, VERDICT_MAX_SSA_BYTES};
