//! A proxy-wasm HTTP filter that traps on purpose, for tests/envoy_trap.rs: a request with the
//! header `x-trap` makes it panic (with `panic = "abort"`: a wasm `unreachable` trap, as any
//! panic in a filter would be). Every other request goes on, answered with `x-vm-requests`: how
//! many requests this VM instance has seen, so that a test can tell a fresh VM (after a reload)
//! from the old one. Never part of the release filter.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::cell::Cell;
use std::rc::Rc;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root { seen: Rc::new(Cell::new(0)) })
    });
}}

struct Root {
    /// Requests seen by this VM instance (VM memory: a reloaded VM starts again at 0).
    seen: Rc<Cell<u64>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            seen: Rc::clone(&self.seen),
            count: 0,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    seen: Rc<Cell<u64>>,
    count: u64,
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        if self.get_http_request_header("x-trap").is_some() {
            panic!("deliberate trap (x-trap)");
        }
        self.count = self.seen.get() + 1;
        self.seen.set(self.count);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        self.set_http_response_header("x-vm-requests", Some(&self.count.to_string()));
        Action::Continue
    }
}
