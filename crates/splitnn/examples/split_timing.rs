//! Quick release timing of split training on MNIST (not a benchmark of record).
//! `cargo run --release -p ppml-splitnn --example split_timing [vanilla|u-shaped] [epochs]`
use ppml_nn::{Normalization, mnist};
use ppml_splitnn::{Event, SplitConfig, train_in_process};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let variant = std::env::args().nth(1).unwrap_or_else(|| "vanilla".into());
    let epochs: usize = std::env::args().nth(2).map_or(Ok(1), |s| s.parse())?;
    let data = mnist::load(&mnist::default_data_dir(), Normalization::UnitRange)?;
    let cfg = SplitConfig {
        variant: variant.parse()?,
        epochs,
        ..SplitConfig::default()
    };
    let out = train_in_process(&data.train, &data.test, &cfg, 42, &mut |e| {
        if let Event::Epoch(r) = e {
            eprintln!(
                "epoch {} loss {:.4} acc {:?} train {:.3}s eval {:.3}s",
                r.epoch, r.train_loss, r.test_accuracy, r.train_seconds, r.eval_seconds
            );
        }
    })?;
    println!("{:?}", out.report.per_batch);
    Ok(())
}
