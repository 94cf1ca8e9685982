//! The fleet replay store on etcd v3 (`replay.store: etcd`): the few `etcdserverpb` messages it
//! uses, with a small protobuf codec of its own (`wire`: a few fields of five messages; prost,
//! which cost the module about 40 KB, checks it in the tests), and the decisions around them. No I/O:
//! the host sends the gRPC calls (`dispatch_grpc_call` through an Envoy cluster) and hands the
//! answers back.
//!
//! One registration costs one `KV/Txn` round trip: compare `create_revision(key) == 0` for every
//! pair, on success `Put` each key (attached to a lease), on failure `Range` each key (count only)
//! to tell which pair was seen. Keys are `<key_prefix>` + a hex SHA-256 digest of the pair (the
//! raw `iss`/`jti` never leave the gateway).
//!
//! Expiry is through leases, one per time slot: a pair remembered until `until` goes under the
//! lease of the slot that ends at or after `until + slot`; the lease's ID is derived from the key
//! prefix and the slot number, so every gateway of the fleet (every worker of every Envoy) attaches
//! its keys to the same lease without sharing anything but etcd. The first Txn of a slot finds the
//! lease missing (gRPC `NOT_FOUND`): the gateway grants it (`Lease/LeaseGrant` with that ID; a
//! concurrent grant by another gateway answers "lease already exists", which is as good) and sends
//! the Txn again, once.

use ring::digest;

pub mod batch;

/// `etcdserverpb.KV`, method `Txn`.
pub const KV_SERVICE: &str = "etcdserverpb.KV";
pub const TXN_METHOD: &str = "Txn";
/// `etcdserverpb.Lease`, method `LeaseGrant`.
pub const LEASE_SERVICE: &str = "etcdserverpb.Lease";
pub const LEASE_GRANT_METHOD: &str = "LeaseGrant";

/// gRPC status codes the store tells apart.
pub(crate) const GRPC_OK: u32 = 0;
const GRPC_NOT_FOUND: u32 = 5;
const GRPC_FAILED_PRECONDITION: u32 = 9;

/// Longest cluster name / authority accepted in the configuration: keeps the serialized
/// `GrpcService` the host receives plain ASCII (every length < 128 is one varint byte).
pub const MAX_NAME_LEN: usize = 60;

/// Longest answer read from etcd (a Txn answer for two pairs is ~100 bytes).
pub const MAX_ANSWER_BYTES: usize = 16 * 1024;

const DIGEST_DOMAIN: &[u8] = b"dcr-guard/replay/etcd/v1/pair\0";
const LEASE_DOMAIN: &[u8] = b"dcr-guard/replay/etcd/v1/lease\0";

/// The fleet store's settings (`replay.etcd`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdSettings {
    /// The Envoy cluster (HTTP/2) that reaches etcd's client port.
    pub upstream: String,
    /// The `:authority` of the gRPC calls (default: the cluster name).
    pub authority: Option<String>,
    /// Every key dcr-guard writes starts with this.
    pub key_prefix: String,
    /// Deadline of each gRPC call.
    pub timeout_ms: u64,
    /// Width of a lease slot, seconds.
    pub slot_seconds: i64,
}

