//! `ppml splitnn`: split learning between a data holder and a label holder (ppml-splitnn).
//!
//! Without `--role`, both parties run as two threads of this process over an in-memory
//! channel. With `--role`, this process is ONE party over a TLS link (parties
//! `data-holder` and `label-holder` in the parties file; see docs/DEPLOY.md):
//!
//! ```text
//! ppml splitnn --role label --parties parties.toml --keys keys           # top + labels (or the U-shaped middle)
//! ppml splitnn --role data  --parties parties.toml --keys keys --json    # bottom + images, drives the session
//! ```
//!
//! The label holder listens at its address, the data holder connects. `--insecure` with
//! `--listen ADDR` (label) / `--connect ADDR` (data) runs a plaintext link instead. The
//! label process reads only the MNIST label files, the vanilla data process only the image
//! files.

use super::{CommonArgs, Report};
use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use ppml_net::{Channel, NetConfig, Parties};
use ppml_nn::{Dataset, Normalization, mnist};
use ppml_splitnn::wire::{self, DATA_HOLDER, LABEL_HOLDER};
use ppml_splitnn::{
    DataHolder, Event, Images, LabelHolder, MiddleServer, RemoteConfig, RunReport, SplitConfig,
    Variant, load_mnist_labels, split_parts, train_in_process, train_round_robin,
};
use serde_json::json;
use std::path::PathBuf;

/// Split learning of 784-128-640 | 640-10 on MNIST ([0,1] inputs, plain SGD by default).
#[derive(Debug, Args)]
pub struct SplitnnArgs {
    /// Number of epochs.
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    /// vanilla (labels at the label holder) or u-shaped (labels and last layer stay with
    /// the data holder; only the middle 128-640 layer runs remotely).
    #[arg(long, default_value = "vanilla")]
    pub variant: String,
    /// Learning rate (each party's own SGD).
    #[arg(long, default_value_t = 0.03)]
    pub lr: f32,
    /// SGD momentum (0: plain SGD, the seed setting).
    #[arg(long, default_value_t = 0.0)]
    pub momentum: f32,
    /// Mini-batch size.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Test images per evaluation message.
    #[arg(long, default_value_t = 1000)]
    pub eval_chunk: usize,
    /// Skip the per-epoch evaluation on the test set.
    #[arg(long)]
    pub no_eval: bool,
    /// Train on the first N training images only (both parties must agree).
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Evaluate on the first N test images only (both parties must agree).
    #[arg(long)]
    pub test_limit: Option<usize>,
    /// Run ONE party over TCP: `data` (images + bottom; drives the session) or `label`
    /// (vanilla: labels + top; u-shaped: the middle server; alias `server`).
    #[arg(long)]
    pub role: Option<String>,
    /// With --role: the parties file (data-holder, label-holder).
    #[arg(long)]
    pub parties: Option<PathBuf>,
    /// With --role: the directory with this host's private key.
    #[arg(long)]
    pub keys: Option<PathBuf>,
    /// Plaintext, unauthenticated link (loopback benchmarks only).
    #[arg(long)]
    pub insecure: bool,
    /// With --insecure and --role label: listen on this address.
    #[arg(long, requires = "insecure")]
    pub listen: Option<String>,
    /// With --insecure and --role data: connect to the label holder at this address.
    #[arg(long, requires = "insecure")]
    pub connect: Option<String>,
    /// Data holders taking turns against one label holder (in-process, vanilla): the
    /// training set is cut into this many contiguous shards, one per holder.
    #[arg(long, default_value_t = 1)]
    pub holders: usize,
    /// With --holders > 1: `shared` passes the bottom's weights from each data holder to the
    /// next (one bottom trained on all shards), `per-holder` keeps one bottom per holder.
    #[arg(long, default_value = "shared")]
    pub bottom: String,
    /// Seconds to wait for a message (and for the TCP connection) before failing.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
}

fn cut_limit<T: Clone>(v: Vec<T>, per: usize, limit: Option<usize>) -> Vec<T> {
    match limit {
        Some(n) if n * per < v.len() => v[..n * per].to_vec(),
        _ => v,
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => 0.5 * (s[n / 2 - 1] + s[n / 2]),
    }
}

