//! The client-certificate facts the filter can know (spec §4 `certificate_binding`, hosts.md):
//! the subject DN, the SHA-256 of the DER certificate and the URI SANs — read either from Envoy's
//! connection properties (TLS ends at this Envoy) or from an `x-forwarded-client-cert` header
//! (TLS ends at a proxy in front of it).
//!
//! Malformed inputs are errors, never guesses: a subject that does not parse, or a digest that is
//! present but is not 32 bytes of hex, fails the whole certificate rather than silently losing the
//! digest (which would only resurface later as a confusing thumbprint failure, or worse, go
//! unnoticed when the thumbprint check is off). An absent or empty digest is simply `None`.

use crate::dn::{decode_hex, Dn};

/// Longest `x-forwarded-client-cert` header accepted, in bytes (it may carry URL-encoded PEM
/// certificates and chains for several hops).
pub const MAX_XFCC_LEN: usize = 64 * 1024;

/// What is known of the TLS client's certificate.
#[derive(Debug, Clone)]
pub struct ClientCert {
    pub subject: Dn,
    /// SHA-256 of the DER certificate (the RFC 8705 / JWK `x5t#S256` thumbprint).
    pub sha256: Option<[u8; 32]>,
    pub uri_sans: Vec<String>,
}

impl ClientCert {
    /// From Envoy's connection properties (the glue reads them): `connection.subject_peer_certificate`,
    /// `connection.sha256_peer_certificate_digest` (hex; `AA:BB:…` also accepted; absent or empty →
    /// `None`, anything else that is not 32 bytes of hex → `Err`) and
    /// `connection.uri_san_peer_certificate` (first URI SAN; empty → none).
    pub fn from_envoy(
        subject: &str,
        sha256_hex: Option<&str>,
        uri_san: Option<&str>,
    ) -> Result<ClientCert, String> {
        let subject = Dn::parse(subject).map_err(|e| format!("client certificate subject: {e}"))?;
        let sha256 = match sha256_hex.map(str::trim).filter(|h| !h.is_empty()) {
            None => None,
            Some(h) => Some(
                parse_sha256_hex(h)
                    .ok_or("client certificate SHA-256 digest is not 32 bytes of hex")?,
            ),
        };
        let uri_sans = uri_san
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .into_iter()
            .collect();
        Ok(ClientCert {
            subject,
            sha256,
            uri_sans,
        })
    }

    /// From an `x-forwarded-client-cert` header in Envoy's format: elements separated by `,`,
    /// `key=value` pairs by `;`, keys case-insensitive, values optionally double-quoted.
    ///
    /// **Element choice: the first.** Envoy's XFCC semantics: each proxy that terminates a TLS
    /// connection *appends* (APPEND_FORWARD) an element describing the certificate of *its* client.
    /// The edge proxy, which terminates the TPP's TLS, therefore writes the first element, and every
    /// later hop only appends the certificates of the proxies in between. The first element is the
    /// TPP's certificate **provided the edge proxy does not forward an XFCC header it received from
    /// the internet**: the edge must use `SANITIZE_SET` (or strip the header), otherwise a client
    /// could prepend a forged element. That is deployment configuration this function cannot check.
    ///
    /// Needs `Subject` (non-empty, a valid DN); `Hash` (hex SHA-256) is optional; each non-empty
    /// `URI` is a URI SAN; `By`, `Cert`, `Chain`, `DNS` and unknown keys are ignored. A repeated
    /// `Subject` or `Hash` in the element is an error.
    ///
    /// Quoted values: Envoy writes `Subject="<RFC 2253 DN>"` without further escaping, and in an RFC
    /// 2253 string every `"` and `\` of a value is already backslash-escaped. So inside quotes a
    /// backslash protects the character after it (`\"` does not end the value, nor does the `"`
    /// after a `\\`), and the text between the quotes is handed to the DN parser unchanged, which
    /// decodes the escapes. (An encoder that added a second level of `\"` escaping around a DN that
    /// already contains `\"` would produce something this refuses.)
    pub fn from_xfcc(header: &str) -> Result<ClientCert, String> {
        if header.len() > MAX_XFCC_LEN {
            return Err(format!(
                "x-forwarded-client-cert longer than {MAX_XFCC_LEN} bytes"
            ));
        }
        let mut subject = None;
        let mut hash = None;
        let mut uri_sans = Vec::new();
        for (key, value) in first_element(header)? {
            if key.eq_ignore_ascii_case("subject") {
                if subject.replace(value).is_some() {
                    return Err("x-forwarded-client-cert: repeated Subject".to_string());
                }
            } else if key.eq_ignore_ascii_case("hash") {
                if hash.replace(value).is_some() {
                    return Err("x-forwarded-client-cert: repeated Hash".to_string());
                }
            } else if key.eq_ignore_ascii_case("uri") && !value.is_empty() {
                uri_sans.push(value.to_string());
            }
        }
        let subject = subject.ok_or("x-forwarded-client-cert: no Subject")?;
        let subject =
            Dn::parse(subject).map_err(|e| format!("x-forwarded-client-cert Subject: {e}"))?;
        let sha256 = match hash.filter(|h| !h.is_empty()) {
            None => None,
            Some(h) => Some(
                parse_sha256_hex(h).ok_or("x-forwarded-client-cert Hash is not 32 bytes of hex")?,
            ),
        };
        Ok(ClientCert {
            subject,
            sha256,
            uri_sans,
        })
    }
}

