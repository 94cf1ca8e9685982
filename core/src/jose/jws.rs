//! Compact JWS parsing (RFC 7515 §7.1) with strict header handling.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{alg_is_forbidden, b64, clip, JoseError};

/// Largest compact JWS parsed, in bytes: the parser's own bound (callers bound their inputs
/// first: the body by `limits.body_bytes`, a bearer token by `binding::MAX_BEARER_TOKEN_BYTES`).
pub const MAX_JWS_BYTES: usize = 1024 * 1024;

/// Header parameters that carry or point at a key or certificate. They are
/// recorded in [`JwsHeader::embedded_key_hints`] and never used.
const KEY_HINT_MEMBERS: [&str; 6] = ["jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256"];

/// The JOSE header of a compact JWS.
#[derive(Clone, Debug)]
pub struct JwsHeader {
    pub alg: String,
    pub kid: Option<String>,
    pub typ: Option<String>,
    pub cty: Option<String>,
    pub crit: Vec<String>,
    /// Header carried jwk/jku/x5u/x5c/x5t: recorded only; these NEVER select or fetch a key.
    pub embedded_key_hints: bool,
}

/// A parsed (not yet verified) compact JWS whose payload is a JSON object.
#[derive(Clone, Debug)]
pub struct Jws {
    pub header: JwsHeader,
    pub claims: Map<String, Value>,
    pub signature: Vec<u8>,
    /// `<b64 header>.<b64 payload>` exactly as received.
    signing_input: String,
}

impl Jws {
    /// Parse a compact JWS. Performs no signature verification.
    ///
    /// A forbidden `alg` (`none`, `HS*`) is reported as
    /// [`JoseError::AlgForbidden`] as soon as the header has been read, before
    /// the payload or signature are looked at (so `none` with an empty
    /// signature part gets the precise error).
    pub fn parse(token: &str) -> Result<Jws, JoseError> {
        if token.len() > MAX_JWS_BYTES {
            return Err(JoseError::malformed("token too long"));
        }
        let mut parts = token.split('.');
        let (Some(h64), Some(p64), Some(s64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JoseError::malformed("not a compact JWS (need 3 parts)"));
        };
        if h64.is_empty() {
            return Err(JoseError::malformed("empty header"));
        }

        // Header first, so that errors about the algorithm are precise.
        let header_bytes =
            b64::decode(h64).map_err(|_| JoseError::malformed("header is not base64url"))?;
        let header_obj = parse_object(&header_bytes, "header")?;
        let header = parse_header(&header_obj)?;

        if p64.is_empty() {
            return Err(JoseError::malformed("empty payload"));
        }
        let payload_bytes =
            b64::decode(p64).map_err(|_| JoseError::malformed("payload is not base64url"))?;
        let claims = parse_object(&payload_bytes, "payload")?;

        if s64.is_empty() {
            return Err(JoseError::malformed("empty signature"));
        }
        let signature =
            b64::decode(s64).map_err(|_| JoseError::malformed("signature is not base64url"))?;

        let mut signing_input = String::with_capacity(h64.len() + 1 + p64.len());
        signing_input.push_str(h64);
        signing_input.push('.');
        signing_input.push_str(p64);

        Ok(Jws {
            header,
            claims,
            signature,
            signing_input,
        })
    }

    /// The JWS Signing Input: `<b64 header>.<b64 payload>` exactly as received.
    pub fn signing_input(&self) -> &[u8] {
        self.signing_input.as_bytes()
    }
}

