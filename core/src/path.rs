//! Matching the DCR paths (spec §1).
//!
//! The rule: **nothing under the registration path is "not DCR" unless no decoding or normalising
//! of it can produce the registration path.** An authorization server, or a framework in front of
//! it, may percent-decode (once, or more than once), treat `\` as `/`, drop `;` parameters, merge
//! slashes, resolve dot segments, ignore case, trim a trailing `.json` or whitespace — and then
//! route the request as a registration. So a path is classified in two steps:
//!
//! 1. **The literal shapes** ([`literal`]): the path as sent is exactly `{base}`, `{base}/` or
//!    `{base}/{client_id}` (the base ASCII case-insensitively, the client id one clean segment).
//!    These are the only routes the filter serves.
//! 2. **Everything else** ([`reaches`]): the path is normalised in every way an upstream might
//!    (decoded until no escape is left, bounded; `\` → `/`; `;` parameters dropped; empty and dot
//!    segments resolved; ASCII case folded; a non-ASCII character may stand for any one character)
//!    and if the result is the base followed by the end of the path or by anything that is not a
//!    letter, digit, `-` or `_` (so `{base}/…`, `{base}.json`, `{base} `, `{base};…`), the request
//!    is refused with 400 `invalid_request`. `/registers` and `/register-x` — other literal paths —
//!    are left alone.
//!
//! Cheap for the common case: a path that is neither under the base literally nor holds any byte
//! that an upstream could normalise costs one scan and one comparison.

/// What a request path is, relative to the configured registration path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Not a registration path: the filter leaves the request alone.
    NotDcr,
    /// `/register` (or `/register/`).
    Collection,
    /// `/register/{client_id}`, the client id as sent (it may hold harmless escapes).
    Client(String),
    /// Under the registration path but not a valid shape: 400 `invalid_request` with this reason.
    Invalid(&'static str),
}

/// Rounds of percent-decoding tried when looking for a path that an upstream could decode into the
/// registration path. Real servers decode once, some twice; four covers every chain seen and keeps
/// the work linear in the path length.
const DECODE_ROUNDS: usize = 4;

/// Longest path (query excluded) that is normalised in every way: trying every reading costs tens
/// of passes over it. A longer path that is not plain and holds the registration path's bytes in
/// order is refused rather than examined (a bound on the work any request can cause).
pub const MAX_NORMALISED_BYTES: usize = 4096;

/// Classify `raw_path` (the `:path` header, query included) against `base` (lower case, no trailing
/// slash, only RFC 3986 path characters — the configuration guarantees it).
pub fn classify(base: &str, raw_path: &str) -> Route {
    let path = strip_query(strip_absolute_form(raw_path));
    if let Some(route) = literal(base, path) {
        return route;
    }
    if reaches(base, path) {
        Route::Invalid(reason(base, path))
    } else {
        Route::NotDcr
    }
}

/// The path without its query (`?…`) or fragment (`#…`): they are never part of the match.
fn strip_query(p: &str) -> &str {
    match p.find(['?', '#']) {
        Some(i) => p.get(..i).unwrap_or(p),
        None => p,
    }
}

/// An absolute-form target (`http://host/register`, RFC 9112 §3.2.2) as its path. Envoy turns such
/// a request line into `:path` + `:authority`; this covers a host that passes it on as it came.
fn strip_absolute_form(p: &str) -> &str {
    if p.starts_with('/') {
        return p;
    }
    let Some(i) = p.find("://") else {
        return p;
    };
    let scheme = p.get(..i).unwrap_or("");
    let is_scheme = scheme
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !is_scheme {
        return p;
    }
    let after = p.get(i + 3..).unwrap_or("");
    match after.find(['/', '?', '#']) {
        Some(j) if after.as_bytes().get(j) == Some(&b'/') => after.get(j..).unwrap_or(""),
        // `http://host` or `http://host?x`: the path is empty, never the registration path.
        _ => "",
    }
}

/// The literal routes: `{base}`, `{base}/`, `{base}/{segment}`, as sent. `None` for anything else.
fn literal(base: &str, path: &str) -> Option<Route> {
    let head = path.get(..base.len())?;
    if !head.eq_ignore_ascii_case(base) {
        return None;
    }
    let rest = path.get(base.len()..)?;
    if rest.is_empty() || rest == "/" {
        return Some(Route::Collection);
    }
    let segment = rest.strip_prefix('/')?;
    if clean_client_id(segment) {
        Some(Route::Client(segment.to_string()))
    } else {
        None
    }
}

