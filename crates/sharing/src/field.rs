//! The prime field F_p with p = 2^255 - 19, on crypto-bigint's constant-time
//! Montgomery arithmetic.
//!
//! Secrets to be Shamir-shared (secure aggregation's self-mask seeds and
//! mask keys) are 32-byte values below p: sample them with
//! [`Fp::random`] and use [`Fp::to_le_bytes`] as the key material.
//! [`Fp::from_le_bytes`] rejects non-canonical encodings (values >= p)
//! instead of silently reducing them.

use crate::SharingError;
use crypto_bigint::{U256, const_monty_params, modular::ConstMontyForm};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::ops::{Add, AddAssign, Mul, MulAssign, Neg, Sub, SubAssign};

const_monty_params!(
    P25519,
    U256,
    "7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffed",
    "The prime 2^255 - 19"
);

type Inner = ConstMontyForm<P25519, { U256::LIMBS }>;

/// The modulus p = 2^255 - 19 as an integer.
pub const MODULUS: U256 =
    U256::from_be_hex("7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffed");

/// An element of F_p, p = 2^255 - 19.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fp(Inner);

impl std::fmt::Debug for Fp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fp(0x")?;
        for b in self.to_le_bytes().iter().rev() {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

impl Default for Fp {
    fn default() -> Self {
        Self::ZERO
    }
}

impl Fp {
    /// Zero.
    pub const ZERO: Fp = Fp(Inner::ZERO);
    /// One.
    pub const ONE: Fp = Fp(Inner::ONE);

    /// The element `v mod p`.
    pub fn from_u64(v: u64) -> Self {
        Fp(Inner::new(&U256::from_u64(v)))
    }

    /// Parses the canonical little-endian encoding; errors if the value is >= p.
    pub fn from_le_bytes(bytes: &[u8; 32]) -> Result<Self, SharingError> {
        let v = U256::from_le_slice(bytes);
        if v.cmp_vartime(&MODULUS) != std::cmp::Ordering::Less {
            return Err(SharingError::NotCanonical);
        }
        Ok(Fp(Inner::new(&v)))
    }

    /// The canonical little-endian encoding (32 bytes, value < p).
    pub fn to_le_bytes(&self) -> [u8; 32] {
        let enc = self.0.retrieve().to_le_bytes();
        let mut out = [0u8; 32];
        out.copy_from_slice(enc.as_slice());
        out
    }

    /// A uniform element (rejection sampling of 255-bit strings; a retry
    /// happens with probability 19 / 2^255).
    pub fn random<R: Rng + ?Sized>(rng: &mut R) -> Self {
        loop {
            let mut b = [0u8; 32];
            rng.fill_bytes(&mut b);
            b[31] &= 0x7f;
            if let Ok(x) = Self::from_le_bytes(&b) {
                return x;
            }
        }
    }

    /// Multiplicative inverse; errors for zero.
    pub fn inv(&self) -> Result<Self, SharingError> {
        self.0
            .invert()
            .into_option()
            .map(Fp)
            .ok_or(SharingError::ZeroInverse)
    }

    /// True for zero.
    pub fn is_zero(&self) -> bool {
        *self == Self::ZERO
    }
}

impl Add for Fp {
    type Output = Fp;
    fn add(self, rhs: Fp) -> Fp {
        Fp(self.0 + rhs.0)
    }
}
impl Sub for Fp {
    type Output = Fp;
    fn sub(self, rhs: Fp) -> Fp {
        Fp(self.0 - rhs.0)
    }
}
impl Mul for Fp {
    type Output = Fp;
    fn mul(self, rhs: Fp) -> Fp {
        Fp(self.0 * rhs.0)
    }
}
impl Neg for Fp {
    type Output = Fp;
    fn neg(self) -> Fp {
        Fp(-self.0)
    }
}
impl AddAssign for Fp {
    fn add_assign(&mut self, rhs: Fp) {
        self.0 = self.0 + rhs.0;
    }
}
impl SubAssign for Fp {
    fn sub_assign(&mut self, rhs: Fp) {
        self.0 = self.0 - rhs.0;
    }
}
impl MulAssign for Fp {
    fn mul_assign(&mut self, rhs: Fp) {
        self.0 = self.0 * rhs.0;
    }
}

impl Serialize for Fp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_le_bytes().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Fp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let b = <[u8; 32]>::deserialize(d)?;
        Fp::from_le_bytes(&b).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn seeded(seed: u64) -> ppml_random::SecretRng {
        ppml_random::insecure_deterministic_rng(seed, "test/sharing")
    }

    #[test]
    fn field_laws_and_encoding() {
        let mut rng = seeded(3);
        for _ in 0..50 {
            let (a, b, c) = (
                Fp::random(&mut rng),
                Fp::random(&mut rng),
                Fp::random(&mut rng),
            );
            assert_eq!((a + b) * c, a * c + b * c);
            assert_eq!(a - a, Fp::ZERO);
            assert_eq!(a + (-a), Fp::ZERO);
            if !a.is_zero() {
                assert_eq!(a * a.inv().unwrap(), Fp::ONE);
            }
            assert_eq!(Fp::from_le_bytes(&a.to_le_bytes()).unwrap(), a);
        }
        assert_eq!(Fp::ZERO.inv(), Err(SharingError::ZeroInverse));
        // p - 1 is canonical, p is not, and p - 1 + 1 wraps to 0.
        let mut pm1 = MODULUS.to_le_bytes().as_slice().to_vec();
        assert_eq!(
            Fp::from_le_bytes(&pm1.clone().try_into().unwrap()),
            Err(SharingError::NotCanonical)
        );
        pm1[0] -= 1;
        let x = Fp::from_le_bytes(&pm1.try_into().unwrap()).unwrap();
        assert_eq!(x + Fp::ONE, Fp::ZERO);
        assert_eq!(Fp::from_u64(7) * Fp::from_u64(6), Fp::from_u64(42));
    }
}
