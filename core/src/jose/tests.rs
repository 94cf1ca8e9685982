//! End-to-end tests of the JOSE core: published vectors, minted tokens and
//! one negative test per refusal.

use std::sync::OnceLock;

use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING,
    ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256, RSA_PSS_SHA256,
};
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};

use super::verify::verify_signature;
use super::*;

// ---------------------------------------------------------------------------
// Published vectors
// ---------------------------------------------------------------------------

/// RFC 7515 A.2 / A.3 payload: the JWT claims set with CRLF line breaks.
const RFC7515_PAYLOAD_B64: &str = "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";

/// RFC 7515 Appendix A.2.1: RS256.
const RFC7515_A2_TOKEN: &str = concat!(
    "eyJhbGciOiJSUzI1NiJ9",
    ".",
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFt",
    "cGxlLmNvbS9pc19yb290Ijp0cnVlfQ",
    ".",
    "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7",
    "AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4",
    "BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K",
    "0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqv",
    "hJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrB",
    "p0igcN_IoypGlUPQGe77Rw",
);
const RFC7515_A2_N: &str = concat!(
    "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddx",
    "HmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMs",
    "D1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSH",
    "SXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdV",
    "MTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8",
    "NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ",
);

/// RFC 7515 Appendix A.3.1: ES256.
const RFC7515_A3_TOKEN: &str = concat!(
    "eyJhbGciOiJFUzI1NiJ9",
    ".",
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFt",
    "cGxlLmNvbS9pc19yb290Ijp0cnVlfQ",
    ".",
    "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSA",
    "pmWQxfKTUJqPP3-Kg6NU1Q",
);
const RFC7515_A3_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
const RFC7515_A3_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

/// RFC 8037 Appendix A.4: Ed25519 signature (payload "Example of Ed25519
/// signing" — not a JSON object) and the A.2 public key.
const RFC8037_A4_TOKEN: &str = concat!(
    "eyJhbGciOiJFZERTQSJ9",
    ".",
    "RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc",
    ".",
    "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt",
    "9g7sVvpAr_MuM0KAg",
);
const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn rng() -> SystemRandom {
    SystemRandom::new()
}

struct RsaFixture {
    ring: RsaKeyPair,
    private: rsa::RsaPrivateKey,
}

impl RsaFixture {
    fn generate(bits: usize) -> Self {
        let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), bits).unwrap();
        let der = rsa::pkcs8::EncodePrivateKey::to_pkcs8_der(&private).unwrap();
        let ring = RsaKeyPair::from_pkcs8(der.as_bytes()).unwrap();
        RsaFixture { ring, private }
    }

    fn jwk(&self, kid: Option<&str>) -> Value {
        let mut v = json!({
            "kty": "RSA",
            "n": b64::encode(&self.private.n().to_bytes_be()),
            "e": b64::encode(&self.private.e().to_bytes_be()),
        });
        if let Some(kid) = kid {
            v["kid"] = json!(kid);
        }
        v
    }

    fn sign(&self, padding: &'static dyn ring::signature::RsaEncoding, msg: &[u8]) -> Vec<u8> {
        let mut sig = vec![0; self.ring.public().modulus_len()];
        self.ring.sign(padding, &rng(), msg, &mut sig).unwrap();
        sig
    }
}

fn rsa2048() -> &'static RsaFixture {
    static K: OnceLock<RsaFixture> = OnceLock::new();
    K.get_or_init(|| RsaFixture::generate(2048))
}

/// 1024-bit key: ring refuses to load it, so only the `rsa` crate is used.
fn rsa1024() -> &'static rsa::RsaPrivateKey {
    static K: OnceLock<rsa::RsaPrivateKey> = OnceLock::new();
    K.get_or_init(|| rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 1024).unwrap())
}

struct EcFixture {
    kp: EcdsaKeyPair,
    pkcs8: Vec<u8>,
}

impl EcFixture {
    fn generate() -> Self {
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng()).unwrap();
        let pkcs8 = doc.as_ref().to_vec();
        let kp =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng()).unwrap();
        EcFixture { kp, pkcs8 }
    }

    fn jwk(&self, kid: Option<&str>) -> Value {
        let point = self.kp.public_key().as_ref();
        assert_eq!(point.len(), 65);
        let mut v = json!({
            "kty": "EC",
            "crv": "P-256",
            "x": b64::encode(&point[1..33]),
            "y": b64::encode(&point[33..]),
        });
        if let Some(kid) = kid {
            v["kid"] = json!(kid);
        }
        v
    }

    fn sign(&self, msg: &[u8]) -> Vec<u8> {
        self.kp.sign(&rng(), msg).unwrap().as_ref().to_vec()
    }

    fn sign_der(&self, msg: &[u8]) -> Vec<u8> {
        let kp =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &self.pkcs8, &rng()).unwrap();
        kp.sign(&rng(), msg).unwrap().as_ref().to_vec()
    }
}

struct EdFixture {
    kp: Ed25519KeyPair,
}

impl EdFixture {
    fn generate() -> Self {
        let doc = Ed25519KeyPair::generate_pkcs8(&rng()).unwrap();
        EdFixture {
            kp: Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap(),
        }
    }

    fn jwk(&self, kid: Option<&str>) -> Value {
        let mut v = json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": b64::encode(self.kp.public_key().as_ref()),
        });
        if let Some(kid) = kid {
            v["kid"] = json!(kid);
        }
        v
    }

    fn sign(&self, msg: &[u8]) -> Vec<u8> {
        self.kp.sign(msg).as_ref().to_vec()
    }
}

fn set(keys: Vec<Value>) -> JwkSet {
    JwkSet::parse(&serde_json::to_vec(&json!({ "keys": keys })).unwrap(), 100).unwrap()
}

/// Build a compact JWS from raw header/payload bytes and a signer.
fn mint_raw(header: &[u8], payload: &[u8], sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    let input = format!("{}.{}", b64::encode(header), b64::encode(payload));
    let sig = sign(input.as_bytes());
    format!("{input}.{}", b64::encode(&sig))
}

fn mint(header: Value, claims: Value, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    mint_raw(
        &serde_json::to_vec(&header).unwrap(),
        &serde_json::to_vec(&claims).unwrap(),
        sign,
    )
}

fn claims() -> Value {
    json!({"iss": "client-123", "aud": "https://as.example", "iat": 1_700_000_000})
}

fn check(token: &str, sets: &[&JwkSet], allowed: &[Alg]) -> Result<Option<String>, JoseError> {
    let jws = Jws::parse(token)?;
    verify(&jws, sets, allowed).map(|k| k.kid.clone())
}

