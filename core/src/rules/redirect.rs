//! `redirect_uri_format`, `redirect_uri_subset`, `uri_hostname`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

use super::{Ctx, RedirectUris};
use crate::claims::{opt_str, opt_str_array};
use crate::error::clip;

/// Every redirect URI of the request and of the SSA: absolute `https` with a host that is not
/// `localhost`, `*.localhost`, a loopback or unspecified address; no fragment; not too long.
pub(crate) fn format(ctx: &Ctx<'_>, p: &RedirectUris) -> Result<(), String> {
    let request = opt_str_array(ctx.request, "redirect_uris")?.unwrap_or_default();
    let ssa = opt_str_array(ctx.ssa, &p.ssa_claim)
        .map_err(|m| format!("SSA {m}"))?
        .unwrap_or_default();
    for uri in request.iter().chain(ssa.iter()) {
        check_https_uri("redirect URI", uri, p.max_length)?;
    }
    Ok(())
}

/// Bytes RFC 3986 allows in a URI (unreserved, reserved, `%`); any other byte, non-ASCII
/// included, is not.
fn uri_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b':'
                | b'/'
                | b'?'
                | b'#'
                | b'['
                | b']'
                | b'@'
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
                | b'%'
        )
}

/// A URI as shown in an error: its first 80 characters (formatted only when an error is).
struct Shown<'a>(&'a str);

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&clip(self.0, 80))
    }
}

/// An absolute `https` URI with a host that is not local: the URI must be RFC 3986 as written
/// (no whitespace, backslashes or non-ASCII that a lenient parser would repair, and that other
/// parsers would read differently), `https://` followed by a non-empty authority without user
/// information, no fragment, at most `max_length` characters, and its host not `localhost`,
/// `*.localhost`, a loopback or an unspecified address.
pub(crate) fn check_https_uri(what: &str, uri: &str, max_length: usize) -> Result<(), String> {
    check_https_uri_with(what, uri, max_length, true)
}

/// [`check_https_uri`]; `fast_path: false` sends every URI to the WHATWG parser (the reference
/// the fast path is tested against).
fn check_https_uri_with(
    what: &str,
    uri: &str,
    max_length: usize,
    fast_path: bool,
) -> Result<(), String> {
    let shown = Shown(uri);
    if uri.len() > max_length && uri.chars().count() > max_length {
        return Err(format!(
            "{what} longer than {max_length} characters: `{shown}`"
        ));
    }
    if !uri.bytes().all(uri_byte) {
        return Err(format!(
            "{what} is not a valid URI (RFC 3986): `{}`",
            clip(uri, 80).escape_default()
        ));
    }
    if uri.contains('#') {
        return Err(format!("{what} has a fragment: `{shown}`"));
    }
    let scheme_ok = uri
        .get(..6)
        .is_some_and(|s| s.eq_ignore_ascii_case("https:"));
    if !scheme_ok {
        return Err(format!("{what} must use https: `{shown}`"));
    }
    let after = uri.get(6..).unwrap_or("");
    let authority = match after.strip_prefix("//") {
        Some(rest) => rest.split(['/', '?']).next().unwrap_or(""),
        None => "",
    };
    if authority.is_empty() {
        return Err(format!("{what} has no host: `{shown}`"));
    }
    if authority.contains('@') {
        return Err(format!("{what} must not carry user information: `{shown}`"));
    }
    // The common case, a plain DNS name, without the WHATWG parser (it would read it alike).
    if let Some(d) = plain_https_host(uri).filter(|_| fast_path) {
        return domain_not_local(what, &d, &shown);
    }
    let url =
        Url::parse(uri).map_err(|e| format!("{what} is not an absolute URI ({e}): `{shown}`"))?;
    match url.host() {
        None => Err(format!("{what} has no host: `{shown}`")),
        Some(Host::Domain(d)) => domain_not_local(what, d, &shown),
        Some(Host::Ipv4(ip)) => local_ip(what, IpAddr::V4(ip), &shown),
        Some(Host::Ipv6(ip)) => local_ip(what, IpAddr::V6(ip), &shown),
    }
}

