//! `ppml infer --encrypted`: batch-1 latency (`latency_ms_p50`,
//! `latency_ms_p99`), the modelled LAN/WAN times of every run
//! (`modelled_seconds_lan`, `modelled_seconds_wan`), and `--emulate-link`.

mod common;

use common::{assert_keys, last_json, ppml};

fn model_file(tag: &str) -> (std::path::PathBuf, String) {
    let dir = std::env::temp_dir().join(format!("ppml-cli-latency-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("net-a.ppml");
    ppml::nn::Model::from_arch("net-a", 7)
        .expect("known arch")
        .save(&path)
        .expect("save");
    let p = path.to_str().expect("utf-8 temp path").to_string();
    (dir, p)
}

fn f(v: &serde_json::Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

#[test]
fn batch_one_reports_latency_and_every_run_reports_modelled_time() {
    let (dir, model) = model_file("batch");
    let run = |batch: &str, extra: &[&str]| {
        let mut args = vec![
            "infer",
            "--model",
            &model,
            "--encrypted",
            "--count",
            "6",
            "--batch",
            batch,
            "--json",
        ];
        args.extend_from_slice(extra);
        last_json(&ppml(&args))
    };
    let one = run("1", &[]);
    assert_keys(
        &one,
        &[
            "latency_ms_p50",
            "latency_ms_p99",
            "modelled_seconds_lan",
            "modelled_seconds_wan",
            "modelled_latency_ms_lan",
            "modelled_latency_ms_wan",
            "rounds_per_image",
            "bytes_per_image",
        ],
    );
    assert_eq!(one["plaintext_agreement"].as_f64(), Some(1.0), "{one}");
    let (p50, p99) = (f(&one, "latency_ms_p50"), f(&one, "latency_ms_p99"));
    assert!(p50 > 0.0 && p99 >= p50, "{one}");
    assert!(p50 <= 1e3 * f(&one, "seconds"), "{one}");
    // The model: compute + round trips x RTT + busiest uplink / bandwidth,
    // round trips = critical-path hops / 2.
    let (secs, rounds, up) = (
        f(&one, "seconds"),
        f(&one, "critical_path_hops") / 2.0,
        f(&one, "bytes_busiest_uplink"),
    );
    assert!(rounds >= 6.0 * 2.0, "{one}"); // at least 2 comparison levels per query
    let wan = secs + rounds * 0.040 + up * 8.0 / 1e8;
    let lan = secs + rounds * 0.0002 + up * 8.0 / 1e9;
    assert!((f(&one, "modelled_seconds_wan") - wan).abs() < 1e-9 * wan.max(1.0));
    assert!((f(&one, "modelled_seconds_lan") - lan).abs() < 1e-9 * lan.max(1.0));
    assert!(f(&one, "modelled_latency_ms_wan") > f(&one, "modelled_latency_ms_lan"));

    // A larger batch: modelled times, no per-query latency.
    let eight = run("3", &[]);
    assert_keys(&eight, &["modelled_seconds_lan", "modelled_seconds_wan"]);
    assert!(eight.get("latency_ms_p50").is_none(), "{eight}");
    // Fewer rounds per image with batches than one query at a time.
    assert!(f(&eight, "rounds_per_image") < f(&one, "rounds_per_image"));

    // Emulated WAN: the run takes at least its rounds' one-way delays, and
    // reports no model (its time already includes the network).
    let emu = run("3", &["--emulate-link", "wan"]);
    assert_eq!(emu["emulated_link"], "wan");
    assert!(emu["modelled_seconds_wan"].is_null(), "{emu}");
    assert!(
        f(&emu, "seconds") >= f(&emu, "critical_path_hops") * 0.020,
        "{emu}"
    );
    assert_eq!(emu["plaintext_agreement"].as_f64(), Some(1.0), "{emu}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn an_unknown_link_is_a_clear_error() {
    let (dir, model) = model_file("link");
    let out = ppml(&[
        "infer",
        "--model",
        &model,
        "--encrypted",
        "--count",
        "2",
        "--emulate-link",
        "moon",
        "--json",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("moon"), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}
