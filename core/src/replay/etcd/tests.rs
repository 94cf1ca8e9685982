use super::*;
use prost::Message as _;

const PREFIX: &str = "/dcr-guard/replay/";

fn pair(jti: &str, until: i64) -> PairKey {
    PairKey {
        key: pair_key(PREFIX, "tpp-1", jti),
        until,
    }
}

#[test]
fn pair_keys_are_prefixed_digests_that_separate_issuer_and_jti() {
    let k = pair_key(PREFIX, "tpp-1", "abc");
    let text = String::from_utf8(k.clone()).unwrap();
    assert!(text.starts_with(PREFIX), "{text}");
    assert_eq!(text.len(), PREFIX.len() + 64);
    assert!(!text.contains("abc") && !text.contains("tpp-1"), "{text}");
    // Same pair, same key; any change of either part, another key (no ambiguity at the seam).
    assert_eq!(k, pair_key(PREFIX, "tpp-1", "abc"));
    for (iss, jti) in [
        ("tpp-1", "abd"),
        ("tpp-2", "abc"),
        ("tpp-1a", "bc"),
        ("tpp-", "1abc"),
    ] {
        assert_ne!(k, pair_key(PREFIX, iss, jti), "{iss} {jti}");
    }
    assert_ne!(k, pair_key("/other/", "tpp-1", "abc"));
}

#[test]
fn a_lease_outlives_every_key_of_its_slot_and_is_shared_by_the_fleet() {
    let w = 60;
    let now = 1_000_000;
    // Table: (until, expected slot). Slot s covers ((s-1)·w, s·w].
    for (until, slot) in [
        (now + 1, (now + 1 + w - 1) / w),
        (16_680 * 60, 16_680),
        (16_680 * 60 + 1, 16_681),
        (now - 500, (now + 1 + w - 1) / w), // already past: at least now + 1
    ] {
        let l = lease_for(PREFIX, w, until, now);
        assert_eq!(l.slot, slot, "until {until}");
        assert!(
            now + l.ttl >= until.max(now + 1),
            "lease ends before the key: {l:?} {until}"
        );
        assert!(now + l.ttl >= l.slot * w + w - 1, "{l:?}");
        assert!(
            l.ttl <= until.max(now + 1) - now + 2 * w,
            "lease far too long: {l:?}"
        );
        assert!(l.id > 0);
    }
    // Two gateways, any time within a slot, same lease ID; the next slot, another.
    let a = lease_for(PREFIX, w, 16_680 * 60 - 5, now);
    let b = lease_for(PREFIX, w, 16_680 * 60 - 50, now + 30);
    assert_eq!((a.slot, a.id), (b.slot, b.id));
    let c = lease_for(PREFIX, w, 16_680 * 60 + 5, now);
    assert_ne!(a.id, c.id);
    // Another key prefix (another deployment on the same etcd): other leases.
    assert_ne!(a.id, lease_for("/bank-b/", w, 16_680 * 60 - 5, now).id);
}

