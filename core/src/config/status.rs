//! `rules.participant_status`: the status documents a registration is checked against — the
//! `au-cdr` preset of the CDR Register's two status endpoints (`register`), and any number of
//! documents described field by field (`sources`).

use serde_json::{Map, Value};

use super::checks::{bounded, non_empty_name, Bounds, ConfigError};
use crate::keys::jwks_source;
use crate::profile::Profile;
use crate::status::{StatusSource, Unknown};

/// Default refresh period of a status document, seconds.
pub const DEFAULT_REFRESH: u64 = 300;
/// Default maximum staleness (how long past its refresh the last good document may serve while
/// fetches fail), seconds.
pub const DEFAULT_MAX_STALENESS: u64 = 3_600;
/// Default largest status document, bytes.
pub const DEFAULT_MAX_BYTES: usize = 1024 * 1024;
/// `refresh_seconds`, seconds.
pub(super) const REFRESH: Bounds<u64> = Bounds {
    min: 1,
    max: 86_400,
};
/// `max_staleness_seconds`, seconds.
pub(super) const STALENESS: Bounds<u64> = Bounds {
    min: 0,
    max: 7 * 86_400,
};
/// `max_bytes`, bytes.
pub(super) const DOCUMENT_BYTES: Bounds<usize> = Bounds {
    min: 1024,
    max: 16 * 1024 * 1024,
};
pub(super) const MAX_SOURCES: usize = 8;
pub(super) const MAX_HEADERS: usize = 8;
const MAX_HEADER_VALUE: usize = 256;

/// The CDR Register's status endpoints as the `au-cdr` preset fetches them: (what, path under
/// the base URL, `x-v`, id member, SSA claim). Current versions in the Consumer Data Standards'
/// CDR Register API: Get Software Products Statuses v3 and Get Data Recipients Statuses v3, both
/// `{"data": [{"<id>": "…", "status": "ACTIVE"}], "links": …, "meta": …}`.
pub const CDR_REGISTER_DOCUMENTS: [(&str, &str, &str, &str, &str); 2] = [
    (
        "software product",
        "/data-recipients/brands/software-products/status",
        "3",
        "softwareProductId",
        "software_id",
    ),
    (
        "data recipient",
        "/data-recipients/status",
        "3",
        "legalEntityId",
        "legal_entity_id",
    ),
];

/// The `au-cdr` preset: `rules.participant_status.register` given, with at least `base_url` and
/// `upstream`; the other profiles have no preset.
pub(super) fn resolve(
    profile: Profile,
    raw: Option<Value>,
) -> Result<Vec<StatusSource>, ConfigError> {
    const F: &str = "rules.participant_status";
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    let o = Obj::new(F, &raw, STATUS_FIELDS)?;
    if o.bool("enabled")? == Some(false) {
        return Ok(Vec::new());
    }
    let register = match o.get("register") {
        None => None,
        Some(v) => Some(RawCdrRegister::read(&format!("{F}.register"), v)?),
    };
    let mut sources = Vec::new();
    for (i, v) in o.list("sources")?.iter().enumerate() {
        sources.push(RawStatusSource::read(&format!("{F}.sources[{i}]"), v)?);
    }
    let mut out = Vec::new();
    match (register, profile) {
        (Some(register), Profile::AuCdr) => out.extend(cdr_register(register)?),
        (Some(_), other) => {
            return Err(ConfigError::new(
                format!("{F}.register"),
                format!(
                    "presets the CDR Register's documents and exists only in the au-cdr profile (this one is {}): describe the document in `{F}.sources`",
                    other.as_str()
                ),
            ))
        }
        (None, _) => {}
    }
    if sources.len() > MAX_SOURCES {
        return Err(ConfigError::new(
            format!("{F}.sources"),
            format!("at most {MAX_SOURCES} status sources"),
        ));
    }
    for (i, s) in sources.into_iter().enumerate() {
        out.push(source(&format!("{F}.sources[{i}]"), s)?);
    }
    if out.is_empty() {
        let what = match profile {
            Profile::AuCdr => format!(
                "is on without a document: give `{F}.register` (`base_url`, e.g. `https://api.cdr.gov.au/cdr-register/v1/all`, and `upstream`, the cluster that reaches the CDR Register) or `{F}.sources`, or set `enabled: false`"
            ),
            _ => format!(
                "is on without a document: give at least one entry in `{F}.sources`, or set `enabled: false`"
            ),
        };
        return Err(ConfigError::new(F, what));
    }
    for (i, s) in out.iter().enumerate() {
        if out.iter().take(i).any(|o| o.url == s.url) {
            return Err(ConfigError::new(
                F,
                format!("the document `{}` is configured twice", s.url),
            ));
        }
    }
    Ok(out)
}

