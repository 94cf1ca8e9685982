//! The document as written: every field optional where a default exists, unknown fields refused.
//! Nothing here is checked beyond its JSON type; the other modules resolve it.
//!
//! The configuration's JSON Schema (`dcr-guard schema`, envoy/kong/dcr-guard.schema.json) is derived
//! from these types with the `schema` feature (never in the filter build): the doc comments are the
//! descriptions, the `schemars` attributes add what serde cannot say (bounds, enums, patterns,
//! defaults), read from the constants the resolvers enforce wherever the code has one.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::checks::Bounds;
#[cfg(feature = "schema")]
use super::schema::{
    Algorithms, DirectoryJwksInline, HttpsUrl, MetadataAlgorithms, Names, NonBlank, NonEmptyNames,
    ParticipantStatus,
};

// Bounds of the numbers: what the resolvers enforce (`checks::bounded`) and what the schema states.

/// `retry_after_seconds`.
pub(super) const RETRY_AFTER: Bounds<u32> = Bounds { min: 1, max: 3600 };
/// `limits.body_bytes`.
pub(super) const BODY_BYTES: Bounds<usize> = Bounds {
    min: 1024,
    max: super::MAX_BODY_BYTES,
};
/// `limits.jwks_bytes`.
pub(super) const JWKS_BYTES: Bounds<usize> = Bounds {
    min: 1024,
    max: super::MAX_JWKS_BYTES,
};
/// `limits.jwks_keys`.
pub(super) const JWKS_KEYS: Bounds<usize> = Bounds {
    min: 1,
    max: super::MAX_JWKS_KEYS,
};
/// `limits.callout_timeout_ms`.
pub(super) const CALLOUT_TIMEOUT_MS: Bounds<u64> = Bounds {
    min: 10,
    max: super::MAX_CALLOUT_TIMEOUT_MS,
};
/// `rules.redirect_uri_format.max_length`.
pub(super) const REDIRECT_URI_LENGTH: Bounds<usize> = Bounds { min: 16, max: 4096 };
/// `replay.buckets`.
pub(super) const BUCKETS: Bounds<u32> = Bounds { min: 1, max: 4096 };
/// `replay.entries_per_bucket`.
pub(super) const ENTRIES_PER_BUCKET: Bounds<u32> = Bounds { min: 1, max: 4096 };
/// `replay.issuer_share_percent`.
pub(super) const ISSUER_SHARE_PERCENT: Bounds<u32> = Bounds { min: 1, max: 100 };
/// `replay.etcd.timeout_ms`.
pub(super) const ETCD_TIMEOUT_MS: Bounds<u64> = Bounds {
    min: 10,
    max: 10_000,
};
/// The length of `replay.etcd.key_prefix`.
pub(super) const ETCD_KEY_PREFIX_LEN: Bounds<usize> = Bounds { min: 1, max: 128 };
/// `jwks_cache.min_ttl_seconds`.
pub(super) const MIN_TTL: Bounds<u64> = Bounds {
    min: 1,
    max: 86_400,
};
/// `jwks_cache.max_ttl_seconds`; `default_ttl_seconds` is between the two configured ones.
pub(super) const MAX_TTL: Bounds<u64> = Bounds {
    min: 1,
    max: 7 * 86_400,
};
/// `jwks_cache.kid_refetch_cooldown_seconds`.
pub(super) const KID_REFETCH_COOLDOWN: Bounds<u64> = Bounds { min: 1, max: 3600 };
/// `jwks_cache.stale_if_error_seconds`.
pub(super) const STALE_IF_ERROR: Bounds<u64> = Bounds {
    min: 0,
    max: 7 * 86_400,
};
/// `jwks_cache.refresh_ahead_seconds`.
pub(super) const REFRESH_AHEAD: Bounds<u64> = Bounds { min: 0, max: 3600 };

