//! The rules of spec §4. Each is a pure function from the validation context (request claims, SSA
//! claims, time) and its parameters to `Ok(())` or a description of the failure; the engine wraps
//! the description in the rule's one error. The engine runs the enabled rules in the fixed order of
//! spec §4a.

pub(crate) mod attributes;
pub(crate) mod certificate;
pub(crate) mod client;
pub(crate) mod identity;
pub(crate) mod redirect;
pub(crate) mod roles;
pub(crate) mod status;
pub(crate) mod time;

pub use certificate::{CertificateBinding, OrgCheck, SoftwareCheck};

use crate::claims::Claims;
use crate::error::RuleId;

/// What every claim rule sees.
pub struct Ctx<'a> {
    /// The registration's claims (the request JWT's, or the JSON body's).
    pub request: &'a Claims,
    /// The verified SSA's claims.
    pub ssa: &'a Claims,
}

/// `software_status`.
#[derive(Debug, Clone, Default)]
pub struct SoftwareStatus {
    /// SSA members (dotted paths) that must equal a value; `required: false` means "when present".
    pub checks: Vec<StatusCheck>,
    /// SSA claim naming the software environment, and the deployment's environment, when set.
    pub environment_claim: String,
    /// The environment the SSA must name (`None`: not checked).
    pub environment: Option<String>,
    /// Brazil: this SSA claim (an array of role objects) must hold an entry with `status`
    /// `Active`.
    pub active_role_claim: Option<String>,
}

/// One `software_status` check: SSA member `claim` must equal `equals`.
#[derive(Debug, Clone)]
pub struct StatusCheck {
    /// The SSA member, a dotted path.
    pub claim: String,
    /// The value it must have.
    pub equals: String,
    /// An SSA without the member fails (otherwise it is checked only when present).
    pub required: bool,
}

/// `required_attributes`.
#[derive(Debug, Clone, Default)]
pub struct RequiredAttributes {
    /// Claims the registration must carry.
    pub claims: Vec<String>,
    /// Allowed values per claim (string claims, each element of array claims, each `scope` token).
    pub allowed_values: Vec<(String, Vec<String>)>,
}

/// `audience`.
#[derive(Debug, Clone, Default)]
pub struct Audience {
    /// The `aud` values that name this bank; the request's `aud` must hold one.
    pub audiences: Vec<String>,
}

/// `redirect_uri_format`, `redirect_uri_subset`, `uri_hostname`.
#[derive(Debug, Clone, Default)]
pub struct RedirectUris {
    /// Longest URI accepted, characters.
    pub max_length: usize,
    /// SSA claim with the registered redirect URIs.
    pub ssa_claim: String,
    /// SSA claims with the software's other URIs (client, logo, terms, policy).
    pub ssa_uri_claims: Vec<String>,
}

/// `token_endpoint_auth`.
#[derive(Debug, Clone, Default)]
pub struct TokenEndpointAuth {
    /// `token_endpoint_auth_method` values allowed.
    pub methods: Vec<String>,
    /// `token_endpoint_auth_signing_alg` values allowed.
    pub signing_algorithms: Vec<String>,
}

/// `signing_algorithms`.
#[derive(Debug, Clone, Default)]
pub struct SigningAlgorithms {
    /// Algorithm names allowed (never `none` or HS*).
    pub algorithms: Vec<String>,
    /// The metadata claims whose value must be one of them.
    pub claims: Vec<String>,
}

/// `grant_and_response_types`.
#[derive(Debug, Clone, Default)]
pub struct GrantTypes {
    /// `grant_types` values allowed.
    pub grant_types: Vec<String>,
    /// `grant_types` values that must be present.
    pub required_grant_types: Vec<String>,
    /// `response_types` values allowed (compared regardless of word order).
    pub response_types: Vec<String>,
    /// `application_type` values allowed.
    pub application_types: Vec<String>,
    /// CIBA: `backchannel_token_delivery_mode` values allowed.
    pub ciba_delivery_modes: Vec<String>,
    /// CIBA: `backchannel_authentication_request_signing_alg` values allowed.
    pub ciba_signing_algorithms: Vec<String>,
}

/// How `software_roles` decides which scopes the software may request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RolesMode {
    /// UK: each scope needs one of the roles mapped to it in the SSA's roles claim.
    #[default]
    RoleMapping,
    /// AU: requested scopes ⊆ the SSA's `scope`.
    SsaScope,
}

/// `software_roles`.
#[derive(Debug, Clone, Default)]
pub struct SoftwareRoles {
    /// How the allowed scopes are found.
    pub mode: RolesMode,
    /// SSA claim with the software's roles (`role_mapping`).
    pub roles_claim: String,
    /// SSA claim with the software's scopes (`ssa_scope`).
    pub ssa_scope_claim: String,
    /// Each scope and the roles that allow it (`role_mapping`).
    pub scope_roles: Vec<(String, Vec<String>)>,
    /// Scopes any software may request.
    pub free_scopes: Vec<String>,
}

/// The claim rules, each `None` when switched off.
#[derive(Debug, Clone, Default)]
pub struct ClaimRules {
    /// `software_status`.
    pub software_status: Option<SoftwareStatus>,
    /// `required_attributes`.
    pub required_attributes: Option<RequiredAttributes>,
    /// `issuer`: the request comes from the software the SSA describes.
    pub issuer: bool,
    /// `audience`.
    pub audience: Option<Audience>,
    /// `redirect_uri_format`.
    pub redirect_uri_format: bool,
    /// `redirect_uri_subset`.
    pub redirect_uri_subset: bool,
    /// `uri_hostname`.
    pub uri_hostname: bool,
    /// What the three redirect rules read.
    pub redirect_uris: RedirectUris,
    /// `token_endpoint_auth`.
    pub token_endpoint_auth: Option<TokenEndpointAuth>,
    /// `signing_algorithms`.
    pub signing_algorithms: Option<SigningAlgorithms>,
    /// `grant_and_response_types`.
    pub grant_and_response_types: Option<GrantTypes>,
    /// `software_roles`.
    pub software_roles: Option<SoftwareRoles>,
}

