//! The exact discrete Gaussian sampler of Canonne, Kamath and Steinke,
//! "The Discrete Gaussian for Differential Privacy" (NeurIPS 2020), in
//! integer arithmetic.
//!
//! The discrete Gaussian `N_Z(0, σ²)` puts mass proportional to
//! `exp(-k² / (2σ²))` on every integer `k`. Sampling it needs no floating
//! point at all, so the output carries none of the rounding artefacts that
//! let Mironov's floating-point attack ("On Significance of the Least
//! Significant Bits For Differential Privacy", CCS 2012) read the noiseless
//! value out of `x + noise` computed in doubles: add integer noise to an
//! integer (fixed-point) value, then convert.
//!
//! The three algorithms of the paper, with `σ² = num / den` rational:
//!
//! * [`bernoulli_exp`] (their Algorithm 1): `Bernoulli(exp(-γ))` for rational
//!   `γ = n/d` from Bernoulli(rational) draws only; for `γ ≤ 1` it counts the
//!   run of successes of `Bernoulli(γ/k)`, `k = 1, 2, ...`, and returns
//!   whether the count is odd (probability `Σ (-γ)^k/k! = e^-γ`); for `γ > 1`
//!   it multiplies `⌊γ⌋` draws of `Bernoulli(e^-1)` with one of
//!   `Bernoulli(e^-(γ-⌊γ⌋))`.
//! * [`discrete_laplace`] (Algorithm 2): `P(x) ∝ exp(-|x|/t)` for integer
//!   `t ≥ 1`, from a uniform remainder `U < t` accepted with probability
//!   `exp(-U/t)`, a geometric multiple of `t`, and a sign.
//! * [`DiscreteGaussian::sample`] (Algorithm 3): rejection from the discrete
//!   Laplace with `t = ⌊σ⌋ + 1`, accepting `Y` with probability
//!   `exp(-(|Y| - σ²/t)² / (2σ²))`.
//!
//! Every probability is an exact rational compared with uniform integers
//! drawn by rejection, so the output distribution is exactly `N_Z(0, σ²)`,
//! with one documented exception: a candidate so far in the tail that the
//! acceptance exponent no longer fits 128 bits is rejected; the constructor
//! guarantees that this only happens when the exponent exceeds 4096, i.e.
//! the candidate would have been accepted with probability below `e^-4096`.
//!
//! Randomness must come from a cryptographically secure generator (the
//! functions take `R: CryptoRng`): DP noise is a secret.
//!
//! ```
//! use ppml_random::{dgauss::DiscreteGaussian, os_rng};
//!
//! // Noise of standard deviation ~ 2^20 on a grid of 2^-20: sigma = 1.0 in real units.
//! let g = DiscreteGaussian::with_variance_at_least((1u64 << 40) as f64).unwrap();
//! assert!(g.variance() >= (1u64 << 40) as f64);
//! let mut rng = os_rng();
//! let mut noise = vec![0i64; 1000];
//! g.fill(&mut rng, &mut noise);
//! let real: Vec<f64> = noise.iter().map(|&k| k as f64 / (1u64 << 20) as f64).collect();
//! assert!(real.iter().all(|x| x.abs() < 10.0));
//! ```

use crate::RandomError;
use rand::{CryptoRng, Rng};

/// Uniform integer in `[0, d)`, by masking to the bit length of `d - 1` and
/// rejecting (fewer than two draws on average). Requires `d > 0`.
fn uniform_below<R: Rng + ?Sized>(rng: &mut R, d: u128) -> u128 {
    if d <= 1 {
        return 0;
    }
    let bits = 128 - (d - 1).leading_zeros();
    let mask = if bits == 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    loop {
        let x = if bits <= 64 {
            u128::from(rng.next_u64())
        } else {
            (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64())
        } & mask;
        if x < d {
            return x;
        }
    }
}

/// `Bernoulli(n/d)` for `n ≤ d`, `d > 0`.
#[inline]
fn bernoulli_ratio<R: Rng + ?Sized>(rng: &mut R, n: u128, d: u128) -> bool {
    uniform_below(rng, d) < n
}

