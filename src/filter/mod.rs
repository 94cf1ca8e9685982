//! The HTTP stream state machine, over a small [`Host`] trait so that it runs natively in tests with
//! a fake host. `wasm` binds it to proxy-wasm.
//!
//! `headers → body (buffered to end of stream) → need keys? (callouts, pause) → verdict →
//! forward (resume) | reject (local reply)`.

use std::rc::Rc;

use dcr_guard_core::cert::ClientCert;
use dcr_guard_core::config::{CertSource, Config, JwksSource};
use dcr_guard_core::error::{DcrError, RuleId};
use dcr_guard_core::escape::escape;
use dcr_guard_core::keys::{Decision, Need};
use dcr_guard_core::metrics;
use dcr_guard_core::path::{classify, Route};
use dcr_guard_core::pipeline::envelope::{self, Bodiless, Request, SINGLETON_HEADERS};
use dcr_guard_core::pipeline::forward::Forwarding;
use dcr_guard_core::pipeline::{
    Binding, Create, Facts, Fetched, FleetReplay, FleetStep, ReplayCheck, Step, Work,
};
use dcr_guard_core::replay::etcd::batch::{self, MemberAnswer};
use dcr_guard_core::replay::{SharedData, StoreError};

#[cfg(target_arch = "wasm32")]
mod abi;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fake;
mod status;
#[cfg(target_arch = "wasm32")]
mod wasm;
mod worker;

pub use worker::{GrpcOwner, Owner, WaitOver, Waiter, Worker};

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

/// The HTTP request being filtered: read it, change it while it is held, let it go or answer it.
pub trait RequestIo {
    fn request_header(&self, name: &str) -> Option<String>;
    /// The first of `names` (lower case) that the request carries more than once.
    fn repeated_request_header(&self, names: &[&str]) -> Option<String>;
    /// The buffered request body (the first `size` bytes).
    fn request_body(&self, size: usize) -> Option<Vec<u8>>;
    /// Set (or with `None` remove) a request header; only while the headers are held.
    fn set_request_header(&mut self, name: &str, value: Option<&str>);
    /// Replace the whole buffered request body.
    fn replace_request_body(&mut self, body: &[u8]);
    /// Let a held request go on.
    fn resume(&mut self);
    /// Answer locally (and, when headers already went upstream, reset the upstream stream).
    fn respond(&mut self, status: u16, headers: &[(&str, &str)], body: &[u8]);
}

/// HTTP callouts (JWKS fetches, token introspection) and the context they act on.
pub trait Callouts {
    /// Start a GET callout; the answer comes back through [`Stream::on_call_response`].
    fn dispatch_get(&mut self, src: &JwksSource, timeout_ms: u64) -> Result<u32, String>;
    /// Start a GET of a participant status document (with its extra headers); the answer comes
    /// back through [`Engine::on_call_response`].
    fn dispatch_status(
        &mut self,
        src: &dcr_guard_core::status::StatusSource,
        timeout_ms: u64,
    ) -> Result<u32, String>;
    /// Start a POST callout (token introspection).
    fn dispatch(
        &mut self,
        call: &dcr_guard_core::binding::Callout,
        timeout_ms: u64,
    ) -> Result<u32, String>;
    /// The `:status` of the callout response being delivered, and up to `max` bytes of its body.
    fn call_response(&self, body_size: usize, max: usize) -> (Option<u16>, Vec<u8>);
    /// A header of the callout response being delivered.
    fn call_response_header(&self, name: &str) -> Option<String>;
    /// Start a unary gRPC call (the fleet replay store): `target` is the serialized
    /// `GrpcService` naming the cluster; the answer comes back through
    /// [`Engine::on_grpc_call_response`].
    fn dispatch_grpc(
        &mut self,
        target: &str,
        service: &str,
        method: &str,
        message: &[u8],
        timeout_ms: u64,
    ) -> Result<u32, String>;
    /// The gRPC call being delivered: its status message and up to `max` bytes of its response.
    fn grpc_response(&self, size: usize, max: usize) -> (String, Vec<u8>);
    /// Register this worker's shared queue (`name` unique to the VM): enqueueing on it wakes the
    /// root context ([`Engine::on_queue_ready`]). `None` when the host has no queues.
    fn register_queue(&mut self, name: &str) -> Option<u32>;
    /// Wake the root context through `queue`; `false` if the host refused.
    fn enqueue(&mut self, queue: u32) -> bool;
    /// Empty `queue` (its items carry nothing: the work waits in [`Worker::fleet`]).
    fn drain_queue(&mut self, queue: u32);
    /// Make later host calls act on the HTTP stream `ctx` (used from the root context's tick
    /// and for callouts the root dispatched on a stream's behalf). `false` if it is gone.
    fn set_effective_context(&mut self, ctx: u32) -> bool;
}

/// Host shared data (all workers of the host): value and CAS token.
pub trait SharedStore {
    fn shared_get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError>;
    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError>;
}

/// Logs and counters.
pub trait Telemetry {
    fn log(&self, level: Level, message: &str);
    /// Add one to the counter `name` (`dcr_guard.…`).
    fn count(&mut self, name: &str);
    /// Record `value` in the histogram `name` (`dcr_guard.…`).
    fn observe(&mut self, name: &str, value: u64);
    /// Set the gauge `name` (`dcr_guard.…`) to `value`.
    fn gauge(&mut self, name: &str, value: u64);
}

/// Properties of the host, the connection and the request: the clock, the client certificate,
/// per-request facts for access logs.
pub trait Properties {
    /// Unix time, seconds.
    fn now(&self) -> i64;
    /// Unix time, milliseconds (for durations).
    fn now_ms(&self) -> u64;
    /// The TPP's client certificate: `Ok(None)` when the connection has none.
    fn client_cert(&self, source: CertSource) -> Result<Option<ClientCert>, String>;
    /// Record a per-request fact for access logs (Envoy filter state `wasm.<key>`).
    fn set_state(&mut self, key: &str, value: &str);
    /// The bytes of the current request the host has received so far, headers included (Envoy's
    /// `request.total_size`), when it says. Compared over time while the headers are held, it
    /// tells whether the body reached the host although the filter was not given it.
    fn request_bytes(&self) -> Option<u64>;
}

/// Everything the stream needs from its host: the proxy-wasm binding implements the five parts,
/// and so does the host emulator the native tests use.
pub trait Host: RequestIo + Callouts + SharedStore + Telemetry + Properties {}

impl<T: RequestIo + Callouts + SharedStore + Telemetry + Properties> Host for T {}

/// The host's shared data as the replay store sees it.
pub struct HostStore<'a>(pub &'a mut dyn Host);

impl SharedData for HostStore<'_> {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        self.0.shared_get(key)
    }
    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        self.0.shared_set(key, value, cas)
    }
}

