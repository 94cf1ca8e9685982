//! Where in the document a parse error happened, as a JSON path (`directories[0].jwks[1].url`).
//!
//! serde says *what* is wrong ("unknown field `urll`", "invalid type: string, expected u64") and
//! serde_json *where* (line and column). This turns the where into the path an operator searches
//! for, by scanning the document up to the error's position: a few hundred bytes of code, where
//! tracking the path while deserializing (a wrapper around every deserializer and visitor of the
//! configuration types) cost about 58 KB of the module. Only a refused configuration pays for it.

/// One level of the path being scanned.
enum Frame {
    /// An object and the key of the member being read (`None` before the first key, and between
    /// a `,` and the next key).
    Object(Option<String>),
    /// An array and the index of the element being read.
    Array(usize),
}

/// The path of what `err` (from reading `doc` with a serde_json deserializer over the whole
/// slice) is about: the member or element being read at the error's position; for a missing
/// field, the object that lacks it. Empty for the document itself, or when the error has no
/// position.
pub(super) fn error_path(doc: &[u8], err: &serde_json::Error) -> String {
    let Some(offset) = offset_of(doc, err.line(), err.column()) else {
        return String::new();
    };
    // A missing field is reported after the object's closing brace: the path is then the
    // object's own.
    // A syntax error's position includes the byte that broke it (a stray `}` must not close
    // anything here).
    let offset = if err.is_syntax() {
        offset.saturating_sub(1)
    } else {
        offset
    };
    render(&scan(doc.get(..offset).unwrap_or(doc)))
}

/// The byte offset of serde_json's (1-based line, 0-based byte column) position.
fn offset_of(doc: &[u8], line: usize, column: usize) -> Option<usize> {
    if line == 0 {
        return None;
    }
    let mut start = 0usize;
    for _ in 1..line {
        let newline = doc.get(start..)?.iter().position(|b| *b == b'\n')?;
        start = start.checked_add(newline)?.checked_add(1)?;
    }
    Some(start.saturating_add(column).min(doc.len()))
}

/// The open containers at the end of `prefix`, outermost first.
fn scan(prefix: &[u8]) -> Vec<Frame> {
    let mut frames: Vec<Frame> = Vec::new();
    let mut i = 0usize;
    while let Some(&b) = prefix.get(i) {
        i += 1;
        match b {
            b'{' => frames.push(Frame::Object(None)),
            b'[' => frames.push(Frame::Array(0)),
            b'}' | b']' => {
                frames.pop();
            }
            b',' => match frames.last_mut() {
                Some(Frame::Object(key)) => *key = None,
                Some(Frame::Array(index)) => *index = index.saturating_add(1),
                None => {}
            },
            b'"' => {
                let (text, end) = string_at(prefix, i);
                i = end;
                // A string where a key is expected is the key (once it is complete); any other
                // string is a value.
                if let (Some(text), Some(Frame::Object(key @ None))) = (text, frames.last_mut()) {
                    *key = Some(text);
                }
            }
            _ => {}
        }
    }
    frames
}

/// The string whose first byte after the opening quote is at `start`, unescaped (`None` when it
/// is not closed within `s`), and the index after its closing quote (or the end of `s`).
fn string_at(s: &[u8], start: usize) -> (Option<String>, usize) {
    let mut out: Vec<u8> = Vec::new();
    let mut i = start;
    while let Some(&b) = s.get(i) {
        i += 1;
        match b {
            b'"' => return (Some(String::from_utf8_lossy(&out).into_owned()), i),
            b'\\' => {
                let Some(&e) = s.get(i) else { break };
                i += 1;
                match e {
                    b'n' => out.push(b'\n'),
                    b't' => out.push(b'\t'),
                    b'r' => out.push(b'\r'),
                    b'b' => out.push(0x08),
                    b'f' => out.push(0x0c),
                    b'u' => {
                        let hex = s.get(i..i.saturating_add(4)).unwrap_or_default();
                        i = i.saturating_add(4).min(s.len());
                        let c = std::str::from_utf8(hex)
                            .ok()
                            .and_then(|h| u32::from_str_radix(h, 16).ok())
                            .and_then(char::from_u32)
                            .unwrap_or(char::REPLACEMENT_CHARACTER);
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    }
                    other => out.push(other),
                }
            }
            other => out.push(other),
        }
    }
    (None, s.len())
}

