//! One worker's calls to etcd, batched: the `Txn`s of registrations that reach the fleet store
//! while another `Txn` of the same worker is on its way go out together as **one** call when it
//! lands — an outer `Txn` without compares whose operations are the registrations' own `Txn`s,
//! nested (etcd ≥ 3.3). Each nested `Txn` keeps its compare, so each registration gets exactly the
//! answer it would have had alone; only the gRPC round trip, the gateway's most expensive part of
//! the fleet store, is shared.
//!
//! A lone registration is sent at once, as its plain `Txn` (no nesting, no waiting): batching only
//! happens when calls queue up behind one in flight, so it adds no latency at low load and at
//! most one round trip under load. Two `Txn`s that write the same key never share a batch (etcd
//! refuses a request that puts a key twice): the later one waits for the next batch, where it
//! finds the key recorded — a replay, as it would have been alone. Other calls (`LeaseGrant`) go
//! out one by one, never held back.
//!
//! No I/O here: the glue sends what [`Batcher::take_ready`] hands it, from a context that outlives any
//! one request (Envoy's root context), so that a client hanging up never loses the answer of the
//! others in its batch.

use std::collections::VecDeque;

use super::{wire, GrpcCall, GRPC_OK, KV_SERVICE, MAX_ANSWER_BYTES, TXN_METHOD};

/// Most registrations in one batch (etcd's default `--max-txn-ops` is 128 per level; a nested
/// `Txn` holds at most two pairs).
pub const MAX_BATCH: usize = 32;

/// A call to send now, and whose answer it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing<T> {
    pub call: GrpcCall,
    /// The members, in the order of the nested `Txn`s (one member unless `nested`).
    pub members: Vec<T>,
    /// An outer `Txn` around the members' own (answered by [`answers`]).
    pub nested: bool,
}

impl<T> Outgoing<T> {
    /// The most bytes of answer to read for this call.
    pub fn max_answer(&self) -> usize {
        MAX_ANSWER_BYTES.saturating_mul(self.members.len().max(1))
    }
}

/// What one member learns from its batch's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberAnswer {
    /// Its own call's answer, as if it had been sent alone.
    Reply {
        status: Option<u32>,
        message: String,
        body: Vec<u8>,
    },
    /// The batch's answer could not be read: the member's outcome is unknown (fail closed).
    Fault(String),
}

/// The calls of one worker waiting to go to etcd, and what is on its way.
#[derive(Debug)]
pub struct Batcher<T> {
    waiting: VecDeque<(T, GrpcCall)>,
    /// Calls sent and not answered yet.
    in_flight: usize,
    /// One of them is a `Txn` (alone or a batch).
    txn_in_flight: bool,
    /// A wake-up of the sending context was asked for and has not come yet.
    wake_pending: bool,
}

impl<T> Default for Batcher<T> {
    fn default() -> Self {
        Batcher {
            waiting: VecDeque::new(),
            in_flight: 0,
            txn_in_flight: false,
            wake_pending: false,
        }
    }
}

impl<T: PartialEq + Clone> Batcher<T> {
    /// Queue `who`'s call. `true`: nothing on its way will bring the sending context back, so
    /// the caller must wake it (and call [`Batcher::woke`] when it runs, then [`Batcher::take_ready`]).
    pub fn submit(&mut self, who: T, call: GrpcCall) -> bool {
        self.waiting.push_back((who, call));
        if self.in_flight == 0 && !self.wake_pending {
            self.wake_pending = true;
            true
        } else {
            false
        }
    }

    /// The sending context runs (the wake-up came).
    pub fn woke(&mut self) {
        self.wake_pending = false;
    }

    /// The sending context is about to look at the queue anyway (it is handling an answer):
    /// calls submitted until [`Batcher::woke`] need no wake-up.
    pub fn draining(&mut self) {
        self.wake_pending = true;
    }

    /// The wake-up could not be asked for: take `who`'s call back (the caller sends it itself).
    pub fn withdraw(&mut self, who: &T) -> Option<GrpcCall> {
        self.wake_pending = false;
        let i = self.waiting.iter().position(|(w, _)| w == who)?;
        self.waiting.remove(i).map(|(_, c)| c)
    }

