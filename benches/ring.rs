//! Criterion benches of ring tensor arithmetic (ppml-sharing):
//! element-wise ops, sharing/reconstruction, and the ring matmul of the
//! first layer of the 784-500-10 MLP at batch 1000 (1000x784 by 784x500).
//!
//! `ring_matmul_backend` runs the packed kernel on every CPU backend this
//! machine supports (ppml-simd: portable, avx2, avx512) side by side, on the
//! same prepacked operand, so they can be compared on one core.
//!
//! `ring_matmul_backend_cpu` is the same, timed in on-CPU time of the
//! process (see support/cputime.rs), which stays comparable on a shared,
//! busy machine where wall time does not.
//!
//! `cargo bench --bench ring` (all cores), or pinned to one core:
//! `RAYON_NUM_THREADS=1 taskset -c 0 cargo bench --bench ring -- --noplot`.

use criterion::measurement::Measurement;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ppml_random::{PublicSeed, os_rng, random_u64s};
use ppml_sharing::{RingTensor, additive, kernel, prg};
use ppml_simd::Backend;
use std::hint::black_box;

#[path = "support/cputime.rs"]
mod cputime;

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

fn matmul_backends(c: &mut Criterion) {
    matmul_backends_in(c, "ring_matmul_backend");
}

fn matmul_backends_cpu(c: &mut Criterion<cputime::CpuTime>) {
    matmul_backends_in(c, "ring_matmul_backend_cpu");
}

fn matmul_backends_in<M: Measurement>(c: &mut Criterion<M>, group: &str) {
    let mut g = c.benchmark_group(group);
    g.sample_size(10);
    let (m, k, n) = (1000usize, 784usize, 500usize);
    let mut rng = PublicSeed::new(7).rng("bench/ring");
    let a = prg::random_u64s(&mut rng, m * k);
    let b = prg::random_u64s(&mut rng, k * n);
    let packed = kernel::PackedRhs::pack(&b, k, n).expect("shape matches");
    g.throughput(Throughput::Elements((m * k * n) as u64));
    for backend in Backend::available() {
        g.bench_with_input(
            BenchmarkId::new(format!("{m}x{k}x{n}"), backend.name()),
            &backend,
            |bench, &backend| {
                bench.iter(|| {
                    black_box(kernel::matmul_with(backend, &a, m, &packed).expect("shapes agree"))
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, elementwise, matmul, matmul_backends);
criterion_group! {
    name = cpu_benches;
    config = Criterion::default().with_measurement(cputime::CpuTime);
    targets = matmul_backends_cpu
}
criterion_main!(benches, cpu_benches);