fn parse_header(obj: &Map<String, Value>) -> Result<JwsHeader, JoseError> {
    let alg = match obj.get("alg") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(JoseError::malformed("header member alg is not a string")),
        None => return Err(JoseError::malformed("header has no alg")),
    };
    if alg_is_forbidden(&alg) {
        return Err(JoseError::AlgForbidden(clip(&alg)));
    }
    let kid = opt_string(obj, "kid")?;
    let typ = opt_string(obj, "typ")?;
    let cty = opt_string(obj, "cty")?;

    let crit = match obj.get("crit") {
        None => Vec::new(),
        Some(Value::Array(items)) => {
            if items.is_empty() {
                return Err(JoseError::malformed("header member crit is empty"));
            }
            let mut names: Vec<String> = Vec::with_capacity(items.len());
            for item in items {
                let Value::String(name) = item else {
                    return Err(JoseError::malformed(
                        "header member crit is not an array of strings",
                    ));
                };
                if !obj.contains_key(name.as_str()) {
                    return Err(JoseError::malformed(format!(
                        "crit names absent header member {}",
                        clip(name)
                    )));
                }
                if names.contains(name) {
                    return Err(JoseError::malformed("crit lists a name twice"));
                }
                names.push(name.clone());
            }
            names
        }
        Some(_) => return Err(JoseError::malformed("header member crit is not an array")),
    };
    // No extension is understood, so any critical extension is fatal
    // (RFC 7515 §4.1.11). This also refuses RFC 7797 "b64": false.
    if let Some(first) = crit.first() {
        return Err(JoseError::CritUnsupported(clip(first)));
    }

    let embedded_key_hints = KEY_HINT_MEMBERS.iter().any(|m| obj.contains_key(*m));

    Ok(JwsHeader {
        alg,
        kid,
        typ,
        cty,
        crit,
        embedded_key_hints,
    })
}

fn opt_string(obj: &Map<String, Value>, name: &str) -> Result<Option<String>, JoseError> {
    match obj.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(JoseError::malformed(format!(
            "header member {name} is not a string"
        ))),
    }
}

/// Parse `bytes` as a JSON document whose top level must be an object
/// without duplicate member names **at any depth** (two parsers that resolve a
/// duplicate differently — first wins, last wins — would read two different
/// documents: the filter must never validate one and forward the other).
/// `what` is "header", "payload" or "body".
pub(crate) fn parse_object(bytes: &[u8], what: &str) -> Result<Map<String, Value>, JoseError> {
    match serde_json::from_slice::<TopLevel>(bytes) {
        Ok(TopLevel::Object(map)) => Ok(map),
        Ok(TopLevel::NotObject) => {
            Err(JoseError::malformed(format!("{what} is not a JSON object")))
        }
        // The member name is not echoed: it is token content.
        Ok(TopLevel::Duplicate) => Err(JoseError::malformed(format!(
            "duplicate member name in {what}"
        ))),
        Err(e) if e.to_string().starts_with(DUPLICATE) => Err(JoseError::malformed(format!(
            "duplicate member name in {what}"
        ))),
        Err(_) => Err(JoseError::malformed(format!("{what} is not valid JSON"))),
    }
}

/// The custom error a nested duplicate member name raises inside serde_json.
const DUPLICATE: &str = "duplicate member name";

/// A JSON value whose objects, at every depth, have no duplicate member names.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let Strict(value) = access.next_value()?;
            if map.insert(key, value).is_some() {
                return Err(de::Error::custom(DUPLICATE));
            }
        }
        Ok(Value::Object(map))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(v)) = access.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

/// Outcome of reading the top level of a JSON document.
enum TopLevel {
    Object(Map<String, Value>),
    NotObject,
    Duplicate,
}

impl<'de> Deserialize<'de> for TopLevel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TopLevelVisitor)
    }
}

struct TopLevelVisitor;

