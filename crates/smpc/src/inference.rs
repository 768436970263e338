//! Private inference of `ppml-nn` models among five roles: the model owner
//! (shares the weights once), the data owner (sends masked images, receives
//! the prediction shares and alone reconstructs predictions), and the three
//! computing parties P0, P1, P2.
//!
//! What each computing party sees is masked: P0/P1 receive `F = W - B`
//! (weights masked by P2's `B`), `E = X - A` (inputs masked by `A`), opened
//! values masked by fresh masks, and the helper's corrections; P2 receives
//! only PrivateCompare vectors. See docs/PROTOCOLS.md.
//!
//! The model's layer list (shapes only, as a [`ModelPlan`]) and the batch
//! sizes are public.

use crate::beaver::{self, FixedRhs};
use crate::party::{
    Comparison, DATA_OWNER, MODEL_OWNER, P0, P1, P2, Party, ProtocolConfig, Stream, TestOnlyLeak,
    Truncation, party_name,
};
pub use crate::range::{DEFAULT_INPUT_RANGE, RangePlan};
pub use crate::scoring::{Reveal, RoleOutput};
use crate::sim::{self, PartyRun};
use crate::{SmpcError, compare, error::expect_len, latency};
use ppml_fixedpoint::FixedPoint;
use ppml_net::emulator::{LinkProfile, MODELLED, critical_path, in_memory_with_hops};
use ppml_net::{NetConfig, NetworkStats};
use ppml_nn::{Layer, Model};
use ppml_random::SecretSource;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// One layer as the parties see it: shapes only, no weights.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LayerPlan {
    /// `y = x W^T + b`.
    Linear {
        in_features: usize,
        out_features: usize,
    },
    /// 2-D convolution (square kernel), computed as im2col then a matmul.
    Conv {
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        input_hw: (usize, usize),
    },
    /// ReLU.
    Relu,
    /// Max pooling (no padding).
    MaxPool {
        kernel: usize,
        stride: usize,
        channels: usize,
        input_hw: (usize, usize),
    },
    /// Average pooling (no padding; global pooling is one whole-image
    /// window): local sums, a public multiplier, one truncation.
    AvgPool {
        kernel: (usize, usize),
        stride: (usize, usize),
        channels: usize,
        input_hw: (usize, usize),
    },
}

/// The public description of a model: its layers' shapes, and what the
/// model owner proved about its value ranges (the comparison widths).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelPlan {
    pub arch: String,
    pub input_size: usize,
    pub output_size: usize,
    pub layers: Vec<LayerPlan>,
    /// Input range, comparison widths and failure bound (see [`RangePlan`]);
    /// empty from [`ModelPlan::from_model`], filled by
    /// [`ModelPlan::for_protocol`].
    #[serde(default)]
    pub ranges: RangePlan,
}

impl LayerPlan {
    /// Output height and width of a convolution or pooling window (the one
    /// shape formula of plans; [`crate::limits`] bounds the inputs first, so
    /// no overflow).
    pub(crate) fn conv_out_hw(
        kernel: usize,
        stride: usize,
        padding: usize,
        hw: (usize, usize),
    ) -> (usize, usize) {
        let s = stride.max(1);
        (
            (hw.0 + 2 * padding).saturating_sub(kernel) / s + 1,
            (hw.1 + 2 * padding).saturating_sub(kernel) / s + 1,
        )
    }

    /// Per-sample output size for a per-sample input size.
    pub fn out_size(&self, in_size: usize) -> usize {
        match *self {
            LayerPlan::Linear { out_features, .. } => out_features,
            LayerPlan::Conv {
                out_channels,
                kernel,
                stride,
                padding,
                input_hw,
                ..
            } => {
                let (h, w) = Self::conv_out_hw(kernel, stride, padding, input_hw);
                out_channels * h * w
            }
            LayerPlan::Relu => in_size,
            LayerPlan::MaxPool {
                kernel,
                stride,
                channels,
                input_hw,
            } => {
                let (h, w) = Self::conv_out_hw(kernel, stride, 0, input_hw);
                channels * h * w
            }
            LayerPlan::AvgPool {
                kernel,
                stride,
                channels,
                input_hw,
            } => crate::avgpool::AvgGeometry::new(kernel, stride, channels, input_hw).out_size(),
        }
    }
}

/// The weights of a layer in ring form: `k x n` right operand and bias.
struct RingLayer {
    w: Vec<u64>,
    k: usize,
    n: usize,
    bias: Vec<u64>,
}

impl ModelPlan {
    /// The plan of a model. `Flatten` is dropped (a no-op on row-major data)
    /// and `ReLU, MaxPool` is run as `MaxPool, ReLU` (equal, since ReLU is
    /// monotone; the ReLU then runs on 4x fewer elements).
    pub fn from_model(model: &Model) -> Result<ModelPlan, SmpcError> {
        model.validate()?;
        let mut layers = Vec::new();
        for l in &model.layers {
            let p = match l {
                Layer::Linear(x) => LayerPlan::Linear {
                    in_features: x.in_features,
                    out_features: x.out_features,
                },
                Layer::Conv2d(c) => LayerPlan::Conv {
                    in_channels: c.in_channels,
                    out_channels: c.out_channels,
                    kernel: c.kernel,
                    stride: c.stride,
                    padding: c.padding,
                    input_hw: c.input_hw,
                },
                Layer::Relu => LayerPlan::Relu,
                Layer::MaxPool2d(m) => LayerPlan::MaxPool {
                    kernel: m.kernel,
                    stride: m.stride,
                    channels: m.channels,
                    input_hw: m.input_hw,
                },
                Layer::AvgPool2d(a) => LayerPlan::AvgPool {
                    kernel: a.kernel,
                    stride: a.stride,
                    channels: a.channels,
                    input_hw: a.input_hw,
                },
                Layer::Flatten => continue,
            };
            if matches!(p, LayerPlan::MaxPool { .. }) && layers.last() == Some(&LayerPlan::Relu) {
                layers.pop();
                layers.push(p);
                layers.push(LayerPlan::Relu);
            } else {
                layers.push(p);
            }
        }
        let out = model.output_size();
        if out < 1 {
            return Err(SmpcError::Model("model has no outputs".into()));
        }
        Ok(ModelPlan {
            arch: model.arch.clone(),
            input_size: model.input_size(),
            output_size: out,
            layers,
            ranges: RangePlan::default(),
        })
    }

    /// The plan the model owner sends: shapes plus the range analysis of
    /// `model` for inputs in `input_range` under `cfg` (fails with
    /// [`SmpcError::Range`] when the model's values cannot be computed
    /// exactly).
    pub fn for_protocol(
        model: &Model,
        cfg: &ProtocolConfig,
        input_range: (f64, f64),
    ) -> Result<ModelPlan, SmpcError> {
        let mut plan = Self::from_model(model)?;
        plan.ranges = RangePlan::analyse(model, &plan, cfg, input_range)?;
        Ok(plan)
    }