impl EtcdSettings {
    /// The host's `grpc_service` argument: a serialized `envoy.config.core.v3.GrpcService` with
    /// `envoy_grpc { cluster_name, authority }` (Envoy reads a value that does not parse as one
    /// as a bare cluster name; sending the message always avoids that ambiguity). Plain ASCII by
    /// construction: names are ASCII and shorter than [`MAX_NAME_LEN`] (checked at configure
    /// time), so every length is one byte below 128.
    pub fn grpc_service(&self) -> String {
        let mut inner = Vec::new();
        put_bytes(&mut inner, 1, self.upstream.as_bytes());
        if let Some(a) = &self.authority {
            put_bytes(&mut inner, 2, a.as_bytes());
        }
        let mut out = Vec::new();
        put_bytes(&mut out, 1, &inner);
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// A length-delimited protobuf field whose length is below 128 (one varint byte).
fn put_bytes(out: &mut Vec<u8>, field: u8, value: &[u8]) {
    out.push(field << 3 | 2);
    out.push(u8::try_from(value.len().min(127)).unwrap_or(127));
    out.extend_from_slice(value.get(..value.len().min(127)).unwrap_or_default());
}

/// The etcd key of a pair: the prefix, then a hex SHA-256 digest of (issuer, jti).
pub fn pair_key(prefix: &str, issuer: &str, jti: &str) -> Vec<u8> {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(DIGEST_DOMAIN);
    ctx.update(&(issuer.len() as u64).to_be_bytes());
    ctx.update(issuer.as_bytes());
    ctx.update(jti.as_bytes());
    let d = ctx.finish();
    let mut key = prefix.as_bytes().to_vec();
    for b in d.as_ref() {
        key.extend_from_slice(format!("{b:02x}").as_bytes());
    }
    key
}

/// The lease a pair remembered until `until` goes under: its slot, ID and the TTL to grant it with
/// at `now` (the lease outlives every key attached to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub slot: i64,
    pub id: i64,
    pub ttl: i64,
}

/// The lease for a pair remembered until `until` (Unix seconds), seen at `now`.
pub fn lease_for(prefix: &str, slot_seconds: i64, until: i64, now: i64) -> Lease {
    let width = slot_seconds.max(1);
    let until = until.max(now.saturating_add(1));
    // The first slot that ends after `until`: slot s covers ((s-1)·w, s·w].
    let slot = until.saturating_add(width - 1) / width;
    let end = slot.saturating_mul(width);
    // Lives to the slot's end plus one slot: a lease granted now outlives every key attached to
    // it, whichever gateway granted it and whose clock is a little behind.
    let ttl = end.saturating_add(width).saturating_sub(now).max(1);
    Lease {
        slot,
        id: lease_id(prefix, slot),
        ttl,
    }
}

/// A lease ID every gateway derives alike: positive, never 0 (0 asks etcd to choose).
fn lease_id(prefix: &str, slot: i64) -> i64 {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(LEASE_DOMAIN);
    ctx.update(prefix.as_bytes());
    ctx.update(&slot.to_be_bytes());
    let d = ctx.finish();
    let mut b = [0u8; 8];
    b.copy_from_slice(d.as_ref().get(..8).unwrap_or(&[0u8; 8]));
    let id = i64::from_be_bytes(b) & i64::MAX;
    id.max(1)
}

/// One pair to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairKey {
    pub key: Vec<u8>,
    /// Recorded until (Unix seconds); written as the value, for operators reading etcd.
    pub until: i64,
}

/// The `KV/Txn` request: create every key if none exists, else read which exist.
///
/// `TxnRequest { compare: [Compare { result: EQUAL, target: CREATE, key, create_revision: 0 }],
/// success: [RequestOp { request_put: PutRequest { key, value, lease } }], failure: [RequestOp {
/// request_range: RangeRequest { key, count_only: true } }] }` (field numbers of etcd's
/// `rpc.proto`; EQUAL is 0, the default, so it is not written; the `create_revision` oneof is
/// written even at 0).
pub fn txn_request(pairs: &[PairKey], lease: i64) -> Vec<u8> {
    let mut out = Vec::new();
    for p in pairs {
        let mut compare = Vec::new();
        wire::varint_field(&mut compare, 2, 1); // target: CREATE
        wire::bytes_field(&mut compare, 3, &p.key);
        wire::varint_field(&mut compare, 5, 0); // create_revision (oneof: present at 0)
        wire::bytes_field(&mut out, 1, &compare);
    }
    for p in pairs {
        let mut put = Vec::new();
        wire::bytes_field(&mut put, 1, &p.key);
        wire::bytes_field(&mut put, 2, p.until.to_string().as_bytes());
        if lease != 0 {
            wire::varint_field(&mut put, 3, lease as u64);
        }
        let mut op = Vec::new();
        wire::bytes_field(&mut op, 2, &put); // request_put
        wire::bytes_field(&mut out, 2, &op);
    }
    for p in pairs {
        let mut range = Vec::new();
        wire::bytes_field(&mut range, 1, &p.key);
        wire::varint_field(&mut range, 9, 1); // count_only
        let mut op = Vec::new();
        wire::bytes_field(&mut op, 1, &range); // request_range
        wire::bytes_field(&mut out, 3, &op);
    }
    out
}

