//! [`Model`]: a sequence of [`Layer`]s with named architectures, forward and
//! backward passes, flat parameter vectors, and model files.

use crate::NnError;
use crate::layers::{Conv2d, Layer, Linear, MaxPool2d};
use crate::mnist::{Dataset, Normalization};
use ppml_random::{PublicRng, PublicSeed};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Largest per-sample activation size and parameter count a model may have
/// (2^28 values, 1 GiB of f32): [`Model::validate`] rejects larger ones.
pub const MAX_VALUES: usize = 1 << 28;

/// The architectures [`Model::from_arch`] knows.
pub const ARCHS: &[&str] = &[
    "mlp500",
    "net-a",
    "net-b",
    "net-c",
    "net-d",
    "2nn",
    "split",
    "cnn",
    "perceptron",
];

/// Magic header of a `.ppml` model file.
pub const FILE_MAGIC: &[u8; 8] = b"PPMLNN\x00\x01";
/// Version of the model file format written by [`Model::save`]. Version 2
/// records the input normalisation (see [`ModelFile`]); version 1 files are
/// still read, their normalisation is then unknown.
pub const FILE_VERSION: u32 = 2;

/// The contents of a `.ppml` file: the model and, from version 2 on, the
/// input normalisation it was trained with (`None`: not recorded).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelFile {
    pub model: Model,
    pub normalization: Option<Normalization>,
    /// The format version the file was written with.
    pub version: u32,
}

/// Body of a version-2 file, encoding side (borrows the model).
#[derive(Serialize)]
struct BodyV2Ref<'a> {
    normalization: Option<Normalization>,
    model: &'a Model,
}

/// Body of a version-2 file, decoding side.
#[derive(Deserialize)]
struct BodyV2 {
    normalization: Option<Normalization>,
    model: Model,
}

/// A feed-forward network: `layers` applied in order to inputs of `input_shape`
/// (`[784]` for the MLPs, `[1, 28, 28]` for the CNN). The output of the last
/// layer is the logits; the loss is log-softmax + NLL (for a single output,
/// binary logistic loss with labels `0`/`1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub arch: String,
    pub layers: Vec<Layer>,
    pub input_shape: Vec<usize>,
}

/// Activations kept by [`Model::forward_train`] for [`Model::backward`].
///
/// `acts[0]` is the input, `acts[i + 1]` the output of layer `i` (each
/// `batch x size` row-major); `argmax[i]` holds layer `i`'s max-pool winners
/// (empty for other layers).
#[derive(Debug, Clone, Default)]
pub struct ForwardCache {
    pub batch: usize,
    pub acts: Vec<Vec<f32>>,
    pub argmax: Vec<Vec<u32>>,
}

impl ForwardCache {
    /// The model output (logits), `batch x out` row-major.
    pub fn output(&self) -> &[f32] {
        self.acts.last().map(|v| &v[..]).unwrap_or(&[])
    }
}

/// Parameter gradients, laid out exactly like [`Model::params_flat`]:
/// for every layer with parameters, in order, its weight then its bias.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gradients {
    pub flat: Vec<f32>,
}

/// Reusable buffers for allocation-free training steps ([`Model::loss_and_grad_ws`],
/// [`crate::Sgd::train_step`]). Create one per model and keep it.
#[derive(Debug, Clone, Default)]
pub struct Workspace {
    pub cache: ForwardCache,
    pub grads: Gradients,
    gbuf: [Vec<f32>; 2],
    gin: usize,
    dlogits: Vec<f32>,
    pub(crate) xbuf: Vec<f32>,
    pub(crate) ybuf: Vec<u8>,
}

impl Workspace {
    /// An empty workspace (buffers grow on first use, then are reused).
    pub fn new() -> Self {
        Self::default()
    }

    /// The input gradient computed by the last [`Model::backward_ws`] with `want_input_grad`.
    pub fn grad_input(&self) -> &[f32] {
        &self.gbuf[self.gin]
    }
}

/// Reusable buffers for batched inference ([`Model::forward_into`]).
#[derive(Debug, Clone, Default)]
pub struct InferBuffers {
    bufs: [Vec<f32>; 2],
    argmax: Vec<u32>,
}

fn grow(v: &mut Vec<f32>, n: usize) {
    if v.len() < n {
        v.resize(n, 0.0);
    }
}