#[derive(Debug)]
enum Phase {
    /// Not ours, or already forwarded.
    Pass,
    /// A create (no client id) or an update (with its binding) whose body is being buffered.
    Buffering {
        client_id: Option<String>,
        binding: Option<Box<Binding>>,
    },
    /// Waiting for callouts (tokens) and for documents other workers are fetching (URLs).
    Validating {
        work: Box<Work>,
        pending: Vec<u32>,
        waiting: Vec<String>,
    },
    /// Every other check passed; the participant status documents are being obtained (`gate`:
    /// one slot per configured source; `pending`: this stream's fetches; `waiting`: the sources
    /// another worker is fetching).
    Status {
        work: Box<Work>,
        gate: Vec<Option<dcr_guard_core::status::Got>>,
        pending: Vec<u32>,
        waiting: Vec<usize>,
    },
    /// Every check passed; the fleet replay store (etcd) is deciding: one call of this stream is
    /// queued or on its way (alone or in a batch).
    Recording {
        work: Box<Work>,
        fleet: Box<FleetReplay>,
    },
    /// A GET or DELETE with held headers that may still carry a body: it must end without one;
    /// the management checks start when it does.
    Bodiless { client_id: String },
    /// A local reply was sent.
    Done,
}

/// Every stream of one worker (VM) and the worker's shared state. The host binding routes each
/// callback here by context id; callout answers and ticks are routed by their owner, so that the
/// root context can wake a stream that waited for another worker's fetch.
pub struct Engine {
    cfg: Rc<Config>,
    pub worker: Worker,
    streams: std::collections::HashMap<u32, Stream>,
    /// The root context: the fleet store's batched calls are sent from it, so that their answers
    /// do not depend on any one request staying alive.
    root_ctx: u32,
}

impl Engine {
    pub fn new(cfg: Rc<Config>, holder: u64) -> Engine {
        let mut worker = Worker::with_policy(cfg.jwks_cache, holder);
        worker.status = status::Statuses::new(&cfg);
        Engine {
            worker,
            cfg,
            streams: std::collections::HashMap::new(),
            root_ctx: 0,
        }
    }

    /// The root context is `root_ctx`; with the fleet store on, register this worker's queue
    /// (named after `holder`, unique to this VM) so that its calls go out batched.
    pub fn attach_root(&mut self, host: &mut dyn Host, root_ctx: u32, holder: u64) {
        self.root_ctx = root_ctx;
        if self.cfg.replay.fleet.is_some() {
            self.worker.fleet_queue =
                host.register_queue(&format!("dcr_guard.fleet.{holder:016x}"));
            if self.worker.fleet_queue.is_none() {
                host.log(
                    Level::Warn,
                    "dcr-guard: the host has no shared queues: fleet replay store calls go out one per registration",
                );
            }
        }
    }

    pub fn config(&self) -> &Rc<Config> {
        &self.cfg
    }

    /// Streams currently tracked (DCR requests not yet finished).
    pub fn tracked(&self) -> usize {
        self.streams.len()
    }

    pub fn on_request_headers(
        &mut self,
        host: &mut dyn Host,
        ctx: u32,
        end_of_stream: bool,
    ) -> Flow {
        let mut stream = Stream::new(Rc::clone(&self.cfg), ctx);
        let flow = stream.on_request_headers(host, &mut self.worker, end_of_stream);
        // Only registration requests are tracked; everything else costs nothing more.
        if !matches!(stream.phase, Phase::Pass) || stream.no_body.is_some() {
            self.streams.insert(ctx, stream);
        }
        flow
    }

    pub fn on_request_body(
        &mut self,
        host: &mut dyn Host,
        ctx: u32,
        size: usize,
        end_of_stream: bool,
    ) -> Flow {
        match self.streams.get_mut(&ctx) {
            None => Flow::Continue,
            Some(s) => s.on_request_body(host, &mut self.worker, size, end_of_stream),
        }
    }

    pub fn on_request_trailers(&mut self, host: &mut dyn Host, ctx: u32) -> Flow {
        match self.streams.get_mut(&ctx) {
            None => Flow::Continue,
            Some(s) => s.on_request_trailers(host, &mut self.worker),
        }
    }

    /// A callout answered, whichever context the host delivered it to.
    pub fn on_call_response(&mut self, host: &mut dyn Host, token: u32, body_size: usize) {
        let cfg = Rc::clone(&self.cfg);
        if let Some(started) = self.worker.fetch_started.remove(&token) {
            host.observe(
                metrics::JWKS_FETCH_MS,
                host.now_ms().saturating_sub(started),
            );
        }
        match self.worker.tokens.remove(&token) {
            Some(Owner::Stream { ctx, src, lease }) => {
                let url = src.url;
                let alive = self.streams.contains_key(&ctx) && host.set_effective_context(ctx);
                match self.streams.get_mut(&ctx) {
                    Some(s) if alive => {
                        s.on_call_response(host, &mut self.worker, token, &url, lease, body_size)
                    }
                    // The stream is gone: still publish, others may wait on this document.
                    _ => {
                        self.worker.read_answer(host, &cfg, &url, lease, body_size);
                    }
                }
            }
            Some(Owner::Call { ctx })
                if self.streams.contains_key(&ctx) && host.set_effective_context(ctx) =>
            {
                if let Some(s) = self.streams.get_mut(&ctx) {
                    s.on_call_answer(host, &mut self.worker, token, body_size);
                }
            }
            Some(Owner::Call { .. }) => {}
            Some(Owner::Refresh { url, lease }) => {
                self.worker
                    .read_answer(host, &cfg, &url, Some(lease), body_size);
            }
            Some(Owner::Status { ctx, index, lease }) => {
                let alive = self.streams.contains_key(&ctx) && host.set_effective_context(ctx);
                // Read (and publish) even when the stream is gone: others may wait on it.
                let got = self
                    .worker
                    .status_answer(host, &cfg, index, lease, body_size, true);
                if let Some(s) = self.streams.get_mut(&ctx).filter(|_| alive) {
                    s.on_status(host, &mut self.worker, Some(token), index, got);
                }
            }
            Some(Owner::StatusRefresh { index, lease }) => {
                self.worker
                    .status_answer(host, &cfg, index, Some(lease), body_size, false);
            }
            None => {}
        }
    }

    /// A gRPC call answered (the fleet replay store), whichever context the host delivered it to:
    /// `status` is the gRPC status (`None` when the host had none), `size` the response's size.
    /// A batch's answer is split and handed to each member still alive; then whatever queued
    /// meanwhile goes out.
    pub fn on_grpc_call_response(
        &mut self,
        host: &mut dyn Host,
        token: u32,
        status: Option<u32>,
        size: usize,
    ) {
        let Some(owner) = self.worker.grpc.remove(&token) else {
            return;
        };
        if owner.batched {
            self.worker.fleet.landed(owner.txn);
            // Calls the members submit now go out below, without a wake-up.
            self.worker.fleet.draining();
        }
        let answers = if size > owner.max {
            let why = format!("etcd answer of {size} bytes is larger than {}", owner.max);
            vec![MemberAnswer::Fault(why); owner.members.len()]
        } else {
            let (message, body) = if size == 0 {
                (host.grpc_response(0, 0).0, Vec::new())
            } else {
                host.grpc_response(size, owner.max)
            };
            batch::answers(owner.nested, owner.members.len(), status, &message, &body)
        };
        self.deliver(host, &owner.members, answers);
        if owner.batched {
            self.worker.fleet.woke();
            self.send_fleet_calls(host);
        }
    }