/// The `Lease/LeaseGrant` request for `lease`: `LeaseGrantRequest { TTL, ID }`.
pub fn lease_grant_request(lease: &Lease) -> Vec<u8> {
    let mut out = Vec::new();
    wire::varint_field(&mut out, 1, lease.ttl as u64);
    wire::varint_field(&mut out, 2, lease.id as u64);
    out
}

/// What a Txn answer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOutcome {
    /// Every pair was new and is now recorded.
    Recorded,
    /// The pair at this index (in the order sent) was recorded before: a replay.
    Replayed(usize),
    /// The slot's lease does not exist (yet, or any more): grant it and send the Txn again.
    LeaseMissing,
}

/// A store fault: the registration is answered 503 (fail closed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault(pub String);

/// Read the answer to a Txn: the gRPC status (`None`: no answer at all), its message, the body.
pub fn read_txn(
    status: Option<u32>,
    message: &str,
    body: &[u8],
    pairs: usize,
) -> Result<TxnOutcome, Fault> {
    match status {
        None => return Err(Fault("no answer from etcd".to_string())),
        Some(GRPC_OK) => {}
        Some(GRPC_NOT_FOUND) if message.contains("lease not found") => {
            return Ok(TxnOutcome::LeaseMissing)
        }
        Some(code) => return Err(grpc_fault(code, message)),
    }
    if body.len() > MAX_ANSWER_BYTES {
        return Err(Fault("etcd answer too large".to_string()));
    }
    let resp =
        wire::txn_response(body).map_err(|e| Fault(format!("etcd answer does not parse: {e}")))?;
    if resp.succeeded {
        return Ok(TxnOutcome::Recorded);
    }
    if resp.responses.len() != pairs {
        return Err(Fault(format!(
            "etcd answered {} reads for {pairs} pairs",
            resp.responses.len()
        )));
    }
    for (i, r) in resp.responses.iter().enumerate() {
        match r {
            Some(count) if *count > 0 => return Ok(TxnOutcome::Replayed(i)),
            Some(_) => {}
            None => return Err(Fault("etcd answered an unexpected operation".to_string())),
        }
    }
    // The compare failed but no key exists now: it expired in between (its lease ran out). The
    // pair was seen within its retention: still a replay, of the first pair.
    Ok(TxnOutcome::Replayed(0))
}

/// Read the answer to a LeaseGrant: granted now, or by another gateway before.
pub fn read_lease_grant(status: Option<u32>, message: &str, body: &[u8]) -> Result<(), Fault> {
    match status {
        None => Err(Fault("no answer from etcd".to_string())),
        Some(GRPC_OK) => {
            if body.len() > MAX_ANSWER_BYTES {
                return Err(Fault("etcd answer too large".to_string()));
            }
            let error = wire::lease_grant_error(body)
                .map_err(|e| Fault(format!("etcd answer does not parse: {e}")))?;
            if error.is_empty() {
                Ok(())
            } else {
                Err(Fault(format!("etcd lease grant: {}", clip(&error))))
            }
        }
        Some(GRPC_FAILED_PRECONDITION) if message.contains("lease already exists") => Ok(()),
        Some(code) => Err(grpc_fault(code, message)),
    }
}

fn grpc_fault(code: u32, message: &str) -> Fault {
    let name = match code {
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "status",
    };
    if message.is_empty() {
        Fault(format!("etcd answered gRPC {name} ({code})"))
    } else {
        Fault(format!(
            "etcd answered gRPC {name} ({code}): {}",
            clip(message)
        ))
    }
}

/// etcd's messages are its own, but bounded in what we repeat of them.
fn clip(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(120).collect()
}

/// One gRPC call for the host to send to [`EtcdSettings::upstream`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcCall {
    pub service: &'static str,
    pub method: &'static str,
    pub message: Vec<u8>,
    /// The keys a `Txn` writes (empty for other calls): two Txns that write the same key cannot
    /// share a batch (etcd refuses a request that puts a key twice), see [`batch`].
    pub keys: Vec<Vec<u8>>,
}

