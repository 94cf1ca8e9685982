#![allow(dead_code)]
//! Starts the demo authorization server (`envoy/as/server.mjs`: node `oidc-provider` with RFC 7591
//! registration and RFC 7592 management at `/register`) for a test, on free loopback ports.
//!
//! Its admin port answers `GET /_test/clients/{client_id}` with the client's stored metadata
//! (200) or 404, so that a test can tell whether the AS acted on a request ([`Oidc::client`]).
//! Its output has one line per registration API call (`POST /register 201`, ...) and a line
//! `outbound <url> refused ...` for any request the provider tried to make (it makes none).
//!
//! `$NODE` names the node binary (default `node` on the `PATH`).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::http;

/// How long `Oidc::start` waits for the server to answer.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Attempts when a port picked by `free_port` was taken in the meantime.
const START_ATTEMPTS: usize = 3;

/// The demo AS, stopped (SIGTERM, then SIGKILL) on drop.
pub struct Oidc {
    /// The provider (issuer `http://127.0.0.1:{port}` unless `--issuer` was given).
    pub port: u16,
    /// The admin/test endpoint.
    pub admin_port: u16,
    child: Child,
    output: Arc<Mutex<Vec<u8>>>,
}

/// `envoy/as` in this crate.
fn as_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("envoy/as")
}

fn node_binary() -> String {
    std::env::var("NODE")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "node".to_string())
}

/// Whether `envoy/as/node_modules` holds oidc-provider (for tests that want to skip).
pub fn installed() -> bool {
    as_dir().join("node_modules/oidc-provider").is_dir()
}

fn lock(m: &Mutex<Vec<u8>>) -> std::sync::MutexGuard<'_, Vec<u8>> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Copies `from` line by line into `into`.
fn collect(from: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) {
    thread::spawn(move || {
        let mut reader = BufReader::new(from);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
            lock(&into).extend_from_slice(&line);
            line.clear();
        }
    });
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

enum Launch {
    Ready(Oidc),
    /// A port was taken between `free_port` and the bind: try others.
    PortTaken(String),
}

impl Oidc {
    /// Starts the AS on free ports and waits until it answers. Panics with the server's output
    /// if it exits or does not come up within 15 s.
    pub fn start() -> Oidc {
        Oidc::start_with(&[])
    }

    /// Like `start`, with extra `server.mjs` arguments (e.g. `["--issuer", url]`,
    /// `["--scopes", "a b"]`).
    pub fn start_with(args: &[&str]) -> Oidc {
        if !installed() {
            panic!("the demo AS is not installed: run `make test` (it runs npm ci in envoy/as)");
        }
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            match Oidc::launch(args) {
                Launch::Ready(oidc) => return oidc,
                Launch::PortTaken(output) => last = output,
            }
        }
        panic!("the demo AS could not bind its ports after {START_ATTEMPTS} attempts:\n{last}");
    }

    fn launch(args: &[&str]) -> Launch {
        let port = http::free_port();
        let mut admin_port = http::free_port();
        while admin_port == port {
            admin_port = http::free_port();
        }
        let node = node_binary();
        let mut child = Command::new(&node)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .arg("envoy/as/server.mjs")
            .arg("--port")
            .arg(port.to_string())
            .arg("--admin-port")
            .arg(admin_port.to_string())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `{node}` (Node.js 20 or later is needed): {e}"));
        let output = Arc::new(Mutex::new(Vec::new()));
        if let Some(out) = child.stdout.take() {
            collect(out, Arc::clone(&output));
        }
        if let Some(err) = child.stderr.take() {
            collect(err, Arc::clone(&output));
        }
        let mut oidc = Oidc {
            port,
            admin_port,
            child,
            output,
        };

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = oidc.child.try_wait() {
                // Let the reader threads drain the pipes.
                thread::sleep(Duration::from_millis(100));
                let out = oidc.output();
                if out.contains("EADDRINUSE") {
                    return Launch::PortTaken(out);
                }
                panic!("the demo AS exited during start ({status}):\n{out}");
            }
            if oidc.ready() {
                return Launch::Ready(oidc);
            }
            if Instant::now() >= deadline {
                oidc.stop();
                panic!(
                    "the demo AS did not answer within {} s and was killed:\n{}",
                    START_TIMEOUT.as_secs(),
                    oidc.output()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Both ports answer: discovery on the provider, the client list on the admin port.
    fn ready(&self) -> bool {
        let ok = |port: u16, path: &str| {
            http::try_send(port, "GET", path, &[], b"")
                .map(|r| r.status == 200)
                .unwrap_or(false)
        };
        ok(self.port, "/.well-known/openid-configuration") && ok(self.admin_port, "/_test/clients")
    }

    /// `http://127.0.0.1:{port}`: the issuer unless `--issuer` was given.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The stored metadata of client `id`, `None` when the AS has no such client (never
    /// registered, or deleted). Panics if the admin endpoint does not answer 200 or 404.
    pub fn client(&self, id: &str) -> Option<Value> {
        let path = format!("/_test/clients/{}", encode_segment(id));
        let r = http::try_send(self.admin_port, "GET", &path, &[], b"").unwrap_or_else(|e| {
            panic!(
                "the demo AS admin endpoint did not answer ({e}):\n{}",
                self.output()
            )
        });
        match r.status {
            200 => Some(r.json()),
            404 => None,
            s => panic!(
                "the demo AS admin endpoint answered {s} for {path}: {}\n{}",
                r.text(),
                self.output()
            ),
        }
    }

    /// The ids of every client the AS holds.
    pub fn clients(&self) -> Vec<String> {
        let r = http::try_send(self.admin_port, "GET", "/_test/clients", &[], b"")
            .unwrap_or_else(|e| panic!("the demo AS admin endpoint did not answer ({e})"));
        r.json()
            .get("clients")
            .and_then(Value::as_array)
            .map(|ids| {
                ids.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Everything the server wrote to stdout and stderr so far.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&lock(&self.output)).into_owned()
    }

    /// Whether the server is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops the server: SIGTERM, then SIGKILL after 5 s.
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
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Oidc {
    fn drop(&mut self) {
        self.stop();
    }
}
