//! Compact JWS parsing (RFC 7515 §7.1) with strict header handling.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
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
/// `what` is "header", "payload" or "body". Every JSON document the filter reads from a client
/// goes through here (JOSE headers and payloads, the SSA's included, and a JSON body).
pub(crate) fn parse_object(bytes: &[u8], what: &str) -> Result<Map<String, Value>, JoseError> {
    let found = RefCell::new(None);
    let seed = TopLevelSeed { found: &found };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = seed
        .deserialize(&mut de)
        .and_then(|top| de.end().map(|()| top));
    if let Some(dup) = found.into_inner() {
        return Err(dup.error(what));
    }
    match parsed {
        Ok(TopLevel::Object(map)) => Ok(map),
        Ok(TopLevel::NotObject) => {
            Err(JoseError::malformed(format!("{what} is not a JSON object")))
        }
        Err(_) => Err(JoseError::malformed(format!("{what} is not valid JSON"))),
    }
}

/// Longest path to the object holding a duplicate, in characters (each name in it, like the
/// member's, is clipped by [`clip`]).
const MAX_PATH_ECHO: usize = 160;

/// A member name found twice in one object, and where that object is (innermost step first:
/// the path is gathered as the parser unwinds).
struct Found {
    member: String,
    path: Vec<Step>,
}

enum Step {
    Member(String),
    Index(usize),
}

impl Found {
    fn error(self, what: &str) -> JoseError {
        let mut at = String::new();
        for step in self.path.iter().rev() {
            let piece = match step {
                Step::Member(m) if at.is_empty() => clip(m),
                Step::Member(m) => format!(".{}", clip(m)),
                Step::Index(i) => format!("[{i}]"),
            };
            if at.chars().count().saturating_add(piece.chars().count()) > MAX_PATH_ECHO {
                at.push_str("...");
                break;
            }
            at.push_str(&piece);
        }
        JoseError::DuplicateMember {
            part: what.to_string(),
            member: clip(&self.member),
            at,
        }
    }
}

/// The custom error that stops the parser at a duplicate (the details are in [`Found`]).
const DUPLICATE: &str = "duplicate member name";

/// A JSON value whose objects, at every depth, have no duplicate member names; the first
/// duplicate is recorded in `found`.
#[derive(Clone, Copy)]
struct Strict<'f> {
    found: &'f RefCell<Option<Found>>,
}

impl Strict<'_> {
    /// A nested value failed: if a duplicate is the cause, record the step to it.
    fn step_back(&self, step: impl FnOnce() -> Step) {
        if let Some(f) = self.found.borrow_mut().as_mut() {
            f.path.push(step());
        }
    }

    fn object<'de, A: MapAccess<'de>>(self, mut access: A) -> Result<Map<String, Value>, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                *self.found.borrow_mut() = Some(Found {
                    member: key,
                    path: Vec::new(),
                });
                return Err(de::Error::custom(DUPLICATE));
            }
            match access.next_value_seed(self) {
                Ok(value) => {
                    map.insert(key, value);
                }
                Err(e) => {
                    self.step_back(|| Step::Member(key));
                    return Err(e);
                }
            }
        }
        Ok(map)
    }
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, access: A) -> Result<Value, A::Error> {
        self.object(access).map(Value::Object)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            match access.next_element_seed(self) {
                Ok(Some(v)) => items.push(v),
                Ok(None) => return Ok(Value::Array(items)),
                Err(e) => {
                    let index = items.len();
                    self.step_back(|| Step::Index(index));
                    return Err(e);
                }
            }
        }
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
}

/// The top level: an object read strictly; anything else only skipped over (it is refused as
/// not an object whatever it holds).
struct TopLevelSeed<'f> {
    found: &'f RefCell<Option<Found>>,
}

