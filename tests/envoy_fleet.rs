//! The fleet replay store (`replay.store: etcd`) with real processes: a 3-member etcd cluster on
//! loopback and two separate Envoys (two workers each) running the built filter. A registration
//! gets through once across the fleet; etcd faults fail closed (503 with Retry-After, nothing
//! reaches the AS); pairs are forgotten with their lease.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::dcr::Tpp;
use common::etcd::{envoy_cluster, Cluster};
use common::keys::TestKey;
use common::{Envoy, EnvoyConfig, Reply, Response, TestServer};
use serde_json::{json, Value};

/// Two Envoys in front of one AS stand-in, sharing a 3-member etcd.
struct Fleet {
    etcd: Cluster,
    envoys: Vec<Arc<Envoy>>,
    upstream: TestServer,
    _keystore: TestServer,
    tpp: Arc<Tpp>,
    prefix: String,
}

fn fleet(edit: impl Fn(&mut Value)) -> Fleet {
    fleet_on(Cluster::start(3), edit, |_| {})
}

/// A fleet on `etcd`; `cluster_edit` adjusts the Envoy cluster of the etcd members.
fn fleet_on(etcd: Cluster, edit: impl Fn(&mut Value), cluster_edit: impl Fn(&mut Value)) -> Fleet {
    let tpp = Tpp::new(TestKey::ec("dir"), TestKey::ec("tpp"));
    let keystore = common::keystore(&tpp, Vec::new());
    let upstream = TestServer::always(Reply::json(201, &json!({"client_id": "c1"})));
    let prefix = format!("/dcr-guard-test/{}/", std::process::id());
    let mut filter = tpp.filter_config("keystore", "keystore");
    filter["rules"]["ssa_jti"] = json!({"enabled": true});
    filter["replay"] = json!({
        "store": "etcd",
        // Generous for a loaded CI machine (three etcd members and Envoys on two cores); the
        // frozen-etcd case checks the deadline holds.
        "etcd": {"upstream": "etcd", "key_prefix": prefix, "timeout_ms": 2000}
    });
    edit(&mut filter);
    let mut cluster = envoy_cluster("etcd", &etcd);
    cluster_edit(&mut cluster);
    let cfg = EnvoyConfig::new(filter, upstream.port())
        .cluster("keystore", keystore.port())
        .concurrency(2)
        .edit(move |b| {
            b["static_resources"]["clusters"]
                .as_array_mut()
                .unwrap()
                .push(cluster.clone())
        });
    let envoys = vec![Arc::new(Envoy::start(&cfg)), Arc::new(Envoy::start(&cfg))];
    Fleet {
        etcd,
        envoys,
        upstream,
        _keystore: keystore,
        tpp: Arc::new(tpp),
        prefix,
    }
}

fn post(envoy: &Envoy, body: &str) -> Response {
    envoy.send(
        "POST",
        "/register",
        &[("content-type", "application/jwt")],
        body.as_bytes(),
    )
}