    /// A received plan against this party's configuration: same fixed point
    /// and truncation, one width per comparison stage, none wider than
    /// `cfg.cmp_bits`.
    fn check_ranges(&self, cfg: &ProtocolConfig) -> Result<(), SmpcError> {
        let r = &self.ranges;
        if r.frac_bits != cfg.frac_bits || r.truncation != cfg.truncation {
            return Err(SmpcError::Config(format!(
                "the model owner's plan is for {} fractional bits and {} truncation, \
                 this party runs {} and {}",
                r.frac_bits, r.truncation, cfg.frac_bits, cfg.truncation
            )));
        }
        if r.comparison != cfg.comparison {
            return Err(SmpcError::Config(format!(
                "the model owner's plan uses {} comparisons, this party runs {}",
                r.comparison, cfg.comparison
            )));
        }
        let want = RangePlan::stage_count(self, r.truncation);
        if r.widths.len() != want {
            return Err(SmpcError::Model(format!(
                "plan has {} comparison widths, its layers need {want}",
                r.widths.len()
            )));
        }
        if !r.skips.is_empty() {
            if r.skips.len() != r.widths.len() {
                return Err(SmpcError::Model(format!(
                    "plan has {} skipped-bit counts for {} comparison widths",
                    r.skips.len(),
                    r.widths.len()
                )));
            }
            let bad = r.skips.iter().zip(&r.widths).any(|(&k, &w)| {
                k >= w || (k > 0 && (r.comparison != Comparison::Faithful || k > cfg.frac_bits))
            });
            if bad {
                return Err(SmpcError::Model(format!(
                    "plan skips {:?} low bits of comparisons of widths {:?} ({} comparison, {} \
                     fractional bits)",
                    r.skips, r.widths, r.comparison, cfg.frac_bits
                )));
            }
        }
        if let Some(w) = r.widths.iter().find(|&&w| w == 0 || w > cfg.cmp_bits) {
            return Err(SmpcError::Range(format!(
                "the plan asks for a {w}-bit comparison; this party allows 1..={}",
                cfg.cmp_bits
            )));
        }
        let (lo, hi) = r.input_range;
        if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
            return Err(SmpcError::Model(format!(
                "plan declares input range [{lo}, {hi}]"
            )));
        }
        Ok(())
    }

    /// Fractional bits of the logits the last layer leaves: `2f` when, with
    /// exact truncation, a weighted layer or average pool is not followed by
    /// a ReLU; else `f`.
    pub fn logit_frac_bits(&self, f: u32) -> u32 {
        let exact = self.ranges.truncation == Truncation::Exact;
        let mut scale2 = false;
        for l in &self.layers {
            match l {
                LayerPlan::Linear { .. } | LayerPlan::Conv { .. } | LayerPlan::AvgPool { .. } => {
                    scale2 = exact
                }
                LayerPlan::Relu => scale2 = false,
                LayerPlan::MaxPool { .. } => {}
            }
        }
        if scale2 { 2 * f } else { f }
    }

    /// Checks a plan received from the model owner before anything is
    /// computed or allocated from it: every announced size within
    /// [`crate::limits`] (returns the per-image working set), the ranges
    /// against this party's configuration, and every layer's geometry
    /// against the values it receives, so that a lying plan is an error
    /// here and never an out-of-bounds index later.
    pub fn validate_received(&self, cfg: &ProtocolConfig) -> Result<usize, SmpcError> {
        let per_image = crate::limits::check_plan(self)?;
        self.check_ranges(cfg)?;
        self.check_shapes()?;
        Ok(per_image)
    }

    /// Each layer fits the output of the one before it: input counts,
    /// window sizes within the (padded) image, strides of at least 1, and
    /// the last layer's output is `output_size`. Call after
    /// [`crate::limits::check_plan`] (which bounds every number, so the
    /// products below cannot overflow; they are checked anyway).
    fn check_shapes(&self) -> Result<(), SmpcError> {
        let mut size = self.input_size;
        for l in &self.layers {
            if size == 0 {
                return Err(SmpcError::Model(format!("layer {l:?} receives no values")));
            }
            let volume = |c: usize, (h, w): (usize, usize)| c.checked_mul(h)?.checked_mul(w);
            let (fits, needs) = match *l {
                LayerPlan::Linear { in_features, .. } => (true, Some(in_features)),
                LayerPlan::Relu => (true, Some(size)),
                LayerPlan::Conv {
                    in_channels,
                    kernel,
                    stride,
                    padding,
                    input_hw: (h, w),
                    ..
                } => {
                    let padded = |d: usize| d.saturating_add(padding.saturating_mul(2));
                    let fits = kernel >= 1
                        && stride >= 1
                        && h >= 1
                        && w >= 1
                        && kernel <= padded(h)
                        && kernel <= padded(w);
                    (fits, volume(in_channels, (h, w)))
                }
                LayerPlan::MaxPool {
                    kernel,
                    stride,
                    channels,
                    input_hw: (h, w),
                } => {
                    let fits = kernel >= 1 && stride >= 1 && kernel <= h && kernel <= w;
                    (fits, volume(channels, (h, w)))
                }
                LayerPlan::AvgPool {
                    kernel: (kh, kw),
                    stride: (sh, sw),
                    channels,
                    input_hw: (h, w),
                } => {
                    let fits = kh >= 1 && kw >= 1 && kh <= h && kw <= w && sh >= 1 && sw >= 1;
                    (fits, volume(channels, (h, w)))
                }
            };
            if !fits || needs != Some(size) {
                return Err(SmpcError::Model(format!(
                    "layer {l:?} does not fit its {size} inputs"
                )));
            }
            size = l.out_size(size);
        }
        if size != self.output_size || size == 0 {
            return Err(SmpcError::Model(format!(
                "plan outputs {size} values, expected {} (at least one)",
                self.output_size
            )));
        }
        Ok(())
    }
}

/// The ring form of every weighted layer, in plan order (the model owner's
/// secret).
fn ring_layers(model: &Model, fp: FixedPoint) -> Result<Vec<RingLayer>, SmpcError> {
    let mut out = Vec::new();
    for l in &model.layers {
        match l {
            Layer::Linear(x) => {
                let (k, n) = (x.in_features, x.out_features);
                let mut w = vec![0u64; k * n];
                for o in 0..n {
                    for i in 0..k {
                        w[i * n + o] = fp.encode_f32(x.weight[o * k + i])?;
                    }
                }
                out.push(RingLayer {
                    w,
                    k,
                    n,
                    bias: fp.encode_vec(&x.bias)?,
                });
            }
            Layer::Conv2d(c) => {
                let k = c.in_channels * c.kernel * c.kernel;
                let n = c.out_channels;
                let mut w = vec![0u64; k * n];
                for o in 0..n {
                    for i in 0..k {
                        w[i * n + o] = fp.encode_f32(c.weight[o * k + i])?;
                    }
                }
                out.push(RingLayer {
                    w,
                    k,
                    n,
                    bias: fp.encode_vec(&c.bias)?,
                });
            }
            _ => {}
        }
    }
    Ok(out)
}

/// One weighted layer as a computing party holds it.
struct PreparedLayer {
    rhs: FixedRhs,
    /// This party's share of the bias (empty for P2).
    bias: Vec<u64>,
}

fn weighted_dims(plan: &ModelPlan) -> Vec<(usize, usize)> {
    plan.layers
        .iter()
        .filter_map(|l| match *l {
            LayerPlan::Linear {
                in_features,
                out_features,
            } => Some((in_features, out_features)),
            LayerPlan::Conv {
                in_channels,
                out_channels,
                kernel,
                ..
            } => Some((in_channels * kernel * kernel, out_channels)),
            _ => None,
        })
        .collect()
}

/// The model owner's role: announces the plan and shares the weights.
pub fn model_owner(party: &mut Party, model: &Model) -> Result<(), SmpcError> {
    model_owner_full(party, model).map(|_| ())
}

/// [`model_owner`], returning the number of correct predictions when the
/// data owner asked for private scoring ([`Reveal::CorrectCount`]).
pub fn model_owner_full(party: &mut Party, model: &Model) -> Result<Option<u64>, SmpcError> {
    let plan = ModelPlan::for_protocol(model, &party.cfg, DEFAULT_INPUT_RANGE)?;
    let fp = FixedPoint::new(party.cfg.frac_bits)?;
    let layers = ring_layers(model, fp)?;
    for peer in [P0, P1, P2, DATA_OWNER] {
        party.net.send(peer, &plan)?;
    }
    for l in &layers {
        FixedRhs::share_as_owner(party, &l.w, l.k, l.n)?;
        let mut b0 = party.draw(Stream::M02, l.n)?;
        if party.test_only.leak == TestOnlyLeak::ShareUnmasked {
            b0.fill(0); // TEST-ONLY mutation: P1's share is the bias itself
        }
        let b1: Vec<u64> = l
            .bias
            .iter()
            .zip(&b0)
            .map(|(b, r)| b.wrapping_sub(*r))
            .collect();
        party.send_u64s(P1, &b1)?;
    }
    let reveal: Reveal = party.net.recv(DATA_OWNER)?;
    if reveal == Reveal::CorrectCount {
        let count: usize = party.net.recv(DATA_OWNER)?;
        return crate::scoring::receive_count(party, count).map(Some);
    }
    Ok(None)
}

