//! Table-driven tests of every claim rule.
//!
//! Each test builds a realistic UK (or AU) request / SSA pair, applies a per-case patch (set claims,
//! delete claims with the `DEL` marker) and checks the rule's verdict: `Ok(())`, or an error whose
//! message contains an expected fragment (so a case fails for the right reason).

use super::*;
use crate::error::RuleId;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Fixtures and helpers
// ---------------------------------------------------------------------------------------------

/// In a patch, a claim set to this value is deleted.
const DEL: &str = "\u{0}<delete>";

const SOFTWARE_ID: &str = "1p8bGrHhJRrphjFk0qwNAU";
const BANK_ORG: &str = "0015800001HQQrZAAX";
const BANK_AS: &str = "https://bank.example/as";
const CIBA: &str = "urn:openid:params:grant-type:ciba";

const UK_MANDATORY: [&str; 13] = [
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
];

fn obj(v: Value) -> Claims {
    v.as_object().unwrap().clone()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// `base` with every member of `patch` set (or deleted when its value is `DEL`).
fn patched(base: &Claims, patch: &Value) -> Claims {
    let mut out = base.clone();
    for (k, v) in patch.as_object().unwrap() {
        if v.as_str() == Some(DEL) {
            out.remove(k);
        } else {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

/// A realistic UK OBIE SSA (claims as the Open Banking directory issues them).
fn uk_ssa() -> Claims {
    obj(json!({
        "iss": "OpenBanking Ltd",
        "iat": 1_700_000_000,
        "jti": "a6e0b5bc-4d0c-4c41-8e0e-6c8c2d1c4f1a",
        "software_environment": "sandbox",
        "software_mode": "Test",
        "software_id": SOFTWARE_ID,
        "software_client_id": SOFTWARE_ID,
        "software_client_name": "TPP Example",
        "software_client_description": "An example TPP",
        "software_version": "1.0",
        "software_client_uri": "https://tpp.example.com",
        "software_redirect_uris": ["https://tpp.example.com/cb", "https://tpp.example.com/cb2"],
        "software_roles": ["AISP", "PISP"],
        "organisation_competent_authority_claims": {
            "authority_id": "FCAGBR",
            "registration_id": "123456",
            "status": "Active",
            "authorisations": [
                {"member_state": "GB", "roles": ["AISP", "PISP"]}
            ]
        },
        "software_logo_uri": "https://tpp.example.com/logo.png",
        "org_status": "Active",
        "org_id": "0015800001041RHAAY",
        "org_name": "TPP Example Ltd",
        "org_contacts": [{"name": "Ops", "email": "ops@tpp.example.com", "type": "Technical"}],
        "org_jwks_endpoint": "https://keystore.openbankingtest.org.uk/0015800001041RHAAY/0015800001041RHAAY.jwks",
        "software_jwks_endpoint": "https://keystore.openbankingtest.org.uk/0015800001041RHAAY/1p8bGrHhJRrphjFk0qwNAU.jwks",
        "software_policy_uri": "https://tpp.example.com/policy",
        "software_tos_uri": "https://tpp.example.com/tos",
        "software_on_behalf_of_org": ""
    }))
}

/// A realistic UK OBIE DCR 3.3 request (the claims of the request JWT).
fn uk_request() -> Claims {
    obj(json!({
        "iss": SOFTWARE_ID,
        "iat": 1_700_000_000,
        "exp": 1_700_003_600,
        "jti": "37747cd1-c105-4569-9f75-4adf28b73e31",
        "aud": BANK_ORG,
        "redirect_uris": ["https://tpp.example.com/cb"],
        "token_endpoint_auth_method": "private_key_jwt",
        "token_endpoint_auth_signing_alg": "PS256",
        "grant_types": ["authorization_code", "client_credentials", "refresh_token"],
        "response_types": ["code id_token"],
        "software_id": SOFTWARE_ID,
        "scope": "openid accounts payments",
        "software_statement": "eyJhbGciOiJQUzI1NiJ9.eyJpc3MiOiJPcGVuQmFua2luZyBMdGQifQ.c2ln",
        "application_type": "web",
        "id_token_signed_response_alg": "PS256",
        "request_object_signing_alg": "PS256"
    }))
}

/// A realistic AU CDR SSA (register-issued).
fn au_ssa() -> Claims {
    obj(json!({
        "iss": "cdr-register",
        "iat": 1_700_000_000,
        "exp": 1_700_000_600,
        "jti": "4e9a1c1d6a7b4c8d",
        "legal_entity_id": "3B0B0A7B-3E7B-4A2C-9B4E-2D1D8F0B9A11",
        "org_id": "20C0864B-CEEF-4DE0-8944-EB0962F825EB",
        "software_id": "740C368F-ECF9-4D29-A2EA-0514A66FA966",
        "client_uri": "https://adr.example.com",
        "redirect_uris": ["https://adr.example.com/cb"],
        "jwks_uri": "https://adr.example.com/jwks",
        "software_roles": "data-recipient-software-product",
        "scope": "openid profile bank:accounts.basic:read bank:transactions:read common:customer.basic:read"
    }))
}

fn uk_status(environment: Option<&str>) -> SoftwareStatus {
    SoftwareStatus {
        checks: vec![
            StatusCheck {
                claim: "org_status".to_string(),
                equals: "Active".to_string(),
                required: true,
            },
            StatusCheck {
                claim: "organisation_competent_authority_claims.status".to_string(),
                equals: "Active".to_string(),
                required: false,
            },
        ],
        environment_claim: "software_environment".to_string(),
        environment: environment.map(str::to_string),
        active_role_claim: None,
    }
}

fn uk_required() -> RequiredAttributes {
    RequiredAttributes {
        claims: strings(&UK_MANDATORY),
        allowed_values: Vec::new(),
    }
}

fn uk_audience() -> Audience {
    Audience {
        audiences: strings(&[BANK_ORG, BANK_AS]),
    }
}

fn uk_redirects() -> RedirectUris {
    RedirectUris {
        max_length: 256,
        ssa_claim: "software_redirect_uris".to_string(),
        ssa_uri_claims: strings(&[
            "software_client_uri",
            "software_logo_uri",
            "software_tos_uri",
            "software_policy_uri",
        ]),
    }
}

fn uk_token_endpoint_auth() -> TokenEndpointAuth {
    TokenEndpointAuth {
        methods: strings(&["private_key_jwt", "tls_client_auth"]),
        signing_algorithms: strings(&["PS256", "ES256"]),
    }
}

fn uk_signing_algorithms() -> SigningAlgorithms {
    SigningAlgorithms {
        algorithms: strings(&["PS256", "ES256"]),
        claims: strings(&[
            "id_token_signed_response_alg",
            "request_object_signing_alg",
            "token_endpoint_auth_signing_alg",
        ]),
    }
}

fn uk_grants() -> GrantTypes {
    GrantTypes {
        grant_types: strings(&[
            "authorization_code",
            "client_credentials",
            "refresh_token",
            CIBA,
        ]),
        required_grant_types: Vec::new(),
        response_types: strings(&["code", "code id_token"]),
        application_types: strings(&["web", "mobile"]),
        ciba_delivery_modes: strings(&["poll", "ping"]),
        ciba_signing_algorithms: strings(&["PS256", "ES256"]),
    }
}

fn au_grants() -> GrantTypes {
    GrantTypes {
        grant_types: strings(&["authorization_code", "client_credentials", "refresh_token"]),
        required_grant_types: strings(&["authorization_code"]),
        response_types: strings(&["code", "code id_token"]),
        application_types: strings(&["web"]),
        ciba_delivery_modes: Vec::new(),
        ciba_signing_algorithms: Vec::new(),
    }
}

fn uk_roles() -> SoftwareRoles {
    SoftwareRoles {
        mode: RolesMode::RoleMapping,
        roles_claim: "software_roles".to_string(),
        ssa_scope_claim: String::new(),
        scope_roles: vec![
            ("accounts".to_string(), strings(&["AISP"])),
            ("payments".to_string(), strings(&["PISP"])),
            ("fundsconfirmations".to_string(), strings(&["CBPII"])),
        ],
        free_scopes: strings(&["openid"]),
    }
}

fn au_roles() -> SoftwareRoles {
    SoftwareRoles {
        mode: RolesMode::SsaScope,
        roles_claim: "software_roles".to_string(),
        ssa_scope_claim: "scope".to_string(),
        scope_roles: Vec::new(),
        free_scopes: Vec::new(),
    }
}

/// Every claim rule on, UK parameters.
fn uk_rules() -> ClaimRules {
    ClaimRules {
        software_status: Some(uk_status(Some("sandbox"))),
        required_attributes: Some(uk_required()),
        issuer: true,
        audience: Some(uk_audience()),
        redirect_uri_format: true,
        redirect_uri_subset: true,
        uri_hostname: true,
        redirect_uris: uk_redirects(),
        token_endpoint_auth: Some(uk_token_endpoint_auth()),
        signing_algorithms: Some(uk_signing_algorithms()),
        grant_and_response_types: Some(uk_grants()),
        software_roles: Some(uk_roles()),
    }
}

/// Why the verdict `got` of case `name` does not match `want` (`Err(fragment)`: the message contains
/// it, and is a non-empty description of at most 500 characters), or `None` when it does.
fn mismatch(name: &str, got: &Result<(), String>, want: &Result<(), &str>) -> Option<String> {
    match (want, got) {
        (Ok(()), Ok(())) => None,
        (Err(fragment), Err(msg)) if !msg.contains(fragment) => Some(format!(
            "case `{name}`: error `{msg}` does not contain `{fragment}`"
        )),
        (Err(_), Err(msg)) if msg.trim().is_empty() || msg.chars().count() > 500 => Some(format!(
            "case `{name}`: bad description length {}: `{msg}`",
            msg.chars().count()
        )),
        (Err(_), Err(_)) => None,
        _ => Some(format!("case `{name}`: expected {want:?}, got {got:?}")),
    }
}

/// Assert one verdict.
fn verdict(name: &str, got: &Result<(), String>, want: &Result<(), &str>) {
    if let Some(why) = mismatch(name, got, want) {
        panic!("{why}");
    }
}

/// A case: name, request patch, SSA patch, expected verdict.
type Case = (&'static str, Value, Value, Result<(), &'static str>);

/// Run `rule` over `cases`, each patching the base request and SSA; report every failing case.
fn run_cases(
    base_request: &Claims,
    base_ssa: &Claims,
    cases: &[Case],
    rule: &dyn Fn(&Ctx<'_>) -> Result<(), String>,
) {
    let mut failed = Vec::new();
    for (name, req_patch, ssa_patch, want) in cases {
        let req = patched(base_request, req_patch);
        let ssa = patched(base_ssa, ssa_patch);
        let got = rule(&Ctx {
            request: &req,
            ssa: &ssa,
        });
        failed.extend(mismatch(name, &got, want));
    }
    assert!(
        failed.is_empty(),
        "{} of {} cases failed:\n{}",
        failed.len(),
        cases.len(),
        failed.join("\n")
    );
}

fn none() -> Value {
    json!({})
}

// ---------------------------------------------------------------------------------------------
// 1. software_status
// ---------------------------------------------------------------------------------------------

#[test]
fn software_status_uk_with_environment() {
    let p = uk_status(Some("sandbox"));
    let cases: Vec<Case> = vec![
        ("active passes", none(), none(), Ok(())),
        (
            "org Inactive fails",
            none(),
            json!({"org_status": "Inactive"}),
            Err("`org_status` is `Inactive`, not `Active`"),
        ),
        (
            "org Revoked fails",
            none(),
            json!({"org_status": "Revoked"}),
            Err("`org_status` is `Revoked`"),
        ),
        (
            "org status is case-sensitive (active)",
            none(),
            json!({"org_status": "active"}),
            Err("`org_status` is `active`"),
        ),
        (
            "org status with padding is not Active",
            none(),
            json!({"org_status": " Active"}),
            Err("`org_status`"),
        ),
        (
            "org status empty",
            none(),
            json!({"org_status": ""}),
            Err("`org_status` is ``"),
        ),
        (
            "org_status missing fails",
            none(),
            json!({"org_status": DEL}),
            Err("SSA claim `org_status` not found"),
        ),
        (
            "org_status number",
            none(),
            json!({"org_status": 1}),
            Err("SSA claim `org_status` must be a string, not a number"),
        ),
        (
            "org_status null",
            none(),
            json!({"org_status": null}),
            Err("SSA claim `org_status` must be a string, not null"),
        ),
        (
            "org_status bool",
            none(),
            json!({"org_status": true}),
            Err("`org_status` must be a string, not a boolean"),
        ),
        (
            "org_status array",
            none(),
            json!({"org_status": ["Active"]}),
            Err("`org_status` must be a string, not an array"),
        ),
        (
            "org_status object",
            none(),
            json!({"org_status": {"value": "Active"}}),
            Err("`org_status` must be a string, not an object"),
        ),
        (
            "long org_status value is clipped",
            none(),
            json!({"org_status": "X".repeat(5000)}),
            Err("`org_status` is `XXXX"),
        ),
        (
            "nested status Revoked fails",
            none(),
            json!({"organisation_competent_authority_claims": {"authority_id": "FCAGBR", "status": "Revoked"}}),
            Err("`organisation_competent_authority_claims.status` is `Revoked`, not `Active`"),
        ),
        (
            "nested status Inactive fails",
            none(),
            json!({"organisation_competent_authority_claims": {"status": "Inactive"}}),
            Err("`organisation_competent_authority_claims.status` is `Inactive`"),
        ),
        (
            "nested claims absent passes",
            none(),
            json!({"organisation_competent_authority_claims": DEL}),
            Ok(()),
        ),
        (
            "nested object without status passes",
            none(),
            json!({"organisation_competent_authority_claims": {"authority_id": "FCAGBR"}}),
            Ok(()),
        ),
        (
            "nested status number",
            none(),
            json!({"organisation_competent_authority_claims": {"status": 1}}),
            Err("`organisation_competent_authority_claims.status` must be a string, not a number"),
        ),
        (
            "nested status null",
            none(),
            json!({"organisation_competent_authority_claims": {"status": null}}),
            Err("`organisation_competent_authority_claims.status` must be a string, not null"),
        ),
        (
            "org_status checked before the nested status",
            none(),
            json!({"org_status": "Revoked", "organisation_competent_authority_claims": {"status": "Revoked"}}),
            Err("`org_status` is `Revoked`"),
        ),
        (
            "environment production vs sandbox fails",
            none(),
            json!({"software_environment": "production"}),
            Err("SSA is for the `production` environment, this deployment serves `sandbox`"),
        ),
        (
            "environment live vs sandbox fails",
            none(),
            json!({"software_environment": "live"}),
            Err("`live` environment"),
        ),
        (
            "environment empty fails",
            none(),
            json!({"software_environment": ""}),
            Err("environment"),
        ),
        (
            "environment claim missing fails",
            none(),
            json!({"software_environment": DEL}),
            Err("SSA claim `software_environment` not found"),
        ),
        (
            "environment claim number",
            none(),
            json!({"software_environment": 7}),
            Err("SSA claim `software_environment` must be a string, not a number"),
        ),
        (
            "environment claim null",
            none(),
            json!({"software_environment": null}),
            Err("`software_environment` must be a string, not null"),
        ),
        (
            "environment claim array",
            none(),
            json!({"software_environment": ["sandbox"]}),
            Err("`software_environment` must be a string, not an array"),
        ),
        (
            "status checked before environment",
            none(),
            json!({"org_status": "Revoked", "software_environment": "production"}),
            Err("`org_status` is `Revoked`"),
        ),
    ];
    run_cases(&uk_request(), &uk_ssa(), &cases, &|ctx| {
        status::software_status(ctx, &p)
    });
}

#[test]
fn software_status_environment_not_configured_is_not_checked() {
    let p = uk_status(None);
    let cases: Vec<Case> = vec![
        ("sandbox passes", none(), none(), Ok(())),
        (
            "production passes",
            none(),
            json!({"software_environment": "production"}),
            Ok(()),
        ),
        (
            "missing passes",
            none(),
            json!({"software_environment": DEL}),
            Ok(()),
        ),
        (
            "wrong type is not read",
            none(),
            json!({"software_environment": 7}),
            Ok(()),
        ),
        (
            "status still checked",
            none(),
            json!({"org_status": "Revoked"}),
            Err("`org_status` is `Revoked`"),
        ),
    ];
    run_cases(&uk_request(), &uk_ssa(), &cases, &|ctx| {
        status::software_status(ctx, &p)
    });
}

#[test]
fn software_status_no_checks_configured_passes_anything() {
    let p = SoftwareStatus::default();
    let cases: Vec<Case> = vec![
        (
            "empty params",
            none(),
            json!({"org_status": "Revoked"}),
            Ok(()),
        ),
        (
            "missing everything",
            none(),
            json!({"org_status": DEL}),
            Ok(()),
        ),
    ];
    run_cases(&uk_request(), &uk_ssa(), &cases, &|ctx| {
        status::software_status(ctx, &p)
    });
}

/// Spec §4: "Claims of the wrong JSON type … fail the rule that reads them, with a description naming
/// the claim". `get_path` treats a non-object parent as "absent", and the nested check is optional,
/// so the competent-authority status is silently skipped: fail-open.
#[test]
fn software_status_nested_parent_of_wrong_type_must_fail() {
    let p = uk_status(Some("sandbox"));
    let cases: Vec<Case> = vec![
        (
            "parent is an array holding a Revoked authority",
            none(),
            json!({"organisation_competent_authority_claims": [{"authority_id": "FCAGBR", "status": "Revoked"}]}),
            Err("organisation_competent_authority_claims"),
        ),
        (
            "parent is a string",
            none(),
            json!({"organisation_competent_authority_claims": "Revoked"}),
            Err("organisation_competent_authority_claims"),
        ),
        (
            "parent is a number",
            none(),
            json!({"organisation_competent_authority_claims": 5}),
            Err("organisation_competent_authority_claims"),
        ),
    ];
    run_cases(&uk_request(), &uk_ssa(), &cases, &|ctx| {
        status::software_status(ctx, &p)
    });
}

// ---------------------------------------------------------------------------------------------
// 2. required_attributes
// ---------------------------------------------------------------------------------------------

#[test]
fn required_attributes_presence() {
    let p = uk_required();
    let ssa = uk_ssa();
    let base = uk_request();

    // All present passes.
    verdict(
        "all present",
        &attributes::required_attributes(
            &Ctx {
                request: &base,
                ssa: &ssa,
            },
            &p,
        ),
        &Ok(()),
    );

    // Each mandatory claim missing, null: named in the message.
    for claim in UK_MANDATORY {
        let missing = patched(&base, &json!({ claim: DEL }));
        let got = attributes::required_attributes(
            &Ctx {
                request: &missing,
                ssa: &ssa,
            },
            &p,
        );
        verdict(
            &format!("{claim} missing"),
            &got,
            &Err(&format!("{claim} not found")),
        );

        let null = patched(&base, &json!({ claim: null }));
        let got = attributes::required_attributes(
            &Ctx {
                request: &null,
                ssa: &ssa,
            },
            &p,
        );
        verdict(
            &format!("{claim} null"),
            &got,
            &Err(&format!("{claim} cannot be null")),
        );

        for (label, empty) in [
            ("empty string", json!("")),
            ("blank string", json!("  ")),
            ("tab/newline string", json!("\t\n")),
            ("empty array", json!([])),
            ("empty object", json!({})),
        ] {
            let req = patched(&base, &json!({ claim: empty }));
            let got = attributes::required_attributes(
                &Ctx {
                    request: &req,
                    ssa: &ssa,
                },
                &p,
            );
            verdict(
                &format!("{claim} {label}"),
                &got,
                &Err(&format!("{claim} cannot be empty")),
            );
        }
    }

    let cases: Vec<Case> = vec![
        (
            "only the first missing claim is reported",
            json!({"jti": DEL, "scope": DEL}),
            none(),
            Err("jti not found"),
        ),
        (
            "blank iss",
            json!({"iss": "  "}),
            none(),
            Err("iss cannot be empty"),
        ),
        (
            "empty redirect_uris",
            json!({"redirect_uris": []}),
            none(),
            Err("redirect_uris cannot be empty"),
        ),
        (
            "empty grant_types",
            json!({"grant_types": []}),
            none(),
            Err("grant_types cannot be empty"),
        ),
        (
            "presence does not judge types (number iat, non-empty values)",
            json!({"iat": 0, "exp": -1, "aud": [BANK_ORG]}),
            none(),
            Ok(()),
        ),
        (
            "false is present",
            json!({"application_type": false}),
            none(),
            Ok(()),
        ),
        (
            "extra claims are fine",
            json!({"client_name": "x", "logo_uri": "https://tpp.example.com/l.png"}),
            none(),
            Ok(()),
        ),
        (
            "SSA contents do not matter",
            none(),
            json!({"iss": DEL, "software_id": DEL}),
            Ok(()),
        ),
    ];
    run_cases(&base, &ssa, &cases, &|ctx| {
        attributes::required_attributes(ctx, &p)
    });
}

#[test]
fn required_attributes_allowed_values() {
    let p = RequiredAttributes {
        claims: strings(&UK_MANDATORY),
        allowed_values: vec![
            (
                "token_endpoint_auth_method".to_string(),
                strings(&["private_key_jwt", "tls_client_auth"]),
            ),
            (
                "grant_types".to_string(),
                strings(&["authorization_code", "client_credentials", "refresh_token"]),
            ),
            (
                "scope".to_string(),
                strings(&["openid", "accounts", "payments"]),
            ),
            ("application_type".to_string(), strings(&["web", "mobile"])),
            (
                "response_types".to_string(),
                strings(&["code", "code id_token"]),
            ),
        ],
    };
    let cases: Vec<Case> = vec![
        ("all allowed", none(), none(), Ok(())),
        (
            "string value not allowed",
            json!({"token_endpoint_auth_method": "client_secret_basic"}),
            none(),
            Err("Invalid token_endpoint_auth_method: `client_secret_basic` is not allowed"),
        ),
        (
            "string value case differs",
            json!({"application_type": "WEB"}),
            none(),
            Err("Invalid application_type: `WEB`"),
        ),
        (
            "array element not allowed",
            json!({"grant_types": ["authorization_code", "implicit"]}),
            none(),
            Err("Invalid grant_types: `implicit` is not allowed"),
        ),
        (
            "array first element not allowed",
            json!({"grant_types": ["password"]}),
            none(),
            Err("`password`"),
        ),
        (
            "array element is a number",
            json!({"grant_types": ["authorization_code", 1]}),
            none(),
            Err("Invalid grant_types: must hold only strings, not a number"),
        ),
        (
            "array element is null",
            json!({"grant_types": [null]}),
            none(),
            Err("must hold only strings, not null"),
        ),
        (
            "array element is an object",
            json!({"grant_types": [{"g": "authorization_code"}]}),
            none(),
            Err("must hold only strings, not an object"),
        ),
        (
            "array element is a nested array",
            json!({"grant_types": [["authorization_code"]]}),
            none(),
            Err("must hold only strings, not an array"),
        ),
        (
            "scope token by token passes",
            json!({"scope": "openid accounts"}),
            none(),
            Ok(()),
        ),
        (
            "scope single token",
            json!({"scope": "payments"}),
            none(),
            Ok(()),
        ),
        (
            "scope with a bogus token names it",
            json!({"scope": "openid bogus"}),
            none(),
            Err("Invalid scope: `bogus` is not allowed"),
        ),
        (
            "scope token case differs",
            json!({"scope": "openid Accounts"}),
            none(),
            Err("`Accounts`"),
        ),
        (
            "scope with extra spaces passes",
            json!({"scope": "openid  accounts"}),
            none(),
            Ok(()),
        ),
        (
            "scope with leading and trailing spaces passes",
            json!({"scope": " openid accounts "}),
            none(),
            Ok(()),
        ),
        (
            "scope glued tokens are one token",
            json!({"scope": "openid,accounts"}),
            none(),
            Err("`openid,accounts`"),
        ),
        (
            "scope tab is not a separator",
            json!({"scope": "openid\taccounts"}),
            none(),
            Err("Invalid scope"),
        ),
        (
            "response_types multi-value string compared whole",
            json!({"response_types": ["code id_token", "code"]}),
            none(),
            Ok(()),
        ),
        (
            "allowed-values claim of number type",
            json!({"token_endpoint_auth_method": 1}),
            none(),
            Err("Invalid token_endpoint_auth_method: must be a string or an array of strings, not a number"),
        ),
        (
            "allowed-values claim of boolean type",
            json!({"application_type": true}),
            none(),
            Err("Invalid application_type: must be a string or an array of strings, not a boolean"),
        ),
        (
            "allowed-values claim of object type",
            json!({"application_type": {"kind": "web"}}),
            none(),
            Err("not an object"),
        ),
        (
            "allowed-values scope of number type",
            json!({"scope": 42}),
            none(),
            Err("Invalid scope: must be a string or an array of strings, not a number"),
        ),
        (
            "presence is checked before allowed values",
            json!({"iss": DEL, "token_endpoint_auth_method": "client_secret_basic"}),
            none(),
            Err("iss not found"),
        ),
        (
            "allowed value very long is clipped",
            json!({"token_endpoint_auth_method": "x".repeat(10_000)}),
            none(),
            Err("Invalid token_endpoint_auth_method"),
        ),
    ];
    run_cases(&uk_request(), &uk_ssa(), &cases, &|ctx| {
        attributes::required_attributes(ctx, &p)
    });

    // An allowed-values claim that is not mandatory and absent is fine.
    let only_values = RequiredAttributes {
        claims: Vec::new(),
        allowed_values: p.allowed_values.clone(),
    };
    let cases: Vec<Case> = vec![
        (
            "absent optional claim",
            json!({"application_type": DEL, "response_types": DEL}),
            none(),
            Ok(()),
        ),
        (
            "present optional claim still checked",
            json!({"response_types": ["token"]}),
            none(),
            Err("Invalid response_types: `token`"),
        ),
    ];
    run_cases(&uk_request(), &uk_ssa(), &cases, &|ctx| {
        attributes::required_attributes(ctx, &only_values)
    });
}

// ---------------------------------------------------------------------------------------------
// 3. issuer
// ---------------------------------------------------------------------------------------------

#[test]
fn issuer_rule() {
    let cases: Vec<Case> = vec![
        ("iss equals software_id", none(), none(), Ok(())),
        (
            "request software_id absent",
            json!({"software_id": DEL}),
            none(),
            Ok(()),
        ),
        (
            "iss differs",
            json!({"iss": "someone-else"}),
            none(),
            Err("request `iss` `someone-else` is not the SSA's software_id"),
        ),
        (
            "iss differs in case",
            json!({"iss": SOFTWARE_ID.to_lowercase()}),
            none(),
            Err("is not the SSA's software_id"),
        ),
        (
            "iss with trailing space",
            json!({"iss": format!("{SOFTWARE_ID} ")}),
            none(),
            Err("is not the SSA's software_id"),
        ),
        (
            "iss empty",
            json!({"iss": ""}),
            none(),
            Err("is not the SSA's software_id"),
        ),
        (
            "iss 30 characters (OBIE conformance)",
            json!({"iss": "a".repeat(30)}),
            none(),
            Err("is not the SSA's software_id"),
        ),
        (
            "iss very long is clipped",
            json!({"iss": "z".repeat(10_000)}),
            none(),
            Err("request `iss`"),
        ),
        (
            "request software_id differs",
            json!({"software_id": "other-software"}),
            none(),
            Err("request `software_id` differs from the SSA's software_id"),
        ),
        (
            "request software_id number",
            json!({"software_id": 5}),
            none(),
            Err("claim `software_id` must be a string, not a number"),
        ),
        (
            "request software_id null",
            json!({"software_id": null}),
            none(),
            Err("claim `software_id` must be a string, not null"),
        ),
        (
            "SSA without software_id",
            none(),
            json!({"software_id": DEL}),
            Err("SSA claim `software_id` not found"),
        ),
        (
            "SSA software_id number",
            none(),
            json!({"software_id": 1}),
            Err("SSA claim `software_id` must be a string, not a number"),
        ),
        (
            "SSA software_id array",
            none(),
            json!({"software_id": [SOFTWARE_ID]}),
            Err("SSA claim `software_id` must be a string, not an array"),
        ),
        (
            "iss missing",
            json!({"iss": DEL}),
            none(),
            Err("claim `iss` not found"),
        ),
        (
            "iss number",
            json!({"iss": 123}),
            none(),
            Err("claim `iss` must be a string, not a number"),
        ),
        (
            "iss null",
            json!({"iss": null}),
            none(),
            Err("claim `iss` must be a string, not null"),
        ),
        (
            "iss array",
            json!({"iss": [SOFTWARE_ID]}),
            none(),
            Err("claim `iss` must be a string, not an array"),
        ),
        (
            "iss object",
            json!({"iss": {"id": SOFTWARE_ID}}),
            none(),
            Err("claim `iss` must be a string, not an object"),
        ),
    ];
    run_cases(&uk_request(), &uk_ssa(), &cases, &identity::issuer);
}

// ---------------------------------------------------------------------------------------------
// 4. audience
// ---------------------------------------------------------------------------------------------

#[test]
fn audience_rule() {
    let p = uk_audience();
    let cases: Vec<Case> = vec![
        ("string org id", json!({"aud": BANK_ORG}), none(), Ok(())),
        ("string issuer URL", json!({"aud": BANK_AS}), none(), Ok(())),
        (
            "array containing one",
            json!({"aud": ["https://other.example", BANK_AS]}),
            none(),
            Ok(()),
        ),
        (
            "array containing both",
            json!({"aud": [BANK_ORG, BANK_AS]}),
            none(),
            Ok(()),
        ),
        (
            "array with none",
            json!({"aud": ["https://other.example", "0015800001ZZZZZZZZ"]}),
            none(),
            Err("request `aud` does not name this authorization server"),
        ),
        (
            "empty array",
            json!({"aud": []}),
            none(),
            Err("does not name this authorization server"),
        ),
        (
            "another bank",
            json!({"aud": "0015800001ZZZZZZZZ"}),
            none(),
            Err("does not name this authorization server"),
        ),
        (
            "case differs",
            json!({"aud": BANK_ORG.to_lowercase()}),
            none(),
            Err("does not name"),
        ),
        (
            "trailing slash differs",
            json!({"aud": format!("{BANK_AS}/")}),
            none(),
            Err("does not name"),
        ),
        (
            "prefix is not a match",
            json!({"aud": "https://bank.example"}),
            none(),
            Err("does not name"),
        ),
        (
            "empty string",
            json!({"aud": ""}),
            none(),
            Err("does not name"),
        ),
        (
            "missing",
            json!({"aud": DEL}),
            none(),
            Err("claim `aud` not found"),
        ),
        ("number", json!({"aud": 7}), none(), Err("`aud`")),
        ("null", json!({"aud": null}), none(), Err("`aud`")),
        (
            "object",
            json!({"aud": {"aud": BANK_ORG}}),
            none(),
            Err("`aud` must be an array of strings, not an object"),
        ),
        (
            "array with a non-string element",
            json!({"aud": [BANK_ORG, 1]}),
            none(),
            Err("claim `aud` must hold only strings, not a number"),
        ),
        (
            "array with a null element",
            json!({"aud": [null]}),
            none(),
            Err("must hold only strings, not null"),
        ),
    ];
    run_cases(&uk_request(), &uk_ssa(), &cases, &|ctx| {
        identity::audience(ctx, &p)
    });

    // Number and null name the claim and the type.
    for (label, v, ty) in [
        ("number", json!(7), "a number"),
        ("null", Value::Null, "null"),
        ("bool", json!(true), "a boolean"),
    ] {
        let req = patched(&uk_request(), &json!({ "aud": v }));
        let ssa = uk_ssa();
        let got = identity::audience(
            &Ctx {
                request: &req,
                ssa: &ssa,
            },
            &p,
        );
        verdict(label, &got, &Err("claim `aud` must be"));
        verdict(label, &got, &Err(ty));
    }

    // No audiences configured: nothing matches (the configuration must require them).
    let empty = Audience::default();
    run_cases(
        &uk_request(),
        &uk_ssa(),
        &[(
            "no audiences configured",
            none(),
            none(),
            Err("does not name"),
        )],
        &|ctx| identity::audience(ctx, &empty),
    );
}

// ---------------------------------------------------------------------------------------------
// 5. redirect_uri_format
// ---------------------------------------------------------------------------------------------

/// A URI of exactly `len` characters on the TPP's host.
fn uri_of_len(len: usize) -> String {
    let head = "https://tpp.example.com/";
    let mut s = head.to_string();
    s.push_str(&"a".repeat(len - head.len()));
    assert_eq!(s.chars().count(), len);
    s
}

#[test]
fn redirect_uri_format_rule() {
    let p = uk_redirects();
    let u256 = uri_of_len(256);
    let u257 = uri_of_len(257);
    // 256 characters, more bytes: the limit counts characters.
    let mut u256_multibyte = "https://tpp.example.com/".to_string();
    while u256_multibyte.chars().count() < 256 {
        u256_multibyte.push('é');
    }
    assert!(u256_multibyte.len() > 256);

    let bad = |uri: &str| json!({ "redirect_uris": [uri] });
    let cases: Vec<Case> = vec![
        ("https passes", none(), none(), Ok(())),
        (
            "https with port, path and query passes",
            bad("https://tpp.example.com:8443/cb?x=1"),
            none(),
            Ok(()),
        ),
        (
            "uppercase scheme is normalised",
            bad("HTTPS://tpp.example.com/cb"),
            none(),
            Ok(()),
        ),
        (
            "host containing localhost as a label prefix passes",
            bad("https://localhost.example.com/cb"),
            none(),
            Ok(()),
        ),
        (
            "private address is not loopback",
            bad("https://10.0.0.1/cb"),
            none(),
            Ok(()),
        ),
        ("http fails", bad("http://tpp.example.com/cb"), none(), Err("must use https")),
        (
            "http localhost fails",
            bad("http://localhost/cb"),
            none(),
            Err("redirect URI"),
        ),
        (
            "localhost",
            bad("https://localhost/cb"),
            none(),
            Err("must not point at localhost"),
        ),
        (
            "LOCALHOST",
            bad("https://LOCALHOST/cb"),
            none(),
            Err("must not point at localhost"),
        ),
        (
            "localhost with port",
            bad("https://localhost:8443/cb"),
            none(),
            Err("must not point at localhost"),
        ),
        (
            "localhost with trailing dot",
            bad("https://localhost./cb"),
            none(),
            Err("must not point at localhost"),
        ),
        (
            "percent-encoded localhost",
            bad("https://%6c%6f%63%61%6c%68%6f%73%74/cb"),
            none(),
            Err("must not point at localhost"),
        ),
        (
            "fullwidth localhost (IDNA-mapped)",
            bad("https://\u{ff4c}\u{ff4f}\u{ff43}\u{ff41}\u{ff4c}\u{ff48}\u{ff4f}\u{ff53}\u{ff54}/cb"),
            none(),
            Err("is not a valid URI (RFC 3986)"),
        ),
        (
            "subdomain of localhost",
            bad("https://app.localhost/cb"),
            none(),
            Err("must not point at localhost"),
        ),
        (
            "deep subdomain of localhost",
            bad("https://a.b.LocalHost/cb"),
            none(),
            Err("must not point at localhost"),
        ),
        (
            "127.0.0.1",
            bad("https://127.0.0.1/cb"),
            none(),
            Err("must not point at a loopback or unspecified address"),
        ),
        (
            "127.9.9.9",
            bad("https://127.9.9.9/cb"),
            none(),
            Err("loopback or unspecified address"),
        ),
        (
            "127.255.255.255",
            bad("https://127.255.255.255/cb"),
            none(),
            Err("loopback or unspecified address"),
        ),
        ("[::1]", bad("https://[::1]/cb"), none(), Err("loopback or unspecified address")),
        (
            "[0:0:0:0:0:0:0:1]",
            bad("https://[0:0:0:0:0:0:0:1]/cb"),
            none(),
            Err("loopback or unspecified address"),
        ),
        (
            "[::ffff:127.0.0.1]",
            bad("https://[::ffff:127.0.0.1]/cb"),
            none(),
            Err("loopback or unspecified address"),
        ),
        ("0.0.0.0", bad("https://0.0.0.0/cb"), none(), Err("redirect URI must not point")),
        ("[::]", bad("https://[::]/cb"), none(), Err("redirect URI must not point")),
        (
            "integer form of 127.0.0.1",
            bad("https://2130706433/cb"),
            none(),
            Err("loopback or unspecified address"),
        ),
        (
            "short form 127.1",
            bad("https://127.1/cb"),
            none(),
            Err("loopback or unspecified address"),
        ),
        (
            "hex form 0x7f.1",
            bad("https://0x7f.1/cb"),
            none(),
            Err("loopback or unspecified address"),
        ),
        (
            "octal form 017700000001",
            bad("https://017700000001/cb"),
            none(),
            Err("loopback or unspecified address"),
        ),
        (
            "fragment",
            bad("https://a.example/cb#x"),
            none(),
            Err("redirect URI has a fragment"),
        ),
        (
            "trailing #",
            bad("https://a.example/cb#"),
            none(),
            Err("has a fragment"),
        ),
        (
            "relative",
            bad("/cb"),
            none(),
            Err("redirect URI must use https"),
        ),
        (
            "empty string",
            bad(""),
            none(),
            Err("redirect URI must use https"),
        ),
        (
            "not a URI",
            bad("not a uri"),
            none(),
            Err("is not a valid URI (RFC 3986)"),
        ),
        (
            "custom scheme",
            bad("custom-scheme:/cb"),
            none(),
            Err("must use https"),
        ),
        (
            "javascript scheme",
            bad("javascript:alert(1)"),
            none(),
            Err("must use https"),
        ),
        (
            "https with empty authority and port",
            bad("https://:443/cb"),
            none(),
            Err("redirect URI"),
        ),
        (
            "host that is only a dot",
            bad("https://./cb"),
            none(),
            Err("redirect URI"),
        ),
        ("exactly 256 characters", json!({ "redirect_uris": [u256.clone()] }), json!({"software_redirect_uris": [u256.clone()]}), Ok(())),
        (
            "non-ASCII characters (an IRI, not an RFC 3986 URI)",
            json!({ "redirect_uris": [u256_multibyte.clone()] }),
            none(),
            Err("is not a valid URI (RFC 3986)"),
        ),
        (
            "257 characters",
            json!({ "redirect_uris": [u257.clone()] }),
            none(),
            Err("redirect URI longer than 256 characters"),
        ),
        (
            "second request URI bad",
            json!({"redirect_uris": ["https://tpp.example.com/cb", "http://tpp.example.com/cb"]}),
            none(),
            Err("must use https: `http://tpp.example.com/cb`"),
        ),
        (
            "bad URI only in the SSA list",
            none(),
            json!({"software_redirect_uris": ["https://tpp.example.com/cb", "https://localhost/cb"]}),
            Err("must not point at localhost: `https://localhost/cb`"),
        ),
        (
            "257-character URI only in the SSA list",
            none(),
            json!({"software_redirect_uris": ["https://tpp.example.com/cb", u257.clone()]}),
            Err("longer than 256"),
        ),
        (
            "request list absent (subset rule reports it)",
            json!({"redirect_uris": DEL}),
            none(),
            Ok(()),
        ),
        (
            "SSA list absent",
            none(),
            json!({"software_redirect_uris": DEL}),
            Ok(()),
        ),
        (
            "redirect_uris a string",
            json!({"redirect_uris": "https://tpp.example.com/cb"}),
            none(),
            Err("claim `redirect_uris` must be an array of strings, not a string"),
        ),
        (
            "redirect_uris null",
            json!({"redirect_uris": null}),
            none(),
            Err("claim `redirect_uris` must be an array of strings, not null"),
        ),
        (
            "redirect_uris object",
            json!({"redirect_uris": {"0": "https://tpp.example.com/cb"}}),
            none(),
            Err("claim `redirect_uris` must be an array of strings, not an object"),
        ),
        (
            "redirect_uris element a number",
            json!({"redirect_uris": ["https://tpp.example.com/cb", 3]}),
            none(),
            Err("claim `redirect_uris` must hold only strings, not a number"),
        ),
        (
            "SSA list a string",
            none(),
            json!({"software_redirect_uris": "https://tpp.example.com/cb"}),
            Err("SSA claim `software_redirect_uris` must be an array of strings, not a string"),
        ),
        (
            "SSA list element null",
            none(),
            json!({"software_redirect_uris": [null]}),
            Err("SSA claim `software_redirect_uris` must hold only strings, not null"),
        ),
    ];
    run_cases(&uk_request(), &uk_ssa(), &cases, &|ctx| {
        redirect::format(ctx, &p)
    });

    // The length limit is configurable.
    let short = RedirectUris {
        max_length: 30,
        ..uk_redirects()
    };
    let cases: Vec<Case> = vec![
        (
            "30 characters",
            json!({"redirect_uris": [uri_of_len(30)]}),
            json!({"software_redirect_uris": [uri_of_len(30)]}),
            Ok(()),
        ),
        (
            "31 characters",
            json!({"redirect_uris": [uri_of_len(31)]}),
            json!({"software_redirect_uris": [uri_of_len(30)]}),
            Err("longer than 30 characters"),
        ),
    ];
    run_cases(&uk_request(), &uk_ssa(), &cases, &|ctx| {
        redirect::format(ctx, &short)
    });
}

/// `https:///cb` (empty authority), `https:/cb` and `https:cb` have no host in RFC 3986 (and RFC 9110
/// forbids an https URI with an empty host), but the WHATWG parser of the `url` crate turns them into
/// `https://cb/`, so the rule accepts them as if `cb` were the host.
#[test]
fn redirect_uri_format_hostless_https_must_fail() {
    let p = uk_redirects();
    let cases: Vec<Case> = ["https:///cb", "https:/cb", "https:cb"]
        .into_iter()
        .map(|u| {
            (
                u,
                json!({ "redirect_uris": [u] }),
                none(),
                Err("redirect URI"),
            )
        })
        .collect();
    run_cases(&uk_request(), &uk_ssa(), &cases, &|ctx| {
        redirect::format(ctx, &p)
    });
}

/// The rule must check "parses as an absolute URI"; the WHATWG parser silently repairs strings that
/// are not RFC 3986 URIs (backslashes, surrounding whitespace, embedded tab/newline). Worst case:
/// `https://tpp.example.com\@localhost/cb` is host `tpp.example.com` to this filter but host
/// `localhost` to an RFC 3986 / java.net.URL parser (the reference AS is Java): a localhost bypass
/// through a parser differential.
#[test]
fn redirect_uri_format_non_rfc3986_strings_must_fail() {
    let p = uk_redirects();
    let cases: Vec<Case> = [
        "https://tpp.example.com\\@localhost/cb",
        "https:\\\\tpp.example.com\\cb",
        " https://tpp.example.com/cb",
        "https://tpp.example.com/cb ",
        "https://tpp.exa\tmple.com/cb",
        "https://tpp.example.com/c\nb",
    ]
    .into_iter()
    .map(|u| {
        (
            u,
            json!({ "redirect_uris": [u] }),
            none(),
            Err("redirect URI"),
        )
    })
    .collect();
    run_cases(&uk_request(), &uk_ssa(), &cases, &|ctx| {
        redirect::format(ctx, &p)
    });
}

// ---------------------------------------------------------------------------------------------
// 6. redirect_uri_subset
// ---------------------------------------------------------------------------------------------

#[test]
fn redirect_uri_subset_rule() {
    let p = uk_redirects();
    let cases: Vec<Case> = vec![
        ("exact membership", none(), none(), Ok(())),
        (
            "both SSA URIs",
            json!({"redirect_uris": ["https://tpp.example.com/cb2", "https://tpp.example.com/cb"]}),
            none(),
            Ok(()),
        ),
        (
            "duplicate entries",
            json!({"redirect_uris": ["https://tpp.example.com/cb", "https://tpp.example.com/cb"]}),
            none(),
            Ok(()),
        ),
        (
            "not in the SSA",
            json!({"redirect_uris": ["https://evil.example/cb"]}),
            none(),
            Err("redirect URI `https://evil.example/cb` is not registered in the software statement"),
        ),
        (
            "second not in the SSA",
            json!({"redirect_uris": ["https://tpp.example.com/cb", "https://tpp.example.com/cb3"]}),
            none(),
            Err("`https://tpp.example.com/cb3` is not registered"),
        ),
        (
            "trailing slash differs",
            json!({"redirect_uris": ["https://tpp.example.com/cb/"]}),
            none(),
            Err("is not registered"),
        ),
        (
            "host case differs",
            json!({"redirect_uris": ["https://TPP.example.com/cb"]}),
            none(),
            Err("is not registered"),
        ),
        (
            "path case differs",
            json!({"redirect_uris": ["https://tpp.example.com/CB"]}),
            none(),
            Err("is not registered"),
        ),
        (
            "explicit default port differs",
            json!({"redirect_uris": ["https://tpp.example.com:443/cb"]}),
            none(),
            Err("is not registered"),
        ),
        (
            "added query differs",
            json!({"redirect_uris": ["https://tpp.example.com/cb?a=1"]}),
            none(),
            Err("is not registered"),
        ),
        (
            "prefix of an SSA URI",
            json!({"redirect_uris": ["https://tpp.example.com/c"]}),
            none(),
            Err("is not registered"),
        ),
        (
            "request list missing",
            json!({"redirect_uris": DEL}),
            none(),
            Err("redirect_uris not found"),
        ),
        (
            "request list empty",
            json!({"redirect_uris": []}),
            none(),
            Err("redirect_uris cannot be empty"),
        ),
        (
            "request list a string",
            json!({"redirect_uris": "https://tpp.example.com/cb"}),
            none(),
            Err("claim `redirect_uris` must be an array of strings, not a string"),
        ),
        (
            "request list null",
            json!({"redirect_uris": null}),
            none(),
            Err("claim `redirect_uris` must be an array of strings, not null"),
        ),
        (
            "request element a number",
            json!({"redirect_uris": [1]}),
            none(),
            Err("claim `redirect_uris` must hold only strings, not a number"),
        ),
        (
            "SSA list missing",
            none(),
            json!({"software_redirect_uris": DEL}),
            Err("SSA claim `software_redirect_uris` not found"),
        ),
        (
            "SSA list empty",
            none(),
            json!({"software_redirect_uris": []}),
            Err("is not registered"),
        ),
        (
            "SSA list a string",
            none(),
            json!({"software_redirect_uris": "https://tpp.example.com/cb"}),
            Err("SSA claim `software_redirect_uris` must be an array of strings, not a string"),
        ),
        (
            "SSA list a number",
            none(),
            json!({"software_redirect_uris": 9}),
            Err("SSA claim `software_redirect_uris` must be an array of strings, not a number"),
        ),
        (
            "SSA list an object",
            none(),
            json!({"software_redirect_uris": {"a": "https://tpp.example.com/cb"}}),
            Err("SSA claim `software_redirect_uris` must be an array of strings, not an object"),
        ),
        (
            "SSA list element a number",
            none(),
            json!({"software_redirect_uris": ["https://tpp.example.com/cb", 2]}),
            Err("SSA claim `software_redirect_uris` must hold only strings"),
        ),
        (
            "long URI clipped in the message",
            json!({"redirect_uris": [format!("https://evil.example/{}", "x".repeat(5000))]}),
            none(),
            Err("is not registered"),
        ),
    ];
    run_cases(&uk_request(), &uk_ssa(), &cases, &|ctx| {
        redirect::subset(ctx, &p)
    });
}

// ---------------------------------------------------------------------------------------------
// 7. uri_hostname
// ---------------------------------------------------------------------------------------------

#[test]
fn uri_hostname_rule() {
    let p = uk_redirects();
    let cases: Vec<Case> = vec![
        ("all on the same host", none(), none(), Ok(())),
        (
            "case difference in host",
            none(),
            json!({"software_logo_uri": "https://TPP.example.com/logo.png"}),
            Ok(()),
        ),
        (
            "case difference in the redirect host",
            none(),
            json!({"software_redirect_uris": ["https://Tpp.Example.Com/cb"]}),
            Ok(()),
        ),
        (
            "trailing dot in host",
            none(),
            json!({"software_tos_uri": "https://tpp.example.com./tos"}),
            Ok(()),
        ),
        (
            "different port, same host",
            none(),
            json!({"software_policy_uri": "https://tpp.example.com:8443/policy"}),
            Ok(()),
        ),
        (
            "logo on another host",
            none(),
            json!({"software_logo_uri": "https://cdn.example.net/logo.png"}),
            Err("SSA `software_logo_uri` host `cdn.example.net` differs from the `software_redirect_uris` host `tpp.example.com`"),
        ),
        (
            "subdomain is another host",
            none(),
            json!({"software_client_uri": "https://www.tpp.example.com"}),
            Err("SSA `software_client_uri` host `www.tpp.example.com` differs"),
        ),
        (
            "second redirect URI on another host",
            none(),
            json!({"software_redirect_uris": ["https://tpp.example.com/cb", "https://other.example/cb"]}),
            Err("SSA `software_redirect_uris` host `other.example` differs"),
        ),
        (
            "tos on another host",
            none(),
            json!({"software_tos_uri": "https://legal.example.org/tos"}),
            Err("`software_tos_uri` host `legal.example.org`"),
        ),
        (
            "policy on another host",
            none(),
            json!({"software_policy_uri": "https://legal.example.org/p"}),
            Err("`software_policy_uri`"),
        ),
        (
            "no redirects: first URI claim is the reference",
            none(),
            json!({"software_redirect_uris": DEL, "software_logo_uri": "https://cdn.example.net/l.png"}),
            Err("SSA `software_logo_uri` host `cdn.example.net` differs from the `software_client_uri` host `tpp.example.com`"),
        ),
        (
            "missing logo, tos, policy and client URIs are skipped",
            none(),
            json!({"software_logo_uri": DEL, "software_tos_uri": DEL, "software_policy_uri": DEL, "software_client_uri": DEL}),
            Ok(()),
        ),
        (
            "nothing at all",
            none(),
            json!({"software_redirect_uris": DEL, "software_logo_uri": DEL, "software_tos_uri": DEL, "software_policy_uri": DEL, "software_client_uri": DEL}),
            Ok(()),
        ),
        (
            "request URIs are not considered",
            json!({"redirect_uris": ["https://elsewhere.example/cb"], "logo_uri": "https://elsewhere.example/l"}),
            none(),
            Ok(()),
        ),
        (
            "unparseable URI",
            none(),
            json!({"software_tos_uri": "not a uri"}),
            Err("SSA `software_tos_uri` is not an absolute URI with a host"),
        ),
        (
            "empty URI",
            none(),
            json!({"software_policy_uri": ""}),
            Err("SSA `software_policy_uri` is not an absolute URI with a host"),
        ),
        (
            "URI without host",
            none(),
            json!({"software_logo_uri": "mailto:ops@tpp.example.com"}),
            Err("SSA `software_logo_uri` is not an absolute URI with a host"),
        ),
        (
            "unparseable redirect URI",
            none(),
            json!({"software_redirect_uris": ["::::"]}),
            Err("SSA `software_redirect_uris` is not an absolute URI with a host"),
        ),
        (
            "URI claim a number",
            none(),
            json!({"software_client_uri": 5}),
            Err("SSA claim `software_client_uri` must be a string, not a number"),
        ),
        (
            "URI claim null",
            none(),
            json!({"software_logo_uri": null}),
            Err("SSA claim `software_logo_uri` must be a string, not null"),
        ),
        (
            "URI claim an array",
            none(),
            json!({"software_tos_uri": ["https://tpp.example.com/tos"]}),
            Err("SSA claim `software_tos_uri` must be a string, not an array"),
        ),
        (
            "redirect claim a string",
            none(),
            json!({"software_redirect_uris": "https://tpp.example.com/cb"}),
            Err("SSA claim `software_redirect_uris` must be an array of strings"),
        ),
        (
            "very long host is clipped",
            none(),
            json!({"software_logo_uri": format!("https://{}.example/l", "h".repeat(60))}),
            Err("differs"),
        ),
    ];
    run_cases(&uk_request(), &uk_ssa(), &cases, &|ctx| {
        redirect::hostname(ctx, &p)
    });
}

// ---------------------------------------------------------------------------------------------
// 8. token_endpoint_auth
// ---------------------------------------------------------------------------------------------

#[test]
fn token_endpoint_auth_rule() {
    let p = uk_token_endpoint_auth();
    let tls = |extra: Value| {
        let mut v = json!({
            "token_endpoint_auth_method": "tls_client_auth",
            "token_endpoint_auth_signing_alg": DEL,
            "tls_client_auth_subject_dn": "CN=1p8bGrHhJRrphjFk0qwNAU,OU=0015800001041RHAAY,O=OpenBanking,C=GB"
        });
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };
    let cases: Vec<Case> = vec![
        ("private_key_jwt + PS256", none(), none(), Ok(())),
        (
            "private_key_jwt + ES256",
            json!({"token_endpoint_auth_signing_alg": "ES256"}),
            none(),
            Ok(()),
        ),
        (
            "private_key_jwt without alg",
            json!({"token_endpoint_auth_signing_alg": DEL}),
            none(),
            Err("private_key_jwt needs token_endpoint_auth_signing_alg"),
        ),
        (
            "private_key_jwt with RS256",
            json!({"token_endpoint_auth_signing_alg": "RS256"}),
            none(),
            Err("token_endpoint_auth_signing_alg `RS256` is not allowed"),
        ),
        (
            "private_key_jwt with HS256",
            json!({"token_endpoint_auth_signing_alg": "HS256"}),
            none(),
            Err("`HS256` is not allowed"),
        ),
        (
            "private_key_jwt with none",
            json!({"token_endpoint_auth_signing_alg": "none"}),
            none(),
            Err("`none` is not allowed"),
        ),
        (
            "private_key_jwt with lowercase ps256",
            json!({"token_endpoint_auth_signing_alg": "ps256"}),
            none(),
            Err("`ps256` is not allowed"),
        ),
        (
            "private_key_jwt with alg number",
            json!({"token_endpoint_auth_signing_alg": 256}),
            none(),
            Err("claim `token_endpoint_auth_signing_alg` must be a string, not a number"),
        ),
        (
            "private_key_jwt with alg null",
            json!({"token_endpoint_auth_signing_alg": null}),
            none(),
            Err("claim `token_endpoint_auth_signing_alg` must be a string, not null"),
        ),
        (
            "client_secret_basic",
            json!({"token_endpoint_auth_method": "client_secret_basic"}),
            none(),
            Err("token_endpoint_auth_method `client_secret_basic` is not allowed"),
        ),
        (
            "client_secret_jwt",
            json!({"token_endpoint_auth_method": "client_secret_jwt"}),
            none(),
            Err("`client_secret_jwt` is not allowed"),
        ),
        (
            "none method",
            json!({"token_endpoint_auth_method": "none"}),
            none(),
            Err("`none` is not allowed"),
        ),
        (
            "self_signed_tls_client_auth not in UK",
            json!({"token_endpoint_auth_method": "self_signed_tls_client_auth"}),
            none(),
            Err("`self_signed_tls_client_auth` is not allowed"),
        ),
        (
            "method case differs",
            json!({"token_endpoint_auth_method": "Private_Key_JWT"}),
            none(),
            Err("is not allowed"),
        ),
        (
            "empty method",
            json!({"token_endpoint_auth_method": ""}),
            none(),
            Err("is not allowed"),
        ),
        (
            "missing method",
            json!({"token_endpoint_auth_method": DEL}),
            none(),
            Err("token_endpoint_auth_method not found"),
        ),
        (
            "method number",
            json!({"token_endpoint_auth_method": 1}),
            none(),
            Err("claim `token_endpoint_auth_method` must be a string, not a number"),
        ),
        (
            "method null",
            json!({"token_endpoint_auth_method": null}),
            none(),
            Err("claim `token_endpoint_auth_method` must be a string, not null"),
        ),
        (
            "method array",
            json!({"token_endpoint_auth_method": ["private_key_jwt"]}),
            none(),
            Err("claim `token_endpoint_auth_method` must be a string, not an array"),
        ),
        (
            "method object",
            json!({"token_endpoint_auth_method": {"m": "private_key_jwt"}}),
            none(),
            Err("must be a string, not an object"),
        ),
        (
            "tls_client_auth with subject_dn",
            tls(none()),
            none(),
            Ok(()),
        ),
        (
            "tls_client_auth with a signing alg too",
            tls(json!({"token_endpoint_auth_signing_alg": "PS256"})),
            none(),
            Ok(()),
        ),
        (
            "tls_client_auth without subject_dn",
            tls(json!({"tls_client_auth_subject_dn": DEL})),
            none(),
            Err("tls_client_auth needs tls_client_auth_subject_dn"),
        ),
        (
            "tls_client_auth with blank subject_dn",
            tls(json!({"tls_client_auth_subject_dn": "   "})),
            none(),
            Err("tls_client_auth needs tls_client_auth_subject_dn"),
        ),
        (
            "tls_client_auth with empty subject_dn",
            tls(json!({"tls_client_auth_subject_dn": ""})),
            none(),
            Err("tls_client_auth needs tls_client_auth_subject_dn"),
        ),
        (
            "tls_client_auth with subject_dn number",
            tls(json!({"tls_client_auth_subject_dn": 1})),
            none(),
            Err("claim `tls_client_auth_subject_dn` must be a string, not a number"),
        ),
        (
            "tls_client_auth with subject_dn null",
            tls(json!({"tls_client_auth_subject_dn": null})),
            none(),
            Err("claim `tls_client_auth_subject_dn` must be a string, not null"),
        ),
        (
            "tls_client_auth with tls_client_auth_san_dns",
            tls(json!({"tls_client_auth_san_dns": "tpp.example.com"})),
            none(),
            Err("tls_client_auth_subject_dn and `tls_client_auth_san_dns` cannot both be used"),
        ),
        (
            "tls_client_auth with tls_client_auth_san_uri",
            tls(json!({"tls_client_auth_san_uri": "https://tpp.example.com"})),
            none(),
            Err("`tls_client_auth_san_uri` cannot both be used"),
        ),
        (
            "tls_client_auth with tls_client_auth_san_email null",
            tls(json!({"tls_client_auth_san_email": null})),
            none(),
            Err("`tls_client_auth_san_email` cannot both be used"),
        ),
        (
            "SAN claim alone without subject_dn",
            tls(json!({"tls_client_auth_subject_dn": DEL, "tls_client_auth_san_ip": "10.0.0.1"})),
            none(),
            Err("tls_client_auth needs tls_client_auth_subject_dn"),
        ),
        (
            "long method name clipped",
            json!({"token_endpoint_auth_method": "m".repeat(10_000)}),
            none(),
            Err("is not allowed"),
        ),
    ];
    run_cases(&uk_request(), &uk_ssa(), &cases, &|ctx| {
        client::token_endpoint_auth(ctx, &p)
    });

    // AU: private_key_jwt only.
    let au = TokenEndpointAuth {
        methods: strings(&["private_key_jwt"]),
        signing_algorithms: strings(&["PS256", "ES256"]),
    };
    let cases: Vec<Case> = vec![
        ("AU private_key_jwt", none(), none(), Ok(())),
        (
            "AU tls_client_auth refused",
            tls(none()),
            none(),
            Err("`tls_client_auth` is not allowed"),
        ),
    ];
    run_cases(&uk_request(), &uk_ssa(), &cases, &|ctx| {
        client::token_endpoint_auth(ctx, &au)
    });
}

// ---------------------------------------------------------------------------------------------
// 9. signing_algorithms
// ---------------------------------------------------------------------------------------------

#[test]
fn signing_algorithms_rule() {
    let p = uk_signing_algorithms();
    let claims = [
        "id_token_signed_response_alg",
        "request_object_signing_alg",
        "token_endpoint_auth_signing_alg",
    ];
    let mut cases: Vec<(String, Value, Result<(), String>)> = vec![
        ("all PS256".to_string(), none(), Ok(())),
        (
            "all ES256".to_string(),
            json!({"id_token_signed_response_alg": "ES256", "request_object_signing_alg": "ES256", "token_endpoint_auth_signing_alg": "ES256"}),
            Ok(()),
        ),
        (
            "all absent".to_string(),
            json!({"id_token_signed_response_alg": DEL, "request_object_signing_alg": DEL, "token_endpoint_auth_signing_alg": DEL}),
            Ok(()),
        ),
        (
            "other claims not read".to_string(),
            json!({"userinfo_signed_response_alg": "RS256", "authorization_signed_response_alg": 5}),
            Ok(()),
        ),
        (
            "first failing claim in order is reported".to_string(),
            json!({"request_object_signing_alg": "RS256", "token_endpoint_auth_signing_alg": "none"}),
            Err("request_object_signing_alg `RS256` is not allowed".to_string()),
        ),
    ];
    for claim in claims {
        for alg in ["RS256", "none", "HS256", "", "ps256", "PS384", "EdDSA"] {
            cases.push((
                format!("{claim} = {alg:?}"),
                json!({ claim: alg }),
                Err(format!("{claim} `{alg}` is not allowed")),
            ));
        }
        cases.push((
            format!("{claim} absent alone"),
            json!({ claim: DEL }),
            Ok(()),
        ));
        for (label, v, ty) in [
            ("number", json!(256), "a number"),
            ("null", Value::Null, "null"),
            ("array", json!(["PS256"]), "an array"),
            ("object", json!({"alg": "PS256"}), "an object"),
            ("bool", json!(false), "a boolean"),
        ] {
            cases.push((
                format!("{claim} {label}"),
                json!({ claim: v }),
                Err(format!("claim `{claim}` must be a string, not {ty}")),
            ));
        }
    }
    let ssa = uk_ssa();
    for (name, patch, want) in &cases {
        let req = patched(&uk_request(), patch);
        let got = client::signing_algorithms(
            &Ctx {
                request: &req,
                ssa: &ssa,
            },
            &p,
        );
        let want: Result<(), &str> = want.as_ref().map(|_| ()).map_err(String::as_str);
        verdict(name, &got, &want);
    }
}

// ---------------------------------------------------------------------------------------------
// 10. grant_and_response_types
// ---------------------------------------------------------------------------------------------

#[test]
fn grant_and_response_types_rule() {
    let uk = uk_grants();
    let au = au_grants();
    let ciba = |extra: Value| {
        let mut v = json!({
            "grant_types": [CIBA],
            "backchannel_token_delivery_mode": "poll",
            "backchannel_authentication_request_signing_alg": "PS256"
        });
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };
    let ping = |extra: Value| {
        let mut v = ciba(json!({
            "backchannel_token_delivery_mode": "ping",
            "backchannel_client_notification_endpoint": "https://tpp.example.com/notify"
        }));
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };
    let cases: Vec<(&str, &GrantTypes, Value, Result<(), &str>)> = vec![
        ("UK typical", &uk, none(), Ok(())),
        (
            "UK code only",
            &uk,
            json!({"response_types": ["code"], "grant_types": ["authorization_code"]}),
            Ok(()),
        ),
        (
            "UK implicit",
            &uk,
            json!({"grant_types": ["authorization_code", "implicit"]}),
            Err("grant type `implicit` is not allowed"),
        ),
        (
            "UK password",
            &uk,
            json!({"grant_types": ["password"]}),
            Err("grant type `password` is not allowed"),
        ),
        (
            "UK grant case differs",
            &uk,
            json!({"grant_types": ["Authorization_Code"]}),
            Err("grant type `Authorization_Code` is not allowed"),
        ),
        (
            "UK grant_types a string",
            &uk,
            json!({"grant_types": "authorization_code"}),
            Err("claim `grant_types` must be an array of strings, not a string"),
        ),
        (
            "UK grant_types null",
            &uk,
            json!({"grant_types": null}),
            Err("claim `grant_types` must be an array of strings, not null"),
        ),
        (
            "UK grant_types element number",
            &uk,
            json!({"grant_types": ["authorization_code", 1]}),
            Err("claim `grant_types` must hold only strings, not a number"),
        ),
        (
            "UK absent grant_types (default authorization_code)",
            &uk,
            json!({"grant_types": DEL}),
            Ok(()),
        ),
        (
            "UK response_types id_token token (OBIE conformance)",
            &uk,
            json!({"response_types": ["id_token", "token"]}),
            Err("response type `id_token` is not allowed"),
        ),
        (
            "UK response_types token",
            &uk,
            json!({"response_types": ["code", "token"]}),
            Err("response type `token` is not allowed"),
        ),
        (
            "UK response_types code id_token token",
            &uk,
            json!({"response_types": ["code id_token token"]}),
            Err("response type `code id_token token` is not allowed"),
        ),
        (
            "UK response_types reordered",
            &uk,
            json!({"response_types": ["id_token code"]}),
            Ok(()),
        ),
        (
            "UK response_types extra spaces",
            &uk,
            json!({"response_types": ["code  id_token"]}),
            Ok(()),
        ),
        (
            "UK response_types absent",
            &uk,
            json!({"response_types": DEL}),
            Ok(()),
        ),
        (
            "UK response_types a string",
            &uk,
            json!({"response_types": "code"}),
            Err("claim `response_types` must be an array of strings, not a string"),
        ),
        (
            "UK response_types element object",
            &uk,
            json!({"response_types": [{"t": "code"}]}),
            Err("claim `response_types` must hold only strings, not an object"),
        ),
        (
            "UK response type case differs",
            &uk,
            json!({"response_types": ["CODE"]}),
            Err("response type `CODE` is not allowed"),
        ),
        (
            "UK application_type mobile",
            &uk,
            json!({"application_type": "mobile"}),
            Ok(()),
        ),
        (
            "UK application_type absent",
            &uk,
            json!({"application_type": DEL}),
            Ok(()),
        ),
        (
            "UK application_type native",
            &uk,
            json!({"application_type": "native"}),
            Err("application_type `native` is not allowed"),
        ),
        (
            "UK application_type number",
            &uk,
            json!({"application_type": 1}),
            Err("claim `application_type` must be a string, not a number"),
        ),
        (
            "UK application_type null",
            &uk,
            json!({"application_type": null}),
            Err("claim `application_type` must be a string, not null"),
        ),
        ("CIBA poll PS256", &uk, ciba(none()), Ok(())),
        (
            "CIBA poll ES256 with other grants",
            &uk,
            ciba(
                json!({"grant_types": ["client_credentials", CIBA], "backchannel_authentication_request_signing_alg": "ES256"}),
            ),
            Ok(()),
        ),
        (
            "CIBA without delivery mode",
            &uk,
            ciba(json!({"backchannel_token_delivery_mode": DEL})),
            Err("the CIBA grant needs backchannel_token_delivery_mode"),
        ),
        (
            "CIBA push",
            &uk,
            ciba(json!({"backchannel_token_delivery_mode": "push"})),
            Err("backchannel_token_delivery_mode `push` is not allowed"),
        ),
        (
            "CIBA delivery mode number",
            &uk,
            ciba(json!({"backchannel_token_delivery_mode": 1})),
            Err("claim `backchannel_token_delivery_mode` must be a string, not a number"),
        ),
        (
            "CIBA ping without endpoint",
            &uk,
            ping(json!({"backchannel_client_notification_endpoint": DEL})),
            Err("ping delivery needs backchannel_client_notification_endpoint"),
        ),
        (
            "CIBA ping with http endpoint",
            &uk,
            ping(
                json!({"backchannel_client_notification_endpoint": "http://tpp.example.com/notify"}),
            ),
            Err("backchannel_client_notification_endpoint must use https"),
        ),
        (
            "CIBA ping with relative endpoint",
            &uk,
            ping(json!({"backchannel_client_notification_endpoint": "/notify"})),
            Err("must use https"),
        ),
        (
            "CIBA ping with endpoint number",
            &uk,
            ping(json!({"backchannel_client_notification_endpoint": 443})),
            Err("claim `backchannel_client_notification_endpoint` must be a string, not a number"),
        ),
        ("CIBA ping with https endpoint", &uk, ping(none()), Ok(())),
        (
            "CIBA poll does not need an endpoint",
            &uk,
            ciba(json!({"backchannel_client_notification_endpoint": DEL})),
            Ok(()),
        ),
        (
            "CIBA signing alg RS256",
            &uk,
            ciba(json!({"backchannel_authentication_request_signing_alg": "RS256"})),
            Err("backchannel_authentication_request_signing_alg `RS256` is not allowed"),
        ),
        (
            "CIBA signing alg missing",
            &uk,
            ciba(json!({"backchannel_authentication_request_signing_alg": DEL})),
            Err("the CIBA grant needs backchannel_authentication_request_signing_alg"),
        ),
        (
            "CIBA signing alg null",
            &uk,
            ciba(json!({"backchannel_authentication_request_signing_alg": null})),
            Err(
                "claim `backchannel_authentication_request_signing_alg` must be a string, not null",
            ),
        ),
        (
            "CIBA user code true",
            &uk,
            ciba(json!({"backchannel_user_code_parameter_supported": true})),
            Err("backchannel_user_code_parameter_supported must be false"),
        ),
        (
            "CIBA user code false",
            &uk,
            ciba(json!({"backchannel_user_code_parameter_supported": false})),
            Ok(()),
        ),
        (
            "CIBA user code \"false\" (string)",
            &uk,
            ciba(json!({"backchannel_user_code_parameter_supported": "false"})),
            Err(
                "claim `backchannel_user_code_parameter_supported` must be a boolean, not a string",
            ),
        ),
        (
            "CIBA user code 0",
            &uk,
            ciba(json!({"backchannel_user_code_parameter_supported": 0})),
            Err("must be a boolean, not a number"),
        ),
        (
            "CIBA user code null",
            &uk,
            ciba(json!({"backchannel_user_code_parameter_supported": null})),
            Err("must be a boolean, not null"),
        ),
        (
            "CIBA metadata without the CIBA grant is not checked",
            &uk,
            json!({"backchannel_token_delivery_mode": "push", "backchannel_user_code_parameter_supported": true}),
            Ok(()),
        ),
        (
            "grants checked before response types",
            &uk,
            json!({"grant_types": ["implicit"], "response_types": ["token"]}),
            Err("grant type `implicit`"),
        ),
        (
            "AU typical",
            &au,
            json!({"response_types": ["code"]}),
            Ok(()),
        ),
        (
            "AU without authorization_code",
            &au,
            json!({"grant_types": ["client_credentials", "refresh_token"]}),
            Err("grant_types must include `authorization_code`"),
        ),
        (
            "AU empty grant_types",
            &au,
            json!({"grant_types": []}),
            Err("grant_types must include `authorization_code`"),
        ),
        (
            "AU absent grant_types (RFC 7591 default authorization_code)",
            &au,
            json!({"grant_types": DEL}),
            Ok(()),
        ),
        (
            "AU CIBA grant not allowed",
            &au,
            ciba(json!({"grant_types": ["authorization_code", CIBA]})),
            Err("grant type `urn:openid:params:grant-type:ciba` is not allowed"),
        ),
        (
            "AU application_type mobile",
            &au,
            json!({"application_type": "mobile"}),
            Err("application_type `mobile` is not allowed"),
        ),
        (
            "AU application_type web",
            &au,
            json!({"application_type": "web"}),
            Ok(()),
        ),
    ];
    let ssa = uk_ssa();
    for (name, params, patch, want) in &cases {
        let req = patched(&uk_request(), patch);
        let got = client::grant_and_response_types(
            &Ctx {
                request: &req,
                ssa: &ssa,
            },
            params,
        );
        verdict(name, &got, want);
    }
}

#[test]
fn normalize_response_type_is_order_and_space_insensitive() {
    let cases = [
        ("code", "code"),
        ("code id_token", "code id_token"),
        ("id_token code", "code id_token"),
        ("  id_token   code ", "code id_token"),
        ("", ""),
    ];
    for (input, want) in cases {
        assert_eq!(
            client::normalize_response_type(input),
            want,
            "case `{input}`"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 11. software_roles
// ---------------------------------------------------------------------------------------------

#[test]
fn software_roles_uk_role_mapping() {
    let p = uk_roles();
    let cases: Vec<Case> = vec![
        (
            "AISP+PISP, openid accounts payments",
            none(),
            none(),
            Ok(()),
        ),
        (
            "accounts with AISP only",
            json!({"scope": "openid accounts"}),
            json!({"software_roles": ["AISP"]}),
            Ok(()),
        ),
        (
            "payments with only AISP",
            json!({"scope": "payments"}),
            json!({"software_roles": ["AISP"]}),
            Err("scope `payments` needs the role PISP in the software statement"),
        ),
        (
            "fundsconfirmations with AISP+PISP",
            json!({"scope": "openid fundsconfirmations"}),
            none(),
            Err("scope `fundsconfirmations` needs the role CBPII"),
        ),
        (
            "fundsconfirmations with CBPII",
            json!({"scope": "openid fundsconfirmations"}),
            json!({"software_roles": ["CBPII"]}),
            Ok(()),
        ),
        (
            "role case differs",
            json!({"scope": "accounts"}),
            json!({"software_roles": ["aisp"]}),
            Err("needs the role AISP"),
        ),
        (
            "unknown scope",
            json!({"scope": "openid bogus"}),
            none(),
            Err("scope `bogus` is not recognised"),
        ),
        (
            "scope case differs is unknown",
            json!({"scope": "Accounts"}),
            none(),
            Err("scope `Accounts` is not recognised"),
        ),
        (
            "only openid, no roles claim at all",
            json!({"scope": "openid"}),
            json!({"software_roles": DEL}),
            Ok(()),
        ),
        (
            "empty scope",
            json!({"scope": ""}),
            json!({"software_roles": DEL}),
            Ok(()),
        ),
        (
            "absent scope",
            json!({"scope": DEL}),
            json!({"software_roles": DEL}),
            Ok(()),
        ),
        (
            "extra spaces",
            json!({"scope": "  openid   accounts  "}),
            none(),
            Ok(()),
        ),
        (
            "SSA without roles claim and a role-needing scope",
            json!({"scope": "openid accounts"}),
            json!({"software_roles": DEL}),
            Err("SSA claim `software_roles` not found"),
        ),
        (
            "SSA empty roles",
            json!({"scope": "accounts"}),
            json!({"software_roles": []}),
            Err("needs the role AISP"),
        ),
        (
            "software_roles a string",
            none(),
            json!({"software_roles": "AISP"}),
            Err("SSA claim `software_roles` must be an array, not a string"),
        ),
        (
            "software_roles null",
            none(),
            json!({"software_roles": null}),
            Err("SSA claim `software_roles` must be an array, not null"),
        ),
        (
            "software_roles element number",
            none(),
            json!({"software_roles": ["AISP", 2]}),
            Err("SSA claim `software_roles` must hold role names or role objects, not a number"),
        ),
        (
            "scope number",
            json!({"scope": 1}),
            none(),
            Err("claim `scope` must be a string, not a number"),
        ),
        (
            "scope array",
            json!({"scope": ["openid", "accounts"]}),
            none(),
            Err("claim `scope` must be a string, not an array"),
        ),
        (
            "scope null",
            json!({"scope": null}),
            none(),
            Err("claim `scope` must be a string, not null"),
        ),
        (
            "long unknown scope clipped",
            json!({"scope": "q".repeat(10_000)}),
            none(),
            Err("is not recognised"),
        ),
    ];
    run_cases(&uk_request(), &uk_ssa(), &cases, &|ctx| {
        roles::software_roles(ctx, &p)
    });

    // "payments with only AISP" names the missing role.
    let req = patched(&uk_request(), &json!({"scope": "payments"}));
    let ssa = patched(&uk_ssa(), &json!({"software_roles": ["AISP"]}));
    let got = roles::software_roles(
        &Ctx {
            request: &req,
            ssa: &ssa,
        },
        &p,
    );
    verdict("names PISP", &got, &Err("PISP"));
}

#[test]
fn software_roles_au_ssa_scope() {
    let p = au_roles();
    let cases: Vec<Case> = vec![
        (
            "subset",
            json!({"scope": "openid bank:accounts.basic:read bank:transactions:read"}),
            none(),
            Ok(()),
        ),
        (
            "exact set",
            json!({"scope": "openid profile bank:accounts.basic:read bank:transactions:read common:customer.basic:read"}),
            none(),
            Ok(()),
        ),
        ("absent scope", json!({"scope": DEL}), none(), Ok(())),
        (
            "scope not in the SSA",
            json!({"scope": "openid bank:payees:read"}),
            none(),
            Err("scope `bank:payees:read` is not granted by the software statement"),
        ),
        (
            "openid is not free in AU mode",
            json!({"scope": "openid"}),
            json!({"scope": "bank:accounts.basic:read"}),
            Err("scope `openid` is not granted"),
        ),
        (
            "prefix of a granted scope",
            json!({"scope": "bank:accounts"}),
            none(),
            Err("scope `bank:accounts` is not granted"),
        ),
        (
            "SSA scope missing",
            json!({"scope": "openid"}),
            json!({"scope": DEL}),
            Err("SSA claim `scope` not found"),
        ),
        (
            "SSA scope a number",
            json!({"scope": "openid"}),
            json!({"scope": 3}),
            Err("SSA claim `scope` must be a string, not a number"),
        ),
        (
            "SSA scope an array",
            json!({"scope": "openid"}),
            json!({"scope": ["openid"]}),
            Err("SSA claim `scope` must be a string, not an array"),
        ),
        (
            "request scope a number",
            json!({"scope": 3}),
            none(),
            Err("claim `scope` must be a string, not a number"),
        ),
        (
            "roles claim not read in AU mode",
            json!({"scope": "openid"}),
            json!({"software_roles": 5}),
            Ok(()),
        ),
    ];
    run_cases(&uk_request(), &au_ssa(), &cases, &|ctx| {
        roles::software_roles(ctx, &p)
    });
}

// ---------------------------------------------------------------------------------------------
// 12. The engine
// ---------------------------------------------------------------------------------------------

fn run_all(rules: &ClaimRules, req: &Claims, ssa: &Claims, stop: bool) -> Vec<(RuleId, String)> {
    let mut out = Vec::new();
    rules.run(&Ctx { request: req, ssa }, stop, &mut |id, why| {
        out.push((id, why))
    });
    out
}

#[test]
fn engine_order_matches_spec() {
    assert_eq!(
        CLAIM_RULE_ORDER,
        [
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
        ]
    );
}

#[test]
fn engine_valid_uk_pair_passes_every_rule() {
    let rules = uk_rules();
    let (req, ssa) = (uk_request(), uk_ssa());
    for stop in [true, false] {
        assert_eq!(run_all(&rules, &req, &ssa, stop), Vec::new(), "stop={stop}");
    }
    for id in CLAIM_RULE_ORDER {
        assert_eq!(
            rules.check(
                id,
                &Ctx {
                    request: &req,
                    ssa: &ssa
                }
            ),
            Some(Ok(())),
            "{id:?}"
        );
    }
}

#[test]
fn engine_each_rule_alone_reports_its_own_id() {
    // One breaking patch per rule; with all rules on, exactly that rule fails.
    let cases: Vec<(RuleId, Value, Value)> = vec![
        (
            RuleId::SoftwareStatus,
            none(),
            json!({"org_status": "Revoked"}),
        ),
        (RuleId::RequiredAttributes, json!({"jti": DEL}), none()),
        (
            RuleId::Issuer,
            json!({"iss": "other", "software_id": DEL}),
            none(),
        ),
        (RuleId::Audience, json!({"aud": "other-bank"}), none()),
        (
            RuleId::RedirectUriFormat,
            json!({"redirect_uris": ["https://tpp.example.com/cb"]}),
            json!({"software_redirect_uris": ["https://tpp.example.com/cb", "https://tpp.example.com/cb#f"]}),
        ),
        (
            RuleId::RedirectUriSubset,
            json!({"redirect_uris": ["https://tpp.example.com/cb3"]}),
            none(),
        ),
        (
            RuleId::UriHostname,
            none(),
            json!({"software_logo_uri": "https://cdn.example.net/l.png"}),
        ),
        (
            RuleId::TokenEndpointAuth,
            json!({"token_endpoint_auth_method": "tls_client_auth"}),
            none(),
        ),
        (
            RuleId::SigningAlgorithms,
            json!({"id_token_signed_response_alg": "RS256"}),
            none(),
        ),
        (
            RuleId::GrantAndResponseTypes,
            json!({"application_type": "native"}),
            none(),
        ),
        (
            RuleId::SoftwareRoles,
            json!({"scope": "openid fundsconfirmations"}),
            none(),
        ),
    ];
    let rules = uk_rules();
    for (id, req_patch, ssa_patch) in cases {
        let req = patched(&uk_request(), &req_patch);
        let ssa = patched(&uk_ssa(), &ssa_patch);
        let all = run_all(&rules, &req, &ssa, false);
        let ids: Vec<RuleId> = all.iter().map(|(i, _)| *i).collect();
        assert_eq!(ids, vec![id], "breaking {id:?}: {all:?}");
    }
}

#[test]
fn engine_stop_at_first_and_report_all() {
    // Break five rules at once (out of order in the patch).
    let req = patched(
        &uk_request(),
        &json!({
            "scope": "openid bogus",
            "id_token_signed_response_alg": "RS256",
            "aud": "someone-else",
            "redirect_uris": ["https://tpp.example.com/not-registered"]
        }),
    );
    let ssa = patched(&uk_ssa(), &json!({"org_status": "Inactive"}));
    let rules = uk_rules();

    let all = run_all(&rules, &req, &ssa, false);
    let ids: Vec<RuleId> = all.iter().map(|(i, _)| *i).collect();
    assert_eq!(
        ids,
        vec![
            RuleId::SoftwareStatus,
            RuleId::Audience,
            RuleId::RedirectUriSubset,
            RuleId::SigningAlgorithms,
            RuleId::SoftwareRoles,
        ],
        "{all:?}"
    );
    assert!(all[0].1.contains("Inactive"), "{all:?}");
    assert!(all[4].1.contains("bogus"), "{all:?}");

    let first = run_all(&rules, &req, &ssa, true);
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0], all[0]);

    // Switch off the first failing rule: the next one becomes first.
    let mut fewer = uk_rules();
    fewer.software_status = None;
    let first = run_all(&fewer, &req, &ssa, true);
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].0, RuleId::Audience);
    let all = run_all(&fewer, &req, &ssa, false);
    assert_eq!(all.len(), 4, "{all:?}");

    // Deterministic: the same input gives the same result.
    assert_eq!(
        run_all(&rules, &req, &ssa, false),
        run_all(&rules, &req, &ssa, false)
    );
}

#[test]
fn engine_disabled_rules_are_not_run() {
    // A pair that breaks every rule.
    let req = patched(
        &uk_request(),
        &json!({
            "jti": DEL,
            "iss": "other",
            "aud": 5,
            "redirect_uris": ["http://localhost/x"],
            "token_endpoint_auth_method": "client_secret_basic",
            "id_token_signed_response_alg": "none",
            "grant_types": ["implicit"],
            "scope": "bogus"
        }),
    );
    let ssa = patched(
        &uk_ssa(),
        &json!({"org_status": "Revoked", "software_logo_uri": "https://cdn.example.net/l"}),
    );

    let all = run_all(&uk_rules(), &req, &ssa, false);
    let ids: Vec<RuleId> = all.iter().map(|(i, _)| *i).collect();
    assert_eq!(ids, CLAIM_RULE_ORDER.to_vec(), "{all:?}");

    // Everything off (the default): nothing runs, nothing fails.
    let off = ClaimRules::default();
    assert!(run_all(&off, &req, &ssa, false).is_empty());
    for id in CLAIM_RULE_ORDER {
        assert_eq!(
            off.check(
                id,
                &Ctx {
                    request: &req,
                    ssa: &ssa
                }
            ),
            None,
            "{id:?}"
        );
    }

    // Switch each rule off in turn: it disappears from the report, the others stay in order.
    for skip in CLAIM_RULE_ORDER {
        let mut r = uk_rules();
        match skip {
            RuleId::SoftwareStatus => r.software_status = None,
            RuleId::RequiredAttributes => r.required_attributes = None,
            RuleId::Issuer => r.issuer = false,
            RuleId::Audience => r.audience = None,
            RuleId::RedirectUriFormat => r.redirect_uri_format = false,
            RuleId::RedirectUriSubset => r.redirect_uri_subset = false,
            RuleId::UriHostname => r.uri_hostname = false,
            RuleId::TokenEndpointAuth => r.token_endpoint_auth = None,
            RuleId::SigningAlgorithms => r.signing_algorithms = None,
            RuleId::GrantAndResponseTypes => r.grant_and_response_types = None,
            RuleId::SoftwareRoles => r.software_roles = None,
            other => panic!("unexpected claim rule {other:?}"),
        }
        let ids: Vec<RuleId> = run_all(&r, &req, &ssa, false)
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        let want: Vec<RuleId> = CLAIM_RULE_ORDER
            .iter()
            .copied()
            .filter(|i| *i != skip)
            .collect();
        assert_eq!(ids, want, "with {skip:?} off");
        assert_eq!(
            r.check(
                skip,
                &Ctx {
                    request: &req,
                    ssa: &ssa
                }
            ),
            None,
            "{skip:?} off"
        );
    }

    // Rules that are not claim rules are never run by `check`.
    let rules = uk_rules();
    for id in [
        RuleId::TokenClientBinding,
        RuleId::SsaIssuer,
        RuleId::SsaSignature,
        RuleId::RequestSignature,
        RuleId::IssuanceTime,
        RuleId::CertificateBinding,
        RuleId::RequestJti,
        RuleId::SsaJti,
    ] {
        assert_eq!(
            rules.check(
                id,
                &Ctx {
                    request: &req,
                    ssa: &ssa
                }
            ),
            None,
            "{id:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 13. Fuzz-style robustness
// ---------------------------------------------------------------------------------------------

/// xorshift64*: deterministic, no crates.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const FUZZ_STRINGS: &[&str] = &[
    "",
    " ",
    "  \t\n ",
    "null",
    "true",
    "0",
    "-1",
    "Active",
    "active",
    "Revoked",
    "sandbox",
    "production",
    "PS256",
    "ES256",
    "RS256",
    "none",
    "HS256",
    "private_key_jwt",
    "tls_client_auth",
    "client_secret_basic",
    "authorization_code",
    CIBA,
    "poll",
    "ping",
    "push",
    "code",
    "code id_token",
    "id_token code",
    "web",
    "mobile",
    "openid",
    "openid accounts payments",
    "openid bogus",
    "AISP",
    "PISP",
    "CBPII",
    SOFTWARE_ID,
    BANK_ORG,
    BANK_AS,
    "localhost",
    "https://localhost/cb",
    "https://app.localhost/cb",
    "https://127.0.0.1/cb",
    "https://[::1]/cb",
    "https://[::ffff:127.0.0.1]/cb",
    "https://2130706433/cb",
    "https://0.0.0.0/cb",
    "https:///cb",
    "https://",
    "https://:0",
    "https://[",
    "https://[::1",
    "https://a.example/cb#",
    "https://tpp.example.com/cb",
    "https://tpp.example.com/cb2",
    "https://TPP.example.com/x",
    "https://cdn.example.net/logo.png",
    "http://tpp.example.com/cb",
    "custom-scheme:/cb",
    "mailto:x@y",
    "/cb",
    "not a uri",
    "%",
    "%zz",
    "xn--",
    "https://xn--/",
    "https://xn--a.example/",
    "https://\u{202e}evil.example/",
    "ünïcödé 🚀 名前",
    "\u{0}",
    "\u{feff}",
    "\u{fffd}\u{fffd}",
    "CN=x,O=y,C=GB",
];

fn fuzz_string(rng: &mut Rng) -> String {
    match rng.below(6) {
        0 => "x".repeat(rng.below(20_000)),
        1 => format!("https://{}/cb", "a".repeat(rng.below(400))),
        2 => {
            // Random unicode scalar values.
            let n = rng.below(64);
            (0..n)
                .filter_map(|_| char::from_u32((rng.next() % 0x11_0000) as u32))
                .collect()
        }
        3 => format!("{} {}", rng.pick(FUZZ_STRINGS), rng.pick(FUZZ_STRINGS)),
        _ => rng.pick(FUZZ_STRINGS).to_string(),
    }
}

fn fuzz_value(rng: &mut Rng, depth: usize) -> Value {
    let kinds = if depth >= 3 { 4 } else { 6 };
    match rng.below(kinds) {
        0 => Value::Null,
        1 => Value::Bool(rng.below(2) == 0),
        2 => match rng.below(8) {
            0 => json!(0),
            1 => json!(-1),
            2 => json!(u64::MAX),
            3 => json!(i64::MIN),
            4 => json!(1.5e308),
            5 => json!(-0.000_001),
            6 => json!(rng.next()),
            _ => json!(rng.next() as f64 / 7.0),
        },
        3 => Value::String(fuzz_string(rng)),
        4 => {
            let n = rng.below(5);
            Value::Array((0..n).map(|_| fuzz_value(rng, depth + 1)).collect())
        }
        _ => {
            let n = rng.below(4);
            let mut m = serde_json::Map::new();
            for _ in 0..n {
                let k = if rng.below(2) == 0 {
                    "status".to_string()
                } else {
                    fuzz_string(rng)
                };
                m.insert(k, fuzz_value(rng, depth + 1));
            }
            Value::Object(m)
        }
    }
}

const FUZZ_KEYS: &[&str] = &[
    "iss",
    "iat",
    "exp",
    "jti",
    "aud",
    "scope",
    "redirect_uris",
    "token_endpoint_auth_method",
    "token_endpoint_auth_signing_alg",
    "tls_client_auth_subject_dn",
    "tls_client_auth_san_dns",
    "grant_types",
    "response_types",
    "application_type",
    "software_id",
    "software_statement",
    "id_token_signed_response_alg",
    "request_object_signing_alg",
    "backchannel_token_delivery_mode",
    "backchannel_client_notification_endpoint",
    "backchannel_authentication_request_signing_alg",
    "backchannel_user_code_parameter_supported",
    "org_status",
    "organisation_competent_authority_claims",
    "software_environment",
    "software_redirect_uris",
    "software_roles",
    "software_client_uri",
    "software_logo_uri",
    "software_tos_uri",
    "software_policy_uri",
];

fn mutate(rng: &mut Rng, claims: &mut Claims) {
    match rng.below(10) {
        // Delete a claim.
        0 | 1 => {
            let keys: Vec<String> = claims.keys().cloned().collect();
            if !keys.is_empty() {
                let k = rng.pick(&keys).clone();
                claims.remove(&k);
            }
        }
        // Replace (or add) a known claim with a random value.
        2..=5 => {
            let k = rng.pick(FUZZ_KEYS).to_string();
            let v = fuzz_value(rng, 0);
            claims.insert(k, v);
        }
        // Replace one element of an array claim.
        6 => {
            let keys: Vec<String> = claims
                .iter()
                .filter(|(_, v)| v.as_array().is_some_and(|a| !a.is_empty()))
                .map(|(k, _)| k.clone())
                .collect();
            if !keys.is_empty() {
                let k = rng.pick(&keys).clone();
                let v = fuzz_value(rng, 1);
                if let Some(Value::Array(a)) = claims.get_mut(&k) {
                    let i = rng.below(a.len());
                    a[i] = v;
                }
            }
        }
        // Replace the nested competent-authority status.
        7 => {
            let v = fuzz_value(rng, 1);
            let mut parent = serde_json::Map::new();
            parent.insert("authority_id".to_string(), json!("FCAGBR"));
            parent.insert("status".to_string(), v);
            claims.insert(
                "organisation_competent_authority_claims".to_string(),
                Value::Object(parent),
            );
        }
        // A string claim set to a valid-looking string (keeps rules past their first checks).
        8 => {
            let k = rng.pick(FUZZ_KEYS).to_string();
            claims.insert(k, Value::String(rng.pick(FUZZ_STRINGS).to_string()));
        }
        // An odd new key (SAN-like prefix with a long suffix, unicode).
        _ => {
            let k = if rng.below(2) == 0 {
                format!("tls_client_auth_san_{}", "z".repeat(rng.below(2000)))
            } else {
                fuzz_string(rng)
            };
            claims.insert(k, fuzz_value(rng, 1));
        }
    }
}

#[test]
fn fuzz_rules_never_panic_and_messages_are_bounded() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let base_req = uk_request();
    let base_ssa = uk_ssa();
    let mut rules = uk_rules();
    // Allowed values too, so that branch is exercised.
    if let Some(r) = rules.required_attributes.as_mut() {
        r.allowed_values = vec![
            (
                "scope".to_string(),
                strings(&["openid", "accounts", "payments", "fundsconfirmations"]),
            ),
            (
                "grant_types".to_string(),
                strings(&[
                    "authorization_code",
                    "client_credentials",
                    "refresh_token",
                    CIBA,
                ]),
            ),
        ];
    }
    let mut failures_seen = 0usize;
    let mut passes_seen = 0usize;
    for iteration in 0..5000 {
        let mut req = base_req.clone();
        let mut ssa = base_ssa.clone();
        let n = 1 + rng.below(4);
        for _ in 0..n {
            if rng.below(2) == 0 {
                mutate(&mut rng, &mut req);
            } else {
                mutate(&mut rng, &mut ssa);
            }
        }
        let all = run_all(&rules, &req, &ssa, false);
        for (id, msg) in &all {
            assert!(
                !msg.trim().is_empty(),
                "iteration {iteration}: empty message from {id:?}"
            );
            assert!(
                msg.chars().count() <= 600,
                "iteration {iteration}: {id:?} message of {} chars: {}",
                msg.chars().count(),
                msg.chars().take(200).collect::<String>()
            );
        }
        // Each rule reports at most once, in order.
        let ids: Vec<RuleId> = all.iter().map(|(i, _)| *i).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(ids, sorted, "iteration {iteration}: order or duplicates");
        // Enforcing mode stops at the first of those.
        let first = run_all(&rules, &req, &ssa, true);
        assert_eq!(
            first.as_slice(),
            &all[..all.len().min(1)],
            "iteration {iteration}"
        );
        if all.is_empty() {
            passes_seen += 1;
        } else {
            failures_seen += all.len();
        }
    }
    // The mutations do reach the rules (not everything trivially passes or fails).
    assert!(failures_seen > 1000, "failures {failures_seen}");
    assert!(passes_seen > 0, "passes {passes_seen}");
}
