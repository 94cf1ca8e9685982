//! JWK / JWKS parsing (RFC 7517, RFC 7518 §6, RFC 8037) restricted to the
//! public signature-verification keys this crate can use.

use serde_json::{Map, Value};

use super::{b64, Alg, JoseError};

/// Public key material, normalised so that equal keys compare equal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyMaterial {
    /// Big-endian modulus and exponent, leading zero bytes stripped.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// Uncompressed SEC1 point: `0x04 || x(32) || y(32)`.
    EcP256 { point: Vec<u8> },
    /// 32-byte Ed25519 public key.
    Ed25519 { x: Vec<u8> },
}

/// A usable public signature-verification key from a JWKS.
#[derive(Clone, Debug)]
pub struct Jwk {
    pub kid: Option<String>,
    pub use_: Option<String>,
    pub alg: Option<String>,
    pub material: KeyMaterial,
    /// The `x5t#S256` member as given.
    pub x5t_s256: Option<String>,
    /// DER of the first `x5c` entry (standard base64) if present and decodable.
    pub x5c_first: Option<Vec<u8>>,
}

impl Jwk {
    /// Whether this key may verify a JWS with `alg`: matching key type,
    /// `alg` (if the key states one) equal to the JWS alg, and `use` absent
    /// or `sig`.
    pub fn fits(&self, alg: Alg) -> bool {
        let type_ok = matches!(
            (alg, &self.material),
            (Alg::Rs256 | Alg::Ps256, KeyMaterial::Rsa { .. })
                | (Alg::Es256, KeyMaterial::EcP256 { .. })
                | (Alg::EdDsa, KeyMaterial::Ed25519 { .. })
        );
        let alg_ok = self.alg.as_deref().is_none_or(|a| a == alg.name());
        let use_ok = self.use_.as_deref().is_none_or(|u| u == "sig");
        type_ok && alg_ok && use_ok
    }

    /// Size of the RSA modulus in bits; `None` for non-RSA keys.
    pub fn rsa_bits(&self) -> Option<usize> {
        match &self.material {
            KeyMaterial::Rsa { n, .. } => {
                // Tolerates leading zero bytes even though parsing strips them.
                let mut significant = n.iter().skip_while(|b| **b == 0);
                Some(match significant.next() {
                    None => 0,
                    Some(top) => {
                        let rest = significant.count().saturating_mul(8);
                        rest.saturating_add(8 - top.leading_zeros() as usize)
                    }
                })
            }
            _ => None,
        }
    }
}

/// The usable keys of a JWKS document.
#[derive(Clone, Debug, Default)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
    /// Number of entries that were ignored as unusable.
    pub skipped: usize,
    /// SHA-256 thumbprints of the certificates of the `use: tls` keys (transport keys, never used
    /// for signatures and still counted in `skipped`): the SHA-256 of the DER of `x5c[0]` and/or the
    /// decoded `x5t#S256`.
    pub tls_thumbprints: Vec<[u8; 32]>,
    /// SHA-256 of the document the set was parsed from: the identity of the key set (a verdict
    /// cached against one set is never reused for another).
    pub fingerprint: [u8; 32],
}

/// Members whose presence marks a private (or symmetric) key. A key that
/// has been published together with its private part is compromised and is
/// never used.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// JWS signature algorithm names (RFC 7518 §3.1, RFC 8037, RFC 8812) that a
/// public key may carry in its `alg` member. Anything else (encryption and
/// key-management algs such as RSA-OAEP-256, or unknown names) marks a key
/// we must not use for signature verification.
const SIG_ALGS: [&str; 13] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "ES256K",
    "EdDSA", "Ed25519", "Ed448",
];

impl JwkSet {
    /// Parse a JWKS document. The document as a whole must be a JSON object
    /// with a `keys` array of at most `max_keys` entries; individual entries
    /// that cannot or must not be used are skipped and counted.
    pub fn parse(doc: &[u8], max_keys: usize) -> Result<JwkSet, JoseError> {
        let value: Value =
            serde_json::from_slice(doc).map_err(|_| JoseError::BadJwks("not valid JSON".into()))?;
        let Value::Object(obj) = value else {
            return Err(JoseError::BadJwks("not a JSON object".into()));
        };
        let Some(Value::Array(entries)) = obj.get("keys") else {
            return Err(JoseError::BadJwks("no \"keys\" array".into()));
        };
        if entries.len() > max_keys {
            return Err(JoseError::BadJwks("too many keys".into()));
        }
        let mut set = JwkSet::default();
        if let Ok(fp) =
            <[u8; 32]>::try_from(ring::digest::digest(&ring::digest::SHA256, doc).as_ref())
        {
            set.fingerprint = fp;
        }
        for entry in entries {
            for t in tls_thumbprints(entry) {
                if !set.tls_thumbprints.contains(&t) {
                    set.tls_thumbprints.push(t);
                }
            }
            match parse_jwk(entry) {
                Some(k) => set.keys.push(k),
                None => set.skipped += 1,
            }
        }
        Ok(set)
    }
}