    /// Hand each member stream its answer (skipping streams that are gone).
    fn deliver(&mut self, host: &mut dyn Host, members: &[u32], answers: Vec<MemberAnswer>) {
        for (ctx, answer) in members.iter().zip(answers) {
            if self.streams.contains_key(ctx) && host.set_effective_context(*ctx) {
                if let Some(s) = self.streams.get_mut(ctx) {
                    s.on_grpc_answer(host, &mut self.worker, answer);
                }
            }
        }
    }

    /// The root context was woken through the worker's queue: send the fleet store's calls.
    pub fn on_queue_ready(&mut self, host: &mut dyn Host, queue: u32) {
        if self.worker.fleet_queue == Some(queue) {
            host.drain_queue(queue);
            self.worker.fleet.woke();
            self.send_fleet_calls(host);
        }
    }

    /// Send what the fleet store's queue has ready, from the root context.
    fn send_fleet_calls(&mut self, host: &mut dyn Host) {
        let Some(settings) = self.cfg.replay.fleet.clone() else {
            return;
        };
        let target = settings.grpc_service();
        let root = self.root_ctx;
        while let Some(out) = self.worker.fleet.take_ready() {
            host.set_effective_context(root);
            let txn = out.call.method == dcr_guard_core::replay::etcd::TXN_METHOD;
            match host.dispatch_grpc(
                &target,
                out.call.service,
                out.call.method,
                &out.call.message,
                settings.timeout_ms,
            ) {
                Ok(token) => {
                    host.count(metrics::REPLAY_ETCD_CALLS);
                    if txn {
                        for _ in &out.members {
                            host.count(metrics::REPLAY_ETCD_TXNS);
                        }
                    }
                    let owner = GrpcOwner {
                        members: out.members.clone(),
                        nested: out.nested,
                        txn,
                        batched: true,
                        max: out.max_answer(),
                        sent_ms: host.now_ms(),
                    };
                    self.worker.grpc.insert(token, owner);
                }
                Err(why) => {
                    self.worker.fleet.landed(txn);
                    host.log(
                        Level::Warn,
                        &format!(
                            "dcr-guard: gRPC call to the fleet replay store (`{}/{}`) could not start: {why}",
                            out.call.service, out.call.method
                        ),
                    );
                    let fault =
                        MemberAnswer::Fault(format!("the call to etcd could not start: {why}"));
                    self.worker.fleet.draining();
                    self.deliver(host, &out.members, vec![fault; out.members.len()]);
                    self.worker.fleet.woke();
                }
            }
        }
        host.set_effective_context(root);
    }

    /// Batched calls the host never answered within their deadline (and a margin): given up,
    /// their members fail closed — a lost answer must not stall the worker's queue for good.
    fn expire_fleet_calls(&mut self, host: &mut dyn Host) {
        let Some(settings) = &self.cfg.replay.fleet else {
            return;
        };
        let limit = settings.timeout_ms.saturating_add(FLEET_ANSWER_MARGIN_MS);
        let now = host.now_ms();
        let lost: Vec<u32> = self
            .worker
            .grpc
            .iter()
            .filter(|(_, o)| o.batched && now.saturating_sub(o.sent_ms) > limit)
            .map(|(t, _)| *t)
            .collect();
        for token in lost {
            if let Some(owner) = self.worker.grpc.remove(&token) {
                self.worker.fleet.landed(owner.txn);
                let fault = MemberAnswer::Fault("no answer from etcd".to_string());
                self.worker.fleet.draining();
                self.deliver(host, &owner.members, vec![fault; owner.members.len()]);
                self.worker.fleet.woke();
            }
        }
        self.send_fleet_calls(host);
    }

    /// The root context's tick: background refreshes, then streams whose wait is over.
    /// `root_ctx` is restored as the effective context at the end.
    pub fn on_tick(&mut self, host: &mut dyn Host, root_ctx: u32) {
        let cfg = Rc::clone(&self.cfg);
        let now = host.now();
        if !self.worker.grpc.is_empty() {
            self.expire_fleet_calls(host);
            host.set_effective_context(root_ctx);
        }
        // Calls waiting with nothing on its way to bring the root back: the wake-up was lost
        // (or is still to come, which is as good): send them now rather than let them wait for
        // the host's stream timeout.
        if self.worker.fleet.waiting() > 0 && !self.worker.grpc.values().any(|o| o.batched) {
            self.worker.fleet.woke();
            self.send_fleet_calls(host);
            host.set_effective_context(root_ctx);
        }
        if !self.worker.orphans.is_empty() {
            self.worker.adopt_orphans(host, &cfg, now);
        }
        if !self.worker.status_orphans.is_empty() {
            self.worker.adopt_status_orphans(host, &cfg, now);
        }
        self.worker.refresh(host, &cfg, now);
        self.worker.refresh_status(host, &cfg, now);
        if !self.worker.body_delivered && cfg.hold_headers && !self.streams.is_empty() {
            self.check_held_bodies(host);
            host.set_effective_context(root_ctx);
        }
        if self.worker.waiters.is_empty() && !self.worker.status.has_waiters() {
            return;
        }
        let ready = self.worker.poll_waiters(host, &cfg, now);
        for (ctx, url, outcome) in ready {
            if let Some(s) = self.streams.get_mut(&ctx) {
                if host.set_effective_context(ctx) {
                    s.on_wait_over(host, &mut self.worker, &url, outcome);
                }
            }
        }
        let ready = self.worker.poll_status_waiters(host, &cfg, now);
        for (ctx, index, got) in ready {
            if let Some(s) = self.streams.get_mut(&ctx) {
                if host.set_effective_context(ctx) {
                    s.on_status(host, &mut self.worker, None, index, got);
                }
            }
        }
        host.set_effective_context(root_ctx);
    }

