//! Differential privacy for federated averaging (DP-FedAvg) and a Rényi-DP accountant.
//!
//! This module implements the central-DP recipe of McMahan, Ramage, Talwar and Zhang,
//! "Learning Differentially Private Recurrent Language Models" (ICLR 2018):
//!
//! 1. every sampled client's model update `Δ_k = w_k − w_global` is clipped to L2 norm `S`
//!    ([`clip_update`]);
//! 2. the server sums the clipped updates (in the clear, or as the output of secure aggregation)
//!    on an integer grid of step `S·2^-k` ([`DiscreteGaussianSum`]);
//! 3. the server adds exact discrete Gaussian noise of parameter `σ ≥ z·S` (`z` is the noise
//!    multiplier) to every coordinate of the integer sum, drawn from the OS CSPRNG with the
//!    sampler of Canonne, Kamath and Steinke 2020 ([`ppml_random::dgauss`]), so that no
//!    floating-point artefact of the noise reveals the sum;
//! 4. the noisy sum is divided by the **expected** number of participants `q·N` — the
//!    fixed-denominator estimator `f̃_f` of McMahan et al. with uniform client weights — not by the
//!    number that actually reported, so one client's presence changes the average by at most
//!    `S / (qN)` (up to the grid's rounding slack; [`dp_aggregate`] does steps 1–4 at once).
//!
//! Privacy is accounted with Rényi DP of the sampled Gaussian mechanism (Mironov 2017; Mironov,
//! Talwar and Zhang 2019, "Rényi Differential Privacy of the Sampled Gaussian Mechanism") over
//! Opacus's default order grid, converted to `(ε, δ)` with the conversion of Opacus's
//! `get_privacy_spent` (Balle et al. 2020, Theorem 21). The accountant assumes **Poisson sampling**:
//! each client participates independently with probability `q` in each round, decided by secret
//! randomness; the simulation samples exactly so in DP runs ([`crate::server::poisson_sample`]).
//! docs/DP.md says what is trusted and what the accountant assumes about discrete noise.
//!
//! ```
//! use ppml_fedavg::dp::{DpConfig, RdpAccountant, dp_aggregate};
//!
//! let cfg = DpConfig::new(1.0, 1.1, 1e-5).unwrap();
//! // DP noise is a secret: it comes from the operating system.
//! let mut rng = ppml_random::os_rng();
//! // Three clients' model deltas of dimension 4; 100 clients in total, q = 0.03 -> qN = 3.
//! let updates = vec![vec![0.1f32, 0.2, 0.0, 0.0], vec![3.0, 4.0, 0.0, 0.0], vec![0.0; 4]];
//! let agg = dp_aggregate(&updates, 4, &cfg, 3.0, &mut rng).unwrap();
//! assert_eq!(agg.update.len(), 4);
//! assert_eq!(agg.num_clipped, 1); // ||(3,4)|| = 5 > S = 1
//!
//! let mut acct = RdpAccountant::new();
//! acct.step(0.03, cfg.noise_multiplier, 100).unwrap();
//! let spent = acct.spent(cfg.delta).unwrap();
//! assert!(spent.epsilon > 0.0 && spent.epsilon.is_finite());
//! ```

use ppml_random::dgauss::DiscreteGaussian;
use rand::CryptoRng;
use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

/// Errors of the DP module: invalid parameters or inputs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DpError {
    /// The clipping norm must be finite and > 0.
    #[error("clipping norm must be finite and > 0, got {0}")]
    InvalidClip(f64),
    /// The noise multiplier must be finite and >= 0.
    #[error("noise multiplier must be finite and >= 0, got {0}")]
    InvalidNoiseMultiplier(f64),
    /// Noise standard deviation must be finite and >= 0.
    #[error("noise standard deviation must be finite and >= 0, got {0}")]
    InvalidNoiseStd(f64),
    /// delta must lie in (0, 1).
    #[error("delta must be in (0, 1), got {0}")]
    InvalidDelta(f64),
    /// The sampling rate q must lie in [0, 1].
    #[error("sampling rate q must be in [0, 1], got {0}")]
    InvalidSamplingRate(f64),
    /// The expected number of clients q*N must be finite and > 0.
    #[error("expected number of clients (q*N) must be finite and > 0, got {0}")]
    InvalidExpectedClients(f64),
    /// An update does not have the model's dimension.
    #[error("update {index} has dimension {got}, expected {expected}")]
    DimensionMismatch {
        /// Index of the offending update.
        index: usize,
        /// Model dimension.
        expected: usize,
        /// Dimension of the update.
        got: usize,
    },
    /// An update contains NaN or infinity, so it cannot be clipped.
    #[error("update {0} contains a non-finite value")]
    NonFiniteUpdate(usize),
    /// RDP orders must be finite and > 1, and match the RDP vector's length.
    #[error("invalid RDP orders: {0}")]
    InvalidOrders(String),
    /// A numerical failure in the accountant (should not happen for valid inputs).
    #[error("accountant numerical error: {0}")]
    Numerical(&'static str),
    /// The exact sampler cannot represent the requested noise.
    #[error("noise sampler: {0}")]
    Sampler(String),
    /// A grid value outside the integer range.
    #[error("overflow: {0}")]
    Overflow(&'static str),
    /// A target epsilon that cannot be reached within the search range.
    #[error("target epsilon {target} unreachable: {reason}")]
    Unreachable {
        /// Requested epsilon.
        target: f64,
        /// Why it cannot be reached.
        reason: &'static str,
    },
}

/// DP-FedAvg parameters: clipping norm `S`, noise multiplier `z`, target `δ`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DpConfig {
    /// L2 clipping norm `S` of each client's update.
    pub clip: f64,
    /// Noise multiplier `z`: the noise on the sum has standard deviation `z·S`.
    pub noise_multiplier: f64,
    /// The `δ` at which `ε` is reported.
    pub delta: f64,
}

