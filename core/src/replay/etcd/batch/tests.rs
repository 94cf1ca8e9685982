use super::super::{
    pb, read_txn, txn_request, PairKey, TxnOutcome, LEASE_GRANT_METHOD, LEASE_SERVICE,
};
use super::*;
use prost::Message as _;

fn txn(keys: &[&str]) -> GrpcCall {
    let pairs: Vec<PairKey> = keys
        .iter()
        .map(|k| PairKey {
            key: k.as_bytes().to_vec(),
            until: 100,
        })
        .collect();
    GrpcCall {
        service: KV_SERVICE,
        method: TXN_METHOD,
        message: txn_request(&pairs, 7),
        keys: pairs.into_iter().map(|p| p.key).collect(),
    }
}

fn grant() -> GrpcCall {
    GrpcCall {
        service: LEASE_SERVICE,
        method: LEASE_GRANT_METHOD,
        message: vec![8, 1],
        keys: Vec::new(),
    }
}

/// The nested Txns of a batch, decoded by prost.
fn nested_of(out: &Outgoing<u32>) -> Vec<pb::TxnRequest> {
    let outer = pb::TxnRequest::decode(out.call.message.as_slice()).unwrap();
    assert!(outer.compare.is_empty() && outer.failure.is_empty());
    outer
        .success
        .into_iter()
        .map(|op| match op.request {
            Some(pb::Request::Txn(t)) => t,
            other => panic!("{other:?}"),
        })
        .collect()
}

#[test]
fn a_lone_txn_goes_out_at_once_as_itself() {
    let mut b = Batcher::default();
    assert!(
        b.submit(1u32, txn(&["a"])),
        "an idle worker must wake its sender"
    );
    b.woke();
    let out = b.take_ready().unwrap();
    assert_eq!((out.members.clone(), out.nested), (vec![1], false));
    assert_eq!(out.call, txn(&["a"]));
    assert_eq!(b.take_ready(), None);
}

#[test]
fn txns_that_queue_behind_one_in_flight_go_out_together_when_it_lands() {
    let mut b = Batcher::default();
    assert!(b.submit(1u32, txn(&["a"])));
    b.woke();
    let first = b.take_ready().unwrap();
    assert!(!first.nested);
    // Queued behind it: no wake-up (its answer brings the sender back), nothing sent yet.
    assert!(!b.submit(2, txn(&["b", "b2"])));
    assert!(!b.submit(3, txn(&["c"])));
    assert!(!b.submit(4, txn(&["d"])));
    assert_eq!(b.take_ready(), None, "one Txn in flight at a time");
    b.landed(true);
    let batch = b.take_ready().unwrap();
    assert_eq!((batch.members.clone(), batch.nested), (vec![2, 3, 4], true));
    // Each nested Txn is exactly the member's own request.
    let own: Vec<pb::TxnRequest> = [txn(&["b", "b2"]), txn(&["c"]), txn(&["d"])]
        .iter()
        .map(|c| pb::TxnRequest::decode(c.message.as_slice()).unwrap())
        .collect();
    assert_eq!(nested_of(&batch), own);
    assert_eq!(batch.call.keys.len(), 4);
    assert_eq!(batch.max_answer(), 3 * MAX_ANSWER_BYTES);
    assert_eq!(b.waiting(), 0);
}

#[test]
fn two_txns_writing_one_key_never_share_a_batch() {
    let mut b = Batcher::default();
    b.submit(1u32, txn(&["x"]));
    b.woke();
    let _ = b.take_ready().unwrap();
    b.submit(2, txn(&["k", "s"]));
    b.submit(3, txn(&["k2", "s"])); // the same SSA jti, another request jti
    b.submit(4, txn(&["m"]));
    b.landed(true);
    let batch = b.take_ready().unwrap();
    assert_eq!(batch.members, vec![2, 4]);
    assert_eq!(b.waiting(), 1);
    b.landed(true);
    let later = b.take_ready().unwrap();
    assert_eq!((later.members, later.nested), (vec![3], false));
}

#[test]
fn other_calls_are_never_held_back_and_a_batch_is_bounded() {
    let mut b = Batcher::default();
    b.submit(0u32, txn(&["first"]));
    b.woke();
    let _ = b.take_ready().unwrap();
    for i in 1..=40u32 {
        b.submit(i, txn(&[&format!("k{i}")]));
    }
    b.submit(99, grant());
    let g = b.take_ready().unwrap();
    assert_eq!((g.members, g.call.method), (vec![99], LEASE_GRANT_METHOD));
    assert_eq!(b.take_ready(), None);
    b.landed(false); // the grant: the Txn is still on its way
    assert_eq!(b.take_ready(), None);
    b.landed(true);
    assert_eq!(b.take_ready().unwrap().members.len(), MAX_BATCH);
    b.landed(true);
    assert_eq!(b.take_ready().unwrap().members.len(), 40 - MAX_BATCH);
}

