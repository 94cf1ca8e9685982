#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! `make image` (scripts/oci-image.py) for real: the OCI image layout is pushed with `skopeo` to a real
//! registry (Debian's `docker-registry`, started here on a free 127.0.0.1 port with its storage in a
//! temporary directory), pulled back BY DIGEST, and the `plugin.wasm` extracted from its single layer
//! must be byte-identical to the built .wasm. Also: the layout has the shape Istio's wasm fetcher reads
//! (one `application/vnd.oci.image.layer.v1.tar+gzip` layer holding only `plugin.wasm`, the compat
//! annotation), the printed digest is the manifest's (what WasmPlugin `sha256` pins), and the image is
//! reproducible (same .wasm → same digest, whatever the file's own timestamps; no name or time in the
//! gzip header).
//!
//! Needs `python3`, `tar`, `skopeo` and `docker-registry` (`make test` installs the last two with
//! apt-get when it can, `make deps-image`) and the built filter (DCR_GUARD_WASM). A missing tool FAILS
//! this test, naming it: the image is a release artefact and must not go out untested.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn wasm_path() -> PathBuf {
    std::env::var_os("DCR_GUARD_WASM").map_or_else(
        || crate_dir().join("target/wasm32-wasip1/release/dcr_guard.wasm"),
        PathBuf::from,
    )
}

fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Fails the test, loudly, when a tool is missing.
fn require(tool: &str, hint: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        found,
        "MISSING TOOL: `{tool}` is not installed, so the OCI image cannot be tested ({hint}). \
         `make deps-image` installs it (as root with apt-get)."
    );
}

/// Runs a command, failing with its output when it fails; returns stdout.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A scratch directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("dcr-guard-oci-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `scripts/oci-image.py` (what `make image` runs): the manifest digest it prints.
fn build_image(wasm: &Path, out: &Path, tag: &str) -> String {
    let stdout = run(Command::new("python3")
        .arg(crate_dir().join("scripts/oci-image.py"))
        .arg("--wasm")
        .arg(wasm)
        .arg("--out")
        .arg(out)
        .args(["--tag", tag]));
    let digest = stdout
        .lines()
        .find_map(|l| l.strip_prefix("digest "))
        .unwrap_or_else(|| panic!("no `digest` line in the script's output:\n{stdout}"));
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    digest.to_string()
}

fn json_file(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").unwrap();
    let data = std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap();
    assert_eq!(
        sha256_hex(&data),
        hex,
        "blob {digest} does not hash to its name"
    );
    data
}

/// The registry, stopped when dropped.
struct Registry {
    child: Child,
    port: u16,
}

impl Registry {
    fn start(dir: &TempDir) -> Registry {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        std::fs::create_dir_all(dir.path("storage")).unwrap();
        let config = dir.path("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: 127.0.0.1:{port}\n",
                dir.path("storage").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start docker-registry: {e}"));
        let mut reg = Registry { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if reg.v2_ok() {
                return reg;
            }
            if let Ok(Some(status)) = reg.child.try_wait() {
                panic!(
                    "docker-registry exited ({status}):\n{}",
                    std::fs::read_to_string(dir.path("registry.log")).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer on 127.0.0.1:{port}:\n{}",
                std::fs::read_to_string(dir.path("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `GET /v2/` answers 200: the registry API is up.
    fn v2_ok(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.write_all(b"GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut head = [0u8; 12];
        s.read_exact(&mut head).is_ok() && head.ends_with(b" 200")
    }

    fn repo(&self) -> String {
        format!("127.0.0.1:{}/dcr-guard", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn image_is_what_istio_reads_and_survives_a_registry_round_trip_byte_for_byte() {
    require("python3", "it writes the image");
    require("tar", "it extracts the pulled layer");
    require("skopeo", "Debian package skopeo");
    require("docker-registry", "Debian package docker-registry");
    let wasm_file = wasm_path();
    let wasm = std::fs::read(&wasm_file).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run `make build`, or set DCR_GUARD_WASM)",
            wasm_file.display()
        )
    });
    let tmp = TempDir::new("image");
    let tag = "0.0.0-test";

    // The layout, as Istio's fetcher reads it.
    let layout = tmp.path("layout");
    let digest = build_image(&wasm_file, &layout, tag);
    assert_eq!(
        json_file(&layout.join("oci-layout"))["imageLayoutVersion"],
        "1.0.0"
    );
    let index = json_file(&layout.join("index.json"));
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1, "{index}");
    assert_eq!(manifests[0]["digest"], digest.as_str(), "printed digest");
    assert_eq!(
        manifests[0]["annotations"]["org.opencontainers.image.ref.name"],
        tag
    );
    let manifest_bytes = blob(&layout, &digest);
    let manifest: Value = serde_json::from_slice(&manifest_bytes).unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        manifest["annotations"]["module.wasm.image/variant"],
        "compat"
    );
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "exactly one layer: {manifest}");
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let layer = blob(&layout, layers[0]["digest"].as_str().unwrap());
    assert_eq!(layers[0]["size"], layer.len());
    // gzip header (RFC 1952): no FNAME flag, MTIME 0.
    assert_eq!(&layer[..3], &[0x1f, 0x8b, 8], "gzip, deflate");
    assert_eq!(layer[3] & 0x08, 0, "no file name in the gzip header");
    assert_eq!(&layer[4..8], &[0, 0, 0, 0], "no time in the gzip header");
    let config = blob(&layout, manifest["config"]["digest"].as_str().unwrap());
    let config: Value = serde_json::from_slice(&config).unwrap();
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 1);
    // The tar entry: plugin.wasm only, owned by 0:0, time 0.
    let listing = run(Command::new("tar")
        .args(["--numeric-owner", "--full-time", "-tvzf"])
        .arg(
            layout
                .join("blobs/sha256")
                .join(&layers[0]["digest"].as_str().unwrap()[7..]),
        ));
    let entries: Vec<&str> = listing.lines().collect();
    assert_eq!(entries.len(), 1, "{listing}");
    assert!(
        entries[0].contains(" 0/0 ")
            && entries[0].contains("1970-01-01 00:00:00")
            && entries[0].ends_with(" plugin.wasm"),
        "{listing}"
    );

    // Reproducible: a copy of the .wasm with other timestamps gives the same digest.
    let copy = tmp.path("copy.wasm");
    std::fs::write(&copy, &wasm).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&copy)
        .unwrap()
        .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_234_567_890))
        .unwrap();
    assert_eq!(
        build_image(&copy, &tmp.path("layout2"), tag),
        digest,
        "same .wasm, same digest"
    );
    // ... and another .wasm another digest (the digest covers the code).
    let mut other = wasm.clone();
    other.extend_from_slice(&[0, 5, 4, b'n', b'o', b'p', b'e']); // a custom section "nope"
    std::fs::write(&copy, &other).unwrap();
    assert_ne!(build_image(&copy, &tmp.path("layout3"), tag), digest);

