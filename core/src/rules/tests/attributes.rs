//! Table-driven tests of `rules/attributes.rs`.

use super::*;
use crate::rules::attributes;

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