#[test]
fn a_gone_member_is_dropped_and_a_failed_wake_up_gives_the_call_back() {
    let mut b = Batcher::default();
    assert!(b.submit(1u32, txn(&["a"])));
    assert!(!b.submit(2, txn(&["b"])), "one wake-up is enough");
    b.cancel(&1);
    assert_eq!(b.withdraw(&2), Some(txn(&["b"])));
    assert_eq!(b.waiting(), 0);
    // The wake-up is no longer pending: the next submit asks again.
    assert!(b.submit(3, txn(&["c"])));
}

fn nested_answer(succeeded: bool, inner: &[pb::TxnResponse]) -> Vec<u8> {
    pb::TxnResponse {
        header: None,
        succeeded,
        responses: inner
            .iter()
            .map(|t| pb::ResponseOp {
                response: Some(pb::Response::Txn(t.clone())),
            })
            .collect(),
    }
    .encode_to_vec()
}

fn recorded() -> pb::TxnResponse {
    pb::TxnResponse {
        header: None,
        succeeded: true,
        responses: vec![pb::ResponseOp {
            response: Some(pb::Response::Put(pb::PutResponse { header: None })),
        }],
    }
}

fn replayed() -> pb::TxnResponse {
    pb::TxnResponse {
        header: None,
        succeeded: false,
        responses: vec![pb::ResponseOp {
            response: Some(pb::Response::Range(pb::RangeResponse {
                header: None,
                count: 1,
            })),
        }],
    }
}

#[test]
fn each_member_reads_its_own_answer_out_of_a_batch() {
    let body = nested_answer(true, &[recorded(), replayed(), recorded()]);
    let got = answers(true, 3, Some(0), "", &body);
    let outcomes: Vec<_> = got
        .iter()
        .map(|a| match a {
            MemberAnswer::Reply {
                status,
                message,
                body,
            } => read_txn(*status, message, body, 1).unwrap(),
            MemberAnswer::Fault(f) => panic!("{f}"),
        })
        .collect();
    assert_eq!(
        outcomes,
        vec![
            TxnOutcome::Recorded,
            TxnOutcome::Replayed(0),
            TxnOutcome::Recorded
        ]
    );
}

#[test]
fn batch_answers_table() {
    let not_found = "etcdserver: requested lease not found";
    let other_op = pb::TxnResponse {
        header: None,
        succeeded: true,
        responses: vec![pb::ResponseOp {
            response: Some(pb::Response::Put(pb::PutResponse { header: None })),
        }],
    }
    .encode_to_vec();
    // (name, nested, members, status, body, expected: Ok(statuses of the replies) / Err(fault text))
    type Case = (
        &'static str,
        bool,
        usize,
        Option<u32>,
        Vec<u8>,
        Result<Vec<Option<u32>>, &'static str>,
    );
    let cases: Vec<Case> = vec![
        (
            "a lone call passes through",
            false,
            1,
            Some(0),
            recorded().encode_to_vec(),
            Ok(vec![Some(0)]),
        ),
        (
            "no answer: every member",
            true,
            3,
            None,
            Vec::new(),
            Ok(vec![None, None, None]),
        ),
        (
            "missing lease: every member grants",
            true,
            2,
            Some(5),
            Vec::new(),
            Ok(vec![Some(5), Some(5)]),
        ),
        (
            "fewer answers than members",
            true,
            3,
            Some(0),
            nested_answer(true, &[recorded()]),
            Err("answered 1 of a batch of 3"),
        ),
        (
            "more answers than members",
            true,
            1,
            Some(0),
            nested_answer(true, &[recorded(), recorded()]),
            Err("answered 2 of a batch of 1"),
        ),
        (
            "outer Txn not run",
            true,
            1,
            Some(0),
            nested_answer(false, &[recorded()]),
            Err("did not run"),
        ),
        (
            "another operation",
            true,
            1,
            Some(0),
            other_op,
            Err("another operation"),
        ),
        (
            "garbage",
            true,
            2,
            Some(0),
            vec![0x1a, 0x05, 0x22],
            Err("does not parse"),
        ),
        (
            "too large",
            true,
            1,
            Some(0),
            vec![0u8; MAX_ANSWER_BYTES + 1],
            Err("too large"),
        ),
    ];
    for (name, nested, members, status, body, want) in cases {
        let got = answers(nested, members, status, not_found, &body);
        assert_eq!(got.len(), members, "{name}");
        match want {
            Ok(statuses) => {
                let seen: Vec<Option<u32>> = got
                    .iter()
                    .map(|a| match a {
                        MemberAnswer::Reply {
                            status, message, ..
                        } => {
                            assert_eq!(message, not_found, "{name}");
                            *status
                        }
                        MemberAnswer::Fault(f) => panic!("{name}: {f}"),
                    })
                    .collect();
                assert_eq!(seen, statuses, "{name}");
            }
            Err(text) => {
                for a in &got {
                    match a {
                        MemberAnswer::Fault(f) => assert!(f.contains(text), "{name}: {f}"),
                        other => panic!("{name}: {other:?}"),
                    }
                }
            }
        }
    }
}