/// The JSON document passed to the dcr-guard proxy-wasm filter (Envoy `configuration`, Istio `pluginConfig`, Kong filter `config`). Derived from core/src/config/raw.rs (`dcr-guard schema`): every object refuses unknown fields (`deny_unknown_fields`), and the bounds are the ones the filter enforces. The filter also checks what a schema cannot express (a rule's parameters against its profile, `request_signature` needing `ssa_signature`, `forward: json` and `fact_headers` needing `hold_headers`, the introspection secret's environment variable, ...): the filter's own refusal is authoritative.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schema",
    schemars(title = "dcr-guard filter configuration", extend("required" = ["directories"]))
)]
pub(super) struct RawConfig {
    /// A set of defaults: claim names and rule parameters of the regime.
    #[cfg_attr(feature = "schema", schemars(extend(
        "enum" = crate::profile::Profile::ALL.map(|p| p.as_str()),
        "default" = crate::profile::Profile::UkObie.as_str(),
    )))]
    pub(super) profile: Option<String>,
    /// The registration path: absolute, without query, fragment, `%`, `;`, empty or dot segments, not `/`. A trailing `/` is ignored; matched case-insensitively.
    #[cfg_attr(feature = "schema", schemars(
        regex(pattern = "^/[^?#%;]*[^?#%;/][^?#%;]*$"),
        extend("default" = super::DEFAULT_PATH),
    ))]
    pub(super) path: Option<String>,
    /// Hold request headers until the verdict. Envoy: needs `allow_on_headers_stop_iteration: true` on the wasm filter (Envoy >= 1.35).
    #[cfg_attr(feature = "schema", schemars(extend("default" = true)))]
    pub(super) hold_headers: Option<bool>,
    /// Trusted SSA issuers and where their keys are.
    #[cfg_attr(feature = "schema", schemars(length(min = 1)))]
    pub(super) directories: Option<Vec<RawDirectory>>,
    /// Hosts a TPP's software JWKS may be fetched from; any other host is refused without a fetch.
    #[cfg_attr(feature = "schema", schemars(extend("default" = [])))]
    pub(super) software_jwks_hosts: Option<Vec<RawHostRule>>,
    pub(super) ssa_claims: Option<RawSsaClaims>,
    /// Allowed request JWT algorithms.
    #[cfg_attr(feature = "schema", schemars(
        with = "Option<Algorithms>",
        extend("default" = ["PS256", "ES256"]),
    ))]
    pub(super) request_algorithms: Option<Vec<String>>,
    /// Clock leeway for exp, nbf and a future iat.
    #[cfg_attr(feature = "schema", schemars(
        range(min = 0, max = super::MAX_LEEWAY),
        extend("default" = super::DEFAULT_LEEWAY),
    ))]
    pub(super) leeway_seconds: Option<u64>,
    /// Retry-After on 503 answers.
    #[cfg_attr(feature = "schema", schemars(
        range(min = RETRY_AFTER.min, max = RETRY_AFTER.max),
        extend("default" = super::DEFAULT_RETRY_AFTER),
    ))]
    pub(super) retry_after_seconds: Option<u32>,
    pub(super) limits: Option<RawLimits>,
    pub(super) rules: Option<RawRules>,
    /// Evaluate, log and count, but forward everything.
    #[cfg_attr(feature = "schema", schemars(extend("default" = false)))]
    pub(super) report_only: Option<bool>,
    /// `jwt`: the body as it came; `json`: an RFC 7591 JSON object (needs hold_headers).
    #[cfg_attr(feature = "schema", schemars(extend("enum" = ["jwt", "json"], "default" = "jwt")))]
    pub(super) forward: Option<String>,
    /// Verified SSA claims passed to the AS as request headers (needs hold_headers). Client-sent copies are removed.
    #[cfg_attr(feature = "schema", schemars(extend("default" = [])))]
    pub(super) fact_headers: Option<Vec<RawFactHeader>>,
    pub(super) replay: Option<RawReplay>,
    pub(super) jwks_cache: Option<RawJwksCache>,
    pub(super) client_certificate: Option<RawClientCertificate>,
    pub(super) stats: Option<RawStats>,
}

/// The filter's metric names.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "Stats"))]
pub(super) struct RawStats {
    /// Keeps this filter's metrics apart from another dcr-guard filter's in the same Envoy: every metric is named dcr_guard.instance.<instance>.… (with the kits' stats_tags, a dcr_guard_instance label). Absent: dcr_guard.…
    #[cfg_attr(feature = "schema", schemars(extend(
        "pattern" = format!("^[a-z0-9_]{{1,{}}}$", super::MAX_STATS_INSTANCE),
    )))]
    pub(super) instance: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "JwksCache"))]
