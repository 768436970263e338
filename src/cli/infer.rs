//! `ppml infer`: classify images with a model file, in plaintext or
//! `--encrypted` (three computing parties plus model owner and data owner,
//! as threads over channels). Flags only: the work is
//! `ppml_smpc::job::run_infer_job`.

use super::{CommonArgs, Report};
use anyhow::Context;
use clap::Args;
use ppml_nn::io::{LoadedModel, ModelFormat};
use ppml_nn::{Model, Normalization, TrainConfig, mnist};
use ppml_smpc::job::{InferJob, run_infer_job};
use ppml_smpc::scoring::Reveal;
use std::path::PathBuf;

/// Classify images with a model (plaintext, or `--encrypted` with three parties).
#[derive(Debug, Args)]
pub struct InferArgs {
    /// Model file: .ppml (from `ppml train/fedavg --save`), .onnx
    /// (torch.onnx.export), or .safetensors (with --arch). Without it, a
    /// fresh `--arch` model (default mlp500) is first trained in plaintext
    /// with the default recipe, so that one command runs the whole scenario.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Architecture of a .safetensors file (or of the model trained without
    /// --model): mlp500, net-a, net-b, net-c, net-d, 2nn, split, cnn, perceptron.
    #[arg(long)]
    pub arch: Option<String>,
    /// Images: .npy (uint8 pixels, or float fed as given), IDX (gzipped or
    /// raw), or a directory of PNG images. Default: the MNIST test set.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Labels for --input (.npy or IDX), only used to report accuracy.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Classify the first N images only.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Input normalisation, standard or unit. Default: the one the model file
    /// records; giving it overrides that (with a warning) and also applies to
    /// float inputs, which are otherwise fed as given.
    #[arg(long)]
    pub normalize: Option<String>,
    /// Timed repetitions of the plaintext evaluation (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub repeat: usize,
    /// Run the model privately: P0, P1, P2 plus model owner and data owner as
    /// in-process parties over channels; only the data owner learns predictions.
    #[arg(long)]
    pub encrypted: bool,
    /// With --encrypted: number of images (same as --limit).
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
    /// Write the data owner's predictions: .npy (int64 classes) or .csv (index,class).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Also give the data owner the logits (next to --output: <stem>.logits.npy,
    /// or extra .csv columns). Logits reveal more of the model than classes.
    #[arg(long)]
    pub logits: bool,
    /// With --encrypted: secret-share the labels too and reveal only the number
    /// of correct predictions (to model owner and data owner), no prediction.
    #[arg(long)]
    pub private_eval: bool,
    /// With --encrypted: seconds before a silent party is declared dead.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
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
    /// With exact truncation: max pooling and argmax compare faithfully
    /// (skip the low bits below one ulp; the max may be one ulp low) or exact.
    #[arg(long, default_value = "faithful")]
    pub comparison: String,
    /// With --encrypted: epochs of the plaintext training that runs when no
    /// --model is given.
    #[arg(long, default_value_t = 5)]
    pub train_epochs: usize,
}

/// The model of `--model`/`--arch`, or, without `--model`, a fresh `--arch`
/// model (default mlp500) trained with the default recipe.
fn load_model(args: &InferArgs, common: &CommonArgs) -> anyhow::Result<LoadedModel> {
    if let Some(path) = &args.model {
        return ppml_nn::io::load_model(path, args.arch.as_deref())
            .with_context(|| format!("loading model {}", path.display()));
    }
    let arch = args.arch.as_deref().unwrap_or("mlp500");
    let norm = match &args.normalize {
        Some(n) => n.parse()?,
        None => Normalization::Standard,
    };
    let dir = common.data_dir();
    let data =
        mnist::load(&dir, norm).with_context(|| format!("loading MNIST from {}", dir.display()))?;
    let mut model = Model::from_arch(arch, common.seed)?;
    let mut cfg = TrainConfig::recommended();
    cfg.epochs = args.train_epochs.max(1);
    cfg.seed = common.seed;
    eprintln!(
        "no --model given: training {arch} in plaintext for {} epochs first (the model owner's model)",
        cfg.epochs
    );
    ppml_nn::train::fit(&mut model, &data.train, &cfg, &mut |st| {
        eprintln!("  epoch {}: loss {:.4}", st.epoch + 1, st.mean_loss);
    })?;
    Ok(LoadedModel {
        model,
        normalization: Some(norm),
        format: ModelFormat::Ppml {
            version: ppml_nn::model::FILE_VERSION,
        },
    })
}

/// The `--encrypted` protocol parameters, validated (before any training).
fn protocol_config(args: &InferArgs) -> anyhow::Result<ppml_smpc::party::ProtocolConfig> {
    let protocol = ppml_smpc::party::ProtocolConfig {
        cmp_bits: args.cmp_bits,
        frac_bits: args.frac_bits,
        truncation: args.truncation.parse()?,
        comparison: args.comparison.parse()?,
    };
    protocol.validate()?;
    Ok(protocol)
}

pub fn run(args: InferArgs, common: &CommonArgs) -> anyhow::Result<Report> {
    // Before any training or loading: parameters that leave nothing to do.
    let protocol = if args.encrypted {
        protocol_config(&args)?
    } else {
        Default::default()
    };
    anyhow::ensure!(
        args.count != Some(0) && args.limit != Some(0),
        "--count/--limit 0: no images to classify"
    );
    anyhow::ensure!(args.batch > 0, "--batch must be positive");
    anyhow::ensure!(
        !args.private_eval || args.encrypted,
        "--private-eval runs with --encrypted"
    );
    if args.encrypted {
        ppml_smpc::tune_allocator();
    }
    let job = InferJob {
        model: load_model(&args, common)?,
        input: args.input.clone(),
        labels: args.labels.clone(),
        data_dir: common.data_dir(),
        normalize: args.normalize.as_deref().map(str::parse).transpose()?,
        limit: args.count.or(args.limit),
        encrypted: args.encrypted,
        reveal: match (args.private_eval, args.logits) {
            (true, _) => Reveal::CorrectCount,
            (false, true) => Reveal::ClassesAndLogits,
            (false, false) => Reveal::Classes,
        },
        output: args.output.clone(),
        repeat: args.repeat,
        cfg: ppml_smpc::InferConfig {
            batch: args.batch,
            protocol,
            // Share and mask randomness always comes from the OS: --seed only
            // fixes the training and data order, never the secrets' masks.
            secrets: ppml_smpc::SecretSource::Os,
            timeout: super::timeout_flag(args.timeout as f64, "timeout")?,
            emulate: match args.emulate_link.as_deref() {
                None => None,
                Some("lan") => Some(ppml_net::emulator::LinkProfile::LAN),
                Some("wan") => Some(ppml_net::emulator::LinkProfile::WAN),
                Some(other) => anyhow::bail!("--emulate-link {other:?}: expected lan or wan"),
            },
        },
    };
    let r = run_infer_job(&job)?;
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
    let mut json = serde_json::to_value(&r)?;
    json["command"] = "infer".into();
    json["threads"] = common.threads().into();
    json["model_file"] = args.model.as_ref().map(|p| p.display().to_string()).into();
    Ok(Report {
        json,
        human: r.summary(),
    })
}
