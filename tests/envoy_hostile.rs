//! Hostile traffic through one real Envoy (two workers) running the built filter: over ten thousand
//! malformed or adversarial requests, split across HTTP/1.1 and HTTP/2 (h2c), generated from a
//! fixed seed. Every request carries its number in `x-hostile-id` and is generated knowing what a
//! correct filter does with it: refuse it (every registration-path request whose body, envelope,
//! path or headers are wrong), forward it (clean non-DCR requests, valid registrations, management
//! calls with a token), or either (non-DCR requests so malformed that Envoy itself may refuse them).
//!
//! Asserted at the end:
//! - the upstream (the AS stand-in) received only requests a correct filter forwards, every
//!   well-formed one of those, exactly one of each group of concurrent replays of one valid
//!   registration, and never a verified-fact header a client sent;
//! - no 5xx except the filter's documented 503 `temporarily_unavailable` (none expected here);
//! - no wasm failure: with `failure_policy: FAIL_RELOAD` (what the kits ship), Envoy's `wasm.*`
//!   failure and reload counters (`vm_reload`, `vm_reload_success`, `vm_reload_backoff`,
//!   `vm_reload_failure`, `remote_load_fetch_failures` on 1.36–1.40) stay 0, no VM is created
//!   during the run, and the log has no panic or wasm runtime error;
//! - Envoy's memory (`server.memory_allocated`, `server.memory_heap_size`, and the process's
//!   resident size) grows by less than a generous bound;
//! - Envoy still registers a valid client afterwards, over both protocols.
//!
//! Loopback only; bounded in count (constants below) and in time (client timeouts).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::dcr::Tpp;
use common::keys::{self, TestKey};
use common::{h2c, http, Envoy, EnvoyConfig, Reply, Response, TestServer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const SEED: u64 = 0xdc12_0a5e_0010;
const H1_REQUESTS: usize = 5_200;
const H2_REQUESTS: usize = 5_200;
/// Client threads for HTTP/1.1 (one connection per request) and HTTP/2 (one connection per batch).
const H1_THREADS: usize = 6;
const H2_THREADS: usize = 2;
const H2_BATCH: usize = 64;
/// Connections at a time for the HTTP/2 requests that get a connection each.
const H2_PARALLEL: usize = 64;
/// Concurrent replays: groups of copies of one valid registration, half over each protocol.
const REPLAY_GROUPS: usize = 5;
const REPLAY_COPIES: usize = 24;
/// Slow bodies: per protocol, this many requests whose body comes in `SLOW_PIECES` pieces.
const SLOW_PER_PROTO: usize = 3;
const SLOW_PIECES: usize = 5;
const SLOW_PAUSE: Duration = Duration::from_millis(150);

const ID_HEADER: &str = "x-hostile-id";
const FACT_SOFTWARE: &str = "x-dcr-guard-software-id";
const FACT_ORG: &str = "x-dcr-guard-org-id";

/// Memory growth allowed over the whole run: generous (measured: about 4 MiB allocated, 10 MiB
/// heap, 10 MiB resident).
const MAX_ALLOCATED_GROWTH: u64 = 32 << 20;
const MAX_HEAP_GROWTH: u64 = 64 << 20;
const MAX_RSS_GROWTH: u64 = 128 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// A correct filter never lets it reach the AS.
    Refuse,
    /// A correct filter forwards it; it is well-formed, so it must arrive.
    Forward,
    /// Not DCR but malformed: Envoy may refuse it or pass it on.
    Either,
    /// One of a group of concurrent copies of one valid registration: exactly one arrives.
    Replay(usize),
}

/// How the body is framed on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// `content-length` (added unless the headers carry one).
    Normal,
    /// `content-length` claims `extra` more bytes than are sent; then the client hangs up
    /// (HTTP/1.1: half-close; HTTP/2: the stream ends, or is reset on odd ids).
    Truncated { extra: usize },
    /// `content-length` claims `extra` more bytes than are sent, and the client waits for the
    /// answer with the request still open.
    Declared { extra: usize },
    /// HTTP/1.1 chunked (HTTP/2: no `content-length`).
    Chunked,
    /// The body in `SLOW_PIECES` pieces with pauses.
    Slow,
}

/// A generated request, independent of the protocol.
#[derive(Clone, Debug)]
struct Spec {
    kind: &'static str,
    expect: Expect,
    /// It may end without an answer (reset, refused or half-closed connection).
    may_drop: bool,
    method: String,
    /// The request target: a path, or (HTTP/1.1 only) an absolute URI.
    target: String,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: Vec<u8>,
    framing: Framing,
}

impl Spec {
    fn new(kind: &'static str, expect: Expect, method: &str, target: &str) -> Spec {
        Spec {
            kind,
            expect,
            may_drop: false,
            method: method.to_string(),
            target: target.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
            framing: Framing::Normal,
        }
    }

