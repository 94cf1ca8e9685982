//! The key documents the engine asks for ([`dcr_guard_core::pipeline::Step::Fetch`]): from a
//! local file (`--jwks URL=FILE`) or over HTTPS. Only URLs the engine hands out are ever fetched:
//! the configured directory keystores, and a software JWKS named by an SSA whose signature verified
//! and whose host is on the configuration's allow-list.

use dcr_guard_core::config::{Config, JwksSource};
use dcr_guard_core::pipeline::Fetched;
use std::time::Duration;

/// Where each document came from and what it was, for the output.
#[derive(Debug, Clone)]
pub struct Fetch {
    pub url: String,
    /// `file:PATH` or `https`.
    pub from: String,
    /// `keys`, `unavailable` or `unusable` (the engine's [`Fetched`]).
    pub result: &'static str,
    pub detail: Option<String>,
}

pub struct Keystores {
    files: Vec<(String, String, Vec<u8>)>,
    offline: bool,
    cacert: Option<Vec<u8>>,
    agent: Option<ureq::Agent>,
    /// Documents already obtained: a refetch for an unknown `kid` hands back the same (a filter
    /// that has just fetched a document does not fetch it again within its cooldown).
    got: Vec<(String, Fetched)>,
    pub log: Vec<Fetch>,
}

impl Keystores {
    /// `files`: (URL, path, bytes) from `--jwks URL=FILE`.
    pub fn new(
        files: Vec<(String, String, Vec<u8>)>,
        offline: bool,
        cacert: Option<Vec<u8>>,
    ) -> Keystores {
        Keystores {
            files,
            offline,
            cacert,
            agent: None,
            got: Vec::new(),
            log: Vec::new(),
        }
    }

    /// The document at `src.url`, interpreted as the filter interprets a callout's answer
    /// (the configuration's `limits.jwks_bytes` and `limits.jwks_keys`). `Err` when the URL has
    /// no file and fetching is off.
    pub fn get(&mut self, cfg: &Config, src: &JwksSource) -> Result<Fetched, String> {
        if let Some((_, f)) = self.got.iter().find(|(u, _)| *u == src.url) {
            return Ok(f.clone());
        }
        let (max_bytes, max_keys) = (cfg.limits.jwks_bytes, cfg.limits.jwks_keys);
        let (from, fetched) = match self.files.iter().find(|(u, _, _)| *u == src.url) {
            Some((_, path, bytes)) => (
                format!("file:{path}"),
                Fetched::from_response(Some(200), bytes, bytes.len(), max_bytes, max_keys),
            ),
            None if self.offline => {
                return Err(format!(
                    "the validation needs `{}` and --offline is set: give it with --jwks {}=FILE",
                    src.url, src.url
                ))
            }
            None => ("https".to_string(), self.https(cfg, &src.url)?),
        };
        let (result, detail) = match &fetched {
            Fetched::Keys(set) => {
                let n = set.keys.len();
                (
                    "keys",
                    Some(format!("{n} key{}", if n == 1 { "" } else { "s" })),
                )
            }
            Fetched::Unavailable(m) => ("unavailable", Some(m.clone())),
            Fetched::Unusable(m) => ("unusable", Some(m.clone())),
        };
        self.log.push(Fetch {
            url: src.url.clone(),
            from,
            result,
            detail,
        });
        self.got.push((src.url.clone(), fetched.clone()));
        Ok(fetched)
    }

    fn agent(&mut self, cfg: &Config) -> Result<ureq::Agent, String> {
        if let Some(a) = &self.agent {
            return Ok(a.clone());
        }
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(pem) = &self.cacert {
            let mut certs = Vec::new();
            for item in ureq::tls::parse_pem(pem) {
                match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
                    Ok(_) => {}
                    Err(e) => return Err(format!("--cacert: {e}")),
                }
            }
            if certs.is_empty() {
                return Err("--cacert: no PEM certificate in the file".into());
            }
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .https_only(true)
            .http_status_as_error(false)
            // The filter's callout does not follow redirects: a 3xx is an unusable answer.
            .max_redirects(0)
            .timeout_global(Some(Duration::from_millis(cfg.limits.callout_timeout_ms)))
            .user_agent("dcr-guard")
            .tls_config(tls.build())
            .build()
            .into();
        self.agent = Some(agent.clone());
        Ok(agent)
    }

    fn https(&mut self, cfg: &Config, url: &str) -> Result<Fetched, String> {
        let agent = self.agent(cfg)?;
        let (max_bytes, max_keys) = (cfg.limits.jwks_bytes, cfg.limits.jwks_keys);
        let mut response = match agent.get(url).header("accept", "application/json").call() {
            Ok(r) => r,
            Err(e) => return Ok(Fetched::Unavailable(format!("fetch failed: {e}"))),
        };
        let status = response.status().as_u16();
        let read = response
            .body_mut()
            .with_config()
            .limit(u64::try_from(max_bytes).unwrap_or(u64::MAX))
            .read_to_vec();
        Ok(match read {
            Ok(body) => {
                Fetched::from_response(Some(status), &body, body.len(), max_bytes, max_keys)
            }
            // Too large: the filter's own words for it.
            Err(ureq::Error::BodyExceedsLimit(_)) => Fetched::from_response(
                Some(status),
                &[],
                max_bytes.saturating_add(1),
                max_bytes,
                max_keys,
            ),
            Err(e) => Fetched::Unavailable(format!("reading the answer failed: {e}")),
        })
    }
}
