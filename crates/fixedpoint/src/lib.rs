//! # ppml-fixedpoint
//!
//! Signed fixed-point numbers in the ring Z_2^64, the number system every
//! secret-sharing protocol in ppml computes in. A real `x` is encoded as the
//! two's-complement integer `round(x * 2^f)` reduced mod 2^64, where `f` is
//! the number of fractional bits (16 by default).
//!
//! * [`FixedPoint::encode`] refuses values that do not fit (`|x| * 2^f >= 2^63`)
//!   and non-finite values, instead of silently wrapping.
//! * [`FixedPoint::truncate`] divides a product (which carries `2f` fractional
//!   bits) back down to `f` bits.
//! * [`share_trunc`] holds the helpers the share-level truncation protocols
//!   need, each with its error bound and failure probability.
//!
//! This crate never does IO and never allocates per element: slice functions
//! write into caller-provided buffers.
//!
//! ```
//! use ppml_fixedpoint::FixedPoint;
//!
//! let fp = FixedPoint::default(); // 16 fractional bits
//! let a = fp.encode(1.5).unwrap();
//! let b = fp.encode(-2.25).unwrap();
//! // A ring product carries 32 fractional bits; truncation brings it back to 16.
//! let prod = fp.truncate(a.wrapping_mul(b));
//! assert!((fp.decode(prod) - (-3.375)).abs() <= fp.ulp());
//! assert!(fp.encode(1e30).is_err());
//! ```

use serde::{Deserialize, Serialize};

pub mod share_trunc;

/// The default number of fractional bits.
pub const DEFAULT_FRAC_BITS: u32 = 16;

/// The largest number of fractional bits accepted. Products must still fit in
/// the ring, so more than 31 bits leaves no room for an integer part after a
/// multiplication; 62 is the hard limit for encoding alone.
pub const MAX_FRAC_BITS: u32 = 62;

/// Errors of fixed-point encoding.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FixedPointError {
    /// The value is NaN or infinite.
    #[error("value {value} at index {index} is not finite")]
    NotFinite { value: f64, index: usize },
    /// The value's magnitude does not fit in the signed 64-bit ring.
    #[error(
        "value {value} at index {index} is out of range: |x| must be below {max} with {frac_bits} fractional bits"
    )]
    OutOfRange {
        value: f64,
        index: usize,
        max: f64,
        frac_bits: u32,
    },
    /// Invalid number of fractional bits.
    #[error("{0} fractional bits requested; at most {MAX_FRAC_BITS} are supported")]
    InvalidFracBits(u32),
    /// Input and output slices differ in length.
    #[error("length mismatch: input has {input} elements, output has {output}")]
    LengthMismatch { input: usize, output: usize },
}

/// A fixed-point format: the number of fractional bits used to encode reals
/// into Z_2^64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FixedPoint {
    frac_bits: u32,
}

impl Default for FixedPoint {
    fn default() -> Self {
        Self {
            frac_bits: DEFAULT_FRAC_BITS,
        }
    }
}

impl FixedPoint {
    /// A format with `frac_bits` fractional bits (0..=62).
    pub fn new(frac_bits: u32) -> Result<Self, FixedPointError> {
        if frac_bits > MAX_FRAC_BITS {
            return Err(FixedPointError::InvalidFracBits(frac_bits));
        }
        Ok(Self { frac_bits })
    }

    /// Number of fractional bits.
    #[inline]
    pub fn frac_bits(&self) -> u32 {
        self.frac_bits
    }

    /// `2^f` as a float.
    #[inline]
    pub fn scale(&self) -> f64 {
        (1u64 << self.frac_bits) as f64
    }

    /// One unit in the last place, `2^-f`: the resolution of the format.
    #[inline]
    pub fn ulp(&self) -> f64 {
        1.0 / self.scale()
    }

    /// Exclusive bound on the magnitude of encodable values: `2^(63-f)`.
    #[inline]
    pub fn max_abs(&self) -> f64 {
        2f64.powi(63 - self.frac_bits as i32)
    }