fn prepare(party: &mut Party, plan: &ModelPlan) -> Result<Vec<PreparedLayer>, SmpcError> {
    let mut out = Vec::new();
    for (k, n) in weighted_dims(plan) {
        let rhs = FixedRhs::from_owner(party, k, n)?;
        let bias = match party.id {
            P0 if party.test_only.leak == TestOnlyLeak::ShareUnmasked => {
                party.draw(Stream::M02, n)?;
                vec![0; n]
            }
            P0 => party.draw(Stream::M02, n)?,
            P1 => party.recv_len(MODEL_OWNER, n, "bias share")?,
            _ => {
                party.draw(Stream::M02, n)?; // keep M02 in step with P0
                Vec::new()
            }
        };
        out.push(PreparedLayer { rhs, bias });
    }
    Ok(out)
}

/// im2col of a batch of `C x H x W` images: rows `b*P + p` (output position
/// `p`), columns `(c*k + ki)*k + kj` (PyTorch's weight order).
fn im2col(
    x: &[u64],
    batch: usize,
    (cin, kernel, stride, padding, (h, w)): (usize, usize, usize, usize, (usize, usize)),
) -> Vec<u64> {
    let (ho, wo) = LayerPlan::conv_out_hw(kernel, stride, padding, (h, w));
    let np = ho * wo;
    let kk = cin * kernel * kernel;
    let mut out = vec![0u64; batch * np * kk];
    use rayon::prelude::*;
    out.par_chunks_mut(np * kk)
        .enumerate()
        .for_each(|(b, img_out)| {
            let img = &x[b * cin * h * w..(b + 1) * cin * h * w];
            for oy in 0..ho {
                for ox in 0..wo {
                    let row = &mut img_out[(oy * wo + ox) * kk..(oy * wo + ox + 1) * kk];
                    // The kernel columns inside the image: kj in lo..hi
                    // (ix = ox * stride + kj - padding in 0..w); the rest is
                    // padding (zeros, as allocated).
                    let x0 = ox * stride;
                    let lo = padding.saturating_sub(x0).min(kernel);
                    let hi = (w + padding).saturating_sub(x0).min(kernel).max(lo);
                    for c in 0..cin {
                        for ki in 0..kernel {
                            let iy = (oy * stride + ki) as isize - padding as isize;
                            if iy < 0 || iy >= h as isize || lo == hi {
                                continue;
                            }
                            let src = c * h * w + iy as usize * w + x0 + lo - padding;
                            let dst = (c * kernel + ki) * kernel;
                            row[dst + lo..dst + hi].copy_from_slice(&img[src..src + hi - lo]);
                        }
                    }
                }
            }
        });
    out
}

/// The windows of a max pool as groups: `(batch*C*Ho*Wo) x (k*k)`.
fn pool_groups(
    x: &[u64],
    batch: usize,
    kernel: usize,
    stride: usize,
    ch: usize,
    (h, w): (usize, usize),
) -> Vec<u64> {
    let (ho, wo) = LayerPlan::conv_out_hw(kernel, stride, 0, (h, w));
    let mut out = Vec::with_capacity(batch * ch * ho * wo * kernel * kernel);
    for b in 0..batch {
        for c in 0..ch {
            let plane = &x[(b * ch + c) * h * w..(b * ch + c + 1) * h * w];
            for oy in 0..ho {
                for ox in 0..wo {
                    for ki in 0..kernel {
                        for kj in 0..kernel {
                            out.push(plane[(oy * stride + ki) * w + ox * stride + kj]);
                        }
                    }
                }
            }
        }
    }
    out
}

/// The comparison widths of a plan (and their skipped low bits), consumed
/// in protocol order.
struct Widths<'a> {
    ranges: &'a RangePlan,
    next: usize,
}

impl Widths<'_> {
    /// The next stage's width.
    fn next(&mut self) -> Result<u32, SmpcError> {
        Ok(self.next_skip()?.0)
    }

    /// The next stage's width and skipped low bits.
    fn next_skip(&mut self) -> Result<(u32, u32), SmpcError> {
        let i = self.next;
        let m = *self
            .ranges
            .widths
            .get(i)
            .ok_or_else(|| SmpcError::Model("plan has too few comparison widths".into()))?;
        self.next += 1;
        Ok((m, self.ranges.skip(i)))
    }

    fn done(&self) -> bool {
        self.next >= self.ranges.widths.len()
    }
}

/// Exact truncation of `x` (carrying `2f` fractional bits) at width `m`.
fn exact_trunc(party: &mut Party, m: u32, x: &[u64], n: usize) -> Result<Vec<u64>, SmpcError> {
    compare::trunc_exact(party, m, n, x)
}

/// Runs one batch through the plan; returns this party's shares of the
/// predicted class of each image and of the logits (P2: empty); the logits
/// carry [`ModelPlan::logit_frac_bits`] fractional bits.
///
/// With exact truncation, a weighted layer's output keeps its `2f`
/// fractional bits (bias scaled up to match) until the next comparison
/// truncates it exactly: the following ReLU, or a standalone truncation
/// before the next weighted layer or average pool; max pooling and the final
/// argmax compare `2f`-bit values directly. With local truncation every
/// product is truncated at once. Every comparison uses the plan's width for it.
fn infer_batch(
    party: &mut Party,
    plan: &ModelPlan,
    layers: &[PreparedLayer],
    batch: usize,
) -> Result<(Vec<u64>, Vec<u64>), SmpcError> {
    let helper = party.id == P2;
    let exact = plan.ranges.truncation == Truncation::Exact;
    let f = party.cfg.frac_bits;
    let mut widths = Widths {
        ranges: &plan.ranges,
        next: 0,
    };
    let mut x: Vec<u64> = Vec::new();
    let mut size = plan.input_size;
    let mut weighted = 0;
    let mut first = true;
    // Whether x carries 2f fractional bits (exact mode, not yet truncated).
    let mut scale2 = false;
    for l in &plan.layers {
        let out_size = l.out_size(size);
        match *l {
            LayerPlan::Linear { .. } | LayerPlan::Conv { .. } => {
                if scale2 {
                    x = exact_trunc(party, widths.next()?, &x, batch * size)?;
                }
                let prepared = layers.get(weighted).ok_or_else(|| {
                    SmpcError::Model("fewer prepared layers than the plan has".into())
                })?;
                weighted += 1;
                let masked = if first {
                    beaver::mask_from_owner(party, batch * size)?
                } else {
                    beaver::mask_shared(party, batch * size, &x)?
                };
                first = false;
                let n = prepared.rhs.n();
                // Bias at the product's scale: 2f bits (exact) or f (local).
                let bias: Vec<u64> = if exact {
                    prepared.bias.iter().map(|b| b.wrapping_shl(f)).collect()
                } else {
                    prepared.bias.clone()
                };
                if let LayerPlan::Conv {
                    in_channels,
                    kernel,
                    stride,
                    padding,
                    input_hw,
                    ..
                } = *l
                {
                    let geo = (in_channels, kernel, stride, padding, input_hw);
                    let np = out_size / n;
                    // im2col a few images at a time inside the product.
                    let mut z = beaver::fixed_product_expanded(
                        party,
                        batch,
                        np,
                        &masked,
                        &prepared.rhs,
                        |v, g| im2col(v, g, geo),
                    )?;
                    if !exact {
                        beaver::truncate(party, &mut z);
                    }
                    if !helper {
                        // (b, p, o) -> (b, o, p), plus bias.
                        let mut y = vec![0u64; batch * out_size];
                        for b in 0..batch {
                            for p in 0..np {
                                for o in 0..n {
                                    y[b * out_size + o * np + p] =
                                        z[(b * np + p) * n + o].wrapping_add(bias[o]);
                                }
                            }
                        }
                        x = y;
                    }
                } else {
                    let mut z = beaver::fixed_product(party, batch, &masked, &prepared.rhs)?;
                    if !exact {
                        beaver::truncate(party, &mut z);
                    }
                    if !helper {
                        for row in z.chunks_exact_mut(n) {
                            for (v, b) in row.iter_mut().zip(&bias) {
                                *v = v.wrapping_add(*b);
                            }
                        }
                    }
                    x = z;
                }
                scale2 = exact;
            }
            LayerPlan::Relu => {
                let m = widths.next()?;
                x = if scale2 {
                    compare::relu_trunc(party, m, batch * size, &x)?
                } else {
                    compare::relu_at(party, m, batch * size, &x)?
                };
                scale2 = false;
            }
            LayerPlan::MaxPool {
                kernel,
                stride,
                channels,
                input_hw,
            } => {
                let count = batch * out_size;
                let groups = if helper {
                    Vec::new()
                } else {
                    pool_groups(&x, batch, kernel, stride, channels, input_hw)
                };
                let (m, k) = widths.next_skip()?;
                x = compare::max_groups_skip(party, m, k, count, kernel * kernel, &groups, false)?
                    .0;
            }
            LayerPlan::AvgPool {
                kernel,
                stride,
                channels,
                input_hw,
            } => {
                let g = crate::avgpool::AvgGeometry::new(kernel, stride, channels, input_hw);
                if scale2 {
                    x = exact_trunc(party, widths.next()?, &x, batch * size)?;
                }
                if !helper {
                    expect_len("average pool input", x.len(), batch * size)?;
                }
                // Like a weighted layer: the product by 1/(kh*kw) carries 2f
                // bits, truncated exactly by the next comparison or locally now.
                x = crate::avgpool::avg_pool(party, batch, &g, &x, !exact);
                scale2 = exact;
            }
        }
        size = out_size;
    }
    let (m, k) = widths.next_skip()?;
    if !widths.done() {
        return Err(SmpcError::Model(
            "plan has too many comparison widths".into(),
        ));
    }
    if party.test_only.leak == TestOnlyLeak::LogitsToDataOwner {
        // TEST-ONLY mutation: the data owner gets shares of the logits.
        return Ok((x.clone(), x));
    }
    let classes = if plan.output_size == 1 {
        // Binary model: the class is DReLU of the single logit ([z >= 0]).
        compare::drelu_skip(party, m, k, batch, &x)?
    } else if batch <= latency::ALL_PAIRS_MAX_BATCH
        && latency::all_pairs_saves_rounds(plan.output_size)
    {
        // Single queries: two comparison levels instead of ceil(log2 classes).
        // All pairs compare exactly (k = 0, which the width also covers): a
        // faithful comparison could make the pairwise wins cyclic among
        // near-ties, leaving no class that beats all others.
        latency::argmax_all_pairs(party, m, batch, plan.output_size, &x)?
    } else {
        compare::argmax_skip(party, m, k, batch, plan.output_size, &x)?
    };
    Ok((classes, x))
}

