//! An update (PUT on `/register/{client_id}`, RFC 7592): the management binding first, then the
//! body validated as a create, then the RFC 7592 body rules ([`super::forward::update_rules`]).

use super::{Binding, Create, Step, Verdicts};
use crate::cert::ClientCert;
use crate::config::Config;

/// An update being validated.
#[derive(Debug)]
pub struct Update {
    /// The binding, until it passed (`None`: passed, or off).
    binding: Option<Binding>,
    /// The path's client id.
    client_id: String,
    body: Body,
}

/// An update's body: kept as bytes until the binding passed, then validated as a create.
#[derive(Debug)]
enum Body {
    Pending {
        bytes: Vec<u8>,
        /// The client certificate, handed to the create once it is parsed.
        cert: Option<Result<Option<ClientCert>, String>>,
    },
    Parsed(Box<Create>),
}

impl Update {
    pub fn new(binding: Option<Binding>, client_id: &str, body: Vec<u8>) -> Update {
        Update {
            binding,
            client_id: client_id.to_string(),
            body: Body::Pending {
                bytes: body,
                cert: None,
            },
        }
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The body's create validation, once the binding passed.
    pub fn created(&self) -> Option<&Create> {
        match &self.body {
            Body::Parsed(c) => Some(c),
            Body::Pending { .. } => None,
        }
    }

    pub(super) fn binding_mut(&mut self) -> Option<&mut Binding> {
        self.binding.as_mut()
    }

    pub(super) fn set_client_cert(&mut self, cert: Result<Option<ClientCert>, String>) {
        match &mut self.body {
            Body::Parsed(c) => c.set_client_cert(cert),
            Body::Pending { cert: slot, .. } => *slot = Some(cert),
        }
    }

    pub(super) fn supply(&mut self, url: &str, fetched: crate::keys::Fetched) {
        match (&mut self.binding, &mut self.body) {
            (Some(b), _) => b.supply(url, fetched),
            (None, Body::Parsed(c)) => c.supply(url, fetched),
            (None, Body::Pending { .. }) => {}
        }
    }

    pub(super) fn step(&mut self, cfg: &Config, now: i64, verdicts: &mut Verdicts) -> Step {
        if let Some(step) = super::binding_step(&mut self.binding, cfg, now) {
            return step;
        }
        if let Body::Pending { bytes, cert } = &mut self.body {
            match Create::parse(cfg, bytes, verdicts) {
                Ok(mut c) => {
                    if let Some(cert) = cert.take() {
                        c.set_client_cert(cert);
                    }
                    self.body = Body::Parsed(Box::new(c));
                }
                Err(e) => return Step::Reject(e),
            }
        }
        let Body::Parsed(create) = &mut self.body else {
            return Step::Forward;
        };
        match create.step(cfg, now, verdicts) {
            Step::Forward => {}
            other => return other,
        }
        match super::forward::update_rules(create.request_claims(), &self.client_id) {
            Ok(()) => Step::Forward,
            Err(e) => Step::Reject(e),
        }
    }
}