    /// `hold_headers` on a host that does not hold them for the filter (Envoy without
    /// `allow_on_headers_stop_iteration: true`): Envoy then keeps the body of held headers from
    /// the filter, so the request waits for a body callback that never comes and ends in a 504.
    /// Seen from here: headers held for [`HELD_BODY_GRACE_MS`] with no body callback while the
    /// host has received more bytes of the request than it had when the headers came. Counted per
    /// request (`dcr_guard.body_not_delivered`), logged at error level once per worker. Once a
    /// held request's body has been delivered, the host is known to honour the hold and nothing
    /// more is checked.
    fn check_held_bodies(&mut self, host: &mut dyn Host) {
        if !self.cfg.hold_headers || self.worker.body_delivered {
            return;
        }
        let now = host.now_ms();
        for (ctx, stream) in self.streams.iter_mut() {
            let Some(held) = stream.held.as_mut() else {
                continue;
            };
            if held.reported || now.saturating_sub(held.since_ms) < HELD_BODY_GRACE_MS {
                continue;
            }
            if !host.set_effective_context(*ctx) {
                continue;
            }
            let withheld = match (held.bytes, host.request_bytes()) {
                (Some(then), Some(now)) => now > then,
                _ => false,
            };
            if !withheld {
                continue;
            }
            held.reported = true;
            host.count(metrics::BODY_NOT_DELIVERED);
            if !self.worker.body_withheld_logged {
                self.worker.body_withheld_logged = true;
                host.log(
                    Level::Error,
                    "dcr-guard: \"hold_headers\" is true but the host does not give the filter \
                     the request body while it holds the headers: registrations will time out \
                     (504). Set allow_on_headers_stop_iteration: true in the Envoy wasm filter's \
                     config (Envoy 1.35+; an Istio WasmPlugin cannot, use an EnvoyFilter), or \
                     \"hold_headers\": false",
                );
            }
        }
    }

    /// The host is done with a stream.
    pub fn remove(&mut self, ctx: u32) {
        self.streams.remove(&ctx);
        self.worker.waiters.retain(|w| w.ctx != ctx);
        self.worker.status.forget(ctx);
        // The answers of a finished context's callouts never reach us (the SDK drops them with
        // the context). A fetch that held the document's lease is handed to the root context,
        // which fetches again and publishes for every worker (see `Worker::orphans`).
        // A call the stream sent itself is dropped with it; a batched one still comes back to
        // the root context (and is handed to the other members).
        self.worker.fleet.cancel(&ctx);
        self.worker
            .grpc
            .retain(|_, o| o.batched || !o.members.contains(&ctx));
        let orphans = &mut self.worker.orphans;
        let status_orphans = &mut self.worker.status_orphans;
        self.worker.tokens.retain(|_, owner| match owner {
            Owner::Stream { ctx: c, src, lease } if *c == ctx => {
                if let Some(lease) = lease {
                    orphans.push((src.clone(), *lease));
                }
                false
            }
            Owner::Status {
                ctx: c,
                index,
                lease,
            } if *c == ctx => {
                if let Some(lease) = lease {
                    status_orphans.push((*index, *lease));
                }
                false
            }
            Owner::Call { ctx: c } | Owner::Status { ctx: c, .. } => *c != ctx,
            Owner::Stream { .. } | Owner::Refresh { .. } | Owner::StatusRefresh { .. } => true,
        });
        let tokens = &self.worker.tokens;
        self.worker
            .fetch_started
            .retain(|t, _| tokens.contains_key(t));
    }
}

/// One round of obtaining the documents a validation step asked for: what it asked, and the
/// callouts and waits it left this stream paused on.
struct Round<'a> {
    cfg: &'a Config,
    need: Need,
    now: i64,
    /// Callouts dispatched for this stream (their tokens).
    pending: Vec<u32>,
    /// URLs this stream waits for while another worker fetches them.
    waiting: Vec<String>,
}

/// One HTTP stream.
pub struct Stream {
    cfg: Rc<Config>,
    phase: Phase,
    /// The host's id of this HTTP context.
    ctx: u32,
    /// `GET` or `DELETE` on a client path whose headers did not end the stream: any body byte
    /// is refused, whatever phase the stream is in.
    no_body: Option<Bodiless>,
    /// When the headers of a registration request arrived (ms), for `dcr_guard.validation_ms`.
    started_ms: Option<u64>,
    /// Headers held (`hold_headers`) with a body to come and none given to the filter yet: when
    /// (ms), and the request's bytes the host had then ([`Properties::request_bytes`]). See
    /// [`Engine::check_held_bodies`].
    held: Option<Held>,
}

/// A stream whose headers are held while the filter waits for the body.
#[derive(Debug, Clone, Copy)]
struct Held {
    since_ms: u64,
    bytes: Option<u64>,
    /// Already counted as a body the host kept from the filter.
    reported: bool,
}

/// How long held headers wait for a body callback before the host is asked whether body bytes
/// arrived (a client may be slow to send; the host holding a body it received is not).
pub const HELD_BODY_GRACE_MS: u64 = 1000;

/// Largest introspection answer read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// How long past its deadline a batched fleet-store call may stay unanswered before the tick
/// gives up on it (the host answers every call, at the latest with its deadline: this only
/// guards the worker's queue against an answer lost in the binding).
const FLEET_ANSWER_MARGIN_MS: u64 = 2_000;

impl Stream {
    pub fn new(cfg: Rc<Config>, ctx: u32) -> Self {
        Stream {
            cfg,
            phase: Phase::Pass,
            ctx,
            no_body: None,
            started_ms: None,
            held: None,
        }
    }

    pub fn on_request_headers(
        &mut self,
        host: &mut dyn Host,
        worker: &mut Worker,
        end_of_stream: bool,
    ) -> Flow {
        let path = host.request_header(":path").unwrap_or_default();
        let cfg = Rc::clone(&self.cfg);
        // Verified-fact headers come from dcr-guard only, never from the client: removed from
        // every request, DCR or not (an upstream may route a path the filter does not serve).
        for (_, header) in &cfg.fact_headers {
            host.set_request_header(header, None);
        }
        let route = classify(&cfg.path, &path);
        if route == Route::NotDcr {
            return Flow::Continue;
        }
        host.count(metrics::REQUESTS);
        self.started_ms = Some(host.now_ms());
        let method = host.request_header(":method").unwrap_or_default();
        let repeated = host.repeated_request_header(&SINGLETON_HEADERS);
        let checked = envelope::check_headers(
            |name| host.request_header(name).is_some(),
            repeated.as_deref(),
        )
        .and_then(|()| envelope::request(route, &method));
        match checked {
            Err(e) => self.refuse(host, e, &Facts::default(), false),
            Ok(Request::Create) => self.start_body(host, &cfg, end_of_stream, None, None),
            Ok(Request::Update { client_id }) => {
                self.start_management(host, worker, &cfg, end_of_stream, None, client_id)
            }
            Ok(Request::Manage { method, client_id }) if end_of_stream => {
                self.start_management(host, worker, &cfg, true, Some(method), client_id)
            }
            Ok(Request::Manage { method, client_id }) => {
                self.expect_no_body(host, worker, &cfg, method, client_id)
            }
        }
    }