    /// `who` is gone: its queued call is dropped (a call already sent is answered to no one).
    pub fn cancel(&mut self, who: &T) {
        self.waiting.retain(|(w, _)| w != who);
    }

    /// Calls waiting.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// The next call to send now, if any: other calls one by one first, then — unless a `Txn`
    /// is on its way — the waiting `Txn`s as one call (a lone one as itself).
    pub fn take_ready(&mut self) -> Option<Outgoing<T>> {
        if let Some(i) = self
            .waiting
            .iter()
            .position(|(_, c)| c.method != TXN_METHOD)
        {
            let (who, call) = self.waiting.remove(i)?;
            self.in_flight += 1;
            return Some(Outgoing {
                call,
                members: vec![who],
                nested: false,
            });
        }
        if self.txn_in_flight || self.waiting.is_empty() {
            return None;
        }
        let mut taken: Vec<(T, GrpcCall)> = Vec::new();
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let mut rest = VecDeque::new();
        while let Some((who, call)) = self.waiting.pop_front() {
            let clash = call.keys.iter().any(|k| keys.contains(k));
            if clash || taken.len() == MAX_BATCH {
                rest.push_back((who, call));
            } else {
                keys.extend(call.keys.iter().cloned());
                taken.push((who, call));
            }
        }
        self.waiting = rest;
        self.in_flight += 1;
        self.txn_in_flight = true;
        if taken.len() == 1 {
            let (who, call) = taken.pop()?;
            return Some(Outgoing {
                call,
                members: vec![who],
                nested: false,
            });
        }
        let message = batch_request(taken.iter().map(|(_, c)| c.message.as_slice()));
        let members = taken.into_iter().map(|(w, _)| w).collect();
        Some(Outgoing {
            call: GrpcCall {
                service: KV_SERVICE,
                method: TXN_METHOD,
                message,
                keys,
            },
            members,
            nested: true,
        })
    }

    /// A call sent by [`Batcher::take_ready`] was answered (or failed): `txn` when it was a `Txn`.
    pub fn landed(&mut self, txn: bool) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if txn {
            self.txn_in_flight = false;
        }
    }
}

/// The outer `Txn` of a batch: no compares; its success operations are the nested `Txn`s
/// (`RequestOp.request_txn`, field 4), so it always "succeeds" and runs every one of them.
pub fn batch_request<'a>(txns: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for txn in txns {
        let mut op = Vec::new();
        wire::bytes_field(&mut op, 4, txn);
        wire::bytes_field(&mut out, 2, &op);
    }
    out
}

/// Each member's answer to a call of `members` members (`nested`: a batch). A call that failed as
/// a whole (no answer, a gRPC error such as a missing lease) failed for every member alike.
pub fn answers(
    nested: bool,
    members: usize,
    status: Option<u32>,
    message: &str,
    body: &[u8],
) -> Vec<MemberAnswer> {
    let whole = |status: Option<u32>, body: &[u8]| MemberAnswer::Reply {
        status,
        message: message.to_string(),
        body: body.to_vec(),
    };
    if !nested || status != Some(GRPC_OK) {
        let body: &[u8] = if nested { &[] } else { body };
        return (0..members.max(1)).map(|_| whole(status, body)).collect();
    }
    let fault = |why: String| {
        (0..members)
            .map(|_| MemberAnswer::Fault(why.clone()))
            .collect()
    };
    if body.len() > MAX_ANSWER_BYTES.saturating_mul(members.max(1)) {
        return fault("etcd answer too large".to_string());
    }
    match wire::nested_txns(body) {
        Err(e) => fault(format!("etcd's answer to a batch does not parse: {e}")),
        Ok((false, _)) => fault("etcd did not run a batch".to_string()),
        Ok((true, nested)) if nested.len() != members => fault(format!(
            "etcd answered {} of a batch of {members}",
            nested.len()
        )),
        Ok((true, nested)) => nested
            .into_iter()
            .map(|b| whole(Some(GRPC_OK), b))
            .collect(),
    }
}

#[cfg(test)]
mod tests;
