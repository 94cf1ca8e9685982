//! dcr-guard's metrics the way operators watch them, with real tools:
//!
//! - the `stats_tags` recipe is in every Envoy kit and in the Istio kit (one recipe);
//! - prometheus/alerts.yaml passes `promtool check rules` and its unit tests
//!   (`promtool test rules prometheus/alerts.test.yaml`);
//! - grafana/dcr-guard.json is a well-formed dashboard;
//! - a real Envoy with the built filter, the kits' recipe and the stats-only listener of
//!   prometheus/envoy-stats-listener.yaml (it serves `GET /stats/prometheus` and nothing else of the
//!   admin interface), scraped through that listener by a real Prometheus: every dcr-guard counter
//!   arrives under its Prometheus name with the value
//!   Envoy counts (failures and skips as `dcr_guard_failed{rule="…"}`, never
//!   `dcr_guard_failed_<rule>`; rules that never failed as 0), every dashboard query evaluates to a
//!   non-empty result, and every alert rule, loaded into that Prometheus, evaluates without error.
//!
//! Needs the built filter, Envoy, and the Debian package `prometheus` (`make test` provides them).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::dcr::{corrupt_signature, Tpp};
use common::http::free_port;
use common::keys::TestKey;
use common::prometheus::{promtool, Prometheus};
use common::{yaml, Envoy, EnvoyConfig, Reply, TestServer, DIRECTORY_JWKS_PATH};
use dcr_guard_core::metrics;
use serde_json::{json, Value};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The kits' `stats_config` (envoy/production.yaml).
fn recipe() -> Value {
    let v = yaml::file("envoy/production.yaml")["stats_config"].clone();
    assert!(
        v.is_object(),
        "envoy/production.yaml has no stats_config (the stats_tags recipe)"
    );
    v
}

fn dashboard() -> Value {
    let p = repo().join("grafana/dcr-guard.json");
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap())
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()))
}

