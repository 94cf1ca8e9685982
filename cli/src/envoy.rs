//! `dcr-guard check-config --envoy FILE.yaml`: the filter configuration taken out of an Envoy
//! bootstrap (the wasm filter's `configuration`), an Istio `WasmPlugin` (`spec.pluginConfig`) or
//! `EnvoyFilter`, or a Kong declarative file (a `dcr_guard` filter's `config`), validated as
//! `check-config` does, and the proxy settings around the filter that it cannot see from inside:
//!
//! - `hold_headers` needs `allow_on_headers_stop_iteration: true` on the wasm filter (a WasmPlugin
//!   cannot set it);
//! - every `upstream` the configuration names is a cluster of the bootstrap, and the fleet replay
//!   store's (`replay.etcd.upstream`) speaks HTTP/2;
//! - the listener's `per_connection_buffer_limit_bytes` is above `limits.body_bytes`;
//! - `forward_client_cert_details` lets the `x-forwarded-client-cert` header through when
//!   `client_certificate.source` reads it;
//! - the HTTP connection manager normalises paths (`normalize_path`, `merge_slashes`) and does
//!   not keep escaped slashes (`path_with_escaped_slashes_action`);
//! - the filter fails closed (`failure_policy`, Istio `failStrategy`);
//! - an introspection client secret's environment variable is passed to the VM
//!   (`vm_config.environment_variables.host_env_keys`, Istio `spec.vmConfig.env`).
//!
//! Each finding names the field by its path in the file and says what to change.

use crate::{read_file, EXIT_OK, EXIT_REFUSED};
use dcr_guard_core::config::{CertSource, Config};
use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

const WASM_FILTER: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const STRING_VALUE: &str = "type.googleapis.com/google.protobuf.StringValue";
const HCM: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const DOWNSTREAM_TLS: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";
/// Envoy's default `per_connection_buffer_limit_bytes`.
const ENVOY_DEFAULT_BUFFER: u64 = 1024 * 1024;
/// Deepest YAML/JSON nesting walked.
const MAX_DEPTH: usize = 64;

/// One thing to change: where (the field's path in the file) and what.
#[derive(Debug)]
pub struct Finding {
    pub path: String,
    pub message: String,
}

fn finding(path: impl Into<String>, message: impl Into<String>) -> Finding {
    let path: String = path.into();
    Finding {
        path: path.trim_start_matches('.').to_string(),
        message: message.into(),
    }
}

pub fn main(file: &str) -> Result<u8, String> {
    let bytes = read_file(file)?;
    let text = String::from_utf8(bytes).map_err(|_| format!("`{file}` is not UTF-8"))?;
    let docs = YamlLoader::load_from_str(&text).map_err(|e| format!("{file}: not YAML: {e}"))?;
    let docs = docs
        .iter()
        .map(|d| yaml_to_json(d, 0))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{file}: {e}"))?;
    let report = check_documents(&docs);
    for line in &report.lines {
        println!("{file}: {line}");
    }
    for f in &report.findings {
        println!("{file}: {}: {}", f.path, f.message);
    }
    if report.filters == 0 {
        println!("{file}: no dcr-guard filter found (an Envoy wasm filter, an Istio WasmPlugin or EnvoyFilter, or a Kong dcr_guard filter)");
        return Ok(EXIT_REFUSED);
    }
    if report.findings.is_empty() {
        println!(
            "{file}: ok ({} dcr-guard filter(s) checked)",
            report.filters
        );
        Ok(EXIT_OK)
    } else {
        println!("{file}: {} finding(s)", report.findings.len());
        Ok(EXIT_REFUSED)
    }
}

#[derive(Default)]
pub struct Report {
    /// Filters found and checked.
    pub filters: usize,
    /// One line per filter: what was validated, and what this kind of file cannot show.
    pub lines: Vec<String>,
    pub findings: Vec<Finding>,
}