    /// A GET or DELETE whose headers did not end the stream: a body is refused, not forwarded
    /// (an upstream might act on it). A declared length or transfer coding is refused at once;
    /// otherwise (HTTP/2 without `content-length`) the stream is held until it ends empty.
    fn expect_no_body(
        &mut self,
        host: &mut dyn Host,
        worker: &mut Worker,
        cfg: &Config,
        method: Bodiless,
        client_id: String,
    ) -> Flow {
        let declared = envelope::declares_body(
            host.request_header("content-length").as_deref(),
            host.request_header("transfer-encoding").as_deref(),
        );
        if declared {
            return self.refuse(host, method.body_refused(), &Facts::default(), false);
        }
        self.no_body = Some(method);
        if cfg.hold_headers {
            self.phase = Phase::Bodiless { client_id };
            Flow::Pause
        } else {
            // Headers go on now (the host cannot hold them); a body that follows is refused by
            // a local reply, which resets the upstream stream.
            self.start_management(host, worker, cfg, false, Some(method), client_id)
        }
    }

    /// GET, PUT, DELETE on `/register/{client_id}`: the binding first (spec §5). `bodiless`: the
    /// GET or DELETE (`None`: a PUT).
    fn start_management(
        &mut self,
        host: &mut dyn Host,
        worker: &mut Worker,
        cfg: &Config,
        end_of_stream: bool,
        bodiless: Option<Bodiless>,
        client_id: String,
    ) -> Flow {
        let binding = match &cfg.rules.token_client_binding {
            None => None,
            Some(mode) => {
                let auth = host.request_header("authorization");
                match Binding::start(mode, auth.as_deref(), &client_id) {
                    Ok(b) => Some(b),
                    Err(e) => return self.refuse(host, e, &Facts::default(), false),
                }
            }
        };
        if bodiless.is_none() {
            return self.start_body(host, cfg, end_of_stream, Some(client_id), binding);
        }
        match binding {
            // Binding off: the AS alone decides.
            None => Flow::Continue,
            Some(b) => {
                let work = Box::new(Work::manage(b, &client_id));
                self.run(host, worker, cfg, work, false)
            }
        }
    }

    /// POST or PUT: the envelope checks on the headers, then buffer the body.
    fn start_body(
        &mut self,
        host: &mut dyn Host,
        cfg: &Config,
        end_of_stream: bool,
        client_id: Option<String>,
        binding: Option<Binding>,
    ) -> Flow {
        let (ct, coding, len) = (
            host.request_header("content-type"),
            host.request_header("content-encoding"),
            host.request_header("content-length"),
        );
        let headers = envelope::BodyHeaders {
            content_type: ct.as_deref(),
            content_encoding: coding.as_deref(),
            content_length: len.as_deref(),
        };
        if let Err(e) = envelope::check_body_headers(cfg, &headers, end_of_stream) {
            return self.refuse(host, e, &Facts::default(), false);
        }
        self.phase = Phase::Buffering {
            client_id,
            binding: binding.map(Box::new),
        };
        if cfg.hold_headers {
            if !end_of_stream {
                self.held = Some(Held {
                    since_ms: host.now_ms(),
                    bytes: host.request_bytes(),
                    reported: false,
                });
            }
            Flow::Pause
        } else {
            Flow::Continue
        }
    }

    pub fn on_request_body(
        &mut self,
        host: &mut dyn Host,
        worker: &mut Worker,
        body_size: usize,
        end_of_stream: bool,
    ) -> Flow {
        if self.held.take().is_some() {
            // The host gives the filter the body of held headers: it honours the hold.
            worker.body_delivered = true;
        }
        if let Some(method) = self.no_body {
            if body_size > 0 && !matches!(self.phase, Phase::Done) {
                self.no_body = None;
                return self.refuse(host, method.body_refused(), &Facts::default(), false);
            }
            if let Phase::Bodiless { .. } = self.phase {
                if !end_of_stream {
                    return Flow::Pause;
                }
                let Phase::Bodiless { client_id } = std::mem::replace(&mut self.phase, Phase::Pass)
                else {
                    return Flow::Pause;
                };
                let cfg = Rc::clone(&self.cfg);
                return self.start_management(host, worker, &cfg, true, Some(method), client_id);
            }
        }
        match self.phase {
            Phase::Pass => return Flow::Continue,
            Phase::Done
            | Phase::Validating { .. }
            | Phase::Status { .. }
            | Phase::Recording { .. }
            | Phase::Bodiless { .. } => return Flow::Pause,
            Phase::Buffering { .. } => {}
        }
        let cfg = Rc::clone(&self.cfg);
        if let Err(e) = envelope::check_body_size(&cfg, body_size) {
            return self.refuse(host, e, &Facts::default(), false);
        }
        if !end_of_stream {
            return Flow::Pause;
        }
        let body = host.request_body(body_size).unwrap_or_default();
        let (client_id, binding) = match std::mem::replace(&mut self.phase, Phase::Pass) {
            Phase::Buffering { client_id, binding } => (client_id, binding),
            _ => (None, None),
        };
        let work = match client_id {
            Some(id) => Work::update(binding.map(|b| *b), &id, body),
            None => match Create::parse(&cfg, &body, &worker.verdicts) {
                Err(e) => return self.refuse(host, e, &Facts::default(), false),
                Ok(create) => Work::create(create),
            },
        };
        let work = match &cfg.rules.certificate_binding {
            Some(_) => work.with_cert(host.client_cert(cfg.cert_source)),
            None => work,
        };
        self.run(host, worker, &cfg, Box::new(work), false)
    }

    /// Trailers end the request too: treat them as the end of the body.
    pub fn on_request_trailers(&mut self, host: &mut dyn Host, worker: &mut Worker) -> Flow {
        match self.phase {
            Phase::Buffering { .. } => {
                let size = self.cfg.limits.body_bytes + 1;
                let body = host.request_body(size).unwrap_or_default();
                let len = body.len();
                self.on_request_body(host, worker, len, true)
            }
            Phase::Bodiless { .. } => self.on_request_body(host, worker, 0, true),
            Phase::Pass => Flow::Continue,
            _ => Flow::Pause,
        }
    }

