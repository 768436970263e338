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
    // The model: compute + the network time of the critical path, which is
    // at least its hops x RTT / 2 plus the bytes of one uplink.
    let secs = match one["cpu_seconds"].as_f64() {
        Some(c) => c.min(f(&one, "seconds")),
        None => f(&one, "seconds"),
    };
    let hops = f(&one, "critical_path_hops");
    assert!(hops >= 6.0 * 2.0, "{one}"); // at least 2 comparison levels per query
    for (link, half_rtt) in [("lan", 0.0001), ("wan", 0.020)] {
        let net = f(&one, &format!("network_seconds_{link}"));
        let modelled = f(&one, &format!("modelled_seconds_{link}"));
        assert!(
            (modelled - (secs + net)).abs() < 1e-9 * modelled.max(1.0),
            "{one}"
        );
        assert!(net >= hops * half_rtt * (1.0 - 1e-9), "{link}: {one}");
        assert!(net < hops * half_rtt * 2.0 + 1.0, "{link}: {one}");
    }
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
