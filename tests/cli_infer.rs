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