fn error(r: &Response) -> String {
    serde_json::from_slice::<Value>(&r.body)
        .map(|v| v["error"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

/// Wait until a fresh registration through `envoy` is accepted (after etcd membership changes,
/// Envoy's health checks take the changed members in or out of rotation within a second).
fn until_accepted(f: &Fleet, envoy: usize, limit: Duration) {
    let start = Instant::now();
    loop {
        let r = post(&f.envoys[envoy], &f.tpp.request());
        if r.status == 201 {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "no registration accepted within {limit:?}: last {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_registration_gets_through_once_across_the_fleet() {
    let f = fleet(|_| {});
    for round in 0..3 {
        // The same signed registration, 16 copies at once, split across the two Envoys.
        let body = Arc::new(f.tpp.request());
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let envoy = Arc::clone(&f.envoys[i % 2]);
                let body = Arc::clone(&body);
                thread::spawn(move || {
                    let r = post(&envoy, &body);
                    (r.status, error(&r))
                })
            })
            .collect();
        let answers: Vec<(u16, String)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let accepted = answers.iter().filter(|a| a.0 == 201).count();
        let replayed = answers
            .iter()
            .filter(|a| a.0 == 400 && a.1 == "invalid_client_metadata")
            .count();
        assert_eq!(accepted, 1, "round {round}: {answers:?}");
        assert_eq!(replayed, 15, "round {round}: {answers:?}");
        assert_eq!(f.upstream.requests().len(), 1, "round {round}");
        f.upstream.clear();
        // Later, to the other Envoy and to the same one: still a replay.
        thread::sleep(Duration::from_millis(300));
        for e in &f.envoys {
            let r = post(e, &body);
            assert_eq!(
                (r.status, error(&r)),
                (400, "invalid_client_metadata".into())
            );
        }
        assert!(f.upstream.requests().is_empty());
    }
    // Both Envoys refused replays (each worker's first tier only ever learns from etcd).
    let refused: u64 = f
        .envoys
        .iter()
        .map(|e| e.stat("dcr_guard.failed.request_jti").unwrap_or(0))
        .sum();
    assert_eq!(refused, 3 * (15 + 2));

    // ssa_jti through the fleet store: a second registration (new request jti) carrying an SSA
    // already used through the other Envoy is refused as the SSA's replay.
    let ssa = f.tpp.ssa();
    let first = f.tpp.key.sign_default(&f.tpp.request_claims(&ssa));
    let second = f.tpp.key.sign_default(&f.tpp.request_claims(&ssa));
    assert_eq!(post(&f.envoys[0], &first).status, 201);
    let r = post(&f.envoys[1], &second);
    assert_eq!(
        (r.status, error(&r)),
        (400, "invalid_software_statement".into())
    );
    // The refused request did not record its own jti: with a fresh SSA it registers.
    assert_eq!(f.upstream.requests().len(), 1);

    // What etcd holds: digests under the prefix, each attached to a lease; never a raw jti.
    let keys = f.etcd.keys(&f.prefix);
    assert_eq!(keys.len(), 3 * 2 + 2, "{keys:?}");
    for (k, _, lease) in &keys {
        assert!(
            k.starts_with(&f.prefix) && k.len() == f.prefix.len() + 64,
            "{k}"
        );
        assert!(*lease > 0, "{k} has no lease");
    }
}

#[test]
fn etcd_faults_fail_closed_and_recover_without_restarting_envoy() {
    let mut f = fleet(|_| {});
    until_accepted(&f, 0, Duration::from_secs(10));
    f.upstream.clear();

    // One member down: a quorum remains, registrations go on (once Envoy's health check took
    // the member out of rotation).
    f.etcd.kill(2);
    f.etcd.wait_ready(Duration::from_secs(30));
    // Until the health check (every 0.5 s) has seen the member gone, a call may still be sent to
    // it and fail (503): the README's cluster takes it out of rotation within a second.
    thread::sleep(Duration::from_secs(2));
    until_accepted(&f, 1, Duration::from_secs(10));
    for i in 0..6 {
        let r = post(&f.envoys[i % 2], &f.tpp.request());
        assert_eq!(r.status, 201, "{i}: {}", String::from_utf8_lossy(&r.body));
    }

    // Two down: no quorum. 503 temporarily_unavailable with Retry-After, nothing reaches the AS.
    f.etcd.kill(1);
    thread::sleep(Duration::from_secs(1));
    f.upstream.clear();
    for i in 0..6 {
        let r = post(&f.envoys[i % 2], &f.tpp.request());
        assert_eq!(r.status, 503, "{i}: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(error(&r), "temporarily_unavailable");
        assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
    }
    assert!(f.upstream.requests().is_empty());

    // Back: both members restarted; the same Envoys register again.
    f.etcd.restart(1);
    f.etcd.restart(2);
    f.etcd.wait_ready(Duration::from_secs(30));
    until_accepted(&f, 0, Duration::from_secs(15));
    until_accepted(&f, 1, Duration::from_secs(15));

    // Slow etcd (every member frozen): 503 once the call's deadline passes, not a hang.
    for i in 0..3 {
        f.etcd.pause(i);
    }
    f.upstream.clear();
    let start = Instant::now();
    let r = post(&f.envoys[0], &f.tpp.request());
    let took = start.elapsed();
    for i in 0..3 {
        f.etcd.resume(i);
    }
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.header("retry-after").is_some());
    assert!(
        took < Duration::from_secs(6),
        "a frozen etcd held the request {took:?} (timeout_ms is 2000)"
    );
    assert!(f.upstream.requests().is_empty());
    until_accepted(&f, 0, Duration::from_secs(15));
}

#[test]
fn pairs_are_forgotten_with_their_lease_and_the_store_stays_bounded() {
    // Short retention: requests are accepted for 10 s after `iat`, remembered 11 s, lease slots
    // of 5 s.
    let f = fleet(|c| {
        c["rules"]["issuance_time"] = json!({"max_age_seconds": 10});
        c["leeway_seconds"] = json!(0);
        c["replay"]["max_retention_seconds"] = json!(11);
    });
    let body = f.tpp.request();
    assert_eq!(post(&f.envoys[0], &body).status, 201);
    assert_eq!(f.etcd.count(&f.prefix), 2);

    // A run of registrations from four clients over both Envoys: the number of keys in etcd
    // follows the rate × retention, not the total.
    let total = 1200;
    let started = Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let envoy = Arc::clone(&f.envoys[t % 2]);
            let tpp = Arc::clone(&f.tpp);
            thread::spawn(move || {
                (0..total / 4)
                    .filter(|_| post(&envoy, &tpp.request()).status == 201)
                    .count()
            })
        })
        .collect();
    let mut samples = Vec::new();
    while threads.iter().any(|t| !t.is_finished()) {
        samples.push(f.etcd.count(&f.prefix));
        thread::sleep(Duration::from_millis(500));
    }
    let accepted: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let elapsed = started.elapsed();
    assert_eq!(accepted, total, "every registration of the run is accepted");
    let max = samples.iter().copied().max().unwrap_or(0);
    // Each accepted registration holds 2 keys for at most retention + two slots (21 s).
    let rate = accepted as f64 / elapsed.as_secs_f64().max(1.0);
    let bound = (2.0 * rate * 24.0) as usize + 10;
    assert!(
        max <= bound,
        "{max} keys at the peak, more than 2 × {rate:.0}/s × 24 s: {samples:?}"
    );
    if elapsed > Duration::from_secs(30) {
        // A long run shows old keys going: the peak is below everything recorded.
        assert!(max < 2 * accepted, "{samples:?}");
    }

    // After the retention and the lease's slot: every key is gone, the first one too, and its
    // replay is accepted again only because the request itself has expired (400 issuance_time,
    // not 201).
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut left = f.etcd.count(&f.prefix);
    while left > 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_secs(1));
        left = f.etcd.count(&f.prefix);
    }
    assert_eq!(left, 0, "keys outlived their leases");
    let r = post(&f.envoys[1], &body);
    assert_eq!(r.status, 400);
    assert_eq!(f.envoys[1].stat("dcr_guard.failed.issuance_time"), Some(1));
}

