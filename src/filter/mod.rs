//! The HTTP stream state machine, over a small [`Host`] trait so that it runs natively in tests with
//! a fake host. `wasm` binds it to proxy-wasm.
//!
//! `headers → body (buffered to end of stream) → need keys? (callouts, pause) → verdict →
//! forward (resume) | reject (local reply)`.

use std::rc::Rc;

use crate::config::{Config, JwksSource};
use crate::error::DcrError;
use crate::path::{classify, Route};
use crate::pipeline::{Create, Facts, Fetched, Step};

#[cfg(target_arch = "wasm32")]
mod wasm;

/// What a callback tells the host: go on, or hold the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Pause,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

/// The host calls the stream needs.
pub trait Host {
    /// Unix time, seconds.
    fn now(&self) -> i64;
    fn request_header(&self, name: &str) -> Option<String>;
    /// The buffered request body (the first `size` bytes).
    fn request_body(&self, size: usize) -> Option<Vec<u8>>;
    /// Start a GET callout; the answer comes back through [`Stream::on_call_response`].
    fn dispatch_get(&mut self, src: &JwksSource, timeout_ms: u64) -> Result<u32, String>;
    /// The `:status` of the callout response being delivered, and up to `max` bytes of its body.
    fn call_response(&self, body_size: usize, max: usize) -> (Option<u16>, Vec<u8>);
    /// Let a held request go on.
    fn resume(&mut self);
    /// Answer locally (and, when headers already went upstream, reset the upstream stream).
    fn respond(&mut self, status: u16, headers: &[(&str, &str)], body: &[u8]);
    fn log(&self, level: Level, message: &str);
}

#[derive(Debug)]
enum Phase {
    /// Not ours, or already forwarded.
    Pass,
    /// A create whose body is being buffered.
    Buffering,
    /// Waiting for callouts.
    Validating {
        create: Box<Create>,
        pending: Vec<(u32, String)>,
    },
    /// A local reply was sent.
    Done,
}

/// One HTTP stream.
pub struct Stream {
    cfg: Option<Rc<Config>>,
    phase: Phase,
}

impl Stream {
    pub fn new(cfg: Option<Rc<Config>>) -> Self {
        Stream {
            cfg,
            phase: Phase::Pass,
        }
    }

    pub fn on_request_headers(&mut self, host: &mut dyn Host, end_of_stream: bool) -> Flow {
        let path = host.request_header(":path").unwrap_or_default();
        let cfg = match &self.cfg {
            Some(c) => Rc::clone(c),
            None => {
                // Configuration never succeeded: fail closed on anything that looks like DCR.
                return self.reject(
                    host,
                    DcrError::unavailable(
                        crate::error::RuleId::SsaSignature,
                        "dcr-guard is not configured",
                        30,
                    ),
                    &Facts::default(),
                );
            }
        };
        let route = classify(&cfg.path, &path);
        let method = host.request_header(":method").unwrap_or_default();
        match route {
            Route::NotDcr => Flow::Continue,
            Route::Invalid(why) => {
                self.reject(host, DcrError::invalid_request(why), &Facts::default())
            }
            // Management (GET/PUT/DELETE) is not served yet: no method is allowed here.
            Route::Client(_) => {
                self.reject(host, DcrError::method_not_allowed(""), &Facts::default())
            }
            Route::Collection if method != "POST" => self.reject(
                host,
                DcrError::method_not_allowed("POST"),
                &Facts::default(),
            ),
            Route::Collection => self.start_create(host, &cfg, end_of_stream),
        }
    }

    fn start_create(&mut self, host: &mut dyn Host, cfg: &Config, end_of_stream: bool) -> Flow {
        let ct = host.request_header("content-type").unwrap_or_default();
        let media = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if media != "application/jwt" && media != "application/jose" {
            return self.reject(
                host,
                DcrError::invalid_request(
                    "content type must be application/jwt or application/jose",
                ),
                &Facts::default(),
            );
        }
        if let Some(len) = host.request_header("content-length") {
            match len.trim().parse::<u64>() {
                Ok(n) if n > cfg.limits.body_bytes as u64 => {
                    return self.reject(
                        host,
                        DcrError::too_large(cfg.limits.body_bytes),
                        &Facts::default(),
                    )
                }
                Ok(_) => {}
                Err(_) => {
                    return self.reject(
                        host,
                        DcrError::invalid_request("invalid content-length"),
                        &Facts::default(),
                    )
                }
            }
        }
        if end_of_stream {
            return self.reject(
                host,
                DcrError::invalid_request("a signed JWT body is required"),
                &Facts::default(),
            );
        }
        self.phase = Phase::Buffering;
        if cfg.hold_headers {
            Flow::Pause
        } else {
            Flow::Continue
        }
    }

