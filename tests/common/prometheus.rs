//! A real Prometheus (Debian package `prometheus`; `$PROMETHEUS` overrides the binary) on a free
//! loopback port with its own storage in a temp dir, queried over its HTTP API. `promtool` (same
//! package; `$PROMTOOL`) for rule files.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::http;

fn tool(env: &str, name: &str) -> PathBuf {
    let p = std::env::var_os(env)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(name));
    let found = Command::new(&p)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "`{}` not found: run `make test` (it installs the Debian package prometheus) or set {env}",
        p.display()
    );
    p
}

/// Runs `promtool args…` in `dir`; returns its output (not checked).
pub fn promtool(dir: &Path, args: &[&str]) -> Output {
    Command::new(tool("PROMTOOL", "promtool"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run promtool: {e}"))
}

/// A running Prometheus; stopped and its storage removed on drop.
pub struct Prometheus {
    pub port: u16,
    child: Child,
    dir: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus with the configuration `config` (YAML text) and waits until it is ready.
    pub fn start(config: &str) -> Prometheus {
        let bin = tool("PROMETHEUS", "prometheus");
        let dir = std::env::temp_dir().join(format!(
            "dcr-guard-prometheus-{}-{}",
            std::process::id(),
            http::free_port()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("data")).unwrap();
        let config_path = dir.join("prometheus.yml");
        fs::write(&config_path, config).unwrap();
        let port = http::free_port();
        let log = fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start prometheus: {e}"));
        let mut p = Prometheus { port, child, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if http::port_open(port) && http::get(port, "/-/ready").status == 200 {
                return p;
            }
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("prometheus exited ({status}):\n{}", p.log());
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready:\n{}",
                p.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// GET `path` on the HTTP API; the `data` of a `"status": "success"` answer, or the error.
    pub fn api(&self, path: &str) -> Result<Value, String> {
        let r = http::get(self.port, path);
        let v: Value = serde_json::from_slice(&r.body)
            .map_err(|e| format!("{path}: HTTP {} not JSON ({e}): {}", r.status, r.text()))?;
        if v["status"] == "success" {
            Ok(v["data"].clone())
        } else {
            Err(format!("{path}: HTTP {}: {v}", r.status))
        }
    }

    /// An instant query: the result vector, or the error of the query.
    pub fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let q: String = url::form_urlencoded::byte_serialize(expr.as_bytes()).collect();
        let data = self.api(&format!("/api/v1/query?query={q}"))?;
        match data["resultType"].as_str() {
            Some("vector") => Ok(data["result"].as_array().cloned().unwrap_or_default()),
            Some("scalar") => Ok(vec![data["result"].clone()]),
            other => Err(format!("{expr}: unexpected result type {other:?}")),
        }
    }

    /// The value of the single series `expr` returns, once it returns exactly one.
    pub fn value(&self, expr: &str) -> Option<f64> {
        match self.query(expr) {
            Ok(v) if v.len() == 1 => v[0]["value"][1].as_str().and_then(|s| s.parse().ok()),
            _ => None,
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::env::var_os("KEEP_PROMETHEUS_TMP").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}
