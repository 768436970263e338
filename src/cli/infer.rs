//! `ppml infer`: evaluate a saved model on the MNIST test set (plaintext here;
//! the smpc crate adds `--encrypted`).

use super::{CommonArgs, Report};
use anyhow::Context;
use clap::Args;
use ppml_nn::{Model, Normalization, mnist};
use std::path::PathBuf;

/// Evaluate a model file on the MNIST test images.
#[derive(Debug, Args)]
pub struct InferArgs {
    /// Model file: .ppml (from `ppml train --save`) or .safetensors (with --arch).
    #[arg(long)]
    pub model: PathBuf,
    /// Architecture of a .safetensors file: mlp500, net-a, 2nn, split, cnn, perceptron.
    #[arg(long)]
    pub arch: Option<String>,
    /// Evaluate the first N test images only (default: all 10,000).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Input normalisation the model was trained with: standard or unit.
    #[arg(long, default_value = "standard")]
    pub normalize: String,
    /// Timed repetitions (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub repeat: usize,
}

/// Loads the model named by `--model`/`--arch` (shared with other inference modes).
pub fn load_model(args: &InferArgs) -> anyhow::Result<Model> {
    Model::load_any(&args.model, args.arch.as_deref())
        .with_context(|| format!("loading model {}", args.model.display()))
}

/// Loads the test images selected by `--limit` and `--normalize`.
pub fn load_test(
    args: &InferArgs,
    common: &CommonArgs,
    model: &Model,
) -> anyhow::Result<mnist::Dataset> {
    let norm: Normalization = args.normalize.parse()?;
    let dir = common.data_dir();
    let data =
        mnist::load(&dir, norm).with_context(|| format!("loading MNIST from {}", dir.display()))?;
    let mut test = data.test;
    if model.output_size() == 1 {
        test = test.filter_labels(&[0, 1]);
    }
    if let Some(n) = args.limit {
        test = test.slice(0..n.min(test.len()));
    }
    anyhow::ensure!(
        test.pixels() == model.input_size(),
        "model takes {} inputs, images have {}",
        model.input_size(),
        test.pixels()
    );
    Ok(test)
}

pub fn run(args: InferArgs, common: &CommonArgs) -> anyhow::Result<Report> {
    let model = load_model(&args)?;
    let test = load_test(&args, common, &model)?;
    let _ = model.predict_dataset(&test); // warm-up
    let mut times = Vec::new();
    let mut acc = 0.0;
    let cpu0 = super::train::process_cpu_seconds();
    for _ in 0..args.repeat.max(1) {
        let t = std::time::Instant::now();
        acc = model.evaluate(&test);
        times.push(t.elapsed().as_secs_f64());
    }
    let cpu = match (cpu0, super::train::process_cpu_seconds()) {
        (Some(a), Some(b)) => Some((b - a) / times.len() as f64),
        _ => None,
    };
    times.sort_by(f64::total_cmp);
    let secs = times[times.len() / 2];
    let ips = test.len() as f64 / secs;
    let threads = common.threads();
    let human = format!(
        "{} (plaintext): accuracy {:.2}% on {} test images, {:.1} ms ({:.0} images/s, median of {}, {} thread(s))",
        model.arch,
        acc * 100.0,
        test.len(),
        secs * 1e3,
        ips,
        times.len(),
        threads
    );
    let json = serde_json::json!({
        "command": "infer",
        "mode": "plaintext",
        "model": model.arch,
        "model_file": args.model.display().to_string(),
        "accuracy": acc,
        "images": test.len(),
        "seconds": secs,
        "images_per_second": ips,
        "repeat": times.len(),
        "min_seconds": times[0],
        "cpu_seconds_per_run": cpu,
        "threads": threads,
    });
    Ok(Report { json, human })
}
