//! `ppml infer --encrypted`: the JSON contract of issue 8 and agreement with
//! the plaintext model, on a small slice (an untrained model file written by
//! the test, so no training runs here).

use std::process::Command;

#[test]
fn encrypted_infer_reports_the_contract_keys_and_matches_plaintext() {
    let dir = std::env::temp_dir().join(format!("ppml-cli-infer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("net-a.ppml");
    ppml::nn::Model::from_arch("net-a", 7)
        .expect("known arch")
        .save(&path)
        .expect("save");
    let out = Command::new(env!("CARGO_BIN_EXE_ppml"))
        .args(["infer", "--model"])
        .arg(&path)
        .args(["--encrypted", "--count", "24", "--batch", "8", "--json"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("ppml runs");
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let v: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("output")).expect("JSON");
    for key in [
        "accuracy",
        "plaintext_agreement",
        "images",
        "seconds",
        "images_per_second",
        "bytes_total",
        "rounds",
    ] {
        assert!(v.get(key).is_some(), "missing {key} in {v}");
    }
    assert_eq!(v["images"], 24);
    assert_eq!(v["plaintext_agreement"].as_f64(), Some(1.0), "{v}");
    assert!(v["bytes_total"].as_u64().expect("number") > 0);
    assert_eq!(v["parties"].as_array().expect("per-party traffic").len(), 5);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_missing_model_file_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_ppml"))
        .args([
            "infer",
            "--model",
            "/nonexistent/model.ppml",
            "--encrypted",
            "--json",
        ])
        .output()
        .expect("ppml runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/model.ppml"), "{stderr}");
}