/// What to do next while recording pairs in etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Send this call and hand its answer to [`Recording::answer`].
    Call(GrpcCall),
    /// Every pair is new and recorded.
    Recorded,
    /// The pair at this index was recorded before.
    Replayed(usize),
    /// etcd could not say: fail closed (503).
    Fault(Fault),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Txn,
    Grant,
    Retry,
    Done,
}

/// Recording a registration's pairs in etcd: one Txn; when the slot's lease is missing, one
/// LeaseGrant and the Txn once more. Never more than three calls, never a retry of a Txn whose
/// outcome is unknown (it may have committed: a second attempt would call the first a replay).
#[derive(Debug, Clone)]
pub struct Recording {
    pairs: Vec<PairKey>,
    lease: Lease,
    stage: Stage,
}

impl Recording {
    /// `pairs`: (issuer, jti, remembered until) in the order their rules run.
    pub fn new(settings: &EtcdSettings, pairs: &[(&str, &str, i64)], now: i64) -> Recording {
        let until = pairs.iter().map(|p| p.2).max().unwrap_or(now);
        Recording {
            pairs: pairs
                .iter()
                .map(|(iss, jti, until)| PairKey {
                    key: pair_key(&settings.key_prefix, iss, jti),
                    until: (*until).max(now.saturating_add(1)),
                })
                .collect(),
            lease: lease_for(&settings.key_prefix, settings.slot_seconds, until, now),
            stage: Stage::Txn,
        }
    }

    /// The first call.
    pub fn start(&mut self) -> Next {
        self.stage = Stage::Txn;
        self.txn()
    }

    fn txn(&self) -> Next {
        Next::Call(GrpcCall {
            service: KV_SERVICE,
            method: TXN_METHOD,
            message: txn_request(&self.pairs, self.lease.id),
            keys: self.pairs.iter().map(|p| p.key.clone()).collect(),
        })
    }

    /// The answer to the last call: gRPC status (`None`: none came), its message, the body.
    pub fn answer(&mut self, status: Option<u32>, message: &str, body: &[u8]) -> Next {
        let stage = std::mem::replace(&mut self.stage, Stage::Done);
        match stage {
            Stage::Txn | Stage::Retry => match read_txn(status, message, body, self.pairs.len()) {
                Ok(TxnOutcome::Recorded) => Next::Recorded,
                Ok(TxnOutcome::Replayed(i)) => Next::Replayed(i),
                Ok(TxnOutcome::LeaseMissing) if stage == Stage::Txn => {
                    self.stage = Stage::Grant;
                    Next::Call(GrpcCall {
                        service: LEASE_SERVICE,
                        method: LEASE_GRANT_METHOD,
                        message: lease_grant_request(&self.lease),
                        keys: Vec::new(),
                    })
                }
                Ok(TxnOutcome::LeaseMissing) => {
                    Next::Fault(Fault("the lease etcd just granted is missing".to_string()))
                }
                Err(f) => Next::Fault(f),
            },
            Stage::Grant => match read_lease_grant(status, message, body) {
                Ok(()) => {
                    self.stage = Stage::Retry;
                    self.txn()
                }
                Err(f) => Next::Fault(f),
            },
            Stage::Done => Next::Fault(Fault("internal: answer after the end".to_string())),
        }
    }
}

/// The protobuf wire format, as far as these messages need it: varint and length-delimited
/// fields written; any field read, the unknown ones skipped, everything bounds-checked.
mod wire {
    /// A varint.
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// A varint field (wire type 0); int64 values go as their two's-complement u64.
    pub(super) fn varint_field(out: &mut Vec<u8>, field: u32, v: u64) {
        varint(out, u64::from(field) << 3);
        varint(out, v);
    }

    /// A length-delimited field (wire type 2).
    pub(super) fn bytes_field(out: &mut Vec<u8>, field: u32, v: &[u8]) {
        varint(out, u64::from(field) << 3 | 2);
        varint(out, v.len() as u64);
        out.extend_from_slice(v);
    }

    /// One field read: its number and value.
    enum Value<'a> {
        Varint(u64),
        Bytes(&'a [u8]),
        Fixed,
    }