impl Model {
    /// A named architecture with PyTorch-style random initialisation from the
    /// public `seed` (stream `"nn/init"` of [`PublicSeed`]):
    /// `mlp500` (784-500-10), `net-a` (784-128-128-10), `2nn` (784-200-200-10),
    /// `split` (784-128-640 | 640-10, cut at layer [`Model::default_cut`]),
    /// `cnn` (McMahan: conv5x5x32-pool-conv5x5x64-pool-fc512-fc10, "same" padding),
    /// `perceptron` (784-1, binary logistic), and the MNIST networks B, C and D
    /// of SecureNN (Wagh, Gupta, Chandran, PETS 2019; network A is `net-a`),
    /// also benchmarked by Falcon (Wagh et al., PETS 2021); layer lists and
    /// sources in docs/NETWORKS.md (no padding unless stated, 2x2 max-pools
    /// of stride 2):
    /// `net-b` (MiniONN: conv5x5x16-relu-pool-conv5x5x16-relu-pool-fc100-relu-fc10),
    /// `net-c` (LeNet: conv5x5x20-relu-pool-conv5x5x50-relu-pool-fc500-relu-fc10),
    /// `net-d` (Chameleon: conv5x5x5 stride 2 padding 2-relu-fc100-relu-fc10).
    /// `netB`/`netb` (and likewise for A, C, D) name the same networks.
    pub fn from_arch(name: &str, seed: u64) -> Result<Model, NnError> {
        let mut rng = PublicSeed::new(seed).rng("nn/init");
        let r = &mut rng;
        let mlp = |dims: &[usize], r: &mut PublicRng| {
            let mut layers = Vec::new();
            for (k, w) in dims.windows(2).enumerate() {
                if k > 0 {
                    layers.push(Layer::Relu);
                }
                layers.push(Layer::Linear(Linear::new(w[0], w[1], r)));
            }
            layers
        };
        let (layers, input_shape) = match name {
            "mlp500" => (mlp(&[784, 500, 10], r), vec![784]),
            "net-a" | "neta" | "netA" => (mlp(&[784, 128, 128, 10], r), vec![784]),
            "2nn" => (mlp(&[784, 200, 200, 10], r), vec![784]),
            "split" => (mlp(&[784, 128, 640, 10], r), vec![784]),
            "perceptron" => (mlp(&[784, 1], r), vec![784]),
            "net-b" | "netb" | "netB" => (lenet_like(16, 16, 100, r), vec![1, 28, 28]),
            "net-c" | "netc" | "netC" => (lenet_like(20, 50, 500, r), vec![1, 28, 28]),
            "net-d" | "netd" | "netD" => (
                vec![
                    Layer::Conv2d(Conv2d::new(1, 5, 5, 2, 2, (28, 28), r)),
                    Layer::Relu,
                    Layer::Flatten,
                    Layer::Linear(Linear::new(5 * 14 * 14, 100, r)),
                    Layer::Relu,
                    Layer::Linear(Linear::new(100, 10, r)),
                ],
                vec![1, 28, 28],
            ),
            "cnn" => (
                vec![
                    Layer::Conv2d(Conv2d::new(1, 32, 5, 1, 2, (28, 28), r)),
                    Layer::Relu,
                    Layer::MaxPool2d(MaxPool2d {
                        kernel: 2,
                        stride: 2,
                        channels: 32,
                        input_hw: (28, 28),
                    }),
                    Layer::Conv2d(Conv2d::new(32, 64, 5, 1, 2, (14, 14), r)),
                    Layer::Relu,
                    Layer::MaxPool2d(MaxPool2d {
                        kernel: 2,
                        stride: 2,
                        channels: 64,
                        input_hw: (14, 14),
                    }),
                    Layer::Flatten,
                    Layer::Linear(Linear::new(64 * 7 * 7, 512, r)),
                    Layer::Relu,
                    Layer::Linear(Linear::new(512, 10, r)),
                ],
                vec![1, 28, 28],
            ),
            other => {
                return Err(NnError::UnknownArch(format!(
                    "`{other}` (known: {})",
                    ARCHS.join(", ")
                )));
            }
        };
        let arch = match name {
            "neta" | "netA" => "net-a",
            "netb" | "netB" => "net-b",
            "netc" | "netC" => "net-c",
            "netd" | "netD" => "net-d",
            _ => name,
        };
        let m = Model {
            arch: arch.to_string(),
            layers,
            input_shape,
        };
        m.validate()?;
        Ok(m)
    }

