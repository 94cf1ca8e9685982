//! Key selection and signature verification.

use ring::signature::{
    RsaPublicKeyComponents, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ED25519,
    RSA_PKCS1_2048_8192_SHA256, RSA_PSS_2048_8192_SHA256,
};

use super::{alg_is_forbidden, clip, Alg, JoseError, Jwk, JwkSet, Jws, JwsHeader, KeyMaterial};

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// Select the key for a JWS from the caller's key sets.
///
/// With a `kid`: the key with that kid among all sets (several sets are
/// candidates together, e.g. two directory JWKS URLs); none has that kid →
/// [`JoseError::UnknownKid`]; keys with that kid exist but none fits the alg
/// → [`JoseError::KeyUnsuitable`]; several *distinct* key materials fit →
/// [`JoseError::AmbiguousKey`] (identical material appearing in two sets is
/// one key). Without a `kid`: the single key that fits the alg after
/// de-duplicating identical material; zero → [`JoseError::NoKey`]; several
/// → [`JoseError::AmbiguousKey`].
///
/// Keys embedded in or referenced by the header (`jwk`, `jku`, `x5u`,
/// `x5c`, `x5t`) are never considered.
pub fn select_key<'a>(
    sets: &[&'a JwkSet],
    header: &JwsHeader,
    alg: Alg,
) -> Result<&'a Jwk, JoseError> {
    let all = sets.iter().copied().flat_map(|s| s.keys.iter());
    match header.kid.as_deref() {
        Some(kid) => {
            let mut named = all.filter(|k| k.kid.as_deref() == Some(kid)).peekable();
            if named.peek().is_none() {
                return Err(JoseError::UnknownKid(clip(kid)));
            }
            unique(named.filter(|k| k.fits(alg)))?
                .ok_or_else(|| JoseError::KeyUnsuitable(clip(kid)))
        }
        None => unique(all.filter(|k| k.fits(alg)))?.ok_or(JoseError::NoKey),
    }
}

/// The single distinct key material among `candidates` (the first entry
/// carrying it is returned); `Ok(None)` if there are none.
fn unique<'a>(candidates: impl Iterator<Item = &'a Jwk>) -> Result<Option<&'a Jwk>, JoseError> {
    let mut chosen: Option<&'a Jwk> = None;
    for k in candidates {
        match chosen {
            None => chosen = Some(k),
            Some(c) if c.material == k.material => {}
            Some(_) => return Err(JoseError::AmbiguousKey),
        }
    }
    Ok(chosen)
}

/// Verify a parsed JWS against the caller's key sets; returns the key used.
///
/// Order: alg `none` or `HS*` → [`JoseError::AlgForbidden`] (always, first);
/// unknown alg or not in `allowed` → [`JoseError::AlgNotAllowed`]; any
/// `crit` → [`JoseError::CritUnsupported`]; [`select_key`]; RSA modulus
/// below 2048 bits → [`JoseError::KeyTooSmall`]; then ring: RS256 →
/// `RSA_PKCS1_2048_8192_SHA256`, PS256 → `RSA_PSS_2048_8192_SHA256`, ES256 →
/// `ECDSA_P256_SHA256_FIXED` (64-byte `r || s`; a DER signature fails),
/// EdDSA → `ED25519`. A signature that does not verify →
/// [`JoseError::BadSignature`].
pub fn verify<'a>(jws: &Jws, sets: &[&'a JwkSet], allowed: &[Alg]) -> Result<&'a Jwk, JoseError> {
    let name = jws.header.alg.as_str();
    if alg_is_forbidden(name) {
        return Err(JoseError::AlgForbidden(clip(name)));
    }
    let alg = Alg::parse(name)
        .filter(|a| allowed.contains(a))
        .ok_or_else(|| JoseError::AlgNotAllowed(clip(name)))?;
    // `Jws::parse` already refuses any `crit`; the fields are public, so
    // check again rather than trust a hand-built value.
    if let Some(name) = jws.header.crit.first() {
        return Err(JoseError::CritUnsupported(clip(name)));
    }
    let key = select_key(sets, &jws.header, alg)?;
    verify_signature(key, alg, jws.signing_input(), &jws.signature)?;
    Ok(key)
}

/// Verify `signature` over `signing_input` with `key` for `alg`, applying
/// the key-fit and RSA size checks. Used by [`verify`]; exposed to the crate
/// so that raw vectors (e.g. RFC 8037 A.4, whose payload is not JSON) can be
/// checked.
pub(crate) fn verify_signature(
    key: &Jwk,
    alg: Alg,
    signing_input: &[u8],
    signature: &[u8],
) -> Result<(), JoseError> {
    if !key.fits(alg) {
        return Err(JoseError::KeyUnsuitable(clip(
            key.kid.as_deref().unwrap_or(""),
        )));
    }
    if let Some(bits) = key.rsa_bits() {
        if bits < MIN_RSA_BITS {
            return Err(JoseError::KeyTooSmall(bits));
        }
    }
    let ok = match (&key.material, alg) {
        (KeyMaterial::Rsa { n, e }, Alg::Rs256 | Alg::Ps256) => {
            let params = if alg == Alg::Rs256 {
                &RSA_PKCS1_2048_8192_SHA256
            } else {
                &RSA_PSS_2048_8192_SHA256
            };
            RsaPublicKeyComponents { n, e }
                .verify(params, signing_input, signature)
                .is_ok()
        }
        (KeyMaterial::EcP256 { point }, Alg::Es256) => {
            // Fixed-width r || s only; ring rejects any other length (DER).
            signature.len() == 64
                && UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                    .verify(signing_input, signature)
                    .is_ok()
        }
        (KeyMaterial::Ed25519 { x }, Alg::EdDsa) => UnparsedPublicKey::new(&ED25519, x)
            .verify(signing_input, signature)
            .is_ok(),
        // Unreachable after `fits`, but never verify with a mismatched pair.
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(JoseError::BadSignature)
    }
}
