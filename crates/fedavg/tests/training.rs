//! A short federated run on a small MNIST slice improves test accuracy; FedSGD,
//! FedProx and server momentum run through the same loop; runs are seeded.

use ppml_fedavg::{
    FedConfig, LocalConfig, LocalTrainer, Mode, Partition, ServerConfig, Simulation,
    WeightedAverage,
};
use ppml_nn::{Dataset, Layer, Linear, Model, Normalization};
use rand::SeedableRng;
use std::path::PathBuf;

fn data_dir() -> PathBuf {
    std::env::var_os("PPML_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/mnist")))
}

/// The MNIST test file (10,000 images, quick to load): 2,000 to train on, 1,000 held out.
fn slices() -> (Dataset, Dataset) {
    let dir = data_dir();
    let find = |stem: &str| {
        let gz = dir.join(format!("{stem}.gz"));
        if gz.is_file() { gz } else { dir.join(stem) }
    };
    let all = ppml_nn::mnist::load_pair(
        &find("t10k-images-idx3-ubyte"),
        &find("t10k-labels-idx1-ubyte"),
        Normalization::UnitRange,
    )
    .expect("MNIST files (data/mnist or $PPML_DATA)");
    (all.slice(0..2000), all.slice(9000..10000))
}

/// 784-32-10: small enough for debug-mode tests.
fn small_model(seed: u64) -> Model {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    Model {
        arch: "784-32-10".into(),
        layers: vec![
            Layer::Linear(Linear::new(784, 32, &mut rng)),
            Layer::Relu,
            Layer::Linear(Linear::new(32, 10, &mut rng)),
        ],
        input_shape: vec![784],
    }
}

fn run(train: &Dataset, test: &Dataset, cfg: FedConfig, partition: Partition) -> Vec<f64> {
    let model = small_model(1);
    let parts = partition.split(&train.labels, 10, 3).unwrap();
    let mut sim = Simulation::new(
        model,
        train,
        Some(test),
        parts,
        cfg,
        Box::new(WeightedAverage),
    )
    .unwrap();
    let s = sim.run(&mut |_| {}).unwrap();
    s.accuracy_per_round()
}

#[test]
fn short_runs_improve_accuracy() {
    let (train, test) = slices();
    let before = small_model(1).evaluate(&test);
    let base = FedConfig {
        fraction: 0.5,
        rounds: 3,
        local: LocalConfig {
            epochs: 1,
            batch: 10,
            lr: 0.1,
            ..LocalConfig::default()
        },
        seed: 5,
        ..FedConfig::default()
    };
    let acc = run(&train, &test, base.clone(), Partition::Iid);
    assert_eq!(acc.len(), 3);
    assert!(before < 0.3, "untrained accuracy {before}");
    assert!(
        acc[2] > 0.6 && acc[2] > acc[0],
        "FedAvg IID after 3 rounds: {acc:?}"
    );
    // Same seed, same curve.
    assert_eq!(run(&train, &test, base.clone(), Partition::Iid), acc);

    // Non-IID shards with FedProx and server momentum still learn.
    let prox = FedConfig {
        local: LocalConfig {
            mu: 0.01,
            ..base.local
        },
        server: ServerConfig {
            server_lr: 1.0,
            momentum: 0.5,
        },
        ..base.clone()
    };
    let acc = run(&train, &test, prox, Partition::Shards { per_client: 2 });
    assert!(
        acc[2] > before + 0.2,
        "FedProx+FedAvgM on shards: {acc:?} (untrained {before})"
    );

    // FedSGD: one full-local-batch step per round, many rounds are cheap.
    let sgd = FedConfig {
        fraction: 1.0,
        rounds: 15,
        local: LocalConfig {
            mode: Mode::FedSgd,
            batch: 200,
            lr: 0.5,
            ..base.local
        },
        ..base
    };
    let acc = run(&train, &test, sgd, Partition::Iid);
    assert!(
        acc[14] > before + 0.3,
        "FedSGD: {acc:?} (untrained {before})"
    );
}

