//! Table-driven tests of `rules/client.rs`.

use super::*;
use crate::rules::client;

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
