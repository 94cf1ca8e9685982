//! Table-driven tests of `rules/status.rs`.

use super::*;
use crate::rules::status;

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
