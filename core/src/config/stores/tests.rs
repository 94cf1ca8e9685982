//! The replay store's settings: the retention floor and the issuer share.
#![allow(clippy::type_complexity)]

use serde_json::json;

use super::*;
use crate::config::tests::{minimal, parse, refused};

#[test]
fn replay_retention_floor_is_exact() {
    // (max_age, leeway, floor): max_age + 2 × leeway; max_age + 1 with no leeway.
    for (age, leeway, floor) in [
        (3600u64, 60u64, 3720u64),
        (3600, 0, 3601),
        (3600, 1, 3602),
        (300, 30, 360),
        (1, 600, 1201),
    ] {
        assert_eq!(Replay::retention_floor(age, leeway), floor);
        let at = |retention: u64| {
            let mut v = minimal();
            v["leeway_seconds"] = json!(leeway);
            v["rules"]["issuance_time"] = json!({"max_age_seconds": age});
            v["replay"] = json!({"max_retention_seconds": retention});
            parse(&v)
        };
        let e = at(floor - 1).unwrap_err();
        assert_eq!(e.field, "replay.max_retention_seconds");
        assert!(e.message.contains(&format!("({floor};")), "{e}");
        assert_eq!(at(floor).unwrap().replay.max_retention, floor);
        // The default covers it too.
        let mut v = minimal();
        v["leeway_seconds"] = json!(leeway);
        v["rules"]["issuance_time"] = json!({"max_age_seconds": age});
        assert_eq!(parse(&v).unwrap().replay.max_retention, floor.max(86_400));
    }
}

#[test]
fn replay_issuer_share() {
    assert_eq!(
        parse(&minimal()).unwrap().replay.store.issuer_share_percent,
        10
    );
    for (pct, ok) in [(0, false), (1, true), (10, true), (100, true), (101, false)] {
        let mut v = minimal();
        v["replay"] = json!({"issuer_share_percent": pct});
        match parse(&v) {
            Ok(c) => {
                assert!(ok, "{pct}");
                assert_eq!(c.replay.store.issuer_share_percent, pct);
            }
            Err(e) => {
                assert!(!ok, "{pct}: {e}");
                assert_eq!(e.field, "replay.issuer_share_percent");
                assert!(e.message.contains("between 1 and 100"), "{e}");
            }
        }
    }
    let mut v = minimal();
    v["replay"] = json!({"issuer_share_percent": "10"});
    assert_eq!(refused(v).field, "replay.issuer_share_percent");
    let mut v = minimal();
    v["replay"] = json!({"issuer_share": 10});
    assert!(refused(v).to_string().contains("issuer_share"));
}

#[test]
fn replay_store_local_or_etcd() {
    let with = |replay: serde_json::Value| {
        let mut v = minimal();
        v["replay"] = replay;
        parse(&v)
    };
    // Default and explicit local: no fleet store.
    assert!(parse(&minimal()).unwrap().replay.fleet.is_none());
    assert!(with(json!({"store": "local"}))
        .unwrap()
        .replay
        .fleet
        .is_none());
    // etcd with defaults.
    let cfg =
        with(json!({"store": "etcd", "etcd": {"upstream": "outbound|2379||etcd.db.svc"}})).unwrap();
    let f = cfg.replay.fleet.unwrap();
    assert_eq!(f.upstream, "outbound|2379||etcd.db.svc");
    assert_eq!(f.authority, None);
    assert_eq!(f.key_prefix, DEFAULT_ETCD_KEY_PREFIX);
    assert_eq!(f.timeout_ms, 500);
    // Slots of an eighth of the retention (86 400 s by default), at most an hour.
    assert_eq!(f.slot_seconds, 3600);
    let f = with(json!({"store": "etcd", "max_retention_seconds": 4000,
        "etcd": {"upstream": "etcd", "authority": "etcd.bank.internal", "key_prefix": "/bank/", "timeout_ms": 250}}))
    .unwrap()
    .replay
    .fleet
    .unwrap();
    assert_eq!(
        (
            f.authority.as_deref(),
            f.key_prefix.as_str(),
            f.timeout_ms,
            f.slot_seconds
        ),
        (Some("etcd.bank.internal"), "/bank/", 250, 500)
    );
    // Refused, naming the field.
    let long = "e".repeat(61);
    for (replay, field) in [
        (json!({"store": "redis"}), "replay.store"),
        (json!({"store": "etcd"}), "replay.etcd"),
        (json!({"etcd": {"upstream": "etcd"}}), "replay.etcd"),
        (
            json!({"store": "local", "etcd": {"upstream": "etcd"}}),
            "replay.etcd",
        ),
        (json!({"store": "etcd", "etcd": {}}), "replay.etcd"),
        (
            json!({"store": "etcd", "etcd": {"upstream": ""}}),
            "replay.etcd.upstream",
        ),
        (
            json!({"store": "etcd", "etcd": {"upstream": long}}),
            "replay.etcd.upstream",
        ),
        (
            json!({"store": "etcd", "etcd": {"upstream": "etc d"}}),
            "replay.etcd.upstream",
        ),
        (
            json!({"store": "etcd", "etcd": {"upstream": "etcd", "authority": "a\"b"}}),
            "replay.etcd.authority",
        ),
        (
            json!({"store": "etcd", "etcd": {"upstream": "etcd", "key_prefix": ""}}),
            "replay.etcd.key_prefix",
        ),
        (
            json!({"store": "etcd", "etcd": {"upstream": "etcd", "key_prefix": "/a b/"}}),
            "replay.etcd.key_prefix",
        ),
        (
            json!({"store": "etcd", "etcd": {"upstream": "etcd", "timeout_ms": 5}}),
            "replay.etcd.timeout_ms",
        ),
        (
            json!({"store": "etcd", "etcd": {"upstream": "etcd", "timeout_ms": 20000}}),
            "replay.etcd.timeout_ms",
        ),
        (
            json!({"store": "etcd", "etcd": {"upstream": "etcd", "tls": true}}),
            "replay.etcd",
        ),
    ] {
        let e = with(replay.clone()).unwrap_err();
        assert!(e.field.starts_with(field), "{replay}: {e}");
    }
}