pub(super) struct RawJwksCache {
    /// Between min_ttl_seconds and max_ttl_seconds.
    #[cfg_attr(feature = "schema", schemars(
        range(min = MIN_TTL.min, max = MAX_TTL.max),
        extend("default" = crate::keys::CachePolicy::default().default_ttl),
    ))]
    pub(super) default_ttl_seconds: Option<u64>,
    #[cfg_attr(feature = "schema", schemars(
        range(min = MIN_TTL.min, max = MIN_TTL.max),
        extend("default" = crate::keys::CachePolicy::default().min_ttl),
    ))]
    pub(super) min_ttl_seconds: Option<u64>,
    #[cfg_attr(feature = "schema", schemars(
        range(min = MAX_TTL.min, max = MAX_TTL.max),
        extend("default" = crate::keys::CachePolicy::default().max_ttl),
    ))]
    pub(super) max_ttl_seconds: Option<u64>,
    #[cfg_attr(feature = "schema", schemars(
        range(min = KID_REFETCH_COOLDOWN.min, max = KID_REFETCH_COOLDOWN.max),
        extend("default" = crate::keys::CachePolicy::default().kid_refetch_cooldown),
    ))]
    pub(super) kid_refetch_cooldown_seconds: Option<u64>,
    #[cfg_attr(feature = "schema", schemars(
        range(min = STALE_IF_ERROR.min, max = STALE_IF_ERROR.max),
        extend("default" = crate::keys::CachePolicy::default().stale_if_error),
    ))]
    pub(super) stale_if_error_seconds: Option<u64>,
    #[cfg_attr(feature = "schema", schemars(
        range(min = REFRESH_AHEAD.min, max = REFRESH_AHEAD.max),
        extend("default" = crate::keys::CachePolicy::default().refresh_ahead),
    ))]
    pub(super) refresh_ahead_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "FactHeader"))]
pub(super) struct RawFactHeader {
    #[cfg_attr(feature = "schema", schemars(with = "NonBlank"))]
    pub(super) claim: String,
    /// A header name (letters, digits, `-`, `_`), not host, content-length, content-type, authorization, transfer-encoding or connection; each once.
    #[cfg_attr(feature = "schema", schemars(
        regex(pattern = r"^\s*[A-Za-z0-9_-]+\s*$"),
        extend("not" = {"pattern": r"^\s*([Hh][Oo][Ss][Tt]|[Cc][Oo][Nn][Tt][Ee][Nn][Tt]-([Ll][Ee][Nn][Gg][Tt][Hh]|[Tt][Yy][Pp][Ee])|[Aa][Uu][Tt][Hh][Oo][Rr][Ii][Zz][Aa][Tt][Ii][Oo][Nn]|[Tt][Rr][Aa][Nn][Ss][Ff][Ee][Rr]-[Ee][Nn][Cc][Oo][Dd][Ii][Nn][Gg]|[Cc][Oo][Nn][Nn][Ee][Cc][Tt][Ii][Oo][Nn])\s*$"}),
    ))]
    pub(super) header: String,
}

/// certificate_binding: the client certificate belongs to the SSA's software. On by default in br-ofb only.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "CertBinding"))]
pub(super) struct RawCertBinding {
    pub(super) enabled: Option<bool>,
    pub(super) org: Option<RawOrgCheck>,
    pub(super) software: Option<RawSoftwareCheck>,
    #[cfg_attr(feature = "schema", schemars(extend("default" = false)))]
    pub(super) thumbprint: Option<bool>,
    #[cfg_attr(feature = "schema", schemars(extend("default" = true)))]
    pub(super) subject_dn: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "OrgCheck"))]
pub(super) struct RawOrgCheck {
    #[cfg_attr(feature = "schema", schemars(length(min = 1)))]
    pub(super) attribute: String,
    #[serde(default)]
    pub(super) prefix: String,
    #[cfg_attr(feature = "schema", schemars(length(min = 1)))]
    pub(super) ssa_claim: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "SoftwareCheck"))]
pub(super) struct RawSoftwareCheck {
    #[cfg_attr(feature = "schema", schemars(length(min = 1)))]
    pub(super) attribute: String,
    #[cfg_attr(feature = "schema", schemars(length(min = 1)))]
    pub(super) ssa_claim: String,
}

/// Where the TPP's client certificate comes from.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "ClientCertificate"))]
pub(super) struct RawClientCertificate {
    /// connection: the host's TLS connection; x-forwarded-client-cert: the XFCC header of a trusted proxy that terminates TLS (it must sanitise client-sent XFCC).
    #[cfg_attr(feature = "schema", schemars(extend(
        "enum" = ["connection", "x-forwarded-client-cert"],
        "default" = "connection",
    )))]
    pub(super) source: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "RequestJti"))]
