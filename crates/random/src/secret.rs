//! Secret randomness: from the OS, or (tests and benchmarks only) from a seed
//! through an API whose name says it is insecure.

use crate::RandomError;
use rand::{Rng, SeedableRng};

/// The blake3 `derive_key` context of the insecure deterministic streams;
/// distinct from the public one so a public stream never equals a test secret.
const INSECURE_CONTEXT: &str = "ppml 2026-12 INSECURE deterministic secret randomness v1";

/// A generator for secrets: ChaCha12 keyed by 32 bytes from the operating
/// system ([`os_rng`]), or from a seed by [`insecure_deterministic_rng`].
///
/// It is a `CryptoRng`, deliberately not `Clone` (a copy would repeat the
/// secrets) and its `Debug` output shows no state.
pub struct SecretRng {
    inner: rand_chacha::ChaCha12Rng,
    insecure: bool,
}

impl SecretRng {
    /// Whether this generator was derived from a seed (tests and benchmarks).
    pub fn is_insecure(&self) -> bool {
        self.insecure
    }
}

impl std::fmt::Debug for SecretRng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretRng")
            .field("insecure", &self.insecure)
            .finish_non_exhaustive()
    }
}

impl rand::TryRng for SecretRng {
    type Error = core::convert::Infallible;

    #[inline]
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.inner.next_u32())
    }

    #[inline]
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(self.inner.next_u64())
    }

    #[inline]
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.inner.fill_bytes(dst);
        Ok(())
    }
}

impl rand::TryCryptoRng for SecretRng {}

/// A fresh secret generator keyed with 32 bytes from the operating system's
/// CSPRNG (`getrandom`), or the OS error.
pub fn try_os_rng() -> Result<SecretRng, RandomError> {
    let inner = rand_chacha::ChaCha12Rng::try_from_rng(&mut rand::rngs::SysRng)
        .map_err(|e| RandomError::Os(e.to_string()))?;
    Ok(SecretRng {
        inner,
        insecure: false,
    })
}

/// A fresh secret generator keyed with 32 bytes from the operating system's
/// CSPRNG (`getrandom`).
///
/// # Panics
/// If the operating system has no working random source (on Linux:
/// `getrandom(2)` failing), exactly as `rand::rng()` does; there is nothing
/// sound to fall back to. [`try_os_rng`] returns the error instead.
pub fn os_rng() -> SecretRng {
    match try_os_rng() {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    }
}

/// **INSECURE**: a "secret" generator derived from `seed` and `label`, so
/// that tests and benchmarks can reproduce runs bit for bit. Anyone who knows
/// the seed knows every value it produces. Never reachable from the CLI
/// except through `--insecure-deterministic`, which says so.
pub fn insecure_deterministic_rng(seed: u64, label: &str) -> SecretRng {
    let mut material = Vec::with_capacity(8 + label.len());
    material.extend_from_slice(&seed.to_le_bytes());
    material.extend_from_slice(label.as_bytes());
    SecretRng {
        inner: rand_chacha::ChaCha12Rng::from_seed(blake3::derive_key(INSECURE_CONTEXT, &material)),
        insecure: true,
    }
}

/// Where a run's secret randomness comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SecretSource {
    /// The operating system's CSPRNG (the default, and the only choice a
    /// secure deployment makes).
    #[default]
    Os,
    /// **INSECURE**: derived from this seed ([`insecure_deterministic_rng`]),
    /// for reproducible tests and benchmarks. Everyone who knows the seed
    /// can recompute every share, mask and key.
    InsecureDeterministic(u64),
}

impl SecretSource {
    /// A secret generator for `label` (e.g. `"smpc/party/2"`). With
    /// [`SecretSource::Os`] the label is ignored and every call returns an
    /// independent OS-keyed generator.
    pub fn rng(&self, label: &str) -> SecretRng {
        match *self {
            SecretSource::Os => os_rng(),
            SecretSource::InsecureDeterministic(seed) => insecure_deterministic_rng(seed, label),
        }
    }

    /// As [`SecretSource::rng`], with the OS error instead of a panic.
    pub fn try_rng(&self, label: &str) -> Result<SecretRng, RandomError> {
        match *self {
            SecretSource::Os => try_os_rng(),
            SecretSource::InsecureDeterministic(seed) => {
                Ok(insecure_deterministic_rng(seed, label))
            }
        }
    }

    /// Whether secrets are derived from a seed.
    pub fn is_insecure(&self) -> bool {
        matches!(self, SecretSource::InsecureDeterministic(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_generators_differ_and_insecure_ones_repeat() {
        let (mut a, mut b) = (os_rng(), os_rng());
        assert_ne!((a.next_u64(), a.next_u64()), (b.next_u64(), b.next_u64()));
        assert!(!a.is_insecure());
        let mut x = insecure_deterministic_rng(1, "l");
        let mut y = SecretSource::InsecureDeterministic(1).rng("l");
        assert_eq!(x.next_u64(), y.next_u64());
        assert!(x.is_insecure());
        let mut z = insecure_deterministic_rng(1, "m");
        let mut w = insecure_deterministic_rng(1, "l");
        assert_ne!(z.next_u64(), w.next_u64());
        // Debug never prints state.
        assert_eq!(format!("{a:?}"), "SecretRng { insecure: false, .. }");
        assert!(SecretSource::Os.try_rng("x").is_ok());
        assert!(!SecretSource::Os.is_insecure());
    }
}
