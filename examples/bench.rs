#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_precision_loss,
    clippy::too_many_lines
)]
//! `make bench`: dcr-guard side by side with a plain Envoy, Envoy's native `jwt_authn` and a bare
//! wasm verifier, all on the same Envoy binary with one worker (`--concurrency 1`). Envoy is pinned
//! to CPU 0, this process (load generator, upstream, keystore) to CPU 1.
//!
//! Every request is the same shape in every scenario: `POST /register`, body = the request JWT
//! (`application/jwt`, SSA inside), plus the SSA in `x-ssa` and the request JWT in
//! `x-request-jwt` (read by jwt_authn and the bare filter, ignored by dcr-guard). Differences
//! between scenarios are therefore the filters' cost only.
//!
//! Environment: `BENCH_N` (requests of the dcr-guard scenarios, default 3000), `BENCH_CONNS`
//! (keep-alive connections, default 4), `BENCH_BARE_WASM`, `DCR_GUARD_WASM`, `ENVOY`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::dcr::Tpp;
use common::keys::{self, TestKey};
use common::{Envoy, EnvoyConfig, Reply, TestServer};
use serde_json::{json, Value};

/// Offered rate of the paced fleet scenarios (8e, 8f), registrations per second across all
/// connections (`BENCH_FLEET_RATE` overrides): below what either store sustains on one worker,
/// so both scenarios do the same work in the same time and Envoy's per-second costs (event-loop
/// wake-ups, timers) are shared by the same number of registrations.
const FLEET_RATE: f64 = 100.0;
/// Concurrent clients of the paced fleet scenarios: enough that the rate never waits for an answer.
const FLEET_PACED_CONNS: usize = 16;
/// Concurrent clients of the busy fleet scenarios (8c, 8d).
const FLEET_BUSY_CONNS: usize = 16;

const DIRECTORY_PATH: &str = "/keystore/openbanking.jwks";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------
// CPU pinning and /proc

fn taskset(cpu: u32, pid: u32) -> bool {
    Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of the whole process (all threads), in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ")": state is field 3, utime field 14, stime field 15 → indexes 11, 12.
    let ut: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0);
    let st: u64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    ut + st
}

/// Run time of all the process's threads in nanoseconds (/proc/<pid>/task/*/schedstat).
fn cpu_ns(pid: u32) -> u64 {
    let mut total = 0;
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in dir.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
                total += s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    total
}

fn vm_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// A fast upstream: keep-alive HTTP/1.1, answers every request 201.

/// The AS stand-in's listen backlog. std's `TcpListener` listens with 128, and the cold burst (6)
/// has Envoy open 200 upstream connections at once while the accept thread shares its CPU with the
/// 200 client threads: SYNs past a full queue were dropped, retransmitted after 1 s — past the
/// cluster's 1 s connect timeout — and about 20 of the 200 registrations got 503 "upstream connect
/// error … connection timeout" from the stand-in, not from dcr-guard. (Linux caps it at
/// net.core.somaxconn, 4096 by default.)
const UPSTREAM_BACKLOG: i32 = 1024;

/// `listen(2)` again on an already listening socket: Linux then only sets the queue length.
#[cfg(unix)]
fn raise_backlog(listener: &TcpListener, backlog: i32) {
    use std::os::fd::AsRawFd;
    extern "C" {
        fn listen(fd: std::os::raw::c_int, backlog: std::os::raw::c_int) -> std::os::raw::c_int;
    }
    // SAFETY: a plain libc call on a socket this process owns and keeps open; no memory is shared.
    let rc = unsafe { listen(listener.as_raw_fd(), backlog) };
    assert_eq!(
        rc,
        0,
        "listen(backlog {backlog}): {}",
        std::io::Error::last_os_error()
    );
}

#[cfg(not(unix))]
fn raise_backlog(_: &TcpListener, _: i32) {}

