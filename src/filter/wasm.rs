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

use super::{Engine, Flow, Host, Level};
use dcr_guard_core::cert::ClientCert;
use dcr_guard_core::config::{CertSource, Config, JwksSource};
use dcr_guard_core::replay::StoreError;

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
    let _ = abi::log(l as u32, msg);
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
        let t = WasmHost.now();
        return (t as u64) ^ 0x9e37_79b9_7f4a_7c15;
    }
    u64::from_le_bytes(b).max(1)
}

impl Context for Root {
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
                e.on_call_response(&mut WasmHost, token_id, body_size);
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
        let doc = match abi::get_buffer(BufferType::PluginConfiguration as u32, 0, size) {
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
                    &format!(
                        "dcr-guard: configured profile={} path={} directories={} hold_headers={} report_only={}",
                        cfg.profile.as_str(),
                        cfg.path,
                        cfg.directories.len(),
                        cfg.hold_headers,
                        cfg.report_only
                    ),
                );
                let mut store = super::HostStore(&mut WasmHost);
                if let Err(e) = dcr_guard_core::replay::precreate(&mut store, &cfg.replay.store) {
                    // Not fatal: a missing bucket or secret is created at first use; a store
                    // that cannot be written makes replay checks fail closed (503).
                    log(Level::Warn, &format!("dcr-guard: replay store: {e}"));
                }
                let engine = Engine::new(Some(Rc::new(cfg)), holder_id());
                if let Some(cfg) = engine.config() {
                    engine.worker.precreate(&mut WasmHost, cfg);
                }
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

