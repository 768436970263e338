//! Issue 11, first half: `--seed` governs public choices only; secrets (DP noise
//! and DP sampling, shares, masks) come from the OS; bad parameters are
//! rejected before any work starts.

mod common;

use common::{last_json, ppml};

/// A tiny DP-FedAvg run (100 clients, Poisson rate 0.03, 2 rounds) saving its model.
fn dp_run(save: &std::path::Path) -> serde_json::Value {
    last_json(&ppml(&[
        "fedavg",
        "--model",
        "2nn",
        "--clients",
        "100",
        "--fraction",
        "0.03",
        "--rounds",
        "2",
        "--eval-every",
        "2",
        "--dp-clip",
        "0.5",
        "--dp-noise",
        "1.0",
        "--dp-delta",
        "1e-5",
        "--seed",
        "7",
        "--save",
        save.to_str().expect("utf-8 path"),
        "--json",
    ]))
}

#[test]
fn dp_runs_with_the_same_seed_release_different_models_and_opacus_epsilon() {
    let dir = std::env::temp_dir().join(format!("ppml-cli-secrets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (a, b) = (dir.join("a.ppml"), dir.join("b.ppml"));
    let va = dp_run(&a);
    let vb = dp_run(&b);
    let (ma, mb) = (
        std::fs::read(&a).expect("model a"),
        std::fs::read(&b).expect("model b"),
    );
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(ma.len(), mb.len());
    assert_ne!(ma, mb, "two DP runs with --seed 7 released the same model");
    // Opacus 1.6.0, compute_rdp(q=0.03, z=1.0, steps=2) + get_privacy_spent(delta=1e-5)
    // over DEFAULT_ALPHAS (docs/dp_reference.py): 1.3946880061803748.
    let opacus = 1.394_688_006_180_374_8;
    for v in [&va, &vb] {
        let eps = v["epsilon"].as_f64().expect("epsilon");
        assert!(
            (eps - opacus).abs() / opacus < 0.01,
            "epsilon {eps} vs Opacus {opacus}"
        );
        assert_eq!(v["sampling"], "poisson");
        assert_eq!(v["dp_noise"], "discrete-gaussian");
        assert_eq!(v["dp_noise_source"], "os");
        assert_eq!(v["seed"].as_u64(), Some(7));
        let std = v["dp_noise_std_on_sum"].as_f64().expect("noise std");
        assert!((0.5..0.5 * 1.001).contains(&std), "noise std {std}");
    }
}

#[test]
fn seed_help_says_what_it_controls() {
    let out = ppml(&["fedavg", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout).to_string();
    let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
    for phrase in [
        "public, reproducible choices only",
        "weight initialisation",
        "data order",
        "partitions",
        "client sampling in runs without DP",
        "Never used for secrets",
        "DP noise and DP sampling always come from the operating system",
    ] {
        assert!(
            flat.contains(phrase),
            "--seed help lacks `{phrase}`:\n{help}"
        );
    }
}

#[test]
fn party_has_only_an_insecure_deterministic_flag() {
    let out = ppml(&["party", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(help.contains("--insecure-deterministic"), "{help}");
    assert!(!help.contains("--deterministic "), "{help}");
    let old = ppml(&[
        "party",
        "--role",
        "p2",
        "--insecure",
        "--peers",
        "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3",
        "--deterministic",
    ]);
    assert!(!old.status.success());
}

/// Runs ppml expecting a clear failure that mentions `needle`, fast and without a panic.
fn rejects(args: &[&str], needle: &str) {
    let t0 = std::time::Instant::now();
    let out = ppml(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{args:?} succeeded:\n{stderr}");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{args:?} did not exit with 1:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{args:?} panicked:\n{stderr}");
    assert!(
        stderr.to_lowercase().contains(&needle.to_lowercase()),
        "{args:?}: stderr lacks `{needle}`:\n{stderr}"
    );
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(60),
        "{args:?} took {:?} to fail",
        t0.elapsed()
    );
}

#[test]
fn bad_parameters_are_rejected_before_work_starts() {
    rejects(&["train", "--lr", "NaN", "--epochs", "1"], "learning rate");
    rejects(&["train", "--lr=-0.1", "--epochs", "1"], "learning rate");
    rejects(&["train", "--momentum", "1.5", "--epochs", "1"], "momentum");
    rejects(&["--threads", "0", "train", "--epochs", "1"], "--threads");
    rejects(
        &["splitnn", "--lr", "NaN", "--epochs", "1"],
        "learning rate",
    );
    rejects(&["splitnn", "--holders", "0", "--epochs", "1"], "--holders");
    rejects(
        &[
            "infer",
            "--encrypted",
            "--arch",
            "net-a",
            "--count",
            "0",
            "--train-epochs",
            "1",
        ],
        "no images",
    );
    rejects(
        &[
            "fedavg",
            "--partition",
            "shards:18446744073709551615",
            "--rounds",
            "1",
        ],
        "shards",
    );
    rejects(&["fedavg", "--lr", "NaN", "--rounds", "1"], "learning rate");
    rejects(
        &[
            "fedavg",
            "--dp-clip",
            "1.0",
            "--dp-noise",
            "NaN",
            "--rounds",
            "1",
        ],
        "noise multiplier",
    );
    rejects(&["fedavg", "--fraction", "0", "--rounds", "1"], "fraction");
}

#[test]
fn absurd_sizes_counts_and_timeouts_are_refused_not_clamped_or_crashed() {
    // Each of these panicked, was killed for memory, hung, or quietly ran
    // something else than asked before it was checked.
    rejects(&["--threads", "100000", "demo"], "--threads");
    rejects(&["demo", "--len", "18446744073709551615"], "--len");
    rejects(
        &["secagg-bench", "--clients", "100000000"],
        "holds in memory",
    );
    rejects(
        &[
            "secagg-bench",
            "--clients",
            "5",
            "--dim",
            "18446744073709551615",
        ],
        "holds in memory",
    );
    rejects(
        &[
            "secagg-bench",
            "--clients",
            "5",
            "--dim",
            "10",
            "--repeat",
            "0",
        ],
        "--repeat",
    );
    rejects(
        &[
            "infer",
            "--arch",
            "perceptron",
            "--train-epochs",
            "1",
            "--repeat",
            "0",
        ],
        "repeat",
    );
    rejects(
        &[
            "infer",
            "--encrypted",
            "--arch",
            "perceptron",
            "--timeout",
            "0",
        ],
        "--timeout",
    );
    rejects(&["fl-client", "--insecure", "--timeout", "0"], "--timeout");
    rejects(
        &["fl-server", "--insecure", "--round-timeout", "0"],
        "--round-timeout",
    );
    rejects(&["splitnn", "--timeout", "0", "--epochs", "1"], "--timeout");
    // Devices, pipes and directories named as files: errors, not reads of
    // endless zeros until the machine runs out of memory.
    rejects(&["infer", "--model", "/dev/zero"], "not a regular file");
    rejects(&["infer", "--model", "/tmp"], "directory");
    rejects(
        &[
            "infer",
            "--arch",
            "perceptron",
            "--train-epochs",
            "1",
            "--input",
            "/dev/urandom",
        ],
        "not a regular file",
    );
    rejects(
        &[
            "party",
            "--role",
            "p0",
            "--parties",
            "/dev/zero",
            "--keys",
            "/tmp",
        ],
        "not a regular file",
    );
    // An unusable --output is refused before the run, not after it.
    rejects(
        &[
            "infer",
            "--arch",
            "perceptron",
            "--train-epochs",
            "1",
            "--output",
            "/tmp/p.txt",
        ],
        ".npy or .csv",
    );
    rejects(
        &[
            "infer",
            "--arch",
            "perceptron",
            "--train-epochs",
            "1",
            "--output",
            "/nonexistent-dir/p.csv",
        ],
        "does not exist",
    );
    // A cause is named once, not once per error that wraps it.
    let out = ppml(&[
        "party",
        "--role",
        "p0",
        "--insecure",
        "--peers",
        "bad address,127.0.0.1:2,127.0.0.1:3,127.0.0.1:4,127.0.0.1:5",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("invalid socket address").count(),
        1,
        "{stderr}"
    );
    // A learning rate that blows up is an error naming the cause, not a
    // model with 10% accuracy.
    rejects(
        &[
            "train",
            "--lr",
            "1e30",
            "--train-limit",
            "200",
            "--epochs",
            "1",
        ],
        "diverged",
    );
}

#[test]
fn a_process_with_several_roles_reports_the_root_cause() {
    // --batch 0 in the data owner: reported as the batch size, not as a peer disconnect,
    // and before any connection is attempted (no other process is running).
    let ports: Vec<String> = (0..3)
        .map(|_| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
            l.local_addr().expect("addr").to_string()
        })
        .collect();
    rejects(
        &[
            "party",
            "--role",
            "p1,data-owner",
            "--insecure",
            "--peers",
            &ports.join(","),
            "--count",
            "10",
            "--batch",
            "0",
            "--timeout",
            "5",
        ],
        "batch size",
    );
    rejects(
        &[
            "party",
            "--role",
            "p1,data-owner",
            "--insecure",
            "--peers",
            &ports.join(","),
            "--count",
            "0",
            "--timeout",
            "5",
        ],
        "no images",
    );
}

/// Five roles in one process on loopback, with and without the insecure flag.
fn party_all_roles(extra: &[&str]) -> std::process::Output {
    let ports: Vec<String> = (0..5)
        .map(|_| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
            l.local_addr().expect("addr").to_string()
        })
        .collect();
    let peers = ports.join(",");
    let mut args = vec![
        "party",
        "--role",
        "p0,p1,p2,model-owner,data-owner",
        "--insecure",
        "--peers",
        &peers,
        "--arch",
        "net-a",
        "--count",
        "8",
        "--batch",
        "4",
        "--timeout",
        "30",
        "--json",
    ];
    args.extend_from_slice(extra);
    ppml(&args)
}

#[test]
fn insecure_deterministic_party_warns_and_says_so_in_json() {
    let out = party_all_roles(&["--insecure-deterministic"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let v = last_json(&out);
    assert_eq!(v["insecure"], serde_json::Value::Bool(true));
    assert_eq!(v["insecure_deterministic"], serde_json::Value::Bool(true));
    assert!(
        stderr.contains("WARNING: --insecure-deterministic"),
        "{stderr}"
    );
    let out = party_all_roles(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let v = last_json(&out);
    // These runs use plaintext loopback links (--insecure), so "insecure" is
    // true for the transport; the randomness is the OS's.
    assert_eq!(v["insecure_deterministic"], serde_json::Value::Bool(false));
    assert_eq!(v["insecure_transport"], serde_json::Value::Bool(true));
    assert!(
        !stderr.contains("WARNING: --insecure-deterministic"),
        "{stderr}"
    );
}
