//! Range analysis of a model, done by the model owner on its plaintext
//! weights: sound bounds on every value the protocol compares or truncates,
//! for every input in a declared input range. From them come the comparison
//! widths that travel in the plan (the narrowest width proven exact), the
//! refusal of models whose values cannot fit the ring, and, with local
//! truncation, a bound on the probability that a truncation fails.
//!
//! The bounds are interval arithmetic on the *quantised* weights and biases
//! (the ring values the parties actually hold), widened at each step by the
//! fixed-point error the protocol can add (half an ulp per encoded input, one
//! ulp per truncation) and by a relative 1e-9 for floating-point rounding, so
//! the secure values provably stay inside them (unless a local truncation
//! fails, which is what [`RangePlan::truncation_failure_per_image`] bounds).
//!
//! With faithful comparisons ([`Comparison::Faithful`], the default) max
//! pooling and the final argmax on `2f`-bit values skip the low
//! `k = f - ceil(log2 L)` bits of their PrivateCompare ([`RangePlan::skips`]):
//! those stages' widths keep `2^k` ring units of margin at the top, and a
//! pooled interval is widened by `L 2^k` (at most one ulp), the most a
//! faithful tournament of `L` levels can lose.

use crate::SmpcError;
use crate::inference::{LayerPlan, ModelPlan};
use crate::party::{Comparison, FULL_CMP_BITS, ProtocolConfig, Truncation};
use ppml_fixedpoint::FixedPoint;
use ppml_nn::{Layer, Model};
use serde::{Deserialize, Serialize};

/// The input range of MNIST images under the standard normalisation
/// `(x - 0.1307) / 0.3081` for `x` in `[0, 1]`, widened to four decimals; it
/// also contains the unit-range normalisation `[0, 1]`. The default input
/// range a model owner declares.
pub const DEFAULT_INPUT_RANGE: (f64, f64) = (-0.4243, 2.8216);

/// What the model owner proves about a model, sent to every role with the
/// plan.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RangePlan {
    /// Inputs must lie in `[lo, hi]` (the data owner checks its images).
    pub input_range: (f64, f64),
    /// Fractional bits the bounds were computed for.
    pub frac_bits: u32,
    /// Truncation mode the stages were laid out for.
    pub truncation: Truncation,
    /// Width of each comparison stage, in the order the protocol runs them.
    pub widths: Vec<u32>,
    /// How max pooling and the final argmax compare (see [`Comparison`]).
    #[serde(default = "exact_comparison")]
    pub comparison: Comparison,
    /// Low bits each stage's PrivateCompare skips (one per width; empty in
    /// plans from before faithful comparisons: none skipped). Non-zero only
    /// for max pooling and the final stage on `2f`-bit values with
    /// [`Comparison::Faithful`]: `k = f - ceil(log2 L)` for a tournament of
    /// `L` levels, so the max or argmax is at most `L 2^k <= 2^f` ring units
    /// (one ulp at `f` bits) below the true one; the width keeps `2^k` of
    /// margin (see [`crate::compare::select_skip`]). Truncating stages skip
    /// `f` bits by construction ([`crate::compare::select_trunc`]) and list 0.
    #[serde(default)]
    pub skips: Vec<u32>,
    /// Proven bound on the magnitude (as a real) of each stage's compared
    /// values. The model owner's own knowledge: not sent (it would tell the
    /// other roles more about the weights than the widths do).
    #[serde(skip)]
    pub bounds: Vec<f64>,
    /// Upper bound on the probability that at least one local truncation of
    /// one image fails (0 with exact truncation). Not sent, like `bounds`.
    #[serde(skip)]
    pub truncation_failure_per_image: f64,
}

fn exact_comparison() -> Comparison {
    Comparison::Exact
}

/// `ceil(log2 levels)` (0 for at most one level).
fn ceil_log2(levels: u32) -> u32 {
    u32::BITS - levels.saturating_sub(1).leading_zeros()
}

/// Low bits a faithful tournament of `levels` levels skips at `f`
/// fractional bits (of a `2f`-bit value): `levels 2^k <= 2^f`.
pub fn faithful_skip(f: u32, levels: u32) -> u32 {
    f.saturating_sub(ceil_log2(levels.max(1)))
}

