//! Quick release timings (not a benchmark of record): a split run, the same training
//! unsplit (ppml-nn's `train_epoch`, no channel), and the wire encoding alone.
//! `cargo run --release -p ppml-splitnn --example split_timing [vanilla|u-shaped|unsplit|wire] [epochs]`
use ppml_nn::{Model, Normalization, Sgd, TrainConfig, Workspace, mnist, train_epoch};
use ppml_splitnn::wire::{self, Expect, TensorKind};
use ppml_splitnn::{Event, SplitConfig, process_cpu_seconds, train_in_process};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let what = std::env::args().nth(1).unwrap_or_else(|| "vanilla".into());
    let epochs: usize = std::env::args().nth(2).map_or(Ok(1), |s| s.parse())?;
    if what == "wire" {
        let data: Vec<f32> = (0..64 * 640).map(|i| i as f32 * 1e-3).collect();
        let want = Expect {
            kind: TensorKind::Activations,
            step: 3,
            rows: 64,
            cols: 640,
        };
        let mut out = Vec::new();
        let n = 2000;
        let t = Instant::now();
        let c0 = process_cpu_seconds().unwrap_or(0.0);
        for _ in 0..n {
            let b = wire::encode_tensor(TensorKind::Activations, 3, 64, 640, &data)?;
            wire::decode_tensor_into(&b, want, &mut out)?;
        }
        let us = t.elapsed().as_secs_f64() / n as f64 * 1e6;
        let cpu_us = (process_cpu_seconds().unwrap_or(0.0) - c0) / n as f64 * 1e6;
        println!("cpu: {cpu_us:.1} us per encode + decode");
        println!(
            "encode + decode of one 64x640 batch: {us:.1} us (x2 per step, 938 steps: {:.3} s/epoch)",
            2.0 * 938.0 * us * 1e-6
        );
        return Ok(());
    }
    let data = mnist::load(&mnist::default_data_dir(), Normalization::UnitRange)?;
    if what == "unsplit" {
        let mut m = Model::from_arch("split", 42)?;
        let tc = TrainConfig {
            epochs,
            batch: 64,
            lr: 0.03,
            momentum: 0.0,
            ..TrainConfig::default()
        };
        let mut opt = Sgd::new(0.03, 0.0);
        let mut ws = Workspace::new();
        let mut rng = ppml_splitnn::order_rng(42);
        for e in 0..epochs {
            let c0 = process_cpu_seconds();
            let st = train_epoch(
                &mut m,
                &data.train,
                &tc,
                e,
                &mut opt,
                &mut ws,
                &mut rng,
                &mut |_, _, _| {},
            )?;
            let cpu = process_cpu_seconds().zip(c0).map(|(a, b)| a - b);
            println!(
                "unsplit epoch {}: loss {:.4} acc {:.4} train {:.3}s cpu {cpu:?}",
                e + 1,
                st.mean_loss,
                m.evaluate(&data.test),
                st.seconds
            );
        }
        return Ok(());
    }
    let cfg = SplitConfig {
        variant: what.parse()?,
        epochs,
        ..SplitConfig::default()
    };
    let out = train_in_process(&data.train, &data.test, &cfg, 42, &mut |e| {
        if let Event::Epoch(r) = e {
            println!(
                "split epoch {}: loss {:.4} acc {:?} train {:.3}s cpu {:?} eval {:.3}s",
                r.epoch,
                r.train_loss,
                r.test_accuracy,
                r.train_seconds,
                r.train_cpu_seconds,
                r.eval_seconds
            );
        }
    })?;
    println!("{:?}", out.report.per_batch);
    Ok(())
}
