//! The aggregation step, as a trait: plain weighted averaging here, secure
//! aggregation (ppml-secagg) as another implementation, without touching the
//! round loop.

use crate::FedError;

/// One sampled client's contribution to a round.
#[derive(Debug, Clone, Copy)]
pub struct ClientUpdate<'a> {
    /// Client index (into the partition).
    pub client: usize,
    /// Model delta `w_local - w_global`, laid out like `Model::params_flat`.
    pub delta: &'a [f32],
    /// Weight of the update (McMahan: the client's number of training examples).
    pub weight: f64,
    /// The client trained but its update never reached the server (it dropped
    /// out or timed out). Plain averaging skips it; secure aggregation must
    /// still recover the sum of the others.
    pub dropped: bool,
}

/// What an aggregation did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AggregateInfo {
    /// Clients whose update is in the average.
    pub contributors: Vec<usize>,
    /// Clients whose update is not (dropped out).
    pub dropped: Vec<usize>,
    /// Sum of the contributors' weights.
    pub total_weight: f64,
    /// Bytes the aggregation protocol itself exchanged (secure aggregation:
    /// keys, shares, masked inputs, unmasking), replacing the plain upload
    /// estimate in round byte counts; 0 for plain averaging.
    pub protocol_bytes: u64,
}

/// Turns the round's client updates into the average update the server applies.
pub trait Aggregator: Send {
    /// Short name for reports (`"weighted-mean"`, `"secagg"`, ...).
    fn name(&self) -> String;

