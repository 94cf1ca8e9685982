//! State survives a filter configuration update: the listener comes from a file (LDS), the test
//! rewrites it with a changed filter configuration under the same `vm_id`, and the replay store
//! and the JWKS cache in shared data are still there.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::dcr::Tpp;
use common::http::free_port;
use common::keys::TestKey;
use common::{Envoy, EnvoyConfig, Reply, TestServer};
use serde_json::{json, Value};

fn write_lds(path: &Path, listener: &Value) {
    let doc = json!({"resources": [listener]});
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    // Envoy watches for moves into place.
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn state_survives_a_filter_configuration_update() {
    let tpp = Tpp::new(TestKey::ec("dir"), TestKey::ec("tpp"));
    let keystore = common::keystore(&tpp, Vec::new());
    let upstream = TestServer::always(Reply::json(201, &json!({"client_id": "c1"})));

    let dir: PathBuf = std::env::temp_dir().join(format!("dcr-guard-lds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let lds = dir.join("lds.json");
    let port = free_port();
    let captured = std::sync::Arc::new(std::sync::Mutex::new(Value::Null));
    let cap = std::sync::Arc::clone(&captured);
    let lds_path = lds.clone();
    let cfg = EnvoyConfig::new(tpp.filter_config("keystore", "keystore"), upstream.port())
        .cluster("keystore", keystore.port())
        .edit(move |b| {
            // Move the listener out of the static resources into a file-based LDS.
            let mut listener = b["static_resources"]["listeners"][0].take();
            b["static_resources"].as_object_mut().unwrap().remove("listeners");
            listener["@type"] = json!("type.googleapis.com/envoy.config.listener.v3.Listener");
            listener["address"]["socket_address"]["port_value"] = json!(port);
            write_lds(&lds_path, &listener);
            *cap.lock().unwrap() = listener;
            b["node"] = json!({"id": "dcr-guard-test", "cluster": "dcr-guard-test"});
            b["dynamic_resources"] = json!({
                "lds_config": {"path_config_source": {"path": lds_path.to_string_lossy()}, "resource_api_version": "V3"}
            });
        });
    let envoy = Envoy::start(&cfg);
    assert_eq!(envoy.port, port);
    let post = |body: &str| {
        envoy
            .send(
                "POST",
                "/register",
                &[("content-type", "application/jwt")],
                body.as_bytes(),
            )
            .status
    };
    let body = tpp.request();
    assert_eq!(post(&body), 201);
    let directory_fetches = keystore.count("/keystore");
    assert_eq!(directory_fetches, 1);

    // A new filter configuration (another Retry-After), same vm_id.
    let configured_before = envoy.log().matches("dcr-guard: configured").count();
    let mut listener = captured.lock().unwrap().clone();
    let filter = &mut listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0]
        ["typed_config"]["config"];
    let mut plugin: Value =
        serde_json::from_str(filter["configuration"]["value"].as_str().unwrap()).unwrap();
    plugin["retry_after_seconds"] = json!(7);
    filter["configuration"]["value"] = json!(plugin.to_string());
    write_lds(&lds, &listener);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let updated = envoy
            .stat("listener_manager.lds.update_success")
            .unwrap_or(0);
        if updated >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the listener was not updated:\n{}",
            envoy.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The new plugin configuration was loaded (its configure step logged again).
    let deadline = Instant::now() + Duration::from_secs(10);
    while envoy.log().matches("dcr-guard: configured").count() <= configured_before {
        assert!(
            Instant::now() < deadline,
            "the filter was not reconfigured:\n{}",
            envoy.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));

    // The jti recorded before the update is still known; the cached directory keys too.
    assert_eq!(post(&body), 400, "replayed across the update");
    assert_eq!(post(&tpp.request()), 201);
    assert_eq!(
        keystore.count("/keystore"),
        directory_fetches,
        "the directory document was fetched again"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
