//! The `rules` object, resolved in one place: which checks run and with what parameters, the
//! regime's mandatory rules, the claim rules, both bindings and the `jti` rules. The checks
//! themselves are in `crate::rules`, `crate::binding` and `crate::pipeline`.

use super::binding::{resolve_binding, Secrets, TokenMode};
use super::checks::{bounded, metadata_algs, names, non_empty_name, strings, ConfigError};
use super::raw::{
    RawAudience, RawCertBinding, RawGrantTypes, RawRequestJti, RawRequiredAttributes, RawRules,
    RawSoftwareRoles, RawSoftwareStatus, RawSsaClaims, RawToggle, REDIRECT_URI_LENGTH,
};
use crate::profile::{Defaults, Profile};
use crate::rules::certificate::{CertificateBinding, OrgCheck, SoftwareCheck};
use crate::rules::{
    Audience, ClaimRules, GrantTypes, RedirectUris, RequiredAttributes, RolesMode,
    SigningAlgorithms, SoftwareRoles, SoftwareStatus, StatusCheck, TokenEndpointAuth,
};

/// `rules.issuance_time.max_age_seconds` when not configured.
pub(super) const DEFAULT_MAX_REQUEST_AGE: u64 = 3600;
/// `rules.redirect_uri_format.max_length` when not configured.
pub(super) const DEFAULT_REDIRECT_URI_LENGTH: usize = 256;
/// How long an SSA `jti` without `exp` is remembered when `rules.ssa_jti.window_seconds` is not
/// configured.
pub(super) const DEFAULT_SSA_JTI_WINDOW: u64 = 86_400;

/// The resolved `rules` object: every rule's switch and parameters.
#[derive(Debug, Clone)]
pub struct Rules {
    /// The rules that read claims (`crate::rules`).
    pub claims: ClaimRules,
    /// `ssa_issuer`: the SSA comes from a configured directory.
    pub ssa_issuer: bool,
    /// `ssa_signature`: the SSA's signature is verified.
    pub ssa_signature: bool,
    /// `request_signature`: the request JWT's signature is verified with the software JWKS.
    pub request_signature: bool,
    /// `issuance_time`: the request JWT's `iat`/`exp` are checked.
    pub issuance_time: bool,
    /// Maximum age of a request JWT (`now − iat`), seconds.
    pub max_request_age: u64,
    /// `token_client_binding`: `None` when switched off.
    pub token_client_binding: Option<TokenMode>,
    /// `certificate_binding`: `None` when switched off.
    pub certificate_binding: Option<CertificateBinding>,
    /// `request_jti`: a request JWT's `jti` is remembered and a second use refused.
    pub request_jti: bool,
    /// `request_jti.format: uuid4`: the request `jti` must be a UUIDv4.
    pub request_jti_uuid4: bool,
    /// `ssa_jti`: an SSA's `jti` is remembered and a second use refused.
    pub ssa_jti: bool,
    /// How long an SSA `jti` without `exp` is remembered, seconds.
    pub ssa_jti_window: u64,
    /// `participant_status`: the status documents a registration is checked against (empty when
    /// switched off).
    pub participant_status: Vec<crate::status::StatusSource>,
}

/// `ssa_claims`: the SSA claim that names the software JWKS URL, and the claim names the claim
/// rules read; each defaults to the profile's.
pub(super) fn resolve_ssa_claims(
    raw: Option<RawSsaClaims>,
    defaults: &Defaults,
) -> Result<(String, ClaimNames), ConfigError> {
    let ssa_claims = raw.unwrap_or_default();
    let claim_name = |field: &str, v: Option<String>, d: &str| {
        non_empty_name(&format!("ssa_claims.{field}"), v.as_deref().unwrap_or(d))
    };
    let software_jwks = claim_name(
        "software_jwks",
        ssa_claims.software_jwks,
        defaults.ssa_software_jwks,
    )?;
    let redirect = claim_name(
        "redirect_uris",
        ssa_claims.redirect_uris,
        defaults.ssa_redirect_uris,
    )?;
    let roles = claim_name("roles", ssa_claims.roles, defaults.ssa_roles)?;
    let scope = claim_name("scope", ssa_claims.scope, defaults.ssa_scope)?;
    let environment = claim_name(
        "environment",
        ssa_claims.environment,
        defaults.ssa_environment,
    )?;
    let uris = match ssa_claims.uris {
        Some(list) => names("ssa_claims.uris", list, true)?,
        None => strings(defaults.ssa_uris),
    };
    Ok((
        software_jwks,
        ClaimNames {
            redirect,
            uris,
            roles,
            scope,
            environment,
        },
    ))
}

