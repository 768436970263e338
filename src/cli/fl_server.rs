//! `ppml fl-server`: the federated averaging server over TCP. Waits for
//! `--wait-clients` `ppml fl-client` processes, then runs the rounds; a client
//! that disconnects or times out is dropped (reported on stderr and in the
//! JSON) and the round continues with the others.

use super::fedavg::{progress_bar, round_tick, summary_json, write_outputs};
use super::{CommonArgs, Report};
use clap::Args;
use ppml_fedavg::net::{NetServerConfig, Setup, run_server};
use ppml_fedavg::{FedConfig, LocalConfig, Mode, Partition, ServerConfig, WeightedAverage};
use ppml_nn::{Model, Normalization};
use serde_json::json;
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct FlServerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7878")]
    pub listen: String,
    /// Number of client processes to wait for before round 1.
    #[arg(long, default_value_t = 10)]
    pub wait_clients: usize,
    /// Parts the training set is split into (client `id` holds part `id`; default: --wait-clients).
    #[arg(long)]
    pub partition_clients: Option<usize>,
    /// Model architecture.
    #[arg(long, default_value = "2nn")]
    pub model: String,
    /// Fraction of the connected clients sampled per round.
    #[arg(long, default_value_t = 1.0)]
    pub fraction: f64,
    /// Local epochs E.
    #[arg(long, default_value_t = 1)]
    pub local_epochs: usize,
    /// Local batch size B (0 = whole local dataset).
    #[arg(long, default_value_t = 10)]
    pub batch: usize,
    /// Client learning rate.
    #[arg(long, default_value_t = 0.1)]
    pub lr: f32,
    /// Number of rounds.
    #[arg(long, default_value_t = 10)]
    pub rounds: usize,
    /// iid | shards[:S] | dirichlet:ALPHA | halves | unbalanced[:SIGMA]
    #[arg(long, default_value = "iid")]
    pub partition: String,
    /// fedavg or fedsgd.
    #[arg(long, default_value = "fedavg")]
    pub mode: String,
    /// Input scaling for clients and evaluation: unit or standard.
    #[arg(long, default_value = "unit")]
    pub normalize: String,
    /// FedProx mu.
    #[arg(long, default_value_t = 0.0)]
    pub mu: f32,
    /// Server momentum (FedAvgM).
    #[arg(long, default_value_t = 0.0)]
    pub server_momentum: f32,
    /// Accuracy target for rounds_to_target.
    #[arg(long)]
    pub target: Option<f64>,
    /// Seconds a sampled client may take for each message of a round before it is dropped.
    #[arg(long, default_value_t = 60.0)]
    pub round_timeout: f64,
    /// Seconds to wait for all clients to join.
    #[arg(long, default_value_t = 60.0)]
    pub join_timeout: f64,
    /// Skip the per-round evaluation on the 10,000 test images.
    #[arg(long)]
    pub no_eval: bool,
    /// Per-round CSV.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Accuracy curve PNG.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

fn secs(s: f64, what: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s)
        .map_err(|_| anyhow::anyhow!("--{what} must be a non-negative number of seconds"))
}

pub fn run(args: FlServerArgs, common: &CommonArgs) -> anyhow::Result<Report> {
    let norm: Normalization = args.normalize.parse()?;
    let partition: Partition = args.partition.parse()?;
    let mode: Mode = args.mode.parse()?;
    let parts = args.partition_clients.unwrap_or(args.wait_clients);
    let model = Model::from_arch(&args.model, common.seed)?;
    let test = if args.no_eval {
        None
    } else {
        Some(ppml_nn::mnist::load(&common.data_dir(), norm)?.test)
    };
    let cfg = NetServerConfig {
        fed: FedConfig {
            fraction: args.fraction,
            rounds: args.rounds,
            local: LocalConfig {
                mode,
                epochs: args.local_epochs,
                batch: args.batch,
                lr: args.lr,
                mu: args.mu,
            },
            server: ServerConfig {
                server_lr: 1.0,
                momentum: args.server_momentum,
            },
            seed: common.seed,
            target: args.target,
            stop_at_target: false,
            dropout: 0.0,
            eval_every: 1,
        },
        setup: Setup {
            arch: args.model.clone(),
            num_params: model.num_params() as u64,
            partition: partition.to_string(),
            partition_clients: u32::try_from(parts)?,
            seed: common.seed,
            normalization: args.normalize.clone(),
        },
        expected_clients: args.wait_clients,
        join_timeout: secs(args.join_timeout, "join-timeout")?,
        round_timeout: secs(args.round_timeout, "round-timeout")?,
    };
    let listener = TcpListener::bind(&args.listen)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    eprintln!(
        "fl-server: listening on {}, waiting for {} clients ({} {} parts, {})",
        listener.local_addr()?,
        args.wait_clients,
        parts,
        partition,
        args.model
    );
    let pb = progress_bar(args.rounds, common.json);
    let mut events: Vec<String> = Vec::new();
    let summary = run_server(
        &listener,
        model,
        &cfg,
        test.as_ref(),
        Box::new(WeightedAverage),
        &mut |st| round_tick(&pb, st),
        &mut |e| {
            pb.suspend(|| eprintln!("fl-server: {e}"));
            events.push(e.to_string());
        },
    )?;
    pb.finish_and_clear();
    let title = format!(
        "FedAvg over TCP {} {} ({} clients)",
        args.model, partition, args.wait_clients
    );
    let notes = write_outputs(
        &summary,
        args.csv.as_ref(),
        args.plot.as_ref(),
        args.target,
        &title,
    )?;
    let mut j = summary_json(&summary);
    let drops: Vec<serde_json::Value> = summary
        .rounds
        .iter()
        .flat_map(|r| {
            r.dropped
                .iter()
                .zip(&r.drop_reasons)
                .map(move |(c, why)| json!({"round": r.round, "client": c, "reason": why}))
        })
        .collect();
    let extra = json!({
        "model": args.model,
        "transport": "tcp",
        "clients_joined": summary.rounds.first().map(|r| r.sampled.len()),
        "partition": partition.to_string(),
        "partition_clients": parts,
        "fraction": args.fraction,
        "local_epochs": args.local_epochs,
        "batch": args.batch,
        "lr": args.lr,
        "drops": drops,
        "events": events,
        "seed": common.seed,
    });
    if let (Some(o), Some(e)) = (j.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    let dropped: usize = summary.rounds.iter().map(|r| r.dropped.len()).sum();
    let mut human = format!(
        "fl-server: {} rounds, final accuracy {:.2}%, median round {:.3} s, {} bytes/round, {} dropped client updates",
        summary.rounds.len(),
        100.0 * summary.final_accuracy(),
        summary.round_seconds_median(),
        summary.bytes_per_round(),
        dropped
    );
    for n in notes {
        human.push_str(&format!("\n{n}"));
    }
    Ok(Report { json: j, human })
}