/// A comparison stage of private inference, in protocol order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Exact truncation of a `2f`-bit value before a weighted layer.
    Trunc,
    /// ReLU (with exact truncation when the input carries `2f` bits).
    Relu,
    /// Max pooling tournament.
    MaxPool,
    /// The final argmax (or DReLU of a single logit).
    Final,
}

/// Per-element interval of the current values of one image (as reals).
type Intervals = Vec<(f64, f64)>;

/// A weighted layer in ring-rounded form: `k x n` weights (`w[i * n + o]`)
/// and bias, as the reals the ring encodes.
struct QLayer {
    w: Vec<f64>,
    k: usize,
    n: usize,
    bias: Vec<f64>,
}

fn quantised_layers(model: &Model, fp: FixedPoint) -> Result<Vec<QLayer>, SmpcError> {
    let q = |v: f32| -> Result<f64, SmpcError> { Ok(fp.decode(fp.encode_f32(v)?)) };
    let mut out = Vec::new();
    for l in &model.layers {
        let (weight, bias, k, n) = match l {
            Layer::Linear(x) => (&x.weight, &x.bias, x.in_features, x.out_features),
            Layer::Conv2d(c) => (
                &c.weight,
                &c.bias,
                c.in_channels * c.kernel * c.kernel,
                c.out_channels,
            ),
            _ => continue,
        };
        let mut w = vec![0f64; k * n];
        for o in 0..n {
            for i in 0..k {
                w[i * n + o] = q(weight[o * k + i])?;
            }
        }
        let bias = bias.iter().map(|b| q(*b)).collect::<Result<Vec<_>, _>>()?;
        out.push(QLayer { w, k, n, bias });
    }
    Ok(out)
}

/// Interval of `sum_i w_i x_i` over intervals `x_i`, widened for float rounding.
fn dot(terms: impl Iterator<Item = (f64, (f64, f64))>) -> (f64, f64) {
    let (mut lo, mut hi, mut mag) = (0f64, 0f64, 0f64);
    for (w, (a, b)) in terms {
        let (p, q) = (w * a, w * b);
        lo += p.min(q);
        hi += p.max(q);
        mag += p.abs().max(q.abs());
    }
    let slack = mag * 1e-9;
    (lo - slack, hi + slack)
}

fn widen(v: &mut Intervals, by: f64) {
    for (a, b) in v.iter_mut() {
        *a -= by;
        *b += by;
    }
}

/// Smallest `m` with `-2^m <= x < 2^m` for every ring integer `x` of a value
/// of magnitude at most `bound` at `scale` fractional bits, or `None` when it
/// exceeds the ring.
fn bits_for(bound: f64, scale: u32) -> Option<u32> {
    let x = (bound * 2f64.powi(scale as i32)).ceil();
    if !x.is_finite() || x >= 2f64.powi(63) {
        return None;
    }
    let x = x as u64; // < 2^63, non-negative: exact conversion of an integer-valued f64
    Some((64 - x.leading_zeros()).max(1))
}

