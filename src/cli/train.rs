//! `ppml train`: train a plaintext model on MNIST (ppml-nn).

use super::{CommonArgs, Report};
use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use ppml_nn::{LrSchedule, Model, Normalization, TrainConfig, Workspace, mnist, train_epoch};
use std::path::PathBuf;

/// Train a model. Without flags this runs the recommended recipe (5 epochs,
/// batch 64, lr 0.05, momentum 0.9, cosine decay); the PyTorch tutorial setting
/// is `--epochs 3 --lr 0.01 --momentum 0.5 --batch 64` (an explicit `--lr`
/// without `--schedule` means a constant rate).
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Architecture: mlp500, net-a, net-b, net-c, net-d, 2nn, split, cnn,
    /// perceptron (net-a..net-d: the MNIST networks A-D of SecureNN and Falcon).
    #[arg(long, default_value = "mlp500")]
    pub model: String,
    /// Number of epochs [default: 5].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Learning rate [default: 0.05 with cosine decay].
    #[arg(long)]
    pub lr: Option<f32>,
    /// SGD momentum [default: 0.9].
    #[arg(long)]
    pub momentum: Option<f32>,
    /// Mini-batch size [default: 64].
    #[arg(long)]
    pub batch: Option<usize>,
    /// L2 weight decay [default: 0].
    #[arg(long)]
    pub weight_decay: Option<f32>,
    /// Learning-rate schedule: constant, cosine or linear [default: cosine,
    /// or constant when --lr is given].
    #[arg(long)]
    pub schedule: Option<String>,
    /// Input normalisation: standard ((x/255-0.1307)/0.3081) or unit (x/255).
    #[arg(long, default_value = "standard")]
    pub normalize: String,
    /// Train on the first N training images only (default: all 60,000).
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// For `perceptron`: keep only digits 0 and 1 (the seed's 0-vs-1 task; default on).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub binary01: bool,
    /// Save the trained model here (.ppml, or .safetensors with PyTorch names).
    #[arg(long)]
    pub save: Option<PathBuf>,
}

/// CPU seconds (user + system, all threads) this process has used so far, from
/// `/proc/self/stat` (Linux; clock ticks of 1/100 s). `None` elsewhere. On a
/// shared machine this is a steadier figure than wall-clock time.
pub fn process_cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    // fields after the parenthesised command name: state is field 3, utime 14, stime 15
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ut: f64 = f.get(11)?.parse().ok()?;
    let st: f64 = f.get(12)?.parse().ok()?;
    Some((ut + st) / 100.0)
}

pub fn run(args: TrainArgs, common: &CommonArgs) -> anyhow::Result<Report> {
    let rec = TrainConfig::recommended();
    let schedule: LrSchedule = match (&args.schedule, args.lr) {
        (Some(s), _) => s.parse()?,
        (None, Some(_)) => LrSchedule::Constant,
        (None, None) => rec.schedule,
    };
    let cfg = TrainConfig {
        epochs: args.epochs.unwrap_or(rec.epochs),
        batch: args.batch.unwrap_or(rec.batch),
        lr: args.lr.unwrap_or(rec.lr),
        momentum: args.momentum.unwrap_or(rec.momentum),
        weight_decay: args.weight_decay.unwrap_or(rec.weight_decay),
        schedule,
        seed: common.seed,
    };
    // Every hyper-parameter is checked before the data is even loaded.
    cfg.validate()?;
    let norm: Normalization = args.normalize.parse()?;
    let dir = common.data_dir();
    let data =
        mnist::load(&dir, norm).with_context(|| format!("loading MNIST from {}", dir.display()))?;
    let (mut train, mut test) = (data.train, data.test);
    if args.model == "perceptron" && args.binary01 {
        train = train.filter_labels(&[0, 1]);
        test = test.filter_labels(&[0, 1]);
    }
    if let Some(n) = args.train_limit {
        train = train.slice(0..n.min(train.len()));
    }
    let mut model = Model::from_arch(&args.model, common.seed)?;
    let threads = common.threads();
    eprintln!(
        "training {} ({} parameters) on {} images, {} epochs, batch {}, lr {} ({:?}), momentum {}, {} thread(s)",
        model.arch,
        model.num_params(),
        train.len(),
        cfg.epochs,
        cfg.batch,
        cfg.lr,
        cfg.schedule,
        cfg.momentum,
        threads
    );
    let mut opt = cfg.optimizer();
    let mut ws = Workspace::new();
    let mut rng = cfg.order_rng();
    let (mut accs, mut secs, mut losses) = (Vec::new(), Vec::new(), Vec::new());
    let mut cpu_secs = Vec::new();
    let mut human = String::new();
    let t_all = std::time::Instant::now();
    for epoch in 0..cfg.epochs {
        let steps = train.len().div_ceil(cfg.batch) as u64;
        let bar = ProgressBar::new(steps);
        bar.set_style(
            ProgressStyle::with_template(
                "epoch {prefix} [{bar:30}] {pos}/{len} steps {msg} ({elapsed})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("{}/{}", epoch + 1, cfg.epochs));
        let mut cb = |done: usize, _total: usize, loss: f32| {
            if done.is_multiple_of(16) || done as u64 == steps {
                bar.set_position(done as u64);
                bar.set_message(format!("loss {loss:.4}"));
            }
        };
        let cpu0 = process_cpu_seconds();
        let st = train_epoch(
            &mut model, &train, &cfg, epoch, &mut opt, &mut ws, &mut rng, &mut cb,
        )?;
        bar.finish_and_clear();
        if let (Some(a), Some(b)) = (cpu0, process_cpu_seconds()) {
            cpu_secs.push(b - a);
        }
        let acc = model.evaluate(&test);
        let line = format!(
            "epoch {}: {:.2} s, mean loss {:.4}, test accuracy {:.2}%",
            epoch + 1,
            st.seconds,
            st.mean_loss,
            acc * 100.0
        );
        eprintln!("{line}");
        human.push_str(&line);
        human.push('\n');
        accs.push(acc);
        secs.push(st.seconds);
        losses.push(st.mean_loss);
    }
    let total = t_all.elapsed().as_secs_f64();
    if let Some(p) = &args.save {
        // .ppml or .safetensors, recording the normalisation for `ppml infer`.
        ppml_nn::io::save_model(p, &model, norm)?;
        human.push_str(&format!("saved to {}\n", p.display()));
    }
    let final_acc = accs
        .last()
        .copied()
        .unwrap_or_else(|| model.evaluate(&test));
    human.push_str(&format!(
        "{}: test accuracy {:.2}% on {} test images after {} epochs ({:.1} s)",
        model.arch,
        final_acc * 100.0,
        test.len(),
        cfg.epochs,
        total
    ));
    let json = serde_json::json!({
        "command": "train",
        "model": model.arch,
        "params": model.num_params(),
        "test_accuracy": final_acc,
        "epoch_accuracy": accs,
        "epoch_seconds": secs,
        "epoch_loss": losses,
        "epoch_cpu_seconds": cpu_secs,
        "epochs": cfg.epochs,
        "batch": cfg.batch,
        "lr": cfg.lr,
        "momentum": cfg.momentum,
        "weight_decay": cfg.weight_decay,
        "schedule": format!("{:?}", cfg.schedule).to_lowercase(),
        "normalize": args.normalize,
        "train_images": train.len(),
        "test_images": test.len(),
        "threads": threads,
        "seed": common.seed,
        "total_seconds": total,
        "saved": args.save.as_ref().map(|p| p.display().to_string()),
    });
    Ok(Report { json, human })
}