    /// Where the `split` architecture is cut between data holder and label
    /// holder (`784-128-640` with its ReLUs, then `640-10`): layer index 4.
    pub fn default_cut(&self) -> Option<usize> {
        (self.arch == "split").then_some(4)
    }

    /// Checks that the layers chain (sizes and weight lengths agree) and that
    /// every size is computable without overflow and at most
    /// [`MAX_VALUES`] values: a model from a file or a peer is checked before
    /// any size it announces is used to allocate.
    pub fn validate(&self) -> Result<(), NnError> {
        let too_big = |what: String| {
            NnError::Shape(format!("{what} exceeds {MAX_VALUES} values (or overflows)"))
        };
        let prod = |dims: &[usize]| {
            dims.iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .filter(|&n| n <= MAX_VALUES)
        };
        if self.input_shape.len() > 8 {
            return Err(NnError::Shape(format!(
                "input shape {:?} has too many dimensions",
                self.input_shape
            )));
        }
        let mut size = prod(&self.input_shape)
            .ok_or_else(|| too_big(format!("input shape {:?}", self.input_shape)))?;
        if size == 0 {
            return Err(NnError::Shape("empty input shape".into()));
        }
        for (i, l) in self.layers.iter().enumerate() {
            let bad = || {
                NnError::Shape(format!(
                    "layer {i} ({}) has inconsistent parameters",
                    l.describe()
                ))
            };
            // Per-sample (input, output) sizes and parameter counts, checked.
            let (need, out, nw, nb, wlen, blen) = match l {
                Layer::Linear(x) => (
                    Some(x.in_features),
                    Some(x.out_features),
                    prod(&[x.in_features, x.out_features]),
                    Some(x.out_features),
                    x.weight.len(),
                    x.bias.len(),
                ),
                Layer::Conv2d(c) => {
                    let (h, w) = c.input_hw;
                    let p2 = c.padding.checked_mul(2);
                    let hp = p2.and_then(|p| h.checked_add(p));
                    let wp = p2.and_then(|p| w.checked_add(p));
                    let (Some(hp), Some(wp)) = (hp, wp) else {
                        return Err(bad());
                    };
                    if c.stride == 0 || c.kernel == 0 || c.kernel > hp || c.kernel > wp {
                        return Err(bad());
                    }
                    let ho = (hp - c.kernel) / c.stride + 1;
                    let wo = (wp - c.kernel) / c.stride + 1;
                    (
                        prod(&[c.in_channels, h, w]),
                        prod(&[c.out_channels, ho, wo]),
                        prod(&[c.out_channels, c.in_channels, c.kernel, c.kernel]),
                        Some(c.out_channels),
                        c.weight.len(),
                        c.bias.len(),
                    )
                }
                Layer::MaxPool2d(p) => {
                    let (h, w) = p.input_hw;
                    if p.stride == 0 || p.kernel == 0 || p.kernel > h || p.kernel > w {
                        return Err(bad());
                    }
                    let (ho, wo) = ((h - p.kernel) / p.stride + 1, (w - p.kernel) / p.stride + 1);
                    (
                        prod(&[p.channels, h, w]),
                        prod(&[p.channels, ho, wo]),
                        Some(0),
                        Some(0),
                        0,
                        0,
                    )
                }
                Layer::AvgPool2d(p) => {
                    let (h, w) = p.input_hw;
                    let (kh, kw) = p.kernel;
                    if p.stride.0 == 0 || p.stride.1 == 0 || kh == 0 || kw == 0 || kh > h || kw > w
                    {
                        return Err(bad());
                    }
                    let (ho, wo) = ((h - kh) / p.stride.0 + 1, (w - kw) / p.stride.1 + 1);
                    (
                        prod(&[p.channels, h, w]),
                        prod(&[p.channels, ho, wo]),
                        Some(0),
                        Some(0),
                        0,
                        0,
                    )
                }
                Layer::Relu | Layer::Flatten => (Some(size), Some(size), Some(0), Some(0), 0, 0),
            };
            let (Some(need), Some(out), Some(nw), Some(nb)) = (need, out, nw, nb) else {
                return Err(too_big(format!("layer {i} ({})", l.describe())));
            };
            if need != size {
                return Err(NnError::Shape(format!(
                    "layer {i} ({}) takes {need} inputs but receives {size}",
                    l.describe()
                )));
            }
            if out == 0 || nw != wlen || nb != blen {
                return Err(bad());
            }
            size = out;
        }
        Ok(())
    }