impl RangePlan {
    /// The model owner's analysis of `model` (whose shapes are `plan`) for
    /// inputs in `input_range` under `cfg`. Fails with [`SmpcError::Range`]
    /// naming the layer and the range when a value can leave the ring or needs
    /// a wider comparison than `cfg.cmp_bits`.
    pub fn analyse(
        model: &Model,
        plan: &ModelPlan,
        cfg: &ProtocolConfig,
        input_range: (f64, f64),
    ) -> Result<RangePlan, SmpcError> {
        cfg.validate()?;
        let (lo, hi) = input_range;
        if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
            return Err(SmpcError::Config(format!(
                "input range [{lo}, {hi}] is not a finite interval"
            )));
        }
        let f = cfg.frac_bits;
        let fp = FixedPoint::new(f)?;
        let ulp = fp.ulp();
        let exact = cfg.truncation == Truncation::Exact;
        let layers = quantised_layers(model, fp)?;
        let mut out = RangePlan {
            input_range,
            frac_bits: f,
            truncation: cfg.truncation,
            comparison: cfg.comparison,
            ..Default::default()
        };
        let mut x: Intervals = vec![(lo - ulp / 2.0, hi + ulp / 2.0); plan.input_size];
        let mut scale2 = false;
        let mut weighted = 0;
        let mut fail = 0f64;
        let mut size = plan.input_size;
        for (li, l) in plan.layers.iter().enumerate() {
            let out_size = l.out_size(size);
            match *l {
                LayerPlan::Linear { .. } | LayerPlan::Conv { .. } => {
                    if scale2 {
                        out.stage(cfg, li, Stage::Trunc, max_abs(&x), 2 * f, 1)?;
                        widen(&mut x, ulp);
                        scale2 = false;
                    }
                    let q = layers.get(weighted).ok_or_else(|| {
                        SmpcError::Model("the plan has more weighted layers than the model".into())
                    })?;
                    weighted += 1;
                    let z = match *l {
                        LayerPlan::Conv {
                            kernel,
                            stride,
                            padding,
                            input_hw,
                            ..
                        } => conv_intervals(&x, q, kernel, stride, padding, input_hw),
                        _ => (0..q.n)
                            .map(|o| dot((0..q.k).map(|i| (q.w[i * q.n + o], x[i]))))
                            .collect(),
                    };
                    if z.len() != out_size {
                        return Err(SmpcError::Model(format!(
                            "layer {li} computes {} values, its plan says {out_size}",
                            z.len()
                        )));
                    }
                    // The product before truncation, at 2f fractional bits.
                    let zmax = max_abs(&z);
                    if bits_for(zmax, 2 * f).is_none_or(|b| b > 62) {
                        return Err(out_of_ring(li, zmax, 2 * f, f));
                    }
                    if !exact {
                        for &(a, b) in &z {
                            // SecureML: fails w.p. <= 2^(lx + 1 - 64) for |x| < 2^lx.
                            let lx = bits_for(a.abs().max(b.abs()), 2 * f).unwrap_or(63);
                            fail += 2f64.powi(lx as i32 + 1 - 64);
                        }
                    }
                    let np = out_size / q.n.max(1);
                    x = z
                        .iter()
                        .enumerate()
                        .map(|(i, &(a, b))| {
                            let bias = q.bias[i / np.max(1)];
                            (a + bias, b + bias)
                        })
                        .collect();
                    if exact {
                        scale2 = true;
                    } else {
                        widen(&mut x, ulp);
                    }
                }
                LayerPlan::Relu => {
                    let s = if scale2 { 2 * f } else { f };
                    out.stage(cfg, li, Stage::Relu, max_abs(&x), s, 1)?;
                    if scale2 {
                        widen(&mut x, ulp);
                        scale2 = false;
                    }
                    for v in x.iter_mut() {
                        *v = (v.0.max(0.0), v.1.max(0.0));
                    }
                }
                LayerPlan::MaxPool {
                    kernel,
                    stride,
                    channels,
                    input_hw,
                } => {
                    let s = if scale2 { 2 * f } else { f };
                    let (mut pooled, diff) = pool_intervals(&x, kernel, stride, channels, input_hw);
                    let levels = crate::compare::tournament_levels(kernel * kernel);
                    let k = out.stage(cfg, li, Stage::MaxPool, diff, s, levels)?;
                    // A faithful tournament returns a member at most
                    // levels * 2^k ring units below the maximum.
                    widen(
                        &mut pooled,
                        f64::from(levels) * 2f64.powi(k as i32 - s as i32),
                    );
                    x = pooled;
                }
                LayerPlan::AvgPool {
                    kernel,
                    stride,
                    channels,
                    input_hw,
                } => {
                    // Linear like a weighted layer: truncate a 2f-bit input
                    // first, then the product by the multiplier carries 2f bits.
                    if scale2 {
                        out.stage(cfg, li, Stage::Trunc, max_abs(&x), 2 * f, 1)?;
                        widen(&mut x, ulp);
                        scale2 = false;
                    }
                    let g = crate::avgpool::AvgGeometry::new(kernel, stride, channels, input_hw);
                    let c = crate::avgpool::inverse_count(f, &g) as f64 * ulp;
                    let z = crate::avgpool::pooled_intervals(&g, &x, c);
                    let zmax = max_abs(&z);
                    if bits_for(zmax, 2 * f).is_none_or(|b| b > 62) {
                        return Err(out_of_ring(li, zmax, 2 * f, f));
                    }
                    if exact {
                        scale2 = true;
                    } else {
                        for &(a, b) in &z {
                            let lx = bits_for(a.abs().max(b.abs()), 2 * f).unwrap_or(63);
                            fail += 2f64.powi(lx as i32 + 1 - 64);
                        }
                    }
                    x = z;
                    if !exact {
                        widen(&mut x, ulp);
                    }
                }
            }
            size = out_size;
        }
        if weighted != layers.len() {
            return Err(SmpcError::Model(format!(
                "the model has {} weighted layers, its plan {weighted}",
                layers.len()
            )));
        }
        let s = if scale2 { 2 * f } else { f };
        let final_bound = if plan.output_size == 1 {
            max_abs(&x)
        } else {
            let top = x.iter().map(|v| v.1).fold(f64::MIN, f64::max);
            let bottom = x.iter().map(|v| v.0).fold(f64::MAX, f64::min);
            (top - bottom).max(0.0)
        };
        let levels = if plan.output_size == 1 {
            1
        } else {
            crate::compare::tournament_levels(plan.output_size)
        };
        out.stage(cfg, plan.layers.len(), Stage::Final, final_bound, s, levels)?;
        out.truncation_failure_per_image = fail.min(1.0);
        Ok(out)
    }

    /// Records a stage's width (and skipped low bits, returned) for values
    /// of magnitude at most `bound` at `scale` fractional bits; `levels` is
    /// the number of tournament levels of a max pool or final argmax.
    fn stage(
        &mut self,
        cfg: &ProtocolConfig,
        layer: usize,
        stage: Stage,
        bound: f64,
        scale: u32,
        levels: u32,
    ) -> Result<u32, SmpcError> {
        let f = cfg.frac_bits;
        // Exact truncation (a ReLU or truncation stage on 2f-bit values)
        // needs one ulp of margin at f bits and a width above f.
        let truncating = scale == 2 * f && matches!(stage, Stage::Trunc | Stage::Relu);
        // A faithful max/argmax on 2f-bit values skips k low bits and needs
        // 2^k ring units of margin at the top.
        let skip = if scale == 2 * f
            && cfg.comparison == Comparison::Faithful
            && matches!(stage, Stage::MaxPool | Stage::Final)
        {
            faithful_skip(f, levels)
        } else {
            0
        };
        let margin = if truncating {
            2f64.powi(-(f as i32))
        } else if skip > 0 {
            2f64.powi(skip as i32 - scale as i32)
        } else {
            0.0
        };
        let Some(mut m) = bits_for(bound + margin, scale) else {
            return Err(out_of_ring(layer, bound, scale, f));
        };
        if truncating {
            m = m.max(f + 1);
        }
        if m > FULL_CMP_BITS {
            return Err(out_of_ring(layer, bound, scale, f));
        }
        if m > cfg.cmp_bits {
            return Err(SmpcError::Range(format!(
                "{stage:?} of layer {layer}: values can reach +-{bound:.4e}, beyond the \
                 +-2^{} that a {}-bit comparison covers at {scale} fractional bits; \
                 this model needs cmp_bits >= {m}",
                cfg.cmp_bits as i64 - scale as i64,
                cfg.cmp_bits
            )));
        }
        self.widths.push(m);
        // The margin makes m > skip; keep the invariant explicit.
        let skip = if skip < m { skip } else { 0 };
        self.skips.push(skip);
        self.bounds.push(bound);
        Ok(skip)
    }

    /// The low bits stage `i` skips (0 for plans without skips).
    pub fn skip(&self, i: usize) -> u32 {
        self.skips.get(i).copied().unwrap_or(0)
    }

    /// Number of comparison stages of `plan` under `truncation`: what a
    /// computing party expects `widths` to hold.
    pub fn stage_count(plan: &ModelPlan, truncation: Truncation) -> usize {
        let exact = truncation == Truncation::Exact;
        let mut scale2 = false;
        let mut count = 1; // the final argmax / DReLU
        for l in &plan.layers {
            match l {
                LayerPlan::Linear { .. } | LayerPlan::Conv { .. } => {
                    count += usize::from(scale2);
                    scale2 = exact;
                }
                LayerPlan::Relu => {
                    count += 1;
                    scale2 = false;
                }
                LayerPlan::MaxPool { .. } => count += 1,
                LayerPlan::AvgPool { .. } => {
                    count += usize::from(scale2);
                    scale2 = exact;
                }
            }
        }
        count
    }
}

