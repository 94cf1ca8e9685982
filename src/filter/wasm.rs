//! proxy-wasm binding: the root context reads and validates the configuration once; each HTTP
//! context drives a [`Stream`]. Host calls go through `proxy_wasm::hostcalls`, whose errors are
//! handled here instead of the SDK's panicking `Context` helpers.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType};

use super::abi;
use super::{
    unconfigured, Callouts, Engine, Flow, Level, Properties, RequestIo, SharedStore, Telemetry,
};
use dcr_guard_core::cert::ClientCert;
use dcr_guard_core::config::{CertSource, Config, JwksSource};
use dcr_guard_core::shared::StoreError;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|ctx| -> Box<dyn RootContext> {
        Box::new(Root { ctx, engine: None, graveyard: Rc::new(RefCell::new(Vec::new())) })
    });
}}

fn log(level: Level, msg: &str) {
    let l = match level {
        Level::Debug => LogLevel::Debug,
        Level::Info => LogLevel::Info,
        Level::Warn => LogLevel::Warn,
        Level::Error => LogLevel::Error,
    };
    let _ = abi::log(l, msg);
}

struct Root {
    ctx: u32,
    engine: Option<Rc<RefCell<Engine>>>,
    /// Streams the host finished while the engine was busy: removed at the next chance.
    graveyard: Rc<RefCell<Vec<u32>>>,
}

/// How often the root context ticks: wakes streams waiting for another worker's fetch, and
/// checks background refreshes.
const TICK: Duration = Duration::from_millis(100);

fn holder_id() -> u64 {
    let mut b = [0u8; 8];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).is_err() {
        let t = WasmHost::default().now();
        return (t as u64) ^ 0x9e37_79b9_7f4a_7c15;
    }
    u64::from_le_bytes(b).max(1)
}

impl Context for Root {
    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        if let Some(engine) = &self.engine {
            if let Ok(mut e) = engine.try_borrow_mut() {
                bury(&mut e, &self.graveyard);
                let mut host = WasmHost::of(&e);
                e.on_grpc_call_response(&mut host, token_id, Some(status_code), response_size);
            }
            let _ = abi::set_effective_context(self.ctx);
        }
    }

    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        if let Some(engine) = &self.engine {
            if let Ok(mut e) = engine.try_borrow_mut() {
                bury(&mut e, &self.graveyard);
                let mut host = WasmHost::of(&e);
                e.on_call_response(&mut host, token_id, body_size);
            }
            let _ = abi::set_effective_context(self.ctx);
        }
    }
}