/// `rules`: the regime's mandatory rules first (they cannot be switched off), then every rule in
/// the order the request meets them.
pub(super) fn resolve_rules(
    profile: Profile,
    defaults: &Defaults,
    rr: RawRules,
    claim_names: ClaimNames,
    secrets: Secrets<'_>,
    participant_status: Option<serde_json::Value>,
) -> Result<Rules, ConfigError> {
    // The regime's invariants cannot be configured away (report-only is the way to roll out).
    for (rule, why) in defaults.mandatory {
        if raw_enabled(&rr, *rule) == Some(false) {
            return Err(ConfigError::new(
                format!("rules.{}.enabled", rule.as_str()),
                format!(
                    "rule `{}` is mandatory in the {} profile and cannot be switched off: {why} (to roll out without enforcing, set `report_only: true`)",
                    rule.as_str(),
                    profile.as_str()
                ),
            ));
        }
    }
    let on = |t: &Option<RawToggle>| t.as_ref().and_then(|t| t.enabled).unwrap_or(true);
    let it = rr.issuance_time.as_ref();
    let max_request_age = it
        .and_then(|t| t.max_age_seconds)
        .unwrap_or(DEFAULT_MAX_REQUEST_AGE);
    if max_request_age == 0 {
        return Err(ConfigError::new(
            "rules.issuance_time.max_age_seconds",
            "must be greater than 0",
        ));
    }
    let claims = claim_rules(profile, defaults, &rr, claim_names)?;
    let ssa_signature = on(&rr.ssa_signature);
    let request_signature = jwt_only(
        defaults.json_body,
        "request_signature",
        rr.request_signature.as_ref().and_then(|t| t.enabled),
    )?;
    let issuance_time = jwt_only(
        defaults.json_body,
        "issuance_time",
        it.and_then(|t| t.enabled),
    )?;
    if request_signature && !ssa_signature {
        return Err(ConfigError::new(
            "rules.ssa_signature.enabled",
            "cannot be false while request_signature is on: the software JWKS URL is only ever taken from a verified SSA",
        ));
    }
    let token_client_binding = resolve_binding(rr.token_client_binding.as_ref(), secrets)?;
    let request_jti_uuid4 = request_jti_format(rr.request_jti.as_ref())?;
    let request_jti = jwt_only(
        defaults.json_body,
        "request_jti",
        rr.request_jti.as_ref().and_then(|r| r.enabled),
    )?;
    let sj = rr.ssa_jti.as_ref();
    let certificate_binding = resolve_cert_binding(defaults, rr.certificate_binding.as_ref())?;
    let participant_status = super::status::resolve(profile, participant_status)?;
    Ok(Rules {
        claims,
        ssa_issuer: on(&rr.ssa_issuer),
        ssa_signature,
        request_signature,
        issuance_time,
        max_request_age,
        token_client_binding,
        certificate_binding,
        request_jti,
        request_jti_uuid4,
        ssa_jti: sj.and_then(|r| r.enabled).unwrap_or(false),
        ssa_jti_window: sj
            .and_then(|r| r.window_seconds)
            .unwrap_or(DEFAULT_SSA_JTI_WINDOW),
        participant_status,
    })
}