/// 64 hex digits, or 32 colon-separated pairs; either case.
fn parse_sha256_hex(h: &str) -> Option<[u8; 32]> {
    let compact: Vec<u8> = if h.contains(':') {
        let pairs: Vec<&str> = h.split(':').collect();
        if pairs.len() != 32 || pairs.iter().any(|p| p.len() != 2) {
            return None;
        }
        pairs.concat().into_bytes()
    } else {
        h.as_bytes().to_vec()
    };
    if compact.len() != 64 {
        return None;
    }
    decode_hex(&compact)?.try_into().ok()
}

/// The `key=value` pairs of the first XFCC element, values unquoted but otherwise raw.
fn first_element(h: &str) -> Result<Vec<(&str, &str)>, String> {
    const MALFORMED: &str = "malformed x-forwarded-client-cert";
    let b = h.as_bytes();
    let mut i = 0usize;
    let mut pairs = Vec::new();
    loop {
        let key_start = i;
        while let Some(&c) = b.get(i) {
            if matches!(c, b'=' | b';' | b',') {
                break;
            }
            i += 1;
        }
        if b.get(i) != Some(&b'=') {
            return Err(format!("{MALFORMED}: `=` expected"));
        }
        let key = h.get(key_start..i).ok_or(MALFORMED)?.trim();
        if key.is_empty() {
            return Err(format!("{MALFORMED}: empty key"));
        }
        i += 1;
        while b.get(i) == Some(&b' ') {
            i += 1;
        }
        let value = if b.get(i) == Some(&b'"') {
            i += 1;
            let start = i;
            loop {
                match b.get(i) {
                    None => return Err(format!("{MALFORMED}: unterminated quoted value")),
                    Some(b'\\') => i += 2,
                    Some(b'"') => break,
                    Some(_) => i += 1,
                }
            }
            let value = h.get(start..i).ok_or(MALFORMED)?;
            i += 1;
            while b.get(i) == Some(&b' ') {
                i += 1;
            }
            if !matches!(b.get(i), None | Some(b';' | b',')) {
                return Err(format!("{MALFORMED}: text after a quoted value"));
            }
            value
        } else {
            let start = i;
            while let Some(&c) = b.get(i) {
                if matches!(c, b';' | b',') {
                    break;
                }
                i += 1;
            }
            h.get(start..i).ok_or(MALFORMED)?.trim()
        };
        pairs.push((key, value));
        if b.get(i) != Some(&b';') {
            // The end of the header or of the first element.
            return Ok(pairs);
        }
        i += 1;
        while b.get(i) == Some(&b' ') {
            i += 1;
        }
        if matches!(b.get(i), None | Some(b',')) {
            // A trailing `;`.
            return Ok(pairs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "9d1f4b2e6a0c8e7d5b3a1f0e9d8c7b6a5f4e3d2c1b0a99887766554433221100";

    fn hash_bytes() -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&HASH[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    /// The parsed digest, or `Err(())` when the certificate is refused.
    type Digest = Result<Option<[u8; 32]>, ()>;
    /// (header, expected subject, expected digest, expected URI SANs, why)
    type XfccCase = (
        String,
        &'static str,
        Option<[u8; 32]>,
        Vec<&'static str>,
        &'static str,
    );

    #[test]
    fn from_envoy_properties() {
        let uk = "CN=2kiXQyo0tedjW2somjSgH7,2.5.4.97=#0C2250534447422D4F422D556E6B6E6F776E30303135383030303031485151725A414158,OU=0015800001HQQrZAAX,O=OpenBanking,C=GB";
        let c = ClientCert::from_envoy(uk, Some(HASH), Some("https://tpp.example/ssa")).unwrap();
        assert_eq!(
            c.subject.get("organizationIdentifier"),
            Some("PSDGB-OB-Unknown0015800001HQQrZAAX")
        );
        assert_eq!(c.subject.get("OU"), Some("0015800001HQQrZAAX"));
        assert_eq!(c.sha256, Some(hash_bytes()));
        assert_eq!(c.uri_sans, vec!["https://tpp.example/ssa".to_string()]);
        assert!(c.subject.matches(
            &Dn::parse("C=GB,O=OpenBanking,OU=0015800001HQQrZAAX,organizationIdentifier=PSDGB-OB-Unknown0015800001HQQrZAAX,CN=2kiXQyo0tedjW2somjSgH7").unwrap()
        ));

        let colon = HASH
            .to_uppercase()
            .as_bytes()
            .chunks(2)
            .map(|p| std::str::from_utf8(p).unwrap())
            .collect::<Vec<_>>()
            .join(":");
        let digests: &[(Option<&str>, Digest)] = &[
            (Some(HASH), Ok(Some(hash_bytes()))),
            (Some(&HASH.to_uppercase()), Ok(Some(hash_bytes()))),
            (Some(&colon), Ok(Some(hash_bytes()))),
            (Some(&format!(" {HASH} ")), Ok(Some(hash_bytes()))),
            (None, Ok(None)),
            (Some(""), Ok(None)),
            (Some(&HASH[1..]), Err(())),
            (Some(&HASH[2..]), Err(())),
            (Some(&format!("{HASH}00")), Err(())),
            (Some(&HASH.replace('9', "g")), Err(())),
            (Some(&colon[1..]), Err(())),
            (Some(&colon.replacen(':', "", 1)), Err(())),
            (Some("sha256:abc"), Err(())),
            (Some(&format!("é{}", &HASH[2..])), Err(())),
        ];
        for (hex, want) in digests {
            let got = ClientCert::from_envoy("CN=a", *hex, None)
                .map(|c| c.sha256)
                .map_err(|_| ());
            assert_eq!(&got, want, "{hex:?}");
        }

        let c = ClientCert::from_envoy("CN=a", None, Some("")).unwrap();
        assert!(c.uri_sans.is_empty() && c.sha256.is_none());
        for bad in ["", "/C=GB/O=OpenBanking/CN=a", "CN=a\\", "CN=#0C05"] {
            assert!(
                ClientCert::from_envoy(bad, Some(HASH), None).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn from_xfcc_header() {
        let ok: Vec<XfccCase> = vec![
            (
                format!("By=spiffe://cluster.local/ns/gw/sa/edge;Hash={HASH};Subject=\"CN=tpp,OU=0015800001HQQrZAAX,O=OpenBanking,C=GB\";URI=spiffe://tpp;DNS=tpp.example.com"),
                "C=GB,O=OpenBanking,OU=0015800001HQQrZAAX,CN=tpp",
                Some(hash_bytes()),
                vec!["spiffe://tpp"],
                "Envoy element",
            ),
            (
                format!(r#"Hash={HASH};Subject="CN=Smith\, \"JJ\",O=A\"B\\,C=GB""#),
                r"CN=Smith\2c \22JJ\22,O=A\22B\5c,C=GB",
                Some(hash_bytes()),
                vec![],
                "quoted Subject with commas, \\\" and a value ending in a backslash",
            ),
            (
                format!("Hash={HASH};Subject=\"CN=first,O=x\";URI=,By=spiffe://mesh/gw;Hash={};Subject=\"CN=gateway\"", "00".repeat(32)),
                "CN=first,O=x",
                Some(hash_bytes()),
                vec![],
                "first of several elements; empty URI ignored",
            ),
            (
                "subject=\"CN=a\";hash=;uri=https://a;URI=https://b;".to_string(),
                "CN=a",
                None,
                vec!["https://a", "https://b"],
                "lower-case keys, empty Hash, trailing ;",
            ),
            (
                " Subject = CN=a+UID=1 ; Cert=\"-----BEGIN%20CERTIFICATE-----%0A\" , By=x".to_string(),
                "UID=1+CN=a",
                None,
                vec![],
                "unquoted Subject, spaces, ignored keys",
            ),
            (
                format!("Subject=\"CN=a\\;b\\;c=d\";Hash={}", HASH.to_uppercase()),
                r"CN=a\;b\;c=d",
                Some(hash_bytes()),
                vec![],
                "; and = inside quotes",
            ),
        ];
        for (header, subject, sha256, uris, why) in &ok {
            let c = ClientCert::from_xfcc(header).unwrap_or_else(|e| panic!("{why}: {e}"));
            assert!(
                c.subject.matches(&Dn::parse(subject).unwrap()),
                "{why}: {:?}",
                c.subject
            );
            assert_eq!(&c.sha256, sha256, "{why}");
            assert_eq!(&c.uri_sans, uris, "{why}");
        }
        let c = ClientCert::from_xfcc(&ok[1].0).unwrap();
        assert_eq!(c.subject.get("CN"), Some(r#"Smith, "JJ""#));
        assert_eq!(c.subject.get("O"), Some(r#"A"B\"#));

        let bad: Vec<(String, &str)> = vec![
            (format!("Hash={HASH};URI=spiffe://tpp"), "no Subject"),
            (
                format!("Hash={HASH},Subject=\"CN=a\""),
                "Subject only in a later element",
            ),
            ("Subject=\"\"".to_string(), "empty Subject"),
            ("Subject=".to_string(), "empty unquoted Subject"),
            (
                "Subject=\"CN=a\";Subject=\"CN=b\"".to_string(),
                "repeated Subject",
            ),
            (
                format!("Subject=\"CN=a\";Hash={HASH};Hash={HASH}"),
                "repeated Hash",
            ),
            ("Subject=\"CN=a\";Hash=abc".to_string(), "bad Hash"),
            ("Subject=\"CN=a".to_string(), "unterminated quote"),
            ("Subject=\"CN=a\\\"".to_string(), "quote escaped at the end"),
            (
                "Subject=\"CN=a\"x;Hash=".to_string(),
                "text after the quotes",
            ),
            (
                "Subject=\"/C=GB/O=OpenBanking/CN=a\"".to_string(),
                "OpenSSL form",
            ),
            ("Subject".to_string(), "no ="),
            ("=x;Subject=\"CN=a\"".to_string(), "empty key"),
            (",Subject=\"CN=a\"".to_string(), "empty first element"),
            ("".to_string(), "empty header"),
            (
                format!("Subject=\"CN={}\"", "a".repeat(MAX_XFCC_LEN)),
                "too long",
            ),
        ];
        for (header, why) in &bad {
            assert!(ClientCert::from_xfcc(header).is_err(), "{why}: accepted");
        }
    }

    #[test]
    fn random_headers_never_panic() {
        let seed = format!(
            "By=spiffe://x;Hash={HASH};Subject=\"CN=Smith\\, \\\"JJ\\\",O=é\";URI=u,By=y;Subject=\"CN=b\""
        );
        let alphabet: Vec<char> = "\"\\;,= aé#".chars().collect();
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let mut chars: Vec<char> = seed.chars().collect();
            for _ in 0..=(next() % 4) {
                let pos = (next() % (chars.len() as u64 + 1)) as usize;
                let ch = alphabet[(next() % alphabet.len() as u64) as usize];
                if next() % 2 == 0 || pos == chars.len() {
                    chars.insert(pos, ch);
                } else {
                    chars[pos] = ch;
                }
            }
            let s: String = chars.into_iter().collect();
            let _ = ClientCert::from_xfcc(&s);
        }
    }
}