fn out_of_ring(layer: usize, bound: f64, scale: u32, f: u32) -> SmpcError {
    SmpcError::Range(format!(
        "layer {layer}: values can reach +-{bound:.4e} for inputs in the declared range, \
         beyond the +-2^{} that the 64-bit ring holds at {scale} fractional bits \
         (--frac-bits {f}); use fewer fractional bits or a model with smaller weights",
        62 - scale as i64
    ))
}

fn max_abs(x: &Intervals) -> f64 {
    x.iter().fold(0f64, |m, v| m.max(v.0.abs()).max(v.1.abs()))
}

/// Intervals of a convolution's outputs (layout `o * Ho*Wo + p`, before bias).
fn conv_intervals(
    x: &Intervals,
    q: &QLayer,
    kernel: usize,
    stride: usize,
    padding: usize,
    (h, w): (usize, usize),
) -> Intervals {
    let s = stride.max(1);
    let ho = (h + 2 * padding).saturating_sub(kernel) / s + 1;
    let wo = (w + 2 * padding).saturating_sub(kernel) / s + 1;
    let cin = q.k / (kernel * kernel).max(1);
    let np = ho * wo;
    let mut out = vec![(0f64, 0f64); q.n * np];
    for oy in 0..ho {
        for ox in 0..wo {
            let p = oy * wo + ox;
            for o in 0..q.n {
                let mut terms = Vec::with_capacity(q.k);
                for c in 0..cin {
                    for ki in 0..kernel {
                        let iy = (oy * s + ki) as isize - padding as isize;
                        for kj in 0..kernel {
                            let ix = (ox * s + kj) as isize - padding as isize;
                            let v = if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                (0.0, 0.0)
                            } else {
                                x[c * h * w + iy as usize * w + ix as usize]
                            };
                            terms.push((q.w[((c * kernel + ki) * kernel + kj) * q.n + o], v));
                        }
                    }
                }
                out[o * np + p] = dot(terms.into_iter());
            }
        }
    }
    out
}