#[test]
fn mutual_tls_to_etcd_through_the_envoy_cluster() {
    use common::tls::{DnKind, Pki};
    let pki = Pki::new();
    let server = pki.server(&["localhost", "127.0.0.1"]);
    let client = pki.client(&[(DnKind::Cn, "dcr-guard")]);
    let (client_cert, client_key) = (
        pki.dir().join("client.pem"),
        pki.dir().join("client-key.pem"),
    );
    std::fs::write(&client_cert, &client.cert_pem).unwrap();
    std::fs::write(&client_key, &client.key_pem).unwrap();
    let tls = common::etcd::Tls {
        cert: server.cert.clone(),
        key: server.key.clone(),
        ca: server.ca.clone(),
        client_cert: client_cert.clone(),
        client_key: client_key.clone(),
    };
    let transport = |with_client_cert: bool| {
        let mut ctx = json!({
            "alpn_protocols": ["h2"],
            "validation_context": {"trusted_ca": {"filename": server.ca}}
        });
        if with_client_cert {
            ctx["tls_certificates"] = json!([{
                "certificate_chain": {"filename": client_cert},
                "private_key": {"filename": client_key}
            }]);
        }
        json!({
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": "localhost",
                "common_tls_context": ctx
            }
        })
    };
    // The gateway presents its client certificate: registrations are recorded, replays refused.
    let with_cert = transport(true);
    let f = fleet_on(
        Cluster::start_tls(3, tls.clone()),
        |_| {},
        move |c| c["transport_socket"] = with_cert.clone(),
    );
    until_accepted(&f, 0, Duration::from_secs(10));
    until_accepted(&f, 1, Duration::from_secs(10));
    let body = f.tpp.request();
    assert_eq!(post(&f.envoys[0], &body).status, 201);
    let r = post(&f.envoys[1], &body);
    assert_eq!(
        (r.status, error(&r)),
        (400, "invalid_client_metadata".into())
    );
    assert!(f.etcd.count(&f.prefix) >= 2);
    drop(f);

    // Without a client certificate etcd refuses the connection: fail closed, nothing upstream.
    let without_cert = transport(false);
    let f = fleet_on(
        Cluster::start_tls(3, tls),
        |_| {},
        move |c| c["transport_socket"] = without_cert.clone(),
    );
    for e in &f.envoys {
        let r = post(e, &f.tpp.request());
        assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(error(&r), "temporarily_unavailable");
    }
    assert!(f.upstream.requests().is_empty());
    assert_eq!(f.etcd.count(&f.prefix), 0);
}

