//! What the data owner learns from a private inference, and private scoring.
//!
//! [`Reveal`] is the data owner's choice, announced to every party before the
//! first batch:
//! - [`Reveal::Classes`]: P0 and P1 send it their shares of each predicted
//!   class; it alone reconstructs them.
//! - [`Reveal::ClassesAndLogits`]: also the shares of the logits. Logits
//!   reveal more of the model than classes (confidence, margins, enough
//!   queries approximate the weights): only ask for them when needed.
//! - [`Reveal::CorrectCount`] (`--private-eval`, seed 003's "only the final
//!   score is decrypted"): the data owner secret-shares its labels too (masked
//!   exactly like its images); P0 and P1 compute shares of
//!   `[pred_i == label_i]` and sum them; only that sum is opened, to the model
//!   owner and the data owner. Neither learns any prediction.
//!
//! Equality on shares: for integers `d = pred - label`,
//! `[d == 0] = DReLU(d) - DReLU(d - 1)` (`[d >= 0] - [d >= 1]`); both DReLUs
//! run as one vectorised SecureNN comparison of `2n` elements, no
//! multiplication. `|d| <= 255`, far inside the comparison range.
//!
//! ```
//! use ppml_nn::Model;
//! use ppml_smpc::scoring::{Reveal, run_private};
//! let model = Model::from_arch("net-a", 1).unwrap();
//! let images = vec![0.1f32; 3 * 784];
//! let plain = model.predict(&images, 3);
//! let labels = [plain[0], plain[1], (plain[2] + 1) % 10];
//! let cfg = ppml_smpc::InferConfig::default();
//! let r = run_private(&model, &images, Some(&labels), Reveal::CorrectCount, &cfg).unwrap();
//! assert_eq!(r.correct, Some(2));
//! assert!(r.predictions.is_empty(), "the data owner learns no prediction");
//! ```

use crate::SmpcError;
use crate::beaver;
use crate::compare;
use crate::error::expect_len;
use crate::inference::{
    DEFAULT_INPUT_RANGE, InferConfig, ModelPlan, PartyTraffic, RoleInput, run_role_full,
};
use crate::party::{DATA_OWNER, MODEL_OWNER, P0, P1, P2, Party};
use crate::sim::{self, PartyRun};
use ppml_net::{NetConfig, Network};
use ppml_nn::Model;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// What the data owner learns (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Reveal {
    /// The predicted class of each image.
    #[default]
    Classes,
    /// The predicted classes and the logits.
    ClassesAndLogits,
    /// Only the number of correct predictions (labels secret-shared too).
    CorrectCount,
}

/// What a role learned from a run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RoleOutput {
    /// Data owner: the predicted classes (empty under [`Reveal::CorrectCount`]).
    pub predictions: Vec<u8>,
    /// Data owner with [`Reveal::ClassesAndLogits`]: `images x outputs` logits.
    pub logits: Vec<f32>,
    /// Data owner and model owner under [`Reveal::CorrectCount`]: the
    /// number of correct predictions.
    pub correct: Option<u64>,
    /// Data owner with batches of one: each query's latency.
    pub latencies: Vec<std::time::Duration>,
}

/// P0, P1, P2: given this party's shares of the `n` predicted classes
/// (P2: empty), receive the labels (masked by the data owner), compute
/// shares of the number of correct predictions and send them to both owners.
pub fn count_correct(party: &mut Party, n: usize, preds: &[u64]) -> Result<(), SmpcError> {
    let labels = beaver::mask_from_owner(party, n)?;
    if party.id == P2 {
        compare::drelu(party, 2 * n, &[])?;
        return Ok(());
    }
    expect_len("prediction shares", preds.len(), n)?;
    // Shares of the labels: P0 holds e + a0, P1 holds a1 (e = l - a0 - a1).
    let p0 = party.id == P0;
    let mut d = vec![0u64; 2 * n];
    for i in 0..n {
        let l = if p0 {
            labels.e[i].wrapping_add(labels.a[i])
        } else {
            labels.a[i]
        };
        let di = preds[i].wrapping_sub(l);
        d[i] = di;
        // d - 1: the public constant is subtracted by one party only.
        d[n + i] = if p0 { di.wrapping_sub(1) } else { di };
    }
    let bits = compare::drelu(party, 2 * n, &d)?;
    let share = (0..n).fold(0u64, |acc, i| {
        acc.wrapping_add(bits[i].wrapping_sub(bits[n + i]))
    });
    party.send_u64s(MODEL_OWNER, &[share])?;
    party.send_u64s(DATA_OWNER, &[share])?;
    Ok(())
}

/// An owner's side: reconstructs the count of correct predictions among `n`.
pub fn receive_count(party: &mut Party, n: usize) -> Result<u64, SmpcError> {
    let s0 = party.recv_len(P0, 1, "count share")?;
    let s1 = party.recv_len(P1, 1, "count share")?;
    let c = s0[0].wrapping_add(s1[0]);
    if c > n as u64 {
        return Err(SmpcError::Shape(format!(
            "reconstructed count {c} exceeds the {n} images"
        )));
    }
    Ok(c)
}

