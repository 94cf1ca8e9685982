//! A real etcd cluster on loopback (Debian `etcd-server`, installed by `make deps-etcd`): three
//! members on free ports, each a child process that can be killed, paused and restarted; a
//! minimal gRPC client (HTTP/2 prior knowledge) to send etcd the messages the filter sends; and
//! `etcdctl` for what a test wants to read.

use std::fs;
use std::io;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::http::free_port;

/// The etcd binary: `ETCD` or the one on PATH.
pub fn etcd_bin() -> Option<PathBuf> {
    find("ETCD", "etcd")
}

fn etcdctl_bin() -> Option<PathBuf> {
    find("ETCDCTL", "etcdctl")
}

fn find(var: &str, name: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(var) {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// One member of the cluster.
pub struct Member {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    child: Option<Child>,
}

/// TLS on the members' client port, with client certificates required (etcd's client
/// authentication): PEM files.
#[derive(Clone, Debug)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    /// A client certificate and key etcdctl presents.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// A 3-member (or n-member) etcd cluster; stopped and removed on drop.
pub struct Cluster {
    pub members: Vec<Member>,
    dir: PathBuf,
    token: String,
    tls: Option<Tls>,
}

impl Cluster {
    /// Start `n` members and wait until the cluster has a leader and answers writes.
    pub fn start(n: usize) -> Cluster {
        Cluster::start_with(n, None)
    }

    /// [`Cluster::start`] with TLS and client-certificate authentication on the client port.
    pub fn start_tls(n: usize, tls: Tls) -> Cluster {
        Cluster::start_with(n, Some(tls))
    }

    fn start_with(n: usize, tls: Option<Tls>) -> Cluster {
        // Fail here, naming what is missing, rather than at the first spawn.
        etcd_bin().expect(
            "etcd not found: `make test` installs it (Debian: apt-get install etcd-server etcd-client), or set ETCD",
        );
        let dir = std::env::temp_dir().join(format!(
            "dcr-guard-etcd-{}-{}",
            std::process::id(),
            free_port()
        ));
        fs::create_dir_all(&dir).unwrap();
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                child: None,
            })
            .collect();
        let mut cluster = Cluster {
            members,
            token: format!("dcr-guard-{}", free_port()),
            dir,
            tls,
        };
        for i in 0..n {
            cluster.spawn(i, "new");
        }
        cluster.wait_ready(Duration::from_secs(30));
        cluster
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self, i: usize, state: &str) {
        let initial = self.initial_cluster();
        let dir = self.dir.clone();
        let token = self.token.clone();
        let tls = self.tls.clone();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let m = &mut self.members[i];
        let data = dir.join(&m.name);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("{}.log", m.name)))
            .unwrap();
        let mut cmd = Command::new(etcd_bin().unwrap());
        if let Some(t) = &tls {
            cmd.arg("--cert-file")
                .arg(&t.cert)
                .arg("--key-file")
                .arg(&t.key)
                .arg("--trusted-ca-file")
                .arg(&t.ca)
                .arg("--client-cert-auth");
        }
        let child = cmd
            .args([
                "--name",
                &m.name,
                "--data-dir",
                data.to_str().unwrap(),
                "--listen-client-urls",
                &format!("{scheme}://127.0.0.1:{}", m.client_port),
                "--advertise-client-urls",
                &format!("{scheme}://127.0.0.1:{}", m.client_port),
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{}", m.peer_port),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{}", m.peer_port),
                "--initial-cluster",
                &initial,
                "--initial-cluster-token",
                &token,
                "--initial-cluster-state",
                state,
                "--heartbeat-interval",
                "50",
                "--election-timeout",
                "500",
                "--logger",
                "zap",
                "--log-outputs",
                "stderr",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start etcd");
        m.child = Some(child);
    }

    /// Client endpoints, comma-separated, for etcdctl.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                let scheme = if self.tls.is_some() { "https" } else { "http" };
                format!("{scheme}://127.0.0.1:{}", m.client_port)
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Wait until a write through etcdctl succeeds (a leader exists and a quorum answers).
    pub fn wait_ready(&self, limit: Duration) {
        let start = Instant::now();
        loop {
            if self.etcdctl(&["put", "/dcr-guard-test/ready", "1"]).is_ok() {
                return;
            }
            if start.elapsed() > limit {
                panic!(
                    "etcd cluster not ready after {limit:?}; logs in {}",
                    self.dir.display()
                );
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stop member `i` (SIGKILL: a crash, not a graceful leave).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start member `i` again on its data directory and ports.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i, "existing");
    }

    /// Freeze member `i` (SIGSTOP): it holds connections but answers nothing.
    pub fn pause(&self, i: usize) {
        signal(&self.members[i], "-STOP");
    }

    pub fn resume(&self, i: usize) {
        signal(&self.members[i], "-CONT");
    }

    /// Run etcdctl (API v3) against every member; stdout on success.
    pub fn etcdctl(&self, args: &[&str]) -> io::Result<String> {
        let mut cmd = Command::new(
            etcdctl_bin()
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "etcdctl not found"))?,
        );
        if let Some(t) = &self.tls {
            cmd.arg("--cacert")
                .arg(&t.ca)
                .arg("--cert")
                .arg(&t.client_cert)
                .arg("--key")
                .arg(&t.client_key);
        }
        let out = cmd
            .env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(self.endpoints())
            .args(["--command-timeout", "3s", "--dial-timeout", "2s"])
            .args(args)
            .stdin(Stdio::null())
            .output()?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(io::Error::other(
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ))
        }
    }

    /// How many keys start with `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        let out = self
            .etcdctl(&["get", prefix, "--prefix", "--keys-only", "-w", "json"])
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["count"].as_u64().unwrap_or(0) as usize
    }

    /// Every key under `prefix`, with its value and lease (hex, as etcdctl prints it).
    pub fn keys(&self, prefix: &str) -> Vec<(String, String, i64)> {
        let out = self
            .etcdctl(&["get", prefix, "--prefix", "-w", "json"])
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let b64 = |s: &serde_json::Value| {
            use base64::Engine as _;
            String::from_utf8_lossy(
                &base64::engine::general_purpose::STANDARD
                    .decode(s.as_str().unwrap_or_default())
                    .unwrap_or_default(),
            )
            .into_owned()
        };
        v["kvs"]
            .as_array()
            .map(|kvs| {
                kvs.iter()
                    .map(|kv| {
                        (
                            b64(&kv["key"]),
                            b64(&kv["value"]),
                            kv["lease"].as_i64().unwrap_or(0),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The members' process ids (running members only).
    pub fn pids(&self) -> Vec<u32> {
        self.members
            .iter()
            .filter_map(|m| m.child.as_ref().map(Child::id))
            .collect()
    }

    /// Where the members' logs are.
    pub fn log_dir(&self) -> &std::path::Path {
        &self.dir
    }
}

fn signal(m: &Member, sig: &str) {
    if let Some(c) = &m.child {
        let _ = Command::new("kill")
            .args([sig, &c.id().to_string()])
            .status();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.resume(i);
            self.kill(i);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// One gRPC call's answer: the `grpc-status` (None when the call failed below gRPC), its
/// message, and the response message (unframed).
#[derive(Debug)]
pub struct GrpcAnswer {
    pub status: Option<u32>,
    pub message: String,
    pub body: Vec<u8>,
}

/// Send one unary gRPC call to 127.0.0.1:`port` over HTTP/2 prior knowledge (etcd's client port
/// speaks both HTTP/1 and h2c).
pub fn grpc_call(port: u16, service: &str, method: &str, message: &[u8]) -> GrpcAnswer {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        match tokio::time::timeout(Duration::from_secs(5), call(port, service, method, message))
            .await
        {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => GrpcAnswer {
                status: None,
                message: e.to_string(),
                body: vec![],
            },
            Err(_) => GrpcAnswer {
                status: None,
                message: "timed out".into(),
                body: vec![],
            },
        }
    })
}

async fn call(port: u16, service: &str, method: &str, message: &[u8]) -> io::Result<GrpcAnswer> {
    let err = |e: ::h2::Error| io::Error::other(e.to_string());
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let (sender, conn) = ::h2::client::handshake(tcp).await.map_err(err)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut sender = sender.ready().await.map_err(err)?;
    let req = http::Request::builder()
        .method("POST")
        .uri(format!("http://127.0.0.1:{port}/{service}/{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .map_err(io::Error::other)?;
    let (resp, mut stream) = sender.send_request(req, false).map_err(err)?;
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    stream.send_data(Bytes::from(framed), true).map_err(err)?;
    let resp = resp.await.map_err(err)?;
    let header = |h: &http::HeaderMap, n: &str| {
        h.get(n)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.to_string())
    };
    // A trailers-only answer carries the status in the headers.
    let mut status = header(resp.headers(), "grpc-status");
    let mut msg = header(resp.headers(), "grpc-message");
    let mut body = resp.into_body();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(err)?;
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    if let Some(trailers) = body.trailers().await.map_err(err)? {
        status = status.or(header(&trailers, "grpc-status"));
        msg = msg.or(header(&trailers, "grpc-message"));
    }
    Ok(GrpcAnswer {
        status: status.and_then(|s| s.parse().ok()),
        message: msg.unwrap_or_default(),
        body: data.get(5..).unwrap_or_default().to_vec(),
    })
}

/// An Envoy cluster `name` reaching every member's client port over HTTP/2 (what the filter's
/// gRPC callouts need), with the active health check and outlier detection the README
/// recommends: a member that is down leaves the rotation within a second instead of failing
/// one registration in three.
pub fn envoy_cluster(name: &str, cluster: &Cluster) -> serde_json::Value {
    let endpoints: Vec<serde_json::Value> = cluster
        .members
        .iter()
        .map(|m| {
            serde_json::json!({"endpoint": {"address": {"socket_address": {
                "address": "127.0.0.1", "port_value": m.client_port}}}})
        })
        .collect();
    serde_json::json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "0.25s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}
            }
        },
        "health_checks": [{
            "timeout": "0.25s",
            "interval": "0.5s",
            "no_traffic_interval": "0.5s",
            "unhealthy_threshold": 1,
            "healthy_threshold": 1,
            "tcp_health_check": {}
        }],
        "outlier_detection": {
            "consecutive_local_origin_failure": 1,
            "split_external_local_origin_errors": true,
            "base_ejection_time": "1s",
            "interval": "0.5s"
        },
        "common_lb_config": {"healthy_panic_threshold": {"value": 0}},
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": endpoints}]}
    })
}
