//! The key documents of one validation, and the one routine that waits for them, gathers them,
//! retries an unknown `kid` once and maps a key that could not be found to its fault — shared by
//! the create validation (directory and software JWKS) and the token binding (the AS's JWKS).
//!
//! The validation asks for what it lacks ([`KeyStep::Fetch`]); the host fetches each document
//! (through the shared cache) and hands it back with [`Docs::supply`]. A signature whose `kid` is in
//! none of the documents, all of which were read, asks once per request for the same documents
//! again ([`KeyStep::Refetch`]: the cache refetches only past its cooldown — a key rotation).

use super::{Fetched, JwksSource};
use crate::jose::{JoseError, JwkSet};

/// The documents one request has been handed, by URL (the first answer for a URL counts).
#[derive(Debug, Default)]
pub struct Docs {
    docs: Vec<(String, Fetched)>,
    /// URLs already asked again for an unknown `kid` (once per request).
    kid_retried: Vec<String>,
}

/// What a check over key documents needs next, or its outcome.
#[derive(Debug)]
pub enum KeyStep<T> {
    /// Fetch these documents (not handed back yet).
    Fetch(Vec<JwksSource>),
    /// The documents lack the signature's `kid`: ask again for them (once per request).
    Refetch(Vec<JwksSource>),
    /// The check passed.
    Passed(T),
    /// The check failed.
    Failed(KeyFailure),
}

/// A failed check, with what the documents said about why a key may be missing.
#[derive(Debug)]
pub struct KeyFailure {
    pub error: JoseError,
    /// The first document that could not be had: `"{authority} {why}"`.
    pub unavailable: Option<String>,
    /// The first document that answered junk: `"{authority} {why}"`.
    pub unusable: Option<String>,
}

/// Why a key could not be found, when a document is to blame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeystoreFault<'a> {
    /// A keystore was down: a dependency fault (503).
    Unavailable(&'a str),
    /// A keystore answered with something unusable: the client's fault (400).
    Unusable(&'a str),
}

impl KeyFailure {
    /// A key not found (`UnknownKid`, `NoKey`) while a keystore was down (first) or answered junk
    /// is that keystore's fault; any other failure (a bad signature, a refused algorithm) is not.
    pub fn keystore_fault(&self) -> Option<KeystoreFault<'_>> {
        if !matches!(self.error, JoseError::UnknownKid(_) | JoseError::NoKey) {
            return None;
        }
        self.unavailable
            .as_deref()
            .map(KeystoreFault::Unavailable)
            .or(self.unusable.as_deref().map(KeystoreFault::Unusable))
    }
}

/// The documents of a set of sources, all handed back.
#[derive(Debug, Default)]
pub struct Gathered<'a> {
    /// The key sets that were read.
    pub sets: Vec<&'a JwkSet>,
    /// `"{authority} {why}"` of each document that could not be had.
    pub unavailable: Vec<String>,
    /// `"{authority} {why}"` of each document that answered junk.
    pub unusable: Vec<String>,
}

impl Docs {
    /// Hand back a fetched document (a second answer for the same URL is ignored).
    pub fn supply(&mut self, url: &str, fetched: Fetched) {
        if !self.docs.iter().any(|(u, _)| u == url) {
            self.docs.push((url.to_string(), fetched));
        }
    }

    /// The document handed back for `url`.
    pub fn get(&self, url: &str) -> Option<&Fetched> {
        self.docs.iter().find(|(u, _)| u == url).map(|(_, f)| f)
    }

    /// The outcome of every source's document, or the sources not handed back yet.
    pub fn gather<'a>(&'a self, sources: &[JwksSource]) -> Result<Gathered<'a>, Vec<JwksSource>> {
        let mut missing = Vec::new();
        let mut g = Gathered::default();
        for src in sources {
            match self.get(&src.url) {
                None => missing.push(src.clone()),
                Some(Fetched::Keys(set)) => g.sets.push(set.as_ref()),
                Some(Fetched::Unavailable(m)) => {
                    g.unavailable.push(format!("{} {m}", src.authority))
                }
                Some(Fetched::Unusable(m)) => g.unusable.push(format!("{} {m}", src.authority)),
            }
        }
        if missing.is_empty() {
            Ok(g)
        } else {
            Err(missing)
        }
    }

    /// An unknown `kid`: ask once for the documents again (the cache decides whether that is a
    /// refetch, by its cooldown). Only when every document was read (one that could not be had
    /// is not worth asking for again) and none was asked for again already.
    pub fn retry_kid(&mut self, sources: &[JwksSource]) -> Option<Vec<JwksSource>> {
        let all_read = sources
            .iter()
            .all(|s| matches!(self.get(&s.url), Some(Fetched::Keys(_))));
        if !all_read || sources.iter().any(|s| self.kid_retried.contains(&s.url)) {
            return None;
        }
        for s in sources {
            self.kid_retried.push(s.url.clone());
            self.docs.retain(|(u, _)| *u != s.url);
        }
        Some(sources.to_vec())
    }

    /// The routine: wait for `sources`, run `check` over their key sets, and on an unknown `kid`
    /// ask for them again once ([`Docs::retry_kid`]). `check` sees the gathered documents (for a
    /// verdict cache keyed by the key sets' identity).
    pub fn check<T>(
        &mut self,
        sources: &[JwksSource],
        check: impl FnOnce(&Gathered<'_>) -> Result<T, JoseError>,
    ) -> KeyStep<T> {
        let failure = match self.gather(sources) {
            Err(missing) => return KeyStep::Fetch(missing),
            Ok(g) => match check(&g) {
                Ok(t) => return KeyStep::Passed(t),
                Err(error) => KeyFailure {
                    error,
                    unavailable: g.unavailable.into_iter().next(),
                    unusable: g.unusable.into_iter().next(),
                },
            },
        };
        if matches!(failure.error, JoseError::UnknownKid(_)) {
            if let Some(again) = self.retry_kid(sources) {
                return KeyStep::Refetch(again);
            }
        }
        KeyStep::Failed(failure)
    }
}
