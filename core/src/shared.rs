//! Host shared data as the core sees it: one trait for the replay store and the JWKS cache,
//! implemented over proxy-wasm in the glue and in memory ([`MemoryStore`]) for native tests.

/// Host shared data, as seen by the core. Implemented over proxy-wasm in the glue; in memory by
/// [`MemoryStore`].
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

/// Which host's shared-data semantics a [`MemoryStore`] follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Semantics {
    /// Envoy (proxy-wasm-cpp-host `SharedData::set`): one CAS counter for all keys; a write with
    /// `Some(c)` on a present key needs `c` to be its token; a write with `None` overwrites a
    /// present key; a write on an absent key creates it whatever the token. "Remove" stores an
    /// empty value (which has a token and reads as absent).
    Envoy,
    /// Kong (ngx_wasm_module): `None` creates an absent key only (a present key: `CasMismatch`);
    /// `Some(c)` needs a present key whose token is `c` (an absent key: `CasMismatch`). Delete and
    /// eviction remove the key; an optional byte budget makes a write that would exceed it `Full`.
    Kong,
}

/// Host shared data in memory, with the explicit semantics of Envoy or Kong ([`Semantics`]): the
/// one emulator every native test (and the benchmarks) drive the core and the glue with. Faults a
/// real store cannot produce on demand (a CAS race at a given moment, a failing host call) are
/// small wrappers in the tests that need them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryStore {
    semantics: Semantics,
    map: std::collections::HashMap<String, (Vec<u8>, u32)>,
    next_cas: u32,
    /// Kong's shared-memory zone size: keys plus values, in bytes (`None`: unbounded).
    capacity: Option<usize>,
    /// Writes attempted (successful or not).
    sets: usize,
}

impl MemoryStore {
    /// An empty store with Envoy's semantics.
    pub fn envoy() -> MemoryStore {
        MemoryStore::new(Semantics::Envoy)
    }

    /// An empty store with Kong's semantics, unbounded (see [`MemoryStore::with_capacity`]).
    pub fn kong() -> MemoryStore {
        MemoryStore::new(Semantics::Kong)
    }

    pub fn new(semantics: Semantics) -> MemoryStore {
        MemoryStore {
            semantics,
            map: std::collections::HashMap::new(),
            next_cas: 0,
            capacity: None,
            sets: 0,
        }
    }

    /// Bound the bytes held (keys plus values): a write that would exceed it fails with
    /// [`StoreError::Full`] (Kong's zone; Envoy has no such bound, but a test may want one).
    pub fn with_capacity(mut self, bytes: usize) -> MemoryStore {
        self.capacity = Some(bytes);
        self
    }

    /// Change the byte bound (`None`: unbounded).
    pub fn set_capacity(&mut self, bytes: Option<usize>) {
        self.capacity = bytes;
    }

    pub fn semantics(&self) -> Semantics {
        self.semantics
    }

    /// Bytes held: keys plus values.
    pub fn used(&self) -> usize {
        self.map.iter().map(|(k, (v, _))| k.len() + v.len()).sum()
    }

    /// Writes attempted so far.
    pub fn sets(&self) -> usize {
        self.sets
    }

    /// The stored bytes of `key` as they are (an Envoy "removed" key: `Some(empty)`).
    pub fn raw(&self, key: &str) -> Option<Vec<u8>> {
        self.map.get(key).map(|(v, _)| v.clone())
    }

    /// How many keys are present (an Envoy "removed" key counts: it is still there).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The current CAS token of `key`.
    pub fn token(&self, key: &str) -> Option<u32> {
        self.map.get(key).map(|(_, c)| *c)
    }

    /// Keys present (in no particular order).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }

    /// Write `value` whatever is there (another party, or a corrupt value planted by a test).
    pub fn put_raw(&mut self, key: &str, value: &[u8]) {
        let cas = self.bump();
        self.map.insert(key.to_string(), (value.to_vec(), cas));
    }

    /// What the host's "remove" does: Envoy stores an empty value (the key keeps a token); Kong
    /// deletes the key (as its eviction does).
    pub fn remove(&mut self, key: &str) {
        match self.semantics {
            Semantics::Envoy => self.put_raw(key, &[]),
            Semantics::Kong => {
                self.map.remove(key);
            }
        }
    }

    fn bump(&mut self) -> u32 {
        // Tokens are never 0 (Kong's "no token").
        self.next_cas = self.next_cas.wrapping_add(1).max(1);
        self.next_cas
    }
}

/// Envoy's semantics, the host the filter is mostly deployed on.
impl Default for MemoryStore {
    fn default() -> MemoryStore {
        MemoryStore::envoy()
    }
}