/// `rules.request_jti.format`: `true` when the `jti` must be a UUIDv4.
fn request_jti_format(rj: Option<&RawRequestJti>) -> Result<bool, ConfigError> {
    match rj.and_then(|r| r.format.as_deref()) {
        None | Some("any") => Ok(false),
        Some("uuid4") => Ok(true),
        Some(other) => Err(ConfigError::new(
            "rules.request_jti.format",
            format!("unknown format `{other}` (any, uuid4)"),
        )),
    }
}

/// `rules.<rule>.enabled` as written (`None` when not given).
fn raw_enabled(rr: &RawRules, rule: crate::error::RuleId) -> Option<bool> {
    use crate::error::RuleId as R;
    let t = |t: &Option<RawToggle>| t.as_ref().and_then(|t| t.enabled);
    match rule {
        R::TokenClientBinding => rr.token_client_binding.as_ref().and_then(|r| r.enabled),
        R::CertificateBinding => rr.certificate_binding.as_ref().and_then(|r| r.enabled),
        R::RequestJti => rr.request_jti.as_ref().and_then(|r| r.enabled),
        R::SsaJti => rr.ssa_jti.as_ref().and_then(|r| r.enabled),
        R::SsaIssuer => t(&rr.ssa_issuer),
        R::SsaSignature => t(&rr.ssa_signature),
        R::RequestSignature => t(&rr.request_signature),
        R::IssuanceTime => rr.issuance_time.as_ref().and_then(|r| r.enabled),
        R::SoftwareStatus => rr.software_status.as_ref().and_then(|r| r.enabled),
        R::RequiredAttributes => rr.required_attributes.as_ref().and_then(|r| r.enabled),
        R::Issuer => t(&rr.issuer),
        R::Audience => rr.audience.as_ref().and_then(|r| r.enabled),
        R::RedirectUriFormat => rr.redirect_uri_format.as_ref().and_then(|r| r.enabled),
        R::RedirectUriSubset => t(&rr.redirect_uri_subset),
        R::UriHostname => t(&rr.uri_hostname),
        R::TokenEndpointAuth => rr.token_endpoint_auth.as_ref().and_then(|r| r.enabled),
        R::SigningAlgorithms => rr.signing_algorithms.as_ref().and_then(|r| r.enabled),
        R::GrantAndResponseTypes => rr.grant_and_response_types.as_ref().and_then(|r| r.enabled),
        R::SoftwareRoles => rr.software_roles.as_ref().and_then(|r| r.enabled),
        // Never mandatory; `super::status` reads its switch.
        R::ParticipantStatus => None,
    }
}

/// A rule that needs a request JWT: off by default for a JSON body, and refused on there.
fn jwt_only(json_body: bool, rule: &str, enabled: Option<bool>) -> Result<bool, ConfigError> {
    match (json_body, enabled) {
        (true, Some(true)) => Err(ConfigError::new(
            format!("rules.{rule}.enabled"),
            "does not apply to a JSON registration body (there is no request JWT)",
        )),
        (true, _) => Ok(false),
        (false, e) => Ok(e.unwrap_or(true)),
    }
}

