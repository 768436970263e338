//! # ppml-splitnn: split learning between a data holder and a label holder
//!
//! The network `784-128-640 | 640-10` (ppml-nn's `split` architecture) is cut in two: the
//! **data holder** keeps the images and the bottom (`784-128 ReLU -640 ReLU`), the **label
//! holder** keeps the labels, the top (`640-10`) and the loss (log-softmax + NLL). Per batch
//! only the cut-layer activations travel forward and their gradient travels back; each side
//! steps its own SGD optimiser. Neither the images, nor the labels, nor either side's
//! weights cross the channel.
//!
//! Each role is the code ONE party runs over a [`ppml_net::Channel`]:
//! [`DataHolder::run`], [`LabelHolder::run`] (vanilla) and [`MiddleServer::run`]
//! (U-shaped: the data holder also keeps the last layer and the labels, only the middle
//! `128-640 ReLU` runs remotely, so labels never leave the data holder). The same code runs
//! as two threads over [`ppml_net::in_memory_pair`] ([`train_in_process`]) or as two
//! processes over TCP (`ppml splitnn --role data|label --connect/--listen ADDR`).
//!
//! Both parties derive the same order of training samples from a shuffle seed agreed in the
//! handshake, so no sample ids travel; every tensor message carries its step number and
//! shape and the receiver rejects anything but the agreed kind, step and shape
//! ([`wire::decode_tensor_into`]). The wire format (raw little-endian f32 after a 16-byte
//! header) is described in [`wire`]; one full batch of 64 moves 163,860 bytes each way.
//!
//! Evaluation also goes through the split: after every epoch the data holder sends the
//! cut-layer activations of all test images (in chunks), and the label holder (which holds
//! the test labels in the vanilla setting) answers with the number of correct predictions.
//!
//! ## What each party learns (semi-honest)
//!
//! Raw images, labels and weights never cross, but split learning is not cryptographic:
//! the label holder sees every cut-layer activation (from which inputs can be partly
//! reconstructed by model inversion) and, in the vanilla variant, the data holder sees the
//! cut gradients, which are known to leak labels (e.g. through their norms and directions,
//! Li et al. 2022). The U-shaped variant keeps labels and logits at the data holder; the
//! middle server sees only the bottom's activations and the gradients at the middle's output.
//! Both parties learn the sample order (a shared seed) and the training set size; the
//! label holder reveals the per-epoch accuracy and mean losses to the data holder.
//!
//! ## Several data holders
//!
//! [`train_round_robin`] (and [`DataHolder::run_round_robin`] / [`LabelHolder::run_round_robin`])
//! lets `K` data holders with disjoint shards take turns against one label holder. Either the
//! bottom's weights travel from holder to holder over a ring of channels (one bottom trained
//! on all shards, Gupta & Raskar's peer-to-peer mode; 183,040 f32 parameters = 732,169 bytes on the wire per
//! hand-off), or every holder keeps its own bottom and only the top is shared.
//!
//! ## Example
//!
//! ```
//! use ppml_nn::Dataset;
//! use ppml_splitnn::{SplitConfig, Variant, train_in_process};
//!
//! # fn main() -> Result<(), ppml_splitnn::SplitError> {
//! // A toy data set: 32 images of 784 pixels, the label is which half is bright.
//! let mut images = vec![0.0f32; 32 * 784];
//! let mut labels = vec![0u8; 32];
//! for i in 0..32 {
//!     let bright = i % 2;
//!     labels[i] = bright as u8;
//!     for p in 0..392 {
//!         images[i * 784 + bright * 392 + p] = 1.0;
//!     }
//! }
//! let data = Dataset::new(images, labels, 28, 28).map_err(ppml_splitnn::SplitError::Nn)?;
//! let cfg = SplitConfig { epochs: 3, batch: 8, lr: 0.1, ..SplitConfig::default() };
//! for variant in [Variant::Vanilla, Variant::UShaped] {
//!     let cfg = SplitConfig { variant, ..cfg.clone() };
//!     let out = train_in_process(&data, &data, &cfg, 7, &mut |_| {})?;
//!     assert_eq!(out.report.epochs.len(), 3);
//!     assert!(out.report.final_accuracy().unwrap_or(0.0) > 0.9);
//!     // 4 steps per epoch, each one activation message and one gradient message.
//!     assert_eq!(out.report.steps_per_epoch, 4);
//! }
//! # Ok(())
//! # }
//! ```

pub mod roles;
pub mod wire;

