//! [`SecureAggregator`]: FedAvg's weighted average computed with secure
//! aggregation (ppml-secagg, Bonawitz et al. 2017 / SecAgg+), so that the
//! server learns only the sum of the updates.
//!
//! Weighted averaging under a sum-only protocol: client `k` with `n_k`
//! examples submits `(a_k * delta_k, a_k)` with `a_k = n_k / n_ref` (one more
//! coordinate holding its weight); the server divides the summed update by the
//! summed weight. `n_ref` is a public scale (the mean client size) that keeps
//! the submitted values near the quantiser's range; it cancels in the division.
//!
//! The protocol clips every submitted value to `[-clip, clip]` and quantises
//! it with `bits` bits, so the result differs from plain averaging by at most
//! the quantisation error (reported as [`SecureAggregator::last_error_bound`])
//! unless values were clipped ([`SecureAggregator::last_clipped`] counts them).
//! A client flagged `dropped` completes key sharing but never sends its masked
//! input (it drops at `MaskedInputCollection`); the protocol still recovers the
//! others' sum as long as at least `threshold` clients survive.

use crate::FedError;
use crate::aggregate::{AggregateInfo, Aggregator, ClientUpdate, check_updates};
use ppml_random::{PublicSeed, SecretSource};
use ppml_secagg::{AggregateOutcome, DropoutPlan, SecAggConfig, Step, aggregate_in_process};

/// Secure aggregation as an [`Aggregator`] (in-process simulation of the
/// protocol: every client and the server are separate roles on channels).
/// The clients' keys and masks come from the OS; the public seed only fixes
/// the protocol's public choices (SecAgg+ graph, session ids).
#[derive(Debug, Clone)]
pub struct SecureAggregator {
    cfg: SecAggConfig,
    seed: u64,
    secrets: SecretSource,
    inputs: Vec<Vec<f32>>,
    last_error_bound: f64,
    last_clipped: usize,
}

impl SecureAggregator {
    /// Defaults for model updates: 24-bit quantisation in `[-2, 2]`, the
    /// protocol's default threshold unless `threshold` is given, SecAgg+ if `graph`.
    pub fn new(threshold: Option<usize>, graph: bool, seed: u64) -> Result<Self, FedError> {
        Self::with_config(
            SecAggConfig {
                threshold,
                graph,
                bits: 24,
                clip: 2.0,
                ..SecAggConfig::default()
            },
            seed,
        )
    }

    /// A secure aggregator with an explicit ppml-secagg configuration.
    pub fn with_config(cfg: SecAggConfig, seed: u64) -> Result<Self, FedError> {
        if !(cfg.clip > 0.0 && cfg.clip.is_finite()) {
            return Err(FedError::Config(format!(
                "secure aggregation clip must be positive, got {}",
                cfg.clip
            )));
        }
        Ok(SecureAggregator {
            cfg,
            seed,
            secrets: SecretSource::Os,
            inputs: Vec::new(),
            last_error_bound: 0.0,
            last_clipped: 0,
        })
    }

    /// **INSECURE** (tests only): the clients' secrets from `secrets` instead
    /// of the OS.
    pub fn with_secret_source(mut self, secrets: SecretSource) -> Self {
        self.secrets = secrets;
        self
    }

    /// Per-coordinate bound on the quantisation error of the last round's sum.
    pub fn last_error_bound(&self) -> f64 {
        self.last_error_bound
    }

    /// Submitted values of the last round that exceeded the clipping range.
    pub fn last_clipped(&self) -> usize {
        self.last_clipped
    }
}

impl Aggregator for SecureAggregator {
    fn name(&self) -> String {
        let t = self
            .cfg
            .threshold
            .map_or_else(|| "default".to_string(), |t| t.to_string());
        format!(
            "secagg{} (threshold {t}, {} bits, clip {})",
            if self.cfg.graph { "+" } else { "" },
            self.cfg.bits,
            self.cfg.clip
        )
    }

