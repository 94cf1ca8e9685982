#![allow(dead_code)]
//! A UK TPP as the directory would describe it: SSA claims, request claims, and minting of both,
//! shared by unit tests, integration tests, the CLI's tests and the demo (crate `dcr-guard-testkit`).

use serde_json::{json, Value};

use crate::keys::{now, uuid_v4, TestKey};

pub const UK_ISSUER: &str = "OpenBanking Ltd";
pub const AU_ISSUER: &str = "cdr-register";
pub const BR_ISSUER: &str = "Open Banking Open Banking Brasil sandbox SSA issuer";
/// The data holder's issuer: the `aud` of an Australian registration.
pub const AU_AUDIENCE: &str = "https://data-holder.example/as";
/// The bank's organisation id: the request's `aud`.
pub const BANK_AUDIENCE: &str = "0015800001HQQrZAAX";
/// The directory JWKS URL used in test configurations.
pub const DIRECTORY_JWKS_URL: &str = "https://keystore.directory.test/keystore/openbanking.jwks";
/// The host serving software JWKS documents in tests.
pub const SOFTWARE_JWKS_HOST: &str = "keystore.tpp.test";

/// One TPP (software statement holder) and the directory that vouches for it.
pub struct Tpp {
    pub directory: TestKey,
    pub key: TestKey,
    pub org_id: String,
    pub software_id: String,
    pub jwks_host: String,
}

impl Tpp {
    pub fn new(directory: TestKey, key: TestKey) -> Tpp {
        Tpp {
            directory,
            key,
            org_id: "0015800001041REAAY".to_string(),
            software_id: "Cy7LCjSi0o7xDkt4mcZgDW".to_string(),
            jwks_host: SOFTWARE_JWKS_HOST.to_string(),
        }
    }

    /// Where the SSA says the TPP's keys are.
    pub fn jwks_url(&self) -> String {
        format!(
            "https://{}/{}/{}.jwks",
            self.jwks_host, self.org_id, self.software_id
        )
    }

    /// The path part of [`Tpp::jwks_url`].
    pub fn jwks_path(&self) -> String {
        format!("/{}/{}.jwks", self.org_id, self.software_id)
    }

    /// SSA claims shaped like the OBIE directory's.
    pub fn ssa_claims(&self) -> Value {
        json!({
            "iss": UK_ISSUER,
            "iat": now(),
            "jti": uuid_v4(),
            "software_environment": "sandbox",
            "software_mode": "Test",
            "software_id": self.software_id,
            "software_client_id": self.software_id,
            "software_client_name": "Demo TPP",
            "software_client_description": "A TPP for tests",
            "software_version": "1.0",
            "software_client_uri": "https://tpp.example.com",
            "software_redirect_uris": ["https://tpp.example.com/callback", "https://tpp.example.com/cb2"],
            "software_roles": ["AISP", "PISP"],
            "organisation_competent_authority_claims": {
                "authority_id": "FCAGBR",
                "registration_id": "123456",
                "status": "Active",
                "authorisations": [{"member_state": "GB", "roles": ["AISP", "PISP"]}]
            },
            "software_logo_uri": "https://tpp.example.com/logo.png",
            "org_status": "Active",
            "org_id": self.org_id,
            "org_name": "Demo TPP Ltd",
            "org_jwks_endpoint": format!("https://{}/{}/{}.jwks", self.jwks_host, self.org_id, self.org_id),
            "software_jwks_endpoint": self.jwks_url(),
            "software_policy_uri": "https://tpp.example.com/policy",
            "software_tos_uri": "https://tpp.example.com/tos",
            "software_on_behalf_of_org": ""
        })
    }

    /// The SSA, signed by the directory with its default algorithm.
    pub fn ssa(&self) -> String {
        self.directory.sign_default(&self.ssa_claims())
    }

    pub fn ssa_with(&self, edit: impl FnOnce(&mut Value)) -> String {
        let mut c = self.ssa_claims();
        edit(&mut c);
        self.directory.sign_default(&c)
    }

