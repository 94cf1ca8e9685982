//! Distinguished names (spec §4a): RFC 4514 strings, and the host's rendering of a certificate
//! subject (Envoy: RFC 2253 style, last RDN first, attribute types it has no name for as
//! `OID=#hex` of the DER-encoded value).
//!
//! Parsing canonicalises every attribute type to its dotted OID (short names and `OID.`-prefixed
//! OIDs are accepted, case-insensitively) and decodes `#hex` values of DER string types, so that
//! `2.5.4.97=#0C05414243…` and `organizationIdentifier=ABC…` compare equal.
//!
//! Matching ([`Dn::matches`]) follows RFC 4514 §2.1 / X.501: the RDN sequences must be equal, in the
//! same order or one exactly reversed (RFC 4514 strings list the last RDN first, some tools print
//! certificate order); RDNs compare as sets; values compare with a simplified caseIgnoreMatch —
//! leading/trailing whitespace dropped, inner whitespace runs collapsed to one space, Unicode
//! lower-casing — instead of the full RFC 4518 string preparation (a documented simplification).
//!
//! The OpenSSL one-line form `/C=GB/O=…/CN=…` is not RFC 4514 and is refused, so that it can never
//! match a real DN by accident. Nothing here panics, whatever the input.

use std::fmt::Write as _;

/// Longest DN string accepted, in bytes.
pub const MAX_DN_LEN: usize = 4096;
/// Most attribute-value assertions accepted in one DN.
pub const MAX_DN_ATTRS: usize = 64;

/// Known attribute types: dotted OID and the names (case-insensitive) that stand for it.
const ATTRIBUTE_TYPES: &[(&str, &[&str])] = &[
    ("2.5.4.3", &["CN", "commonName"]),
    ("2.5.4.4", &["SN", "surname"]),
    ("2.5.4.5", &["serialNumber"]),
    ("2.5.4.6", &["C", "countryName"]),
    ("2.5.4.7", &["L", "localityName"]),
    ("2.5.4.8", &["ST", "stateOrProvinceName", "S"]),
    ("2.5.4.9", &["street", "streetAddress"]),
    ("2.5.4.10", &["O", "organizationName"]),
    ("2.5.4.11", &["OU", "organizationalUnitName"]),
    ("2.5.4.12", &["title", "T"]),
    ("2.5.4.15", &["businessCategory"]),
    ("2.5.4.17", &["postalCode"]),
    ("2.5.4.42", &["GN", "givenName", "G"]),
    ("2.5.4.97", &["organizationIdentifier"]),
    ("0.9.2342.19200300.100.1.1", &["UID", "userId"]),
    ("0.9.2342.19200300.100.1.25", &["DC", "domainComponent"]),
    ("1.2.840.113549.1.9.1", &["emailAddress", "E", "email"]),
    (
        "1.3.6.1.4.1.311.60.2.1.1",
        &["jurisdictionL", "jurisdictionLocalityName"],
    ),
    (
        "1.3.6.1.4.1.311.60.2.1.2",
        &["jurisdictionST", "jurisdictionStateOrProvinceName"],
    ),
    (
        "1.3.6.1.4.1.311.60.2.1.3",
        &["jurisdictionC", "jurisdictionCountryName"],
    ),
];

/// Characters that may follow `\` literally (RFC 4514 §3 `special`, plus `\` itself).
const ESCAPABLE: &[u8] = b"\"+,;<>\\ #=";

/// One attribute type and value.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ava {
    /// Dotted OID for known and numeric types; the lower-cased name for unknown names.
    ty: String,
    /// The decoded value; for an undecodable `#hex` value, `#` and the lower-case hex.
    value: String,
    /// The value is an undecoded `#hex` (compares only with the same bytes).
    raw: bool,
    /// Comparison key (see the module documentation).
    key: String,
}

impl Ava {
    fn new(ty: String, value: String, raw: bool) -> Ava {
        let key = if raw {
            value.clone()
        } else {
            normalise(&value)
        };
        Ava {
            ty,
            value,
            raw,
            key,
        }
    }

    fn same(&self, other: &Ava) -> bool {
        self.ty == other.ty && self.raw == other.raw && self.key == other.key
    }
}

/// Trim, collapse inner whitespace runs to one space, lower-case.
fn normalise(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// A distinguished name: its RDN sequence in string order, each RDN a set of type/value pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dn {
    rdns: Vec<Vec<Ava>>,
}

