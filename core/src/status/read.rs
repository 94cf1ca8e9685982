//! Reading a status document without building it in memory: the array at the configured path is
//! found by walking the document, and of each entry only the id and status members are kept.
//! Everything else is skipped as it is read. A `serde_json::Value` of the document held every
//! member of every entry at once — measured on a 1 MB register-like document, a peak of 8.7 times
//! the document's size, at every refresh, in a wasm heap that never gives memory back — where this
//! peaks at 1.3 times (the ids, statuses and the table built from them).
//!
//! It reads what a `Value` would have given: for a member named twice the last one counts, a
//! member where an object is expected but something else is found is "no member", and so on
//! (`tests.rs` compares the two over generated documents).

use std::cell::RefCell;
use std::fmt;

use super::MAX_VALUE_BYTES;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// One entry of the array: its id and status when they are strings (`None` otherwise).
pub(super) struct Item {
    pub(super) id: Option<String>,
    pub(super) status: Option<String>,
}

/// What walking the document found.
pub(super) enum Found {
    /// The array (every element; `None` for an element that is not an object).
    List(Vec<Option<Item>>),
    /// The first `n` members of the path were found, the next was not (or its parent was not
    /// an object).
    Missing(usize),
    /// The value at the path is not an array.
    NotArray,
}

/// What the walk is looking for.
struct Want<'a> {
    path: &'a [String],
    id: &'a str,
    status: &'a str,
    max_entries: usize,
    /// Set when the array has more than `max_entries` elements (the walk then stops with an error).
    too_many: &'a RefCell<bool>,
}

/// Walk `doc` to the array at `path`. `Err` is the JSON error (or `"too many"` for more than
/// `max_entries` elements: check [`read`]'s second value).
pub(super) fn read(
    doc: &[u8],
    path: &[String],
    id: &str,
    status: &str,
    max_entries: usize,
) -> (Result<Found, serde_json::Error>, bool) {
    let too_many = RefCell::new(false);
    let want = Want {
        path,
        id,
        status,
        max_entries,
        too_many: &too_many,
    };
    let mut de = serde_json::Deserializer::from_slice(doc);
    let found = Level {
        want: &want,
        depth: 0,
    }
    .deserialize(&mut de)
    .and_then(|f| de.end().map(|()| f));
    let too_many = *want.too_many.borrow();
    (found, too_many)
}

/// The value at `depth` members down the path.
struct Level<'w, 'a> {
    want: &'w Want<'a>,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Level<'_, '_> {
    type Value = Found;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Found, D::Error> {
        d.deserialize_any(self)
    }
}

impl Level<'_, '_> {
    /// Not an object (inside the path) or not an array (at its end).
    fn other(&self) -> Found {
        if self.depth < self.want.path.len() {
            Found::Missing(self.depth)
        } else {
            Found::NotArray
        }
    }
}

impl<'de> Visitor<'de> for Level<'_, '_> {
    type Value = Found;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a status document")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Found, E> {
        Ok(self.other())
    }
    fn visit_i64<E>(self, _: i64) -> Result<Found, E> {
        Ok(self.other())
    }
    fn visit_u64<E>(self, _: u64) -> Result<Found, E> {
        Ok(self.other())
    }
    fn visit_f64<E>(self, _: f64) -> Result<Found, E> {
        Ok(self.other())
    }
    fn visit_str<E>(self, _: &str) -> Result<Found, E> {
        Ok(self.other())
    }
    fn visit_unit<E>(self) -> Result<Found, E> {
        Ok(self.other())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Found, A::Error> {
        let Some(member) = self.want.path.get(self.depth) else {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(Found::NotArray);
        };
        // The last of a member named twice counts, as in a `Value`.
        let mut found = Found::Missing(self.depth);
        while let Some(key) = map.next_key::<Key>()? {
            if key.0 == *member {
                found = map.next_value_seed(Level {
                    want: self.want,
                    depth: self.depth.saturating_add(1),
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Found, A::Error> {
        if self.depth < self.want.path.len() {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(Found::Missing(self.depth));
        }
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Entry(self.want))? {
            if items.len() >= self.want.max_entries {
                *self.want.too_many.borrow_mut() = true;
                return Err(serde::de::Error::custom("too many entries"));
            }
            items.push(item);
        }
        Ok(Found::List(items))
    }
}

/// A member name (escapes resolved).
struct Key(String);

impl<'de> serde::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        String::deserialize(d).map(Key)
    }
}

/// One element of the array.
struct Entry<'w, 'a>(&'w Want<'a>);

impl<'de> DeserializeSeed<'de> for Entry<'_, '_> {
    type Value = Option<Item>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<Item>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Entry<'_, '_> {
    type Value = Option<Item>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an entry")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Option<Item>, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Option<Item>, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Option<Item>, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Option<Item>, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Option<Item>, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Option<Item>, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<Item>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<Item>, A::Error> {
        let mut item = Item {
            id: None,
            status: None,
        };
        while let Some(key) = map.next_key::<Key>()? {
            if key.0 == self.0.id {
                item.id = map.next_value::<Text>()?.0;
            } else if key.0 == self.0.status {
                item.status = map.next_value::<Text>()?.0;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Some(item))
    }
}

/// A string value of at most [`MAX_VALUE_BYTES`], or `None` for any other value (read and
/// dropped): a longer id is skipped and a longer status unreadable, as for any non-string.
struct Text(Option<String>);

impl<'de> serde::Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Text, D::Error> {
        d.deserialize_any(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Text, E> {
        Ok(Text(None))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Text, E> {
        Ok(Text(None))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Text, E> {
        Ok(Text(None))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Text, E> {
        Ok(Text(None))
    }
    fn visit_str<E>(self, s: &str) -> Result<Text, E> {
        Ok(Text((s.len() <= MAX_VALUE_BYTES).then(|| s.to_string())))
    }
    fn visit_unit<E>(self) -> Result<Text, E> {
        Ok(Text(None))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Text, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Text(None))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Text, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Text(None))
    }
}