/// Registrations that reach the store while a worker's Txn is on its way share the next call
/// (one outer Txn, each registration's own nested): every one still gets its own answer, and
/// Envoy sends fewer calls than registrations. etcd is frozen for a moment (one member, so that
/// no election follows) so that the registrations queue up whatever the machine's speed.
#[test]
fn concurrent_registrations_share_etcd_round_trips_and_keep_their_own_answers() {
    let f = fleet_on(Cluster::start(1), |_| {}, |_| {});
    until_accepted(&f, 0, Duration::from_secs(20));
    let base = |name: &str| {
        f.envoys[0]
            .stats(name)
            .iter()
            .find(|(n, _)| n.ends_with(name))
            .map_or(0, |(_, v)| *v)
    };
    let (calls0, txns0) = (base("replay_etcd_calls"), base("replay_etcd_txns"));
    f.upstream.clear();
    f.etcd.pause(0);
    // 12 distinct registrations and 4 copies of one of them, at once, to one Envoy.
    let mut bodies: Vec<String> = (0..12).map(|_| f.tpp.request()).collect();
    for _ in 0..4 {
        bodies.push(bodies[0].clone());
    }
    let threads: Vec<_> = bodies
        .into_iter()
        .map(|body| {
            let envoy = Arc::clone(&f.envoys[0]);
            thread::spawn(move || {
                let r = post(&envoy, &body);
                (r.status, error(&r))
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(1000));
    f.etcd.resume(0);
    let answers: Vec<(u16, String)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let accepted = answers.iter().filter(|a| a.0 == 201).count();
    let replayed = answers
        .iter()
        .filter(|a| a.0 == 400 && a.1 == "invalid_client_metadata")
        .count();
    assert_eq!((accepted, replayed), (12, 4), "{answers:?}");
    assert_eq!(f.upstream.requests().len(), 12);
    let calls = base("replay_etcd_calls") - calls0;
    let txns = base("replay_etcd_txns") - txns0;
    // Every registration's Txn went to etcd (the copies caught by a worker's memory need none),
    // in fewer calls than Txns.
    assert!(txns >= 12, "txns {txns}");
    assert!(
        calls < txns,
        "no batch formed: {calls} calls for {txns} Txns"
    );
}
