//! `PPML_BACKEND`: every CPU backend this machine has runs encrypted
//! inference end to end with the same agreement, the JSON says which one ran,
//! and a backend that does not exist (or that the CPU lacks) is a clear error.

mod common;

use common::{last_json, ppml};
use std::process::Command;

fn model_file(tag: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("ppml-cli-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("net-a.ppml");
    ppml::nn::Model::from_arch("net-a", 7)
        .expect("known arch")
        .save(&path)
        .expect("save");
    (dir, path)
}

fn ppml_with_backend(backend: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ppml"))
        .args(args)
        .env("PPML_BACKEND", backend)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the ppml binary runs")
}

#[test]
fn every_backend_runs_encrypted_inference() {
    let (dir, path) = model_file("backends");
    let model = path.to_str().expect("utf-8 temp path");
    let args = [
        "infer",
        "--model",
        model,
        "--encrypted",
        "--count",
        "16",
        "--batch",
        "8",
        "--json",
    ];
    for b in ppml::simd::Backend::available() {
        let v = last_json(&ppml_with_backend(b.name(), &args));
        assert_eq!(v["backend"], b.name(), "{v}");
        assert_eq!(v["plaintext_agreement"].as_f64(), Some(1.0), "{b}: {v}");
    }
    // Without the variable: the best backend of this CPU.
    let v = last_json(&ppml(&args));
    assert_eq!(v["backend"], ppml::simd::Backend::best().name());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_bad_backend_is_a_clear_error() {
    let out = ppml_with_backend("sse9", &["demo", "--json"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("PPML_BACKEND") && stderr.contains("sse9"),
        "{stderr}"
    );
    for b in ppml::simd::Backend::ALL {
        if !b.is_supported() {
            let out = ppml_with_backend(b.name(), &["demo", "--json"]);
            assert!(!out.status.success(), "{b} is not supported here");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains("does not support"), "{stderr}");
        }
    }
}
