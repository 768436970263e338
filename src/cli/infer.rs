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
    /// Without it, a fresh `--arch` model (default mlp500) is first trained in
    /// plaintext with the default recipe (`ppml train`'s defaults), so that one
    /// command runs the whole scenario.
    #[arg(long)]
    pub model: Option<PathBuf>,
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
    /// Run the model privately: P0, P1, P2 plus model owner and data owner as
    /// in-process parties over channels; only the data owner learns predictions.
    #[arg(long)]
    pub encrypted: bool,
    /// With --encrypted: number of test images (default: all, or --limit).
    #[arg(long)]
    pub count: Option<usize>,
    /// With --encrypted: images per batch.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// With --encrypted: widest comparison allowed, in bits (default 63: the whole
    /// ring). Each comparison uses the narrowest width the model owner's bounds
    /// prove exact for every input in the declared range (one byte per bit and
    /// element); a model that needs more than this is refused with an error
    /// naming the range.
    #[arg(long, default_value_t = 63)]
    pub cmp_bits: u32,
    /// With --encrypted: run the parties' channels through ppml-net's link
    /// emulator: `lan` (1 Gbit/s, 0.2 ms RTT) or `wan` (100 Mbit/s, 40 ms RTT).
    #[arg(long)]
    pub emulate_link: Option<String>,
    /// With --encrypted: fixed-point fractional bits (1..=24: products carry twice
    /// as many and must fit the 64-bit ring).
    #[arg(long, default_value_t = 16)]
    pub frac_bits: u32,
    /// With --encrypted: truncation after products: exact (never fails; the
    /// following comparison truncates) or local (no traffic; fails with the
    /// probability reported as truncation_failure_per_image).
    #[arg(long, default_value = "exact")]
    pub truncation: String,
    /// With --encrypted: epochs of the plaintext training that runs when no
    /// --model is given.
    #[arg(long, default_value_t = 5)]
    pub train_epochs: usize,
}

/// Loads the model named by `--model`/`--arch`, or, without `--model`, trains
/// a fresh `--arch` model (default mlp500) with the default recipe.
pub fn load_model(args: &InferArgs, common: &CommonArgs) -> anyhow::Result<Model> {
    match &args.model {
        Some(path) => Model::load_any(path, args.arch.as_deref())
            .with_context(|| format!("loading model {}", path.display())),
        None => train_default_model(args.arch.as_deref().unwrap_or("mlp500"), args, common),
    }
}

