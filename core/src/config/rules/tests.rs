//! The `rules` object: the regime's mandatory rules per profile.
#![allow(clippy::type_complexity)]

use serde_json::json;

use crate::config::tests::{minimal, parse};

#[test]
fn mandatory_rules_per_profile() {
    use crate::error::RuleId as R;
    const ALL: [R; 20] = [
        R::TokenClientBinding,
        R::SsaIssuer,
        R::SsaSignature,
        R::RequestSignature,
        R::IssuanceTime,
        R::SoftwareStatus,
        R::RequiredAttributes,
        R::Issuer,
        R::Audience,
        R::RedirectUriFormat,
        R::RedirectUriSubset,
        R::UriHostname,
        R::TokenEndpointAuth,
        R::SigningAlgorithms,
        R::GrantAndResponseTypes,
        R::SoftwareRoles,
        R::CertificateBinding,
        R::ParticipantStatus,
        R::RequestJti,
        R::SsaJti,
    ];
    let dir = |issuer: &str| json!([{"issuer": issuer, "jwks": [{"url": "https://k.example/jwks", "upstream": "k"}]}]);
    let uk = minimal();
    let au = json!({"profile": "au-cdr", "directories": dir("cdr-register"),
                    "rules": {"audience": {"audiences": ["https://holder.example"]}}});
    let br = json!({"profile": "br-ofb", "directories": dir("br")});
    // (profile, base configuration, the rules that cannot be switched off)
    let table: Vec<(&str, serde_json::Value, Vec<R>)> = vec![
        (
            "uk-obie",
            uk,
            vec![
                R::SsaIssuer,
                R::SsaSignature,
                R::RequestSignature,
                R::RedirectUriSubset,
            ],
        ),
        (
            "au-cdr",
            au,
            vec![
                R::SsaIssuer,
                R::SsaSignature,
                R::RequestSignature,
                R::RedirectUriSubset,
                R::Audience,
            ],
        ),
        (
            "br-ofb",
            br,
            vec![
                R::SsaIssuer,
                R::SsaSignature,
                R::RedirectUriSubset,
                R::CertificateBinding,
            ],
        ),
    ];
    for (profile, base, mandatory) in table {
        for report_only in [false, true] {
            let mut on = base.clone();
            on["report_only"] = json!(report_only);
            let c = parse(&on).unwrap_or_else(|e| panic!("{profile}: {e}"));
            // Report-only keeps every mandatory rule on: it is the way to roll out.
            assert!(c.rules.ssa_issuer && c.rules.ssa_signature, "{profile}");
            if mandatory.contains(&R::CertificateBinding) {
                assert!(c.rules.certificate_binding.is_some(), "{profile}");
            }
            for rule in ALL {
                let mut v = on.clone();
                v["rules"][rule.as_str()]["enabled"] = json!(false);
                let got = parse(&v);
                if mandatory.contains(&rule) {
                    let e = got
                        .err()
                        .unwrap_or_else(|| panic!("{profile}: `{}` switched off", rule.as_str()));
                    assert_eq!(e.field, format!("rules.{}.enabled", rule.as_str()));
                    assert!(e.message.contains(profile), "{e}");
                    assert!(e.message.contains("mandatory"), "{e}");
                    assert!(e.message.contains(rule.as_str()), "{e}");
                } else {
                    assert!(
                        got.is_ok(),
                        "{profile}: `{}` cannot be switched off: {:?}",
                        rule.as_str(),
                        got.err()
                    );
                }
            }
        }
    }
}
