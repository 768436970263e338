//! Criterion benches of ppml-random: the exact discrete Gaussian (per draw, at
//! the DP-FedAvg grid's sigma = 2^24 and at sigma = 1), the OS-keyed generator
//! filling ring elements, and the AES-CTR seed stream.
//!
//! `taskset -c 0 cargo bench -p ppml-random --bench random -- --noplot`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ppml_random::dgauss::DiscreteGaussian;
use ppml_random::{SeedStream, fill_u64, os_rng};
use std::hint::black_box;

fn dgauss(c: &mut Criterion) {
    let mut g = c.benchmark_group("discrete_gaussian");
    g.throughput(Throughput::Elements(10_000));
    for (name, sigma) in [("sigma_2^24", (1u64 << 24) as f64), ("sigma_1", 1.0)] {
        let dg = DiscreteGaussian::with_sigma_at_least(sigma).expect("in range");
        let mut rng = os_rng();
        let mut out = vec![0i64; 10_000];
        g.bench_function(name, |b| {
            b.iter(|| {
                dg.fill(&mut rng, &mut out);
                black_box(&out);
            })
        });
    }
    g.finish();
}

fn streams(c: &mut Criterion) {
    let mut g = c.benchmark_group("fill_1M_u64");
    g.throughput(Throughput::Bytes(8 << 20));
    let mut out = vec![0u64; 1 << 20];
    let mut rng = os_rng();
    g.bench_function("os_rng_chacha12", |b| {
        b.iter(|| {
            fill_u64(&mut rng, &mut out);
            black_box(&out);
        })
    });
    let mut s = SeedStream::from_seed([7; 32]);
    g.bench_function("seed_stream_aes128ctr", |b| {
        b.iter(|| {
            s.fill_u64(&mut out);
            black_box(&out);
        })
    });
    g.finish();
}

criterion_group!(benches, dgauss, streams);
criterion_main!(benches);
