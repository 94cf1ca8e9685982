//! proxy-wasm binding: the root context reads and validates the configuration once; each HTTP
//! context drives a [`Stream`]. Host calls go through `proxy_wasm::hostcalls`, whose errors are
//! handled here instead of the SDK's panicking `Context` helpers.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};

use super::{Flow, Host, Level, Stream};
use crate::config::{Config, JwksSource};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { config: None }) });
}}

fn log(level: Level, msg: &str) {
    let l = match level {
        Level::Debug => LogLevel::Debug,
        Level::Info => LogLevel::Info,
        Level::Warn => LogLevel::Warn,
        Level::Error => LogLevel::Error,
    };
    let _ = hostcalls::log(l, msg);
}

struct Root {
    config: Option<Rc<Config>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        let doc = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size) {
            Ok(Some(b)) => b,
            Ok(None) => Vec::new(),
            Err(status) => {
                log(
                    Level::Error,
                    &format!("dcr-guard: cannot read the plugin configuration ({status:?})"),
                );
                return false;
            }
        };
        match Config::from_json(&doc) {
            Ok(cfg) => {
                log(
                    Level::Info,
                    &format!(
                        "dcr-guard: configured profile={} path={} directories={} hold_headers={}",
                        cfg.profile.as_str(),
                        cfg.path,
                        cfg.directories.len(),
                        cfg.hold_headers
                    ),
                );
                self.config = Some(Rc::new(cfg));
                true
            }
            Err(e) => {
                log(Level::Error, &format!("dcr-guard: {e}"));
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            stream: Stream::new(self.config.clone()),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    stream: Stream,
}

/// The proxy-wasm host, for the current HTTP context.
struct WasmHost;

impl Host for WasmHost {
    fn now(&self) -> i64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }

    fn request_header(&self, name: &str) -> Option<String> {
        hostcalls::get_map_value(MapType::HttpRequestHeaders, name)
            .ok()
            .flatten()
    }

    fn request_body(&self, size: usize) -> Option<Vec<u8>> {
        hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size)
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
        let status = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten()
            .and_then(|s| s.trim().parse::<u16>().ok());
        let body = if body_size == 0 || body_size > max {
            Vec::new()
        } else {
            hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
                .ok()
                .flatten()
                .unwrap_or_default()
        };
        (status, body)
    }

    fn resume(&mut self) {
        if let Err(s) = hostcalls::resume_http_request() {
            log(Level::Warn, &format!("dcr-guard: resume failed ({s:?})"));
        }
    }

    fn respond(&mut self, status: u16, headers: &[(&str, &str)], body: &[u8]) {
        if let Err(s) =
            hostcalls::send_http_response(u32::from(status), headers.to_vec(), Some(body))
        {
            log(
                Level::Warn,
                &format!("dcr-guard: local reply failed ({s:?})"),
            );
        }
    }

    fn log(&self, level: Level, message: &str) {
        log(level, message);
    }

    fn count(&mut self, name: &str) {
        if let Some(id) = metric_id(name) {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }

    fn set_state(&mut self, key: &str, value: &str) {
        let _ = hostcalls::set_property(vec![key], Some(value.as_bytes()));
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
        let id = hostcalls::define_metric(MetricType::Counter, name).ok()?;
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
        self.stream
            .on_call_response(&mut WasmHost, token_id, body_size);
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        action(self.stream.on_request_headers(&mut WasmHost, end_of_stream))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        action(
            self.stream
                .on_request_body(&mut WasmHost, body_size, end_of_stream),
        )
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        action(self.stream.on_request_trailers(&mut WasmHost))
    }
}