/// `certificate_binding`: on by the profile's default unless configured; what it compares defaults
/// to the profile's table.
fn resolve_cert_binding(
    d: &Defaults,
    raw: Option<&RawCertBinding>,
) -> Result<Option<CertificateBinding>, ConfigError> {
    let f = "rules.certificate_binding";
    let enabled = raw.and_then(|r| r.enabled).unwrap_or(d.certificate_binding);
    if !enabled {
        return Ok(None);
    }
    let (org, software) = (d.certificate_org, d.certificate_software);
    let org = match raw.and_then(|r| r.org.as_ref()) {
        Some(o) => Some(OrgCheck {
            attribute: non_empty_name(&format!("{f}.org.attribute"), &o.attribute)?,
            prefix: o.prefix.clone(),
            ssa_claim: non_empty_name(&format!("{f}.org.ssa_claim"), &o.ssa_claim)?,
        }),
        None => org.map(|o| OrgCheck {
            attribute: o.attribute.into(),
            prefix: o.prefix.into(),
            ssa_claim: o.ssa_claim.into(),
        }),
    };
    let software = match raw.and_then(|r| r.software.as_ref()) {
        Some(s) => Some(SoftwareCheck {
            attribute: non_empty_name(&format!("{f}.software.attribute"), &s.attribute)?,
            ssa_claim: non_empty_name(&format!("{f}.software.ssa_claim"), &s.ssa_claim)?,
        }),
        None => software.map(|s| SoftwareCheck {
            attribute: s.attribute.into(),
            ssa_claim: s.ssa_claim.into(),
        }),
    };
    for (field, attr) in [
        ("org", org.as_ref().map(|o| o.attribute.as_str())),
        ("software", software.as_ref().map(|s| s.attribute.as_str())),
    ] {
        if let Some(a) = attr {
            if crate::dn::Dn::parse(&format!("{a}=x")).is_err() {
                return Err(ConfigError::new(
                    format!("{f}.{field}.attribute"),
                    format!("`{a}` is not an attribute type"),
                ));
            }
        }
    }
    let binding = CertificateBinding {
        org,
        software,
        thumbprint: raw.and_then(|r| r.thumbprint).unwrap_or(false),
        subject_dn: raw.and_then(|r| r.subject_dn).unwrap_or(true),
    };
    if binding.org.is_none()
        && binding.software.is_none()
        && !binding.thumbprint
        && !binding.subject_dn
    {
        return Err(ConfigError::new(
            f,
            "is on but checks nothing: configure org, software, thumbprint or subject_dn",
        ));
    }
    Ok(Some(binding))
}

/// The SSA claim names the claim rules read (`ssa_claims`).
pub(super) struct ClaimNames {
    redirect: String,
    uris: Vec<String>,
    roles: String,
    scope: String,
    environment: String,
}

/// The rules that read the registration's and the SSA's claims (`crate::rules`), each from its
/// `rules.<rule>` object and the profile's defaults.
fn claim_rules(
    profile: Profile,
    d: &Defaults,
    rr: &RawRules,
    n: ClaimNames,
) -> Result<ClaimRules, ConfigError> {
    let on = |t: &Option<RawToggle>| t.as_ref().and_then(|t| t.enabled).unwrap_or(true);
    let software_status = software_status(d, rr.software_status.as_ref(), n.environment)?;
    let required_attributes = required_attributes(d, rr.required_attributes.as_ref())?;
    let audience = audience(profile, d, rr.audience.as_ref())?;
    let rf = rr.redirect_uri_format.as_ref();
    let max_length = bounded(
        "rules.redirect_uri_format.max_length",
        rf.and_then(|r| r.max_length),
        DEFAULT_REDIRECT_URI_LENGTH,
        REDIRECT_URI_LENGTH,
    )?;
    // `signing_algorithms.algorithms` is also what token_endpoint_auth and CIBA accept.
    let rs = rr.signing_algorithms.as_ref();
    let metadata_algorithms = match rs.and_then(|r| r.algorithms.clone()) {
        Some(a) => metadata_algs("rules.signing_algorithms.algorithms", a)?,
        None => strings(d.metadata_algorithms),
    };
    let signing_algorithms = if rs.and_then(|r| r.enabled).unwrap_or(true) {
        Some(SigningAlgorithms {
            algorithms: metadata_algorithms.clone(),
            claims: list_or(
                "rules.signing_algorithms.claims",
                rs.and_then(|r| r.claims.as_ref()),
                d.signing_claims,
                false,
            )?,
        })
    } else {
        None
    };
    let ta = rr.token_endpoint_auth.as_ref();
    let token_endpoint_auth = if ta.and_then(|r| r.enabled).unwrap_or(true) {
        Some(TokenEndpointAuth {
            methods: list_or(
                "rules.token_endpoint_auth.methods",
                ta.and_then(|r| r.methods.as_ref()),
                d.auth_methods,
                false,
            )?,
            signing_algorithms: metadata_algorithms.clone(),
        })
    } else {
        None
    };
    let grant_and_response_types = grant_and_response_types(
        d,
        rr.grant_and_response_types.as_ref(),
        &metadata_algorithms,
    )?;
    let software_roles = software_roles(d, rr.software_roles.as_ref(), n.roles, n.scope)?;
    Ok(ClaimRules {
        software_status,
        required_attributes,
        issuer: jwt_only(
            d.json_body,
            "issuer",
            rr.issuer.as_ref().and_then(|t| t.enabled),
        )?,
        audience,
        redirect_uri_format: rf.and_then(|r| r.enabled).unwrap_or(true),
        redirect_uri_subset: on(&rr.redirect_uri_subset),
        uri_hostname: on(&rr.uri_hostname),
        redirect_uris: RedirectUris {
            max_length,
            ssa_claim: n.redirect,
            ssa_uri_claims: n.uris,
        },
        token_endpoint_auth,
        signing_algorithms,
        grant_and_response_types,
        software_roles,
    })
}

