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

    /// The outcome of every source's document, or the sources not handed back yet. A pinned
    /// source's keys are always there: it is never missing.
    pub fn gather<'a>(
        &'a self,
        sources: &'a [JwksSource],
    ) -> Result<Gathered<'a>, Vec<JwksSource>> {
        let mut missing = Vec::new();
        let mut g = Gathered::default();
        for src in sources {
            if let Some(pinned) = &src.pinned {
                g.sets.push(pinned.0.as_ref());
                continue;
            }
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
    /// Pinned sources are never asked for (their keys do not change); with no other source there
    /// is nothing to ask for.
    pub fn retry_kid(&mut self, sources: &[JwksSource]) -> Option<Vec<JwksSource>> {
        let fetched: Vec<&JwksSource> = sources.iter().filter(|s| s.pinned.is_none()).collect();
        let all_read = fetched
            .iter()
            .all(|s| matches!(self.get(&s.url), Some(Fetched::Keys(_))));
        if fetched.is_empty()
            || !all_read
            || fetched.iter().any(|s| self.kid_retried.contains(&s.url))
        {
            return None;
        }
        for s in &fetched {
            self.kid_retried.push(s.url.clone());
            self.docs.retain(|(u, _)| *u != s.url);
        }
        Some(fetched.into_iter().cloned().collect())
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

#[cfg(test)]
#[allow(clippy::type_complexity)]
mod tests {
    use super::*;
    use crate::jose::{Alg, Jws};
    use dcr_guard_testkit::keys::{jwks, TestKey};
    use serde_json::json;
    use std::rc::Rc;

    fn src(n: u8) -> JwksSource {
        crate::keys::jwks_source(&format!("https://ks{n}.example/jwks"), "ks").unwrap()
    }

    fn keys(of: &[&TestKey]) -> Fetched {
        Fetched::Keys(Rc::new(
            JwkSet::parse(jwks(of).to_string().as_bytes(), 10).unwrap(),
        ))
    }

    /// What the routine says for a token signed by `signer`, after each document is handed back
    /// as given (in order, one round per entry of `rounds`).
    fn outcome(signer: &TestKey, sources: &[JwksSource], rounds: &[Vec<Fetched>]) -> Vec<String> {
        let token = Jws::parse(&signer.sign_default(&json!({"iss": "x"}))).unwrap();
        let mut docs = Docs::default();
        let mut said = Vec::new();
        let mut rounds = rounds.iter();
        loop {
            let step = docs.check(sources, |g| {
                crate::jose::verify(&token, &g.sets, &[Alg::Es256]).map(|_| ())
            });
            let (urls, word) = match step {
                KeyStep::Passed(()) => {
                    said.push("passed".to_string());
                    return said;
                }
                KeyStep::Failed(f) => {
                    said.push(match f.keystore_fault() {
                        Some(KeystoreFault::Unavailable(m)) => format!("unavailable: {m}"),
                        Some(KeystoreFault::Unusable(m)) => format!("unusable: {m}"),
                        None => format!("failed: {}", f.error),
                    });
                    return said;
                }
                KeyStep::Fetch(s) => (s, "fetch"),
                KeyStep::Refetch(s) => (s, "refetch"),
            };
            said.push(format!("{word} {}", urls.len()));
            let Some(round) = rounds.next() else {
                return said;
            };
            for (s, f) in urls.iter().zip(round.iter()) {
                docs.supply(&s.url, f.clone());
            }
        }
    }

    #[test]
    fn wait_gather_retry_and_fault_table() {
        let (k1, k2, rotated) = (
            TestKey::ec("k1"),
            TestKey::ec("k2"),
            TestKey::ec("k1").with_kid("k-new"),
        );
        let down = || Fetched::Unavailable("answered HTTP 503".into());
        let junk = || Fetched::Unusable("answered HTTP 404".into());
        let one = [src(1)];
        let two = [src(1), src(2)];
        // (signer, sources, what each round hands back) → what the routine said, in order.
        let cases: Vec<(&TestKey, &[JwksSource], Vec<Vec<Fetched>>, Vec<&str>)> = vec![
            (
                &k1,
                &one,
                vec![vec![keys(&[&k1])]],
                vec!["fetch 1", "passed"],
            ),
            // Found in the second of two documents.
            (
                &k2,
                &two,
                vec![vec![keys(&[&k1]), keys(&[&k2])]],
                vec!["fetch 2", "passed"],
            ),
            // An unknown kid: asked once more (a key rotation), found.
            (
                &rotated,
                &one,
                vec![vec![keys(&[&k1])], vec![keys(&[&rotated])]],
                vec!["fetch 1", "refetch 1", "passed"],
            ),
            // Still unknown after the retry: no second retry.
            (
                &rotated,
                &one,
                vec![vec![keys(&[&k1])], vec![keys(&[&k1])]],
                vec!["fetch 1", "refetch 1", "failed: no key with kid \"k-new\""],
            ),
            // A keystore down and the key not in the others: its fault (503), never retried.
            (
                &rotated,
                &two,
                vec![vec![keys(&[&k1]), down()]],
                vec!["fetch 2", "unavailable: ks2.example answered HTTP 503"],
            ),
            // Down and junk: the dependency fault wins.
            (
                &k1,
                &two,
                vec![vec![junk(), down()]],
                vec!["fetch 2", "unavailable: ks2.example answered HTTP 503"],
            ),
            (
                &k1,
                &one,
                vec![vec![junk()]],
                vec!["fetch 1", "unusable: ks1.example answered HTTP 404"],
            ),
            // A key that is there but does not verify is nobody's fault but the signer's, even
            // with a keystore down.
            (
                &k1,
                &two,
                vec![vec![keys(&[&k2.with_kid("k1")]), down()]],
                vec!["fetch 2", "failed: signature verification failed"],
            ),
        ];
        for (i, (signer, sources, rounds, want)) in cases.iter().enumerate() {
            assert_eq!(&outcome(signer, sources, rounds), want, "case {i}");
        }
    }

    fn pinned(name: &str, of: &[&TestKey]) -> JwksSource {
        crate::keys::pinned_source(
            name,
            JwkSet::parse(jwks(of).to_string().as_bytes(), 10).unwrap(),
        )
    }

    /// Pinned documents (`directories[].jwks[].inline`) are never fetched nor asked for again; their
    /// keys count with the fetched ones.
    #[test]
    fn pinned_documents_are_never_fetched_and_count_with_fetched_ones() {
        let (k1, k2, rotated) = (
            TestKey::ec("k1"),
            TestKey::ec("k2"),
            TestKey::ec("k1").with_kid("k-new"),
        );
        let down = || Fetched::Unavailable("answered HTTP 503".into());
        let only_pinned = [pinned("p", &[&k1])];
        let both = [src(1), pinned("p", &[&k1])];
        let cases: Vec<(&TestKey, &[JwksSource], Vec<Vec<Fetched>>, Vec<&str>)> = vec![
            // Pinned only: nothing to fetch.
            (&k1, &only_pinned, vec![], vec!["passed"]),
            // An unknown kid with only pinned keys: no refetch (nothing can change).
            (
                &rotated,
                &only_pinned,
                vec![],
                vec!["failed: no key with kid \"k-new\""],
            ),
            // The remote document is fetched, the pinned one is not; the key is the pinned one
            // while the keystore is down (an incident: the directory's key pinned).
            (&k1, &both, vec![vec![down()]], vec!["fetch 1", "passed"]),
            // A key in the fetched document, pinned ones beside it.
            (
                &k2,
                &both,
                vec![vec![keys(&[&k2])]],
                vec!["fetch 1", "passed"],
            ),
            // An unknown kid: only the fetched document is asked for again.
            (
                &rotated,
                &both,
                vec![vec![keys(&[&k2])], vec![keys(&[&rotated])]],
                vec!["fetch 1", "refetch 1", "passed"],
            ),
            // A pinned kid served by the keystore with other key material: ambiguous, refused.
            (
                &k1,
                &both,
                vec![vec![keys(&[&k2.with_kid("k1")])]],
                vec!["fetch 1", "failed: more than one suitable key"],
            ),
        ];
        for (i, (signer, sources, rounds, want)) in cases.iter().enumerate() {
            let got = outcome(signer, sources, rounds);
            assert_eq!(&got, want, "case {i}");
        }
    }

    #[test]
    fn the_first_answer_for_a_url_counts_and_a_retry_forgets_only_its_sources() {
        let k1 = TestKey::ec("k1");
        let mut docs = Docs::default();
        let (a, b) = (src(1), src(2));
        docs.supply(&a.url, keys(&[&k1]));
        docs.supply(&a.url, Fetched::Unavailable("late".into()));
        assert!(matches!(docs.get(&a.url), Some(Fetched::Keys(_))));
        docs.supply(&b.url, keys(&[&k1]));
        assert_eq!(
            docs.retry_kid(std::slice::from_ref(&a)).map(|v| v.len()),
            Some(1)
        );
        assert!(docs.get(&a.url).is_none());
        assert!(docs.get(&b.url).is_some());
        // Once per URL.
        docs.supply(&a.url, keys(&[&k1]));
        assert!(docs.retry_kid(std::slice::from_ref(&a)).is_none());
        // A document that could not be had is not asked for again.
        let mut docs = Docs::default();
        docs.supply(&a.url, Fetched::Unavailable("down".into()));
        assert!(docs.retry_kid(std::slice::from_ref(&a)).is_none());
    }
}