    pub fn on_request_body(
        &mut self,
        host: &mut dyn Host,
        body_size: usize,
        end_of_stream: bool,
    ) -> Flow {
        match self.phase {
            Phase::Pass => return Flow::Continue,
            Phase::Done | Phase::Validating { .. } => return Flow::Pause,
            Phase::Buffering => {}
        }
        let cfg = match &self.cfg {
            Some(c) => Rc::clone(c),
            None => return Flow::Pause,
        };
        if body_size > cfg.limits.body_bytes {
            return self.reject(
                host,
                DcrError::too_large(cfg.limits.body_bytes),
                &Facts::default(),
            );
        }
        if !end_of_stream {
            return Flow::Pause;
        }
        let body = host.request_body(body_size).unwrap_or_default();
        match Create::parse(&cfg, &body) {
            Err(e) => self.reject(host, e, &Facts::default()),
            Ok(create) => self.run(host, &cfg, Box::new(create), false),
        }
    }

    /// Trailers end the request too: treat them as the end of the body.
    pub fn on_request_trailers(&mut self, host: &mut dyn Host) -> Flow {
        match self.phase {
            Phase::Buffering => {
                // Body size is whatever was buffered; the host gives it back whole.
                let size = self
                    .cfg
                    .as_ref()
                    .map(|c| c.limits.body_bytes + 1)
                    .unwrap_or(0);
                let body = host.request_body(size).unwrap_or_default();
                let len = body.len();
                self.on_request_body(host, len, true)
            }
            Phase::Pass => Flow::Continue,
            _ => Flow::Pause,
        }
    }

    /// Drive the validation; `in_callback` is true when called from a callout response (then a
    /// forward verdict must resume the held request instead of returning Continue).
    fn run(
        &mut self,
        host: &mut dyn Host,
        cfg: &Config,
        mut create: Box<Create>,
        in_callback: bool,
    ) -> Flow {
        let now = host.now();
        loop {
            match create.step(cfg, now) {
                Step::Forward => {
                    self.phase = Phase::Pass;
                    if in_callback {
                        host.resume();
                    }
                    return Flow::Continue;
                }
                Step::Reject(e) => {
                    let facts = create.facts.clone();
                    return self.reject(host, e, &facts);
                }
                Step::Fetch(sources) => {
                    let mut pending = Vec::new();
                    for src in sources {
                        match host.dispatch_get(&src, cfg.limits.callout_timeout_ms) {
                            Ok(token) => pending.push((token, src.url.clone())),
                            Err(why) => {
                                host.log(
                                    Level::Warn,
                                    &format!(
                                        "dcr-guard: callout to upstream `{}` failed: {why}",
                                        src.upstream
                                    ),
                                );
                                create.supply(
                                    &src.url,
                                    Fetched::Unavailable(format!("could not be reached ({why})")),
                                );
                            }
                        }
                    }
                    if !pending.is_empty() {
                        self.phase = Phase::Validating { create, pending };
                        return Flow::Pause;
                    }
                    // Every dispatch failed: the documents are recorded as unavailable; go on.
                }
            }
        }
    }

    pub fn on_call_response(&mut self, host: &mut dyn Host, token: u32, body_size: usize) {
        let cfg = match &self.cfg {
            Some(c) => Rc::clone(c),
            None => return,
        };
        let phase = std::mem::replace(&mut self.phase, Phase::Done);
        let (mut create, mut pending) = match phase {
            Phase::Validating { create, pending } => (create, pending),
            other => {
                self.phase = other;
                return;
            }
        };
        if let Some(i) = pending.iter().position(|(t, _)| *t == token) {
            let (_, url) = pending.swap_remove(i);
            let max = cfg.limits.jwks_bytes;
            let (status, body) = host.call_response(body_size, max);
            let fetched =
                Fetched::from_response(status, &body, body_size, max, cfg.limits.jwks_keys);
            if let Fetched::Unavailable(why) | Fetched::Unusable(why) = &fetched {
                host.log(
                    Level::Info,
                    &format!("dcr-guard: JWKS fetch from `{url}` {why}"),
                );
            }
            create.supply(&url, fetched);
        }
        if !pending.is_empty() {
            self.phase = Phase::Validating { create, pending };
            return;
        }
        self.run(host, &cfg, create, true);
    }

    fn reject(&mut self, host: &mut dyn Host, e: DcrError, facts: &Facts) -> Flow {
        self.phase = Phase::Done;
        host.log(
            if e.is_dependency_fault() { Level::Warn } else { Level::Info },
            &format!(
                "dcr-guard: rejected status={} error={} rule={} software_id={} jti={} reason=\"{}\"",
                e.status,
                e.code.as_str(),
                e.source.as_str(),
                facts.software_id.as_deref().unwrap_or("-"),
                facts.jti.as_deref().unwrap_or("-"),
                crate::error::clip(&e.description, 200).replace('"', "'"),
            ),
        );
        let headers = e.headers();
        let refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        host.respond(e.status, &refs, e.body().as_bytes());
        Flow::Pause
    }
}

#[cfg(test)]
#[allow(clippy::type_complexity)]
mod tests;