    /// Per-sample input size (product of `input_shape`).
    pub fn input_size(&self) -> usize {
        self.input_shape.iter().product()
    }

    /// Per-sample output size (number of logits).
    pub fn output_size(&self) -> usize {
        self.layers
            .iter()
            .fold(self.input_size(), |s, l| l.out_size(s))
    }

    /// Per-sample sizes: `sizes()[0]` is the input, `sizes()[i+1]` layer `i`'s output.
    pub fn sizes(&self) -> Vec<usize> {
        let mut v = vec![self.input_size()];
        for l in &self.layers {
            let s = l.out_size(*v.last().unwrap_or(&0));
            v.push(s);
        }
        v
    }

    /// Total number of trainable parameters.
    pub fn num_params(&self) -> usize {
        self.layers.iter().map(Layer::num_params).sum()
    }

    /// Whether every parameter is finite (no NaN or infinity).
    pub fn params_finite(&self) -> bool {
        self.layers.iter().all(|l| match l {
            Layer::Linear(x) => x.weight.iter().chain(&x.bias).all(|v| v.is_finite()),
            Layer::Conv2d(c) => c.weight.iter().chain(&c.bias).all(|v| v.is_finite()),
            _ => true,
        })
    }

    /// All parameters in one vector: for each layer in order, weight then bias.
    pub fn params_flat(&self) -> Vec<f32> {
        let mut v = Vec::with_capacity(self.num_params());
        for l in &self.layers {
            match l {
                Layer::Linear(x) => {
                    v.extend_from_slice(&x.weight);
                    v.extend_from_slice(&x.bias);
                }
                Layer::Conv2d(c) => {
                    v.extend_from_slice(&c.weight);
                    v.extend_from_slice(&c.bias);
                }
                _ => {}
            }
        }
        v
    }

    /// Sets all parameters from a vector laid out like [`Model::params_flat`].
    pub fn set_params_flat(&mut self, p: &[f32]) -> Result<(), NnError> {
        let n = self.num_params();
        if p.len() != n {
            return Err(NnError::Shape(format!(
                "parameter vector has {} values, model {} has {n}",
                p.len(),
                self.arch
            )));
        }
        let mut off = 0;
        self.for_each_param_mut(|w| {
            w.copy_from_slice(&p[off..off + w.len()]);
            off += w.len();
        });
        Ok(())
    }

    /// Calls `f` on every parameter slice (weight then bias of each layer, in order).
    pub fn for_each_param_mut(&mut self, mut f: impl FnMut(&mut [f32])) {
        for l in &mut self.layers {
            match l {
                Layer::Linear(x) => {
                    f(&mut x.weight);
                    f(&mut x.bias);
                }
                Layer::Conv2d(c) => {
                    f(&mut c.weight);
                    f(&mut c.bias);
                }
                _ => {}
            }
        }
    }

    fn check_input(&self, x: &[f32], batch: usize) -> Result<(), NnError> {
        if x.len() != batch * self.input_size() {
            return Err(NnError::Shape(format!(
                "input has {} values, expected batch {batch} x {}",
                x.len(),
                self.input_size()
            )));
        }
        Ok(())
    }

    /// Logits of a batch: `x` is `batch x input_size` row-major, the result
    /// `batch x output_size` row-major.
    ///
    /// # Panics
    /// If `x.len() != batch * input_size()` (use [`Model::try_forward`] for an error instead).
    pub fn forward(&self, x: &[f32], batch: usize) -> Vec<f32> {
        let mut b = InferBuffers::default();
        self.forward_into(x, batch, &mut b).to_vec()
    }

    /// [`Model::forward`] returning an error on a wrong input size.
    pub fn try_forward(&self, x: &[f32], batch: usize) -> Result<Vec<f32>, NnError> {
        self.check_input(x, batch)?;
        Ok(self.forward(x, batch))
    }