impl Dn {
    /// Parse an RFC 4514 string (also Envoy's RFC 2253 rendering with `OID=#hex` values).
    ///
    /// Refused: empty strings, strings over [`MAX_DN_LEN`] bytes or with more than
    /// [`MAX_DN_ATTRS`] attributes, the OpenSSL `/A=…/B=…` form, a missing `=`, invalid attribute
    /// types, bad escapes, unescaped `"` `;` `<` `>` or NUL in a value, `#` values that are not an
    /// even number of hex digits forming one DER TLV, and values that are not UTF-8.
    pub fn parse(s: &str) -> Result<Dn, String> {
        if s.len() > MAX_DN_LEN {
            return Err(format!("distinguished name longer than {MAX_DN_LEN} bytes"));
        }
        let trimmed = s.trim_matches(|c| c == ' ' || c == '\t');
        if trimmed.is_empty() {
            return Err("empty distinguished name".to_string());
        }
        if trimmed.starts_with('/') {
            return Err("not an RFC 4514 distinguished name (OpenSSL `/A=…/B=…` form)".to_string());
        }
        let mut c = Cursor {
            b: s.as_bytes(),
            i: 0,
        };
        let mut rdns = Vec::new();
        let mut rdn = Vec::new();
        let mut count = 0usize;
        loop {
            c.skip_ws();
            let ty = parse_type(&mut c)?;
            c.skip_ws();
            if c.bump() != Some(b'=') {
                return Err(format!(
                    "malformed distinguished name: `=` expected at byte {}",
                    c.i
                ));
            }
            c.skip_ws();
            let (value, raw) = parse_value(&mut c)?;
            count += 1;
            if count > MAX_DN_ATTRS {
                return Err(format!(
                    "distinguished name with more than {MAX_DN_ATTRS} attributes"
                ));
            }
            rdn.push(Ava::new(ty, value, raw));
            match c.bump() {
                None => {
                    rdns.push(rdn);
                    return Ok(Dn { rdns });
                }
                Some(b'+') => {}
                Some(b',') => rdns.push(std::mem::take(&mut rdn)),
                Some(_) => {
                    return Err(format!(
                        "malformed distinguished name at byte {}",
                        c.i.saturating_sub(1)
                    ))
                }
            }
        }
    }

    /// Whether the two names are the same (RFC 4514 §2.1 / X.501): equal RDN sequences, in the same
    /// order or one exactly reversed; RDNs as sets; values by simplified caseIgnoreMatch.
    pub fn matches(&self, other: &Dn) -> bool {
        let n = self.rdns.len();
        if n == 0 || n != other.rdns.len() {
            return false;
        }
        let same_order = self
            .rdns
            .iter()
            .zip(other.rdns.iter())
            .all(|(a, b)| rdn_eq(a, b));
        same_order
            || self
                .rdns
                .iter()
                .zip(other.rdns.iter().rev())
                .all(|(a, b)| rdn_eq(a, b))
    }

    /// The first value (in string order) of an attribute, named by short name, long name or OID,
    /// case-insensitively (`"organizationIdentifier"`, `"2.5.4.97"`, `"UID"`, `"cn"`). An
    /// undecodable `#hex` value is returned as `#` and lower-case hex.
    pub fn get(&self, attr: &str) -> Option<&str> {
        let ty = canonical_type(attr.trim())?;
        self.rdns
            .iter()
            .flatten()
            .find(|a| a.ty == ty)
            .map(|a| a.value.as_str())
    }
}

/// Two RDNs are equal when they hold the same type/value assertions, in any order.
fn rdn_eq(a: &[Ava], b: &[Ava]) -> bool {
    a.len() == b.len()
        && a.iter().all(|x| b.iter().any(|y| x.same(y)))
        && b.iter().all(|y| a.iter().any(|x| x.same(y)))
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let c = self.peek();
        if c.is_some() {
            self.i += 1;
        }
        c
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }
}

fn parse_type(c: &mut Cursor<'_>) -> Result<String, String> {
    let start = c.i;
    while matches!(c.peek(), Some(b) if b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
        c.i += 1;
    }
    let name =
        c.b.get(start..c.i)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("");
    if name.is_empty() {
        return Err(format!(
            "malformed distinguished name: attribute type expected at byte {start}"
        ));
    }
    canonical_type(name).ok_or_else(|| format!("invalid attribute type at byte {start}"))
}