    /// Drive the validation; `in_callback` is true when called from a callout response or a
    /// tick (then a forward verdict must resume the held request instead of returning Continue).
    fn run(
        &mut self,
        host: &mut dyn Host,
        worker: &mut Worker,
        cfg: &Config,
        mut work: Box<Work>,
        in_callback: bool,
    ) -> Flow {
        let now = host.now();
        loop {
            let (sources, need) = match work.step(cfg, now, &mut worker.verdicts) {
                Step::Forward => {
                    // The live participant status after every other check (the SSA verified),
                    // before replay (a refused request does not use up its `jti`).
                    if status::needed(cfg, &work, host) {
                        let gate = vec![None; cfg.rules.participant_status.len()];
                        return self.check_status(host, worker, cfg, work, gate, in_callback);
                    }
                    return self.replay_then_forward(host, worker, cfg, work, in_callback);
                }
                Step::Reject(e) => {
                    let facts = work.facts();
                    return self.refuse(host, e, &facts, in_callback);
                }
                Step::Fetch(sources) => (sources, Need::Any),
                Step::Refetch(sources) => (sources, Need::Kid),
                Step::Call(call) => match host.dispatch(&call, cfg.limits.callout_timeout_ms) {
                    Ok(token) => {
                        worker.tokens.insert(token, Owner::Call { ctx: self.ctx });
                        self.phase = Phase::Validating {
                            work,
                            pending: vec![token],
                            waiting: Vec::new(),
                        };
                        return Flow::Pause;
                    }
                    Err(why) => {
                        host.log(
                            Level::Warn,
                            &format!(
                                "dcr-guard: callout to upstream `{}` failed: {why}",
                                call.upstream
                            ),
                        );
                        work.answer(None, Vec::new());
                        continue;
                    }
                },
            };
            let mut round = Round {
                cfg,
                need,
                now,
                pending: Vec::new(),
                waiting: Vec::new(),
            };
            for src in sources {
                self.obtain(host, worker, &mut work, &src, &mut round);
            }
            let Round {
                pending, waiting, ..
            } = round;
            if !pending.is_empty() || !waiting.is_empty() {
                self.phase = Phase::Validating {
                    work,
                    pending,
                    waiting,
                };
                return Flow::Pause;
            }
            // Everything came from the cache (or failed at once): go on.
        }
    }

    /// Replay last (the core decides whether it runs: not for a report-only request that failed
    /// something else), then forward.
    fn replay_then_forward(
        &mut self,
        host: &mut dyn Host,
        worker: &mut Worker,
        cfg: &Config,
        work: Box<Work>,
        in_callback: bool,
    ) -> Flow {
        let now = host.now();
        match work.check_replay(cfg, &mut HostStore(host), now) {
            Ok(ReplayCheck::Passed | ReplayCheck::Skipped { request_jti: false }) => {}
            Ok(ReplayCheck::Skipped { request_jti: true }) => {
                host.count(&metrics::skipped(RuleId::RequestJti))
            }
            Ok(ReplayCheck::Fleet(mut fleet)) => {
                let first = fleet.start();
                return self.fleet(host, worker, cfg, work, fleet, first, in_callback);
            }
            Err(e) => {
                let facts = work.facts();
                return self.refuse(host, e, &facts, in_callback);
            }
        }
        self.forward(host, cfg, &work, in_callback)
    }

    /// One document: from the shared cache, by a fetch under this worker's lease, or by waiting
    /// for the worker that holds the lease.
    fn obtain(
        &mut self,
        host: &mut dyn Host,
        worker: &mut Worker,
        work: &mut Work,
        src: &JwksSource,
        round: &mut Round<'_>,
    ) {
        let (cfg, need, now) = (round.cfg, round.need, round.now);
        // The hot path: this worker read the document's fresh shared entry earlier this second.
        if need == Need::Any {
            if let Some(keys) = worker.recent_keys(&src.url, now) {
                host.count(dcr_guard_core::keys::COUNTER_CACHE_HITS);
                work.supply(&src.url, keys);
                return;
            }
        }
        let lease =
            match worker
                .cache
                .decide(&mut HostStore(host), &src.url, need, now, worker.holder)
            {
                Ok(decision) => {
                    if let Some(c) = decision.counter(need) {
                        host.count(c);
                    }
                    match decision {
                        Decision::Use(entry) => {
                            let keys = worker.keys(cfg, &src.url, &entry);
                            if matches!(keys, Fetched::Keys(_)) {
                                worker.mark_read(&src.url, &entry, now);
                            }
                            work.supply(&src.url, keys);
                            return;
                        }
                        Decision::UseStale(entry) => {
                            let keys = worker.keys(cfg, &src.url, &entry);
                            work.supply(&src.url, keys);
                            return;
                        }
                        Decision::Wait { until } => {
                            let seen = worker
                                .cache
                                .peek(&HostStore(host), &src.url)
                                .ok()
                                .flatten()
                                .map(|e| e.generation);
                            worker.waiters.push(Waiter {
                                ctx: self.ctx,
                                url: src.url.clone(),
                                seen,
                                deadline: until,
                            });
                            round.waiting.push(src.url.clone());
                            return;
                        }
                        Decision::Unavailable { .. } => {
                            work.supply(&src.url, worker.last_failure(host, &src.url));
                            return;
                        }
                        Decision::Fetch { lease_id } => Some(lease_id),
                    }
                }
                Err(e) => {
                    // The shared cache is out of order: fetch for this request alone.
                    host.log(Level::Warn, &format!("dcr-guard: JWKS cache: {e}"));
                    None
                }
            };
        host.count(metrics::JWKS_FETCHES);
        match host.dispatch_get(src, cfg.limits.callout_timeout_ms) {
            Ok(token) => {
                worker.fetch_started.insert(token, host.now_ms());
                worker.tokens.insert(
                    token,
                    Owner::Stream {
                        ctx: self.ctx,
                        src: src.clone(),
                        lease,
                    },
                );
                round.pending.push(token);
            }
            Err(why) => {
                host.count(metrics::JWKS_FETCH_FAILURES);
                host.log(
                    Level::Warn,
                    &format!(
                        "dcr-guard: callout to upstream `{}` failed: {why}",
                        src.upstream
                    ),
                );
                let failed = Fetched::Unavailable(format!("could not be reached ({why})"));
                let fetched = worker.fetched(host, cfg, &src.url, lease, failed, &[], now);
                work.supply(&src.url, fetched);
            }
        }
    }

    /// The verdict is to forward: record it, rewrite the body for JSON forwarding, add the
    /// verified facts, and let the request go on.
    fn forward(
        &mut self,
        host: &mut dyn Host,
        cfg: &Config,
        work: &Work,
        in_callback: bool,
    ) -> Flow {
        self.observe(host);
        let facts = work.facts();
        let forwarding = work.forwarding(cfg);
        let management = matches!(forwarding, Forwarding::Management);
        let (body, reported) = match forwarding {
            Forwarding::Management => (None, false),
            Forwarding::Accepted { fact_headers, body } => {
                for (header, value) in fact_headers {
                    host.set_request_header(&header, Some(&value));
                }
                (body, false)
            }
            Forwarding::Reported {
                failures,
                skipped,
                body,
            } => {
                let (failures, skipped) = (failures.to_vec(), skipped.to_vec());
                self.report(host, &failures, &skipped, &facts);
                (body, true)
            }
        };
        match body {
            None => {}
            Some(Ok(body)) => {
                host.replace_request_body(&body);
                host.set_request_header("content-type", Some("application/json"));
                host.set_request_header("content-length", Some(&body.len().to_string()));
                // Headers that describe the body the client sent, not this one.
                for name in envelope::BODY_DESCRIBING_HEADERS {
                    host.set_request_header(name, None);
                }
            }
            Some(Err(e)) => return self.refuse(host, e, &facts, in_callback),
        }
        if reported {
            self.phase = Phase::Pass;
            if in_callback {
                host.resume();
            }
            return Flow::Continue;
        }
        // Registrations (creates and updates, whose bodies were validated) and management reads
        // and deletes (only their token was checked) are counted apart.
        host.count(if management {
            "dcr_guard.management_forwarded"
        } else {
            "dcr_guard.accepted"
        });
        host.set_state("dcr_guard.verdict", "accepted");
        record_facts(host, &facts);
        self.phase = Phase::Pass;
        if in_callback {
            host.resume();
        }
        Flow::Continue
    }

