//! Issue 14 on shares: average pooling, logits for the data owner, and
//! private scoring (`--private-eval`), where only the number of correct
//! predictions is opened.

use ppml_net::{FrameLog, NetConfig, Network, RecordingTransport};
use ppml_nn::layers::{AvgPool2d, Conv2d, Linear};
use ppml_nn::{Layer, Model};
use ppml_smpc::InferConfig;
use ppml_smpc::inference::{RoleInput, run_role_full};
use ppml_smpc::party::{DATA_OWNER, MODEL_OWNER, ProtocolConfig};
use ppml_smpc::scoring::{Reveal, run_private};
use ppml_smpc::sim;
use rand::SeedableRng;
use std::sync::{Arc, Mutex};

fn images(n: usize, per: usize, salt: usize) -> Vec<f32> {
    (0..n * per)
        .map(|i| ((i * 7919 + salt * 104_729) % 1000) as f32 / 1000.0)
        .collect()
}

fn pooled_cnn() -> Model {
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let m = Model {
        arch: "avg-cnn".into(),
        input_shape: vec![1, 12, 12],
        layers: vec![
            Layer::Conv2d(Conv2d::new(1, 4, 3, 1, 1, (12, 12), &mut r)),
            Layer::Relu,
            Layer::AvgPool2d(AvgPool2d {
                kernel: (2, 2),
                stride: (2, 2),
                channels: 4,
                input_hw: (12, 12),
            }),
            Layer::Conv2d(Conv2d::new(4, 6, 3, 2, 1, (6, 6), &mut r)),
            Layer::Relu,
            Layer::AvgPool2d(AvgPool2d::global(6, (3, 3))),
            Layer::Flatten,
            Layer::Linear(Linear::new(6, 10, &mut r)),
        ],
    };
    m.validate().unwrap();
    m
}

#[test]
fn average_pooling_on_shares_matches_plaintext_logits() {
    let m = pooled_cnn();
    let x = images(16, 144, 1);
    let cfg = InferConfig {
        batch: 5,
        ..Default::default()
    };
    let r = run_private(&m, &x, None, Reveal::ClassesAndLogits, &cfg).unwrap();
    let plain = m.forward(&x, 16);
    assert_eq!(r.logits.len(), plain.len());
    let worst = r
        .logits
        .iter()
        .zip(&plain)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    // 3x3 global pool: multiplier round(2^16/9) has relative error 1e-5; a few
    // truncations of 2^-16 each.
    assert!(worst < 2e-3, "largest logit error {worst}");
    assert_eq!(r.predictions, ppml_nn::argmax_rows(&r.logits, 10));
    let agree = r
        .predictions
        .iter()
        .zip(m.predict(&x, 16))
        .filter(|(a, b)| **a == *b)
        .count();
    assert!(agree >= 15, "agreement {agree}/16");
}

#[test]
fn private_count_equals_the_plaintext_count() {
    for arch in ["net-a", "perceptron"] {
        let m = Model::from_arch(arch, 3).unwrap();
        let n = 30;
        let x = images(n, 784, 2);
        let plain = m.predict(&x, n);
        // Labels: right for every third image, wrong for the others.
        let classes = m.output_size().max(2) as u8;
        let labels: Vec<u8> = plain
            .iter()
            .enumerate()
            .map(|(i, &p)| if i % 3 == 0 { p } else { (p + 1) % classes })
            .collect();
        let want = plain.iter().zip(&labels).filter(|(a, b)| a == b).count() as u64;
        assert_eq!(want, 10);
        let cfg = InferConfig {
            batch: 7,
            ..Default::default()
        };
        let r = run_private(&m, &x, Some(&labels), Reveal::CorrectCount, &cfg).unwrap();
        assert_eq!(r.correct, Some(want), "{arch}: data owner's count");
        assert_eq!(
            r.model_owner_correct,
            Some(want),
            "{arch}: model owner's count"
        );
        assert!(r.predictions.is_empty() && r.logits.is_empty());
    }
}

#[test]
fn private_scoring_needs_labels_of_the_right_length() {
    let m = Model::from_arch("net-a", 3).unwrap();
    let x = images(4, 784, 3);
    let cfg = InferConfig::default();
    assert!(run_private(&m, &x, None, Reveal::CorrectCount, &cfg).is_err());
    assert!(run_private(&m, &x, Some(&[1, 2, 3]), Reveal::CorrectCount, &cfg).is_err());
}

/// Frame lengths each owner receives from P0 and P1 during a scoring run.
fn owner_views(n: usize, reveal: Reveal) -> Vec<Vec<usize>> {
    let m = Model::from_arch("net-a", 3).unwrap();
    let x = images(n, 784, 4);
    let labels = m.predict(&x, n);
    let logs: Vec<FrameLog> = (0..5).map(|_| Arc::new(Mutex::new(Vec::new()))).collect();
    let l2 = logs.clone();
    let nets = Network::in_memory_with(5, &NetConfig::default(), move |me, peer, t| {
        // Record only what the owners receive from P0 and P1.
        if (me == DATA_OWNER || me == MODEL_OWNER) && peer < 2 {
            Box::new(RecordingTransport::with_log(t, Arc::clone(&l2[me])))
        } else {
            Box::new(t)
        }
    });
    sim::run_networks(
        nets,
        ProtocolConfig::default(),
        ppml_smpc::SecretSource::Os,
        |party| {
            let input = match party.id {
                MODEL_OWNER => RoleInput::Model(&m),
                DATA_OWNER => RoleInput::DataReveal {
                    images: &x,
                    labels: Some(&labels),
                    batch: 4,
                    reveal,
                },
                _ => RoleInput::Computing,
            };
            run_role_full(party, &input)
        },
    )
    .unwrap();
    [DATA_OWNER, MODEL_OWNER]
        .iter()
        .map(|&o| logs[o].lock().unwrap().iter().map(Vec::len).collect())
        .collect()
}

#[test]
fn under_private_scoring_the_owners_receive_only_the_count() {
    // What the owners receive from P0 and P1 must not grow with the number
    // of images: one 8-byte count share each. A variant that also sent
    // prediction shares (as Reveal::Classes does) fails this.
    let small = owner_views(4, Reveal::CorrectCount);
    let large = owner_views(12, Reveal::CorrectCount);
    assert_eq!(small, large);
    let leaky = owner_views(12, Reveal::Classes);
    assert_ne!(leaky[0], large[0], "the check sees prediction shares");
    let payload: usize = large[0].iter().sum();
    assert!(payload <= 2 * 16, "data owner received {:?}", large[0]);
}