impl DpConfig {
    /// Validated constructor: `clip > 0`, `noise_multiplier >= 0` (both finite), `0 < delta < 1`.
    pub fn new(clip: f64, noise_multiplier: f64, delta: f64) -> Result<Self, DpError> {
        let c = DpConfig {
            clip,
            noise_multiplier,
            delta,
        };
        c.validate()?;
        Ok(c)
    }

    /// Checks the parameter ranges (useful after deserialisation).
    pub fn validate(&self) -> Result<(), DpError> {
        check_clip(self.clip)?;
        check_noise_multiplier(self.noise_multiplier)?;
        check_delta(self.delta)?;
        Ok(())
    }

    /// Standard deviation `z·S` of the Gaussian noise added to the SUM of clipped updates.
    pub fn noise_std(&self) -> f64 {
        self.noise_multiplier * self.clip
    }
}

fn check_clip(clip: f64) -> Result<(), DpError> {
    if clip.is_finite() && clip > 0.0 {
        Ok(())
    } else {
        Err(DpError::InvalidClip(clip))
    }
}

fn check_noise_multiplier(z: f64) -> Result<(), DpError> {
    if z.is_finite() && z >= 0.0 {
        Ok(())
    } else {
        Err(DpError::InvalidNoiseMultiplier(z))
    }
}

fn check_delta(delta: f64) -> Result<(), DpError> {
    if delta > 0.0 && delta < 1.0 {
        Ok(())
    } else {
        Err(DpError::InvalidDelta(delta))
    }
}

fn check_q(q: f64) -> Result<(), DpError> {
    if (0.0..=1.0).contains(&q) {
        Ok(())
    } else {
        Err(DpError::InvalidSamplingRate(q))
    }
}

// ---------------------------------------------------------------------------------------------
// Clipping, noise, aggregation
// ---------------------------------------------------------------------------------------------

/// L2 norm of `v`, accumulated in `f64`.
pub fn l2_norm(v: &[f32]) -> f64 {
    v.iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt()
}

/// Scales `update` in place so that `‖update‖₂ ≤ clip` and returns the scale applied,
/// `min(1, clip / ‖update‖₂)` (1.0 when the update was already inside the ball).
///
/// The bound is exact in `f32`: if rounding leaves the norm a hair above `clip`, the update is
/// shrunk by one more ulp-sized factor until it is inside (the returned scale includes that).
pub fn clip_update(update: &mut [f32], clip: f64) -> Result<f64, DpError> {
    check_clip(clip)?;
    let norm = l2_norm(update);
    if !norm.is_finite() {
        return Err(DpError::NonFiniteUpdate(0));
    }
    if norm <= clip {
        return Ok(1.0);
    }
    let mut scale = clip / norm;
    scale_in_place(update, scale);
    // f32 rounding can leave the norm up to ~d·2^-24 relative above clip; shrink until inside.
    let shrink = 1.0 - 2.0 * f64::from(f32::EPSILON);
    while l2_norm(update) > clip {
        scale_in_place(update, shrink);
        scale *= shrink;
    }
    Ok(scale)
}

fn scale_in_place(v: &mut [f32], s: f64) {
    for x in v.iter_mut() {
        *x = (f64::from(*x) * s) as f32;
    }
}

fn check_expected_clients(expected_clients: f64) -> Result<(), DpError> {
    if expected_clients.is_finite() && expected_clients > 0.0 {
        Ok(())
    } else {
        Err(DpError::InvalidExpectedClients(expected_clients))
    }
}

/// The noisy-sum release of DP-FedAvg on an integer grid, with exact
/// discrete Gaussian noise ([`ppml_random::dgauss`], Canonne, Kamath and
/// Steinke 2020) from a cryptographically secure generator.
///
/// Every clipped contribution is expressed in grid units of
/// `g = base · 2^-k` (`base` is the clipping norm `S`, or a slightly larger
/// value such as the `f32` clip of secure aggregation), the integer sum `T`
/// gets integer noise `Z ~ N_Z(0, σ_u²)` per coordinate, and only then is the
/// result converted to floating point: `out = (T + Z) · g / (q N)`. Because
/// `T + Z` is an exact integer, the released floats are a function of it
/// alone, so the floating-point attack on `x + N(0, σ²)` computed in doubles
/// (Mironov 2012) has nothing to read.
///
/// **Sensitivity.** A contribution of L2 norm at most `base` is at most
/// `2^k` grid units long; rounding (of each contribution, or of an exactly
/// known sum) moves each coordinate by at most one unit, so adding or
/// removing one client moves `T` by at most `Δ_u = 2^k (1 + 2^-30) + √dim`
/// units in L2 (the `2^-30` absorbs the floating-point error of computing
/// `x / g`). The noise is `σ_u ≥ z · Δ_u`: the effective noise multiplier
/// [`Self::effective_noise_multiplier`] is never below `z`, so the RDP
/// accountant run with `z` bounds this mechanism (see docs/DP.md for what
/// the accountant assumes about discrete noise).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiscreteGaussianSum {
    base: f64,
    grid_bits: u32,
    dim: usize,
    sensitivity_units: f64,
    noise: DiscreteGaussian,
}

