//! Distributed DP on the wire: the distributed discrete Gaussian mechanism
//! of Kairouz, Liu and Steinke, "The Distributed Discrete Gaussian Mechanism
//! for Federated Learning with Secure Aggregation" (ICML 2021), so that the
//! server never sees a noiseless sum.
//!
//! Each client clips its update to L2 norm `c`, scales it onto the integer
//! grid of step `gamma = c / S` (`S = 2^scale_bits` grid points per clip),
//! rounds each coordinate randomly (unbiased), adds its share of noise
//! `N_Z(0, sigma_local^2)` drawn with the exact discrete Gaussian sampler of
//! ppml-random from the OS CSPRNG, and hands the integers to secure
//! aggregation as elements of `Z_2^k` (two's complement). The server unmasks
//! `sum_i (z_i + noise_i) mod 2^k`, reads it as a signed integer (the ring is
//! sized so that it cannot wrap, see [`ring_bits_for`]), and scales it back.
//!
//! Simplifications against the paper, all on the conservative side: no
//! random rotation and no conditional rounding. Without conditional
//! rounding the rounded vector's norm is bounded deterministically,
//! `||z||_2 <= S + sqrt(d)` (each coordinate moves by less than 1), and
//! `||z||_1 <= sqrt(d) ||z||_2`; the accountant uses these bounds. Without the
//! rotation the modulus must hold the largest coordinate sum (`n (S + 1)`)
//! instead of a flattened one, which costs a few bits per value on the wire,
//! not privacy.
//!
//! Accounting ([`DdgAccountant`]): the sum of `n` independent `N_Z(0, s^2)`
//! is not a discrete Gaussian, but the paper's Proposition 14 bounds the
//! Rényi DP of adding it to a query of L2 sensitivity `D2` and L1
//! sensitivity `D1` in dimension `d`: with
//! `tau = 10 sum_{k=1}^{n-1} exp(-2 pi^2 s^2 k / (k + 1))`,
//! `l2 = D2 / (sqrt(n) s)` and `l1 = D1 / (sqrt(n) s)`,
//! `RDP(alpha) <= min(alpha/2 l2^2 + tau d, alpha/2 (l2^2 + 2 l1 tau + tau^2 d),
//! alpha/2 (l2 + sqrt(d) tau)^2)`. Rounds compose by adding RDP; `n` is the
//! number of clients whose noise is actually in the unmasked sum (the
//! survivors), so dropouts that thin the noise are charged. Sampling
//! amplification is NOT used (every round is charged as if `q = 1`):
//! conservative.

use crate::FedError;
use ppml_random::dgauss::DiscreteGaussian;
use rand::RngExt;
use serde::{Deserialize, Serialize};

/// What a client needs to add its share of distributed noise.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DdpTask {
    /// L2 clip `c` of the update, in model units.
    pub clip: f64,
    /// Grid points per clip: `S = c / gamma`.
    pub scale: f64,
    /// Standard deviation of this client's noise share, in grid units.
    pub local_sigma: f64,
}

/// Distributed-DP settings: central noise multiplier `z` (the noise std of
/// the sum is `z c` when `planned_clients` contribute), delta for reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DdpConfig {
    pub clip: f64,
    pub noise_multiplier: f64,
    pub delta: f64,
    /// `log2 S`: grid points per clip (default 16).
    pub scale_bits: u32,
}

impl DdpConfig {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), FedError> {
        if !(self.clip > 0.0 && self.clip.is_finite()) {
            return Err(FedError::Config(format!(
                "DP clip must be positive, got {}",
                self.clip
            )));
        }
        if !(self.noise_multiplier > 0.0 && self.noise_multiplier.is_finite()) {
            return Err(FedError::Config(format!(
                "distributed DP needs a positive noise multiplier, got {}",
                self.noise_multiplier
            )));
        }
        if !(self.delta > 0.0 && self.delta < 1.0) {
            return Err(FedError::Config(format!(
                "DP delta must be in (0, 1), got {}",
                self.delta
            )));
        }
        if !(4..=24).contains(&self.scale_bits) {
            return Err(FedError::Config(format!(
                "scale bits must be in 4..=24, got {}",
                self.scale_bits
            )));
        }
        Ok(())
    }

    /// The task of every client when `planned` clients are expected to
    /// contribute: each adds `1/planned` of the central variance.
    pub fn task(&self, planned: usize) -> DdpTask {
        let scale = f64::from(1u32 << self.scale_bits);
        DdpTask {
            clip: self.clip,
            scale,
            local_sigma: self.noise_multiplier * scale / (planned.max(1) as f64).sqrt(),
        }
    }
}

