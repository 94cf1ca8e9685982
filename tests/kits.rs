#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! The deployment kits under envoy/ cannot drift from the code:
//!
//! - every Envoy config shipped (demo, production, ext-authz, compose, and the Istio EnvoyFilter's
//!   filter entry put into a bootstrap) passes `envoy --mode validate`, which also loads the filter
//!   and runs its configure step on the embedded configuration;
//! - the Istio, Kong and docker-compose files parse and have the expected structure (these are
//!   parsed, not exercised in CI: there is no Kubernetes, Kong or Docker here);
//! - every filter configuration embedded in a kit is accepted by `Config::from_json` and by
//!   envoy/kong/dcr-guard.schema.json and Kong's config_schema, both checked by a JSON-Schema
//!   validator (the `jsonschema` crate), which refuses a kit with a wrong type or an unknown field;
//! - the schema covers what the filter reads (kitchen-sink configurations use every schema path) and
//!   its enums are the filter's. The schema files themselves are generated from the configuration
//!   types (`make schema`); cli/src/schema.rs checks the committed ones are what the types give.
//!
//! Needs the built filter and Envoy (`make test` provides both; or set DCR_GUARD_WASM and ENVOY), and
//! the `openssl` CLI for the throwaway certificates production.yaml's TLS contexts load.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use dcr_guard_core::config::Config;
use serde_json::{json, Value};

const WASM_FILTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const SCHEMA: &str = "envoy/kong/dcr-guard.schema.json";

// ---------------------------------------------------------------------------------------------
// files

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let p = crate_dir().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// A scratch directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("dcr-guard-kits-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        TempDir(p)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }

    fn write(&self, file: &str, text: &str) -> PathBuf {
        let p = self.path(file);
        std::fs::write(&p, text).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The single YAML document of a kit file, as JSON.
fn yaml_file(rel: &str) -> Value {
    common::yaml::file(rel)
}

fn str_at<'a>(v: &'a Value, pointer: &str, what: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{what}: no string at {pointer}"))
}

// ---------------------------------------------------------------------------------------------
// Envoy configs

/// Every wasm HTTP filter entry (`typed_config` of type Wasm) anywhere in an Envoy config.
fn wasm_filters(v: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    fn walk<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
        match v {
            Value::Object(m) => {
                if m.get("@type").and_then(Value::as_str) == Some(WASM_FILTER_TYPE) {
                    out.push(v);
                }
                m.values().for_each(|c| walk(c, out));
            }
            Value::Array(a) => a.iter().for_each(|c| walk(c, out)),
            _ => {}
        }
    }
    walk(v, &mut out);
    out
}

/// The dcr-guard configuration document of a wasm filter entry.
fn filter_document(wasm: &Value, what: &str) -> Value {
    assert_eq!(
        str_at(wasm, "/config/configuration/@type", what),
        "type.googleapis.com/google.protobuf.StringValue",
        "{what}: the configuration must be a StringValue"
    );
    let text = str_at(wasm, "/config/configuration/value", what);
    serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("{what}: the filter configuration is not JSON: {e}"))
}

/// Names of the clusters a filter configuration sends callouts to.
fn upstreams(cfg: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    fn walk(v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(m) => {
                if let Some(u) = m.get("upstream").and_then(Value::as_str) {
                    out.insert(u.to_string());
                }
                m.values().for_each(|c| walk(c, out));
            }
            Value::Array(a) => a.iter().for_each(|c| walk(c, out)),
            _ => {}
        }
    }
    walk(cfg, &mut out);
    out
}

