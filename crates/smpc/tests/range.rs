//! No silent wrong answers (issue 11): a model whose pre-activations exceed
//! the old 28-bit comparison range (weights scaled by 100) agrees with the
//! plaintext model on real MNIST images, or the run fails with an error
//! naming the range; inputs outside the declared range and parameters the
//! ring cannot hold are refused.

use ppml_nn::{Model, Normalization, mnist};
use ppml_smpc::party::{ProtocolConfig, Truncation};
use ppml_smpc::{InferConfig, SmpcError, run_in_process};
use std::path::Path;

fn test_slice(count: usize) -> (Vec<f32>, Vec<u8>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist");
    let test = mnist::load_pair(
        &dir.join("t10k-images-idx3-ubyte.gz"),
        &dir.join("t10k-labels-idx1-ubyte.gz"),
        Normalization::Standard,
    )
    .expect("MNIST test files in data/mnist")
    .slice(0..count);
    (test.images.clone(), test.labels.clone())
}

fn scaled(arch: &str, factor: f32) -> Model {
    let mut model = Model::from_arch(arch, 11).unwrap();
    let p: Vec<f32> = model.params_flat().iter().map(|v| v * factor).collect();
    model.set_params_flat(&p).unwrap();
    model
}

fn cfg(protocol: ProtocolConfig) -> InferConfig {
    InferConfig {
        batch: 16,
        protocol,
        ..Default::default()
    }
}

#[test]
fn weights_times_100_agree_with_plaintext_or_fail_naming_the_range() {
    let (images, labels) = test_slice(24);
    for arch in ["mlp500", "net-a"] {
        let model = scaled(arch, 100.0);
        for truncation in [Truncation::Exact, Truncation::Local] {
            let protocol = ProtocolConfig {
                truncation,
                ..Default::default()
            };
            let r = run_in_process(&model, &images, &labels, &cfg(protocol)).unwrap();
            // The bounds needed more than the old 28 bits somewhere.
            assert!(
                r.cmp_widths.iter().any(|&w| w > 28),
                "{arch}: widths {:?}",
                r.cmp_widths
            );
            assert_eq!(
                r.plaintext_agreement, 1.0,
                "{arch} {truncation}: widths {:?}",
                r.cmp_widths
            );
            if truncation == Truncation::Exact {
                assert_eq!(r.truncation_failure_per_image, 0.0);
            } else {
                assert!(r.truncation_failure_per_image > 0.0);
            }
        }
        // Capped at the old default width, the same model is refused, naming
        // the range and the width it needs; never a wrong answer.
        let old = ProtocolConfig {
            cmp_bits: 28,
            truncation: Truncation::Local,
            ..Default::default()
        };
        let err = run_in_process(&model, &images, &labels, &cfg(old)).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, SmpcError::Range(_)), "{msg}");
        assert!(
            msg.contains("can reach") && msg.contains("cmp_bits >="),
            "{msg}"
        );
    }
}

#[test]
fn a_model_beyond_the_ring_is_refused_before_any_party_starts() {
    let (images, labels) = test_slice(4);
    let model = scaled("net-a", 1e5);
    let err =
        run_in_process(&model, &images, &labels, &cfg(ProtocolConfig::default())).unwrap_err();
    assert!(matches!(err, SmpcError::Range(_)), "{err}");
    assert!(err.to_string().contains("ring holds"), "{err}");
}

#[test]
fn an_input_outside_the_declared_range_is_an_error_naming_it() {
    let (mut images, labels) = test_slice(4);
    images[784 + 5] = 40.0;
    let model = Model::from_arch("net-a", 1).unwrap();
    let err =
        run_in_process(&model, &images, &labels, &cfg(ProtocolConfig::default())).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, SmpcError::Range(_)), "{msg}");
    assert!(
        msg.contains("image 1") && msg.contains("declared input range"),
        "{msg}"
    );
}

#[test]
fn frac_bits_without_product_headroom_are_refused() {
    for f in [0, 25, 30, 62] {
        let p = ProtocolConfig {
            frac_bits: f,
            ..Default::default()
        };
        let err = p.validate().unwrap_err();
        assert!(err.to_string().contains("1..=24"), "{f}: {err}");
    }
    assert!(
        ProtocolConfig {
            frac_bits: 24,
            ..Default::default()
        }
        .validate()
        .is_ok()
    );
}