/// A configured list of names (checked by [`names`]), or the profile's default.
fn list_or(
    field: &str,
    configured: Option<&Vec<String>>,
    default: &[&str],
    allow_empty: bool,
) -> Result<Vec<String>, ConfigError> {
    match configured {
        Some(l) => names(field, l.clone(), allow_empty),
        None => Ok(strings(default)),
    }
}

/// `rules.software_status`: the profile's checks unless configured.
fn software_status(
    d: &Defaults,
    ss: Option<&RawSoftwareStatus>,
    environment_claim: String,
) -> Result<Option<SoftwareStatus>, ConfigError> {
    if !ss.and_then(|r| r.enabled).unwrap_or(true) {
        return Ok(None);
    }
    let checks = match ss.and_then(|r| r.checks.as_ref()) {
        Some(c) => c
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let f = format!("rules.software_status.checks[{i}]");
                Ok(StatusCheck {
                    claim: non_empty_name(&format!("{f}.claim"), &c.claim)?,
                    equals: c.equals.clone(),
                    required: c.required,
                })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?,
        None => d
            .status_checks
            .iter()
            .map(|(c, v, r)| StatusCheck {
                claim: c.to_string(),
                equals: v.to_string(),
                required: *r,
            })
            .collect(),
    };
    let environment = match ss.and_then(|r| r.environment.clone()) {
        Some(e) => Some(non_empty_name("rules.software_status.environment", &e)?),
        None => None,
    };
    Ok(Some(SoftwareStatus {
        checks,
        environment_claim,
        environment,
        active_role_claim: d.active_role_claim.map(String::from),
    }))
}

/// `rules.required_attributes`: the profile's claims unless configured, and allowed values.
fn required_attributes(
    d: &Defaults,
    ra: Option<&RawRequiredAttributes>,
) -> Result<Option<RequiredAttributes>, ConfigError> {
    if !ra.and_then(|r| r.enabled).unwrap_or(true) {
        return Ok(None);
    }
    let claims = list_or(
        "rules.required_attributes.claims",
        ra.and_then(|r| r.claims.as_ref()),
        d.required_claims,
        true,
    )?;
    let mut allowed_values = Vec::new();
    for (claim, values) in ra
        .and_then(|r| r.allowed_values.clone())
        .unwrap_or_default()
    {
        let f = format!("rules.required_attributes.allowed_values.{claim}");
        allowed_values.push((claim, names(&f, values, false)?));
    }
    Ok(Some(RequiredAttributes {
        claims,
        allowed_values,
    }))
}

/// `rules.audience`: on by the profile's default; when on, `audiences` must be configured.
fn audience(
    profile: Profile,
    d: &Defaults,
    au: Option<&RawAudience>,
) -> Result<Option<Audience>, ConfigError> {
    if !au.and_then(|r| r.enabled).unwrap_or(d.audience) {
        return Ok(None);
    }
    let audiences = match au.and_then(|r| r.audiences.clone()) {
        Some(a) => names("rules.audience.audiences", a, false)?,
        None => {
            return Err(ConfigError::new(
                "rules.audience.audiences",
                format!(
                    "is required in the {} profile: list the `aud` values that name this bank, so that a request minted for another bank is not accepted here",
                    profile.as_str()
                ),
            ))
        }
    };
    Ok(Some(Audience { audiences }))
}

