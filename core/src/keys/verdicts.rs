//! The SSA signature verdict cache: a TPP reuses its SSA, so a signature verified against a
//! directory's key set is remembered (per worker) while that key set stays the same.

use crate::jose::{JwkSet, Jws};
use crate::keys::JwksSource;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

/// A per-worker cache of SSA signature verdicts: TPPs reuse their SSA, so its signature need not
/// be verified (nor the SSA parsed) again while the directory's key set is the same. Keyed by the
/// exact SSA text (compared whole; the map's hash covers its length and last 64 bytes, the
/// signature, which cannot collide by accident and cannot be chosen: only verified SSAs get in),
/// it keeps the parsed SSA, the identity of the key sets it verified against (SHA-256 of their
/// documents) and an [`SsaMemo`]; bounded in entries and bytes, expiring, first in first out.
/// Only successes are remembered, and the SSA's time checks still run on every request.
#[derive(Debug)]
pub struct Verdicts {
    entries: HashMap<u64, CachedVerdict>,
    order: VecDeque<(u64, Rc<str>)>,
    capacity: usize,
    max_bytes: usize,
    bytes: usize,
    ttl: i64,
}

/// One SSA whose signature verified: its text, its parsed form, the identity of the key sets it
/// verified against, until when that holds, and its memo.
#[derive(Debug)]
struct CachedVerdict {
    text: Rc<str>,
    ssa: Rc<Jws>,
    sets: [u8; 32],
    until: i64,
    memo: Rc<SsaMemo>,
}

/// What was worked out from one verified SSA under this worker's configuration, for the next
/// request that brings the same SSA (the configuration cannot change under a worker: a new
/// configuration gets new workers).
#[derive(Debug, Default)]
pub struct SsaMemo {
    /// The software JWKS named by the SSA (its URL parsed, its host allowed).
    pub software: std::cell::RefCell<Option<JwksSource>>,
    /// The SSA-only claim rules ([`crate::rules::SSA_ONLY_RULES`]) that passed, as a mask of
    /// [`crate::rules::rule_bit`]s.
    pub passed: std::cell::Cell<u32>,
}

/// A verdict cache hit.
pub struct Hit {
    pub ssa: Rc<Jws>,
    pub sets: [u8; 32],
    pub until: i64,
    pub memo: Rc<SsaMemo>,
}

/// An SSA longer than this is verified every time (never cached).
pub const VERDICT_MAX_SSA_BYTES: usize = 16 * 1024;

impl Default for Verdicts {
    fn default() -> Self {
        Verdicts::new(4096, 600)
    }
}

/// Whole-text equality, eight bytes at a time (the byte-wise `memcmp` of wasm32 is slow).
fn same_text(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    ca.zip(cb).all(|(x, y)| x == y) && ra == rb
}

impl Verdicts {
    /// At most `capacity` SSAs and about 8 MiB (text and parsed form) per worker.
    pub fn new(capacity: usize, ttl_seconds: i64) -> Verdicts {
        Verdicts {
            entries: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            max_bytes: 8 * 1024 * 1024,
            bytes: 0,
            ttl: ttl_seconds,
        }
    }

    /// What an entry is charged: its text, and about twice that for the parsed claims.
    fn cost(text: &str) -> usize {
        text.len().saturating_mul(3).saturating_add(256)
    }

    fn key(text: &str) -> u64 {
        use std::hash::{Hash, Hasher};
        let bytes = text.as_bytes();
        let tail = bytes.get(bytes.len().saturating_sub(64)..).unwrap_or(bytes);
        let mut h = std::collections::hash_map::DefaultHasher::new();
        bytes.len().hash(&mut h);
        tail.hash(&mut h);
        h.finish()
    }

    /// The identity of the key sets a signature was checked against.
    pub fn set_id(sets: &[&JwkSet]) -> [u8; 32] {
        let mut ids = ring::digest::Context::new(&ring::digest::SHA256);
        for s in sets {
            ids.update(&s.fingerprint);
        }
        <[u8; 32]>::try_from(ids.finish().as_ref()).unwrap_or([0; 32])
    }

    /// The parsed SSA, the key-set identity it verified against, until when that verdict holds
    /// (the caller compares both) and its memo.
    pub fn lookup(&self, text: &str) -> Option<Hit> {
        self.entries
            .get(&Self::key(text))
            .filter(|v| same_text(&v.text, text))
            .map(|v| Hit {
                ssa: Rc::clone(&v.ssa),
                sets: v.sets,
                until: v.until,
                memo: Rc::clone(&v.memo),
            })
    }

    /// Remember that `text` (parsed as `ssa`) verified against `sets`; returns the SSA's memo
    /// (`None` when it is too large to keep).
    pub fn remember(
        &mut self,
        text: &str,
        ssa: &Rc<Jws>,
        sets: &[&JwkSet],
        now: i64,
    ) -> Option<Rc<SsaMemo>> {
        if text.len() > VERDICT_MAX_SSA_BYTES {
            return None;
        }
        let key = Self::key(text);
        let sets = Self::set_id(sets);
        let until = now.saturating_add(self.ttl);
        if let Some(v) = self.entries.get_mut(&key) {
            if same_text(&v.text, text) {
                v.sets = sets;
                v.until = until;
                return Some(Rc::clone(&v.memo));
            }
        }
        let text: Rc<str> = Rc::from(text);
        let memo = Rc::new(SsaMemo::default());
        self.bytes = self.bytes.saturating_add(Self::cost(&text));
        // A different SSA with the same key (never seen in practice) takes the slot.
        self.entries.insert(
            key,
            CachedVerdict {
                text: Rc::clone(&text),
                ssa: Rc::clone(ssa),
                sets,
                until,
                memo: Rc::clone(&memo),
            },
        );
        self.order.push_back((key, text));
        while self.order.len() > self.capacity || self.bytes > self.max_bytes {
            match self.order.pop_front() {
                Some((old_key, old)) => {
                    if self
                        .entries
                        .get(&old_key)
                        .is_some_and(|v| Rc::ptr_eq(&v.text, &old))
                    {
                        self.entries.remove(&old_key);
                    }
                    self.bytes = self.bytes.saturating_sub(Self::cost(&old));
                }
                None => break,
            }
        }
        Some(memo)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