/// `Bernoulli(exp(-n/d))` for `n ≤ d` (Algorithm 1, `γ ≤ 1`). The draw
/// `Bernoulli(γ/k)` is `Bernoulli(n/d)` AND `Bernoulli(1/k)` (independent),
/// so no product `d·k` can overflow.
fn bernoulli_exp_le1<R: Rng + ?Sized>(rng: &mut R, n: u128, d: u128) -> bool {
    let mut k: u128 = 1;
    while bernoulli_ratio(rng, n, d) && uniform_below(rng, k) == 0 {
        k += 1;
    }
    k % 2 == 1
}

/// `Bernoulli(exp(-n/d))`, exactly (Canonne, Kamath, Steinke 2020,
/// Algorithm 1). Errors if `d == 0`.
pub fn bernoulli_exp<R: CryptoRng + ?Sized>(
    rng: &mut R,
    n: u128,
    d: u128,
) -> Result<bool, RandomError> {
    if d == 0 {
        return Err(RandomError::Invalid(
            "bernoulli_exp: zero denominator".into(),
        ));
    }
    Ok(bernoulli_exp_unchecked(rng, n, d))
}

/// [`bernoulli_exp`] without the `d > 0` check.
fn bernoulli_exp_unchecked<R: Rng + ?Sized>(rng: &mut R, n: u128, d: u128) -> bool {
    let (whole, frac) = (n / d, n % d);
    // Each round fails with probability 1 - 1/e, so this loop ends after
    // 1.6 rounds on average whatever `whole` is.
    let mut k = 0u128;
    while k < whole {
        if !bernoulli_exp_le1(rng, 1, 1) {
            return false;
        }
        k += 1;
    }
    bernoulli_exp_le1(rng, frac, d)
}

/// One draw of the discrete Laplace distribution `P(x) ∝ exp(-|x|/t)` on the
/// integers (Algorithm 2 with `s = 1`). Errors if `t == 0`.
pub fn discrete_laplace<R: CryptoRng + ?Sized>(rng: &mut R, t: u64) -> Result<i128, RandomError> {
    if t == 0 {
        return Err(RandomError::Invalid(
            "discrete Laplace scale must be >= 1".into(),
        ));
    }
    Ok(discrete_laplace_unchecked(rng, t))
}

fn discrete_laplace_unchecked<R: Rng + ?Sized>(rng: &mut R, t: u64) -> i128 {
    let t = u128::from(t);
    loop {
        let u = uniform_below(rng, t);
        if !bernoulli_exp_le1(rng, u, t) {
            continue;
        }
        // V ~ Geometric(1 - 1/e): count successes of Bernoulli(e^-1).
        let mut v: u64 = 0;
        while bernoulli_exp_le1(rng, 1, 1) {
            // 2^64 successes in a row (probability e^-(2^64)) cannot happen;
            // saturating keeps the arithmetic total anyway.
            v = v.saturating_add(1);
        }
        // u < t < 2^64 and v < 2^64: the sum fits 128 bits with room.
        let x = u + t * u128::from(v);
        let negative = rng.next_u32() & 1 == 1;
        if negative && x == 0 {
            continue;
        }
        // x < 2^127, so the cast is lossless.
        let x = x as i128;
        return if negative { -x } else { x };
    }
}

/// The discrete Gaussian `N_Z(0, σ²)` with a rational variance parameter
/// `σ² = num / den` (the `σ²` of the density; the actual variance is at most
/// `σ²`, and within `1e-8` relative of it once `σ ≥ 1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiscreteGaussian {
    num: u64,
    den: u64,
    /// `⌊σ⌋ + 1`, the scale of the discrete Laplace proposal.
    t: u64,
    /// `2 · num · den · t²`, the denominator of the acceptance exponent.
    d: u128,
}

/// Largest allowed acceptance denominator: a numerator that overflows
/// `u128` then means an exponent above `2^128 / 2^116 = 4096`.
const MAX_DENOMINATOR: u128 = 1 << 116;

