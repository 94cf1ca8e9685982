//! `dcr-guard check-config --envoy`: the filter configuration out of a proxy's configuration.

pub fn main(path: &str) -> Result<u8, String> {
    Err(format!("{path}: --envoy is not implemented yet"))
}