pub fn run(args: SplitnnArgs, common: &CommonArgs) -> anyhow::Result<Report> {
    let variant: Variant = args.variant.parse()?;
    anyhow::ensure!(args.epochs > 0, "--epochs must be positive");
    anyhow::ensure!(args.holders > 0, "--holders must be at least 1");
    let cfg = SplitConfig {
        variant,
        epochs: args.epochs,
        batch: args.batch,
        lr: args.lr,
        momentum: args.momentum,
        shuffle_seed: common.seed,
        eval_chunk: args.eval_chunk,
        evaluate: !args.no_eval,
    };
    let net = NetConfig::default()
        .with_timeout(super::timeout_flag(args.timeout as f64, "timeout")?)
        .with_connect_timeout(super::timeout_flag(args.timeout as f64, "timeout")?);
    match args.role.as_deref() {
        None => run_in_process(&args, &cfg, common),
        Some(_) if args.holders > 1 => {
            anyhow::bail!("--holders > 1 runs in process only (drop --role)")
        }
        Some("data") => {
            let mut ch = open_channel(&args, DATA_HOLDER, &net)?;
            let mut r = run_data(&args, &cfg, common, &mut ch, "tcp")?;
            r.json["insecure"] = json!(args.insecure);
            Ok(r)
        }
        Some("label" | "server") => {
            let mut ch = open_channel(&args, LABEL_HOLDER, &net)?;
            let mut r = run_remote(&args, &cfg, common, &mut ch)?;
            r.json["insecure"] = json!(args.insecure);
            Ok(r)
        }
        Some(o) => anyhow::bail!("unknown --role `{o}` (data, label)"),
    }
}

/// This party's channel to the other: a session (TLS by default) through ppml-splitnn's
/// wire helpers; the label holder listens, the data holder connects.
fn open_channel(args: &SplitnnArgs, me: &str, net: &NetConfig) -> anyhow::Result<Channel> {
    // --insecure without a parties file: the label holder's address from --listen/--connect.
    let fallback = match (&args.listen, &args.connect, me) {
        (Some(a), None, LABEL_HOLDER) | (None, Some(a), DATA_HOLDER) => Some(Parties::insecure(
            &[DATA_HOLDER, LABEL_HOLDER],
            &["0.0.0.0:0".to_owned(), a.clone()],
        )?),
        (None, None, _) => None,
        _ => anyhow::bail!(
            "with --insecure, the label holder takes --listen ADDR and the data holder --connect ADDR"
        ),
    };
    let session = ppml_net::session::open(
        me,
        args.parties.as_deref(),
        args.keys.as_deref(),
        args.insecure,
        fallback,
        wire::SESSION_PROTOCOL,
        net.clone(),
    )?;
    Ok(if me == LABEL_HOLDER {
        wire::accept_data_holder(&session)?
    } else {
        wire::connect_label_holder(&session)?
    })
}

fn progress_bar(epochs: usize) -> impl FnMut(Event<'_>) {
    let pb = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix} [{bar:30}] {pos}/{len} batches {elapsed_precise} {msg}",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    move |e| match e {
        Event::Step { epoch, step, steps } => {
            if step == 1 {
                pb.reset();
                pb.set_length(steps as u64);
                pb.set_prefix(format!("epoch {epoch}/{epochs}"));
            }
            pb.set_position(step as u64);
        }
        Event::Epoch(r) => {
            pb.finish_and_clear();
            let acc = r
                .test_accuracy
                .map_or("-".to_string(), |a| format!("{:.2}%", 100.0 * a));
            eprintln!(
                "epoch {}: train loss {:.4}, test accuracy {acc}, train {:.3} s (cpu {}), eval {:.3} s, {} bytes forward / {} back",
                r.epoch,
                r.train_loss,
                r.train_seconds,
                r.train_cpu_seconds
                    .map_or("-".into(), |c| format!("{c:.3} s")),
                r.eval_seconds,
                r.train_traffic.bytes_sent + r.eval_traffic.bytes_sent,
                r.train_traffic.bytes_received + r.eval_traffic.bytes_received,
            );
        }
    }
}

fn load_all(args: &SplitnnArgs, common: &CommonArgs) -> anyhow::Result<(Dataset, Dataset)> {
    let dir = common.data_dir();
    let data = mnist::load(&dir, Normalization::UnitRange)
        .with_context(|| format!("loading MNIST from {}", dir.display()))?;
    let (mut train, mut test) = (data.train, data.test);
    if let Some(n) = args.train_limit {
        train = train.slice(0..n.min(train.len()));
    }
    if let Some(n) = args.test_limit {
        test = test.slice(0..n.min(test.len()));
    }
    Ok((train, test))
}

fn run_in_process(
    args: &SplitnnArgs,
    cfg: &SplitConfig,
    common: &CommonArgs,
) -> anyhow::Result<Report> {
    let (train, test) = load_all(args, common)?;
    let mut on = progress_bar(cfg.epochs);
    if args.holders > 1 {
        return run_round_robin(args, cfg, common, &train, &test, &mut on);
    }
    let run = train_in_process(&train, &test, cfg, common.seed, &mut on)?;
    let mut rep = report(&run.report, cfg, common, "in-memory");
    rep.json["remote_traffic"] = json!(run.remote.traffic);
    Ok(rep)
}

