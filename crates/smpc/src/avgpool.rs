//! Average pooling on shares. It is linear: each party sums its shares of a
//! window locally and multiplies by the public constant `1/(kh*kw)` encoded
//! in fixed point; the product (with `2f` fractional bits) is truncated
//! once, as after a matmul: locally, or exactly by the next comparison when
//! the protocol runs exact truncation. No comparison of its own.
//!
//! Error: the constant is `round(2^f / (kh*kw))`, exact when `kh*kw` is a
//! power of two (2x2 pooling); otherwise its relative error is at most
//! `kh*kw / 2^(f+1)` (0.04% for a 7x7 global pool at f = 16), plus the one
//! truncation's error of one unit in the last place.

use crate::beaver;
use crate::party::{P2, Party};

/// Window geometry of an average pool over `channels x input_hw` images.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvgGeometry {
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub channels: usize,
    pub input_hw: (usize, usize),
}

impl AvgGeometry {
    /// The geometry of a pooling layer (the fields of `LayerPlan::AvgPool`).
    pub fn new(
        kernel: (usize, usize),
        stride: (usize, usize),
        channels: usize,
        input_hw: (usize, usize),
    ) -> Self {
        AvgGeometry {
            kernel,
            stride,
            channels,
            input_hw,
        }
    }

    /// Output height and width.
    pub fn output_hw(&self) -> (usize, usize) {
        let (h, w) = self.input_hw;
        (
            h.saturating_sub(self.kernel.0) / self.stride.0.max(1) + 1,
            w.saturating_sub(self.kernel.1) / self.stride.1.max(1) + 1,
        )
    }

    /// Per-sample output size.
    pub fn out_size(&self) -> usize {
        let (ho, wo) = self.output_hw();
        self.channels * ho * wo
    }
}

/// The public multiplier `round(2^frac_bits / (kh*kw))`.
pub fn inverse_count(frac_bits: u32, g: &AvgGeometry) -> u64 {
    let n = (g.kernel.0 * g.kernel.1).max(1) as u64;
    ((1u64 << frac_bits) + n / 2) / n
}

/// This party's shares of the average pool of `x` (`batch` images, `f`
/// fractional bits). With `truncate`, the result is truncated locally to `f`
/// bits; without, it carries `2f` bits for an exact truncation later. P2
/// holds no shares and gets an empty vector.
pub fn avg_pool(
    party: &Party,
    batch: usize,
    g: &AvgGeometry,
    x: &[u64],
    truncate: bool,
) -> Vec<u64> {
    if party.id == P2 {
        return Vec::new();
    }
    let (h, w) = g.input_hw;
    let (ho, wo) = g.output_hw();
    let (kh, kw) = g.kernel;
    let c = inverse_count(party.cfg.frac_bits, g);
    let mut y = Vec::with_capacity(batch * g.out_size());
    for plane in x.chunks_exact(h * w).take(batch * g.channels) {
        for oy in 0..ho {
            for ox in 0..wo {
                let (y0, x0) = (oy * g.stride.0, ox * g.stride.1);
                let mut s = 0u64;
                for i in 0..kh {
                    for v in &plane[(y0 + i) * w + x0..(y0 + i) * w + x0 + kw] {
                        s = s.wrapping_add(*v);
                    }
                }
                y.push(s.wrapping_mul(c));
            }
        }
    }
    if truncate {
        beaver::truncate(party, &mut y);
    }
    y
}

/// Interval bounds of the average pool of one sample whose values lie in
/// `x` (`channels x input_hw` intervals), with the quantised multiplier `c`
/// (as a real): the range analysis of [`crate::range`].
pub fn pooled_intervals(g: &AvgGeometry, x: &[(f64, f64)], c: f64) -> Vec<(f64, f64)> {
    let (h, w) = g.input_hw;
    let (ho, wo) = g.output_hw();
    let (kh, kw) = g.kernel;
    let mut out = Vec::with_capacity(g.out_size());
    for plane in x.chunks_exact(h * w).take(g.channels) {
        for oy in 0..ho {
            for ox in 0..wo {
                let (y0, x0) = (oy * g.stride.0, ox * g.stride.1);
                let (mut lo, mut hi) = (0f64, 0f64);
                for i in 0..kh {
                    for v in &plane[(y0 + i) * w + x0..(y0 + i) * w + x0 + kw] {
                        lo += v.0;
                        hi += v.1;
                    }
                }
                out.push((lo * c, hi * c));
            }
        }
    }
    out
}