    /// A callout of this stream answered (`url`, under `lease` when this worker holds it).
    /// Drive the fleet replay store: send its next call, or act on its verdict.
    #[allow(clippy::too_many_arguments)]
    fn fleet(
        &mut self,
        host: &mut dyn Host,
        worker: &mut Worker,
        cfg: &Config,
        work: Box<Work>,
        mut fleet: Box<FleetReplay>,
        mut step: FleetStep,
        in_callback: bool,
    ) -> Flow {
        loop {
            match step {
                FleetStep::Done(Ok(())) => return self.forward(host, cfg, &work, in_callback),
                FleetStep::Done(Err(e)) => {
                    let facts = work.facts();
                    return self.refuse(host, e, &facts, in_callback);
                }
                FleetStep::Call(call) => {
                    // Queued for the root context, which batches the worker's calls; sent by the
                    // stream itself only when the root cannot be woken.
                    let call = match worker.fleet_queue {
                        Some(queue) => {
                            let wake = worker.fleet.submit(self.ctx, call);
                            if !wake || host.enqueue(queue) {
                                self.phase = Phase::Recording { work, fleet };
                                return Flow::Pause;
                            }
                            match worker.fleet.withdraw(&self.ctx) {
                                Some(call) => call,
                                None => {
                                    step = fleet.fault("internal: fleet call lost".to_string());
                                    continue;
                                }
                            }
                        }
                        None => call,
                    };
                    match host.dispatch_grpc(
                        fleet.target(),
                        call.service,
                        call.method,
                        &call.message,
                        fleet.timeout_ms(),
                    ) {
                        Ok(token) => {
                            host.count(metrics::REPLAY_ETCD_CALLS);
                            if call.method == dcr_guard_core::replay::etcd::TXN_METHOD {
                                host.count(metrics::REPLAY_ETCD_TXNS);
                            }
                            let owner = GrpcOwner {
                                members: vec![self.ctx],
                                nested: false,
                                txn: call.method == dcr_guard_core::replay::etcd::TXN_METHOD,
                                batched: false,
                                max: dcr_guard_core::replay::etcd::MAX_ANSWER_BYTES,
                                sent_ms: host.now_ms(),
                            };
                            worker.grpc.insert(token, owner);
                            self.phase = Phase::Recording { work, fleet };
                            return Flow::Pause;
                        }
                        Err(why) => {
                            host.log(
                                Level::Warn,
                                &format!(
                                    "dcr-guard: gRPC call to the fleet replay store (`{}/{}`) could not start: {why}",
                                    call.service, call.method
                                ),
                            );
                            step = fleet.fault(format!("the call to etcd could not start: {why}"));
                        }
                    }
                }
            }
        }
    }

    /// The fleet replay store's answer to this stream's call (alone or out of a batch).
    pub fn on_grpc_answer(
        &mut self,
        host: &mut dyn Host,
        worker: &mut Worker,
        answer: MemberAnswer,
    ) {
        if !matches!(self.phase, Phase::Recording { .. }) {
            return;
        }
        let Phase::Recording { work, mut fleet } = std::mem::replace(&mut self.phase, Phase::Pass)
        else {
            return;
        };
        let cfg = Rc::clone(&self.cfg);
        let step = match answer {
            MemberAnswer::Fault(why) => fleet.fault(why),
            MemberAnswer::Reply {
                status,
                message,
                body,
            } => fleet.answer(&cfg, &mut HostStore(host), status, &message, &body),
        };
        self.fleet(host, worker, &cfg, work, fleet, step, true);
    }

    pub fn on_call_response(
        &mut self,
        host: &mut dyn Host,
        worker: &mut Worker,
        token: u32,
        url: &str,
        lease: Option<u64>,
        body_size: usize,
    ) {
        let cfg = Rc::clone(&self.cfg);
        let fetched = worker.read_answer(host, &cfg, url, lease, body_size);
        let Some((mut work, mut pending, waiting)) = self.take_validating() else {
            return;
        };
        if let Some(i) = pending.iter().position(|t| *t == token) {
            pending.swap_remove(i);
            work.supply(url, fetched);
        }
        self.go_on(host, worker, &cfg, work, pending, waiting);
    }

    /// The answer to a one-off call (token introspection).
    pub fn on_call_answer(
        &mut self,
        host: &mut dyn Host,
        worker: &mut Worker,
        token: u32,
        body_size: usize,
    ) {
        let cfg = Rc::clone(&self.cfg);
        let (status, body) = host.call_response(body_size, MAX_ANSWER_BYTES);
        let Some((mut work, mut pending, waiting)) = self.take_validating() else {
            return;
        };
        if let Some(i) = pending.iter().position(|t| *t == token) {
            pending.swap_remove(i);
            work.answer(
                status,
                if body_size > MAX_ANSWER_BYTES {
                    Vec::new()
                } else {
                    body
                },
            );
        }
        self.go_on(host, worker, &cfg, work, pending, waiting);
    }

    /// A document this stream waited for landed (or the wait timed out).
    pub fn on_wait_over(
        &mut self,
        host: &mut dyn Host,
        worker: &mut Worker,
        url: &str,
        outcome: WaitOver,
    ) {
        let cfg = Rc::clone(&self.cfg);
        let Some((mut work, pending, mut waiting)) = self.take_validating() else {
            return;
        };
        if let Some(i) = waiting.iter().position(|u| u == url) {
            waiting.swap_remove(i);
            let fetched = match outcome {
                WaitOver::Ready(f) => f,
                WaitOver::TimedOut => {
                    Fetched::Unavailable("the fetch by another worker did not complete".into())
                }
            };
            work.supply(url, fetched);
        }
        self.go_on(host, worker, &cfg, work, pending, waiting);
    }