impl DiscreteGaussianSum {
    /// The release for `dim`-dimensional updates clipped to `config.clip`,
    /// on the grid `clip · 2^-k` ([`Self::default_grid_bits`]).
    pub fn new(config: &DpConfig, dim: usize) -> Result<Self, DpError> {
        Self::with_grid_base(config, dim, config.clip)
    }

    /// The grid exponent `k`: 24 bits below `base` for `z ≤ 1`, one bit fewer
    /// per doubling of `z` (so `σ_u ≈ 2^24` stays inside the exact sampler's
    /// range), and never fewer than 8.
    pub fn default_grid_bits(noise_multiplier: f64) -> u32 {
        let z = noise_multiplier.max(1.0);
        // z is finite (validated), so its log2 is a finite, non-negative float.
        let bits = 24.0 - z.log2().ceil();
        bits.clamp(8.0, 24.0) as u32
    }

    /// As [`Self::new`] on the grid `base · 2^-k`, for contributions of norm
    /// at most `config.clip <= base` (e.g. the `f32` clip of secure
    /// aggregation rounded up).
    pub fn with_grid_base(config: &DpConfig, dim: usize, base: f64) -> Result<Self, DpError> {
        config.validate()?;
        if !(base.is_finite() && base >= config.clip) {
            return Err(DpError::InvalidClip(base));
        }
        let grid_bits = Self::default_grid_bits(config.noise_multiplier);
        let sensitivity_units =
            2f64.powi(grid_bits as i32) * (1.0 + 2f64.powi(-30)) + (dim as f64).sqrt();
        let noise =
            DiscreteGaussian::with_sigma_at_least(config.noise_multiplier * sensitivity_units)
                .map_err(|e| DpError::Sampler(e.to_string()))?;
        Ok(DiscreteGaussianSum {
            base,
            grid_bits,
            dim,
            sensitivity_units,
            noise,
        })
    }

    /// The grid step `g = base · 2^-k`.
    pub fn grid(&self) -> f64 {
        self.base * 2f64.powi(-(self.grid_bits as i32))
    }

    /// The grid exponent `k`.
    pub fn grid_bits(&self) -> u32 {
        self.grid_bits
    }

    /// `Δ_u`: the L2 sensitivity of the integer sum, in grid units.
    pub fn sensitivity_units(&self) -> f64 {
        self.sensitivity_units
    }

    /// `σ_u / Δ_u`, at least the configured noise multiplier.
    pub fn effective_noise_multiplier(&self) -> f64 {
        self.noise.sigma() / self.sensitivity_units
    }

    /// The discrete Gaussian added to every coordinate of the integer sum.
    pub fn noise(&self) -> &DiscreteGaussian {
        &self.noise
    }

    /// Standard deviation parameter of the noise on the sum, in real units
    /// (`σ_u · g`, slightly above `z · S` because of the rounding slack).
    pub fn noise_std_on_sum(&self) -> f64 {
        self.noise.sigma() * self.grid()
    }

    /// `acc[i] += round(scale · update[i] / g)`: adds one client's clipped
    /// contribution (`scale · update`, L2 norm at most `S`) in grid units.
    pub fn add_contribution(
        &self,
        update: &[f32],
        scale: f64,
        acc: &mut [i64],
    ) -> Result<(), DpError> {
        if update.len() != self.dim || acc.len() != self.dim {
            return Err(DpError::DimensionMismatch {
                index: 0,
                expected: self.dim,
                got: update.len().min(acc.len()),
            });
        }
        let per_unit = scale * 2f64.powi(self.grid_bits as i32) / self.base;
        for (a, &x) in acc.iter_mut().zip(update) {
            let u = (f64::from(x) * per_unit).round();
            // |u| <= 2^k (1 + tiny) for a clipped input; anything else is a bug
            // in the caller's clipping, reported rather than wrapped.
            if u.is_nan() || u.abs() > 2f64.powi(62) {
                return Err(DpError::Overflow("contribution outside the grid range"));
            }
            *a = a
                .checked_add(u as i64)
                .ok_or(DpError::Overflow("sum of contributions overflows"))?;
        }
        Ok(())
    }

    /// Releases `out = (acc + Z) · g / expected_clients` with fresh
    /// `Z ~ N_Z(0, σ_u²)` per coordinate drawn from `rng` (a CSPRNG: the
    /// noise is a secret). `acc` is the integer sum of the contributions.
    pub fn release<R: CryptoRng + ?Sized>(
        &self,
        acc: &[i64],
        expected_clients: f64,
        rng: &mut R,
        out: &mut [f32],
    ) -> Result<(), DpError> {
        check_expected_clients(expected_clients)?;
        if acc.len() != self.dim || out.len() != self.dim {
            return Err(DpError::DimensionMismatch {
                index: 0,
                expected: self.dim,
                got: acc.len().min(out.len()),
            });
        }
        let factor = self.grid() / expected_clients;
        for (o, &t) in out.iter_mut().zip(acc) {
            let noisy = t
                .checked_add(self.noise.sample(rng))
                .ok_or(DpError::Overflow("noisy sum overflows"))?;
            // Post-processing of the exact integer `noisy`.
            *o = (noisy as f64 * factor) as f32;
        }
        Ok(())
    }
}