pub(super) struct RawRequestJti {
    #[cfg_attr(feature = "schema", schemars(extend("default" = true)))]
    pub(super) enabled: Option<bool>,
    #[cfg_attr(feature = "schema", schemars(extend("enum" = ["any", "uuid4"], "default" = "any")))]
    pub(super) format: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "SsaJti"))]
pub(super) struct RawSsaJti {
    #[cfg_attr(feature = "schema", schemars(extend("default" = false)))]
    pub(super) enabled: Option<bool>,
    #[cfg_attr(feature = "schema", schemars(extend("default" = super::rules::DEFAULT_SSA_JTI_WINDOW)))]
    pub(super) window_seconds: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "Replay"))]
pub(super) struct RawReplay {
    #[cfg_attr(feature = "schema", schemars(
        range(min = BUCKETS.min, max = BUCKETS.max),
        extend("default" = crate::replay::ReplayConfig::default().buckets),
    ))]
    pub(super) buckets: Option<u32>,
    #[cfg_attr(feature = "schema", schemars(
        range(min = ENTRIES_PER_BUCKET.min, max = ENTRIES_PER_BUCKET.max),
        extend("default" = crate::replay::ReplayConfig::default().entries_per_bucket),
    ))]
    pub(super) entries_per_bucket: Option<u32>,
    /// Upper bound on any entry's life; refused below rules.issuance_time.max_age_seconds + 2 × leeway_seconds (max_age_seconds + 1 with no leeway).
    pub(super) max_retention_seconds: Option<u64>,
    /// Most of any one replay bucket a single request iss may hold, in percent of entries_per_bucket; beyond it that issuer gets 503. 100 switches the limit off.
    #[cfg_attr(feature = "schema", schemars(
        range(min = ISSUER_SHARE_PERCENT.min, max = ISSUER_SHARE_PERCENT.max),
        extend("default" = crate::replay::ReplayConfig::default().issuer_share_percent),
    ))]
    pub(super) issuer_share_percent: Option<u32>,
    /// `local`: this gateway's shared data (one Envoy, all its workers). `etcd`: the fleet's etcd cluster (every gateway), with shared data as the first tier.
    #[cfg_attr(feature = "schema", schemars(extend("enum" = ["local", "etcd"], "default" = "local")))]
    pub(super) store: Option<String>,
    pub(super) etcd: Option<RawEtcd>,
}

/// The fleet replay store (`replay.store: etcd`): etcd v3 reached over gRPC callouts through an Envoy cluster (HTTP/2).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "Etcd"))]
pub(super) struct RawEtcd {
    /// The Envoy cluster (HTTP/2) of the etcd members' client port (Istio: `outbound|2379||<host>`).
    #[cfg_attr(feature = "schema", schemars(
        length(min = 1, max = crate::replay::etcd::MAX_NAME_LEN),
        regex(pattern = r"^[!#-\[\]-~]+$"),
    ))]
    pub(super) upstream: String,
    /// The `:authority` of the gRPC calls (default: the cluster name).
    #[cfg_attr(feature = "schema", schemars(
        length(min = 1, max = crate::replay::etcd::MAX_NAME_LEN),
        regex(pattern = r"^[!#-\[\]-~]+$"),
    ))]
    pub(super) authority: Option<String>,
    /// Every key dcr-guard writes starts with this.
    #[cfg_attr(feature = "schema", schemars(
        length(min = ETCD_KEY_PREFIX_LEN.min, max = ETCD_KEY_PREFIX_LEN.max),
        regex(pattern = "^[!-~]+$"),
        extend("default" = super::stores::DEFAULT_ETCD_KEY_PREFIX),
    ))]
    pub(super) key_prefix: Option<String>,
    /// Deadline of each gRPC call; past it the registration is answered 503.
    #[cfg_attr(feature = "schema", schemars(
        range(min = ETCD_TIMEOUT_MS.min, max = ETCD_TIMEOUT_MS.max),
        extend("default" = super::stores::DEFAULT_ETCD_TIMEOUT_MS),
    ))]
    pub(super) timeout_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "Introspection"))]
