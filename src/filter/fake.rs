//! A fake [`Host`] for driving the stream state machine natively: the unit tests in `tests.rs` and,
//! with the `fuzzing` feature, the coverage-guided `pipeline` fuzz target (`fuzz/`). It records
//! what the filter did (callouts, local replies, resumes, counters, filter state) and answers from
//! its fields. Not part of the filter.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::type_complexity
)]

use std::collections::HashMap;

use serde_json::Value;

use super::{Callouts, Level, Properties, RequestIo, SharedStore, Telemetry};
use dcr_guard_core::keys::JwksSource;
use dcr_guard_core::shared::{MemoryStore, SharedData};

/// Unix time, seconds (the fake's clock when it is not frozen).
fn wall_clock() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[derive(Default)]
pub struct Fake {
    pub headers: HashMap<String, String>,
    /// Header names the request carries a second time (the map above holds one value each).
    pub repeated: Vec<String>,
    pub body: Vec<u8>,
    /// url → (status, body); a missing url makes dispatch fail.
    pub keystore: HashMap<String, (Option<u16>, Vec<u8>)>,
    pub dispatched: Vec<(u32, JwksSource)>,
    pub current: Option<(Option<u16>, Vec<u8>)>,
    pub resumed: usize,
    pub responses: Vec<(u16, Vec<(String, String)>, Value)>,
    pub logs: std::cell::RefCell<Vec<String>>,
    pub counters: HashMap<String, u64>,
    /// Values recorded per histogram.
    pub histograms: HashMap<String, Vec<u64>>,
    /// Gauges' last values.
    pub gauges: HashMap<String, u64>,
    /// Introspection calls made.
    pub calls: Vec<(u32, dcr_guard_core::binding::Callout)>,
    /// Participant status fetches made (answered from `keystore` by URL).
    pub status_calls: Vec<(u32, dcr_guard_core::status::StatusSource)>,
    /// Seconds added to the real clock (time travel).
    pub clock: i64,
    /// A stopped clock (unix seconds), when set.
    pub frozen: Option<i64>,
    /// Shared-data reads, by key.
    pub shared_reads: std::cell::RefCell<HashMap<String, usize>>,
    /// Shared data (the core's in-memory store, Envoy semantics), shared between fakes of several
    /// "workers" through the Rc.
    pub shared: std::rc::Rc<std::cell::RefCell<MemoryStore>>,
    pub state: HashMap<String, String>,
    pub next_token: u32,
    /// gRPC call tokens are numbered apart from HTTP callouts' (as Envoy does: both start at 1).
    pub next_grpc_token: u32,
    /// gRPC calls made: (token, target, service, method, message).
    pub grpc_calls: Vec<(u32, String, String, String, Vec<u8>)>,
    /// Make gRPC dispatch fail with this reason.
    pub grpc_refused: Option<String>,
    /// What `request.total_size` says (`None`: the host does not say).
    pub request_bytes: Option<u64>,
    /// The gRPC answer being delivered: (status message, response).
    pub grpc_current: Option<(String, Vec<u8>)>,
    /// The host has shared queues (Envoy does): `register_queue` answers [`FAKE_QUEUE`].
    pub queues: bool,
    /// Make enqueueing fail.
    pub enqueue_refused: bool,
    /// Wake-ups enqueued and not yet drained.
    pub wakes: u32,
    /// The effective context, as last set.
    pub effective: u32,
    /// (context effective at dispatch, method) of every gRPC call.
    pub grpc_from: Vec<(u32, String)>,
}

/// The queue id the fake host hands out.
pub const FAKE_QUEUE: u32 = 77;

impl RequestIo for Fake {
    fn request_header(&self, name: &str) -> Option<String> {
        self.headers.get(name).cloned()
    }

    fn repeated_request_header(&self, names: &[&str]) -> Option<String> {
        names
            .iter()
            .find(|n| self.repeated.iter().any(|r| r == *n))
            .map(|n| n.to_string())
    }

    fn request_body(&self, size: usize) -> Option<Vec<u8>> {
        Some(self.body.iter().take(size).copied().collect())
    }

    fn set_request_header(&mut self, name: &str, value: Option<&str>) {
        match value {
            Some(v) => {
                self.headers.insert(name.to_string(), v.to_string());
            }
            None => {
                self.headers.remove(name);
            }
        }
    }

    fn replace_request_body(&mut self, body: &[u8]) {
        self.body = body.to_vec();
    }

    fn resume(&mut self) {
        self.resumed += 1;
    }

    fn respond(&mut self, status: u16, headers: &[(&str, &str)], body: &[u8]) {
        self.responses.push((
            status,
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            if body.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(body).unwrap()
            },
        ));
    }
}

impl Callouts for Fake {
    fn dispatch_get(&mut self, src: &JwksSource, _timeout_ms: u64) -> Result<u32, String> {
        if !self.keystore.contains_key(&src.url) {
            return Err("BadArgument".into());
        }
        self.next_token += 1;
        self.dispatched.push((self.next_token, src.clone()));
        Ok(self.next_token)
    }