fn cluster_names(envoy: &Value) -> BTreeSet<String> {
    envoy
        .pointer("/static_resources/clusters")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Checks the dcr-guard entries of an Envoy config: each configuration parses, every `upstream` is
/// a cluster of the same file, and held headers come with `allow_on_headers_stop_iteration`.
/// Returns the configuration documents.
fn check_envoy_kit(rel: &str) -> Vec<Value> {
    let envoy = yaml_file(rel);
    let filters = wasm_filters(&envoy);
    assert_eq!(
        filters.len(),
        1,
        "{rel}: expected one dcr-guard wasm filter"
    );
    let clusters = cluster_names(&envoy);
    filters
        .into_iter()
        .map(|w| {
            let cfg = filter_document(w, rel);
            for u in upstreams(&cfg) {
                assert!(
                    clusters.contains(&u),
                    "{rel}: upstream `{u}` is not a cluster of the file ({clusters:?})"
                );
            }
            check_hold_headers(w, &cfg, rel);
            cfg
        })
        .collect()
}

fn check_hold_headers(wasm: &Value, cfg: &Value, what: &str) {
    let hold = cfg["hold_headers"].as_bool().unwrap_or(true);
    let allow = wasm["config"]["allow_on_headers_stop_iteration"]
        .as_bool()
        .unwrap_or(false);
    assert!(
        !hold || allow,
        "{what}: hold_headers needs allow_on_headers_stop_iteration: true on the wasm filter"
    );
    // Fail closed after a trap and recover by a fresh VM (tests/envoy_trap.rs): FAIL_RELOAD.
    assert_eq!(
        wasm["config"]["failure_policy"], "FAIL_RELOAD",
        "{what}: the filter must fail closed and be reloaded after a trap"
    );
}

fn validate_ok(path: &Path, what: &str) {
    let (ok, out) = common::envoy::validate(path);
    assert!(ok, "{what} does not pass `envoy --mode validate`:\n{out}");
}

/// Throwaway self-signed certificate and key (PEM) made with the openssl CLI.
fn throwaway_cert(dir: &TempDir) -> (PathBuf, PathBuf) {
    let (crt, key) = (dir.path("throwaway.crt"), dir.path("throwaway.key"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=dcr-guard kits test",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run the `openssl` CLI ({e}): this test generates throwaway certificates \
                 with it for envoy/production.yaml; install it (Debian: apt-get install openssl)"
            )
        });
    assert!(
        out.status.success(),
        "openssl req failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (crt, key)
}

#[test]
fn demo_config_validates() {
    let wasm = common::envoy::wasm_path();
    let text = read("envoy/demo.yaml").replace(
        "target/wasm32-wasip1/release/dcr_guard.wasm",
        &wasm.display().to_string(),
    );
    // The demo PKI `make run` makes in .run/demo/pki, made here in a temp dir.
    let pki = common::tls::Pki::new();
    let server = pki.server(&["localhost"]);
    let text = text
        .replace(
            ".run/demo/pki/server.pem",
            &server.cert.display().to_string(),
        )
        .replace(
            ".run/demo/pki/server-key.pem",
            &server.key.display().to_string(),
        )
        .replace(".run/demo/pki/ca.pem", &pki.ca_path().display().to_string());
    assert!(
        !text.contains("filename: .run/demo/pki"),
        "a demo PKI path the test does not know"
    );
    let tmp = TempDir::new("demo");
    validate_ok(&tmp.write("demo.yaml", &text), "envoy/demo.yaml");
    check_envoy_kit("envoy/demo.yaml");
}

/// `envoy --mode validate` on a production-style kit (`envoy/production.yaml`, `envoy/ext-authz.yaml`)
/// after pointing its /etc/dcr-guard/ files at throwaway ones: every CA bundle and the server
/// certificate are the one throwaway certificate.
fn validate_production_style(rel: &str, name: &str) {
    let tmp = TempDir::new(name);
    let (crt, key) = throwaway_cert(&tmp);
    for name in [
        "ob-issuing-ca.pem",
        "as-ca.pem",
        "authz-ca.pem",
        "server.crt",
    ] {
        std::fs::copy(&crt, tmp.path(name)).unwrap();
    }
    std::fs::copy(&key, tmp.path("server.key")).unwrap();

    let original = read(rel);
    assert!(original.contains("filename: /etc/dcr-guard/dcr_guard.wasm"));
    let mut text = original
        .replace(
            "/etc/dcr-guard/dcr_guard.wasm",
            &common::envoy::wasm_path().display().to_string(),
        )
        .replace("/etc/dcr-guard/", &format!("{}/", tmp.0.display()));
    let system_roots = "/etc/ssl/certs/ca-certificates.crt";
    if !Path::new(system_roots).exists() {
        text = text.replace(system_roots, &crt.display().to_string());
    }
    assert!(!text.contains("/etc/dcr-guard/"));
    validate_ok(&tmp.write("envoy.yaml", &text), rel);
}

/// Every cluster of a production-style kit speaks TLS with SNI, a CA and a SAN match.
fn check_tls_clusters(envoy: &Value, rel: &str) {
    for c in envoy["static_resources"]["clusters"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let t = &c["transport_socket"]["typed_config"];
        assert!(t["sni"].is_string(), "{rel}: cluster {name}: no SNI");
        let vc = &t["common_tls_context"]["validation_context"];
        assert!(
            vc["trusted_ca"]["filename"].is_string(),
            "{rel}: {name}: no CA"
        );
        assert_eq!(
            vc["match_typed_subject_alt_names"][0]["matcher"]["exact"], t["sni"],
            "{rel}: cluster {name}: the SAN match must name the SNI host"
        );
    }
}

#[test]
fn production_config_validates() {
    validate_production_style("envoy/production.yaml", "production");

    // The security-relevant settings the kit promises.
    let envoy = yaml_file("envoy/production.yaml");
    let listener = &envoy["static_resources"]["listeners"][0];
    assert_eq!(listener["per_connection_buffer_limit_bytes"], 1048576);
    let chain = &listener["filter_chains"][0];
    let tls = &chain["transport_socket"]["typed_config"];
    assert_eq!(tls["require_client_certificate"], true);
    assert_eq!(
        tls["common_tls_context"]["validation_context"]["trusted_ca"]["filename"],
        "/etc/dcr-guard/ob-issuing-ca.pem"
    );
    let hcm = &chain["filters"][0]["typed_config"];
    assert_eq!(hcm["normalize_path"], true);
    assert_eq!(hcm["merge_slashes"], true);
    assert_eq!(hcm["path_with_escaped_slashes_action"], "REJECT_REQUEST");
    assert_eq!(hcm["forward_client_cert_details"], "SANITIZE");
    // Every Envoy kit normalises paths and does not keep `%2F` as sent (spec §1).
    for kit in [
        "envoy/production.yaml",
        "envoy/demo.yaml",
        "envoy/compose-envoy.yaml",
        EXT_AUTHZ_KIT,
    ] {
        let envoy = yaml_file(kit);
        for listener in envoy["static_resources"]["listeners"].as_array().unwrap() {
            for chain in listener["filter_chains"].as_array().unwrap() {
                let hcm = &chain["filters"][0]["typed_config"];
                assert_eq!(hcm["normalize_path"], true, "{kit}");
                assert_eq!(hcm["merge_slashes"], true, "{kit}");
                let action = hcm["path_with_escaped_slashes_action"].as_str();
                assert!(
                    matches!(action, Some("REJECT_REQUEST" | "UNESCAPE_AND_REDIRECT")),
                    "{kit}: path_with_escaped_slashes_action {action:?}"
                );
            }
        }
    }
    let istio = std::fs::read_to_string("envoy/istio/envoyfilter.yaml").unwrap();
    assert!(istio.contains("DECODE_AND_MERGE_SLASHES"));
    let cfgs = check_envoy_kit("envoy/production.yaml");
    assert_eq!(cfgs[0]["hold_headers"], true);
    // Every callout cluster speaks TLS with SNI, a CA and a SAN match.
    check_tls_clusters(&envoy, "envoy/production.yaml");
}

const EXT_AUTHZ_KIT: &str = "envoy/ext-authz.yaml";

/// envoy/ext-authz.yaml (dcr-guard, then the bank's checks through ext_authz) passes `envoy --mode
/// validate`, keeps the settings that make it safe, and is envoy/production.yaml plus its
/// additions: the listener, the filter entry and the filter configuration do not drift from it.
/// (tests/envoy_ext_authz.rs runs its ext_authz entry, routes and local reply.)
#[test]
fn ext_authz_config_validates() {
    validate_production_style(EXT_AUTHZ_KIT, "ext-authz");
    let kit = yaml_file(EXT_AUTHZ_KIT);
    check_tls_clusters(&kit, EXT_AUTHZ_KIT);
    let cfgs = check_envoy_kit(EXT_AUTHZ_KIT);
    let hcm_of = |v: &Value| {
        v["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
            .clone()
    };
    let hcm = hcm_of(&kit);
    let filters = hcm["http_filters"].as_array().unwrap();
    let authz = &filters[1]["typed_config"];
    assert_eq!(filters[1]["name"], "envoy.filters.http.ext_authz");
    // Fail closed, the whole body, only dcr-guard's facts (and the body's type) to the authorizer.
    assert_eq!(authz["failure_mode_allow"], false);
    assert_eq!(authz["with_request_body"]["allow_partial_message"], false);
    let max_body = authz["with_request_body"]["max_request_bytes"]
        .as_u64()
        .unwrap();
    let limit = cfgs[0]["limits"]["body_bytes"].as_u64().unwrap();
    assert!(
        max_body >= limit,
        "max_request_bytes {max_body} < body_bytes {limit}"
    );
    let mut allowed: Vec<&str> = authz["allowed_headers"]["patterns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["exact"].as_str().expect("exact header names only"))
        .collect();
    allowed.retain(|h| *h != "content-type");
    let facts: Vec<&str> = cfgs[0]["fact_headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["header"].as_str().unwrap())
        .collect();
    assert_eq!(
        allowed, facts,
        "the authorizer gets exactly the verified-fact headers"
    );
    assert_eq!(
        cfgs[0]["forward"], "json",
        "the authorizer sees the verified body"
    );
    assert!(
        authz["http_service"]["authorization_response"]
            .get("allowed_upstream_headers")
            .is_none(),
        "nothing of the authorizer's answer goes to the AS"
    );

    // The rest is envoy/production.yaml.
    let prod = yaml_file("envoy/production.yaml");
    let prod_hcm = hcm_of(&prod);
    let strip = |mut hcm: Value| {
        for f in ["http_filters", "route_config", "local_reply_config"] {
            hcm.as_object_mut().unwrap().remove(f);
        }
        hcm
    };
    assert_eq!(
        strip(hcm.clone()),
        strip(prod_hcm.clone()),
        "the connection manager"
    );
    let listener = |v: &Value| {
        let mut l = v["static_resources"]["listeners"][0].clone();
        l["filter_chains"][0]["filters"] = Value::Null;
        l
    };
    assert_eq!(listener(&kit), listener(&prod), "the listener");
    let wasm_entry = |hcm: &Value| {
        let mut w = hcm["http_filters"][0].clone();
        w["typed_config"]["config"]["configuration"] = Value::Null;
        w
    };
    assert_eq!(
        wasm_entry(&hcm),
        wasm_entry(&prod_hcm),
        "the dcr-guard entry"
    );
    let mut cfg = cfgs[0].clone();
    let mut prod_cfg = check_envoy_kit("envoy/production.yaml").remove(0);
    for c in [&mut cfg, &mut prod_cfg] {
        let c = c.as_object_mut().unwrap();
        c.remove("forward");
        c.remove("fact_headers");
    }
    assert_eq!(cfg, prod_cfg, "the dcr-guard configuration");
    let mut clusters = kit["static_resources"]["clusters"]
        .as_array()
        .unwrap()
        .clone();
    clusters.retain(|c| c["name"] != "bank_authz");
    assert_eq!(
        &clusters,
        prod["static_resources"]["clusters"].as_array().unwrap()
    );
    assert_eq!(kit["stats_config"], prod["stats_config"]);
    assert_eq!(kit["admin"], prod["admin"]);
}

#[test]
fn compose_envoy_config_validates() {
    let text = read("envoy/compose-envoy.yaml").replace(
        "/etc/envoy/dcr_guard.wasm",
        &common::envoy::wasm_path().display().to_string(),
    );
    // The demo PKI the compose `pki` service makes (mounted at /etc/envoy/pki), made here.
    let pki = common::tls::Pki::new();
    let server = pki.server(&["localhost"]);
    let text = text
        .replace(
            "/etc/envoy/pki/server.pem",
            &server.cert.display().to_string(),
        )
        .replace(
            "/etc/envoy/pki/server-key.pem",
            &server.key.display().to_string(),
        )
        .replace(
            "/etc/envoy/pki/ca.pem",
            &pki.ca_path().display().to_string(),
        );
    assert!(
        !text.contains("filename: /etc/envoy/pki"),
        "a compose PKI path the test does not know"
    );
    let tmp = TempDir::new("compose");
    validate_ok(&tmp.write("envoy.yaml", &text), "envoy/compose-envoy.yaml");
    check_envoy_kit("envoy/compose-envoy.yaml");
}

/// The compose demo is the stack of `make run`: the same mutual-TLS listener (client certificate
/// required, validated against the demo CA, the certificate sanitised) and the same filter, with only
/// the addresses and file locations of the containers.
#[test]
fn compose_listener_is_the_demo_listener() {
    let listener = |kit: &str| {
        let mut l = yaml_file(kit)["static_resources"]["listeners"][0].clone();
        l["address"] = Value::Null;
        let chain = &mut l["filter_chains"][0];
        let certs = &mut chain["transport_socket"]["typed_config"]["common_tls_context"];
        for f in [
            "/tls_certificates/0/certificate_chain/filename",
            "/tls_certificates/0/private_key/filename",
            "/validation_context/trusted_ca/filename",
        ] {
            let p = certs
                .pointer_mut(f)
                .unwrap_or_else(|| panic!("{kit}: no {f}"));
            let name = p.as_str().unwrap().rsplit('/').next().unwrap().to_string();
            *p = Value::String(name);
        }
        let code = chain
            .pointer_mut(
                "/filters/0/typed_config/http_filters/0/typed_config/config/vm_config/code",
            )
            .unwrap_or_else(|| panic!("{kit}: no wasm code"));
        *code = Value::Null;
        l
    };
    let (demo, compose) = (
        listener("envoy/demo.yaml"),
        listener("envoy/compose-envoy.yaml"),
    );
    assert_eq!(
        demo["filter_chains"][0]["transport_socket"]["typed_config"]["require_client_certificate"],
        true
    );
    assert_eq!(
        compose, demo,
        "envoy/compose-envoy.yaml's listener differs from envoy/demo.yaml's"
    );
}

/// The EnvoyFilter's filter entry, put into a minimal bootstrap with the Istio cluster names it
/// calls out to, is a valid Envoy wasm filter (and the filter accepts its configuration).
#[test]
fn istio_envoyfilter_entry_validates_in_envoy() {
    let ef = yaml_file("envoy/istio/envoyfilter.yaml");
    let mut entry = ef["spec"]["configPatches"][0]["patch"]["value"].clone();
    let code = "/typed_config/config/vm_config/code/local/filename";
    assert!(entry.pointer(code).is_some(), "EnvoyFilter: no local code");
    *entry.pointer_mut(code).unwrap() = json!(common::envoy::wasm_path().display().to_string());
    let cfg = filter_document(&entry["typed_config"], "EnvoyFilter");
    let clusters: Vec<Value> = upstreams(&cfg)
        .into_iter()
        .map(|name| {
            json!({
                "name": name, "type": "STATIC", "connect_timeout": "1s",
                "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 443}}}}
                ]}]}
            })
        })
        .collect();
    let bootstrap = json!({
        "static_resources": {
            "listeners": [{
                "name": "gateway",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 8443}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "gateway",
                        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                            {"match": {"prefix": "/"}, "direct_response": {"status": 200}}
                        ]}]},
                        "http_filters": [entry, {
                            "name": "envoy.filters.http.router",
                            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
                        }]
                    }
                }]}]
            }],
            "clusters": clusters
        }
    });
    let tmp = TempDir::new("istio");
    let p = tmp.write(
        "bootstrap.json",
        &serde_json::to_string_pretty(&bootstrap).unwrap(),
    );
    validate_ok(&p, "the filter entry of envoy/istio/envoyfilter.yaml");
}

