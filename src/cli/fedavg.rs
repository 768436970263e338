//! `ppml fedavg`: federated averaging simulated in one process (McMahan et al. 2017).

use super::{CommonArgs, Report};
use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use ppml_fedavg::{
    Aggregator, FedConfig, LocalConfig, Mode, Partition, RoundStats, RunSummary, ServerConfig,
    Simulation, WeightedAverage, label_histogram,
};
use ppml_nn::{Model, Normalization};
use serde_json::json;
use std::path::PathBuf;

/// Federated averaging, in-process (clients trained in parallel with rayon).
#[derive(Debug, Args)]
pub struct FedavgArgs {
    /// Model architecture: 2nn, mlp500, cnn, net-a, ...
    #[arg(long, default_value = "2nn")]
    pub model: String,
    /// Number of clients K (ignored by `--partition halves`, which uses 2).
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// Fraction C of clients sampled per round (at least one is). With --dp-clip it is
    /// the Poisson sampling rate q: each client joins each round independently with
    /// probability q, decided by the OS CSPRNG (a round may have no client).
    #[arg(long, default_value_t = 0.1)]
    pub fraction: f64,
    /// Local epochs E.
    #[arg(long, default_value_t = 1)]
    pub local_epochs: usize,
    /// Local batch size B (0 = whole local dataset).
    #[arg(long, default_value_t = 10)]
    pub batch: usize,
    /// Client learning rate.
    #[arg(long, default_value_t = 0.05)]
    pub lr: f32,
    /// Number of rounds.
    #[arg(long, default_value_t = 50)]
    pub rounds: usize,
    /// iid | shards[:S] | dirichlet:ALPHA | halves | unbalanced[:SIGMA]
    #[arg(long, default_value = "iid")]
    pub partition: String,
    /// fedavg, or fedsgd (one full-local-batch gradient step per round).
    #[arg(long, default_value = "fedavg")]
    pub mode: String,
    /// Accuracy target (0..1) for `rounds_to_target`.
    #[arg(long)]
    pub target: Option<f64>,
    /// Stop once the target is reached.
    #[arg(long)]
    pub stop_at_target: bool,
    /// Input scaling: `unit` ([0,1], McMahan) or `standard` ((x-0.1307)/0.3081).
    #[arg(long, default_value = "unit")]
    pub normalize: String,
    /// FedProx proximal coefficient mu (0 = FedAvg).
    #[arg(long, default_value_t = 0.0)]
    pub mu: f32,
    /// Server momentum beta (FedAvgM; 0 = FedAvg).
    #[arg(long, default_value_t = 0.0)]
    pub server_momentum: f32,
    /// Server learning rate on the averaged update.
    #[arg(long, default_value_t = 1.0)]
    pub server_lr: f32,
    /// Aggregate with secure aggregation (ppml-secagg) instead of plain averaging.
    #[arg(long)]
    pub secure_aggregation: bool,
    /// Secure aggregation threshold (default: the protocol's).
    #[arg(long)]
    pub threshold: Option<usize>,
    /// Fraction of the sampled clients that drop out after training, each round.
    #[arg(long, default_value_t = 0.0)]
    pub dropout: f64,
    /// SecAgg+: sparse communication graph instead of the complete one.
    #[arg(long)]
    pub graph: bool,
    /// Evaluate on the test set every N rounds (and after the last).
    #[arg(long, default_value_t = 1)]
    pub eval_every: usize,
    /// DP-FedAvg: clip every update to this L2 norm (uniform weights, fixed denominator qN,
    /// Poisson sampling at rate --fraction, discrete Gaussian noise from the OS; see docs/DP.md).
    #[arg(long)]
    pub dp_clip: Option<f64>,
    /// DP-FedAvg noise multiplier z (noise of standard deviation z * clip on the sum).
    #[arg(long, default_value_t = 1.0)]
    pub dp_noise: f64,
    /// DP-FedAvg delta of the reported (epsilon, delta).
    #[arg(long, default_value_t = 1e-5)]
    pub dp_delta: f64,
    /// Write `round,accuracy,seconds,train_loss,bytes` per round to this CSV file.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Draw the accuracy curve to this PNG file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Save the final global model (.ppml).
    #[arg(long)]
    pub save: Option<PathBuf>,
}