fn run_round_robin(
    args: &SplitnnArgs,
    cfg: &SplitConfig,
    common: &CommonArgs,
    train: &Dataset,
    test: &Dataset,
    on: &mut dyn FnMut(Event<'_>),
) -> anyhow::Result<Report> {
    let share = match args.bottom.as_str() {
        "shared" => true,
        "per-holder" => false,
        o => anyhow::bail!("unknown --bottom `{o}` (shared, per-holder)"),
    };
    let run = train_round_robin(train, test, cfg, common.seed, args.holders, share, on)?;
    let last = run.reports.last().context("no data holder report")?;
    let mut rep = report(last, cfg, common, "in-memory");
    let first_epoch = |r: &RunReport| {
        r.epochs
            .first()
            .map(|e| e.train_traffic + e.eval_traffic)
            .unwrap_or_default()
    };
    let per_epoch: ppml_net::ChannelStats = run.reports.iter().map(first_epoch).sum();
    let handoff: u64 = run.reports.iter().map(|r| r.peer_traffic.bytes_sent).sum();
    let epochs = cfg.epochs;
    // Shared bottom: the turns are sequential (each holder's clock starts when it has the
    // weights), so an epoch is the sum of the turns. Per-holder: the clocks overlap.
    let epoch_seconds: Option<Vec<f64>> = share.then(|| {
        (0..epochs)
            .map(|e| run.reports.iter().map(|r| r.epochs[e].train_seconds).sum())
            .collect()
    });
    let per_holder: Vec<Vec<Option<f64>>> = run
        .reports
        .iter()
        .map(|r| r.epochs.iter().map(|e| e.test_accuracy).collect())
        .collect();
    let j = &mut rep.json;
    j["holders"] = json!(args.holders);
    j["bottom"] = json!(args.bottom);
    j["per_holder_accuracy"] = json!(per_holder);
    j["epoch_seconds"] = json!(epoch_seconds);
    j["median_epoch_seconds"] = json!(epoch_seconds.as_deref().map(median));
    j["run_seconds"] = json!(run.seconds);
    j["bytes_per_epoch"] = json!({
        "forward": per_epoch.bytes_sent,
        "backward": per_epoch.bytes_received,
        "total": per_epoch.total_bytes(),
        "weight_handoffs_total": handoff,
    });
    j["rounds_per_epoch"] = json!(per_epoch.rounds);
    j["remote_traffic"] = json!(run.remote.traffic);
    rep.human = format!(
        "{} data holders ({} bottom), label holder shared; last holder's view:\n{}\nweight hand-offs between data holders: {handoff} bytes in total; run {:.2} s",
        args.holders, args.bottom, rep.human, run.seconds
    );
    Ok(rep)
}

fn run_data(
    args: &SplitnnArgs,
    cfg: &SplitConfig,
    common: &CommonArgs,
    ch: &mut Channel,
    transport: &str,
) -> anyhow::Result<Report> {
    let mut parts = split_parts(cfg.variant, common.seed)?;
    let dir = common.data_dir();
    let mut holder = match cfg.variant {
        Variant::Vanilla => {
            // Only the image files: a vanilla data holder never sees a label.
            let tr = Images::load_mnist(&dir, true)?;
            let te = Images::load_mnist(&dir, false)?;
            let tr = Images::new(cut_limit(tr.values, tr.dim, args.train_limit), tr.dim)?;
            let te = Images::new(cut_limit(te.values, te.dim, args.test_limit), te.dim)?;
            DataHolder::vanilla(parts.swap_remove(0), tr, te)?
        }
        Variant::UShaped => {
            let (train, test) = load_all(args, common)?;
            let head = parts.pop().context("no head")?;
            DataHolder::u_shaped(parts.swap_remove(0), head, train, test)?
        }
    };
    let mut on = progress_bar(cfg.epochs);
    let r = holder.run(ch, cfg, &mut on)?;
    Ok(report(&r, cfg, common, transport))
}

fn run_remote(
    args: &SplitnnArgs,
    cfg: &SplitConfig,
    common: &CommonArgs,
    ch: &mut Channel,
) -> anyhow::Result<Report> {
    let mut parts = split_parts(cfg.variant, common.seed)?;
    let rcfg = RemoteConfig {
        lr: cfg.lr,
        momentum: cfg.momentum,
        shuffle_share: cfg.shuffle_seed,
    };
    let r = match cfg.variant {
        Variant::Vanilla => {
            // Only the label files: the label holder never sees an image.
            let dir = common.data_dir();
            let tr = cut_limit(load_mnist_labels(&dir, true)?, 1, args.train_limit);
            let te = cut_limit(load_mnist_labels(&dir, false)?, 1, args.test_limit);
            let mut lh = LabelHolder::new(parts.swap_remove(1), tr, te, rcfg)?;
            lh.run(ch)?
        }
        Variant::UShaped => {
            let mut ms = MiddleServer::new(parts.swap_remove(1), rcfg)?;
            ms.run(ch)?
        }
    };
    let human = format!(
        "{} remote party: {} steps, sent {} bytes, received {} bytes, {} rounds",
        r.variant, r.steps, r.traffic.bytes_sent, r.traffic.bytes_received, r.traffic.rounds
    );
    Ok(Report {
        json: json!({
            "role": "label",
            "variant": r.variant,
            "steps": r.steps,
            "train_loss": r.train_loss,
            "traffic": r.traffic,
        }),
        human,
    })
}

fn report(r: &RunReport, cfg: &SplitConfig, common: &CommonArgs, transport: &str) -> Report {
    let acc: Vec<Option<f64>> = r.epochs.iter().map(|e| e.test_accuracy).collect();
    let secs: Vec<f64> = r.epochs.iter().map(|e| e.train_seconds).collect();
    let cpu: Vec<Option<f64>> = r.epochs.iter().map(|e| e.train_cpu_seconds).collect();
    let cpu_known: Vec<f64> = cpu.iter().flatten().copied().collect();
    let eval: Vec<f64> = r.epochs.iter().map(|e| e.eval_seconds).collect();
    let loss: Vec<f64> = r.epochs.iter().map(|e| e.train_loss).collect();
    // Every epoch moves the same bytes; report the first.
    let (tr, ev) = r
        .epochs
        .first()
        .map(|e| (e.train_traffic, e.eval_traffic))
        .unwrap_or_default();
    let json = json!({
        "variant": r.variant,
        "transport": transport,
        "epochs": cfg.epochs,
        "batch": cfg.batch,
        "lr": cfg.lr,
        "momentum": cfg.momentum,
        "threads": common.threads(),
        "seed": common.seed,
        "epoch_accuracy": acc,
        "final_accuracy": r.final_accuracy(),
        "train_loss": loss,
        "epoch_seconds": secs,
        "median_epoch_seconds": median(&secs),
        "epoch_cpu_seconds": cpu,
        "median_epoch_cpu_seconds": (!cpu_known.is_empty()).then(|| median(&cpu_known)),
        "eval_seconds": eval,
        "steps_per_epoch": r.steps_per_epoch,
        "bytes_per_batch": r.per_batch,
        "bytes_per_epoch": {
            "forward": tr.bytes_sent + ev.bytes_sent,
            "backward": tr.bytes_received + ev.bytes_received,
            "total": tr.total_bytes() + ev.total_bytes(),
            "train_forward": tr.bytes_sent,
            "train_backward": tr.bytes_received,
            "eval_forward": ev.bytes_sent,
            "eval_backward": ev.bytes_received,
        },
        "messages_per_epoch": tr.messages_sent + tr.messages_received + ev.messages_sent + ev.messages_received,
        "rounds_per_epoch": tr.rounds + ev.rounds,
        "setup_traffic": r.setup_traffic,
        "total_traffic": r.total_traffic,
    });
    let fmt_acc = |a: Option<f64>| a.map_or("-".to_string(), |a| format!("{:.2}%", 100.0 * a));
    let mut human = format!(
        "split learning ({}, {transport}): {} epochs, batch {}, lr {}\n",
        r.variant, cfg.epochs, cfg.batch, cfg.lr
    );
    for e in &r.epochs {
        human += &format!(
            "  epoch {}: loss {:.4}, test accuracy {}, train {:.3} s, eval {:.3} s\n",
            e.epoch,
            e.train_loss,
            fmt_acc(e.test_accuracy),
            e.train_seconds,
            e.eval_seconds
        );
    }
    human += &format!(
        "final accuracy {}; median epoch {:.3} s\nper full batch: {} bytes forward, {} back ({} round trip(s)); per epoch: {} forward ({} train + {} eval), {} back, {} rounds",
        fmt_acc(r.final_accuracy()),
        median(&secs),
        r.per_batch.forward,
        r.per_batch.backward,
        r.per_batch.round_trips,
        tr.bytes_sent + ev.bytes_sent,
        tr.bytes_sent,
        ev.bytes_sent,
        tr.bytes_received + ev.bytes_received,
        tr.rounds + ev.rounds,
    );
    Report { json, human }
}