/// The canonical form of an attribute type: the dotted OID of a known name, a validated numeric OID
/// (optionally `OID.`-prefixed), or the lower-cased name of an unknown (but well-formed) descr.
fn canonical_type(name: &str) -> Option<String> {
    if let Some(prefix) = name.get(..4) {
        if prefix.eq_ignore_ascii_case("oid.") {
            return numeric_oid(name.get(4..)?);
        }
    }
    let first = name.bytes().next()?;
    if first.is_ascii_digit() {
        return numeric_oid(name);
    }
    if !first.is_ascii_alphabetic() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return None;
    }
    for (oid, names) in ATTRIBUTE_TYPES {
        if names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            return Some((*oid).to_string());
        }
    }
    Some(name.to_ascii_lowercase())
}

/// `number 1*( "." number )`, numbers without leading zeros.
fn numeric_oid(s: &str) -> Option<String> {
    let mut arcs = 0usize;
    for arc in s.split('.') {
        let ok = !arc.is_empty()
            && arc.bytes().all(|b| b.is_ascii_digit())
            && (arc.len() == 1 || !arc.starts_with('0'));
        if !ok {
            return None;
        }
        arcs += 1;
    }
    (arcs >= 2).then(|| s.to_string())
}

/// A value: `#hex` (DER) or an RFC 4514 string. Stops before an unescaped `,` or `+` (or the end).
/// Returns the value and whether it is an undecoded `#hex`.
fn parse_value(c: &mut Cursor<'_>) -> Result<(String, bool), String> {
    if c.peek() == Some(b'#') {
        c.i += 1;
        let start = c.i;
        while matches!(c.peek(), Some(b) if b.is_ascii_hexdigit()) {
            c.i += 1;
        }
        let hex = c.b.get(start..c.i).unwrap_or(&[]);
        c.skip_ws();
        if !matches!(c.peek(), None | Some(b',' | b'+')) {
            return Err(format!(
                "malformed `#` value: hex digit expected at byte {}",
                c.i
            ));
        }
        let der = decode_hex(hex).ok_or("malformed `#` value: an even number of hex digits")?;
        return decode_der(&der);
    }
    let mut out: Vec<u8> = Vec::new();
    // Length of `out` up to its last byte that is not unescaped trailing whitespace.
    let mut keep = 0usize;
    loop {
        match c.peek() {
            None | Some(b',' | b'+') => break,
            Some(b'\\') => {
                let at = c.i;
                c.i += 1;
                match c.bump() {
                    Some(e) if ESCAPABLE.contains(&e) => out.push(e),
                    Some(h) if h.is_ascii_hexdigit() => {
                        let l = c
                            .bump()
                            .filter(u8::is_ascii_hexdigit)
                            .ok_or_else(|| format!("invalid `\\` escape at byte {at}"))?;
                        out.push((hex_val(h) << 4) | hex_val(l));
                    }
                    _ => return Err(format!("invalid `\\` escape at byte {at}")),
                }
                keep = out.len();
            }
            Some(b'"' | b';' | b'<' | b'>' | 0) => {
                return Err(format!(
                    "malformed distinguished name: unescaped special character at byte {}",
                    c.i
                ))
            }
            Some(b) => {
                out.push(b);
                c.i += 1;
                if b != b' ' && b != b'\t' {
                    keep = out.len();
                }
            }
        }
    }
    out.truncate(keep);
    String::from_utf8(out)
        .map(|s| (s, false))
        .map_err(|_| "distinguished name value is not valid UTF-8".to_string())
}

fn hex_val(h: u8) -> u8 {
    match h {
        b'0'..=b'9' => h - b'0',
        b'a'..=b'f' => h - b'a' + 10,
        b'A'..=b'F' => h - b'A' + 10,
        _ => 0,
    }
}

/// Decode a non-empty, even-length run of hex digits.
pub(crate) fn decode_hex(hex: &[u8]) -> Option<Vec<u8>> {
    if hex.is_empty() || hex.len() % 2 != 0 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    Some(
        hex.chunks_exact(2)
            .map(|p| match p {
                &[h, l] => (hex_val(h) << 4) | hex_val(l),
                _ => 0,
            })
            .collect(),
    )
}