fn bury(engine: &mut Engine, graveyard: &Rc<RefCell<Vec<u32>>>) {
    if let Ok(mut g) = graveyard.try_borrow_mut() {
        for ctx in g.drain(..) {
            engine.remove(ctx);
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        let doc = match abi::get_buffer(BufferType::PluginConfiguration, 0, size) {
            Ok(Some(b)) => b,
            Ok(None) => Vec::new(),
            Err(status) => {
                log(
                    Level::Error,
                    &format!("dcr-guard: cannot read the plugin configuration (status {status})"),
                );
                return false;
            }
        };
        match Config::parse(&doc, &|name| std::env::var(name).ok()) {
            Ok(cfg) => {
                log(
                    Level::Info,
                    &format!("dcr-guard: configured {}", cfg.summary()),
                );
                let cfg = Rc::new(cfg);
                let mut host = WasmHost {
                    cfg: Some(Rc::clone(&cfg)),
                };
                let mut store = super::HostStore(&mut host);
                if let Err(e) = dcr_guard_core::replay::precreate(&mut store, &cfg.replay.store) {
                    // Not fatal: a missing bucket or secret is created at first use; a store
                    // that cannot be written makes replay checks fail closed (503).
                    log(Level::Warn, &format!("dcr-guard: replay store: {e}"));
                }
                // Every counter exists from now on (a dashboard sees 0, not no series).
                for name in dcr_guard_core::metrics::all() {
                    let _ = metric_id(&host.stat(&name));
                }
                for name in dcr_guard_core::metrics::HISTOGRAMS {
                    let _ = histogram_id(&host.stat(name));
                }
                for name in dcr_guard_core::metrics::gauges(cfg.directories.len()) {
                    let _ = gauge_id(&host.stat(&name));
                }
                host.gauge(
                    dcr_guard_core::metrics::REPLAY_CAPACITY,
                    cfg.replay.store.capacity(),
                );
                let holder = holder_id();
                let mut engine = Engine::new(cfg, holder);
                engine.worker.precreate(&mut host, engine.config());
                engine.worker.precreate_status(&mut host, engine.config());
                engine.attach_root(&mut host, self.ctx, holder);
                self.engine = Some(Rc::new(RefCell::new(engine)));
                if let Err(rc) = abi::set_tick_period(TICK) {
                    log(
                        Level::Warn,
                        &format!(
                            "dcr-guard: no tick (status {rc}): waiting requests time out instead"
                        ),
                    );
                }
                true
            }
            Err(e) => {
                log(Level::Error, &format!("dcr-guard: {e}"));
                false
            }
        }
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        if let Some(engine) = &self.engine {
            if let Ok(mut e) = engine.try_borrow_mut() {
                bury(&mut e, &self.graveyard);
                let mut host = WasmHost::of(&e);
                e.on_queue_ready(&mut host, queue_id);
            }
            let _ = abi::set_effective_context(self.ctx);
        }
    }

    fn on_tick(&mut self) {
        if let Some(engine) = &self.engine {
            if let Ok(mut e) = engine.try_borrow_mut() {
                bury(&mut e, &self.graveyard);
                let mut host = WasmHost::of(&e);
                e.on_tick(&mut host, self.ctx);
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        match &self.engine {
            Some(e) => Some(Box::new(Http {
                ctx: context_id,
                engine: Rc::clone(e),
                graveyard: Rc::clone(&self.graveyard),
            })),
            // Not configured (hosts refuse to start on a refused configuration): fail closed.
            None => Some(Box::new(Unconfigured)),
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    ctx: u32,
    engine: Rc<RefCell<Engine>>,
    graveyard: Rc<RefCell<Vec<u32>>>,
}

impl Http {
    /// Run `f` on the engine. The engine is never busy here (hosts do not re-enter a VM from
    /// inside a callback); if it were, fail closed with a 503 rather than let the request through.
    fn with(&self, f: impl FnOnce(&mut Engine) -> Flow) -> Action {
        match self.engine.try_borrow_mut() {
            Ok(mut e) => {
                bury(&mut e, &self.graveyard);
                action(f(&mut e))
            }
            Err(_) => {
                log(
                    Level::Error,
                    "dcr-guard: internal: re-entrant callback, answering 503",
                );
                let _ =
                    abi::send_local_response(503, "dcr_guard_busy", &[("retry-after", "1")], b"");
                Action::Pause
            }
        }
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        match self.engine.try_borrow_mut() {
            Ok(mut e) => e.remove(self.ctx),
            Err(_) => {
                if let Ok(mut g) = self.graveyard.try_borrow_mut() {
                    g.push(self.ctx);
                }
            }
        }
    }
}

/// Why a callout could not start, for the log: Envoy answers `BadArgument` when the cluster does
/// not exist (the most common mistake), so name it.
fn dispatch_error(s: proxy_wasm::types::Status, upstream: &str) -> String {
    match s {
        proxy_wasm::types::Status::BadArgument => format!(
            "the host refused the call (BadArgument): is `{upstream}` a cluster of this Envoy?"
        ),
        other => format!("{other:?}"),
    }
}

/// The proxy-wasm host, for the current HTTP context, and the metric names of the plugin
/// (`stats.instance`) whose context it is: plugins with the same code and `vm_id` share one VM, so
/// the instance travels with each callback rather than living in the VM.
#[derive(Default)]
struct WasmHost {
    /// The plugin's configuration (`None`: not configured, the plain names).
    cfg: Option<Rc<Config>>,
}

impl WasmHost {
    fn of(engine: &Engine) -> WasmHost {
        WasmHost {
            cfg: Some(Rc::clone(engine.config())),
        }
    }

    /// A metric's name as this plugin defines it ([`dcr_guard_core::metrics::instance_name`]).
    fn stat<'a>(&self, name: &'a str) -> std::borrow::Cow<'a, str> {
        match self.cfg.as_ref().and_then(|c| c.stats_instance.as_deref()) {
            None => std::borrow::Cow::Borrowed(name),
            Some(i) => {
                std::borrow::Cow::Owned(dcr_guard_core::metrics::instance_name(Some(i), name))
            }
        }
    }
}

impl RequestIo for WasmHost {
    fn request_header(&self, name: &str) -> Option<String> {
        abi::get_header(MapType::HttpRequestHeaders, name)
            .ok()
            .flatten()
    }

    fn repeated_request_header(&self, names: &[&str]) -> Option<String> {
        // Fail closed: if the map cannot be read, say the first name is repeated.
        let all = match abi::get_header_names(MapType::HttpRequestHeaders) {
            Ok(all) => all,
            Err(_) => return names.first().map(|n| n.to_string()),
        };
        names
            .iter()
            .find(|n| all.iter().filter(|a| a == *n).count() > 1)
            .map(|n| n.to_string())
    }

    fn request_body(&self, size: usize) -> Option<Vec<u8>> {
        abi::get_buffer(BufferType::HttpRequestBody, 0, size)
            .ok()
            .flatten()
    }

    fn set_request_header(&mut self, name: &str, value: Option<&str>) {
        if let Err(s) = abi::set_header(MapType::HttpRequestHeaders, name, value) {
            log(
                Level::Warn,
                &format!("dcr-guard: cannot set header `{name}` ({s:?})"),
            );
        }
    }

    fn replace_request_body(&mut self, body: &[u8]) {
        // Replace everything buffered: start 0, a size at least the buffered length.
        if let Err(s) = abi::set_buffer(BufferType::HttpRequestBody, 0, usize::MAX, body) {
            log(
                Level::Warn,
                &format!("dcr-guard: cannot replace the body (status {s})"),
            );
        }
    }

    fn resume(&mut self) {
        if let Err(s) = abi::resume_request() {
            log(
                Level::Warn,
                &format!("dcr-guard: resume failed (status {s})"),
            );
        }
    }

    fn respond(&mut self, status: u16, headers: &[(&str, &str)], body: &[u8]) {
        if let Err(s) = abi::send_local_response(u32::from(status), "dcr_guard", headers, body) {
            log(
                Level::Warn,
                &format!("dcr-guard: local reply failed (status {s})"),
            );
        }
    }
}

/// One HTTPS callout (JWKS and status documents, token introspection) through `upstream`.
struct Request<'a> {
    upstream: &'a str,
    method: &'a str,
    path: &'a str,
    authority: &'a str,
    accept: Option<&'a str>,
    headers: &'a [(String, String)],
    body: Option<&'a [u8]>,
}

fn https_call(req: &Request<'_>, timeout_ms: u64) -> Result<u32, String> {
    let mut headers: Vec<(&str, &str)> = vec![
        (":method", req.method),
        (":path", req.path),
        (":authority", req.authority),
        (":scheme", "https"),
    ];
    if let Some(accept) = req.accept {
        headers.push(("accept", accept));
    }
    headers.push(("user-agent", "dcr-guard"));
    headers.extend(req.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    hostcalls::dispatch_http_call(
        req.upstream,
        headers,
        req.body,
        vec![],
        Duration::from_millis(timeout_ms),
    )
    .map_err(|s| dispatch_error(s, req.upstream))
}

impl Callouts for WasmHost {
    fn dispatch_get(&mut self, src: &JwksSource, timeout_ms: u64) -> Result<u32, String> {
        https_call(
            &Request {
                upstream: &src.upstream,
                method: "GET",
                path: &src.path,
                authority: &src.authority,
                accept: Some("application/json, application/jwk-set+json"),
                headers: &[],
                body: None,
            },
            timeout_ms,
        )
    }

    fn dispatch_status(
        &mut self,
        src: &dcr_guard_core::status::StatusSource,
        timeout_ms: u64,
    ) -> Result<u32, String> {
        https_call(
            &Request {
                upstream: &src.upstream,
                method: "GET",
                path: &src.path,
                authority: &src.authority,
                accept: Some("application/json"),
                headers: &src.headers,
                body: None,
            },
            timeout_ms,
        )
    }

    fn dispatch(
        &mut self,
        call: &dcr_guard_core::binding::Callout,
        timeout_ms: u64,
    ) -> Result<u32, String> {
        https_call(
            &Request {
                upstream: &call.upstream,
                method: "POST",
                path: &call.path,
                authority: &call.authority,
                accept: None,
                headers: &call.headers,
                body: Some(&call.body),
            },
            timeout_ms,
        )
    }

    fn call_response(&self, body_size: usize, max: usize) -> (Option<u16>, Vec<u8>) {
        let status = abi::get_header(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten()
            .and_then(|s| s.trim().parse::<u16>().ok());
        let body = if body_size == 0 || body_size > max {
            Vec::new()
        } else {
            abi::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
                .ok()
                .flatten()
                .unwrap_or_default()
        };
        (status, body)
    }

    fn dispatch_grpc(
        &mut self,
        target: &str,
        service: &str,
        method: &str,
        message: &[u8],
        timeout_ms: u64,
    ) -> Result<u32, String> {
        hostcalls::dispatch_grpc_call(
            target,
            service,
            method,
            vec![],
            Some(message),
            Duration::from_millis(timeout_ms),
        )
        .map_err(|s| match s {
            // The target is a serialized GrpcService: say what the operator configured.
            proxy_wasm::types::Status::BadArgument => {
                "the host refused the call (BadArgument): is replay.etcd.upstream a cluster of this Envoy?"
                    .to_string()
            }
            other => format!("{other:?}"),
        })
    }

    fn register_queue(&mut self, name: &str) -> Option<u32> {
        abi::register_queue(name).ok()
    }

    fn enqueue(&mut self, queue: u32) -> bool {
        abi::enqueue(queue, b"").is_ok()
    }

    fn drain_queue(&mut self, queue: u32) {
        // Bounded: every wake-up is one item, and there is at most one pending at a time.
        for _ in 0..1024 {
            if !matches!(abi::dequeue(queue), Ok(Some(_))) {
                break;
            }
        }
    }

    fn grpc_response(&self, size: usize, max: usize) -> (String, Vec<u8>) {
        let message = abi::grpc_status_message().unwrap_or_default();
        let body = if size == 0 || size > max {
            Vec::new()
        } else {
            abi::get_buffer(BufferType::GrpcReceiveBuffer, 0, size)
                .ok()
                .flatten()
                .unwrap_or_default()
        };
        (message, body)
    }

    fn call_response_header(&self, name: &str) -> Option<String> {
        abi::get_header(MapType::HttpCallResponseHeaders, name)
            .ok()
            .flatten()
    }

    fn set_effective_context(&mut self, ctx: u32) -> bool {
        abi::set_effective_context(ctx).is_ok()
    }
}

impl SharedStore for WasmHost {
    fn shared_get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        abi::get_shared(key)
    }

    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        abi::set_shared(key, value, cas)
    }
}

impl Telemetry for WasmHost {
    fn log(&self, level: Level, message: &str) {
        log(level, message);
    }

    fn count(&mut self, name: &str) {
        if let Some(id) = metric_id(&self.stat(name)) {
            let _ = abi::increment(id, 1);
        }
    }

    fn observe(&mut self, name: &str, value: u64) {
        if let Some(id) = histogram_id(&self.stat(name)) {
            let _ = abi::record(id, value);
        }
    }

    fn gauge(&mut self, name: &str, value: u64) {
        if let Some(id) = gauge_id(&self.stat(name)) {
            let _ = abi::record(id, value);
        }
    }
}

impl Properties for WasmHost {
    fn now_ms(&self) -> u64 {
        abi::now_nanos().map(|ns| ns / 1_000_000).unwrap_or(0)
    }

    fn now(&self) -> i64 {
        // No clock: 0, at which every token is expired (fail closed).
        abi::now_nanos()
            .map(|ns| i64::try_from(ns / 1_000_000_000).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }

    fn client_cert(&self, source: CertSource) -> Result<Option<ClientCert>, String> {
        match source {
            CertSource::Connection => {
                let prop = |name: &str| {
                    abi::get_property(&["connection", name])
                        .ok()
                        .flatten()
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .filter(|s| !s.is_empty())
                };
                match prop("subject_peer_certificate") {
                    None => Ok(None),
                    Some(subject) => ClientCert::from_envoy(
                        &subject,
                        prop("sha256_peer_certificate_digest").as_deref(),
                        prop("uri_san_peer_certificate").as_deref(),
                    )
                    .map(Some),
                }
            }
            CertSource::Xfcc => match self.request_header("x-forwarded-client-cert") {
                None => Ok(None),
                Some(h) => ClientCert::from_xfcc(&h).map(Some),
            },
        }
    }

    fn set_state(&mut self, key: &str, value: &str) {
        let _ = abi::set_property(&[key], value.as_bytes());
    }

    fn request_bytes(&self) -> Option<u64> {
        // An int64, little-endian.
        let b = abi::get_property(&["request", "total_size"])
            .ok()
            .flatten()?;
        let b: [u8; 8] = b.as_slice().try_into().ok()?;
        u64::try_from(i64::from_le_bytes(b)).ok()
    }
}

type Ids = std::thread::LocalKey<RefCell<HashMap<String, u32>>>;

thread_local! {
    /// Counter ids by name, defined on first use (one VM per worker thread).
    static METRICS: RefCell<HashMap<String, u32>> = RefCell::new(HashMap::new());
    /// Histogram ids by name, defined when the filter is configured.
    static HISTOGRAMS: RefCell<HashMap<String, u32>> = RefCell::new(HashMap::new());
    /// Gauge ids by name, defined when the filter is configured.
    static GAUGES: RefCell<HashMap<String, u32>> = RefCell::new(HashMap::new());
}

/// The id of metric `name` in `ids`, defined with `define` the first time.
fn cached_id(ids: &'static Ids, name: &str, define: fn(&str) -> Result<u32, u32>) -> Option<u32> {
    ids.with(|m| {
        let mut m = m.try_borrow_mut().ok()?;
        if let Some(id) = m.get(name) {
            return Some(*id);
        }
        let id = define(name).ok()?;
        m.insert(name.to_string(), id);
        Some(id)
    })
}

fn gauge_id(name: &str) -> Option<u32> {
    cached_id(&GAUGES, name, abi::define_gauge)
}

fn histogram_id(name: &str) -> Option<u32> {
    cached_id(&HISTOGRAMS, name, abi::define_histogram)
}

fn metric_id(name: &str) -> Option<u32> {
    cached_id(&METRICS, name, abi::define_counter)
}

fn action(f: Flow) -> Action {
    match f {
        Flow::Continue => Action::Continue,
        Flow::Pause => Action::Pause,
    }
}

/// The HTTP context of a plugin without a configuration: every request is answered 503.
struct Unconfigured;

impl Context for Unconfigured {}

impl HttpContext for Unconfigured {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        action(unconfigured(&mut WasmHost::default()))
    }
}

impl Context for Http {
    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        let _ = self.with(|e| {
            let mut host = WasmHost::of(e);
            e.on_grpc_call_response(&mut host, token_id, Some(status_code), response_size);
            Flow::Continue
        });
    }

    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let _ = self.with(|e| {
            let mut host = WasmHost::of(e);
            e.on_call_response(&mut host, token_id, body_size);
            Flow::Continue
        });
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let ctx = self.ctx;
        self.with(|e| e.on_request_headers(&mut WasmHost::of(e), ctx, end_of_stream))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let ctx = self.ctx;
        self.with(|e| e.on_request_body(&mut WasmHost::of(e), ctx, body_size, end_of_stream))
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        let ctx = self.ctx;
        self.with(|e| e.on_request_trailers(&mut WasmHost::of(e), ctx))
    }
}
