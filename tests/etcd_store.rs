//! The fleet replay store's etcd messages against a real 3-member etcd cluster (no Envoy): what
//! `dcr_guard_core::replay::etcd` encodes is what etcd understands, and what it reads back is
//! what etcd answers — create once, replay, missing lease, lease granted twice, keys expiring
//! with their lease, quorum lost.

mod common;

use std::thread;
use std::time::Duration;

use common::etcd::{grpc_call, Cluster};
fn now() -> i64 {
    common::keys::now() as i64
}
use dcr_guard_core::replay::etcd::{
    lease_for, lease_grant_request, pair_key, read_lease_grant, read_txn, txn_request, PairKey,
    TxnOutcome, KV_SERVICE, LEASE_GRANT_METHOD, LEASE_SERVICE, TXN_METHOD,
};

const PREFIX: &str = "/dcr-guard-test/replay/";

fn txn(port: u16, pairs: &[PairKey], lease: i64) -> Result<TxnOutcome, String> {
    let a = grpc_call(port, KV_SERVICE, TXN_METHOD, &txn_request(pairs, lease));
    read_txn(a.status, &a.message, &a.body, pairs.len())
        .map_err(|f| format!("{} ({})", f.0, a.message))
}

fn grant(port: u16, slot_seconds: i64, until: i64) -> Result<(), String> {
    let lease = lease_for(PREFIX, slot_seconds, until, now());
    let a = grpc_call(
        port,
        LEASE_SERVICE,
        LEASE_GRANT_METHOD,
        &lease_grant_request(&lease),
    );
    read_lease_grant(a.status, &a.message, &a.body).map_err(|f| f.0)
}

#[test]
fn etcd_understands_the_fleet_store_messages() {
    let mut cluster = Cluster::start(3);
    let port = |c: &Cluster, i: usize| c.members[i].client_port;
    let t = now();
    let until = t + 6;
    let slot = 3;
    let lease = lease_for(PREFIX, slot, until, t);
    let a = PairKey {
        key: pair_key(PREFIX, "tpp", "jti-a"),
        until,
    };
    let b = PairKey {
        key: pair_key(PREFIX, "directory", "ssa-b"),
        until,
    };

    // The slot's lease does not exist yet: the Txn says so and records nothing.
    assert_eq!(
        txn(port(&cluster, 0), &[a.clone(), b.clone()], lease.id),
        Ok(TxnOutcome::LeaseMissing)
    );
    assert_eq!(cluster.count(PREFIX), 0);
    // Granted by one gateway, then by another: both fine.
    grant(port(&cluster, 0), slot, until).unwrap();
    grant(port(&cluster, 1), slot, until).unwrap();
    // Recorded once, through any member; the same pairs again, or either one alone: replayed,
    // naming which.
    assert_eq!(
        txn(port(&cluster, 1), &[a.clone(), b.clone()], lease.id),
        Ok(TxnOutcome::Recorded)
    );
    assert_eq!(
        txn(port(&cluster, 2), &[a.clone(), b.clone()], lease.id),
        Ok(TxnOutcome::Replayed(0))
    );
    let c = PairKey {
        key: pair_key(PREFIX, "tpp", "jti-c"),
        until,
    };
    assert_eq!(
        txn(port(&cluster, 0), &[c.clone(), b.clone()], lease.id),
        Ok(TxnOutcome::Replayed(1))
    );
    // The failed Txn wrote nothing: `c` is still new.
    assert_eq!(
        txn(port(&cluster, 0), std::slice::from_ref(&c), lease.id),
        Ok(TxnOutcome::Recorded)
    );

    // Keys hold the digest (never the jti), the expiry, and the slot's lease.
    let keys = cluster.keys(PREFIX);
    assert_eq!(keys.len(), 3, "{keys:?}");
    for (k, v, l) in &keys {
        assert!(!k.contains("jti") && !k.contains("tpp"), "{k}");
        assert_eq!(v, &until.to_string());
        assert_eq!(*l, lease.id);
    }

    // One member down: still a quorum.
    cluster.kill(2);
    // (If it was the leader, the others elect one first; until then a gateway answers 503.)
    cluster.wait_ready(Duration::from_secs(30));
    let d = PairKey {
        key: pair_key(PREFIX, "tpp", "jti-d"),
        until,
    };
    assert_eq!(
        txn(port(&cluster, 0), std::slice::from_ref(&d), lease.id),
        Ok(TxnOutcome::Recorded)
    );
    // Two down: no quorum, a fault (never "recorded", never "replayed").
    cluster.kill(1);
    let e = PairKey {
        key: pair_key(PREFIX, "tpp", "jti-e"),
        until,
    };
    let got = txn(port(&cluster, 0), std::slice::from_ref(&e), lease.id);
    assert!(got.is_err(), "{got:?}");
    // Back: the cluster answers again. The attempt that failed may still have been committed
    // when the quorum returned (etcd keeps the leader's proposal): `e` is either new or seen —
    // never lost track of in the other direction. A new pair is recorded.
    cluster.restart(1);
    cluster.restart(2);
    cluster.wait_ready(Duration::from_secs(30));
    let again = txn(port(&cluster, 2), std::slice::from_ref(&e), lease.id);
    assert!(
        matches!(
            again,
            Ok(TxnOutcome::Recorded) | Ok(TxnOutcome::Replayed(0))
        ),
        "{again:?}"
    );
    let f = PairKey {
        key: pair_key(PREFIX, "tpp", "jti-f"),
        until,
    };
    assert_eq!(
        txn(port(&cluster, 2), std::slice::from_ref(&f), lease.id),
        Ok(TxnOutcome::Recorded)
    );
    assert_eq!(
        txn(port(&cluster, 1), &[f], lease.id),
        Ok(TxnOutcome::Replayed(0))
    );

    // The lease runs out (slot end + one slot after now): every key of the slot is gone.
    let ends = lease.slot * slot + slot;
    let wait = (ends - now() + 3).max(0) as u64;
    thread::sleep(Duration::from_secs(wait));
    let mut left = cluster.count(PREFIX);
    for _ in 0..20 {
        if left == 0 {
            break;
        }
        thread::sleep(Duration::from_millis(500));
        left = cluster.count(PREFIX);
    }
    assert_eq!(left, 0, "keys outlived their lease");
    // And the expired lease is missing again for a new Txn of that slot.
    assert_eq!(
        txn(port(&cluster, 0), &[a], lease.id),
        Ok(TxnOutcome::LeaseMissing)
    );
}