/// The two CDR Register documents under `register.base_url`.
fn cdr_register(r: RawCdrRegister) -> Result<Vec<StatusSource>, ConfigError> {
    const F: &str = "rules.participant_status.register";
    let missing = |field: &str, what: &str| {
        ConfigError::new(
            format!("{F}.{field}"),
            format!("is required: the au-cdr preset needs {what} (the other fields have defaults)"),
        )
    };
    let base = r.base_url.ok_or_else(|| {
        missing(
            "base_url",
            "the CDR Register's API base with the industry, e.g. `https://api.cdr.gov.au/cdr-register/v1/all`",
        )
    })?;
    let upstream = r
        .upstream
        .ok_or_else(|| missing("upstream", "the cluster that reaches the CDR Register"))?;
    let base = base.trim_end_matches('/').to_string();
    if base.contains(['?', '#']) {
        return Err(ConfigError::new(
            format!("{F}.base_url"),
            "must be a URL without query or fragment (the status paths are appended to it)",
        ));
    }
    let mut out = Vec::new();
    for (name, path, xv, id_member, claim) in CDR_REGISTER_DOCUMENTS {
        let raw = RawStatusSource {
            name: name.to_string(),
            url: format!("{base}{path}"),
            upstream: upstream.clone(),
            authority: r.authority.clone(),
            headers: vec![("x-v".to_string(), xv.to_string())],
            refresh_seconds: r.refresh_seconds,
            max_staleness_seconds: r.max_staleness_seconds,
            max_bytes: r.max_bytes,
            array: "data".to_string(),
            id_member: id_member.to_string(),
            status_member: "status".to_string(),
            ssa_claim: claim.to_string(),
            allowed: vec!["ACTIVE".to_string()],
            unknown: r.unknown.clone(),
        };
        // Errors name the preset's own fields.
        out.push(source(F, raw).map_err(|e| {
            let field = match e.field.rsplit('.').next() {
                Some("url") => format!("{F}.base_url"),
                _ => e.field.clone(),
            };
            ConfigError::new(field, e.message)
        })?);
    }
    Ok(out)
}

