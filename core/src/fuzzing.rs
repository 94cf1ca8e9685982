//! Entry points for the coverage-guided fuzz targets in `fuzz/` (feature `fuzzing`, never part of
//! the filter build): crate-private parsers.

/// The strict top-level JSON object parser behind JOSE headers/payloads and the `br-ofb` JSON
/// registration body (duplicate member names refused).
pub fn parse_json_object(
    bytes: &[u8],
) -> Result<serde_json::Map<String, serde_json::Value>, crate::jose::JoseError> {
    crate::jose::jws::parse_object(bytes, "body")
}
