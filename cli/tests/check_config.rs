//! `dcr-guard check-config`: a configuration file (the filter's parser and messages) and
//! `--envoy` on the kits in envoy/ and on broken variants, each check failing on its own.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{run, run_env, Scratch};
use dcr_guard_core::config::Config;
use dcr_guard_testkit::dcr::Tpp;
use dcr_guard_testkit::keys::TestKey;
use serde_json::{json, Value};

fn uk_config() -> Value {
    Tpp::new(TestKey::ec("dir"), TestKey::ec("tpp")).filter_config("directory", "software")
}

#[test]
fn a_configuration_file_is_judged_by_the_filters_parser_with_its_messages() {
    let dir = Scratch::new("check");
    let mut bad_profile = uk_config();
    bad_profile["profile"] = json!("mars");
    let mut unknown = uk_config();
    unknown["rulez"] = json!({});
    let mut bad_url = uk_config();
    bad_url["directories"][0]["jwks"][0]["url"] = json!("http://keystore.example/jwks");
    let mut bad_limit = uk_config();
    bad_limit["limits"] = json!({"body_bytes": 10});
    // (name, document, valid)
    let cases: Vec<(&str, String, bool)> = vec![
        ("uk", uk_config().to_string(), true),
        ("empty object", "{}".into(), false),
        ("not JSON", "profile: uk".into(), false),
        ("trailing data", format!("{} x", uk_config()), false),
        ("unknown profile", bad_profile.to_string(), false),
        ("unknown field", unknown.to_string(), false),
        ("http JWKS", bad_url.to_string(), false),
        ("body limit too small", bad_limit.to_string(), false),
    ];
    for (name, doc, valid) in cases {
        let path = dir.write("guard.json", &doc);
        let out = run(&["check-config", &path]);
        // Exactly the filter's verdict and message (what on_configure logs after `dcr-guard: `).
        let line = match Config::from_json(doc.as_bytes()) {
            Ok(cfg) => format!(
                "{path}: valid (profile={} path={} directories={} hold_headers={} report_only={})",
                cfg.profile.as_str(),
                cfg.path,
                cfg.directories.len(),
                cfg.hold_headers,
                cfg.report_only
            ),
            Err(e) => format!("{path}: {e}"),
        };
        assert_eq!(out.stdout, format!("{line}\n"), "{name}");
        assert_eq!(
            out.code,
            if valid { 0 } else { 1 },
            "{name}: {}",
            out.stdout
        );
        assert!(
            out.stdout.contains("valid (") == valid,
            "{name}: {}",
            out.stdout
        );
    }
}

#[test]
fn secrets_named_by_environment_variable_come_from_the_clis_environment() {
    let dir = Scratch::new("secret");
    let env = SECRET;
    let mut cfg = uk_config();
    cfg["rules"]["token_client_binding"] = json!({
        "mode": "introspection",
        "introspection": {"url": "https://as.bank.test/introspect", "upstream": "as",
                          "client_id": "dcr guard", "client_secret_env": env},
        "scope": "dcr"
    });
    let path = dir.write("guard.json", cfg.to_string());
    let set = run_env(&["check-config", &path], &[(env, "s3cr3t")]);
    assert_eq!(set.code, 0, "{}", set.stdout);
    assert!(!set.stdout.contains("s3cr3t"), "the secret is never echoed");
    let unset = run_env(&["check-config", &path], &[]);
    assert_eq!(unset.code, 1);
    assert!(
        unset
            .stdout
            .contains(&format!("environment variable `{env}` is not set")),
        "{}",
        unset.stdout
    );
}

