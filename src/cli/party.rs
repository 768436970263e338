//! `ppml party`: run SMPC roles of a private inference as separate processes
//! over TCP (ppml-smpc).
//!
//! Five roles take part: the computing parties `p0`, `p1`, the helper `p2`,
//! the `model-owner` (holds the model file, shares it once) and the
//! `data-owner` (holds the images, alone learns the predictions). One process
//! may host several roles (`--role p0,model-owner`); each role still talks to
//! the others over its own TCP connections. Three terminals on loopback:
//!
//! ```text
//! ppml party --role p2 --peers 127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002
//! ppml party --role p1,data-owner --peers 127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002 --count 1000 --json
//! ppml party --role p0,model-owner --peers 127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002 --model mlp500.ppml
//! ```
//!
//! With three `--peers`, the model owner listens on p0's host at port + 100
//! and the data owner on p1's host at port + 100; or give all five addresses
//! (p0, p1, p2, model-owner, data-owner). A role whose peer dies or stops
//! answering fails with a network error after `--timeout` seconds at most.

use super::{CommonArgs, Report};
use anyhow::{Context, bail};
use clap::Args;
use ppml_nn::{Model, Normalization, mnist};
use ppml_smpc::inference::{PartyTraffic, RoleInput, run_tcp_role};
use ppml_smpc::party::{DATA_OWNER, MODEL_OWNER, P0, P1, P2, ProtocolConfig, party_name};
use serde_json::json;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What one role thread returns: the data owner's predictions and the role's traffic.
type RoleResult = anyhow::Result<(Vec<u8>, ppml_net::NetworkStats)>;

/// Run one or more roles of a three-party private inference over TCP.
#[derive(Debug, Args)]
pub struct PartyArgs {
    /// Role(s) this process runs: p0, p1, p2, model-owner, data-owner (comma-separated).
    #[arg(long)]
    pub role: String,
    /// Addresses: p0,p1,p2 (owners at p0/p1's port + 100) or p0,p1,p2,model-owner,data-owner.
    #[arg(long)]
    pub peers: String,
    /// Model file of the model owner: .ppml, or .safetensors with --arch.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Architecture of a .safetensors model; without --model, a randomly initialised
    /// model of this architecture (from --seed) is used.
    #[arg(long)]
    pub arch: Option<String>,
    /// Number of test images the data owner classifies (the first N).
    #[arg(long, default_value_t = 10_000)]
    pub count: usize,
    /// Images per batch.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Input normalisation the model was trained with: standard or unit.
    #[arg(long, default_value = "standard")]
    pub normalize: String,
    /// Seconds before a silent peer is declared dead.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// Fixed-point fractional bits, 1..=24 (all roles must agree).
    #[arg(long, default_value_t = 16)]
    pub frac_bits: u32,
    /// Widest comparison allowed, in bits (all roles must agree). Each comparison
    /// uses the width the model owner's bounds prove exact for every input in the
    /// declared range; a model that needs more than this is refused, naming the range.
    #[arg(long, default_value_t = 63)]
    pub cmp_bits: u32,
    /// Truncation after products: exact (never fails) or local (no traffic,
    /// fails with the probability reported per image). All roles must agree.
    #[arg(long, default_value = "exact")]
    pub truncation: String,
    /// INSECURE, for reproducible tests and benchmarks only: derive every
    /// role's secret randomness (shares, masks, dealer seeds) from --seed
    /// instead of the OS, so anyone who knows the seed can recompute the
    /// other parties' masks and with them the weights and the images.
    #[arg(long)]
    pub insecure_deterministic: bool,
}

fn parse_role(s: &str) -> anyhow::Result<usize> {
    Ok(match s.trim() {
        "p0" => P0,
        "p1" => P1,
        "p2" => P2,
        "model-owner" | "model" | "server" => MODEL_OWNER,
        "data-owner" | "data" | "client" => DATA_OWNER,
        other => bail!("unknown role `{other}` (p0, p1, p2, model-owner, data-owner)"),
    })
}

fn resolve(s: &str) -> anyhow::Result<SocketAddr> {
    s.trim()
        .to_socket_addrs()
        .with_context(|| format!("resolving {s}"))?
        .next()
        .with_context(|| format!("{s} resolves to no address"))
}

/// The five role addresses from `--peers`.
fn addresses(peers: &str) -> anyhow::Result<Vec<SocketAddr>> {
    let mut addrs: Vec<SocketAddr> = peers.split(',').map(resolve).collect::<Result<_, _>>()?;
    match addrs.len() {
        5 => {}
        3 => {
            for base in [addrs[P0], addrs[P1]] {
                let port = base
                    .port()
                    .checked_add(100)
                    .context("port + 100 overflows; give all five addresses")?;
                addrs.push(SocketAddr::new(base.ip(), port));
            }
        }
        n => bail!("--peers needs 3 or 5 addresses, got {n}"),
    }
    Ok(addrs)
}

