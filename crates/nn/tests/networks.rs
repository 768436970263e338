//! The MNIST networks B (MiniONN), C (LeNet) and D (Chameleon) of SecureNN
//! (PETS 2019), also benchmarked by Falcon (PETS 2021) (issue 16): every
//! layer's kind, geometry and output size as SecureNN's appendix C gives them
//! (docs/NETWORKS.md), their parameter counts, the aliases, and that a few
//! hundred images of training move them well above chance.

use ppml_nn::mnist::{self, Dataset, Normalization};
use ppml_nn::{ARCHS, Layer, LrSchedule, Model, TrainConfig, Workspace, train_epoch};
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

/// The layer list as `describe()` strings with each layer's output size.
fn layers(arch: &str) -> Vec<(String, usize)> {
    let m = Model::from_arch(arch, 0).unwrap();
    let sizes = m.sizes();
    m.layers
        .iter()
        .zip(&sizes[1..])
        .map(|(l, &s)| (l.describe(), s))
        .collect()
}

fn want(rows: &[(&str, usize)]) -> Vec<(String, usize)> {
    rows.iter().map(|&(d, s)| (d.to_string(), s)).collect()
}

#[test]
fn network_b_is_the_minionn_network() {
    // SecureNN, appendix C: conv 1->16 5x5, ReLU, 2x2 max-pool, conv 16->16
    // 5x5, ReLU, 2x2 max-pool, FC 256x100, ReLU, FC 100x10.
    assert_eq!(
        layers("net-b"),
        want(&[
            ("Conv2d(1->16, k5, s1, p0)", 16 * 24 * 24),
            ("ReLU", 16 * 24 * 24),
            ("MaxPool2d(k2, s2)", 16 * 12 * 12),
            ("Conv2d(16->16, k5, s1, p0)", 16 * 8 * 8),
            ("ReLU", 16 * 8 * 8),
            ("MaxPool2d(k2, s2)", 256),
            ("Flatten", 256),
            ("Linear(256->100)", 100),
            ("ReLU", 100),
            ("Linear(100->10)", 10),
        ])
    );
}

#[test]
fn network_c_is_lenet() {
    assert_eq!(
        layers("net-c"),
        want(&[
            ("Conv2d(1->20, k5, s1, p0)", 20 * 24 * 24),
            ("ReLU", 20 * 24 * 24),
            ("MaxPool2d(k2, s2)", 20 * 12 * 12),
            ("Conv2d(20->50, k5, s1, p0)", 50 * 8 * 8),
            ("ReLU", 50 * 8 * 8),
            ("MaxPool2d(k2, s2)", 800),
            ("Flatten", 800),
            ("Linear(800->500)", 500),
            ("ReLU", 500),
            ("Linear(500->10)", 10),
        ])
    );
}

#[test]
fn network_d_is_the_chameleon_network() {
    // SecureNN: conv 5x5, stride 2, 5 output channels -> 980 values (zero
    // padding 2), ReLU, FC 980x100, ReLU, FC 100x10.
    assert_eq!(
        layers("net-d"),
        want(&[
            ("Conv2d(1->5, k5, s2, p2)", 5 * 14 * 14),
            ("ReLU", 980),
            ("Flatten", 980),
            ("Linear(980->100)", 100),
            ("ReLU", 100),
            ("Linear(100->10)", 10),
        ])
    );
}

#[test]
fn parameter_counts() {
    let n = |a: &str| Model::from_arch(a, 0).unwrap().num_params();
    // weights + biases, layer by layer
    assert_eq!(
        n("net-b"),
        (16 * 25 + 16) + (16 * 16 * 25 + 16) + (256 * 100 + 100) + (100 * 10 + 10)
    );
    assert_eq!(n("net-b"), 33_542);
    // LeNet as in Caffe's MNIST example: 431,080 parameters.
    assert_eq!(n("net-c"), 431_080);
    assert_eq!(
        n("net-d"),
        (5 * 25 + 5) + (980 * 100 + 100) + (100 * 10 + 10)
    );
    assert_eq!(n("net-d"), 99_240);
}

#[test]
fn names_aliases_and_the_arch_list() {
    for (canon, aliases) in [
        ("net-a", ["neta", "netA"]),
        ("net-b", ["netb", "netB"]),
        ("net-c", ["netc", "netC"]),
        ("net-d", ["netd", "netD"]),
    ] {
        assert!(ARCHS.contains(&canon), "{canon} missing from ARCHS");
        let m = Model::from_arch(canon, 7).unwrap();
        assert_eq!(m.arch, canon);
        for a in aliases {
            let b = Model::from_arch(a, 7).unwrap();
            assert_eq!(b, m, "{a} is not {canon}");
        }
    }
    let e = Model::from_arch("net-e", 0).unwrap_err().to_string();
    assert!(e.contains("net-b") && e.contains("net-d"), "{e}");
    // The CNNs take 1x28x28 images and are distinct networks.
    for a in ["net-b", "net-c", "net-d"] {
        let m = Model::from_arch(a, 0).unwrap();
        assert_eq!(m.input_shape, vec![1, 28, 28]);
        assert_eq!(m.output_size(), 10);
        assert!(matches!(m.layers[0], Layer::Conv2d(_)));
    }
}

#[test]
fn a_few_hundred_images_train_each_network_above_chance() {
    let all = test_set();
    let train = all.slice(0..300);
    let held_out = all.slice(9700..10_000);
    let cfg = TrainConfig {
        epochs: 2,
        batch: 10,
        lr: 0.05,
        momentum: 0.9,
        weight_decay: 0.0,
        schedule: LrSchedule::Cosine,
        seed: 5,
    };
    // net-d (one strided convolution) learns slowest but costs least per
    // epoch; net-c (LeNet) costs most.
    for (arch, epochs) in [("net-b", 2), ("net-c", 1), ("net-d", 3)] {
        let cfg = TrainConfig { epochs, ..cfg };
        let mut m = Model::from_arch(arch, cfg.seed).unwrap();
        let before = m.evaluate(&held_out);
        let mut opt = cfg.optimizer();
        let mut ws = Workspace::new();
        let mut rng = cfg.order_rng();
        for e in 0..cfg.epochs {
            let st = train_epoch(
                &mut m,
                &train,
                &cfg,
                e,
                &mut opt,
                &mut ws,
                &mut rng,
                &mut |_, _, _| {},
            )
            .unwrap();
            assert!(st.mean_loss.is_finite(), "{arch}");
        }
        let after = m.evaluate(&held_out);
        eprintln!("{arch}: held-out accuracy {before} -> {after}");
        assert!(
            after > 0.4 && after > before + 0.25,
            "{arch}: held-out accuracy {before} -> {after}"
        );
    }
}
