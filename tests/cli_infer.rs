//! `ppml infer --encrypted`: the JSON contract of issue 8 and agreement with
//! the plaintext model, on a small slice (an untrained model file written by
//! the test, so no training runs here).

mod common;

use common::{assert_keys, last_json, ppml};

#[test]
fn encrypted_infer_reports_the_contract_keys_and_matches_plaintext() {
    let dir = std::env::temp_dir().join(format!("ppml-cli-infer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("net-a.ppml");
    ppml::nn::Model::from_arch("net-a", 7)
        .expect("known arch")
        .save(&path)
        .expect("save");
    let model = path.to_str().expect("utf-8 temp path");
    let v = last_json(&ppml(&[
        "infer",
        "--model",
        model,
        "--encrypted",
        "--count",
        "24",
        "--batch",
        "8",
        "--json",
    ]));
    assert_keys(
        &v,
        &[
            "accuracy",
            "plaintext_agreement",
            "images",
            "seconds",
            "images_per_second",
            "bytes_total",
            "rounds",
        ],
    );
    assert_eq!(v["images"], 24);
    assert_eq!(v["plaintext_agreement"].as_f64(), Some(1.0), "{v}");
    assert!(v["bytes_total"].as_u64().expect("number") > 0);
    assert_eq!(v["parties"].as_array().expect("per-party traffic").len(), 5);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_missing_model_file_is_a_clear_error() {
    let out = ppml(&[
        "infer",
        "--model",
        "/nonexistent/model.ppml",
        "--encrypted",
        "--json",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/model.ppml"), "{stderr}");
}

/// Issue 11's done-when on a small slice: a model whose pre-activations
/// exceed the old 28-bit range (weights x 100) agrees with the plaintext
/// model, and capped at 28 bits it exits non-zero naming the range.
#[test]
fn weights_times_100_agree_or_fail_naming_the_range() {
    let dir = std::env::temp_dir().join(format!("ppml-cli-range-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("mlp500x100.ppml");
    let mut m = ppml::nn::Model::from_arch("mlp500", 3).expect("known arch");
    let p: Vec<f32> = m.params_flat().iter().map(|v| v * 100.0).collect();
    m.set_params_flat(&p).expect("same size");
    m.save(&path).expect("save");
    let model = path.to_str().expect("utf-8 temp path");
    let args = [
        "infer",
        "--model",
        model,
        "--encrypted",
        "--count",
        "40",
        "--batch",
        "20",
        "--json",
    ];
    let v = last_json(&ppml(&args));
    assert_eq!(v["plaintext_agreement"].as_f64(), Some(1.0), "{v}");
    assert_eq!(v["truncation"], "exact");
    assert_eq!(v["truncation_failure_per_image"].as_f64(), Some(0.0));
    let widths = v["cmp_widths"].as_array().expect("widths");
    assert!(widths.iter().any(|w| w.as_u64().unwrap_or(0) > 28), "{v}");
    let out = ppml(&[&args[..], &["--cmp-bits", "28", "--truncation", "local"]].concat());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("can reach") && stderr.contains("cmp_bits >="),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn frac_bits_beyond_the_ring_headroom_are_refused() {
    let out = ppml(&["infer", "--encrypted", "--frac-bits", "30", "--json"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("frac_bits 30 must be in 1..=24"),
        "{stderr}"
    );
}

#[test]
fn float_inputs_outside_the_models_range_are_predicted_with_a_warning() {
    let dir = std::env::temp_dir().join(format!("ppml-cli-float-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let model = dir.join("net-a.ppml");
    ppml::nn::Model::from_arch("net-a", 7)
        .expect("known arch")
        .save(&model)
        .expect("save");
    // Four "images" of raw 0-255 values as float32, and the same in [0, 1].
    let raw: Vec<f32> = (0..4 * 784).map(|i| (i % 256) as f32).collect();
    let unit: Vec<f32> = raw.iter().map(|v| v / 255.0).collect();
    for (name, values, warns) in [("raw.npy", &raw, true), ("unit.npy", &unit, false)] {
        let p = dir.join(name);
        std::fs::write(&p, ppml::nn::npy::encode_f32(values, &[4, 784])).expect("write npy");
        let out = ppml(&[
            "infer",
            "--model",
            model.to_str().expect("utf-8"),
            "--input",
            p.to_str().expect("utf-8"),
            "--json",
        ]);
        let v = last_json(&out);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.contains("fed as given"), warns, "{name}: {stderr}");
        let listed = v["warnings"]
            .as_array()
            .expect("warnings")
            .iter()
            .any(|w| w.as_str().unwrap_or("").contains("outside"));
        assert_eq!(listed, warns, "{name}: {v}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