    fn aggregate(
        &mut self,
        round: usize,
        updates: &[ClientUpdate<'_>],
        out: &mut [f32],
    ) -> Result<AggregateInfo, FedError> {
        check_updates(round, updates, out.len())?;
        let p = out.len();
        let n_ref = updates.iter().map(|u| u.weight).sum::<f64>() / updates.len() as f64;
        self.inputs.resize_with(updates.len(), Vec::new);
        let clip = self.cfg.clip;
        let mut clipped = 0;
        let mut drops = Vec::new();
        for (i, (u, v)) in updates.iter().zip(self.inputs.iter_mut()).enumerate() {
            let a = (u.weight / n_ref) as f32;
            v.clear();
            v.extend(u.delta.iter().map(|&d| a * d));
            v.push(a);
            clipped += v.iter().filter(|x| x.abs() > clip).count();
            if u.dropped {
                drops.push(i);
            }
        }
        let outcome = secure_sum_with(
            &self.cfg,
            self.seed,
            self.secrets,
            round,
            &self.inputs,
            &drops,
        )?;
        let wsum = outcome.sum[p];
        if wsum.is_nan() || wsum <= 0.0 {
            return Err(FedError::NoUpdates(round));
        }
        for (o, &s) in out.iter_mut().zip(&outcome.sum[..p]) {
            *o = s / wsum;
        }
        self.last_error_bound = outcome.error_bound;
        self.last_clipped = clipped;
        let mut info = AggregateInfo {
            protocol_bytes: outcome.server.traffic.total_bytes(),
            ..AggregateInfo::default()
        };
        split_survivors(&outcome, updates, &mut info, |u| u.weight);
        Ok(info)
    }
}

/// One round of secure aggregation of `inputs` (one vector per sampled
/// client); the clients at indices `dropped` leave before sending their
/// masked input. The protocol's public choices derive from the public `seed`
/// and `round` (label `fedavg/secagg/{round}`); the clients' secrets come
/// from the OS.
pub(crate) fn secure_sum(
    cfg: &SecAggConfig,
    seed: u64,
    round: usize,
    inputs: &[Vec<f32>],
    dropped: &[usize],
) -> Result<AggregateOutcome, FedError> {
    secure_sum_with(cfg, seed, SecretSource::Os, round, inputs, dropped)
}

/// [`secure_sum`] with an explicit source of the clients' secrets.
pub(crate) fn secure_sum_with(
    cfg: &SecAggConfig,
    seed: u64,
    secrets: SecretSource,
    round: usize,
    inputs: &[Vec<f32>],
    dropped: &[usize],
) -> Result<AggregateOutcome, FedError> {
    let drops: Vec<(u32, Step)> = dropped
        .iter()
        .map(|&i| (i as u32, Step::MaskedInputCollection))
        .collect();
    let plan =
        DropoutPlan::with(inputs.len(), &drops).map_err(|e| FedError::Aggregate(e.to_string()))?;
    let public = PublicSeed::new(seed).derive_u64(&format!("fedavg/secagg/{round}"));
    aggregate_in_process(inputs, cfg, &plan, public, secrets)
        .map_err(|e| FedError::Aggregate(format!("secure aggregation: {e}")))
}

/// Sorts the updates into contributors (the protocol's survivors, weighted
/// by `weight`) and dropped clients.
pub(crate) fn split_survivors(
    outcome: &AggregateOutcome,
    updates: &[ClientUpdate<'_>],
    info: &mut AggregateInfo,
    weight: impl Fn(&ClientUpdate<'_>) -> f64,
) {
    for (i, u) in updates.iter().enumerate() {
        if outcome.survivors.contains(&(i as u32)) {
            info.contributors.push(u.client);
            info.total_weight += weight(u);
        } else {
            info.dropped.push(u.client);
        }
    }
}
