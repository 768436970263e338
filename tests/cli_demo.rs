//! The README's main command must keep working: `ppml demo --json` prints one
//! JSON object as its last stdout line, and the shared computation is exact
//! to fixed-point precision.

mod common;

use common::{last_json, ppml};

#[test]
fn demo_json_is_the_last_stdout_line_and_correct() {
    let v = last_json(&ppml(&["demo", "--len", "100", "--json", "--seed", "3"]));
    assert_eq!(v["len"], 100);
    // |3x + 0.5| < 31, two local truncations: error within a few ulps of 2^-16.
    assert!(
        v["max_abs_error"].as_f64().expect("number") < 4.0 / 65536.0,
        "{v}"
    );
    assert!(
        v["bytes_total"].as_u64().expect("number") >= 4 * 800,
        "four tensors of 100 u64 travel"
    );
    assert_eq!(v["parties"].as_array().expect("array").len(), 3);
}

#[test]
fn bad_flags_fail_cleanly() {
    let out = ppml(&["demo", "--len", "not-a-number"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value"));
}
