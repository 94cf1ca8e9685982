//! Regime defaults (`profile`): claim names and rule parameters per regime, one table each
//! ([`UK_OBIE`], [`AU_CDR`], [`BR_OFB`]). A profile is only a set of defaults, plus the rules the
//! regime cannot do without; every other field can be overridden in the configuration. The
//! configuration (`crate::config`) only applies these tables.

use crate::error::RuleId;
use crate::jose::Alg;
use crate::rules::RolesMode;

/// The regime a configuration follows (`profile`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// UK Open Banking (OBIE): a signed request JWT carrying the SSA.
    UkObie,
    /// Australia's Consumer Data Right.
    AuCdr,
    /// Brazil Open Finance: a plain JSON body.
    BrOfb,
}

impl Profile {
    /// Every profile, in the order the configuration error lists them.
    pub const ALL: [Profile; 3] = [Profile::UkObie, Profile::AuCdr, Profile::BrOfb];

    /// The profile's name in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::UkObie => "uk-obie",
            Profile::AuCdr => "au-cdr",
            Profile::BrOfb => "br-ofb",
        }
    }

    /// The profile named `name`, if any.
    pub fn from_name(name: &str) -> Option<Profile> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// The profile's table of defaults.
    pub(crate) fn defaults(self) -> &'static Defaults {
        match self {
            Profile::UkObie => &UK_OBIE,
            Profile::AuCdr => &AU_CDR,
            Profile::BrOfb => &BR_OFB,
        }
    }
}

const SSA_ISSUER: (RuleId, &str) = (
    RuleId::SsaIssuer,
    "only SSAs from a configured directory are trusted",
);
const SSA_SIGNATURE: (RuleId, &str) = (
    RuleId::SsaSignature,
    "an unverified SSA proves nothing: every other check and the software JWKS URL rest on it",
);
const REQUEST_SIGNATURE: (RuleId, &str) = (
    RuleId::RequestSignature,
    "the request JWT's signature is the only proof that the registration comes from the software the SSA names",
);
const REDIRECT_URI_SUBSET: (RuleId, &str) = (
    RuleId::RedirectUriSubset,
    "the directory, not the client, decides where authorization codes may be sent",
);

/// `certificate_binding.org` when not configured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OrgDefault {
    /// The subject DN attribute that holds the organisation id.
    pub(crate) attribute: &'static str,
    /// What the attribute's value starts with before the id.
    pub(crate) prefix: &'static str,
    /// The SSA claim it must equal.
    pub(crate) ssa_claim: &'static str,
}

/// `certificate_binding.software` when not configured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SoftwareDefault {
    /// The subject DN attribute that holds the software id.
    pub(crate) attribute: &'static str,
    /// The SSA claim it must equal.
    pub(crate) ssa_claim: &'static str,
}