/// Wider fractional parts up to the cap keep agreement (fewer bits are
/// accepted too, but then the weights' rounding itself can change a close
/// prediction of this untrained model: a precision limit, not a range one).
#[test]
fn wide_fractional_parts_still_agree_with_plaintext() {
    let (images, labels) = test_slice(16);
    let model = Model::from_arch("net-a", 2).unwrap();
    for f in [20, 24] {
        let p = ProtocolConfig {
            frac_bits: f,
            ..Default::default()
        };
        let r = run_in_process(&model, &images, &labels, &cfg(p)).unwrap();
        assert_eq!(r.plaintext_agreement, 1.0, "frac_bits {f}");
    }
}

/// The done-when on all 10,000 test images, for a trained model file
/// scaled by 100 (slow in debug builds; run with
/// `PPML_MODEL=mlp500.ppml cargo test --release -p ppml-smpc --test range -- --ignored --nocapture`).
#[test]
#[ignore]
fn trained_model_times_100_on_the_whole_test_set() {
    let path = std::env::var("PPML_MODEL").expect("PPML_MODEL names a trained .ppml file");
    let mut model = Model::load(Path::new(&path)).unwrap();
    let p: Vec<f32> = model.params_flat().iter().map(|v| v * 100.0).collect();
    model.set_params_flat(&p).unwrap();
    let (images, labels) = test_slice(10_000);
    for truncation in [Truncation::Exact, Truncation::Local] {
        let protocol = ProtocolConfig {
            truncation,
            ..Default::default()
        };
        let cfg = InferConfig {
            protocol,
            ..Default::default()
        };
        match run_in_process(&model, &images, &labels, &cfg) {
            Ok(r) => {
                eprintln!(
                    "{path} x100, {truncation}: agreement {} on {} images, widths {:?}, \
                     {:.1} KB/image, truncation failure bound per image {:.2e}",
                    r.plaintext_agreement,
                    r.images,
                    r.cmp_widths,
                    r.bytes_per_image / 1e3,
                    r.truncation_failure_per_image
                );
                if truncation == Truncation::Exact {
                    assert_eq!(r.plaintext_agreement, 1.0);
                }
            }
            Err(e) => {
                eprintln!("{path} x100, {truncation}: refused: {e}");
                assert!(matches!(e, SmpcError::Range(_)), "{e}");
            }
        }
    }
}

/// Faithful comparisons (the default) skip low bits only in max pooling and
/// the final argmax on 2f-bit values, keep the widths, and agree with the
/// plaintext model like exact comparisons, on a CNN with max pooling and on
/// an MLP; a party running the other mode refuses the plan.
#[test]
fn faithful_and_exact_comparisons_both_agree_and_must_match() {
    use ppml_smpc::party::Comparison;
    let (images, labels) = test_slice(24);
    for arch in ["cnn", "mlp500"] {
        let model = Model::from_arch(arch, 5).unwrap();
        let mut reports = Vec::new();
        for comparison in [Comparison::Faithful, Comparison::Exact] {
            let protocol = ProtocolConfig {
                comparison,
                ..Default::default()
            };
            let r = run_in_process(&model, &images, &labels, &cfg(protocol)).unwrap();
            assert_eq!(r.plaintext_agreement, 1.0, "{arch} {comparison}");
            assert_eq!(r.cmp_skips.len(), r.cmp_widths.len());
            reports.push(r);
        }
        let (faithful, exact) = (&reports[0], &reports[1]);
        assert!(exact.cmp_skips.iter().all(|&k| k == 0));
        // The final argmax of 10 classes skips f - 2 bits; a cnn's pools
        // (2x2: two levels) skip f - 1.
        assert_eq!(faithful.cmp_skips.last(), Some(&14), "{arch}");
        if arch == "cnn" {
            assert_eq!(faithful.cmp_skips.iter().filter(|&&k| k == 15).count(), 2);
        }
        assert!(faithful.bytes_per_image < exact.bytes_per_image, "{arch}");
    }
}
