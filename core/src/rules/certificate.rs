//! `certificate_binding` (spec §4; regimes: UK "the TLS client is the SSA's TPP", BR "cert `UID` =
//! `software_id`; `organizationIdentifier` = `OFBBR-<org_id>`"): the mutual-TLS client certificate
//! belongs to the software the SSA describes, and a `tls_client_auth_subject_dn` sent in the
//! request matches its subject (spec §4a, [`crate::dn`]).
//!
//! Identifier checks (`org`, `software`) compare the certificate attribute's decoded value with the
//! expected string **exactly** (case-sensitive, no whitespace folding): software and organisation
//! identifiers are case-sensitive tokens (UK software IDs are base62), unlike the DN comparison of
//! `tls_client_auth_subject_dn`, which follows X.500 caseIgnoreMatch. When an attribute occurs more
//! than once, the first in the host's rendering (the most specific RDN) is the one checked.

use super::Ctx;
use crate::cert::ClientCert;
use crate::claims::{opt_str, req_str};
use crate::dn::Dn;
use crate::error::clip;

/// The organisation check: certificate `attribute` = `prefix` + SSA `ssa_claim`.
#[derive(Debug, Clone)]
pub struct OrgCheck {
    /// Certificate subject attribute, by name or OID, e.g. `organizationIdentifier` (BR), `OU` (UK).
    pub attribute: String,
    /// Prefix of the attribute value before the SSA claim, e.g. `OFBBR-` (BR), `` (UK).
    pub prefix: String,
    /// SSA claim with the organisation id, e.g. `org_id`.
    pub ssa_claim: String,
}

/// The software check: certificate `attribute` = SSA `ssa_claim`.
#[derive(Debug, Clone)]
pub struct SoftwareCheck {
    /// Certificate subject attribute, e.g. `UID` (BR) or `CN` (UK).
    pub attribute: String,
    /// SSA claim, e.g. `software_id`.
    pub ssa_claim: String,
}

/// `certificate_binding` parameters.
#[derive(Debug, Clone, Default)]
pub struct CertificateBinding {
    /// The organisation check, if any.
    pub org: Option<OrgCheck>,
    /// The software check, if any.
    pub software: Option<SoftwareCheck>,
    /// The certificate's SHA-256 thumbprint must be among the software JWKS's `use: tls` keys.
    pub thumbprint: bool,
    /// When the request carries `tls_client_auth_subject_dn`, it must match the certificate subject.
    pub subject_dn: bool,
}

/// The request claim naming the certificate subject (RFC 8705 §2.1.2).
const SUBJECT_DN_CLAIM: &str = "tls_client_auth_subject_dn";

/// `cert`: `None` when the connection had no client certificate. `tls_thumbprints`: from the
/// software JWKS (`None` when it was not fetched). Checks run in the order org, software,
/// thumbprint, subject DN; the first failure is reported.
pub(crate) fn certificate_binding(
    ctx: &Ctx<'_>,
    cert: Option<&ClientCert>,
    tls_thumbprints: Option<&[[u8; 32]]>,
    p: &CertificateBinding,
) -> Result<(), String> {
    let cert = cert.ok_or("a client certificate is required")?;
    if let Some(org) = &p.org {
        let id = req_str(ctx.ssa, &org.ssa_claim).map_err(|m| format!("SSA {m}"))?;
        let want = format!("{}{id}", org.prefix);
        attribute_equals(&cert.subject, &org.attribute, &want, &org.ssa_claim)?;
    }
    if let Some(sw) = &p.software {
        let id = req_str(ctx.ssa, &sw.ssa_claim).map_err(|m| format!("SSA {m}"))?;
        attribute_equals(&cert.subject, &sw.attribute, id, &sw.ssa_claim)?;
    }
    if p.thumbprint {
        let published = tls_thumbprints
            .filter(|t| !t.is_empty())
            .ok_or("the software JWKS publishes no transport key")?;
        let sha256 = cert
            .sha256
            .ok_or("the client certificate's SHA-256 thumbprint is unknown")?;
        if !published.contains(&sha256) {
            return Err(
                "the client certificate is not among the software JWKS's transport keys"
                    .to_string(),
            );
        }
    }
    if p.subject_dn {
        if let Some(s) = opt_str(ctx.request, SUBJECT_DN_CLAIM)? {
            let dn = Dn::parse(s).map_err(|e| {
                format!("request `{SUBJECT_DN_CLAIM}` is not a valid distinguished name: {e}")
            })?;
            if !dn.matches(&cert.subject) {
                return Err(format!(
                    "request `{SUBJECT_DN_CLAIM}` does not match the client certificate subject"
                ));
            }
        }
    }
    Ok(())
}

