//! Additive secret sharing over Z_2^64 for n parties.
//!
//! A secret `x` is split into `x_0, ..., x_{n-1}` with the first `n-1` shares
//! uniform and `x_{n-1} = x - sum(others)`, so any `n-1` shares are jointly
//! uniform and independent of `x`. Linear operations are local:
//! each party adds/subtracts/negates its own shares, multiplies them by public
//! values, and exactly one party (index 0) adds a public constant.

use crate::{RingTensor, SharingError};
use ppml_random::fill_u64;
use rand::{CryptoRng, Rng};

/// Shares a scalar among `n >= 1` parties.
pub fn share<R: Rng + CryptoRng + ?Sized>(x: u64, n: usize, rng: &mut R) -> Vec<u64> {
    let mut shares = vec![0u64; n.max(1)];
    let last = shares.len() - 1;
    fill_u64(rng, &mut shares[..last]);
    let sum = shares[..last].iter().fold(0u64, |a, &b| a.wrapping_add(b));
    shares[last] = x.wrapping_sub(sum);
    shares
}

/// Reconstructs a scalar: the wrapping sum of all shares.
pub fn reconstruct(shares: &[u64]) -> u64 {
    shares.iter().fold(0u64, |a, &b| a.wrapping_add(b))
}

/// Shares a tensor among `n >= 1` parties; element `i` of the result is party `i`'s share.
pub fn share_tensor<R: Rng + CryptoRng + ?Sized>(
    x: &RingTensor,
    n: usize,
    rng: &mut R,
) -> Vec<RingTensor> {
    let n = n.max(1);
    let mut shares = Vec::with_capacity(n);
    let mut last = x.clone();
    for _ in 0..n - 1 {
        let mut s = x.clone();
        fill_u64(rng, s.data_mut());
        for (l, &v) in last.data_mut().iter_mut().zip(s.data()) {
            *l = l.wrapping_sub(v);
        }
        shares.push(s);
    }
    shares.push(last);
    shares
}

/// Two-party sharing from a mask: party 0 gets `mask`, party 1 gets
/// `x - mask`. With `mask` drawn from a PRG whose seed party 0 knows, only
/// party 1's share needs to travel.
pub fn share_with_mask(x: &RingTensor, mask: &RingTensor) -> Result<RingTensor, SharingError> {
    x.sub(mask)
}

/// Reconstructs a tensor from all parties' shares.
pub fn reconstruct_tensor(shares: &[RingTensor]) -> Result<RingTensor, SharingError> {
    let (first, rest) = shares
        .split_first()
        .ok_or(SharingError::TooFewShares { needed: 1, got: 0 })?;
    let mut acc = first.clone();
    for s in rest {
        acc.add_assign(s)?;
    }
    Ok(acc)
}

/// Adds a public scalar to a shared scalar: only party 0 changes its share.
#[inline]
pub fn add_public(share: u64, party: usize, public: u64) -> u64 {
    if party == 0 {
        share.wrapping_add(public)
    } else {
        share
    }
}

/// Multiplies a shared scalar by a public scalar: every party scales its share.
#[inline]
pub fn mul_public(share: u64, public: u64) -> u64 {
    share.wrapping_mul(public)
}

/// Adds a public tensor to a shared tensor, in place (party 0 only).
pub fn add_public_tensor(
    share: &mut RingTensor,
    party: usize,
    public: &RingTensor,
) -> Result<(), SharingError> {
    if party == 0 {
        share.add_assign(public)
    } else if share.shape() != public.shape() {
        Err(SharingError::ShapeMismatch {
            left: share.shape().to_vec(),
            right: public.shape().to_vec(),
        })
    } else {
        Ok(())
    }
}

/// Multiplies a shared tensor by a public tensor element-wise, in place.
pub fn mul_public_tensor(share: &mut RingTensor, public: &RingTensor) -> Result<(), SharingError> {
    share.mul_elem_assign(public)
}

/// `public (m x k) * share (k x n)`: a public matrix times a shared one is a
/// local operation (matmul distributes over the sum of shares).
pub fn public_matmul_share(
    public: &RingTensor,
    share: &RingTensor,
) -> Result<RingTensor, SharingError> {
    public.matmul(share)
}

/// `share (m x k) * public (k x n)`, local.
pub fn share_matmul_public(
    share: &RingTensor,
    public: &RingTensor,
) -> Result<RingTensor, SharingError> {
    share.matmul(public)
}
