//! Shamir t-of-n secret sharing over [`Fp`], and additive sharing over it.
//!
//! A secret `s` is the constant term of a random polynomial `f` of degree
//! `t - 1`; party `i` (indices 1..=n) holds `f(i)`. Any `t` shares determine
//! `s = f(0)` by Lagrange interpolation; any `t - 1` are uniform and
//! independent of `s`.

use crate::{Fp, SharingError};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// One Shamir share: the evaluation point (party index, >= 1) and `f(index)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShamirShare {
    /// Evaluation point, the holder's 1-based index.
    pub index: u32,
    /// The polynomial's value at `index`.
    pub value: Fp,
}

/// Shares `secret` t-of-n. Share `i` of the result has index `i + 1`.
pub fn share<R: Rng + ?Sized>(
    secret: Fp,
    threshold: usize,
    parties: usize,
    rng: &mut R,
) -> Result<Vec<ShamirShare>, SharingError> {
    if threshold == 0 || threshold > parties || parties > u32::MAX as usize {
        return Err(SharingError::InvalidThreshold { threshold, parties });
    }
    // coeffs[0] = secret, the rest uniform.
    let mut coeffs = Vec::with_capacity(threshold);
    coeffs.push(secret);
    coeffs.extend((1..threshold).map(|_| Fp::random(rng)));
    Ok((1..=parties as u32)
        .map(|i| {
            let x = Fp::from_u64(i as u64);
            // Horner's rule from the highest coefficient down.
            let value = coeffs.iter().rev().fold(Fp::ZERO, |acc, &c| acc * x + c);
            ShamirShare { index: i, value }
        })
        .collect())
}

/// Lagrange coefficients `l_i` such that `f(0) = sum_i l_i f(x_i)` for the
/// given distinct, non-zero evaluation points. Compute once per set of
/// survivors and reuse for every secret shared among the same parties.
pub fn lagrange_at_zero(indices: &[u32]) -> Result<Vec<Fp>, SharingError> {
    check_indices(indices)?;
    let xs: Vec<Fp> = indices.iter().map(|&i| Fp::from_u64(i as u64)).collect();
    let mut nums = Vec::with_capacity(xs.len());
    let mut dens = Vec::with_capacity(xs.len());
    for (i, &xi) in xs.iter().enumerate() {
        let (mut num, mut den) = (Fp::ONE, Fp::ONE);
        for (j, &xj) in xs.iter().enumerate() {
            if i != j {
                num *= xj;
                den *= xj - xi;
            }
        }
        nums.push(num);
        dens.push(den);
    }
    // Batch inversion (Montgomery's trick): one field inversion in total.
    let mut prefix = Vec::with_capacity(dens.len());
    let mut acc = Fp::ONE;
    for &d in &dens {
        prefix.push(acc);
        acc *= d;
    }
    let mut inv = acc.inv()?; // non-zero: the points are distinct, so every factor is
    let mut out = vec![Fp::ZERO; dens.len()];
    for i in (0..dens.len()).rev() {
        out[i] = nums[i] * inv * prefix[i];
        inv *= dens[i];
    }
    Ok(out)
}

fn check_indices(indices: &[u32]) -> Result<(), SharingError> {
    let mut seen = std::collections::HashSet::with_capacity(indices.len());
    for &i in indices {
        if i == 0 {
            return Err(SharingError::ZeroIndex);
        }
        if !seen.insert(i) {
            return Err(SharingError::DuplicateShare(i));
        }
    }
    Ok(())
}

/// Reconstructs the secret from at least `threshold` shares with distinct
/// indices (any subset works; the first `threshold` are used).
pub fn reconstruct(shares: &[ShamirShare], threshold: usize) -> Result<Fp, SharingError> {
    if threshold == 0 {
        return Err(SharingError::InvalidThreshold {
            threshold,
            parties: shares.len(),
        });
    }
    if shares.len() < threshold {
        return Err(SharingError::TooFewShares {
            needed: threshold,
            got: shares.len(),
        });
    }
    let indices: Vec<u32> = shares.iter().map(|s| s.index).collect();
    check_indices(&indices)?;
    let used = &shares[..threshold];
    let coeffs = lagrange_at_zero(&indices[..threshold])?;
    Ok(used
        .iter()
        .zip(&coeffs)
        .fold(Fp::ZERO, |acc, (s, &l)| acc + s.value * l))
}

/// Additive sharing over F_p among `n >= 1` parties.
pub fn additive_share<R: Rng + ?Sized>(secret: Fp, n: usize, rng: &mut R) -> Vec<Fp> {
    let n = n.max(1);
    let mut shares: Vec<Fp> = (0..n - 1).map(|_| Fp::random(rng)).collect();
    let sum = shares.iter().fold(Fp::ZERO, |a, &b| a + b);
    shares.push(secret - sum);
    shares
}

/// Reconstructs an additively shared field element.
pub fn additive_reconstruct(shares: &[Fp]) -> Fp {
    shares.iter().fold(Fp::ZERO, |a, &b| a + b)
}
