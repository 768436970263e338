//! # ppml-random: the one home of ppml's randomness
//!
//! Every random choice in ppml comes from here, and each kind has its own
//! door, so that reading a call site says what the randomness is for:
//!
//! * **Secrets** (shares, masks, Beaver and comparison material, pairwise
//!   seeds, secure-aggregation keys, DP noise, DP client sampling) come from
//!   the operating system: [`os_rng`] returns a [`SecretRng`], a ChaCha12
//!   stream keyed with 32 bytes from the OS CSPRNG (`getrandom`, through
//!   rand's `SysRng`; on Linux the `getrandom(2)` system call). No seed a user
//!   types ever reaches it.
//! * **Public, reproducible choices** (weight initialisation, data order,
//!   partitions, client sampling in runs without DP, simulated dropouts, the
//!   SecAgg+ graph) come from a [`PublicSeed`] (the CLI's `--seed`) through
//!   ONE labelled derivation: [`PublicSeed::rng`]`("nn/init")` keys a
//!   [`PublicRng`] with `blake3::derive_key(context, seed || label)`, so
//!   different purposes get independent streams without ad-hoc XOR constants.
//! * **Deterministic secrets for tests and benchmarks only**:
//!   [`insecure_deterministic_rng`] and [`SecretSource::InsecureDeterministic`].
//!   The name is the warning: anyone who knows the seed knows the secrets.
//! * [`shuffle`]: the one Fisher-Yates shuffle of the workspace.
//! * [`SeedStream`]: the AES-128-CTR seed expansion from which parties sharing
//!   a seed draw identical correlated randomness; [`fill_u64`] and
//!   [`random_u64s`] fill ring elements from any generator.
//! * [`dgauss`]: the exact discrete Gaussian sampler of Canonne, Kamath and
//!   Steinke (2020), in integer arithmetic, for DP noise that resists
//!   floating-point attacks.
//!
//! ```
//! use ppml_random::{PublicSeed, SecretSource, os_rng, shuffle};
//! use ppml_random::dgauss::DiscreteGaussian;
//! use rand::Rng;
//!
//! // Public: the same seed and label give the same order, on every machine.
//! let seed = PublicSeed::new(42);
//! let (mut a, mut b) = ((0..10).collect::<Vec<u32>>(), (0..10).collect::<Vec<u32>>());
//! shuffle(&mut a, &mut seed.rng("example/order"));
//! shuffle(&mut b, &mut seed.rng("example/order"));
//! assert_eq!(a, b);
//!
//! // Secret: from the OS, different every run.
//! let (mut r1, mut r2) = (os_rng(), os_rng());
//! assert_ne!(r1.next_u64(), r2.next_u64());
//!
//! // DP noise: discrete Gaussian with variance 4 (sigma = 2), exact.
//! let g = DiscreteGaussian::new(4, 1).unwrap();
//! let noise: Vec<i64> = (0..5).map(|_| g.sample(&mut r1)).collect();
//! assert_eq!(noise.len(), 5);
//!
//! // Tests that need reproducible secrets say so.
//! let mut t = SecretSource::InsecureDeterministic(7).rng("test/shares");
//! let mut u = SecretSource::InsecureDeterministic(7).rng("test/shares");
//! assert_eq!(t.next_u64(), u.next_u64());
//! ```

pub mod dgauss;
mod secret;
mod stream;

pub use secret::{SecretRng, SecretSource, insecure_deterministic_rng, os_rng, try_os_rng};
pub use stream::SeedStream;

use rand::{Rng, SeedableRng};

/// Errors of this crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RandomError {
    /// The operating system's random source failed.
    #[error("the operating system's random number generator failed: {0}")]
    Os(String),
    /// Parameters outside the supported range.
    #[error("invalid parameter: {0}")]
    Invalid(String),
}

/// The blake3 `derive_key` context of public streams. Changing it changes
/// every seeded run, so it carries a version.
const PUBLIC_CONTEXT: &str = "ppml 2026-12 public reproducible randomness v1";

/// A user-supplied seed (the CLI's `--seed`) for PUBLIC, reproducible
/// choices only: weight initialisation, data order, partitions, client
/// sampling in runs without DP, simulated dropouts, the SecAgg+ graph.
///
/// Never use it for secrets: everyone who reads the command line or the
/// JSON report knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PublicSeed(u64);

impl PublicSeed {
    /// Wraps a seed.
    pub const fn new(seed: u64) -> Self {
        PublicSeed(seed)
    }

    /// The seed itself (for reports).
    pub const fn value(&self) -> u64 {
        self.0
    }