/// The data owner's side of private scoring: shares its labels (masked
/// like its images) and reconstructs the count.
pub fn share_labels_and_receive_count(party: &mut Party, labels: &[u8]) -> Result<u64, SmpcError> {
    let enc: Vec<u64> = labels.iter().map(|&l| u64::from(l)).collect();
    beaver::send_input_as_owner(party, &enc)?;
    receive_count(party, labels.len())
}

/// The result of [`run_private`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PrivateReport {
    pub arch: String,
    pub images: usize,
    pub batch: usize,
    pub reveal: Reveal,
    /// The data owner's predictions (empty under [`Reveal::CorrectCount`]).
    #[serde(skip)]
    pub predictions: Vec<u8>,
    /// The data owner's logits with [`Reveal::ClassesAndLogits`].
    #[serde(skip)]
    pub logits: Vec<f32>,
    /// Under [`Reveal::CorrectCount`]: the count the data owner reconstructed.
    pub correct: Option<u64>,
    /// Under [`Reveal::CorrectCount`]: the count the model owner reconstructed.
    pub model_owner_correct: Option<u64>,
    pub seconds: f64,
    pub images_per_second: f64,
    /// Sum over all five roles of the bytes sent.
    pub bytes_total: u64,
    pub bytes_per_image: f64,
    /// Largest number of rounds of a computing party.
    pub rounds: u64,
    pub frac_bits: u32,
    pub cmp_bits: u32,
    /// Width of each comparison stage, proven by the model owner's range analysis.
    pub cmp_widths: Vec<u32>,
    /// `exact` or `local`.
    pub truncation: String,
    /// Bound on the probability that a local truncation fails (0 when exact).
    pub truncation_failure_per_image: f64,
    /// The inputs' declared range.
    pub input_range: (f64, f64),
    /// Per role: p0, p1, p2, model-owner, data-owner.
    pub parties: Vec<PartyTraffic>,
}

/// Runs private inference of `model` on `images` (normalised as the model
/// expects) with the five roles as threads of this process; the data owner
/// learns what `reveal` says. `labels` are needed for
/// [`Reveal::CorrectCount`] and otherwise unused.
pub fn run_private(
    model: &Model,
    images: &[f32],
    labels: Option<&[u8]>,
    reveal: Reveal,
    cfg: &InferConfig,
) -> Result<PrivateReport, SmpcError> {
    let per = model.input_size();
    if per == 0 || !images.len().is_multiple_of(per) {
        return Err(SmpcError::Shape(format!(
            "{} values are not a whole number of {per}-value images",
            images.len()
        )));
    }
    let count = images.len() / per;
    // The model owner's analysis (repeated here for the report; a model whose
    // values cannot be computed exactly fails before any party starts).
    let ranges = ModelPlan::for_protocol(model, &cfg.protocol, DEFAULT_INPUT_RANGE)?.ranges;
    RoleInput::DataReveal {
        images,
        labels,
        batch: cfg.batch,
        reveal,
    }
    .validate()?;
    let nets = Network::in_memory(5, &NetConfig::default().with_timeout(cfg.timeout));
    let start = Instant::now();
    let runs: Vec<PartyRun<RoleOutput>> =
        sim::run_networks(nets, cfg.protocol, cfg.secrets, |party| {
            let input = match party.id {
                MODEL_OWNER => RoleInput::Model(model),
                DATA_OWNER => RoleInput::DataReveal {
                    images,
                    labels,
                    batch: cfg.batch,
                    reveal,
                },
                _ => RoleInput::Computing,
            };
            run_role_full(party, &input)
        })?;
    let seconds = start.elapsed().as_secs_f64();
    let parties: Vec<PartyTraffic> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| PartyTraffic::from_stats(i, &r.stats))
        .collect();
    let bytes_total: u64 = parties.iter().map(|p| p.bytes_sent).sum();
    let mut runs = runs;
    let model_owner_correct = runs[MODEL_OWNER].output.correct;
    let out = std::mem::take(&mut runs[DATA_OWNER].output);
    if reveal != Reveal::CorrectCount {
        expect_len("predictions", out.predictions.len(), count)?;
    }
    Ok(PrivateReport {
        arch: model.arch.clone(),
        images: count,
        batch: cfg.batch,
        reveal,
        predictions: out.predictions,
        logits: out.logits,
        correct: out.correct,
        model_owner_correct,
        seconds,
        images_per_second: count as f64 / seconds.max(1e-9),
        bytes_total,
        bytes_per_image: bytes_total as f64 / count.max(1) as f64,
        rounds: parties[..3].iter().map(|p| p.rounds).max().unwrap_or(0),
        frac_bits: cfg.protocol.frac_bits,
        cmp_bits: cfg.protocol.cmp_bits,
        cmp_widths: ranges.widths,
        truncation: cfg.protocol.truncation.to_string(),
        truncation_failure_per_image: ranges.truncation_failure_per_image,
        input_range: ranges.input_range,
        parties,
    })
}