    #[inline]
    fn encode_at(&self, x: f64, index: usize) -> Result<u64, FixedPointError> {
        if !x.is_finite() {
            return Err(FixedPointError::NotFinite { value: x, index });
        }
        let scaled = (x * self.scale()).round();
        // 2^63 is exactly representable; anything at or beyond it would wrap.
        const LIMIT: f64 = 9_223_372_036_854_775_808.0; // 2^63
        if !(-LIMIT..LIMIT).contains(&scaled) {
            return Err(FixedPointError::OutOfRange {
                value: x,
                index,
                max: self.max_abs(),
                frac_bits: self.frac_bits,
            });
        }
        Ok(scaled as i64 as u64)
    }

    /// Encodes `x` as `round(x * 2^f)` in two's complement. Rounding error is at
    /// most half an ulp (plus the float's own rounding for huge magnitudes).
    #[inline]
    pub fn encode(&self, x: f64) -> Result<u64, FixedPointError> {
        self.encode_at(x, 0)
    }

    /// Encodes an `f32` (see [`FixedPoint::encode`]).
    #[inline]
    pub fn encode_f32(&self, x: f32) -> Result<u64, FixedPointError> {
        self.encode_at(x as f64, 0)
    }

    /// Decodes a ring element, read as a signed integer, back to a real.
    #[inline]
    pub fn decode(&self, v: u64) -> f64 {
        (v as i64) as f64 / self.scale()
    }

    /// Decodes to `f32`.
    #[inline]
    pub fn decode_f32(&self, v: u64) -> f32 {
        self.decode(v) as f32
    }

    /// Encodes a slice into a caller-provided buffer of the same length.
    /// The error names the first offending index.
    pub fn encode_into(&self, xs: &[f32], out: &mut [u64]) -> Result<(), FixedPointError> {
        self.encode_slice(xs, out)
    }

    /// Encodes an `f64` slice into a caller-provided buffer.
    pub fn encode_f64_into(&self, xs: &[f64], out: &mut [u64]) -> Result<(), FixedPointError> {
        self.encode_slice(xs, out)
    }

    fn encode_slice<T: Copy + Into<f64>>(
        &self,
        xs: &[T],
        out: &mut [u64],
    ) -> Result<(), FixedPointError> {
        if xs.len() != out.len() {
            return Err(FixedPointError::LengthMismatch {
                input: xs.len(),
                output: out.len(),
            });
        }
        for (i, (o, &x)) in out.iter_mut().zip(xs).enumerate() {
            *o = self.encode_at(x.into(), i)?;
        }
        Ok(())
    }

    /// Encodes a slice into a new vector.
    pub fn encode_vec(&self, xs: &[f32]) -> Result<Vec<u64>, FixedPointError> {
        let mut out = vec![0u64; xs.len()];
        self.encode_into(xs, &mut out)?;
        Ok(out)
    }

    /// Decodes a slice into a caller-provided buffer of the same length.
    pub fn decode_into(&self, vs: &[u64], out: &mut [f32]) -> Result<(), FixedPointError> {
        if vs.len() != out.len() {
            return Err(FixedPointError::LengthMismatch {
                input: vs.len(),
                output: out.len(),
            });
        }
        let inv = self.ulp();
        for (o, &v) in out.iter_mut().zip(vs) {
            *o = ((v as i64) as f64 * inv) as f32;
        }
        Ok(())
    }

    /// Decodes a slice into a new vector.
    pub fn decode_vec(&self, vs: &[u64]) -> Vec<f32> {
        let inv = self.ulp();
        vs.iter()
            .map(|&v| ((v as i64) as f64 * inv) as f32)
            .collect()
    }

    /// Truncates a plaintext ring element by `f` bits: an arithmetic shift, so
    /// the result is `floor(v / 2^f)` of the signed value.
    ///
    /// Error bound: for a product `v = a*b` of two encodings (exact in the ring
    /// as long as `|a*b| < 2^63` as integers), `decode(truncate(v))` lies in
    /// `[x*y - 2^-f, x*y]` up to the encoding errors of `a` and `b`: the floor
    /// loses strictly less than one ulp, and never fails.
    #[inline]
    pub fn truncate(&self, v: u64) -> u64 {
        ((v as i64) >> self.frac_bits) as u64
    }