fn attribute_equals(subject: &Dn, attribute: &str, want: &str, claim: &str) -> Result<(), String> {
    let got = subject.get(attribute).ok_or_else(|| {
        format!(
            "the client certificate subject has no `{}`",
            clip(attribute, 64)
        )
    })?;
    if got != want {
        return Err(format!(
            "client certificate `{}` `{}` does not match the SSA's `{}`",
            clip(attribute, 64),
            clip(got, 64),
            clip(claim, 64)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::Claims;
    use serde_json::{json, Value};

    fn claims(v: Value) -> Claims {
        v.as_object().unwrap().clone()
    }

    fn der_hex(tag: u8, content: &[u8]) -> String {
        let mut s = format!("#{tag:02X}{:02X}", content.len());
        for b in content {
            s.push_str(&format!("{b:02X}"));
        }
        s
    }

    const UK_SOFTWARE: &str = "2kiXQyo0tedjW2somjSgH7";
    const UK_ORG: &str = "0015800001HQQrZAAX";
    const BR_SOFTWARE: &str = "5f4d1e9a-1111-4a2b-9c3d-0123456789ab";
    const BR_ORG: &str = "74e929d9-33b6-4d85-8ba7-c146c867a817";
    const THUMB: [u8; 32] = [0xAB; 32];

    fn uk_cert() -> ClientCert {
        ClientCert::from_envoy(
            &format!("CN={UK_SOFTWARE},OU={UK_ORG},O=OpenBanking,C=GB"),
            Some(&"ab".repeat(32)),
            None,
        )
        .unwrap()
    }

    fn br_cert() -> ClientCert {
        let oi = der_hex(0x0C, format!("OFBBR-{BR_ORG}").as_bytes());
        ClientCert::from_envoy(
            &format!(
                "CN=tpp.example.com.br,UID={BR_SOFTWARE},2.5.4.97={oi},OU={BR_ORG},\
                 L=SAO PAULO,ST=SP,O=Example Ltda,C=BR,serialNumber=12345678000199,\
                 businessCategory=Private Organization,jurisdictionC=BR"
            ),
            Some(&"ab".repeat(32)),
            Some("https://tpp.example.com.br"),
        )
        .unwrap()
    }

    fn uk_rule() -> CertificateBinding {
        CertificateBinding {
            org: Some(OrgCheck {
                attribute: "OU".into(),
                prefix: String::new(),
                ssa_claim: "org_id".into(),
            }),
            software: Some(SoftwareCheck {
                attribute: "CN".into(),
                ssa_claim: "software_id".into(),
            }),
            thumbprint: false,
            subject_dn: true,
        }
    }

    fn br_rule() -> CertificateBinding {
        CertificateBinding {
            org: Some(OrgCheck {
                attribute: "organizationIdentifier".into(),
                prefix: "OFBBR-".into(),
                ssa_claim: "org_id".into(),
            }),
            software: Some(SoftwareCheck {
                attribute: "UID".into(),
                ssa_claim: "software_id".into(),
            }),
            thumbprint: true,
            subject_dn: true,
        }
    }

    /// (why, rule, cert, SSA, request, JWKS transport thumbprints, expected error fragment)
    type Case = (
        &'static str,
        CertificateBinding,
        Option<ClientCert>,
        Value,
        Value,
        Option<Vec<[u8; 32]>>,
        Option<&'static str>,
    );

    #[test]
    fn table() {
        let uk_ssa = json!({"software_id": UK_SOFTWARE, "org_id": UK_ORG});
        let br_ssa = json!({"software_id": BR_SOFTWARE, "org_id": BR_ORG});
        let uk_dn_rev = format!("C=GB,O=OpenBanking,OU={UK_ORG},CN={UK_SOFTWARE}");
        let br_dn = format!(
            "CN=tpp.example.com.br, UID={BR_SOFTWARE}, organizationIdentifier=OFBBR-{BR_ORG}, \
             OU={BR_ORG}, L=Sao Paulo, ST=SP, O=Example Ltda, C=BR, serialNumber=12345678000199, \
             businessCategory=Private Organization, jurisdictionCountryName=BR"
        );
        let thumbs = Some(vec![[1u8; 32], THUMB]);
        let only = |org: bool, sw: bool, thumbprint: bool, subject_dn: bool| {
            let r = uk_rule();
            CertificateBinding {
                org: r.org.filter(|_| org),
                software: r.software.filter(|_| sw),
                thumbprint,
                subject_dn,
            }
        };
        let mut no_hash = uk_cert();
        no_hash.sha256 = None;
        let cases: Vec<Case> = vec![
            // UK-like: software via CN, org via OU, no prefix.
            ("UK ok", uk_rule(), Some(uk_cert()), uk_ssa.clone(), json!({}), None, None),
            (
                "UK ok, subject DN in certificate order",
                uk_rule(),
                Some(uk_cert()),
                uk_ssa.clone(),
                json!({ SUBJECT_DN_CLAIM: uk_dn_rev }),
                None,
                None,
            ),
            (
                "UK other software",
                uk_rule(),
                Some(uk_cert()),
                json!({"software_id": "other", "org_id": UK_ORG}),
                json!({}),
                None,
                Some("client certificate `CN` `2kiXQyo0tedjW2somjSgH7` does not match the SSA's `software_id`"),
            ),
            (
                "UK software id differs only in case",
                uk_rule(),
                Some(uk_cert()),
                json!({"software_id": UK_SOFTWARE.to_lowercase(), "org_id": UK_ORG}),
                json!({}),
                None,
                Some("`software_id`"),
            ),
            (
                "UK other organisation",
                uk_rule(),
                Some(uk_cert()),
                json!({"software_id": UK_SOFTWARE, "org_id": "0015800001ZZZZZZZZ"}),
                json!({}),
                None,
                Some("`OU` `0015800001HQQrZAAX` does not match the SSA's `org_id`"),
            ),
            (
                "SSA org_id missing",
                uk_rule(),
                Some(uk_cert()),
                json!({"software_id": UK_SOFTWARE}),
                json!({}),
                None,
                Some("SSA claim `org_id` not found"),
            ),
            (
                "SSA org_id wrong type",
                uk_rule(),
                Some(uk_cert()),
                json!({"software_id": UK_SOFTWARE, "org_id": 42}),
                json!({}),
                None,
                Some("SSA claim `org_id` must be a string"),
            ),
            (
                "SSA software_id wrong type",
                uk_rule(),
                Some(uk_cert()),
                json!({"software_id": [UK_SOFTWARE], "org_id": UK_ORG}),
                json!({}),
                None,
                Some("SSA claim `software_id` must be a string"),
            ),
            (
                "attribute missing in the certificate",
                uk_rule(),
                Some(ClientCert::from_envoy("CN=x,O=OpenBanking,C=GB", None, None).unwrap()),
                uk_ssa.clone(),
                json!({}),
                None,
                Some("the client certificate subject has no `OU`"),
            ),
            // BR-like: UID + organizationIdentifier with the OFBBR- prefix (Envoy's #hex rendering).
            (
                "BR ok",
                br_rule(),
                Some(br_cert()),
                br_ssa.clone(),
                json!({ SUBJECT_DN_CLAIM: br_dn }),
                thumbs.clone(),
                None,
            ),
            (
                "BR org_id without the prefix does not do",
                CertificateBinding {
                    org: Some(OrgCheck {
                        attribute: "2.5.4.97".into(),
                        prefix: String::new(),
                        ssa_claim: "org_id".into(),
                    }),
                    ..br_rule()
                },
                Some(br_cert()),
                br_ssa.clone(),
                json!({}),
                thumbs.clone(),
                Some("`OFBBR-74e929d9-33b6-4d85-8ba7-c146c867a817` does not match the SSA's `org_id`"),
            ),
            (
                "BR other organisation",
                br_rule(),
                Some(br_cert()),
                json!({"software_id": BR_SOFTWARE, "org_id": "00000000-0000-0000-0000-000000000000"}),
                json!({}),
                thumbs.clone(),
                Some("`organizationIdentifier`"),
            ),
            (
                "BR other software",
                br_rule(),
                Some(br_cert()),
                json!({"software_id": "00000000-0000-0000-0000-000000000000", "org_id": BR_ORG}),
                json!({}),
                thumbs.clone(),
                Some("client certificate `UID`"),
            ),
            // Thumbprint.
            (
                "thumbprint published",
                only(false, false, true, false),
                Some(uk_cert()),
                json!({}),
                json!({}),
                thumbs.clone(),
                None,
            ),
            (
                "thumbprint not published",
                only(false, false, true, false),
                Some(uk_cert()),
                json!({}),
                json!({}),
                Some(vec![[1u8; 32]]),
                Some("not among the software JWKS's transport keys"),
            ),
            (
                "no transport keys",
                only(false, false, true, false),
                Some(uk_cert()),
                json!({}),
                json!({}),
                Some(vec![]),
                Some("the software JWKS publishes no transport key"),
            ),
            (
                "JWKS not fetched",
                br_rule(),
                Some(br_cert()),
                br_ssa.clone(),
                json!({}),
                None,
                Some("the software JWKS publishes no transport key"),
            ),
            (
                "certificate digest unknown",
                only(false, false, true, false),
                Some(no_hash),
                json!({}),
                json!({}),
                thumbs.clone(),
                Some("thumbprint is unknown"),
            ),
            (
                "thumbprint off: JWKS not needed",
                uk_rule(),
                Some(uk_cert()),
                uk_ssa.clone(),
                json!({}),
                None,
                None,
            ),
            // tls_client_auth_subject_dn.
            (
                "subject DN, RFC 4514 order and spaces",
                only(false, false, false, true),
                Some(uk_cert()),
                json!({}),
                json!({ SUBJECT_DN_CLAIM: format!("cn={UK_SOFTWARE}, ou={UK_ORG}, o=OpenBanking, c=GB") }),
                None,
                None,
            ),
            (
                "subject DN different",
                only(false, false, false, true),
                Some(uk_cert()),
                json!({}),
                json!({ SUBJECT_DN_CLAIM: format!("CN=other,OU={UK_ORG},O=OpenBanking,C=GB") }),
                None,
                Some("does not match the client certificate subject"),
            ),
            (
                "subject DN rotated",
                only(false, false, false, true),
                Some(uk_cert()),
                json!({}),
                json!({ SUBJECT_DN_CLAIM: format!("OU={UK_ORG},O=OpenBanking,C=GB,CN={UK_SOFTWARE}") }),
                None,
                Some("does not match the client certificate subject"),
            ),
            (
                "subject DN in OpenSSL form",
                only(false, false, false, true),
                Some(uk_cert()),
                json!({}),
                json!({ SUBJECT_DN_CLAIM: format!("/C=GB/O=OpenBanking/OU={UK_ORG}/CN={UK_SOFTWARE}") }),
                None,
                Some("`tls_client_auth_subject_dn` is not a valid distinguished name"),
            ),
            (
                "subject DN of the wrong type",
                only(false, false, false, true),
                Some(uk_cert()),
                json!({}),
                json!({ SUBJECT_DN_CLAIM: ["CN=x"] }),
                None,
                Some("claim `tls_client_auth_subject_dn` must be a string, not an array"),
            ),
            (
                "subject DN null",
                only(false, false, false, true),
                Some(uk_cert()),
                json!({}),
                json!({ SUBJECT_DN_CLAIM: null }),
                None,
                Some("`tls_client_auth_subject_dn` must be a string, not null"),
            ),
            (
                "subject DN check off",
                only(false, false, false, false),
                Some(uk_cert()),
                json!({}),
                json!({ SUBJECT_DN_CLAIM: "CN=other" }),
                None,
                None,
            ),
            // No certificate.
            (
                "no certificate",
                CertificateBinding::default(),
                None,
                uk_ssa.clone(),
                json!({}),
                None,
                Some("a client certificate is required"),
            ),
            (
                "no certificate, BR",
                br_rule(),
                None,
                br_ssa.clone(),
                json!({}),
                thumbs.clone(),
                Some("a client certificate is required"),
            ),
        ];
        for (why, rule, cert, ssa, request, thumbs, want) in &cases {
            let (ssa, request) = (claims(ssa.clone()), claims(request.clone()));
            let ctx = Ctx {
                request: &request,
                ssa: &ssa,
            };
            let got = certificate_binding(&ctx, cert.as_ref(), thumbs.as_deref(), rule);
            match (want, &got) {
                (None, Ok(())) => {}
                (Some(w), Err(e)) => assert!(e.contains(w), "{why}: {e:?} lacks {w:?}"),
                _ => panic!("{why}: {got:?}, wanted {want:?}"),
            }
        }
    }

    #[test]
    fn long_values_are_clipped() {
        let long = "x".repeat(500);
        let cert = ClientCert::from_envoy(&format!("CN={long},O=y"), None, None).unwrap();
        let (ssa, request) = (claims(json!({"software_id": "z"})), claims(json!({})));
        let ctx = Ctx {
            request: &request,
            ssa: &ssa,
        };
        let rule = CertificateBinding {
            software: Some(SoftwareCheck {
                attribute: "CN".into(),
                ssa_claim: "software_id".into(),
            }),
            ..CertificateBinding::default()
        };
        let e = certificate_binding(&ctx, Some(&cert), None, &rule).unwrap_err();
        assert!(e.len() < 200, "{e}");
    }
}