    /// Forward pass into reusable buffers; returns the logits (`batch x out`).
    ///
    /// # Panics
    /// If `x.len() != batch * input_size()`.
    pub fn forward_into<'a>(&self, x: &[f32], batch: usize, b: &'a mut InferBuffers) -> &'a [f32] {
        assert_eq!(x.len(), batch * self.input_size(), "input size");
        if self.layers.is_empty() {
            b.bufs[0].clear();
            b.bufs[0].extend_from_slice(x);
            return &b.bufs[0];
        }
        let mut size = self.input_size();
        let mut cur = 0usize; // index of the buffer holding the current input (after layer 0)
        for (i, l) in self.layers.iter().enumerate() {
            let out = l.out_size(size);
            let (b0, b1) = b.bufs.split_at_mut(1);
            let (src, dst) = if cur == 0 {
                (&b0[0], &mut b1[0])
            } else {
                (&b1[0], &mut b0[0])
            };
            grow(dst, batch * out);
            let input: &[f32] = if i == 0 { x } else { &src[..batch * size] };
            l.forward(input, batch, &mut dst[..batch * out], &mut b.argmax);
            cur = 1 - cur;
            size = out;
        }
        &b.bufs[cur][..batch * size]
    }

    /// Predicted class of each image of a batch (argmax of the logits; for a
    /// single output, `1` if the logit is positive).
    pub fn predict(&self, x: &[f32], batch: usize) -> Vec<u8> {
        let mut b = InferBuffers::default();
        let logits = self.forward_into(x, batch, &mut b);
        argmax_rows(logits, self.output_size())
    }

    /// Predictions for a whole dataset, in batches of 1000 (rayon over batches).
    pub fn predict_dataset(&self, data: &Dataset) -> Vec<u8> {
        const BS: usize = 1000;
        let p = self.input_size();
        let out = self.output_size();
        let chunks: Vec<Vec<u8>> = data
            .images
            .par_chunks(BS * p)
            .map_init(InferBuffers::default, |b, xs| {
                let n = xs.len() / p;
                argmax_rows(self.forward_into(xs, n, b), out)
            })
            .collect();
        chunks.concat()
    }

    /// Accuracy (0..1) on a dataset.
    pub fn evaluate(&self, data: &Dataset) -> f64 {
        if data.is_empty() {
            return 0.0;
        }
        let pred = self.predict_dataset(data);
        let ok = pred
            .iter()
            .zip(&data.labels)
            .filter(|(a, b)| a == b)
            .count();
        ok as f64 / data.len() as f64
    }

    /// Forward pass keeping every activation (allocates a fresh cache).
    pub fn forward_train(&self, x: &[f32], batch: usize) -> ForwardCache {
        let mut c = ForwardCache::default();
        self.forward_train_into(x, batch, &mut c);
        c
    }

    /// Forward pass keeping every activation in a reusable cache.
    ///
    /// # Panics
    /// If `x.len() != batch * input_size()`.
    pub fn forward_train_into(&self, x: &[f32], batch: usize, c: &mut ForwardCache) {
        assert_eq!(x.len(), batch * self.input_size(), "input size");
        let n = self.layers.len();
        c.batch = batch;
        c.acts.resize_with(n + 1, Vec::new);
        c.argmax.resize_with(n, Vec::new);
        c.acts[0].clear();
        c.acts[0].extend_from_slice(x);
        let mut size = self.input_size();
        for (i, l) in self.layers.iter().enumerate() {
            let out = l.out_size(size);
            let (lo, hi) = c.acts.split_at_mut(i + 1);
            let dst = &mut hi[0];
            dst.resize(batch * out, 0.0);
            l.forward(&lo[i], batch, dst, &mut c.argmax[i]);
            size = out;
        }
    }

    /// Backward pass from the gradient of the loss w.r.t. the output
    /// (`batch x out`): returns the parameter gradients and the gradient
    /// w.r.t. the input (`batch x input_size`). Allocates; see [`Model::backward_ws`].
    pub fn backward(&self, cache: &ForwardCache, grad_out: &[f32]) -> (Gradients, Vec<f32>) {
        let mut grads = Gradients {
            flat: vec![0.0; self.num_params()],
        };
        let mut gbuf = [Vec::new(), Vec::new()];
        let gin = self.backward_impl(cache, grad_out, &mut grads.flat, &mut gbuf, true);
        let n = cache.batch * self.input_size();
        let mut gi = std::mem::take(&mut gbuf[gin]);
        gi.truncate(n);
        (grads, gi)
    }

    /// Forward pass with the workspace's cache; returns the output (`batch x out`).
    pub fn forward_train_ws<'a>(
        &self,
        x: &[f32],
        batch: usize,
        ws: &'a mut Workspace,
    ) -> &'a [f32] {
        self.forward_train_into(x, batch, &mut ws.cache);
        ws.cache.output()
    }

    /// Backward pass using `ws.cache` (filled by [`Model::forward_train_ws`]);
    /// parameter gradients go to `ws.grads`; if `want_input_grad`, returns the
    /// input gradient (`batch x input_size`, also [`Workspace::grad_input`]).
    pub fn backward_ws<'a>(
        &self,
        grad_out: &[f32],
        ws: &'a mut Workspace,
        want_input_grad: bool,
    ) -> Option<&'a [f32]> {
        ws.grads.flat.resize(self.num_params(), 0.0);
        let gin = self.backward_impl(
            &ws.cache,
            grad_out,
            &mut ws.grads.flat,
            &mut ws.gbuf,
            want_input_grad,
        );
        ws.gin = gin;
        want_input_grad.then(|| &ws.gbuf[gin][..ws.cache.batch * self.input_size()])
    }

    fn backward_impl(
        &self,
        cache: &ForwardCache,
        grad_out: &[f32],
        grads: &mut [f32],
        gbuf: &mut [Vec<f32>; 2],
        want_input: bool,
    ) -> usize {
        let batch = cache.batch;
        let n = self.layers.len();
        assert_eq!(
            cache.acts.len(),
            n + 1,
            "forward cache does not match the model"
        );
        assert_eq!(grad_out.len(), cache.output().len(), "gradient size");
        gbuf[0].clear();
        gbuf[0].extend_from_slice(grad_out);
        let first_param = self
            .layers
            .iter()
            .position(|l| l.num_params() > 0)
            .unwrap_or(n);
        let mut off_end = grads.len();
        let mut cur = 0usize;
        for i in (0..n).rev() {
            let l = &self.layers[i];
            let np = l.num_params();
            let off = off_end - np;
            let need_gx = want_input || i > first_param;
            let in_len = cache.acts[i].len();
            let out_len = cache.acts[i + 1].len();
            let (b0, b1) = gbuf.split_at_mut(1);
            let (src, dst) = if cur == 0 {
                (&b0[0], &mut b1[0])
            } else {
                (&b1[0], &mut b0[0])
            };
            if need_gx {
                grow(dst, in_len);
            }
            l.backward(
                &cache.acts[i],
                &cache.acts[i + 1],
                &cache.argmax[i],
                batch,
                &src[..out_len],
                &mut grads[off..off_end],
                if need_gx {
                    Some(&mut dst[..in_len])
                } else {
                    None
                },
            );
            off_end = off;
            if !need_gx {
                break;
            }
            cur = 1 - cur;
        }
        cur
    }

    /// Mean loss over the batch (log-softmax + NLL; binary logistic for one
    /// output) and its parameter gradients. Allocates; see [`Model::loss_and_grad_ws`].
    pub fn loss_and_grad(&self, x: &[f32], labels: &[u8], batch: usize) -> (f32, Gradients) {
        let mut ws = Workspace::new();
        let loss = self.loss_and_grad_ws(x, labels, batch, &mut ws);
        (loss, ws.grads)
    }

    /// [`Model::loss_and_grad`] into a reusable workspace: gradients in `ws.grads`.
    ///
    /// # Panics
    /// If `x` is not `batch x input_size`, or a label is not below `output_size`
    /// (for more than one output).
    pub fn loss_and_grad_ws(
        &self,
        x: &[f32],
        labels: &[u8],
        batch: usize,
        ws: &mut Workspace,
    ) -> f32 {
        self.forward_train_into(x, batch, &mut ws.cache);
        let out = self.output_size();
        let mut dl = std::mem::take(&mut ws.dlogits);
        dl.resize(batch * out, 0.0);
        let loss = loss_grad(ws.cache.output(), labels, batch, out, &mut dl);
        self.backward_ws(&dl, ws, false);
        ws.dlogits = dl;
        loss
    }

    /// Mean loss of a batch (no gradient).
    pub fn loss(&self, x: &[f32], labels: &[u8], batch: usize) -> f32 {
        let logits = self.forward(x, batch);
        let out = self.output_size();
        let mut g = vec![0.0; logits.len()];
        loss_grad(&logits, labels, batch, out, &mut g)
    }

    /// Splits the model before layer `layer_index`: the first model runs
    /// layers `..layer_index`, the second `layer_index..` (its input shape is the
    /// cut size). Errors if the index is 0 or not less than the number of layers.
    pub fn split_at(self, layer_index: usize) -> Result<(Model, Model), NnError> {
        let n = self.layers.len();
        if layer_index == 0 || layer_index >= n {
            return Err(NnError::Invalid(format!(
                "cannot split a {n}-layer model at layer {layer_index}"
            )));
        }
        let cut = self.sizes()[layer_index];
        let mut layers = self.layers;
        let top = layers.split_off(layer_index);
        let a = Model {
            arch: format!("{}[..{layer_index}]", self.arch),
            layers,
            input_shape: self.input_shape,
        };
        let b = Model {
            arch: format!("{}[{layer_index}..]", self.arch),
            layers: top,
            input_shape: vec![cut],
        };
        Ok((a, b))
    }

    /// Encodes the model: magic, version (u32 LE), postcard body, with the
    /// normalisation not recorded (prefer [`Model::to_bytes_with`]).
    pub fn to_bytes(&self) -> Result<Vec<u8>, NnError> {
        self.to_bytes_with(None)
    }

    /// Encodes the model and the input normalisation it was trained with.
    pub fn to_bytes_with(&self, normalization: Option<Normalization>) -> Result<Vec<u8>, NnError> {
        let mut out = Vec::with_capacity(16 + 4 * self.num_params());
        out.extend_from_slice(FILE_MAGIC);
        out.extend_from_slice(&FILE_VERSION.to_le_bytes());
        let body = BodyV2Ref {
            normalization,
            model: self,
        };
        let body =
            postcard::to_stdvec(&body).map_err(|e| NnError::Format(format!("encode: {e}")))?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Decodes [`Model::to_bytes`]; a foreign, corrupt or inconsistent buffer is an error.
    pub fn from_bytes(b: &[u8]) -> Result<Model, NnError> {
        Ok(Model::decode_file(b)?.model)
    }

    /// Decodes a `.ppml` file of version 1 or 2 with what it records.
    pub fn decode_file(b: &[u8]) -> Result<ModelFile, NnError> {
        if b.len() < 12 || &b[..8] != FILE_MAGIC {
            return Err(NnError::Format(
                "not a ppml model file (bad magic header)".into(),
            ));
        }
        let version = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
        let corrupt = |e: postcard::Error| NnError::Format(format!("corrupt model file: {e}"));
        let (model, normalization, rest) = match version {
            1 => {
                let (m, rest): (Model, &[u8]) =
                    postcard::take_from_bytes(&b[12..]).map_err(corrupt)?;
                (m, None, rest)
            }
            2 => {
                let (body, rest): (BodyV2, &[u8]) =
                    postcard::take_from_bytes(&b[12..]).map_err(corrupt)?;
                (body.model, body.normalization, rest)
            }
            v => {
                return Err(NnError::Format(format!(
                    "model file version {v} is not supported (this build reads versions 1 and {FILE_VERSION})"
                )));
            }
        };
        if !rest.is_empty() {
            return Err(NnError::Format(format!(
                "corrupt model file: {} trailing bytes",
                rest.len()
            )));
        }
        model.validate()?;
        Ok(ModelFile {
            model,
            normalization,
            version,
        })
    }

    /// Saves to a `.ppml` file without recording the normalisation (prefer
    /// [`crate::io::save_model`], which records it).
    pub fn save(&self, path: &Path) -> Result<(), NnError> {
        self.save_with(path, None)
    }

    /// Saves to a `.ppml` file recording the input normalisation.
    pub fn save_with(
        &self,
        path: &Path,
        normalization: Option<Normalization>,
    ) -> Result<(), NnError> {
        let b = self.to_bytes_with(normalization)?;
        std::fs::write(path, b)
            .map_err(|e| NnError::Io(format!("cannot write {}: {e}", path.display())))
    }

    /// Loads a `.ppml` file written by [`Model::save`].
    pub fn load(path: &Path) -> Result<Model, NnError> {
        let b = crate::input::read_file(path)?;
        Model::from_bytes(&b).map_err(|e| match e {
            NnError::Format(m) => NnError::Format(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Loads a model file by extension (`.onnx`, `.safetensors` with `arch`,
    /// else `.ppml`); [`crate::io::load_model`] also returns the normalisation.
    pub fn load_any(path: &Path, arch: Option<&str>) -> Result<Model, NnError> {
        Ok(crate::io::load_model(path, arch)?.model)
    }

    /// Reads PyTorch weights from a `.safetensors` file for a named architecture
    /// (see [`crate::safetensors_io`] for the accepted tensor names).
    pub fn load_safetensors(path: &Path, arch: &str) -> Result<Model, NnError> {
        crate::safetensors_io::load_safetensors(path, arch)
    }

    /// Writes the weights as `.safetensors` with PyTorch names (`fc1.weight`, `conv1.bias`, ...).
    pub fn save_safetensors(&self, path: &Path) -> Result<(), NnError> {
        crate::safetensors_io::save_safetensors(self, path)
    }
}

/// The two-convolution MNIST networks B (MiniONN) and C (LeNet) of SecureNN:
/// conv5x5 (`c1` channels, no padding) 28->24, ReLU, max-pool 2x2 ->12,
/// conv5x5 (`c2`) ->8, ReLU, max-pool ->4, `c2*16`->`hidden`, ReLU,
/// `hidden`->10, in SecureNN's order (the private-inference plan runs each
/// ReLU after its max-pool, which gives the same values on 4x fewer inputs).
fn lenet_like(c1: usize, c2: usize, hidden: usize, r: &mut PublicRng) -> Vec<Layer> {
    let pool = |channels, hw| {
        Layer::MaxPool2d(MaxPool2d {
            kernel: 2,
            stride: 2,
            channels,
            input_hw: hw,
        })
    };
    vec![
        Layer::Conv2d(Conv2d::new(1, c1, 5, 1, 0, (28, 28), r)),
        Layer::Relu,
        pool(c1, (24, 24)),
        Layer::Conv2d(Conv2d::new(c1, c2, 5, 1, 0, (12, 12), r)),
        Layer::Relu,
        pool(c2, (8, 8)),
        Layer::Flatten,
        Layer::Linear(Linear::new(c2 * 4 * 4, hidden, r)),
        Layer::Relu,
        Layer::Linear(Linear::new(hidden, 10, r)),
    ]
}

/// Argmax of each row of a `rows x out` matrix (for `out == 1`: logit > 0).
pub fn argmax_rows(logits: &[f32], out: usize) -> Vec<u8> {
    if out == 1 {
        return logits.iter().map(|&z| u8::from(z > 0.0)).collect();
    }
    logits
        .chunks_exact(out)
        .map(|r| {
            let mut best = 0;
            for (j, &v) in r.iter().enumerate() {
                if v > r[best] {
                    best = j;
                }
            }
            best as u8
        })
        .collect()
}

/// Mean loss of logits (`batch x out`) against labels, writing d(loss)/d(logits) into `grad`.
/// `out > 1`: log-softmax + NLL. `out == 1`: binary logistic loss, label `0` negative, else positive.
pub fn loss_grad(logits: &[f32], labels: &[u8], batch: usize, out: usize, grad: &mut [f32]) -> f32 {
    let inv = 1.0 / batch as f32;
    let mut total = 0.0f64;
    if out == 1 {
        for ((&z, &y), g) in logits.iter().zip(labels).zip(grad.iter_mut()) {
            let t = if y > 0 { 1.0 } else { 0.0 };
            // softplus(z) - t z, computed stably
            let sp = z.max(0.0) + (-z.abs()).exp().ln_1p();
            total += (sp - t * z) as f64;
            let s = 1.0 / (1.0 + (-z).exp());
            *g = (s - t) * inv;
        }
        return (total / batch as f64) as f32;
    }
    for ((row, &y), g) in logits
        .chunks_exact(out)
        .zip(labels)
        .zip(grad.chunks_exact_mut(out))
    {
        let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let mut s = 0.0f32;
        for (gj, &z) in g.iter_mut().zip(row) {
            let e = (z - m).exp();
            *gj = e;
            s += e;
        }
        let lse = m + s.ln();
        total += (lse - row[y as usize]) as f64;
        let is = inv / s;
        for gj in g.iter_mut() {
            *gj *= is;
        }
        g[y as usize] -= inv;
    }
    (total / batch as f64) as f32
}