fn domain_not_local(what: &str, d: &str, shown: &Shown<'_>) -> Result<(), String> {
    let d = d.trim_end_matches('.');
    let tail = d
        .len()
        .checked_sub(".localhost".len())
        .and_then(|i| d.get(i..));
    if d.is_empty()
        || d.eq_ignore_ascii_case("localhost")
        || tail.is_some_and(|t| t.eq_ignore_ascii_case(".localhost"))
    {
        Err(format!("{what} must not point at localhost: `{shown}`"))
    } else {
        Ok(())
    }
}

/// The host of `https://NAME[:PORT][/...|?...|#...]` when NAME is a plain DNS name, lowercased,
/// exactly as the WHATWG parser (`url`) would give it; `None` for anything else (IP literals,
/// names the parser would read as IPv4 such as `0x7f.1` or `1.2.3.4`, IDNA `xn--` labels, empty
/// labels, percent-encoding, user information, odd ports), which then goes to the parser. Only
/// `[A-Za-z0-9-]` labels of 1–63 characters, an optional final dot, and a last label that is
/// neither all digits nor `0x` hex qualify.
pub(crate) fn plain_https_host(uri: &str) -> Option<String> {
    let scheme = uri.get(..8)?;
    if !scheme.eq_ignore_ascii_case("https://") {
        return None;
    }
    let rest = uri.get(8..)?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = rest.get(..end)?;
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    if let Some(p) = port {
        let ok = !p.is_empty()
            && p.len() <= 5
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| n <= 65535);
        if !ok {
            return None;
        }
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.is_empty() || host.len() > 253 {
        return None;
    }
    let mut last = "";
    for label in name.split('.') {
        if label.is_empty()
            || label.len() > 63
            || !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            || label
                .get(..4)
                .is_some_and(|p| p.eq_ignore_ascii_case("xn--"))
        {
            return None;
        }
        last = label;
    }
    let numeric = last.bytes().all(|b| b.is_ascii_digit())
        || (last.len() >= 2
            && last.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("0x"))
            && last.bytes().skip(2).all(|b| b.is_ascii_hexdigit()));
    if numeric {
        return None;
    }
    Some(host.to_ascii_lowercase())
}

fn local_ip(what: &str, ip: IpAddr, shown: &Shown<'_>) -> Result<(), String> {
    let local = match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_unspecified(),
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4: Ipv4Addr| v4.is_loopback() || v4.is_unspecified())
                || v6 == Ipv6Addr::LOCALHOST
        }
    };
    if local {
        Err(format!(
            "{what} must not point at a loopback or unspecified address: `{shown}`"
        ))
    } else {
        Ok(())
    }
}

/// Every request redirect URI is one of the SSA's, by exact string comparison. A missing or empty
/// request list is never a silent pass.
pub(crate) fn subset(ctx: &Ctx<'_>, p: &RedirectUris) -> Result<(), String> {
    let request = opt_str_array(ctx.request, "redirect_uris")?.ok_or("redirect_uris not found")?;
    if request.is_empty() {
        return Err("redirect_uris cannot be empty".to_string());
    }
    let ssa = opt_str_array(ctx.ssa, &p.ssa_claim)
        .map_err(|m| format!("SSA {m}"))?
        .ok_or_else(|| format!("SSA claim `{}` not found", p.ssa_claim))?;
    match request.iter().find(|u| !ssa.contains(u)) {
        None => Ok(()),
        Some(u) => Err(format!(
            "redirect URI `{}` is not registered in the software statement",
            clip(u, 80)
        )),
    }
}

