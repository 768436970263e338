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

    /// `Some(q)` if the privacy analysis of this aggregation assumes that
    /// every client joins each round independently with probability `q`,
    /// decided by secret randomness: the round loop must then sample that way
    /// (from the OS) instead of drawing a fixed-size sample from the public seed.
    fn poisson_rate(&self) -> Option<f64> {
        None
    }
}

/// Checks lengths and weights; returns the surviving updates' weight sum.
pub(crate) fn check_updates(
    round: usize,
    updates: &[ClientUpdate<'_>],
    len: usize,
) -> Result<f64, FedError> {
    let total = check_updates_allow_empty(updates, len)?;
    if !updates.iter().any(|u| !u.dropped) {
        return Err(FedError::NoUpdates(round));
    }
    Ok(total)
}

/// As [`check_updates`], but a round without any surviving update is fine.
pub(crate) fn check_updates_allow_empty(
    updates: &[ClientUpdate<'_>],
    len: usize,
) -> Result<f64, FedError> {
    let mut total = 0.0;
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
        }
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
/// the clipped updates are summed with **uniform** weights on an integer
/// grid, exact discrete Gaussian noise of parameter at least `z clip` is added
/// to the sum ([`crate::dp::DiscreteGaussianSum`]), and the result is divided
/// by the expected number of participants `q N` (fixed denominator, not the
/// number that reported). An RDP accountant tracks `(epsilon, delta)` round
/// by round for Poisson sampling at rate `q`, which is how the simulation
/// samples clients when this aggregator is in use ([`Aggregator::poisson_rate`]).
///
/// The noise (and the simulation's Poisson sampling) comes from the OS
/// CSPRNG: two runs with the same public seed release different models.
#[derive(Debug)]
pub struct DpAggregator {
    cfg: crate::dp::DpConfig,
    q: f64,
    clients: usize,
    expected: f64,
    rng: ppml_random::SecretRng,
    acct: crate::dp::RdpAccountant,
    buf: Vec<f32>,
    acc: Vec<i64>,
    last_clipped: usize,
    last_noise_std: f64,
    /// With secure aggregation: the protocol's configuration and its public seed.
    secure: Option<(ppml_secagg::SecAggConfig, u64)>,
    inputs: Vec<Vec<f32>>,
}

impl DpAggregator {
    /// DP aggregation for `clients` clients, each sampled independently with
    /// probability `q` per round; the noise comes from the OS.
    pub fn new(cfg: crate::dp::DpConfig, q: f64, clients: usize) -> Result<Self, FedError> {
        cfg.validate()
            .map_err(|e| FedError::Config(e.to_string()))?;
        if !(q > 0.0 && q <= 1.0) {
            return Err(FedError::Config(format!(
                "DP sampling rate must be in (0, 1], got {q}"
            )));
        }
        if clients == 0 {
            return Err(FedError::Config(
                "DP aggregation needs at least one client".into(),
            ));
        }
        let expected = q * clients as f64;
        let rng = ppml_random::try_os_rng().map_err(|e| FedError::Config(e.to_string()))?;
        Ok(DpAggregator {
            cfg,
            q,
            clients,
            expected,
            rng,
            acct: crate::dp::RdpAccountant::new(),
            buf: Vec::new(),
            acc: Vec::new(),
            last_clipped: 0,
            last_noise_std: f64::NAN,
            secure: None,
            inputs: Vec::new(),
        })
    }

    /// **INSECURE** (tests only): noise from a generator derived from `secrets`
    /// instead of the OS, so that a test can repeat a release bit for bit.
    pub fn with_secret_source(mut self, secrets: ppml_random::SecretSource) -> Self {
        self.rng = secrets.rng("fedavg/dp-noise");
        self
    }

    /// Sums the clipped updates with secure aggregation instead of in the
    /// clear: the server unmasks only the sum and adds the noise to it
    /// (central DP with a server trusted to add noise, but not to see
    /// individual updates; the clients' secrets come from the OS). Each
    /// client's clipped update is quantised to 24 bits per coordinate in
    /// `[-c, c]` (`c`: the clip rounded up to `f32`); clipping is tightened by
    /// the rounding margin so that the quantised contribution still has L2
    /// norm at most `clip`, which keeps the accountant's sensitivity exact.
    /// `seed` is the public seed of the protocol's public choices (graph,
    /// session ids).
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
            clip: f32_at_least(self.cfg.clip),
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

    /// Standard deviation parameter of the noise added to the last round's
    /// sum (real units; at least `z clip`).
    pub fn last_noise_std(&self) -> f64 {
        self.last_noise_std
    }
}

/// The smallest `f32` at least `x` (finite, positive `x`).
pub(crate) fn f32_at_least(x: f64) -> f32 {
    let f = x as f32;
    if f64::from(f) >= x { f } else { f.next_up() }
}

/// The exact sum of the survivors' secure-aggregation contributions, in
/// units of `g = c 2^-k`: the quantiser maps `v` to `round((v + c) s)` with
/// `s = L / (2c)`, `L = 2^bits - 1`, so `m` summed codes `Z` decode to
/// `c (2Z - m L) / L` and to `2^k (2Z - m L) / L` units, which is rounded
/// (half up) in exact integer arithmetic.
pub(crate) fn secagg_units(
    sum: &[u64],
    survivors: usize,
    bits: u32,
    grid_bits: u32,
    out: &mut [i64],
) -> Result<(), FedError> {
    let overflow = || FedError::Aggregate("secure-aggregation sum outside the DP grid".into());
    let levels = i128::from((1u64 << bits) - 1);
    let offset = i128::try_from(survivors).map_err(|_| overflow())? * levels;
    for (o, &z) in out.iter_mut().zip(sum) {
        let num = (2 * i128::from(z) - offset)
            .checked_mul(1i128 << grid_bits)
            .ok_or_else(overflow)?;
        let (q, r) = (num.div_euclid(levels), num.rem_euclid(levels));
        let rounded = if 2 * r >= levels { q + 1 } else { q };
        *o = i64::try_from(rounded).map_err(|_| overflow())?;
    }
    Ok(())
}

impl Aggregator for DpAggregator {
    fn name(&self) -> String {
        format!(
            "dp-fedavg (clip {}, noise multiplier {}, delta {}, Poisson rate {})",
            self.cfg.clip, self.cfg.noise_multiplier, self.cfg.delta, self.q
        )
    }

    fn poisson_rate(&self) -> Option<f64> {
        Some(self.q)
    }

    fn aggregate(
        &mut self,
        round: usize,
        updates: &[ClientUpdate<'_>],
        out: &mut [f32],
    ) -> Result<AggregateInfo, FedError> {
        let dp_err = |e: crate::dp::DpError| FedError::Aggregate(e.to_string());
        // Weights are not used (uniform), but lengths are checked alike; a
        // Poisson round may have no update at all, and then releases noise.
        check_updates_allow_empty(updates, out.len())?;
        if updates.len() > self.clients {
            return Err(FedError::Aggregate(format!(
                "round {round}: {} updates from {} clients",
                updates.len(),
                self.clients
            )));
        }
        let dim = out.len();
        let mut info = AggregateInfo::default();
        self.last_clipped = 0;
        let delivered = updates.iter().filter(|u| !u.dropped).count();
        // Secure aggregation needs two clients; with one, the server learns
        // the same thing (the sum of one update) either way, so it is skipped.
        let secure = self.secure.clone().filter(|_| delivered >= 2);
        let (release, clip) = match &secure {
            Some((sa, _)) => {
                let base = f64::from(sa.clip);
                // Half a quantisation step per coordinate can add this much norm.
                let step = 2.0 * base / ((1u64 << sa.bits) - 1) as f64;
                let release = crate::dp::DiscreteGaussianSum::with_grid_base(&self.cfg, dim, base)
                    .map_err(dp_err)?;
                (release, self.cfg.clip - (dim as f64).sqrt() * step / 2.0)
            }
            None => (
                crate::dp::DiscreteGaussianSum::new(&self.cfg, dim).map_err(dp_err)?,
                self.cfg.clip,
            ),
        };
        if clip <= 0.0 {
            return Err(FedError::Config(format!(
                "clip {} is below the quantisation margin of a {dim}-dimensional update",
                self.cfg.clip
            )));
        }
        self.acc.clear();
        self.acc.resize(dim, 0);
        self.inputs.resize_with(updates.len(), Vec::new);
        let mut dropped = Vec::new();
        for (i, u) in updates.iter().enumerate() {
            if u.dropped {
                dropped.push(i);
                if secure.is_none() {
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
            if secure.is_some() {
                std::mem::swap(&mut self.inputs[i], &mut self.buf);
            } else {
                release
                    .add_contribution(&self.buf, 1.0, &mut self.acc)
                    .map_err(dp_err)?;
                info.contributors.push(u.client);
                info.total_weight += 1.0;
            }
        }
        if let Some((sa, seed)) = &secure {
            // A dropped client's slot keeps a zero vector of the right length;
            // the protocol drops it before it sends anything.
            for &i in &dropped {
                self.inputs[i].clear();
                self.inputs[i].resize(dim, 0.0);
            }
            let inputs = &self.inputs[..updates.len()];
            let outcome = crate::secure::secure_sum(sa, *seed, round, inputs, &dropped)?;
            secagg_units(
                &outcome.sum_quantised[..dim],
                outcome.survivors.len(),
                sa.bits,
                release.grid_bits(),
                &mut self.acc,
            )?;
            info.protocol_bytes = outcome.bytes;
            crate::secure::split_survivors(&outcome, updates, &mut info, |_| 1.0);
        }
        release
            .release(&self.acc, self.expected, &mut self.rng, out)
            .map_err(dp_err)?;
        self.last_noise_std = release.noise_std_on_sum();
        self.acct
            .step(self.q, self.cfg.noise_multiplier, 1)
            .map_err(dp_err)?;
        Ok(info)
    }

    fn privacy_spent(&self) -> Option<(f64, f64)> {
        self.spent().ok().map(|s| (s.epsilon, s.delta))
    }
}