    fn dispatch_status(
        &mut self,
        src: &dcr_guard_core::status::StatusSource,
        _timeout_ms: u64,
    ) -> Result<u32, String> {
        if !self.keystore.contains_key(&src.url) {
            return Err("BadArgument".into());
        }
        self.next_token += 1;
        self.status_calls.push((self.next_token, src.clone()));
        Ok(self.next_token)
    }

    fn dispatch(
        &mut self,
        call: &dcr_guard_core::binding::Callout,
        _timeout_ms: u64,
    ) -> Result<u32, String> {
        self.next_token += 1;
        self.calls.push((self.next_token, call.clone()));
        Ok(self.next_token)
    }

    fn call_response(&self, body_size: usize, max: usize) -> (Option<u16>, Vec<u8>) {
        let (s, b) = self.current.clone().unwrap();
        assert_eq!(b.len(), body_size);
        (s, if body_size > max { vec![] } else { b })
    }

    fn call_response_header(&self, _name: &str) -> Option<String> {
        None
    }

    fn dispatch_grpc(
        &mut self,
        target: &str,
        service: &str,
        method: &str,
        message: &[u8],
        _timeout_ms: u64,
    ) -> Result<u32, String> {
        if let Some(why) = &self.grpc_refused {
            return Err(why.clone());
        }
        self.next_grpc_token += 1;
        self.grpc_from.push((self.effective, method.to_string()));
        self.grpc_calls.push((
            self.next_grpc_token,
            target.to_string(),
            service.to_string(),
            method.to_string(),
            message.to_vec(),
        ));
        Ok(self.next_grpc_token)
    }

    fn grpc_response(&self, size: usize, max: usize) -> (String, Vec<u8>) {
        let (m, b) = self.grpc_current.clone().unwrap_or_default();
        assert_eq!(b.len(), size);
        (m, if size > max { vec![] } else { b })
    }

    fn register_queue(&mut self, name: &str) -> Option<u32> {
        assert!(name.starts_with("dcr_guard.fleet."), "{name}");
        self.queues.then_some(FAKE_QUEUE)
    }

    fn enqueue(&mut self, queue: u32) -> bool {
        assert_eq!(queue, FAKE_QUEUE);
        if self.enqueue_refused {
            return false;
        }
        self.wakes += 1;
        true
    }

    fn drain_queue(&mut self, queue: u32) {
        assert_eq!(queue, FAKE_QUEUE);
        self.wakes = 0;
    }

    fn set_effective_context(&mut self, ctx: u32) -> bool {
        self.effective = ctx;
        true
    }
}

impl SharedStore for Fake {
    fn shared_get(
        &self,
        key: &str,
    ) -> Result<(Option<Vec<u8>>, Option<u32>), dcr_guard_core::replay::StoreError> {
        *self
            .shared_reads
            .borrow_mut()
            .entry(key.to_string())
            .or_default() += 1;
        self.shared.borrow().get(key)
    }

    fn shared_set(
        &mut self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<(), dcr_guard_core::replay::StoreError> {
        self.shared.borrow_mut().set(key, value, cas)
    }
}

impl Telemetry for Fake {
    fn log(&self, _level: Level, message: &str) {
        self.logs.borrow_mut().push(message.to_string());
    }

    fn observe(&mut self, name: &str, value: u64) {
        assert!(
            dcr_guard_core::metrics::HISTOGRAMS.contains(&name),
            "histogram `{name}` is not in dcr_guard_core::metrics::HISTOGRAMS"
        );
        self.histograms
            .entry(name.to_string())
            .or_default()
            .push(value);
    }

    fn gauge(&mut self, name: &str, value: u64) {
        assert!(
            dcr_guard_core::metrics::is_gauge(name),
            "gauge `{name}` is not in dcr_guard_core::metrics::gauges()"
        );
        self.gauges.insert(name.to_string(), value);
    }

    fn count(&mut self, name: &str) {
        // Every counter the filter touches is one the plugin defines when it is configured.
        thread_local! {
            static KNOWN: std::collections::HashSet<String> =
                dcr_guard_core::metrics::all().into_iter().collect();
        }
        assert!(
            KNOWN.with(|k| k.contains(name)),
            "counter `{name}` is not in dcr_guard_core::metrics::all()"
        );
        *self.counters.entry(name.to_string()).or_default() += 1;
    }
}

impl Properties for Fake {
    fn now(&self) -> i64 {
        self.frozen.unwrap_or_else(wall_clock) + self.clock
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.now()).unwrap_or(0) * 1000
    }

    fn client_cert(
        &self,
        _source: dcr_guard_core::config::CertSource,
    ) -> Result<Option<dcr_guard_core::cert::ClientCert>, String> {
        match self.headers.get("test-client-subject") {
            None => Ok(None),
            Some(subject) => {
                dcr_guard_core::cert::ClientCert::from_envoy(subject, None, None).map(Some)
            }
        }
    }

    fn set_state(&mut self, key: &str, value: &str) {
        self.state.insert(key.to_string(), value.to_string());
    }

    fn request_bytes(&self) -> Option<u64> {
        self.request_bytes
    }
}
