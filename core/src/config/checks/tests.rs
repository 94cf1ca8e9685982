//! The shared field checks, through whole documents.
#![allow(clippy::type_complexity)]

use serde_json::json;

use crate::config::tests::{minimal, refused};

/// `none` and every HMAC algorithm are refused wherever an algorithm list is configured, in
/// any letter case, with the same message (one check: `jose::alg_is_forbidden`).
#[test]
fn never_allowed_algorithms_in_any_case() {
    let sites: Vec<(&str, Box<dyn Fn(&mut serde_json::Value, &str)>)> = vec![
        (
            "directories[0].algorithms[1]",
            Box::new(|v, a| v["directories"][0]["algorithms"] = json!(["PS256", a])),
        ),
        (
            "request_algorithms[1]",
            Box::new(|v, a| v["request_algorithms"] = json!(["PS256", a])),
        ),
        (
            "rules.token_client_binding.algorithms[1]",
            Box::new(|v, a| {
                v["rules"]["token_client_binding"] = json!({
                    "mode": "jwt",
                    "jwks": [{"url": "https://as.bank.test/jwks", "upstream": "as"}],
                    "issuer": "https://as.bank.test",
                    "algorithms": ["PS256", a]
                })
            }),
        ),
        (
            "rules.signing_algorithms.algorithms[1]",
            Box::new(|v, a| v["rules"]["signing_algorithms"] = json!({"algorithms": ["PS256", a]})),
        ),
    ];
    for (field, set) in &sites {
        for alg in ["none", "None", "NONE", "HS256", "hS256", "hs384", "Hs512"] {
            let mut v = minimal();
            set(&mut v, alg);
            let e = refused(v);
            assert_eq!(e.field, *field, "{alg}: {e}");
            assert!(
                e.message.starts_with(&format!("`{alg}` is never allowed")),
                "{alg} at {field}: {e}"
            );
        }
    }
}