/// The claim rules in the order of spec §4a (step 8).
pub const CLAIM_RULE_ORDER: [RuleId; 11] = [
    RuleId::SoftwareStatus,
    RuleId::RequiredAttributes,
    RuleId::Issuer,
    RuleId::Audience,
    RuleId::RedirectUriFormat,
    RuleId::RedirectUriSubset,
    RuleId::UriHostname,
    RuleId::TokenEndpointAuth,
    RuleId::SigningAlgorithms,
    RuleId::GrantAndResponseTypes,
    RuleId::SoftwareRoles,
];

/// Claim rules that read nothing but the SSA (and the configuration): their outcome for one exact
/// SSA never changes, so a TPP reusing its SSA need not run them again (see
/// [`crate::keys::SsaMemo`]).
pub(crate) const SSA_ONLY_RULES: [RuleId; 2] = [RuleId::SoftwareStatus, RuleId::UriHostname];

/// A claim rule's bit in the masks of [`ClaimRules::run_known`].
pub(crate) fn rule_bit(id: RuleId) -> u32 {
    CLAIM_RULE_ORDER
        .iter()
        .position(|r| *r == id)
        .map_or(0, |i| 1u32 << i)
}

impl ClaimRules {
    /// Run one rule; `None` when it is switched off (or not a claim rule).
    pub(crate) fn check(&self, id: RuleId, ctx: &Ctx<'_>) -> Option<Result<(), String>> {
        let r = &self.redirect_uris;
        match id {
            RuleId::SoftwareStatus => self
                .software_status
                .as_ref()
                .map(|p| status::software_status(ctx, p)),
            RuleId::RequiredAttributes => self
                .required_attributes
                .as_ref()
                .map(|p| attributes::required_attributes(ctx, p)),
            RuleId::Issuer => self.issuer.then(|| identity::issuer(ctx)),
            RuleId::Audience => self.audience.as_ref().map(|p| identity::audience(ctx, p)),
            RuleId::RedirectUriFormat => self.redirect_uri_format.then(|| redirect::format(ctx, r)),
            RuleId::RedirectUriSubset => self.redirect_uri_subset.then(|| redirect::subset(ctx, r)),
            RuleId::UriHostname => self.uri_hostname.then(|| redirect::hostname(ctx, r)),
            RuleId::TokenEndpointAuth => self
                .token_endpoint_auth
                .as_ref()
                .map(|p| client::token_endpoint_auth(ctx, p)),
            RuleId::SigningAlgorithms => self
                .signing_algorithms
                .as_ref()
                .map(|p| client::signing_algorithms(ctx, p)),
            RuleId::GrantAndResponseTypes => self
                .grant_and_response_types
                .as_ref()
                .map(|p| client::grant_and_response_types(ctx, p)),
            RuleId::SoftwareRoles => self
                .software_roles
                .as_ref()
                .map(|p| roles::software_roles(ctx, p)),
            _ => None,
        }
    }

    /// Whether claim rule `id` is switched on (`false` for a rule that is not a claim rule).
    pub fn is_on(&self, id: RuleId) -> bool {
        match id {
            RuleId::SoftwareStatus => self.software_status.is_some(),
            RuleId::RequiredAttributes => self.required_attributes.is_some(),
            RuleId::Issuer => self.issuer,
            RuleId::Audience => self.audience.is_some(),
            RuleId::RedirectUriFormat => self.redirect_uri_format,
            RuleId::RedirectUriSubset => self.redirect_uri_subset,
            RuleId::UriHostname => self.uri_hostname,
            RuleId::TokenEndpointAuth => self.token_endpoint_auth.is_some(),
            RuleId::SigningAlgorithms => self.signing_algorithms.is_some(),
            RuleId::GrantAndResponseTypes => self.grant_and_response_types.is_some(),
            RuleId::SoftwareRoles => self.software_roles.is_some(),
            _ => false,
        }
    }

    /// Run the enabled claim rules in order, calling `fail` for each failure; with
    /// `stop_at_first` (enforcing mode) stop at the first.
    pub fn run(&self, ctx: &Ctx<'_>, stop_at_first: bool, fail: &mut dyn FnMut(RuleId, String)) {
        self.run_known(ctx, stop_at_first, 0, fail);
    }

    /// [`ClaimRules::run`], skipping the rules of [`SSA_ONLY_RULES`] in `passed` (a mask of
    /// [`rule_bit`]s: rules known to pass for this exact SSA under this configuration). Returns
    /// the mask of the SSA-only rules that passed, the skipped ones included.
    pub(crate) fn run_known(
        &self,
        ctx: &Ctx<'_>,
        stop_at_first: bool,
        passed: u32,
        fail: &mut dyn FnMut(RuleId, String),
    ) -> u32 {
        let mut out = passed;
        for id in CLAIM_RULE_ORDER {
            let bit = rule_bit(id);
            if passed & bit != 0 && SSA_ONLY_RULES.contains(&id) {
                continue;
            }
            match self.check(id, ctx) {
                Some(Err(why)) => {
                    fail(id, why);
                    if stop_at_first {
                        return out;
                    }
                }
                Some(Ok(())) if SSA_ONLY_RULES.contains(&id) => out |= bit,
                _ => {}
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::type_complexity)]
mod tests;