/// A worker's batch (one outer Txn, each registration's own Txn nested): etcd runs every nested
/// Txn with its own compare, so each member learns what it would have alone; a missing lease
/// fails the batch as a whole; two nested Txns writing one key are refused by etcd, which is why
/// the batcher never puts them together.
#[test]
fn etcd_runs_a_batch_of_nested_txns_one_answer_each() {
    use dcr_guard_core::replay::etcd::batch::{answers, batch_request, MemberAnswer};
    let cluster = Cluster::start(1);
    let port = cluster.members[0].client_port;
    let t = now();
    let until = t + 30;
    let lease = lease_for(PREFIX, 10, until, t);
    let p = |jti: &str| PairKey {
        key: pair_key(PREFIX, "tpp", jti),
        until,
    };
    let send = |members: &[Vec<PairKey>]| -> Vec<Result<TxnOutcome, String>> {
        let txns: Vec<Vec<u8>> = members.iter().map(|m| txn_request(m, lease.id)).collect();
        let a = grpc_call(
            port,
            KV_SERVICE,
            TXN_METHOD,
            &batch_request(txns.iter().map(|t| t.as_slice())),
        );
        answers(true, members.len(), a.status, &a.message, &a.body)
            .into_iter()
            .zip(members)
            .map(|(answer, m)| match answer {
                MemberAnswer::Reply {
                    status,
                    message,
                    body,
                } => read_txn(status, &message, &body, m.len()).map_err(|f| f.0),
                MemberAnswer::Fault(f) => Err(f),
            })
            .collect()
    };
    // No lease yet: every member is told so.
    assert_eq!(
        send(&[vec![p("a")], vec![p("b")]]),
        vec![Ok(TxnOutcome::LeaseMissing), Ok(TxnOutcome::LeaseMissing)]
    );
    assert_eq!(cluster.count(PREFIX), 0);
    grant(port, 10, until).unwrap();
    txn(port, &[p("seen")], lease.id).unwrap();
    // Three members, one of which replays a pair recorded before.
    assert_eq!(
        send(&[vec![p("a"), p("ssa-1")], vec![p("seen")], vec![p("c")]]),
        vec![
            Ok(TxnOutcome::Recorded),
            Ok(TxnOutcome::Replayed(0)),
            Ok(TxnOutcome::Recorded)
        ]
    );
    assert_eq!(cluster.count(PREFIX), 4);
    // Two members writing the same key: etcd refuses the whole request.
    let clash = send(&[vec![p("d"), p("ssa-2")], vec![p("e"), p("ssa-2")]]);
    assert!(
        clash
            .iter()
            .all(|r| matches!(r, Err(e) if e.contains("duplicate key"))),
        "{clash:?}"
    );
    assert_eq!(cluster.count(PREFIX), 4);
}
