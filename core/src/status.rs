//! Live participant status (rule `participant_status`): an SSA is a snapshot, so a registration is
//! also checked against the current status a directory publishes — the CDR Register's software
//! product and data recipient statuses, a participants list, a directory export.
//!
//! * [`StatusSource`]: one configured document (where it is fetched, how often, how stale it may
//!   get, how an SSA claim finds its entry, which statuses allow a registration);
//! * [`parse`]: a fetched document read into an id → status table, bounded in size, nesting and
//!   entries; anything malformed is an error (the cache then keeps the last good document);
//! * [`verdict`]: the check of one verified SSA against one source's document (or the reason there
//!   is none).
//!
//! The documents are shared by every worker through the same cache as the JWKS documents
//! ([`crate::keys::Cache`], one per source with its own policy, under the `dcr_guard.status.`
//! prefix): single-flight fetch leases, failure records, background refresh, stale-if-error
//! bounded by the source's maximum staleness. No host calls here.

use std::collections::HashMap;
use std::rc::Rc;

use crate::claims::Claims;
use crate::error::{clip, DcrError, RuleId};
use crate::keys::CachePolicy;

mod read;

/// Deepest nesting of arrays and objects a status document may have.
pub const MAX_DEPTH: usize = 32;
/// Most entries a status document may list.
pub const MAX_ENTRIES: usize = 200_000;
/// Longest id or status kept from a document, in bytes (longer entries are skipped).
pub const MAX_VALUE_BYTES: usize = 256;
/// The shared-data prefix of the status documents, their leases and failure records.
pub const KEY_PREFIX: &str = "dcr_guard.status.";

/// What happens when the document parses but does not list the SSA's participant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unknown {
    /// 503 `temporarily_unavailable` with `Retry-After` until a document lists it (default).
    Refuse,
    /// Let the registration through.
    Allow,
}

/// One configured status document (`participant_status.sources[]`, or an `au-cdr` preset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSource {
    /// What the entries are, for descriptions and logs: `software product`, `data recipient`.
    pub name: String,
    /// The document's URL.
    pub url: String,
    /// Its key in the shared cache: the URL and a digest of how it is fetched (upstream,
    /// authority, path, headers), so that two filter configurations sharing a VM share a document
    /// only when they would fetch the same bytes ([`StatusSource::key_for`]).
    pub cache_key: String,
    /// The host upstream (Envoy cluster) it is fetched through.
    pub upstream: String,
    /// `:authority` of the fetch.
    pub authority: String,
    /// `:path` of the fetch (path and query).
    pub path: String,
    /// Extra request headers (lower-case names), e.g. the CDR Register's `x-v`.
    pub headers: Vec<(String, String)>,
    /// How long a fetched document is current, seconds: it is refreshed in the background then.
    pub refresh: u64,
    /// How long past that the last good document may still be used while fetches fail, seconds.
    pub max_staleness: u64,
    /// Largest document accepted, bytes.
    pub max_bytes: usize,
    /// Members leading from the document's root to the array of entries (empty: the root is
    /// the array).
    pub array: Vec<String>,
    /// The member of an entry holding its id.
    pub id_member: String,
    /// The member of an entry holding its status.
    pub status_member: String,
    /// The verified SSA's claim whose value is the id looked up.
    pub ssa_claim: String,
    /// Statuses that allow a registration (compared ASCII case-insensitively).
    pub allowed: Vec<String>,
    /// Parses, but the id is not listed.
    pub unknown: Unknown,
}

impl StatusSource {
    /// The shared cache's policy for this document: its lifetime is the refresh period whatever
    /// the response's `Cache-Control`, refreshed in the background when it ends, served stale up
    /// to `max_staleness` past it while refreshes fail.
    pub fn cache_policy(&self, callout_timeout_ms: u64) -> CachePolicy {
        CachePolicy {
            default_ttl: self.refresh,
            min_ttl: self.refresh,
            max_ttl: self.refresh,
            // Only its use as the retry backoff matters here: a failed fetch is tried again
            // after min(this, 5) seconds.
            kid_refetch_cooldown: 5,
            stale_if_error: self.max_staleness,
            lease_ttl: callout_timeout_ms.div_ceil(1000).saturating_add(3),
            refresh_ahead: 0,
        }
    }

    /// The cache key of a document at `url` fetched through `upstream` with `authority`, `path`
    /// and `headers`: `{url}#{16 hex digits of a SHA-256 over them}`.
    pub fn key_for(
        url: &str,
        upstream: &str,
        authority: &str,
        path: &str,
        headers: &[(String, String)],
    ) -> String {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut part = |b: &[u8]| {
            ctx.update(&(b.len() as u64).to_be_bytes());
            ctx.update(b);
        };
        for p in [upstream, authority, path] {
            part(p.as_bytes());
        }
        for (name, value) in headers {
            part(name.as_bytes());
            part(value.as_bytes());
        }
        let digest = ctx.finish();
        let mut key = format!("{url}#");
        for b in digest.as_ref().iter().take(8) {
            key.push_str(&format!("{b:02x}"));
        }
        key
    }

    /// Whether `status` allows a registration.
    pub fn allows(&self, status: &str) -> bool {
        status != UNREADABLE && self.allowed.iter().any(|a| a.eq_ignore_ascii_case(status))
    }
}

/// The status of a listed participant whose status member is missing, not a string or too long:
/// never one that allows registration.
pub const UNREADABLE: &str = "(unreadable)";

/// A parsed status document: id (ASCII lower case) → status as published.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusDoc {
    entries: HashMap<String, String>,
}

