//! `ppml party`: run SMPC roles of a private inference as separate processes
//! (ppml-smpc's `deploy` module does the work).
//!
//! Five roles take part: the computing parties `p0`, `p1`, the helper `p2`,
//! the `model-owner` (holds the model file, shares it once) and the
//! `data-owner` (holds the images, alone learns the predictions). One process
//! may host several roles (`--role p0,model-owner`); each role has its own
//! address and key and talks to the others over its own connections.
//!
//! By default every link is TLS 1.3 with the certificates pinned in the
//! parties file (`--parties FILE --keys DIR`; see docs/DEPLOY.md):
//!
//! ```text
//! ppml party --role p2 --parties parties.toml --keys keys
//! ppml party --role p1,data-owner --parties parties.toml --keys keys --count 1000 --json
//! ppml party --role p0,model-owner --parties parties.toml --keys keys --model mlp500.ppml
//! ```
//!
//! `--insecure --peers A,B,C[,MO,DO]` runs plaintext and unauthenticated
//! links, for loopback benchmarks only. A role whose peer dies or stops
//! answering fails with a network error after `--timeout` seconds at most.

use super::{CommonArgs, Report};
use anyhow::{Context, bail};
use clap::Args;
use ppml_net::emulator::LinkProfile;
use ppml_net::{NetConfig, Parties};
use ppml_nn::output::Logits;
use ppml_nn::{Model, Normalization, input};
use ppml_smpc::deploy::{Link, parse_roles, peers_to_parties, run_roles_over};
use ppml_smpc::inference::{PartyTraffic, RoleInput};
use ppml_smpc::party::{DATA_OWNER, MODEL_OWNER, ProtocolConfig, party_name};
use ppml_smpc::scoring::Reveal;
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

/// Run one or more roles of a three-party private inference over TCP.
#[derive(Debug, Args)]
pub struct PartyArgs {
    /// Role(s) this process runs: p0, p1, p2, model-owner, data-owner (comma-separated).
    #[arg(long)]
    pub role: String,
    /// Parties file (TOML: name, address, certificate of every role).
    #[arg(long, conflicts_with = "peers")]
    pub parties: Option<PathBuf>,
    /// Directory holding this host's private keys (<role>.key for each --role).
    #[arg(long, requires = "parties")]
    pub keys: Option<PathBuf>,
    /// Plaintext, unauthenticated links (loopback benchmarks only).
    #[arg(long)]
    pub insecure: bool,
    /// With --insecure: addresses p0,p1,p2 (owners at p0/p1's port + 100) or
    /// p0,p1,p2,model-owner,data-owner.
    #[arg(long, requires = "insecure")]
    pub peers: Option<String>,
    /// Model file of the model owner: .ppml, .onnx, or .safetensors with --arch.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Architecture of a .safetensors model; without --model, a randomly initialised
    /// model of this architecture (from --seed) is used.
    #[arg(long)]
    pub arch: Option<String>,
    /// Data owner: images to classify: .npy (uint8 pixels, or floats fed as
    /// given), IDX (gzipped or raw) or a directory of PNG images. Default: the
    /// MNIST test set of --data.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Data owner: labels for --input (.npy or IDX), for the accuracy or,
    /// with --private-eval, secret-shared for the private count.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Data owner: classify the first N images only (default: all).
    #[arg(long)]
    pub count: Option<usize>,
    /// Images per batch.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Input normalisation of the data owner's images: standard or unit.
    /// Default: what the model file records when the model owner runs in this
    /// process, else standard (the model owner prints the one to use).
    #[arg(long)]
    pub normalize: Option<String>,
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
    /// With exact truncation: max pooling and argmax compare faithfully
    /// (skip the low bits below one ulp; the max may be one ulp low) or exact.
    #[arg(long, default_value = "faithful")]
    pub comparison: String,
    /// INSECURE, for reproducible tests and benchmarks only: derive every
    /// role's secret randomness (shares, masks, dealer seeds) from --seed
    /// instead of the OS, so anyone who knows the seed can recompute the
    /// other parties' masks and with them the weights and the images.
    #[arg(long)]
    pub insecure_deterministic: bool,
    /// Data owner: also write the predicted classes to this file, one per line.
    #[arg(long)]
    pub predictions: Option<PathBuf>,
    /// Data owner: write the predictions as .npy (int64 classes) or .csv (index,class).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Data owner: also learn the logits (next to --output: <stem>.logits.npy,
    /// or extra .csv columns). Logits reveal more of the model than classes.
    #[arg(long, requires = "output")]
    pub logits: bool,
    /// Data owner: secret-share the labels too; the data owner and the model
    /// owner learn only the number of correct predictions, no prediction.
    #[arg(long, conflicts_with_all = ["logits", "output", "predictions"])]
    pub private_eval: bool,
}

