//! One escaping function for every value that came from a client (a token claim, a URL from an
//! SSA, an error description that quotes one) on its way to a sink the operator reads: Envoy log
//! lines, filter state (access logs) and verified-facts headers. The result is printable ASCII
//! only, so that no value can end a log line, forge another one, break out of a quoted field or
//! smuggle a header; it is bounded in length.
//!
//! - printable ASCII other than `"` and `\` is kept as is;
//! - `"` → `\"`, `\` → `\\`, LF → `\n`, CR → `\r`, TAB → `\t`;
//! - every other character (other C0 controls, DEL, C1 controls, any non-ASCII character) →
//!   `\u{…}` with its code point in lower-case hexadecimal;
//! - at most `max` bytes of output; a value cut short ends in `...` (so at most `max + 3`).
//!
//! The escaping is reversible (except a cut), so an operator can still tell exactly what was sent.

/// The bound used for identifiers (`software_id`, `jti`) at every sink.
pub const MAX_ID: usize = 128;

/// The bound used for a whole error description in a log line.
pub const MAX_REASON: usize = 300;

/// Escape a client-derived value for a log line, filter state or a header (see the module).
pub fn escape(value: &str, max: usize) -> String {
    let mut out = String::with_capacity(value.len().min(max).saturating_add(3));
    let mut buf = [0u8; 12];
    for c in value.chars() {
        let piece: &str = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            ' '..='~' => c.encode_utf8(&mut buf),
            other => {
                let s = format!("\\u{{{:x}}}", u32::from(other));
                if out.len().saturating_add(s.len()) > max {
                    out.push_str("...");
                    return out;
                }
                out.push_str(&s);
                continue;
            }
        };
        if out.len().saturating_add(piece.len()) > max {
            out.push_str("...");
            return out;
        }
        out.push_str(piece);
    }
    out
}

/// Whether `escape` leaves `value` unchanged (it is printable ASCII without quotes or
/// backslashes, and within `max`).
pub fn is_clean(value: &str, max: usize) -> bool {
    value.len() <= max
        && value
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_table() {
        let cases: &[(&str, usize, &str)] = &[
            ("plain-ID_01.x", 64, "plain-ID_01.x"),
            ("", 64, ""),
            ("a b", 64, "a b"),
            (
                "VICTIM\n[2099-01-01][info] forged",
                64,
                "VICTIM\\n[2099-01-01][info] forged",
            ),
            ("cr\rlf\n", 64, "cr\\rlf\\n"),
            ("tab\there", 64, "tab\\there"),
            ("q\"uote", 64, "q\\\"uote"),
            ("back\\slash", 64, "back\\\\slash"),
            ("nul\0", 64, "nul\\u{0}"),
            ("esc\u{1b}[31m", 64, "esc\\u{1b}[31m"),
            ("del\u{7f}", 64, "del\\u{7f}"),
            ("c1\u{85}", 64, "c1\\u{85}"),
            ("line\u{2028}sep", 64, "line\\u{2028}sep"),
            ("Soci\u{e9}t\u{e9}", 64, "Soci\\u{e9}t\\u{e9}"),
            ("rtl\u{202e}", 64, "rtl\\u{202e}"),
            ("emoji\u{1f600}", 64, "emoji\\u{1f600}"),
            // bounded: cut on a whole escape, marked
            ("abcdefgh", 5, "abcde..."),
            ("abcde", 5, "abcde"),
            ("ab\ncd", 3, "ab..."),
            ("ab\u{e9}", 6, "ab..."),
        ];
        for (input, max, want) in cases {
            let got = escape(input, *max);
            assert_eq!(&got, want, "{input:?}");
            assert!(got.len() <= max + 3, "{input:?}");
            assert!(
                got.bytes().all(|b| (0x20..0x7f).contains(&b)),
                "not printable ASCII: {got:?}"
            );
            assert_eq!(is_clean(input, *max), got == *input, "{input:?}");
        }
    }

    #[test]
    fn every_character_comes_out_printable_and_quote_safe() {
        // Every code point class: the output never carries a control character, a raw quote
        // (one not preceded by a backslash) or a non-ASCII byte.
        for cp in (0u32..0x300).chain([0x2028, 0x2029, 0xfeff, 0x10ffff]) {
            let Some(c) = char::from_u32(cp) else {
                continue;
            };
            let s = format!("a{c}b");
            let e = escape(&s, 64);
            assert!(
                e.bytes().all(|b| (0x20..0x7f).contains(&b)),
                "{cp:x}: {e:?}"
            );
            let bytes = e.as_bytes();
            for (i, b) in bytes.iter().enumerate() {
                if *b == b'"' {
                    assert!(i > 0 && bytes[i - 1] == b'\\', "{cp:x}: {e:?}");
                }
            }
        }
    }

    #[test]
    fn a_long_value_is_bounded() {
        let e = escape(&"\n".repeat(10_000), MAX_ID);
        assert!(e.len() <= MAX_ID + 3);
        assert!(e.ends_with("..."));
    }
}
