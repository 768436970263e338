//! The field Z_67 that SecureNN's PrivateCompare uses for bit-wise shares
//! (67 is the smallest prime above 64 + 2, so sums of up to 64 bit-terms and
//! the masking constants never wrap into a false zero).

use rand::Rng;
use serde::{Deserialize, Serialize};

/// The modulus.
pub const P: u8 = 67;

/// An element of Z_67, always stored reduced (0..67).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Z67(u8);

impl Z67 {
    /// Zero.
    pub const ZERO: Z67 = Z67(0);
    /// One.
    pub const ONE: Z67 = Z67(1);

    /// `v mod 67`.
    #[inline]
    pub fn new(v: u64) -> Self {
        Z67((v % P as u64) as u8)
    }

    /// The representative in 0..67.
    #[inline]
    pub fn value(self) -> u8 {
        self.0
    }

    /// Sum.
    #[inline]
    #[allow(clippy::should_implement_trait)]
    pub fn add(self, o: Z67) -> Z67 {
        let s = self.0 + o.0; // < 134, fits in u8
        Z67(if s >= P { s - P } else { s })
    }

    /// Difference.
    #[inline]
    #[allow(clippy::should_implement_trait)]
    pub fn sub(self, o: Z67) -> Z67 {
        Z67(if self.0 >= o.0 {
            self.0 - o.0
        } else {
            self.0 + P - o.0
        })
    }

    /// Negation.
    #[inline]
    #[allow(clippy::should_implement_trait)]
    pub fn neg(self) -> Z67 {
        Z67(if self.0 == 0 { 0 } else { P - self.0 })
    }

    /// Product.
    #[inline]
    #[allow(clippy::should_implement_trait)]
    pub fn mul(self, o: Z67) -> Z67 {
        Z67(((self.0 as u16 * o.0 as u16) % P as u16) as u8)
    }

    /// Inverse (Fermat: x^65); zero maps to zero.
    pub fn inv(self) -> Z67 {
        let mut result = Z67::ONE;
        let mut base = self;
        let mut e = P as u32 - 2;
        while e > 0 {
            if e & 1 == 1 {
                result = result.mul(base);
            }
            base = base.mul(base);
            e >>= 1;
        }
        result
    }

    /// A uniform element (rejection sampling: bytes below 201 = 3 * 67).
    pub fn random<R: Rng + ?Sized>(rng: &mut R) -> Z67 {
        loop {
            let mut b = [0u8; 1];
            rng.fill_bytes(&mut b);
            if b[0] < 3 * P {
                return Z67(b[0] % P);
            }
        }
    }
}

/// Fills `out` with uniform non-zero elements (1..67), as SecureNN's
/// PrivateCompare masks need. Reads random bytes in bulk.
pub fn fill_nonzero<R: Rng + ?Sized>(rng: &mut R, out: &mut [Z67]) {
    let mut buf = [0u8; 256];
    let mut pos = buf.len();
    for o in out.iter_mut() {
        loop {
            if pos == buf.len() {
                rng.fill_bytes(&mut buf);
                pos = 0;
            }
            let b = buf[pos];
            pos += 1;
            // 198 = 3 * 66: uniform over 66 non-zero values.
            if b < 198 {
                *o = Z67(b % (P - 1) + 1);
                break;
            }
        }
    }
}

/// Shares `x` additively over Z_67 among `n >= 1` parties.
pub fn share<R: Rng + ?Sized>(x: Z67, n: usize, rng: &mut R) -> Vec<Z67> {
    let n = n.max(1);
    let mut shares: Vec<Z67> = (0..n - 1).map(|_| Z67::random(rng)).collect();
    let sum = shares.iter().fold(Z67::ZERO, |a, &b| a.add(b));
    shares.push(x.sub(sum));
    shares
}

/// Reconstructs an additively shared Z_67 element.
pub fn reconstruct(shares: &[Z67]) -> Z67 {
    shares.iter().fold(Z67::ZERO, |a, &b| a.add(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    fn seeded(seed: u64) -> ppml_random::SecretRng {
        ppml_random::insecure_deterministic_rng(seed, "test/sharing")
    }

    #[test]
    fn field_laws_exhaustive() {
        for a in 0..67u64 {
            let a = Z67::new(a);
            assert_eq!(a.add(a.neg()), Z67::ZERO);
            if a != Z67::ZERO {
                assert_eq!(a.mul(a.inv()), Z67::ONE);
            }
            for b in 0..67u64 {
                let b = Z67::new(b);
                assert_eq!(a.add(b).sub(b), a);
                assert_eq!(
                    a.mul(b).value() as u64,
                    (a.value() as u64 * b.value() as u64) % 67
                );
            }
        }
    }

    #[test]
    fn sharing_and_nonzero_masks() {
        let mut rng = seeded(5);
        for x in 0..67u64 {
            let s = share(Z67::new(x), 3, &mut rng);
            assert_eq!(reconstruct(&s), Z67::new(x));
        }
        let mut m = vec![Z67::ZERO; 10_000];
        fill_nonzero(&mut rng, &mut m);
        assert!(m.iter().all(|v| v.value() != 0 && v.value() < P));
        let mut counts = [0usize; 67];
        m.iter().for_each(|v| counts[v.value() as usize] += 1);
        // 10000/66 ~ 151 per value; every value must appear.
        assert!(counts[1..].iter().all(|&c| c > 80 && c < 240), "{counts:?}");
    }
}