/// One regime's defaults.
pub(crate) struct Defaults {
    /// The registration body is a plain RFC 7591 JSON object (Brazil), not a signed JWT.
    pub(crate) json_body: bool,
    /// Directories' default maximum SSA age, seconds.
    pub(crate) max_ssa_age: Option<u64>,
    /// Default algorithms for SSAs and request JWTs.
    pub(crate) algorithms: &'static [Alg],
    /// SSA claim whose array must hold an entry with `status` `Active` (Brazil).
    pub(crate) active_role_claim: Option<&'static str>,
    pub(crate) ssa_software_jwks: &'static str,
    pub(crate) ssa_redirect_uris: &'static str,
    pub(crate) ssa_uris: &'static [&'static str],
    pub(crate) ssa_roles: &'static str,
    pub(crate) ssa_scope: &'static str,
    pub(crate) ssa_environment: &'static str,
    pub(crate) require_ssa_exp: bool,
    pub(crate) required_claims: &'static [&'static str],
    /// (SSA claim path, required value, required to be present)
    pub(crate) status_checks: &'static [(&'static str, &'static str, bool)],
    pub(crate) auth_methods: &'static [&'static str],
    pub(crate) metadata_algorithms: &'static [&'static str],
    pub(crate) signing_claims: &'static [&'static str],
    pub(crate) grant_types: &'static [&'static str],
    pub(crate) required_grant_types: &'static [&'static str],
    pub(crate) response_types: &'static [&'static str],
    pub(crate) application_types: &'static [&'static str],
    pub(crate) ciba_delivery_modes: &'static [&'static str],
    pub(crate) roles_mode: RolesMode,
    pub(crate) scope_roles: &'static [(&'static str, &'static [&'static str])],
    pub(crate) free_scopes: &'static [&'static str],
    /// The regime's own registration metadata names, besides [`REGISTRATION_METADATA`].
    pub(crate) regime_metadata: &'static [(&'static str, Precedence)],
    /// SSA claims that carry a registration metadata value under another name: (SSA claim,
    /// metadata name). The SSA's software JWKS and redirect claims (`ssa_claims`) are added to
    /// these by the configuration.
    pub(crate) ssa_metadata: &'static [(&'static str, &'static str)],
    /// `audience` on when the configuration does not say (it needs `audiences` then).
    pub(crate) audience: bool,
    /// `certificate_binding` on when the configuration does not say.
    pub(crate) certificate_binding: bool,
    /// What `certificate_binding` compares when its `org` is not configured.
    pub(crate) certificate_org: Option<OrgDefault>,
    /// What `certificate_binding` compares when its `software` is not configured.
    pub(crate) certificate_software: Option<SoftwareDefault>,
    /// Rules the regime cannot do without, with why: the configuration refuses switching them
    /// off (report-only mode still evaluates them without enforcing).
    pub(crate) mandatory: &'static [(RuleId, &'static str)],
}

const SIGNING_CLAIMS: &[&str] = &[
    "id_token_signed_response_alg",
    "request_object_signing_alg",
    "token_endpoint_auth_signing_alg",
];

/// How an SSA's value of a registration metadata name takes precedence over the request's
/// (RFC 7591 §3.1.1) in JSON forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precedence {
    /// The SSA's value replaces the request's.
    Replace,
    /// The request may choose within the SSA's list (the regimes let a registration name a subset
    /// of the SSA's redirect URIs, scopes, webhooks): its value is kept when it is a list of the
    /// same kind (a JSON array, or a space-separated string) whose every entry is in the SSA's;
    /// otherwise the SSA's value replaces it.
    Narrow,
}