/// A computing party's role (P0, P1 or P2): receives the plan and the
/// weights, then runs every batch the data owner announces.
pub fn computing_party(party: &mut Party) -> Result<(), SmpcError> {
    let plan: ModelPlan = party.net.recv(MODEL_OWNER)?;
    // Sizes from peers are checked before anything is allocated from them.
    let per_image = plan.validate_received(&party.cfg)?;
    let layers = prepare(party, &plan)?;
    let batches: Vec<usize> = party.net.recv(DATA_OWNER)?;
    crate::limits::check_batches(&batches, per_image)?;
    let reveal: Reveal = party.net.recv(DATA_OWNER)?;
    let mut kept = Vec::new();
    for &b in &batches {
        let (idx, logits) = infer_batch(party, &plan, &layers, b)?;
        if party.id == P2 {
            continue;
        }
        match reveal {
            Reveal::Classes => party.send_u64s(DATA_OWNER, &idx)?,
            Reveal::ClassesAndLogits => {
                party.send_u64s(DATA_OWNER, &idx)?;
                party.send_u64s(DATA_OWNER, &logits)?;
            }
            // The predictions stay shared; only the count is opened below.
            Reveal::CorrectCount => kept.extend_from_slice(&idx),
        }
    }
    if reveal == Reveal::CorrectCount {
        let total = batches
            .iter()
            .try_fold(0usize, |a, &b| a.checked_add(b))
            .ok_or_else(|| SmpcError::Shape("batch sizes overflow".into()))?;
        crate::scoring::count_correct(party, total, &kept)?;
    }
    Ok(())
}

/// The data owner's role: sends its images (`images.len() / input_size`
/// of them) masked, in batches of `batch`, and reconstructs the predictions.
pub fn data_owner(party: &mut Party, images: &[f32], batch: usize) -> Result<Vec<u8>, SmpcError> {
    Ok(data_owner_timed(party, images, batch)?.0)
}

/// [`data_owner`], also returning the latency of each image when
/// `batch == 1`. Batches of one are sent one at a time, each after the
/// previous prediction came back (a client waiting for its answer), so each
/// latency is that of one query alone; larger batches are all sent up front
/// and the parties pipeline them (no latencies are returned).
pub fn data_owner_timed(
    party: &mut Party,
    images: &[f32],
    batch: usize,
) -> Result<(Vec<u8>, Vec<Duration>), SmpcError> {
    let out = data_owner_full(party, images, None, batch, Reveal::Classes)?;
    Ok((out.predictions, out.latencies))
}

/// The data owner's role with a choice of what it learns: classes, classes
/// and logits, or (with `labels`, secret-shared too) only the number of
/// correct predictions. With `batch == 1` (and no private scoring) images go
/// one at a time, each after the previous answer, and latencies are kept.
pub fn data_owner_full(
    party: &mut Party,
    images: &[f32],
    labels: Option<&[u8]>,
    batch: usize,
    reveal: Reveal,
) -> Result<RoleOutput, SmpcError> {
    if batch == 0 {
        return Err(SmpcError::Config("batch size must be at least 1".into()));
    }
    let plan: ModelPlan = party.net.recv(MODEL_OWNER)?;
    plan.validate_received(&party.cfg)?;
    let per = plan.input_size;
    if per == 0 || !images.len().is_multiple_of(per) {
        return Err(SmpcError::Shape(format!(
            "{} pixel values are not a whole number of {per}-value images",
            images.len()
        )));
    }
    let count = images.len() / per;
    let labels = match (reveal, labels) {
        (Reveal::CorrectCount, Some(l)) => {
            expect_len("labels", l.len(), count)?;
            Some(l)
        }
        (Reveal::CorrectCount, None) => {
            return Err(SmpcError::Config("private scoring needs the labels".into()));
        }
        _ => None,
    };
    // The comparison widths are proven for inputs in the declared range only.
    let (lo, hi) = plan.ranges.input_range;
    if let Some(i) = images
        .iter()
        .position(|&v| !(lo..=hi).contains(&f64::from(v)))
    {
        return Err(SmpcError::Range(format!(
            "value {} (image {}, pixel {}) is outside the model's declared input range \
             [{lo}, {hi}], for which the model owner proved the comparison widths",
            images[i],
            i / per,
            i % per
        )));
    }
    let batches: Vec<usize> = (0..count)
        .step_by(batch)
        .map(|s| batch.min(count - s))
        .collect();
    for peer in [P0, P1, P2] {
        party.net.send(peer, &batches)?;
        party.net.send(peer, &reveal)?;
    }
    party.net.send(MODEL_OWNER, &reveal)?;
    let fp = FixedPoint::new(party.cfg.frac_bits)?;
    let mut out = RoleOutput::default();
    let mut enc = Vec::new();
    let leak_logits = party.test_only.leak == TestOnlyLeak::LogitsToDataOwner;
    let out_size = plan.output_size;
    let logit_scale = 2f64.powi(-(plan.logit_frac_bits(party.cfg.frac_bits) as i32));
    let receive = |party: &mut Party, b: usize, out: &mut RoleOutput| -> Result<(), SmpcError> {
        if leak_logits {
            // TEST-ONLY mutation: logits arrive; the data owner takes the argmax.
            let s0 = party.recv_len(P0, b * out_size, "logit share")?;
            let s1 = party.recv_len(P1, b * out_size, "logit share")?;
            let logits: Vec<f32> = s0
                .iter()
                .zip(&s1)
                .map(|(a, c)| fp.decode(a.wrapping_add(*c)) as f32)
                .collect();
            out.predictions
                .extend(ppml_nn::argmax_rows(&logits, out_size));
            return Ok(());
        }
        let s0 = party.recv_len(P0, b, "prediction share")?;
        let s1 = party.recv_len(P1, b, "prediction share")?;
        for (a, c) in s0.iter().zip(&s1) {
            let v = a.wrapping_add(*c);
            out.predictions.push(u8::try_from(v).map_err(|_| {
                SmpcError::Shape(format!("reconstructed class {v} is not a class index"))
            })?);
        }
        if reveal == Reveal::ClassesAndLogits {
            let n = b
                .checked_mul(out_size)
                .ok_or_else(|| SmpcError::Shape("logit count overflows".into()))?;
            let l0 = party.recv_len(P0, n, "logit share")?;
            let l1 = party.recv_len(P1, n, "logit share")?;
            out.logits.extend(
                l0.iter()
                    .zip(&l1)
                    .map(|(a, c)| (a.wrapping_add(*c) as i64) as f64 * logit_scale)
                    .map(|v| v as f32),
            );
        }
        Ok(())
    };
    if batch == 1 && labels.is_none() {
        for img in images.chunks_exact(per) {
            let t = Instant::now();
            enc.resize(per, 0);
            fp.encode_into(img, &mut enc)?;
            beaver::send_input_as_owner(party, &enc)?;
            receive(party, 1, &mut out)?;
            out.latencies.push(t.elapsed());
        }
        return Ok(out);
    }
    let mut start = 0;
    for &b in &batches {
        enc.resize(b * per, 0);
        fp.encode_into(&images[start * per..(start + b) * per], &mut enc)?;
        beaver::send_input_as_owner(party, &enc)?;
        start += b;
    }
    if let Some(labels) = labels {
        party.net.send(MODEL_OWNER, &count)?;
        out.correct = Some(crate::scoring::share_labels_and_receive_count(
            party, labels,
        )?);
        return Ok(out);
    }
    // Collect the outputs after sending everything: the parties pipeline.
    for &b in &batches {
        receive(party, b, &mut out)?;
    }
    Ok(out)
}

