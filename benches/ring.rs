//! Criterion benches of ring tensor arithmetic (ppml-sharing):
//! element-wise ops, sharing/reconstruction, and the ring matmul of the
//! first layer of the 784-500-10 MLP at batch 1000 (1000x784 by 784x500).
//!
//! `cargo bench --bench ring` (all cores), or pinned to one core:
//! `taskset -c 0 cargo bench --bench ring -- --noplot` with `RAYON_NUM_THREADS=1`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ppml_random::{PublicSeed, os_rng, random_u64s};
use ppml_sharing::{RingTensor, additive};
use std::hint::black_box;

fn random_tensor(shape: &[usize], seed: u64) -> RingTensor {
    let n = shape.iter().product();
    RingTensor::new(
        shape.to_vec(),
        random_u64s(&mut PublicSeed::new(seed).rng("bench/ring"), n),
    )
    .expect("shape matches data")
}

fn elementwise(c: &mut Criterion) {
    let n = 1 << 20;
    let a = random_tensor(&[n], 1);
    let b = random_tensor(&[n], 2);
    let mut g = c.benchmark_group("ring_elementwise_1M");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("add", |bench| {
        bench.iter(|| black_box(a.add(&b).expect("same shape")))
    });
    g.bench_function("mul_elem", |bench| {
        bench.iter(|| black_box(a.mul_elem(&b).expect("same shape")))
    });
    g.bench_function("add_assign", |bench| {
        let mut acc = a.clone();
        bench.iter(|| acc.add_assign(black_box(&b)).expect("same shape"))
    });
    g.bench_function("share_2_parties", |bench| {
        // Shares use the same generator as real runs: OS-keyed ChaCha12.
        let mut rng = os_rng();
        bench.iter(|| black_box(additive::share_tensor(&a, 2, &mut rng)))
    });
    let shares = additive::share_tensor(&a, 2, &mut os_rng());
    g.bench_function("reconstruct_2_parties", |bench| {
        bench.iter(|| black_box(additive::reconstruct_tensor(&shares).expect("same shapes")))
    });
    g.finish();
}

fn matmul(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring_matmul");
    g.sample_size(10);
    for &(m, k, n) in &[
        (1000usize, 784usize, 500usize),
        (1000, 500, 10),
        (64, 784, 128),
    ] {
        let a = random_tensor(&[m, k], 5);
        let b = random_tensor(&[k, n], 6);
        g.throughput(Throughput::Elements((m * k * n) as u64));
        g.bench_with_input(
            BenchmarkId::from_parameter(format!("{m}x{k}x{n}")),
            &(a, b),
            |bench, (a, b)| bench.iter(|| black_box(a.matmul(b).expect("shapes agree"))),
        );
    }
    g.finish();
}

criterion_group!(benches, elementwise, matmul);
criterion_main!(benches);