pub(super) struct RawIntrospection {
    #[cfg_attr(feature = "schema", schemars(with = "HttpsUrl"))]
    pub(super) url: String,
    #[cfg_attr(feature = "schema", schemars(with = "NonBlank"))]
    pub(super) upstream: String,
    #[cfg_attr(feature = "schema", schemars(with = "NonBlank"))]
    pub(super) client_id: String,
    /// The NAME of an environment variable holding the client secret (Envoy: list it in vm_config.environment_variables.host_env_keys). Never the secret itself.
    #[cfg_attr(feature = "schema", schemars(with = "NonBlank"))]
    pub(super) client_secret_env: String,
}

/// Management requests (GET/PUT/DELETE /register/{client_id}): how the bearer token is checked. `jwks`, `algorithms`, `issuer`, `audiences`, `typ` only with mode jwt (which needs `issuer` or `audiences`); `introspection` only (and always) with mode introspection; `scope` and `client_id_claims` with jwt or introspection.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "Binding"))]
pub(super) struct RawBinding {
    #[cfg_attr(feature = "schema", schemars(extend("default" = true)))]
    pub(super) enabled: Option<bool>,
    #[cfg_attr(feature = "schema", schemars(extend(
        "enum" = ["delegate", "jwt", "introspection"],
        "default" = "delegate",
    )))]
    pub(super) mode: Option<String>,
    pub(super) introspection: Option<RawIntrospection>,
    #[cfg_attr(feature = "schema", schemars(length(min = 1)))]
    pub(super) jwks: Option<Vec<RawJwksSource>>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<Algorithms>"))]
    pub(super) algorithms: Option<Vec<String>>,
    pub(super) issuer: Option<String>,
    pub(super) audiences: Option<Vec<String>>,
    pub(super) scope: Option<String>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<NonEmptyNames>"))]
    pub(super) client_id_claims: Option<Vec<String>>,
    /// Mode jwt: the JOSE header typ a management token must carry (default at+jwt, RFC 9068; compared as a media type). Another value needs audiences or scope too.
    #[cfg_attr(feature = "schema", schemars(length(min = 1), extend("default" = "at+jwt")))]
    pub(super) typ: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "Directory"))]
pub(super) struct RawDirectory {
    /// The SSA `iss`, exactly (UK `OpenBanking Ltd`, AU `cdr-register`). Each issuer once.
    #[cfg_attr(feature = "schema", schemars(with = "NonBlank"))]
    pub(super) issuer: String,
    /// Where the directory's keys are: JWKS URLs fetched, and/or JWKS documents pinned inline. Keys from all entries are candidates.
    #[cfg_attr(feature = "schema", schemars(length(min = 1)))]
    pub(super) jwks: Vec<RawDirectoryJwks>,
    /// Allowed SSA algorithms.
    #[cfg_attr(feature = "schema", schemars(
        with = "Option<Algorithms>",
        extend("default" = ["PS256", "ES256"]),
    ))]
    pub(super) algorithms: Option<Vec<String>>,
    /// When set, the SSA iat is required and may be at most this old.
    pub(super) max_ssa_age_seconds: Option<u64>,
    /// The SSA must carry exp (UK default false, AU default true).
    pub(super) require_exp: Option<bool>,
}

/// A JWKS fetched (`url` and `upstream`) or pinned in the configuration (`inline`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "DirectoryJwks"))]
pub(super) struct RawDirectoryJwks {
    #[cfg_attr(feature = "schema", schemars(with = "Option<HttpsUrl>"))]
    pub(super) url: Option<String>,
    /// The host upstream the callout goes to: an Envoy cluster name (Istio: `outbound|443||<host>`), or `host:port` on Kong.
    #[cfg_attr(feature = "schema", schemars(with = "Option<NonBlank>"))]
    pub(super) upstream: Option<String>,
    /// A JWKS document pinned in the configuration (never fetched): `keys` only, every entry a public RSA (2048 bits or more), EC P-256 or Ed25519 signature key, each kid once.
    #[cfg_attr(feature = "schema", schemars(with = "Option<DirectoryJwksInline>"))]
    pub(super) inline: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "JwksSource"))]
pub(super) struct RawJwksSource {
    #[cfg_attr(feature = "schema", schemars(with = "HttpsUrl"))]
    pub(super) url: String,
    /// The host upstream the callout goes to: an Envoy cluster name (Istio: `outbound|443||<host>`), or `host:port` on Kong.
    #[cfg_attr(feature = "schema", schemars(with = "NonBlank"))]
    pub(super) upstream: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "HostRule"))]