/// What a role brings to a run.
pub enum RoleInput<'a> {
    /// P0, P1, P2.
    Computing,
    /// The model owner's model.
    Model(&'a Model),
    /// The data owner's images (row-major, normalised) and batch size.
    Data { images: &'a [f32], batch: usize },
    /// The data owner with a choice of what it learns ([`Reveal`]); `labels`
    /// are needed (and secret-shared) for [`Reveal::CorrectCount`].
    DataReveal {
        images: &'a [f32],
        labels: Option<&'a [u8]>,
        batch: usize,
        reveal: Reveal,
    },
}

impl RoleInput<'_> {
    /// Checks what can be checked before any connection: the data owner has
    /// at least one image and a positive batch, so a bad parameter is reported
    /// as itself rather than as the peers' disconnects.
    pub fn validate(&self) -> Result<(), SmpcError> {
        match self {
            RoleInput::Data { images, batch } | RoleInput::DataReveal { images, batch, .. } => {
                if let RoleInput::DataReveal {
                    labels: None,
                    reveal: Reveal::CorrectCount,
                    ..
                } = self
                {
                    return Err(SmpcError::Config("private scoring needs the labels".into()));
                }
                if *batch == 0 {
                    return Err(SmpcError::Config("batch size must be at least 1".into()));
                }
                if images.is_empty() {
                    return Err(SmpcError::Config("the data owner has no images".into()));
                }
                Ok(())
            }
            RoleInput::Model(_) | RoleInput::Computing => Ok(()),
        }
    }
}

/// Runs the role of `party.id` to completion; the data owner returns the
/// predictions, the others an empty vector.
pub fn run_role(party: &mut Party, input: &RoleInput<'_>) -> Result<Vec<u8>, SmpcError> {
    Ok(run_role_full(party, input)?.predictions)
}

/// Runs the role of `party.id` to completion; returns what the role learns
/// (the data owner: predictions, logits or the count; the model owner: the
/// count under private scoring; the computing parties: nothing).
pub fn run_role_full(party: &mut Party, input: &RoleInput<'_>) -> Result<RoleOutput, SmpcError> {
    match (party.id, input) {
        (P0 | P1 | P2, RoleInput::Computing) => {
            computing_party(party).map(|_| RoleOutput::default())
        }
        (MODEL_OWNER, RoleInput::Model(m)) => {
            model_owner_full(party, m).map(|correct| RoleOutput {
                correct,
                ..Default::default()
            })
        }
        (DATA_OWNER, RoleInput::Data { images, batch }) => {
            data_owner_full(party, images, None, *batch, Reveal::Classes)
        }
        (
            DATA_OWNER,
            RoleInput::DataReveal {
                images,
                labels,
                batch,
                reveal,
            },
        ) => data_owner_full(party, images, *labels, *batch, *reveal),
        (id, _) => Err(SmpcError::Role(format!(
            "{} was given the wrong kind of input",
            party_name(id)
        ))),
    }
}

/// Configuration of an in-process private inference run.
#[derive(Clone, Debug)]
pub struct InferConfig {
    /// Images per batch (default 1000).
    pub batch: usize,
    /// Fixed-point and comparison parameters.
    pub protocol: ProtocolConfig,
    /// Where every party's secret randomness comes from (default: the OS).
    pub secrets: SecretSource,
    /// Receive timeout of every channel.
    pub timeout: Duration,
    /// Run the parties' channels through the link emulator of ppml-net
    /// (delay and rate limiting) instead of free in-memory channels.
    pub emulate: Option<LinkProfile>,
}

impl Default for InferConfig {
    fn default() -> Self {
        Self {
            batch: 1000,
            protocol: ProtocolConfig::default(),
            secrets: SecretSource::Os,
            timeout: Duration::from_secs(60),
            emulate: None,
        }
    }
}

/// Traffic of one party.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartyTraffic {
    pub party: String,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub messages_sent: u64,
    pub rounds: u64,
}

impl PartyTraffic {
    /// From a party's network stats.
    pub fn from_stats(id: usize, s: &NetworkStats) -> Self {
        PartyTraffic {
            party: party_name(id).into(),
            bytes_sent: s.total.bytes_sent,
            bytes_received: s.total.bytes_received,
            messages_sent: s.total.messages_sent,
            rounds: s.total.rounds,
        }
    }
}