/// Client metadata names (RFC 7591 §2, OpenID Connect Dynamic Client Registration 1.0 §2, and
/// the names the IANA "OAuth Dynamic Client Registration Metadata" registry adds: RFC 8705, CIBA,
/// JARM, OpenID Connect logout, RFC 9101, 9126, 9396, 9449). Any of them present in the SSA wins
/// over the request's value; each profile adds its regime's own ([`Defaults::regime_metadata`]).
/// Not here: what the AS issues (`client_id`, `client_secret`, `registration_*`, the dates) and
/// `software_statement` itself.
pub(crate) const REGISTRATION_METADATA: &[(&str, Precedence)] = &[
    // RFC 7591 §2
    ("redirect_uris", Precedence::Narrow),
    ("token_endpoint_auth_method", Precedence::Replace),
    ("grant_types", Precedence::Replace),
    ("response_types", Precedence::Replace),
    ("client_name", Precedence::Replace),
    ("client_uri", Precedence::Replace),
    ("logo_uri", Precedence::Replace),
    ("scope", Precedence::Narrow),
    ("contacts", Precedence::Replace),
    ("tos_uri", Precedence::Replace),
    ("policy_uri", Precedence::Replace),
    ("jwks_uri", Precedence::Replace),
    ("jwks", Precedence::Replace),
    ("software_id", Precedence::Replace),
    ("software_version", Precedence::Replace),
    // OpenID Connect Dynamic Client Registration 1.0 §2
    ("application_type", Precedence::Replace),
    ("sector_identifier_uri", Precedence::Replace),
    ("subject_type", Precedence::Replace),
    ("id_token_signed_response_alg", Precedence::Replace),
    ("id_token_encrypted_response_alg", Precedence::Replace),
    ("id_token_encrypted_response_enc", Precedence::Replace),
    ("userinfo_signed_response_alg", Precedence::Replace),
    ("userinfo_encrypted_response_alg", Precedence::Replace),
    ("userinfo_encrypted_response_enc", Precedence::Replace),
    ("request_object_signing_alg", Precedence::Replace),
    ("request_object_encryption_alg", Precedence::Replace),
    ("request_object_encryption_enc", Precedence::Replace),
    ("token_endpoint_auth_signing_alg", Precedence::Replace),
    ("default_max_age", Precedence::Replace),
    ("require_auth_time", Precedence::Replace),
    ("default_acr_values", Precedence::Replace),
    ("initiate_login_uri", Precedence::Replace),
    ("request_uris", Precedence::Narrow),
    // OpenID Connect front- and back-channel logout, RP-initiated logout
    ("post_logout_redirect_uris", Precedence::Narrow),
    ("frontchannel_logout_uri", Precedence::Replace),
    ("frontchannel_logout_session_required", Precedence::Replace),
    ("backchannel_logout_uri", Precedence::Replace),
    ("backchannel_logout_session_required", Precedence::Replace),
    // RFC 8705 (mutual TLS)
    ("tls_client_auth_subject_dn", Precedence::Replace),
    ("tls_client_auth_san_dns", Precedence::Replace),
    ("tls_client_auth_san_uri", Precedence::Replace),
    ("tls_client_auth_san_ip", Precedence::Replace),
    ("tls_client_auth_san_email", Precedence::Replace),
    (
        "tls_client_certificate_bound_access_tokens",
        Precedence::Replace,
    ),
    // OpenID Connect CIBA
    ("backchannel_token_delivery_mode", Precedence::Replace),
    (
        "backchannel_client_notification_endpoint",
        Precedence::Replace,
    ),
    (
        "backchannel_authentication_request_signing_alg",
        Precedence::Replace,
    ),
    ("backchannel_user_code_parameter", Precedence::Replace),
    // JARM
    ("authorization_signed_response_alg", Precedence::Replace),
    ("authorization_encrypted_response_alg", Precedence::Replace),
    ("authorization_encrypted_response_enc", Precedence::Replace),
    // RFC 9101, 9126, 9396, 9449
    ("require_signed_request_object", Precedence::Replace),
    ("require_pushed_authorization_requests", Precedence::Replace),
    ("authorization_details_types", Precedence::Replace),
    ("dpop_bound_access_tokens", Precedence::Replace),
];

/// The UK and Brazilian directories prefix the RFC 7591 names with `software_`.
const OB_SSA_METADATA: &[(&str, &str)] = &[
    ("software_client_name", "client_name"),
    ("software_logo_uri", "logo_uri"),
    ("software_tos_uri", "tos_uri"),
    ("software_policy_uri", "policy_uri"),
    ("software_client_uri", "client_uri"),
];