/// The certificate thumbprints a `use: tls` entry publishes: SHA-256 of the DER of `x5c[0]`
/// (standard base64) and the `x5t#S256` member (base64url, 32 bytes). Undecodable members are
/// ignored; an entry whose two thumbprints disagree, or that carries private key members, yields
/// none.
fn tls_thumbprints(entry: &Value) -> Vec<[u8; 32]> {
    let Value::Object(obj) = entry else {
        return Vec::new();
    };
    if obj.get("use").and_then(Value::as_str) != Some("tls")
        || PRIVATE_MEMBERS.iter().any(|m| obj.contains_key(*m))
    {
        return Vec::new();
    }
    let from_x5c = match obj.get("x5c") {
        Some(Value::Array(certs)) => certs
            .first()
            .and_then(Value::as_str)
            .and_then(b64::decode_standard)
            .filter(|der| !der.is_empty())
            .and_then(|der| {
                <[u8; 32]>::try_from(ring::digest::digest(&ring::digest::SHA256, &der).as_ref())
                    .ok()
            }),
        _ => None,
    };
    let from_x5t = obj
        .get("x5t#S256")
        .and_then(Value::as_str)
        .and_then(|t| b64::decode(t).ok())
        .and_then(|t| <[u8; 32]>::try_from(t.as_slice()).ok());
    match (from_x5c, from_x5t) {
        (Some(a), Some(b)) if a != b => Vec::new(),
        (a, b) => a.or(b).into_iter().collect(),
    }
}

/// One entry of a key document an operator pins in the configuration, checked strictly: where a
/// fetched document's unusable entries are skipped, a pinned entry that is not a usable public
/// signature key is a mistake to report (`Err`: why, as a sentence fragment).
pub fn pinned_key(entry: &Value) -> Result<Jwk, String> {
    let Value::Object(obj) = entry else {
        return Err("is not a JSON object".to_string());
    };
    if let Some(m) = PRIVATE_MEMBERS.iter().find(|m| obj.contains_key(**m)) {
        return Err(format!(
            "carries the private key member `{m}`: only public keys belong in the configuration"
        ));
    }
    let key = parse_jwk(entry).ok_or_else(|| {
        "is not a usable public signature key (RSA, EC P-256 or Ed25519 with all its parameters; \
         `use` absent or `sig`; `key_ops`, when present, with `verify`; `alg`, when present, a \
         signature algorithm)"
            .to_string()
    })?;
    match key.rsa_bits() {
        Some(bits) if bits < 2048 => Err(format!(
            "is an RSA key of {bits} bits: at least 2048 are required"
        )),
        _ => Ok(key),
    }
}

/// Parse one JWKS entry; `None` means "skip it".
fn parse_jwk(entry: &Value) -> Option<Jwk> {
    let Value::Object(obj) = entry else {
        return None;
    };
    if PRIVATE_MEMBERS.iter().any(|m| obj.contains_key(*m)) {
        return None;
    }
    let kid = super::opt_str(obj, "kid").ok()?.map(str::to_owned);
    let use_ = super::opt_str(obj, "use").ok()?.map(str::to_owned);
    if use_.as_deref().is_some_and(|u| u != "sig") {
        return None;
    }
    let verify_allowed = match obj.get("key_ops") {
        None => true,
        Some(Value::Array(ops)) => ops.iter().any(|op| op.as_str() == Some("verify")),
        Some(_) => false,
    };
    if !verify_allowed {
        return None;
    }
    let alg = super::opt_str(obj, "alg").ok()?.map(str::to_owned);
    if alg.as_deref().is_some_and(|a| !SIG_ALGS.contains(&a)) {
        return None;
    }
    let x5t_s256 = super::opt_str(obj, "x5t#S256").ok()?.map(str::to_owned);
    let x5c_first = match obj.get("x5c") {
        Some(Value::Array(certs)) => certs
            .first()
            .and_then(Value::as_str)
            .and_then(b64::decode_standard)
            .filter(|der| !der.is_empty()),
        _ => None,
    };

    let material = match obj.get("kty").and_then(Value::as_str)? {
        "RSA" => {
            let n = strip_leading_zeros(b64_member(obj, "n")?);
            let e = strip_leading_zeros(b64_member(obj, "e")?);
            if n.is_empty() || e.is_empty() {
                return None;
            }
            KeyMaterial::Rsa { n, e }
        }
        "EC" => {
            if obj.get("crv").and_then(Value::as_str)? != "P-256" {
                return None;
            }
            let x = b64_member(obj, "x")?;
            let y = b64_member(obj, "y")?;
            if x.len() != 32 || y.len() != 32 {
                return None;
            }
            let mut point = Vec::with_capacity(65);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            KeyMaterial::EcP256 { point }
        }
        "OKP" => {
            if obj.get("crv").and_then(Value::as_str)? != "Ed25519" {
                return None;
            }
            let x = b64_member(obj, "x")?;
            if x.len() != 32 {
                return None;
            }
            KeyMaterial::Ed25519 { x }
        }
        _ => return None,
    };

    Some(Jwk {
        kid,
        use_,
        alg,
        material,
        x5t_s256,
        x5c_first,
    })
}

fn b64_member(obj: &Map<String, Value>, name: &str) -> Option<Vec<u8>> {
    b64::decode(obj.get(name)?.as_str()?).ok()
}

fn strip_leading_zeros(mut v: Vec<u8>) -> Vec<u8> {
    let zeros = v.iter().take_while(|b| **b == 0).count();
    v.drain(..zeros);
    v
}
