//! Layers: [`Linear`], ReLU, [`Conv2d`], [`MaxPool2d`], [`AvgPool2d`], Flatten,
//! gathered in the [`Layer`] enum.
//!
//! Data layout (the contract other crates rely on):
//! - a batch of activations is one row-major `batch x features` slice; for
//!   convolutional layers each sample's features are `channels x height x width`
//!   row-major (PyTorch's NCHW), so `Flatten` does not move any data and a
//!   flattened feature index is the same as PyTorch's;
//! - [`Linear::weight`] is `out_features x in_features` row-major (PyTorch's
//!   `fc.weight`), [`Conv2d::weight`] is `out x in x kh x kw` row-major.

use crate::gemm::sgemm;
use rand::RngExt;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// A fully connected layer `y = x W^T + b`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Linear {
    /// `out_features x in_features`, row-major (PyTorch's layout).
    pub weight: Vec<f32>,
    /// `out_features`.
    pub bias: Vec<f32>,
    pub in_features: usize,
    pub out_features: usize,
}

impl Linear {
    /// PyTorch's default initialisation: weight and bias uniform in `±1/sqrt(in_features)`.
    pub fn new<R: rand::Rng + ?Sized>(
        in_features: usize,
        out_features: usize,
        rng: &mut R,
    ) -> Self {
        let bound = 1.0 / (in_features as f32).sqrt();
        let weight = (0..in_features * out_features)
            .map(|_| rng.random_range(-bound..bound))
            .collect();
        let bias = (0..out_features)
            .map(|_| rng.random_range(-bound..bound))
            .collect();
        Linear {
            weight,
            bias,
            in_features,
            out_features,
        }
    }

    /// Weight `w[o][i]`.
    #[inline]
    pub fn w(&self, o: usize, i: usize) -> f32 {
        self.weight[o * self.in_features + i]
    }

    /// The weight as a nalgebra matrix `out x in` (a copy; nalgebra is column-major).
    pub fn weight_matrix(&self) -> nalgebra::DMatrix<f32> {
        nalgebra::DMatrix::from_row_slice(self.out_features, self.in_features, &self.weight)
    }
}

/// A 2-D convolution over `in_channels x input_hw` images, square kernel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conv2d {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    /// Input height and width.
    pub input_hw: (usize, usize),
    /// `out_channels x in_channels x kernel x kernel`, row-major (PyTorch's layout).
    pub weight: Vec<f32>,
    /// `out_channels`.
    pub bias: Vec<f32>,
}

impl Conv2d {
    /// PyTorch's default initialisation (uniform `±1/sqrt(in_channels*k*k)`).
    #[allow(clippy::too_many_arguments)]
    pub fn new<R: rand::Rng + ?Sized>(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        input_hw: (usize, usize),
        rng: &mut R,
    ) -> Self {
        let fan_in = in_channels * kernel * kernel;
        let bound = 1.0 / (fan_in as f32).sqrt();
        let weight = (0..out_channels * fan_in)
            .map(|_| rng.random_range(-bound..bound))
            .collect();
        let bias = (0..out_channels)
            .map(|_| rng.random_range(-bound..bound))
            .collect();
        Conv2d {
            in_channels,
            out_channels,
            kernel,
            stride,
            padding,
            input_hw,
            weight,
            bias,
        }
    }

    /// Output height and width.
    pub fn output_hw(&self) -> (usize, usize) {
        let (h, w) = self.input_hw;
        let s = self.stride.max(1);
        (
            (h + 2 * self.padding).saturating_sub(self.kernel) / s + 1,
            (w + 2 * self.padding).saturating_sub(self.kernel) / s + 1,
        )
    }

    fn k_len(&self) -> usize {
        self.in_channels * self.kernel * self.kernel
    }