    /// Writes into `out` the weighted average of the non-dropped updates:
    /// `sum_k w_k delta_k / sum_k w_k`. Errors if no update survives, if the
    /// lengths disagree, or if the weights are not positive and finite.
    fn aggregate(
        &mut self,
        round: usize,
        updates: &[ClientUpdate<'_>],
        out: &mut [f32],
    ) -> Result<AggregateInfo, FedError>;

    /// `(epsilon, delta)` spent so far, for differentially private aggregators.
    fn privacy_spent(&self) -> Option<(f64, f64)> {
        None
    }
}

/// Checks lengths and weights; returns the surviving updates' weight sum.
pub(crate) fn check_updates(
    round: usize,
    updates: &[ClientUpdate<'_>],
    len: usize,
) -> Result<f64, FedError> {
    let mut total = 0.0;
    let mut any = false;
    for u in updates {
        if u.delta.len() != len {
            return Err(FedError::Aggregate(format!(
                "client {} sent {} values, the model has {len}",
                u.client,
                u.delta.len()
            )));
        }
        if !(u.weight > 0.0 && u.weight.is_finite()) {
            return Err(FedError::Aggregate(format!(
                "client {} has weight {} (must be positive and finite)",
                u.client, u.weight
            )));
        }
        if !u.dropped {
            total += u.weight;
            any = true;
        }
    }
    if !any {
        return Err(FedError::NoUpdates(round));
    }
    Ok(total)
}

/// FedAvg's aggregation: the average of the updates weighted by example count.
///
/// Accumulates in `f32` with the normalised weights `w_k / sum w` (one fused
/// pass per update, no allocation once the round loop runs).
#[derive(Debug, Clone, Default)]
pub struct WeightedAverage;

impl Aggregator for WeightedAverage {
    fn name(&self) -> String {
        "weighted-mean".into()
    }

    fn aggregate(
        &mut self,
        round: usize,
        updates: &[ClientUpdate<'_>],
        out: &mut [f32],
    ) -> Result<AggregateInfo, FedError> {
        let total = check_updates(round, updates, out.len())?;
        let mut info = AggregateInfo {
            total_weight: total,
            ..AggregateInfo::default()
        };
        let mut first = true;
        for u in updates {
            if u.dropped {
                info.dropped.push(u.client);
                continue;
            }
            info.contributors.push(u.client);
            let a = (u.weight / total) as f32;
            if first {
                for (o, &d) in out.iter_mut().zip(u.delta) {
                    *o = a * d;
                }
                first = false;
            } else {
                for (o, &d) in out.iter_mut().zip(u.delta) {
                    *o += a * d;
                }
            }
        }
        Ok(info)
    }
}

/// DP-FedAvg's aggregation (McMahan, Ramage, Talwar, Zhang 2018), on the
/// [`crate::dp`] module: every delivered update is clipped to L2 norm `clip`,
/// the clipped updates are summed with **uniform** weights, Gaussian noise
/// `N(0, (z clip)^2 I)` is added to the sum, and the result is divided by the
/// expected number of participants `q N` (fixed denominator, not the number
/// that reported). An RDP accountant tracks `(epsilon, delta)` round by round
/// (Poisson sampling at rate `q` assumed; fixed-size sampling approximates it).
#[derive(Debug, Clone)]
pub struct DpAggregator {
    cfg: crate::dp::DpConfig,
    q: f64,
    expected: f64,
    rng: rand_chacha::ChaCha20Rng,
    acct: crate::dp::RdpAccountant,
    buf: Vec<f32>,
    last_clipped: usize,
    /// With secure aggregation: the protocol's configuration, its seed, and
    /// the clipped inputs of the round.
    secure: Option<(ppml_secagg::SecAggConfig, u64)>,
    inputs: Vec<Vec<f32>>,
}

impl DpAggregator {
    /// DP aggregation for `clients` clients sampled with rate `q`; noise seeded by `seed`.
    pub fn new(
        cfg: crate::dp::DpConfig,
        q: f64,
        clients: usize,
        seed: u64,
    ) -> Result<Self, FedError> {
        cfg.validate()
            .map_err(|e| FedError::Config(e.to_string()))?;
        let expected = q * clients as f64;
        if !(q > 0.0 && q <= 1.0) || expected <= 0.0 {
            return Err(FedError::Config(format!(
                "DP sampling rate must be in (0, 1], got {q}"
            )));
        }
        Ok(DpAggregator {
            cfg,
            q,
            expected,
            rng: <rand_chacha::ChaCha20Rng as rand::SeedableRng>::seed_from_u64(
                seed ^ 0x0044_504e_4f49_5345,
            ),
            acct: crate::dp::RdpAccountant::new(),
            buf: Vec::new(),
            last_clipped: 0,
            secure: None,
            inputs: Vec::new(),
        })
    }

    /// Sums the clipped updates with secure aggregation instead of in the
    /// clear: the server unmasks only the sum and adds the Gaussian noise to
    /// it (central DP with a server trusted to add noise, but not to see
    /// individual updates). Each client's clipped update is quantised to
    /// `bits` bits per coordinate in `[-clip, clip]`; clipping is tightened by
    /// the rounding margin so that the quantised contribution still has L2
    /// norm at most `clip`, which keeps the accountant's sensitivity exact.
    pub fn with_secure_aggregation(
        mut self,
        threshold: Option<usize>,
        graph: bool,
        seed: u64,
    ) -> Self {
        let cfg = ppml_secagg::SecAggConfig {
            threshold,
            graph,
            bits: 24,
            clip: self.cfg.clip as f32,
            ..ppml_secagg::SecAggConfig::default()
        };
        self.secure = Some((cfg, seed));
        self
    }

    /// Privacy spent so far at the configured delta.
    pub fn spent(&self) -> Result<crate::dp::PrivacySpent, FedError> {
        self.acct
            .spent(self.cfg.delta)
            .map_err(|e| FedError::Aggregate(e.to_string()))
    }

    /// Updates clipped in the last round.
    pub fn last_clipped(&self) -> usize {
        self.last_clipped
    }
}

impl Aggregator for DpAggregator {
    fn name(&self) -> String {
        format!(
            "dp-fedavg (clip {}, noise multiplier {}, delta {})",
            self.cfg.clip, self.cfg.noise_multiplier, self.cfg.delta
        )
    }

    fn aggregate(
        &mut self,
        round: usize,
        updates: &[ClientUpdate<'_>],
        out: &mut [f32],
    ) -> Result<AggregateInfo, FedError> {
        let dp_err = |e: crate::dp::DpError| FedError::Aggregate(e.to_string());
        // Weights are not used (uniform), but lengths and emptiness are checked alike.
        check_updates(round, updates, out.len())?;
        out.fill(0.0);
        let mut info = AggregateInfo::default();
        self.last_clipped = 0;
        let clip = match &self.secure {
            // Half a quantisation step per coordinate can add this much norm.
            Some((sa, _)) => {
                let step = 2.0 * f64::from(sa.clip) / ((1u64 << sa.bits) - 1) as f64;
                self.cfg.clip - (out.len() as f64).sqrt() * step / 2.0
            }
            None => self.cfg.clip,
        };
        if clip <= 0.0 {
            return Err(FedError::Config(format!(
                "clip {} is below the quantisation margin of a {}-dimensional update",
                self.cfg.clip,
                out.len()
            )));
        }
        self.inputs.resize_with(updates.len(), Vec::new);
        let mut dropped = Vec::new();
        for (i, u) in updates.iter().enumerate() {
            if u.dropped {
                dropped.push(i);
                if self.secure.is_none() {
                    info.dropped.push(u.client);
                }
                continue;
            }
            self.buf.clear();
            self.buf.extend_from_slice(u.delta);
            let scale = crate::dp::clip_update(&mut self.buf, clip).map_err(dp_err)?;
            if scale < 1.0 {
                self.last_clipped += 1;
            }
            if self.secure.is_some() {
                std::mem::swap(&mut self.inputs[i], &mut self.buf);
            } else {
                for (o, &d) in out.iter_mut().zip(&self.buf) {
                    *o += d;
                }
                info.contributors.push(u.client);
                info.total_weight += 1.0;
            }
        }
        if let Some((sa, seed)) = &self.secure {
            // A dropped client's slot keeps a zero vector of the right length;
            // the protocol drops it before it sends anything.
            for &i in &dropped {
                self.inputs[i].clear();
                self.inputs[i].resize(out.len(), 0.0);
            }
            let outcome = crate::secure::secure_sum(sa, *seed, round, &self.inputs, &dropped)?;
            out.copy_from_slice(&outcome.sum[..out.len()]);
            info.protocol_bytes = outcome.bytes;
            crate::secure::split_survivors(&outcome, updates, &mut info, |_| 1.0);
        }
        crate::dp::noise_and_average(out, &self.cfg, self.expected, &mut self.rng)
            .map_err(dp_err)?;
        self.acct
            .step(self.q, self.cfg.noise_multiplier, 1)
            .map_err(dp_err)?;
        Ok(info)
    }

    fn privacy_spent(&self) -> Option<(f64, f64)> {
        self.spent().ok().map(|s| (s.epsilon, s.delta))
    }
}
