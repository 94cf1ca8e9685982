//! One request's validation as host-agnostic state machines: each says what it needs (key
//! documents, a call), the host glue obtains it and hands it back, and it goes on, until it says
//! [`Step::Forward`] or [`Step::Reject`]. A request's path, top to bottom:
//!
//! 1. [`envelope`]: what the headers alone decide (method overrides, content type and coding,
//!    declared length);
//! 2. [`manage`]: the management binding of a GET, PUT or DELETE on `/register/{client_id}`;
//! 3. [`create`]: the create validation of a POST's body (and of a PUT's, once bound);
//! 4. [`update`]: an update's RFC 7592 body rules;
//! 5. [`replay`]: replay detection, last, so that a rejected request does not use up its `jti`;
//! 6. [`forward`]: what goes on to the authorization server (the JSON body, fact headers).

pub mod create;
pub mod envelope;
pub mod forward;
pub mod manage;
pub mod replay;
pub mod update;

pub use create::{Create, Facts, Outcome, Trace};
pub use manage::Binding;
pub use replay::{FleetReplay, FleetStep, ReplayCheck};
pub use update::Update;

use crate::config::Config;
use crate::error::DcrError;
// What driving the state machines takes (fetched documents, the verdict cache), from the key
// supply.
pub use crate::keys::{Fetched, JwksSource, SsaMemo, Verdicts};

/// What the host should do next.
#[derive(Debug)]
pub enum Step {
    /// Fetch these documents and hand each back with [`Create::supply`], then call `step` again.
    Fetch(Vec<JwksSource>),
    /// The documents handed back lack the token's `kid`: fetch them again if the cache policy
    /// allows (a key rotation), or hand back the same documents.
    Refetch(Vec<JwksSource>),
    /// Make this call and hand its answer back with [`Work::answer`], then call `step` again.
    Call(crate::binding::Callout),
    /// Every check passed: the request goes on (after [`Work::check_replay`]).
    Forward,
    /// Refused with this error.
    Reject(DcrError),
}

/// One request's validation.
#[derive(Debug)]
pub enum Work {
    /// A create (POST on the registration path).
    Create(Box<Create>),
    /// An update (PUT on `/register/{client_id}`): the binding, the body as a create, RFC 7592.
    Update(Box<Update>),
    /// A read or a delete (GET, DELETE on `/register/{client_id}`): the binding only.
    Manage {
        binding: Box<Binding>,
        client_id: String,
    },
}

impl Work {
    /// A create (POST).
    pub fn create(create: Create) -> Work {
        Work::Create(Box::new(create))
    }

    /// A GET or DELETE: the binding only.
    pub fn manage(binding: Binding, client_id: &str) -> Work {
        Work::Manage {
            binding: Box::new(binding),
            client_id: client_id.to_string(),
        }
    }

    /// An update (PUT): the binding (`None` when off), then the body as a create, then RFC 7592.
    pub fn update(binding: Option<Binding>, client_id: &str, body: Vec<u8>) -> Work {
        Work::Update(Box::new(Update::new(binding, client_id, body)))
    }

    /// The client certificate the host reported, for `certificate_binding`.
    pub fn with_cert(mut self, cert: Result<Option<crate::cert::ClientCert>, String>) -> Work {
        match &mut self {
            Work::Create(c) => c.set_client_cert(cert),
            Work::Update(u) => u.set_client_cert(cert),
            Work::Manage { .. } => {}
        }
        self
    }

    /// The create validation of the body (a create, or an update once bound).
    pub fn created(&self) -> Option<&Create> {
        match self {
            Work::Create(c) => Some(c),
            Work::Update(u) => u.created(),
            Work::Manage { .. } => None,
        }
    }

    /// The path's client id (management requests).
    pub fn client_id(&self) -> Option<&str> {
        match self {
            Work::Create(_) => None,
            Work::Update(u) => Some(u.client_id()),
            Work::Manage { client_id, .. } => Some(client_id),
        }
    }

    pub fn facts(&self) -> Facts {
        self.created().map(|c| c.facts.clone()).unwrap_or_default()
    }

    /// The answer to a [`Step::Call`].
    pub fn answer(&mut self, status: Option<u16>, body: Vec<u8>) {
        let binding = match self {
            Work::Create(_) => None,
            Work::Update(u) => u.binding_mut(),
            Work::Manage { binding, .. } => Some(&mut **binding),
        };
        if let Some(b) = binding {
            b.answer(status, body);
        }
    }

    /// Hand back a fetched document.
    pub fn supply(&mut self, url: &str, fetched: Fetched) {
        match self {
            Work::Create(c) => c.supply(url, fetched),
            Work::Update(u) => u.supply(url, fetched),
            Work::Manage { binding, .. } => binding.supply(url, fetched),
        }
    }

    /// Run as far as possible.
    pub fn step(&mut self, cfg: &Config, now: i64, verdicts: &mut Verdicts) -> Step {
        match self {
            Work::Create(c) => c.step(cfg, now, verdicts),
            Work::Update(u) => u.step(cfg, now, verdicts),
            Work::Manage { binding, .. } => match &cfg.rules.token_client_binding {
                Some(mode) => binding.step(
                    mode,
                    now,
                    i64::try_from(cfg.leeway).unwrap_or(0),
                    cfg.retry_after,
                ),
                None => Step::Forward,
            },
        }
    }
}

/// Step a pending binding; `None` once it passed (it is then dropped) or when there is none.
fn binding_step(binding: &mut Option<Binding>, cfg: &Config, now: i64) -> Option<Step> {
    let (Some(b), Some(mode)) = (binding.as_mut(), &cfg.rules.token_client_binding) else {
        return None;
    };
    match b.step(
        mode,
        now,
        i64::try_from(cfg.leeway).unwrap_or(0),
        cfg.retry_after,
    ) {
        Step::Forward => {
            *binding = None;
            None
        }
        other => Some(other),
    }
}

#[cfg(test)]
mod tests;