    fn on_tick(&mut self) {
        if let Some(engine) = &self.engine {
            if let Ok(mut e) = engine.try_borrow_mut() {
                bury(&mut e, &self.graveyard);
                e.on_tick(&mut WasmHost, self.ctx);
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let engine = match &self.engine {
            Some(e) => Rc::clone(e),
            // Not configured (hosts refuse to start on a refused configuration): fail closed.
            None => Rc::new(RefCell::new(Engine::new(None, 0))),
        };
        Some(Box::new(Http {
            ctx: context_id,
            engine,
            graveyard: Rc::clone(&self.graveyard),
        }))
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

/// The proxy-wasm host, for the current HTTP context.
struct WasmHost;

impl Host for WasmHost {
    fn now(&self) -> i64 {
        // No clock: 0, at which every token is expired (fail closed).
        abi::now_nanos()
            .map(|ns| i64::try_from(ns / 1_000_000_000).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }

    fn request_header(&self, name: &str) -> Option<String> {
        abi::get_header(MapType::HttpRequestHeaders as u32, name)
            .ok()
            .flatten()
    }

    fn repeated_request_header(&self, names: &[&str]) -> Option<String> {
        // Fail closed: if the map cannot be read, say the first name is repeated.
        let all = match abi::get_header_names(MapType::HttpRequestHeaders as u32) {
            Ok(all) => all,
            Err(_) => return names.first().map(|n| n.to_string()),
        };
        names
            .iter()
            .find(|n| all.iter().filter(|a| a == *n).count() > 1)
            .map(|n| n.to_string())
    }

    fn request_body(&self, size: usize) -> Option<Vec<u8>> {
        abi::get_buffer(BufferType::HttpRequestBody as u32, 0, size)
            .ok()
            .flatten()
    }

    fn dispatch_get(&mut self, src: &JwksSource, timeout_ms: u64) -> Result<u32, String> {
        let headers = vec![
            (":method", "GET"),
            (":path", src.path.as_str()),
            (":authority", src.authority.as_str()),
            (":scheme", "https"),
            ("accept", "application/json, application/jwk-set+json"),
            ("user-agent", "dcr-guard"),
        ];
        hostcalls::dispatch_http_call(
            &src.upstream,
            headers,
            None,
            vec![],
            Duration::from_millis(timeout_ms),
        )
        .map_err(|s| format!("{s:?}"))
    }

    fn call_response(&self, body_size: usize, max: usize) -> (Option<u16>, Vec<u8>) {
        let status = abi::get_header(MapType::HttpCallResponseHeaders as u32, ":status")
            .ok()
            .flatten()
            .and_then(|s| s.trim().parse::<u16>().ok());
        let body = if body_size == 0 || body_size > max {
            Vec::new()
        } else {
            abi::get_buffer(BufferType::HttpCallResponseBody as u32, 0, body_size)
                .ok()
                .flatten()
                .unwrap_or_default()
        };
        (status, body)
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

    fn dispatch(
        &mut self,
        call: &dcr_guard_core::binding::Callout,
        timeout_ms: u64,
    ) -> Result<u32, String> {
        let mut headers: Vec<(&str, &str)> = vec![
            (":method", "POST"),
            (":path", call.path.as_str()),
            (":authority", call.authority.as_str()),
            (":scheme", "https"),
            ("user-agent", "dcr-guard"),
        ];
        headers.extend(call.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        hostcalls::dispatch_http_call(
            &call.upstream,
            headers,
            Some(&call.body),
            vec![],
            Duration::from_millis(timeout_ms),
        )
        .map_err(|s| format!("{s:?}"))
    }

    fn call_response_header(&self, name: &str) -> Option<String> {
        abi::get_header(MapType::HttpCallResponseHeaders as u32, name)
            .ok()
            .flatten()
    }

    fn set_effective_context(&mut self, ctx: u32) -> bool {
        abi::set_effective_context(ctx).is_ok()
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

    fn log(&self, level: Level, message: &str) {
        log(level, message);
    }

    fn count(&mut self, name: &str) {
        if let Some(id) = metric_id(name) {
            let _ = abi::increment(id, 1);
        }
    }

    fn shared_get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        abi::get_shared(key)
    }

    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        abi::set_shared(key, value, cas)
    }

    fn set_request_header(&mut self, name: &str, value: Option<&str>) {
        if let Err(s) = abi::set_header(MapType::HttpRequestHeaders as u32, name, value) {
            log(
                Level::Warn,
                &format!("dcr-guard: cannot set header `{name}` ({s:?})"),
            );
        }
    }

    fn replace_request_body(&mut self, body: &[u8]) {
        // Replace everything buffered: start 0, a size at least the buffered length.
        if let Err(s) = abi::set_buffer(0, 0, usize::MAX, body) {
            log(
                Level::Warn,
                &format!("dcr-guard: cannot replace the body (status {s})"),
            );
        }
    }

    fn set_state(&mut self, key: &str, value: &str) {
        let _ = abi::set_property(&[key], value.as_bytes());
    }
}

thread_local! {
    /// Counter ids by name, defined on first use (one VM per worker thread).
    static METRICS: RefCell<HashMap<String, u32>> = RefCell::new(HashMap::new());
}

fn metric_id(name: &str) -> Option<u32> {
    METRICS.with(|m| {
        let mut m = m.try_borrow_mut().ok()?;
        if let Some(id) = m.get(name) {
            return Some(*id);
        }
        let id = abi::define_counter(name).ok()?;
        m.insert(name.to_string(), id);
        Some(id)
    })
}

fn action(f: Flow) -> Action {
    match f {
        Flow::Continue => Action::Continue,
        Flow::Pause => Action::Pause,
    }
}

impl Context for Http {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let _ = self.with(|e| {
            e.on_call_response(&mut WasmHost, token_id, body_size);
            Flow::Continue
        });
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let ctx = self.ctx;
        self.with(|e| e.on_request_headers(&mut WasmHost, ctx, end_of_stream))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let ctx = self.ctx;
        self.with(|e| e.on_request_body(&mut WasmHost, ctx, body_size, end_of_stream))
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        let ctx = self.ctx;
        self.with(|e| e.on_request_trailers(&mut WasmHost, ctx))
    }
}

/// Host calls made directly, every status handled: the SDK's wrappers panic on any status they
/// do not expect, and its header read panics on a value that is not UTF-8 (HTTP/1.1 lets clients
/// send such bytes); a panic traps the VM, and a trapped VM fails every later request on its
/// worker. Only `dispatch_http_call` stays with the SDK: its dispatcher must register the token
/// to route the answer (and it handles the statuses Envoy returns for it).
mod abi {
    #[link(wasm_import_module = "env")]
    extern "C" {
        fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
        fn proxy_get_buffer_bytes(
            buffer_type: u32,
            start: usize,
            max_size: usize,
            return_buffer_data: *mut *mut u8,
            return_buffer_size: *mut usize,
        ) -> u32;
        fn proxy_get_header_map_pairs(
            map_type: u32,
            return_map_data: *mut *mut u8,
            return_map_size: *mut usize,
        ) -> u32;
        fn proxy_get_header_map_value(
            map_type: u32,
            key_data: *const u8,
            key_size: usize,
            return_value_data: *mut *mut u8,
            return_value_size: *mut usize,
        ) -> u32;
        fn proxy_replace_header_map_value(
            map_type: u32,
            key_data: *const u8,
            key_size: usize,
            value_data: *const u8,
            value_size: usize,
        ) -> u32;
        fn proxy_remove_header_map_value(
            map_type: u32,
            key_data: *const u8,
            key_size: usize,
        ) -> u32;
        fn proxy_get_property(
            path_data: *const u8,
            path_size: usize,
            return_value_data: *mut *mut u8,
            return_value_size: *mut usize,
        ) -> u32;
        fn proxy_set_property(
            path_data: *const u8,
            path_size: usize,
            value_data: *const u8,
            value_size: usize,
        ) -> u32;
        fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
        fn proxy_define_metric(
            metric_type: u32,
            name_data: *const u8,
            name_size: usize,
            return_id: *mut u32,
        ) -> u32;
        fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
        fn proxy_continue_stream(stream_type: u32) -> u32;
        fn proxy_send_local_response(
            status_code: u32,
            status_code_details_data: *const u8,
            status_code_details_size: usize,
            body_data: *const u8,
            body_size: usize,
            headers_data: *const u8,
            headers_size: usize,
            grpc_status: i32,
        ) -> u32;
        fn proxy_set_effective_context(context_id: u32) -> u32;
        fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
        fn proxy_get_shared_data(
            key_data: *const u8,
            key_size: usize,
            return_value_data: *mut *mut u8,
            return_value_size: *mut usize,
            return_cas: *mut u32,
        ) -> u32;
        fn proxy_set_shared_data(
            key_data: *const u8,
            key_size: usize,
            value_data: *const u8,
            value_size: usize,
            cas: u32,
        ) -> u32;
        fn proxy_set_buffer_bytes(
            buffer_type: u32,
            start: usize,
            size: usize,
            buffer_data: *const u8,
            buffer_size: usize,
        ) -> u32;
    }

    /// The proxy-wasm header map encoding: count, then (key size, value size) pairs, then each
    /// key and value followed by a NUL.
    fn serialize(headers: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(headers.len() as u32).to_le_bytes());
        for (k, v) in headers {
            out.extend_from_slice(&(k.len() as u32).to_le_bytes());
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        }
        for (k, v) in headers {
            out.extend_from_slice(k.as_bytes());
            out.push(0);
            out.extend_from_slice(v.as_bytes());
            out.push(0);
        }
        out
    }

    pub fn send_local_response(
        status: u32,
        details: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), u32> {
        let map = serialize(headers);
        // SAFETY: every pointer/length pair describes a live slice for the duration of the call.
        let rc = unsafe {
            proxy_send_local_response(
                status,
                details.as_ptr(),
                details.len(),
                body.as_ptr(),
                body.len(),
                map.as_ptr(),
                map.len(),
                -1,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(rc)
        }
    }

    const OK: u32 = 0;

    pub fn set_effective_context(ctx: u32) -> Result<(), u32> {
        // SAFETY: plain value argument.
        match unsafe { proxy_set_effective_context(ctx) } {
            OK => Ok(()),
            rc => Err(rc),
        }
    }

    pub fn set_tick_period(period: std::time::Duration) -> Result<(), u32> {
        let ms = u32::try_from(period.as_millis()).unwrap_or(u32::MAX);
        // SAFETY: plain value argument.
        match unsafe { proxy_set_tick_period_milliseconds(ms) } {
            OK => Ok(()),
            rc => Err(rc),
        }
    }
    const NOT_FOUND: u32 = 1;
    const CAS_MISMATCH: u32 = 8;

    use dcr_guard_core::replay::StoreError;

    /// Shared data get: every status handled (the SDK wrapper panics on unexpected ones).
    pub fn get_shared(key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        let mut data: *mut u8 = std::ptr::null_mut();
        let mut size: usize = 0;
        let mut cas: u32 = 0;
        // SAFETY: the host writes a pointer it allocated through this module's allocator
        // (`proxy_on_memory_allocate`, exported by the SDK) and its size; ownership passes to us.
        let rc = unsafe {
            proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas)
        };
        match rc {
            OK => {
                let value = if data.is_null() {
                    None
                } else {
                    // SAFETY: see above; `size` bytes were allocated as a Vec<u8> of that capacity.
                    Some(unsafe { Vec::from_raw_parts(data, size, size) })
                };
                Ok((value, (cas != 0).then_some(cas)))
            }
            NOT_FOUND => Ok((None, None)),
            other => Err(StoreError::Other(format!(
                "shared data read failed (status {other})"
            ))),
        }
    }

    /// Shared data set with compare-and-swap (`None` = 0).
    pub fn set_shared(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        // SAFETY: both slices are live for the duration of the call.
        let rc = unsafe {
            proxy_set_shared_data(
                key.as_ptr(),
                key.len(),
                value.as_ptr(),
                value.len(),
                cas.unwrap_or(0),
            )
        };
        match rc {
            OK => Ok(()),
            CAS_MISMATCH => Err(StoreError::CasMismatch),
            other => Err(StoreError::Other(format!(
                "shared data write failed (status {other})"
            ))),
        }
    }

    /// Bytes the host handed over: allocated through this module's allocator
    /// (`proxy_on_memory_allocate`, exported by the SDK) as `size` bytes; ownership passes to us.
    fn take(data: *mut u8, size: usize) -> Option<Vec<u8>> {
        if data.is_null() {
            None
        } else {
            // SAFETY: see above.
            Some(unsafe { Vec::from_raw_parts(data, size, size) })
        }
    }

    fn status(rc: u32) -> Result<(), u32> {
        if rc == OK {
            Ok(())
        } else {
            Err(rc)
        }
    }

    pub fn log(level: u32, message: &str) -> Result<(), u32> {
        // SAFETY: `message` is live for the duration of the call.
        status(unsafe { proxy_log(level, message.as_ptr(), message.len()) })
    }

    /// A buffer's bytes; `Ok(None)` when there are none or the host has no such buffer now.
    pub fn get_buffer(buffer_type: u32, start: usize, max: usize) -> Result<Option<Vec<u8>>, u32> {
        let (mut data, mut size): (*mut u8, usize) = (std::ptr::null_mut(), 0);
        // SAFETY: the host writes a pointer and size it allocated for us (see `take`).
        let rc = unsafe { proxy_get_buffer_bytes(buffer_type, start, max, &mut data, &mut size) };
        match rc {
            OK => Ok(take(data, size)),
            NOT_FOUND => Ok(None),
            other => Err(other),
        }
    }

    /// A header's value; bytes that are not UTF-8 become U+FFFD (never a panic).
    pub fn get_header(map_type: u32, name: &str) -> Result<Option<String>, u32> {
        let (mut data, mut size): (*mut u8, usize) = (std::ptr::null_mut(), 0);
        // SAFETY: `name` is live for the call; the host writes a pointer and size it allocated
        // for us (see `take`).
        let rc = unsafe {
            proxy_get_header_map_value(map_type, name.as_ptr(), name.len(), &mut data, &mut size)
        };
        match rc {
            OK => Ok(Some(
                take(data, size)
                    .map(|v| String::from_utf8_lossy(&v).into_owned())
                    .unwrap_or_default(),
            )),
            NOT_FOUND => Ok(None),
            other => Err(other),
        }
    }

    /// The lower-case names of every header in the map, one entry per field line (a repeated
    /// header is listed as often as it was sent). Decoded from the proxy-wasm map encoding (see
    /// `serialize`) with every length checked.
    pub fn get_header_names(map_type: u32) -> Result<Vec<String>, u32> {
        let (mut data, mut size): (*mut u8, usize) = (std::ptr::null_mut(), 0);
        // SAFETY: the host writes a pointer and size it allocated for us (see `take`).
        let rc = unsafe { proxy_get_header_map_pairs(map_type, &mut data, &mut size) };
        if rc != OK {
            return Err(rc);
        }
        let bytes = take(data, size).unwrap_or_default();
        let u32_at = |at: usize| -> Option<usize> {
            let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
            usize::try_from(u32::from_le_bytes(b)).ok()
        };
        let count = u32_at(0).unwrap_or(0);
        let mut names = Vec::new();
        let mut data_at = 4usize.saturating_add(count.saturating_mul(8));
        for i in 0..count {
            let (Some(k), Some(v)) = (u32_at(4 + i * 8), u32_at(8 + i * 8)) else {
                break;
            };
            let Some(name) = bytes.get(data_at..data_at.saturating_add(k)) else {
                break;
            };
            names.push(String::from_utf8_lossy(name).to_ascii_lowercase());
            data_at = data_at
                .saturating_add(k)
                .saturating_add(v)
                .saturating_add(2);
        }
        Ok(names)
    }

    /// Set (`Some`) or remove (`None`) a header.
    pub fn set_header(map_type: u32, name: &str, value: Option<&str>) -> Result<(), u32> {
        // SAFETY: `name` and `value` are live for the duration of the call.
        status(unsafe {
            match value {
                Some(v) => proxy_replace_header_map_value(
                    map_type,
                    name.as_ptr(),
                    name.len(),
                    v.as_ptr(),
                    v.len(),
                ),
                None => proxy_remove_header_map_value(map_type, name.as_ptr(), name.len()),
            }
        })
    }

    /// The proxy-wasm property path encoding: the segments joined by NUL.
    fn property_path(path: &[&str]) -> Vec<u8> {
        path.join("\0").into_bytes()
    }

    pub fn get_property(path: &[&str]) -> Result<Option<Vec<u8>>, u32> {
        let path = property_path(path);
        let (mut data, mut size): (*mut u8, usize) = (std::ptr::null_mut(), 0);
        // SAFETY: `path` is live for the call; the host writes a pointer and size it allocated
        // for us (see `take`).
        let rc = unsafe { proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) };
        match rc {
            OK => Ok(take(data, size)),
            NOT_FOUND => Ok(None),
            other => Err(other),
        }
    }

    pub fn set_property(path: &[&str], value: &[u8]) -> Result<(), u32> {
        let path = property_path(path);
        // SAFETY: both slices are live for the duration of the call.
        status(unsafe {
            proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len())
        })
    }

    /// The host's clock, nanoseconds since the Unix epoch.
    pub fn now_nanos() -> Result<u64, u32> {
        let mut t: u64 = 0;
        // SAFETY: the host writes one u64.
        let rc = unsafe { proxy_get_current_time_nanoseconds(&mut t) };
        status(rc).map(|()| t)
    }

    /// A counter's id.
    pub fn define_counter(name: &str) -> Result<u32, u32> {
        let mut id: u32 = 0;
        // SAFETY: `name` is live for the call; the host writes one u32.
        let rc = unsafe { proxy_define_metric(0, name.as_ptr(), name.len(), &mut id) };
        status(rc).map(|()| id)
    }

    pub fn increment(id: u32, by: i64) -> Result<(), u32> {
        // SAFETY: plain value arguments.
        status(unsafe { proxy_increment_metric(id, by) })
    }

    /// Let the held request go on.
    pub fn resume_request() -> Result<(), u32> {
        // SAFETY: plain value argument (stream type 0: the HTTP request).
        status(unsafe { proxy_continue_stream(0) })
    }

    pub fn set_buffer(
        buffer_type: u32,
        start: usize,
        size: usize,
        value: &[u8],
    ) -> Result<(), u32> {
        // SAFETY: `value` is a live slice for the duration of the call.
        let rc = unsafe {
            proxy_set_buffer_bytes(buffer_type, start, size, value.as_ptr(), value.len())
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(rc)
        }
    }
}
