#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_precision_loss
)]
//! `make bench-micro`: native micro-benchmarks of dcr-guard's parts (parse, verdict lookup, claim
//! rules, replay record, signature verification PS256 and ES256, the whole create pipeline with
//! and without a reused SSA). Each line is the fastest of 15 timed batches, in µs per operation.
//!
//! These complement `make bench` (the Envoy measurement); they are no substitute for it: the
//! crypto here uses ring's native assembly, inside V8 it is compiled C and Rust (several times
//! slower), and hostcalls are absent. Ratios between lines are what carries over.

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::rc::Rc;
use std::time::Instant;

use common::dcr::Tpp;
use common::keys::TestKey;
use dcr_guard_core::config::Config;
use dcr_guard_core::jose::{self, Alg, JwkSet, Jws};
use dcr_guard_core::pipeline::{Create, Fetched, Step, Verdicts};
use dcr_guard_core::replay;
use dcr_guard_core::rules::Ctx;
use dcr_guard_core::shared::MemoryStore;

/// The fastest of 15 batches of `iters` calls, in µs per call (these machines change speed by up
/// to 2× within seconds; the fastest batch is the steadiest figure).
fn time(iters: usize, mut f: impl FnMut(usize)) -> f64 {
    for i in 0..iters.min(50) {
        f(i);
    }
    let mut batches: Vec<f64> = (0..15)
        .map(|b| {
            let t = Instant::now();
            for i in 0..iters {
                f(b * iters + i);
            }
            t.elapsed().as_secs_f64() * 1e6 / iters as f64
        })
        .collect();
    batches.sort_by(f64::total_cmp);
    batches[0]
}

struct Fixture {
    tpp: Tpp,
    cfg: Config,
    sets: Vec<(String, Rc<JwkSet>)>,
    /// Requests with a fresh SSA each.
    unique: Vec<String>,
    /// Requests reusing one SSA.
    reused: Vec<String>,
}

fn fixture(directory: TestKey, key: TestKey, alg: &str, n: usize) -> Fixture {
    let tpp = Tpp::new(directory, key);
    let mut v = tpp.filter_config("keystore", "keystore");
    v["request_algorithms"] = serde_json::json!([alg]);
    v["directories"][0]["algorithms"] = serde_json::json!([alg]);
    let cfg = Config::from_json(v.to_string().as_bytes()).unwrap();
    let sets = vec![
        (
            common::dcr::DIRECTORY_JWKS_URL.to_string(),
            Rc::new(JwkSet::parse(tpp.directory_jwks().to_string().as_bytes(), 64).unwrap()),
        ),
        (
            tpp.jwks_url(),
            Rc::new(JwkSet::parse(tpp.software_jwks().to_string().as_bytes(), 64).unwrap()),
        ),
    ];
    let unique = (0..n).map(|_| tpp.request()).collect();
    let ssa = tpp.ssa();
    let reused = (0..n)
        .map(|_| tpp.key.sign_default(&tpp.request_claims(&ssa)))
        .collect();
    Fixture {
        tpp,
        cfg,
        sets,
        unique,
        reused,
    }
}

fn pipeline(f: &Fixture, body: &str, verdicts: &mut Verdicts, now: i64) {
    let mut c = Create::parse(&f.cfg, body.as_bytes(), verdicts).unwrap();
    loop {
        match c.step(&f.cfg, now, verdicts) {
            Step::Fetch(srcs) | Step::Refetch(srcs) => {
                for s in srcs {
                    let set = f.sets.iter().find(|(u, _)| *u == s.url).unwrap();
                    c.supply(&s.url, Fetched::Keys(Rc::clone(&set.1)));
                }
            }
            Step::Forward => return,
            other => panic!("{other:?}"),
        }
    }
}

