//! Table-driven tests of `rules/identity.rs`.

use super::*;
use crate::rules::identity;

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