/// Replace the payload segment of `token` with `payload` bytes.
fn with_payload(token: &str, payload: &[u8]) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!("{}.{}.{}", parts[0], b64::encode(payload), parts[2])
}

/// Replace the signature segment of `token` with `sig` bytes.
fn with_signature(token: &str, sig: &[u8]) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!("{}.{}.{}", parts[0], parts[1], b64::encode(sig))
}

fn segment(token: &str, i: usize) -> Vec<u8> {
    b64::decode(token.split('.').nth(i).unwrap()).unwrap()
}

/// Flip one bit of the payload inside a JSON string value (keeps it valid
/// JSON) and of the signature, and check both fail with BadSignature.
fn assert_tamper_fails(token: &str, sets: &[&JwkSet], allowed: &[Alg], payload_pos: usize) {
    let mut payload = segment(token, 1);
    payload[payload_pos] ^= 0x01;
    assert!(serde_json::from_slice::<Value>(&payload).is_ok());
    assert_eq!(
        check(&with_payload(token, &payload), sets, allowed),
        Err(JoseError::BadSignature)
    );
    let sig = segment(token, 2);
    for pos in [0, sig.len() / 2, sig.len() - 1] {
        let mut bad = sig.clone();
        bad[pos] ^= 0x01;
        assert_eq!(
            check(&with_signature(token, &bad), sets, allowed),
            Err(JoseError::BadSignature),
            "signature byte {pos}"
        );
    }
}

// ---------------------------------------------------------------------------
// Published vectors
// ---------------------------------------------------------------------------

fn rfc7515_rsa_set() -> JwkSet {
    set(vec![json!({"kty": "RSA", "n": RFC7515_A2_N, "e": "AQAB"})])
}

fn rfc7515_ec_set() -> JwkSet {
    set(vec![
        json!({"kty": "EC", "crv": "P-256", "x": RFC7515_A3_X, "y": RFC7515_A3_Y}),
    ])
}

#[test]
fn rfc7515_payload_is_the_crlf_jwt() {
    assert_eq!(
        b64::decode(RFC7515_PAYLOAD_B64).unwrap(),
        b"{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n \"http://example.com/is_root\":true}"
    );
}

#[test]
fn rfc7515_a2_rs256_vector() {
    let keys = rfc7515_rsa_set();
    assert_eq!(keys.keys[0].rsa_bits(), Some(2048));
    let jws = Jws::parse(RFC7515_A2_TOKEN).unwrap();
    assert_eq!(jws.header.alg, "RS256");
    assert_eq!(jws.claims["iss"], "joe");
    assert_eq!(jws.claims["exp"], 1300819380);
    assert_eq!(jws.claims["http://example.com/is_root"], true);
    assert!(verify(&jws, &[&keys], &[Alg::Rs256]).is_ok());
    // "joe" -> "jne": payload byte 9 is the 'o'.
    assert_eq!(segment(RFC7515_A2_TOKEN, 1)[9], b'o');
    assert_tamper_fails(RFC7515_A2_TOKEN, &[&keys], &[Alg::Rs256], 9);
    // Same key, other padding scheme: not a valid PS256 signature.
    let mut as_ps = jws.clone();
    as_ps.header.alg = "PS256".into();
    assert_eq!(
        verify(&as_ps, &[&keys], &[Alg::Ps256]).unwrap_err(),
        JoseError::BadSignature
    );
}

#[test]
fn rfc7515_a2_refused_when_rs256_not_allowed() {
    let keys = rfc7515_rsa_set();
    assert_eq!(
        check(RFC7515_A2_TOKEN, &[&keys], &[Alg::Ps256, Alg::Es256]),
        Err(JoseError::AlgNotAllowed("RS256".into()))
    );
    assert_eq!(
        check(RFC7515_A2_TOKEN, &[&keys], &[]),
        Err(JoseError::AlgNotAllowed("RS256".into()))
    );
}

#[test]
fn rfc7515_a3_es256_vector() {
    let keys = rfc7515_ec_set();
    assert_eq!(check(RFC7515_A3_TOKEN, &[&keys], &[Alg::Es256]), Ok(None));
    assert_tamper_fails(RFC7515_A3_TOKEN, &[&keys], &[Alg::Es256], 9);
    // The RSA vector key does not fit ES256 and vice versa.
    let rsa = rfc7515_rsa_set();
    assert_eq!(
        check(RFC7515_A3_TOKEN, &[&rsa], &[Alg::Es256]),
        Err(JoseError::NoKey)
    );
    assert_eq!(
        check(RFC7515_A2_TOKEN, &[&keys], &Alg::ALL),
        Err(JoseError::NoKey)
    );
}

