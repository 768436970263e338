//! Quick release timings of the hot paths (not a benchmark of record; see benches/).
//! `cargo run --release -p ppml-nn --example timing [arch]`
use ppml_nn::{Model, Normalization, Sgd, TrainConfig, Workspace, mnist, train_epoch};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let what = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    let data = mnist::load(&mnist::default_data_dir(), Normalization::Standard)?;
    if what == "all" || what == "fedavg" {
        // 600 steps of batch 10 on 2nn
        let mut m = Model::from_arch("2nn", 1)?;
        let mut opt = Sgd::new(0.1, 0.0);
        let mut ws = Workspace::new();
        let x = &data.train.images[..10 * 784];
        let y = &data.train.labels[..10];
        opt.train_step(&mut m, x, y, 10, &mut ws);
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            for s in 0..600 {
                let o = (s * 10) % 59990;
                opt.train_step(
                    &mut m,
                    &data.train.images[o * 784..(o + 10) * 784],
                    &data.train.labels[o..o + 10],
                    10,
                    &mut ws,
                );
            }
            best = best.min(t.elapsed().as_secs_f64());
        }
        let c0 = cpu_seconds();
        for _ in 0..10 {
            for s in 0..600 {
                let o = (s * 10) % 59990;
                opt.train_step(
                    &mut m,
                    &data.train.images[o * 784..(o + 10) * 784],
                    &data.train.labels[o..o + 10],
                    10,
                    &mut ws,
                );
            }
        }
        let cpu = (cpu_seconds() - c0) / 10.0;
        println!(
            "2nn 600 steps batch 10: {best:.4} s wall (best of 5), {cpu:.4} s CPU (mean of 10)"
        );
    }
    if what == "all" || what == "mlp500" {
        let mut m = Model::from_arch("mlp500", 1)?;
        let cfg = TrainConfig::default();
        let mut opt = cfg.optimizer();
        let mut ws = Workspace::new();
        let mut rng = cfg.order_rng();
        let st = train_epoch(
            &mut m,
            &data.train,
            &cfg,
            0,
            &mut opt,
            &mut ws,
            &mut rng,
            &mut |_, _, _| {},
        )?;
        println!(
            "mlp500 epoch: {:.3} s, loss {:.4}",
            st.seconds, st.mean_loss
        );
        let mut best = f64::MAX;
        let mut acc = 0.0;
        for _ in 0..7 {
            let t = Instant::now();
            acc = m.evaluate(&data.test);
            best = best.min(t.elapsed().as_secs_f64());
        }
        let c0 = cpu_seconds();
        for _ in 0..20 {
            acc = m.evaluate(&data.test);
        }
        let cpu = (cpu_seconds() - c0) / 20.0;
        println!(
            "mlp500 infer 10k: {:.2} ms wall (best of 7), {:.1} ms CPU (mean of 20), acc {acc:.4}",
            best * 1e3,
            cpu * 1e3
        );
    }
    Ok(())
}

/// Process CPU seconds from /proc/self/stat (Linux, 1/100 s ticks); 0 elsewhere.
fn cpu_seconds() -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let Some(i) = s.rfind(')') else { return 0.0 };
    let f: Vec<f64> = s[i + 2..]
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    f.get(10)
        .zip(f.get(11))
        .map(|(u, k)| (u + k) / 100.0)
        .unwrap_or(0.0)
}