    /// `cols[(c*k*k + ki*k + kj) * P + p]` for output position `p`.
    fn im2col(&self, x: &[f32], cols: &mut [f32]) {
        let (h, w) = self.input_hw;
        let (ho, wo) = self.output_hw();
        let k = self.kernel;
        let np = ho * wo;
        for c in 0..self.in_channels {
            for ki in 0..k {
                for kj in 0..k {
                    let row = &mut cols[((c * k + ki) * k + kj) * np..][..np];
                    for oy in 0..ho {
                        let iy = (oy * self.stride + ki) as isize - self.padding as isize;
                        let dst = &mut row[oy * wo..(oy + 1) * wo];
                        if iy < 0 || iy >= h as isize {
                            dst.fill(0.0);
                            continue;
                        }
                        let src = &x[c * h * w + iy as usize * w..][..w];
                        for (ox, d) in dst.iter_mut().enumerate() {
                            let ix = (ox * self.stride + kj) as isize - self.padding as isize;
                            *d = if ix < 0 || ix >= w as isize {
                                0.0
                            } else {
                                src[ix as usize]
                            };
                        }
                    }
                }
            }
        }
    }

    /// Adds `cols` back into the image gradient `gx` (which it does not clear).
    fn col2im(&self, cols: &[f32], gx: &mut [f32]) {
        let (h, w) = self.input_hw;
        let (ho, wo) = self.output_hw();
        let k = self.kernel;
        let np = ho * wo;
        for c in 0..self.in_channels {
            for ki in 0..k {
                for kj in 0..k {
                    let row = &cols[((c * k + ki) * k + kj) * np..][..np];
                    for oy in 0..ho {
                        let iy = (oy * self.stride + ki) as isize - self.padding as isize;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        let dst = &mut gx[c * h * w + iy as usize * w..][..w];
                        for ox in 0..wo {
                            let ix = (ox * self.stride + kj) as isize - self.padding as isize;
                            if ix >= 0 && ix < w as isize {
                                dst[ix as usize] += row[oy * wo + ox];
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Max pooling over `channels x input_hw` images (no padding).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaxPool2d {
    pub kernel: usize,
    pub stride: usize,
    pub channels: usize,
    pub input_hw: (usize, usize),
}

impl MaxPool2d {
    /// Output height and width.
    pub fn output_hw(&self) -> (usize, usize) {
        let (h, w) = self.input_hw;
        let s = self.stride.max(1);
        (
            h.saturating_sub(self.kernel) / s + 1,
            w.saturating_sub(self.kernel) / s + 1,
        )
    }
}

/// Average pooling over `channels x input_hw` images (no padding): the mean
/// of each `kernel.0 x kernel.1` window, windows `stride` apart. Global
/// average pooling is the one window covering the whole image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AvgPool2d {
    /// Window height and width.
    pub kernel: (usize, usize),
    /// Vertical and horizontal step between windows.
    pub stride: (usize, usize),
    pub channels: usize,
    pub input_hw: (usize, usize),
}

impl AvgPool2d {
    /// Global average pooling of `channels x input_hw` images.
    pub fn global(channels: usize, input_hw: (usize, usize)) -> Self {
        AvgPool2d {
            kernel: input_hw,
            stride: input_hw,
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

    /// Visits every window: `f(output index, input indices of the window)`.
    fn for_each_window(&self, mut f: impl FnMut(usize, &mut dyn Iterator<Item = usize>)) {
        let (h, w) = self.input_hw;
        let (ho, wo) = self.output_hw();
        let (kh, kw) = self.kernel;
        for c in 0..self.channels {
            for oy in 0..ho {
                for ox in 0..wo {
                    let (y0, x0) = (oy * self.stride.0, ox * self.stride.1);
                    let mut it = (0..kh)
                        .flat_map(move |i| (0..kw).map(move |j| c * h * w + (y0 + i) * w + x0 + j));
                    f((c * ho + oy) * wo + ox, &mut it);
                }
            }
        }
    }
}

/// One layer of a [`crate::Model`]. Log-softmax + NLL is the loss, not a layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Layer {
    Linear(Linear),
    Relu,
    Conv2d(Conv2d),
    MaxPool2d(MaxPool2d),
    AvgPool2d(AvgPool2d),
    /// Reshapes `C x H x W` to a vector; a no-op on the row-major data.
    Flatten,
}

impl Layer {
    /// Per-sample output size given the per-sample input size.
    pub fn out_size(&self, in_size: usize) -> usize {
        match self {
            Layer::Linear(l) => l.out_features,
            Layer::Relu | Layer::Flatten => in_size,
            Layer::Conv2d(c) => {
                let (ho, wo) = c.output_hw();
                c.out_channels * ho * wo
            }
            Layer::MaxPool2d(p) => {
                let (ho, wo) = p.output_hw();
                p.channels * ho * wo
            }
            Layer::AvgPool2d(p) => {
                let (ho, wo) = p.output_hw();
                p.channels * ho * wo
            }
        }
    }

    /// Per-sample input size this layer requires, if it fixes one.
    pub fn in_size(&self) -> Option<usize> {
        match self {
            Layer::Linear(l) => Some(l.in_features),
            Layer::Conv2d(c) => Some(c.in_channels * c.input_hw.0 * c.input_hw.1),
            Layer::MaxPool2d(p) => Some(p.channels * p.input_hw.0 * p.input_hw.1),
            Layer::AvgPool2d(p) => Some(p.channels * p.input_hw.0 * p.input_hw.1),
            Layer::Relu | Layer::Flatten => None,
        }
    }

    /// Number of trainable parameters (weight then bias).
    pub fn num_params(&self) -> usize {
        match self {
            Layer::Linear(l) => l.weight.len() + l.bias.len(),
            Layer::Conv2d(c) => c.weight.len() + c.bias.len(),
            _ => 0,
        }
    }

    /// Short human description, e.g. `Linear(784->500)`.
    pub fn describe(&self) -> String {
        match self {
            Layer::Linear(l) => format!("Linear({}->{})", l.in_features, l.out_features),
            Layer::Relu => "ReLU".into(),
            Layer::Conv2d(c) => format!(
                "Conv2d({}->{}, k{}, s{}, p{})",
                c.in_channels, c.out_channels, c.kernel, c.stride, c.padding
            ),
            Layer::MaxPool2d(p) => format!("MaxPool2d(k{}, s{})", p.kernel, p.stride),
            Layer::AvgPool2d(p) => format!(
                "AvgPool2d(k{}x{}, s{}x{})",
                p.kernel.0, p.kernel.1, p.stride.0, p.stride.1
            ),
            Layer::Flatten => "Flatten".into(),
        }
    }

    /// Forward pass of a batch: `x` is `batch x in`, `y` is `batch x out` (overwritten).
    /// `argmax` receives the winning input index of every max-pool output.
    pub(crate) fn forward(&self, x: &[f32], batch: usize, y: &mut [f32], argmax: &mut Vec<u32>) {
        match self {
            Layer::Linear(l) if batch <= crate::small::SMALL_BATCH => {
                crate::small::forward(
                    x,
                    batch,
                    &l.weight,
                    &l.bias,
                    l.in_features,
                    l.out_features,
                    y,
                );
            }
            Layer::Linear(l) => {
                let (i, o) = (l.in_features, l.out_features);
                for row in y.chunks_exact_mut(o) {
                    row.copy_from_slice(&l.bias);
                }
                sgemm(batch, o, i, 1.0, x, false, &l.weight, true, 1.0, y);
            }
            Layer::Relu => {
                for (d, &s) in y.iter_mut().zip(x) {
                    *d = s.max(0.0);
                }
            }
            Layer::Flatten => y.copy_from_slice(x),
            Layer::Conv2d(c) => conv_forward(c, x, batch, y),
            Layer::MaxPool2d(p) => {
                let in_sz = p.channels * p.input_hw.0 * p.input_hw.1;
                let (ho, wo) = p.output_hw();
                let out_sz = p.channels * ho * wo;
                argmax.resize(batch * out_sz, 0);
                y.par_chunks_mut(out_sz)
                    .zip(argmax.par_chunks_mut(out_sz))
                    .zip(x.par_chunks(in_sz))
                    .for_each(|((yb, ab), xb)| maxpool_one(p, xb, yb, ab));
            }
            Layer::AvgPool2d(p) => {
                let in_sz = p.channels * p.input_hw.0 * p.input_hw.1;
                let out_sz = y.len() / batch.max(1);
                let inv = 1.0 / (p.kernel.0 * p.kernel.1) as f32;
                y.par_chunks_mut(out_sz)
                    .zip(x.par_chunks(in_sz))
                    .for_each(|(yb, xb)| {
                        p.for_each_window(|o, win| {
                            yb[o] = win.map(|i| xb[i]).sum::<f32>() * inv;
                        })
                    });
            }
        }
    }

    /// Backward pass. `x`/`y` are this layer's input/output of the forward pass,
    /// `gy` the loss gradient w.r.t. `y`. Writes the parameter gradient (weight
    /// then bias, overwritten) into `gparams` and, if asked, the input gradient
    /// (overwritten) into `gx`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn backward(
        &self,
        x: &[f32],
        y: &[f32],
        argmax: &[u32],
        batch: usize,
        gy: &[f32],
        gparams: &mut [f32],
        gx: Option<&mut [f32]>,
    ) {
        match self {
            Layer::Linear(l) => {
                let (i, o) = (l.in_features, l.out_features);
                let (gw, gb) = gparams.split_at_mut(o * i);
                let small = batch <= crate::small::SMALL_BATCH;
                if small {
                    crate::small::grad_w(gy, x, batch, i, o, gw);
                } else {
                    sgemm(o, i, batch, 1.0, gy, true, x, false, 0.0, gw);
                }
                gb.fill(0.0);
                for row in gy.chunks_exact(o) {
                    for (b, &g) in gb.iter_mut().zip(row) {
                        *b += g;
                    }
                }
                if let Some(gx) = gx {
                    if small {
                        crate::small::grad_x(gy, &l.weight, batch, i, o, gx);
                    } else {
                        sgemm(batch, i, o, 1.0, gy, false, &l.weight, false, 0.0, gx);
                    }
                }
            }
            Layer::Relu => {
                if let Some(gx) = gx {
                    for ((d, &g), &out) in gx.iter_mut().zip(gy).zip(y) {
                        *d = if out > 0.0 { g } else { 0.0 };
                    }
                }
            }
            Layer::Flatten => {
                if let Some(gx) = gx {
                    gx.copy_from_slice(gy);
                }
            }
            Layer::Conv2d(c) => conv_backward(c, x, batch, gy, gparams, gx),
            Layer::MaxPool2d(p) => {
                if let Some(gx) = gx {
                    let in_sz = p.channels * p.input_hw.0 * p.input_hw.1;
                    let out_sz = gy.len() / batch.max(1);
                    gx.par_chunks_mut(in_sz)
                        .zip(gy.par_chunks(out_sz))
                        .zip(argmax.par_chunks(out_sz))
                        .for_each(|((gxb, gyb), ab)| {
                            gxb.fill(0.0);
                            for (&g, &a) in gyb.iter().zip(ab) {
                                gxb[a as usize] += g;
                            }
                        });
                }
            }
            Layer::AvgPool2d(p) => {
                if let Some(gx) = gx {
                    let in_sz = p.channels * p.input_hw.0 * p.input_hw.1;
                    let out_sz = gy.len() / batch.max(1);
                    let inv = 1.0 / (p.kernel.0 * p.kernel.1) as f32;
                    gx.par_chunks_mut(in_sz)
                        .zip(gy.par_chunks(out_sz))
                        .for_each(|(gxb, gyb)| {
                            gxb.fill(0.0);
                            p.for_each_window(|o, win| {
                                for i in win {
                                    gxb[i] += gyb[o] * inv;
                                }
                            })
                        });
                }
            }
        }
    }
}

fn maxpool_one(p: &MaxPool2d, x: &[f32], y: &mut [f32], am: &mut [u32]) {
    let (h, w) = p.input_hw;
    let (ho, wo) = p.output_hw();
    for c in 0..p.channels {
        for oy in 0..ho {
            for ox in 0..wo {
                let mut best = f32::NEG_INFINITY;
                let mut arg = 0usize;
                for ki in 0..p.kernel {
                    for kj in 0..p.kernel {
                        let idx = c * h * w + (oy * p.stride + ki) * w + ox * p.stride + kj;
                        if x[idx] > best || (ki == 0 && kj == 0) {
                            best = x[idx];
                            arg = idx;
                        }
                    }
                }
                let o = (c * ho + oy) * wo + ox;
                y[o] = best;
                am[o] = arg as u32;
            }
        }
    }
}

fn conv_forward(c: &Conv2d, x: &[f32], batch: usize, y: &mut [f32]) {
    let in_sz = c.in_channels * c.input_hw.0 * c.input_hw.1;
    let (ho, wo) = c.output_hw();
    let np = ho * wo;
    let kl = c.k_len();
    let out_sz = c.out_channels * np;
    debug_assert_eq!(y.len(), batch * out_sz);
    y.par_chunks_mut(out_sz)
        .zip(x.par_chunks(in_sz))
        .for_each_init(
            || vec![0.0f32; kl * np],
            |cols, (yb, xb)| {
                c.im2col(xb, cols);
                for (o, row) in yb.chunks_exact_mut(np).enumerate() {
                    row.fill(c.bias[o]);
                }
                sgemm(
                    c.out_channels,
                    np,
                    kl,
                    1.0,
                    &c.weight,
                    false,
                    cols,
                    false,
                    1.0,
                    yb,
                );
            },
        );
}

fn conv_backward(
    c: &Conv2d,
    x: &[f32],
    batch: usize,
    gy: &[f32],
    gparams: &mut [f32],
    gx: Option<&mut [f32]>,
) {
    let in_sz = c.in_channels * c.input_hw.0 * c.input_hw.1;
    let (ho, wo) = c.output_hw();
    let np = ho * wo;
    let kl = c.k_len();
    let out_sz = c.out_channels * np;
    let nw = c.weight.len();
    // Split the batch in contiguous chunks, one partial gradient per chunk,
    // summed in chunk order (deterministic for a given thread count).
    let chunks = rayon::current_num_threads().clamp(1, batch.max(1));
    let per = batch.div_ceil(chunks);
    let mut gx_chunks: Vec<Option<&mut [f32]>> = match gx {
        Some(g) => g.chunks_mut(per * in_sz).map(Some).collect(),
        None => (0..batch.div_ceil(per)).map(|_| None).collect(),
    };
    let partials: Vec<Vec<f32>> = gx_chunks
        .par_iter_mut()
        .enumerate()
        .map(|(ci, gxc)| {
            let start = ci * per;
            let end = (start + per).min(batch);
            let mut gp = vec![0.0f32; nw + c.out_channels];
            let mut cols = vec![0.0f32; kl * np];
            let mut dcols = vec![0.0f32; kl * np];
            for b in start..end {
                let xb = &x[b * in_sz..(b + 1) * in_sz];
                let gyb = &gy[b * out_sz..(b + 1) * out_sz];
                c.im2col(xb, &mut cols);
                let (gw, gb) = gp.split_at_mut(nw);
                sgemm(
                    c.out_channels,
                    kl,
                    np,
                    1.0,
                    gyb,
                    false,
                    &cols,
                    true,
                    1.0,
                    gw,
                );
                for (o, row) in gyb.chunks_exact(np).enumerate() {
                    gb[o] += row.iter().sum::<f32>();
                }
                if let Some(gxc) = gxc.as_deref_mut() {
                    sgemm(
                        kl,
                        np,
                        c.out_channels,
                        1.0,
                        &c.weight,
                        true,
                        gyb,
                        false,
                        0.0,
                        &mut dcols,
                    );
                    let gxb = &mut gxc[(b - start) * in_sz..(b - start + 1) * in_sz];
                    gxb.fill(0.0);
                    c.col2im(&dcols, gxb);
                }
            }
            gp
        })
        .collect();
    gparams.fill(0.0);
    for p in &partials {
        for (d, s) in gparams.iter_mut().zip(p) {
            *d += s;
        }
    }
}
