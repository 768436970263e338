//! Small-slice training improves accuracy far above chance; fixed seeds are bit-for-bit deterministic.

use ppml_nn::mnist::{self, Dataset, Normalization};
use ppml_nn::{
    Conv2d, Layer, Linear, LrSchedule, MaxPool2d, Model, TrainConfig, Workspace, train_epoch,
};
use rand::SeedableRng;
use std::path::Path;

fn test_set() -> Dataset {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist");
    mnist::load_pair(
        &d.join("t10k-images-idx3-ubyte.gz"),
        &d.join("t10k-labels-idx1-ubyte.gz"),
        Normalization::Standard,
    )
    .unwrap()
}

fn run(arch: &str, train: &Dataset, cfg: &TrainConfig) -> Model {
    run_model(Model::from_arch(arch, cfg.seed).unwrap(), train, cfg)
}

fn run_model(mut m: Model, train: &Dataset, cfg: &TrainConfig) -> Model {
    let mut opt = cfg.optimizer();
    let mut ws = Workspace::new();
    let mut rng = cfg.order_rng();
    let mut calls = 0;
    for e in 0..cfg.epochs {
        let st = train_epoch(
            &mut m,
            train,
            cfg,
            e,
            &mut opt,
            &mut ws,
            &mut rng,
            &mut |_, _, _| calls += 1,
        )
        .unwrap();
        assert!(st.mean_loss.is_finite());
    }
    assert_eq!(calls, cfg.epochs * train.len().div_ceil(cfg.batch));
    m
}

#[test]
fn small_slice_training_beats_chance() {
    let all = test_set();
    let train = all.slice(0..600);
    let held_out = all.slice(9000..10_000);
    let cfg = TrainConfig {
        epochs: 4,
        batch: 20,
        lr: 0.05,
        momentum: 0.9,
        weight_decay: 0.0,
        schedule: LrSchedule::Cosine,
        seed: 3,
    };
    let before = Model::from_arch("net-a", 3).unwrap().evaluate(&held_out);
    let m = run("net-a", &train, &cfg);
    let after = m.evaluate(&held_out);
    assert!(before < 0.25, "untrained accuracy {before}");
    assert!(
        after > 0.70,
        "accuracy after training on 600 images: {after}"
    );
}

#[test]
fn tiny_cnn_training_beats_chance() {
    // a narrow CNN (the full `cnn` is too slow for a debug-mode test)
    let all = test_set();
    let train = all.slice(0..300);
    let held_out = all.slice(9700..10_000);
    let cfg = TrainConfig {
        epochs: 3,
        batch: 20,
        lr: 0.05,
        momentum: 0.9,
        weight_decay: 0.0,
        schedule: LrSchedule::Constant,
        seed: 1,
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let m = Model {
        arch: "tiny-cnn".into(),
        layers: vec![
            Layer::Conv2d(Conv2d::new(1, 4, 5, 1, 2, (28, 28), &mut rng)),
            Layer::Relu,
            Layer::MaxPool2d(MaxPool2d {
                kernel: 2,
                stride: 2,
                channels: 4,
                input_hw: (28, 28),
            }),
            Layer::Flatten,
            Layer::Linear(Linear::new(4 * 14 * 14, 10, &mut rng)),
        ],
        input_shape: vec![1, 28, 28],
    };
    let m = run_model(m, &train, &cfg);
    let acc = m.evaluate(&held_out);
    assert!(acc > 0.35, "cnn accuracy after 200 images: {acc}");
}

#[test]
fn perceptron_learns_zero_versus_one() {
    let all = test_set().filter_labels(&[0, 1]);
    let train = all.slice(0..300);
    let held_out = all.slice(1500..all.len());
    let cfg = TrainConfig {
        epochs: 2,
        batch: 10,
        lr: 0.05,
        momentum: 0.0,
        ..TrainConfig::default()
    };
    let m = run("perceptron", &train, &cfg);
    assert!(m.evaluate(&held_out) > 0.95);
}

#[test]
fn same_seed_same_model_bit_for_bit() {
    let all = test_set();
    let train = all.slice(0..300);
    let cfg = TrainConfig {
        epochs: 2,
        batch: 32,
        lr: 0.05,
        momentum: 0.9,
        weight_decay: 1e-4,
        schedule: LrSchedule::Linear,
        seed: 11,
    };
    let a = run("2nn", &train, &cfg).params_flat();
    let b = run("2nn", &train, &cfg).params_flat();
    assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
    let c = run("2nn", &train, &TrainConfig { seed: 12, ..cfg }).params_flat();
    assert_ne!(a, c);
}

#[test]
fn train_epoch_rejects_bad_input() {
    let all = test_set().slice(0..10);
    let mut m = Model::from_arch("perceptron", 0).unwrap();
    let cfg = TrainConfig::default();
    let mut opt = cfg.optimizer();
    let mut ws = Workspace::new();
    let mut rng = rand_chacha::ChaCha12Rng::seed_from_u64(0);
    // mlp with 10 outputs is fine, but a label >= outputs is not
    let mut m2 = Model::from_arch("split", 0).unwrap();
    let (_, mut top) = m2.clone().split_at(4).unwrap();
    assert!(
        train_epoch(
            &mut top,
            &all,
            &cfg,
            0,
            &mut opt,
            &mut ws,
            &mut rng,
            &mut |_, _, _| {}
        )
        .is_err()
    );
    let bad = TrainConfig {
        batch: 0,
        ..cfg.clone()
    };
    assert!(
        train_epoch(
            &mut m2,
            &all,
            &bad,
            0,
            &mut opt,
            &mut ws,
            &mut rng,
            &mut |_, _, _| {}
        )
        .is_err()
    );
    assert!(
        train_epoch(
            &mut m,
            &all,
            &cfg,
            0,
            &mut opt,
            &mut ws,
            &mut rng,
            &mut |_, _, _| {}
        )
        .is_ok()
    );
}