/// Plaintext training of the model that the model owner then shares.
fn train_default_model(arch: &str, args: &InferArgs, common: &CommonArgs) -> anyhow::Result<Model> {
    let norm: Normalization = args.normalize.parse()?;
    let dir = common.data_dir();
    let data =
        mnist::load(&dir, norm).with_context(|| format!("loading MNIST from {}", dir.display()))?;
    let mut model = Model::from_arch(arch, common.seed)?;
    let mut cfg = ppml_nn::TrainConfig::recommended();
    cfg.epochs = args.train_epochs.max(1);
    cfg.seed = common.seed;
    let mut opt = cfg.optimizer();
    let mut ws = ppml_nn::Workspace::new();
    let mut rng = cfg.order_rng();
    let train = if model.output_size() == 1 {
        data.train.filter_labels(&[0, 1])
    } else {
        data.train
    };
    eprintln!(
        "no --model given: training {arch} in plaintext for {} epochs first (the model owner's model)",
        cfg.epochs
    );
    for epoch in 0..cfg.epochs {
        let st = ppml_nn::train_epoch(
            &mut model,
            &train,
            &cfg,
            epoch,
            &mut opt,
            &mut ws,
            &mut rng,
            &mut |_, _, _| {},
        )?;
        eprintln!("  epoch {}: loss {:.4}", epoch + 1, st.mean_loss);
    }
    Ok(model)
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

/// The `--encrypted` protocol parameters, validated (before any training).
fn protocol_config(args: &InferArgs) -> anyhow::Result<ppml_smpc::party::ProtocolConfig> {
    let protocol = ppml_smpc::party::ProtocolConfig {
        cmp_bits: args.cmp_bits,
        frac_bits: args.frac_bits,
        truncation: args.truncation.parse()?,
    };
    protocol.validate()?;
    Ok(protocol)
}

pub fn run(args: InferArgs, common: &CommonArgs) -> anyhow::Result<Report> {
    if args.encrypted {
        protocol_config(&args)?;
    }
    // Before any training or loading: counts that leave nothing to do.
    anyhow::ensure!(
        args.count != Some(0) && args.limit != Some(0),
        "--count/--limit 0: no images to classify"
    );
    anyhow::ensure!(args.batch > 0, "--batch must be positive");
    let model = load_model(&args, common)?;
    let test = load_test(&args, common, &model)?;
    if args.encrypted {
        return run_encrypted(&args, common, &model, &test);
    }
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
        "model_file": args.model.as_ref().map(|p| p.display().to_string()),
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

/// `--encrypted`: the three computing parties and the two owners run as
/// threads over in-memory channels (ppml-smpc); only the data owner
/// reconstructs the predictions.
fn run_encrypted(
    args: &InferArgs,
    common: &CommonArgs,
    model: &Model,
    test: &mnist::Dataset,
) -> anyhow::Result<Report> {
    anyhow::ensure!(args.batch > 0, "--batch must be positive");
    let protocol = protocol_config(args)?;
    ppml_smpc::tune_allocator();
    let n = args.count.unwrap_or(test.len()).min(test.len());
    let test = test.slice(0..n);
    let cfg = ppml_smpc::InferConfig {
        batch: args.batch,
        protocol,
        // Share and mask randomness always comes from the OS: --seed only
        // fixes the training and data order, never the secrets' masks.
        secrets: ppml_smpc::SecretSource::Os,
        emulate: match args.emulate_link.as_deref() {
            None => None,
            Some("lan") => Some(ppml_net::emulator::LinkProfile::LAN),
            Some("wan") => Some(ppml_net::emulator::LinkProfile::WAN),
            Some(other) => anyhow::bail!("--emulate-link {other:?}: expected lan or wan"),
        },
        ..Default::default()
    };
    let r = ppml_smpc::run_in_process(model, &test.images, &test.labels, &cfg)?;
    let human = format!(
        "{} (encrypted, 3 parties): accuracy {:.2}% (plaintext {:.2}%), agreement {:.4} on {} images\n\
         {:.2} s ({:.0} images/s), {:.1} KB/image sent in total, {} rounds\n\
         comparison widths {:?} (proven exact for inputs in [{}, {}]), {} truncation \
         (failure probability per image at most {:.1e})",
        r.arch,
        r.accuracy * 100.0,
        r.plaintext_accuracy * 100.0,
        r.plaintext_agreement,
        r.images,
        r.seconds,
        r.images_per_second,
        r.bytes_per_image / 1e3,
        r.rounds,
        r.cmp_widths,
        r.input_range.0,
        r.input_range.1,
        r.truncation,
        r.truncation_failure_per_image
    );
    let mut human = human;
    if let (Some(p50), Some(p99)) = (r.latency_ms_p50, r.latency_ms_p99) {
        human.push_str(&format!(
            "\nlatency per query: p50 {p50:.2} ms, p99 {p99:.2} ms, {:.1} rounds per query",
            r.rounds_per_image
        ));
    }
    if let (Some(lan), Some(wan)) = (r.modelled_seconds_lan, r.modelled_seconds_wan) {
        human.push_str(&format!(
            "\nmodelled: {lan:.2} s on a LAN (1 Gbit/s, 0.2 ms RTT), {wan:.2} s on a WAN (100 Mbit/s, 40 ms RTT)"
        ));
    }
    let mut json = serde_json::to_value(&r)?;
    json["command"] = "infer".into();
    json["mode"] = "encrypted".into();
    json["threads"] = common.threads().into();
    json["model_file"] = args.model.as_ref().map(|p| p.display().to_string()).into();
    Ok(Report { json, human })
}
