//! Seed tutorial 4: split learning on MNIST.
//!
//! The data holder keeps the images and the bottom of 784-128-640 | 640-10, the label
//! holder keeps the labels and the top; they run as two threads over an in-memory channel
//! and exchange only cut-layer activations and their gradients. Then the U-shaped variant,
//! where the labels never leave the data holder.
//!
//! `cargo run --release --example splitnn_mnist [epochs]` (MNIST in data/mnist or $PPML_DATA).
//! The same roles over TCP, as two processes: see `ppml splitnn --help` (`--role`).

use ppml::nn::{Normalization, mnist};
use ppml::splitnn::{Event, SplitConfig, Variant, train_in_process};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let epochs: usize = std::env::args().nth(1).map_or(Ok(2), |s| s.parse())?;
    let data = mnist::load(&mnist::default_data_dir(), Normalization::UnitRange)?;
    for variant in [Variant::Vanilla, Variant::UShaped] {
        // The seed setting: plain SGD, lr 0.03, batch 64.
        let cfg = SplitConfig {
            variant,
            epochs,
            ..SplitConfig::default()
        };
        println!("== {variant} split learning, {epochs} epoch(s)");
        let run = train_in_process(&data.train, &data.test, &cfg, 42, &mut |e| {
            if let Event::Epoch(r) = e {
                println!(
                    "epoch {}: train loss {:.4}, test accuracy {:.2}%, {:.2} s",
                    r.epoch,
                    r.train_loss,
                    100.0 * r.test_accuracy.unwrap_or(0.0),
                    r.train_seconds
                );
            }
        })?;
        let b = run.report.per_batch;
        println!(
            "one batch of 64: {} bytes to the remote party, {} back ({} round trip(s))",
            b.forward, b.backward, b.round_trips
        );
        let t = run.report.total_traffic;
        println!(
            "whole run: {} bytes sent, {} received, {} rounds\n",
            t.bytes_sent, t.bytes_received, t.rounds
        );
    }
    Ok(())
}