pub fn run(args: PartyArgs, common: &CommonArgs) -> anyhow::Result<Report> {
    let roles: Vec<usize> = args
        .role
        .split(',')
        .map(parse_role)
        .collect::<Result<_, _>>()?;
    let addrs = addresses(&args.peers)?;
    let protocol = ProtocolConfig {
        frac_bits: args.frac_bits,
        cmp_bits: args.cmp_bits,
        truncation: args.truncation.parse()?,
    };
    protocol.validate()?;
    ppml_smpc::tune_allocator();
    let model = if roles.contains(&MODEL_OWNER) {
        Some(match (&args.model, &args.arch) {
            (Some(p), arch) => Model::load_any(p, arch.as_deref())
                .with_context(|| format!("loading model {}", p.display()))?,
            (None, Some(arch)) => Model::from_arch(arch, common.seed)?,
            (None, None) => bail!("the model owner needs --model (or --arch for a random model)"),
        })
    } else {
        None
    };
    let test = if roles.contains(&DATA_OWNER) {
        let norm: Normalization = args.normalize.parse()?;
        let dir = common.data_dir();
        let data = mnist::load(&dir, norm)
            .with_context(|| format!("loading MNIST from {}", dir.display()))?;
        Some(data.test.slice(0..args.count.min(data.test.len())))
    } else {
        None
    };
    let secrets = if args.insecure_deterministic {
        eprintln!(
            "WARNING: --insecure-deterministic: every share, mask and dealer seed is derived from \
             --seed {}; anyone who knows the seed can recompute the other parties' masks and with \
             them the model weights and the images. Never use this outside tests.",
            common.seed
        );
        ppml_smpc::SecretSource::InsecureDeterministic(common.seed)
    } else {
        ppml_smpc::SecretSource::Os
    };
    let timeout = Duration::from_secs(args.timeout.max(1));
    let start = Instant::now();
    let results: Vec<(usize, RoleResult)> = std::thread::scope(|s| {
        let handles: Vec<_> = roles
            .iter()
            .map(|&id| {
                let (addrs, model, test) = (&addrs, &model, &test);
                let batch = args.batch;
                s.spawn(move || {
                    let input = match (id, model, test) {
                        (MODEL_OWNER, Some(m), _) => RoleInput::Model(m),
                        (DATA_OWNER, _, Some(t)) => RoleInput::Data {
                            images: &t.images,
                            batch,
                        },
                        _ => RoleInput::Computing,
                    };
                    let r = run_tcp_role(id, addrs, None, &input, protocol, timeout, secrets)
                        .with_context(|| format!("role {}", party_name(id)));
                    (id, r)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    (usize::MAX, Err(anyhow::anyhow!("a role thread panicked")))
                })
            })
            .collect()
    });
    let seconds = start.elapsed().as_secs_f64();
    // Report the root cause: a role that failed for a reason other than a
    // peer disappearing (its failure is what made the others' peers vanish).
    let is_net = |e: &anyhow::Error| {
        e.chain().any(|c| {
            matches!(
                c.downcast_ref::<ppml_smpc::SmpcError>(),
                Some(ppml_smpc::SmpcError::Net(_))
            )
        })
    };
    let mut results = results;
    if let Some(i) = results
        .iter()
        .position(|(_, r)| r.as_ref().is_err_and(|e| !is_net(e)))
    {
        let (_, r) = results.swap_remove(i);
        r?;
    }
    let mut traffic = Vec::new();
    let mut predictions = None;
    for (id, r) in results {
        let (preds, stats) = r?;
        traffic.push(PartyTraffic::from_stats(id, &stats));
        if id == DATA_OWNER {
            predictions = Some(preds);
        }
    }
    let rounds = traffic.iter().map(|t| t.rounds).max().unwrap_or(0);
    let bytes_sent: u64 = traffic.iter().map(|t| t.bytes_sent).sum();
    let names: Vec<&str> = roles.iter().map(|&r| party_name(r)).collect();
    let mut json = json!({
        "command": "party",
        "roles": names,
        "seconds": seconds,
        "bytes_sent": bytes_sent,
        "rounds": rounds,
        "parties": traffic,
        "frac_bits": protocol.frac_bits,
        "cmp_bits": protocol.cmp_bits,
        "truncation": protocol.truncation.to_string(),
        "insecure": secrets.is_insecure(),
    });
    let mut human = format!(
        "{} done in {seconds:.2} s; sent {bytes_sent} bytes, {rounds} rounds",
        names.join("+")
    );
    if let (Some(preds), Some(test)) = (predictions, &test) {
        let correct = preds
            .iter()
            .zip(&test.labels)
            .filter(|(a, b)| a == b)
            .count();
        let acc = correct as f64 / preds.len().max(1) as f64;
        json["accuracy"] = json!(acc);
        json["images"] = json!(preds.len());
        json["images_per_second"] = json!(preds.len() as f64 / seconds);
        human.push_str(&format!(
            "; private predictions of {} images, accuracy {:.2}% ({:.0} images/s)",
            preds.len(),
            acc * 100.0,
            preds.len() as f64 / seconds
        ));
    }
    Ok(Report { json, human })
}