/// A client id the filter serves as sent: one non-empty segment of RFC 3986 path characters, not a
/// dot segment, whose escapes (if any) decode to plain printable characters — never a separator
/// (`/`, `\`), `;`, `%` (double encoding), `?`, `#`, a control or a non-ASCII byte — and that does
/// not decode to `.` or `..`.
fn clean_client_id(segment: &str) -> bool {
    let bytes = segment.as_bytes();
    if bytes.is_empty() {
        return false;
    }
    let mut decoded_len = 0usize;
    let mut all_dots = true;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let c = if b == b'%' {
            match hex_pair(bytes.get(i + 1).copied(), bytes.get(i + 2).copied()) {
                Some(c) if c.is_ascii_graphic() || c == b' ' => {
                    if matches!(c, b'/' | b'\\' | b';' | b'%' | b'?' | b'#') {
                        return false;
                    }
                    i += 3;
                    c
                }
                _ => return false,
            }
        } else {
            if !is_pchar(b) || b == b';' {
                return false;
            }
            i += 1;
            b
        };
        decoded_len += 1;
        all_dots &= c == b'.';
    }
    !(all_dots && decoded_len <= 2)
}

/// RFC 3986 `pchar` without `%` (escapes are handled by the caller).
fn is_pchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn hex_pair(hi: Option<u8>, lo: Option<u8>) -> Option<u8> {
    Some(hex_val(hi?)? << 4 | hex_val(lo?)?)
}

/// True when some upstream could read `path` as the registration path or something under it.
///
/// Upstreams apply different subsets of the normalisations, in different orders, and some of them
/// remove text (`..` can take the base away again, as in `/register%2F..`), so every combination is
/// tried: after each round of decoding, with and without `\` as `/`, `;` parameters dropped, empty
/// segments merged and dot segments resolved. Only paths that are not [`plain`] get here.
fn reaches(base: &str, path: &str) -> bool {
    if path.starts_with('/') && plain(path) {
        // Nothing to decode or resolve: the path is its own normal form (up to ASCII case).
        return under(base.as_bytes(), path.as_bytes());
    }
    // A target without a leading `/` is read as if it had one by lenient routers.
    let mut stage = Vec::with_capacity(path.len() + 1);
    if !path.starts_with('/') {
        stage.push(b'/');
    }
    stage.extend_from_slice(path.as_bytes());
    let mut stages = vec![stage];
    while stages.len() <= DECODE_ROUNDS {
        match stages.last().and_then(|s| decode_once(s)) {
            Some(next) => stages.push(next),
            None => break,
        }
    }
    // Every reading keeps the base's bytes, in order, as bytes of the fully decoded path: if they
    // are not there, no reading reaches it. This settles nearly every path at the cost of a scan.
    let Some(decoded) = stages.last() else {
        return false;
    };
    if !subsequence(base.as_bytes(), decoded) {
        return false;
    }
    // Bounded work: trying every reading costs (rounds × readings) passes over the path.
    if path.len() > MAX_NORMALISED_BYTES {
        return true;
    }
    stages
        .iter()
        .any(|stage| any_reading_under(base.as_bytes(), stage))
}

/// Is `base` a subsequence of `s` (ASCII case ignored, `\` as `/`, a non-ASCII byte matching any
/// byte)?
fn subsequence(base: &[u8], s: &[u8]) -> bool {
    let mut want = base.iter().peekable();
    for &b in s {
        let Some(&&w) = want.peek() else {
            return true;
        };
        let b = if b == b'\\' {
            b'/'
        } else {
            b.to_ascii_lowercase()
        };
        if b == w || b >= 0x80 {
            want.next();
        }
    }
    want.peek().is_none()
}

/// [`under`] for any combination of the non-decoding normalisations of `s`.
fn any_reading_under(base: &[u8], s: &[u8]) -> bool {
    let backslash = s.contains(&b'\\');
    let params = s.contains(&b';');
    for m in 0..16u8 {
        let (bs, pm, merge, dots) = (m & 1 != 0, m & 2 != 0, m & 4 != 0, m & 8 != 0);
        if (bs && !backslash) || (pm && !params) {
            continue;
        }
        if under(base, &read(s, bs, pm, merge, dots)) {
            return true;
        }
    }
    false
}