fn repo(rel: &str) -> String {
    format!("{}/../{rel}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_kit_in_envoy_passes() {
    for kit in [
        "envoy/demo.yaml",
        "envoy/compose-envoy.yaml",
        "envoy/production.yaml",
        "envoy/ext-authz.yaml",
        "envoy/istio/envoyfilter.yaml",
        "envoy/istio/wasmplugin.yaml",
        "envoy/kong/kong.yaml",
    ] {
        let out = run(&["check-config", "--envoy", &repo(kit)]);
        assert_eq!(out.code, 0, "{kit}: {}{}", out.stdout, out.stderr);
        assert!(
            out.stdout.ends_with("ok (1 dcr-guard filter(s) checked)\n"),
            "{kit}: {}",
            out.stdout
        );
    }
}

const WASM: &str = "/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/http_filters/0/typed_config/config";
const HCM: &str = "/static_resources/listeners/0/filter_chains/0/filters/0/typed_config";
const HCM_PATH: &str = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config";
const WASM_PATH: &str = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.config";

/// A bootstrap with everything right (JSON is YAML), holding `filter` as the configuration.
fn bootstrap(filter: &Value) -> Value {
    json!({
        "static_resources": {
            "listeners": [{
                "name": "ingress",
                "per_connection_buffer_limit_bytes": 1_048_576,
                "filter_chains": [{
                    "filters": [{
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                            "normalize_path": true,
                            "merge_slashes": true,
                            "path_with_escaped_slashes_action": "REJECT_REQUEST",
                            "http_filters": [{
                                "name": "envoy.filters.http.wasm",
                                "typed_config": {
                                    "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                                    "config": {
                                        "name": "dcr_guard",
                                        "root_id": "dcr_guard",
                                        "allow_on_headers_stop_iteration": true,
                                        "failure_policy": "FAIL_RELOAD",
                                        "configuration": {
                                            "@type": "type.googleapis.com/google.protobuf.StringValue",
                                            "value": filter.to_string()
                                        }
                                    }
                                }
                            }, {"name": "envoy.filters.http.router"}]
                        }
                    }]
                }]
            }],
            "clusters": [{"name": "directory"}, {"name": "software"}, {"name": "as"}]
        }
    })
}

fn set(v: &mut Value, pointer: &str, field: &str, value: Value) {
    v.pointer_mut(pointer).unwrap()[field] = value;
}

fn remove(v: &mut Value, pointer: &str, field: &str) {
    v.pointer_mut(pointer)
        .unwrap()
        .as_object_mut()
        .unwrap()
        .remove(field);
}

/// The filter configuration inside a bootstrap, edited.
fn with_filter(b: &mut Value, edit: impl FnOnce(&mut Value)) {
    let mut f: Value = serde_json::from_str(
        b.pointer(&format!("{WASM}/configuration/value"))
            .unwrap()
            .as_str()
            .unwrap(),
    )
    .unwrap();
    edit(&mut f);
    set(
        b,
        &format!("{WASM}/configuration"),
        "value",
        json!(f.to_string()),
    );
}

type Edit = Box<dyn Fn(&mut Value)>;

/// The README's dynamic forward proxy cluster, named `software`.
fn dfp_cluster() -> Value {
    json!({
        "name": "software",
        "lb_policy": "CLUSTER_PROVIDED",
        "cluster_type": {
            "name": "envoy.clusters.dynamic_forward_proxy",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.clusters.dynamic_forward_proxy.v3.ClusterConfig",
                "dns_cache_config": {"name": "adr_jwks_hosts"}
            }
        },
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "upstream_http_protocol_options": {"auto_sni": true, "auto_san_validation": true}
            }
        },
        "transport_socket": {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"}
        }
    })
}

#[test]
fn any_software_host_through_the_readme_cluster_passes() {
    let dir = Scratch::new("dfp");
    let mut b = bootstrap(&uk_config());
    with_filter(&mut b, |f| {
        f["software_jwks_hosts"] = json!([{"host": "*", "upstream": "software"}])
    });
    b["static_resources"]["clusters"][1] = dfp_cluster();
    let path = dir.write("dfp.yaml", b.to_string());
    let out = run(&["check-config", "--envoy", &path]);
    assert_eq!(out.code, 0, "{}", out.stdout);
}

const SECRET: &str = "DCR_GUARD_CLI_TEST_SECRET";

/// Token binding by introspection, its client secret in `SECRET`.
fn introspection(f: &mut Value) {
    f["rules"]["token_client_binding"] = json!({
        "mode": "introspection",
        "introspection": {"url": "https://as.bank.test/introspect", "upstream": "as",
                          "client_id": "dcr guard", "client_secret_env": SECRET},
        "scope": "dcr"
    });
}