pub(super) struct RawHostRule {
    /// An exact DNS host (case-insensitive), `*.` followed by a domain of at least two labels, or `*` (any DNS host of two labels or more, for a dynamic forward proxy cluster), optionally with `:port`; the entry allows that one port (443 when none is named).
    #[cfg_attr(
        feature = "schema",
        schemars(regex(
            pattern = r"^\s*(\*|\*\.[A-Za-z0-9-]+\.[A-Za-z0-9.-]+|[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*)(:[1-9][0-9]{0,4})?\s*$"
        ))
    )]
    pub(super) host: String,
    #[cfg_attr(feature = "schema", schemars(with = "NonBlank"))]
    pub(super) upstream: String,
}

/// SSA claim names (defaults from the profile).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "SsaClaims"))]
pub(super) struct RawSsaClaims {
    #[cfg_attr(feature = "schema", schemars(with = "Option<NonBlank>"))]
    pub(super) software_jwks: Option<String>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<NonBlank>"))]
    pub(super) redirect_uris: Option<String>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<Names>"))]
    pub(super) uris: Option<Vec<String>>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<NonBlank>"))]
    pub(super) roles: Option<String>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<NonBlank>"))]
    pub(super) scope: Option<String>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<NonBlank>"))]
    pub(super) environment: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "Limits"))]
pub(super) struct RawLimits {
    /// Largest registration body; keep the host's body buffer above it.
    #[cfg_attr(feature = "schema", schemars(
        range(min = BODY_BYTES.min, max = BODY_BYTES.max),
        extend("default" = super::DEFAULT_BODY_BYTES),
    ))]
    pub(super) body_bytes: Option<usize>,
    #[cfg_attr(feature = "schema", schemars(
        range(min = JWKS_BYTES.min, max = JWKS_BYTES.max),
        extend("default" = super::DEFAULT_JWKS_BYTES),
    ))]
    pub(super) jwks_bytes: Option<usize>,
    #[cfg_attr(feature = "schema", schemars(
        range(min = JWKS_KEYS.min, max = JWKS_KEYS.max),
        extend("default" = super::DEFAULT_JWKS_KEYS),
    ))]
    pub(super) jwks_keys: Option<usize>,
    #[cfg_attr(feature = "schema", schemars(
        range(min = CALLOUT_TIMEOUT_MS.min, max = CALLOUT_TIMEOUT_MS.max),
        extend("default" = super::DEFAULT_CALLOUT_TIMEOUT_MS),
    ))]
    pub(super) callout_timeout_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "Toggle"))]
pub(super) struct RawToggle {
    #[cfg_attr(feature = "schema", schemars(extend("default" = true)))]
    pub(super) enabled: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "IssuanceTime"))]
pub(super) struct RawIssuanceTime {
    #[cfg_attr(feature = "schema", schemars(extend("default" = true)))]
    pub(super) enabled: Option<bool>,
    #[cfg_attr(feature = "schema", schemars(
        range(min = 1),
        extend("default" = super::rules::DEFAULT_MAX_REQUEST_AGE),
    ))]
    pub(super) max_age_seconds: Option<u64>,
}

/// Every rule is an object with `enabled` (default true) and its parameters.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "Rules"))]
pub(super) struct RawRules {
    pub(super) token_client_binding: Option<RawBinding>,
    pub(super) certificate_binding: Option<RawCertBinding>,
    pub(super) request_jti: Option<RawRequestJti>,
    pub(super) ssa_jti: Option<RawSsaJti>,
    pub(super) ssa_issuer: Option<RawToggle>,
    pub(super) ssa_signature: Option<RawToggle>,
    pub(super) request_signature: Option<RawToggle>,
    pub(super) issuance_time: Option<RawIssuanceTime>,
    pub(super) software_status: Option<RawSoftwareStatus>,
    pub(super) required_attributes: Option<RawRequiredAttributes>,
    pub(super) issuer: Option<RawToggle>,
    pub(super) audience: Option<RawAudience>,
    pub(super) redirect_uri_format: Option<RawRedirectFormat>,
    pub(super) redirect_uri_subset: Option<RawToggle>,
    pub(super) uri_hostname: Option<RawToggle>,
    pub(super) token_endpoint_auth: Option<RawTokenEndpointAuth>,
    pub(super) signing_algorithms: Option<RawSigningAlgorithms>,
    pub(super) grant_and_response_types: Option<RawGrantTypes>,
    pub(super) software_roles: Option<RawSoftwareRoles>,
    // Only checked to be present here; `super::status` reads it by hand from the document (a
    // derived reader, or a `Value` read through the path tracker, costs the module too much). Its
    // schema is `super::schema::ParticipantStatus`, tied to that reader by tests.
    #[cfg_attr(feature = "schema", schemars(with = "Option<ParticipantStatus>"))]
    pub(super) participant_status: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "StatusCheck"))]