impl StatusDoc {
    /// The status published for `id` (ids compare ASCII case-insensitively: the registers'
    /// ids are UUIDs, printed in either case).
    pub fn status(&self, id: &str) -> Option<&str> {
        self.entries
            .get(&id.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// How many participants the document lists.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Whether the JSON text nests arrays and objects deeper than `max` (strings are skipped, with
/// their escapes). Checked before parsing, so that a hostile document costs one linear scan.
fn too_deep(doc: &[u8], max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in doc {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Read a fetched document. Errors (the cache keeps the last good document, the reason is
/// logged and recorded): larger than the source's limit, nested deeper than [`MAX_DEPTH`], not
/// JSON, no array at the configured path, more than [`MAX_ENTRIES`] entries, or a non-empty
/// array none of whose entries is an object with a string id and a string status.
///
/// An empty array is a good document that lists no one (every lookup is then "unknown"). Entries
/// that are not objects, or whose id is not a string (or longer than [`MAX_VALUE_BYTES`]) are
/// skipped; an entry with a usable id whose status is not a string (or too long) lists that
/// participant with the status [`UNREADABLE`], which allows nothing. An id listed twice with different statuses keeps a status
/// that does not allow registration, if either is one (the stricter reading).
pub fn parse(doc: &[u8], src: &StatusSource) -> Result<StatusDoc, String> {
    if doc.len() > src.max_bytes {
        return Err(format!("document larger than {} bytes", src.max_bytes));
    }
    if too_deep(doc, MAX_DEPTH) {
        return Err(format!("document nested deeper than {MAX_DEPTH} levels"));
    }
    let (found, too_many) = read::read(
        doc,
        &src.array,
        &src.id_member,
        &src.status_member,
        MAX_ENTRIES,
    );
    let walked = |n: usize| src.array.get(..n).unwrap_or_default().join(".");
    let list = match found {
        Err(_) if too_many => return Err(format!("more than {MAX_ENTRIES} entries")),
        Err(e) => return Err(format!("not JSON ({e})")),
        Ok(read::Found::Missing(n)) => {
            return Err(format!(
                "no member `{}`",
                clip(&walked(n.saturating_add(1)), 64)
            ))
        }
        Ok(read::Found::NotArray) => {
            return Err(match src.array.is_empty() {
                true => "the document is not an array".to_string(),
                false => format!("`{}` is not an array", clip(&walked(src.array.len()), 64)),
            })
        }
        Ok(read::Found::List(list)) => list,
    };
    let mut entries: HashMap<String, String> = HashMap::with_capacity(list.len());
    let mut readable = false;
    for item in &list {
        let Some(id) = item.as_ref().and_then(|i| i.id.as_deref()) else {
            continue;
        };
        // A listed participant whose status cannot be read is not allowed (never "unknown",
        // which `unknown: allow` would let through).
        let status = match item.as_ref().and_then(|i| i.status.as_deref()) {
            Some(s) => {
                readable = true;
                s
            }
            None => UNREADABLE,
        };
        let id = id.to_ascii_lowercase();
        match entries.get(&id) {
            Some(existing) if !src.allows(existing) => {}
            _ => {
                entries.insert(id, status.to_string());
            }
        }
    }
    if !readable && !list.is_empty() {
        return Err(format!(
            "no entry has a string `{}` and a string `{}`",
            clip(&src.id_member, 64),
            clip(&src.status_member, 64)
        ));
    }
    Ok(StatusDoc { entries })
}

/// What a request has of one source's document.
#[derive(Debug, Clone)]
pub enum Got {
    /// The current (or last good, within the maximum staleness) document.
    Doc(Rc<StatusDoc>),
    /// None: never fetched, the fetches failed and nothing good is left, or the last good one is
    /// older than the maximum staleness (why, for the log).
    Unavailable(String),
}

/// A status (published by a directory, so not trusted to be tame) bounded and printable for a
/// description.
fn shown(status: &str) -> String {
    let printable: String = status
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    clip(&printable, 64)
}

/// The check of one verified SSA against one source: `Ok` when the SSA's participant is listed
/// with an allowed status (or is not listed and the source allows unknown participants).
///
/// * the SSA lacks the claim (or it is not a non-blank string): 400 `unapproved_software_statement`;
/// * no document ([`Got::Unavailable`]): 503 `temporarily_unavailable` with `Retry-After`;
/// * listed with a status not allowed: 400 `unapproved_software_statement`, "`name` status is
///   `STATUS`";
/// * not listed: 503 with `Retry-After` ([`Unknown::Refuse`]), or `Ok` ([`Unknown::Allow`]).
pub fn verdict(
    src: &StatusSource,
    got: &Got,
    ssa: &Claims,
    retry_after: u32,
) -> Result<(), DcrError> {
    let rule = RuleId::ParticipantStatus;
    let id = match ssa.get(src.ssa_claim.as_str()) {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => s.as_str(),
        _ => {
            return Err(DcrError::rule(
                rule,
                format!(
                    "SSA claim `{}` (a non-empty string) is needed to check the {} status",
                    clip(&src.ssa_claim, 64),
                    src.name
                ),
            ))
        }
    };
    let doc = match got {
        Got::Doc(doc) => doc,
        Got::Unavailable(_) => {
            return Err(DcrError::unavailable(
                rule,
                format!("the {} status cannot be checked now", src.name),
                retry_after,
            ))
        }
    };
    match doc.status(id) {
        Some(status) if src.allows(status) => Ok(()),
        Some(status) => Err(DcrError::rule(
            rule,
            format!("{} status is {}", src.name, shown(status)),
        )),
        None => match src.unknown {
            Unknown::Allow => Ok(()),
            Unknown::Refuse => Err(DcrError::unavailable(
                rule,
                format!(
                    "{} `{}` is not listed in the current status document",
                    src.name,
                    clip(id, 64)
                ),
                retry_after,
            )),
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::type_complexity)]
mod tests;