/// Result of one DP aggregation step ([`dp_aggregate`]).
#[derive(Debug, Clone, PartialEq)]
pub struct DpAggregate {
    /// `(Σ_k clip(Δ_k) + noise) / (q·N)` on the grid of [`DiscreteGaussianSum`]:
    /// add it to the global weights.
    pub update: Vec<f32>,
    /// Per-client clip scale applied, `min(1, S / ‖Δ_k‖)`.
    pub scales: Vec<f64>,
    /// Number of clients whose update norm exceeded `S`.
    pub num_clipped: usize,
    /// Standard deviation parameter of the noise on the sum (`≈ z·S`, never below it).
    pub noise_std_on_sum: f64,
    /// The same on each coordinate of `update` (divided by `q·N`).
    pub noise_std_on_average: f64,
}

/// Plain-aggregation DP step: clip every update to `S` (without modifying
/// the inputs), sum on the integer grid, add discrete Gaussian noise of
/// parameter `≥ z·S` ([`DiscreteGaussianSum`]) drawn from `rng` (which must
/// be a CSPRNG, e.g. `ppml_random::os_rng()`) and divide by
/// `expected_clients = q·N`.
///
/// `updates` may be empty (Poisson sampling can select nobody); the result is then pure noise of
/// dimension `dim`, which is what the privacy analysis requires.
pub fn dp_aggregate<U: AsRef<[f32]>, R: CryptoRng + ?Sized>(
    updates: &[U],
    dim: usize,
    config: &DpConfig,
    expected_clients: f64,
    rng: &mut R,
) -> Result<DpAggregate, DpError> {
    config.validate()?;
    check_expected_clients(expected_clients)?;
    let release = DiscreteGaussianSum::new(config, dim)?;
    let mut acc = vec![0i64; dim];
    let mut scales = Vec::with_capacity(updates.len());
    let mut num_clipped = 0;
    for (index, u) in updates.iter().enumerate() {
        let u = u.as_ref();
        if u.len() != dim {
            return Err(DpError::DimensionMismatch {
                index,
                expected: dim,
                got: u.len(),
            });
        }
        let norm = l2_norm(u);
        if !norm.is_finite() {
            return Err(DpError::NonFiniteUpdate(index));
        }
        let scale = if norm > config.clip {
            num_clipped += 1;
            config.clip / norm
        } else {
            1.0
        };
        scales.push(scale);
        release.add_contribution(u, scale, &mut acc)?;
    }
    let mut update = vec![0.0f32; dim];
    release.release(&acc, expected_clients, rng, &mut update)?;
    let std = release.noise_std_on_sum();
    Ok(DpAggregate {
        update,
        scales,
        num_clipped,
        noise_std_on_sum: std,
        noise_std_on_average: std / expected_clients,
    })
}

/// Extra L2 norm that rounding a `dim`-dimensional update to fixed point with `frac_bits`
/// fractional bits (round to nearest) can add: `√dim · 2^-(frac_bits+1)`.
///
/// With secure aggregation over a fixed-point ring, clip to `S − fixed_point_margin(..)` before
/// encoding so that the encoded contribution still has norm ≤ `S`.
pub fn fixed_point_margin(dim: usize, frac_bits: u32) -> f64 {
    (dim as f64).sqrt() * 0.5f64.powi(frac_bits as i32 + 1)
}

// ---------------------------------------------------------------------------------------------
// Rényi-DP accountant for the sampled Gaussian mechanism (port of Opacus's analysis/rdp.py)
// ---------------------------------------------------------------------------------------------

/// Opacus's `RDPAccountant.DEFAULT_ALPHAS`: `[1 + x/10 for x in 1..100] + [12..64)`.
pub fn default_orders() -> Vec<f64> {
    (1..100)
        .map(|x| 1.0 + f64::from(x) / 10.0)
        .chain((12..64).map(f64::from))
        .collect()
}

fn check_orders(orders: &[f64]) -> Result<(), DpError> {
    if orders.is_empty() {
        return Err(DpError::InvalidOrders("no orders".into()));
    }
    if let Some(a) = orders.iter().find(|a| !(a.is_finite() && **a > 1.0)) {
        return Err(DpError::InvalidOrders(format!(
            "order {a} is not finite and > 1"
        )));
    }
    Ok(())
}

/// `log(e^x + e^y)`.
fn log_add(x: f64, y: f64) -> f64 {
    let (a, b) = if x < y { (x, y) } else { (y, x) };
    if a == f64::NEG_INFINITY {
        return b;
    }
    (a - b).exp().ln_1p() + b
}

/// `log(e^x − e^y)`, requires `x ≥ y`.
fn log_sub(x: f64, y: f64) -> Result<f64, DpError> {
    if x < y {
        return Err(DpError::Numerical("log_sub of a larger number"));
    }
    if y == f64::NEG_INFINITY {
        return Ok(x);
    }
    if x == y {
        return Ok(f64::NEG_INFINITY);
    }
    let e = (x - y).exp_m1();
    if e.is_infinite() {
        // Python's math.expm1 overflow branch in Opacus: the difference is x to machine precision.
        return Ok(x);
    }
    Ok(e.ln() + y)
}