/// A progress bar over rounds on stderr; when stderr is not a terminal
/// (logs), [`round_tick`] prints one line per round instead.
pub(crate) fn progress_bar(rounds: usize, _json: bool) -> ProgressBar {
    let pb = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        ProgressBar::new(rounds as u64)
    } else {
        ProgressBar::hidden()
    };
    pb.set_style(
        ProgressStyle::with_template("{bar:30} round {pos}/{len} {msg} [{elapsed}<{eta}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb
}

/// Advances the bar (or logs a line) after a round.
pub(crate) fn round_tick(pb: &ProgressBar, st: &RoundStats) {
    if pb.is_hidden() {
        eprintln!("round {}: {}", st.round, round_msg(st));
    } else {
        pb.set_message(round_msg(st));
        pb.inc(1);
    }
}

pub(crate) fn round_msg(st: &RoundStats) -> String {
    let mut m = format!(
        "acc {:.2}% loss {:.3} {:.3}s",
        100.0 * st.accuracy,
        st.train_loss,
        st.seconds
    );
    if let Some(eps) = st.epsilon {
        m.push_str(&format!(" epsilon {eps:.3}"));
    }
    if !st.dropped.is_empty() {
        m.push_str(&format!(" dropped {:?}", st.dropped));
    }
    m
}

/// Writes the CSV and the plot, returns notes for the human report.
pub(crate) fn write_outputs(
    summary: &RunSummary,
    csv: Option<&PathBuf>,
    plot: Option<&PathBuf>,
    target: Option<f64>,
    title: &str,
) -> anyhow::Result<Vec<String>> {
    let mut notes = Vec::new();
    if let Some(path) = csv {
        let mut s = String::from("round,accuracy,seconds,eval_seconds,train_loss,bytes,dropped\n");
        for r in &summary.rounds {
            s.push_str(&format!(
                "{},{:.6},{:.6},{:.6},{:.6},{},{}\n",
                r.round,
                r.accuracy,
                r.seconds,
                r.eval_seconds,
                r.train_loss,
                r.bytes,
                r.dropped.len()
            ));
        }
        std::fs::write(path, s).with_context(|| format!("writing {}", path.display()))?;
        notes.push(format!("curve written to {}", path.display()));
    }
    if let Some(path) = plot {
        let out =
            ppml_fedavg::plot::accuracy_curve(path, &summary.accuracy_per_round(), target, title)?;
        notes.push(if out.labels {
            format!("plot written to {}", path.display())
        } else {
            format!(
                "plot written to {} without text labels (no usable system font)",
                path.display()
            )
        });
    }
    Ok(notes)
}

pub(crate) fn summary_json(summary: &RunSummary) -> serde_json::Value {
    let dropped: usize = summary.rounds.iter().map(|r| r.dropped.len()).sum();
    json!({
        "accuracy_per_round": summary.accuracy_per_round(),
        "final_accuracy": summary.final_accuracy(),
        "best_accuracy": summary.rounds.iter().map(|r| r.accuracy).fold(f64::NAN, f64::max),
        "rounds_to_target": summary.rounds_to_target,
        "rounds_run": summary.rounds.len(),
        "round_seconds_median": summary.round_seconds_median(),
        "round_seconds": summary.rounds.iter().map(|r| r.seconds).collect::<Vec<_>>(),
        "round_cpu_seconds_median": summary.round_cpu_seconds_median(),
        "eval_seconds_median": ppml_fedavg::median(summary.rounds.iter().map(|r| r.eval_seconds).collect()),
        "bytes_per_round": summary.bytes_per_round(),
        "train_loss_per_round": summary.rounds.iter().map(|r| r.train_loss).collect::<Vec<_>>(),
        "dropped_updates": dropped,
    })
}

fn secure_aggregator(
    args: &FedavgArgs,
    seed: u64,
    clients: usize,
    fraction: f64,
) -> anyhow::Result<Box<dyn Aggregator>> {
    if let Some(clip) = args.dp_clip {
        let cfg = ppml_fedavg::dp::DpConfig::new(clip, args.dp_noise, args.dp_delta)?;
        // Poisson sampling at rate q = --fraction (from the OS), noise from the OS.
        let mut agg = ppml_fedavg::DpAggregator::new(cfg, fraction, clients)?;
        if args.secure_aggregation {
            // Clipped updates are summed under secure aggregation; the server
            // adds the noise to the unmasked sum.
            agg = agg.with_secure_aggregation(args.threshold, args.graph, seed);
        } else if args.threshold.is_some() || args.graph {
            anyhow::bail!("--threshold and --graph need --secure-aggregation");
        }
        return Ok(Box::new(agg));
    }
    if args.secure_aggregation {
        let agg = ppml_fedavg::SecureAggregator::new(args.threshold, args.graph, seed)?;
        Ok(Box::new(agg))
    } else {
        if args.threshold.is_some() || args.graph {
            anyhow::bail!("--threshold and --graph need --secure-aggregation");
        }
        Ok(Box::new(WeightedAverage))
    }
}

pub fn run(args: FedavgArgs, common: &CommonArgs) -> anyhow::Result<Report> {
    let norm: Normalization = args.normalize.parse()?;
    let partition: Partition = args.partition.parse()?;
    let mode: Mode = args.mode.parse()?;
    let halves = args.partition == "halves";
    let clients = if halves { 2 } else { args.clients };
    let fraction = if halves { 1.0 } else { args.fraction };
    let cfg = FedConfig {
        fraction,
        rounds: args.rounds,
        local: LocalConfig {
            mode,
            epochs: args.local_epochs,
            batch: args.batch,
            lr: args.lr,
            mu: args.mu,
        },
        server: ServerConfig {
            server_lr: args.server_lr,
            momentum: args.server_momentum,
        },
        seed: common.seed,
        target: args.target,
        stop_at_target: args.stop_at_target,
        dropout: args.dropout,
        eval_every: args.eval_every,
    };
    // Every setting is checked before the model is built or the data loaded.
    cfg.validate()?;
    anyhow::ensure!(clients > 0, "--clients must be at least 1");
    anyhow::ensure!(args.rounds > 0, "--rounds must be at least 1");
    let aggregator = secure_aggregator(&args, common.seed, clients, fraction)?;
    let model = Model::from_arch(&args.model, common.seed)?;
    let dir = common.data_dir();
    let mnist = ppml_nn::mnist::load(&dir, norm)?;
    let parts = partition.split(&mnist.train.labels, clients, common.seed)?;
    let sizes: Vec<usize> = parts.iter().map(Vec::len).collect();
    let hist = label_histogram(&mnist.train.labels, &parts);
    let classes_per_client: Vec<usize> = hist
        .iter()
        .map(|h| h.iter().filter(|&&c| c > 0).count())
        .collect();
    let num_params = model.num_params();
    let mut sim = Simulation::new(
        model,
        &mnist.train,
        Some(&mnist.test),
        parts,
        cfg.clone(),
        aggregator,
    )?;
    let dp = args.dp_clip.is_some();
    let m = ppml_fedavg::clients_per_round(clients, fraction);
    let per_round = if dp {
        format!(
            "Poisson rate {fraction} (~{:.1} per round)",
            fraction * clients as f64
        )
    } else {
        format!("{m} per round")
    };
    eprintln!(
        "fedavg: {} ({num_params} params), {clients} clients ({}), {per_round}, E={} B={} lr={} {}, {} threads, aggregation {}",
        args.model,
        partition,
        args.local_epochs,
        args.batch,
        args.lr,
        args.mode,
        common.threads(),
        sim.aggregator_name()
    );
    let pb = progress_bar(args.rounds, common.json);
    let summary = sim.run(&mut |st| round_tick(&pb, st))?;
    pb.finish_and_clear();
    if let Some(path) = &args.save {
        sim.model()?
            .save(path)
            .with_context(|| format!("saving {}", path.display()))?;
    }
    let title = format!(
        "FedAvg {} {} K={clients} C={fraction} E={} B={} lr={}",
        args.model, partition, args.local_epochs, args.batch, args.lr
    );
    let notes = write_outputs(
        &summary,
        args.csv.as_ref(),
        args.plot.as_ref(),
        args.target,
        &title,
    )?;
    let mut j = summary_json(&summary);
    let extra = json!({
        "model": args.model,
        "num_params": num_params,
        "clients": clients,
        "clients_per_round": if dp { json!(fraction * clients as f64) } else { json!(m) },
        "sampling": if dp { "poisson" } else { "fixed" },
        "fraction": fraction,
        "local_epochs": args.local_epochs,
        "batch": args.batch,
        "lr": args.lr,
        "mode": args.mode,
        "partition": partition.to_string(),
        "normalize": args.normalize,
        "mu": args.mu,
        "server_momentum": args.server_momentum,
        "server_lr": args.server_lr,
        "aggregation": sim.aggregator_name(),
        "dropout": args.dropout,
        "eval_every": args.eval_every,
        "seed": common.seed,
        "threads": common.threads(),
        "target": args.target,
        "client_sizes_min": sizes.iter().min(),
        "client_sizes_max": sizes.iter().max(),
        "classes_per_client_mean": classes_per_client.iter().sum::<usize>() as f64 / clients as f64,
    });
    if let (Some(o), Some(e)) = (j.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    let privacy = sim.privacy_spent();
    if let (Some((eps, delta)), Some(o)) = (privacy, j.as_object_mut()) {
        o.insert("epsilon".into(), json!(eps));
        o.insert("delta".into(), json!(delta));
        o.insert("clip".into(), json!(args.dp_clip));
        o.insert("noise_multiplier".into(), json!(args.dp_noise));
        o.insert("dp_clip".into(), json!(args.dp_clip));
        o.insert("dp_noise_multiplier".into(), json!(args.dp_noise));
        o.insert("dp_sampling_rate".into(), json!(fraction));
        o.insert("dp_noise".into(), json!("discrete-gaussian"));
        o.insert("dp_noise_source".into(), json!("os"));
        if let Some(clip) = args.dp_clip {
            let cfg = ppml_fedavg::dp::DpConfig::new(clip, args.dp_noise, args.dp_delta)?;
            let rel = ppml_fedavg::dp::DiscreteGaussianSum::new(&cfg, num_params)?;
            o.insert("dp_grid_bits".into(), json!(rel.grid_bits()));
            o.insert("dp_noise_std_on_sum".into(), json!(rel.noise_std_on_sum()));
        }
        let per_round: Vec<Option<f64>> = summary.rounds.iter().map(|r| r.epsilon).collect();
        o.insert("epsilon_per_round".into(), json!(per_round));
    }
    let mut human = format!(
        "FedAvg {} on {} ({clients} clients, {per_round}): final accuracy {:.2}% after {} rounds; ",
        args.model,
        partition,
        100.0 * summary.final_accuracy(),
        summary.rounds.len()
    );
    match (args.target, summary.rounds_to_target) {
        (Some(t), Some(r)) => human.push_str(&format!("{:.1}% reached in round {r}; ", 100.0 * t)),
        (Some(t), None) => human.push_str(&format!("{:.1}% not reached; ", 100.0 * t)),
        _ => {}
    }
    human.push_str(&format!(
        "median round {:.3} s (training + aggregation), {} bytes/round",
        summary.round_seconds_median(),
        summary.bytes_per_round()
    ));
    if let Some((eps, delta)) = privacy {
        human.push_str(&format!(
            "\nDP-FedAvg: ({eps:.3}, {delta:e})-DP after {} rounds (RDP accountant)",
            summary.rounds.len()
        ));
    }
    for n in notes {
        human.push_str(&format!("\n{n}"));
    }
    Ok(Report { json: j, human })
}