/// One reading of `s`: `\` as `/` (`bs`), `;` parameters dropped (`params`), empty segments
/// merged (`merge`), dot segments resolved (`dots`, RFC 3986 §5.2.4).
fn read(s: &[u8], bs: bool, params: bool, merge: bool, dots: bool) -> Vec<u8> {
    let mapped: Vec<u8>;
    let s = if bs {
        mapped = s
            .iter()
            .map(|&b| if b == b'\\' { b'/' } else { b })
            .collect();
        &mapped[..]
    } else {
        s
    };
    let body = s.strip_prefix(b"/").unwrap_or(s);
    let mut out: Vec<&[u8]> = Vec::new();
    for seg in body.split(|&b| b == b'/') {
        let seg = match seg.iter().position(|&b| b == b';') {
            Some(i) if params => seg.get(..i).unwrap_or(seg),
            _ => seg,
        };
        match seg {
            b"" if merge => {}
            b"." if dots => {}
            b".." if dots => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut v = Vec::with_capacity(s.len() + 1);
    for seg in out {
        v.push(b'/');
        v.extend_from_slice(seg);
    }
    v
}

/// A path no normalisation changes (but for ASCII case): no escape, backslash, `;`, non-ASCII
/// byte, empty segment or dot segment. One scan; true for nearly every request a gateway sees.
fn plain(path: &str) -> bool {
    // `seg` counts the bytes of the current segment, `dots` whether they are all dots.
    let (mut seg, mut dots) = (0usize, true);
    for (i, &c) in path.as_bytes().iter().enumerate() {
        match c {
            b'%' | b'\\' | b';' | 0x80.. => return false,
            b'/' => {
                // An empty segment (but the first, before the leading `/`) or a dot segment.
                if (seg == 0 && i > 0) || (dots && seg > 0 && seg <= 2) {
                    return false;
                }
                (seg, dots) = (0, true);
            }
            b'.' => seg += 1,
            _ => (seg, dots) = (seg + 1, false),
        }
    }
    !(dots && seg > 0 && seg <= 2)
}

/// Does `path` (one reading of the request path; ASCII case is ignored) start with `base` followed by the end, or by a byte
/// that is not a letter, digit, `-` or `_`? A non-ASCII byte (a character an upstream might fold
/// into an ASCII one) matches any one byte of the base, and ends the base like a separator would.
fn under(base: &[u8], path: &[u8]) -> bool {
    let mut i = 0; // in path
    for &want in base {
        match path.get(i) {
            None => return false,
            Some(&b) if b >= 0x80 => {
                // One character, however many UTF-8 bytes it takes, stands for one base byte.
                i += 1;
                while path.get(i).is_some_and(|&c| (0x80..0xc0).contains(&c)) {
                    i += 1;
                }
            }
            Some(&b) if b.to_ascii_lowercase() == want => i += 1,
            Some(_) => return false,
        }
    }
    match path.get(i) {
        None => true,
        Some(&b) => !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
    }
}

/// Decode every `%XX` once; `None` when there was nothing to decode.
fn decode_once(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut changed = false;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            if let Some(c) = hex_pair(bytes.get(i + 1).copied(), bytes.get(i + 2).copied()) {
                out.push(c);
                i += 3;
                changed = true;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    changed.then_some(out)
}

/// Why a path that [`reaches`] the registration path is refused, naming its first odd feature.
fn reason(base: &str, path: &str) -> &'static str {
    if path.len() > MAX_NORMALISED_BYTES {
        return "a path this long must not need decoding or normalising near the registration path";
    }
    let literal_under = path
        .get(..base.len())
        .is_some_and(|h| h.eq_ignore_ascii_case(base));
    let rest = if literal_under {
        path.get(base.len()..).unwrap_or("")
    } else {
        path
    };
    if rest.contains('%') {
        let b = rest.as_bytes();
        let escape = |i: usize| hex_pair(b.get(i + 1).copied(), b.get(i + 2).copied());
        let escapes = (0..b.len()).filter(|&i| b.get(i) == Some(&b'%'));
        let (mut double, mut slash) = (false, false);
        for i in escapes {
            match escape(i) {
                Some(b'%') if hex_pair(b.get(i + 3).copied(), b.get(i + 4).copied()).is_some() => {
                    double = true
                }
                Some(b'/' | b'\\') => slash = true,
                _ => {}
            }
        }
        return if double {
            "double percent-encoding in the registration path"
        } else if slash {
            "encoded slashes are not allowed in the registration path"
        } else {
            "percent-encoded characters in the registration path"
        };
    }
    if rest.contains('\\') {
        return "backslashes are not allowed in the registration path";
    }
    if rest.contains(';') {
        return "path parameters are not allowed on the registration path";
    }
    if rest.contains("//") {
        return "empty path segment";
    }
    if rest.split('/').any(|s| s == "." || s == "..") {
        return "dot segments are not allowed";
    }
    if rest.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
        return "control, space or non-ASCII characters in the registration path";
    }
    if literal_under {
        if let Some(seg) = rest.strip_prefix('/') {
            if seg.ends_with('/') && !seg.trim_end_matches('/').contains('/') {
                return "trailing slash after the client id";
            }
            return "the client id must be exactly one path segment";
        }
    }
    "under the registration path only the path itself, with a trailing slash, or with one client id segment is served"
}

#[cfg(any(test, feature = "fuzzing"))]
pub mod model;
#[cfg(test)]
mod tests;