pub use ppml_net::ChannelStats;
pub use roles::{
    DataHolder, Images, LabelHolder, MiddleServer, RemoteConfig, RoundRobin, holder_shuffle_seed,
    load_mnist_labels, order_rng,
};
pub use wire::Variant;

use ppml_net::inprocess::{Links, Role, run_roles};
use ppml_net::{Channel, NetConfig, NetError, Network};
use ppml_nn::{Dataset, Model, NnError};
use serde::Serialize;

/// Errors of split learning.
#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    /// The channel failed (peer disconnected, timeout, ...) while doing `during`.
    /// (`source` is part of the message and deliberately not chained, so error reports
    /// that print the chain do not repeat it.)
    #[error("{during}: {source}")]
    Net { during: String, source: NetError },
    /// The peer sent something other than what the protocol expects at this point.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The peer refused the session parameters.
    #[error("the peer rejected the session: {0}")]
    Rejected(String),
    /// Invalid parameters or models.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An error of ppml-nn (data files, shapes).
    #[error(transparent)]
    Nn(#[from] NnError),
    /// A party thread panicked (a bug).
    #[error("party thread panicked: {0}")]
    Panic(String),
}

impl SplitError {
    pub(crate) fn net(source: NetError, during: impl Into<String>) -> Self {
        SplitError::Net {
            during: during.into(),
            source,
        }
    }
}

/// The session the data holder proposes (the remote party accepts its batch, epochs, seed).
#[derive(Debug, Clone, PartialEq)]
pub struct SplitConfig {
    pub variant: Variant,
    pub epochs: usize,
    pub batch: usize,
    /// The data holder's learning rate (the remote party has its own, [`RemoteConfig`]).
    pub lr: f32,
    pub momentum: f32,
    /// Public seed of the shared sample order (holder `i` announces
    /// [`holder_shuffle_seed`]`(shuffle_seed, i)` and both parties draw from
    /// [`order_rng`] of it, as ppml-nn's `train_epoch` does: a split run
    /// visits the samples in the same order as an unsplit one).
    pub shuffle_seed: u64,
    /// Test images per evaluation message.
    pub eval_chunk: usize,
    /// Evaluate on the test set after every epoch (through the split).
    pub evaluate: bool,
}

impl Default for SplitConfig {
    /// The seed tutorial's setting: vanilla, 5 epochs, batch 64, plain SGD lr 0.03.
    fn default() -> Self {
        SplitConfig {
            variant: Variant::Vanilla,
            epochs: 5,
            batch: 64,
            lr: 0.03,
            momentum: 0.0,
            shuffle_seed: 42,
            eval_chunk: 1000,
            evaluate: true,
        }
    }
}

/// One epoch, seen by the data holder.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpochReport {
    /// 1-based.
    pub epoch: usize,
    /// Mean training loss (vanilla: reported by the label holder).
    pub train_loss: f64,
    /// Test accuracy on the whole test set, if evaluated.
    pub test_accuracy: Option<f64>,
    pub test_loss: Option<f64>,
    /// Wall time of the training batches, all messaging included.
    pub train_seconds: f64,
    /// CPU time of this process during the training batches (Linux: summed over all its
    /// threads from `/proc/self/task/*/schedstat`; in process it covers both parties).
    pub train_cpu_seconds: Option<f64>,
    /// Wall time of the evaluation through the split.
    pub eval_seconds: f64,
    /// The data holder's channel traffic during training (sent = forward direction).
    pub train_traffic: ChannelStats,
    /// ... and during evaluation.
    pub eval_traffic: ChannelStats,
}

/// Bytes of one full batch on the wire (ppml-net frame prefix and tensor header included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BatchBytes {
    /// Data holder -> remote.
    pub forward: u64,
    /// Remote -> data holder.
    pub backward: u64,
    /// Messages per batch (both directions).
    pub messages: u64,
    /// Round trips per batch.
    pub round_trips: u64,
}

/// What a run did, seen by the data holder.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    pub variant: String,
    pub batch: usize,
    pub steps_per_epoch: usize,
    pub epochs: Vec<EpochReport>,
    /// One full batch.
    pub per_batch: BatchBytes,
    /// Handshake traffic.
    pub setup_traffic: ChannelStats,
    /// Everything on the data holder's channel.
    pub total_traffic: ChannelStats,
    /// Round-robin with a shared bottom: the weight hand-offs to and from the other data
    /// holders (zero otherwise).
    pub peer_traffic: ChannelStats,
}

impl RunReport {
    /// Test accuracy after the last epoch.
    pub fn final_accuracy(&self) -> Option<f64> {
        self.epochs.last().and_then(|e| e.test_accuracy)
    }
}