    /// Take the work and the callouts this stream waits for; `None` when it is not waiting (a
    /// late answer after a verdict), leaving the phase as it was.
    fn take_validating(&mut self) -> Option<(Box<Work>, Vec<u32>, Vec<String>)> {
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Validating {
                work,
                pending,
                waiting,
            } => Some((work, pending, waiting)),
            other => {
                self.phase = other;
                None
            }
        }
    }

    fn go_on(
        &mut self,
        host: &mut dyn Host,
        worker: &mut Worker,
        cfg: &Config,
        work: Box<Work>,
        pending: Vec<u32>,
        waiting: Vec<String>,
    ) {
        if pending.is_empty() && waiting.is_empty() {
            self.run(host, worker, cfg, work, true);
        } else {
            self.phase = Phase::Validating {
                work,
                pending,
                waiting,
            };
        }
    }

    /// A failure that ends the request: rejected, or in report-only mode logged, counted and
    /// forwarded. `in_callback`: called from a callout response (the request is held and must be
    /// resumed to go on).
    fn refuse(
        &mut self,
        host: &mut dyn Host,
        e: DcrError,
        facts: &Facts,
        in_callback: bool,
    ) -> Flow {
        if self.cfg.report_only {
            self.observe(host);
            self.report(host, std::slice::from_ref(&e), &[], facts);
            self.phase = Phase::Pass;
            if in_callback {
                host.resume();
            }
            return Flow::Continue;
        }
        self.reject(host, e, facts)
    }

    /// Report-only mode: log and count each failure and skipped rule; the request goes on.
    fn report(
        &mut self,
        host: &mut dyn Host,
        failures: &[DcrError],
        skipped: &[RuleId],
        facts: &Facts,
    ) {
        host.count(metrics::REPORTED);
        host.set_state("dcr_guard.verdict", "reported");
        if let Some(first) = failures.first() {
            host.set_state("dcr_guard.rule", first.source.as_str());
        }
        record_facts(host, facts);
        for e in failures {
            host.count(&metrics::failed(e.source));
            if e.is_dependency_fault() {
                host.count(metrics::DEPENDENCY_FAILURES);
            }
            host.log(
                Level::Info,
                &log_line(host, "report-only: would reject", e, facts),
            );
        }
        for rule in skipped {
            host.count(&metrics::skipped(*rule));
            host.log(
                Level::Info,
                &format!(
                    "dcr-guard: report-only: skipped rule={} {}{} (it depends on a check that failed)",
                    rule.as_str(),
                    log_id(&facts.software_id, &facts.claimed_software_id, "software_id"),
                    trace_ids(host),
                ),
            );
        }
    }

    fn reject(&mut self, host: &mut dyn Host, e: DcrError, facts: &Facts) -> Flow {
        self.phase = Phase::Done;
        self.observe(host);
        reject(host, e, facts)
    }

    /// Record how long the verdict took (once per request).
    fn observe(&mut self, host: &mut dyn Host) {
        if let Some(start) = self.started_ms.take() {
            host.observe(metrics::VALIDATION_MS, host.now_ms().saturating_sub(start));
        }
    }
}

/// A plugin whose configuration never succeeded (hosts do not start on a refused one, but a
/// reload can leave a worker without one): the registration path is unknown, so every request
/// is answered 503 (fail closed). The host binding gives such a plugin this instead of an
/// [`Engine`].
pub fn unconfigured(host: &mut dyn Host) -> Flow {
    reject(
        host,
        DcrError::unavailable(RuleId::SsaSignature, "dcr-guard is not configured", 30),
        &Facts::default(),
    )
}

/// Answer `e` locally: counters, filter state, one log line, the RFC 7591 / 6750 reply.
fn reject(host: &mut dyn Host, e: DcrError, facts: &Facts) -> Flow {
    host.count(metrics::REJECTED);
    host.count(&metrics::failed(e.source));
    if e.is_dependency_fault() {
        host.count(metrics::DEPENDENCY_FAILURES);
    }
    host.set_state("dcr_guard.verdict", "rejected");
    host.set_state("dcr_guard.rule", e.source.as_str());
    record_facts(host, facts);
    let level = if e.is_dependency_fault() {
        Level::Warn
    } else {
        Level::Info
    };
    let line = log_line(host, "rejected", &e, facts);
    host.log(level, &line);
    let headers = e.headers();
    let refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    host.respond(e.status, &refs, e.body().as_bytes());
    Flow::Pause
}

/// One log line for a failure: rule, code, the TPP's software_id and request jti when known (as
/// `claimed_…` while the token carrying them has not verified); never a token, a key or a
/// payload. Every client-derived part (the ids, and the description, which may quote a claim) is
/// escaped: one request is one line.
fn log_line(host: &dyn Host, what: &str, e: &DcrError, facts: &Facts) -> String {
    format!(
        "dcr-guard: {what} status={} error={} rule={} {} {}{} reason=\"{}\"",
        e.status,
        e.code.as_str(),
        e.source.as_str(),
        log_id(
            &facts.software_id,
            &facts.claimed_software_id,
            "software_id"
        ),
        log_id(&facts.jti, &facts.claimed_jti, "jti"),
        trace_ids(host),
        escape(&e.description, dcr_guard_core::escape::MAX_REASON),
    )
}

/// ` request_id="…"` (Envoy's `x-request-id`) and ` traceparent="…"` (W3C trace context) when the
/// request carries them, escaped and bounded: a log line joins the access log and the trace.
fn trace_ids(host: &dyn Host) -> String {
    let mut out = String::new();
    for (header, name) in [
        ("x-request-id", "request_id"),
        ("traceparent", "traceparent"),
    ] {
        if let Some(v) = host.request_header(header).filter(|v| !v.is_empty()) {
            out.push_str(&format!(
                " {name}=\"{}\"",
                escape(&v, dcr_guard_core::escape::MAX_ID)
            ));
        }
    }
    out
}

/// `name="value"` for a verified value, `claimed_name="value"` for an unverified one, `name=-`
/// when there is none; escaped.
fn log_id(verified: &Option<String>, claimed: &Option<String>, name: &str) -> String {
    match (verified, claimed) {
        (Some(v), _) => format!("{name}=\"{}\"", escape(v, dcr_guard_core::escape::MAX_ID)),
        (None, Some(c)) => format!(
            "claimed_{name}=\"{}\"",
            escape(c, dcr_guard_core::escape::MAX_ID)
        ),
        (None, None) => format!("{name}=-"),
    }
}

/// The request's facts as filter state (`wasm.dcr_guard.…`), escaped: a verified SSA's
/// `software_id` as `software_id`, an unverified SSA's only as `claimed_software_id`.
fn record_facts(host: &mut dyn Host, facts: &Facts) {
    if let Some(id) = &facts.software_id {
        host.set_state(
            "dcr_guard.software_id",
            &escape(id, dcr_guard_core::escape::MAX_ID),
        );
    }
    if let Some(id) = &facts.claimed_software_id {
        host.set_state(
            "dcr_guard.claimed_software_id",
            &escape(id, dcr_guard_core::escape::MAX_ID),
        );
    }
}

#[cfg(test)]
#[allow(clippy::type_complexity)]
mod tests;