/// `erfc(x)` for `0 ≤ x < 2.5` through `erf`'s everywhere-positive series
/// `erf(x) = 2/√π · e^{−x²} Σ_n 2ⁿ x^{2n+1} / (2n+1)!!` (no cancellation inside the sum).
fn erfc_series(x: f64) -> f64 {
    let x2 = x * x;
    let mut term = x;
    let mut sum = x;
    let mut n = 0.0;
    while term > sum * 1e-17 {
        term *= 2.0 * x2 / (2.0 * n + 3.0);
        sum += term;
        n += 1.0;
    }
    1.0 - 2.0 / PI.sqrt() * (-x2).exp() * sum
}

/// `ln(erfcx(x)) = ln(e^{x²} erfc(x))` for `x ≥ 2.5` by the continued fraction
/// `erfc(x) = e^{−x²}/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + …))))`, evaluated backwards.
fn log_erfcx_cf(x: f64) -> f64 {
    // At x = 2.5, 120 terms give full double precision; fewer are needed for larger x.
    let terms = if x > 8.0 { 40 } else { 120 };
    let mut f = x;
    for k in (1..=terms).rev() {
        f = x + (f64::from(k) / 2.0) / f;
    }
    -(f * PI.sqrt()).ln()
}

/// `ln(erfc(x))`, accurate for large positive `x` (same role as Opacus's `_log_erfc`,
/// which uses `ln 2 + scipy.special.log_ndtr(−x√2)`).
pub fn log_erfc(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x < 0.0 {
        // erfc(x) = 2 − erfc(−x) ∈ (1, 2]: no precision problem.
        let p = -x;
        let c = if p < 2.5 {
            erfc_series(p)
        } else {
            (log_erfcx_cf(p) - p * p).exp()
        };
        return (2.0 - c).ln();
    }
    if x < 2.5 {
        erfc_series(x).ln()
    } else if x.is_infinite() {
        f64::NEG_INFINITY
    } else {
        log_erfcx_cf(x) - x * x
    }
}

/// `log A_α` for integer `α` (Mironov, Talwar, Zhang 2019, §3.3): binomial expansion.
fn log_a_int(q: f64, sigma: f64, alpha: u64) -> f64 {
    let (lq, l1q) = (q.ln(), (1.0 - q).ln());
    let s2 = sigma * sigma;
    let mut log_a = f64::NEG_INFINITY;
    let mut binom = 1.0f64; // C(alpha, i), exact up to rounding like scipy.special.binom
    for i in 0..=alpha {
        let fi = i as f64;
        let log_coef = binom.ln() + fi * lq + (alpha - i) as f64 * l1q;
        let s = log_coef + (fi * fi - fi) / (2.0 * s2);
        log_a = log_add(log_a, s);
        binom = binom * (alpha - i) as f64 / (fi + 1.0);
    }
    log_a
}

/// `log A_α` for fractional `α` (Mironov, Talwar, Zhang 2019, §3.3): the two-sided series with
/// Gaussian tail integrals, stopped once both new terms are below e^-30 (as Opacus does).
fn log_a_frac(q: f64, sigma: f64, alpha: f64) -> Result<f64, DpError> {
    let (lq, l1q) = (q.ln(), (1.0 - q).ln());
    let s2 = sigma * sigma;
    let z0 = s2 * (1.0 / q - 1.0).ln() + 0.5;
    let sqrt2s = std::f64::consts::SQRT_2 * sigma;
    let ln_half = 0.5f64.ln();
    let (mut log_a0, mut log_a1) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    // binom(alpha, i) tracked as log|.| and sign: C(α, i+1) = C(α, i)(α − i)/(i + 1).
    let mut log_abs_coef = 0.0f64;
    let mut positive = true;
    let mut i = 0u64;
    loop {
        let fi = i as f64;
        let j = alpha - fi;
        let log_t0 = log_abs_coef + fi * lq + j * l1q;
        let log_t1 = log_abs_coef + j * lq + fi * l1q;
        let log_e0 = ln_half + log_erfc((fi - z0) / sqrt2s);
        let log_e1 = ln_half + log_erfc((z0 - j) / sqrt2s);
        let log_s0 = log_t0 + (fi * fi - fi) / (2.0 * s2) + log_e0;
        let log_s1 = log_t1 + (j * j - j) / (2.0 * s2) + log_e1;
        if positive {
            log_a0 = log_add(log_a0, log_s0);
            log_a1 = log_add(log_a1, log_s1);
        } else {
            log_a0 = log_sub(log_a0, log_s0)?;
            log_a1 = log_sub(log_a1, log_s1)?;
        }
        if log_s0.max(log_s1) < -30.0 {
            break;
        }
        let factor = alpha - fi;
        log_abs_coef += factor.abs().ln() - (fi + 1.0).ln();
        if factor < 0.0 {
            positive = !positive;
        }
        i += 1;
        if i > 1_000_000 {
            return Err(DpError::Numerical(
                "fractional-order series did not converge",
            ));
        }
    }
    Ok(log_add(log_a0, log_a1))
}