pub(super) struct RawStatusCheck {
    /// A dotted path into the SSA.
    #[cfg_attr(feature = "schema", schemars(with = "NonBlank"))]
    pub(super) claim: String,
    pub(super) equals: String,
    #[serde(default)]
    pub(super) required: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "SoftwareStatus"))]
pub(super) struct RawSoftwareStatus {
    #[cfg_attr(feature = "schema", schemars(extend("default" = true)))]
    pub(super) enabled: Option<bool>,
    pub(super) checks: Option<Vec<RawStatusCheck>>,
    /// When set, the SSA's environment claim must equal it (UK: `production` or `sandbox`).
    #[cfg_attr(feature = "schema", schemars(with = "Option<NonBlank>"))]
    pub(super) environment: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "RequiredAttributes"))]
pub(super) struct RawRequiredAttributes {
    #[cfg_attr(feature = "schema", schemars(extend("default" = true)))]
    pub(super) enabled: Option<bool>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<Names>"))]
    pub(super) claims: Option<Vec<String>>,
    /// Claim name -> allowed values.
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<BTreeMap<String, NonEmptyNames>>")
    )]
    pub(super) allowed_values: Option<BTreeMap<String, Vec<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "Audience"))]
pub(super) struct RawAudience {
    #[cfg_attr(feature = "schema", schemars(extend("default" = true)))]
    pub(super) enabled: Option<bool>,
    /// The `aud` values that name this bank (UK: the bank's organisation id). Required while the rule is on.
    #[cfg_attr(feature = "schema", schemars(with = "Option<NonEmptyNames>"))]
    pub(super) audiences: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "RedirectFormat"))]
pub(super) struct RawRedirectFormat {
    #[cfg_attr(feature = "schema", schemars(extend("default" = true)))]
    pub(super) enabled: Option<bool>,
    #[cfg_attr(feature = "schema", schemars(
        range(min = REDIRECT_URI_LENGTH.min, max = REDIRECT_URI_LENGTH.max),
        extend("default" = super::rules::DEFAULT_REDIRECT_URI_LENGTH),
    ))]
    pub(super) max_length: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "TokenEndpointAuth"))]
pub(super) struct RawTokenEndpointAuth {
    #[cfg_attr(feature = "schema", schemars(extend("default" = true)))]
    pub(super) enabled: Option<bool>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<NonEmptyNames>"))]
    pub(super) methods: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "SigningAlgorithms"))]
pub(super) struct RawSigningAlgorithms {
    #[cfg_attr(feature = "schema", schemars(extend("default" = true)))]
    pub(super) enabled: Option<bool>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<MetadataAlgorithms>"))]
    pub(super) algorithms: Option<Vec<String>>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<NonEmptyNames>"))]
    pub(super) claims: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "GrantTypes"))]
pub(super) struct RawGrantTypes {
    #[cfg_attr(feature = "schema", schemars(extend("default" = true)))]
    pub(super) enabled: Option<bool>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<NonEmptyNames>"))]
    pub(super) grant_types: Option<Vec<String>>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<Names>"))]
    pub(super) required_grant_types: Option<Vec<String>>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<NonEmptyNames>"))]
    pub(super) response_types: Option<Vec<String>>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<NonEmptyNames>"))]
    pub(super) application_types: Option<Vec<String>>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<NonEmptyNames>"))]
    pub(super) ciba_delivery_modes: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "SoftwareRoles"))]
pub(super) struct RawSoftwareRoles {
    #[cfg_attr(feature = "schema", schemars(extend("default" = true)))]
    pub(super) enabled: Option<bool>,
    #[cfg_attr(feature = "schema", schemars(extend("enum" = ["role_mapping", "ssa_scope"])))]
    pub(super) mode: Option<String>,
    /// Scope -> roles (role_mapping mode).
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<BTreeMap<String, NonEmptyNames>>")
    )]
    pub(super) scope_roles: Option<BTreeMap<String, Vec<String>>>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<Names>"))]
    pub(super) free_scopes: Option<Vec<String>>,
}
