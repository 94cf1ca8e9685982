//! The outcome of fetching one key document, as the validations see it.

use crate::jose::JwkSet;
use std::rc::Rc;

/// The outcome of fetching one JWKS document.
#[derive(Debug, Clone)]
pub enum Fetched {
    Keys(Rc<JwkSet>),
    /// Timed out, refused, reset, or answered 5xx: a dependency fault (503).
    Unavailable(String),
    /// Answered, but with 4xx, a non-JSON or oversized document: the client's fault (400).
    Unusable(String),
}

impl Fetched {
    /// Interpret a callout response. `status` is `None` when the host reports no response at all.
    pub fn from_response(
        status: Option<u16>,
        body: &[u8],
        body_size: usize,
        max_bytes: usize,
        max_keys: usize,
    ) -> Fetched {
        let status = match status {
            None => return Fetched::Unavailable("no response".to_string()),
            Some(s) => s,
        };
        if status >= 500 {
            return Fetched::Unavailable(format!("answered HTTP {status}"));
        }
        if !(200..300).contains(&status) {
            return Fetched::Unusable(format!("answered HTTP {status}"));
        }
        if body_size > max_bytes || body.len() > max_bytes {
            return Fetched::Unusable(format!("document larger than {max_bytes} bytes"));
        }
        match JwkSet::parse(body, max_keys) {
            Ok(set) => Fetched::Keys(Rc::new(set)),
            Err(e) => Fetched::Unusable(format!("unusable document: {e}")),
        }
    }
}