    struct Reader<'a>(&'a [u8]);

    impl<'a> Reader<'a> {
        fn varint(&mut self) -> Result<u64, &'static str> {
            let mut v: u64 = 0;
            for i in 0..10 {
                let (&b, rest) = self.0.split_first().ok_or("truncated varint")?;
                self.0 = rest;
                v |= u64::from(b & 0x7f) << (7 * i);
                if b < 0x80 {
                    return Ok(v);
                }
            }
            Err("varint longer than 10 bytes")
        }

        fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
            if n > self.0.len() {
                return Err("truncated field");
            }
            let (head, rest) = self.0.split_at(n);
            self.0 = rest;
            Ok(head)
        }

        /// The next field, or `None` at the end.
        fn field(&mut self) -> Result<Option<(u64, Value<'a>)>, &'static str> {
            if self.0.is_empty() {
                return Ok(None);
            }
            let key = self.varint()?;
            let value = match key & 7 {
                0 => Value::Varint(self.varint()?),
                1 => {
                    self.take(8)?;
                    Value::Fixed
                }
                2 => {
                    let n = usize::try_from(self.varint()?).map_err(|_| "length too large")?;
                    Value::Bytes(self.take(n)?)
                }
                5 => {
                    self.take(4)?;
                    Value::Fixed
                }
                _ => return Err("unsupported wire type"),
            };
            Ok(Some((key >> 3, value)))
        }
    }

    /// `TxnResponse`: `succeeded` (2) and, for each `ResponseOp` (3), the `count` (4) of its
    /// `response_range` (1), or `None` for another operation.
    pub(super) struct TxnResponse {
        pub(super) succeeded: bool,
        pub(super) responses: Vec<Option<i64>>,
    }

    pub(super) fn txn_response(body: &[u8]) -> Result<TxnResponse, &'static str> {
        let mut resp = TxnResponse {
            succeeded: false,
            responses: Vec::new(),
        };
        let mut r = Reader(body);
        while let Some((field, value)) = r.field()? {
            match (field, value) {
                (2, Value::Varint(v)) => resp.succeeded = v != 0,
                (3, Value::Bytes(op)) => resp.responses.push(range_count(op)?),
                (2 | 3, _) => return Err("a field of the wrong type"),
                _ => {}
            }
        }
        Ok(resp)
    }

    /// A `ResponseOp`: the count of its `response_range`, `None` when it holds another operation.
    fn range_count(op: &[u8]) -> Result<Option<i64>, &'static str> {
        let mut r = Reader(op);
        let mut count = None;
        while let Some((field, value)) = r.field()? {
            match (field, value) {
                (1, Value::Bytes(range)) => {
                    let mut n = 0i64;
                    let mut rr = Reader(range);
                    while let Some((f, v)) = rr.field()? {
                        if let (4, Value::Varint(c)) = (f, v) {
                            n = c as i64;
                        }
                    }
                    count = Some(n);
                }
                (2..=4, _) => return Ok(None),
                _ => {}
            }
        }
        Ok(count)
    }

    /// A batch's `TxnResponse`: `succeeded` (2) and, for each `ResponseOp` (3), the bytes of its
    /// `response_txn` (4), in order; any other operation is an error.
    pub(super) fn nested_txns(body: &[u8]) -> Result<(bool, Vec<&[u8]>), &'static str> {
        let mut succeeded = false;
        let mut nested = Vec::new();
        let mut r = Reader(body);
        while let Some((field, value)) = r.field()? {
            match (field, value) {
                (2, Value::Varint(v)) => succeeded = v != 0,
                (3, Value::Bytes(op)) => {
                    let mut inner = None;
                    let mut rr = Reader(op);
                    while let Some((f, v)) = rr.field()? {
                        match (f, v) {
                            (4, Value::Bytes(txn)) => inner = Some(txn),
                            (1..=4, _) => return Err("a batch answered another operation"),
                            _ => {}
                        }
                    }
                    nested.push(inner.ok_or("a batch answer without its nested Txn")?);
                }
                (2 | 3, _) => return Err("a field of the wrong type"),
                _ => {}
            }
        }
        Ok((succeeded, nested))
    }

    /// `LeaseGrantResponse.error` (4); empty when granted.
    pub(super) fn lease_grant_error(body: &[u8]) -> Result<String, &'static str> {
        let mut r = Reader(body);
        let mut error = String::new();
        while let Some((field, value)) = r.field()? {
            if let (4, Value::Bytes(e)) = (field, value) {
                error = String::from_utf8_lossy(e).into_owned();
            }
        }
        Ok(error)
    }
}

