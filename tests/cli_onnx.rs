//! Issue 14 through the command line: an ONNX model exported by torch run
//! encrypted on a .npy of images, predictions written for the data owner,
//! private scoring, and the fedavg --save -> infer recipe. The fixtures in
//! tests/fixtures were made once by make_onnx_fixture.py; no torch here.

mod common;

use common::{last_json, ppml};
use ppml::nn::npy::{NpyArray, NpyData};
use std::path::PathBuf;

const MODEL: &str = "tests/fixtures/cnn_bn.onnx";
const IMAGES: &str = "tests/fixtures/mnist_test_1000_u8.npy";
const LABELS: &str = "tests/fixtures/mnist_test_1000_labels.npy";

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ppml-cli-onnx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(name)
}

fn classes(path: &std::path::Path) -> Vec<i64> {
    match NpyArray::read(path).expect("readable .npy").data {
        NpyData::I64(v) => v,
        other => panic!("predictions are not int64: {other:?}"),
    }
}

#[test]
fn torch_onnx_model_runs_encrypted_and_agrees_with_torch() {
    let out = tmp("p.npy");
    let v = last_json(&ppml(&[
        "infer",
        "--model",
        MODEL,
        "--input",
        IMAGES,
        "--output",
        out.to_str().expect("utf-8"),
        "--encrypted",
        "--batch",
        "250",
        "--timeout",
        "900",
        "--json",
    ]));
    assert_eq!(v["images"], 1000);
    assert_eq!(v["model_format"], "onnx");
    let got = classes(&out);
    let want = classes(&PathBuf::from("tests/fixtures/cnn_bn_expected.npy"));
    assert_eq!(got.len(), 1000);
    let agree = got.iter().zip(&want).filter(|(a, b)| a == b).count();
    assert!(agree >= 999, "{agree}/1000 agree with torch");
    // No labels were given: no accuracy is claimed.
    assert!(v["accuracy"].is_null(), "{v}");
}

#[test]
fn private_eval_reveals_only_the_count_and_it_equals_the_plaintext_count() {
    let v = last_json(&ppml(&[
        "infer",
        "--model",
        MODEL,
        "--input",
        IMAGES,
        "--labels",
        LABELS,
        "--limit",
        "120",
        "--encrypted",
        "--private-eval",
        "--timeout",
        "600",
        "--json",
    ]));
    assert_eq!(v["private_eval"], true);
    assert_eq!(v["images"], 120);
    let correct = v["correct"].as_u64().expect("count");
    assert_eq!(Some(correct), v["plaintext_correct"].as_u64(), "{v}");
    assert_eq!(v["model_owner_correct"].as_u64(), Some(correct));
    assert!(correct > 100, "a trained model: {correct}/120");
    // There are no predictions to write.
    let out = ppml(&[
        "infer",
        "--model",
        MODEL,
        "--input",
        IMAGES,
        "--labels",
        LABELS,
        "--limit",
        "4",
        "--encrypted",
        "--private-eval",
        "--output",
        "/tmp/never.npy",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("only the count"));
}

#[test]
fn csv_output_with_logits() {
    let out = tmp("p.csv");
    let v = last_json(&ppml(&[
        "infer",
        "--model",
        MODEL,
        "--input",
        IMAGES,
        "--labels",
        LABELS,
        "--limit",
        "5",
        "--encrypted",
        "--logits",
        "--output",
        out.to_str().expect("utf-8"),
        "--json",
    ]));
    assert_eq!(v["plaintext_agreement"].as_f64(), Some(1.0), "{v}");
    let text = std::fs::read_to_string(&out).expect("csv written");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6);
    assert!(lines[0].starts_with("index,class,logit_0,"), "{}", lines[0]);
    let want = classes(&PathBuf::from("tests/fixtures/cnn_bn_expected.npy"));
    for (i, l) in lines[1..].iter().enumerate() {
        let cols: Vec<&str> = l.split(',').collect();
        assert_eq!(cols.len(), 12);
        assert_eq!(cols[0], i.to_string());
        assert_eq!(cols[1], want[i].to_string());
        // the class is the argmax of the logits given with it
        let logits: Vec<f32> = cols[2..]
            .iter()
            .map(|c| c.parse().expect("float"))
            .collect();
        let best = (0..10)
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
            .expect("10");
        assert_eq!(best.to_string(), cols[1]);
    }
}

#[test]
fn damaged_onnx_and_npy_files_are_clear_errors() {
    let bytes = std::fs::read(MODEL).expect("fixture");
    let cut = tmp("cut.onnx");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).expect("write");
    let out = ppml(&[
        "infer",
        "--model",
        cut.to_str().expect("utf-8"),
        "--input",
        IMAGES,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "an error, not a panic: {stderr}"
    );
    assert!(stderr.contains("ONNX"), "{stderr}");
    let npy = std::fs::read(IMAGES).expect("fixture");
    let cut = tmp("cut.npy");
    std::fs::write(&cut, &npy[..npy.len() - 100]).expect("write");
    let out = ppml(&[
        "infer",
        "--model",
        MODEL,
        "--input",
        cut.to_str().expect("utf-8"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("truncated"), "{stderr}");
}

#[test]
fn fedavg_save_then_infer_keeps_the_accuracy_and_the_normalisation() {
    let model = tmp("fed.ppml");
    let m = model.to_str().expect("utf-8");
    let fed = last_json(&ppml(&[
        "fedavg",
        "--model",
        "2nn",
        "--clients",
        "100",
        "--fraction",
        "0.05",
        "--rounds",
        "2",
        "--local-epochs",
        "1",
        "--batch",
        "20",
        "--lr",
        "0.05",
        "--partition",
        "iid",
        "--save",
        m,
        "--json",
    ]));
    let final_acc = fed["final_accuracy"].as_f64().expect("accuracy");
    // fedavg trains on unit-range inputs by default; infer must read that
    // from the file (its own old default was standard).
    let inf = last_json(&ppml(&["infer", "--model", m, "--repeat", "1", "--json"]));
    assert_eq!(inf["normalization"], "unit");
    assert!(
        inf["warnings"].as_array().expect("list").is_empty(),
        "{inf}"
    );
    assert_eq!(inf["accuracy"].as_f64(), Some(final_acc), "{inf} vs {fed}");
    // Encrypted, on a slice: the same predictions as the plaintext model.
    let preds = tmp("fed-preds.npy");
    let enc = last_json(&ppml(&[
        "infer",
        "--model",
        m,
        "--encrypted",
        "--count",
        "200",
        "--output",
        preds.to_str().expect("utf-8"),
        "--json",
    ]));
    assert_eq!(enc["plaintext_agreement"].as_f64(), Some(1.0), "{enc}");
    assert_eq!(classes(&preds).len(), 200);
    // Overriding the recorded normalisation is allowed, with a warning.
    let o = ppml(&[
        "infer",
        "--model",
        m,
        "--normalize",
        "standard",
        "--limit",
        "10",
        "--repeat",
        "1",
    ]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("overrides"));
}