    /// [`FixedPoint::truncate`] over a slice, in place.
    pub fn truncate_in_place(&self, vs: &mut [u64]) {
        let f = self.frac_bits;
        for v in vs {
            *v = ((*v as i64) >> f) as u64;
        }
    }

    /// Fixed-point product of two encodings: ring product, then truncation.
    /// Within one ulp of the product of the encoded values as long as the
    /// integer product `|a*b|` stays below `2^63`, i.e. `|x*y| < 2^(63-2f)`.
    #[inline]
    pub fn mul(&self, a: u64, b: u64) -> u64 {
        self.truncate(a.wrapping_mul(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rejects_out_of_range_and_non_finite() {
        let fp = FixedPoint::default();
        assert!(matches!(
            fp.encode(f64::NAN),
            Err(FixedPointError::NotFinite { .. })
        ));
        assert!(matches!(
            fp.encode(f64::INFINITY),
            Err(FixedPointError::NotFinite { .. })
        ));
        assert!(matches!(
            fp.encode(fp.max_abs()),
            Err(FixedPointError::OutOfRange { .. })
        ));
        assert!(fp.encode(-fp.max_abs()).is_ok(), "-2^(63-f) is the minimum");
        assert!(fp.encode(fp.max_abs() * 0.999).is_ok());
        let mut out = [0u64; 3];
        let err = fp.encode_into(&[1.0, f32::NAN, 2.0], &mut out).unwrap_err();
        assert!(matches!(err, FixedPointError::NotFinite { index: 1, .. }));
        assert!(matches!(
            fp.encode_into(&[1.0], &mut out),
            Err(FixedPointError::LengthMismatch { .. })
        ));
        assert!(FixedPoint::new(63).is_err());
    }

    #[test]
    fn edge_values() {
        let fp = FixedPoint::default();
        assert_eq!(fp.encode(0.0).unwrap(), 0);
        assert_eq!(fp.encode(fp.ulp()).unwrap(), 1);
        assert_eq!(fp.encode(-fp.ulp()).unwrap(), u64::MAX);
        assert_eq!(fp.decode(u64::MAX), -fp.ulp());
        assert_eq!(
            fp.truncate(fp.encode(-1.0).unwrap()),
            u64::MAX,
            "floor(-1/2^16) = -1"
        );
    }

    proptest! {
        #[test]
        fn encode_decode_within_half_ulp(x in -1.0e6f64..1.0e6, f in 0u32..=40) {
            let fp = FixedPoint::new(f).unwrap();
            let back = fp.decode(fp.encode(x).unwrap());
            prop_assert!((back - x).abs() <= fp.ulp() / 2.0 + x.abs() * 1e-15);
        }

        #[test]
        fn product_truncation_within_one_ulp(x in -1000.0f64..1000.0, y in -1000.0f64..1000.0) {
            let fp = FixedPoint::default();
            let (a, b) = (fp.encode(x).unwrap(), fp.encode(y).unwrap());
            let exact = fp.decode(a) * fp.decode(b); // product of the encoded values
            let got = fp.decode(fp.mul(a, b));
            prop_assert!(got <= exact + 1e-9 && got >= exact - fp.ulp() - 1e-9, "{got} vs {exact}");
        }

        #[test]
        fn slices_match_scalars(xs in proptest::collection::vec(-1.0e4f32..1.0e4, 0..64)) {
            let fp = FixedPoint::default();
            let enc = fp.encode_vec(&xs).unwrap();
            for (e, &x) in enc.iter().zip(&xs) {
                prop_assert_eq!(*e, fp.encode_f32(x).unwrap());
            }
            let mut back = vec![0f32; xs.len()];
            fp.decode_into(&enc, &mut back).unwrap();
            prop_assert_eq!(back, fp.decode_vec(&enc));
            let mut t = enc.clone();
            fp.truncate_in_place(&mut t);
            for (a, b) in t.iter().zip(&enc) {
                prop_assert_eq!(*a, fp.truncate(*b));
            }
        }
    }
}
