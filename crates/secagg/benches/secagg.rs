//! Criterion benches of secure aggregation: mask expansion, packing, and whole rounds.

use criterion::{Criterion, criterion_group, criterion_main};
use ppml_secagg::{DropoutPlan, SecAggConfig, SecretSource, add_mask, aggregate_in_process, pack};
use std::hint::black_box;

fn masks(c: &mut Criterion) {
    let mut acc = vec![0u64; 100_000];
    c.bench_function("add_mask d=100k k=26", |b| {
        b.iter(|| add_mask(black_box(&mut acc), &[7; 32], 26, false))
    });
    let v: Vec<u64> = (0..100_000u64).map(|i| i * 2654435761).collect();
    c.bench_function("pack d=100k k=26", |b| {
        b.iter(|| pack::pack(black_box(&v), 26))
    });
}

fn rounds(c: &mut Criterion) {
    let mut g = c.benchmark_group("round");
    g.sample_size(10);
    for (n, graph) in [(20usize, false), (100, true)] {
        let inputs: Vec<Vec<f32>> = (0..n).map(|i| vec![i as f32 * 1e-3; 10_000]).collect();
        let cfg = SecAggConfig {
            graph,
            ..SecAggConfig::default()
        };
        let plan = DropoutPlan::random(n, 0.1, 1).expect("valid fraction");
        g.bench_function(format!("n={n} d=10k graph={graph} drop=0.1"), |b| {
            b.iter(|| {
                aggregate_in_process(&inputs, &cfg, &plan, 3, SecretSource::Os)
                    .expect("round succeeds")
            })
        });
    }
    g.finish();
}

criterion_group!(benches, masks, rounds);
criterion_main!(benches);