impl DiscreteGaussian {
    /// `N_Z(0, num/den)`. `num = 0` gives the point mass at 0 (no noise).
    /// Errors if `den == 0`, or if `2·num·den·(⌊σ⌋+1)² > 2^116` (roughly
    /// `σ > 2^28` with `den = 1`; use a smaller denominator or a coarser grid).
    pub fn new(num: u64, den: u64) -> Result<Self, RandomError> {
        if den == 0 {
            return Err(RandomError::Invalid(
                "discrete Gaussian: zero variance denominator".into(),
            ));
        }
        // ⌊√(num/den)⌋ = ⌊√⌊num/den⌋⌋ for non-negative reals.
        let t = (num / den).isqrt() + 1;
        let d = 2u128
            .checked_mul(u128::from(num))
            .and_then(|v| v.checked_mul(u128::from(den)))
            .and_then(|v| v.checked_mul(u128::from(t) * u128::from(t)))
            .filter(|&d| d <= MAX_DENOMINATOR)
            .ok_or_else(|| {
                RandomError::Invalid(format!(
                    "discrete Gaussian: variance {num}/{den} is outside the exact sampler's range \
                     (2·num·den·(⌊σ⌋+1)² must be at most 2^116)"
                ))
            })?;
        Ok(DiscreteGaussian { num, den, t, d })
    }

    /// The smallest `N_Z(0, num / 2^e)` with `num / 2^e ≥ variance` that keeps
    /// about 40 significant bits in `num` (so the result exceeds `variance` by
    /// a relative `2^-40` at most). Errors on negative, NaN or too large values.
    pub fn with_variance_at_least(variance: f64) -> Result<Self, RandomError> {
        if !(variance.is_finite() && variance >= 0.0) {
            return Err(RandomError::Invalid(format!(
                "discrete Gaussian: variance must be finite and >= 0, got {variance}"
            )));
        }
        if variance == 0.0 {
            return Self::new(0, 1);
        }
        // variance = m 2^k with 1 <= m < 2; scale by 2^e so that ~2^40 <= num.
        let k = variance.log2().floor() as i32;
        let e = (40 - k).clamp(0, 62);
        // Multiplying by a power of two is exact (no overflow: var < 2^63 is
        // checked below, and e = 0 once var >= 2^40).
        let scaled = variance * 2f64.powi(e);
        if scaled >= 2f64.powi(63) {
            return Err(RandomError::Invalid(format!(
                "discrete Gaussian: variance {variance} is too large"
            )));
        }
        let num = scaled.ceil() as u64;
        Self::new(num.max(1), 1u64 << e)
    }

    /// `N_Z(0, σ²)` with `σ² ≥ sigma²` (see [`Self::with_variance_at_least`]);
    /// the square is rounded up so that rounding never shrinks the noise.
    pub fn with_sigma_at_least(sigma: f64) -> Result<Self, RandomError> {
        if !(sigma.is_finite() && sigma >= 0.0) {
            return Err(RandomError::Invalid(format!(
                "discrete Gaussian: sigma must be finite and >= 0, got {sigma}"
            )));
        }
        // sigma*sigma is within half an ulp (2^-53 relative) of the square.
        Self::with_variance_at_least(sigma * sigma * (1.0 + 2f64.powi(-50)))
    }

    /// `σ²` as the exact rational `(num, den)`.
    pub fn variance_ratio(&self) -> (u64, u64) {
        (self.num, self.den)
    }

    /// `σ²` as a float.
    pub fn variance(&self) -> f64 {
        self.num as f64 / self.den as f64
    }

    /// `σ` as a float.
    pub fn sigma(&self) -> f64 {
        self.variance().sqrt()
    }

    /// One exact draw.
    pub fn sample<R: CryptoRng + ?Sized>(&self, rng: &mut R) -> i64 {
        if self.num == 0 {
            return 0;
        }
        let (a, b, t) = (
            u128::from(self.num),
            u128::from(self.den),
            u128::from(self.t),
        );
        loop {
            let y = discrete_laplace_unchecked(rng, self.t);
            // Acceptance exponent (|y| - σ²/t)² / (2σ²) = (|y|·b·t - a)² / (2·a·b·t²).
            let Some(m) = y
                .unsigned_abs()
                .checked_mul(b)
                .and_then(|v| v.checked_mul(t))
            else {
                continue; // exponent > 4096 (see MAX_DENOMINATOR)
            };
            let diff = m.abs_diff(a);
            let Some(n) = diff.checked_mul(diff) else {
                continue; // diff >= 2^64: exponent >= 2^128 / d >= 4096
            };
            if bernoulli_exp_unchecked(rng, n, self.d) {
                // An accepted draw is within a few thousand σ of 0, and σ < 2^29.
                if let Ok(v) = i64::try_from(y) {
                    return v;
                }
            }
        }
    }

