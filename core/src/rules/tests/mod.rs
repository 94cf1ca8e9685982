//! Table-driven tests of every claim rule: one file per rule file (`tests/status.rs` tests
//! `status.rs`, …), the shared fixtures, the engine and the robustness tests here.
//!
//! Each test builds a realistic UK (or AU) request / SSA pair, applies a per-case patch (set claims,
//! delete claims with the `DEL` marker) and checks the rule's verdict: `Ok(())`, or an error whose
//! message contains an expected fragment (so a case fails for the right reason).

use super::*;
use crate::error::RuleId;
use serde_json::{json, Value};

// The rules of each file of `rules/`, one test file each; the fixtures and helpers below are
// theirs too. The engine and the robustness tests are at the end of this file.
mod attributes;
mod client;
mod identity;
mod redirect;
mod roles;
mod status;

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