/// One `sources[]` entry.
fn source(f: &str, s: RawStatusSource) -> Result<StatusSource, ConfigError> {
    let name = non_empty_name(&format!("{f}.name"), s.name.trim())?;
    let upstream = non_empty_name(&format!("{f}.upstream"), &s.upstream)?;
    let src =
        jwks_source(&s.url, &upstream).map_err(|m| ConfigError::new(format!("{f}.url"), m))?;
    let authority = match s.authority {
        None => src.authority.clone(),
        Some(a) => {
            let a = a.trim().to_ascii_lowercase();
            let ok = !a.is_empty()
                && a.len() <= 253
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
            if !ok {
                return Err(ConfigError::new(
                    format!("{f}.authority"),
                    "must be a host name, optionally with `:port`",
                ));
            }
            a
        }
    };
    let mut headers = Vec::new();
    let raw_headers = s.headers;
    if raw_headers.len() > MAX_HEADERS {
        return Err(ConfigError::new(
            format!("{f}.headers"),
            format!("at most {MAX_HEADERS} headers"),
        ));
    }
    for (name, value) in raw_headers {
        let field = format!("{f}.headers.{name}");
        let lower = name.to_ascii_lowercase();
        let token = !lower.is_empty()
            && lower
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        let reserved = matches!(
            lower.as_str(),
            "host"
                | "content-length"
                | "content-type"
                | "transfer-encoding"
                | "connection"
                | "te"
                | "upgrade"
                | "user-agent"
                | "accept"
                | "authorization"
                | "proxy-authorization"
                | "cookie"
        );
        if !token || reserved {
            return Err(ConfigError::new(
                field,
                "must be a header name (letters, digits, `-`, `_`) other than a pseudo, hop-by-hop, host, content, accept, user-agent or credential header (no secrets in the plugin configuration)",
            ));
        }
        if value.len() > MAX_HEADER_VALUE || !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(ConfigError::new(
                field,
                format!("the value must be printable ASCII of at most {MAX_HEADER_VALUE} bytes"),
            ));
        }
        if headers.iter().any(|(h, _)| *h == lower) {
            return Err(ConfigError::new(field, "is listed twice"));
        }
        headers.push((lower, value));
    }
    let refresh = bounded(
        &format!("{f}.refresh_seconds"),
        s.refresh_seconds,
        DEFAULT_REFRESH,
        REFRESH,
    )?;
    let max_staleness = bounded(
        &format!("{f}.max_staleness_seconds"),
        s.max_staleness_seconds,
        DEFAULT_MAX_STALENESS,
        STALENESS,
    )?;
    let max_bytes = bounded(
        &format!("{f}.max_bytes"),
        s.max_bytes,
        DEFAULT_MAX_BYTES,
        DOCUMENT_BYTES,
    )?;
    let array: Vec<String> = match s.array.trim() {
        "" => Vec::new(),
        path => path.split('.').map(str::to_string).collect(),
    };
    if array.iter().any(|m| m.is_empty()) {
        return Err(ConfigError::new(
            format!("{f}.array"),
            "must be member names joined by `.` (empty: the document itself is the array), without empty names",
        ));
    }
    let id_member = non_empty_name(&format!("{f}.id_member"), &s.id_member)?;
    let status_member = non_empty_name(&format!("{f}.status_member"), &s.status_member)?;
    let ssa_claim = non_empty_name(&format!("{f}.ssa_claim"), &s.ssa_claim)?;
    if s.allowed.is_empty() || s.allowed.iter().any(|a| a.trim().is_empty()) {
        return Err(ConfigError::new(
            format!("{f}.allowed"),
            "must list at least one status that allows registration, none of them empty",
        ));
    }
    let unknown = match s.unknown.as_deref() {
        None | Some("refuse") => Unknown::Refuse,
        Some("allow") => Unknown::Allow,
        Some(other) => {
            return Err(ConfigError::new(
                format!("{f}.unknown"),
                format!("unknown value `{other}` (refuse, allow)"),
            ))
        }
    };
    let cache_key = StatusSource::key_for(&src.url, &upstream, &authority, &src.path, &headers);
    Ok(StatusSource {
        name,
        cache_key,
        url: src.url,
        upstream,
        authority,
        path: src.path,
        headers,
        refresh,
        max_staleness,
        max_bytes,
        array,
        id_member,
        status_member,
        ssa_claim,
        allowed: s.allowed,
        unknown,
    })
}

// The members each object may have (any other is refused). The schema describes the same objects
// (config/schema.rs `ParticipantStatus`); its tests hold the two to the same members.

/// `rules.participant_status`.
pub(super) const STATUS_FIELDS: &[&str] = &["enabled", "register", "sources"];
/// `rules.participant_status.register`.
pub(super) const REGISTER_FIELDS: &[&str] = &[
    "base_url",
    "upstream",
    "authority",
    "refresh_seconds",
    "max_staleness_seconds",
    "max_bytes",
    "unknown",
];
/// `rules.participant_status.sources[]`.
pub(super) const SOURCE_FIELDS: &[&str] = &[
    "name",
    "url",
    "upstream",
    "authority",
    "headers",
    "refresh_seconds",
    "max_staleness_seconds",
    "max_bytes",
    "array",
    "id_member",
    "status_member",
    "ssa_claim",
    "allowed",
    "unknown",
];

/// `register` as written.
#[derive(Default)]
struct RawCdrRegister {
    base_url: Option<String>,
    upstream: Option<String>,
    authority: Option<String>,
    refresh_seconds: Option<u64>,
    max_staleness_seconds: Option<u64>,
    max_bytes: Option<usize>,
    unknown: Option<String>,
}

impl RawCdrRegister {
    fn read(f: &str, v: &Value) -> Result<Self, ConfigError> {
        let o = Obj::new(f, v, REGISTER_FIELDS)?;
        Ok(RawCdrRegister {
            base_url: o.string("base_url")?,
            upstream: o.string("upstream")?,
            authority: o.string("authority")?,
            refresh_seconds: o.u64("refresh_seconds")?,
            max_staleness_seconds: o.u64("max_staleness_seconds")?,
            max_bytes: o.usize("max_bytes")?,
            unknown: o.string("unknown")?,
        })
    }
}