impl<'de> DeserializeSeed<'de> for TopLevelSeed<'_> {
    type Value = TopLevel;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<TopLevel, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopLevelSeed<'_> {
    type Value = TopLevel;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, access: A) -> Result<TopLevel, A::Error> {
        Strict { found: self.found }
            .object(access)
            .map(TopLevel::Object)
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
        ] {
            assert_eq!(
                Jws::parse(&tok(h, p, "AAAA")).unwrap_err(),
                JoseError::Malformed(want.into()),
                "{p}"
            );
        }
    }

    #[test]
    fn a_member_name_twice_at_any_depth_is_refused_and_named() {
        // (header, payload, the part, the member, where) — a parser that keeps the first and one
        // that keeps the last would read different documents, at the top level or nested.
        let h = r#"{"alg":"ES256"}"#;
        let cases = [
            (
                r#"{"alg":"ES256","alg":"ES256"}"#,
                "{}",
                "header",
                "alg",
                "",
            ),
            (
                r#"{"alg":"ES256","x":{"k":1,"k":2}}"#,
                "{}",
                "header",
                "k",
                "x",
            ),
            (h, r#"{"iss":"a","iss":"b"}"#, "payload", "iss", ""),
            (h, r#"{"iss":"a","\u0069ss":"b"}"#, "payload", "iss", ""),
            (
                h,
                r#"{"jwks":{"keys":[],"keys":[{"kty":"EC"}]}}"#,
                "payload",
                "keys",
                "jwks",
            ),
            (
                h,
                r#"{"jwks":{"keys":[{"kty":"EC"},{"kty":"EC","kty":"RSA"}]}}"#,
                "payload",
                "kty",
                "jwks.keys[1]",
            ),
            (
                h,
                r#"{"a":[1,{"b":{"c":1,"\u0063":2}}]}"#,
                "payload",
                "c",
                "a[1].b",
            ),
            (h, r#"{"a":[[{"x":1,"x":1}]]}"#, "payload", "x", "a[0][0]"),
            // Names are clipped for the description (control characters replaced).
            (h, r#"{"q\"\n":1,"q\"\n":2}"#, "payload", "q\"?", ""),
        ];
        for (header, payload, part, member, at) in cases {
            let want = JoseError::DuplicateMember {
                part: part.into(),
                member: member.into(),
                at: at.into(),
            };
            assert_eq!(
                Jws::parse(&tok(header, payload, "AAAA")).unwrap_err(),
                want,
                "{header} {payload}"
            );
        }
        // As sentences.
        let e = Jws::parse(&tok(h, r#"{"a":[{"b":1,"b":2}]}"#, "AAAA")).unwrap_err();
        assert_eq!(
            e.duplicate_sentence(Some("the software statement"))
                .unwrap(),
            "the software statement's payload has the member \"b\" twice in the object at a[0]"
        );
        let e = parse_object(br#"{"iss":1,"iss":2}"#, "body").unwrap_err();
        assert_eq!(
            e.duplicate_sentence(None).unwrap(),
            "the request body has the member \"iss\" twice"
        );
        // Bounded: a long name and a deep path are cut.
        let long = "n".repeat(500);
        let deep = format!(
            "{}{{\"{long}\":1,\"{long}\":2}}{}",
            format!("{{\"{}\":", "m".repeat(40)).repeat(60),
            "}".repeat(60)
        );
        let JoseError::DuplicateMember { member, at, .. } =
            parse_object(deep.as_bytes(), "body").unwrap_err()
        else {
            panic!("not a duplicate")
        };
        assert!(
            member.chars().count() <= 65 && member.ends_with('…'),
            "{member}"
        );
        assert!(at.chars().count() <= 163 && at.ends_with("..."), "{at}");
    }

    proptest::proptest! {
        /// Any JSON object, with any one of its objects (at any depth, inside arrays too) given a
        /// second member of an existing name, is refused, naming that member; unchanged, it
        /// parses as serde_json parses it.
        #[test]
        fn a_duplicate_anywhere_in_any_object_is_refused(
            doc in arb_object(),
            pick in proptest::prelude::any::<proptest::sample::Index>(),
            dup_value in arb_json(),
        ) {
            let text = serde_json::to_string(&doc).unwrap();
            proptest::prop_assert_eq!(parse_object(text.as_bytes(), "body").unwrap(), doc.as_object().unwrap().clone());
            let mut objects = Vec::new();
            collect_objects(&doc, &mut Vec::new(), &mut objects);
            let candidates: Vec<_> = objects.into_iter().filter(|(_, o)| !o.is_empty()).collect();
            proptest::prop_assume!(!candidates.is_empty());
            let (path, target) = &candidates[pick.index(candidates.len())];
            let name = target.keys().next().unwrap().clone();
            let with_dup = inject(&doc, path, &name, &dup_value);
            match parse_object(with_dup.as_bytes(), "body") {
                Err(JoseError::DuplicateMember { member, .. }) => {
                    proptest::prop_assert_eq!(member, clip(&name));
                }
                other => proptest::prop_assert!(false, "{with_dup}: {other:?}"),
            }
        }
    }

    fn arb_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            "[a-z\"\\\\\u{e9}]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 5, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                proptest::collection::btree_map("[a-c]{1,2}", inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn arb_object() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        proptest::collection::btree_map("[a-c]{1,2}", arb_json(), 0..5)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
    }

    /// A step into a JSON value: a member or an array index.
    #[derive(Clone, Debug)]
    enum At {
        Member(String),
        Index(usize),
    }

    fn collect_objects<'v>(
        v: &'v Value,
        path: &mut Vec<At>,
        out: &mut Vec<(Vec<At>, &'v Map<String, Value>)>,
    ) {
        match v {
            Value::Object(o) => {
                out.push((path.clone(), o));
                for (k, child) in o {
                    path.push(At::Member(k.clone()));
                    collect_objects(child, path, out);
                    path.pop();
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    path.push(At::Index(i));
                    collect_objects(child, path, out);
                    path.pop();
                }
            }
            _ => {}
        }
    }

    /// `v` as JSON text with the object at `path` given a second `name` member (`value`).
    fn inject(v: &Value, path: &[At], name: &str, value: &Value) -> String {
        match (v, path.split_first()) {
            (Value::Object(o), None) => {
                let mut members: Vec<String> = o
                    .iter()
                    .map(|(k, v)| format!("{}:{}", Value::from(k.as_str()), v))
                    .collect();
                members.push(format!("{}:{}", Value::from(name), value));
                format!("{{{}}}", members.join(","))
            }
            (Value::Object(o), Some((At::Member(m), rest))) => {
                let members: Vec<String> = o
                    .iter()
                    .map(|(k, c)| {
                        let text = if k == m {
                            inject(c, rest, name, value)
                        } else {
                            c.to_string()
                        };
                        format!("{}:{}", Value::from(k.as_str()), text)
                    })
                    .collect();
                format!("{{{}}}", members.join(","))
            }
            (Value::Array(items), Some((At::Index(i), rest))) => {
                let parts: Vec<String> = items
                    .iter()
                    .enumerate()
                    .map(|(j, c)| {
                        if j == *i {
                            inject(c, rest, name, value)
                        } else {
                            c.to_string()
                        }
                    })
                    .collect();
                format!("[{}]", parts.join(","))
            }
            _ => unreachable!("the path leads to an object"),
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
