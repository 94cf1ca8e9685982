//! Per worker: the key sets parsed from the shared documents, by URL and generation.

use std::collections::HashMap;

/// Per worker: the parsed key set for each URL, reparsed only when the shared generation changes.
/// Bounded: inserting a new URL beyond the capacity evicts the least recently inserted one.
#[derive(Debug)]
pub struct Parsed<T> {
    capacity: usize,
    seq: u64,
    slots: HashMap<String, Slot<T>>,
}

#[derive(Debug)]
struct Slot<T> {
    generation: u64,
    value: T,
    seq: u64,
    /// The entry's expiry and the second the shared entry was last read with this generation
    /// still current ([`Parsed::recent`]).
    read: Option<(i64, i64)>,
}

impl<T> Default for Parsed<T> {
    fn default() -> Self {
        Parsed::new(Parsed::<T>::DEFAULT_CAPACITY)
    }
}

impl<T> Parsed<T> {
    pub const DEFAULT_CAPACITY: usize = 256;

    /// A cache of at most `capacity` URLs (at least 1).
    pub fn new(capacity: usize) -> Parsed<T> {
        Parsed {
            capacity: capacity.max(1),
            seq: 0,
            slots: HashMap::new(),
        }
    }

    /// The parsed value for `url` if it was parsed from `generation`.
    pub fn get(&self, url: &str, generation: u64) -> Option<&T> {
        match self.slots.get(url) {
            Some(slot) if slot.generation == generation => Some(&slot.value),
            _ => None,
        }
    }

    /// The parsed value for `url` without reading the shared entry: only when the shared entry
    /// was read during this same second `now` ([`Parsed::mark_read`]) and was fresh. A document
    /// another worker publishes is therefore seen within a second; callers that need the newest
    /// document (an unknown `kid`) read the shared entry instead.
    pub fn recent(&self, url: &str, now: i64) -> Option<&T> {
        match self.slots.get(url) {
            Some(Slot {
                value,
                read: Some((expires_at, read_at)),
                ..
            }) if *read_at == now && now < *expires_at => Some(value),
            _ => None,
        }
    }

    /// The shared entry of `url` was read at `now`: `generation`, fresh until `expires_at`.
    pub fn mark_read(&mut self, url: &str, generation: u64, expires_at: i64, now: i64) {
        if let Some(slot) = self.slots.get_mut(url) {
            slot.read = (slot.generation == generation).then_some((expires_at, now));
        }
    }

    /// Remember `value` parsed from `generation` of `url` (replacing any other generation).
    pub fn insert(&mut self, url: &str, generation: u64, value: T) {
        self.seq = self.seq.wrapping_add(1);
        if !self.slots.contains_key(url) && self.slots.len() >= self.capacity {
            let oldest = self
                .slots
                .iter()
                .min_by_key(|(_, slot)| slot.seq)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.slots.remove(&k);
            }
        }
        self.slots.insert(
            url.to_string(),
            Slot {
                generation,
                value,
                seq: self.seq,
                read: None,
            },
        );
    }

    pub fn remove(&mut self, url: &str) -> Option<T> {
        self.slots.remove(url).map(|slot| slot.value)
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsed_reparses_only_on_generation_change() {
        let mut p: Parsed<String> = Parsed::default();
        let mut parses = 0;
        fn lookup(p: &mut Parsed<String>, parses: &mut u32, url: &str, g: u64) -> String {
            if let Some(v) = p.get(url, g) {
                return v.clone();
            }
            *parses += 1;
            let v = format!("{url}#{g}");
            p.insert(url, g, v.clone());
            v
        }
        assert_eq!(lookup(&mut p, &mut parses, "a", 1), "a#1");
        assert_eq!(lookup(&mut p, &mut parses, "a", 1), "a#1");
        assert_eq!(lookup(&mut p, &mut parses, "b", 1), "b#1");
        assert_eq!(lookup(&mut p, &mut parses, "a", 2), "a#2");
        assert_eq!(lookup(&mut p, &mut parses, "a", 2), "a#2");
        assert_eq!(parses, 3);
        assert_eq!(p.get("a", 1), None);
        assert_eq!(p.len(), 2);
        assert_eq!(p.remove("b"), Some("b#1".to_string()));
        assert!(p.get("b", 1).is_none());

        let mut small: Parsed<u32> = Parsed::new(3);
        for (i, url) in ["u1", "u2", "u3"].iter().enumerate() {
            small.insert(url, 1, i as u32);
        }
        small.insert("u1", 2, 10); // re-insert refreshes u1
        small.insert("u4", 1, 4); // evicts u2, the oldest
        assert!(small.get("u2", 1).is_none());
        assert_eq!(small.get("u1", 2), Some(&10));
        assert_eq!(small.get("u3", 1), Some(&2));
        assert_eq!(small.get("u4", 1), Some(&4));
        assert_eq!(small.len(), 3);
        let zero: Parsed<u8> = Parsed::new(0);
        assert!(zero.is_empty());
    }
}