/// The result of a private inference run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InferenceReport {
    pub arch: String,
    pub images: usize,
    pub batch: usize,
    /// Accuracy of the private predictions against the labels.
    pub accuracy: f64,
    /// Accuracy of the plaintext model on the same images.
    pub plaintext_accuracy: f64,
    /// Fraction of images where private and plaintext predictions agree.
    pub plaintext_agreement: f64,
    /// Wall time of everything: setup, weight sharing, input sharing,
    /// dealing, protocols, reconstruction.
    pub seconds: f64,
    pub images_per_second: f64,
    /// CPU time the whole process used during the run (Linux, 10 ms ticks;
    /// `None` elsewhere). Pinned to one core this is the wall time the run
    /// would take with the core to itself, which stays comparable on a
    /// shared, busy machine.
    pub cpu_seconds: Option<f64>,
    /// Sum over all five roles of the bytes sent (input sharing included).
    pub bytes_total: u64,
    pub bytes_per_image: f64,
    /// Largest number of rounds of a computing party.
    pub rounds: u64,
    /// `rounds / images` (setup included).
    pub rounds_per_image: f64,
    /// One-way message hops on the run's critical path (the longest chain of
    /// messages each sent after the previous arrived; see
    /// `ppml_net::emulator::HopTransport`).
    pub critical_path_hops: u64,
    /// Bytes sent by the busiest role.
    pub bytes_busiest_uplink: u64,
    /// The time a LAN (1 Gbit/s uplinks, 0.2 ms RTT) adds to this run's
    /// critical path, computing aside: round trips x RTT plus the bytes that
    /// cross uplinks one after another / bandwidth, from clocks carried in
    /// every message (`ppml_net::emulator::HopTransport`). `None` for an
    /// emulated run.
    pub network_seconds_lan: Option<f64>,
    /// The same on a WAN (100 Mbit/s uplinks, 40 ms RTT).
    pub network_seconds_wan: Option<f64>,
    /// Modelled wall time of this run on the LAN: compute (the smaller of this
    /// run's `seconds` and `cpu_seconds`, on free in-memory channels) +
    /// `network_seconds_lan`, i.e.
    /// compute + rounds x RTT + bytes / bandwidth along the critical path.
    /// `None` for a run that was itself emulated (its `seconds` already
    /// include a network).
    pub modelled_seconds_lan: Option<f64>,
    /// The same on the WAN.
    pub modelled_seconds_wan: Option<f64>,
    /// The emulated link of this run (`lan`, `wan` or `custom`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emulated_link: Option<String>,
    /// Batch 1 only: median latency of one query (data owner sends the
    /// image, waits for the prediction), milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms_p50: Option<f64>,
    /// Batch 1 only: 99th percentile latency, milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms_p99: Option<f64>,
    /// Batch 1 only: modelled latency of one query on the LAN, milliseconds:
    /// `latency_ms_p50` + the run's `network_seconds_lan` per query.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modelled_latency_ms_lan: Option<f64>,
    /// Batch 1 only: the same on the WAN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modelled_latency_ms_wan: Option<f64>,
    pub frac_bits: u32,
    /// The widest comparison allowed (`ProtocolConfig::cmp_bits`).
    pub cmp_bits: u32,
    /// The CPU backend of the kernels (`ppml_simd::backend`: portable, avx2
    /// or avx512).
    pub backend: String,
    /// The width of each comparison stage the model owner's bounds proved
    /// sufficient, in protocol order.
    pub cmp_widths: Vec<u32>,
    /// Low bits each of those stages' PrivateCompare skips (faithful max
    /// pooling and argmax; 0 elsewhere).
    pub cmp_skips: Vec<u32>,
    /// `faithful` or `exact` (see [`Comparison`]).
    pub comparison: String,
    /// `exact` or `local`.
    pub truncation: String,
    /// Upper bound on the probability that a local truncation fails on one
    /// image (0 with exact truncation); comparisons never fail for inputs in
    /// the declared range.
    pub truncation_failure_per_image: f64,
    /// The declared input range the widths are proven for.
    pub input_range: (f64, f64),
    /// Per role: p0, p1, p2, model-owner, data-owner.
    pub parties: Vec<PartyTraffic>,
    #[serde(skip)]
    pub predictions: Vec<u8>,
}

/// What the data owner gets from an in-process run without labels
/// ([`predict_in_process`]): its predictions, and what the run cost.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PrivateRun {
    /// The data owner's reconstructed predictions, one class per image.
    pub predictions: Vec<u8>,
    /// Wall time of everything (setup, sharing, protocols, reconstruction).
    pub seconds: f64,
    /// Sum over all five roles of the bytes sent.
    pub bytes_total: u64,
    /// Largest number of rounds of a computing party.
    pub rounds: u64,
    /// Per role: p0, p1, p2, model-owner, data-owner.
    pub parties: Vec<PartyTraffic>,
}

/// Runs private inference of `model` on `images` (row-major, normalised as
/// the model expects, a whole number of `model.input_size()`-value images)
/// with all five roles as threads of this process, for a data owner without
/// labels (the Python bindings' `encrypted_predict`). It is [`run_in_process`]
/// with placeholder labels: only the predictions and the costs are kept, not
/// the comparisons with labels.
pub fn predict_in_process(
    model: &Model,
    images: &[f32],
    cfg: &InferConfig,
) -> Result<PrivateRun, SmpcError> {
    let per = model.input_size();
    if per == 0 || !images.len().is_multiple_of(per) {
        return Err(SmpcError::Shape(format!(
            "{} pixel values are not a whole number of {per}-value images",
            images.len()
        )));
    }
    let placeholder_labels = vec![0u8; images.len() / per];
    let r = run_in_process(model, images, &placeholder_labels, cfg)?;
    Ok(PrivateRun {
        predictions: r.predictions,
        seconds: r.seconds,
        bytes_total: r.bytes_total,
        rounds: r.rounds,
        parties: r.parties,
    })
}

/// Runs private inference of `model` on `images` (row-major, normalised as
/// the model expects) with all five roles as threads of this process, and
/// compares with the plaintext model and the labels.
pub fn run_in_process(
    model: &Model,
    images: &[f32],
    labels: &[u8],
    cfg: &InferConfig,
) -> Result<InferenceReport, SmpcError> {
    let per = model.input_size();
    if per == 0 || images.len() != labels.len() * per {
        return Err(SmpcError::Shape(format!(
            "{} pixel values for {} labels of {per} values",
            images.len(),
            labels.len()
        )));
    }
    let count = labels.len();
    // The model owner's analysis (repeated here for the report; a model whose
    // values cannot be computed exactly fails before any party starts).
    let ranges = ModelPlan::for_protocol(model, &cfg.protocol, DEFAULT_INPUT_RANGE)?.ranges;
    RoleInput::Data {
        images,
        batch: cfg.batch,
    }
    .validate()?;
    let net_cfg = NetConfig::default().with_timeout(cfg.timeout);
    let (nets, hop_clocks) = in_memory_with_hops(5, &net_cfg, cfg.emulate);
    let cpu0 = process_cpu_seconds();
    let start = Instant::now();
    type Out = (Vec<u8>, Vec<Duration>);
    let runs: Vec<PartyRun<Out>> = sim::run_networks(nets, cfg.protocol, cfg.secrets, |party| {
        let input = match party.id {
            MODEL_OWNER => RoleInput::Model(model),
            DATA_OWNER => return data_owner_timed(party, images, cfg.batch),
            _ => RoleInput::Computing,
        };
        Ok((run_role(party, &input)?, Vec::new()))
    })?;
    let seconds = start.elapsed().as_secs_f64();
    let cpu_seconds = match (cpu0, process_cpu_seconds()) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let (preds, latencies) = runs[DATA_OWNER].output.clone();
    expect_len("predictions", preds.len(), count)?;
    let plain = predict_plain(model, images, count);
    let frac = |f: &dyn Fn(usize) -> bool| {
        (0..count).filter(|&i| f(i)).count() as f64 / count.max(1) as f64
    };
    let parties: Vec<PartyTraffic> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| PartyTraffic::from_stats(i, &r.stats))
        .collect();
    let bytes_total: u64 = parties.iter().map(|p| p.bytes_sent).sum();
    let rounds = parties[..3].iter().map(|p| p.rounds).max().unwrap_or(0);
    let cp = critical_path(&hop_clocks);
    let hops = cp.hops;
    let network = |link: LinkProfile| {
        MODELLED
            .iter()
            .position(|l| *l == link)
            .map(|i| cp.seconds[i])
            .unwrap_or(0.0)
    };
    let busiest = parties.iter().map(|p| p.bytes_sent).max().unwrap_or(0);
    let per_image = |v: f64| v / count.max(1) as f64;
    let unemulated = cfg.emulate.is_none();
    // Compute: the smaller of wall and CPU time. Pinned to one core, CPU time
    // is what the run takes with the core to itself (a shared, busy machine
    // inflates wall time); on several cores, wall time is the smaller.
    let compute = cpu_seconds.map_or(seconds, |c| c.min(seconds));
    let model_net = |link: LinkProfile| unemulated.then(|| compute + network(link));
    let (p50, p99) = match percentiles_ms(&latencies) {
        Some((a, b)) => (Some(a), Some(b)),
        None => (None, None),
    };
    // One query on a network: its compute latency plus its share of the
    // run's critical-path network time.
    let model_query = |link: LinkProfile| {
        p50.filter(|_| unemulated)
            .map(|p50| p50 + 1e3 * per_image(network(link)))
    };
    Ok(InferenceReport {
        arch: model.arch.clone(),
        images: count,
        batch: cfg.batch,
        accuracy: frac(&|i| preds[i] == labels[i]),
        plaintext_accuracy: frac(&|i| plain[i] == labels[i]),
        plaintext_agreement: frac(&|i| preds[i] == plain[i]),
        seconds,
        images_per_second: count as f64 / seconds,
        cpu_seconds,
        bytes_total,
        bytes_per_image: bytes_total as f64 / count.max(1) as f64,
        rounds,
        rounds_per_image: per_image(rounds as f64),
        critical_path_hops: hops,
        bytes_busiest_uplink: busiest,
        network_seconds_lan: unemulated.then(|| network(LinkProfile::LAN)),
        network_seconds_wan: unemulated.then(|| network(LinkProfile::WAN)),
        modelled_seconds_lan: model_net(LinkProfile::LAN),
        modelled_seconds_wan: model_net(LinkProfile::WAN),
        emulated_link: cfg.emulate.map(|l| link_name(&l).to_string()),
        latency_ms_p50: p50,
        latency_ms_p99: p99,
        modelled_latency_ms_lan: model_query(LinkProfile::LAN),
        modelled_latency_ms_wan: model_query(LinkProfile::WAN),
        frac_bits: cfg.protocol.frac_bits,
        cmp_bits: cfg.protocol.cmp_bits,
        backend: ppml_simd::backend().name().to_string(),
        cmp_skips: (0..ranges.widths.len()).map(|i| ranges.skip(i)).collect(),
        cmp_widths: ranges.widths,
        comparison: ranges.comparison.to_string(),
        truncation: cfg.protocol.truncation.to_string(),
        truncation_failure_per_image: ranges.truncation_failure_per_image,
        input_range: ranges.input_range,
        parties,
        predictions: preds,
    })
}

