//! Seed tutorial 002, done as federated averaging: two workers ("bob" and
//! "alice") each hold half of the MNIST training set; every round both train
//! the 784-500-10 MLP for one local epoch (batch 64, lr 0.01, no momentum) from
//! the global weights, and the server averages their updates weighted by
//! example count. Prints the test accuracy after each round.
//!
//! ```text
//! cargo run --release --example fedavg_mnist -- [rounds] [unit|standard]
//! ```
//! (MNIST from `data/mnist` or `$PPML_DATA`.)

use ppml::fedavg::{FedConfig, LocalConfig, Partition, Simulation, WeightedAverage};
use ppml::nn::{Model, Normalization, mnist};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(3);
    let norm: Normalization = args.next().as_deref().unwrap_or("standard").parse()?;
    let data = mnist::load(&mnist::default_data_dir(), norm)?;
    // Two workers holding consecutive halves of the training set (PySyft's `federate((bob, alice))`).
    let parts = Partition::Contiguous.split(&data.train.labels, 2, 0)?;
    for (name, p) in ["bob", "alice"].iter().zip(&parts) {
        println!("{name}: {} examples", p.len());
    }
    let cfg = FedConfig {
        fraction: 1.0,
        rounds,
        local: LocalConfig {
            epochs: 1,
            batch: 64,
            lr: 0.01,
            ..LocalConfig::default()
        },
        seed: 2,
        ..FedConfig::default()
    };
    let model = Model::from_arch("mlp500", 2)?;
    let mut sim = Simulation::new(
        model,
        &data.train,
        Some(&data.test),
        parts,
        cfg,
        Box::new(WeightedAverage),
    )?;
    let summary = sim.run(&mut |r| {
        println!(
            "round {}: test accuracy {:.2}% (train loss {:.4}, round {:.2} s)",
            r.round,
            100.0 * r.accuracy,
            r.train_loss,
            r.seconds
        );
    })?;
    println!(
        "final accuracy {:.2}% after {} rounds, median round {:.2} s",
        100.0 * summary.final_accuracy(),
        summary.rounds.len(),
        summary.round_seconds_median()
    );
    Ok(())
}