/// Decode one DER TLV holding a string. Known string types become text; any other well-formed TLV
/// is kept as `#` + lower-case hex (`raw`). A malformed TLV, or a string type whose content is not
/// valid for that type, is an error.
fn decode_der(der: &[u8]) -> Result<(String, bool), String> {
    const BAD: &str = "malformed `#` value: not a DER string";
    let (&tag, rest) = der.split_first().ok_or(BAD)?;
    let (&l0, rest) = rest.split_first().ok_or(BAD)?;
    let (len, content) = if l0 < 0x80 {
        (usize::from(l0), rest)
    } else {
        let n = usize::from(l0 & 0x7f);
        if n == 0 || n > 2 {
            return Err(BAD.to_string());
        }
        let (len_bytes, content) = rest.split_at_checked(n).ok_or(BAD)?;
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, content)
    };
    if content.len() != len {
        return Err(BAD.to_string());
    }
    let text = match tag {
        // UTF8String
        0x0C => String::from_utf8(content.to_vec()).map_err(|_| BAD)?,
        // NumericString, PrintableString, IA5String, VisibleString
        0x12 | 0x13 | 0x16 | 0x1A => {
            if !content.is_ascii() {
                return Err(BAD.to_string());
            }
            content.iter().map(|b| char::from(*b)).collect()
        }
        // TeletexString, read as Latin-1 (what deployed software does in practice)
        0x14 => content.iter().map(|b| char::from(*b)).collect(),
        // BMPString (UCS-2)
        0x1E => {
            let mut s = String::new();
            for pair in content.chunks(2) {
                let &[h, l] = pair else {
                    return Err(BAD.to_string());
                };
                s.push(char::from_u32(u32::from(u16::from_be_bytes([h, l]))).ok_or(BAD)?);
            }
            s
        }
        // UniversalString (UCS-4)
        0x1C => {
            let mut s = String::new();
            for quad in content.chunks(4) {
                let &[a, b, c, d] = quad else {
                    return Err(BAD.to_string());
                };
                s.push(char::from_u32(u32::from_be_bytes([a, b, c, d])).ok_or(BAD)?);
            }
            s
        }
        _ => {
            let mut s = String::with_capacity(1 + der.len() * 2);
            s.push('#');
            for b in der {
                let _ = write!(s, "{b:02x}");
            }
            return Ok((s, true));
        }
    };
    Ok((text, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `#` + hex of a DER TLV with a short-form length.
    fn der_hex(tag: u8, content: &[u8]) -> String {
        let mut s = format!("#{tag:02X}{:02X}", content.len());
        for b in content {
            s.push_str(&format!("{b:02X}"));
        }
        s
    }

    fn dn(s: &str) -> Dn {
        Dn::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    const BR_ORG: &str = "OFBBR-74e929d9-33b6-4d85-8ba7-c146c867a817";
    const UK_ORG: &str = "PSDGB-OB-Unknown0015800001HQQrZAAX";

    #[test]
    fn matching_pairs() {
        let br_hex = der_hex(0x0C, BR_ORG.as_bytes());
        let uk_hex = der_hex(0x0C, UK_ORG.as_bytes());
        assert_eq!(&uk_hex[..5], "#0C22", "hosts.md example length");
        let envoy_br = format!(
            "CN=tpp.example.com.br,UID=5f4d1e9a-1111-4a2b-9c3d-0123456789ab,2.5.4.97={br_hex},\
             OU=74e929d9-33b6-4d85-8ba7-c146c867a817,L=SAO PAULO,ST=SP,O=Example Ltda,C=BR"
        );
        let rfc_br = format!(
            "CN=tpp.example.com.br, UID=5f4d1e9a-1111-4a2b-9c3d-0123456789ab, \
             organizationIdentifier={BR_ORG}, OU=74e929d9-33b6-4d85-8ba7-c146c867a817, \
             L=SAO PAULO, ST=SP, O=Example Ltda, C=BR"
        );
        let envoy_uk = format!(
            "CN=2kiXQyo0tedjW2somjSgH7,2.5.4.97={uk_hex},OU=0015800001HQQrZAAX,O=OpenBanking,C=GB"
        );
        let cases: Vec<(String, String, &str)> = vec![
            (
                "CN=abc,OU=001580,O=OpenBanking,C=GB".into(),
                "C=GB,O=OpenBanking,OU=001580,CN=abc".into(),
                "certificate order is the reverse of RFC 4514 order",
            ),
            (
                "CN=abc,OU=001580,O=OpenBanking,C=GB".into(),
                "CN=abc,OU=001580,O=OpenBanking,C=GB".into(),
                "identical",
            ),
            (envoy_br.clone(), rfc_br.clone(), "Envoy #hex vs name"),
            (
                envoy_br.clone(),
                "C=BR,O=Example Ltda,ST=SP,L=SAO PAULO,OU=74e929d9-33b6-4d85-8ba7-c146c867a817,\
                 organizationIdentifier=OFBBR-74e929d9-33b6-4d85-8ba7-c146c867a817,\
                 UID=5f4d1e9a-1111-4a2b-9c3d-0123456789ab,CN=tpp.example.com.br"
                    .into(),
                "Envoy #hex vs reversed names",
            ),
            (
                envoy_uk.clone(),
                format!("C=GB, O=OpenBanking, OU=0015800001HQQrZAAX, organizationIdentifier={UK_ORG}, CN=2kiXQyo0tedjW2somjSgH7"),
                "UK OBWAC-like",
            ),
            (
                format!("OID.2.5.4.97={UK_ORG},CN=x"),
                format!("organizationIdentifier={UK_ORG},CN=x"),
                "OID. prefix",
            ),
            (
                "2.5.4.3=abc,2.5.4.10=OpenBanking,2.5.4.6=GB".into(),
                "CN=abc,O=OpenBanking,C=GB".into(),
                "OID vs short name",
            ),
            (
                "0.9.2342.19200300.100.1.1=sw,2.5.4.5=123".into(),
                "uid=sw,SERIALNUMBER=123".into(),
                "UID and serialNumber by OID",
            ),
            (
                "cn=abc,o=OpenBanking,c=GB".into(),
                "CN=abc,O=OpenBanking,C=GB".into(),
                "type case",
            ),
            (
                "commonName=abc,organizationName=OpenBanking".into(),
                "CN=abc,O=OpenBanking".into(),
                "long names",
            ),
            (
                "CN=ABC,O=openbanking".into(),
                "CN=abc,O=OpenBanking".into(),
                "value case",
            ),
            (
                "  CN = abc  ,  O = Open   Banking , C=GB  ".into(),
                "CN=abc,O=Open Banking,C=GB".into(),
                "spaces around separators, inner runs collapsed",
            ),
            (
                r"CN=Smith\, John,O=A\+B".into(),
                r"CN=Smith\2C John,O=A\2bB".into(),
                "escaped comma and plus, by char and by hex",
            ),
            (
                "CN=abc+UID=42,O=x".into(),
                "UID=42 + CN=abc,O=x".into(),
                "multi-valued RDN in another order",
            ),
            (
                "O=x,UID=42+CN=abc".into(),
                "CN=abc+UID=42,O=x".into(),
                "multi-valued RDN, reversed sequence",
            ),
            (
                r"CN=Caf\C3\A9,O=x".into(),
                "CN=Café,O=x".into(),
                "hex-escaped UTF-8",
            ),
            (
                format!("CN={},O=x", der_hex(0x13, b"abc")),
                "CN=abc,O=x".into(),
                "PrintableString",
            ),
            (
                format!("CN={},O=x", der_hex(0x16, b"a@b")),
                "CN=a@b,O=x".into(),
                "IA5String",
            ),
            (
                format!("CN={},O=x", der_hex(0x14, &[0x43, 0x61, 0x66, 0xE9])),
                "CN=Café,O=x".into(),
                "TeletexString as Latin-1",
            ),
            (
                format!("CN={},O=x", der_hex(0x1E, &[0, 0x43, 0, 0xE9])),
                "CN=Cé,O=x".into(),
                "BMPString",
            ),
            (
                format!("CN={},O=x", der_hex(0x1C, &[0, 0, 0, 0x43, 0, 1, 0xF6, 0x00])),
                "CN=C\u{1F600},O=x".into(),
                "UniversalString",
            ),
            (
                format!("CN={}", der_hex(0x0C, "é".as_bytes()).to_lowercase()),
                "CN=É".into(),
                "lower-case hex, Unicode case folding",
            ),
            (
                "X-Custom=v,CN=a".into(),
                "x-custom=V,cn=A".into(),
                "unknown descr, case-insensitive",
            ),
            (
                "2.5.4.99=#0101FF".into(),
                "2.5.4.99=#0101ff".into(),
                "undecodable DER kept raw, hex case ignored",
            ),
            (r"CN=\ a\ ".into(), "CN=a".into(), "escaped spaces trimmed for comparison"),
            (r"CN=\#1".into(), r"CN=\231".into(), "escaped leading #, by char and by hex"),
            ("CN=a".into(), "CN=a".into(), "single RDN"),
        ];
        for (a, b, why) in &cases {
            let (da, db) = (dn(a), dn(b));
            assert!(da.matches(&db), "{why}: {a:?} vs {b:?}");
            assert!(db.matches(&da), "{why} (symmetric)");
        }
    }

    #[test]
    fn non_matching_pairs() {
        let cases: &[(&str, &str, &str)] = &[
            ("CN=abc,O=OB,C=GB", "CN=abd,O=OB,C=GB", "one value differs"),
            ("CN=abc,O=OB,C=GB", "CN=abc,OU=OB,C=GB", "one type differs"),
            ("CN=abc,O=OB,C=GB", "CN=abc,O=OB", "shorter"),
            ("CN=abc,O=OB", "CN=abc,O=OB,C=GB", "longer"),
            ("CN=a,O=b,C=c", "O=b,C=c,CN=a", "rotated, not reversed"),
            ("CN=a,O=b,C=c", "CN=a,C=c,O=b", "partly reordered"),
            (
                "CN=a+UID=1,O=x",
                "CN=a,UID=1,O=x",
                "multi-valued vs two RDNs",
            ),
            (
                "CN=a+UID=1,O=x",
                "CN=a+UID=2,O=x",
                "one member of a multi-valued RDN",
            ),
            ("CN=a+UID=1", "CN=a", "RDN set sizes"),
            ("CN=a b", "CN=ab", "inner whitespace is not removed"),
            (r"CN=a\,b", "CN=a,CN=b", "escaped comma is data"),
            (
                "2.5.4.99=#0101FF",
                r"2.5.4.99=\#0101ff",
                "raw DER vs literal text",
            ),
            ("CN=1", "SN=1", "SN is surname, not serialNumber"),
        ];
        for (a, b, why) in cases {
            let (da, db) = (dn(a), dn(b));
            assert!(!da.matches(&db), "{why}: {a:?} vs {b:?}");
            assert!(!db.matches(&da), "{why} (symmetric)");
        }
    }

    #[test]
    fn openssl_slash_form_is_refused() {
        let real = dn("CN=abc,OU=001580,O=OpenBanking,C=GB");
        for s in [
            "/C=GB/O=OpenBanking/OU=001580/CN=abc",
            "  /CN=abc/OU=001580/O=OpenBanking/C=GB",
            "/CN=abc",
        ] {
            assert!(Dn::parse(s).is_err(), "{s:?}");
        }
        // Even embedded, the slash form never turns into the real name.
        if let Ok(d) = Dn::parse("C=GB/O=OpenBanking/OU=001580/CN=abc") {
            assert!(!d.matches(&real));
        }
    }

    #[test]
    fn malformed_strings_are_errors() {
        let long = format!("CN={}", "a".repeat(MAX_DN_LEN));
        let many = (0..=MAX_DN_ATTRS)
            .map(|i| format!("CN=a{i}"))
            .collect::<Vec<_>>()
            .join(",");
        let cases: &[&str] = &[
            "",
            "   ",
            "CN",
            "CN=a,O",
            "=a",
            "CN=a,",
            ",CN=a",
            "CN=a,,O=b",
            "CN=a+",
            "CN=a\\",
            "CN=a\\q",
            "CN=a\\4",
            "CN=a\\4g",
            "CN=\\C3",
            "CN=#",
            "CN=#0",
            "CN=#0C0",
            "CN=#0C02616",
            "CN=#0C0261",
            "CN=#0C026162zz",
            "CN=#0C02 6162",
            "CN=#0C036162",
            "CN=#0C016162",
            "CN=#0C01FF",
            "CN=#1301C3",
            "CN=#1E0100",
            "CN=#1E02D800",
            "CN=#1C03000041",
            "CN=#1C0400110000",
            "CN=#83",
            "CN=#0C80",
            "CN=#0C830000000",
            "CN=a\"b",
            "CN=a;b",
            "CN=a<b",
            "CN=a>b",
            "CN=a\0b",
            "C N=a",
            "1CN=a",
            "2.5.=a",
            "2.5..4=a",
            "2.05.4.3=a",
            "2=a",
            "OID.CN=a",
            "-CN=a",
            "CN_x=a",
            "CN=a;O=b",
            &long,
            &many,
        ];
        for s in cases {
            assert!(Dn::parse(s).is_err(), "accepted {s:?}");
        }
        // The bounds themselves are fine.
        let at_limit = (0..MAX_DN_ATTRS)
            .map(|i| format!("CN=a{i}"))
            .collect::<Vec<_>>()
            .join(",");
        assert!(Dn::parse(&at_limit).is_ok());
        let max_len = format!("CN={}", "a".repeat(MAX_DN_LEN - 3));
        assert!(Dn::parse(&max_len).is_ok());
    }

    #[test]
    fn values_and_get() {
        let br_hex = der_hex(0x0C, BR_ORG.as_bytes());
        let d = dn(&format!(
            "CN=tpp,UID=sw-1,2.5.4.97={br_hex},OU=Unit A,OU=Unit B,O=Ex\\, Ltda,C=BR,2.5.4.99=#0101FF"
        ));
        let cases: &[(&str, Option<&str>)] = &[
            ("organizationIdentifier", Some(BR_ORG)),
            ("2.5.4.97", Some(BR_ORG)),
            ("OID.2.5.4.97", Some(BR_ORG)),
            ("ORGANIZATIONIDENTIFIER", Some(BR_ORG)),
            ("UID", Some("sw-1")),
            ("0.9.2342.19200300.100.1.1", Some("sw-1")),
            ("cn", Some("tpp")),
            ("OU", Some("Unit A")),
            ("O", Some("Ex, Ltda")),
            ("C", Some("BR")),
            ("2.5.4.99", Some("#0101ff")),
            ("serialNumber", None),
            ("L", None),
            ("", None),
            ("not a type", None),
            ("2..5", None),
        ];
        for (attr, want) in cases {
            assert_eq!(d.get(attr), *want, "{attr}");
        }
        // Escapes and trimming in values.
        let d = dn(r#"CN=\ lead\, \"q\" \+ \\ \<\>\;\= trail\ ,O=  spaced  "#);
        assert_eq!(d.get("CN"), Some(r#" lead, "q" + \ <>;= trail "#));
        assert_eq!(d.get("O"), Some("spaced"));
        assert_eq!(dn("CN=,O=x").get("CN"), Some(""));
        assert_eq!(dn("CN=a=b#c").get("CN"), Some("a=b#c"));
    }

    #[test]
    fn parse_is_structural() {
        // Equal strings up to separators' whitespace and type spelling parse to equal values.
        assert_eq!(dn("CN=a, O=b"), dn("cn = a,2.5.4.10=b"));
        assert_ne!(dn("CN=a,O=b"), dn("O=b,CN=a"));
    }

    /// Deterministic xorshift, so failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn random_mutations_never_panic() {
        let seeds = [
            format!(
                "CN=tpp,2.5.4.97={},OU=001,O=OpenBanking,C=GB",
                der_hex(0x0C, UK_ORG.as_bytes())
            ),
            r"CN=Smith\, John+UID=1,O=A\2bB,OID.2.5.4.5=#1E020041".to_string(),
            "C=GB/O=x".to_string(),
        ];
        let alphabet: Vec<char> = "=,+\\#\"; <>/.0123456789abcdefABCDEFOIDxé\u{1F600}\t\0"
            .chars()
            .collect();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let reference = dn("CN=tpp,OU=001,O=OpenBanking,C=GB");
        for round in 0..20_000 {
            let seed = &seeds[round % seeds.len()];
            let mut chars: Vec<char> = seed.chars().collect();
            for _ in 0..=rng.below(4) {
                let pos = rng.below(chars.len() + 1);
                match rng.below(3) {
                    0 => chars.insert(pos, alphabet[rng.below(alphabet.len())]),
                    1 if pos < chars.len() => {
                        chars.remove(pos);
                    }
                    _ if pos < chars.len() => chars[pos] = alphabet[rng.below(alphabet.len())],
                    _ => {}
                }
            }
            let s: String = chars.into_iter().collect();
            if let Ok(d) = Dn::parse(&s) {
                let _ = d.matches(&reference);
                let _ = d.get("CN");
                let _ = d.get("2.5.4.97");
            }
        }
        // Random bytes too.
        for _ in 0..5_000 {
            let len = rng.below(40);
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let s = String::from_utf8_lossy(&bytes);
            let _ = Dn::parse(&s);
            let _ = Dn::parse(&format!("CN=#{s}"));
        }
    }
}