/// Check every YAML document of a file.
pub fn check_documents(docs: &[Value]) -> Report {
    let mut r = Report::default();
    for doc in docs {
        match doc.get("kind").and_then(Value::as_str) {
            Some("WasmPlugin") => istio_wasm_plugin(doc, &mut r),
            Some("EnvoyFilter") => {
                let n = r.filters;
                envoy_wasm_filters(doc, None, &mut r);
                if r.filters > n {
                    r.lines.push(
                        "EnvoyFilter: clusters, listener buffer and path normalisation are Istio's (not checked here: see README \"Istio\")"
                            .into(),
                    );
                }
            }
            _ if doc.get("_format_version").is_some() => kong(doc, &mut r),
            _ => envoy_wasm_filters(doc, Some(doc), &mut r),
        }
    }
    r
}

/// Validate a configuration document; the parsed configuration, or a finding at `path`.
fn validate(doc: &[u8], path: &str, r: &mut Report) -> Option<Config> {
    match Config::parse(doc, &|name| std::env::var(name).ok()) {
        Ok(cfg) => {
            r.lines.push(format!(
                "{}: valid ({})",
                path.trim_start_matches('.'),
                cfg.summary()
            ));
            Some(cfg)
        }
        Err(e) => {
            r.findings.push(finding(path, e.to_string()));
            None
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Envoy

/// Every wasm HTTP filter entry of `doc` (a bootstrap when `bootstrap` is given, otherwise an
/// EnvoyFilter), with its path.
fn envoy_wasm_filters(doc: &Value, bootstrap: Option<&Value>, r: &mut Report) {
    let mut found = Vec::new();
    walk(doc, "", 0, &mut |path, v| {
        if v.get("@type").and_then(Value::as_str) == Some(WASM_FILTER) {
            found.push((path.to_string(), v.clone()));
        }
    });
    for (path, wasm) in found {
        let config = wasm.get("config").cloned().unwrap_or(Value::Null);
        let cpath = format!("{path}.config");
        // A wasm filter that is not dcr-guard (another module) is left alone.
        let name = config.get("root_id").or_else(|| config.get("name"));
        if name
            .and_then(Value::as_str)
            .is_some_and(|n| n != "dcr_guard")
        {
            continue;
        }
        r.filters += 1;
        let doc = match config.get("configuration") {
            None => String::new(),
            Some(c) if c.get("@type").and_then(Value::as_str) == Some(STRING_VALUE) => c
                .get("value")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            Some(_) => {
                r.findings.push(finding(
                    format!("{cpath}.configuration"),
                    format!("must be a {STRING_VALUE} holding the JSON configuration"),
                ));
                continue;
            }
        };
        let vpath = format!("{cpath}.configuration.value");
        let Some(cfg) = validate(doc.as_bytes(), &vpath, r) else {
            continue;
        };
        if cfg.hold_headers
            && config
                .get("allow_on_headers_stop_iteration")
                .and_then(Value::as_bool)
                != Some(true)
        {
            r.findings.push(finding(
                format!("{cpath}.allow_on_headers_stop_iteration"),
                "\"hold_headers\" is true: set allow_on_headers_stop_iteration: true (Envoy 1.35+), or \"hold_headers\": false",
            ));
        }
        failure_policy(&config, &cpath, r);
        if let Some(env) = secret_env(&doc) {
            let listed = config
                .pointer("/vm_config/environment_variables/host_env_keys")
                .and_then(Value::as_array)
                .is_some_and(|keys| keys.iter().any(|k| k.as_str() == Some(env.as_str())));
            if !listed {
                r.findings.push(finding(
                    format!("{cpath}.vm_config.environment_variables.host_env_keys"),
                    format!("the introspection secret is read from `{env}`: list it here (and set it in Envoy's environment), or the filter refuses the configuration"),
                ));
            }
        }
        if let Some(boot) = bootstrap {
            clusters(boot, &doc, &vpath, r);
            any_host_clusters(boot, &cfg, r);
            around_filter(boot, &path, &cfg, r);
        }
    }
}

fn failure_policy(config: &Value, cpath: &str, r: &mut Report) {
    match config.get("failure_policy").and_then(Value::as_str) {
        Some("FAIL_CLOSED" | "FAIL_RELOAD") => {}
        // Unspecified: Envoy falls back to `fail_open` (default false: closed).
        None | Some("UNSPECIFIED") => {
            if config.get("fail_open").and_then(Value::as_bool) == Some(true) {
                r.findings.push(finding(
                    format!("{cpath}.fail_open"),
                    "fails open (requests reach the AS unchecked after a trap): remove it and set failure_policy: FAIL_RELOAD",
                ));
            }
        }
        Some(other) => r.findings.push(finding(
            format!("{cpath}.failure_policy"),
            format!("`{other}` does not fail closed: set FAIL_RELOAD (or FAIL_CLOSED)"),
        )),
    }
}

/// The environment variable the configuration reads the introspection client secret from.
fn secret_env(doc: &str) -> Option<String> {
    let raw: Value = serde_json::from_str(doc).ok()?;
    raw.pointer("/rules/token_client_binding/introspection/client_secret_env")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Every `upstream` in the configuration must be a cluster of the bootstrap.
fn clusters(boot: &Value, doc: &str, vpath: &str, r: &mut Report) {
    if boot.pointer("/dynamic_resources/cds_config").is_some() {
        r.lines.push(format!(
            "{vpath}: clusters come from CDS: upstream names not checked"
        ));
        return;
    }
    let names: Vec<&str> = boot
        .pointer("/static_resources/clusters")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    let Ok(raw) = serde_json::from_str::<Value>(doc) else {
        return;
    };
    walk(&raw, "", 0, &mut |path, v| {
        if let Some(u) = v.get("upstream").and_then(Value::as_str) {
            if !names.contains(&u) {
                r.findings.push(finding(
                    format!("{vpath} → {}.upstream", path.trim_start_matches('.')),
                    format!(
                        "`{u}` is not a cluster of this bootstrap (static_resources.clusters: {}): add the cluster or name one of them",
                        if names.is_empty() { "none".to_string() } else { names.join(", ") }
                    ),
                ));
            }
        }
    });
    etcd_cluster(boot, &raw, vpath, r);
}

/// A `software_jwks_hosts` entry `*` sends any recipient's host to its cluster: that cluster must
/// resolve the host of each callout (a dynamic forward proxy cluster with a DNS cache:
/// `sub_clusters_config` does not resolve for callouts) and verify the certificate for it (TLS,
/// `auto_sni`, `auto_san_validation`), or one fixed endpoint would answer for every host.
fn any_host_clusters(boot: &Value, cfg: &dcr_guard_core::config::Config, r: &mut Report) {
    let Some(list) = boot
        .pointer("/static_resources/clusters")
        .and_then(Value::as_array)
    else {
        return;
    };
    let mut checked: Vec<&str> = Vec::new();
    for rule in &cfg.software_hosts {
        let name = rule.upstream.as_str();
        if rule.pattern != dcr_guard_core::config::HostPattern::Any || checked.contains(&name) {
            continue;
        }
        checked.push(name);
        let Some((ci, c)) = list
            .iter()
            .enumerate()
            .find(|(_, c)| c.get("name").and_then(Value::as_str) == Some(name))
        else {
            continue; // reported as a missing cluster
        };
        let cpath = format!("static_resources.clusters[{ci}]");
        let dfp = c.pointer("/cluster_type/name").and_then(Value::as_str)
            == Some("envoy.clusters.dynamic_forward_proxy");
        let cache = c
            .pointer("/cluster_type/typed_config/dns_cache_config")
            .is_some();
        if !dfp || !cache {
            r.findings.push(finding(
                format!("{cpath}.cluster_type"),
                format!("`{name}` serves software_jwks_hosts `*`: it must be an envoy.clusters.dynamic_forward_proxy cluster with dns_cache_config (sub_clusters_config does not resolve for callouts; see README, \"Any recipient's JWKS host\")"),
            ));
            continue;
        }
        let tls = c
            .pointer("/transport_socket/typed_config/@type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.ends_with("UpstreamTlsContext"));
        let options = "/typed_extension_protocol_options/envoy.extensions.upstreams.http.v3.HttpProtocolOptions/upstream_http_protocol_options";
        let on = |field: &str| {
            c.pointer(&format!("{options}/{field}"))
                .and_then(Value::as_bool)
                == Some(true)
        };
        if !tls || !on("auto_sni") || !on("auto_san_validation") {
            r.findings.push(finding(
                cpath,
                format!("`{name}` serves software_jwks_hosts `*`: it needs an UpstreamTlsContext transport socket and upstream_http_protocol_options auto_sni: true and auto_san_validation: true, so that each recipient's certificate is verified for its host"),
            ));
        }
    }
}

/// The fleet replay store's cluster (`replay.etcd.upstream`) carries gRPC: it must speak HTTP/2;
/// without an active health check a stopped etcd member keeps getting calls (each a 503).
fn etcd_cluster(boot: &Value, raw: &Value, vpath: &str, r: &mut Report) {
    let Some(name) = raw.pointer("/replay/etcd/upstream").and_then(Value::as_str) else {
        return;
    };
    let Some((ci, cluster)) = boot
        .pointer("/static_resources/clusters")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .enumerate()
                .find(|(_, c)| c.get("name").and_then(Value::as_str) == Some(name))
        })
    else {
        return; // reported above as a missing cluster
    };
    let cpath = format!("static_resources.clusters[{ci}]");
    let http2 = cluster.get("http2_protocol_options").is_some()
        || cluster
            .pointer("/typed_extension_protocol_options/envoy.extensions.upstreams.http.v3.HttpProtocolOptions/explicit_http_config/http2_protocol_options")
            .is_some();
    if !http2 {
        r.findings.push(finding(
            format!("{cpath} ({} → replay.etcd.upstream)", vpath.trim_start_matches('.')),
            format!("`{name}` does not speak HTTP/2: etcd is reached over gRPC; set typed_extension_protocol_options.envoy.extensions.upstreams.http.v3.HttpProtocolOptions.explicit_http_config.http2_protocol_options: {{}}"),
        ));
    }
    if cluster.get("health_checks").is_none() {
        r.lines.push(format!(
            "{cpath}: `{name}` has no health_checks: a stopped etcd member keeps receiving calls (answered 503) until it is back; see README, \"Fleet replay store\""
        ));
    }
}

/// The listener and HTTP connection manager the filter at `filter_path` sits in.
fn around_filter(boot: &Value, filter_path: &str, cfg: &Config, r: &mut Report) {
    let Some(listeners) = boot
        .pointer("/static_resources/listeners")
        .and_then(Value::as_array)
    else {
        return;
    };
    for (li, listener) in listeners.iter().enumerate() {
        let lpath = format!("static_resources.listeners[{li}]");
        if !filter_path.starts_with(&format!(".{lpath}.")) {
            continue;
        }
        // The listener's buffer must hold a whole body of limits.body_bytes and more, so that the
        // filter (not Envoy) answers an oversized one.
        let limit = listener
            .get("per_connection_buffer_limit_bytes")
            .and_then(Value::as_u64)
            .unwrap_or(ENVOY_DEFAULT_BUFFER);
        let body = cfg.limits.body_bytes as u64;
        if limit <= body {
            r.findings.push(finding(
                format!("{lpath}.per_connection_buffer_limit_bytes"),
                format!("{limit} is not above limits.body_bytes ({body}): set it above {body} (Envoy would answer 413 itself, without dcr-guard's JSON error)"),
            ));
        }
        let Some(chains) = listener.get("filter_chains").and_then(Value::as_array) else {
            continue;
        };
        for (ci, chain) in chains.iter().enumerate() {
            let cpath = format!("{lpath}.filter_chains[{ci}]");
            if !filter_path.starts_with(&format!(".{cpath}.")) {
                continue;
            }
            let filters = chain.get("filters").and_then(Value::as_array);
            for (fi, f) in filters.into_iter().flatten().enumerate() {
                let Some(hcm) = f
                    .get("typed_config")
                    .filter(|t| t.get("@type").and_then(Value::as_str) == Some(HCM))
                else {
                    continue;
                };
                let hpath = format!("{cpath}.filters[{fi}].typed_config");
                http_connection_manager(hcm, &hpath, cfg, r);
            }
            if cfg.rules.certificate_binding.is_some() && cfg.cert_source == CertSource::Connection
            {
                let tls = chain
                    .pointer("/transport_socket/typed_config")
                    .filter(|t| t.get("@type").and_then(Value::as_str) == Some(DOWNSTREAM_TLS));
                let required = tls
                    .and_then(|t| t.get("require_client_certificate"))
                    .and_then(Value::as_bool)
                    == Some(true);
                if !required {
                    r.findings.push(finding(
                        format!("{cpath}.transport_socket"),
                        "certificate_binding reads the client certificate of the connection (client_certificate.source: connection): terminate TLS here with a DownstreamTlsContext and require_client_certificate: true, or read it from x-forwarded-client-cert",
                    ));
                }
            }
        }
    }
}

fn http_connection_manager(hcm: &Value, hpath: &str, cfg: &Config, r: &mut Report) {
    for field in ["normalize_path", "merge_slashes"] {
        if hcm.get(field).and_then(Value::as_bool) != Some(true) {
            r.findings.push(finding(
                format!("{hpath}.{field}"),
                "set it to true: Envoy, the filter and the AS must see the same path",
            ));
        }
    }
    let escaped = hcm
        .get("path_with_escaped_slashes_action")
        .and_then(Value::as_str);
    if !matches!(escaped, Some("REJECT_REQUEST" | "UNESCAPE_AND_REDIRECT")) {
        r.findings.push(finding(
            format!("{hpath}.path_with_escaped_slashes_action"),
            format!(
                "{}: set REJECT_REQUEST (or UNESCAPE_AND_REDIRECT) so that %2F and %5C never reach a route",
                escaped.unwrap_or("absent (keeps escaped slashes)")
            ),
        ));
    }
    if cfg.rules.certificate_binding.is_some() && cfg.cert_source == CertSource::Xfcc {
        let fccd = hcm
            .get("forward_client_cert_details")
            .and_then(Value::as_str)
            .unwrap_or("SANITIZE");
        if fccd != "ALWAYS_FORWARD_ONLY" {
            r.findings.push(finding(
                format!("{hpath}.forward_client_cert_details"),
                format!("{fccd}: client_certificate.source is x-forwarded-client-cert, which {fccd} does not pass to the filter: set ALWAYS_FORWARD_ONLY (the proxy in front sets the header with SANITIZE_SET)"),
            ));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Istio WasmPlugin, Kong

fn istio_wasm_plugin(doc: &Value, r: &mut Report) {
    r.filters += 1;
    let plugin = doc
        .pointer("/spec/pluginConfig")
        .cloned()
        .unwrap_or(Value::Null);
    let text = if plugin.is_null() {
        String::new()
    } else {
        plugin.to_string()
    };
    if let Some(env) = secret_env(&text) {
        let passed = doc
            .pointer("/spec/vmConfig/env")
            .and_then(Value::as_array)
            .is_some_and(|e| {
                e.iter()
                    .any(|v| v.get("name").and_then(Value::as_str) == Some(env.as_str()))
            });
        if !passed {
            r.findings.push(finding(
                "spec.vmConfig.env",
                format!("the introspection secret is read from `{env}`: add {{name: {env}, valueFrom: HOST}} (the variable set on the gateway pod)"),
            ));
        }
    }
    if let Some(cfg) = validate(text.as_bytes(), "spec.pluginConfig", r) {
        if cfg.hold_headers {
            r.findings.push(finding(
                "spec.pluginConfig.hold_headers",
                "a WasmPlugin cannot set allow_on_headers_stop_iteration: set hold_headers: false, or use an EnvoyFilter (envoy/istio/envoyfilter.yaml)",
            ));
        }
    }
    match doc.pointer("/spec/failStrategy").and_then(Value::as_str) {
        // Istio's default is FAIL_CLOSE.
        None | Some("FAIL_CLOSE" | "FAIL_RELOAD") => {}
        Some(other) => r.findings.push(finding(
            "spec.failStrategy",
            format!("`{other}` does not fail closed: set FAIL_RELOAD (or FAIL_CLOSE)"),
        )),
    }
    r.lines.push(
        "WasmPlugin: clusters, listener buffer and path normalisation are Istio's (not checked here: see README \"Istio\")"
            .into(),
    );
}

fn kong(doc: &Value, r: &mut Report) {
    let mut found = Vec::new();
    walk(doc, "", 0, &mut |path, v| {
        if v.get("name").and_then(Value::as_str) == Some("dcr_guard") {
            if let Some(c) = v.get("config") {
                found.push((
                    format!("{}.config", path.trim_start_matches('.')),
                    c.clone(),
                ));
            }
        }
    });
    for (path, config) in found {
        r.filters += 1;
        // An object (validated by Kong against dcr_guard.meta.json), or the document as a string.
        let text = match &config {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let Some(cfg) = validate(text.as_bytes(), &path, r) else {
            continue;
        };
        let raw: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        walk(&raw, "", 0, &mut |p, v| {
            if let Some(u) = v.get("upstream").and_then(Value::as_str) {
                let ok = u
                    .rsplit_once(':')
                    .is_some_and(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok());
                if !ok {
                    r.findings.push(finding(
                        format!("{path}{p}.upstream"),
                        format!(
                            "`{u}`: on Kong an upstream is host:port (the keystore's host and 443)"
                        ),
                    ));
                }
            }
        });
        for (i, rule) in cfg.software_hosts.iter().enumerate() {
            if rule.pattern == dcr_guard_core::config::HostPattern::Any {
                r.findings.push(finding(
                    format!("{path}.software_jwks_hosts[{i}].host"),
                    "`*` needs a dynamic forward proxy cluster, which Kong has no equivalent of (an upstream is one host:port): list the recipients' hosts",
                ));
            }
        }
        if cfg.hold_headers {
            r.findings.push(finding(
                format!("{path}.hold_headers"),
                "Kong's kit runs with hold_headers: false (README \"Kong\"): set it",
            ));
        }
        if cfg.replay.fleet.is_some() {
            r.findings.push(finding(
                format!("{path}.replay.store"),
                "`etcd` needs gRPC callouts, which Kong's proxy-wasm host does not offer (every registration would get 503): use `local`",
            ));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Walking documents

/// Call `f` on every object of `v` with its path (`.a.b[0].c`), depth-bounded.
fn walk(v: &Value, path: &str, depth: usize, f: &mut dyn FnMut(&str, &Value)) {
    if depth > MAX_DEPTH {
        return;
    }
    match v {
        Value::Object(m) => {
            f(path, v);
            for (k, c) in m {
                walk(c, &format!("{path}.{k}"), depth + 1, f);
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                walk(c, &format!("{path}[{i}]"), depth + 1, f);
            }
        }
        _ => {}
    }
}

/// A YAML node as JSON (the filter configuration is JSON; Istio and Kong give it as YAML).
fn yaml_to_json(y: &Yaml, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!("nested deeper than {MAX_DEPTH} levels"));
    }
    Ok(match y {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::Real(text) => {
            let f: f64 = text
                .parse()
                .map_err(|_| format!("`{text}` is not a number"))?;
            serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
        }
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Array(a) => Value::Array(
            a.iter()
                .map(|c| yaml_to_json(c, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Hash(h) => {
            let mut m = serde_json::Map::new();
            for (k, v) in h {
                let key = match k {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    other => return Err(format!("unsupported YAML key {other:?}")),
                };
                m.insert(key, yaml_to_json(v, depth + 1)?);
            }
            Value::Object(m)
        }
        Yaml::Alias(_) => return Err("YAML aliases are not supported".into()),
        Yaml::BadValue => return Err("a YAML value could not be read".into()),
    })
}
