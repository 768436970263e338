//! Criterion benches: one training step (mlp500 batch 64, 2nn batch 10) and
//! batched inference (mlp500, 1000 images). Run pinned to one core:
//! `taskset -c 0 cargo bench -p ppml-nn --bench nn`.

use criterion::{Criterion, criterion_group, criterion_main};
use ppml_nn::{InferBuffers, Model, Normalization, Sgd, Workspace, mnist};
use std::hint::black_box;
use std::path::Path;

fn test_images() -> mnist::Dataset {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist");
    mnist::load_pair(
        &d.join("t10k-images-idx3-ubyte.gz"),
        &d.join("t10k-labels-idx1-ubyte.gz"),
        Normalization::Standard,
    )
    .expect("vendored MNIST test set")
}

fn benches(c: &mut Criterion) {
    let data = test_images();
    let mut g = c.benchmark_group("train_step");
    for (arch, batch, lr, mu) in [("mlp500", 64usize, 0.01f32, 0.5f32), ("2nn", 10, 0.1, 0.0)] {
        let mut m = Model::from_arch(arch, 1).expect("arch");
        let mut opt = Sgd::new(lr, mu);
        let mut ws = Workspace::new();
        let x = &data.images[..batch * 784];
        let y = &data.labels[..batch];
        g.bench_function(format!("{arch}_batch{batch}"), |b| {
            b.iter(|| black_box(opt.train_step(&mut m, x, y, batch, &mut ws)))
        });
    }
    g.finish();
    let mut g = c.benchmark_group("inference");
    let m = Model::from_arch("mlp500", 1).expect("arch");
    let mut bufs = InferBuffers::default();
    let x = &data.images[..1000 * 784];
    g.bench_function("mlp500_batch1000", |b| {
        b.iter(|| black_box(m.forward_into(x, 1000, &mut bufs)[0]))
    });
    g.sample_size(20);
    g.bench_function("mlp500_10k_evaluate", |b| {
        b.iter(|| black_box(m.evaluate(&data)))
    });
    g.finish();
    let mut g = c.benchmark_group("cnn");
    g.sample_size(10);
    let mut m = Model::from_arch("cnn", 1).expect("arch");
    let mut opt = Sgd::new(0.05, 0.9);
    let mut ws = Workspace::new();
    let x = &data.images[..64 * 784];
    let y = &data.labels[..64];
    g.bench_function("cnn_train_step_batch64", |b| {
        b.iter(|| black_box(opt.train_step(&mut m, x, y, 64, &mut ws)))
    });
    g.finish();
}

criterion_group!(nn, benches);
criterion_main!(nn);
