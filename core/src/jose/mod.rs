//! Minimal, strict JOSE core: compact JWS parsing, JWKS parsing and
//! signature verification for the algorithms an Open Banking DCR guard
//! needs (RS256, PS256, ES256, EdDSA/Ed25519).
//!
//! Design rules:
//! * nothing here panics on any input;
//! * "none" and every HMAC alg are refused unconditionally (a verifier that
//!   only holds public keys must never accept a MAC — key-confusion attack);
//! * keys are selected only from the JWK sets the caller supplies; `jwk`,
//!   `jku`, `x5u`, `x5c`, `x5t` in a JWS header are recorded, never used;
//! * error values never carry key material or token contents; echoed names
//!   (kid, alg, header member names) are clipped to 64 characters.

pub mod b64;
pub mod jwk;
pub mod jws;
pub mod verify;

#[cfg(test)]
mod tests;

pub use jwk::{pinned_key, Jwk, JwkSet, KeyMaterial};
pub use jws::{Jws, JwsHeader};
pub use verify::{select_key, verify};

/// Longest echoed string (in characters) kept inside a [`JoseError`].
pub(crate) const MAX_ECHO_CHARS: usize = 64;

/// Signature algorithms this crate can verify.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Alg {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PSS with SHA-256 and MGF1-SHA-256.
    Ps256,
    /// ECDSA on P-256 with SHA-256 (64-byte `r || s` signature).
    Es256,
    /// EdDSA with Ed25519 (RFC 8037).
    EdDsa,
}

impl Alg {
    /// Every supported algorithm.
    pub const ALL: [Alg; 4] = [Alg::Rs256, Alg::Ps256, Alg::Es256, Alg::EdDsa];

    /// Exact, case-sensitive JOSE name lookup.
    pub fn parse(name: &str) -> Option<Alg> {
        match name {
            "RS256" => Some(Alg::Rs256),
            "PS256" => Some(Alg::Ps256),
            "ES256" => Some(Alg::Es256),
            "EdDSA" => Some(Alg::EdDsa),
            _ => None,
        }
    }

    /// The JOSE name of the algorithm.
    pub fn name(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Ps256 => "PS256",
            Alg::Es256 => "ES256",
            Alg::EdDsa => "EdDSA",
        }
    }
}

impl std::fmt::Display for Alg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `true` for algorithm names that are refused whatever the allow-list says:
/// `none` (unsecured JWS) and any `HS*` (HMAC: a verifier holding a public
/// key must never treat it as a MAC secret). Compared ASCII
/// case-insensitively so that `NONE` or `hs256` get the precise error too.
pub(crate) fn alg_is_forbidden(name: &str) -> bool {
    name.eq_ignore_ascii_case("none") || name.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("HS"))
}

/// Errors from parsing and verifying JOSE objects.
///
/// Strings carried by a variant are short descriptions or names (kid, alg,
/// header member name), clipped to 64 characters, never key material or
/// token contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JoseError {
    /// Not a compact JWS / bad base64url / header or payload not a JSON
    /// object, etc.
    Malformed(String),
    /// One object of the `part` ("header", "payload", "body") has a member name twice: `member`
    /// (clipped like every echoed name), in the object at `at` (a path such as `jwks.keys[0]`; empty at the top
    /// level).
    DuplicateMember {
        part: String,
        member: String,
        at: String,
    },
    /// `crit` names an extension that is not understood (none are).
    CritUnsupported(String),
    /// `none` or an `HS*` alg: always refused.
    AlgForbidden(String),
    /// Unknown alg, or not in the caller's allow-list.
    AlgNotAllowed(String),
    /// The JWKS document is unusable as a whole.
    BadJwks(String),
    /// The header `kid` names no key in the given sets.
    UnknownKid(String),
    /// No `kid` and no key fits the alg.
    NoKey,
    /// More than one distinct key fits.
    AmbiguousKey,
    /// The key named by `kid` does not fit the alg.
    KeyUnsuitable(String),
    /// RSA modulus below 2048 bits (carries the bit count).
    KeyTooSmall(usize),
    /// The signature does not verify.
    BadSignature,
}

impl JoseError {
    pub(crate) fn malformed(msg: impl AsRef<str>) -> Self {
        JoseError::Malformed(clip(msg.as_ref()))
    }

    /// A duplicate member name as a sentence about `whole` (what the part belongs to, e.g. "the
    /// request JWT", "the software statement"; `None` for a JSON body, which is its own part):
    /// `the request JWT's payload has the member "iss" twice`. `None` for any other error.
    pub fn duplicate_sentence(&self, whole: Option<&str>) -> Option<String> {
        let JoseError::DuplicateMember { part, member, at } = self else {
            return None;
        };
        let subject = match whole {
            Some(w) => format!("{w}'s {part}"),
            None => format!("the request {part}"),
        };
        let within = if at.is_empty() {
            String::new()
        } else {
            format!(" in the object at {at}")
        };
        Some(format!(
            "{subject} has the member \"{member}\" twice{within}"
        ))
    }
}

/// Clip an echoed string to [`MAX_ECHO_CHARS`] characters and neutralise
/// control characters so that it is safe to put into a log line.
pub(crate) fn clip(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i >= MAX_ECHO_CHARS {
            out.push('…');
            break;
        }
        out.push(if c.is_control() { '?' } else { c });
    }
    out
}

impl std::fmt::Display for JoseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JoseError::Malformed(m) => write!(f, "malformed JOSE object: {}", clip(m)),
            JoseError::DuplicateMember { part, member, at } if at.is_empty() => {
                write!(f, "the {part} has the member \"{member}\" twice")
            }
            JoseError::DuplicateMember { part, member, at } => write!(
                f,
                "the {part} has the member \"{member}\" twice in the object at {at}"
            ),
            JoseError::CritUnsupported(n) => {
                write!(f, "unsupported critical header parameter \"{}\"", clip(n))
            }
            JoseError::AlgForbidden(a) => write!(f, "forbidden algorithm \"{}\"", clip(a)),
            JoseError::AlgNotAllowed(a) => write!(f, "algorithm \"{}\" not allowed", clip(a)),
            JoseError::BadJwks(m) => write!(f, "unusable JWKS: {}", clip(m)),
            JoseError::UnknownKid(k) => write!(f, "no key with kid \"{}\"", clip(k)),
            JoseError::NoKey => f.write_str("no suitable key"),
            JoseError::AmbiguousKey => f.write_str("more than one suitable key"),
            JoseError::KeyUnsuitable(k) => {
                write!(f, "key \"{}\" is not suitable for the algorithm", clip(k))
            }
            JoseError::KeyTooSmall(bits) => {
                write!(f, "RSA key too small ({bits} bits, minimum 2048)")
            }
            JoseError::BadSignature => f.write_str("signature verification failed"),
        }
    }
}

impl std::error::Error for JoseError {}

/// A string member of a JSON object (claims, a JWK): `Ok(None)` when absent, `Err` naming the
/// member when present but not a string. The one such helper of the engine (`crate::claims`
/// re-exports it); it lives here because this module builds on its own (bench/bare).
pub(crate) fn opt_str<'a>(
    claims: &'a serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<Option<&'a str>, String> {
    match claims.get(name) {
        None => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.as_str())),
        Some(other) => Err(format!(
            "claim `{name}` must be a string, not {}",
            type_name(other)
        )),
    }
}

/// A JSON value's type, as an error message names it.
pub(crate) fn type_name(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}
