//! `--cert tpp.pem`: the facts Envoy reports about a client certificate (`connection.*`
//! properties), taken from a PEM certificate: its subject (rendered as Envoy renders it, RFC 2253
//! with the last RDN first, each value as `OID=#hex` of its DER, which the engine's DN parser
//! reads), the SHA-256 of its DER and its first URI SAN. A small, bounded DER reader: only the
//! structure up to the subject and the subjectAltName extension is walked.

use dcr_guard_core::cert::ClientCert;

/// One DER TLV: (tag, contents, rest).
fn tlv(b: &[u8]) -> Result<(u8, &[u8], &[u8]), String> {
    let bad = || "the certificate is not valid DER".to_string();
    let (&tag, rest) = b.split_first().ok_or_else(bad)?;
    let (&first, rest) = rest.split_first().ok_or_else(bad)?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return Err(bad());
        }
        let bytes = rest.get(..n).ok_or_else(bad)?;
        let len = bytes
            .iter()
            .fold(0usize, |acc, &x| (acc << 8) | usize::from(x));
        (len, rest.get(n..).ok_or_else(bad)?)
    };
    let contents = rest.get(..len).ok_or_else(bad)?;
    Ok((tag, contents, rest.get(len..).ok_or_else(bad)?))
}

/// Dotted text of a DER OBJECT IDENTIFIER's contents.
fn oid_text(b: &[u8]) -> String {
    let mut parts: Vec<u64> = Vec::new();
    let mut acc: u64 = 0;
    for &x in b {
        acc = (acc << 7) | u64::from(x & 0x7f);
        if x & 0x80 == 0 {
            if parts.is_empty() {
                let first = acc.min(80) / 40;
                parts.push(first);
                parts.push(acc - first * 40);
            } else {
                parts.push(acc);
            }
            acc = 0;
        }
    }
    parts
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The subject `Name`'s contents as RFC 2253 text (last RDN first), values as `#hex` DER.
fn name_text(mut rdns: &[u8]) -> Result<String, String> {
    let mut out = Vec::new();
    while !rdns.is_empty() {
        let (_, mut set, rest) = tlv(rdns)?;
        rdns = rest;
        let mut avas = Vec::new();
        while !set.is_empty() {
            let (_, ava, rest) = tlv(set)?;
            set = rest;
            let (_, oid, value) = tlv(ava)?;
            avas.push(format!("{}=#{}", oid_text(oid), hex(value)));
        }
        out.push(avas.join("+"));
    }
    out.reverse();
    Ok(out.join(","))
}

/// The first URI of a subjectAltName extension value (a `GeneralNames` SEQUENCE in an OCTET STRING).
fn first_uri(ext_value: &[u8]) -> Result<Option<String>, String> {
    let (_, mut names, _) = tlv(ext_value)?;
    while !names.is_empty() {
        let (tag, v, rest) = tlv(names)?;
        names = rest;
        // [6] IMPLICIT IA5String: uniformResourceIdentifier.
        if tag == 0x86 {
            return Ok(Some(String::from_utf8_lossy(v).into_owned()));
        }
    }
    Ok(None)
}

/// The certificate facts of the first certificate in `pem`.
pub fn from_pem(pem: &[u8]) -> Result<ClientCert, String> {
    let der = ureq::tls::parse_pem(pem)
        .find_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c.der().to_vec()),
            _ => None,
        })
        .ok_or("--cert: no PEM certificate in the file")?;
    let digest = ring::digest::digest(&ring::digest::SHA256, &der);
    let (_, cert, _) = tlv(&der)?;
    let (_, tbs, _) = tlv(cert)?;
    // version [0] (optional), serialNumber, signature, issuer, validity, subject, spki, …
    let (tag, _, mut rest) = tlv(tbs)?;
    if tag == 0xa0 {
        rest = tlv(rest)?.2; // serialNumber
    }
    let rest = tlv(rest)?.2; // signature
    let rest = tlv(rest)?.2; // issuer
    let rest = tlv(rest)?.2; // validity
    let (_, subject, mut rest) = tlv(rest)?;
    let mut uri = None;
    while !rest.is_empty() {
        let (tag, v, r) = tlv(rest)?;
        rest = r;
        if tag != 0xa3 {
            continue;
        }
        let (_, mut exts, _) = tlv(v)?;
        while !exts.is_empty() {
            let (_, ext, r) = tlv(exts)?;
            exts = r;
            let (_, oid, mut fields) = tlv(ext)?;
            if oid_text(oid) != "2.5.29.17" {
                continue;
            }
            while !fields.is_empty() {
                let (tag, value, r) = tlv(fields)?;
                fields = r;
                if tag == 0x04 {
                    uri = first_uri(value)?;
                }
            }
        }
    }
    let subject = name_text(subject)?;
    ClientCert::from_envoy(&subject, Some(&hex(digest.as_ref())), uri.as_deref())
}
