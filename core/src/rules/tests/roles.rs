//! Table-driven tests of `rules/roles.rs`.

use super::*;
use crate::rules::roles;

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