    // A real registry: push, read the manifest back, pull by digest, extract.
    let registry = Registry::start(&tmp);
    let repo = registry.repo();
    run(Command::new("skopeo").args([
        "copy",
        "--insecure-policy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &format!("oci:{}:{tag}", layout.display()),
        &format!("docker://{repo}:{tag}"),
    ]));
    let served = run(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{repo}:{tag}"),
    ]));
    assert_eq!(
        format!("sha256:{}", sha256_hex(served.as_bytes())),
        digest,
        "the registry serves the manifest whose digest `make image` printed (what WasmPlugin sha256 pins)"
    );
    let pulled = tmp.path("pulled");
    run(Command::new("skopeo").args([
        "copy",
        "--insecure-policy",
        "--src-tls-verify=false",
        &format!("docker://{repo}@{digest}"),
        &format!("dir:{}", pulled.display()),
    ]));
    let pulled_manifest = json_file(&pulled.join("manifest.json"));
    let pulled_layers = pulled_manifest["layers"].as_array().unwrap();
    assert_eq!(pulled_layers.len(), 1, "{pulled_manifest}");
    let layer_file = pulled.join(&pulled_layers[0]["digest"].as_str().unwrap()[7..]);
    let extracted = tmp.path("extracted");
    std::fs::create_dir_all(&extracted).unwrap();
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&layer_file)
        .arg("-C")
        .arg(&extracted));
    let names: Vec<String> = std::fs::read_dir(&extracted)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["plugin.wasm"]);
    let got = std::fs::read(extracted.join("plugin.wasm")).unwrap();
    assert!(
        got == wasm,
        "plugin.wasm pulled back ({} bytes, sha256 {}) differs from {} ({} bytes, sha256 {})",
        got.len(),
        sha256_hex(&got),
        wasm_file.display(),
        wasm.len(),
        sha256_hex(&wasm)
    );
    drop(registry);
}

/// The module `make build` ships fits a Kubernetes ConfigMap (1 MiB), the way the Istio kit's
/// ConfigMap variant takes it. (When `make build` ran without wasm-opt, it ships cargo's module,
/// which is larger: that build says so, and this test names the cause.)
#[test]
fn the_module_fits_a_configmap() {
    let wasm = wasm_path();
    let size = std::fs::metadata(&wasm).unwrap().len();
    let optimised = wasm.with_file_name("dcr_guard.opt.wasm");
    assert!(
        size < 1024 * 1024,
        "{} is {size} bytes, over the 1 MiB a ConfigMap holds{}",
        wasm.display(),
        if optimised.exists() {
            ""
        } else {
            " (wasm-opt did not run: install binaryen and `make build`)"
        }
    );
}
