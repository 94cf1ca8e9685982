//! The management binding (spec §5) as a state machine: the bearer token of a GET, PUT or DELETE
//! on `/register/{client_id}` must belong to that client. `delegate`: a well-formed token is
//! present (the AS binds it); `jwt`: verified against the AS's JWKS (through the key supply, with
//! its unknown-`kid` retry), then its claims; `introspection`: one RFC 7662 call. The checks
//! themselves are in [`crate::binding`].

use super::Step;
use crate::binding::{
    bearer, check_claims, introspected, introspection_call, media_type, TokenMode, TokenRefusal,
};
use crate::error::DcrError;
use crate::jose::{self, Alg, Jws};
use crate::keys::{Docs, Fetched, KeyStep, KeystoreFault};

/// A binding check in progress.
#[derive(Debug)]
pub struct Binding {
    token: Option<Jws>,
    /// The raw bearer token (introspection mode).
    opaque: Option<String>,
    client_id: String,
    /// `jwt` mode: the AS's documents handed back so far.
    keys: Docs,
    /// Introspection: whether the call went out, and its answer.
    asked: bool,
    answer: Option<(Option<u16>, Vec<u8>)>,
}

impl Binding {
    /// Read the bearer token; in `jwt` mode parse it and refuse its algorithm before any fetch.
    pub fn start(
        mode: &TokenMode,
        authorization: Option<&str>,
        client_id: &str,
    ) -> Result<Binding, DcrError> {
        let token = bearer(authorization)?;
        let opaque = matches!(mode, TokenMode::Introspection(_)).then(|| token.to_string());
        let parsed = match mode {
            TokenMode::Delegate | TokenMode::Introspection(_) => None,
            TokenMode::Jwt(j) => {
                let jws = Jws::parse(token)
                    .map_err(|_| DcrError::invalid_token("the access token is not a valid JWT"))?;
                let alg = Alg::parse(&jws.header.alg).filter(|a| j.algorithms.contains(a));
                if alg.is_none() {
                    return Err(DcrError::invalid_token(
                        "the access token's algorithm is not allowed",
                    ));
                }
                // Only access tokens manage a registration: an ID token is also a JWT signed by
                // the AS, often with the client as its audience, and it reaches end users.
                if jws.header.typ.as_deref().map(media_type).as_deref() != Some(j.typ.as_str()) {
                    return Err(DcrError::invalid_token(
                        "the token is not an access token (JOSE header `typ`)",
                    ));
                }
                Some(jws)
            }
        };
        Ok(Binding {
            token: parsed,
            opaque,
            client_id: client_id.to_string(),
            keys: Docs::default(),
            asked: false,
            answer: None,
        })
    }

    pub fn supply(&mut self, url: &str, fetched: Fetched) {
        self.keys.supply(url, fetched);
    }

    /// The introspection endpoint's answer.
    pub fn answer(&mut self, status: Option<u16>, body: Vec<u8>) {
        self.answer = Some((status, body));
    }

    /// Run as far as possible: `Forward` means the token is bound to the path's client.
    pub fn step(&mut self, mode: &TokenMode, now: i64, leeway: i64, retry_after: u32) -> Step {
        if let (TokenMode::Introspection(i), Some(token)) = (mode, &self.opaque) {
            if !self.asked {
                self.asked = true;
                return Step::Call(introspection_call(i, token));
            }
            return match &self.answer {
                None => Step::Reject(DcrError::unavailable(
                    crate::error::RuleId::TokenClientBinding,
                    "token introspection did not answer",
                    retry_after,
                )),
                Some((status, body)) => {
                    match introspected(i, *status, body, &self.client_id, now, leeway) {
                        Ok(()) => Step::Forward,
                        Err(TokenRefusal::Unavailable(m)) => Step::Reject(DcrError::unavailable(
                            crate::error::RuleId::TokenClientBinding,
                            m,
                            retry_after,
                        )),
                        Err(TokenRefusal::Invalid(m)) => Step::Reject(DcrError::invalid_token(m)),
                        Err(TokenRefusal::Scope(s)) => {
                            Step::Reject(DcrError::insufficient_scope(&s))
                        }
                    }
                }
            };
        }
        let (j, token) = match (mode, &self.token) {
            (TokenMode::Jwt(j), Some(t)) => (j, t),
            _ => return Step::Forward,
        };
        // An unknown kid in documents that were all read: the AS may have rotated its keys, the
        // documents are asked for once more (the cache refetches them only past its cooldown, as
        // for directories).
        match self.keys.check(&j.jwks, |g| {
            jose::verify(token, &g.sets, &j.algorithms).map(|_| ())
        }) {
            KeyStep::Fetch(missing) => return Step::Fetch(missing),
            KeyStep::Refetch(again) => return Step::Refetch(again),
            KeyStep::Passed(_) => {}
            KeyStep::Failed(f) => {
                return match f.keystore_fault() {
                    Some(KeystoreFault::Unavailable(_)) => Step::Reject(DcrError::unavailable(
                        crate::error::RuleId::TokenClientBinding,
                        "the authorization server's keystore is unavailable",
                        retry_after,
                    )),
                    Some(KeystoreFault::Unusable(_)) | None => Step::Reject(
                        DcrError::invalid_token("the access token's signature is not valid"),
                    ),
                }
            }
        }
        match check_claims(j, &token.claims, &self.client_id, now, leeway) {
            Ok(()) => Step::Forward,
            Err(TokenRefusal::Scope(s)) => Step::Reject(DcrError::insufficient_scope(&s)),
            Err(TokenRefusal::Invalid(m) | TokenRefusal::Unavailable(m)) => {
                Step::Reject(DcrError::invalid_token(m))
            }
        }
    }
}