fn main() {
    let n = 200;
    let now = i64::try_from(common::keys::now()).unwrap();
    eprintln!("bench-micro: keys and {n} requests per algorithm");
    let ps = fixture(
        TestKey::rsa("directory-ps256"),
        TestKey::rsa("tpp-ps256"),
        "PS256",
        n,
    );
    let es = fixture(
        TestKey::ec("directory-es256"),
        TestKey::ec("tpp-es256"),
        "ES256",
        n,
    );

    let mut rows: Vec<(String, f64, f64)> = Vec::new();
    let mut row = |name: &str, p: f64, e: f64| {
        println!("| {name} | {p:.2} | {e:.2} |");
        rows.push((name.to_string(), p, e));
    };
    println!("| operation (native, µs) | PS256 RSA-2048 | ES256 |");
    println!("|---|---:|---:|");

    let each = |f: &dyn Fn(&Fixture) -> f64| (f(&ps), f(&es));

    let (p, e) = each(&|f| {
        time(n, |i| {
            black_box(Jws::parse(&f.unique[i % n]).unwrap());
        })
    });
    row("parse the request JWT (SSA inside)", p, e);

    let (p, e) = each(&|f| {
        let ssa = f.tpp.ssa();
        time(n, |_| {
            black_box(Jws::parse(&ssa).unwrap());
        })
    });
    row("parse an SSA", p, e);

    let (p, e) = each(&|f| {
        let mut verdicts = Verdicts::default();
        pipeline(f, &f.reused[0], &mut verdicts, now);
        let ssa = Jws::parse(&f.reused[0]).unwrap().claims["software_statement"]
            .as_str()
            .unwrap()
            .to_string();
        time(n * 10, |_| {
            black_box(verdicts.lookup(&ssa).is_some());
        })
    });
    row("SSA verdict cache lookup (hit)", p, e);

    let (p, e) = each(&|f| {
        let req = Jws::parse(&f.reused[0]).unwrap();
        let ssa = Jws::parse(req.claims["software_statement"].as_str().unwrap()).unwrap();
        let ctx = Ctx {
            request: &req.claims,
            ssa: &ssa.claims,
        };
        time(n, |_| {
            f.cfg
                .rules
                .claims
                .run(&ctx, true, &mut |id, why| panic!("{id:?}: {why}"));
        })
    });
    row("claim rules (all eleven, passing)", p, e);

    let r = {
        let mut store = MemoryStore::envoy();
        // One issuer filling the store: its share switched off.
        let cfg = replay::ReplayConfig {
            issuer_share_percent: 100,
            ..replay::ReplayConfig::default()
        };
        time(n, |i| {
            let jti = format!("{i:08}-0000-4000-8000-000000000000");
            let secret = replay::load_secret(&mut store, &cfg).unwrap();
            let pair = replay::Pair {
                issuer: "tpp",
                jti: &jti,
                share: replay::Share::Limited,
            };
            black_box(
                replay::check_and_record(&mut store, &cfg, &secret, &pair, now, now + 3600)
                    .unwrap(),
            );
        })
    };
    let (p, e) = (r, r);
    row("replay record (store filling up)", p, e);

    let (p, e) = each(&|f| {
        let reqs: Vec<Jws> = f.unique.iter().map(|r| Jws::parse(r).unwrap()).collect();
        let alg = if f.cfg.request_algorithms.contains(&Alg::Ps256) {
            Alg::Ps256
        } else {
            Alg::Es256
        };
        time(n, |i| {
            jose::verify(&reqs[i % n], &[&f.sets[1].1], &[alg]).unwrap();
        })
    });
    row("verify the request JWT signature", p, e);

    let (p, e) = each(&|f| {
        time(n / 4, |i| {
            // A fresh cache each time: the pool is smaller than the calls.
            pipeline(f, &f.unique[i % n], &mut Verdicts::default(), now)
        })
    });
    row("create pipeline, every SSA new (2 verifications)", p, e);

    let (p, e) = each(&|f| {
        let mut verdicts = Verdicts::default();
        time(n / 4, |i| pipeline(f, &f.reused[i % n], &mut verdicts, now))
    });
    row("create pipeline, SSA reused (1 verification)", p, e);

    let get = |name: &str| rows.iter().find(|r| r.0.starts_with(name)).unwrap().clone();
    let (_, v_ps, v_es) = get("verify the request");
    let (_, r_ps, r_es) = get("create pipeline, SSA reused");
    println!();
    println!(
        "reused-SSA pipeline / one verification: PS256 {:.2}, ES256 {:.2} (natively; in V8 verification weighs more)",
        r_ps / v_ps,
        r_es / v_es
    );
}
