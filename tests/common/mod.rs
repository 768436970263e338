//! Shared by the CLI tests: run the `ppml` binary and read its `--json` line.
// Each test binary compiles this module and uses a subset of it.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::process::{Command, Output};

/// Runs `ppml` with `args` from the repository root (where `data/mnist` is).
pub fn ppml<S: AsRef<OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ppml"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the ppml binary runs")
}

/// Asserts the run succeeded and parses the last stdout line, which `--json`
/// promises is exactly one JSON object.
pub fn last_json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout.clone()).expect("utf-8");
    let last = stdout.lines().last().expect("some output");
    serde_json::from_str(last).expect("last line is JSON")
}

/// Asserts that every key is present in the JSON object.
pub fn assert_keys(v: &serde_json::Value, keys: &[&str]) {
    for key in keys {
        assert!(v.get(key).is_some(), "missing {key} in {v}");
    }
}