/// The `etcdserverpb` messages (field numbers as in etcd's `rpc.proto`, v3.4+), derived with prost:
/// the tests' independent oracle for `wire`.
#[cfg(test)]
pub(crate) mod pb {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TxnRequest {
        #[prost(message, repeated, tag = "1")]
        pub compare: Vec<Compare>,
        #[prost(message, repeated, tag = "2")]
        pub success: Vec<RequestOp>,
        #[prost(message, repeated, tag = "3")]
        pub failure: Vec<RequestOp>,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
    #[repr(i32)]
    pub enum CompareResult {
        Equal = 0,
        Greater = 1,
        Less = 2,
        NotEqual = 3,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
    #[repr(i32)]
    pub enum CompareTarget {
        Version = 0,
        Create = 1,
        Mod = 2,
        Value = 3,
        Lease = 4,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Compare {
        #[prost(enumeration = "CompareResult", tag = "1")]
        pub result: i32,
        #[prost(enumeration = "CompareTarget", tag = "2")]
        pub target: i32,
        #[prost(bytes = "vec", tag = "3")]
        pub key: Vec<u8>,
        #[prost(oneof = "TargetUnion", tags = "4, 5, 6, 7, 8")]
        pub target_union: Option<TargetUnion>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum TargetUnion {
        #[prost(int64, tag = "4")]
        Version(i64),
        #[prost(int64, tag = "5")]
        CreateRevision(i64),
        #[prost(int64, tag = "6")]
        ModRevision(i64),
        #[prost(bytes = "vec", tag = "7")]
        Value(Vec<u8>),
        #[prost(int64, tag = "8")]
        Lease(i64),
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RequestOp {
        #[prost(oneof = "Request", tags = "1, 2, 4")]
        pub request: Option<Request>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Request {
        #[prost(message, tag = "1")]
        Range(RangeRequest),
        #[prost(message, tag = "2")]
        Put(PutRequest),
        #[prost(message, tag = "4")]
        Txn(TxnRequest),
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RangeRequest {
        #[prost(bytes = "vec", tag = "1")]
        pub key: Vec<u8>,
        #[prost(bool, tag = "9")]
        pub count_only: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PutRequest {
        #[prost(bytes = "vec", tag = "1")]
        pub key: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
        #[prost(int64, tag = "3")]
        pub lease: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TxnResponse {
        #[prost(message, optional, tag = "1")]
        pub header: Option<ResponseHeader>,
        #[prost(bool, tag = "2")]
        pub succeeded: bool,
        #[prost(message, repeated, tag = "3")]
        pub responses: Vec<ResponseOp>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResponseHeader {
        #[prost(uint64, tag = "1")]
        pub cluster_id: u64,
        #[prost(uint64, tag = "2")]
        pub member_id: u64,
        #[prost(int64, tag = "3")]
        pub revision: i64,
        #[prost(uint64, tag = "4")]
        pub raft_term: u64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResponseOp {
        #[prost(oneof = "Response", tags = "1, 2, 4")]
        pub response: Option<Response>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Response {
        #[prost(message, tag = "1")]
        Range(RangeResponse),
        #[prost(message, tag = "2")]
        Put(PutResponse),
        #[prost(message, tag = "4")]
        Txn(TxnResponse),
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RangeResponse {
        #[prost(message, optional, tag = "1")]
        pub header: Option<ResponseHeader>,
        #[prost(int64, tag = "4")]
        pub count: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PutResponse {
        #[prost(message, optional, tag = "1")]
        pub header: Option<ResponseHeader>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LeaseGrantRequest {
        #[prost(int64, tag = "1")]
        pub ttl: i64,
        #[prost(int64, tag = "2")]
        pub id: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LeaseGrantResponse {
        #[prost(message, optional, tag = "1")]
        pub header: Option<ResponseHeader>,
        #[prost(int64, tag = "2")]
        pub id: i64,
        #[prost(int64, tag = "3")]
        pub ttl: i64,
        #[prost(string, tag = "4")]
        pub error: String,
    }
}

#[cfg(test)]
mod tests;
