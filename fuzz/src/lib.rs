//! Shared pieces of the fuzz targets: the fixed key material and registrations (`fixtures/`,
//! written by `examples/seeds.rs`) and small reference implementations used as oracles.

use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// `fixtures/pipeline.json`: configurations, keystore documents, valid bodies and tokens.
pub const PIPELINE_FIXTURES: &str = include_str!("../fixtures/pipeline.json");
/// `fixtures/jwks.json`: the public keys that signed the `jws` seeds.
pub const JWKS_FIXTURE: &str = include_str!("../fixtures/jwks.json");

/// What a reference reading of a JSON document says about its top level.
#[derive(Debug, PartialEq, Eq)]
pub enum TopLevel {
    /// Not valid JSON (serde_json's own verdict).
    Invalid,
    /// Valid JSON, not an object.
    NotObject,
    /// An object; the member names in document order (duplicates kept).
    Object(Vec<String>),
}

impl TopLevel {
    /// The object's member names if it has no duplicate, else `None`.
    pub fn unique_object(&self) -> bool {
        match self {
            TopLevel::Object(names) => {
                let mut sorted: Vec<&String> = names.iter().collect();
                sorted.sort();
                sorted.windows(2).all(|w| w[0] != w[1])
            }
            _ => false,
        }
    }
}

/// Reference: serde_json decides validity (`Value`), a name-collecting visitor lists the top-level
/// member names without deciding anything about them.
pub fn top_level(bytes: &[u8]) -> TopLevel {
    if serde_json::from_slice::<Value>(bytes).is_err() {
        return TopLevel::Invalid;
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match (&mut de).deserialize_any(Names) {
        Ok(Some(names)) => TopLevel::Object(names),
        Ok(None) => TopLevel::NotObject,
        // serde_json accepted it as a Value: the name walk cannot fail differently.
        Err(e) => panic!("reference disagrees with serde_json: {e}"),
    }
}

struct Names;

impl<'de> Visitor<'de> for Names {
    type Value = Option<Vec<String>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
        let mut names = Vec::new();
        while let Some((k, _)) = m.next_entry::<String, IgnoredAny>()? {
            names.push(k);
        }
        Ok(Some(names))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
        while s.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// Reference for "a JSON object without duplicate member names at any depth": serde_json decides
/// validity, then a walk that only collects names checks every object, however deeply nested.
pub fn unique_object_at_every_depth(bytes: &[u8]) -> bool {
    if !top_level(bytes).unique_object() {
        return false;
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    matches!((&mut de).deserialize_any(Deep), Ok(true))
}

/// `true` when no object in the value repeats a member name.
struct Deep;

impl<'de> serde::de::DeserializeSeed<'de> for Deep {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(Deep)
    }
}

impl<'de> Visitor<'de> for Deep {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<bool, A::Error> {
        let mut names: Vec<String> = Vec::new();
        let mut ok = true;
        while let Some(k) = m.next_key::<String>()? {
            ok &= !names.contains(&k);
            names.push(k);
            ok &= m.next_value_seed(Deep)?;
        }
        Ok(ok)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<bool, A::Error> {
        let mut ok = true;
        while let Some(v) = s.next_element_seed(Deep)? {
            ok &= v;
        }
        Ok(ok)
    }
    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(true)
    }
    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(true)
    }
    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(true)
    }
    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(true)
    }
    fn visit_str<E>(self, _: &str) -> Result<bool, E> {
        Ok(true)
    }
    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(true)
    }
}

/// A copy of a JSON object text with its first member repeated at the end (same name, any value):
/// `{"a":1,"b":2}` → `{"a":1,"b":2,"a":null}`. `None` if `obj` has no member.
pub fn with_duplicate(obj: &serde_json::Map<String, Value>, value: &Value) -> Option<String> {
    let (name, _) = obj.iter().next()?;
    let text = serde_json::to_string(obj).ok()?;
    let body = text.strip_suffix('}')?;
    Some(format!(
        "{body},{}:{}}}",
        serde_json::to_string(name).ok()?,
        value
    ))
}

/// Base64url without padding.
pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
