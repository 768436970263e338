//! Private inference of SecureNN's MNIST networks B (MiniONN), C (LeNet) and
//! D (Chameleon) (issue 16): after a short training on real MNIST images, the three
//! parties' predictions equal the plaintext model's on a slice of the test
//! set, the run reports bytes and rounds, and the plan keeps the papers'
//! layers (each ReLU moved after its max-pool, the padded stride-2
//! convolution).

use ppml_nn::mnist::{self, Dataset, Normalization};
use ppml_nn::{LrSchedule, Model, TrainConfig, Workspace, train_epoch};
use ppml_smpc::inference::{LayerPlan, ModelPlan};
use ppml_smpc::{InferConfig, run_in_process};
use std::path::Path;

fn test_set() -> Dataset {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist");
    mnist::load_pair(
        &d.join("t10k-images-idx3-ubyte.gz"),
        &d.join("t10k-labels-idx1-ubyte.gz"),
        Normalization::Standard,
    )
    .expect("MNIST test files in data/mnist")
}

/// `arch` trained for an epoch or a few on 300 images (disjoint from the
/// slice the private run classifies), so that its logits are those of a
/// real model.
fn trained(arch: &str, epochs: usize, data: &Dataset) -> Model {
    let train = data.slice(5000..5300);
    let cfg = TrainConfig {
        epochs,
        batch: 10,
        lr: 0.05,
        momentum: 0.9,
        weight_decay: 0.0,
        schedule: LrSchedule::Cosine,
        seed: 9,
    };
    let mut m = Model::from_arch(arch, cfg.seed).unwrap();
    let (mut opt, mut ws, mut rng) = (cfg.optimizer(), Workspace::new(), cfg.order_rng());
    for e in 0..cfg.epochs {
        train_epoch(
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
    }
    m
}

#[test]
fn networks_b_c_d_agree_with_plaintext_on_real_images() {
    let data = test_set();
    let slice = data.slice(0..32);
    for (arch, epochs) in [("net-b", 2), ("net-c", 1), ("net-d", 3)] {
        let model = trained(arch, epochs, &data);
        let cfg = InferConfig {
            batch: 16,
            ..Default::default()
        };
        let r = run_in_process(&model, &slice.images, &slice.labels, &cfg).unwrap();
        assert_eq!(r.images, 32);
        assert_eq!(r.predictions.len(), 32);
        assert_eq!(
            r.plaintext_agreement, 1.0,
            "{arch}: private predictions differ from the plaintext model (widths {:?})",
            r.cmp_widths
        );
        assert_eq!(r.accuracy, r.plaintext_accuracy, "{arch}");
        // A trained model, not a constant classifier.
        assert!(
            r.plaintext_accuracy > 0.3,
            "{arch}: {}",
            r.plaintext_accuracy
        );
        assert!(r.bytes_total > 0 && r.rounds > 0, "{arch}");
        assert!(!r.cmp_widths.is_empty(), "{arch}");
    }
}

#[test]
fn plans_keep_the_papers_layers() {
    let kinds = |arch: &str| -> Vec<&'static str> {
        let m = Model::from_arch(arch, 1).unwrap();
        ModelPlan::from_model(&m)
            .unwrap()
            .layers
            .iter()
            .map(|l| match l {
                LayerPlan::Linear { .. } => "fc",
                LayerPlan::Conv { .. } => "conv",
                LayerPlan::Relu => "relu",
                LayerPlan::MaxPool { .. } => "maxpool",
                LayerPlan::AvgPool { .. } => "avgpool",
            })
            .collect()
    };
    // SecureNN's conv, ReLU, max-pool runs as conv, max-pool, ReLU.
    let lenet = [
        "conv", "maxpool", "relu", "conv", "maxpool", "relu", "fc", "relu", "fc",
    ];
    assert_eq!(kinds("net-b"), lenet);
    assert_eq!(kinds("net-c"), lenet);
    assert_eq!(kinds("net-d"), ["conv", "relu", "fc", "relu", "fc"]);
    let d = ModelPlan::from_model(&Model::from_arch("net-d", 1).unwrap()).unwrap();
    assert_eq!(
        d.layers[0],
        LayerPlan::Conv {
            in_channels: 1,
            out_channels: 5,
            kernel: 5,
            stride: 2,
            padding: 2,
            input_hw: (28, 28),
        }
    );
    assert_eq!(d.layers[0].out_size(784), 980);
}
