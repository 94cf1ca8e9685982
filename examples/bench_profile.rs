#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! Native driver for profiling (bench/README.md): runs dcr-guard's create pipeline
//! (`pipeline::Create`: parse, both signatures, rules; keys handed in pre-parsed as the worker
//! cache would) and, separately, the bare verification (two `jose::verify`) over the same
//! pre-signed requests. Under valgrind:
//!
//! ```sh
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*run_pipeline*' \
//!     target/release/examples/bench_profile pipeline
//! ```
//!
//! Without valgrind it prints µs per request of each loop.

#[path = "../tests/common/mod.rs"]
mod common;

use std::rc::Rc;
use std::time::Instant;

use common::dcr::Tpp;
use common::keys::TestKey;
use dcr_guard_core::config::Config;
use dcr_guard_core::jose::{self, Alg, JwkSet, Jws};
use dcr_guard_core::pipeline::{Create, Fetched, Step, Verdicts};

#[inline(never)]
fn run_pipeline(cfg: &Config, bodies: &[String], sets: &[(String, Rc<JwkSet>)], now: i64) -> usize {
    let mut ok = 0;
    let mut verdicts = Verdicts::default();
    for body in bodies {
        let mut c = Create::parse(cfg, body.as_bytes(), &verdicts).unwrap();
        loop {
            match c.step(cfg, now, &mut verdicts) {
                Step::Fetch(srcs) | Step::Refetch(srcs) => {
                    for s in srcs {
                        let set = sets.iter().find(|(u, _)| *u == s.url).unwrap();
                        c.supply(&s.url, Fetched::Keys(Rc::clone(&set.1)));
                    }
                }
                Step::Forward => {
                    ok += 1;
                    break;
                }
                Step::Reject(e) => panic!("rejected: {e:?}"),
                Step::Call(_) => panic!("unexpected callout"),
            }
        }
    }
    ok
}

#[inline(never)]
fn run_bare(pairs: &[(String, String)], dir: &JwkSet, sw: &JwkSet) -> usize {
    let mut ok = 0;
    for (ssa, req) in pairs {
        let a = Jws::parse(ssa).unwrap();
        let b = Jws::parse(req).unwrap();
        if jose::verify(&a, &[dir], &[Alg::Ps256]).is_ok()
            && jose::verify(&b, &[sw], &[Alg::Ps256]).is_ok()
        {
            ok += 1;
        }
    }
    ok
}

fn main() {
    let what = std::env::args().nth(1).unwrap_or_else(|| "both".into());
    let n: usize = std::env::args()
        .nth(2)
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let tpp = Tpp::new(TestKey::rsa("directory-ps256"), TestKey::rsa("tpp-ps256"));
    let cfg = Config::from_json(
        tpp.filter_config("keystore", "keystore")
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    let mut pairs = Vec::new();
    for _ in 0..n {
        let ssa = tpp.ssa();
        let req = tpp.key.sign_default(&tpp.request_claims(&ssa));
        pairs.push((ssa, req));
    }
    let bodies: Vec<String> = pairs.iter().map(|p| p.1.clone()).collect();
    // `mix`: every request reuses one SSA (the verdict cache's case).
    let ssa = tpp.ssa();
    let reused: Vec<String> = (0..n)
        .map(|_| tpp.key.sign_default(&tpp.request_claims(&ssa)))
        .collect();
    let dir = JwkSet::parse(tpp.directory_jwks().to_string().as_bytes(), 64).unwrap();
    let sw = JwkSet::parse(tpp.software_jwks().to_string().as_bytes(), 64).unwrap();
    let sets = vec![
        (
            common::dcr::DIRECTORY_JWKS_URL.to_string(),
            Rc::new(dir.clone()),
        ),
        (tpp.jwks_url(), Rc::new(sw.clone())),
    ];
    let now = i64::try_from(common::keys::now()).unwrap();
    if what == "pipeline" || what == "both" {
        let t = Instant::now();
        let ok = run_pipeline(&cfg, &bodies, &sets, now);
        println!(
            "pipeline: {ok}/{n} forwarded, {:.1} µs per request",
            t.elapsed().as_secs_f64() * 1e6 / n as f64
        );
    }
    if what == "mix" {
        let t = Instant::now();
        let ok = run_pipeline(&cfg, &reused, &sets, now);
        println!(
            "mix: {ok}/{n} forwarded, {:.1} µs per request",
            t.elapsed().as_secs_f64() * 1e6 / n as f64
        );
    }
    if what == "bare" || what == "both" {
        let t = Instant::now();
        let ok = run_bare(&pairs, &dir, &sw);
        println!(
            "bare: {ok}/{n} verified, {:.1} µs per request",
            t.elapsed().as_secs_f64() * 1e6 / n as f64
        );
    }
}
