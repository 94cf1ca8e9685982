//! Where key documents come from: a JWKS URL checked once (https, a host written plainly, no user
//! information or fragment) and the host upstream it is fetched through; and the software JWKS a
//! verified SSA names, fetched only when its host is on the configuration's allow-list.

use std::sync::Arc;

use url::Url;

use crate::jose::JwkSet;

/// Where a JWKS document is fetched from: its URL and the host upstream (Envoy cluster) to use;
/// or, for a document pinned in the configuration ([`pinned_source`]), the parsed keys themselves.
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
    /// The keys of a document pinned in the configuration (`directories[].jwks[].inline`): never
    /// fetched, never refreshed, always there.
    pub pinned: Option<Pinned>,
}

/// A key set pinned in the configuration. Two are equal when their documents are.
#[derive(Debug, Clone)]
pub struct Pinned(pub Arc<JwkSet>);

impl PartialEq for Pinned {
    fn eq(&self, other: &Self) -> bool {
        self.0.fingerprint == other.0.fingerprint
    }
}

impl Eq for Pinned {}

/// A source for a key set pinned in the configuration: `name` (where it is configured, e.g.
/// `directories[0].jwks[1]`) stands in for the URL in logs and as the key of the request's
/// documents (`inline:` + name, which no https URL can equal); nothing is ever fetched for it.
pub fn pinned_source(name: &str, set: JwkSet) -> JwksSource {
    JwksSource {
        url: format!("inline:{name}"),
        upstream: String::new(),
        host: String::new(),
        authority: format!("inline:{name}"),
        port: 0,
        path: String::new(),
        pinned: Some(Pinned(Arc::new(set))),
    }
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
        pinned: None,
    })
}

/// Why the software JWKS a verified SSA names is not fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SoftwareSourceError {
    /// The URL is not one [`jwks_source`] accepts (why, as it says).
    Url(String),
    /// The URL's host (and port) is on no allow-list entry: its `:authority`.
    NotAllowed(String),
}

/// The software JWKS named by a *verified* SSA: its URL checked as any JWKS URL, then its host
/// and port looked up in the allow-list (`upstream_for`: the upstream to fetch it through, `None`
/// when the host is not allowed). Never called for an SSA that did not verify.
pub fn software_source<'a>(
    url: &str,
    upstream_for: impl FnOnce(&str, u16) -> Option<&'a str>,
) -> Result<JwksSource, SoftwareSourceError> {
    let mut src = jwks_source(url, "").map_err(SoftwareSourceError::Url)?;
    match upstream_for(&src.host, src.port) {
        Some(upstream) => {
            src.upstream = upstream.to_string();
            Ok(src)
        }
        None => Err(SoftwareSourceError::NotAllowed(src.authority)),
    }
}

#[cfg(test)]
#[allow(clippy::type_complexity)]
mod tests {
    use super::*;

    #[test]
    fn software_source_checks_the_url_then_the_allow_list() {
        // The allow-list of this table: `tpp.example` on 443 and 8443, through `sw`.
        let allowed = |host: &str, port: u16| {
            (host == "tpp.example" && (port == 443 || port == 8443)).then_some("sw")
        };
        let cases: &[(&str, Result<(&str, &str), SoftwareSourceError>)] = &[
            ("https://tpp.example/jwks", Ok(("tpp.example", "/jwks"))),
            (
                "https://TPP.example:8443/a/jwks?x=1",
                Ok(("tpp.example:8443", "/a/jwks?x=1")),
            ),
            (
                "https://tpp.example:9443/jwks",
                Err(SoftwareSourceError::NotAllowed("tpp.example:9443".into())),
            ),
            (
                "https://other.example/jwks",
                Err(SoftwareSourceError::NotAllowed("other.example".into())),
            ),
            (
                "http://tpp.example/jwks",
                Err(SoftwareSourceError::Url("must use https".into())),
            ),
        ];
        for (url, want) in cases {
            let got = software_source(url, allowed);
            match (got, want) {
                (Ok(src), Ok((authority, path))) => {
                    assert_eq!(
                        (src.authority.as_str(), src.path.as_str()),
                        (*authority, *path)
                    );
                    assert_eq!(src.upstream, "sw");
                    assert_eq!(src.url, *url);
                }
                (got, want) => assert_eq!(got.err(), want.clone().err(), "{url}"),
            }
        }
    }
}