impl SharedData for MemoryStore {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        Ok(match self.map.get(key) {
            None => (None, None),
            Some((v, c)) => ((!v.is_empty()).then(|| v.clone()), Some(*c)),
        })
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        self.sets = self.sets.saturating_add(1);
        let current = self.token(key);
        match (self.semantics, current, cas) {
            (_, Some(cur), Some(c)) if cur != c => return Err(StoreError::CasMismatch),
            (Semantics::Kong, Some(_), None) | (Semantics::Kong, None, Some(_)) => {
                return Err(StoreError::CasMismatch)
            }
            _ => {}
        }
        if let Some(capacity) = self.capacity {
            let others = self
                .map
                .iter()
                .filter(|(k, _)| k.as_str() != key)
                .map(|(k, (v, _))| k.len() + v.len())
                .sum::<usize>();
            if others.saturating_add(key.len()).saturating_add(value.len()) > capacity {
                return Err(StoreError::Full);
            }
        }
        self.put_raw(key, value);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each host's answer to every kind of write: (semantics, key present?, cas, expected).
    #[test]
    fn write_semantics_per_host() {
        #[derive(Clone, Copy)]
        enum Cas {
            None,
            Current,
            Stale,
        }
        let cases: &[(Semantics, bool, Cas, Result<(), StoreError>)] = &[
            (Semantics::Envoy, false, Cas::None, Ok(())),
            (Semantics::Envoy, false, Cas::Stale, Ok(())),
            (Semantics::Envoy, true, Cas::None, Ok(())),
            (Semantics::Envoy, true, Cas::Current, Ok(())),
            (
                Semantics::Envoy,
                true,
                Cas::Stale,
                Err(StoreError::CasMismatch),
            ),
            (Semantics::Kong, false, Cas::None, Ok(())),
            (
                Semantics::Kong,
                false,
                Cas::Stale,
                Err(StoreError::CasMismatch),
            ),
            (
                Semantics::Kong,
                true,
                Cas::None,
                Err(StoreError::CasMismatch),
            ),
            (Semantics::Kong, true, Cas::Current, Ok(())),
            (
                Semantics::Kong,
                true,
                Cas::Stale,
                Err(StoreError::CasMismatch),
            ),
        ];
        for (i, (semantics, present, cas, want)) in cases.iter().enumerate() {
            let mut s = MemoryStore::new(*semantics);
            s.put_raw("other", b"x");
            if *present {
                s.put_raw("k", b"old");
            }
            let token = s.get("k").unwrap().1;
            let cas = match cas {
                Cas::None => None,
                Cas::Current => token,
                Cas::Stale => Some(token.unwrap_or(1000).wrapping_add(1000)),
            };
            assert_eq!(&s.set("k", b"new", cas), want, "case {i}");
            let value = s.get("k").unwrap().0;
            match (want, present) {
                (Ok(()), _) => assert_eq!(value.as_deref(), Some(&b"new"[..]), "case {i}"),
                (Err(_), true) => assert_eq!(value.as_deref(), Some(&b"old"[..]), "case {i}"),
                (Err(_), false) => assert_eq!(value, None, "case {i}"),
            }
        }
    }

    #[test]
    fn tokens_change_on_every_write_and_are_never_zero() {
        let mut s = MemoryStore::envoy();
        s.set("a", b"1", None).unwrap();
        let t1 = s.get("a").unwrap().1.unwrap();
        s.set("b", b"1", None).unwrap();
        s.set("a", b"2", Some(t1)).unwrap();
        let t2 = s.get("a").unwrap().1.unwrap();
        assert_ne!(t1, t2);
        assert_ne!(t1, 0);
        assert_eq!(s.set("a", b"3", Some(t1)), Err(StoreError::CasMismatch));
        assert_eq!(s.sets(), 4);
    }

    #[test]
    fn remove_is_an_empty_value_on_envoy_and_a_delete_on_kong() {
        let mut e = MemoryStore::envoy();
        e.put_raw("k", b"v");
        e.remove("k");
        let (value, cas) = e.get("k").unwrap();
        assert_eq!(value, None);
        assert!(cas.is_some(), "Envoy's removed key keeps a token");
        assert_eq!(e.raw("k"), Some(Vec::new()));

        let mut k = MemoryStore::kong();
        k.put_raw("k", b"v");
        k.remove("k");
        assert_eq!(k.get("k").unwrap(), (None, None));
        // Absent again: a create-only write succeeds.
        k.set("k", b"w", None).unwrap();
    }

    #[test]
    fn capacity_makes_growth_full_but_not_a_same_size_update() {
        let mut s = MemoryStore::kong().with_capacity(10);
        s.set("k", b"12345678", None).unwrap(); // 1 + 8 = 9 bytes
        assert_eq!(s.used(), 9);
        assert_eq!(s.set("j", b"1", None), Err(StoreError::Full));
        let t = s.get("k").unwrap().1;
        s.set("k", b"abcdefgh", t).unwrap();
        let t = s.get("k").unwrap().1;
        assert_eq!(s.set("k", b"abcdefghij", t), Err(StoreError::Full));
        s.set_capacity(None);
        s.set("j", b"1", None).unwrap();
    }
}