/// Every (panel title, refId, expr) of the dashboard.
fn dashboard_queries(d: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        let title = p["title"].as_str().unwrap().to_string();
        for t in p["targets"].as_array().unwrap() {
            out.push((
                title.clone(),
                t["refId"].as_str().unwrap().to_string(),
                t["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

/// A dashboard query as Prometheus evaluates it once Grafana has filled in its variables.
fn grafana_expand(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__range", "5m")
        .replace("$instance", ".*")
        .replace("$filter", ".*")
}

// ---------------------------------------------------------------------------------------------
// The files

#[test]
fn every_kit_uses_the_one_stats_tags_recipe() {
    let recipe = recipe();
    let tags: BTreeSet<&str> = recipe["stats_tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tag_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        tags,
        BTreeSet::from(["dcr_guard_instance", "rule", "directory", "wasm_plugin"])
    );
    for kit in [
        "envoy/demo.yaml",
        "envoy/compose-envoy.yaml",
        "envoy/ext-authz.yaml",
    ] {
        assert_eq!(
            yaml::file(kit)["stats_config"],
            recipe,
            "{kit}: stats_config differs from envoy/production.yaml's"
        );
    }
    // The README shows the same recipe.
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    for tag in recipe["stats_tags"].as_array().unwrap() {
        let line = format!("regex: '{}'", tag["regex"].as_str().unwrap());
        assert!(readme.contains(&line), "README.md lacks `{line}`");
    }
    let istio = yaml::file("envoy/istio/stats.yaml");
    assert_eq!(istio["kind"], "EnvoyFilter");
    assert_eq!(
        istio["spec"]["workloadSelector"]["labels"]["istio"],
        "ingressgateway"
    );
    let patch = &istio["spec"]["configPatches"][0];
    assert_eq!(patch["applyTo"], "BOOTSTRAP");
    assert_eq!(patch["patch"]["operation"], "MERGE");
    assert_eq!(
        patch["patch"]["value"],
        json!({ "stats_config": { "stats_tags": recipe["stats_tags"] } }),
        "envoy/istio/stats.yaml must merge the Envoy kits' stats_tags"
    );
}

#[test]
fn alert_rules_pass_promtool_check() {
    let out = promtool(&repo(), &["check", "rules", "prometheus/alerts.yaml"]);
    assert!(
        out.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn alert_rules_pass_their_unit_tests() {
    let out = promtool(
        &repo().join("prometheus"),
        &["test", "rules", "alerts.test.yaml"],
    );
    assert!(
        out.status.success(),
        "promtool test rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Every alert of the rule file has a unit test.
    let rules = yaml::file("prometheus/alerts.yaml");
    let tests = yaml::file("prometheus/alerts.test.yaml");
    let tested: BTreeSet<String> = tests["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().unwrap().iter())
        .filter(|c| !c["exp_alerts"].as_array().unwrap().is_empty())
        .map(|c| c["alertname"].as_str().unwrap().to_string())
        .collect();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let name = rule["alert"].as_str().unwrap();
            assert!(
                tested.contains(name),
                "alert {name} has no firing case in alerts.test.yaml"
            );
        }
    }
}

#[test]
fn dashboard_is_well_formed() {
    let d = dashboard();
    assert_eq!(d["uid"], "dcr-guard");
    let vars: BTreeSet<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(vars, BTreeSet::from(["datasource", "instance", "filter"]));
    let mut ids = BTreeSet::new();
    for p in d["panels"].as_array().unwrap() {
        let title = p["title"].as_str().unwrap();
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "{title}: duplicate id"
        );
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no query");
        let refs: BTreeSet<&str> = targets
            .iter()
            .map(|t| t["refId"].as_str().unwrap())
            .collect();
        assert_eq!(refs.len(), targets.len(), "{title}: duplicate refId");
        for t in targets {
            let expr = t["expr"].as_str().unwrap();
            assert!(
                expr.contains("instance=~\"$instance\""),
                "{title}: {expr} ignores the instance selector"
            );
            assert!(
                expr.contains("dcr_guard_instance=~\"$filter\""),
                "{title}: {expr} ignores the filter (stats.instance) selector"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Envoy → Prometheus

/// Polls `f` every 250 ms until it returns Some, for at most `limit`.
fn eventually<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The Prometheus series (name and labels) Envoy's `wasmcustom.dcr_guard.…` counter or gauge
/// becomes with the recipe.
fn prometheus_series(envoy_name: &str) -> String {
    let name = envoy_name.strip_prefix("wasmcustom.").unwrap();
    for (kind, label) in [
        ("failed", "rule"),
        ("skipped", "rule"),
        ("jwks_age_seconds", "directory"),
    ] {
        if let Some(value) = name.strip_prefix(&format!("dcr_guard.{kind}.")) {
            return format!("dcr_guard_{kind}{{{label}=\"{value}\"}}");
        }
    }
    name.replace('.', "_")
}

#[test]
fn prometheus_scrapes_labelled_dcr_guard_series_from_envoy() {
    // A keystore that can go down, an AS that answers 201.
    let tpp = Tpp::new(TestKey::ec("dir-1"), TestKey::ec("tpp-1"));
    let down = Arc::new(Mutex::new(false));
    let (directory_doc, software_doc, software_path) =
        (tpp.directory_jwks(), tpp.software_jwks(), tpp.jwks_path());
    let d = Arc::clone(&down);
    let keystore = TestServer::start(move |r| {
        if *d.lock().unwrap() {
            Reply::text(500, "text/plain", "down")
        } else if r.path == DIRECTORY_JWKS_PATH {
            Reply::json(200, &directory_doc)
        } else if r.path == software_path {
            Reply::json(200, &software_doc)
        } else {
            Reply::status(404)
        }
    });
    let upstream = TestServer::always(Reply::json(201, &json!({"client_id": "c1"})));
    let mut filter = tpp.filter_config("keystore", "keystore");
    // Short JWKS lifetimes, so that an outage is served stale and then refused within seconds.
    filter["jwks_cache"] =
        json!({"min_ttl_seconds": 1, "default_ttl_seconds": 1, "stale_if_error_seconds": 3});
    // The kits' stats_tags recipe, and the stats-only listener of
    // prometheus/envoy-stats-listener.yaml on free loopback ports (the admin interface on a fixed
    // one, which that listener forwards to).
    let recipe = recipe();
    let (stats_port, admin_port) = (free_port(), free_port());
    let mut stats = yaml::file("prometheus/envoy-stats-listener.yaml");
    stats["listeners"][0]["address"] =
        json!({"socket_address": {"address": "127.0.0.1", "port_value": stats_port}});
    let admin_address = stats["clusters"][0]
        .pointer_mut("/load_assignment/endpoints/0/lb_endpoints/0/endpoint/address/socket_address")
        .unwrap();
    assert_eq!(admin_address["port_value"], 9901);
    admin_address["port_value"] = json!(admin_port);
    let cfg = EnvoyConfig::new(filter, upstream.port())
        .cluster("keystore", keystore.port())
        .edit(move |b| {
            b["stats_config"] = recipe.clone();
            b["admin"]["address"]["socket_address"]["port_value"] = json!(admin_port);
            let resources = &mut b["static_resources"];
            for kind in ["listeners", "clusters"] {
                let add = stats[kind].as_array().unwrap().clone();
                resources[kind].as_array_mut().unwrap().extend(add);
            }
        });
    let envoy = Envoy::start(&cfg);
    assert_eq!(envoy.admin_port, admin_port);
    // The stats listener serves the metrics and nothing else of the admin interface.
    let scraped = common::http::get(stats_port, "/stats/prometheus");
    assert_eq!(scraped.status, 200);
    assert!(scraped.text().contains("# TYPE "), "{}", scraped.text());
    for path in [
        "/stats",
        "/config_dump",
        "/quitquitquit",
        "/stats/prometheus/x",
    ] {
        assert_eq!(common::http::get(stats_port, path).status, 404, "{path}");
    }
    let post = common::http::send(stats_port, "POST", "/stats/prometheus", &[], b"");
    assert_eq!(post.status, 404, "POST /stats/prometheus");

    // Prometheus scrapes /stats/prometheus through the stats listener every second and evaluates
    // the alert rules.
    let rules = repo().join("prometheus/alerts.yaml");
    let prometheus = Prometheus::start(&format!(
        "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\n\
         rule_files: [\"{}\"]\n\
         scrape_configs:\n\
         - job_name: envoy\n  metrics_path: /stats/prometheus\n  \
         static_configs: [{{ targets: [\"127.0.0.1:{}\"] }}]\n",
        rules.display(),
        stats_port
    ));

    // Traffic: accepted, rejected by three rules, served stale, refused 503.
    let post = |body: &str, content_type: &str| {
        envoy
            .send(
                "POST",
                "/register",
                &[("content-type", content_type)],
                body.as_bytes(),
            )
            .status
    };
    let jwt = "application/jwt";
    for _ in 0..3 {
        assert_eq!(post(&tpp.request(), jwt), 201);
    }
    for _ in 0..2 {
        let wrong_aud = tpp.request_with(|c| c["aud"] = json!("someone-else"));
        assert_eq!(post(&wrong_aud, jwt), 400);
    }
    let forged_ssa = corrupt_signature(&tpp.ssa());
    let forged = tpp.key.sign_default(&tpp.request_claims(&forged_ssa));
    assert_eq!(post(&forged, jwt), 400);
    assert_eq!(post(&tpp.request(), "text/plain"), 400);
    *down.lock().unwrap() = true;
    std::thread::sleep(Duration::from_millis(1600));
    assert_eq!(post(&tpp.request(), jwt), 201, "served stale");
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(post(&tpp.request(), jwt), 503, "past the stale bound");

    // What Envoy counted, as Prometheus series (Envoy name, value); the gauges apart (they go
    // down as well as up).
    let (gauges, counted): (Vec<_>, Vec<_>) = envoy
        .stats("^wasmcustom\\.dcr_guard\\.")
        .into_iter()
        .partition(|(n, _)| metrics::is_gauge(n.strip_prefix("wasmcustom.").unwrap()));
    let counted: BTreeMap<String, (String, u64)> = counted
        .into_iter()
        .map(|(n, v)| (prometheus_series(&n), (n, v)))
        .collect();
    let gauges: BTreeSet<String> = gauges.iter().map(|(n, _)| prometheus_series(n)).collect();
    assert_eq!(
        gauges,
        BTreeSet::from([
            "dcr_guard_jwks_age_seconds{directory=\"0\"}".to_string(),
            "dcr_guard_replay_capacity".to_string(),
            "dcr_guard_replay_entries".to_string(),
            "dcr_guard_replay_fullest_bucket_percent".to_string(),
        ])
    );
    for series in [
        "dcr_guard_failed{rule=\"audience\"}",
        "dcr_guard_failed{rule=\"ssa_signature\"}",
        "dcr_guard_failed{rule=\"envelope\"}",
        "dcr_guard_accepted",
        "dcr_guard_dependency_failures",
        "dcr_guard_jwks_stale_serves",
    ] {
        assert!(
            counted.contains_key(series),
            "Envoy did not count {series}: {counted:?}"
        );
    }
    assert_eq!(counted["dcr_guard_failed{rule=\"audience\"}"].1, 2);
    assert_eq!(counted["dcr_guard_accepted"].1, 4);

    // Prometheus has every one of them, labelled, with Envoy's value once scraped: at least what
    // Envoy had counted after the traffic, at most what it counts now (background JWKS refreshes
    // keep counting fetches).
    for (series, (envoy_name, before)) in &counted {
        let got = eventually(Duration::from_secs(30), || {
            let now = envoy.stat(envoy_name)?;
            let v = prometheus.value(series)?;
            (v >= *before as f64 && v <= now as f64).then_some(v)
        });
        assert!(
            got.is_some(),
            "Prometheus: {series} is {:?}, Envoy counted {before} ({envoy_name})\n{}",
            prometheus.query(series),
            prometheus.log()
        );
    }
    assert_eq!(
        prometheus.value("dcr_guard_failed{rule=\"audience\"}"),
        Some(2.0),
        "the audience failures sent"
    );
    // Defined when the filter was configured: a rule that never failed is 0, not absent.
    assert_eq!(
        prometheus.value("dcr_guard_failed{rule=\"redirect_uri_subset\"}"),
        Some(0.0),
        "a rule that never failed"
    );
    let unlabelled = prometheus
        .query("{__name__=~\"dcr_guard_(failed|skipped)_.+\"}")
        .unwrap();
    assert!(
        unlabelled.is_empty(),
        "per-rule metric names instead of a rule label: {unlabelled:?}"
    );
    // The gauges: the store's capacity (64 × 256 by default), the registrations' pairs live in it
    // (the 4 accepted registrations' request `jti`), the directory's JWKS age (one directory: `directory="0"`), all labelled.
    assert_eq!(prometheus.value("dcr_guard_replay_capacity"), Some(16384.0));
    let entries = eventually(Duration::from_secs(20), || {
        prometheus
            .value("dcr_guard_replay_entries")
            .filter(|v| *v >= 4.0)
    });
    assert_eq!(
        entries,
        Some(4.0),
        "{:?}",
        prometheus.query("dcr_guard_replay_entries")
    );
    assert_eq!(
        prometheus.value("dcr_guard_replay_fullest_bucket_percent"),
        Some(0.0),
        "4 pairs in 64 buckets of 256"
    );
    assert!(
        prometheus
            .value("dcr_guard_jwks_age_seconds{directory=\"0\"}")
            .is_some(),
        "{:?}",
        prometheus.query("{__name__=~\"dcr_guard_jwks_age_seconds.*\"}")
    );
    // The histograms: one JWKS fetch latency per fetch Envoy counted.
    let fetches = eventually(Duration::from_secs(20), || {
        let n = prometheus.value("dcr_guard_jwks_fetch_ms_count")?;
        (n >= 2.0).then_some(n)
    });
    assert!(
        fetches.is_some(),
        "{:?}",
        prometheus.query("dcr_guard_jwks_fetch_ms_count")
    );
    assert!(
        prometheus
            .value("dcr_guard_validation_ms_count")
            .unwrap_or(0.0)
            >= 4.0
    );
    // Envoy's own wasm VM counters, with the plugin as a label.
    assert_eq!(
        prometheus.value("envoy_wasm_vm_reload_success{wasm_plugin=\"dcr_guard\"}"),
        Some(0.0)
    );

    // Every dashboard query evaluates, and is non-empty: the filter defines every counter when it
    // is configured (0 until it counts), and the test sent traffic for the rest.
    let d = dashboard();
    let mut empty = Vec::new();
    for (title, ref_id, expr) in dashboard_queries(&d) {
        let q = grafana_expand(&expr);
        assert!(
            !q.contains('$'),
            "{title}/{ref_id}: unexpanded variable in {q}"
        );
        let result = eventually(Duration::from_secs(20), || match prometheus.query(&q) {
            Err(e) => Some(Err(e)),
            Ok(v) if v.is_empty() => None,
            Ok(v) => Some(Ok(v)),
        });
        match result {
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("{title}/{ref_id}: {q} does not evaluate: {e}"),
            None => empty.push(format!("{title}/{ref_id}: {q}")),
        }
    }
    assert!(
        empty.is_empty(),
        "dashboard queries with no result:\n{}",
        empty.join("\n")
    );
    // The filter selector selects: this Envoy's one filter has no `stats.instance`, so naming
    // another filter leaves the requests panel empty.
    let (_, _, requests) = dashboard_queries(&d)
        .into_iter()
        .find(|(_, _, e)| e.starts_with("sum(rate(dcr_guard_requests{"))
        .unwrap();
    let other = grafana_expand(&requests.replace("$filter", "no_such_filter"));
    assert_eq!(
        prometheus.query(&other).map(|v| v.is_empty()),
        Ok(true),
        "{other}"
    );

    // Every alert rule, loaded into this Prometheus, has been evaluated without error.
    let health = eventually(Duration::from_secs(20), || {
        let groups = prometheus.api("/api/v1/rules").ok()?;
        let rules: Vec<Value> = groups["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        (!rules.is_empty() && rules.iter().all(|r| r["health"] != "unknown")).then_some(rules)
    })
    .unwrap_or_else(|| panic!("the alert rules were not evaluated:\n{}", prometheus.log()));
    let names: BTreeSet<&str> = health.iter().map(|r| r["name"].as_str().unwrap()).collect();
    let file_rules = yaml::file("prometheus/alerts.yaml");
    let expected: BTreeSet<&str> = file_rules["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["alert"].as_str().unwrap())
        .collect();
    assert_eq!(names, expected, "rules loaded");
    for r in &health {
        assert_eq!(
            r["health"], "ok",
            "rule {} does not evaluate: {}",
            r["name"], r["lastError"]
        );
    }
}

/// The `/stats/prometheus` lines of the series `name{labels…}` (label order as Envoy prints them,
/// sorted by name), with their values.
fn scraped(text: &str, name: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| series.split_once('{').map_or(*series, |(n, _)| n) == name)
        .map(|(series, v)| (series.to_string(), v.parse().unwrap()))
        .collect()
}

#[test]
fn two_filters_in_one_envoy_count_apart_under_their_instance() {
    // Two listeners, each with a dcr-guard filter (`stats.instance` "a" and "b"; same code and
    // vm_id, so one VM per worker serves both), the kits' recipe.
    let tpp = Tpp::new(TestKey::ec("dir-1"), TestKey::ec("tpp-1"));
    let keystore = common::keystore(&tpp, vec![]);
    let upstream = TestServer::always(Reply::json(201, &json!({"client_id": "c1"})));
    let mut a = tpp.filter_config("keystore", "keystore");
    a["stats"] = json!({"instance": "a"});
    let mut b = a.clone();
    b["stats"] = json!({"instance": "b"});
    let b_filter =
        EnvoyConfig::new(b, upstream.port()).wasm_filter_entry(&common::envoy::wasm_path());
    let b_port = free_port();
    let recipe = recipe();
    let cfg = EnvoyConfig::new(a, upstream.port())
        .cluster("keystore", keystore.port())
        .edit(move |boot| {
            boot["stats_config"] = recipe.clone();
            let mut second = boot["static_resources"]["listeners"][0].clone();
            second["name"] = json!("second");
            second["address"] =
                json!({"socket_address": {"address": "127.0.0.1", "port_value": b_port}});
            let hcm = second
                .pointer_mut("/filter_chains/0/filters/0/typed_config")
                .unwrap();
            hcm["stat_prefix"] = json!("second");
            hcm["http_filters"][0] = b_filter.clone();
            boot["static_resources"]["listeners"]
                .as_array_mut()
                .unwrap()
                .push(second);
        });
    let envoy = Envoy::start(&cfg);
    let post = |port: u16, body: &str| {
        common::http::send(
            port,
            "POST",
            "/register",
            &[("content-type", "application/jwt")],
            body.as_bytes(),
        )
        .status
    };
    // a: 2 accepted; b: 1 accepted, 3 refused by `audience`.
    for _ in 0..2 {
        assert_eq!(post(envoy.port, &tpp.request()), 201);
    }
    assert_eq!(post(b_port, &tpp.request()), 201);
    for _ in 0..3 {
        let wrong_aud = tpp.request_with(|c| c["aud"] = json!("someone-else"));
        assert_eq!(post(b_port, &wrong_aud), 400);
    }

    // Envoy's names: one set per instance, none without.
    let stat = |name: &str| envoy.stat(&format!("wasmcustom.dcr_guard.{name}"));
    assert_eq!(stat("instance.a.requests"), Some(2));
    assert_eq!(stat("instance.a.accepted"), Some(2));
    assert_eq!(stat("instance.a.failed.audience"), Some(0));
    assert_eq!(stat("instance.b.requests"), Some(4));
    assert_eq!(stat("instance.b.accepted"), Some(1));
    assert_eq!(stat("instance.b.failed.audience"), Some(3));
    assert_eq!(stat("requests"), None, "a counter without the instance");
    assert_eq!(stat("instance.b.replay_capacity"), Some(16384));

    // /stats/prometheus with the recipe: the instance is a label, the rule another.
    let text = envoy.admin("GET", "/stats/prometheus").text();
    let accepted = scraped(&text, "dcr_guard_accepted");
    assert_eq!(
        accepted,
        BTreeMap::from([
            (
                "dcr_guard_accepted{dcr_guard_instance=\"a\"}".to_string(),
                2.0
            ),
            (
                "dcr_guard_accepted{dcr_guard_instance=\"b\"}".to_string(),
                1.0
            ),
        ]),
        "{text}"
    );
    let failed = scraped(&text, "dcr_guard_failed");
    assert_eq!(
        failed.get("dcr_guard_failed{dcr_guard_instance=\"b\",rule=\"audience\"}"),
        Some(&3.0),
        "{failed:?}"
    );
    assert_eq!(
        failed.get("dcr_guard_failed{dcr_guard_instance=\"a\",rule=\"audience\"}"),
        Some(&0.0),
        "{failed:?}"
    );
    let ages = scraped(&text, "dcr_guard_jwks_age_seconds");
    let labels: BTreeSet<&str> = ages.keys().map(String::as_str).collect();
    assert_eq!(
        labels,
        BTreeSet::from([
            "dcr_guard_jwks_age_seconds{dcr_guard_instance=\"a\",directory=\"0\"}",
            "dcr_guard_jwks_age_seconds{dcr_guard_instance=\"b\",directory=\"0\"}",
        ]),
        "{text}"
    );
    let names: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.split(['{', ' ']).next())
        .filter(|n| n.starts_with("dcr_guard_"))
        .collect();
    for n in &names {
        assert!(!n.contains("instance"), "the instance left in a name: {n}");
    }
}