/// A `sources[]` entry as written.
struct RawStatusSource {
    name: String,
    url: String,
    upstream: String,
    authority: Option<String>,
    headers: Vec<(String, String)>,
    refresh_seconds: Option<u64>,
    max_staleness_seconds: Option<u64>,
    max_bytes: Option<usize>,
    array: String,
    id_member: String,
    status_member: String,
    ssa_claim: String,
    allowed: Vec<String>,
    unknown: Option<String>,
}

impl RawStatusSource {
    fn read(f: &str, v: &Value) -> Result<Self, ConfigError> {
        let o = Obj::new(f, v, SOURCE_FIELDS)?;
        let mut headers = Vec::new();
        match o.get("headers") {
            None => {}
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    let Value::String(v) = v else {
                        return Err(o.wrong(&format!("headers.{k}"), "a string"));
                    };
                    headers.push((k.clone(), v.clone()));
                }
            }
            Some(_) => return Err(o.wrong("headers", "an object")),
        }
        let mut allowed = Vec::new();
        if o.get("allowed").is_none() {
            return Err(o.missing("allowed"));
        }
        for (i, v) in o.list("allowed")?.iter().enumerate() {
            let Value::String(v) = v else {
                return Err(o.wrong(&format!("allowed[{i}]"), "a string"));
            };
            allowed.push(v.clone());
        }
        Ok(RawStatusSource {
            name: o.required("name")?,
            url: o.required("url")?,
            upstream: o.required("upstream")?,
            authority: o.string("authority")?,
            headers,
            refresh_seconds: o.u64("refresh_seconds")?,
            max_staleness_seconds: o.u64("max_staleness_seconds")?,
            max_bytes: o.usize("max_bytes")?,
            array: o.required("array")?,
            id_member: o.required("id_member")?,
            status_member: o.required("status_member")?,
            ssa_claim: o.required("ssa_claim")?,
            allowed,
            unknown: o.string("unknown")?,
        })
    }
}

/// A JSON object read by hand, with unknown members refused as the derived readers do.
struct Obj<'a> {
    field: &'a str,
    map: &'a Map<String, Value>,
}

impl<'a> Obj<'a> {
    fn new(field: &'a str, v: &'a Value, known: &[&str]) -> Result<Obj<'a>, ConfigError> {
        let Value::Object(map) = v else {
            return Err(ConfigError::new(field, "must be an object"));
        };
        if let Some(k) = map.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(ConfigError::new(
                field,
                format!(
                    "unknown field `{k}`, expected one of `{}`",
                    known.join("`, `")
                ),
            ));
        }
        Ok(Obj { field, map })
    }

    fn get(&self, name: &str) -> Option<&'a Value> {
        self.map.get(name)
    }

    fn missing(&self, name: &str) -> ConfigError {
        ConfigError::new(self.field, format!("missing field `{name}`"))
    }

    fn wrong(&self, name: &str, what: &str) -> ConfigError {
        ConfigError::new(format!("{}.{name}", self.field), format!("must be {what}"))
    }

    /// An array member (empty when absent).
    fn list(&self, name: &str) -> Result<&'a [Value], ConfigError> {
        match self.get(name) {
            None => Ok(&[]),
            Some(Value::Array(list)) => Ok(list),
            Some(_) => Err(self.wrong(name, "an array")),
        }
    }

    fn string(&self, name: &str) -> Result<Option<String>, ConfigError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.wrong(name, "a string")),
        }
    }

    fn required(&self, name: &str) -> Result<String, ConfigError> {
        self.string(name)?.ok_or_else(|| self.missing(name))
    }

    fn bool(&self, name: &str) -> Result<Option<bool>, ConfigError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.wrong(name, "true or false")),
        }
    }

    fn u64(&self, name: &str) -> Result<Option<u64>, ConfigError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.wrong(name, "a non-negative integer")),
        }
    }

    fn usize(&self, name: &str) -> Result<Option<usize>, ConfigError> {
        self.u64(name)?
            .map(|n| usize::try_from(n).map_err(|_| self.wrong(name, "smaller")))
            .transpose()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests;
