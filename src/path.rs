//! Matching the DCR paths (spec §1). Cheap for the common case: a path that does not start with the
//! registration path (ASCII case-insensitively) costs one comparison.

/// What a request path is, relative to the configured registration path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Not a registration path: the filter leaves the request alone.
    NotDcr,
    /// `/register` (or `/register/`).
    Collection,
    /// `/register/{client_id}`.
    Client(String),
    /// Under the registration path but not a valid shape: 400 `invalid_request` with this reason.
    Invalid(&'static str),
}

/// Classify `raw_path` (the `:path` header, query included) against `base` (lower case, no trailing
/// slash). The base matches ASCII case-insensitively so that a case-insensitive authorization
/// server cannot be reached around the filter with `/Register`.
pub fn classify(base: &str, raw_path: &str) -> Route {
    let path = match raw_path.find(['?', '#']) {
        Some(i) => raw_path.get(..i).unwrap_or(raw_path),
        None => raw_path,
    };
    let head = match path.get(..base.len()) {
        Some(h) if h.eq_ignore_ascii_case(base) => h,
        _ => return classify_encoded(base, path),
    };
    let rest = path.get(head.len()..).unwrap_or("");
    classify_rest(rest)
}

fn classify_rest(rest: &str) -> Route {
    if rest.is_empty() || rest == "/" {
        return Route::Collection;
    }
    if let Some(segment) = rest.strip_prefix('/') {
        return client_segment(segment);
    }
    if rest.starts_with(';') {
        // `/register;jsessionid=…` is `/register` to some servlet containers.
        return Route::Invalid("path parameters are not allowed on the registration path");
    }
    // `/registers`, `/register-foo`: another path.
    Route::NotDcr
}

fn client_segment(segment: &str) -> Route {
    if segment.is_empty() || segment.starts_with('/') {
        return Route::Invalid("empty path segment");
    }
    if segment.contains('/') {
        if segment.ends_with('/') && !segment.trim_end_matches('/').contains('/') {
            return Route::Invalid("trailing slash after the client id");
        }
        return Route::Invalid("the client id must be exactly one path segment");
    }
    if segment == "." || segment == ".." {
        return Route::Invalid("dot segments are not allowed");
    }
    let lower = segment.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") || segment.contains('\\') {
        return Route::Invalid("encoded slashes are not allowed in the client id");
    }
    if lower.contains("%2e%2e") || lower == "%2e" || lower.contains("%00") || segment.contains(';')
    {
        return Route::Invalid("the client id has an unsafe encoding");
    }
    if segment.bytes().any(|b| b < 0x21 || b == 0x7f) {
        return Route::Invalid("the client id has control characters");
    }
    Route::Client(segment.to_string())
}

/// A path whose prefix does not match literally may still be the registration path with
/// percent-encoded unreserved characters (`/regist%65r`) that the upstream would decode.
fn classify_encoded(base: &str, path: &str) -> Route {
    if !path.contains('%') {
        return Route::NotDcr;
    }
    let decoded = decode_unreserved(path);
    match decoded.get(..base.len()) {
        Some(h) if h.eq_ignore_ascii_case(base) => {
            match classify_rest(decoded.get(base.len()..).unwrap_or("")) {
                Route::NotDcr => Route::NotDcr,
                _ => Route::Invalid("percent-encoded characters in the registration path"),
            }
        }
        _ => Route::NotDcr,
    }
}

/// Decode `%XX` where XX encodes an RFC 3986 unreserved character; leave everything else.
fn decode_unreserved(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes.get(i).copied().unwrap_or(0);
        if b == b'%' {
            let hex = path
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(c) = hex {
                if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
                    out.push(char::from(c));
                    i += 3;
                    continue;
                }
            }
        }
        out.push(char::from(b));
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let base = "/register";
        let cases: &[(&str, Route)] = &[
            ("/register", Route::Collection),
            ("/register/", Route::Collection),
            ("/register?x=1", Route::Collection),
            ("/REGISTER", Route::Collection),
            ("/Register/abc", Route::Client("abc".into())),
            ("/register/abc?q=1", Route::Client("abc".into())),
            ("/register/a%20b", Route::Client("a%20b".into())),
            (
                "/register/abc/",
                Route::Invalid("trailing slash after the client id"),
            ),
            (
                "/register/a/b",
                Route::Invalid("the client id must be exactly one path segment"),
            ),
            ("/register//", Route::Invalid("empty path segment")),
            ("/register//abc", Route::Invalid("empty path segment")),
            (
                "/register/..",
                Route::Invalid("dot segments are not allowed"),
            ),
            (
                "/register/.",
                Route::Invalid("dot segments are not allowed"),
            ),
            (
                "/register/a%2Fb",
                Route::Invalid("encoded slashes are not allowed in the client id"),
            ),
            (
                "/register/a%2fb",
                Route::Invalid("encoded slashes are not allowed in the client id"),
            ),
            (
                "/register/a%5Cb",
                Route::Invalid("encoded slashes are not allowed in the client id"),
            ),
            (
                "/register/%2e%2e",
                Route::Invalid("the client id has an unsafe encoding"),
            ),
            (
                "/register;jsessionid=1",
                Route::Invalid("path parameters are not allowed on the registration path"),
            ),
            (
                "/regist%65r",
                Route::Invalid("percent-encoded characters in the registration path"),
            ),
            (
                "/regist%65r/abc",
                Route::Invalid("percent-encoded characters in the registration path"),
            ),
            ("/registers", Route::NotDcr),
            ("/register-x", Route::NotDcr),
            ("/regist%65rs", Route::NotDcr),
            ("/other", Route::NotDcr),
            ("/", Route::NotDcr),
            ("", Route::NotDcr),
            ("/reg", Route::NotDcr),
        ];
        for (path, want) in cases {
            assert_eq!(&classify(base, path), want, "{path}");
        }
    }

    #[test]
    fn nested_base() {
        assert_eq!(
            classify("/open-banking/v3.3/register", "/open-banking/v3.3/register"),
            Route::Collection
        );
        assert_eq!(
            classify(
                "/open-banking/v3.3/register",
                "/open-banking/v3.3/registerx"
            ),
            Route::NotDcr
        );
    }

    #[test]
    fn never_panics_on_odd_input() {
        for p in [
            "%",
            "%%",
            "/register%",
            "/register/%",
            "/regi%",
            "/é",
            "/register/é",
            "/ré%gister",
        ] {
            let _ = classify("/register", p);
        }
    }
}