// ---------------------------------------------------------------------------------------------
// Istio, Kong, compose: parsed, not exercised in CI.

const KEYSTORE: &str = "keystore.openbanking.org.uk";

/// Parsed, not exercised in CI.
#[test]
fn istio_manifests_parse() {
    let ef = yaml_file("envoy/istio/envoyfilter.yaml");
    assert_eq!(ef["apiVersion"], "networking.istio.io/v1alpha3");
    assert_eq!(ef["kind"], "EnvoyFilter");
    assert_eq!(
        ef["spec"]["workloadSelector"]["labels"]["istio"],
        "ingressgateway"
    );
    let patch = &ef["spec"]["configPatches"][0];
    assert_eq!(patch["applyTo"], "HTTP_FILTER");
    assert_eq!(patch["match"]["context"], "GATEWAY");
    assert_eq!(
        patch["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"],
        "envoy.filters.http.router"
    );
    assert_eq!(patch["patch"]["operation"], "INSERT_BEFORE");
    let wasm = &patch["patch"]["value"]["typed_config"];
    assert_eq!(wasm["@type"], WASM_FILTER_TYPE);
    assert_eq!(wasm["config"]["allow_on_headers_stop_iteration"], true);
    let cfg = filter_document(wasm, "EnvoyFilter");
    check_hold_headers(wasm, &cfg, "EnvoyFilter");
    assert_eq!(cfg["hold_headers"], true);

    let wp = yaml_file("envoy/istio/wasmplugin.yaml");
    assert_eq!(wp["apiVersion"], "extensions.istio.io/v1alpha1");
    assert_eq!(wp["kind"], "WasmPlugin");
    assert_eq!(
        wp["spec"]["selector"]["matchLabels"]["istio"],
        "ingressgateway"
    );
    assert_eq!(wp["spec"]["phase"], "AUTHN");
    assert_eq!(wp["spec"]["failStrategy"], "FAIL_RELOAD");
    assert!(str_at(&wp, "/spec/url", "WasmPlugin").starts_with("oci://"));
    // Pinned: `sha256` is a manifest digest (64 lowercase hex, no `sha256:` prefix, as Istio wants it).
    let sha = str_at(&wp, "/spec/sha256", "WasmPlugin");
    assert!(
        sha.len() == 64
            && sha
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "WasmPlugin sha256 {sha}: 64 lowercase hex digits expected"
    );
    assert_eq!(wp["spec"]["imagePullPolicy"], "IfNotPresent");
    assert_ne!(wp["spec"]["failStrategy"], "FAIL_OPEN");
    // A WasmPlugin cannot set allow_on_headers_stop_iteration: headers must not be held.
    assert_eq!(wp["spec"]["pluginConfig"]["hold_headers"], false);

    let se = yaml_file("envoy/istio/serviceentry.yaml");
    assert_eq!(se["apiVersion"], "networking.istio.io/v1beta1");
    assert_eq!(se["kind"], "ServiceEntry");
    assert_eq!(se["spec"]["hosts"][0], KEYSTORE);
    assert_eq!(se["spec"]["location"], "MESH_EXTERNAL");
    assert_eq!(se["spec"]["ports"][0]["number"], 443);

    let dr = yaml_file("envoy/istio/destinationrule.yaml");
    assert_eq!(dr["apiVersion"], "networking.istio.io/v1beta1");
    assert_eq!(dr["kind"], "DestinationRule");
    assert_eq!(dr["spec"]["host"], KEYSTORE);
    let port = &dr["spec"]["trafficPolicy"]["portLevelSettings"][0];
    assert_eq!(port["port"]["number"], 443);
    assert_eq!(port["tls"]["mode"], "SIMPLE");
    assert_eq!(port["tls"]["sni"], KEYSTORE);
    assert_eq!(port["tls"]["subjectAltNames"][0], KEYSTORE);

    // Both Istio filter configurations call out only to `outbound|443||<host>` clusters of hosts the
    // ServiceEntry declares (on a port the DestinationRule originates TLS for).
    let cluster = format!("outbound|443||{KEYSTORE}");
    for (what, cfg) in [
        ("EnvoyFilter", &cfg),
        ("WasmPlugin", &wp["spec"]["pluginConfig"]),
    ] {
        let ups = upstreams(cfg);
        assert_eq!(ups, BTreeSet::from([cluster.clone()]), "{what} upstreams");
    }
}

