//! `redirect_uri_format`, `redirect_uri_subset`, `uri_hostname`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

use super::{Ctx, RedirectUris};
use crate::claims::{opt_str, opt_str_array};
use crate::error::clip;

/// Every redirect URI of the request and of the SSA: absolute `https` with a host that is not
/// `localhost`, `*.localhost`, a loopback or unspecified address; no fragment; not too long.
pub fn format(ctx: &Ctx<'_>, p: &RedirectUris) -> Result<(), String> {
    let request = opt_str_array(ctx.request, "redirect_uris")?.unwrap_or_default();
    let ssa = opt_str_array(ctx.ssa, &p.ssa_claim)
        .map_err(|m| format!("SSA {m}"))?
        .unwrap_or_default();
    for uri in request.iter().chain(ssa.iter()) {
        check_https_uri("redirect URI", uri, p.max_length)?;
    }
    Ok(())
}

/// Characters RFC 3986 allows in a URI (unreserved, reserved, `%`).
fn uri_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~:/?#[]@!$&'()*+,;=%".contains(c)
}

/// An absolute `https` URI with a host that is not local: the URI must be RFC 3986 as written
/// (no whitespace, backslashes or non-ASCII that a lenient parser would repair, and that other
/// parsers would read differently), `https://` followed by a non-empty authority without user
/// information, no fragment, at most `max_length` characters, and its host not `localhost`,
/// `*.localhost`, a loopback or an unspecified address.
pub fn check_https_uri(what: &str, uri: &str, max_length: usize) -> Result<(), String> {
    let shown = clip(uri, 80);
    if uri.chars().count() > max_length {
        return Err(format!(
            "{what} longer than {max_length} characters: `{shown}`"
        ));
    }
    if !uri.chars().all(uri_char) {
        return Err(format!(
            "{what} is not a valid URI (RFC 3986): `{}`",
            shown.escape_default()
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
    let url =
        Url::parse(uri).map_err(|e| format!("{what} is not an absolute URI ({e}): `{shown}`"))?;
    match url.host() {
        None => Err(format!("{what} has no host: `{shown}`")),
        Some(Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            if d.is_empty() || d == "localhost" || d.ends_with(".localhost") {
                Err(format!("{what} must not point at localhost: `{shown}`"))
            } else {
                Ok(())
            }
        }
        Some(Host::Ipv4(ip)) => local_ip(what, IpAddr::V4(ip), &shown),
        Some(Host::Ipv6(ip)) => local_ip(what, IpAddr::V6(ip), &shown),
    }
}

fn local_ip(what: &str, ip: IpAddr, shown: &str) -> Result<(), String> {
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
pub fn subset(ctx: &Ctx<'_>, p: &RedirectUris) -> Result<(), String> {
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
pub fn hostname(ctx: &Ctx<'_>, p: &RedirectUris) -> Result<(), String> {
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
        let host = Url::parse(uri)
            .ok()
            .and_then(|u| {
                u.host_str()
                    .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
            })
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
