//! `ppml fl-server`: the federated averaging server over TCP. Waits for
//! `--wait-clients` `ppml fl-client` processes, then runs the rounds; clients
//! may join or rejoin between rounds up to the population. A client that
//! disconnects, times out or sends a bad update is dropped from the round
//! (named on stderr and in the JSON) and the round continues with the others.
//! `--secure-aggregation` runs Bonawitz et al.'s protocol with the clients
//! (the server only unmasks the sum); `--dp-clip` adds central DP.

use super::fedavg::{progress_bar, round_tick, summary_json, write_outputs};
use super::{CommonArgs, Report};
use clap::Args;
use ppml_fedavg::net::{
    DpMode, ExampleWeights, Listener, NamedClients, NetDp, NetServerConfig, SESSION_PROTOCOL,
    Setup, TcpClients, run_server,
};
use ppml_fedavg::{
    Aggregator, DpAggregator, FedConfig, LocalConfig, Mode, Partition, ServerConfig,
    WeightedAverage,
};
use ppml_net::NetConfig;
use ppml_nn::{Model, Normalization};
use serde_json::json;
use std::net::TcpListener;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct FlServerArgs {
    /// With --insecure and no parties file: the address to listen on
    /// (with --parties the server listens at its own entry, party `server`).
    #[arg(long, default_value = "127.0.0.1:7878")]
    pub listen: String,
    /// Parties file: the server is party `server`, client N is `client-N`;
    /// links are TLS with pinned certificates (docs/DEPLOY.md).
    #[arg(long)]
    pub parties: Option<PathBuf>,
    /// Directory with this host's private key (server.key).
    #[arg(long, requires = "parties")]
    pub keys: Option<PathBuf>,
    /// Plaintext, unauthenticated links: any process can claim any client id.
    #[arg(long)]
    pub insecure: bool,
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
    /// Secure aggregation (Bonawitz et al.): clients mask their own updates,
    /// the server only learns the sum of the survivors'.
    #[arg(long)]
    pub secure_aggregation: bool,
    /// SecAgg+: sparse masking graph instead of the complete one.
    #[arg(long)]
    pub graph: bool,
    /// Secure aggregation threshold t (default: the protocol's).
    #[arg(long)]
    pub threshold: Option<usize>,
    /// Plain aggregation: updates with a larger L2 norm are dropped.
    #[arg(long, default_value_t = 100.0)]
    pub max_update_norm: f64,
    /// DP-FedAvg: clients clip their update to this L2 norm; uniform weights.
    #[arg(long)]
    pub dp_clip: Option<f64>,
    /// DP noise multiplier z (noise std z * clip on the sum).
    #[arg(long, default_value_t = 1.0)]
    pub dp_noise: f64,
    /// DP delta of the reported (epsilon, delta).
    #[arg(long, default_value_t = 1e-5)]
    pub dp_delta: f64,
    /// central: the server adds the noise to the unmasked sum; distributed:
    /// each client adds its share of discrete Gaussian noise before masking
    /// (needs --secure-aggregation; Kairouz, Liu, Steinke 2021).
    #[arg(long, default_value = "central")]
    pub dp_mode: String,
    /// Distributed DP: log2 of the integer grid points per clip.
    #[arg(long, default_value_t = 16)]
    pub dp_scale_bits: u32,
    /// Per-round CSV.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Accuracy curve PNG.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

pub fn run(args: FlServerArgs, common: &CommonArgs) -> anyhow::Result<Report> {
    let norm: Normalization = args.normalize.parse()?;
    let partition: Partition = args.partition.parse()?;
    let mode: Mode = args.mode.parse()?;
    let parts = args.partition_clients.unwrap_or(args.wait_clients);
    let model = Model::from_arch(&args.model, common.seed)?;
    if (args.threshold.is_some() || args.graph) && !args.secure_aggregation {
        anyhow::bail!("--threshold and --graph need --secure-aggregation");
    }
    let dp_mode = match args.dp_mode.as_str() {
        "central" => DpMode::Central,
        "distributed" if args.secure_aggregation => DpMode::Distributed {
            scale_bits: args.dp_scale_bits,
        },
        "distributed" => anyhow::bail!("--dp-mode distributed needs --secure-aggregation"),
        other => anyhow::bail!("--dp-mode must be central or distributed, got {other}"),
    };
    if args.dp_mode != "central" && args.dp_clip.is_none() {
        anyhow::bail!("--dp-mode needs --dp-clip");
    }
    // The server derives every client's example count from the partition it
    // announces, so no client can inflate its weight by claiming more.
    let mnist = ppml_nn::mnist::load(&common.data_dir(), norm);
    let (test, weights) = match mnist {
        Ok(m) => {
            let parts_idx = partition.split(&m.train.labels, parts, common.seed)?;
            let known = parts_idx.iter().map(|p| p.len() as u64).collect();
            (
                (!args.no_eval).then_some(m.test),
                ExampleWeights::Known(known),
            )
        }
        Err(e) if args.no_eval => {
            eprintln!("fl-server: no MNIST ({e}); capping claimed example counts");
            (
                None,
                ExampleWeights::Capped(2 * 60_000u64.div_ceil(parts.max(1) as u64)),
            )
        }
        Err(e) => return Err(e.into()),
    };
    let dp = args
        .dp_clip
        .map(|clip| ppml_fedavg::dp::DpConfig::new(clip, args.dp_noise, args.dp_delta))
        .transpose()?;
    let secure = args
        .secure_aggregation
        .then(|| ppml_fedavg::secure::default_config(args.threshold, args.graph))
        .map(|mut c| {
            if let Some(d) = &dp {
                // Clipped updates: the quantiser's range only needs the clip.
                c.clip = d.clip as f32;
            }
            c
        });
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
        join_timeout: super::timeout_flag(args.join_timeout, "join-timeout")?,
        round_timeout: super::timeout_flag(args.round_timeout, "round-timeout")?,
        secure,
        weights,
        max_update_norm: args.max_update_norm,
        dp: dp.map(|cfg| NetDp { cfg, mode: dp_mode }),
    };
    let aggregator: Box<dyn Aggregator> = match (&cfg.dp, args.secure_aggregation) {
        (Some(d), false) => {
            // The server samples DP rounds by Poisson sampling at rate --fraction.
            Box::new(DpAggregator::new(d.cfg, args.fraction, parts)?)
        }
        _ => Box::new(WeightedAverage),
    };
    let net = NetConfig::default().with_timeout(cfg.round_timeout);
    let (clients, at): (Box<dyn Listener>, String) = match (&args.parties, args.insecure) {
        (Some(file), _) => {
            let session = ppml_net::session::open(
                "server",
                Some(file.as_path()),
                args.keys.as_deref(),
                args.insecure,
                None,
                SESSION_PROTOCOL,
                net,
            )?;
            let mut acceptor = session.listen()?;
            let at = acceptor.local_addr().to_string();
            (
                Box::new(NamedClients::new(move |wait| acceptor.next(wait))),
                at,
            )
        }
        (None, true) => {
            eprintln!(
                "WARNING: --insecure: links are plaintext and unauthenticated; anyone on the \
                 network can read everything sent, or claim any client id"
            );
            let listener = TcpListener::bind(&args.listen)
                .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
            let at = listener.local_addr()?.to_string();
            (Box::new(TcpClients::new(&listener, net)?), at)
        }
        (None, false) => {
            anyhow::bail!("give --parties FILE --keys DIR (TLS), or --insecure for plaintext links")
        }
    };
    eprintln!(
        "fl-server: listening on {at}, waiting for {} clients ({} {} parts, {})",
        args.wait_clients, parts, partition, args.model
    );
    let pb = progress_bar(args.rounds, common.json);
    let mut events: Vec<String> = Vec::new();
    let summary = run_server(
        clients,
        model,
        &cfg,
        test.as_ref(),
        aggregator,
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
    let joins: Vec<serde_json::Value> = summary
        .rounds
        .iter()
        .flat_map(|r| {
            r.joined
                .iter()
                .map(move |c| json!({"round": r.round, "client": c, "event": "joined"}))
                .chain(
                    r.rejoined
                        .iter()
                        .map(move |c| json!({"round": r.round, "client": c, "event": "rejoined"})),
                )
        })
        .collect();
    let aborted: Vec<serde_json::Value> = summary
        .rounds
        .iter()
        .filter_map(|r| {
            r.aborted
                .as_ref()
                .map(|why| json!({"round": r.round, "reason": why}))
        })
        .collect();
    let extra = json!({
        "secure_aggregation": args.secure_aggregation,
        "graph": args.graph,
        "threshold": args.threshold,
        "joins": joins,
        "aborted_rounds": aborted,
        "dp_mode": args.dp_clip.map(|_| args.dp_mode.clone()),
        "clip": args.dp_clip,
        "noise_multiplier": args.dp_clip.map(|_| args.dp_noise),
        "epsilon_per_round": summary.rounds.iter().map(|r| r.epsilon).collect::<Vec<_>>(),
        "model": args.model,
        "transport": if args.parties.is_some() && !args.insecure { "tls" } else { "tcp" },
        "insecure": args.insecure,
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