impl<'de> Visitor<'de> for TopLevelVisitor {
    type Value = TopLevel;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<TopLevel, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                // Drain the rest so the document is still checked for syntax.
                access.next_value::<IgnoredAny>()?;
                while access.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                return Ok(TopLevel::Duplicate);
            }
            let Strict(value) = access.next_value()?;
            map.insert(key, value);
        }
        Ok(TopLevel::Object(map))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<TopLevel, A::Error> {
        while access.next_element::<IgnoredAny>()?.is_some() {}
        Ok(TopLevel::NotObject)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<TopLevel, E> {
        Ok(TopLevel::NotObject)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<TopLevel, E> {
        Ok(TopLevel::NotObject)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<TopLevel, E> {
        Ok(TopLevel::NotObject)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<TopLevel, E> {
        Ok(TopLevel::NotObject)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<TopLevel, E> {
        Ok(TopLevel::NotObject)
    }
    fn visit_unit<E: de::Error>(self) -> Result<TopLevel, E> {
        Ok(TopLevel::NotObject)
    }
    fn visit_none<E: de::Error>(self) -> Result<TopLevel, E> {
        Ok(TopLevel::NotObject)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(header: &str, payload: &str, sig: &str) -> String {
        format!(
            "{}.{}.{}",
            b64::encode(header.as_bytes()),
            b64::encode(payload.as_bytes()),
            sig
        )
    }

    #[test]
    fn parses_basic_token() {
        let t = tok(
            r#"{"alg":"ES256","kid":"k1","typ":"JWT","cty":"x"}"#,
            r#"{"iss":"a","n":{"a":1,"b":2}}"#,
            "AAAA",
        );
        let j = Jws::parse(&t).unwrap();
        assert_eq!(j.header.alg, "ES256");
        assert_eq!(j.header.kid.as_deref(), Some("k1"));
        assert_eq!(j.header.typ.as_deref(), Some("JWT"));
        assert_eq!(j.header.cty.as_deref(), Some("x"));
        assert!(j.header.crit.is_empty());
        assert!(!j.header.embedded_key_hints);
        assert_eq!(j.claims["iss"], "a");
        assert_eq!(j.signature, vec![0, 0, 0]);
        let dot = t.rfind('.').unwrap();
        assert_eq!(j.signing_input(), &t.as_bytes()[..dot]);
    }

    #[test]
    fn structure_errors() {
        let good = tok(r#"{"alg":"ES256"}"#, r#"{}"#, "AAAA");
        assert!(Jws::parse(&good).is_ok());
        let h = b64::encode(br#"{"alg":"ES256"}"#);
        let p = b64::encode(b"{}");
        for bad in [
            String::new(),
            ".".into(),
            "..".into(),
            "...".into(),
            format!("{h}.{p}"),
            format!("{h}.{p}.AAAA."),
            format!("{h}.{p}.AAAA.AAAA"),
            format!(".{p}.AAAA"),
            format!("{h}..AAAA"),
            format!("{h}.{p}."),
            format!("{h}.{p}.AA=="),
            format!("{h}.{p}.AA+A"),
            format!("{h}=.{p}.AAAA"),
            format!("{h}.{p} .AAAA"),
        ] {
            assert!(
                matches!(Jws::parse(&bad), Err(JoseError::Malformed(_))),
                "accepted {bad:?}"
            );
        }
    }

    #[test]
    fn header_member_types() {
        for (h, want) in [
            (r#"{}"#, "header has no alg"),
            (r#"{"alg":1}"#, "header member alg is not a string"),
            (
                r#"{"alg":"ES256","kid":5}"#,
                "header member kid is not a string",
            ),
            (
                r#"{"alg":"ES256","kid":null}"#,
                "header member kid is not a string",
            ),
            (
                r#"{"alg":"ES256","typ":[]}"#,
                "header member typ is not a string",
            ),
            (
                r#"{"alg":"ES256","cty":{}}"#,
                "header member cty is not a string",
            ),
            (
                r#"{"alg":"ES256","crit":[]}"#,
                "header member crit is empty",
            ),
            (
                r#"{"alg":"ES256","crit":"exp"}"#,
                "header member crit is not an array",
            ),
            (
                r#"{"alg":"ES256","crit":[1]}"#,
                "header member crit is not an array of strings",
            ),
            (
                r#"{"alg":"ES256","crit":["exp"]}"#,
                "crit names absent header member exp",
            ),
            (
                r#"{"alg":"ES256","alg":"ES256"}"#,
                "duplicate member name in header",
            ),
            (r#"["alg"]"#, "header is not a JSON object"),
            (r#""x""#, "header is not a JSON object"),
            (r#"{"alg":"ES256""#, "header is not valid JSON"),
            (r#"{"alg":"ES256"} x"#, "header is not valid JSON"),
        ] {
            let t = tok(h, "{}", "AAAA");
            assert_eq!(
                Jws::parse(&t).unwrap_err(),
                JoseError::Malformed(want.into()),
                "{h}"
            );
        }
    }

    #[test]
    fn crit_is_refused() {
        let t = tok(
            r#"{"alg":"ES256","crit":["exp"],"exp":1363284000}"#,
            "{}",
            "AAAA",
        );
        assert_eq!(
            Jws::parse(&t).unwrap_err(),
            JoseError::CritUnsupported("exp".into())
        );
        let t = tok(
            r#"{"alg":"ES256","b64":false,"crit":["b64"]}"#,
            "{}",
            "AAAA",
        );
        assert_eq!(
            Jws::parse(&t).unwrap_err(),
            JoseError::CritUnsupported("b64".into())
        );
    }

    #[test]
    fn forbidden_alg_reported_before_missing_signature() {
        for alg in ["none", "NONE", "HS256", "HS512", "hs384"] {
            let h = format!(r#"{{"alg":"{alg}"}}"#);
            for sig in ["", "AAAA"] {
                let t = tok(&h, "{}", sig);
                assert_eq!(
                    Jws::parse(&t).unwrap_err(),
                    JoseError::AlgForbidden(alg.into())
                );
            }
        }
    }

    #[test]
    fn embedded_key_hints_recorded() {
        for m in KEY_HINT_MEMBERS {
            let h = format!(r#"{{"alg":"ES256","{m}":"x"}}"#);
            let j = Jws::parse(&tok(&h, "{}", "AAAA")).unwrap();
            assert!(j.header.embedded_key_hints, "{m}");
        }
    }

    #[test]
    fn nested_documents_without_duplicates_read_as_serde_json_reads_them() {
        for doc in [
            r#"{"a":{"b":[1,2.5,-3,true,null,"s",{"c":{}}]},"d":[],"e":18446744073709551615}"#,
            r#"{"x":{"y":{"z":[[[]]]}},"u":"\u00e9"}"#,
        ] {
            let strict = parse_object(doc.as_bytes(), "payload").unwrap();
            let plain: Map<String, Value> = serde_json::from_str(doc).unwrap();
            assert_eq!(strict, plain, "{doc}");
        }
    }

    #[test]
    fn payload_rules() {
        let h = r#"{"alg":"ES256"}"#;
        for (p, want) in [
            ("[1,2]", "payload is not a JSON object"),
            ("\"s\"", "payload is not a JSON object"),
            ("1", "payload is not a JSON object"),
            ("null", "payload is not a JSON object"),
            ("Example of Ed25519 signing", "payload is not valid JSON"),
            (
                r#"{"iss":"a","iss":"b"}"#,
                "duplicate member name in payload",
            ),
            (
                r#"{"iss":"a","\u0069ss":"b"}"#,
                "duplicate member name in payload",
            ),
            // At any depth: a parser that keeps the first and one that keeps the last would
            // read different documents.
            (
                r#"{"jwks":{"keys":[],"keys":[{"kty":"EC"}]}}"#,
                "duplicate member name in payload",
            ),
            (
                r#"{"a":[1,{"b":{"c":1,"\u0063":2}}]}"#,
                "duplicate member name in payload",
            ),
            (
                r#"{"a":[1,{"b":{"c":1,"c":2}}]}"#,
                "duplicate member name in payload",
            ),
        ] {
            assert_eq!(
                Jws::parse(&tok(h, p, "AAAA")).unwrap_err(),
                JoseError::Malformed(want.into()),
                "{p}"
            );
        }
    }

    #[test]
    fn long_token_and_deep_json_rejected() {
        let big = "a".repeat(MAX_JWS_BYTES + 1);
        assert_eq!(
            Jws::parse(&big).unwrap_err(),
            JoseError::Malformed("token too long".into())
        );
        let deep = format!(r#"{{"a":{}1{}}}"#, "[".repeat(10_000), "]".repeat(10_000));
        assert!(matches!(
            Jws::parse(&tok(r#"{"alg":"ES256"}"#, &deep, "AAAA")),
            Err(JoseError::Malformed(_))
        ));
    }

    #[test]
    fn error_strings_are_clipped() {
        let kid = "k".repeat(500);
        let h = format!(r#"{{"alg":"{kid}"}}"#);
        let j = Jws::parse(&tok(&h, "{}", "AAAA")).unwrap();
        assert_eq!(j.header.alg.len(), 500);
        let h = format!(r#"{{"alg":"HS{kid}"}}"#);
        let JoseError::AlgForbidden(a) = Jws::parse(&tok(&h, "{}", "AAAA")).unwrap_err() else {
            panic!()
        };
        assert!(a.chars().count() <= 65);
    }
}