fn fast_upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    raise_backlog(&listener, UPSTREAM_BACKLOG);
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let _ = stream.set_nodelay(true);
                let mut w = stream.try_clone().unwrap();
                let mut r = BufReader::with_capacity(64 * 1024, stream);
                let mut line = String::new();
                let mut body = Vec::new();
                loop {
                    let mut len = 0usize;
                    let mut first = true;
                    loop {
                        line.clear();
                        match r.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        if line == "\r\n" && !first {
                            break;
                        }
                        first = false;
                        if let Some((k, v)) = line.split_once(':') {
                            if k.eq_ignore_ascii_case("content-length") {
                                len = v.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    body.resize(len, 0);
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    let reply = b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 31\r\n\r\n{\"client_id\":\"generated-client\"}";
                    if w.write_all(&reply[..]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

// ---------------------------------------------------------------------------
// Load generator

struct Load {
    n: usize,
    secs: f64,
    lat_us: Vec<u64>,
    errors: usize,
    first_error: Option<String>,
}

fn read_response(r: &mut BufReader<TcpStream>) -> std::io::Result<(u16, Vec<u8>)> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut len = 0usize;
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::Error::other("eof in headers"));
        }
        if line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok((status, body))
}

/// Keep-alive connections to one Envoy, kept across rounds (a round does not pay for new
/// connections).
struct Client {
    port: u16,
    conns: Vec<Option<(TcpStream, BufReader<TcpStream>)>>,
    /// Paced: request `i` of a run is not sent before `i / rate` seconds after the run's start
    /// (a request late because every connection was busy goes at once). `None`: closed loop.
    rate: Option<f64>,
}

impl Client {
    fn new(port: u16, conns: usize) -> Client {
        Client {
            port,
            conns: (0..conns.max(1)).map(|_| None).collect(),
            rate: None,
        }
    }

    /// Sends `total` requests over the connections (re-opening any that broke), taking request
    /// `(first + i) % pool.len()`.
    fn run(&mut self, pool: &[Vec<u8>], first: usize, total: usize, expect: u16) -> Load {
        let next = AtomicUsize::new(0);
        let start = Instant::now();
        let port = self.port;
        let rate = self.rate;
        let per_conn: Vec<(Vec<u64>, usize, Option<String>)> = thread::scope(|s| {
            let handles: Vec<_> = self
                .conns
                .iter_mut()
                .map(|slot| {
                    let next = &next;
                    s.spawn(move || {
                        let mut lat = Vec::new();
                        let (mut errors, mut first_error) = (0usize, None);
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= total {
                                break;
                            }
                            if let Some(rate) = rate {
                                let due = start + Duration::from_secs_f64(i as f64 / rate);
                                let now = Instant::now();
                                if due > now {
                                    thread::sleep(due - now);
                                }
                            }
                            if slot.is_none() {
                                let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
                                stream.set_nodelay(true).unwrap();
                                let w = stream.try_clone().unwrap();
                                *slot = Some((w, BufReader::with_capacity(64 * 1024, stream)));
                            }
                            let (w, r) = slot.as_mut().unwrap();
                            let t = Instant::now();
                            let answer = w
                                .write_all(&pool[(first + i) % pool.len()])
                                .and_then(|()| read_response(r));
                            match answer {
                                Ok((status, body)) => {
                                    lat.push(t.elapsed().as_micros() as u64);
                                    if status != expect {
                                        errors += 1;
                                        first_error.get_or_insert_with(|| {
                                            format!("{status} {}", String::from_utf8_lossy(&body))
                                        });
                                    }
                                }
                                Err(e) => {
                                    errors += 1;
                                    first_error.get_or_insert(format!("I/O: {e}"));
                                    *slot = None;
                                }
                            }
                        }
                        (lat, errors, first_error)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut out = Load {
            n: 0,
            secs: start.elapsed().as_secs_f64(),
            lat_us: Vec::new(),
            errors: 0,
            first_error: None,
        };
        for (lat, errors, fe) in per_conn {
            out.lat_us.extend(lat);
            out.errors += errors;
            if out.first_error.is_none() {
                out.first_error = fe;
            }
        }
        out.n = out.lat_us.len();
        out.lat_us.sort_unstable();
        out
    }
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

// ---------------------------------------------------------------------------
// Requests

fn raw_request(ssa: &str, req: &str) -> Vec<u8> {
    let mut v = format!(
        "POST /register HTTP/1.1\r\nHost: bank.example\r\nContent-Type: application/jwt\r\nx-ssa: {ssa}\r\nx-request-jwt: {req}\r\nContent-Length: {}\r\n\r\n",
        req.len()
    )
    .into_bytes();
    v.extend_from_slice(req.as_bytes());
    v
}

/// `n` requests, each with a fresh SSA (fresh `jti`) and a fresh request `jti`.
fn pool_unique(tpp: &Tpp, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|_| {
            let ssa = tpp.ssa();
            let req = tpp.key.sign_default(&tpp.request_claims(&ssa));
            raw_request(&ssa, &req)
        })
        .collect()
}

fn make_tpp(directory: &TestKey, key: TestKey, i: usize) -> Tpp {
    let mut t = Tpp::new(directory.with_kid(directory.kid()), key);
    if i > 0 {
        t.org_id = format!("00158000{i:010}");
        t.software_id = format!("BenchSoftware{i:09}");
    }
    t
}

/// The ES256 column's TPPs and request pools (same shapes as the PS256 ones).
struct Es256 {
    tpps: Vec<Tpp>,
    warm: Arc<Vec<Vec<u8>>>,
    unique: Arc<Vec<Vec<u8>>>,
    warm_mix: Arc<Vec<Vec<u8>>>,
    mix: Arc<Vec<Vec<u8>>>,
}

impl Es256 {
    fn new(n: usize, n_tpps: usize, enabled: bool) -> Es256 {
        if !enabled {
            let none = || Arc::new(Vec::new());
            return Es256 {
                tpps: Vec::new(),
                warm: none(),
                unique: none(),
                warm_mix: none(),
                mix: none(),
            };
        }
        let directory = TestKey::ec("directory-es256");
        let tpps: Vec<Tpp> = par(n_tpps, |i| TestKey::ec(&format!("tpp-es256-{i}")))
            .into_iter()
            .enumerate()
            .map(|(i, k)| make_tpp(&directory, k, i))
            .collect();
        let tpp = &tpps[0];
        let ssas: Vec<String> = par(tpps.len(), |i| tpps[i].ssa());
        let reused = |i: usize| {
            let t = i % tpps.len();
            raw_request(
                &ssas[t],
                &tpps[t].key.sign_default(&tpps[t].request_claims(&ssas[t])),
            )
        };
        Es256 {
            warm: Arc::new(par(300, |_| pool_unique(tpp, 1).remove(0))),
            unique: Arc::new(par(n, |_| pool_unique(tpp, 1).remove(0))),
            warm_mix: Arc::new(par(tpps.len(), reused)),
            mix: Arc::new(par(n, reused)),
            tpps,
        }
    }
}

/// Signs in parallel on all CPUs (before pinning).
fn par<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let threads = thread::available_parallelism()
        .map_or(2, |n| n.get())
        .max(1);
    let f = &f;
    thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (t..n)
                        .step_by(threads)
                        .map(|i| (i, f(i)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<(usize, T)> = hs.into_iter().flat_map(|h| h.join().unwrap()).collect();
        all.sort_by_key(|(i, _)| *i);
        all.into_iter().map(|(_, v)| v).collect()
    })
}

// ---------------------------------------------------------------------------
// Scenarios

struct Row {
    id: &'static str,
    name: String,
    load: Load,
    /// Over all rounds (schedstat run time).
    cpu_us: f64,
    /// Per block of rounds.
    blocks_us: Vec<f64>,
    /// /proc/<pid>/stat utime+stime over all rounds, per request.
    cpu_us_stat: f64,
    rss_kb: u64,
    extra: Value,
}

struct Ctx {
    upstream: u16,
    conns: usize,
    tck: f64,
    pinned: bool,
    /// Paced load (see [`Client::rate`]); `None`: each connection sends as soon as answered.
    rate: Option<f64>,
}

/// One scenario of a side-by-side measurement.
struct Scenario {
    id: &'static str,
    name: String,
    cfg: EnvoyConfig,
    warm: Arc<Vec<Vec<u8>>>,
    pool: Arc<Vec<Vec<u8>>>,
    /// Requests measured in all (taken in order from `pool`, wrapping around: only scenarios
    /// without replay detection may ask for more than the pool holds).
    total: usize,
}

/// A scenario measured: its Envoy (still running, for its stats), the load of all rounds, and
/// its CPU time.
struct Measured {
    envoy: Envoy,
    client: Client,
    load: Load,
    /// Envoy run time (schedstat, ns) and requests in each of [`BLOCKS`] consecutive blocks of
    /// rounds.
    blocks: Vec<(u64, usize)>,
    stat_ticks: u64,
    rss_kb: u64,
}

/// The rounds are reported in this many blocks, to show how much the ratios move within a run.
const BLOCKS: usize = 5;

/// Starts one Envoy per scenario (each pinned to CPU 0), warms each up, then measures them in
/// `rounds` interleaved rounds: round r sends `total / rounds` requests to every scenario's
/// Envoy in turn (tens of milliseconds each; the order rotates). These shared machines change
/// speed by up to 2× within seconds (other tenants); interleaving finely makes every scenario
/// see the same slow and fast periods, so that the ratios hold although absolute times move.
/// CPU per request = the Envoy process's run time over its rounds (schedstat, nanoseconds; the
/// /proc/<pid>/stat utime+stime sum is kept too) / requests.
fn measure_side_by_side(ctx: &Ctx, scenarios: &[Scenario], rounds: usize) -> Vec<Measured> {
    let rounds = rounds.max(BLOCKS);
    let mut out: Vec<Measured> = scenarios
        .iter()
        .map(|sc| {
            eprintln!("bench: {} {}: start, warm up", sc.id, sc.name);
            let envoy = Envoy::start(&sc.cfg);
            if ctx.pinned {
                taskset(0, envoy.pid());
            }
            let mut client = Client::new(envoy.port, ctx.conns);
            client.rate = ctx.rate;
            let w = client.run(&sc.warm, 0, sc.warm.len(), 201);
            if w.errors > 0 {
                eprintln!(
                    "  warm-up: {} errors, first: {}",
                    w.errors,
                    w.first_error.unwrap_or_default()
                );
            }
            Measured {
                envoy,
                client,
                load: Load {
                    n: 0,
                    secs: 0.0,
                    lat_us: Vec::new(),
                    errors: 0,
                    first_error: None,
                },
                blocks: vec![(0, 0); BLOCKS],
                stat_ticks: 0,
                rss_kb: 0,
            }
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    let perf: Vec<_> = out
        .iter()
        .zip(scenarios)
        .map(|(m, sc)| perf_start(sc.id, m.envoy.pid()))
        .collect();
    eprintln!(
        "bench: {rounds} interleaved rounds of {}",
        scenarios
            .iter()
            .map(|sc| format!("{} × {}", sc.total / rounds, sc.id))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for r in 0..rounds {
        let block = r * BLOCKS / rounds;
        for k in 0..scenarios.len() {
            let i = (k + r) % scenarios.len();
            let (sc, m) = (&scenarios[i], &mut out[i]);
            let per = sc.total / rounds;
            let pid = m.envoy.pid();
            let (t0, n0) = (cpu_ticks(pid), cpu_ns(pid));
            let load = m.client.run(&sc.pool, r * per, per, 201);
            let (t1, n1) = (cpu_ticks(pid), cpu_ns(pid));
            m.blocks[block].0 += n1 - n0;
            m.blocks[block].1 += load.n;
            m.stat_ticks += t1 - t0;
            m.load.n += load.n;
            m.load.secs += load.secs;
            m.load.lat_us.extend(load.lat_us);
            m.load.errors += load.errors;
            if m.load.first_error.is_none() {
                m.load.first_error = load.first_error;
            }
        }
    }
    for p in perf {
        perf_stop(p);
    }
    for m in &mut out {
        m.load.lat_us.sort_unstable();
        m.rss_kb = vm_rss_kb(m.envoy.pid());
        if m.load.errors > 0 {
            eprintln!(
                "  {} of {} requests failed, first: {}",
                m.load.errors,
                m.load.n,
                m.load.first_error.clone().unwrap_or_default()
            );
        }
    }
    out
}

/// `BENCH_PERF=DIR`: `perf record` Envoy during each measured load into `DIR/perf-<id>.data`
/// (for `perf report --sort dso,sym`; V8's JIT code shows as anonymous memory).
fn perf_start(id: &str, pid: u32) -> Option<std::process::Child> {
    let dir = std::env::var_os("BENCH_PERF")?;
    std::fs::create_dir_all(&dir).ok()?;
    let out = Path::new(&dir).join(format!("perf-{id}.data"));
    let child = Command::new("perf")
        .args(["record", "-q", "-F", "2999", "-p", &pid.to_string(), "-o"])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    thread::sleep(Duration::from_millis(300));
    Some(child)
}

fn perf_stop(child: Option<std::process::Child>) {
    if let Some(mut c) = child {
        let _ = Command::new("kill")
            .args(["-INT", &c.id().to_string()])
            .status();
        let _ = c.wait();
    }
}

/// `BENCH_ONLY=3,5`: run only these scenarios (ids as in the table; `7` runs 7a and 7b).
fn selected(id: &str) -> bool {
    std::env::var("BENCH_ONLY").map_or(true, |only| {
        only.split(',')
            .map(str::trim)
            .any(|o| o == id || (id.len() > o.len() && id.starts_with(o)))
    })
}

fn row(ctx: &Ctx, sc: &Scenario, m: Measured, extra: Value) -> (Row, Envoy) {
    let ns: u64 = m.blocks.iter().map(|b| b.0).sum();
    let r = Row {
        id: sc.id,
        name: sc.name.clone(),
        cpu_us: ns as f64 / 1e3 / m.load.n.max(1) as f64,
        blocks_us: m
            .blocks
            .iter()
            .map(|(ns, n)| *ns as f64 / 1e3 / (*n).max(1) as f64)
            .collect(),
        cpu_us_stat: m.stat_ticks as f64 / ctx.tck * 1e6 / m.load.n.max(1) as f64,
        load: m.load,
        rss_kb: m.rss_kb,
        extra,
    };
    eprintln!(
        "  {} {}: {:.1} µs CPU/req (blocks {:?}; /proc/stat {:.1}), {:.0} req/s, p50 {} µs, p99 {} µs, errors {}",
        r.id,
        r.name,
        r.cpu_us,
        r.blocks_us.iter().map(|v| v.round() as i64).collect::<Vec<_>>(),
        r.cpu_us_stat,
        r.load.n as f64 / r.load.secs,
        pct(&r.load.lat_us, 0.5),
        pct(&r.load.lat_us, 0.99),
        r.load.errors
    );
    (r, m.envoy)
}

/// `BENCH_V8_DUMP=FILE`: write the scenarios' inputs (filter configurations, JWKS documents by
/// path, raw requests, the signing time) for `bench/v8/harness.mjs`, which runs the same `.wasm`
/// files in Node's V8 under a minimal proxy-wasm host, and stop.
fn dump_for_v8(
    path: &Path,
    tpps: &[Tpp],
    warm: &[Vec<u8>],
    unique: &[Vec<u8>],
    warm_mix: &[Vec<u8>],
    mix: &[Vec<u8>],
) {
    let tpp = &tpps[0];
    let mut docs = serde_json::Map::new();
    docs.insert(DIRECTORY_PATH.to_string(), tpp.directory_jwks());
    for t in tpps {
        docs.insert(t.jwks_path(), t.software_jwks());
    }
    let text = |pool: &[Vec<u8>]| -> Vec<String> {
        pool.iter()
            .map(|r| String::from_utf8_lossy(r).into_owned())
            .collect()
    };
    let out = json!({
        "guard_config": tpp.filter_config("keystore", "keystore"),
        "bare_config": {
            "mode": "verify",
            "ssa_jwks": tpp.directory_jwks(),
            "request_jwks": tpp.software_jwks(),
        },
        "docs": docs,
        "now": keys::now(),
        "warm": text(warm),
        "unique": text(unique),
        "warm_mix": text(warm_mix),
        "mix": text(mix),
    });
    std::fs::write(path, serde_json::to_vec(&out).unwrap()).unwrap();
    eprintln!("bench: wrote {}", path.display());
}

fn keystore_for(tpps: &[&Tpp], delay: Option<Duration>) -> TestServer {
    let dir_doc = tpps[0].directory_jwks();
    let docs: Vec<(String, Value)> = tpps
        .iter()
        .map(|t| (t.jwks_path(), t.software_jwks()))
        .collect();
    TestServer::start(move |r| {
        let reply = if r.path == DIRECTORY_PATH {
            Reply::json(200, &dir_doc)
        } else if let Some((_, d)) = docs.iter().find(|(p, _)| *p == r.path) {
            Reply::json(200, d)
        } else {
            Reply::text(404, "text/plain", "not found")
        };
        match delay {
            Some(d) => reply.after(d),
            None => reply,
        }
    })
}

/// JSON objects merged into `into`, member by member, recursively.
fn merge(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b.clone(),
    }
}

fn guard_config(tpp: &Tpp, keystore: &TestServer, ctx: &Ctx, replay: bool) -> EnvoyConfig {
    let mut filter = tpp.filter_config("keystore", "keystore");
    // One TPP sends thousands of registrations within the replay window here: a real TPP's share
    // of the replay store (10 % of a bucket by default, then 503) is lifted for the load.
    filter["replay"] = json!({"issuer_share_percent": 100});
    // BENCH_GUARD_CONFIG='{"rules": {...}}': merged into dcr-guard's configuration (to measure
    // a configuration of one's own, or what a rule costs).
    if let Ok(edit) = std::env::var("BENCH_GUARD_CONFIG") {
        merge(
            &mut filter,
            &serde_json::from_str(&edit).expect("BENCH_GUARD_CONFIG: JSON"),
        );
    }
    if replay {
        filter["replay"] =
            json!({"buckets": 4096, "entries_per_bucket": 512, "issuer_share_percent": 100});
    }
    EnvoyConfig::new(filter, ctx.upstream)
        .cluster("keystore", keystore.port())
        .concurrency(1)
        .log_level("warn")
}

fn prefill_extension(bare: &Path, entries: u64) -> Value {
    let conf = json!({
        "mode": "prefill",
        "buckets": 4096,
        "entries": entries,
        "key_prefix": "dcr_guard.replay.",
        "expires_at": keys::now() + 7200,
    });
    json!([{
        "name": "envoy.bootstrap.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.wasm.v3.WasmService",
            "singleton": true,
            "config": {
                "name": "bench_prefill",
                "root_id": "bench_prefill",
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": conf.to_string(),
                },
                "vm_config": {
                    "vm_id": "dcr_guard",
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": { "local": { "filename": bare.to_string_lossy() } },
                },
            },
        },
    }])
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bare = std::env::var_os("BENCH_BARE_WASM").map_or_else(
        || root.join("target/bench/wasm32-wasip1/release/dcr_guard_bench_bare.wasm"),
        PathBuf::from,
    );
    assert!(
        bare.exists(),
        "{} missing: run `make bench`",
        bare.display()
    );
    let n = env_usize("BENCH_N", 3000);
    let n_tpps = env_usize("BENCH_TPPS", 200);
    let conns = env_usize("BENCH_CONNS", 4);
    let began = Instant::now();
    let load_before = loadavg();

    // Keys and pre-signed requests, on all CPUs before pinning.
    eprintln!("bench: keys ({n_tpps} TPP RSA-2048 keys, cached in target/tmp after the first run)");
    let directory = TestKey::rsa("directory-ps256");
    let tpp_keys = par(n_tpps, |i| TestKey::rsa(&format!("tpp-{i}")));
    let tpps: Vec<Tpp> = tpp_keys
        .into_iter()
        .enumerate()
        .map(|(i, k)| make_tpp(&directory, k, i))
        .collect();
    let tpp = &tpps[0];
    eprintln!("bench: signing request pools (PS256, RSA-2048)");
    let t_sign = Instant::now();
    let warm: Arc<Vec<Vec<u8>>> = Arc::new(par(300, |_| pool_unique(tpp, 1).remove(0)));
    let unique: Arc<Vec<Vec<u8>>> = Arc::new(par(n, |_| pool_unique(tpp, 1).remove(0)));
    let ssas: Vec<String> = par(tpps.len(), |i| tpps[i].ssa());
    let mix: Arc<Vec<Vec<u8>>> = Arc::new(par(n, |i| {
        let t = i % tpps.len();
        let req = tpps[t].key.sign_default(&tpps[t].request_claims(&ssas[t]));
        raw_request(&ssas[t], &req)
    }));
    // Warm-up for the mix: one request per TPP (fetches every software JWKS).
    let warm_mix: Arc<Vec<Vec<u8>>> = Arc::new(par(tpps.len(), |t| {
        let req = tpps[t].key.sign_default(&tpps[t].request_claims(&ssas[t]));
        raw_request(&ssas[t], &req)
    }));
    // The ES256 column: the same scenarios with P-256 keys (its own TPPs, keystore and Envoys).
    let es = Es256::new(n, n_tpps, env_usize("BENCH_ES256", 1) == 1);
    let mut burst: Vec<Vec<u8>> = par(400, |_| pool_unique(tpp, 1).remove(0));
    let burst_warm = burst.split_off(200);
    eprintln!(
        "bench: {} requests signed in {:.1} s",
        300 + 2 * n + 2 * tpps.len() + 400,
        t_sign.elapsed().as_secs_f64()
    );

    if let Some(path) = std::env::var_os("BENCH_V8_DUMP") {
        dump_for_v8(Path::new(&path), &tpps, &warm, &unique, &warm_mix, &mix);
        return;
    }

    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    let pinned = cpus >= 2 && taskset(1, std::process::id());
    if !pinned {
        eprintln!("bench: not pinned (needs taskset and 2 CPUs): numbers are noisier");
    }
    let ctx = Ctx {
        upstream: fast_upstream(),
        conns,
        tck: clk_tck(),
        pinned,
        rate: None,
    };
    let mut rows: Vec<Row> = Vec::new();
    let keystore = keystore_for(&tpps.iter().collect::<Vec<_>>(), None);

    let rounds = env_usize("BENCH_ROUNDS", 75);
    let mut scenarios: Vec<Scenario> = Vec::new();
    // 1. passthrough (cheap: more requests, for a steadier number)
    scenarios.push(Scenario {
        id: "1",
        name: "passthrough (no filter)".into(),
        cfg: guard_config(tpp, &keystore, &ctx, false).without_filter(),
        warm: Arc::clone(&warm),
        pool: Arc::clone(&unique),
        total: n * 4,
    });
    // 2. native jwt_authn
    let jwt_authn = json!({
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {
                "ssa": {
                    "from_headers": [{"name": "x-ssa"}],
                    "forward": true,
                    "local_jwks": {"inline_string": tpp.directory_jwks().to_string()},
                },
                "request": {
                    "from_headers": [{"name": "x-request-jwt"}],
                    "forward": true,
                    "local_jwks": {"inline_string": tpp.software_jwks().to_string()},
                },
            },
            "rules": [{
                "match": {"prefix": "/"},
                "requires": {"requires_all": {"requirements": [
                    {"provider_name": "ssa"}, {"provider_name": "request"}
                ]}},
            }],
        },
    });
    scenarios.push(Scenario {
        id: "2",
        name: "native jwt_authn, 2 × PS256".into(),
        cfg: guard_config(tpp, &keystore, &ctx, false)
            .without_filter()
            .extra_filter_before(jwt_authn),
        warm: Arc::clone(&warm),
        pool: Arc::clone(&unique),
        total: n * 2,
    });
    // 3. bare wasm verification
    let mut bare_cfg = json!({
        "mode": "verify",
        "ssa_jwks": tpp.directory_jwks(),
        "request_jwks": tpp.software_jwks(),
    });
    // BENCH_BARE_PROBE='{"probe_calls": 50, "probe_only": true}': measure hostcalls instead.
    if let Ok(probe) = std::env::var("BENCH_BARE_PROBE") {
        let probe: Value = serde_json::from_str(&probe).expect("BENCH_BARE_PROBE: JSON object");
        for (k, v) in probe.as_object().expect("BENCH_BARE_PROBE: JSON object") {
            bare_cfg[k] = v.clone();
        }
    }
    scenarios.push(Scenario {
        id: "3",
        name: "bare wasm, 2 × PS256 (dcr_guard_core::jose)".into(),
        cfg: guard_config(tpp, &keystore, &ctx, false)
            .wasm(&bare)
            .filter_config(bare_cfg),
        warm: Arc::clone(&warm),
        pool: Arc::clone(&unique),
        total: n,
    });
    // 4. dcr-guard all-unique
    scenarios.push(Scenario {
        id: "4",
        name: "dcr-guard, all-unique".into(),
        cfg: guard_config(tpp, &keystore, &ctx, false),
        warm: Arc::clone(&warm),
        pool: Arc::clone(&unique),
        total: n,
    });
    // 5. dcr-guard realistic mix
    scenarios.push(Scenario {
        id: "5",
        name: format!("dcr-guard, mix of {} TPPs", tpps.len()),
        cfg: guard_config(tpp, &keystore, &ctx, false),
        warm: Arc::clone(&warm_mix),
        pool: Arc::clone(&mix),
        total: n,
    });
    // BENCH_COMPARE_WASM=other.wasm: scenarios 4 and 5 again with that module (4c, 5c) in the same
    // interleaved rounds (`make bench-wasm-opt`: cargo's un-optimised module against wasm-opt's).
    if let Some(other) = std::env::var_os("BENCH_COMPARE_WASM") {
        let other = PathBuf::from(other);
        for (id, what, warm, pool) in [
            ("4c", "all-unique", &warm, &unique),
            ("5c", "mix", &warm_mix, &mix),
        ] {
            scenarios.push(Scenario {
                id,
                name: format!("dcr-guard, {what}, {}", other.display()),
                cfg: guard_config(tpp, &keystore, &ctx, false).wasm(&other),
                warm: Arc::clone(warm),
                pool: Arc::clone(pool),
                total: n,
            });
        }
    }
    let es_keystore =
        (!es.tpps.is_empty()).then(|| keystore_for(&es.tpps.iter().collect::<Vec<_>>(), None));
    if let Some(ks) = &es_keystore {
        let t = &es.tpps[0];
        scenarios.push(Scenario {
            id: "3e",
            name: "bare wasm, 2 × ES256".into(),
            cfg: guard_config(t, ks, &ctx, false)
                .wasm(&bare)
                .filter_config(json!({
                    "mode": "verify",
                    "alg": "ES256",
                    "ssa_jwks": t.directory_jwks(),
                    "request_jwks": t.software_jwks(),
                })),
            warm: Arc::clone(&es.warm),
            pool: Arc::clone(&es.unique),
            total: n,
        });
        scenarios.push(Scenario {
            id: "4e",
            name: "dcr-guard, all-unique, ES256".into(),
            cfg: guard_config(t, ks, &ctx, false),
            warm: Arc::clone(&es.warm),
            pool: Arc::clone(&es.unique),
            total: n,
        });
        scenarios.push(Scenario {
            id: "5e",
            name: format!("dcr-guard, mix of {} TPPs, ES256", es.tpps.len()),
            cfg: guard_config(t, ks, &ctx, false),
            warm: Arc::clone(&es.warm_mix),
            pool: Arc::clone(&es.mix),
            total: n,
        });
    }
    scenarios.retain(|sc| selected(sc.id));
    let measured = measure_side_by_side(&ctx, &scenarios, rounds);
    for (sc, m) in scenarios.iter().zip(measured) {
        let extra = match sc.id {
            "4" | "5" | "4e" | "5e" | "4c" | "5c" => {
                json!({"accepted": m.envoy.stat("dcr_guard.accepted")})
            }
            _ => json!({}),
        };
        rows.push(row(&ctx, sc, m, extra).0);
    }

    // 7. replay store: empty vs 1,000,000 live entries (4096 buckets × 512 max), side by side.
    let mut replay: Vec<Scenario> = Vec::new();
    for (id, entries) in [("7a", 0u64), ("7b", 1_000_000u64)] {
        let ext = prefill_extension(&bare, entries);
        replay.push(Scenario {
            id,
            name: format!("dcr-guard, replay store {entries} entries"),
            cfg: guard_config(tpp, &keystore, &ctx, true)
                .edit(move |b| b["bootstrap_extensions"] = ext.clone()),
            warm: Arc::clone(&warm),
            pool: Arc::clone(&unique),
            total: n,
        });
    }
    replay.retain(|sc| selected(sc.id));
    let measured = measure_side_by_side(&ctx, &replay, rounds);
    for (sc, m) in replay.iter().zip(measured) {
        let prefilled = m
            .envoy
            .log()
            .lines()
            .rev()
            .find(|l| l.contains("bench-bare: prefilled"))
            .map(str::to_string);
        let entries = if sc.id == "7a" { 0 } else { 1_000_000 };
        rows.push(
            row(
                &ctx,
                sc,
                m,
                json!({"entries": entries, "prefill_log": prefilled}),
            )
            .0,
        );
    }

    // 8. the fleet replay store: the same all-unique registrations with replay.store local (8a)
    // and etcd (8b, a 3-member cluster on loopback), side by side; etcd's own CPU is measured
    // over the block (its members run on the load CPU, not pinned with Envoy).
    let fleet = if [
        "8a", "8b", "8c", "8d", "8e", "8f", "9a", "9b", "9c", "9d", "9e",
    ]
    .iter()
    .any(|id| selected(id))
    {
        match common::etcd::etcd_bin() {
            None => {
                eprintln!("bench: 8 skipped: etcd not found (make deps-etcd)");
                None
            }
            Some(_) => Some(common::etcd::Cluster::start(3)),
        }
    } else {
        None
    };
    // (8a, 8b) with the bench's connections; (8c, 8d) the same with 16 concurrent clients, where
    // a worker's registrations share etcd calls more (the fleet store batches what queues up);
    // (8e, 8f) both at the same offered rate, so that the two stores do the same work in the same
    // time (closed-loop, the slower store also spreads Envoy's per-second costs over fewer
    // registrations).
    let mut etcd_cpu_ns = 0u64;
    let fleet_rate = std::env::var("BENCH_FLEET_RATE")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|r| *r > 0.0)
        .unwrap_or(FLEET_RATE);
    if let Some(cluster) = &fleet {
        for (ids, conns, prefix, rate) in [
            (("8a", "8b"), ctx.conns, "/bench/", None),
            (("8c", "8d"), FLEET_BUSY_CONNS, "/bench-busy/", None),
            (
                ("8e", "8f"),
                FLEET_PACED_CONNS,
                "/bench-paced/",
                Some(fleet_rate),
            ),
        ] {
            let mut fleet_scenarios: Vec<Scenario> = Vec::new();
            for (id, store) in [(ids.0, "local"), (ids.1, "etcd")] {
                let mut cfg = guard_config(tpp, &keystore, &ctx, false);
                let mut filter = cfg.get_filter_config().clone();
                if store == "etcd" {
                    filter["replay"]["store"] = json!("etcd");
                    filter["replay"]["etcd"] = json!({"upstream": "etcd", "key_prefix": prefix});
                }
                let etcd = common::etcd::envoy_cluster("etcd", cluster);
                cfg = cfg.filter_config(filter).edit(move |b| {
                    b["static_resources"]["clusters"]
                        .as_array_mut()
                        .unwrap()
                        .push(etcd.clone())
                });
                fleet_scenarios.push(Scenario {
                    id,
                    name: match rate {
                        None => format!(
                            "dcr-guard, all-unique, replay.store {store}, {conns} connections"
                        ),
                        Some(r) => format!(
                            "dcr-guard, all-unique, replay.store {store}, paced at {r} req/s"
                        ),
                    },
                    cfg,
                    warm: Arc::clone(&warm),
                    pool: Arc::clone(&unique),
                    total: n,
                });
            }
            fleet_scenarios.retain(|sc| selected(sc.id));
            let busy = Ctx {
                upstream: ctx.upstream,
                conns,
                tck: ctx.tck,
                pinned: ctx.pinned,
                rate,
            };
            let etcd_before: u64 = cluster.pids().iter().map(|p| cpu_ns(*p)).sum();
            let measured = measure_side_by_side(&busy, &fleet_scenarios, rounds);
            if ids.0 == "8a" {
                etcd_cpu_ns = cluster
                    .pids()
                    .iter()
                    .map(|p| cpu_ns(*p))
                    .sum::<u64>()
                    .saturating_sub(etcd_before);
            }
            for (sc, m) in fleet_scenarios.iter().zip(measured) {
                let extra = json!({
                    "accepted": m.envoy.stat("dcr_guard.accepted"),
                    "etcd_calls": m.envoy.stat("dcr_guard.replay_etcd_calls"),
                    "etcd_txns": m.envoy.stat("dcr_guard.replay_etcd_txns"),
                    "connections": conns,
                    "offered_rate": rate,
                });
                rows.push(row(&busy, sc, m, extra).0);
            }
        }
    }

    // 9. what one callout costs Envoy, by transport: the bare filter doing nothing else (9a),
    // then one read of an etcd key per request, waiting for the answer: a gRPC call (9b, the fleet
    // store's transport), an HTTP callout to etcd's JSON gateway over HTTP/2 (9c) and over
    // HTTP/1.1 (9d). The same etcd cluster, side by side.
    if let Some(cluster) = &fleet {
        let mut callouts: Vec<Scenario> = Vec::new();
        for (id, name, callout) in [
            ("9a", "bare wasm, no callout", Value::Null),
            (
                "9b",
                "bare wasm + 1 gRPC callout (etcd KV/Range)",
                json!({"kind": "grpc", "cluster": "etcd"}),
            ),
            (
                "9e",
                "bare wasm + 1 gRPC callout (etcd KV/Put)",
                json!({"kind": "grpc_put", "cluster": "etcd"}),
            ),
            (
                "9c",
                "bare wasm + 1 HTTP/2 callout (etcd JSON gateway)",
                json!({"kind": "http", "cluster": "etcd"}),
            ),
            (
                "9d",
                "bare wasm + 1 HTTP/1.1 callout (etcd JSON gateway)",
                json!({"kind": "http", "cluster": "etcd_h1"}),
            ),
        ] {
            let etcd = common::etcd::envoy_cluster("etcd", cluster);
            let mut etcd_h1 = common::etcd::envoy_cluster("etcd_h1", cluster);
            etcd_h1
                .as_object_mut()
                .unwrap()
                .remove("typed_extension_protocol_options");
            let cfg = guard_config(tpp, &keystore, &ctx, false)
                .wasm(&bare)
                .filter_config(json!({
                    "mode": "verify",
                    "ssa_jwks": tpp.directory_jwks(),
                    "request_jwks": tpp.software_jwks(),
                    "probe_only": true,
                    "probe_callout": callout,
                }))
                .edit(move |b| {
                    let clusters = b["static_resources"]["clusters"].as_array_mut().unwrap();
                    clusters.push(etcd.clone());
                    clusters.push(etcd_h1.clone());
                });
            callouts.push(Scenario {
                id,
                name: name.into(),
                cfg,
                warm: Arc::clone(&warm),
                pool: Arc::clone(&unique),
                total: n,
            });
        }
        callouts.retain(|sc| selected(sc.id));
        let measured = measure_side_by_side(&ctx, &callouts, rounds);
        for (sc, m) in callouts.iter().zip(measured) {
            rows.push(row(&ctx, sc, m, json!({})).0);
        }
    }

    // 6. cold burst: fresh Envoy, 200 concurrent registrations of one TPP, keystore answering
    // after 50 ms.
    let (res, res_warm, burst_secs, dir_fetches, sw_fetches, fetch_stat, waits, burst_errors) =
        if selected("6") {
            eprintln!("bench: 6 cold burst");
            let cold_ks = keystore_for(&[tpp], Some(Duration::from_millis(50)));
            let cfg = guard_config(tpp, &cold_ks, &ctx, false);
            let envoy = Envoy::start(&cfg);
            if pinned {
                taskset(0, envoy.pid());
            }
            let (res, burst_secs, first_error) = fire_burst(envoy.port, burst);
            // The same burst again on the now warm Envoy: the baseline for "added latency".
            let (res_warm, _, first_error_warm) = fire_burst(envoy.port, burst_warm);
            let dir_fetches = cold_ks.count(DIRECTORY_PATH);
            let sw_fetches = cold_ks.count(&tpp.jwks_path());
            let fetch_stat = envoy.stat("dcr_guard.jwks_fetches");
            let waits = envoy.stat("dcr_guard.jwks_lease_waits");
            (
                res,
                res_warm,
                burst_secs,
                dir_fetches,
                sw_fetches,
                fetch_stat,
                waits,
                [first_error, first_error_warm],
            )
        } else {
            (Vec::new(), Vec::new(), 0.0, 0, 0, None, None, [None, None])
        };
    let mut lat_warm: Vec<u64> = res_warm.iter().map(|r| r.1).collect();
    lat_warm.sort_unstable();
    let mut lat: Vec<u64> = res.iter().map(|r| r.1).collect();
    lat.sort_unstable();
    let ok = res.iter().filter(|r| r.0 == 201).count();
    let ok_warm = res_warm.iter().filter(|r| r.0 == 201).count();
    let (counts, counts_warm) = (status_counts(&res), status_counts(&res_warm));
    let cold = json!({
        "requests": res.len(), "accepted_201": ok,
        "statuses": counts, "first_non_201": burst_errors[0],
        "warm_burst_statuses": counts_warm, "warm_burst_first_non_201": burst_errors[1],
        "directory_fetches": dir_fetches, "software_jwks_fetches": sw_fetches,
        "jwks_fetches_counter": fetch_stat, "jwks_lease_waits": waits,
        "keystore_delay_ms": 50,
        "latency_us": {"min": lat.first(), "p50": pct(&lat, 0.5), "p99": pct(&lat, 0.99), "max": lat.last()},
        "warm_burst_latency_us": {"min": lat_warm.first(), "p50": pct(&lat_warm, 0.5), "p99": pct(&lat_warm, 0.99), "max": lat_warm.last()},
        "warm_burst_accepted_201": ok_warm,
        "wall_s": burst_secs,
    });
    eprintln!("  6 cold burst: {cold}");

    // ------------------------------------------------------------------
    // Report
    let get = |id: &str| {
        rows.iter()
            .find(|r| r.id == id)
            .map_or(f64::NAN, |r| r.cpu_us)
    };
    let (c1, c2, c3, c4, c5) = (get("1"), get("2"), get("3"), get("4"), get("5"));
    let (c7a, c7b) = (get("7a"), get("7b"));
    // The same ratio in each block of rounds: how much it moved during the run.
    let blocks = |id: &str| {
        rows.iter()
            .find(|r| r.id == id)
            .map_or_else(|| vec![f64::NAN; BLOCKS], |r| r.blocks_us.clone())
    };
    type Cpu<'a> = &'a dyn Fn(&str) -> f64;
    let spread = |f: &dyn Fn(Cpu) -> f64| -> String {
        let per: Vec<f64> = (0..BLOCKS)
            .map(|b| f(&|id: &str| blocks(id)[b]))
            .filter(|v| v.is_finite())
            .collect();
        if per.is_empty() {
            return String::new();
        }
        let lo = per.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = per.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!("(blocks {lo:.2}–{hi:.2})")
    };
    let s43 = spread(&|c| (c("4") - c("1")) / (c("3") - c("1")));
    let s5 = spread(&|c| (c("5") - c("1")) / ((c("3") - c("1")) / 2.0));
    let s52 = spread(&|c| (c("5") - c("1")) / (c("2") - c("1")));
    let s32 = spread(&|c| (c("3") - c("1")) / (c("2") - c("1")));
    let s7 = spread(&|c| c("7b") / c("7a"));
    let s43e = spread(&|c| (c("4e") - c("1")) / (c("3e") - c("1")));
    let s5e = spread(&|c| (c("5e") - c("1")) / ((c("3e") - c("1")) / 2.0));
    println!();
    println!("dcr-guard benchmark: Envoy {}, --concurrency 1, {} keep-alive connections, PS256 RSA-2048, Envoy {} CPU 0 / load on CPU 1",
        envoy_version(), conns, if pinned { "pinned to" } else { "NOT pinned:" });
    println!();
    println!("| # | scenario | requests | Envoy CPU µs/req | − passthrough | req/s | p50 µs | p99 µs | VmRSS MB | errors |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {} | {} | {:.1} | {} |",
            r.id,
            r.name,
            r.load.n,
            r.cpu_us,
            r.cpu_us - c1,
            r.load.n as f64 / r.load.secs,
            pct(&r.load.lat_us, 0.5),
            pct(&r.load.lat_us, 0.99),
            r.rss_kb as f64 / 1024.0,
            r.load.errors
        );
    }
    println!(
        "| 6 | cold burst: 200 concurrent, 1 TPP, keystore +50 ms | {} | – | – | – | {} | {} | – | {} |",
        res.len(),
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        res.len() - ok
    );
    println!(
        "| 6w | same burst again, warm | {} | – | – | – | {} | {} | – | {} |",
        res_warm.len(),
        pct(&lat_warm, 0.5),
        pct(&lat_warm, 0.99),
        res_warm.len() - ok_warm
    );
    let warm_p50 = pct(&lat_warm, 0.5);
    let r43 = (c4 - c1) / (c3 - c1);
    let r5 = (c5 - c1) / ((c3 - c1) / 2.0);
    let r52 = (c5 - c1) / (c2 - c1);
    let r7 = c7b / c7a;
    // A ratio of scenarios not run (BENCH_ONLY) is NaN: "not run", neither met nor missed.
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    // A ratio over scenarios in which requests failed measures something else: never "met".
    let failed = |ids: &[&str]| -> usize {
        rows.iter()
            .filter(|r| ids.contains(&r.id))
            .map(|r| r.load.errors)
            .sum()
    };
    let judged = |r: f64, ok: bool, ids: &[&str]| -> String {
        let errors = failed(ids);
        if r.is_nan() {
            "not run".to_string()
        } else if errors > 0 {
            format!("NOT JUDGED: {errors} requests failed")
        } else {
            verdict(ok).to_string()
        }
    };
    println!();
    println!("Ratios (Envoy CPU per request):");
    println!(
        "  all-unique   (4−1)/(3−1)       = {r43:.2}   target ≤ 1.25  {}  {s43}",
        judged(r43, r43 <= 1.25, &["1", "3", "4"])
    );
    println!(
        "  mix          (5−1)/((3−1)/2)   = {r5:.2}   target ≤ 1.20  {}  {s5}",
        judged(r5, r5 <= 1.2, &["1", "3", "5"])
    );
    println!("  mix vs native (5−1)/(2−1)      = {r52:.2}   {s52} (floor for one wasm vs two native verifications ≈ 3.3)");
    println!(
        "  bare vs native (3−1)/(2−1)     = {:.2}   {s32}",
        (c3 - c1) / (c2 - c1)
    );
    let (c3e, c4e, c5e) = (get("3e"), get("4e"), get("5e"));
    let r43e = (c4e - c1) / (c3e - c1);
    let r5e = (c5e - c1) / ((c3e - c1) / 2.0);
    if r5e.is_nan() && r43e.is_nan() {
        println!("  ES256 column: not run");
    } else {
        println!("  ES256 column (reported; the targets are for PS256):");
        println!("    all-unique (4e−1)/(3e−1)      = {r43e:.2}   {s43e}");
        println!("    mix        (5e−1)/((3e−1)/2)  = {r5e:.2}   {s5e}");
    }
    // The cold burst is met only if every registration of both bursts was accepted (201) and each
    // document was fetched once; any other answer is counted and shown.
    let burst_failed = (res.len() - ok) + (res_warm.len() - ok_warm);
    let burst_verdict = if res.is_empty() {
        "not run".to_string()
    } else if burst_failed > 0 {
        format!("MISSED: {burst_failed} registrations not 201")
    } else {
        verdict(dir_fetches == 1 && sw_fetches == 1).to_string()
    };
    println!(
        "  cold burst   JWKS fetches: directory {dir_fetches}, software {sw_fetches}   target 1 each, every registration 201  {burst_verdict}"
    );
    println!("               answers: cold {counts:?}, warm {counts_warm:?} (0 = no HTTP answer)");
    for (which, e) in ["cold", "warm"].iter().zip(&burst_errors) {
        if let Some(e) = e {
            println!(
                "               first non-201 ({which}): {}",
                e.chars().take(200).collect::<String>()
            );
        }
    }
    println!(
        "               latency p50 {} µs / max {} µs vs the same burst warm: p50 {warm_p50} µs (keystore answers after 50 ms); {ok}/{} accepted",
        pct(&lat, 0.5),
        lat.last().copied().unwrap_or(0),
        res.len()
    );
    println!(
        "  replay 1M    7b/7a              = {r7:.3}  target ≤ 1.10  {}  {s7}  VmRSS {:.1} MB vs {:.1} MB",
        judged(r7, r7 <= 1.10, &["7a", "7b"]),
        rows.iter().find(|r| r.id == "7b").map_or(0.0, |r| r.rss_kb as f64 / 1024.0),
        rows.iter().find(|r| r.id == "7a").map_or(0.0, |r| r.rss_kb as f64 / 1024.0),
    );
    let (c8a, c8b) = (get("8a"), get("8b"));
    let r8 = c8b / c8a;
    let s8 = spread(&|c| c("8b") / c("8a"));
    let p = |id: &str, q: f64| {
        rows.iter()
            .find(|r| r.id == id)
            .map_or(0, |r| pct(&r.load.lat_us, q))
    };
    let n8b = rows.iter().find(|r| r.id == "8b").map_or(0, |r| r.load.n);
    let etcd_us = etcd_cpu_ns as f64 / 1e3 / n8b.max(1) as f64;
    let per_call = |id: &str| {
        rows.iter().find(|r| r.id == id).map_or(f64::NAN, |r| {
            let n = |k: &str| r.extra[k].as_u64().unwrap_or(0) as f64;
            n("etcd_txns") / n("etcd_calls")
        })
    };
    let (c8c, c8d) = (get("8c"), get("8d"));
    let r8busy = c8d / c8c;
    let s8busy = spread(&|c| c("8d") / c("8c"));
    println!(
        "  fleet store  8b/8a              = {r8:.3}  target ≤ 1.10  {}  {s8}  added latency p50 {} µs, p99 {} µs; etcd CPU {etcd_us:.0} µs per registration (3 members); {:.2} registrations per etcd call",
        judged(r8, r8 <= 1.10, &["8a", "8b"]),
        p("8b", 0.5) as i64 - p("8a", 0.5) as i64,
        p("8b", 0.99) as i64 - p("8a", 0.99) as i64,
        per_call("8b"),
    );
    println!(
        "  fleet, busy  8d/8c              = {r8busy:.3}  target ≤ 1.10  {}  {s8busy}  {FLEET_BUSY_CONNS} connections: added latency p50 {} µs, p99 {} µs; {:.2} registrations per etcd call",
        judged(r8busy, r8busy <= 1.10, &["8c", "8d"]),
        p("8d", 0.5) as i64 - p("8c", 0.5) as i64,
        p("8d", 0.99) as i64 - p("8c", 0.99) as i64,
        per_call("8d"),
    );
    let (c8e, c8f) = (get("8e"), get("8f"));
    let r8paced = c8f / c8e;
    let s8paced = spread(&|c| c("8f") / c("8e"));
    // Achieved rate: a scenario that could not keep up did less work per second than the other.
    let achieved = |id: &str| {
        rows.iter()
            .find(|r| r.id == id)
            .map_or(0.0, |r| r.load.n as f64 / r.load.secs.max(1e-9))
    };
    let kept_up = achieved("8e") >= 0.95 * fleet_rate && achieved("8f") >= 0.95 * fleet_rate;
    println!(
        "  fleet, paced 8f/8e              = {r8paced:.3}  target ≤ 1.10  {}  {s8paced}  both offered {fleet_rate} req/s (achieved {:.0} / {:.0}{}): added latency p50 {} µs, p99 {} µs; {:.2} registrations per etcd call",
        judged(r8paced, r8paced <= 1.10 && kept_up, &["8e", "8f"]),
        achieved("8e"),
        achieved("8f"),
        if kept_up { "" } else { " — NOT the same work: lower BENCH_FLEET_RATE" },
        p("8f", 0.5) as i64 - p("8e", 0.5) as i64,
        p("8f", 0.99) as i64 - p("8e", 0.99) as i64,
        per_call("8f"),
    );
    let (c9a, c9b, c9c, c9d) = (get("9a"), get("9b"), get("9c"), get("9d"));
    println!(
        "  callout cost  Envoy CPU per callout (− 9a): gRPC {:.0} µs (a write, answered after etcd's fsync: {:.0} µs), HTTP/2 {:.0} µs, HTTP/1.1 {:.0} µs; HTTP/1.1 / gRPC = {:.2}  {}",
        c9b - c9a,
        get("9e") - c9a,
        c9c - c9a,
        c9d - c9a,
        (c9d - c9a) / (c9b - c9a),
        spread(&|c| (c("9d") - c("9a")) / (c("9b") - c("9a"))),
    );
    println!();
    println!("(CPU µs are the Envoy process's run time over its {rounds} interleaved rounds (schedstat; /proc/<pid>/stat utime+stime agrees, see results.json) / requests; \"blocks\" is the range of the same ratio over {BLOCKS} consecutive blocks of rounds. Whole run {:.0} s. Load average before: {load_before}; after: {}. This machine's speed changes under other tenants: compare ratios, not µs.)", began.elapsed().as_secs_f64(), loadavg());

    let out = json!({
        "envoy": envoy_version(),
        "concurrency": 1,
        "connections": conns,
        "pinned": pinned,
        "clk_tck": ctx.tck,
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
        "scenarios": rows.iter().map(|r| json!({
            "id": r.id, "name": r.name, "requests": r.load.n, "errors": r.load.errors,
            "first_error": r.load.first_error, "seconds": r.load.secs,
            "cpu_us_per_request": r.cpu_us, "cpu_us_per_request_blocks": r.blocks_us,
            "cpu_us_per_request_proc_stat": r.cpu_us_stat,
            "throughput_rps": r.load.n as f64 / r.load.secs,
            "latency_us": {"p50": pct(&r.load.lat_us, 0.5), "p90": pct(&r.load.lat_us, 0.9), "p99": pct(&r.load.lat_us, 0.99), "max": r.load.lat_us.last()},
            "vm_rss_kb": r.rss_kb, "extra": r.extra,
        })).collect::<Vec<_>>(),
        "cold_burst": cold,
        "ratios": {
            "all_unique_4m1_over_3m1": r43, "all_unique_target": 1.25,
            "mix_5m1_over_half_3m1": r5, "mix_target": 1.2,
            "mix_5m1_over_2m1": r52,
            "bare_3m1_over_2m1": (c3 - c1) / (c2 - c1),
            "replay_7b_over_7a": r7, "replay_target": 1.10,
            "es256_all_unique_4em1_over_3em1": r43e,
            "es256_mix_5em1_over_half_3em1": r5e,
            "fleet_8b_over_8a": r8, "fleet_target": 1.10,
            "fleet_busy_8d_over_8c": r8busy, "fleet_busy_connections": FLEET_BUSY_CONNS,
            "fleet_paced_8f_over_8e": r8paced, "fleet_paced_rate": fleet_rate,
            "fleet_etcd_cpu_us_per_registration": etcd_us,
        },
    });
    let path = root.join("target/bench/results.json");
    let _ = std::fs::create_dir_all(path.parent().unwrap());
    std::fs::write(&path, serde_json::to_vec_pretty(&out).unwrap()).unwrap();
    println!("raw numbers: {}", path.display());
}

/// 200 registrations at once, each on its own connection (opened before the barrier). Every
/// request gets an entry: its status (0 when there was no HTTP answer: the connection could not be
/// opened or broke) and latency; plus the first answer that was not 201, for the report.
fn fire_burst(port: u16, reqs: Vec<Vec<u8>>) -> (Vec<(u16, u64)>, f64, Option<String>) {
    let barrier = Arc::new(Barrier::new(reqs.len()));
    let t0 = Instant::now();
    let hs: Vec<_> = reqs
        .into_iter()
        .map(|req| {
            let b = Arc::clone(&barrier);
            thread::spawn(move || {
                let conn = TcpStream::connect(("127.0.0.1", port)).and_then(|s| {
                    s.set_nodelay(true)?;
                    Ok((s.try_clone()?, BufReader::new(s)))
                });
                b.wait();
                let t = Instant::now();
                let answer = conn.and_then(|(mut w, mut r)| {
                    w.write_all(&req)?;
                    read_response(&mut r)
                });
                let us = t.elapsed().as_micros() as u64;
                match answer {
                    Ok((201, _)) => (201, us, None),
                    Ok((st, body)) => (
                        st,
                        us,
                        Some(format!("{st} {}", String::from_utf8_lossy(&body))),
                    ),
                    Err(e) => (0, us, Some(format!("no HTTP answer: {e}"))),
                }
            })
        })
        .collect();
    let mut first_error = None;
    let res = hs
        .into_iter()
        .map(|h| {
            let (st, us, err) = h.join().unwrap();
            if first_error.is_none() {
                first_error = err;
            }
            (st, us)
        })
        .collect();
    (res, t0.elapsed().as_secs_f64(), first_error)
}

/// How many answers had each status (0: no HTTP answer), e.g. `{201: 180, 503: 20}`.
fn status_counts(res: &[(u16, u64)]) -> BTreeMap<u16, usize> {
    let mut out = BTreeMap::new();
    for (st, _) in res {
        *out.entry(*st).or_insert(0) += 1;
    }
    out
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn envoy_version() -> String {
    let out = Command::new(common::envoy::envoy_binary())
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.split("version: ")
        .nth(1)
        .and_then(|v| v.split('/').nth(1))
        .map_or_else(|| "?".to_string(), str::to_string)
}