/// Intervals after max pooling, and the largest difference two members of a
/// window can have (what the tournament compares).
fn pool_intervals(
    x: &Intervals,
    kernel: usize,
    stride: usize,
    ch: usize,
    (h, w): (usize, usize),
) -> (Intervals, f64) {
    let s = stride.max(1);
    let ho = h.saturating_sub(kernel) / s + 1;
    let wo = w.saturating_sub(kernel) / s + 1;
    let mut out = Vec::with_capacity(ch * ho * wo);
    let mut diff = 0f64;
    for c in 0..ch {
        for oy in 0..ho {
            for ox in 0..wo {
                let (mut lo, mut hi, mut min_lo, mut max_hi) =
                    (f64::MIN, f64::MIN, f64::MAX, f64::MIN);
                for ki in 0..kernel {
                    for kj in 0..kernel {
                        let v = x[c * h * w + (oy * s + ki) * w + ox * s + kj];
                        lo = lo.max(v.0);
                        hi = hi.max(v.1);
                        min_lo = min_lo.min(v.0);
                        max_hi = max_hi.max(v.1);
                    }
                }
                diff = diff.max(max_hi - min_lo);
                out.push((lo, hi));
            }
        }
    }
    (out, diff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_for_is_the_smallest_sufficient_width() {
        assert_eq!(bits_for(0.0, 16), Some(1));
        // 1.0 at 16 bits is 2^16: needs 2^16 < 2^m, m = 17.
        assert_eq!(bits_for(1.0, 16), Some(17));
        assert_eq!(bits_for(0.999, 16), Some(16));
        assert_eq!(bits_for(4095.99, 16), Some(28));
        assert_eq!(bits_for(2f64.powi(47), 16), None);
    }

    #[test]
    fn bounds_contain_the_plaintext_values() {
        // Random inputs in the range never exceed the bounds of a random model.
        let model = Model::from_arch("net-a", 3).unwrap();
        let plan = ModelPlan::from_model(&model).unwrap();
        let cfg = ProtocolConfig {
            truncation: Truncation::Local,
            ..Default::default()
        };
        let r = RangePlan::analyse(&model, &plan, &cfg, DEFAULT_INPUT_RANGE).unwrap();
        assert_eq!(
            r.widths.len(),
            RangePlan::stage_count(&plan, Truncation::Local)
        );
        let mut state = 12345u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let (lo, hi) = DEFAULT_INPUT_RANGE;
        for _ in 0..20 {
            let img: Vec<f32> = (0..784).map(|_| (lo + (hi - lo) * next()) as f32).collect();
            let mut stage = 0;
            for (i, l) in model.layers.iter().enumerate() {
                if matches!(l, Layer::Relu) {
                    let prefix = Model {
                        layers: model.layers[..i].to_vec(),
                        ..model.clone()
                    };
                    let h = prefix.forward(&img, 1);
                    let m = h.iter().fold(0f32, |a, v| a.max(v.abs())) as f64;
                    assert!(m <= r.bounds[stage], "relu input {m} > {}", r.bounds[stage]);
                    stage += 1;
                }
            }
            let h = model.forward(&img, 1);
            let spread = h.iter().cloned().fold(f32::MIN, f32::max)
                - h.iter().cloned().fold(f32::MAX, f32::min);
            assert!(spread as f64 <= r.bounds[stage]);
        }
    }

    #[test]
    fn a_model_beyond_the_ring_is_refused_naming_the_range() {
        let mut model = Model::from_arch("mlp500", 1).unwrap();
        let p: Vec<f32> = model.params_flat().iter().map(|v| v * 1e6).collect();
        model.set_params_flat(&p).unwrap();
        let plan = ModelPlan::from_model(&model).unwrap();
        let err =
            RangePlan::analyse(&model, &plan, &ProtocolConfig::default(), (0.0, 1.0)).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, SmpcError::Range(_)), "{msg}");
        assert!(msg.contains("ring holds") && msg.contains("layer"), "{msg}");
    }

    #[test]
    fn local_truncation_bound_is_the_secureml_formula() {
        // One product z = x0 + x1 with x in [0, 1]: |z| <= 2 (plus the
        // encoding's half ulps), a ring integer below 2^34 at 32 fractional
        // bits, so one truncation failing with probability 2^(34 + 1 - 64).
        let model = Model {
            arch: "sum".into(),
            layers: vec![Layer::Linear(ppml_nn::Linear {
                weight: vec![1.0, 1.0],
                bias: vec![0.0],
                in_features: 2,
                out_features: 1,
            })],
            input_shape: vec![2],
        };
        let plan = ModelPlan::from_model(&model).unwrap();
        let local = ProtocolConfig {
            truncation: Truncation::Local,
            ..Default::default()
        };
        let r = RangePlan::analyse(&model, &plan, &local, (0.0, 1.0)).unwrap();
        assert_eq!(r.truncation_failure_per_image, 2f64.powi(34 + 1 - 64));
        // The final DReLU of the single logit: |z| just above 2 at 16 bits.
        assert_eq!(r.widths, vec![18]);
        let exact =
            RangePlan::analyse(&model, &plan, &ProtocolConfig::default(), (0.0, 1.0)).unwrap();
        assert_eq!(exact.truncation_failure_per_image, 0.0);
        // Exact: the logit stays at 32 fractional bits.
        assert_eq!(exact.widths, vec![34]);
    }

    #[test]
    fn a_width_cap_below_the_need_is_refused_naming_the_width() {
        let model = Model::from_arch("mlp500", 1).unwrap();
        let plan = ModelPlan::from_model(&model).unwrap();
        let cfg = ProtocolConfig {
            cmp_bits: 18,
            ..Default::default()
        };
        let err = RangePlan::analyse(&model, &plan, &cfg, DEFAULT_INPUT_RANGE).unwrap_err();
        assert!(err.to_string().contains("cmp_bits >="), "{err}");
    }
}
