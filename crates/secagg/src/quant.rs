//! Clipping quantiser from `f32` into `[0, 2^bits - 1]`, and the ring `Z_2^k`
//! in which sums of `n` such values cannot wrap.

use crate::SecAggError;

/// Maps a real `x` to the integer `round((clip(x) + c) * s)` in `[0, 2^bits - 1]`, where
/// `clip(x) = max(-c, min(c, x))` and `s = (2^bits - 1) / (2c)`.
///
/// **Error.** Each value is off by at most `1 / (2s) = c / (2^bits - 1)` after decoding
/// (plus the clipping error `|x| - c` when `|x| > c`), so a decoded sum of `m` values is
/// within `m * c / (2^bits - 1)` of the sum of the clipped values
/// ([`Quantizer::sum_error_bound`]). With the defaults (`c = 1`, 16 bits) that is
/// `1.53e-5` per client.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quantizer {
    /// Bits per quantised value (1..=32).
    pub bits: u32,
    /// Clipping bound `c > 0`.
    pub clip: f32,
}

impl Quantizer {
    /// A quantiser with `bits` in 1..=32 and a finite positive `clip`.
    pub fn new(bits: u32, clip: f32) -> Result<Self, SecAggError> {
        if !(1..=32).contains(&bits) {
            return Err(SecAggError::InvalidConfig(format!(
                "quantisation bits must be in 1..=32, got {bits}"
            )));
        }
        if !(clip.is_finite() && clip > 0.0) {
            return Err(SecAggError::InvalidConfig(format!(
                "clip must be finite and positive, got {clip}"
            )));
        }
        Ok(Self { bits, clip })
    }

    fn levels(&self) -> f64 {
        ((1u64 << self.bits) - 1) as f64
    }

    fn scale(&self) -> f64 {
        self.levels() / (2.0 * self.clip as f64)
    }

    /// Quantises `x`; [`SecAggError::NonFinite`] on NaN or infinite values.
    pub fn encode(&self, x: &[f32]) -> Result<Vec<u64>, SecAggError> {
        if let Some(index) = x.iter().position(|v| !v.is_finite()) {
            return Err(SecAggError::NonFinite { index });
        }
        let c = self.clip as f64;
        let s = self.scale();
        // (clip(v) + c) * s lies in [0, 2^bits - 1]; adding 0.5 and truncating rounds to
        // nearest (ties up) without a libm call.
        Ok(x.iter()
            .map(|&v| (((v as f64).clamp(-c, c) + c) * s + 0.5) as u64)
            .collect())
    }

    /// Decodes the sum (in `Z_2^k`, already reduced) of `count` quantised vectors.
    pub fn decode_sum(&self, sum: &[u64], count: usize) -> Vec<f32> {
        let s = self.scale();
        let off = count as f64 * self.clip as f64;
        sum.iter().map(|&z| (z as f64 / s - off) as f32).collect()
    }

    /// Bound on `|decoded sum - sum of clipped inputs|` per coordinate for `count` inputs.
    pub fn sum_error_bound(&self, count: usize) -> f64 {
        count as f64 * self.clip as f64 / self.levels()
    }
}

/// `k = bits + ceil(log2 n)`: the smallest ring `Z_2^k` in which the sum of `n` values
/// of `bits` bits cannot wrap.
pub fn ring_bits(bits: u32, n: usize) -> u32 {
    let log = if n <= 1 {
        0
    } else {
        usize::BITS - (n - 1).leading_zeros()
    };
    bits + log
}

/// `2^k - 1` (all ones for `k = 64`).
pub fn ring_mask(k: u32) -> u64 {
    if k >= 64 { u64::MAX } else { (1u64 << k) - 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_bits_fits_sums() {
        assert_eq!(ring_bits(16, 1), 16);
        assert_eq!(ring_bits(16, 2), 17);
        assert_eq!(ring_bits(16, 1000), 26);
        assert_eq!(ring_bits(16, 1024), 26);
        assert_eq!(ring_bits(16, 1025), 27);
        for n in [1usize, 2, 3, 7, 8, 9, 1000] {
            let k = ring_bits(16, n);
            assert!((n as u128) * ((1u128 << 16) - 1) <= ring_mask(k) as u128);
        }
    }

    #[test]
    fn encode_decode_within_bound() {
        let q = Quantizer::new(16, 2.0).unwrap();
        let xs = [-3.0f32, -2.0, -0.5, 0.0, 0.123, 1.999, 2.0, 7.0];
        let e = q.encode(&xs).unwrap();
        let d = q.decode_sum(&e, 1);
        for (x, y) in xs.iter().zip(d) {
            let clipped = x.clamp(-2.0, 2.0) as f64;
            assert!((clipped - y as f64).abs() <= q.sum_error_bound(1) + 1e-6);
        }
        assert!(q.encode(&[f32::NAN]).is_err());
        assert!(Quantizer::new(0, 1.0).is_err());
        assert!(Quantizer::new(16, 0.0).is_err());
    }
}