pub(crate) const UK_OBIE: Defaults = Defaults {
    json_body: false,
    max_ssa_age: None,
    algorithms: &[Alg::Ps256, Alg::Es256],
    active_role_claim: None,
    ssa_software_jwks: "software_jwks_endpoint",
    ssa_redirect_uris: "software_redirect_uris",
    ssa_uris: &[
        "software_client_uri",
        "software_logo_uri",
        "software_tos_uri",
        "software_policy_uri",
    ],
    ssa_roles: "software_roles",
    ssa_scope: "scope",
    ssa_environment: "software_environment",
    require_ssa_exp: false,
    required_claims: &[
        "iss",
        "iat",
        "exp",
        "jti",
        "aud",
        "redirect_uris",
        "token_endpoint_auth_method",
        "grant_types",
        "software_statement",
        "scope",
        "application_type",
        "id_token_signed_response_alg",
        "request_object_signing_alg",
    ],
    status_checks: &[
        ("org_status", "Active", true),
        (
            "organisation_competent_authority_claims.status",
            "Active",
            false,
        ),
    ],
    auth_methods: &["private_key_jwt", "tls_client_auth"],
    metadata_algorithms: &["PS256", "ES256"],
    signing_claims: SIGNING_CLAIMS,
    grant_types: &[
        "authorization_code",
        "client_credentials",
        "refresh_token",
        "urn:openid:params:grant-type:ciba",
    ],
    required_grant_types: &[],
    response_types: &["code", "code id_token"],
    application_types: &["web", "mobile"],
    ciba_delivery_modes: &["poll", "ping"],
    roles_mode: RolesMode::RoleMapping,
    scope_roles: &[
        ("accounts", &["AISP"]),
        ("payments", &["PISP"]),
        ("fundsconfirmations", &["CBPII"]),
    ],
    free_scopes: &["openid"],
    regime_metadata: &[],
    ssa_metadata: OB_SSA_METADATA,
    audience: true,
    certificate_binding: false,
    // OBIE transport certificates: OU = organisation id, CN = software id.
    certificate_org: Some(OrgDefault {
        attribute: "OU",
        prefix: "",
        ssa_claim: "org_id",
    }),
    certificate_software: Some(SoftwareDefault {
        attribute: "CN",
        ssa_claim: "software_id",
    }),
    mandatory: &[
        SSA_ISSUER,
        SSA_SIGNATURE,
        REQUEST_SIGNATURE,
        REDIRECT_URI_SUBSET,
    ],
};

pub(crate) const AU_CDR: Defaults = Defaults {
    json_body: false,
    max_ssa_age: None,
    algorithms: &[Alg::Ps256, Alg::Es256],
    active_role_claim: None,
    ssa_software_jwks: "jwks_uri",
    ssa_redirect_uris: "redirect_uris",
    ssa_uris: &["client_uri", "logo_uri", "tos_uri", "policy_uri"],
    ssa_roles: "software_roles",
    ssa_scope: "scope",
    ssa_environment: "software_environment",
    require_ssa_exp: true,
    required_claims: &[
        "iss",
        "iat",
        "exp",
        "jti",
        "aud",
        "redirect_uris",
        "token_endpoint_auth_method",
        "token_endpoint_auth_signing_alg",
        "grant_types",
        "response_types",
        "id_token_signed_response_alg",
        "request_object_signing_alg",
        "software_statement",
    ],
    status_checks: &[],
    auth_methods: &["private_key_jwt"],
    metadata_algorithms: &["PS256", "ES256"],
    signing_claims: SIGNING_CLAIMS,
    grant_types: &["authorization_code", "client_credentials", "refresh_token"],
    required_grant_types: &["authorization_code"],
    response_types: &["code", "code id_token"],
    application_types: &["web"],
    ciba_delivery_modes: &["poll", "ping"],
    roles_mode: RolesMode::SsaScope,
    scope_roles: &[],
    free_scopes: &[],
    // The CDR's client registration carries these from the SSA (CDR Register, `ClientRegistration`).
    regime_metadata: &[
        ("client_description", Precedence::Replace),
        ("legal_entity_id", Precedence::Replace),
        ("legal_entity_name", Precedence::Replace),
        ("org_id", Precedence::Replace),
        ("org_name", Precedence::Replace),
        ("recipient_base_uri", Precedence::Replace),
        ("revocation_uri", Precedence::Replace),
        ("software_roles", Precedence::Replace),
    ],
    // The CDR Register's SSA uses the RFC 7591 names.
    ssa_metadata: &[],
    audience: true,
    certificate_binding: false,
    certificate_org: None,
    certificate_software: None,
    mandatory: &[
        SSA_ISSUER,
        SSA_SIGNATURE,
        REQUEST_SIGNATURE,
        REDIRECT_URI_SUBSET,
        (
            RuleId::Audience,
            "CDR requires the request's `aud` to be this data holder's issuer",
        ),
    ],
};

