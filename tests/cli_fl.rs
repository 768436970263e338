//! `ppml fl-server` / `ppml fl-client` as separate processes on loopback:
//! secure aggregation with distributed DP (small slices: 3 clients holding
//! 1/100 of the training set each, 2 rounds), and the JSON contract.

mod common;

use common::{assert_keys, last_json};
use std::process::{Command, Stdio};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ppml"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

#[test]
fn fl_server_with_secure_aggregation_and_distributed_dp_over_tcp() {
    let port = 17000 + (std::process::id() % 2000) as u16;
    let addr = format!("127.0.0.1:{port}");
    let server = bin()
        .args([
            "fl-server",
            "--listen",
            &addr,
            "--wait-clients",
            "3",
            "--partition-clients",
            "100",
            "--rounds",
            "2",
            "--secure-aggregation",
            "--dp-clip",
            "1.0",
            "--dp-noise",
            "0.5",
            "--dp-mode",
            "distributed",
            "--no-eval",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fl-server starts");
    let clients: Vec<_> = (0..3)
        .map(|i| {
            bin()
                .args([
                    "fl-client",
                    "--server",
                    &addr,
                    "--id",
                    &i.to_string(),
                    "--json",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("fl-client starts")
        })
        .collect();
    let v = last_json(&server.wait_with_output().unwrap());
    assert_keys(
        &v,
        &[
            "accuracy_per_round",
            "epsilon_per_round",
            "drops",
            "joins",
            "aborted_rounds",
            "secure_aggregation",
            "dp_mode",
        ],
    );
    assert_eq!(v["secure_aggregation"], true);
    assert_eq!(v["dp_mode"], "distributed");
    let eps: Vec<f64> = v["epsilon_per_round"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_f64().unwrap())
        .collect();
    assert_eq!(eps.len(), 2);
    assert!(eps[0] > 0.0 && eps[1] > eps[0], "{eps:?}");
    assert_eq!(v["joins"].as_array().unwrap().len(), 3);
    assert!(v["drops"].as_array().unwrap().is_empty(), "{v}");
    for c in clients {
        let j = last_json(&c.wait_with_output().unwrap());
        assert_eq!(j["rounds_completed_secure"], 2, "{j}");
        assert!(j["bytes_sent"].as_u64().unwrap() > 0);
    }
}

#[test]
fn fl_server_refuses_distributed_dp_without_secure_aggregation() {
    let out = bin()
        .args([
            "fl-server",
            "--wait-clients",
            "1",
            "--dp-clip",
            "1",
            "--dp-mode",
            "distributed",
            "--no-eval",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--secure-aggregation"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