    fn header(mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Spec {
        self.headers
            .push((name.as_ref().to_vec(), value.as_ref().to_vec()));
        self
    }

    fn jwt(self, body: impl AsRef<[u8]>) -> Spec {
        self.header("content-type", "application/jwt").body(body)
    }

    fn body(mut self, body: impl AsRef<[u8]>) -> Spec {
        self.body = body.as_ref().to_vec();
        self
    }

    fn drop_ok(mut self) -> Spec {
        self.may_drop = true;
        self
    }

    fn framing(mut self, f: Framing) -> Spec {
        self.framing = f;
        self
    }

    fn has(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Proto {
    H1,
    H2,
}

struct Case {
    id: usize,
    proto: Proto,
    spec: Spec,
}

/// HTTP/1.1 bytes for `case`, in the parts to write (one, or several for a slow body).
fn h1_parts(case: &Case) -> (Vec<Vec<u8>>, bool) {
    let s = &case.spec;
    let mut head = format!(
        "{} {} HTTP/1.1\r\nhost: bank.example\r\n",
        s.method, s.target
    )
    .into_bytes();
    head.extend_from_slice(format!("{ID_HEADER}: {}\r\n", case.id).as_bytes());
    for (k, v) in &s.headers {
        head.extend_from_slice(k);
        head.extend_from_slice(b": ");
        head.extend_from_slice(v);
        head.extend_from_slice(b"\r\n");
    }
    let explicit = s.has("content-length") || s.has("transfer-encoding");
    let mut body = s.body.clone();
    let mut half_close = false;
    match s.framing {
        Framing::Chunked => {
            if !explicit {
                head.extend_from_slice(b"transfer-encoding: chunked\r\n");
            }
            body = http::chunked(&s.body);
        }
        Framing::Truncated { extra } | Framing::Declared { extra } => {
            if !explicit {
                head.extend_from_slice(
                    format!("content-length: {}\r\n", s.body.len() + extra).as_bytes(),
                );
            }
            half_close = matches!(s.framing, Framing::Truncated { .. });
        }
        Framing::Normal | Framing::Slow => {
            if !explicit && !s.body.is_empty() {
                head.extend_from_slice(format!("content-length: {}\r\n", s.body.len()).as_bytes());
            }
        }
    }
    head.extend_from_slice(b"connection: close\r\n\r\n");
    let mut parts = vec![head];
    if s.framing == Framing::Slow {
        let piece = body.len().div_ceil(SLOW_PIECES).max(1);
        parts.extend(body.chunks(piece).map(<[u8]>::to_vec));
    } else if let Some(first) = parts.first_mut() {
        first.extend_from_slice(&body);
    }
    (parts, half_close)
}

fn h2_request(case: &Case) -> h2c::Request {
    let s = &case.spec;
    let mut r = h2c::Request::new(&s.method, &s.target).header(ID_HEADER, case.id.to_string());
    for (k, v) in &s.headers {
        r = r.header(&String::from_utf8_lossy(k), v);
    }
    r = r.body(&s.body);
    match s.framing {
        Framing::Normal | Framing::Chunked => {}
        Framing::Truncated { extra } => {
            if !s.has("content-length") {
                r = r.header("content-length", (s.body.len() + extra).to_string());
            }
            if case.id % 2 == 1 {
                r = r.reset_after(s.body.len());
            }
        }
        Framing::Declared { extra } => {
            if !s.has("content-length") {
                r = r.header("content-length", (s.body.len() + extra).to_string());
            }
            r = r.hold_open();
        }
        Framing::Slow => r = r.slow(SLOW_PIECES, SLOW_PAUSE),
    }
    if s.framing == Framing::Chunked {
        // HTTP/2 has no chunked coding: a body without a length ends with the stream.
        r = r.without_length();
    }
    r
}

/// Generates the requests.
struct Gen {
    rng: StdRng,
    tpp: Tpp,
    /// A valid registration: sent once as a control, then mutated (every mutation is refused,
    /// at the latest as a replay).
    base: String,
    /// Registrations that fail validation only by their signature.
    rogue: String,
    /// Valid registrations used with headers that must get them refused (a correct filter never
    /// forwards one, so their `jti`s stay unused).
    pool: Vec<String>,
    listener_port: u16,
}

const OVERRIDES: [&str; 3] = [
    "X-HTTP-Method-Override",
    "X-HTTP-Method",
    "X-Method-Override",
];

/// Suffixes after a spelling of the registration path that keep the request under it, even after
/// Envoy's normalisation (no dot segment climbs out of it).
const SUFFIXES: &[&str] = &[
    "",
    "/",
    "?x=1",
    "%2F",
    "%2f",
    "%5C",
    "%5c",
    "\\",
    "\\abc",
    ".json",
    "%2e",
    "%2E%2E",
    "%20",
    "%3B",
    "%3b",
    ";x",
    ";jsessionid=1",
    "%252F",
    "%252f",
    "%2Fabc",
    "%2Fabc%2F",
    "/abc%2F..",
    "/abc;x",
    "/abc%00",
    "/abc/..",
    "/./abc",
    "//abc",
    "/abc//",
    "/a%2fb",
    "%09",
    "/%2e",
    "%u002F",
    "%",
    "%zz",
    "/abc%5C..",
    "%C0%AF",
    "%E2%80%A8",
];

impl Gen {
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.rng.gen_range(0..items.len())]
    }

    /// `/register` spelled as a client might: any case, some letters percent-encoded (Envoy
    /// decodes unreserved escapes).
    fn register_spelling(&mut self) -> String {
        let mut out = String::from("/");
        for c in "register".chars() {
            let c = if self.rng.gen_bool(0.2) {
                c.to_ascii_uppercase()
            } else {
                c
            };
            if self.rng.gen_bool(0.1) {
                out.push_str(&format!("%{:02X}", c as u8));
            } else {
                out.push(c);
            }
        }
        out
    }

    fn dcr_path(&mut self) -> String {
        let suffix = *self.pick(SUFFIXES);
        format!("{}{suffix}", self.register_spelling())
    }

    fn invalid_body(&mut self) -> Vec<u8> {
        match self.rng.gen_range(0..4) {
            0 => self.rogue.clone().into_bytes(),
            1 => mutate(&mut self.rng, &self.base).into_bytes(),
            2 => {
                let n = self.rng.gen_range(1..600);
                (0..n).map(|_| self.rng.gen()).collect()
            }
            _ => b"not a jwt".to_vec(),
        }
    }

    fn high_bytes(&mut self) -> Vec<u8> {
        let n = self.rng.gen_range(1..24);
        (0..n)
            .map(|_| {
                if self.rng.gen_bool(0.5) {
                    self.rng.gen_range(0x80..=0xff)
                } else {
                    self.rng.gen_range(0x21..0x7f)
                }
            })
            .collect()
    }

    /// One hostile (or control) request for `proto`: request number `n`, from its own RNG seeded
    /// with (`SEED`, `n`), so that the mix does not depend on the fresh keys' and tokens' bytes.
    fn case(&mut self, proto: Proto, n: usize) -> Spec {
        self.rng = StdRng::seed_from_u64(SEED ^ (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let roll = self.rng.gen_range(0..100);
        match roll {
            0..=39 => {
                // Random mutation of a valid registration.
                let body = mutate(&mut self.rng, &self.base);
                Spec::new("jws mutation", Expect::Refuse, "POST", "/register").jwt(body)
            }
            40..=49 => {
                // Encoded, odd or absolute-form paths under the registration path.
                let mut path = self.dcr_path();
                if proto == Proto::H1 && self.rng.gen_bool(0.3) {
                    let host = if self.rng.gen_bool(0.5) {
                        format!("127.0.0.1:{}", self.listener_port)
                    } else {
                        "bank.example".to_string()
                    };
                    path = format!("http://{host}{path}");
                }
                let method = *self.pick(&["POST", "PUT", "GET", "DELETE", "PATCH"]);
                let body = if matches!(method, "POST" | "PUT" | "PATCH") {
                    self.invalid_body()
                } else {
                    Vec::new()
                };
                let s = Spec::new("encoded path", Expect::Refuse, method, &path);
                // `%00`, `%` and friends may be refused by Envoy's codec.
                if body.is_empty() {
                    s.drop_ok()
                } else {
                    s.jwt(body).drop_ok()
                }
            }
            50..=54 => {
                // Duplicate and conflicting content types.
                let body = self.invalid_body();
                let s = Spec::new("content-type games", Expect::Refuse, "POST", "/register");
                let s = match self.rng.gen_range(0..5) {
                    0 => s
                        .header("content-type", "application/jwt")
                        .header("content-type", "application/json"),
                    1 => s.header("content-type", "application/jwt, text/html"),
                    2 => s
                        .header("content-type", "text/plain")
                        .header("Content-Type", "application/jwt"),
                    // A control character (HTTP/2 clients cannot send one).
                    3 if proto == Proto::H1 => {
                        s.header("content-type", "application/jwt; charset=\"utf-8\"; x=\x01")
                    }
                    3 => s.header(
                        "content-type",
                        "application/jwt; charset=utf-8; charset=latin1",
                    ),
                    _ => s.header("content-type", "APPLICATION/JOSE;;;"),
                };
                s.body(body)
            }
            55..=59 => {
                // Duplicate and conflicting content lengths, and framing fights.
                let body = self.invalid_body();
                let n = body.len();
                let s = Spec::new("content-length games", Expect::Refuse, "POST", "/register")
                    .header("content-type", "application/jwt")
                    .drop_ok();
                let s = match self.rng.gen_range(0..6) {
                    0 => s
                        .header("content-length", n.to_string())
                        .header("content-length", (n + 1).to_string()),
                    1 => s
                        .header("content-length", n.to_string())
                        .header("content-length", n.to_string()),
                    2 => s.header("content-length", format!("{n}, {n}")),
                    3 => s.header("content-length", format!("+{n}")),
                    4 => s.header("content-length", "18446744073709551616"),
                    _ if proto == Proto::H1 => s
                        .header("content-length", n.to_string())
                        .header("transfer-encoding", "chunked")
                        .framing(Framing::Chunked),
                    _ => s.header("content-length", "-1"),
                };
                s.body(body)
            }
            60..=64 => {
                // Truncated bodies: the client hangs up before the declared length.
                let body = if self.rng.gen_bool(0.5) {
                    self.pool[self.rng.gen_range(0..self.pool.len())]
                        .clone()
                        .into_bytes()
                } else {
                    self.invalid_body()
                };
                let cut = self.rng.gen_range(0..=body.len());
                let extra = body.len() - cut + self.rng.gen_range(1..100);
                Spec::new("truncated body", Expect::Refuse, "POST", "/register")
                    .jwt(&body[..cut])
                    .framing(Framing::Truncated { extra })
                    .drop_ok()
            }
            65..=67 => {
                // Oversized bodies: declared (and cut short) or sent in full without a length.
                let s = Spec::new("oversized body", Expect::Refuse, "POST", "/register").drop_ok();
                if self.rng.gen_range(0..10) == 0 {
                    let n = self.rng.gen_range(65 * 1024..1536 * 1024);
                    s.jwt(vec![b'a'; n]).framing(Framing::Chunked)
                } else {
                    // Declared over the limit: answered (413) before the body comes.
                    let declared = self.rng.gen_range(65 * 1024..64 * 1024 * 1024);
                    s.jwt(b"eyJ").framing(Framing::Declared {
                        extra: declared - 3,
                    })
                }
            }
            68..=72 => {
                // Header floods.
                let body = self.invalid_body();
                let mut s =
                    Spec::new("header flood", Expect::Refuse, "POST", "/register").jwt(body);
                if self.rng.gen_bool(0.8) {
                    for i in 0..self.rng.gen_range(20..150) {
                        s = s.header(
                            format!("x-flood-{i}"),
                            "v".repeat(self.rng.gen_range(1..200)),
                        );
                    }
                } else {
                    let n = self.rng.gen_range(8 * 1024..96 * 1024);
                    s = s.header("x-big", "b".repeat(n));
                }
                s.drop_ok()
            }
            73..=79 => {
                // Invalid UTF-8 in headers or the body.
                let s = Spec::new("invalid utf-8", Expect::Refuse, "POST", "/register");
                match self.rng.gen_range(0..5) {
                    0 => {
                        let v = [b"application/jwt".to_vec(), self.high_bytes()].concat();
                        s.header("content-type", v).body(self.base.clone())
                    }
                    1 => {
                        let v = self.high_bytes();
                        s.jwt(self.invalid_body()).header("authorization", v)
                    }
                    2 => {
                        let v = self.high_bytes();
                        s.jwt(self.invalid_body()).header(FACT_SOFTWARE, v)
                    }
                    3 => {
                        // A JWS whose segments decode to bytes that are not UTF-8.
                        let bad = keys::b64(self.high_bytes());
                        let body = match self.rng.gen_range(0..3) {
                            0 => format!("{bad}.{bad}.{bad}"),
                            1 => {
                                let (_, rest) = self.base.split_once('.').unwrap();
                                format!("{bad}.{rest}")
                            }
                            _ => {
                                let parts: Vec<&str> = self.base.split('.').collect();
                                format!("{}.{bad}.{}", parts[0], parts[2])
                            }
                        };
                        s.jwt(body)
                    }
                    _ => {
                        let mut body = self.base.clone().into_bytes();
                        let at = self.rng.gen_range(0..body.len());
                        body.insert(at, self.rng.gen_range(0x80..=0xff));
                        s.jwt(body)
                    }
                }
                .drop_ok()
            }
            80..=83 => {
                // Method overrides on a registration path, with a request that is otherwise valid.
                let name = *self.pick(&OVERRIDES);
                let value = *self.pick(&["PUT", "GET", "DELETE", "POST", "PATCH", "put"]);
                match self.rng.gen_range(0..3) {
                    0 => {
                        let body = self.pool[self.rng.gen_range(0..self.pool.len())].clone();
                        Spec::new("method override", Expect::Refuse, "POST", "/register")
                            .jwt(body)
                            .header(name, value)
                    }
                    1 => Spec::new("method override", Expect::Refuse, "GET", "/register/c1")
                        .header("authorization", "Bearer management-token")
                        .header(name, value),
                    _ => Spec::new("method override", Expect::Refuse, "DELETE", "/register/c1")
                        .header("authorization", "Bearer management-token")
                        .header(name, value),
                }
            }
            84..=88 => {
                // Management calls: with a token (forwarded) or wrong (refused).
                let id = format!("/register/client-{}", self.rng.gen_range(0..1000));
                let method = *self.pick(&["GET", "DELETE"]);
                match self.rng.gen_range(0..5) {
                    0 | 1 => Spec::new("management", Expect::Forward, method, &id)
                        .header("authorization", "Bearer management-token"),
                    2 => {
                        // Declared, or (chunked; over HTTP/2 without a length) not.
                        let framing = if self.rng.gen_bool(0.5) {
                            Framing::Chunked
                        } else {
                            Framing::Normal
                        };
                        Spec::new("management with a body", Expect::Refuse, method, &id)
                            .header("authorization", "Bearer management-token")
                            .body(self.invalid_body())
                            .framing(framing)
                    }
                    3 => {
                        let auth =
                            *self.pick(&["Bearer", "Basic dXNlcjpwYXNz", "Bearer a b", "bearer"]);
                        Spec::new("management bad token", Expect::Refuse, method, &id)
                            .header("authorization", auth)
                    }
                    _ => Spec::new("management put", Expect::Refuse, "PUT", &id)
                        .header("authorization", "Bearer management-token")
                        .jwt(self.invalid_body()),
                }
            }
            89..=93 => {
                // Other paths with junk: Envoy may refuse them; forged fact headers never pass.
                let path = *self.pick(&["/other", "/registers", "/register-x", "/accounts/1", "/"]);
                let mut s = Spec::new("non-dcr junk", Expect::Either, "POST", path)
                    .header(FACT_SOFTWARE, "forged")
                    .header(FACT_ORG, "forged")
                    .body(self.invalid_body());
                if self.rng.gen_bool(0.5) {
                    let v = self.high_bytes();
                    s = s.header("x-junk", v);
                }
                if self.rng.gen_bool(0.3) {
                    s = s
                        .header("content-length", "1")
                        .header("content-length", "2");
                }
                s.drop_ok()
            }
            _ => {
                // Clean non-DCR requests (with forged fact headers, which must be stripped).
                let n = self.rng.gen_range(0..1_000_000);
                Spec::new(
                    "non-dcr",
                    Expect::Forward,
                    "GET",
                    &format!("/other/{n}?q=1"),
                )
                .header(FACT_SOFTWARE, "forged")
                .header("x-dcr-guard-ORG-id", "forged")
            }
        }
    }
}

/// A random mutation of a compact JWS (never the same string).
fn mutate(rng: &mut StdRng, jws: &str) -> String {
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let parts: Vec<&str> = jws.split('.').collect();
    let mut b = jws.as_bytes().to_vec();
    let out = match rng.gen_range(0..11) {
        0 | 1 => {
            let i = rng.gen_range(0..b.len());
            let c = loop {
                let c = if rng.gen_bool(0.9) {
                    B64[rng.gen_range(0..B64.len())]
                } else {
                    *[b'.', b'=', b'+', b'/', b' ', b'%']
                        .get(rng.gen_range(0..6))
                        .unwrap()
                };
                if c != b[i] {
                    break c;
                }
            };
            b[i] = c;
            String::from_utf8_lossy(&b).into_owned()
        }
        2 => {
            let i = rng.gen_range(0..b.len());
            let n = rng.gen_range(1..20).min(b.len() - i);
            b.drain(i..i + n);
            String::from_utf8_lossy(&b).into_owned()
        }
        3 => {
            let i = rng.gen_range(0..=b.len());
            let n = rng.gen_range(1..20);
            let ins: Vec<u8> = (0..n).map(|_| B64[rng.gen_range(0..B64.len())]).collect();
            b.splice(i..i, ins);
            String::from_utf8_lossy(&b).into_owned()
        }
        4 => {
            let cut = rng.gen_range(0..b.len());
            String::from_utf8_lossy(&b[..cut]).into_owned()
        }
        5 => match rng.gen_range(0..4) {
            0 => format!("{}.{}.{}.{}", parts[0], parts[1], parts[1], parts[2]),
            1 => format!("{}.{}.{}", parts[1], parts[0], parts[2]),
            2 => format!("{}..{}", parts[0], parts[2]),
            _ => format!("{}.{}.", parts[0], parts[1]),
        },
        6 => {
            let header = match rng.gen_range(0..6) {
                0 => json!({"alg": "none"}),
                1 => json!({"alg": "HS256", "kid": "tpp"}),
                2 => json!({"alg": "ES256", "kid": "tpp", "crit": ["exp"]}),
                3 => json!({"alg": "ES256", "jku": "https://evil.example/jwks"}),
                4 => json!({"alg": "ES256", "kid": "../../etc/passwd"}),
                _ => json!({"alg": ["ES256"], "kid": {"x": 1}}),
            };
            format!(
                "{}.{}.{}",
                keys::b64(header.to_string()),
                parts[1],
                parts[2]
            )
        }
        7 => {
            let mut claims: Value = serde_json::from_slice(&keys::b64_decode(parts[1])).unwrap();
            match rng.gen_range(0..6) {
                0 => claims["iss"] = json!("someone-else"),
                1 => claims["aud"] = json!(["x", 1, null]),
                2 => claims["exp"] = json!(1e300),
                3 => claims["software_statement"] = json!({"nested": [[[[[[[[1]]]]]]]]}),
                4 => claims["redirect_uris"] = json!("https://evil.example/cb"),
                _ => claims["jti"] = json!(keys::uuid_v4()),
            }
            format!(
                "{}.{}.{}",
                parts[0],
                keys::b64(claims.to_string()),
                parts[2]
            )
        }
        8 => {
            // A duplicate member in the payload JSON.
            let payload = String::from_utf8(keys::b64_decode(parts[1])).unwrap();
            let dup = payload.replacen('{', "{\"iss\":\"dup\",", 1);
            format!("{}.{}.{}", parts[0], keys::b64(dup), parts[2])
        }
        9 => {
            let mut s = jws.to_string();
            for _ in 0..rng.gen_range(2..9) {
                let i = rng.gen_range(0..s.len());
                let c = B64[rng.gen_range(0..B64.len())] as char;
                s.replace_range(i..i + 1, &c.to_string());
            }
            s
        }
        _ => {
            let alpha: Vec<usize> = (0..b.len())
                .filter(|&i| b[i].is_ascii_alphabetic())
                .collect();
            let i = alpha[rng.gen_range(0..alpha.len())];
            b[i] ^= 0x20;
            String::from_utf8_lossy(&b).into_owned()
        }
    };
    if out == jws {
        format!("{jws}A")
    } else {
        out
    }
}

/// Envoy's process resident size, from /proc (Linux), in bytes.
fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

#[derive(Debug, Clone, Copy)]
struct Memory {
    allocated: u64,
    heap: u64,
    rss: u64,
}

fn memory(envoy: &Envoy) -> Memory {
    Memory {
        allocated: envoy
            .stat("server.memory_allocated")
            .expect("server.memory_allocated"),
        heap: envoy
            .stat("server.memory_heap_size")
            .expect("server.memory_heap_size"),
        rss: rss_bytes(envoy.pid()),
    }
}

fn error_of(r: &Response) -> String {
    serde_json::from_slice::<Value>(&r.body)
        .ok()
        .and_then(|v| v["error"].as_str().map(String::from))
        .unwrap_or_default()
}

type Results = Arc<Mutex<HashMap<usize, Result<Response, String>>>>;

fn send_h1(port: u16, case: &Case) -> Result<Response, String> {
    let (parts, half_close) = h1_parts(case);
    let pause = if case.spec.framing == Framing::Slow {
        SLOW_PAUSE
    } else {
        Duration::ZERO
    };
    http::try_send_raw_parts(port, parts, pause, half_close).map_err(|e| e.to_string())
}

/// Sends `cases` over HTTP/2, `per_connection` streams per connection; with 1, `H2_PARALLEL`
/// connections at a time.
fn send_h2(port: u16, cases: &[&Case], per_connection: usize, results: &Results) {
    if per_connection == 1 {
        let reqs: Vec<h2c::Request> = cases.iter().map(|c| h2_request(c)).collect();
        let answers = h2c::send_each(port, &reqs, H2_PARALLEL);
        let mut map = results.lock().unwrap();
        for (case, answer) in cases.iter().zip(answers) {
            map.insert(case.id, answer.map_err(|e| e.to_string()));
        }
        return;
    }
    for batch in cases.chunks(per_connection) {
        let reqs: Vec<h2c::Request> = batch.iter().map(|c| h2_request(c)).collect();
        let answers: Vec<Result<Response, String>> = match h2c::Client::connect(port) {
            Ok(mut client) => client
                .send_all(&reqs)
                .into_iter()
                .map(|r| r.map_err(|e| e.to_string()))
                .collect(),
            Err(e) => batch.iter().map(|_| Err(format!("connect: {e}"))).collect(),
        };
        let mut map = results.lock().unwrap();
        for (case, answer) in batch.iter().zip(answers) {
            map.insert(case.id, answer);
        }
    }
}

/// Sends every case: HTTP/1.1 spread over `H1_THREADS` threads; HTTP/2 over `H2_THREADS`. A
/// hostile stream can make Envoy close its whole connection (e.g. a header list over the limit is
/// a compression error), which would take the other streams on it along: so requests that may be
/// dropped get a connection each, and the rest share connections, `H2_BATCH` streams at a time,
/// the ones that must arrive apart from the hostile ones.
fn send_all(port: u16, cases: &[Case], results: &Results) {
    thread::scope(|scope| {
        let h1: Vec<&Case> = cases.iter().filter(|c| c.proto == Proto::H1).collect();
        for t in 0..H1_THREADS {
            let mine: Vec<&Case> = h1.iter().skip(t).step_by(H1_THREADS).copied().collect();
            let results = Arc::clone(results);
            scope.spawn(move || {
                for case in mine {
                    let answer = send_h1(port, case);
                    results.lock().unwrap().insert(case.id, answer);
                }
            });
        }
        let h2: Vec<&Case> = cases.iter().filter(|c| c.proto == Proto::H2).collect();
        let lists: [(Vec<&Case>, usize); 3] = [
            (
                h2.iter()
                    .filter(|c| c.spec.expect == Expect::Forward)
                    .copied()
                    .collect(),
                H2_BATCH,
            ),
            (
                h2.iter()
                    .filter(|c| c.spec.expect != Expect::Forward && !c.spec.may_drop)
                    .copied()
                    .collect(),
                H2_BATCH,
            ),
            (
                h2.iter()
                    .filter(|c| c.spec.expect != Expect::Forward && c.spec.may_drop)
                    .copied()
                    .collect(),
                1,
            ),
        ];
        for (list, batch) in lists {
            let list = Arc::new(list);
            for t in 0..H2_THREADS {
                let results = Arc::clone(results);
                let list = Arc::clone(&list);
                scope.spawn(move || {
                    let mine: Vec<&Case> =
                        list.iter().skip(t).step_by(H2_THREADS).copied().collect();
                    send_h2(port, &mine, batch, &results);
                });
            }
        }
    });
}

#[test]
fn hostile_traffic_through_envoy() {
    let started = Instant::now();
    let tpp = Tpp::new(TestKey::ec("dir"), TestKey::ec("tpp"));
    let keystore = common::keystore(&tpp, vec![]);
    let upstream = TestServer::always(
        Reply::json(201, &json!({"client_id": "c1"})).with_header("x-upstream", "as"),
    );
    let mut filter = tpp.filter_config("keystore", "keystore");
    filter["fact_headers"] = json!([
        {"claim": "software_id", "header": FACT_SOFTWARE},
        {"claim": "org_id", "header": FACT_ORG}
    ]);
    // `FAIL_RELOAD`, what the kits ship: a trap would show as a reload (and its 503s) as well as in
    // the log; with the harness's `FAIL_CLOSED` it would show as 503s and in the log.
    let envoy = Envoy::start(
        &EnvoyConfig::new(filter, upstream.port())
            .cluster("keystore", keystore.port())
            .concurrency(2)
            .edit(|b| {
                let filters = &mut b["static_resources"]["listeners"][0]["filter_chains"][0]
                    ["filters"][0]["typed_config"]["http_filters"];
                for f in filters.as_array_mut().into_iter().flatten() {
                    if f["name"] == "envoy.filters.http.wasm" {
                        f["typed_config"]["config"]["failure_policy"] = json!("FAIL_RELOAD");
                    }
                }
            }),
    );

    let base = tpp.request();
    let rogue = TestKey::ec("tpp").sign_default(&tpp.request_claims(&tpp.ssa()));
    let pool = (0..16).map(|_| tpp.request()).collect();
    let mut gen = Gen {
        rng: StdRng::seed_from_u64(SEED),
        tpp,
        base,
        rogue,
        pool,
        listener_port: envoy.port,
    };

    // Controls, which also warm the key caches before memory is measured: the base registration
    // (so that every mutation of it is refused, at the latest as a replay) and a valid one over
    // HTTP/2.
    let mut cases: Vec<Case> = Vec::new();
    let add = |cases: &mut Vec<Case>, proto: Proto, spec: Spec| {
        let id = cases.len();
        cases.push(Case { id, proto, spec });
        id
    };
    let control_h1 = add(
        &mut cases,
        Proto::H1,
        Spec::new("valid registration", Expect::Forward, "POST", "/register").jwt(&gen.base),
    );
    let control_h2 = add(
        &mut cases,
        Proto::H2,
        Spec::new("valid registration", Expect::Forward, "POST", "/register")
            .jwt(gen.tpp.request())
            .header(FACT_SOFTWARE, "forged"),
    );
    let results: Results = Arc::new(Mutex::new(HashMap::new()));
    for id in [control_h1, control_h2] {
        let answer = match cases[id].proto {
            Proto::H1 => send_h1(envoy.port, &cases[id]),
            Proto::H2 => h2c::Client::connect(envoy.port)
                .and_then(|mut c| c.send(&h2_request(&cases[id])))
                .map_err(|e| e.to_string()),
        };
        let r = answer.as_ref().expect("control request");
        assert_eq!(r.status, 201, "control {:?}: {}", cases[id].proto, r.text());
        results.lock().unwrap().insert(id, answer);
    }
    let wasm_before = envoy.stats("^wasm\\.");
    let mem_before = memory(&envoy);

    // The flood.
    let first_flood = cases.len();
    for i in 0..H1_REQUESTS + H2_REQUESTS {
        let proto = if i < H1_REQUESTS {
            Proto::H1
        } else {
            Proto::H2
        };
        let spec = gen.case(proto, i);
        add(&mut cases, proto, spec);
    }
    // A few valid registrations among them, some with forged fact headers.
    for i in 0..20 {
        let proto = if i % 2 == 0 { Proto::H1 } else { Proto::H2 };
        let spec = Spec::new("valid registration", Expect::Forward, "POST", "/register")
            .jwt(gen.tpp.request())
            .header(FACT_ORG, "forged");
        add(&mut cases, proto, spec);
    }
    // Slow bodies: valid and invalid.
    let mut slow = Vec::new();
    for proto in [Proto::H1, Proto::H2] {
        for i in 0..SLOW_PER_PROTO {
            let spec = if i == 0 {
                Spec::new(
                    "slow valid registration",
                    Expect::Forward,
                    "POST",
                    "/register",
                )
                .jwt(gen.tpp.request())
            } else {
                let body = gen.invalid_body();
                Spec::new("slow invalid body", Expect::Refuse, "POST", "/register").jwt(body)
            };
            slow.push(add(&mut cases, proto, spec.framing(Framing::Slow)));
        }
    }
    // Concurrent replays of one valid registration per group.
    let mut replays: Vec<Vec<usize>> = Vec::new();
    for g in 0..REPLAY_GROUPS {
        let body = gen.tpp.request();
        let ids = (0..REPLAY_COPIES)
            .map(|i| {
                let proto = if i % 2 == 0 { Proto::H1 } else { Proto::H2 };
                let spec = Spec::new("concurrent replay", Expect::Replay(g), "POST", "/register")
                    .jwt(&body);
                add(&mut cases, proto, spec)
            })
            .collect();
        replays.push(ids);
    }
    let generated = Instant::now();

    let port = envoy.port;
    thread::scope(|scope| {
        // Slow requests in the background, while the flood runs.
        for &id in &slow {
            let case = &cases[id];
            let results = Arc::clone(&results);
            scope.spawn(move || {
                let answer = match case.proto {
                    Proto::H1 => send_h1(port, case),
                    Proto::H2 => h2c::Client::connect(port)
                        .and_then(|mut c| c.send(&h2_request(case)))
                        .map_err(|e| e.to_string()),
                };
                results.lock().unwrap().insert(case.id, answer);
            });
        }
        let flood: Vec<Case> = cases[first_flood..]
            .iter()
            .filter(|c| !slow.contains(&c.id) && !matches!(c.spec.expect, Expect::Replay(_)))
            .map(|c| Case {
                id: c.id,
                proto: c.proto,
                spec: c.spec.clone(),
            })
            .collect();
        send_all(port, &flood, &results);
    });
    let flooded = Instant::now();
    // The replays: every copy of a group released at once.
    for ids in &replays {
        let barrier = Barrier::new(ids.len());
        thread::scope(|scope| {
            for &id in ids {
                let case = &cases[id];
                let results = Arc::clone(&results);
                let barrier = &barrier;
                scope.spawn(move || {
                    let client = match case.proto {
                        Proto::H2 => Some(h2c::Client::connect(port)),
                        Proto::H1 => None,
                    };
                    barrier.wait();
                    let answer = match client {
                        None => send_h1(port, case),
                        Some(Ok(mut c)) => c.send(&h2_request(case)).map_err(|e| e.to_string()),
                        Some(Err(e)) => Err(e.to_string()),
                    };
                    results.lock().unwrap().insert(case.id, answer);
                });
            }
        });
    }
    let done = Instant::now();

    // Afterwards Envoy still registers a valid client, over both protocols.
    let body = gen.tpp.request();
    let r = http::send(
        port,
        "POST",
        "/register",
        &[("content-type", "application/jwt")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 201, "HTTP/1.1 after the flood: {}", r.text());
    let body = gen.tpp.request();
    let r = h2c::send(
        port,
        "POST",
        "/register",
        &[("content-type", "application/jwt")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 201, "HTTP/2 after the flood: {}", r.text());
    thread::sleep(Duration::from_millis(300));
    let mem_after = memory(&envoy);
    let wasm_after = envoy.stats("^wasm\\.");

    let results = results.lock().unwrap();
    // Failures by kind: a count and the first few examples.
    let mut failures: BTreeMap<String, (usize, Vec<String>)> = BTreeMap::new();
    let mut fail = |category: String, example: String| {
        let entry = failures.entry(category).or_default();
        entry.0 += 1;
        if entry.1.len() < 3 {
            entry.1.push(example);
        }
    };

    // What reached the upstream.
    let records = upstream.requests();
    let mut arrived: HashMap<usize, usize> = HashMap::new();
    let verified = [
        (FACT_SOFTWARE, gen.tpp.software_id.clone()),
        (FACT_ORG, gen.tpp.org_id.clone()),
    ];
    for rec in &records {
        let Some(id) = rec.header(ID_HEADER).and_then(|v| v.parse::<usize>().ok()) else {
            // The two checks after the flood carry no id.
            if rec.path == "/register" && rec.header("content-type") == Some("application/jwt") {
                continue;
            }
            fail(
                "the upstream received a request without an id".into(),
                format!("{} {}", rec.method, rec.path),
            );
            continue;
        };
        let Some(case) = cases.get(id) else {
            fail("the upstream received an unknown id".into(), id.to_string());
            continue;
        };
        *arrived.entry(id).or_default() += 1;
        if case.spec.expect == Expect::Refuse {
            fail(
                format!(
                    "{} over {:?}: refused by a correct filter, but reached the upstream",
                    case.spec.kind, case.proto
                ),
                format!(
                    "#{id} {} {} → the upstream received {} {} ({} body bytes)",
                    case.spec.method,
                    case.spec.target,
                    rec.method,
                    rec.path,
                    rec.body.len()
                ),
            );
        }
        // Fact headers: only the values the filter set after a successful registration.
        let registration = rec.path == "/register" && rec.method == "POST";
        for (name, value) in &verified {
            let got = rec.header_all(name);
            let ok = if registration {
                got == vec![value.as_str()]
            } else {
                got.is_empty()
            };
            if !ok {
                fail(
                    format!(
                        "{} over {:?}: a client-sent {name} reached the upstream",
                        case.spec.kind, case.proto
                    ),
                    format!("#{id} {} {}: {got:?}", rec.method, rec.path),
                );
            }
        }
    }

    // Every answer.
    let mut summary: BTreeMap<(&str, Proto), BTreeMap<String, usize>> = BTreeMap::new();
    for case in &cases {
        let name = format!("#{} {} {}", case.id, case.spec.method, case.spec.target);
        let kind = format!("{} over {:?}", case.spec.kind, case.proto);
        let outcome = match results.get(&case.id) {
            Some(Ok(r)) => format!("{}", r.status),
            Some(Err(e)) => format!("no answer ({})", e.chars().take(70).collect::<String>()),
            None => {
                fail(format!("{kind}: never sent"), name);
                continue;
            }
        };
        *summary
            .entry((case.spec.kind, case.proto))
            .or_default()
            .entry(outcome)
            .or_default() += 1;
        let n = arrived.get(&case.id).copied().unwrap_or(0);
        match &results[&case.id] {
            Ok(r) => {
                if r.status >= 500
                    && !(r.status == 503
                        && r.header("content-type") == Some("application/json")
                        && error_of(r) == "temporarily_unavailable")
                {
                    fail(
                        format!("{kind}: answered 5xx"),
                        format!("{name}: {} {}", r.status, r.text()),
                    );
                }
                if case.spec.expect == Expect::Forward
                    && (r.header("x-upstream").is_none() || n != 1)
                {
                    fail(
                        format!("{kind}: a correct filter forwards it, it did not arrive once"),
                        format!("{name}: answer {} {}, arrived {n}", r.status, r.text()),
                    );
                }
            }
            Err(e) => {
                let allowed = case.spec.may_drop
                    || matches!(case.spec.expect, Expect::Either | Expect::Replay(_));
                if !allowed || case.spec.expect == Expect::Forward {
                    fail(format!("{kind}: no answer"), format!("{name}: {e}"));
                }
            }
        }
    }
    for (g, ids) in replays.iter().enumerate() {
        let n: usize = ids
            .iter()
            .map(|id| arrived.get(id).copied().unwrap_or(0))
            .sum();
        if n != 1 {
            let answers: Vec<String> = ids
                .iter()
                .map(|id| match &results[id] {
                    Ok(r) => format!("{} {}", r.status, error_of(r)),
                    Err(e) => e.clone(),
                })
                .collect();
            fail(
                "concurrent replays: not exactly one copy reached the upstream".into(),
                format!("group {g}: {n} arrived, answers {answers:?}"),
            );
        }
    }

    // No wasm failure.
    let failure_stats: Vec<&(String, u64)> = wasm_after
        .iter()
        .filter(|(n, _)| {
            ["fail", "reload", "trap", "crash"]
                .iter()
                .any(|w| n.contains(w))
        })
        .collect();
    assert!(
        failure_stats
            .iter()
            .any(|(n, _)| n.ends_with("vm_reload_failure")),
        "Envoy's wasm failure counters were not found: {wasm_after:?}"
    );
    for (n, v) in &failure_stats {
        if *v != 0 {
            fail("Envoy's wasm failure stats".into(), format!("{n} = {v}"));
        }
    }
    let created = |stats: &[(String, u64)]| {
        stats
            .iter()
            .filter(|(n, _)| n.starts_with("wasm.envoy.wasm.runtime.") && n.ends_with(".created"))
            .map(|(_, v)| *v)
            .sum::<u64>()
    };
    if created(&wasm_after) != created(&wasm_before) {
        fail(
            "wasm VMs were created during the run".into(),
            format!("{wasm_before:?} → {wasm_after:?}"),
        );
    }
    let log = envoy.log();
    for needle in ["panicked", "RuntimeError", "failed: Uncaught", "wasm trap"] {
        if let Some(line) = log.lines().find(|l| l.contains(needle)) {
            fail(format!("Envoy's log has {needle:?}"), line.to_string());
        }
    }

    // Bounded memory.
    let grew = |a: u64, b: u64| b.saturating_sub(a);
    for (what, before, after, bound) in [
        (
            "server.memory_allocated",
            mem_before.allocated,
            mem_after.allocated,
            MAX_ALLOCATED_GROWTH,
        ),
        (
            "server.memory_heap_size",
            mem_before.heap,
            mem_after.heap,
            MAX_HEAP_GROWTH,
        ),
        (
            "resident size",
            mem_before.rss,
            mem_after.rss,
            MAX_RSS_GROWTH,
        ),
    ] {
        if grew(before, after) > bound {
            fail(
                "Envoy's memory grew past the bound".into(),
                format!("{what}: {before} → {after} (bound +{bound})"),
            );
        }
    }

    let total = cases.len();
    eprintln!(
        "hostile traffic: {total} requests ({} HTTP/1.1, {} HTTP/2), {} reached the upstream; \
         generated in {:.1} s, flood {:.1} s, replays {:.1} s, total {:.1} s",
        cases.iter().filter(|c| c.proto == Proto::H1).count(),
        cases.iter().filter(|c| c.proto == Proto::H2).count(),
        records.len(),
        (generated - started).as_secs_f64(),
        (flooded - generated).as_secs_f64(),
        (done - flooded).as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    eprintln!("memory before {mem_before:?}, after {mem_after:?}");
    for ((kind, proto), outcomes) in &summary {
        eprintln!("  {kind:28} {proto:?}: {outcomes:?}");
    }
    assert!(total >= 10_000, "only {total} requests");
    let report: Vec<String> = failures
        .iter()
        .map(|(what, (n, examples))| format!("{what}: {n}\n      {}", examples.join("\n      ")))
        .collect();
    assert!(
        failures.is_empty(),
        "{} kind(s) of failure:\n  {}",
        failures.len(),
        report.join("\n  ")
    );
}
