//! Criterion benches of the building blocks, three parties in-process, with
//! the bytes and rounds of one call printed. Run with `taskset -c 0` and
//! `RAYON_NUM_THREADS=1` for the one-core figures.
//!
//! * `matmul_1000x784x500`: Beaver matmul of a shared 1000x784 input by a
//!   prepared (once-opened) 784x500 weight matrix, with truncation.
//! * `relu_1e6`: ReLU on 10^6 shared elements.
//! * `argmax_1000x10`: argmax of 1000 rows of 10 shared logits.
//! * `compare_kernels_cpu/*/{portable,avx2,avx512}`: the local PrivateCompare
//!   loops (both parties' messages and the helper's evaluation, 10^5
//!   elements, 28 bits) and mask expansion (10^6 values of Z_67) on every
//!   backend this CPU has, timed in on-CPU time (stable on a shared machine).

use criterion::{Criterion, criterion_group, criterion_main};
use ppml_net::{NetConfig, Network};
use ppml_smpc::SecretSource;
/// Reproducible test randomness: insecure by design (benchmarks only).
mod prg {
    pub use ppml_random::random_u64s;
    pub fn seeded(seed: u64) -> ppml_random::SecretRng {
        ppml_random::insecure_deterministic_rng(seed, "bench/smpc")
    }
}
use ppml_smpc::party::{P0, P1, P2, Party, ProtocolConfig};
use ppml_smpc::{beaver, compare, sim};
use std::sync::Barrier;
use std::time::{Duration, Instant};

#[path = "../../../benches/support/cputime.rs"]
mod cputime;

/// Runs `iters` calls of `step` in one 3-party session (after `prepare`),
/// returns P0's wall time for the calls and the traffic of all parties per call.
fn session<S: Send>(
    iters: u64,
    prepare: impl Fn(&mut Party) -> S + Sync,
    step: impl Fn(&mut Party, &S) + Sync,
) -> (Duration, u64, u64) {
    let barrier = Barrier::new(3);
    let nets = Network::in_memory(3, &NetConfig::default());
    let runs = sim::run_networks(
        nets,
        ProtocolConfig::default(),
        SecretSource::InsecureDeterministic(1),
        |p| {
            let state = prepare(p);
            barrier.wait();
            let before = p.net.stats().total;
            let t = Instant::now();
            for _ in 0..iters {
                step(p, &state);
            }
            let el = t.elapsed();
            let d = p.net.stats().total - before;
            Ok((el, d.bytes_sent, d.rounds))
        },
    )
    .expect("session");
    let bytes: u64 = runs.iter().map(|r| r.output.1).sum();
    let rounds = runs.iter().map(|r| r.output.2).max().unwrap_or(0);
    (
        runs[P0].output.0,
        bytes / iters.max(1),
        rounds / iters.max(1),
    )
}

fn shares(id: usize, len: usize, seed: u64) -> Vec<u64> {
    match id {
        P0 | P1 => prg::random_u64s(&mut prg::seeded(seed + id as u64), len)
            .into_iter()
            .map(|v| v >> 45) // small values, as after truncation
            .collect(),
        _ => Vec::new(),
    }
}

fn report(name: &str, bytes: u64, rounds: u64) {
    eprintln!(
        "{name}: {:.1} MB sent in total per call (all parties), {rounds} rounds",
        bytes as f64 / 1e6
    );
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("smpc");
    g.sample_size(10).measurement_time(Duration::from_secs(8));

    let (m, k, n) = (1000, 784, 500);
    let prep_w = |p: &mut Party| {
        let w = shares(p.id, k * n, 7);
        let w = if p.id == P2 { Vec::new() } else { w };
        (
            beaver::FixedRhs::from_shares(p, &w, k, n).expect("weights"),
            shares(p.id, m * k, 9),
        )
    };
    let step_mm = |p: &mut Party, s: &(beaver::FixedRhs, Vec<u64>)| {
        let masked = beaver::mask_shared(p, m * k, &s.1).expect("mask");
        let mut z = beaver::fixed_product(p, m, &masked, &s.0).expect("product");
        beaver::truncate(p, &mut z);
    };
    let (_, b, r) = session(1, prep_w, step_mm);
    report("matmul 1000x784x500", b, r);
    g.bench_function("matmul_1000x784x500", |bch| {
        bch.iter_custom(|iters| session(iters, prep_w, step_mm).0)
    });

    let len = 1_000_000;
    let prep_x = |p: &mut Party| shares(p.id, len, 3);
    let step_relu = |p: &mut Party, x: &Vec<u64>| {
        compare::relu(p, len, x).expect("relu");
    };
    let (_, b, r) = session(1, prep_x, step_relu);
    report("relu 1e6", b, r);
    g.bench_function("relu_1e6", |bch| {
        bch.iter_custom(|iters| session(iters, prep_x, step_relu).0)
    });

    let prep_l = |p: &mut Party| shares(p.id, 1000 * 10, 5);
    let step_arg = |p: &mut Party, x: &Vec<u64>| {
        compare::argmax(p, 1000, 10, x).expect("argmax");
    };
    let (_, b, r) = session(1, prep_l, step_arg);
    report("argmax 1000x10", b, r);
    g.bench_function("argmax_1000x10", |bch| {
        bch.iter_custom(|iters| session(iters, prep_l, step_arg).0)
    });
    g.finish();
}

fn compare_kernels(c: &mut Criterion<cputime::CpuTime>) {
    use ppml_simd::Backend;
    use ppml_smpc::compare::{PcMasks, pc_eval_on, pc_message_on, pc_prime};
    use ppml_smpc::party::{Prg, fill_mod_on};
    let mut g = c.benchmark_group("compare_kernels_cpu");
    g.sample_size(10);
    let (n, m) = (100_000usize, 28usize);
    let w = m + 1;
    let c_open = prg::random_u64s(&mut prg::seeded(1), n);
    let mut p = Prg::from_seed([3; 32]);
    let masks = PcMasks::draw(&mut p, n, m);
    let mut rho = vec![0u8; n * m];
    fill_mod_on(Backend::Portable, &mut p, &mut rho, pc_prime(m) as u16, 0);
    for backend in Backend::available() {
        let mut d0 = vec![0u8; n * w];
        let mut d1 = vec![0u8; n * w];
        let mut scratch = Vec::new();
        g.bench_function(format!("pc_messages_and_eval_1e5/{backend}"), |b| {
            b.iter(|| {
                pc_message_on(backend, 0, m, &c_open, &rho, &masks, &mut d0, &mut scratch);
                pc_message_on(backend, 1, m, &c_open, &rho, &masks, &mut d1, &mut scratch);
                std::hint::black_box(pc_eval_on(backend, w, &d0, &d1))
            })
        });
        let mut out = vec![0u8; 1_000_000];
        let mut prg = Prg::from_seed([5; 32]);
        g.bench_function(format!("fill_z67_1e6/{backend}"), |b| {
            b.iter(|| fill_mod_on(backend, &mut prg, &mut out, 67, 0))
        });
    }
    g.finish();
}

criterion_group!(smpc, benches);
criterion_group! {
    name = kernels;
    config = Criterion::default().with_measurement(cputime::CpuTime);
    targets = compare_kernels
}
criterion_main!(smpc, kernels);
