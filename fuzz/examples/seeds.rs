//! Writes the fixed key material and valid registrations the fuzz targets use (`fixtures/`) and
//! the seed corpora (`corpus/<target>/`), minted with the integration tests' helpers
//! (crate `dcr-guard-testkit`, tests/testkit). Run from `fuzz/`:
//! `cargo run --example seeds`. The output is committed; rerunning replaces it (fresh keys, a new
//! base time).
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use dcr_guard_testkit::{dcr, keys};
use std::fs;

use dcr::{Tpp, DIRECTORY_JWKS_URL};
use keys::{now, TestKey};
use serde_json::{json, Value};

const AS_JWKS_URL: &str = "https://as.bank.test/jwks";
const AS_ISSUER: &str = "https://as.bank.test";
const CLIENT_ID: &str = "client-1";

fn write(dir: &str, name: &str, bytes: &[u8]) {
    fs::create_dir_all(dir).unwrap();
    fs::write(format!("{dir}/{name}"), bytes).unwrap();
}

/// A pipeline seed: one byte of control length, the control bytes, then the body.
fn pipeline_seed(control: &[u8], body: &str) -> Vec<u8> {
    let mut v = vec![control.len() as u8];
    v.extend_from_slice(control);
    v.extend_from_slice(body.as_bytes());
    v
}