/// `a.b[2].c`: keys joined by dots, indexes in brackets.
fn render(frames: &[Frame]) -> String {
    let mut path = String::new();
    for frame in frames {
        match frame {
            Frame::Object(Some(key)) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Frame::Object(None) => {}
            Frame::Array(index) => {
                path.push('[');
                path.push_str(&index.to_string());
                path.push(']');
            }
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::super::raw::RawConfig;
    use super::error_path;
    use serde_json::{json, Value};

    /// A document that deserializes, with every object of the configuration's types present.
    fn rich() -> Value {
        json!({
            "profile": "uk-obie",
            "path": "/register",
            "hold_headers": true,
            "directories": [
                {"issuer": "A", "jwks": [{"url": "https://a.example/k.jwks", "upstream": "a"}],
                 "algorithms": ["PS256"], "max_ssa_age_seconds": 60, "require_exp": true},
                {"issuer": "B", "jwks": [{"inline": {"keys": []}}, {"url": "https://b/k", "upstream": "b"}]}
            ],
            "software_jwks_hosts": [{"host": "keystore.example", "upstream": "ks"}],
            "ssa_claims": {"software_jwks": "software_jwks_endpoint", "redirect_uris": "software_redirect_uris",
                           "uris": ["a", "b"], "roles": "software_roles", "scope": "scope", "environment": "env"},
            "request_algorithms": ["PS256", "ES256"],
            "leeway_seconds": 30,
            "retry_after_seconds": 5,
            "limits": {"body_bytes": 65536, "jwks_bytes": 65536, "jwks_keys": 50, "callout_timeout_ms": 2000},
            "rules": {
                "token_client_binding": {"enabled": true, "mode": "jwt",
                    "introspection": {"url": "https://as/introspect", "upstream": "as", "client_id": "c", "client_secret_env": "S"},
                    "jwks": [{"url": "https://as/jwks", "upstream": "as"}], "algorithms": ["PS256"],
                    "issuer": "https://as", "audiences": ["x"], "scope": "dcr", "client_id_claims": ["client_id"], "typ": "at+jwt"},
                "certificate_binding": {"enabled": true, "org": {"attribute": "O", "prefix": "", "ssa_claim": "org_id"},
                    "software": {"attribute": "CN", "ssa_claim": "software_id"}, "thumbprint": true, "subject_dn": false},
                "request_jti": {"enabled": true, "format": "uuid"},
                "ssa_jti": {"enabled": true, "window_seconds": 600},
                "ssa_issuer": {"enabled": true},
                "ssa_signature": {"enabled": true},
                "request_signature": {"enabled": true},
                "issuance_time": {"enabled": true, "max_age_seconds": 300},
                "software_status": {"enabled": true, "checks": [{"claim": "s", "equals": "Active", "required": true}], "environment": "live"},
                "required_attributes": {"enabled": true, "claims": ["a"], "allowed_values": {"k": ["v1", "v2"]}},
                "issuer": {"enabled": true},
                "audience": {"enabled": true, "audiences": ["aud"]},
                "redirect_uri_format": {"enabled": true, "max_length": 2048},
                "redirect_uri_subset": {"enabled": true},
                "uri_hostname": {"enabled": true},
                "token_endpoint_auth": {"enabled": true, "methods": ["private_key_jwt"]},
                "signing_algorithms": {"enabled": true, "algorithms": ["PS256"], "claims": ["id_token_signed_response_alg"]},
                "grant_and_response_types": {"enabled": true, "grant_types": ["a"], "required_grant_types": ["b"],
                    "response_types": ["code"], "application_types": ["web"], "ciba_delivery_modes": ["poll"]},
                "software_roles": {"enabled": true, "mode": "any", "scope_roles": {"accounts": ["AISP"]}, "free_scopes": ["openid"]},
                "participant_status": {"sources": [{"x": 1}]}
            },
            "report_only": false,
            "forward": "json",
            "fact_headers": [{"claim": "software_id", "header": "x-software-id"}],
            "replay": {"buckets": 8, "entries_per_bucket": 1000, "max_retention_seconds": 3600, "issuer_share_percent": 10,
                       "store": "etcd", "etcd": {"upstream": "etcd", "authority": "etcd", "key_prefix": "/p/", "timeout_ms": 100}},
            "jwks_cache": {"default_ttl_seconds": 300, "min_ttl_seconds": 60, "max_ttl_seconds": 3600,
                           "kid_refetch_cooldown_seconds": 30, "stale_if_error_seconds": 600, "refresh_ahead_seconds": 60},
            "client_certificate": {"source": "connection"},
            "stats": {"instance": "a"}
        })
    }

    /// Every node of `v`: its pointer, and whether it is an object member (removable).
    fn pointers(v: &Value, at: String, out: &mut Vec<(String, bool)>) {
        match v {
            Value::Object(m) => {
                for (k, c) in m {
                    let p = format!("{at}/{k}");
                    out.push((p.clone(), true));
                    pointers(c, p, out);
                }
            }
            Value::Array(a) => {
                for (i, c) in a.iter().enumerate() {
                    let p = format!("{at}/{i}");
                    out.push((p.clone(), false));
                    pointers(c, p, out);
                }
            }
            _ => {}
        }
    }

    /// The path notation of a JSON pointer into `base` (`/a/0/b` is `a[0].b`).
    fn path_of(base: &Value, pointer: &str) -> String {
        let mut out = String::new();
        let mut at = String::new();
        for seg in pointer.split('/').skip(1) {
            if base.pointer(&at).is_some_and(Value::is_array) {
                out.push_str(&format!("[{seg}]"));
            } else {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(seg);
            }
            at = format!("{at}/{seg}");
        }
        out
    }

    fn remove(v: &mut Value, pointer: &str) {
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        if let Some(Value::Object(m)) = v.pointer_mut(parent) {
            m.remove(key);
        }
    }

    /// The path serde_path_to_error gives ("." for the document), the one here, and the message
    /// (`syntax: ` first for broken JSON).
    fn both(doc: &[u8]) -> Option<(String, String, String)> {
        let mut de = serde_json::Deserializer::from_slice(doc);
        let tracked = serde_path_to_error::deserialize::<_, RawConfig>(&mut de).err()?;
        let mut de = serde_json::Deserializer::from_slice(doc);
        let plain = <RawConfig as serde::Deserialize>::deserialize(&mut de).err()?;
        assert_eq!(tracked.inner().to_string(), plain.to_string());
        // Tracking writes `?` for a key not read yet (broken JSON) and `.` for the document;
        // this leaves the unknown key out.
        let old = tracked
            .path()
            .to_string()
            .split('.')
            .filter(|seg| *seg != "?" && !seg.is_empty())
            .collect::<Vec<_>>()
            .join(".");
        let syntax = if plain.is_syntax() || plain.is_eof() {
            "syntax: "
        } else {
            ""
        };
        Some((old, error_path(doc, &plain), format!("{syntax}{plain}")))
    }

    /// Every wrong type at every node, an unknown member in every object, every member missing
    /// and broken JSON at every byte: the same path as tracking it while deserializing, compact
    /// and pretty-printed.
    #[test]
    fn the_path_is_the_one_tracking_gives_for_every_error() {
        let base = rich();
        assert!(
            both(base.to_string().as_bytes()).is_none(),
            "the base document deserializes"
        );
        let mut all = Vec::new();
        pointers(&base, String::new(), &mut all);
        let wrong = [
            json!("text"),
            json!(7),
            json!(-1),
            json!(1.5),
            json!(18446744073709551616.0),
            json!(true),
            json!(null),
            json!({"k": 1}),
            json!([1, "x"]),
            json!([]),
        ];
        // (document, the object a removed member belonged to)
        let mut docs: Vec<(Value, Option<String>)> = Vec::new();
        for (pointer, member) in &all {
            for w in &wrong {
                let mut v = base.clone();
                *v.pointer_mut(pointer).unwrap() = w.clone();
                docs.push((v, None));
            }
            if *member {
                let mut v = base.clone();
                remove(&mut v, pointer);
                let parent = pointer.rsplit_once('/').unwrap().0;
                docs.push((v, Some(path_of(&base, parent))));
            }
            if base.pointer(pointer).unwrap().is_object() {
                let mut v = base.clone();
                v.pointer_mut(pointer).unwrap()["zz_unknown"] = json!(1);
                docs.push((v, None));
            }
        }
        let (mut compared, mut missing) = (0, 0);
        for (v, parent) in &docs {
            for text in [v.to_string(), serde_json::to_string_pretty(v).unwrap()] {
                if let Some((old, new, msg)) = both(text.as_bytes()) {
                    assert_eq!(new, old, "{msg}\n{text}");
                    if msg.starts_with("missing field") {
                        // The object that lacks the field.
                        assert_eq!(Some(new.as_str()), parent.as_deref(), "{msg}\n{text}");
                        missing += 1;
                    }
                    compared += 1;
                }
            }
        }
        assert!(missing >= 10, "{missing} missing fields compared");
        // Broken JSON: the document cut at every byte, and a stray byte at every position.
        let text = serde_json::to_string_pretty(&base).unwrap();
        for cut in 0..text.len() {
            for doc in [
                text.as_bytes()[..cut].to_vec(),
                [&text.as_bytes()[..cut], b"}", &text.as_bytes()[cut..]].concat(),
            ] {
                if let Some((old, new, msg)) = both(&doc) {
                    let doc = String::from_utf8_lossy(&doc);
                    if msg.starts_with("syntax: ") || msg.starts_with("duplicate field") {
                        // A duplicate: tracking names the object, this the member (like an
                        // unknown one).
                        // Where tracking stops on broken JSON is arbitrary (often the document):
                        // this names at least as much of the path.
                        assert!(new.starts_with(&old), "{msg}\n{doc}\nold {old} new {new}");
                    } else {
                        assert_eq!(new, old, "{msg}\n{doc}");
                    }
                    compared += 1;
                }
            }
        }
        assert!(compared > 5_000, "{compared} errors compared");
    }

    #[test]
    fn escaped_keys_and_positions_past_the_end() {
        let doc = br#"{"rules": {"au\u0064ience": {"audiences": [1]}}}"#;
        let (old, new, _) = both(doc).unwrap();
        assert_eq!(new, old);
        assert_eq!(new, "rules.audience.audiences[0]");
        assert_eq!(super::offset_of(b"ab\ncd", 2, 9), Some(5));
        assert_eq!(super::offset_of(b"ab", 3, 0), None);
        assert_eq!(super::offset_of(b"ab", 0, 0), None);
    }
}
