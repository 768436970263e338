//! `ppml fl-server` / `ppml fl-client` as separate processes on loopback over
//! the TLS session layer (parties `server`, `client-N`): secure aggregation
//! with distributed DP (small slices: 3 clients holding 1/100 of the training
//! set each, 2 rounds), the JSON contract, and a client presenting another
//! client's key refused.

mod common;

use common::{assert_keys, last_json};
use ppml_net::local::LocalDeployment;
use std::process::{Command, Stdio};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ppml"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

#[test]
fn fl_server_with_secure_aggregation_and_distributed_dp_over_tls() {
    let d = LocalDeployment::new(&["server", "client-0", "client-1", "client-2"]).unwrap();
    let parties = d.parties_path().display().to_string();
    let keys = d.keys_dir().display().to_string();
    let server = bin()
        .args([
            "fl-server",
            "--parties",
            &parties,
            "--keys",
            &keys,
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
                    "--parties",
                    &parties,
                    "--keys",
                    &keys,
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
    assert_eq!(v["transport"], "tls");
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

#[test]
fn fl_server_needs_tls_or_an_explicit_insecure() {
    let out = bin()
        .args(["fl-server", "--wait-clients", "1", "--no-eval"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--insecure"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_client_with_another_clients_key_is_refused() {
    // client-1's key cannot pass as client-0: certificates are pinned.
    let d = LocalDeployment::new(&["server", "client-0", "client-1"]).unwrap();
    let parties = d.parties_path().display().to_string();
    let keys = d.keys_dir().display().to_string();
    let fake = d.dir.join("fake-keys");
    std::fs::create_dir_all(&fake).unwrap();
    for ext in ["key", "crt"] {
        std::fs::copy(
            d.keys_dir().join(format!("client-1.{ext}")),
            fake.join(format!("client-0.{ext}")),
        )
        .unwrap();
    }
    let server = bin()
        .args([
            "fl-server",
            "--parties",
            &parties,
            "--keys",
            &keys,
            "--wait-clients",
            "1",
            "--partition-clients",
            "100",
            "--join-timeout",
            "8",
            "--no-eval",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fl-server starts");
    let out = bin()
        .args([
            "fl-client",
            "--parties",
            &parties,
            "--keys",
            &fake.display().to_string(),
            "--id",
            "0",
            "--connect-timeout",
            "5",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "an impostor joined");
    // Nobody legitimate came: the server gives up with a clear error.
    let s = server.wait_with_output().unwrap();
    assert!(!s.status.success());
    assert!(
        String::from_utf8_lossy(&s.stderr).contains("no client joined"),
        "{}",
        String::from_utf8_lossy(&s.stderr)
    );
}