#[test]
fn an_introspection_secret_listed_for_the_vm_passes() {
    let dir = Scratch::new("secret-ok");
    let mut b = bootstrap(&uk_config());
    with_filter(&mut b, introspection);
    set(
        &mut b,
        WASM,
        "vm_config",
        json!({"environment_variables": {"host_env_keys": [SECRET]}}),
    );
    let path = dir.write("ok.yaml", b.to_string());
    let out = run_env(&["check-config", "--envoy", &path], &[(SECRET, "s3cr3t")]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(!out.stdout.contains("s3cr3t"));
    // And without the variable in the CLI's environment: the filter's own refusal.
    let out = run(&["check-config", "--envoy", &path]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout
            .contains(&format!("environment variable `{SECRET}` is not set")),
        "{}",
        out.stdout
    );
}

#[test]
fn each_envoy_check_fails_on_its_broken_bootstrap() {
    let dir = Scratch::new("envoy");
    let good = bootstrap(&uk_config());
    let path = dir.write("good.yaml", good.to_string());
    let out = run(&["check-config", "--envoy", &path]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    let value_path = format!("{WASM_PATH}.configuration.value");
    // (name, edit, the finding's field path, words of its message)
    let cases: Vec<(&str, Edit, String, &str)> = vec![
        (
            "held headers without allow_on_headers_stop_iteration",
            Box::new(|b| remove(b, WASM, "allow_on_headers_stop_iteration")),
            format!("{WASM_PATH}.allow_on_headers_stop_iteration"),
            "set allow_on_headers_stop_iteration: true",
        ),
        (
            "upstream that is not a cluster",
            Box::new(|b| {
                with_filter(b, |f| {
                    f["directories"][0]["jwks"][0]["upstream"] = json!("nowhere")
                })
            }),
            format!("{value_path} → directories[0].jwks[0].upstream"),
            "`nowhere` is not a cluster of this bootstrap",
        ),
        (
            "software host upstream that is not a cluster",
            Box::new(|b| {
                with_filter(b, |f| {
                    f["software_jwks_hosts"][0]["upstream"] = json!("elsewhere")
                })
            }),
            format!("{value_path} → software_jwks_hosts[0].upstream"),
            "`elsewhere` is not a cluster",
        ),
        (
            "any software host through a plain cluster",
            Box::new(|b| {
                with_filter(b, |f| {
                    f["software_jwks_hosts"] = json!([{"host": "*", "upstream": "software"}])
                })
            }),
            "static_resources.clusters[1].cluster_type".into(),
            "must be an envoy.clusters.dynamic_forward_proxy cluster with dns_cache_config",
        ),
        (
            "any software host through a DFP cluster that does not verify the host",
            Box::new(|b| {
                with_filter(b, |f| {
                    f["software_jwks_hosts"] = json!([{"host": "*", "upstream": "software"}])
                });
                let mut dfp = dfp_cluster();
                dfp["typed_extension_protocol_options"]
                    ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
                    ["upstream_http_protocol_options"]["auto_san_validation"] = json!(false);
                b["static_resources"]["clusters"][1] = dfp;
            }),
            "static_resources.clusters[1]".into(),
            "auto_san_validation: true",
        ),
        (
            "buffer below the body limit",
            Box::new(|b| {
                set(
                    b,
                    "/static_resources/listeners/0",
                    "per_connection_buffer_limit_bytes",
                    json!(32768),
                )
            }),
            "static_resources.listeners[0].per_connection_buffer_limit_bytes".into(),
            "32768 is not above limits.body_bytes (65536)",
        ),
        (
            "Envoy's default buffer with the largest body limit",
            Box::new(|b| {
                remove(
                    b,
                    "/static_resources/listeners/0",
                    "per_connection_buffer_limit_bytes",
                );
                with_filter(b, |f| f["limits"] = json!({"body_bytes": 1_048_576}));
            }),
            "static_resources.listeners[0].per_connection_buffer_limit_bytes".into(),
            "1048576 is not above limits.body_bytes (1048576)",
        ),
        (
            "XFCC source with Envoy's default forward_client_cert_details",
            Box::new(|b| {
                with_filter(b, |f| {
                    f["client_certificate"] = json!({"source": "x-forwarded-client-cert"});
                    f["rules"]["certificate_binding"] = json!({"enabled": true});
                })
            }),
            format!("{HCM_PATH}.forward_client_cert_details"),
            "SANITIZE: client_certificate.source is x-forwarded-client-cert",
        ),
        (
            "connection source without client-certificate TLS",
            Box::new(|b| {
                with_filter(b, |f| {
                    f["rules"]["certificate_binding"] = json!({"enabled": true})
                })
            }),
            "static_resources.listeners[0].filter_chains[0].transport_socket".into(),
            "require_client_certificate: true",
        ),
        (
            "normalize_path off",
            Box::new(|b| set(b, HCM, "normalize_path", json!(false))),
            format!("{HCM_PATH}.normalize_path"),
            "set it to true",
        ),
        (
            "merge_slashes absent",
            Box::new(|b| remove(b, HCM, "merge_slashes")),
            format!("{HCM_PATH}.merge_slashes"),
            "set it to true",
        ),
        (
            "escaped slashes kept",
            Box::new(|b| {
                set(
                    b,
                    HCM,
                    "path_with_escaped_slashes_action",
                    json!("KEEP_UNCHANGED"),
                )
            }),
            format!("{HCM_PATH}.path_with_escaped_slashes_action"),
            "KEEP_UNCHANGED: set REJECT_REQUEST",
        ),
        (
            "failure_policy FAIL_OPEN",
            Box::new(|b| set(b, WASM, "failure_policy", json!("FAIL_OPEN"))),
            format!("{WASM_PATH}.failure_policy"),
            "`FAIL_OPEN` does not fail closed",
        ),
        (
            "legacy fail_open",
            Box::new(|b| {
                remove(b, WASM, "failure_policy");
                set(b, WASM, "fail_open", json!(true));
            }),
            format!("{WASM_PATH}.fail_open"),
            "fails open",
        ),
        (
            "introspection secret not passed to the VM",
            Box::new(|b| with_filter(b, introspection)),
            format!("{WASM_PATH}.vm_config.environment_variables.host_env_keys"),
            "the introspection secret is read from `DCR_GUARD_CLI_TEST_SECRET`: list it here",
        ),
        (
            "introspection secret passed under another name",
            Box::new(|b| {
                with_filter(b, introspection);
                set(
                    b,
                    WASM,
                    "vm_config",
                    json!({"environment_variables": {"host_env_keys": ["OTHER"]}}),
                );
            }),
            format!("{WASM_PATH}.vm_config.environment_variables.host_env_keys"),
            "list it here",
        ),
        (
            "fleet replay store cluster without HTTP/2",
            Box::new(|b| {
                with_filter(b, |f| {
                    f["replay"] = json!({"store": "etcd", "etcd": {"upstream": "etcd"}})
                });
                b.pointer_mut("/static_resources/clusters")
                    .unwrap()
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "etcd", "health_checks": [{"tcp_health_check": {}}]}));
            }),
            format!("static_resources.clusters[3] ({value_path} → replay.etcd.upstream)"),
            "does not speak HTTP/2",
        ),
        (
            "invalid filter configuration",
            Box::new(|b| with_filter(b, |f| f["profile"] = json!("mars"))),
            value_path.clone(),
            "invalid configuration field `profile`",
        ),
    ];
    for (name, edit, field, says) in cases {
        let mut b = good.clone();
        edit(&mut b);
        let path = dir.write("broken.yaml", b.to_string());
        let out = run_env(&["check-config", "--envoy", &path], &[(SECRET, "s3cr3t")]);
        assert_eq!(out.code, 1, "{name}: {}", out.stdout);
        let findings: Vec<&str> = out
            .stdout
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("{path}: ")))
            .filter(|l| !l.contains(": valid (") && !l.ends_with("finding(s)"))
            .collect();
        assert_eq!(
            findings.len(),
            1,
            "{name}: one finding expected: {}",
            out.stdout
        );
        let (at, message) = findings[0].split_once(": ").unwrap();
        assert_eq!(at, field, "{name}");
        assert!(message.contains(says), "{name}: {message}");
        assert!(
            out.stdout.ends_with("1 finding(s)\n"),
            "{name}: {}",
            out.stdout
        );
    }
}