/// What the remote party (label holder / middle server) saw.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RemoteReport {
    pub variant: String,
    pub steps: usize,
    /// Vanilla: mean training loss per epoch.
    pub train_loss: Vec<f64>,
    pub traffic: ChannelStats,
}

/// Progress notifications of [`DataHolder::run`].
#[derive(Debug)]
pub enum Event<'a> {
    /// `step` of `steps` (1-based) of `epoch` (1-based) is done.
    Step {
        epoch: usize,
        step: usize,
        steps: usize,
    },
    /// An epoch (and its evaluation) is done.
    Epoch(&'a EpochReport),
}

/// CPU time consumed so far by all live threads of this process, in seconds (Linux only:
/// the sum of the first field of `/proc/self/task/*/schedstat`, in nanoseconds). Wall time on
/// a shared machine includes waiting for a core; this does not.
pub fn process_cpu_seconds() -> Option<f64> {
    let mut ns = 0u64;
    for t in std::fs::read_dir("/proc/self/task").ok()? {
        let Ok(t) = t else { continue };
        // A thread may exit between listing and reading: skip it.
        if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
            ns += s.split_whitespace().next()?.parse::<u64>().ok()?;
        }
    }
    Some(ns as f64 * 1e-9)
}

/// The parts of ppml-nn's `split` architecture for a variant:
/// vanilla `[bottom 784-128-640, top 640-10]`, U-shaped
/// `[bottom 784-128, middle 128-640, head 640-10]` (ReLUs stay with the layer before them).
pub fn split_parts(variant: Variant, seed: u64) -> Result<Vec<Model>, SplitError> {
    let full = Model::from_arch("split", seed)?;
    let cut = full
        .default_cut()
        .ok_or_else(|| SplitError::Config("the split architecture has no cut".into()))?;
    match variant {
        Variant::Vanilla => {
            let (a, b) = full.split_at(cut)?;
            Ok(vec![a, b])
        }
        Variant::UShaped => {
            let (bottom, rest) = full.split_at(2)?;
            let (middle, head) = rest.split_at(cut - 2)?;
            Ok(vec![bottom, middle, head])
        }
    }
}

/// Result of [`train_in_process`]: the data holder's report and its trained models
/// (vanilla: bottom; U-shaped: bottom and head), the remote's report and model.
#[derive(Debug)]
pub struct InProcessRun {
    pub report: RunReport,
    pub remote: RemoteReport,
    pub data_models: Vec<Model>,
    pub remote_model: Model,
}