    /// Request claims of a UK registration carrying `ssa`.
    pub fn request_claims(&self, ssa: &str) -> Value {
        let t = now();
        json!({
            "iss": self.software_id,
            "iat": t,
            "exp": t + 300,
            "jti": uuid_v4(),
            "aud": BANK_AUDIENCE,
            "scope": "openid accounts payments",
            "redirect_uris": ["https://tpp.example.com/callback"],
            "token_endpoint_auth_method": "private_key_jwt",
            "token_endpoint_auth_signing_alg": "PS256",
            "grant_types": ["authorization_code", "client_credentials", "refresh_token"],
            "response_types": ["code id_token"],
            "application_type": "web",
            "id_token_signed_response_alg": "PS256",
            "request_object_signing_alg": "PS256",
            "software_id": self.software_id,
            "software_statement": ssa
        })
    }

    /// A valid registration request JWT.
    pub fn request(&self) -> String {
        let ssa = self.ssa();
        self.key.sign_default(&self.request_claims(&ssa))
    }

    /// A registration with edited request claims (signed by the TPP key).
    pub fn request_with(&self, edit: impl FnOnce(&mut Value)) -> String {
        let ssa = self.ssa();
        let mut c = self.request_claims(&ssa);
        edit(&mut c);
        self.key.sign_default(&c)
    }

    /// The directory's JWKS document.
    pub fn directory_jwks(&self) -> Value {
        crate::keys::jwks(&[&self.directory])
    }

    /// The TPP's software JWKS document.
    pub fn software_jwks(&self) -> Value {
        crate::keys::jwks(&[&self.key])
    }

    /// SSA claims shaped like the CDR Register's (Australia).
    pub fn au_ssa_claims(&self) -> Value {
        let t = now();
        json!({
            "iss": AU_ISSUER,
            "iat": t,
            "exp": t + 600,
            "jti": uuid_v4(),
            "legal_entity_id": "3B0B0A7B-3E7B-4A2C-9497-E357A71D07C7",
            "legal_entity_name": "Mock Finance Tools",
            "org_id": self.org_id,
            "org_name": "Mock Finance Tools",
            "client_name": "Mock Finance Tools",
            "client_description": "A product to help you manage your budget",
            "client_uri": "https://tpp.example.com",
            "redirect_uris": ["https://tpp.example.com/callback"],
            "logo_uri": "https://tpp.example.com/logo.png",
            "tos_uri": "https://tpp.example.com/tos",
            "policy_uri": "https://tpp.example.com/policy",
            "jwks_uri": self.jwks_url(),
            "revocation_uri": "https://tpp.example.com/revoke",
            "recipient_base_uri": "https://tpp.example.com",
            "software_id": self.software_id,
            "software_roles": "data-recipient-software-product",
            "scope": "openid profile bank:accounts.basic:read bank:transactions:read common:customer.basic:read cdr:registration"
        })
    }

    /// An Australian registration's request claims carrying `ssa`.
    pub fn au_request_claims(&self, ssa: &str) -> Value {
        let t = now();
        json!({
            "iss": self.software_id,
            "iat": t,
            "exp": t + 300,
            "jti": uuid_v4(),
            "aud": AU_AUDIENCE,
            "redirect_uris": ["https://tpp.example.com/callback"],
            "token_endpoint_auth_method": "private_key_jwt",
            "token_endpoint_auth_signing_alg": "PS256",
            "grant_types": ["client_credentials", "authorization_code", "refresh_token"],
            "response_types": ["code"],
            "application_type": "web",
            "id_token_signed_response_alg": "PS256",
            "request_object_signing_alg": "PS256",
            "authorization_signed_response_alg": "PS256",
            "scope": "openid bank:accounts.basic:read cdr:registration",
            "software_statement": ssa
        })
    }

    /// A valid Australian registration.
    pub fn au_request(&self) -> String {
        let ssa = self.directory.sign_default(&self.au_ssa_claims());
        self.key.sign_default(&self.au_request_claims(&ssa))
    }