/// `rules.grant_and_response_types`: the profile's lists unless configured; every required grant
/// type must be allowed.
fn grant_and_response_types(
    d: &Defaults,
    gt: Option<&RawGrantTypes>,
    metadata_algorithms: &[String],
) -> Result<Option<GrantTypes>, ConfigError> {
    if !gt.and_then(|r| r.enabled).unwrap_or(true) {
        return Ok(None);
    }
    let f = "rules.grant_and_response_types";
    let g = GrantTypes {
        grant_types: list_or(
            &format!("{f}.grant_types"),
            gt.and_then(|r| r.grant_types.as_ref()),
            d.grant_types,
            false,
        )?,
        required_grant_types: list_or(
            &format!("{f}.required_grant_types"),
            gt.and_then(|r| r.required_grant_types.as_ref()),
            d.required_grant_types,
            true,
        )?,
        response_types: list_or(
            &format!("{f}.response_types"),
            gt.and_then(|r| r.response_types.as_ref()),
            d.response_types,
            false,
        )?,
        application_types: list_or(
            &format!("{f}.application_types"),
            gt.and_then(|r| r.application_types.as_ref()),
            d.application_types,
            false,
        )?,
        ciba_delivery_modes: list_or(
            &format!("{f}.ciba_delivery_modes"),
            gt.and_then(|r| r.ciba_delivery_modes.as_ref()),
            d.ciba_delivery_modes,
            false,
        )?,
        ciba_signing_algorithms: metadata_algorithms.to_vec(),
    };
    if let Some(r) = g
        .required_grant_types
        .iter()
        .find(|r| !g.grant_types.contains(r))
    {
        return Err(ConfigError::new(
            format!("{f}.required_grant_types"),
            format!("`{r}` is required but not in grant_types"),
        ));
    }
    Ok(Some(g))
}

/// `rules.software_roles`: the profile's mode and scope → roles table unless configured.
fn software_roles(
    d: &Defaults,
    sr: Option<&RawSoftwareRoles>,
    roles_claim: String,
    ssa_scope_claim: String,
) -> Result<Option<SoftwareRoles>, ConfigError> {
    if !sr.and_then(|r| r.enabled).unwrap_or(true) {
        return Ok(None);
    }
    let mode = match sr.and_then(|r| r.mode.as_deref()) {
        None => d.roles_mode,
        Some("role_mapping") => RolesMode::RoleMapping,
        Some("ssa_scope") => RolesMode::SsaScope,
        Some(other) => {
            return Err(ConfigError::new(
                "rules.software_roles.mode",
                format!("unknown mode `{other}` (role_mapping, ssa_scope)"),
            ))
        }
    };
    let scope_roles = match sr.and_then(|r| r.scope_roles.clone()) {
        Some(m) => {
            let mut out = Vec::new();
            for (scope, roles) in m {
                let f = format!("rules.software_roles.scope_roles.{scope}");
                out.push((scope, names(&f, roles, false)?));
            }
            out
        }
        None => d
            .scope_roles
            .iter()
            .map(|(s, r)| (s.to_string(), strings(r)))
            .collect(),
    };
    if mode == RolesMode::RoleMapping && scope_roles.is_empty() {
        return Err(ConfigError::new(
            "rules.software_roles.scope_roles",
            "role_mapping needs at least one scope → roles entry",
        ));
    }
    Ok(Some(SoftwareRoles {
        mode,
        roles_claim,
        ssa_scope_claim,
        scope_roles,
        free_scopes: list_or(
            "rules.software_roles.free_scopes",
            sr.and_then(|r| r.free_scopes.as_ref()),
            d.free_scopes,
            true,
        )?,
    }))
}

#[cfg(test)]
mod tests;