/// User + system CPU time of this process so far, from `/proc/self/stat`
/// (Linux; includes threads that have exited).
pub fn process_cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name: utime is field 14 and
    // stime 15 of the whole line, i.e. 12th and 13th after it.
    let rest = s.get(s.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ut: f64 = f.get(11)?.parse().ok()?;
    let st: f64 = f.get(12)?.parse().ok()?;
    // Linux reports clock ticks of 1/100 s (USER_HZ) here.
    Some((ut + st) / 100.0)
}

/// The name of a link profile: `lan`, `wan` or `custom`.
pub fn link_name(link: &LinkProfile) -> &'static str {
    if *link == LinkProfile::LAN {
        "lan"
    } else if *link == LinkProfile::WAN {
        "wan"
    } else {
        "custom"
    }
}

/// Median and 99th percentile (nearest rank) of `samples`, in milliseconds;
/// `None` when there are none.
pub fn percentiles_ms(samples: &[Duration]) -> Option<(f64, f64)> {
    if samples.is_empty() {
        return None;
    }
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let rank = |q: f64| {
        // Nearest rank: the smallest value with at least q of the samples at
        // or below it.
        let r = (q * ms.len() as f64).ceil() as usize;
        ms[r.clamp(1, ms.len()) - 1]
    };
    Some((rank(0.50), rank(0.99)))
}

/// Plaintext predictions in batches of 1000.
pub fn predict_plain(model: &Model, images: &[f32], count: usize) -> Vec<u8> {
    let per = model.input_size();
    let mut out = Vec::with_capacity(count);
    for chunk in images.chunks(1000 * per) {
        out.extend(model.predict(chunk, chunk.len() / per));
    }
    out
}

/// Runs one role over plaintext TCP (an insecure session, for tests and
/// loopback benchmarks): `addrs` lists the five roles' addresses in the
/// order p0, p1, p2, model-owner, data-owner. `listener` may be pre-bound
/// (e.g. to an ephemeral port); otherwise the role binds `addrs[id]` itself.
/// Deployments use [`crate::deploy::run_role_over`] with TLS.
pub fn run_tcp_role(
    id: usize,
    addrs: &[std::net::SocketAddr],
    listener: Option<&std::net::TcpListener>,
    input: &RoleInput<'_>,
    protocol: ProtocolConfig,
    timeout: Duration,
    secrets: SecretSource,
) -> Result<(Vec<u8>, NetworkStats), SmpcError> {
    use crate::deploy::{Link, ROLE_NAMES, role_session, run_role_over};
    if addrs.len() != 5 {
        return Err(SmpcError::Config(format!(
            "{} addresses given; p0, p1, p2, model-owner and data-owner need 5",
            addrs.len()
        )));
    }
    input.validate()?;
    let cfg = NetConfig::default()
        .with_timeout(timeout)
        .with_connect_timeout(timeout);
    let parties = ppml_net::Parties::insecure(
        &ROLE_NAMES,
        &addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
    )?;
    let link = Link::Insecure { parties };
    let acceptor = match listener {
        Some(l) if id + 1 < ROLE_NAMES.len() => Some(
            role_session(&link, id, &cfg)?
                .listen_on(l.try_clone().map_err(ppml_net::NetError::Io)?)?,
        ),
        _ => None,
    };
    run_role_over(&link, id, acceptor, input, protocol, &cfg, secrets)
}

#[cfg(test)]
mod im2col_tests {
    use super::*;