fn main() {
    let t = now() as i64;
    // One directory key (PS256, RSA) and one TPP key (ES256): both algorithm families are reached.
    let tpp = Tpp::new(TestKey::rsa("dir-1"), TestKey::ec("tpp-1"));
    let as_key = TestKey::ec("as-1");
    let ed = TestKey::ed("ed-1");

    let uk = tpp.filter_config("directory", "software");
    let mut uk_open = uk.clone();
    uk_open["hold_headers"] = json!(false);
    let mut uk_json = uk.clone();
    uk_json["forward"] = json!("json");
    let mut uk_jwt = uk.clone();
    uk_jwt["rules"]["token_client_binding"] = json!({
        "mode": "jwt",
        "jwks": [{"url": AS_JWKS_URL, "upstream": "as"}],
        "issuer": AS_ISSUER,
        "audiences": ["dcr-guard"],
    });
    let mut uk_report = uk.clone();
    uk_report["report_only"] = json!(true);
    let au = tpp.au_filter_config("directory", "software");
    let br = tpp.br_filter_config("directory", "software");
    let configs = vec![uk, uk_open, uk_jwt, uk_report, au, br, uk_json];

    let mut keystore = serde_json::Map::new();
    keystore.insert(DIRECTORY_JWKS_URL.into(), tpp.directory_jwks());
    keystore.insert(tpp.jwks_url(), tpp.software_jwks());
    keystore.insert(AS_JWKS_URL.into(), keys::jwks(&[&as_key]));

    let uk_body = tpp.request();
    let au_body = tpp.au_request();
    let br_body = tpp.br_request();
    // A PUT body (RFC 7592): the same create claims plus the path's client id.
    let put_body = tpp.request_with(|c| c["client_id"] = json!(CLIENT_ID));
    let access_token = as_key.sign(
        "ES256",
        json!({"typ": "at+jwt"}),
        &json!({
            "iss": AS_ISSUER,
            "aud": "dcr-guard",
            "client_id": CLIENT_ID,
            "scope": "openid",
            "iat": t,
            "exp": t + 3600,
            "jti": keys::uuid_v4(),
        }),
    );
    let fixtures = json!({
        "now": t,
        "client_id": CLIENT_ID,
        "configs": configs,
        "keystore": keystore,
        "bodies": [uk_body, au_body, br_body, put_body],
        "tokens": [access_token],
    });
    write(
        "fixtures",
        "pipeline.json",
        serde_json::to_string_pretty(&fixtures).unwrap().as_bytes(),
    );

    // jws: valid tokens of every algorithm family, signed by keys in fixtures/jwks.json.
    let rsa2 = TestKey::rsa("rsa-2");
    let key_set = keys::jwks(&[&tpp.directory, &tpp.key, &as_key, &ed, &rsa2]);
    write(
        "fixtures",
        "jwks.json",
        serde_json::to_string_pretty(&key_set).unwrap().as_bytes(),
    );
    let claims = json!({"iss": "a", "sub": "b", "iat": t});
    let mut tokens: Vec<String> = vec![
        uk_body.clone(),
        au_body.clone(),
        access_token.clone(),
        tpp.ssa(),
        ed.sign("EdDSA", Value::Null, &claims),
        rsa2.sign("RS256", Value::Null, &claims),
        rsa2.sign("PS256", json!({"typ": "JWT", "cty": "x"}), &claims),
        tpp.key.sign("ES256", json!({"kid": Value::Null}), &claims),
        tpp.key.sign(
            "ES256",
            json!({"x5t#S256": "abc", "jku": "https://x"}),
            &claims,
        ),
        tpp.key
            .sign("ES256", json!({"crit": ["exp"], "exp": 1}), &claims),
        keys::unsigned_none(&claims),
    ];
    tokens.push(dcr::corrupt_signature(&uk_body));
    for (i, tok) in tokens.iter().enumerate() {
        write("corpus/jws", &format!("seed-{i:02}"), tok.as_bytes());
    }

    // jwks: the fixture sets, one entry of each kind, and edge entries.
    let mut jw = vec![
        key_set.clone(),
        tpp.directory_jwks(),
        tpp.software_jwks(),
        keys::jwks(&[&ed]),
        json!({"keys": []}),
        json!({"keys": [tpp.key.public_jwk_with(json!({"use": "enc"}))]}),
        json!({"keys": [tpp.key.public_jwk_with(json!({"alg": "RSA-OAEP-256"}))]}),
        json!({"keys": [tpp.key.public_jwk_with(json!({"key_ops": ["sign"]}))]}),
        json!({"keys": [tpp.key.public_jwk_with(json!({"kid": "dup"})), ed.public_jwk_with(json!({"kid": "dup"}))]}),
        json!({"keys": [tpp.key.public_jwk_with(json!({"kid": Value::Null}))]}),
        json!({"keys": [tpp.key.public_jwk_with(json!({"use": "tls", "x5t#S256": keys::b64([7u8; 32])}))]}),
        json!({"keys": [tpp.key.public_jwk(), tpp.key.public_jwk()]}),
    ];
    jw.push(json!({"keys": [{"kty": "oct", "k": "AAAA"}]}));
    for (i, doc) in jw.iter().enumerate() {
        // First byte: the max_keys bound the target uses.
        let mut bytes = vec![if i == 0 { 100 } else { 3 }];
        bytes.extend_from_slice(doc.to_string().as_bytes());
        write("corpus/jwks", &format!("seed-{i:02}"), &bytes);
    }

    // pipeline: every valid registration under its configuration, and management calls.
    // Control bytes (see fuzz_targets/pipeline.rs): config, method, path, content type.
    let mut seeds: Vec<Vec<u8>> = vec![
        pipeline_seed(&[], &uk_body),
        pipeline_seed(&[1], &uk_body),
        pipeline_seed(&[3], &uk_body),
        pipeline_seed(&[4], &au_body),
        // Brazil: with the TPP's client certificate (flags, the 10th control byte).
        pipeline_seed(&[5, 0, 0, 0, 0, 0, 0, 0, 0, 1], &br_body),
        pipeline_seed(&[2, 1, 2], &put_body),
        pipeline_seed(&[2, 2, 2], ""),
        pipeline_seed(&[2, 3, 2], ""),
        pipeline_seed(&[0, 2, 2], ""),
        pipeline_seed(&[0, 0, 0], &dcr::corrupt_signature(&uk_body)),
        pipeline_seed(&[0, 0, 0], "not a jwt"),
    ];
    seeds.push(pipeline_seed(&[0, 0, 0, 0, 1], &uk_body));
    seeds.push(pipeline_seed(&[6], &uk_body));
    // Flags (the 10th control byte): forged fact headers, then the same request replayed.
    seeds.push(pipeline_seed(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 2 | 8], &uk_body));
    for (i, s) in seeds.iter().enumerate() {
        write("corpus/pipeline", &format!("seed-{i:02}"), s);
    }

    // json_body: the Brazilian body, its parts, and duplicate-member cases.
    let br_value: Value = serde_json::from_str(&br_body).unwrap();
    let mut jb: Vec<String> = vec![
        br_body.clone(),
        serde_json::to_string_pretty(&br_value).unwrap(),
        r#"{"a":1,"a":2}"#.into(),
        r#"{"a":1,"\u0061":2}"#.into(),
        r#"{"a":{"b":1,"b":2}}"#.into(),
        r#"[{"a":1}]"#.into(),
        r#"{"a":[1,{"x":null}],"b":"\ud83d\ude00","c":-1.5e3,"d":true}"#.into(),
        r#"{}"#.into(),
    ];
    jb.push(serde_json::to_string(&tpp.br_ssa_claims()).unwrap());
    // Duplicates inside arrays of objects, at depth.
    jb.push(r#"{"jwks":{"keys":[{"kty":"EC"},{"kty":"EC","kty":"RSA"}]}}"#.into());
    jb.push(r#"{"a":[[{"x":1,"\u0078":2}]]}"#.into());
    for (i, s) in jb.iter().enumerate() {
        write("corpus/json_body", &format!("seed-{i:02}"), s.as_bytes());
    }

    // config: every fixture configuration and the README's kit shapes.
    for (i, c) in fixtures["configs"].as_array().unwrap().iter().enumerate() {
        write(
            "corpus/config",
            &format!("seed-{i:02}"),
            serde_json::to_string_pretty(c).unwrap().as_bytes(),
        );
    }
}