/// Brazil Open Finance: a plain JSON body; identity rests on the SSA and the client certificate.
pub(crate) const BR_OFB: Defaults = Defaults {
    json_body: true,
    max_ssa_age: Some(300),
    algorithms: &[Alg::Ps256],
    active_role_claim: Some("software_statement_roles"),
    ssa_software_jwks: "software_jwks_uri",
    ssa_redirect_uris: "software_redirect_uris",
    ssa_uris: &[
        "software_client_uri",
        "software_logo_uri",
        "software_tos_uri",
        "software_policy_uri",
    ],
    ssa_roles: "software_statement_roles",
    ssa_scope: "scope",
    ssa_environment: "software_environment",
    require_ssa_exp: false,
    required_claims: &[
        "redirect_uris",
        "software_statement",
        "token_endpoint_auth_method",
        "grant_types",
        "response_types",
    ],
    status_checks: &[],
    auth_methods: &[
        "private_key_jwt",
        "tls_client_auth",
        "self_signed_tls_client_auth",
    ],
    metadata_algorithms: &["PS256"],
    signing_claims: SIGNING_CLAIMS,
    grant_types: &[
        "authorization_code",
        "client_credentials",
        "refresh_token",
        "implicit",
    ],
    required_grant_types: &[],
    response_types: &["code", "code id_token"],
    application_types: &["web"],
    ciba_delivery_modes: &["poll", "ping"],
    roles_mode: RolesMode::RoleMapping,
    scope_roles: &[
        ("accounts", &["DADOS"]),
        ("credit-cards-accounts", &["DADOS"]),
        ("customers", &["DADOS"]),
        ("loans", &["DADOS"]),
        ("financings", &["DADOS"]),
        ("invoice-financings", &["DADOS"]),
        ("unarranged-accounts-overdraft", &["DADOS"]),
        ("resources", &["DADOS"]),
        ("bank-fixed-incomes", &["DADOS"]),
        ("credit-fixed-incomes", &["DADOS"]),
        ("variable-incomes", &["DADOS"]),
        ("treasure-titles", &["DADOS"]),
        ("funds", &["DADOS"]),
        ("exchanges", &["DADOS"]),
        ("consents", &["DADOS", "PAGTO"]),
        ("payments", &["PAGTO"]),
        ("recurring-payments", &["PAGTO"]),
    ],
    free_scopes: &["openid"],
    // Open Finance Brasil DCR: the webhooks a payment initiator may be notified at, within the
    // SSA's `software_api_webhook_uris`.
    regime_metadata: &[("webhook_uris", Precedence::Narrow)],
    ssa_metadata: &[
        ("software_client_name", "client_name"),
        ("software_logo_uri", "logo_uri"),
        ("software_tos_uri", "tos_uri"),
        ("software_policy_uri", "policy_uri"),
        ("software_client_uri", "client_uri"),
        ("software_api_webhook_uris", "webhook_uris"),
    ],
    // A plain JSON body has no `aud`.
    audience: false,
    certificate_binding: true,
    certificate_org: Some(OrgDefault {
        attribute: "organizationIdentifier",
        prefix: "OFBBR-",
        ssa_claim: "org_id",
    }),
    certificate_software: Some(SoftwareDefault {
        attribute: "UID",
        ssa_claim: "software_id",
    }),
    mandatory: &[
        SSA_ISSUER,
        SSA_SIGNATURE,
        REDIRECT_URI_SUBSET,
        (
            RuleId::CertificateBinding,
            "a plain JSON body carries no signature: the client certificate bound to the SSA's software is the only proof of possession",
        ),
    ],
};
