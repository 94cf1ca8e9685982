//! An independent model of spec §1 — "could some upstream read this path as a registration?" — and
//! the property the classifier must keep against it. Used by the unit tests and by the fuzz target
//! `path` (feature `fuzzing`); written separately from the classifier, in the plainest way, so that
//! the two do not share a mistake.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::{classify, Route};

/// One way an upstream may read a path. Each field is a normalisation it may or may not apply.
#[derive(Clone, Copy, Debug)]
struct Reading {
    decodes: u8,
    backslash: bool,
    params: bool,
    dots: bool,
    trim_suffix: bool,
}

fn readings() -> impl Iterator<Item = Reading> {
    (0..4u8).flat_map(|decodes| {
        (0..16u8).map(move |m| Reading {
            decodes,
            backslash: m & 1 != 0,
            params: m & 2 != 0,
            dots: m & 4 != 0,
            trim_suffix: m & 8 != 0,
        })
    })
}

pub fn model_decode(s: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(s);
    let mut out = Vec::new();
    let mut chars = text.as_bytes().iter().copied().peekable();
    while let Some(c) = chars.next() {
        if c == b'%' {
            let rest: Vec<u8> = chars.clone().take(2).collect();
            if rest.len() == 2 {
                if let Ok(v) = u8::from_str_radix(&String::from_utf8_lossy(&rest), 16) {
                    if rest.iter().all(|b| b.is_ascii_hexdigit()) {
                        out.push(v);
                        chars.next();
                        chars.next();
                        continue;
                    }
                }
            }
        }
        out.push(c);
    }
    out
}

/// An absolute-form request target's path (`scheme://authority/path` → `/path`), else `path`.
fn origin_form(path: &str) -> &str {
    if let Some(i) = path.find("://") {
        let scheme = &path[..i];
        let is_scheme = scheme
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
        if is_scheme {
            let rest = &path[i + 3..];
            return match rest.find(['/', '?', '#']) {
                Some(j) if rest[j..].starts_with('/') => &rest[j..],
                _ => "",
            };
        }
    }
    path
}

/// What the upstream routes on under `r`, lower-cased.
fn read(path: &str, r: Reading) -> String {
    let path = origin_form(path).split(['?', '#']).next().unwrap_or("");
    let mut p = path.as_bytes().to_vec();
    for _ in 0..r.decodes {
        p = model_decode(&p);
    }
    let mut s = String::from_utf8_lossy(&p).to_lowercase();
    if r.backslash {
        s = s.replace('\\', "/");
    }
    if r.params {
        s = s
            .split('/')
            .map(|seg| seg.split(';').next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("/");
    }
    if r.dots {
        let mut out: Vec<&str> = Vec::new();
        for seg in s.split('/') {
            match seg {
                "" | "." => {}
                ".." => {
                    out.pop();
                }
                x => out.push(x),
            }
        }
        s = format!("/{}", out.join("/"));
    }
    if r.trim_suffix {
        // Suffix pattern matching (`.json`) and trailing blanks or dots.
        if let Some(i) = s.rfind('.') {
            if !s[i..].contains('/') {
                s.truncate(i);
            }
        }
        s = s.trim_end_matches([' ', '\t', '.', '\0']).to_string();
    }
    s
}

/// Does some reading of `path` route to the registration endpoint? (Readings whose extra
/// normalisation cannot change this path are skipped: more decoding of a path with no `%`, `\\`
/// handling without a `\\`, and so on.)
pub fn model_is_registration(base: &str, path: &str) -> bool {
    let (pct, bs, semi) = (path.contains('%'), path.contains('\\'), path.contains(';'));
    readings()
        .filter(|r| {
            (r.decodes == 0 || pct) && (!r.backslash || bs || pct) && (!r.params || semi || pct)
        })
        .any(|r| {
            let s = read(path, r);
            match s.strip_prefix(base) {
                Some("") | Some("/") => true,
                Some(rest) => rest.strip_prefix('/').is_some_and(|seg| !seg.is_empty()),
                None => false,
            }
        })
}

/// The property of spec §1: a path the classifier calls "not DCR" can not be read as the
/// registration path by any upstream in the model; and what it serves literally is literal.
pub fn check(base: &str, path: &str) {
    match classify(base, path) {
        Route::NotDcr => assert!(
            !model_is_registration(base, path),
            "{path:?} is NotDcr, but an upstream may read it as a registration"
        ),
        Route::Collection => {
            let p = origin_form(path)
                .split(['?', '#'])
                .next()
                .unwrap_or("")
                .to_ascii_lowercase();
            assert!(
                p == base || p == format!("{base}/"),
                "{path:?} served as the collection"
            );
        }
        Route::Client(id) => {
            let p = origin_form(path).split(['?', '#']).next().unwrap_or("");
            assert!(
                p.to_ascii_lowercase().starts_with(&format!("{base}/")),
                "{path:?}"
            );
            assert_eq!(&p[base.len() + 1..], id, "{path:?}");
            let d = model_decode(id.as_bytes());
            assert!(
                !d.contains(&b'/') && !d.contains(&b'\\') && !d.contains(&b';'),
                "{path:?}"
            );
            assert!(d != b"." && d != b".." && !d.is_empty(), "{path:?}");
        }
        Route::Invalid(_) => {}
    }
}