    /// An Australian filter configuration for this TPP.
    pub fn au_filter_config(&self, directory_upstream: &str, software_upstream: &str) -> Value {
        json!({
            "profile": "au-cdr",
            "directories": [{
                "issuer": AU_ISSUER,
                "jwks": [{"url": DIRECTORY_JWKS_URL, "upstream": directory_upstream}]
            }],
            "software_jwks_hosts": [{"host": self.jwks_host, "upstream": software_upstream}],
            "rules": {"audience": {"audiences": [AU_AUDIENCE]}}
        })
    }

    /// SSA claims shaped like the Brazilian directory's.
    pub fn br_ssa_claims(&self) -> Value {
        json!({
            "iss": BR_ISSUER,
            "iat": now(),
            "software_environment": "sandbox",
            "software_id": self.software_id,
            "software_client_id": self.software_id,
            "software_client_name": "TPP Brasil",
            "software_client_description": "A TPP for tests",
            "software_version": "1.0",
            "software_client_uri": "https://tpp.example.com.br",
            "software_redirect_uris": ["https://tpp.example.com.br/cb"],
            "software_roles": ["DADOS", "PAGTO"],
            "software_statement_roles": [
                {"role": "DADOS", "authorisation_domain": "Open Banking", "status": "Active"},
                {"role": "PAGTO", "authorisation_domain": "Open Banking", "status": "Active"}
            ],
            "org_id": self.org_id,
            "org_number": "12345678000100",
            "org_name": "TPP Brasil Ltda",
            "org_status": "Active",
            "software_logo_uri": "https://tpp.example.com.br/logo.png",
            "software_tos_uri": "https://tpp.example.com.br/tos",
            "software_policy_uri": "https://tpp.example.com.br/policy",
            "software_jwks_uri": self.jwks_url(),
            "software_mode": "Live"
        })
    }

    /// A Brazilian registration: a plain JSON object carrying `ssa`.
    pub fn br_request_claims(&self, ssa: &str) -> Value {
        json!({
            "redirect_uris": ["https://tpp.example.com.br/cb"],
            "token_endpoint_auth_method": "private_key_jwt",
            "token_endpoint_auth_signing_alg": "PS256",
            "grant_types": ["authorization_code", "client_credentials", "refresh_token", "implicit"],
            "response_types": ["code id_token"],
            "application_type": "web",
            "id_token_signed_response_alg": "PS256",
            "request_object_signing_alg": "PS256",
            "scope": "openid consents resources accounts payments",
            "jwks_uri": self.jwks_url(),
            "software_statement": ssa
        })
    }

    /// A valid Brazilian registration body.
    pub fn br_request(&self) -> String {
        let ssa = self
            .directory
            .sign("PS256", Value::Null, &self.br_ssa_claims());
        self.br_request_claims(&ssa).to_string()
    }

    /// A Brazilian filter configuration for this TPP.
    pub fn br_filter_config(&self, directory_upstream: &str, software_upstream: &str) -> Value {
        json!({
            "profile": "br-ofb",
            "directories": [{
                "issuer": BR_ISSUER,
                "jwks": [{"url": DIRECTORY_JWKS_URL, "upstream": directory_upstream}]
            }],
            "software_jwks_hosts": [{"host": self.jwks_host, "upstream": software_upstream}]
        })
    }

    /// A filter configuration for this TPP: one directory, the software host allowed; `directory`
    /// and `software` are the upstream (cluster) names serving each.
    pub fn filter_config(&self, directory_upstream: &str, software_upstream: &str) -> Value {
        json!({
            "directories": [{
                "issuer": UK_ISSUER,
                "jwks": [{"url": DIRECTORY_JWKS_URL, "upstream": directory_upstream}]
            }],
            "software_jwks_hosts": [{"host": self.jwks_host, "upstream": software_upstream}],
            "rules": {"audience": {"audiences": [BANK_AUDIENCE]}}
        })
    }
}

/// `token` with one bit of its signature flipped: still well-formed, no longer valid.
pub fn corrupt_signature(token: &str) -> String {
    let (input, sig) = token.rsplit_once('.').expect("compact JWS");
    let mut bytes = crate::keys::b64_decode(sig);
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    format!("{input}.{}", crate::keys::b64(&bytes))
}
