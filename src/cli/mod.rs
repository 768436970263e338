//! The `ppml` command line: one module per subcommand.
//!
//! Conventions shared by every subcommand (see [`CommonArgs`]):
//! - `--json` prints exactly one JSON object as the last line of stdout;
//!   progress bars and logs go to stderr.
//! - `--threads N` sizes the rayon pool (default: all cores; 0 is an error).
//! - `--seed S` makes the run's PUBLIC choices reproducible (weight
//!   initialisation, data order, partitions, client sampling in runs without
//!   DP, simulated dropouts); it never reaches a secret: shares, masks, keys,
//!   dealer material, DP noise and DP client sampling come from the OS
//!   (`ppml-random`).
//! - `--data DIR` points at the MNIST IDX files (default `data/mnist`, or `$PPML_DATA`).

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

pub mod demo;
pub mod fedavg;
pub mod fl_client;
pub mod fl_server;
pub mod infer;
pub mod keygen;
pub mod party;
pub mod secagg_bench;
pub mod splitnn;
pub mod train;

/// Flags every subcommand takes.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Print exactly one JSON object as the last line of stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Worker threads for rayon (default: number of cores; at least 1).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// Seed of the run's public, reproducible choices only: weight initialisation, data
    /// order, partitions, and client sampling in runs without DP (and simulated dropouts).
    /// Never used for secrets: shares, masks, keys, dealer material, DP noise and DP
    /// sampling always come from the operating system's CSPRNG.
    #[arg(long, global = true, default_value_t = 42)]
    pub seed: u64,
    /// Directory holding the four MNIST IDX .gz files (default: $PPML_DATA or data/mnist).
    #[arg(long, global = true)]
    pub data: Option<PathBuf>,
}

impl CommonArgs {
    /// The MNIST directory: `--data`, else `$PPML_DATA`, else `data/mnist`.
    pub fn data_dir(&self) -> PathBuf {
        if let Some(d) = &self.data {
            return d.clone();
        }
        match std::env::var_os("PPML_DATA") {
            Some(d) => PathBuf::from(d),
            None => PathBuf::from("data/mnist"),
        }
    }

    /// Number of threads actually used.
    pub fn threads(&self) -> usize {
        self.threads.unwrap_or_else(rayon::current_num_threads)
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "ppml",
    version,
    about = "Privacy-preserving machine learning on MNIST"
)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Secret-share a tensor between in-process parties over channels and compute on it.
    Demo(demo::DemoArgs),
    /// Train a plaintext model on MNIST.
    Train(train::TrainArgs),
    /// Evaluate a saved model (plaintext, or `--encrypted` with three parties).
    Infer(infer::InferArgs),
    /// Federated averaging, simulated in one process.
    Fedavg(fedavg::FedavgArgs),
    /// Federated averaging server over TCP.
    FlServer(fl_server::FlServerArgs),
    /// Federated averaging client over TCP.
    FlClient(fl_client::FlClientArgs),
    /// Benchmark one round of secure aggregation.
    SecaggBench(secagg_bench::SecaggBenchArgs),
    /// Split learning between a data holder and a label holder.
    Splitnn(splitnn::SplitnnArgs),
    /// Run one SMPC party (p0, p1 or p2) as its own process over TCP.
    Party(party::PartyArgs),
    /// Make a party's private key and self-signed certificate (for --parties/--keys).
    Keygen(keygen::KeygenArgs),
}

/// What a subcommand returns: the JSON summary printed with `--json`, and a
/// human summary printed otherwise.
pub struct Report {
    pub json: serde_json::Value,
    pub human: String,
}

/// Most worker threads `--threads` accepts: far above any core count, low
/// enough that a typo does not spawn a hundred thousand threads.
pub const MAX_THREADS: usize = 1024;

/// A timeout flag, in seconds: positive and finite. A zero timeout would fail
/// every wait at once, so it is refused rather than quietly raised.
pub fn timeout_flag(secs: f64, flag: &str) -> anyhow::Result<std::time::Duration> {
    if secs.is_nan() || secs <= 0.0 {
        anyhow::bail!("--{flag} must be a positive number of seconds, got {secs}");
    }
    std::time::Duration::try_from_secs_f64(secs)
        .map_err(|_| anyhow::anyhow!("--{flag} {secs} is not a usable number of seconds"))
}

pub fn run(cli: Cli) -> anyhow::Result<Report> {
    match cli.common.threads {
        Some(n) if !(1..=MAX_THREADS).contains(&n) => {
            anyhow::bail!("--threads must be in 1..={MAX_THREADS}, got {n}")
        }
        _ => {}
    }
    // A PPML_BACKEND this CPU cannot run (or that names no backend) is a
    // clear error up front, not a silent fallback.
    ppml_simd::selected()?;
    // Private inference tunes malloc before any thread starts: a thread that
    // allocates earlier (the rayon pool's) keeps an arena of its own, which
    // later threads share and which gives memory back to the OS after every
    // large message (page faults and zeroing on each one).
    if matches!(&cli.command, Command::Infer(a) if a.encrypted)
        || matches!(cli.command, Command::Party(_))
    {
        ppml_smpc::tune_allocator();
    }
    if let Some(n) = cli.common.threads {
        // Ignore the error if a pool already exists (only possible in tests).
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global();
    }
    let common = &cli.common;
    match cli.command {
        Command::Demo(a) => demo::run(a, common),
        Command::Train(a) => train::run(a, common),
        Command::Infer(a) => infer::run(a, common),
        Command::Fedavg(a) => fedavg::run(a, common),
        Command::FlServer(a) => fl_server::run(a, common),
        Command::FlClient(a) => fl_client::run(a, common),
        Command::SecaggBench(a) => secagg_bench::run(a, common),
        Command::Splitnn(a) => splitnn::run(a, common),
        Command::Party(a) => party::run(a, common),
        Command::Keygen(a) => keygen::run(a, common),
    }
}