/// Parsed, not exercised in CI.
#[test]
fn kong_declarative_config_parses() {
    let kong = yaml_file("envoy/kong/kong.yaml");
    assert_eq!(kong["_format_version"], "3.0");
    let filters = kong_filters(&kong);
    assert_eq!(filters.len(), 1, "one dcr_guard filter expected");
    let route = &kong["services"][0]["routes"][0];
    assert!(route["paths"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p == "/register"));
    assert_eq!(route["strip_path"], false);
    assert_eq!(kong["services"][0]["tls_verify"], true);
    // Kong upstreams are host:port, and the host is the URL's host.
    let cfg = &filters[0];
    for src in cfg["directories"][0]["jwks"].as_array().unwrap() {
        let url = src["url"].as_str().unwrap();
        let host = url
            .trim_start_matches("https://")
            .split('/')
            .next()
            .unwrap();
        assert_eq!(src["upstream"], format!("{host}:443"), "{url}");
    }
    for u in upstreams(cfg) {
        let (host, port) = u
            .rsplit_once(':')
            .unwrap_or_else(|| panic!("{u}: not host:port"));
        assert!(!host.is_empty() && port.parse::<u16>().is_ok(), "{u}");
    }
    // kong.conf: the settings the kit relies on are there (the file is not otherwise parsed).
    let conf = read("envoy/kong/kong.conf");
    for line in [
        "wasm = on",
        "wasm_filters_path = ",
        "nginx_http_client_body_buffer_size = 1m",
        "nginx_wasm_tls_verify_cert = on",
        "nginx_wasm_tls_trusted_certificate = ",
        "nginx_wasm_shm_kv = ",
    ] {
        assert!(
            conf.lines().any(|l| l.starts_with(line)),
            "kong.conf lacks `{line}`"
        );
    }
}

