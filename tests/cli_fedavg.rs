//! `ppml fedavg` JSON contract (issues 6 and 7) on a tiny run: DP-FedAvg whose
//! clipped updates are summed by secure aggregation, epsilon reported per round.

mod common;

use common::{assert_keys, last_json, ppml};

#[test]
fn fedavg_with_dp_over_secure_aggregation_reports_the_contract_keys() {
    let v = last_json(&ppml(&[
        "fedavg",
        "--model",
        "2nn",
        "--clients",
        "100",
        "--fraction",
        "0.03",
        "--rounds",
        "2",
        "--local-epochs",
        "1",
        "--batch",
        "10",
        "--lr",
        "0.05",
        "--partition",
        "iid",
        "--normalize",
        "unit",
        "--eval-every",
        "2",
        "--dp-clip",
        "0.5",
        "--dp-noise",
        "1.0",
        "--secure-aggregation",
        "--json",
    ]));
    assert_keys(
        &v,
        &[
            "accuracy_per_round",
            "final_accuracy",
            "rounds_to_target",
            "round_seconds_median",
            "bytes_per_round",
            "epsilon",
            "delta",
            "noise_multiplier",
            "clip",
        ],
    );
    assert_eq!(v["accuracy_per_round"].as_array().expect("list").len(), 2);
    assert!(v["rounds_to_target"].is_null());
    assert_eq!(v["clip"].as_f64(), Some(0.5));
    assert_eq!(v["noise_multiplier"].as_f64(), Some(1.0));
    let eps: Vec<f64> = v["epsilon_per_round"]
        .as_array()
        .expect("epsilon per round")
        .iter()
        .map(|e| e.as_f64().expect("number"))
        .collect();
    assert_eq!(eps.len(), 2);
    assert!(
        eps[0] > 0.0 && eps[1] > eps[0],
        "epsilon must grow: {eps:?}"
    );
    assert_eq!(v["epsilon"].as_f64(), Some(eps[1]));
    let acc = v["final_accuracy"].as_f64().expect("number");
    assert!((0.0..=1.0).contains(&acc), "{acc}");
}