/// How the roles reach each other, from the flags.
fn link(args: &PartyArgs) -> anyhow::Result<Link> {
    match (&args.parties, &args.keys, &args.peers, args.insecure) {
        (Some(file), Some(keys), None, false) => Ok(Link::Tls {
            parties: Parties::load(file)?,
            keys: keys.clone(),
        }),
        (Some(_), None, None, false) => {
            bail!("--parties needs --keys DIR (the directory with this host's private keys)")
        }
        (Some(file), _, None, true) => Ok(Link::Insecure {
            parties: Parties::load_with(file, false)?,
        }),
        (None, _, Some(peers), true) => Ok(Link::Insecure {
            parties: peers_to_parties(peers)?,
        }),
        (None, _, _, false) => {
            bail!("give --parties FILE --keys DIR (TLS), or --insecure --peers A,B,C for plaintext")
        }
        _ => bail!("give either --parties FILE or --peers A,B,C (with --insecure)"),
    }
}

pub fn run(args: PartyArgs, common: &CommonArgs) -> anyhow::Result<Report> {
    let roles = parse_roles(&args.role)?;
    if let Some(p) = &args.output {
        // Before the run, not after it.
        ppml_nn::output::check_output_path(p)?;
    }
    let link = link(&args)?;
    if args.insecure {
        eprintln!(
            "WARNING: --insecure: links are plaintext and unauthenticated; anyone on the network \
             can read the shares, the seeds and the masked model, or act as any party"
        );
    }
    let protocol = ProtocolConfig {
        frac_bits: args.frac_bits,
        cmp_bits: args.cmp_bits,
        truncation: args.truncation.parse()?,
        comparison: args.comparison.parse()?,
    };
    protocol.validate()?;
    ppml_smpc::tune_allocator();
    let flag: Option<Normalization> = args.normalize.as_deref().map(str::parse).transpose()?;
    let mut norm = flag.unwrap_or(Normalization::Standard);
    let model = if roles.contains(&MODEL_OWNER) {
        Some(match (&args.model, &args.arch) {
            (Some(p), arch) => {
                let loaded = ppml_nn::io::load_model(p, arch.as_deref())
                    .with_context(|| format!("loading model {}", p.display()))?;
                let (n, warnings) = loaded.resolve_normalization(flag);
                for w in warnings {
                    eprintln!("warning: {w}");
                }
                eprintln!(
                    "model owner: the data owner must normalise its images with --normalize {n}"
                );
                norm = n;
                loaded.model
            }
            (None, Some(arch)) => Model::from_arch(arch, common.seed)?,
            (None, None) => bail!("the model owner needs --model (or --arch for a random model)"),
        })
    } else {
        None
    };
    let reveal = if args.private_eval {
        Reveal::CorrectCount
    } else if args.logits {
        Reveal::ClassesAndLogits
    } else {
        Reveal::Classes
    };
    let owned = if roles.contains(&DATA_OWNER) {
        if flag.is_none() && model.is_none() {
            eprintln!(
                "warning: data owner without --normalize: using `standard`; pass the model's \
                 normalisation (the model owner prints it)"
            );
        }
        let dir = common.data_dir();
        let mut data = input::load_dataset(args.input.as_deref(), args.labels.as_deref(), &dir)?;
        if let Some(n) = args.count {
            data.truncate(n);
        }
        if args.private_eval && data.labels.is_none() {
            bail!("--private-eval needs --labels for --input");
        }
        // uint8 pixels are normalised as the model expects; floats are fed as
        // given unless --normalize asks otherwise (as `ppml infer` does).
        let x = data.images.to_model_input(norm, flag)?;
        Some((data, x))
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
    let timeout = super::timeout_flag(args.timeout as f64, "timeout")?;
    let net_config = NetConfig::default()
        .with_timeout(timeout)
        .with_connect_timeout(timeout);
    let start = Instant::now();
    let inputs: Vec<(usize, RoleInput<'_>)> = roles
        .iter()
        .map(|&id| {
            let input = match (id, &model, &owned) {
                (MODEL_OWNER, Some(m), _) => RoleInput::Model(m),
                (DATA_OWNER, _, Some((data, x))) => RoleInput::DataReveal {
                    images: x,
                    labels: data.labels.as_deref(),
                    batch: args.batch,
                    reveal,
                },
                _ => RoleInput::Computing,
            };
            (id, input)
        })
        .collect();
    let runs = run_roles_over(&link, &inputs, protocol, &net_config, secrets)
        .map_err(|(id, e)| anyhow::Error::new(e).context(format!("role {}", party_name(id))))?;
    let seconds = start.elapsed().as_secs_f64();
    let mut traffic = Vec::new();
    let mut learned = None;
    let mut model_owner_count = None;
    for (id, out, stats) in runs {
        traffic.push(PartyTraffic::from_stats(id, &stats));
        if id == DATA_OWNER {
            learned = Some(out);
        } else if id == MODEL_OWNER {
            model_owner_count = out.correct;
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
        "comparison": protocol.comparison.to_string(),
        "insecure": args.insecure || secrets.is_insecure(),
        "insecure_transport": args.insecure,
        "insecure_deterministic": secrets.is_insecure(),
    });
    // This process's view of the run on the issue's two networks: its own
    // time (loopback communication included) plus its rounds at the link's
    // RTT plus its busiest role's bytes at the link's rate. An estimate for
    // loopback runs; on a real network `seconds` already is the answer.
    let busiest = traffic.iter().map(|t| t.bytes_sent).max().unwrap_or(0);
    for (key, link) in [
        ("modelled_seconds_lan", LinkProfile::LAN),
        ("modelled_seconds_wan", LinkProfile::WAN),
    ] {
        json[key] = json!(link.modelled_seconds(seconds, rounds as f64, busiest));
    }
    let mut human = format!(
        "{} done in {seconds:.2} s; sent {bytes_sent} bytes, {rounds} rounds",
        names.join("+")
    );
    if let Some(c) = model_owner_count {
        // The model owner learns the count under private scoring, nothing else.
        json["model_owner_correct"] = json!(c);
        human.push_str(&format!("; model owner learned the count: {c} correct"));
    }
    if let (Some(out), Some((data, _))) = (learned, &owned) {
        let n = data.images.count;
        json["input"] = json!(data.name);
        json["images"] = json!(n);
        json["images_per_second"] = json!(n as f64 / seconds);
        json["private_eval"] = json!(args.private_eval);
        if let Some(c) = out.correct {
            let acc = c as f64 / n.max(1) as f64;
            json["correct"] = json!(c);
            json["accuracy"] = json!(acc);
            human.push_str(&format!(
                "; private scoring of {n} images: {c} correct ({:.2}%), no prediction revealed",
                acc * 100.0
            ));
        } else {
            let preds = &out.predictions;
            let acc = data.labels.as_ref().map(|l| {
                let ok = preds.iter().zip(l).filter(|(a, b)| a == b).count();
                ok as f64 / preds.len().max(1) as f64
            });
            json["accuracy"] = json!(acc);
            human.push_str(&format!(
                "; private predictions of {} images{} ({:.0} images/s)",
                preds.len(),
                acc.map_or(String::new(), |a| format!(", accuracy {:.2}%", a * 100.0)),
                preds.len() as f64 / seconds
            ));
            if let Some(path) = &args.predictions {
                let text: String = preds.iter().map(|p| format!("{p}\n")).collect();
                std::fs::write(path, text)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            if let Some(path) = &args.output {
                let width = if preds.is_empty() {
                    0
                } else {
                    out.logits.len() / preds.len()
                };
                let logits = args.logits.then_some(Logits {
                    values: &out.logits,
                    width,
                });
                let files = ppml_nn::output::write_predictions(path, preds, logits)?;
                let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
                for f in &names {
                    human.push_str(&format!("\nwrote {f}"));
                }
                json["outputs"] = json!(names);
            }
        }
    }
    Ok(Report { json, human })
}
