//! Host shared data as the core sees it: one trait for the replay store and the JWKS cache,
//! implemented over proxy-wasm in the glue and by fakes in tests.

/// Host shared data, as seen by the core. Implemented over proxy-wasm in the glue; fakes in tests.
pub trait SharedData {
    /// The value and its CAS token; `Ok((None, _))` when absent. (Envoy stores an empty value on
    /// "remove": treat an empty value as absent.)
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError>;
    /// Write. `cas: Some(c)` succeeds only if the current token is `c` (else `Err(CasMismatch)`);
    /// `cas: None` is host-specific (Envoy: unconditional overwrite or create; Kong:
    /// create-only-if-absent) — so the replay code must NEVER rely on `None` for updating an
    /// existing bucket.
    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError>;
}

/// A failure reported by the host's shared data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The key's CAS token changed since it was read (or, on Kong, a create found the key present).
    CasMismatch,
    /// The host has no room (Kong's shared-memory zone is full).
    Full,
    /// Any other host failure.
    Other(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::CasMismatch => f.write_str("shared data CAS mismatch"),
            StoreError::Full => f.write_str("shared data is full"),
            StoreError::Other(m) => write!(f, "shared data failed: {m}"),
        }
    }
}

impl std::error::Error for StoreError {}
