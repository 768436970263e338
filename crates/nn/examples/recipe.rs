//! Try a training recipe and print per-epoch test accuracy.
//! `cargo run --release -p ppml-nn --example recipe -- ARCH EPOCHS LR MOMENTUM BATCH SCHEDULE [WD] [SEED]`
use ppml_nn::{Model, Normalization, TrainConfig, Workspace, mnist, train_epoch};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let get = |i: usize, d: &str| a.get(i).cloned().unwrap_or_else(|| d.to_string());
    let arch = get(0, "mlp500");
    let cfg = TrainConfig {
        epochs: get(1, "5").parse()?,
        lr: get(2, "0.05").parse()?,
        momentum: get(3, "0.9").parse()?,
        batch: get(4, "64").parse()?,
        schedule: get(5, "cosine").parse()?,
        weight_decay: get(6, "0").parse()?,
        seed: get(7, "42").parse()?,
    };
    let data = mnist::load(&mnist::default_data_dir(), Normalization::Standard)?;
    let mut m = Model::from_arch(&arch, cfg.seed)?;
    let mut opt = cfg.optimizer();
    let mut ws = Workspace::new();
    let mut rng = cfg.order_rng();
    let mut accs = Vec::new();
    for e in 0..cfg.epochs {
        let st = train_epoch(
            &mut m,
            &data.train,
            &cfg,
            e,
            &mut opt,
            &mut ws,
            &mut rng,
            &mut |_, _, _| {},
        )?;
        let acc = m.evaluate(&data.test);
        eprintln!(
            "  epoch {} {:.2}s loss {:.4} acc {:.4}",
            e + 1,
            st.seconds,
            st.mean_loss,
            acc
        );
        accs.push(format!("{:.4}", acc));
    }
    println!("{arch} {cfg:?} -> {}", accs.join(" "));
    Ok(())
}
