//! Train a 784-500-10 MLP on MNIST in plaintext, save it, reload it and evaluate.
//!
//! `cargo run --release --example train_mnist [arch] [epochs]` (from the repository root,
//! or with `PPML_DATA=/path/to/mnist`).

use ppml::nn::{Model, Normalization, TrainConfig, Workspace, mnist, train_epoch};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let arch = args.next().unwrap_or_else(|| "mlp500".into());
    let epochs: usize = args.next().map(|e| e.parse()).transpose()?.unwrap_or(5);

    let data = mnist::load(&mnist::default_data_dir(), Normalization::Standard)?;
    let cfg = TrainConfig {
        epochs,
        ..TrainConfig::recommended()
    };
    let mut model = Model::from_arch(&arch, cfg.seed)?;
    let mut opt = cfg.optimizer();
    let mut ws = Workspace::new();
    let mut rng = cfg.order_rng();
    println!(
        "{arch}: {} parameters, {} training images",
        model.num_params(),
        data.train.len()
    );
    for epoch in 0..cfg.epochs {
        let st = train_epoch(
            &mut model,
            &data.train,
            &cfg,
            epoch,
            &mut opt,
            &mut ws,
            &mut rng,
            &mut |_, _, _| {},
        )?;
        let acc = model.evaluate(&data.test);
        println!(
            "epoch {}: {:.2} s, loss {:.4}, test accuracy {:.2}%",
            epoch + 1,
            st.seconds,
            st.mean_loss,
            acc * 100.0
        );
    }
    let path = std::env::temp_dir().join(format!("{arch}.ppml"));
    model.save(&path)?;
    let back = Model::load(&path)?;
    println!(
        "saved to {} and reloaded: test accuracy {:.2}%",
        path.display(),
        back.evaluate(&data.test) * 100.0
    );
    Ok(())
}
