//! `ppml fl-client`: one federated averaging client over TCP. It learns the
//! model, partition and seed from the server, loads its own part of the MNIST
//! training set, and trains whenever it is sampled until the server is done.

use super::{CommonArgs, Report};
use clap::Args;
use ppml_fedavg::FedError;
use ppml_fedavg::Partition;
use ppml_fedavg::net::{ClientOptions, SESSION_PROTOCOL, client_name, run_client};
use ppml_net::NetConfig;
use ppml_nn::{Model, Normalization};
use serde_json::json;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct FlClientArgs {
    /// With --insecure and no parties file: the server's address.
    #[arg(long, default_value = "127.0.0.1:7878")]
    pub server: String,
    /// This client's id (= partition index); with --parties it is party
    /// `client-N`. Default with --insecure: the server picks one.
    #[arg(long)]
    pub id: Option<u32>,
    /// Parties file (the server is party `server`); TLS with pinned certificates.
    #[arg(long)]
    pub parties: Option<PathBuf>,
    /// Directory with this host's private key (client-N.key).
    #[arg(long, requires = "parties")]
    pub keys: Option<PathBuf>,
    /// Plaintext, unauthenticated link to the server.
    #[arg(long)]
    pub insecure: bool,
    /// Seconds to keep retrying the connection.
    #[arg(long, default_value_t = 30.0)]
    pub connect_timeout: f64,
    /// Seconds to wait for the server's next message (it evaluates and waits for others in between).
    #[arg(long, default_value_t = 600.0)]
    pub timeout: f64,
}

pub fn run(args: FlClientArgs, common: &CommonArgs) -> anyhow::Result<Report> {
    let net = NetConfig::default()
        .with_connect_timeout(super::timeout_flag(
            args.connect_timeout,
            "connect-timeout",
        )?)
        .with_timeout(super::timeout_flag(args.timeout, "timeout")?);
    let dir = common.data_dir();
    let mut examples = 0usize;
    let ch = match (&args.parties, args.insecure) {
        (Some(file), _) => {
            let id = args
                .id
                .ok_or_else(|| anyhow::anyhow!("--parties needs --id N (this host is client-N)"))?;
            let session = ppml_net::session::open(
                &client_name(id),
                Some(file.as_path()),
                args.keys.as_deref(),
                args.insecure,
                None,
                SESSION_PROTOCOL,
                net,
            )?;
            session.connect("server")?
        }
        (None, true) => {
            eprintln!("WARNING: --insecure: the link is plaintext and unauthenticated");
            ppml_net::tcp::connect(args.server.as_str(), &net)?
        }
        (None, false) => anyhow::bail!(
            "give --parties FILE --keys DIR (TLS), or --insecure for a plaintext link"
        ),
    };
    let summary = run_client(
        ch,
        args.id,
        &mut |setup, id| {
            let norm: Normalization = setup.normalization.parse()?;
            let partition: Partition = setup.partition.parse()?;
            let model = Model::from_arch(&setup.arch, setup.seed)?;
            let train = ppml_nn::mnist::load(&dir, norm)?.train;
            let parts =
                partition.split(&train.labels, setup.partition_clients as usize, setup.seed)?;
            let mine = parts
                .get(id as usize)
                .ok_or_else(|| FedError::Config(format!("no partition part {id}")))?;
            let data = train.subset(mine);
            examples = data.len();
            eprintln!(
                "fl-client {id}: {} examples of part {id}/{} ({})",
                data.len(),
                parts.len(),
                setup.partition
            );
            Ok((model, data))
        },
        &ClientOptions::default(),
        &mut |round, st| {
            eprintln!(
                "fl-client: round {round}: {} steps, loss {:.4}",
                st.steps, st.mean_loss
            );
        },
    )?;
    let json = json!({
        "id": summary.id,
        "examples": examples,
        "rounds_trained": summary.rounds_trained,
        "rounds_total": summary.rounds_total,
        "rounds_completed_secure": summary.rounds_completed,
        "rounds_aborted": summary.aborted.iter().map(|(r, why)| json!({"round": r, "reason": why})).collect::<Vec<_>>(),
        "train_seconds": summary.train_seconds,
        "bytes_sent": summary.stats.bytes_sent,
        "bytes_received": summary.stats.bytes_received,
    });
    let human = format!(
        "fl-client {}: trained in {} of {} rounds ({:.2} s training), sent {} bytes, received {} bytes",
        summary.id,
        summary.rounds_trained,
        summary.rounds_total,
        summary.train_seconds,
        summary.stats.bytes_sent,
        summary.stats.bytes_received
    );
    Ok(Report { json, human })
}