#[test]
fn rfc8037_a4_ed25519_vector() {
    let keys = set(vec![
        json!({"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X}),
    ]);
    let key = &keys.keys[0];
    // The payload is not a JSON object, so it is not a token this crate
    // accepts; the signature itself is checked on the raw signing input.
    assert_eq!(
        Jws::parse(RFC8037_A4_TOKEN).unwrap_err(),
        JoseError::Malformed("payload is not valid JSON".into())
    );
    assert_eq!(segment(RFC8037_A4_TOKEN, 1), b"Example of Ed25519 signing");
    let (input, sig64) = RFC8037_A4_TOKEN.rsplit_once('.').unwrap();
    let sig = b64::decode(sig64).unwrap();
    assert_eq!(
        verify_signature(key, Alg::EdDsa, input.as_bytes(), &sig),
        Ok(())
    );
    let mut bad_input = input.as_bytes().to_vec();
    let last = bad_input.len() - 1;
    bad_input[last] = b'Z';
    assert_eq!(
        verify_signature(key, Alg::EdDsa, &bad_input, &sig),
        Err(JoseError::BadSignature)
    );
    for pos in [0, 31, 63] {
        let mut bad = sig.clone();
        bad[pos] ^= 0x01;
        assert_eq!(
            verify_signature(key, Alg::EdDsa, input.as_bytes(), &bad),
            Err(JoseError::BadSignature)
        );
    }
    assert_eq!(
        verify_signature(key, Alg::Es256, input.as_bytes(), &sig),
        Err(JoseError::KeyUnsuitable(String::new()))
    );
}

// ---------------------------------------------------------------------------
// Minted tokens
// ---------------------------------------------------------------------------

#[test]
fn minted_ps256_verifies() {
    let k = rsa2048();
    let keys = set(vec![k.jwk(Some("rsa1"))]);
    let t = mint(
        json!({"alg": "PS256", "kid": "rsa1", "typ": "JWT"}),
        claims(),
        |m| k.sign(&RSA_PSS_SHA256, m),
    );
    assert_eq!(check(&t, &[&keys], &[Alg::Ps256]), Ok(Some("rsa1".into())));
    assert_tamper_fails(&t, &[&keys], &[Alg::Ps256], 9);
    // Without kid the single RSA key is selected.
    let t = mint(json!({"alg": "PS256"}), claims(), |m| {
        k.sign(&RSA_PSS_SHA256, m)
    });
    assert_eq!(check(&t, &[&keys], &[Alg::Ps256]), Ok(Some("rsa1".into())));
}

#[test]
fn minted_rs256_verifies_and_is_refused_unless_allowed() {
    let k = rsa2048();
    let keys = set(vec![k.jwk(Some("rsa1"))]);
    let t = mint(json!({"alg": "RS256", "kid": "rsa1"}), claims(), |m| {
        k.sign(&RSA_PKCS1_SHA256, m)
    });
    assert_eq!(check(&t, &[&keys], &[Alg::Rs256]), Ok(Some("rsa1".into())));
    assert_eq!(
        check(&t, &[&keys], &[Alg::Ps256, Alg::Es256]),
        Err(JoseError::AlgNotAllowed("RS256".into()))
    );
}

#[test]
fn minted_es256_verifies() {
    let k = EcFixture::generate();
    let keys = set(vec![k.jwk(Some("ec1"))]);
    let t = mint(json!({"alg": "ES256", "kid": "ec1"}), claims(), |m| {
        k.sign(m)
    });
    assert_eq!(check(&t, &[&keys], &[Alg::Es256]), Ok(Some("ec1".into())));
    assert_tamper_fails(&t, &[&keys], &[Alg::Es256], 9);
}

#[test]
fn minted_eddsa_verifies() {
    let k = EdFixture::generate();
    let keys = set(vec![k.jwk(Some("ed1"))]);
    let t = mint(json!({"alg": "EdDSA", "kid": "ed1"}), claims(), |m| {
        k.sign(m)
    });
    assert_eq!(check(&t, &[&keys], &[Alg::EdDsa]), Ok(Some("ed1".into())));
    assert_tamper_fails(&t, &[&keys], &[Alg::EdDsa], 9);
    // "Ed25519" is not the JWS alg name (RFC 8037 uses "EdDSA").
    let t = mint(json!({"alg": "Ed25519", "kid": "ed1"}), claims(), |m| {
        k.sign(m)
    });
    assert_eq!(
        check(&t, &[&keys], &Alg::ALL),
        Err(JoseError::AlgNotAllowed("Ed25519".into()))
    );
}

// ---------------------------------------------------------------------------
// Refusals
// ---------------------------------------------------------------------------

#[test]
fn alg_none_is_forbidden() {
    let keys = rfc7515_rsa_set();
    let h = b64::encode(br#"{"alg":"none"}"#);
    for t in [
        format!("{h}.{RFC7515_PAYLOAD_B64}."),
        format!("{h}.{RFC7515_PAYLOAD_B64}.AAAA"),
        format!(
            "{h}.{RFC7515_PAYLOAD_B64}.{}",
            RFC7515_A2_TOKEN.rsplit('.').next().unwrap()
        ),
    ] {
        assert_eq!(
            check(&t, &[&keys], &Alg::ALL),
            Err(JoseError::AlgForbidden("none".into()))
        );
    }
    // verify() refuses on its own too (defence in depth).
    let mut jws = Jws::parse(RFC7515_A2_TOKEN).unwrap();
    jws.header.alg = "none".into();
    assert_eq!(
        verify(&jws, &[&keys], &Alg::ALL).unwrap_err(),
        JoseError::AlgForbidden("none".into())
    );
}

#[test]
fn hs256_key_confusion_is_forbidden() {
    let k = rsa2048();
    let keys = set(vec![k.jwk(Some("rsa1"))]);
    // The classic attack: HMAC keyed with the bytes of the RSA public key.
    let pem = rsa::pkcs8::EncodePublicKey::to_public_key_pem(
        &k.private.to_public_key(),
        rsa::pkcs8::LineEnding::LF,
    )
    .unwrap();
    for secret in [pem.as_bytes().to_vec(), k.private.n().to_bytes_be()] {
        let mac_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
        let t = mint(json!({"alg": "HS256", "kid": "rsa1"}), claims(), |m| {
            ring::hmac::sign(&mac_key, m).as_ref().to_vec()
        });
        assert_eq!(
            check(&t, &[&keys], &Alg::ALL),
            Err(JoseError::AlgForbidden("HS256".into()))
        );
    }
    let mut jws = Jws::parse(RFC7515_A2_TOKEN).unwrap();
    jws.header.alg = "HS256".into();
    assert_eq!(
        verify(&jws, &[&keys], &Alg::ALL).unwrap_err(),
        JoseError::AlgForbidden("HS256".into())
    );
}

#[test]
fn unknown_alg_is_not_allowed() {
    let keys = rfc7515_rsa_set();
    for alg in ["RS384", "ES512", "rs256", "PS256 ", ""] {
        let mut jws = Jws::parse(RFC7515_A2_TOKEN).unwrap();
        jws.header.alg = alg.into();
        assert_eq!(
            verify(&jws, &[&keys], &Alg::ALL).unwrap_err(),
            JoseError::AlgNotAllowed(alg.into())
        );
    }
}

/// RS256 signature by an RSA key with the `rsa` crate: EMSA-PKCS1-v1_5 over
/// a DigestInfo we build ourselves (no sha2 dependency needed).
fn rs256_sign_with_rsa_crate(key: &rsa::RsaPrivateKey, msg: &[u8]) -> Vec<u8> {
    const SHA256_DIGEST_INFO_PREFIX: [u8; 19] = [
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0x04, 0x20,
    ];
    let mut digest_info = SHA256_DIGEST_INFO_PREFIX.to_vec();
    digest_info.extend_from_slice(ring::digest::digest(&ring::digest::SHA256, msg).as_ref());
    key.sign(rsa::Pkcs1v15Sign::new_unprefixed(), &digest_info)
        .unwrap()
}

#[test]
fn rsa_1024_key_is_too_small() {
    let k = rsa1024();
    let n = k.n().to_bytes_be();
    let e = k.e().to_bytes_be();
    let keys = set(vec![json!({
        "kty": "RSA", "kid": "small",
        "n": b64::encode(&n), "e": b64::encode(&e),
    })]);
    assert_eq!(keys.skipped, 0, "small RSA keys are kept");
    assert_eq!(keys.keys[0].rsa_bits(), Some(1024));
    let t = mint(json!({"alg": "RS256", "kid": "small"}), claims(), |m| {
        rs256_sign_with_rsa_crate(k, m)
    });
    // The signature is genuine (checked with ring's legacy verifier) ...
    let (input, sig) = t.rsplit_once('.').unwrap();
    ring::signature::RsaPublicKeyComponents { n: &n, e: &e }
        .verify(
            &ring::signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
            input.as_bytes(),
            &b64::decode(sig).unwrap(),
        )
        .unwrap();
    // ... but the key is refused for its size.
    assert_eq!(
        check(&t, &[&keys], &[Alg::Rs256]),
        Err(JoseError::KeyTooSmall(1024))
    );
}

#[test]
fn crit_is_unsupported_in_verify_too() {
    let keys = rfc7515_rsa_set();
    let mut jws = Jws::parse(RFC7515_A2_TOKEN).unwrap();
    jws.header.crit = vec!["exp".into()];
    assert_eq!(
        verify(&jws, &[&keys], &[Alg::Rs256]).unwrap_err(),
        JoseError::CritUnsupported("exp".into())
    );
}

#[test]
fn crit_is_unsupported() {
    let k = EcFixture::generate();
    let keys = set(vec![k.jwk(None)]);
    let t = mint(
        json!({"alg": "ES256", "crit": ["http://example.invalid/ext"], "http://example.invalid/ext": true}),
        claims(),
        |m| k.sign(m),
    );
    assert_eq!(
        check(&t, &[&keys], &[Alg::Es256]),
        Err(JoseError::CritUnsupported(
            "http://example.invalid/ext".into()
        ))
    );
}

#[test]
fn embedded_keys_in_header_are_never_used() {
    let legit = EcFixture::generate();
    let attacker = EcFixture::generate();
    let keys = set(vec![legit.jwk(None)]);
    let attacker_jwk = attacker.jwk(Some("evil"));
    let headers = [
        json!({"alg": "ES256", "jwk": attacker_jwk}),
        json!({"alg": "ES256", "jku": "https://attacker.invalid/jwks.json"}),
        json!({"alg": "ES256", "x5u": "https://attacker.invalid/cert.pem"}),
        json!({"alg": "ES256", "x5c": ["MIIBszCCAVmgAwIBAgIUAA=="]}),
        json!({"alg": "ES256", "x5t#S256": "abc"}),
        json!({"alg": "ES256", "jwk": attacker_jwk, "jku": "https://attacker.invalid/",
               "x5u": "https://attacker.invalid/", "x5c": ["AA=="]}),
    ];
    for h in headers {
        let t = mint(h.clone(), claims(), |m| attacker.sign(m));
        let jws = Jws::parse(&t).unwrap();
        assert!(jws.header.embedded_key_hints, "{h}");
        assert_eq!(
            verify(&jws, &[&keys], &[Alg::Es256]).unwrap_err(),
            JoseError::BadSignature,
            "{h}"
        );
        // Even if the attacker's kid is given, it is looked up only in the JWKS.
        let mut h2 = h.clone();
        h2["kid"] = json!("evil");
        let t = mint(h2, claims(), |m| attacker.sign(m));
        assert_eq!(
            check(&t, &[&keys], &[Alg::Es256]),
            Err(JoseError::UnknownKid("evil".into()))
        );
    }
    // And the same header does not stop a legitimately signed token.
    let t = mint(
        json!({"alg": "ES256", "jwk": attacker_jwk}),
        claims(),
        |m| legit.sign(m),
    );
    assert_eq!(check(&t, &[&keys], &[Alg::Es256]), Ok(None));
}

#[test]
fn unknown_kid() {
    let k = EcFixture::generate();
    let keys = set(vec![k.jwk(Some("a")), EcFixture::generate().jwk(Some("b"))]);
    let t = mint(json!({"alg": "ES256", "kid": "c"}), claims(), |m| k.sign(m));
    assert_eq!(
        check(&t, &[&keys], &[Alg::Es256]),
        Err(JoseError::UnknownKid("c".into()))
    );
    // A key without kid does not answer for a kid.
    let nokid = set(vec![k.jwk(None)]);
    assert_eq!(
        check(&t, &[&nokid], &[Alg::Es256]),
        Err(JoseError::UnknownKid("c".into()))
    );
    // No sets at all.
    assert_eq!(
        check(&t, &[], &[Alg::Es256]),
        Err(JoseError::UnknownKid("c".into()))
    );
}

#[test]
fn kid_names_unsuitable_key() {
    let ec = EcFixture::generate();
    let k = rsa2048();
    let mut rsa_jwk = k.jwk(Some("r"));
    rsa_jwk["alg"] = json!("PS256");
    let keys = set(vec![ec.jwk(Some("e")), rsa_jwk]);
    // RS256 token naming the key declared for PS256.
    let t = mint(json!({"alg": "RS256", "kid": "r"}), claims(), |m| {
        k.sign(&RSA_PKCS1_SHA256, m)
    });
    assert_eq!(
        check(&t, &[&keys], &Alg::ALL),
        Err(JoseError::KeyUnsuitable("r".into()))
    );
    // ES256 token naming the RSA key.
    let t = mint(json!({"alg": "ES256", "kid": "r"}), claims(), |m| {
        ec.sign(m)
    });
    assert_eq!(
        check(&t, &[&keys], &Alg::ALL),
        Err(JoseError::KeyUnsuitable("r".into()))
    );
    // PS256 is what that key is for.
    let t = mint(json!({"alg": "PS256", "kid": "r"}), claims(), |m| {
        k.sign(&RSA_PSS_SHA256, m)
    });
    assert_eq!(check(&t, &[&keys], &Alg::ALL), Ok(Some("r".into())));
}

#[test]
fn no_kid_two_fitting_keys_is_ambiguous() {
    let a = EcFixture::generate();
    let b = EcFixture::generate();
    let keys = set(vec![a.jwk(Some("a")), b.jwk(Some("b"))]);
    let t = mint(json!({"alg": "ES256"}), claims(), |m| a.sign(m));
    assert_eq!(
        check(&t, &[&keys], &[Alg::Es256]),
        Err(JoseError::AmbiguousKey)
    );
    // Same kid on two different keys is ambiguous too.
    let dup = set(vec![a.jwk(Some("x")), b.jwk(Some("x"))]);
    let t = mint(json!({"alg": "ES256", "kid": "x"}), claims(), |m| a.sign(m));
    assert_eq!(
        check(&t, &[&dup], &[Alg::Es256]),
        Err(JoseError::AmbiguousKey)
    );
}

#[test]
fn no_kid_and_no_fitting_key() {
    let ed = EdFixture::generate();
    let a = EcFixture::generate();
    let keys = set(vec![ed.jwk(None)]);
    let t = mint(json!({"alg": "ES256"}), claims(), |m| a.sign(m));
    assert_eq!(check(&t, &[&keys], &[Alg::Es256]), Err(JoseError::NoKey));
    assert_eq!(check(&t, &[], &[Alg::Es256]), Err(JoseError::NoKey));
}

/// A directory-style JWKS full of entries the filter must ignore.
fn junk_entries() -> Vec<Value> {
    let k = rsa2048();
    let ec = EcFixture::generate();
    let mut enc = k.jwk(Some("enc"));
    enc["use"] = json!("enc");
    let mut tls = k.jwk(Some("tls"));
    tls["use"] = json!("tls");
    let mut oaep = k.jwk(Some("oaep"));
    oaep["alg"] = json!("RSA-OAEP-256");
    let mut ops = ec.jwk(Some("ops"));
    ops["key_ops"] = json!(["encrypt", "wrapKey"]);
    let mut private_rsa = k.jwk(Some("priv"));
    private_rsa["d"] = json!("AQAB");
    let mut private_ec = ec.jwk(Some("priv-ec"));
    private_ec["d"] = json!("AQAB");
    let mut no_n = k.jwk(Some("no-n"));
    no_n.as_object_mut().unwrap().remove("n");
    let mut bad_n = k.jwk(Some("bad-n"));
    bad_n["n"] = json!("not base64!");
    let mut padded_e = k.jwk(Some("padded-e"));
    padded_e["e"] = json!("AQAB=");
    let mut short_x = ec.jwk(Some("short-x"));
    short_x["x"] = json!(b64::encode(&[1u8; 31]));
    let mut kid_num = ec.jwk(None);
    kid_num["kid"] = json!(7);
    let mut use_num = ec.jwk(None);
    use_num["use"] = json!(1);
    vec![
        enc,
        tls,
        oaep,
        ops,
        private_rsa,
        private_ec,
        json!({"kty": "oct", "k": "c2VjcmV0"}),
        json!({"kty": "XYZ", "x": "AA"}),
        json!({"kty": "EC", "crv": "P-384",
               "x": b64::encode(&[1u8; 48]), "y": b64::encode(&[2u8; 48])}),
        json!({"kty": "OKP", "crv": "X25519", "x": b64::encode(&[3u8; 32])}),
        json!({"kty": "OKP", "crv": "Ed448", "x": b64::encode(&[3u8; 57])}),
        json!({"n": "AQAB", "e": "AQAB"}),
        no_n,
        bad_n,
        padded_e,
        short_x,
        kid_num,
        use_num,
        json!("not an object"),
        json!(42),
        json!(null),
        json!([]),
    ]
}

#[test]
fn jwks_skips_unusable_keys() {
    let junk = junk_entries();
    let n_junk = junk.len();
    let keys = set(junk);
    assert_eq!(keys.skipped, n_junk);
    assert!(keys.keys.is_empty());
}

#[test]
fn no_kid_one_fitting_key_among_junk() {
    let ed = EdFixture::generate();
    let mut entries = junk_entries();
    let n_junk = entries.len();
    entries.insert(3, ed.jwk(None));
    // A usable key of another type does not compete for EdDSA.
    entries.push(EcFixture::generate().jwk(Some("ec")));
    let keys = set(entries);
    assert_eq!(keys.skipped, n_junk);
    assert_eq!(keys.keys.len(), 2);
    let t = mint(json!({"alg": "EdDSA"}), claims(), |m| ed.sign(m));
    assert_eq!(check(&t, &[&keys], &[Alg::EdDsa]), Ok(None));
}

#[test]
fn jwks_key_member_rules() {
    let k = rsa2048();
    let mut sig_use = k.jwk(Some("s"));
    sig_use["use"] = json!("sig");
    sig_use["key_ops"] = json!(["verify"]);
    sig_use["alg"] = json!("PS256");
    sig_use["x5t#S256"] = json!("thumb");
    let mut leading_zero = k.jwk(Some("z"));
    let mut n = vec![0u8, 0u8];
    n.extend_from_slice(&k.private.n().to_bytes_be());
    leading_zero["n"] = json!(b64::encode(&n));
    leading_zero["e"] = json!(b64::encode(&[0, 1, 0, 1]));
    let keys = set(vec![sig_use, leading_zero]);
    assert_eq!(keys.skipped, 0);
    let s = &keys.keys[0];
    assert_eq!(s.use_.as_deref(), Some("sig"));
    assert_eq!(s.alg.as_deref(), Some("PS256"));
    assert_eq!(s.x5t_s256.as_deref(), Some("thumb"));
    assert!(s.fits(Alg::Ps256));
    assert!(!s.fits(Alg::Rs256));
    assert!(!s.fits(Alg::Es256));
    let z = &keys.keys[1];
    assert!(z.fits(Alg::Rs256) && z.fits(Alg::Ps256));
    assert_eq!(z.material, s.material, "leading zeros are stripped");
    assert_eq!(z.rsa_bits(), Some(2048));
    let unstripped = Jwk {
        material: KeyMaterial::Rsa {
            n: vec![0, 0, 0x01, 0xff],
            e: vec![3],
        },
        ..z.clone()
    };
    assert_eq!(unstripped.rsa_bits(), Some(9));
    assert_eq!(
        Jwk {
            material: KeyMaterial::Rsa {
                n: vec![0],
                e: vec![3]
            },
            ..z.clone()
        }
        .rsa_bits(),
        Some(0)
    );

    assert_eq!(
        z.material,
        KeyMaterial::Rsa {
            n: k.private.n().to_bytes_be(),
            e: vec![1, 0, 1]
        }
    );
}

#[test]
fn key_with_x5c_and_n_e_works() {
    let k = rsa2048();
    let mut jwk = k.jwk(Some("cert"));
    // Not a real certificate: only the JWK parameters matter for verification.
    let der = [0x30u8, 0x82, 0x01, 0xfb, 0xff, 0x00];
    jwk["x5c"] = json!([base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        der
    )]);
    jwk["x5t#S256"] = json!("t");
    let keys = set(vec![jwk]);
    assert_eq!(keys.keys[0].x5c_first.as_deref(), Some(&der[..]));
    let t = mint(json!({"alg": "PS256", "kid": "cert"}), claims(), |m| {
        k.sign(&RSA_PSS_SHA256, m)
    });
    assert_eq!(check(&t, &[&keys], &[Alg::Ps256]), Ok(Some("cert".into())));
    // An undecodable x5c is simply not recorded.
    let mut jwk = k.jwk(Some("cert"));
    jwk["x5c"] = json!(["%%%"]);
    let keys = set(vec![jwk]);
    assert_eq!(keys.skipped, 0);
    assert!(keys.keys[0].x5c_first.is_none());
}

#[test]
fn jwks_document_errors() {
    let ec = EcFixture::generate();
    let doc =
        serde_json::to_vec(&json!({"keys": [ec.jwk(None), ec.jwk(None), ec.jwk(None)]})).unwrap();
    assert_eq!(JwkSet::parse(&doc, 3).unwrap().keys.len(), 3);
    assert_eq!(
        JwkSet::parse(&doc, 2).unwrap_err(),
        JoseError::BadJwks("too many keys".into())
    );
    for bad in [
        &b"not json"[..],
        b"",
        b"{\"keys\":[",
        b"[]",
        b"\"keys\"",
        b"{}",
        b"{\"keys\":{}}",
        b"{\"keys\":null}",
        b"{\"Keys\":[]}",
        b"\xff\xfe",
    ] {
        assert!(
            matches!(JwkSet::parse(bad, 10), Err(JoseError::BadJwks(_))),
            "{bad:?}"
        );
    }
    let empty = JwkSet::parse(b"{\"keys\":[]}", 10).unwrap();
    assert!(empty.keys.is_empty() && empty.skipped == 0);
}

#[test]
fn duplicate_claims_are_malformed() {
    let k = EcFixture::generate();
    let keys = set(vec![k.jwk(None)]);
    let t = mint_raw(
        br#"{"alg":"ES256"}"#,
        br#"{"iss":"good","sub":"x","iss":"evil"}"#,
        |m| k.sign(m),
    );
    assert_eq!(
        check(&t, &[&keys], &[Alg::Es256]),
        Err(JoseError::DuplicateMember {
            part: "payload".into(),
            member: "iss".into(),
            at: String::new()
        })
    );
    let t = mint_raw(br#"{"alg":"ES256","alg":"ES256"}"#, b"{}", |m| k.sign(m));
    assert_eq!(
        check(&t, &[&keys], &[Alg::Es256]),
        Err(JoseError::DuplicateMember {
            part: "header".into(),
            member: "alg".into(),
            at: String::new()
        })
    );
}

#[test]
fn payload_array_is_malformed() {
    let k = EcFixture::generate();
    let keys = set(vec![k.jwk(None)]);
    let t = mint_raw(br#"{"alg":"ES256"}"#, br#"[{"iss":"a"}]"#, |m| k.sign(m));
    assert_eq!(
        check(&t, &[&keys], &[Alg::Es256]),
        Err(JoseError::Malformed("payload is not a JSON object".into()))
    );
}

#[test]
fn bad_base64_is_malformed() {
    let keys = rfc7515_ec_set();
    let (input, sig) = RFC7515_A3_TOKEN.rsplit_once('.').unwrap();
    let (h, p) = input.split_once('.').unwrap();
    for bad in [
        format!("{input}.{sig}="),
        format!("{input}.{sig}=="),
        format!("{h}=.{p}.{sig}"),
        format!("{h}.{p}=.{sig}"),
        format!("{input}.{}", sig.replace('-', "+")),
        format!("{input}.+{}", &sig[1..]),
        format!("{input}./{}", &sig[1..]),
        format!("{h}.{p}.{sig}\n"),
        format!("{h}.{p}.{} ", sig),
        format!("{h}.{p}\n.{sig}"),
    ] {
        assert!(
            matches!(
                check(&bad, &[&keys], &[Alg::Es256]),
                Err(JoseError::Malformed(_))
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn es256_der_signature_is_rejected() {
    let k = EcFixture::generate();
    let keys = set(vec![k.jwk(None)]);
    let t = mint(json!({"alg": "ES256"}), claims(), |m| k.sign_der(m));
    assert_ne!(segment(&t, 2).len(), 64);
    assert_eq!(
        check(&t, &[&keys], &[Alg::Es256]),
        Err(JoseError::BadSignature)
    );
    // The RFC 7515 A.3 r||s signature re-encoded as DER fails too.
    let sig = segment(RFC7515_A3_TOKEN, 2);
    let der = ecdsa_der(&sig[..32], &sig[32..]);
    let t = with_signature(RFC7515_A3_TOKEN, &der);
    assert_eq!(
        check(&t, &[&rfc7515_ec_set()], &[Alg::Es256]),
        Err(JoseError::BadSignature)
    );
}

fn ecdsa_der(r: &[u8], s: &[u8]) -> Vec<u8> {
    fn int(v: &[u8]) -> Vec<u8> {
        let v: Vec<u8> = v.iter().copied().skip_while(|b| *b == 0).collect();
        let mut out = vec![0x02];
        if v.first().is_some_and(|b| b & 0x80 != 0) {
            out.push(v.len() as u8 + 1);
            out.push(0);
        } else {
            out.push(v.len() as u8);
        }
        out.extend_from_slice(&v);
        out
    }
    let body = [int(r), int(s)].concat();
    let mut out = vec![0x30, body.len() as u8];
    out.extend_from_slice(&body);
    out
}

#[test]
fn swapped_signature_from_another_key_fails() {
    let a = EcFixture::generate();
    let b = EcFixture::generate();
    let keys = set(vec![a.jwk(Some("a"))]);
    let t = mint(json!({"alg": "ES256", "kid": "a"}), claims(), |m| b.sign(m));
    assert_eq!(
        check(&t, &[&keys], &[Alg::Es256]),
        Err(JoseError::BadSignature)
    );
    // Signature lifted from another valid token with the same header.
    let other = mint(
        json!({"alg": "ES256", "kid": "a"}),
        json!({"iss": "x"}),
        |m| a.sign(m),
    );
    let good = mint(json!({"alg": "ES256", "kid": "a"}), claims(), |m| a.sign(m));
    let spliced = with_signature(&good, &segment(&other, 2));
    assert_eq!(
        check(&spliced, &[&keys], &[Alg::Es256]),
        Err(JoseError::BadSignature)
    );
    // RSA: token signed by the minted key, JWKS holds the RFC key under that kid.
    let k = rsa2048();
    let mut rfc = json!({"kty": "RSA", "n": RFC7515_A2_N, "e": "AQAB", "kid": "r"});
    let rfc_set = set(vec![rfc.take()]);
    let t = mint(json!({"alg": "RS256", "kid": "r"}), claims(), |m| {
        k.sign(&RSA_PKCS1_SHA256, m)
    });
    assert_eq!(
        check(&t, &[&rfc_set], &[Alg::Rs256]),
        Err(JoseError::BadSignature)
    );
}

#[test]
fn same_key_in_two_sets_is_one_key() {
    let a = EcFixture::generate();
    let b = EcFixture::generate();
    let s1 = set(vec![a.jwk(Some("a")), b.jwk(Some("b"))]);
    let s2 = set(vec![a.jwk(Some("a"))]);
    let t = mint(json!({"alg": "ES256", "kid": "a"}), claims(), |m| a.sign(m));
    assert_eq!(check(&t, &[&s1, &s2], &[Alg::Es256]), Ok(Some("a".into())));
    // Without kid: the same material in both sets is still one key.
    let s1 = set(vec![a.jwk(Some("a1"))]);
    let s2 = set(vec![a.jwk(Some("a2")), rfc7515_rsa_set_entry()]);
    let t = mint(json!({"alg": "ES256"}), claims(), |m| a.sign(m));
    assert_eq!(check(&t, &[&s1, &s2], &[Alg::Es256]), Ok(Some("a1".into())));
    // A key only present in the second set is found.
    let s1 = set(vec![b.jwk(Some("b"))]);
    let s2 = set(vec![a.jwk(Some("a"))]);
    let t = mint(json!({"alg": "ES256", "kid": "a"}), claims(), |m| a.sign(m));
    assert_eq!(check(&t, &[&s1, &s2], &[Alg::Es256]), Ok(Some("a".into())));
    // The same kid with different material across sets is ambiguous.
    let s1 = set(vec![a.jwk(Some("k"))]);
    let s2 = set(vec![b.jwk(Some("k"))]);
    let t = mint(json!({"alg": "ES256", "kid": "k"}), claims(), |m| a.sign(m));
    assert_eq!(
        check(&t, &[&s1, &s2], &[Alg::Es256]),
        Err(JoseError::AmbiguousKey)
    );
}

fn rfc7515_rsa_set_entry() -> Value {
    json!({"kty": "RSA", "n": RFC7515_A2_N, "e": "AQAB"})
}

#[test]
fn select_key_directly() {
    let a = EcFixture::generate();
    let keys = set(vec![a.jwk(Some("a"))]);
    let jws = Jws::parse(&mint(json!({"alg": "ES256", "kid": "a"}), claims(), |m| {
        a.sign(m)
    }))
    .unwrap();
    let k = select_key(&[&keys], &jws.header, Alg::Es256).unwrap();
    assert_eq!(k.kid.as_deref(), Some("a"));
    assert_eq!(
        select_key(&[&keys], &jws.header, Alg::EdDsa).unwrap_err(),
        JoseError::KeyUnsuitable("a".into())
    );
}

const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Every single-character mutation of a valid token must be refused (or,
/// for a benign mutation, still verify) and must never panic.
fn mutation_property(token: &str, sets: &[&JwkSet], allowed: &[Alg]) -> (usize, usize) {
    assert!(check(token, sets, allowed).is_ok());
    let bytes = token.as_bytes();
    let (mut refused, mut benign) = (0, 0);
    for pos in 0..bytes.len() {
        let orig = bytes[pos];
        // Replacement candidates: neighbours in the alphabet, a far one,
        // a '.', and a few non-alphabet characters.
        let idx = B64URL.iter().position(|c| *c == orig).unwrap_or(0);
        let mut candidates = vec![
            B64URL[(idx + 1) % 64],
            B64URL[(idx + 63) % 64],
            B64URL[(idx + 32) % 64],
            b'.',
            b'=',
            b'+',
        ];
        candidates.retain(|c| *c != orig);
        for c in candidates {
            let mut m = bytes.to_vec();
            m[pos] = c;
            let m = String::from_utf8(m).unwrap();
            match check(&m, sets, allowed) {
                Ok(_) => benign += 1,
                Err(_) => refused += 1,
            }
        }
    }
    (refused, benign)
}

#[test]
fn single_char_mutations_never_verify_or_panic() {
    let ec = EcFixture::generate();
    let ec_set = set(vec![ec.jwk(Some("ec"))]);
    let t = mint(json!({"alg": "ES256", "kid": "ec"}), claims(), |m| {
        ec.sign(m)
    });
    let (refused, benign) = mutation_property(&t, &[&ec_set], &[Alg::Es256]);
    assert!(refused > 500);
    assert_eq!(benign, 0, "a mutated ES256 token verified");

    let ed = EdFixture::generate();
    let ed_set = set(vec![ed.jwk(None)]);
    let t = mint(json!({"alg": "EdDSA"}), claims(), |m| ed.sign(m));
    let (_, benign) = mutation_property(&t, &[&ed_set], &[Alg::EdDsa]);
    assert_eq!(benign, 0, "a mutated EdDSA token verified");

    let rfc = rfc7515_rsa_set();
    let (_, benign) = mutation_property(RFC7515_A2_TOKEN, &[&rfc], &[Alg::Rs256]);
    assert_eq!(benign, 0, "a mutated RS256 token verified");

    let k = rsa2048();
    let ps_set = set(vec![k.jwk(Some("rsa1"))]);
    let t = mint(json!({"alg": "PS256", "kid": "rsa1"}), claims(), |m| {
        k.sign(&RSA_PSS_SHA256, m)
    });
    let (_, benign) = mutation_property(&t, &[&ps_set], &[Alg::Ps256]);
    assert_eq!(benign, 0, "a mutated PS256 token verified");
}

#[test]
fn alg_names() {
    for a in Alg::ALL {
        assert_eq!(Alg::parse(a.name()), Some(a));
    }
    for n in [
        "rs256", "Rs256", "EDDSA", "eddsa", "ES256K", "none", "HS256", "",
    ] {
        assert_eq!(Alg::parse(n), None, "{n}");
    }
}

#[test]
fn display_is_short_and_leaks_nothing() {
    let long = "x".repeat(1000);
    for e in [
        JoseError::Malformed(long.clone()),
        JoseError::CritUnsupported(long.clone()),
        JoseError::AlgForbidden(long.clone()),
        JoseError::AlgNotAllowed(long.clone()),
        JoseError::BadJwks(long.clone()),
        JoseError::UnknownKid(long.clone()),
        JoseError::KeyUnsuitable(long.clone()),
    ] {
        let s = e.to_string();
        assert!(s.len() < 140, "{s}");
        assert!(!s.contains(&"x".repeat(65)));
    }
    assert_eq!(
        JoseError::UnknownKid("a\nb".into()).to_string(),
        "no key with kid \"a?b\""
    );
    assert_eq!(
        JoseError::KeyTooSmall(1024).to_string(),
        "RSA key too small (1024 bits, minimum 2048)"
    );
    // Errors from real inputs carry no token or key contents.
    let keys = rfc7515_rsa_set();
    let mut jws = Jws::parse(RFC7515_A2_TOKEN).unwrap();
    jws.header.kid = Some("k".repeat(300));
    let e = verify(&jws, &[&keys], &[Alg::Rs256]).unwrap_err();
    let JoseError::UnknownKid(kid) = &e else {
        panic!("{e:?}")
    };
    assert!(kid.chars().count() <= 65);
    for e in [
        check(
            &with_signature(RFC7515_A2_TOKEN, &[1, 2, 3]),
            &[&keys],
            &[Alg::Rs256],
        )
        .unwrap_err(),
        Jws::parse(&with_payload(RFC7515_A2_TOKEN, b"[\"secret-claim\"]")).unwrap_err(),
        Jws::parse(&with_payload(
            RFC7515_A2_TOKEN,
            b"{\"name\":\"secret\",\"name\":2}",
        ))
        .unwrap_err(),
    ] {
        let s = format!("{e} {e:?}");
        assert!(
            !s.contains("joe") && !s.contains("secret") && !s.contains("ofgW"),
            "{s}"
        );
    }
    // A duplicate names the member (what the description is about), never its values; the name
    // is clipped (control characters replaced) and bounded.
    let e = Jws::parse(&with_payload(
        RFC7515_A2_TOKEN,
        format!("{{\"{0}\":1,\"{0}\":2}}", "\\n".repeat(100)).as_bytes(),
    ))
    .unwrap_err();
    let s = e.to_string();
    assert!(s.len() < 120 && !s.contains('\n'), "{s}");
    let _: &dyn std::error::Error = &JoseError::NoKey;
}

// ---------------------------------------------------------------------------
// Transport (`use: tls`) keys
// ---------------------------------------------------------------------------

#[test]
fn tls_thumbprints_from_x5c_and_x5t_s256() {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;

    let sha = |der: &[u8]| -> [u8; 32] {
        ring::digest::digest(&ring::digest::SHA256, der)
            .as_ref()
            .try_into()
            .unwrap()
    };
    let ec = EcFixture::generate();
    // Stand-ins for DER certificates: only their bytes matter here.
    let (der_a, der_b, der_c) = (
        b"0\x82\x01\x0acertificate-a".to_vec(),
        b"0\x82\x01\x0acertificate-b".to_vec(),
        b"0\x82\x01\x0acertificate-c".to_vec(),
    );
    let x5t_only = [7u8; 32];
    let tls = |f: &dyn Fn(&mut Value)| {
        let mut k = ec.jwk(Some("tls"));
        k["use"] = json!("tls");
        f(&mut k);
        k
    };
    let cases: Vec<(&str, Value, Vec<[u8; 32]>)> = vec![
        (
            "x5c[0] (padded standard base64), later entries ignored",
            tls(&|k| k["x5c"] = json!([STANDARD.encode(&der_a), STANDARD.encode(&der_b)])),
            vec![sha(&der_a)],
        ),
        (
            "x5t#S256 only",
            tls(&|k| k["x5t#S256"] = json!(b64::encode(&x5t_only))),
            vec![x5t_only],
        ),
        (
            "both, consistent",
            tls(&|k| {
                k["x5c"] = json!([STANDARD.encode(&der_b).trim_end_matches('=')]);
                k["x5t#S256"] = json!(b64::encode(&sha(&der_b)));
            }),
            vec![sha(&der_b)],
        ),
        (
            "both, inconsistent",
            tls(&|k| {
                k["x5c"] = json!([STANDARD.encode(&der_a)]);
                k["x5t#S256"] = json!(b64::encode(&sha(&der_b)));
            }),
            vec![],
        ),
        (
            "x5t#S256 of the wrong length",
            tls(&|k| k["x5t#S256"] = json!(b64::encode(&[7u8; 31]))),
            vec![],
        ),
        (
            "x5t#S256 not base64url, x5c still counts",
            tls(&|k| {
                k["x5t#S256"] = json!("+/+/");
                k["x5c"] = json!([STANDARD.encode(&der_c)]);
            }),
            vec![sha(&der_c)],
        ),
        (
            "x5c not base64 / not an array / empty",
            tls(&|k| k["x5c"] = json!(["not base64!"])),
            vec![],
        ),
        ("x5c a string", tls(&|k| k["x5c"] = json!("MIIB")), vec![]),
        ("x5c empty", tls(&|k| k["x5c"] = json!([])), vec![]),
        ("neither member", tls(&|_| {}), vec![]),
        (
            "a signing key's certificate is not a transport key",
            {
                let mut k = ec.jwk(Some("sig"));
                k["use"] = json!("sig");
                k["x5c"] = json!([STANDARD.encode(&der_a)]);
                k
            },
            vec![],
        ),
        (
            "no use",
            {
                let mut k = ec.jwk(Some("nouse"));
                k["x5t#S256"] = json!(b64::encode(&x5t_only));
                k
            },
            vec![],
        ),
        (
            "published with its private part",
            tls(&|k| {
                k["d"] = json!("AQAB");
                k["x5t#S256"] = json!(b64::encode(&x5t_only));
            }),
            vec![],
        ),
        (
            "use of the wrong type",
            {
                let mut k = ec.jwk(Some("x"));
                k["use"] = json!(["tls"]);
                k["x5t#S256"] = json!(b64::encode(&x5t_only));
                k
            },
            vec![],
        ),
    ];
    for (why, entry, want) in &cases {
        let s = set(vec![entry.clone()]);
        assert_eq!(&s.tls_thumbprints, want, "{why}");
    }

    // Together: transport keys are still skipped as signing keys; duplicates collapse.
    let sig = ec.jwk(Some("sig"));
    let entries: Vec<Value> = cases
        .iter()
        .map(|(_, e, _)| e.clone())
        .chain([sig, cases[0].1.clone()])
        .collect();
    let s = set(entries);
    assert_eq!(
        s.tls_thumbprints,
        vec![sha(&der_a), x5t_only, sha(&der_b), sha(&der_c)]
    );
    let kids: Vec<_> = s.keys.iter().map(|k| k.kid.as_deref()).collect();
    assert_eq!(kids, vec![Some("sig"), Some("nouse"), Some("sig")]);
    assert!(JwkSet::default().tls_thumbprints.is_empty());
}