#[test]
fn the_txn_creates_every_key_or_reads_which_exist() {
    let pairs = [pair("a", 100), pair("b", 200)];
    let bytes = txn_request(&pairs, 77);
    let req = pb::TxnRequest::decode(bytes.as_slice()).unwrap();
    assert_eq!(req.compare.len(), 2);
    for (c, p) in req.compare.iter().zip(&pairs) {
        assert_eq!(c.key, p.key);
        assert_eq!(c.result, pb::CompareResult::Equal as i32);
        assert_eq!(c.target, pb::CompareTarget::Create as i32);
        assert_eq!(c.target_union, Some(pb::TargetUnion::CreateRevision(0)));
    }
    // The oneof is on the wire even at 0 (field 5, varint 0): etcd compares against it.
    assert!(bytes.windows(2).any(|w| w == [0x28, 0x00]));
    let puts: Vec<_> = req
        .success
        .iter()
        .map(|op| match &op.request {
            Some(pb::Request::Put(p)) => (p.key.clone(), p.value.clone(), p.lease),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        puts,
        vec![
            (pairs[0].key.clone(), b"100".to_vec(), 77),
            (pairs[1].key.clone(), b"200".to_vec(), 77)
        ]
    );
    for (op, p) in req.failure.iter().zip(&pairs) {
        match &op.request {
            Some(pb::Request::Range(r)) => assert!(r.count_only && r.key == p.key),
            other => panic!("{other:?}"),
        }
    }
}

fn txn_answer(succeeded: bool, counts: &[i64]) -> Vec<u8> {
    pb::TxnResponse {
        header: Some(pb::ResponseHeader {
            cluster_id: 1,
            member_id: 2,
            revision: 3,
            raft_term: 4,
        }),
        succeeded,
        responses: counts
            .iter()
            .map(|c| pb::ResponseOp {
                response: Some(pb::Response::Range(pb::RangeResponse {
                    header: None,
                    count: *c,
                })),
            })
            .collect(),
    }
    .encode_to_vec()
}

/// (name, gRPC status, status message, body, pairs sent, expected outcome or fault text)
type TxnCase = (
    &'static str,
    Option<u32>,
    &'static str,
    Vec<u8>,
    usize,
    Result<TxnOutcome, &'static str>,
);

#[test]
fn txn_answers_table() {
    let put_ok = pb::TxnResponse {
        header: None,
        succeeded: true,
        responses: vec![pb::ResponseOp {
            response: Some(pb::Response::Put(pb::PutResponse { header: None })),
        }],
    }
    .encode_to_vec();
    let cases: Vec<TxnCase> = vec![
        (
            "recorded",
            Some(0),
            "",
            put_ok.clone(),
            1,
            Ok(TxnOutcome::Recorded),
        ),
        (
            "first seen",
            Some(0),
            "",
            txn_answer(false, &[1, 0]),
            2,
            Ok(TxnOutcome::Replayed(0)),
        ),
        (
            "second seen",
            Some(0),
            "",
            txn_answer(false, &[0, 1]),
            2,
            Ok(TxnOutcome::Replayed(1)),
        ),
        (
            "expired in between",
            Some(0),
            "",
            txn_answer(false, &[0, 0]),
            2,
            Ok(TxnOutcome::Replayed(0)),
        ),
        (
            "lease missing",
            Some(5),
            "etcdserver: requested lease not found",
            vec![],
            1,
            Ok(TxnOutcome::LeaseMissing),
        ),
        (
            "other not found",
            Some(5),
            "something else",
            vec![],
            1,
            Err("NOT_FOUND"),
        ),
        ("no answer", None, "", vec![], 1, Err("no answer")),
        (
            "unavailable",
            Some(14),
            "etcdserver: no leader",
            vec![],
            1,
            Err("UNAVAILABLE (14): etcdserver: no leader"),
        ),
        ("deadline", Some(4), "", vec![], 1, Err("DEADLINE_EXCEEDED")),
        (
            "timeout inside etcd",
            Some(14),
            "etcdserver: request timed out",
            vec![],
            1,
            Err("request timed out"),
        ),
        (
            "garbage",
            Some(0),
            "",
            vec![0xff, 0xff, 0xff],
            1,
            Err("does not parse"),
        ),
        (
            "wrong read count",
            Some(0),
            "",
            txn_answer(false, &[1]),
            2,
            Err("1 reads for 2 pairs"),
        ),
        (
            "unexpected op",
            Some(0),
            "",
            pb::TxnResponse {
                header: None,
                succeeded: false,
                responses: vec![pb::ResponseOp {
                    response: Some(pb::Response::Put(pb::PutResponse { header: None })),
                }],
            }
            .encode_to_vec(),
            1,
            Err("unexpected operation"),
        ),
        (
            "oversized",
            Some(0),
            "",
            vec![0u8; MAX_ANSWER_BYTES + 1],
            1,
            Err("too large"),
        ),
    ];
    for (name, status, message, body, pairs, want) in cases {
        let got = read_txn(status, message, &body, pairs);
        match (&got, &want) {
            (Ok(g), Ok(w)) => assert_eq!(g, w, "{name}"),
            (Err(Fault(g)), Err(w)) => assert!(g.contains(w), "{name}: {g}"),
            _ => panic!("{name}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn lease_grant_answers_table() {
    let ok = pb::LeaseGrantResponse {
        header: None,
        id: 5,
        ttl: 60,
        error: String::new(),
    }
    .encode_to_vec();
    let refused = pb::LeaseGrantResponse {
        header: None,
        id: 5,
        ttl: 0,
        error: "too many leases\u{7}".into(),
    }
    .encode_to_vec();
    assert_eq!(read_lease_grant(Some(0), "", &ok), Ok(()));
    assert_eq!(
        read_lease_grant(Some(9), "etcdserver: lease already exists", &[]),
        Ok(())
    );
    let e = read_lease_grant(Some(0), "", &refused).unwrap_err().0;
    assert!(e.contains("too many leases") && !e.contains('\u{7}'), "{e}");
    assert!(read_lease_grant(Some(9), "other precondition", &[]).is_err());
    assert!(read_lease_grant(None, "", &[]).is_err());
    assert!(read_lease_grant(Some(14), "", &[]).is_err());
    let grant = pb::LeaseGrantRequest::decode(
        lease_grant_request(&Lease {
            slot: 1,
            id: 42,
            ttl: 90,
        })
        .as_slice(),
    )
    .unwrap();
    assert_eq!((grant.id, grant.ttl), (42, 90));
}

#[test]
fn the_grpc_service_names_the_cluster_and_authority_in_ascii() {
    let mut s = EtcdSettings {
        upstream: "etcd".into(),
        authority: None,
        key_prefix: PREFIX.into(),
        timeout_ms: 250,
        slot_seconds: 60,
    };
    assert_eq!(s.grpc_service().as_bytes(), b"\x0a\x06\x0a\x04etcd");
    s.authority = Some("etcd.bank.internal".into());
    let g = s.grpc_service();
    assert!(g.is_ascii());
    assert_eq!(
        g.as_bytes(),
        b"\x0a\x1a\x0a\x04etcd\x12\x12etcd.bank.internal".as_slice()
    );
    // The longest names allowed still give one-byte lengths (ASCII).
    s.upstream = "u".repeat(MAX_NAME_LEN);
    s.authority = Some("a".repeat(MAX_NAME_LEN));
    assert!(s.grpc_service().is_ascii());
}

fn settings() -> EtcdSettings {
    EtcdSettings {
        upstream: "etcd".into(),
        authority: None,
        key_prefix: PREFIX.into(),
        timeout_ms: 250,
        slot_seconds: 60,
    }
}

fn call_of(n: &Next) -> &GrpcCall {
    match n {
        Next::Call(c) => c,
        other => panic!("expected a call, got {other:?}"),
    }
}

#[test]
fn recording_is_one_txn_or_grant_then_txn_once() {
    let now = 1_000_000;
    let pairs = [("tpp", "j1", now + 100), ("dir", "s1", now + 500)];
    let recorded = pb::TxnResponse {
        header: None,
        succeeded: true,
        responses: vec![],
    }
    .encode_to_vec();
    let lease_missing = (Some(5), "etcdserver: requested lease not found");

    // The usual case: one call.
    let mut r = Recording::new(&settings(), &pairs, now);
    let first = r.start();
    let c = call_of(&first);
    assert_eq!((c.service, c.method), (KV_SERVICE, TXN_METHOD));
    let req = pb::TxnRequest::decode(c.message.as_slice()).unwrap();
    assert_eq!(req.compare.len(), 2);
    // One lease for both pairs, covering the later one.
    let lease = match &req.success[1].request {
        Some(pb::Request::Put(p)) => p.lease,
        other => panic!("{other:?}"),
    };
    assert_eq!(lease, lease_for(PREFIX, 60, now + 500, now).id);
    assert_eq!(r.answer(Some(0), "", &recorded), Next::Recorded);
    assert!(matches!(r.answer(Some(0), "", &recorded), Next::Fault(_)));

    // Replayed: the index of the pair seen.
    let mut r = Recording::new(&settings(), &pairs, now);
    r.start();
    assert_eq!(
        r.answer(Some(0), "", &txn_answer(false, &[0, 1])),
        Next::Replayed(1)
    );

    // Lease missing: grant, then the same Txn again, once.
    let mut r = Recording::new(&settings(), &pairs, now);
    let txn1 = call_of(&r.start()).clone();
    let grant = r.answer(lease_missing.0, lease_missing.1, &[]);
    let g = call_of(&grant);
    assert_eq!((g.service, g.method), (LEASE_SERVICE, LEASE_GRANT_METHOD));
    let gr = pb::LeaseGrantRequest::decode(g.message.as_slice()).unwrap();
    assert_eq!(gr.id, lease);
    assert!(gr.ttl >= 500);
    let txn2 = r.answer(Some(9), "etcdserver: lease already exists", &[]);
    assert_eq!(call_of(&txn2), &txn1);
    assert_eq!(r.answer(Some(0), "", &recorded), Next::Recorded);

    // Missing again after the grant: a fault, no third Txn.
    let mut r = Recording::new(&settings(), &pairs, now);
    r.start();
    r.answer(lease_missing.0, lease_missing.1, &[]);
    r.answer(Some(0), "", &[]);
    assert!(matches!(
        r.answer(lease_missing.0, lease_missing.1, &[]),
        Next::Fault(_)
    ));

    // Any fault at any step: a fault, never recorded/replayed, never another call.
    for fault in [
        (None, ""),
        (Some(14u32), "etcdserver: no leader"),
        (Some(4), ""),
    ] {
        let mut r = Recording::new(&settings(), &pairs, now);
        r.start();
        assert!(matches!(r.answer(fault.0, fault.1, &[]), Next::Fault(_)));
        let mut r = Recording::new(&settings(), &pairs, now);
        r.start();
        r.answer(lease_missing.0, lease_missing.1, &[]);
        assert!(matches!(r.answer(fault.0, fault.1, &[]), Next::Fault(_)));
    }
}

mod against_prost {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any TxnResponse prost writes (header, succeeded, range or put results) reads back the
        /// same through the codec.
        #[test]
        fn txn_answers_read_as_prost_wrote_them(
            succeeded: bool,
            ops in proptest::collection::vec(proptest::option::of(0i64..5), 0..4),
            revision: i64,
        ) {
            let answer = pb::TxnResponse {
                header: Some(pb::ResponseHeader { cluster_id: 7, member_id: 8, revision, raft_term: 9 }),
                succeeded,
                responses: ops
                    .iter()
                    .map(|o| pb::ResponseOp {
                        response: Some(match o {
                            Some(count) => pb::Response::Range(pb::RangeResponse { header: None, count: *count }),
                            None => pb::Response::Put(pb::PutResponse { header: None }),
                        }),
                    })
                    .collect(),
            }
            .encode_to_vec();
            let got = wire::txn_response(&answer).unwrap();
            prop_assert_eq!(got.succeeded, succeeded);
            prop_assert_eq!(got.responses, ops);
        }

        /// What the codec writes, prost reads as the request meant (any keys, expiries, lease IDs).
        #[test]
        fn requests_read_by_prost_as_meant(
            keys in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..3),
            until in 0i64..i64::MAX,
            lease in 1i64..i64::MAX,
            ttl in 1i64..1_000_000,
        ) {
            let pairs: Vec<PairKey> = keys.iter().map(|k| PairKey { key: k.clone(), until }).collect();
            let req = pb::TxnRequest::decode(txn_request(&pairs, lease).as_slice()).unwrap();
            prop_assert_eq!(req.compare.len(), pairs.len());
            for ((c, s), (f, p)) in req.compare.iter().zip(&req.success).zip(req.failure.iter().zip(&pairs)) {
                prop_assert_eq!(&c.key, &p.key);
                prop_assert_eq!(c.target, pb::CompareTarget::Create as i32);
                prop_assert_eq!(c.result, pb::CompareResult::Equal as i32);
                prop_assert_eq!(&c.target_union, &Some(pb::TargetUnion::CreateRevision(0)));
                prop_assert_eq!(
                    &s.request,
                    &Some(pb::Request::Put(pb::PutRequest { key: p.key.clone(), value: until.to_string().into_bytes(), lease }))
                );
                prop_assert_eq!(
                    &f.request,
                    &Some(pb::Request::Range(pb::RangeRequest { key: p.key.clone(), count_only: true }))
                );
            }
            let g = pb::LeaseGrantRequest::decode(lease_grant_request(&Lease { slot: 1, id: lease, ttl }).as_slice()).unwrap();
            prop_assert_eq!((g.id, g.ttl), (lease, ttl));
        }

        /// Any bytes: a verdict or a fault, never a panic, never "recorded" from junk that is not
        /// a TxnResponse saying so.
        #[test]
        fn any_answer_bytes_are_read_without_panic(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = read_txn(Some(0), "", &body, 2);
            let _ = read_lease_grant(Some(0), "", &body);
        }
    }
}