    /// Fills `out` with independent draws.
    pub fn fill<R: CryptoRng + ?Sized>(&self, rng: &mut R, out: &mut [i64]) {
        for o in out {
            *o = self.sample(rng);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insecure_deterministic_rng;
    use rand::RngExt;

    /// Exact pmf of N_Z(0, var) on [-r, r] (the mass beyond is below 1e-30 for r >= 12σ).
    fn pmf(var: f64, r: i64) -> Vec<f64> {
        let w: Vec<f64> = (-r..=r)
            .map(|k| (-(k as f64).powi(2) / (2.0 * var)).exp())
            .collect();
        let z: f64 = w.iter().sum();
        w.into_iter().map(|x| x / z).collect()
    }

    /// Upper 1e-6 quantile of chi-square with `k` degrees of freedom
    /// (Wilson-Hilferty; accurate to a few percent for k >= 5).
    fn chi2_crit(k: usize) -> f64 {
        let k = k as f64;
        let z = 4.753; // standard normal 1 - 1e-6 quantile
        k * (1.0 - 2.0 / (9.0 * k) + z * (2.0 / (9.0 * k)).sqrt()).powi(3)
    }

    /// Chi-square statistic of `samples` against N_Z(0, var), bins with expected
    /// count < 20 merged into their neighbours.
    fn chi2(samples: &[i64], var: f64) -> (f64, usize) {
        let r = (12.0 * var.sqrt()).ceil() as i64 + 2;
        let p = pmf(var, r);
        let n = samples.len() as f64;
        let mut counts = vec![0usize; p.len()];
        for &s in samples {
            let i = (s.clamp(-r, r) + r) as usize;
            counts[i] += 1;
        }
        // Bins with expectation >= 20; each tail is merged into the outermost
        // bin on its side (a separate tail bin of tiny expectation would make
        // one stray sample dominate the statistic).
        let centre: Vec<usize> = (0..p.len()).filter(|&i| p[i] * n >= 20.0).collect();
        let (lo, hi) = (centre[0], *centre.last().unwrap());
        let mut stat = 0.0;
        let mut bins = 0;
        for i in lo..=hi {
            let (range_lo, range_hi) = (
                if i == lo { 0 } else { i },
                if i == hi { p.len() - 1 } else { i },
            );
            let obs = counts[range_lo..=range_hi].iter().sum::<usize>() as f64;
            let exp = p[range_lo..=range_hi].iter().sum::<f64>() * n;
            stat += (obs - exp).powi(2) / exp;
            bins += 1;
        }
        (stat, bins - 1)
    }

    #[test]
    fn bernoulli_exp_has_probability_exp_minus_gamma() {
        let mut rng = insecure_deterministic_rng(1, "test/bexp");
        let n = 200_000;
        for (num, den) in [(0u128, 1u128), (1, 2), (1, 1), (27, 10), (7, 3), (5, 1)] {
            let p = (-(num as f64) / den as f64).exp();
            let k = (0..n)
                .filter(|_| bernoulli_exp(&mut rng, num, den).unwrap())
                .count() as f64;
            let sd = (n as f64 * p * (1.0 - p)).sqrt();
            assert!(
                (k - n as f64 * p).abs() <= 5.0 * sd + 1e-9,
                "exp(-{num}/{den}): {k} of {n}, expected {}",
                n as f64 * p
            );
        }
        assert!(bernoulli_exp(&mut rng, 1, 0).is_err());
    }

    #[test]
    fn discrete_laplace_matches_its_pmf() {
        let mut rng = insecure_deterministic_rng(2, "test/dlap");
        for t in [1u64, 3] {
            let n = 200_000;
            let mut counts = std::collections::BTreeMap::new();
            for _ in 0..n {
                *counts
                    .entry(discrete_laplace(&mut rng, t).unwrap())
                    .or_insert(0usize) += 1;
            }
            // P(x) = (1 - e^{-1/t}) / (1 + e^{-1/t}) e^{-|x|/t}.
            let e = (-1.0 / t as f64).exp();
            let c = (1.0 - e) / (1.0 + e);
            for x in -4i128..=4 {
                let p = c * e.powi(x.unsigned_abs() as i32);
                let got = *counts.get(&x).unwrap_or(&0) as f64;
                let sd = (n as f64 * p * (1.0 - p)).sqrt();
                assert!((got - n as f64 * p).abs() <= 5.0 * sd, "t {t} x {x}: {got}");
            }
        }
        assert!(discrete_laplace(&mut rng, 0).is_err());
    }

    #[test]
    fn small_sigma_passes_chi_square_and_rounded_normal_fails() {
        let mut rng = insecure_deterministic_rng(3, "test/dg-chi2");
        let n = 200_000;
        for (num, den) in [(1u64, 1u64), (5, 2), (3, 10), (49, 1)] {
            let g = DiscreteGaussian::new(num, den).unwrap();
            let s: Vec<i64> = (0..n).map(|_| g.sample(&mut rng)).collect();
            let (stat, df) = chi2(&s, g.variance());
            assert!(
                stat < chi2_crit(df),
                "sigma^2 {num}/{den}: chi2 {stat} with {df} df (critical {})",
                chi2_crit(df)
            );
        }
        // The test can fail: a continuous Gaussian rounded to the nearest
        // integer (the naive "discretisation") is rejected at sigma = 1.
        let rounded: Vec<i64> = (0..n)
            .map(|_| {
                let u1 = 1.0 - rng.random::<f64>();
                let u2 = rng.random::<f64>();
                ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()).round() as i64
            })
            .collect();
        let (stat, df) = chi2(&rounded, 1.0);
        assert!(
            stat > 10.0 * chi2_crit(df),
            "rounded normal passed: chi2 {stat}"
        );
    }

    #[test]
    fn large_sigma_mean_variance_and_tail() {
        // sigma = 2^20, the grid DP-FedAvg uses with noise multiplier 1.
        let g = DiscreteGaussian::with_sigma_at_least((1u64 << 20) as f64).unwrap();
        let sigma = g.sigma();
        assert!(sigma >= (1u64 << 20) as f64 && sigma < (1u64 << 20) as f64 * (1.0 + 1e-9));
        let mut rng = insecure_deterministic_rng(4, "test/dg-large");
        let n = 200_000;
        let mut s = vec![0i64; n];
        g.fill(&mut rng, &mut s);
        let x: Vec<f64> = s.iter().map(|&v| v as f64 / sigma).collect();
        let mean = x.iter().sum::<f64>() / n as f64;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        assert!(mean.abs() < 5.0 / (n as f64).sqrt(), "mean {mean}");
        assert!(
            (var - 1.0).abs() < 5.0 * (2.0 / n as f64).sqrt(),
            "variance ratio {var}"
        );
        // Tail beyond 3 sigma: 0.0026998 for a Gaussian of this width.
        let tail = x.iter().filter(|v| v.abs() > 3.0).count() as f64 / n as f64;
        let p = 0.002_699_796;
        assert!(
            (tail - p).abs() < 5.0 * (p * (1.0 - p) / n as f64).sqrt(),
            "tail {tail}"
        );
        // Fourth moment (kurtosis 3) catches a Laplace-shaped mistake.
        let m4 = x.iter().map(|v| (v - mean).powi(4)).sum::<f64>() / n as f64;
        assert!((m4 - 3.0).abs() < 0.1, "fourth moment {m4}");
    }

    #[test]
    fn parameters_are_checked_and_rounded_up() {
        assert!(DiscreteGaussian::new(1, 0).is_err());
        assert!(DiscreteGaussian::new(u64::MAX, 1).is_err());
        assert!(DiscreteGaussian::with_variance_at_least(f64::NAN).is_err());
        assert!(DiscreteGaussian::with_variance_at_least(-1.0).is_err());
        assert!(DiscreteGaussian::with_variance_at_least(1e300).is_err());
        for v in [1e-6, 0.3, 1.0, 2.5, 12345.678, 1.1e12] {
            let g = DiscreteGaussian::with_variance_at_least(v).unwrap();
            let (a, b) = g.variance_ratio();
            assert!(a as f64 / b as f64 >= v, "{a}/{b} < {v}");
            assert!(
                (a as f64 / b as f64 - v) / v < 1e-11,
                "{a}/{b} far above {v}"
            );
        }
        let zero = DiscreteGaussian::with_variance_at_least(0.0).unwrap();
        let mut rng = insecure_deterministic_rng(5, "test/zero");
        assert!((0..100).all(|_| zero.sample(&mut rng) == 0));
    }
}