/// RDP of ONE application of the sampled Gaussian mechanism at order `alpha` (can be +inf).
fn rdp_one(q: f64, sigma: f64, alpha: f64) -> Result<f64, DpError> {
    if q == 0.0 {
        return Ok(0.0);
    }
    if sigma == 0.0 {
        return Ok(f64::INFINITY);
    }
    if q == 1.0 {
        return Ok(alpha / (2.0 * sigma * sigma));
    }
    let log_a = if alpha.fract() == 0.0 {
        // Exact: alpha is a finite integer > 1 (checked by check_orders), so the cast is exact
        // for every order below 2^53.
        log_a_int(q, sigma, alpha as u64)
    } else {
        log_a_frac(q, sigma, alpha)?
    };
    Ok(log_a / (alpha - 1.0))
}

/// RDP of `steps` compositions of the sampled Gaussian mechanism (sampling rate `q`, noise
/// multiplier `z`) at each order; equals Opacus's `compute_rdp(q, z, steps, orders)`.
pub fn compute_rdp(
    q: f64,
    noise_multiplier: f64,
    steps: u64,
    orders: &[f64],
) -> Result<Vec<f64>, DpError> {
    check_q(q)?;
    check_noise_multiplier(noise_multiplier)?;
    check_orders(orders)?;
    orders
        .iter()
        .map(|&a| rdp_one(q, noise_multiplier, a).map(|r| r * steps as f64))
        .collect()
}

/// Converts RDP values to `(ε, best order)` at `δ`, exactly as Opacus's `get_privacy_spent`:
/// `ε = min_α [ rdp(α) − (ln δ + ln α)/(α − 1) + ln((α − 1)/α) ]` (Balle et al. 2020, Thm 21),
/// clamped at 0 from below. Returns `(inf, first order)` if every order has infinite RDP.
pub fn rdp_to_epsilon(orders: &[f64], rdp: &[f64], delta: f64) -> Result<(f64, f64), DpError> {
    check_orders(orders)?;
    check_delta(delta)?;
    if orders.len() != rdp.len() {
        return Err(DpError::InvalidOrders(format!(
            "{} orders but {} RDP values",
            orders.len(),
            rdp.len()
        )));
    }
    let ln_delta = delta.ln();
    let mut best = (f64::INFINITY, orders[0]);
    for (&a, &r) in orders.iter().zip(rdp) {
        let eps = r - (ln_delta + a.ln()) / (a - 1.0) + ((a - 1.0) / a).ln();
        if eps < best.0 {
            best = (eps, a);
        }
    }
    Ok((best.0.max(0.0), best.1))
}

/// `ε` after `steps` rounds at sampling rate `q` and noise multiplier `z`, at `δ`
/// (default orders).
pub fn epsilon_for(q: f64, noise_multiplier: f64, steps: u64, delta: f64) -> Result<f64, DpError> {
    let orders = default_orders();
    let rdp = compute_rdp(q, noise_multiplier, steps, &orders)?;
    Ok(rdp_to_epsilon(&orders, &rdp, delta)?.0)
}

