//! Where a key document is fetched from (a JWKS URL and its upstream).

use url::Url;

/// Where a JWKS document is fetched from: its URL and the host upstream (Envoy cluster) to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksSource {
    /// The URL as configured or as found in a verified SSA (the cache key).
    pub url: String,
    pub upstream: String,
    /// The URL's host, lower case.
    pub host: String,
    /// `:authority` for the callout: host, plus `:port` when the URL names a non-default port.
    pub authority: String,
    /// The URL's port (443 unless it names another).
    pub port: u16,
    /// `:path` for the callout: path and query.
    pub path: String,
}

/// Validate a JWKS URL: absolute https URL with a host, no user info, no fragment.
pub fn jwks_source(url: &str, upstream: &str) -> Result<JwksSource, String> {
    let parsed = Url::parse(url).map_err(|e| format!("not an absolute URL ({e})"))?;
    if parsed.scheme() != "https" {
        return Err("must use https".to_string());
    }
    let host = match parsed.host_str() {
        Some(h) if !h.is_empty() => h.to_ascii_lowercase(),
        _ => return Err("has no host".to_string()),
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not carry user information".to_string());
    }
    if parsed.fragment().is_some() {
        return Err("must not carry a fragment".to_string());
    }
    // The host fetched must be the host written. The URL parser also reads `https:/h`, `https:h`,
    // `https:\\h`, percent-encoded and IPv4-shorthand hosts and drops tabs and newlines, so the
    // text could name one host while another is fetched: the authority must be written plainly.
    let written = url
        .get(..8)
        .filter(|scheme| scheme.eq_ignore_ascii_case("https://"))
        .and_then(|_| url.get(8..))
        .ok_or("must start with `https://`")?;
    let written = written
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let with_port = parsed
        .port_or_known_default()
        .map(|p| format!("{host}:{p}"));
    if written != host && Some(&written) != with_port.as_ref() {
        return Err(format!(
            "must name its host plainly (`https://host[:port]/…`): it would be fetched from `{host}`"
        ));
    }
    let authority = match parsed.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.clone(),
    };
    // https is the only scheme: its default port when the URL names none.
    let port = parsed.port_or_known_default().unwrap_or(443);
    let mut path = parsed.path().to_string();
    if let Some(q) = parsed.query() {
        path.push('?');
        path.push_str(q);
    }
    Ok(JwksSource {
        url: url.to_string(),
        upstream: upstream.to_string(),
        host,
        authority,
        port,
        path,
    })
}