#[test]
fn istio_and_kong_findings() {
    let dir = Scratch::new("istio-kong");
    let plugin = |hold: bool, strategy: &str| {
        let mut cfg = uk_config();
        cfg["hold_headers"] = json!(hold);
        json!({"apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin",
               "spec": {"failStrategy": strategy, "pluginConfig": cfg}})
    };
    let kong = |upstream: &str, hold: bool| {
        let mut cfg = uk_config();
        cfg["hold_headers"] = json!(hold);
        cfg["directories"][0]["jwks"][0]["upstream"] = json!(upstream);
        cfg["software_jwks_hosts"][0]["upstream"] = json!("keystore.tpp.test:443");
        json!({"_format_version": "3.0", "services": [{"routes": [{"filter_chains": [
            {"filters": [{"name": "dcr_guard", "config": cfg}]}]}]}]})
    };
    // (name, document, the findings' field paths)
    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        ("plugin ok", plugin(false, "FAIL_RELOAD"), vec![]),
        ("plugin holds headers", plugin(true, "FAIL_CLOSE"), vec!["spec.pluginConfig.hold_headers"]),
        ("plugin fails open", plugin(false, "FAIL_OPEN"), vec!["spec.failStrategy"]),
        (
            "plugin's introspection secret not passed",
            {
                let mut p = plugin(false, "FAIL_RELOAD");
                introspection(&mut p["spec"]["pluginConfig"]);
                p
            },
            vec!["spec.vmConfig.env"],
        ),
        (
            "plugin's introspection secret passed",
            {
                let mut p = plugin(false, "FAIL_RELOAD");
                introspection(&mut p["spec"]["pluginConfig"]);
                p["spec"]["vmConfig"] = json!({"env": [{"name": SECRET, "valueFrom": "HOST"}]});
                p
            },
            vec![],
        ),
        ("kong ok", kong("keystore.directory.test:443", false), vec![]),
        (
            "kong cluster-style upstream",
            kong("directory", false),
            vec!["services[0].routes[0].filter_chains[0].filters[0].config.directories[0].jwks[0].upstream"],
        ),
        (
            "kong with any software JWKS host",
            {
                let mut k = kong("keystore.directory.test:443", false);
                k["services"][0]["routes"][0]["filter_chains"][0]["filters"][0]["config"]
                    ["software_jwks_hosts"] = json!([{"host": "*", "upstream": "x.test:443"}]);
                k
            },
            vec!["services[0].routes[0].filter_chains[0].filters[0].config.software_jwks_hosts[0].host"],
        ),
        (
            "kong holds headers",
            kong("keystore.directory.test:443", true),
            vec!["services[0].routes[0].filter_chains[0].filters[0].config.hold_headers"],
        ),
        (
            "kong with the fleet replay store",
            {
                let mut k = kong("keystore.directory.test:443", false);
                k["services"][0]["routes"][0]["filter_chains"][0]["filters"][0]["config"]["replay"] =
                    json!({"store": "etcd", "etcd": {"upstream": "etcd.db.test:2379"}});
                k
            },
            vec!["services[0].routes[0].filter_chains[0].filters[0].config.replay.store"],
        ),
    ];
    for (name, doc, want) in cases {
        let path = dir.write("doc.yaml", doc.to_string());
        let out = run_env(&["check-config", "--envoy", &path], &[(SECRET, "s3cr3t")]);
        assert_eq!(
            out.code,
            if want.is_empty() { 0 } else { 1 },
            "{name}: {}",
            out.stdout
        );
        for field in want {
            assert!(
                out.stdout.contains(&format!("{path}: {field}: ")),
                "{name}: {field}: {}",
                out.stdout
            );
        }
    }
    // `*` is a valid configuration (the Envoy kit's), refused for Kong for what it is.
    let mut k = kong("keystore.directory.test:443", false);
    k["services"][0]["routes"][0]["filter_chains"][0]["filters"][0]["config"]
        ["software_jwks_hosts"] = json!([{"host": "*", "upstream": "x.test:443"}]);
    let path = dir.write("any.yaml", k.to_string());
    let out = run(&["check-config", "--envoy", &path]);
    assert!(
        out.stdout
            .contains("`*` needs a dynamic forward proxy cluster"),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains("invalid configuration"),
        "{}",
        out.stdout
    );
    let none = dir.write("none.yaml", "kind: ServiceEntry\n");
    let out = run(&["check-config", "--envoy", &none]);
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains("no dcr-guard filter found"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_fleet_replay_store_cluster_with_http2_passes() {
    let dir = Scratch::new("etcd-ok");
    let mut b = bootstrap(&uk_config());
    with_filter(&mut b, |f| {
        f["replay"] = json!({"store": "etcd", "etcd": {"upstream": "etcd"}})
    });
    b.pointer_mut("/static_resources/clusters")
        .unwrap()
        .as_array_mut()
        .unwrap()
        .push(json!({
            "name": "etcd",
            "health_checks": [{"tcp_health_check": {}}],
            "typed_extension_protocol_options": {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "explicit_http_config": {"http2_protocol_options": {}}
                }
            }
        }));
    let path = dir.write("ok.yaml", b.to_string());
    let out = run(&["check-config", "--envoy", &path]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    // Not a cluster of the bootstrap at all: named.
    with_filter(&mut b, |f| {
        f["replay"]["etcd"]["upstream"] = json!("etcd-fleet")
    });
    let path = dir.write("missing.yaml", b.to_string());
    let out = run(&["check-config", "--envoy", &path]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout
            .contains("replay.etcd.upstream: `etcd-fleet` is not a cluster"),
        "{}",
        out.stdout
    );
}
