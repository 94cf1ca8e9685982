//! The document as written: every field optional where a default exists, unknown fields refused.
//! Nothing here is checked beyond its JSON type; the other modules resolve it.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) profile: Option<String>,
    pub(super) path: Option<String>,
    pub(super) hold_headers: Option<bool>,
    pub(super) directories: Option<Vec<RawDirectory>>,
    pub(super) software_jwks_hosts: Option<Vec<RawHostRule>>,
    pub(super) ssa_claims: Option<RawSsaClaims>,
    pub(super) request_algorithms: Option<Vec<String>>,
    pub(super) leeway_seconds: Option<u64>,
    pub(super) retry_after_seconds: Option<u32>,
    pub(super) limits: Option<RawLimits>,
    pub(super) rules: Option<RawRules>,
    pub(super) report_only: Option<bool>,
    pub(super) forward: Option<String>,
    pub(super) fact_headers: Option<Vec<RawFactHeader>>,
    pub(super) replay: Option<RawReplay>,
    pub(super) jwks_cache: Option<RawJwksCache>,
    pub(super) client_certificate: Option<RawClientCertificate>,
    pub(super) stats: Option<RawStats>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStats {
    pub(super) instance: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJwksCache {
    pub(super) default_ttl_seconds: Option<u64>,
    pub(super) min_ttl_seconds: Option<u64>,
    pub(super) max_ttl_seconds: Option<u64>,
    pub(super) kid_refetch_cooldown_seconds: Option<u64>,
    pub(super) stale_if_error_seconds: Option<u64>,
    pub(super) refresh_ahead_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFactHeader {
    pub(super) claim: String,
    pub(super) header: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCertBinding {
    pub(super) enabled: Option<bool>,
    pub(super) org: Option<RawOrgCheck>,
    pub(super) software: Option<RawSoftwareCheck>,
    pub(super) thumbprint: Option<bool>,
    pub(super) subject_dn: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOrgCheck {
    pub(super) attribute: String,
    #[serde(default)]
    pub(super) prefix: String,
    pub(super) ssa_claim: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSoftwareCheck {
    pub(super) attribute: String,
    pub(super) ssa_claim: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClientCertificate {
    pub(super) source: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRequestJti {
    pub(super) enabled: Option<bool>,
    pub(super) format: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSsaJti {
    pub(super) enabled: Option<bool>,
    pub(super) window_seconds: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReplay {
    pub(super) buckets: Option<u32>,
    pub(super) entries_per_bucket: Option<u32>,
    pub(super) max_retention_seconds: Option<u64>,
    pub(super) issuer_share_percent: Option<u32>,
    pub(super) store: Option<String>,
    pub(super) etcd: Option<RawEtcd>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEtcd {
    pub(super) upstream: String,
    pub(super) authority: Option<String>,
    pub(super) key_prefix: Option<String>,
    pub(super) timeout_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIntrospection {
    pub(super) url: String,
    pub(super) upstream: String,
    pub(super) client_id: String,
    pub(super) client_secret_env: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBinding {
    pub(super) enabled: Option<bool>,
    pub(super) mode: Option<String>,
    pub(super) introspection: Option<RawIntrospection>,
    pub(super) jwks: Option<Vec<RawJwksSource>>,
    pub(super) algorithms: Option<Vec<String>>,
    pub(super) issuer: Option<String>,
    pub(super) audiences: Option<Vec<String>>,
    pub(super) scope: Option<String>,
    pub(super) client_id_claims: Option<Vec<String>>,
    pub(super) typ: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDirectory {
    pub(super) issuer: String,
    pub(super) jwks: Vec<RawDirectoryJwks>,
    pub(super) algorithms: Option<Vec<String>>,
    pub(super) max_ssa_age_seconds: Option<u64>,
    pub(super) require_exp: Option<bool>,
}

/// A directory's key document: fetched (`url` + `upstream`) or pinned (`inline`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDirectoryJwks {
    pub(super) url: Option<String>,
    pub(super) upstream: Option<String>,
    pub(super) inline: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJwksSource {
    pub(super) url: String,
    pub(super) upstream: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHostRule {
    pub(super) host: String,
    pub(super) upstream: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSsaClaims {
    pub(super) software_jwks: Option<String>,
    pub(super) redirect_uris: Option<String>,
    pub(super) uris: Option<Vec<String>>,
    pub(super) roles: Option<String>,
    pub(super) scope: Option<String>,
    pub(super) environment: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) body_bytes: Option<usize>,
    pub(super) jwks_bytes: Option<usize>,
    pub(super) jwks_keys: Option<usize>,
    pub(super) callout_timeout_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawToggle {
    pub(super) enabled: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIssuanceTime {
    pub(super) enabled: Option<bool>,
    pub(super) max_age_seconds: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
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
    /// Only checked to be present here; `super::status` reads it by hand from the document (a
    /// derived reader, or a `Value` read through the path tracker, costs the module too much).
    pub(super) participant_status: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStatusCheck {
    pub(super) claim: String,
    pub(super) equals: String,
    #[serde(default)]
    pub(super) required: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSoftwareStatus {
    pub(super) enabled: Option<bool>,
    pub(super) checks: Option<Vec<RawStatusCheck>>,
    pub(super) environment: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRequiredAttributes {
    pub(super) enabled: Option<bool>,
    pub(super) claims: Option<Vec<String>>,
    pub(super) allowed_values: Option<BTreeMap<String, Vec<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudience {
    pub(super) enabled: Option<bool>,
    pub(super) audiences: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRedirectFormat {
    pub(super) enabled: Option<bool>,
    pub(super) max_length: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTokenEndpointAuth {
    pub(super) enabled: Option<bool>,
    pub(super) methods: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSigningAlgorithms {
    pub(super) enabled: Option<bool>,
    pub(super) algorithms: Option<Vec<String>>,
    pub(super) claims: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGrantTypes {
    pub(super) enabled: Option<bool>,
    pub(super) grant_types: Option<Vec<String>>,
    pub(super) required_grant_types: Option<Vec<String>>,
    pub(super) response_types: Option<Vec<String>>,
    pub(super) application_types: Option<Vec<String>>,
    pub(super) ciba_delivery_modes: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSoftwareRoles {
    pub(super) enabled: Option<bool>,
    pub(super) mode: Option<String>,
    pub(super) scope_roles: Option<BTreeMap<String, Vec<String>>>,
    pub(super) free_scopes: Option<Vec<String>>,
}