/// Trains the `split` model (initialised from `init_seed`) with both parties as threads of
/// this process over an in-memory channel pair. The remote party (label holder or middle
/// server) runs on a spawned thread with `cfg.lr` and `cfg.momentum`; the data holder on
/// the calling thread. `train` and `test` are split between the roles: the data holder
/// gets the images (and, U-shaped, the labels), the label holder only the labels.
pub fn train_in_process(
    train: &Dataset,
    test: &Dataset,
    cfg: &SplitConfig,
    init_seed: u64,
    on: &mut dyn FnMut(Event<'_>),
) -> Result<InProcessRun, SplitError> {
    let mut parts = split_parts(cfg.variant, init_seed)?;
    let rcfg = RemoteConfig {
        lr: cfg.lr,
        momentum: cfg.momentum,
        shuffle_share: cfg.shuffle_seed,
    };
    match cfg.variant {
        Variant::Vanilla => {
            let top = parts
                .pop()
                .ok_or_else(|| SplitError::Config("no top".into()))?;
            let bottom = parts
                .pop()
                .ok_or_else(|| SplitError::Config("no bottom".into()))?;
            let mut label = LabelHolder::new(top, train.labels.clone(), test.labels.clone(), rcfg)?;
            let data = DataHolder::vanilla(
                bottom,
                Images::from_dataset(train),
                Images::from_dataset(test),
            )?;
            let remote = move |ch: &mut Channel| {
                let r = label.run(ch);
                (r, label.into_model())
            };
            run_pair("label holder", data, remote, cfg, on)
        }
        Variant::UShaped => {
            let head = parts
                .pop()
                .ok_or_else(|| SplitError::Config("no head".into()))?;
            let middle = parts
                .pop()
                .ok_or_else(|| SplitError::Config("no middle".into()))?;
            let bottom = parts
                .pop()
                .ok_or_else(|| SplitError::Config("no bottom".into()))?;
            let mut server = MiddleServer::new(middle, rcfg)?;
            let data = DataHolder::u_shaped(bottom, head, train.clone(), test.clone())?;
            let remote = move |ch: &mut Channel| {
                let r = server.run(ch);
                (r, server.into_model())
            };
            run_pair("middle server", data, remote, cfg, on)
        }
    }
}

/// What each role of [`run_pair`] hands back.
enum PairOutput {
    Data(RunReport, Vec<Model>),
    Remote(RemoteReport, Model),
}

impl ppml_net::inprocess::HangUp for SplitError {
    fn is_hang_up(&self) -> bool {
        matches!(self, SplitError::Net { source, .. } if source.is_hang_up())
    }
}

impl From<ppml_net::inprocess::RoleError<SplitError>> for SplitError {
    fn from(e: ppml_net::inprocess::RoleError<SplitError>) -> Self {
        use ppml_net::inprocess::RoleError;
        match e {
            RoleError::Failed { error, .. } => error,
            RoleError::Panicked { role } => SplitError::Panic(role),
            RoleError::Setup(e) => SplitError::net(e, "setting up the in-process roles"),
        }
    }
}

/// Runs the data holder on this thread and the remote role (`remote_name`) on
/// its own, linked by an in-memory channel ([`ppml_net::inprocess`]), and
/// gathers both results.
fn run_pair(
    remote_name: &str,
    mut data: DataHolder,
    remote: impl FnOnce(&mut Channel) -> (Result<RemoteReport, SplitError>, Model) + Send,
    cfg: &SplitConfig,
    on: &mut dyn FnMut(Event<'_>),
) -> Result<InProcessRun, SplitError> {
    let data_role = Role::here(move |net: &mut Network| {
        let ch = net
            .channel(1)
            .map_err(|e| SplitError::net(e, "the data holder's link"))?;
        let report = data.run(ch, cfg, on)?;
        Ok(PairOutput::Data(report, data.into_models()))
    });
    let remote_role = Role::thread(move |net: &mut Network| {
        let ch = net
            .channel(0)
            .map_err(|e| SplitError::net(e, "the remote party's link"))?;
        let (report, model) = remote(ch);
        Ok(PairOutput::Remote(report?, model))
    });
    let runs = run_roles(
        &["data holder", remote_name],
        &Links::Mesh,
        &NetConfig::default(),
        vec![data_role, remote_role],
    )?;
    let mut it = runs.into_iter().map(|r| r.output);
    match (it.next(), it.next()) {
        (Some(PairOutput::Data(report, data_models)), Some(PairOutput::Remote(remote, model))) => {
            Ok(InProcessRun {
                report,
                remote,
                data_models,
                remote_model: model,
            })
        }
        // Cannot happen: the runner returns the roles' outputs in role order.
        _ => Err(SplitError::Config("in-process roles out of order".into())),
    }
}

/// Result of [`train_round_robin`].
#[derive(Debug)]
pub struct RoundRobinRun {
    /// One report per data holder (holder `count - 1` trains last in every epoch).
    pub reports: Vec<RunReport>,
    pub remote: RemoteReport,
    /// Every holder's bottom at the end, in holder order. Shared: holder `k` keeps the
    /// bottom as it handed it on after its last turn, so the last one is the trained bottom.
    pub bottoms: Vec<Model>,
    pub top: Model,
    /// Wall time of the whole run.
    pub seconds: f64,
}

/// Vanilla split learning with `holders` data holders taking turns against one label holder,
/// all as threads of this process over in-memory channels. The training set is cut into
/// `holders` contiguous shards; every epoch, holder 0 trains over its shard, then holder 1,
/// and so on, each followed by an evaluation of its bottom + the shared top on `test`. With
/// `share_bottom`, the bottom's weights go from each holder to the next (a ring of channels
/// between data holders, as in Gupta & Raskar's peer-to-peer mode), so one bottom is trained
/// on all shards; otherwise every holder keeps its own bottom and only the top is shared.
pub fn train_round_robin(
    train: &Dataset,
    test: &Dataset,
    cfg: &SplitConfig,
    init_seed: u64,
    holders: usize,
    share_bottom: bool,
    on: &mut dyn FnMut(Event<'_>),
) -> Result<RoundRobinRun, SplitError> {
    if cfg.variant != Variant::Vanilla {
        return Err(SplitError::Config(
            "round-robin is implemented for the vanilla variant".into(),
        ));
    }
    let n = train.len();
    if holders == 0 || holders > n {
        return Err(SplitError::Config(format!(
            "{holders} data holders for {n} training images"
        )));
    }
    let mut parts = split_parts(Variant::Vanilla, init_seed)?;
    let top = parts
        .pop()
        .ok_or_else(|| SplitError::Config("no top".into()))?;
    let bottom = parts
        .pop()
        .ok_or_else(|| SplitError::Config("no bottom".into()))?;
    let mut label = LabelHolder::new(
        top,
        train.labels.clone(),
        test.labels.clone(),
        RemoteConfig {
            lr: cfg.lr,
            momentum: cfg.momentum,
            shuffle_share: cfg.shuffle_seed,
        },
    )?;
    // Role 0 is the label holder, role 1 + k data holder k. Every holder is
    // linked to the label holder and, sharing the bottom, to the next holder
    // of the ring (with two holders, one link serves both ways).
    let ring = share_bottom && holders > 1;
    let mut pairs: Vec<(usize, usize)> = (1..=holders).map(|k| (0, k)).collect();
    if ring {
        for k in 0..holders {
            let (a, b) = (1 + k, 1 + (k + 1) % holders);
            let pair = (a.min(b), a.max(b));
            if !pairs.contains(&pair) {
                pairs.push(pair);
            }
        }
    }
    let mut names = vec!["label holder".to_owned()];
    names.extend((0..holders).map(|k| format!("data holder {k}")));
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let p = train.pixels();
    let test_images = Images::from_dataset(test);
    let mut roles = Vec::with_capacity(holders + 1);
    roles.push(Role::thread(move |net: &mut Network| {
        let mut chans = net.take().into_channels();
        let mut to_holders: Vec<Channel> = (1..=holders)
            .filter_map(|k| chans.get_mut(k).and_then(Option::take))
            .collect();
        let report = label.run_round_robin(&mut to_holders)?;
        Ok(RoundRobinOutput::Label(report, label.into_model()))
    }));
    let mut on = Some(on);
    for k in 0..holders {
        let shard = (k * n / holders)..((k + 1) * n / holders);
        let images = Images::new(train.images[shard.start * p..shard.end * p].to_vec(), p)?;
        let mut holder = DataHolder::vanilla(bottom.clone(), images, test_images.clone())?;
        let prev = 1 + (k + holders - 1) % holders;
        let next = 1 + (k + 1) % holders;
        let run = move |net: &mut Network,
                        on: &mut dyn FnMut(Event<'_>)|
              -> Result<RoundRobinOutput, SplitError> {
            let mut chans = net.take().into_channels();
            let mut take = |i: usize| chans.get_mut(i).and_then(Option::take);
            let mut ch = take(0).ok_or_else(|| {
                SplitError::Config(format!("data holder {k} has no link to the label holder"))
            })?;
            let (prev_ch, next_ch) = match (ring, holders) {
                (false, _) => (None, None),
                (true, 2) => (take(prev), None),
                (true, _) => (take(prev), take(next)),
            };
            let mut rr = RoundRobin {
                index: k,
                count: holders,
                share_bottom,
                prev: prev_ch,
                next: next_ch,
            };
            let report = holder.run_round_robin(&mut ch, cfg, &mut rr, on)?;
            Ok(RoundRobinOutput::Data(report, holder.into_models()))
        };
        // The last holder runs on this thread, with the progress callback.
        if k + 1 == holders {
            let on = on
                .take()
                .ok_or_else(|| SplitError::Config("no progress callback".into()))?;
            roles.push(Role::here(move |net: &mut Network| run(net, on)));
        } else {
            roles.push(Role::thread(move |net: &mut Network| run(net, &mut |_| {})));
        }
    }
    let t0 = std::time::Instant::now();
    let runs = run_roles(&names, &Links::Pairs(pairs), &NetConfig::default(), roles)?;
    let seconds = t0.elapsed().as_secs_f64();
    let mut reports = Vec::with_capacity(holders);
    let mut bottoms = Vec::with_capacity(holders);
    let mut remote = None;
    for r in runs {
        match r.output {
            RoundRobinOutput::Label(rep, top) => remote = Some((rep, top)),
            RoundRobinOutput::Data(rep, mut models) => {
                reports.push(rep);
                bottoms.append(&mut models);
            }
        }
    }
    let (remote, top) =
        remote.ok_or_else(|| SplitError::Config("no label holder output".into()))?;
    Ok(RoundRobinRun {
        reports,
        remote,
        bottoms,
        top,
        seconds,
    })
}

/// What each role of [`train_round_robin`] hands back.
enum RoundRobinOutput {
    Label(RemoteReport, Model),
    Data(RunReport, Vec<Model>),
}