/// Smallest noise multiplier (to relative precision 1e-4) such that `steps` rounds at rate `q`
/// spend at most `target_epsilon` at `delta`. Searches `z ∈ (0, 1000]`.
pub fn noise_multiplier_for(
    q: f64,
    steps: u64,
    delta: f64,
    target_epsilon: f64,
) -> Result<f64, DpError> {
    check_q(q)?;
    check_delta(delta)?;
    if !(target_epsilon.is_finite() && target_epsilon > 0.0) {
        return Err(DpError::Unreachable {
            target: target_epsilon,
            reason: "target epsilon must be finite and > 0",
        });
    }
    if steps == 0 || q == 0.0 {
        return Ok(0.0);
    }
    let mut hi = 1.0;
    while epsilon_for(q, hi, steps, delta)? > target_epsilon {
        hi *= 2.0;
        if hi > 1000.0 {
            return Err(DpError::Unreachable {
                target: target_epsilon,
                reason: "needs a noise multiplier above 1000 (or delta too small for the orders)",
            });
        }
    }
    let mut lo = 0.0;
    while hi - lo > 1e-4 * hi {
        let mid = 0.5 * (lo + hi);
        if mid > 0.0 && epsilon_for(q, mid, steps, delta)? <= target_epsilon {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(hi)
}

/// `(ε, δ)` spent so far, with the RDP order that achieved it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PrivacySpent {
    /// Privacy loss `ε` (infinite with zero noise).
    pub epsilon: f64,
    /// The `δ` it holds at.
    pub delta: f64,
    /// The optimal RDP order.
    pub best_order: f64,
}

/// Running RDP accountant (like Opacus's `RDPAccountant`): record rounds with [`step`](Self::step)
/// and ask for `(ε, δ)` with [`spent`](Self::spent). Poisson sampling with rate `q` is assumed.
#[derive(Debug, Clone)]
pub struct RdpAccountant {
    orders: Vec<f64>,
    rdp: Vec<f64>,
    steps: u64,
    /// Per-step RDP of the last (q, z) seen, so per-round calls cost a vector add.
    cache: Option<(f64, f64, Vec<f64>)>,
}

impl Default for RdpAccountant {
    fn default() -> Self {
        Self::new()
    }
}

impl RdpAccountant {
    /// Accountant over [`default_orders`].
    pub fn new() -> Self {
        let orders = default_orders();
        let rdp = vec![0.0; orders.len()];
        RdpAccountant {
            orders,
            rdp,
            steps: 0,
            cache: None,
        }
    }

    /// Accountant over custom orders (finite, > 1).
    pub fn with_orders(orders: Vec<f64>) -> Result<Self, DpError> {
        check_orders(&orders)?;
        let rdp = vec![0.0; orders.len()];
        Ok(RdpAccountant {
            orders,
            rdp,
            steps: 0,
            cache: None,
        })
    }

    /// Records `steps` rounds of the sampled Gaussian mechanism at rate `q`, multiplier `z`.
    pub fn step(&mut self, q: f64, noise_multiplier: f64, steps: u64) -> Result<(), DpError> {
        let hit = matches!(&self.cache, Some((cq, cz, _)) if *cq == q && *cz == noise_multiplier);
        if !hit {
            let per_step = compute_rdp(q, noise_multiplier, 1, &self.orders)?;
            self.cache = Some((q, noise_multiplier, per_step));
        }
        if let Some((_, _, per_step)) = &self.cache {
            for (acc, r) in self.rdp.iter_mut().zip(per_step) {
                *acc += r * steps as f64;
            }
        }
        self.steps += steps;
        Ok(())
    }

    /// Total number of recorded rounds.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The orders used.
    pub fn orders(&self) -> &[f64] {
        &self.orders
    }

    /// Accumulated RDP at each order.
    pub fn rdp(&self) -> &[f64] {
        &self.rdp
    }

    /// `(ε, δ)` spent so far at the given `δ`.
    pub fn spent(&self, delta: f64) -> Result<PrivacySpent, DpError> {
        let (epsilon, best_order) = rdp_to_epsilon(&self.orders, &self.rdp, delta)?;
        Ok(PrivacySpent {
            epsilon,
            delta,
            best_order,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ppml_random::{SecretRng, insecure_deterministic_rng};
    use rand::RngExt;

    fn test_rng(seed: u64) -> SecretRng {
        insecure_deterministic_rng(seed, "test/fedavg-dp")
    }

    /// A standard normal for test data (Box-Muller).
    fn standard_normal<R: rand::Rng + ?Sized>(rng: &mut R) -> f64 {
        let u1 = 1.0 - rng.random::<f64>();
        let u2 = rng.random::<f64>();
        (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos()
    }

    /// Reference epsilons from Opacus, (same table as tests/dp_accountant.rs).
    ///
    /// Obtained with `docs/dp_reference.py`: opacus 1.6.0 installed without torch
    /// (`pip install numpy scipy && pip install --no-deps opacus`), loading only
    /// `opacus/accountants/analysis/rdp.py` with importlib and calling
    /// `compute_rdp(q, noise_multiplier, steps, orders=DEFAULT_ALPHAS)` then
    /// `get_privacy_spent(orders=DEFAULT_ALPHAS, rdp, delta)`; numpy 2.4.6, scipy 1.17.1, Python 3.11.7.
    /// Columns: `(q, noise_multiplier, steps, delta, epsilon, best_order)`.
    const OPACUS_REFERENCE: [(f64, f64, u64, f64, f64, f64); 10] = [
        (0.1, 1.0, 100, 1e-05, 7.899255002434629, 3.2),
        (0.01, 1.1, 1000, 1e-05, 1.7117700912203435, 9.6),
        (0.1, 0.8, 50, 1e-05, 9.233989368735447, 2.7),
        (0.05, 2.0, 500, 1e-06, 3.1018682543968032, 8.2),
        (1.0, 5.0, 20, 1e-05, 4.161624306053592, 5.9),
        (0.1, 10.0, 1000, 1e-05, 1.3197365962562626, 14.0),
        (0.1, 1.2, 200, 1e-05, 7.944717221402476, 3.4),
        (0.001, 0.7, 10000, 1e-05, 2.024672903782695, 6.1),
        (0.3, 1.5, 30, 1e-05, 6.858364245463161, 3.7),
        (0.02, 0.5, 100, 1e-05, 11.587207992824771, 2.2),
    ];

    #[test]
    fn accountant_matches_opacus_table() {
        for &(q, z, steps, delta, eps_ref, order_ref) in OPACUS_REFERENCE.iter() {
            let orders = default_orders();
            let rdp = compute_rdp(q, z, steps, &orders).unwrap();
            let (eps, order) = rdp_to_epsilon(&orders, &rdp, delta).unwrap();
            let rel = (eps - eps_ref).abs() / eps_ref;
            // The issue requires 1%; this port reproduces Opacus to ~1e-13, so hold it to 1e-9.
            assert!(
                rel < 1e-9,
                "q={q} z={z} steps={steps} delta={delta}: eps {eps} vs opacus {eps_ref} (rel {rel:e})"
            );
            assert_eq!(order, order_ref, "best order for q={q} z={z} steps={steps}");
        }
    }

    #[test]
    fn log_erfc_matches_scipy() {
        // ln 2 + scipy.special.log_ndtr(-x*sqrt 2), scipy 1.17.1.
        let table = [
            (-3.0, 0.6931361352504468),
            (-0.5, 0.4190391477755596),
            (0.0, 0.0),
            (0.3, -0.39843005144008525),
            (1.0, -1.849605509933249),
            (2.0, -5.36494126461664),
            (2.4, -7.28097505605579),
            (2.6, -8.351532930819749),
            (3.5, -14.112437402148178),
            (6.0, -38.3775611732234),
            (10.0, -102.87988902484493),
            (30.0, -903.9741171106442),
            (300.0, -90006.27615297309),
        ];
        for (x, want) in table {
            let got = log_erfc(x);
            assert!(
                (got - want).abs() <= 1e-12 * want.abs().max(1.0),
                "log_erfc({x}) = {got}, scipy {want}"
            );
        }
        // Continuity across the series / continued-fraction switch at 2.5.
        let (a, b) = (log_erfc(2.5 - 1e-12), log_erfc(2.5));
        assert!((a - b).abs() < 1e-10);
    }

    #[test]
    fn clipping_bounds_norm_and_reports_scale() {
        let mut rng = test_rng(1);
        for _ in 0..200 {
            let dim = rng.random_range(1..300);
            let mag = 10f64.powf(rng.random_range(-3.0..3.0));
            let mut v: Vec<f32> = (0..dim)
                .map(|_| (standard_normal(&mut rng) * mag) as f32)
                .collect();
            let orig = v.clone();
            let clip = rng.random_range(0.01..5.0);
            let norm = l2_norm(&orig);
            let scale = clip_update(&mut v, clip).unwrap();
            assert!(l2_norm(&v) <= clip, "norm {} > clip {clip}", l2_norm(&v));
            if norm <= clip {
                assert_eq!(scale, 1.0);
                assert_eq!(v, orig);
            } else {
                assert!((scale - clip / norm).abs() <= 1e-6 * scale);
                // direction preserved
                for (a, b) in v.iter().zip(&orig) {
                    assert!((f64::from(*a) - scale * f64::from(*b)).abs() <= 1e-6 * clip);
                }
            }
        }
    }

    #[test]
    fn noise_std_matches_z_times_s() {
        // (n-1) s^2 / sigma^2 ~ chi2(n-1): sd(s^2/sigma^2) = sqrt(2/(n-1)) ~ 0.0032 for n = 2e5;
        // allow 5 sd. The mean has sd sigma/sqrt(n).
        let cfg = DpConfig::new(0.7, 1.3, 1e-5).unwrap();
        let n = 200_000;
        let none: [Vec<f32>; 0] = [];
        let agg = dp_aggregate(&none, n, &cfg, 1.0, &mut test_rng(42)).unwrap();
        let v = agg.update;
        let sigma = agg.noise_std_on_sum;
        // The rounding slack makes the noise a little larger than z S, never smaller.
        assert!(sigma >= cfg.noise_std() && sigma < cfg.noise_std() * (1.0 + 1e-3));
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n as f64;
        let var = v
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / (n - 1) as f64;
        assert!(mean.abs() < 5.0 * sigma / (n as f64).sqrt(), "mean {mean}");
        let ratio = var / (sigma * sigma);
        assert!(
            (ratio - 1.0).abs() < 5.0 * (2.0 / (n - 1) as f64).sqrt(),
            "variance ratio {ratio}"
        );
    }

    #[test]
    fn epsilon_monotone_in_steps() {
        let mut acct = RdpAccountant::new();
        let mut last = 0.0;
        for _ in 0..50 {
            acct.step(0.1, 1.1, 10).unwrap();
            let e = acct.spent(1e-5).unwrap().epsilon;
            assert!(e > last, "{e} <= {last}");
            last = e;
        }
        assert_eq!(acct.steps(), 500);
        let direct = epsilon_for(0.1, 1.1, 500, 1e-5).unwrap();
        assert!((direct - last).abs() <= 1e-9 * last);
    }

    #[test]
    fn invalid_inputs_are_errors() {
        assert!(matches!(
            DpConfig::new(0.0, 1.0, 1e-5),
            Err(DpError::InvalidClip(_))
        ));
        assert!(matches!(
            DpConfig::new(1.0, -1.0, 1e-5),
            Err(DpError::InvalidNoiseMultiplier(_))
        ));
        assert!(matches!(
            DpConfig::new(1.0, 1.0, 1.0),
            Err(DpError::InvalidDelta(_))
        ));
        assert!(matches!(
            compute_rdp(1.5, 1.0, 1, &[2.0]),
            Err(DpError::InvalidSamplingRate(_))
        ));
        assert!(matches!(
            compute_rdp(0.5, 1.0, 1, &[1.0]),
            Err(DpError::InvalidOrders(_))
        ));
        let cfg = DpConfig::new(1.0, 1.0, 1e-5).unwrap();
        let mut rng = test_rng(0);
        let r = dp_aggregate(&[vec![1.0f32; 3], vec![1.0; 2]], 3, &cfg, 2.0, &mut rng);
        assert!(matches!(
            r,
            Err(DpError::DimensionMismatch { index: 1, .. })
        ));
        let r = dp_aggregate(&[vec![f32::NAN; 3]], 3, &cfg, 2.0, &mut rng);
        assert!(matches!(r, Err(DpError::NonFiniteUpdate(0))));
        let r = dp_aggregate(&[vec![1.0f32; 3]], 3, &cfg, 0.0, &mut rng);
        assert!(matches!(r, Err(DpError::InvalidExpectedClients(_))));
    }
}