    /// The element-by-element definition im2col's row copies must equal.
    fn naive(
        x: &[u64],
        batch: usize,
        geo: (usize, usize, usize, usize, (usize, usize)),
    ) -> Vec<u64> {
        let (cin, k, s, pad, (h, w)) = geo;
        let (ho, wo) = LayerPlan::conv_out_hw(k, s, pad, (h, w));
        let mut out = Vec::new();
        for b in 0..batch {
            for oy in 0..ho {
                for ox in 0..wo {
                    for c in 0..cin {
                        for ki in 0..k {
                            for kj in 0..k {
                                let iy = (oy * s + ki) as isize - pad as isize;
                                let ix = (ox * s + kj) as isize - pad as isize;
                                let inside =
                                    iy >= 0 && ix >= 0 && iy < h as isize && ix < w as isize;
                                out.push(if inside {
                                    x[((b * cin + c) * h + iy as usize) * w + ix as usize]
                                } else {
                                    0
                                });
                            }
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn im2col_matches_its_definition() {
        let mut v = 7u64;
        for (cin, k, s, pad, h, w) in [
            (1, 5, 1, 2, 28, 28),
            (2, 3, 2, 1, 7, 9),
            (3, 4, 3, 0, 10, 8),
            (1, 5, 1, 6, 4, 3),
            (2, 1, 1, 0, 5, 5),
            (1, 3, 2, 2, 1, 1),
        ] {
            let batch = 2;
            let x: Vec<u64> = (0..batch * cin * h * w)
                .map(|_| {
                    v = v
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    v
                })
                .collect();
            let geo = (cin, k, s, pad, (h, w));
            assert_eq!(im2col(&x, batch, geo), naive(&x, batch, geo), "{geo:?}");
        }
    }
}

#[cfg(test)]
mod comparison_mode_tests {
    use super::*;

    #[test]
    fn a_party_in_the_other_comparison_mode_or_a_bad_skip_is_refused() {
        let model = Model::from_arch("cnn", 5).unwrap();
        let faithful = ProtocolConfig::default();
        let plan = ModelPlan::for_protocol(&model, &faithful, DEFAULT_INPUT_RANGE).unwrap();
        assert_eq!(plan.ranges.comparison, Comparison::Faithful);
        assert!(plan.check_ranges(&faithful).is_ok());
        let exact = ProtocolConfig {
            comparison: Comparison::Exact,
            ..faithful
        };
        let err = plan.check_ranges(&exact).unwrap_err();
        assert!(err.to_string().contains("comparisons"), "{err}");
        // A skip at or above its width, or beyond f, is refused.
        for bad in [plan.ranges.widths[0], faithful.frac_bits + 1] {
            let mut p = plan.clone();
            p.ranges.skips[0] = bad;
            assert!(matches!(
                p.check_ranges(&faithful),
                Err(SmpcError::Model(_))
            ));
        }
        let mut p = plan.clone();
        p.ranges.skips.pop();
        assert!(matches!(
            p.check_ranges(&faithful),
            Err(SmpcError::Model(_))
        ));
        // A plan from before faithful comparisons (no skips, no mode field)
        // decodes as exact with nothing skipped.
        let mut old = plan.ranges.clone();
        old.skips.clear();
        assert!((0..old.widths.len()).all(|i| old.skip(i) == 0));
        let exact_plan = ModelPlan::for_protocol(&model, &exact, DEFAULT_INPUT_RANGE).unwrap();
        assert!(exact_plan.ranges.skips.iter().all(|&k| k == 0));
        assert!(exact_plan.check_ranges(&exact).is_ok());
    }
}

#[cfg(test)]
mod plan_shape_tests {
    //! A plan from the model owner is checked before any party indexes with
    //! its numbers: every plan that passes must be safe to walk.
    use super::*;
    use proptest::prelude::*;

    /// One layer's raw numbers: kind, geometry, and whether it lies about
    /// its input (`None`: it takes the previous layer's shape).
    type Raw = (u8, [usize; 6], Option<(usize, usize, usize)>);

    fn raw() -> impl Strategy<Value = Raw> {
        (
            0u8..5,
            [
                0usize..6,
                0usize..4,
                0usize..4,
                0usize..4,
                1usize..5,
                1usize..5,
            ],
            prop::option::weighted(0.15, (0usize..4, 0usize..9, 0usize..9)),
        )
    }

    /// Builds a plan that mostly chains (each layer fits the one before)
    /// and sometimes lies.
    fn plan_from(hw: (usize, usize), raws: &[Raw], out_lie: Option<usize>) -> ModelPlan {
        let (mut c, mut h, mut w) = (1usize, hw.0, hw.1);
        let input_size = c * h * w;
        let mut layers = Vec::new();
        for &(kind, [k, s, p, k2, co, lin], lie) in raws {
            let (ci, ih, iw) = lie.unwrap_or((c, h, w));
            let l = match kind {
                0 => LayerPlan::Linear {
                    in_features: ci * ih * iw,
                    out_features: lin * 3,
                },
                1 => LayerPlan::Relu,
                2 => LayerPlan::Conv {
                    in_channels: ci,
                    out_channels: co,
                    kernel: k,
                    stride: s,
                    padding: p,
                    input_hw: (ih, iw),
                },
                3 => LayerPlan::MaxPool {
                    kernel: k,
                    stride: s,
                    channels: ci,
                    input_hw: (ih, iw),
                },
                _ => LayerPlan::AvgPool {
                    kernel: (k, k2),
                    stride: (s, p),
                    channels: ci,
                    input_hw: (ih, iw),
                },
            };
            (c, h, w) = match l {
                LayerPlan::Linear { out_features, .. } => (out_features, 1, 1),
                LayerPlan::Relu => (c, h, w),
                LayerPlan::Conv { out_channels, .. } => {
                    let (a, b) = LayerPlan::conv_out_hw(k, s, p, (ih, iw));
                    (out_channels, a, b)
                }
                LayerPlan::MaxPool { .. } => {
                    let (a, b) = LayerPlan::conv_out_hw(k, s, 0, (ih, iw));
                    (ci, a, b)
                }
                LayerPlan::AvgPool {
                    kernel,
                    stride,
                    channels,
                    input_hw,
                } => {
                    let (a, b) =
                        crate::avgpool::AvgGeometry::new(kernel, stride, channels, input_hw)
                            .output_hw();
                    (ci, a, b)
                }
            };
            layers.push(l);
        }
        ModelPlan {
            arch: "fuzzed".into(),
            input_size,
            output_size: out_lie.unwrap_or(c * h * w),
            layers,
            ranges: RangePlan::default(),
        }
    }

    /// What the computing parties do with the plan's numbers (the
    /// geometry-indexed steps, on zero shares): panics on any lie.
    fn walk(plan: &ModelPlan, batch: usize) {
        let mut x = vec![0u64; batch * plan.input_size];
        let mut size = plan.input_size;
        for l in &plan.layers {
            let out = l.out_size(size);
            match *l {
                LayerPlan::Linear { in_features, .. } => {
                    assert_eq!(x.len(), batch * in_features)
                }
                LayerPlan::Relu => {}
                LayerPlan::Conv {
                    in_channels,
                    kernel,
                    stride,
                    padding,
                    input_hw,
                    out_channels,
                } => {
                    let geo = (in_channels, kernel, stride, padding, input_hw);
                    let cols = im2col(&x, batch, geo);
                    let np = out / out_channels;
                    assert_eq!(cols.len(), batch * np * in_channels * kernel * kernel);
                }
                LayerPlan::MaxPool {
                    kernel,
                    stride,
                    channels,
                    input_hw,
                } => {
                    let g = pool_groups(&x, batch, kernel, stride, channels, input_hw);
                    assert_eq!(g.len(), batch * out * kernel * kernel);
                }
                LayerPlan::AvgPool {
                    kernel,
                    stride,
                    channels,
                    input_hw,
                } => {
                    let g = crate::avgpool::AvgGeometry::new(kernel, stride, channels, input_hw);
                    for img in x.chunks_exact(size) {
                        let iv: Vec<(f64, f64)> = img.iter().map(|_| (0.0, 0.0)).collect();
                        assert_eq!(crate::avgpool::pooled_intervals(&g, &iv, 1.0).len(), out);
                    }
                }
            }
            x = vec![0u64; batch * out];
            size = out;
        }
        assert_eq!(size, plan.output_size);
    }

    fn accepted(plan: &ModelPlan) -> bool {
        crate::limits::check_plan(plan).is_ok() && plan.check_shapes().is_ok()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        #[test]
        fn every_accepted_plan_is_safe_to_walk(
            hw in (0usize..9, 0usize..9),
            raws in prop::collection::vec(raw(), 0..6),
            out_lie in prop::option::weighted(0.05, 0usize..50),
        ) {
            let plan = plan_from(hw, &raws, out_lie);
            if accepted(&plan) {
                walk(&plan, 2);
            }
        }
    }

    #[test]
    fn lying_geometries_are_refused_and_true_ones_accepted() {
        let cnn = ModelPlan::from_model(&Model::from_arch("cnn", 1).unwrap()).unwrap();
        assert!(accepted(&cnn));
        walk(&cnn, 1);
        let conv = cnn
            .layers
            .iter()
            .position(|l| matches!(l, LayerPlan::Conv { .. }))
            .unwrap();
        let pool = cnn
            .layers
            .iter()
            .position(|l| matches!(l, LayerPlan::MaxPool { .. }))
            .unwrap();
        type Lie = (usize, fn(&mut LayerPlan));
        let lies: [Lie; 6] = [
            (conv, |l| {
                if let LayerPlan::Conv { in_channels, .. } = l {
                    *in_channels = 2
                }
            }),
            (conv, |l| {
                if let LayerPlan::Conv { stride, .. } = l {
                    *stride = 0
                }
            }),
            (conv, |l| {
                if let LayerPlan::Conv {
                    kernel, padding, ..
                } = l
                {
                    (*kernel, *padding) = (40, 0)
                }
            }),
            (pool, |l| {
                if let LayerPlan::MaxPool { kernel, .. } = l {
                    *kernel = 0
                }
            }),
            (pool, |l| {
                if let LayerPlan::MaxPool { kernel, .. } = l {
                    *kernel = 29
                }
            }),
            (pool, |l| {
                if let LayerPlan::MaxPool { input_hw, .. } = l {
                    *input_hw = (56, 56)
                }
            }),
        ];
        for (i, (at, lie)) in lies.into_iter().enumerate() {
            let mut p = cnn.clone();
            lie(&mut p.layers[at]);
            let e = p.check_shapes().unwrap_err();
            assert!(
                matches!(e, SmpcError::Model(ref m) if m.contains("does not fit")),
                "lie {i}: {e}"
            );
        }
    }
}