/// `k` such that the sum of `n` clients' grid vectors plus their noise fits
/// in the signed range of `Z_2^k` (|sum| < 2^(k-1)) except with probability
/// below `1e-30` per coordinate (noise beyond 12 standard deviations).
pub fn ring_bits_for(task: &DdpTask, n: usize) -> u32 {
    let n = n.max(1) as f64;
    let bound = n * (task.scale + 1.0) + 12.0 * n.sqrt() * task.local_sigma;
    // 2^(k-1) > bound.
    (bound.log2().floor() as u32) + 2
}

/// The client's part: clip to `task.clip`, scale, round randomly, add the
/// discrete Gaussian noise share, and encode as elements of `Z_2^k`. Noise
/// and rounding come from the OS CSPRNG.
pub fn encode_client(delta: &[f32], task: &DdpTask, ring_bits: u32) -> Result<Vec<u64>, FedError> {
    if !(task.scale > 0.0 && task.scale.is_finite() && task.local_sigma >= 0.0) {
        return Err(FedError::Config(format!(
            "bad distributed-DP task {task:?}"
        )));
    }
    if let Some(i) = delta.iter().position(|x| !x.is_finite()) {
        return Err(FedError::Aggregate(format!(
            "update value {i} is not finite"
        )));
    }
    let mut v = delta.to_vec();
    crate::dp::clip_update(&mut v, task.clip).map_err(|e| FedError::Config(e.to_string()))?;
    let g = DiscreteGaussian::with_sigma_at_least(task.local_sigma)
        .map_err(|e| FedError::Config(e.to_string()))?;
    let mut rng = ppml_random::os_rng();
    let mask = ppml_secagg::ring_mask(ring_bits);
    let per = task.scale / task.clip;
    Ok(v.iter()
        .map(|&x| {
            let y = f64::from(x) * per;
            let f = y.floor();
            // Unbiased randomized rounding: up with probability y - floor(y).
            let up = rng.random::<f64>() < (y - f);
            let z = f as i64 + i64::from(up) + g.sample(&mut rng);
            (z as u64) & mask
        })
        .collect())
}

/// The server's part: the unmasked sum in `Z_2^k` read as signed integers
/// and scaled back to model units (still noisy: the noise is in it).
pub fn decode_sum(sum: &[u64], task: &DdpTask, ring_bits: u32) -> Vec<f32> {
    let half = 1u64 << (ring_bits - 1);
    let modulus = if ring_bits >= 64 {
        0
    } else {
        1u64 << ring_bits
    };
    let per = task.clip / task.scale;
    sum.iter()
        .map(|&s| {
            let signed = if s >= half {
                -((modulus.wrapping_sub(s)) as f64)
            } else {
                s as f64
            };
            (signed * per) as f32
        })
        .collect()
}

/// Integer RDP orders of the paper's accountant.
fn orders() -> Vec<f64> {
    (2..=128).map(f64::from).chain([256.0]).collect()
}

/// Rényi-DP accountant for the distributed discrete Gaussian (Proposition 14
/// of Kairouz, Liu, Steinke 2021), composed over rounds, no sampling
/// amplification (conservative).
#[derive(Debug, Clone)]
pub struct DdgAccountant {
    orders: Vec<f64>,
    rdp: Vec<f64>,
    rounds: u64,
}

impl Default for DdgAccountant {
    fn default() -> Self {
        Self::new()
    }
}

impl DdgAccountant {
    /// Nothing spent.
    pub fn new() -> Self {
        let orders = orders();
        let rdp = vec![0.0; orders.len()];
        Self {
            orders,
            rdp,
            rounds: 0,
        }
    }

