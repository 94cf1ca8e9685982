//! The rules of spec §4. Each is a pure function from the validation context (request claims, SSA
//! claims, time) and its parameters to `Ok(())` or a description of the failure; the engine wraps
//! the description in the rule's one error. The engine runs the enabled rules in the fixed order of
//! spec §4a.

pub mod attributes;
pub mod certificate;
pub mod client;
pub mod identity;
pub mod redirect;
pub mod roles;
pub mod status;
pub mod time;

use crate::claims::Claims;
use crate::error::RuleId;

/// What every claim rule sees.
pub struct Ctx<'a> {
    pub request: &'a Claims,
    pub ssa: &'a Claims,
}

/// `software_status`.
#[derive(Debug, Clone, Default)]
pub struct SoftwareStatus {
    /// SSA members (dotted paths) that must equal a value; `required: false` means "when present".
    pub checks: Vec<StatusCheck>,
    /// SSA claim naming the software environment, and the deployment's environment, when set.
    pub environment_claim: String,
    pub environment: Option<String>,
    /// Brazil: this SSA claim (an array of role objects) must hold an entry with `status`
    /// `Active`.
    pub active_role_claim: Option<String>,
}

#[derive(Debug, Clone)]
pub struct StatusCheck {
    pub claim: String,
    pub equals: String,
    pub required: bool,
}

/// `required_attributes`.
#[derive(Debug, Clone, Default)]
pub struct RequiredAttributes {
    pub claims: Vec<String>,
    /// Allowed values per claim (string claims, each element of array claims, each `scope` token).
    pub allowed_values: Vec<(String, Vec<String>)>,
}

/// `audience`.
#[derive(Debug, Clone, Default)]
pub struct Audience {
    pub audiences: Vec<String>,
}

/// `redirect_uri_format`, `redirect_uri_subset`, `uri_hostname`.
#[derive(Debug, Clone, Default)]
pub struct RedirectUris {
    pub max_length: usize,
    /// SSA claim with the registered redirect URIs.
    pub ssa_claim: String,
    /// SSA claims with the software's other URIs (client, logo, terms, policy).
    pub ssa_uri_claims: Vec<String>,
}

/// `token_endpoint_auth`.
#[derive(Debug, Clone, Default)]
pub struct TokenEndpointAuth {
    pub methods: Vec<String>,
    pub signing_algorithms: Vec<String>,
}

/// `signing_algorithms`.
#[derive(Debug, Clone, Default)]
pub struct SigningAlgorithms {
    pub algorithms: Vec<String>,
    pub claims: Vec<String>,
}

/// `grant_and_response_types`.
#[derive(Debug, Clone, Default)]
pub struct GrantTypes {
    pub grant_types: Vec<String>,
    pub required_grant_types: Vec<String>,
    pub response_types: Vec<String>,
    pub application_types: Vec<String>,
    pub ciba_delivery_modes: Vec<String>,
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
    pub mode: RolesMode,
    pub roles_claim: String,
    pub ssa_scope_claim: String,
    pub scope_roles: Vec<(String, Vec<String>)>,
    pub free_scopes: Vec<String>,
}

/// The claim rules, each `None` when switched off.
#[derive(Debug, Clone, Default)]
pub struct ClaimRules {
    pub software_status: Option<SoftwareStatus>,
    pub required_attributes: Option<RequiredAttributes>,
    pub issuer: bool,
    pub audience: Option<Audience>,
    pub redirect_uri_format: bool,
    pub redirect_uri_subset: bool,
    pub uri_hostname: bool,
    pub redirect_uris: RedirectUris,
    pub token_endpoint_auth: Option<TokenEndpointAuth>,
    pub signing_algorithms: Option<SigningAlgorithms>,
    pub grant_and_response_types: Option<GrantTypes>,
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
/// [`crate::pipeline::SsaMemo`]).
pub const SSA_ONLY_RULES: [RuleId; 2] = [RuleId::SoftwareStatus, RuleId::UriHostname];

/// A claim rule's bit in the masks of [`ClaimRules::run_known`].
pub fn rule_bit(id: RuleId) -> u32 {
    CLAIM_RULE_ORDER
        .iter()
        .position(|r| *r == id)
        .map_or(0, |i| 1u32 << i)
}

impl ClaimRules {
    /// Run one rule; `None` when it is switched off (or not a claim rule).
    pub fn check(&self, id: RuleId, ctx: &Ctx<'_>) -> Option<Result<(), String>> {
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
    pub fn run_known(
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