    /// The 32-byte key of the stream labelled `label`:
    /// `blake3::derive_key(PUBLIC_CONTEXT, seed.to_le_bytes() || label)`.
    /// The seed has a fixed length, so (seed, label) pairs never collide.
    pub fn key(&self, label: &str) -> [u8; 32] {
        let mut material = Vec::with_capacity(8 + label.len());
        material.extend_from_slice(&self.0.to_le_bytes());
        material.extend_from_slice(label.as_bytes());
        blake3::derive_key(PUBLIC_CONTEXT, &material)
    }

    /// The public stream for one purpose, e.g. `"nn/init"`,
    /// `"fedavg/partition"`, `"fedavg/client-order/3/17"`.
    pub fn rng(&self, label: &str) -> PublicRng {
        PublicRng(rand_chacha::ChaCha12Rng::from_seed(self.key(label)))
    }

    /// A 64-bit sub-seed for `label`, for protocols that send a public seed
    /// to a peer (e.g. split learning's agreed shuffle seed).
    pub fn derive_u64(&self, label: &str) -> u64 {
        let k = self.key(label);
        u64::from_le_bytes([k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7]])
    }

    /// The seed labelled `label`, as a new [`PublicSeed`].
    pub fn derive(&self, label: &str) -> PublicSeed {
        PublicSeed(self.derive_u64(label))
    }
}

/// A reproducible stream for public choices (ChaCha12 keyed by
/// [`PublicSeed::key`]). Cloning it forks the stream: both copies produce
/// the same values, which is what two parties agreeing on an order need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicRng(rand_chacha::ChaCha12Rng);

impl rand::TryRng for PublicRng {
    type Error = core::convert::Infallible;

    #[inline]
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.0.next_u32())
    }

    #[inline]
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(self.0.next_u64())
    }

    #[inline]
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.0.fill_bytes(dst);
        Ok(())
    }
}

/// Uniform integer in `0..=max` by Lemire's widening multiply with rejection
/// (exactly uniform; the same values on every platform, unlike `usize`-width
/// sampling).
#[inline]
fn uniform_inclusive<R: Rng + ?Sized>(rng: &mut R, max: u64) -> u64 {
    let range = match max.checked_add(1) {
        Some(r) => r,
        None => return rng.next_u64(),
    };
    // Reject the lowest `2^64 mod range` products' low halves.
    let threshold = range.wrapping_neg() % range;
    loop {
        let m = u128::from(rng.next_u64()) * u128::from(range);
        if (m as u64) >= threshold {
            return (m >> 64) as u64;
        }
    }
}

/// The workspace's one Fisher-Yates shuffle: every permutation of `v` is
/// equally likely, and the result depends only on the generator's stream
/// (indices are drawn as `u64` on every platform), so two parties with the
/// same [`PublicRng`] agree on the order.
pub fn shuffle<T, R: Rng + ?Sized>(v: &mut [T], rng: &mut R) {
    for i in (1..v.len()).rev() {
        // i < v.len() <= isize::MAX, so both casts are lossless.
        let j = uniform_inclusive(rng, i as u64) as usize;
        v.swap(i, j);
    }
}

/// `0..n` in a uniformly random order (one [`shuffle`]).
pub fn permutation<R: Rng + ?Sized>(n: usize, rng: &mut R) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    shuffle(&mut v, rng);
    v
}

/// Fills `out` with uniform ring elements (`Z_2^64`), as fast as the
/// generator produces bytes. The stream is the same on every platform
/// (little-endian).
pub fn fill_u64<R: Rng + ?Sized>(rng: &mut R, out: &mut [u64]) {
    // SAFETY: u64 has no invalid bit patterns and u8 has alignment 1, so a
    // byte view of the same memory, of exactly 8 * len bytes, is valid for
    // writes, and the borrow of `out` is held for the view's whole lifetime.
    let bytes =
        unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr().cast::<u8>(), out.len() * 8) };
    rng.fill_bytes(bytes);
    if cfg!(target_endian = "big") {
        for v in out.iter_mut() {
            *v = u64::from_le(*v);
        }
    }
}

/// A vector of `len` uniform ring elements.
pub fn random_u64s<R: Rng + ?Sized>(rng: &mut R, len: usize) -> Vec<u64> {
    let mut v = vec![0u64; len];
    fill_u64(rng, &mut v);
    v
}

