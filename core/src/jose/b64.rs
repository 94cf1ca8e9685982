//! Strict base64url (RFC 4648 §5, no padding) as required by RFC 7515 §2.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

use super::JoseError;

/// Standard-alphabet base64 (as used by `x5c`), padding optional.
const STANDARD_LENIENT_PAD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decode base64url without padding, strictly: `=`, `+`, `/`, whitespace,
/// an impossible length and non-canonical trailing bits are all rejected.
pub fn decode(s: &str) -> Result<Vec<u8>, JoseError> {
    // URL_SAFE_NO_PAD requires no padding and rejects non-zero trailing bits.
    URL_SAFE_NO_PAD
        .decode(s.as_bytes())
        .map_err(|_| JoseError::malformed("invalid base64url"))
}

/// Encode as base64url without padding.
pub fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decode standard base64 (with or without padding) — the `x5c` encoding
/// (RFC 7517 §4.7). Whitespace is not accepted.
pub(crate) fn decode_standard(s: &str) -> Option<Vec<u8>> {
    STANDARD_LENIENT_PAD.decode(s.as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_all_lengths() {
        let data: Vec<u8> = (0u8..=255).collect();
        for len in 0..data.len() {
            let enc = encode(&data[..len]);
            assert!(!enc.contains('='));
            assert_eq!(decode(&enc).unwrap(), &data[..len]);
        }
    }

    #[test]
    fn rejects_non_canonical_forms() {
        assert_eq!(decode("AQAB").unwrap(), vec![1, 0, 1]);
        for bad in [
            "AQ==", "AQ=", "a+b_", "a/b-", "AQ AB", "AQAB\n", " AQAB", "A", "AQAB=", "AR", "AQB",
            "é",
        ] {
            assert!(
                matches!(decode(bad), Err(JoseError::Malformed(_))),
                "accepted {bad:?}"
            );
        }
        // Canonical counterparts of the trailing-bits cases are accepted.
        assert_eq!(decode("AQ").unwrap(), vec![1]);
        assert_eq!(decode("AQA").unwrap(), vec![1, 0]);
    }

    #[test]
    fn standard_base64_for_x5c() {
        assert_eq!(decode_standard("+/8=").unwrap(), vec![0xfb, 0xff]);
        assert_eq!(decode_standard("+/8").unwrap(), vec![0xfb, 0xff]);
        assert!(decode_standard("-_8").is_none());
    }
}