    /// RDP at each order of one release: `n` noise shares of std `s` (grid
    /// units) on a `dim`-dimensional sum whose L2 sensitivity is at most
    /// `S + sqrt(dim)` grid units.
    pub fn round_rdp(task: &DdpTask, n: usize, dim: usize) -> Vec<f64> {
        let d = dim as f64;
        let s = task.local_sigma;
        let n_f = n.max(1) as f64;
        let d2 = task.scale + d.sqrt();
        let d1 = d.sqrt() * d2;
        let l2 = d2 / (n_f.sqrt() * s);
        let l1 = d1 / (n_f.sqrt() * s);
        let mut tau = 0.0;
        for k in 1..n.max(1) {
            let k = k as f64;
            tau += (-2.0 * (std::f64::consts::PI * s).powi(2) * (k / (k + 1.0))).exp();
        }
        tau *= 10.0;
        orders()
            .iter()
            .map(|&a| {
                let t1 = a / 2.0 * l2 * l2 + tau * d;
                let t2 = a / 2.0 * (l2 * l2 + 2.0 * l1 * tau + tau * tau * d);
                let t3 = a / 2.0 * (l2 + d.sqrt() * tau).powi(2);
                t1.min(t2).min(t3)
            })
            .collect()
    }

    /// Charges one round in which `n` clients' noise is in the sum.
    pub fn step(&mut self, task: &DdpTask, n: usize, dim: usize) {
        for (r, x) in self.rdp.iter_mut().zip(Self::round_rdp(task, n, dim)) {
            *r += x;
        }
        self.rounds += 1;
    }

    /// Rounds charged.
    pub fn rounds(&self) -> u64 {
        self.rounds
    }

    /// Epsilon at `delta` (the RDP-to-DP conversion of [`crate::dp`]); 0 before any round.
    pub fn epsilon(&self, delta: f64) -> Result<f64, FedError> {
        if self.rounds == 0 {
            return Ok(0.0);
        }
        crate::dp::rdp_to_epsilon(&self.orders, &self.rdp, delta)
            .map(|(e, _)| e)
            .map_err(|e| FedError::Aggregate(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_many_shares_the_accountant_approaches_the_continuous_gaussian() {
        // Large local noise: tau is negligible, so one round's RDP is
        // alpha D2^2 / (2 n s^2) = alpha / (2 z^2) (1 + sqrt(d)/S)^2.
        let cfg = DdpConfig {
            clip: 1.0,
            noise_multiplier: 1.0,
            delta: 1e-5,
            scale_bits: 16,
        };
        let task = cfg.task(10);
        let rdp = DdgAccountant::round_rdp(&task, 10, 100);
        let ratio = (1.0 + 10.0 / 65536.0f64).powi(2);
        assert!((rdp[0] - 2.0 / 2.0 * ratio).abs() < 1e-9, "{}", rdp[0]);
        // Fewer survivors than planned: less noise, more epsilon.
        let mut a = DdgAccountant::new();
        a.step(&task, 10, 100);
        let mut b = DdgAccountant::new();
        b.step(&task, 5, 100);
        assert!(b.epsilon(1e-5).unwrap() > a.epsilon(1e-5).unwrap());
    }

    #[test]
    fn encode_decode_round_trip_without_noise_is_unbiased_rounding() {
        let task = DdpTask {
            clip: 10.0,
            scale: 1024.0,
            local_sigma: 0.0,
        };
        let k = ring_bits_for(&task, 3);
        let x = [0.5f32, -0.25, 3.0, -7.0];
        let mut acc = vec![0u64; 4];
        for _ in 0..3 {
            let e = encode_client(&x, &task, k).unwrap();
            for (a, v) in acc.iter_mut().zip(e) {
                *a = a.wrapping_add(v) & ppml_secagg::ring_mask(k);
            }
        }
        let d = decode_sum(&acc, &task, k);
        for (s, x) in d.iter().zip(x) {
            assert!(
                (s - 3.0 * x).abs() <= 3.0 * 10.0 / 1024.0 + 1e-6,
                "{s} vs {x}"
            );
        }
    }
}