/// The hosts of the SSA's redirect URIs and of its client, logo, terms and policy URIs are all the
/// same (case-insensitively). Missing URI claims are skipped.
pub(crate) fn hostname(ctx: &Ctx<'_>, p: &RedirectUris) -> Result<(), String> {
    let mut first: Option<(String, String)> = None;
    let redirects = opt_str_array(ctx.ssa, &p.ssa_claim)
        .map_err(|m| format!("SSA {m}"))?
        .unwrap_or_default();
    let mut uris: Vec<(String, &str)> = redirects
        .into_iter()
        .map(|u| (p.ssa_claim.clone(), u))
        .collect();
    for claim in &p.ssa_uri_claims {
        if let Some(u) = opt_str(ctx.ssa, claim).map_err(|m| format!("SSA {m}"))? {
            uris.push((claim.clone(), u));
        }
    }
    for (claim, uri) in uris {
        let host = plain_https_host(uri)
            .or_else(|| {
                Url::parse(uri)
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_string))
            })
            .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("SSA `{claim}` is not an absolute URI with a host"))?;
        match &first {
            None => first = Some((claim, host)),
            Some((first_claim, first_host)) if *first_host != host => {
                return Err(format!(
                    "SSA `{claim}` host `{}` differs from the `{first_claim}` host `{}`",
                    clip(&host, 64),
                    clip(first_host, 64)
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    /// `check_https_uri` without the plain-name fast path: the WHATWG parser always.
    fn reference(what: &str, uri: &str, max_length: usize) -> Result<(), String> {
        check_https_uri_with(what, uri, max_length, false)
    }

    const PIECES: &[&str] = &[
        "https://",
        "HTTPS://",
        "http://",
        "https:",
        "//",
        "a",
        "Z",
        "example",
        "com",
        "bank",
        "localhost",
        "LocalHost",
        "xn--",
        "xn--nxasmq6b",
        "0x",
        "0X7f",
        "0xg",
        "1",
        "127",
        "0",
        "255",
        "4294967295",
        "4294967296",
        "00",
        "09",
        "-",
        ".",
        "..",
        ":",
        ":443",
        ":0",
        ":65535",
        ":65536",
        ":08080",
        ":x",
        "/",
        "/cb",
        "?",
        "?q=1",
        "#",
        "#f",
        "@",
        "u:p@",
        "[",
        "]",
        "[::1]",
        "%",
        "%2e",
        "%41",
        "_",
        "~",
        "!",
        "$",
        "&",
        "'",
        "(",
        ")",
        "*",
        "+",
        ",",
        ";",
        "=",
        "\\",
        " ",
        "\t",
        "é",
        "Ω",
        "1.2.3.4",
        "0x7f.1",
        "a-",
        "-a",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    ];

    fn random_uri(rng: &mut StdRng) -> String {
        let mut s = String::new();
        if rng.gen_bool(0.8) {
            s.push_str(["https://", "HTTPS://", "https://www."][rng.gen_range(0..3)]);
        }
        for _ in 0..rng.gen_range(1..8) {
            s.push_str(PIECES[rng.gen_range(0..PIECES.len())]);
        }
        s
    }

    #[test]
    fn the_plain_name_fast_path_agrees_with_the_whatwg_parser() {
        let mut rng = StdRng::seed_from_u64(0x5eed);
        let mut fast = 0;
        let fixed = [
            "https://tpp.example.com/cb",
            "https://TPP.Example.COM:8443/cb?x=1",
            "https://a.1/cb",
            "https://a.1./cb",
            "https://1.a/cb",
            "https://0x/cb",
            "https://0xg/cb",
            "https://localhost./cb",
            "https://x.localhost/cb",
            "https://-a-.b-/cb",
            "https://a.com:/cb",
            "https://a.com:65536/cb",
            "https://a..com/cb",
            "https://xn--nxasmq6b.com/cb",
            "https://127.0.0.1/cb",
            "https://2130706433/cb",
        ];
        let mut cases: Vec<String> = fixed.iter().map(|s| s.to_string()).collect();
        cases.extend((0..50_000).map(|_| random_uri(&mut rng)));
        for uri in &cases {
            assert_eq!(
                check_https_uri("redirect URI", uri, 256),
                reference("redirect URI", uri, 256),
                "{uri:?}"
            );
            if let Some(h) = plain_https_host(uri) {
                fast += 1;
                let parsed = Url::parse(uri).unwrap_or_else(|e| panic!("{uri:?}: {e}"));
                assert_eq!(parsed.host_str(), Some(h.as_str()), "{uri:?}");
                assert!(matches!(parsed.host(), Some(Host::Domain(_))), "{uri:?}");
            }
        }
        // The generator reaches the fast path often, and the parser's other cases too.
        assert!(fast > 2_000 && fast < cases.len() / 2, "{fast}");
    }
}