/// Bernoulli(`q`) for a probability given as an `f64` in `[0, 1]`, exact for
/// the dyadic rational that `q` is: a uniform real in `[0, 1)` is compared
/// with `q` 64 bits at a time, in integers, so no rounding of the draw can
/// bias it. Used for Poisson client sampling.
pub fn bernoulli_f64<R: Rng + ?Sized>(rng: &mut R, q: f64) -> Result<bool, RandomError> {
    if !(0.0..=1.0).contains(&q) {
        return Err(RandomError::Invalid(format!(
            "probability must be in [0, 1], got {q}"
        )));
    }
    if q == 1.0 {
        return Ok(true);
    }
    // q < 1 is m * 2^e with a 53-bit m; compare a uniform 2^-k-grid draw with
    // q exactly: draw 64-bit words until the first one that differs from q's
    // binary expansion decides.
    let mut rest = q;
    loop {
        // Next 64 bits of q's binary expansion (exact: scaling by 2^64 and
        // taking the integer part of a double is exact).
        let scaled = rest * 18_446_744_073_709_551_616.0;
        let word = if scaled >= 18_446_744_073_709_551_616.0 {
            u64::MAX
        } else {
            scaled as u64
        };
        rest = scaled - word as f64;
        let draw = rng.next_u64();
        if draw != word {
            return Ok(draw < word);
        }
        if rest == 0.0 {
            // The draw equals q's (finite) expansion so far and q has no more
            // bits: the uniform value is >= q.
            return Ok(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_streams_are_reproducible_and_labelled() {
        let s = PublicSeed::new(5);
        let a = random_u64s(&mut s.rng("a"), 8);
        assert_eq!(a, random_u64s(&mut s.rng("a"), 8));
        assert_ne!(a, random_u64s(&mut s.rng("b"), 8));
        assert_ne!(a, random_u64s(&mut PublicSeed::new(6).rng("a"), 8));
        // A label is not a seed: ("ab", seed) != ("a", seed') by construction.
        assert_ne!(s.key("ab"), s.key("a"));
        assert_eq!(s.derive_u64("x"), s.derive_u64("x"));
        assert_ne!(s.derive_u64("x"), s.derive_u64("y"));
        // Public and insecure-secret derivations never share a key.
        let mut p = s.rng("t");
        let mut i = insecure_deterministic_rng(5, "t");
        assert_ne!(p.next_u64(), i.next_u64());
    }

    #[test]
    fn shuffle_is_a_uniform_permutation() {
        // 4 elements: 24 permutations, 240k shuffles; each count ~ 10k with
        // sd ~ 98; allow 5 sd.
        let mut rng = PublicSeed::new(1).rng("test/shuffle");
        let mut counts = std::collections::HashMap::new();
        let n = 240_000;
        for _ in 0..n {
            let mut v = [0u8, 1, 2, 3];
            shuffle(&mut v, &mut rng);
            *counts.entry(v).or_insert(0usize) += 1;
        }
        assert_eq!(counts.len(), 24);
        let e = n as f64 / 24.0;
        let sd = (e * (1.0 - 1.0 / 24.0)).sqrt();
        for (p, c) in counts {
            assert!(
                (c as f64 - e).abs() < 5.0 * sd,
                "permutation {p:?} seen {c} times, expected {e}"
            );
        }
        let p = permutation(100, &mut rng);
        let mut s = p.clone();
        s.sort_unstable();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
        assert_ne!(p, s);
    }

    #[test]
    fn uniform_inclusive_is_unbiased_at_awkward_ranges() {
        let mut rng = PublicSeed::new(2).rng("test/uniform");
        for max in [0u64, 1, 2, 6, 9] {
            let mut counts = vec![0usize; max as usize + 1];
            let n = 60_000;
            for _ in 0..n {
                counts[uniform_inclusive(&mut rng, max) as usize] += 1;
            }
            let e = n as f64 / (max + 1) as f64;
            for c in counts {
                assert!((c as f64 - e).abs() < 6.0 * e.sqrt() + 1.0);
            }
        }
    }

    #[test]
    fn fill_matches_next_u64_stream() {
        let mut r = insecure_deterministic_rng(9, "fill");
        let expected: Vec<u64> = (0..33).map(|_| r.next_u64()).collect();
        assert_eq!(
            random_u64s(&mut insecure_deterministic_rng(9, "fill"), 33),
            expected
        );
    }

    #[test]
    fn bernoulli_f64_matches_q() {
        let mut rng = insecure_deterministic_rng(3, "bern");
        for q in [0.0, 0.1, 0.5, 0.999, 1.0, 1e-3] {
            let n = 200_000;
            let k = (0..n)
                .filter(|_| bernoulli_f64(&mut rng, q).unwrap())
                .count() as f64;
            let sd = (n as f64 * q * (1.0 - q)).sqrt();
            assert!(
                (k - n as f64 * q).abs() <= 5.0 * sd + 1e-9,
                "q {q}: {k} of {n}"
            );
        }
        assert!(bernoulli_f64(&mut rng, 1.5).is_err());
        assert!(bernoulli_f64(&mut rng, f64::NAN).is_err());
    }
}