/// The dcr_guard filter configurations of a Kong declarative config (the `config` objects).
fn kong_filters(kong: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<Value>) {
        match v {
            Value::Object(m) => {
                if m.get("name").and_then(Value::as_str) == Some("dcr_guard") {
                    // An object: Kong validates it against dcr_guard.meta.json's config_schema
                    // (a string would fail that schema's `"type": "object"`).
                    let cfg = &m["config"];
                    assert!(
                        cfg.is_object(),
                        "Kong filter config must be an object (dcr_guard.meta.json is shipped), not {cfg}"
                    );
                    out.push(cfg.clone());
                }
                m.values().for_each(|c| walk(c, out));
            }
            Value::Array(a) => a.iter().for_each(|c| walk(c, out)),
            _ => {}
        }
    }
    walk(kong, &mut out);
    out
}

/// Parsed, not exercised in CI.
#[test]
fn compose_file_parses() {
    let compose = yaml_file("envoy/docker-compose.yaml");
    let services = compose["services"].as_object().expect("services");
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap_or_else(|| panic!("not a list: {v}"))
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    let envoy = &services["envoy"];
    assert!(envoy["image"]
        .as_str()
        .unwrap()
        .starts_with("envoyproxy/envoy:v1.40"));
    let volumes = strings(&envoy["volumes"]);
    assert!(volumes
        .iter()
        .any(|v| v.starts_with("./compose-envoy.yaml:/etc/envoy/envoy.yaml")));
    assert!(volumes
        .iter()
        .any(|v| v.contains("dcr_guard.wasm:/etc/envoy/dcr_guard.wasm")));
    // The listener's PKI: mounted where compose-envoy.yaml reads it, from the directory the `pki`
    // service writes and `demo register --state .run/compose-demo` reads.
    assert!(
        volumes
            .iter()
            .any(|v| v.starts_with("../.run/compose-demo/pki:/etc/envoy/pki")),
        "{volumes:?}"
    );
    let envoy_text = read("envoy/compose-envoy.yaml");
    for f in ["server.pem", "server-key.pem", "ca.pem"] {
        assert!(
            envoy_text.contains(&format!("filename: /etc/envoy/pki/{f}")),
            "{f}"
        );
    }
    // The PKI exists before Envoy or the keystore start.
    let pki = &services["pki"];
    assert_eq!(
        strings(&pki["command"])[..2],
        ["demo".to_string(), "pki".to_string()]
    );
    assert!(strings(&pki["volumes"]).contains(&"../.run/compose-demo:/state".to_string()));
    for s in ["envoy", "demo"] {
        assert_eq!(
            services[s]["depends_on"]["pki"]["condition"], "service_completed_successfully",
            "{s}"
        );
    }
    for s in ["pki", "demo"] {
        let dockerfile = str_at(&services[s], "/build/dockerfile", s);
        assert!(crate_dir().join(dockerfile).exists(), "{dockerfile}");
        assert!(read(dockerfile).contains("cargo build --example demo"));
    }
    // The AS of `make run` (node oidc-provider), listening beyond its container's loopback.
    let as_ = &services["as"];
    let dockerfile = str_at(as_, "/build/dockerfile", "compose as");
    assert!(read(dockerfile).contains("npm ci"));
    let cmd = strings(&as_["command"]);
    assert!(cmd.contains(&"server.mjs".to_string()), "{cmd:?}");
    assert!(
        cmd.windows(2).any(|w| w == ["--host", "0.0.0.0"]),
        "{cmd:?}"
    );
    // compose-envoy.yaml reaches its upstreams by compose service name.
    let envoy_cfg = yaml_file("envoy/compose-envoy.yaml");
    for c in envoy_cfg["static_resources"]["clusters"]
        .as_array()
        .unwrap()
    {
        let addr = str_at(
            c,
            "/load_assignment/endpoints/0/lb_endpoints/0/endpoint/address/socket_address/address",
            "compose-envoy cluster",
        );
        assert!(
            services.contains_key(addr),
            "{addr} is not a compose service"
        );
    }
    assert_eq!(
        envoy_cfg["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]
            ["lb_endpoints"][0]["endpoint"]["address"]["socket_address"],
        json!({"address": "as", "port_value": 18080})
    );
}

// ---------------------------------------------------------------------------------------------
// Every embedded filter configuration: accepted by the filter and by the schema.

/// (where, configuration document) for every filter configuration shipped in a kit.
fn kit_configurations() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for rel in [
        "envoy/demo.yaml",
        "envoy/production.yaml",
        "envoy/compose-envoy.yaml",
        EXT_AUTHZ_KIT,
    ] {
        for cfg in check_envoy_kit(rel) {
            out.push((rel.to_string(), cfg));
        }
    }
    let ef = yaml_file("envoy/istio/envoyfilter.yaml");
    for w in wasm_filters(&ef) {
        out.push((
            "envoy/istio/envoyfilter.yaml".into(),
            filter_document(w, "EnvoyFilter"),
        ));
    }
    let wp = yaml_file("envoy/istio/wasmplugin.yaml");
    out.push((
        "envoy/istio/wasmplugin.yaml".into(),
        wp["spec"]["pluginConfig"].clone(),
    ));
    for cfg in kong_filters(&yaml_file("envoy/kong/kong.yaml")) {
        out.push(("envoy/kong/kong.yaml".into(), cfg));
    }
    assert_eq!(out.len(), 7, "one configuration per kit expected");
    out
}

// ---------------------------------------------------------------------------------------------
// Kong's filter metadata: a Draft-4 config_schema derived from the schema.

const KONG_META: &str = "envoy/kong/dcr_guard.meta.json";

fn kong_config_schema() -> Value {
    let meta: Value =
        serde_json::from_str(&read(KONG_META)).unwrap_or_else(|e| panic!("{KONG_META}: {e}"));
    meta["config_schema"].clone()
}

/// Draft 4 only (what Kong's validator speaks): no `$defs`, `const` or other later keywords left,
/// and no reference for Kong to resolve (definitions are inlined).
#[test]
fn kong_meta_is_draft_4() {
    let cs = kong_config_schema();
    assert_eq!(cs["$schema"], "http://json-schema.org/draft-04/schema#");
    assert_eq!(cs["type"], "object");
    fn walk(v: &Value, path: &str) {
        match v {
            Value::Object(m) => {
                for (k, c) in m {
                    let in_names = path.ends_with("/properties");
                    if !in_names {
                        assert!(
                            !matches!(
                                k.as_str(),
                                "$defs" | "const" | "$id" | "if" | "then" | "else" | "examples"
                            ),
                            "{KONG_META}: `{k}` at {path} is not Draft 4"
                        );
                    }
                    assert!(
                        in_names || !matches!(k.as_str(), "$ref" | "definitions"),
                        "{KONG_META}: `{k}` at {path}: references are inlined for Kong"
                    );
                    walk(c, &format!("{path}/{k}"));
                }
            }
            Value::Array(a) => a.iter().for_each(|c| walk(c, path)),
            _ => {}
        }
    }
    walk(&cs, "#");
    // The same properties as the schema it comes from.
    assert_eq!(property_names(&cs), property_names(&schema()));
}