#[test]
fn fedsgd_equals_one_large_batch_step() {
    // With equal client sizes, FedSGD's weighted average of (-lr * local full gradient)
    // is exactly -lr * the gradient over the union.
    let (train, _) = slices();
    let model = small_model(2);
    let global = model.params_flat();
    let parts = Partition::Iid.split(&train.labels[..400], 4, 1).unwrap();
    let cfg = LocalConfig {
        mode: Mode::FedSgd,
        batch: 0,
        lr: 0.5,
        ..LocalConfig::default()
    };
    let mut avg = vec![0.0f64; global.len()];
    for p in &parts {
        let mut t = LocalTrainer::new(&model);
        t.train(&global, &train, p, &cfg, 0).unwrap();
        for (a, d) in avg.iter_mut().zip(t.delta()) {
            *a += *d as f64 / parts.len() as f64;
        }
    }
    let all: Vec<usize> = parts.concat();
    let sub = train.subset(&all);
    let (_, g) = model.loss_and_grad(&sub.images, &sub.labels, sub.len());
    for (a, gi) in avg.iter().zip(&g.flat) {
        let want = -0.5 * *gi as f64;
        assert!((a - want).abs() < 1e-5 + 1e-3 * want.abs(), "{a} vs {want}");
    }
}

#[test]
fn bad_inputs_are_errors() {
    let (train, test) = slices();
    let parts = Partition::Iid.split(&train.labels, 4, 1).unwrap();
    let bad = [
        FedConfig {
            fraction: 0.0,
            ..FedConfig::default()
        },
        FedConfig {
            fraction: 1.5,
            ..FedConfig::default()
        },
        FedConfig {
            dropout: 1.0,
            ..FedConfig::default()
        },
        FedConfig {
            local: LocalConfig {
                lr: -1.0,
                ..LocalConfig::default()
            },
            ..FedConfig::default()
        },
        FedConfig {
            local: LocalConfig {
                epochs: 0,
                ..LocalConfig::default()
            },
            ..FedConfig::default()
        },
    ];
    for cfg in bad {
        assert!(
            Simulation::new(
                small_model(1),
                &train,
                Some(&test),
                parts.clone(),
                cfg.clone(),
                Box::new(WeightedAverage)
            )
            .is_err(),
            "{cfg:?} accepted"
        );
    }
    let mut empty = parts.clone();
    empty[1].clear();
    assert!(
        Simulation::new(
            small_model(1),
            &train,
            None,
            empty,
            FedConfig::default(),
            Box::new(WeightedAverage)
        )
        .is_err()
    );
    let mut out_of_range = parts;
    out_of_range[0].push(1_000_000);
    assert!(
        Simulation::new(
            small_model(1),
            &train,
            None,
            out_of_range,
            FedConfig::default(),
            Box::new(WeightedAverage)
        )
        .is_err()
    );
    // A model that does not take 784 inputs.
    let mut t = LocalTrainer::new(&Model::from_arch("2nn", 1).unwrap());
    let wrong = Dataset::new(vec![0.0; 4 * 16], vec![0; 4], 4, 4).unwrap();
    assert!(
        t.train(
            &vec![0.0; t.num_params()],
            &wrong,
            &[0, 1],
            &LocalConfig::default(),
            0
        )
        .is_err()
    );
}

#[test]
fn simulated_dropout_is_reported() {
    let (train, test) = slices();
    let cfg = FedConfig {
        fraction: 1.0,
        rounds: 2,
        dropout: 0.3,
        local: LocalConfig {
            lr: 0.05,
            batch: 50,
            ..LocalConfig::default()
        },
        ..FedConfig::default()
    };
    let parts = Partition::Iid.split(&train.labels, 10, 3).unwrap();
    let mut sim = Simulation::new(
        small_model(3),
        &train,
        Some(&test),
        parts,
        cfg,
        Box::new(WeightedAverage),
    )
    .unwrap();
    let s = sim.run(&mut |_| {}).unwrap();
    for r in &s.rounds {
        assert_eq!(r.sampled.len(), 10);
        assert_eq!(r.dropped.len(), 3);
        assert!(r.dropped.iter().all(|d| r.sampled.contains(d)));
        // down: 10 models, up: 7 updates
        assert_eq!(r.bytes, 17 * (4 + 4 * 25450));
    }
}