mod model {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        /// A member submits a Txn writing these keys (from a small set, so that they clash).
        Txn(Vec<u8>),
        Grant,
        /// The sender runs (wake-up or an answer landed): send what is ready.
        Send,
        /// The oldest call in flight lands.
        Land,
        /// A member goes away.
        Cancel(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => prop::collection::vec(0u8..6, 1..3).prop_map(Op::Txn),
            1 => Just(Op::Grant),
            3 => Just(Op::Send),
            3 => Just(Op::Land),
            1 => (0u8..40).prop_map(Op::Cancel),
        ]
    }

    proptest! {
        /// Whatever the order of events: at most one Txn call in flight; no call writes a key
        /// twice (etcd would refuse it); at most MAX_BATCH members; every call submitted goes out
        /// exactly once unless its member left first; nothing waits while nothing is on its way
        /// and the sender ran.
        #[test]
        fn the_batcher_keeps_its_promises(ops in prop::collection::vec(op(), 1..200)) {
            let mut b: Batcher<u8> = Batcher::default();
            let mut next_member = 0u8;
            let mut submitted: Vec<u8> = Vec::new();
            let mut cancelled: Vec<u8> = Vec::new();
            let mut sent: Vec<u8> = Vec::new();
            let mut in_flight: std::collections::VecDeque<bool> = Default::default();
            for op in ops {
                match op {
                    Op::Txn(keys) => {
                        let keys: Vec<&str> = keys.iter().map(|k| ["a", "b", "c", "d", "e", "f"][*k as usize]).collect();
                        let mut call = txn(&keys);
                        call.keys.dedup();
                        b.submit(next_member, call);
                        submitted.push(next_member);
                        next_member = next_member.wrapping_add(1);
                    }
                    Op::Grant => {
                        b.submit(next_member, grant());
                        submitted.push(next_member);
                        next_member = next_member.wrapping_add(1);
                    }
                    Op::Send => {
                        b.woke();
                        while let Some(out) = b.take_ready() {
                            let txn = out.call.method == TXN_METHOD;
                            prop_assert!(out.members.len() <= MAX_BATCH);
                            prop_assert_eq!(out.nested, out.members.len() > 1);
                            let mut keys = out.call.keys.clone();
                            keys.sort();
                            let n = keys.len();
                            keys.dedup();
                            prop_assert_eq!(keys.len(), n, "a key twice in one call");
                            if txn {
                                prop_assert!(!in_flight.contains(&true), "two Txns in flight");
                            }
                            sent.extend(out.members.iter().copied());
                            in_flight.push_back(txn);
                        }
                        // Nothing is left waiting that could go: only Txns behind one in flight.
                        if !in_flight.contains(&true) {
                            prop_assert_eq!(b.waiting(), 0);
                        }
                    }
                    Op::Land => {
                        if let Some(txn) = in_flight.pop_front() {
                            b.landed(txn);
                        }
                    }
                    Op::Cancel(m) => {
                        if submitted.contains(&m) && !sent.contains(&m) {
                            cancelled.push(m);
                        }
                        b.cancel(&m);
                    }
                }
            }
            // Drain: everything not cancelled goes out exactly once.
            for _ in 0..1000 {
                while let Some(txn) = in_flight.pop_front() {
                    b.landed(txn);
                }
                b.woke();
                match b.take_ready() {
                    Some(out) => {
                        sent.extend(out.members.iter().copied());
                        in_flight.push_back(out.call.method == TXN_METHOD);
                    }
                    None if in_flight.is_empty() => break,
                    None => {}
                }
            }
            let mut sent_sorted = sent.clone();
            sent_sorted.sort();
            sent_sorted.dedup();
            prop_assert_eq!(sent_sorted.len(), sent.len(), "a member sent twice");
            for m in &submitted {
                prop_assert!(sent.contains(m) ^ cancelled.contains(m), "member {} lost", m);
            }
        }
    }
}