/// Every kit configuration passes the Kong config_schema too, and a wrong one does not.
#[test]
fn every_kit_configuration_matches_the_kong_config_schema() {
    let cs = kong_config_schema();
    for (what, cfg) in kit_configurations() {
        let errors = validate(&cs, &cfg);
        assert!(errors.is_empty(), "{what} vs {KONG_META}: {errors:#?}");
    }
    assert!(
        !validate(&cs, &json!({"profile": "uk-obie", "no_such_field": 1})).is_empty(),
        "an unknown field must fail the Kong config_schema"
    );
}

#[test]
fn every_kit_configuration_is_accepted_by_the_filter() {
    for (what, cfg) in kit_configurations() {
        // No kit uses introspection mode; if one ever does, its secret variable must be set here.
        if let Err(e) = Config::from_json(cfg.to_string().as_bytes()) {
            panic!("{what}: the filter refuses its configuration: {e}");
        }
    }
}

#[test]
fn every_kit_configuration_matches_the_schema() {
    let schema = schema();
    for (what, cfg) in kit_configurations() {
        let errors = validate(&schema, &cfg);
        assert!(errors.is_empty(), "{what} vs {SCHEMA}: {errors:#?}");
    }
}

/// The validator is not vacuous: each kit's configuration with a wrong type, an unknown field (at
/// the top and nested), a value outside an enum or a pattern, or a required field missing, fails
/// both schemas, and the error points at the field.
#[test]
fn a_kit_configuration_with_a_wrong_field_fails_the_schemas() {
    let schemas = [(SCHEMA, schema()), (KONG_META, kong_config_schema())];
    type Break = fn(&mut Value);
    let breaks: [(&str, Break, &str); 7] = [
        (
            "a string for a bool",
            |c| c["hold_headers"] = json!("yes"),
            "/hold_headers",
        ),
        (
            "a string for an integer",
            |c| c["leeway_seconds"] = json!("60"),
            "/leeway_seconds",
        ),
        (
            "an unknown top-level field",
            |c| c["hold_header"] = json!(true),
            "",
        ),
        (
            "an unknown nested field",
            |c| c["directories"][0]["jwks"][0]["urll"] = json!("https://x.example/jwks"),
            "/directories/0/jwks/0",
        ),
        (
            "a value outside the enum",
            |c| c["profile"] = json!("uk"),
            "/profile",
        ),
        (
            "a value outside the pattern",
            |c| c["stats"] = json!({"instance": "Edge"}),
            "/stats/instance",
        ),
        (
            "a required field missing",
            |c| {
                c["directories"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("issuer");
            },
            "/directories/0",
        ),
    ];
    for (kit, cfg) in kit_configurations() {
        for (what, break_it, at) in breaks {
            let mut bad = cfg.clone();
            break_it(&mut bad);
            for (name, schema) in &schemas {
                let errors = validate(schema, &bad);
                assert!(
                    errors.iter().any(|e| e.starts_with(&format!("{at}: "))),
                    "{kit} with {what}: {name} should report {at:?}, got {errors:#?}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The schema against the filter.

fn schema() -> Value {
    serde_json::from_str(&read(SCHEMA)).unwrap_or_else(|e| panic!("{SCHEMA}: {e}"))
}

/// `value` validated against `schema` by a JSON-Schema validator (the draft the schema's `$schema`
/// names): every error as `<JSON pointer of the value>: <message>`.
fn validate(schema: &Value, value: &Value) -> Vec<String> {
    let validator = jsonschema::validator_for(schema)
        .unwrap_or_else(|e| panic!("not a valid JSON Schema: {e}"));
    validator
        .iter_errors(value)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

/// The schema paths `value` uses (`a.b`, `a[].b`, `a.*` for map values), following `$ref`
/// (local), `properties`, `additionalProperties` and `items`: which fields of the schema a
/// configuration exercises (whether it is valid is [`validate`]'s question).
fn used_paths(root: &Value, value: &Value, used: &mut BTreeSet<String>) {
    used_at(root, root, value, "", used);
}

fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("non-local $ref {r}"));
            resolve(
                root,
                root.pointer(pointer)
                    .unwrap_or_else(|| panic!("dangling $ref {r}")),
            )
        }
        None => schema,
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn used_at(root: &Value, schema: &Value, value: &Value, path: &str, used: &mut BTreeSet<String>) {
    let schema = resolve(root, schema);
    if let Value::Object(m) = value {
        let props = schema.get("properties").and_then(Value::as_object);
        for (k, v) in m {
            if let Some(s) = props.and_then(|p| p.get(k)) {
                let p = join(path, k);
                used.insert(p.clone());
                used_at(root, s, v, &p, used);
            } else if let Some(s @ Value::Object(_)) = schema.get("additionalProperties") {
                let p = join(path, "*");
                used.insert(p.clone());
                used_at(root, s, v, &p, used);
            }
        }
    }
    if let (Value::Array(a), Some(items)) = (value, schema.get("items")) {
        let p = format!("{path}[]");
        for v in a {
            used_at(root, items, v, &p, used);
        }
    }
}

/// Every path the schema describes (same notation as `check` records).
fn schema_paths(root: &Value, schema: &Value, path: &str, out: &mut BTreeSet<String>) {
    let schema = resolve(root, schema);
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (k, s) in props {
            let p = join(path, k);
            out.insert(p.clone());
            schema_paths(root, s, &p, out);
        }
    }
    if let Some(s @ Value::Object(_)) = schema.get("additionalProperties") {
        let p = join(path, "*");
        out.insert(p.clone());
        schema_paths(root, s, &p, out);
    }
    if let Some(items) = schema.get("items") {
        schema_paths(root, items, &format!("{path}[]"), out);
    }
}

fn property_names(schema: &Value) -> BTreeSet<String> {
    schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// A configuration that sets every field (token binding in `jwt` mode).
fn kitchen_sink() -> Value {
    let mut v = kitchen_sink_without_status();
    v["rules"]["participant_status"] = json!({
        "enabled": true,
        "sources": [{
            "name": "software statement",
            "url": "https://directory-export.example/software-statements.json",
            "upstream": "export",
            "authority": "directory-export.example",
            "headers": {"x-v": "1"},
            "refresh_seconds": 300,
            "max_staleness_seconds": 3600,
            "max_bytes": 1048576,
            "array": "software_statements",
            "id_member": "software_id",
            "status_member": "status",
            "ssa_claim": "software_id",
            "allowed": ["Active"],
            "unknown": "refuse"
        }]
    });
    v
}

/// [`kitchen_sink`] but `rules.participant_status` (one `json!` cannot hold all of it).
fn kitchen_sink_without_status() -> Value {
    json!({
        "profile": "uk-obie",
        "path": "/register",
        "hold_headers": true,
        "directories": [{
            "issuer": "OpenBanking Ltd",
            "jwks": [
                {"url": "https://keystore.example/keystore/openbanking.jwks", "upstream": "ks"},
                {"inline": {"keys": [dcr_guard_testkit::keys::TestKey::ec("pinned").public_jwk()]}}
            ],
            "algorithms": ["PS256", "ES256"],
            "max_ssa_age_seconds": 86400,
            "require_exp": false
        }],
        "software_jwks_hosts": [{"host": "*.tpp.example", "upstream": "ks"}],
        "ssa_claims": {
            "software_jwks": "software_jwks_endpoint",
            "redirect_uris": "software_redirect_uris",
            "uris": ["software_client_uri", "software_logo_uri"],
            "roles": "software_roles",
            "scope": "scope",
            "environment": "software_environment"
        },
        "request_algorithms": ["PS256", "ES256"],
        "leeway_seconds": 60,
        "retry_after_seconds": 5,
        "limits": {"body_bytes": 65536, "jwks_bytes": 262144, "jwks_keys": 100, "callout_timeout_ms": 2000},
        "rules": {
            "token_client_binding": {
                "enabled": true,
                "mode": "jwt",
                "jwks": [{"url": "https://as.example/jwks", "upstream": "as"}],
                "algorithms": ["PS256"],
                "issuer": "https://as.example",
                "audiences": ["https://as.example/register"],
                "scope": "registration",
                "client_id_claims": ["client_id", "azp"],
                "typ": "at+jwt"
            },
            "request_jti": {"enabled": true, "format": "uuid4"},
            "ssa_jti": {"enabled": true, "window_seconds": 86400},
            "ssa_issuer": {"enabled": true},
            "ssa_signature": {"enabled": true},
            "request_signature": {"enabled": true},
            "issuance_time": {"enabled": true, "max_age_seconds": 3600},
            "software_status": {
                "enabled": true,
                "checks": [{"claim": "org_status", "equals": "Active", "required": true}],
                "environment": "production"
            },
            "required_attributes": {
                "enabled": true,
                "claims": ["iss", "aud"],
                "allowed_values": {"application_type": ["web", "mobile"]}
            },
            "issuer": {"enabled": true},
            "audience": {"enabled": true, "audiences": ["0015800001HQQrZAAX"]},
            "redirect_uri_format": {"enabled": true, "max_length": 256},
            "redirect_uri_subset": {"enabled": true},
            "uri_hostname": {"enabled": true},
            "token_endpoint_auth": {"enabled": true, "methods": ["private_key_jwt", "tls_client_auth"]},
            "signing_algorithms": {
                "enabled": true,
                "algorithms": ["PS256", "ES256"],
                "claims": ["id_token_signed_response_alg", "request_object_signing_alg"]
            },
            "grant_and_response_types": {
                "enabled": true,
                "grant_types": ["authorization_code", "client_credentials", "refresh_token"],
                "required_grant_types": ["authorization_code"],
                "response_types": ["code", "code id_token"],
                "application_types": ["web"],
                "ciba_delivery_modes": ["poll"]
            },
            "software_roles": {
                "enabled": true,
                "mode": "role_mapping",
                "scope_roles": {"accounts": ["AISP"], "payments": ["PISP"]},
                "free_scopes": ["openid"]
            },
            "certificate_binding": {
                "enabled": true,
                "org": {"attribute": "OU", "prefix": "", "ssa_claim": "org_id"},
                "software": {"attribute": "CN", "ssa_claim": "software_id"},
                "thumbprint": false,
                "subject_dn": true
            }
        },
        "report_only": false,
        "forward": "json",
        "fact_headers": [{"claim": "software_id", "header": "x-tpp-software-id"}],
        "replay": {"buckets": 64, "entries_per_bucket": 256, "max_retention_seconds": 86400, "issuer_share_percent": 10},
        "jwks_cache": {
            "default_ttl_seconds": 600,
            "min_ttl_seconds": 60,
            "max_ttl_seconds": 86400,
            "kid_refetch_cooldown_seconds": 30,
            "stale_if_error_seconds": 3600,
            "refresh_ahead_seconds": 60
        },
        "client_certificate": {"source": "connection"},
        "stats": {"instance": "edge"}
    })
}

/// Two configurations that together use every field: both accepted by the filter and by the
/// schema, and every schema path is used by one of them (so the schema has no field the filter
/// would refuse).
#[test]
fn kitchen_sink_configurations_cover_the_schema() {
    let jwt = kitchen_sink();
    let mut introspection = jwt.clone();
    introspection["rules"]["token_client_binding"] = json!({
        "enabled": true,
        "mode": "introspection",
        "introspection": {
            "url": "https://as.example/introspect",
            "upstream": "as",
            "client_id": "dcr-guard",
            // The NAME of a variable holding the secret: the filter looks it up in its environment,
            // this test through the lookup it passes to `Config::parse`.
            "client_secret_env": "DCR_GUARD_AS_SECRET"
        },
        "scope": "registration",
        "client_id_claims": ["client_id"]
    });
    // The fleet replay store.
    introspection["replay"]["store"] = json!("etcd");
    introspection["replay"]["etcd"] = json!({
        "upstream": "outbound|2379||etcd.db.svc.cluster.local",
        "authority": "etcd.db.svc",
        "key_prefix": "/dcr-guard/replay/",
        "timeout_ms": 500
    });

    let schema = schema();
    let mut used = BTreeSet::new();
    let secrets = |name: &str| (name == "DCR_GUARD_AS_SECRET").then(|| "s3cr3t".to_string());
    // The au-cdr preset of `rules.participant_status` (refused in the other profiles).
    let au = json!({
        "profile": "au-cdr",
        "directories": [{"issuer": "cdr-register", "jwks": [{"url": "https://api.cdr.gov.au/cdr-register/v1/jwks", "upstream": "cdr_register"}]}],
        "rules": {
            "audience": {"audiences": ["https://holder.example"]},
            "participant_status": {"register": {
                "base_url": "https://api.cdr.gov.au/cdr-register/v1/all",
                "upstream": "cdr_register",
                "authority": "api.cdr.gov.au",
                "refresh_seconds": 300,
                "max_staleness_seconds": 3600,
                "max_bytes": 1048576,
                "unknown": "refuse"
            }}
        }
    });
    for (what, cfg) in [
        ("jwt", &jwt),
        ("introspection", &introspection),
        ("au-cdr preset", &au),
    ] {
        if let Err(e) = Config::parse(cfg.to_string().as_bytes(), &secrets) {
            panic!("kitchen sink ({what}) refused by the filter: {e}");
        }
        let errors = validate(&schema, cfg);
        assert!(
            errors.is_empty(),
            "kitchen sink ({what}) vs {SCHEMA}: {errors:#?}"
        );
        used_paths(&schema, cfg, &mut used);
    }
    let mut all = BTreeSet::new();
    schema_paths(&schema, &schema, "", &mut all);
    let unused: Vec<&String> = all.difference(&used).collect();
    assert!(
        unused.is_empty(),
        "schema fields no kitchen-sink configuration uses (add them to the test, or remove them \
         from the schema if the filter does not know them): {unused:?}"
    );

    // The check is not vacuous: an unknown field anywhere is reported.
    let mut bad = jwt.clone();
    bad["rules"]["software_roles"]["scope_rolez"] = json!({});
    let errors = validate(&schema, &bad);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].starts_with("/rules/software_roles: ") && errors[0].contains("scope_rolez"),
        "{errors:#?}"
    );
    assert!(Config::from_json(bad.to_string().as_bytes()).is_err());
}

/// Each enum of the schema lists exactly the values the filter accepts: the filter's refusal of an
/// unknown value names the supported ones.
#[test]
fn schema_enums_match_the_filter() {
    let schema = schema();
    let cases = [
        ("/profile", "/properties/profile/enum"),
        ("/forward", "/properties/forward/enum"),
        ("/request_algorithms/0", "/$defs/Algorithms/items/enum"),
        (
            "/directories/0/algorithms/0",
            "/$defs/Algorithms/items/enum",
        ),
        (
            "/rules/request_jti/format",
            "/$defs/RequestJti/properties/format/enum",
        ),
        (
            "/rules/token_client_binding/mode",
            "/$defs/Binding/properties/mode/enum",
        ),
        (
            "/rules/software_roles/mode",
            "/$defs/SoftwareRoles/properties/mode/enum",
        ),
        (
            "/client_certificate/source",
            "/$defs/ClientCertificate/properties/source/enum",
        ),
        (
            "/rules/participant_status/sources/0/unknown",
            "/$defs/StatusSource/properties/unknown/enum",
        ),
    ];
    for (field, enum_at) in cases {
        let mut cfg = kitchen_sink();
        *cfg.pointer_mut(field).unwrap_or_else(|| panic!("{field}")) = json!("no-such-value");
        let e = Config::from_json(cfg.to_string().as_bytes())
            .err()
            .unwrap_or_else(|| panic!("{field}: an unknown value was accepted"))
            .to_string();
        // "... unknown profile `x` (supported: uk-obie, au-cdr)" → the list in the parentheses.
        let list = e
            .rsplit_once('(')
            .and_then(|(_, l)| l.strip_suffix(')'))
            .unwrap_or_else(|| panic!("{field}: no list of values in `{e}`"));
        let accepted: BTreeSet<String> = list
            .trim_start_matches("supported: ")
            .split(", ")
            .map(str::to_string)
            .collect();
        let listed: BTreeSet<String> = schema
            .pointer(enum_at)
            .and_then(Value::as_array)
            .unwrap_or_else(|| panic!("schema has no enum at {enum_at}"))
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert_eq!(listed, accepted, "{SCHEMA} {enum_at} vs the filter ({e})");
    }
}

/// The README's dynamic forward proxy kit ("Any recipient's JWKS host"): its filter snippet is a
/// configuration the filter accepts (`*` through the cluster it names) and its cluster passes
/// `envoy --mode validate`; on an Envoy older than 1.39 it does so without
/// `resolved_address_filter`, which that Envoy refuses (as the README says).
#[test]
fn readme_dynamic_forward_proxy_kit_validates() {
    let readme = read("README.md");
    let start = readme
        .find("### Any recipient's JWKS host: a dynamic forward proxy cluster")
        .expect("the README section");
    let section = &readme[start..];
    let block = |fence: &str| {
        let from = section.find(fence).expect("a code block") + fence.len();
        let len = section[from..].find("```").expect("its end");
        section[from..from + len].to_string()
    };
    let snippet: Value = serde_json::from_str(&format!("{{{}}}", block("```json\n"))).unwrap();
    let yaml = yaml_rust2::YamlLoader::load_from_str(&block("```yaml\n")).unwrap();
    let clusters = common::yaml::to_json(&yaml[0]);
    let cluster = clusters[0].clone();

    let mut cfg = common::dcr::Tpp::new(
        common::keys::TestKey::ec("d"),
        common::keys::TestKey::ec("t"),
    )
    .au_filter_config("directory", "unused");
    cfg["software_jwks_hosts"] = snippet["software_jwks_hosts"].clone();
    let parsed = Config::from_json(cfg.to_string().as_bytes()).unwrap();
    assert_eq!(
        parsed.software_upstream("jwks.any-recipient.example", 443),
        cluster["name"].as_str()
    );

    let tmp = TempDir::new("dfp-kit");
    let (crt, _) = throwaway_cert(&tmp);
    let text = serde_json::to_string(&json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {"clusters": [cluster]}
    }))
    .unwrap()
    .replace(
        "/etc/ssl/certs/ca-certificates.crt",
        &crt.display().to_string(),
    );
    let full = tmp.write("dfp.json", &text);
    let (ok, out) = common::envoy::validate(&full);
    let version = Command::new(common::envoy::envoy_binary())
        .arg("--version")
        .output()
        .unwrap();
    let version = String::from_utf8_lossy(&version.stdout).into_owned();
    let minor: u32 = version
        .split("version: ")
        .nth(1)
        .and_then(|v| v.split('/').nth(1))
        .and_then(|v| v.split('.').nth(1))
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("Envoy version in {version}"));
    if minor >= 39 {
        assert!(ok, "the README's DFP cluster on {version}:\n{out}");
    } else {
        assert!(!ok && out.contains("resolved_address_filter"), "{out}");
        let mut older: Value = serde_json::from_str(&text).unwrap();
        older["static_resources"]["clusters"][0]["cluster_type"]["typed_config"]
            ["dns_cache_config"]
            .as_object_mut()
            .unwrap()
            .remove("resolved_address_filter");
        let path = tmp.write("dfp-older.json", &older.to_string());
        validate_ok(
            &path,
            "the README's DFP cluster without resolved_address_filter",
        );
    }
}
