//! The three roles: [`DataHolder`] (images, bottom; U-shaped also head and labels),
//! [`LabelHolder`] (vanilla: top, labels, loss) and [`MiddleServer`] (U-shaped: middle).

use crate::wire::{
    self, Control, Expect, Hello, PROTOCOL_VERSION, TensorKind, Variant, tensor_wire_bytes,
};
use crate::{BatchBytes, EpochReport, Event, RemoteReport, RunReport, SplitConfig, SplitError};
use ppml_net::Channel;
use ppml_nn::mnist::{self, Normalization};
use ppml_nn::{Dataset, InferBuffers, Model, Sgd, Workspace, argmax_rows, loss_grad};
use ppml_random::{PublicRng, PublicSeed};
use std::path::Path;
use std::time::Instant;

/// Largest batch or evaluation chunk a party accepts (bounds what a peer can make it allocate).
pub const MAX_ROWS: usize = 1 << 16;

/// Images without labels: `len() x dim` row-major, already normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct Images {
    pub values: Vec<f32>,
    pub dim: usize,
}

impl Images {
    /// Checks that `values` holds whole images of `dim` pixels.
    pub fn new(values: Vec<f32>, dim: usize) -> Result<Self, SplitError> {
        if dim == 0 || !values.len().is_multiple_of(dim) {
            return Err(SplitError::Config(format!(
                "{} values are not whole images of {dim} pixels",
                values.len()
            )));
        }
        Ok(Images { values, dim })
    }

    /// The images of a data set (its labels are not copied).
    pub fn from_dataset(d: &Dataset) -> Self {
        Images {
            values: d.images.clone(),
            dim: d.pixels(),
        }
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.values.len() / self.dim.max(1)
    }

    /// True if there is no image.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Image `i`.
    fn image(&self, i: usize) -> &[f32] {
        &self.values[i * self.dim..(i + 1) * self.dim]
    }

    /// Reads only the MNIST image file of the training (`train`) or test set from `dir`,
    /// scaled to `[0, 1]`: what a data holder process loads (it never opens a label file).
    pub fn load_mnist(dir: &Path, train: bool) -> Result<Self, SplitError> {
        let stem = if train {
            "train-images-idx3-ubyte"
        } else {
            "t10k-images-idx3-ubyte"
        };
        let (_, rows, cols, px) = mnist::load_idx_images(&find(dir, stem)?)?;
        let values = px
            .iter()
            .map(|&p| Normalization::UnitRange.apply(p))
            .collect();
        Images::new(values, rows * cols)
    }
}

/// Reads only the MNIST label file of the training or test set: what a label holder loads.
pub fn load_mnist_labels(dir: &Path, train: bool) -> Result<Vec<u8>, SplitError> {
    let stem = if train {
        "train-labels-idx1-ubyte"
    } else {
        "t10k-labels-idx1-ubyte"
    };
    Ok(mnist::load_idx_labels(&find(dir, stem)?)?)
}

fn find(dir: &Path, stem: &str) -> Result<std::path::PathBuf, SplitError> {
    for name in [format!("{stem}.gz"), stem.to_string()] {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(SplitError::Nn(ppml_nn::NnError::Data(format!(
        "MNIST file {stem}(.gz) not found in {} (use --data DIR or PPML_DATA)",
        dir.display()
    ))))
}

/// The order of the samples in one epoch: the workspace's one shuffle
/// ([`ppml_random::permutation`]) with `rng`, exactly as
/// `ppml_nn::train_epoch` does, so both parties (and an unsplit run) agree.
pub fn epoch_order(n: usize, rng: &mut PublicRng) -> Vec<usize> {
    ppml_random::permutation(n, rng)
}

/// The public shuffle seed data holder `index` announces in its handshake:
/// the run's seed through the label `splitnn/holder/{index}`.
pub fn holder_shuffle_seed(shuffle_seed: u64, index: usize) -> u64 {
    PublicSeed::new(shuffle_seed).derive_u64(&format!("splitnn/holder/{index}"))
}

/// The stream both parties draw the epoch orders from, given the agreed
/// shuffle seed: the same stream as `ppml_nn::TrainConfig::order_rng` with
/// that seed, so a split run visits samples in an unsplit run's order.
pub fn order_rng(agreed_seed: u64) -> PublicRng {
    PublicSeed::new(agreed_seed).rng("nn/train-order")
}

fn check_labels(labels: &[u8], classes: usize, what: &str) -> Result<(), SplitError> {
    if let Some(&bad) = labels.iter().find(|&&l| l as usize >= classes) {
        return Err(SplitError::Config(format!(
            "{what}: label {bad} does not fit {classes} outputs"
        )));
    }
    Ok(())
}

fn send_control(ch: &mut Channel, c: &Control, during: &str) -> Result<(), SplitError> {
    let bytes = wire::encode_control(c)?;
    ch.send_bytes(bytes)
        .map_err(|e| SplitError::net(e, during.to_string()))
}

fn recv_control(ch: &mut Channel, during: &str) -> Result<Control, SplitError> {
    let bytes = ch
        .recv_bytes()
        .map_err(|e| SplitError::net(e, during.to_string()))?;
    wire::decode_control(&bytes)
}

/// Sends a tensor; the error says which message of which step failed.
fn send_tensor(
    ch: &mut Channel,
    kind: TensorKind,
    step: u32,
    rows: usize,
    cols: usize,
    data: &[f32],
) -> Result<(), SplitError> {
    let bytes = wire::encode_tensor(kind, step, rows, cols, data)?;
    ch.send_bytes(bytes)
        .map_err(|e| SplitError::net(e, format!("sending {kind:?} of step {step}")))
}

/// Receives a tensor of exactly the expected kind, step and shape into `out`.
fn recv_tensor(ch: &mut Channel, want: Expect, out: &mut Vec<f32>) -> Result<(), SplitError> {
    let bytes = ch.recv_bytes().map_err(|e| {
        SplitError::net(
            e,
            format!("waiting for {:?} of step {}", want.kind, want.step),
        )
    })?;
    wire::decode_tensor_into(&bytes, want, out)
}

/// Accuracy bookkeeping of an evaluation.
#[derive(Default)]
struct EvalAcc {
    correct: u64,
    total: u64,
    loss_sum: f64,
    scratch: Vec<f32>,
}

impl EvalAcc {
    fn add(&mut self, logits: &[f32], labels: &[u8], out: usize) {
        let rows = labels.len();
        self.scratch.resize(logits.len(), 0.0);
        let loss = loss_grad(logits, labels, rows, out, &mut self.scratch);
        self.loss_sum += loss as f64 * rows as f64;
        let pred = argmax_rows(logits, out);
        self.correct += pred.iter().zip(labels).filter(|(a, b)| a == b).count() as u64;
        self.total += rows as u64;
    }
}

/// The party holding the images (and, U-shaped, the head and all labels).
#[derive(Debug, Clone)]
pub struct DataHolder {
    bottom: Model,
    head: Option<Model>,
    train: Images,
    test: Images,
    train_labels: Vec<u8>,
    test_labels: Vec<u8>,
}

impl DataHolder {
    /// Vanilla data holder: the bottom model and the images only.
    pub fn vanilla(bottom: Model, train: Images, test: Images) -> Result<Self, SplitError> {
        let d = Self {
            bottom,
            head: None,
            train,
            test,
            train_labels: Vec::new(),
            test_labels: Vec::new(),
        };
        d.check()?;
        Ok(d)
    }

    /// U-shaped data holder: bottom, head, and the labelled data sets.
    pub fn u_shaped(
        bottom: Model,
        head: Model,
        train: Dataset,
        test: Dataset,
    ) -> Result<Self, SplitError> {
        let classes = head.output_size();
        check_labels(&train.labels, classes, "training set")?;
        check_labels(&test.labels, classes, "test set")?;
        let d = Self {
            bottom,
            head: Some(head),
            train: Images::from_dataset(&train),
            test: Images::from_dataset(&test),
            train_labels: train.labels,
            test_labels: test.labels,
        };
        d.check()?;
        Ok(d)
    }

    fn check(&self) -> Result<(), SplitError> {
        let p = self.bottom.input_size();
        for (name, im) in [("training", &self.train), ("test", &self.test)] {
            if im.dim != p {
                return Err(SplitError::Config(format!(
                    "{name} images have {} pixels, the bottom model takes {p}",
                    im.dim
                )));
            }
        }
        if self.train.is_empty() {
            return Err(SplitError::Config("no training images".into()));
        }
        Ok(())
    }

    /// The variant this holder plays.
    pub fn variant(&self) -> Variant {
        if self.head.is_some() {
            Variant::UShaped
        } else {
            Variant::Vanilla
        }
    }

    /// The bottom model.
    pub fn bottom(&self) -> &Model {
        &self.bottom
    }

    /// The head (U-shaped only).
    pub fn head(&self) -> Option<&Model> {
        self.head.as_ref()
    }

    /// The trained models: `[bottom]` or `[bottom, head]`.
    pub fn into_models(self) -> Vec<Model> {
        let mut v = vec![self.bottom];
        v.extend(self.head);
        v
    }

    /// Runs the whole session over `ch`: handshake, `cfg.epochs` epochs of training, each
    /// followed by an evaluation on the test set through the split (if `cfg.evaluate`).
    pub fn run(
        &mut self,
        ch: &mut Channel,
        cfg: &SplitConfig,
        on: &mut dyn FnMut(Event<'_>),
    ) -> Result<RunReport, SplitError> {
        self.run_impl(ch, cfg, None, on)
    }

    /// Runs as data holder `rr.index` of `rr.count` taking turns with the others against
    /// one label holder (vanilla only). With `rr.share_bottom`, the bottom's weights travel
    /// around the ring of data holders: each waits for its predecessor's weights (`rr.prev`)
    /// before its turn and hands them on (`rr.next`) after it (holder 0 starts epoch 1 with
    /// its own initial weights), so all holders train one bottom; otherwise each keeps its own.
    pub fn run_round_robin(
        &mut self,
        ch: &mut Channel,
        cfg: &SplitConfig,
        rr: &mut RoundRobin,
        on: &mut dyn FnMut(Event<'_>),
    ) -> Result<RunReport, SplitError> {
        if rr.count == 0 || rr.index >= rr.count {
            return Err(SplitError::Config(format!(
                "data holder {} of {}",
                rr.index, rr.count
            )));
        }
        if self.head.is_some() {
            return Err(SplitError::Config(
                "round-robin is implemented for the vanilla variant".into(),
            ));
        }
        // With two holders, one channel (`prev`) links them both ways.
        if rr.share_bottom
            && rr.count > 1
            && (rr.prev.is_none() || (rr.next.is_none() && rr.count > 2))
        {
            return Err(SplitError::Config(
                "sharing the bottom needs channels to the previous and next data holder".into(),
            ));
        }
        self.run_impl(ch, cfg, Some(rr), on)
    }

    fn run_impl(
        &mut self,
        ch: &mut Channel,
        cfg: &SplitConfig,
        mut rr: Option<&mut RoundRobin>,
        on: &mut dyn FnMut(Event<'_>),
    ) -> Result<RunReport, SplitError> {
        let (index, count) = rr.as_ref().map_or((0, 1), |r| (r.index, r.count));
        if cfg.variant != self.variant() {
            return Err(SplitError::Config(format!(
                "configured for {} but this data holder is {}",
                cfg.variant,
                self.variant()
            )));
        }
        if cfg.batch == 0
            || cfg.batch > MAX_ROWS
            || cfg.eval_chunk == 0
            || cfg.eval_chunk > MAX_ROWS
        {
            return Err(SplitError::Config(format!(
                "batch ({}) and eval chunk ({}) must be in 1..={MAX_ROWS}",
                cfg.batch, cfg.eval_chunk
            )));
        }
        // The data holder's own optimiser: checked here, before any message, so
        // a bad rate is reported as such instead of as the peer's bad gradients.
        RemoteConfig {
            lr: cfg.lr,
            momentum: cfg.momentum,
            shuffle_share: 0,
        }
        .validate()?;
        let n = self.train.len();
        let steps = n.div_ceil(cfg.batch);
        if (steps as u64) * (cfg.epochs as u64) >= u32::MAX as u64 {
            return Err(SplitError::Config("too many steps".into()));
        }
        let send_width = self.bottom.output_size();
        let return_width = self.head.as_ref().map_or(0, Model::input_size);
        if let Some(h) = &self.head
            && h.output_size() < 2
        {
            return Err(SplitError::Config(
                "the head must have several outputs".into(),
            ));
        }
        let hello = Hello {
            version: PROTOCOL_VERSION,
            variant: cfg.variant,
            send_width: send_width as u32,
            return_width: return_width as u32,
            train_samples: n as u64,
            test_samples: self.test.len() as u64,
            batch: cfg.batch as u32,
            epochs: cfg.epochs as u32,
            shuffle_seed: holder_shuffle_seed(cfg.shuffle_seed, index),
            eval_chunk: cfg.eval_chunk as u32,
            evaluate: cfg.evaluate,
            holder: index as u32,
            holders: count as u32,
        };
        let s0 = ch.stats();
        send_control(ch, &Control::Hello(hello), "sending the handshake")?;
        let label_share = match recv_control(ch, "waiting for the handshake answer")? {
            Control::Accept { shuffle_share } => shuffle_share,
            Control::Reject(r) => return Err(SplitError::Rejected(r)),
            other => {
                return Err(SplitError::Protocol(format!(
                    "expected Accept or Reject, got {other:?}"
                )));
            }
        };
        let setup_traffic = ch.stats() - s0;

        let mut rng = order_rng(wire::joint_shuffle_seed(
            holder_shuffle_seed(cfg.shuffle_seed, index),
            label_share,
        ));
        let mut peer_traffic = ppml_net::ChannelStats::default();
        let mut opt_b = Sgd::new(cfg.lr, cfg.momentum);
        let mut opt_h = Sgd::new(cfg.lr, cfg.momentum);
        let mut ws_b = Workspace::new();
        let mut ws_h = Workspace::new();
        let mut xbuf: Vec<f32> = Vec::with_capacity(cfg.batch * self.train.dim);
        let mut ybuf: Vec<u8> = Vec::with_capacity(cfg.batch);
        let mut rbuf: Vec<f32> = Vec::new();
        let mut dl: Vec<f32> = Vec::new();
        let mut epochs = Vec::with_capacity(cfg.epochs);
        for epoch in 0..cfg.epochs {
            if let Some(r) = rr.as_deref_mut()
                && r.share_bottom
                && r.count > 1
                && !(epoch == 0 && r.index == 0)
            {
                peer_traffic += r.receive_bottom(&mut self.bottom)?;
            }
            let order = epoch_order(n, &mut rng);
            let cpu0 = crate::process_cpu_seconds();
            let t0 = Instant::now();
            let c0 = ch.stats();
            let mut loss_sum = 0.0f64;
            for (s, idx) in order.chunks(cfg.batch).enumerate() {
                let b = idx.len();
                let step = (epoch * steps + s) as u32;
                xbuf.clear();
                ybuf.clear();
                for &i in idx {
                    xbuf.extend_from_slice(self.train.image(i));
                }
                let act = self.bottom.forward_train_ws(&xbuf, b, &mut ws_b);
                send_tensor(ch, TensorKind::Activations, step, b, send_width, act)?;
                if let Some(head) = &mut self.head {
                    // U-shaped: the middle's output comes back, the loss stays here.
                    for &i in idx {
                        ybuf.push(self.train_labels[i]);
                    }
                    let want = Expect {
                        kind: TensorKind::MidActivations,
                        step,
                        rows: b,
                        cols: return_width,
                    };
                    recv_tensor(ch, want, &mut rbuf)?;
                    let out = head.output_size();
                    let logits = head.forward_train_ws(&rbuf, b, &mut ws_h);
                    dl.resize(b * out, 0.0);
                    loss_sum += loss_grad(logits, &ybuf, b, out, &mut dl) as f64;
                    // Invariant: want_input_grad = true always returns the input gradient.
                    let g = head.backward_ws(&dl, &mut ws_h, true).unwrap_or(&[]);
                    send_tensor(ch, TensorKind::MidGradients, step, b, return_width, g)?;
                    opt_h.step(head, &ws_h.grads);
                }
                let want = Expect {
                    kind: TensorKind::Gradients,
                    step,
                    rows: b,
                    cols: send_width,
                };
                recv_tensor(ch, want, &mut rbuf)?;
                self.bottom.backward_ws(&rbuf, &mut ws_b, false);
                opt_b.step(&mut self.bottom, &ws_b.grads);
                on(Event::Step {
                    epoch: epoch + 1,
                    step: s + 1,
                    steps,
                });
            }
            let train_seconds = t0.elapsed().as_secs_f64();
            let train_cpu_seconds = match (cpu0, crate::process_cpu_seconds()) {
                (Some(a), Some(b)) => Some(b - a),
                _ => None,
            };
            let c1 = ch.stats();
            let t1 = Instant::now();
            let (train_loss, acc, test_loss) = self.evaluate(ch, cfg, epoch, steps, loss_sum)?;
            let rep = EpochReport {
                epoch: epoch + 1,
                train_loss,
                test_accuracy: acc,
                test_loss,
                train_seconds,
                train_cpu_seconds,
                eval_seconds: t1.elapsed().as_secs_f64(),
                train_traffic: c1 - c0,
                eval_traffic: ch.stats() - c1,
            };
            on(Event::Epoch(&rep));
            epochs.push(rep);
            if let Some(r) = rr.as_deref_mut()
                && r.share_bottom
                && r.count > 1
                && !(epoch + 1 == cfg.epochs && r.index + 1 == r.count)
            {
                peer_traffic += r.send_bottom(&self.bottom)?;
            }
        }
        let full = cfg.batch.min(n);
        let per_batch = match cfg.variant {
            Variant::Vanilla => BatchBytes {
                forward: tensor_wire_bytes(full, send_width),
                backward: tensor_wire_bytes(full, send_width),
                messages: 2,
                round_trips: 1,
            },
            Variant::UShaped => BatchBytes {
                forward: tensor_wire_bytes(full, send_width)
                    + tensor_wire_bytes(full, return_width),
                backward: tensor_wire_bytes(full, return_width)
                    + tensor_wire_bytes(full, send_width),
                messages: 4,
                round_trips: 2,
            },
        };
        Ok(RunReport {
            variant: cfg.variant.to_string(),
            batch: cfg.batch,
            steps_per_epoch: steps,
            epochs,
            per_batch,
            setup_traffic,
            total_traffic: ch.stats() - s0,
            peer_traffic,
        })
    }

    /// End of an epoch: evaluation through the split. Returns (train loss, accuracy, test loss).
    fn evaluate(
        &mut self,
        ch: &mut Channel,
        cfg: &SplitConfig,
        epoch: usize,
        steps: usize,
        loss_sum: f64,
    ) -> Result<(f64, Option<f64>, Option<f64>), SplitError> {
        let width = self.bottom.output_size();
        let dim = self.test.dim;
        let mut ib = InferBuffers::default();
        if cfg.evaluate {
            for (c, xs) in self.test.values.chunks(cfg.eval_chunk * dim).enumerate() {
                let rows = xs.len() / dim;
                let act = self.bottom.forward_into(xs, rows, &mut ib);
                send_tensor(ch, TensorKind::EvalActivations, c as u32, rows, width, act)?;
            }
        }
        match &self.head {
            None => match recv_control(ch, "waiting for the evaluation result")? {
                Control::EvalResult {
                    epoch: e,
                    correct,
                    total,
                    test_loss,
                    train_loss,
                } if e as usize == epoch => {
                    if !cfg.evaluate || total == 0 {
                        return Ok((train_loss, None, None));
                    }
                    if total != self.test.len() as u64 || correct > total {
                        return Err(SplitError::Protocol(format!(
                            "evaluation result {correct}/{total} does not fit {} test images",
                            self.test.len()
                        )));
                    }
                    Ok((
                        train_loss,
                        Some(correct as f64 / total as f64),
                        Some(test_loss),
                    ))
                }
                other => Err(SplitError::Protocol(format!(
                    "expected the evaluation result of epoch {epoch}, got {other:?}"
                ))),
            },
            Some(head) => {
                let train_loss = loss_sum / steps.max(1) as f64;
                if !cfg.evaluate {
                    return Ok((train_loss, None, None));
                }
                let rw = head.input_size();
                let out = head.output_size();
                let mut acc = EvalAcc::default();
                let mut buf = Vec::new();
                for (c, ys) in self.test_labels.chunks(cfg.eval_chunk).enumerate() {
                    let want = Expect {
                        kind: TensorKind::EvalMid,
                        step: c as u32,
                        rows: ys.len(),
                        cols: rw,
                    };
                    recv_tensor(ch, want, &mut buf)?;
                    let logits = head.forward_into(&buf, ys.len(), &mut ib);
                    acc.add(logits, ys, out);
                }
                let t = acc.total.max(1) as f64;
                Ok((
                    train_loss,
                    Some(acc.correct as f64 / t),
                    Some(acc.loss_sum / t),
                ))
            }
        }
    }
}

/// A data holder's place among several that take turns ([`DataHolder::run_round_robin`]).
#[derive(Debug)]
pub struct RoundRobin {
    pub index: usize,
    pub count: usize,
    /// Pass the bottom's weights around the ring (else every holder keeps its own bottom).
    pub share_bottom: bool,
    /// Channel from the previous data holder (`index - 1`, or the last for holder 0).
    pub prev: Option<Channel>,
    /// Channel to the next data holder (`None` with two holders: then `prev`
    /// links them both ways, each direction in order).
    pub next: Option<Channel>,
}

impl RoundRobin {
    fn receive_bottom(&mut self, bottom: &mut Model) -> Result<ppml_net::ChannelStats, SplitError> {
        let ch = self
            .prev
            .as_mut()
            .ok_or_else(|| SplitError::Config("no channel from the previous data holder".into()))?;
        let s0 = ch.stats();
        match recv_control(
            ch,
            "waiting for the bottom weights of the previous data holder",
        )? {
            Control::BottomWeights(w) => bottom.set_params_flat(&w).map_err(|e| {
                SplitError::Protocol(format!("bottom weights from the previous holder: {e}"))
            })?,
            other => {
                return Err(SplitError::Protocol(format!(
                    "expected bottom weights, got {other:?}"
                )));
            }
        }
        if bottom.params_flat().iter().any(|v| !v.is_finite()) {
            return Err(SplitError::Protocol(
                "bottom weights from the previous holder are not finite".into(),
            ));
        }
        Ok(ch.stats() - s0)
    }

    fn send_bottom(&mut self, bottom: &Model) -> Result<ppml_net::ChannelStats, SplitError> {
        let ch = match (self.next.as_mut(), self.count) {
            (Some(ch), _) => ch,
            (None, 2) => self
                .prev
                .as_mut()
                .ok_or_else(|| SplitError::Config("no channel to the other data holder".into()))?,
            (None, _) => {
                return Err(SplitError::Config(
                    "no channel to the next data holder".into(),
                ));
            }
        };
        let s0 = ch.stats();
        send_control(
            ch,
            &Control::BottomWeights(bottom.params_flat()),
            "handing the bottom weights to the next data holder",
        )?;
        Ok(ch.stats() - s0)
    }
}

/// Optimiser settings of the remote party (its own; the data holder's are not sent).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RemoteConfig {
    pub lr: f32,
    pub momentum: f32,
    /// This party's share of the shuffle seed (see [`wire::joint_shuffle_seed`]).
    pub shuffle_share: u64,
}

impl RemoteConfig {
    /// A finite positive learning rate and a momentum in `[0, 1)`.
    pub fn validate(&self) -> Result<(), SplitError> {
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(SplitError::Config(format!(
                "learning rate must be finite and positive, got {}",
                self.lr
            )));
        }
        if !(self.momentum.is_finite() && (0.0..1.0).contains(&self.momentum)) {
            return Err(SplitError::Config(format!(
                "momentum must be in [0, 1), got {}",
                self.momentum
            )));
        }
        Ok(())
    }
}

impl Default for RemoteConfig {
    fn default() -> Self {
        RemoteConfig {
            lr: 0.03,
            momentum: 0.0,
            shuffle_share: 0,
        }
    }
}

/// Receives and checks the handshake; answers Accept, or Reject and an error.
fn handshake(
    ch: &mut Channel,
    variant: Variant,
    (index, count): (usize, usize),
    shuffle_share: u64,
    check: impl FnOnce(&Hello) -> Result<(), String>,
) -> Result<Hello, SplitError> {
    let h = match recv_control(ch, "waiting for the data holder's handshake")? {
        Control::Hello(h) => h,
        other => {
            return Err(SplitError::Protocol(format!(
                "expected Hello, got {other:?}"
            )));
        }
    };
    let verdict = if h.version != PROTOCOL_VERSION {
        Err(format!(
            "protocol version {} (this party speaks {PROTOCOL_VERSION})",
            h.version
        ))
    } else if h.variant != variant {
        Err(format!("variant {} (this party runs {variant})", h.variant))
    } else if h.batch == 0 || h.batch as usize > MAX_ROWS {
        Err(format!("batch {} (allowed 1..={MAX_ROWS})", h.batch))
    } else if h.eval_chunk == 0 || h.eval_chunk as usize > MAX_ROWS {
        Err(format!(
            "eval chunk {} (allowed 1..={MAX_ROWS})",
            h.eval_chunk
        ))
    } else if h.holders as usize != count || h.holder as usize != index {
        Err(format!(
            "data holder {} of {} (this party expects holder {index} of {count} on this channel)",
            h.holder, h.holders
        ))
    } else if h.train_samples == 0
        || h.train_samples.div_ceil(h.batch as u64) * h.epochs as u64 >= u32::MAX as u64
    {
        Err(format!(
            "{} training samples, {} epochs",
            h.train_samples, h.epochs
        ))
    } else {
        check(&h)
    };
    match verdict {
        Ok(()) => {
            send_control(
                ch,
                &Control::Accept { shuffle_share },
                "accepting the handshake",
            )?;
            // From here on, `shuffle_seed` is the joint seed both parties use.
            let mut h = h;
            h.shuffle_seed = wire::joint_shuffle_seed(h.shuffle_seed, shuffle_share);
            Ok(h)
        }
        Err(why) => {
            let why = format!("unacceptable session: {why}");
            // Best effort: the error below is what matters to this party.
            let _ = send_control(ch, &Control::Reject(why.clone()), "rejecting");
            Err(SplitError::Rejected(why))
        }
    }
}

/// The vanilla label holder: top model, labels, loss.
#[derive(Debug, Clone)]
pub struct LabelHolder {
    top: Model,
    train_labels: Vec<u8>,
    test_labels: Vec<u8>,
    cfg: RemoteConfig,
}

impl LabelHolder {
    /// A label holder with the top model and the training and test labels.
    pub fn new(
        top: Model,
        train_labels: Vec<u8>,
        test_labels: Vec<u8>,
        cfg: RemoteConfig,
    ) -> Result<Self, SplitError> {
        cfg.validate()?;
        let classes = top.output_size();
        if classes < 2 {
            return Err(SplitError::Config(
                "the top must have several outputs".into(),
            ));
        }
        check_labels(&train_labels, classes, "training labels")?;
        check_labels(&test_labels, classes, "test labels")?;
        Ok(Self {
            top,
            train_labels,
            test_labels,
            cfg,
        })
    }

    /// The top model.
    pub fn top(&self) -> &Model {
        &self.top
    }

    /// The trained top model.
    pub fn into_model(self) -> Model {
        self.top
    }

    /// Serves one session: accepts only activations of the agreed shape, answers each with
    /// their gradient, steps its own optimiser, and after each epoch evaluates the test
    /// activations against its test labels and reports accuracy and mean losses.
    pub fn run(&mut self, ch: &mut Channel) -> Result<RemoteReport, SplitError> {
        self.run_round_robin(std::slice::from_mut(ch))
    }

    /// Serves several data holders in turn (round-robin), one channel each, in holder order:
    /// holder `k` holds the `k`-th contiguous shard of the training set (its size is announced
    /// in its handshake; the shards must cover this party's labels exactly). Every epoch,
    /// each holder in turn trains over its shard (and is evaluated) against the one shared top.
    pub fn run_round_robin(&mut self, chs: &mut [Channel]) -> Result<RemoteReport, SplitError> {
        let count = chs.len();
        if count == 0 {
            return Err(SplitError::Config("no data holder channel".into()));
        }
        let s0: ppml_net::ChannelStats = chs.iter().map(Channel::stats).sum();
        let width = self.top.input_size();
        let (ntr, nte) = (
            self.train_labels.len() as u64,
            self.test_labels.len() as u64,
        );
        let mut hellos: Vec<Hello> = Vec::with_capacity(count);
        let mut shards = Vec::with_capacity(count);
        let mut offset = 0u64;
        for (k, ch) in chs.iter_mut().enumerate() {
            let first = hellos.first().map(|h| (h.epochs, h.evaluate));
            let h = handshake(
                ch,
                Variant::Vanilla,
                (k, count),
                self.cfg.shuffle_share.wrapping_add(k as u64),
                |h| {
                    let end = offset.saturating_add(h.train_samples);
                    if h.send_width as usize != width || h.return_width != 0 {
                        Err(format!(
                            "cut width {} (the top takes {width})",
                            h.send_width
                        ))
                    } else if end > ntr || (k + 1 == count && end != ntr) {
                        Err(format!(
                            "{} training samples from sample {offset} (this party has {ntr} labels)",
                            h.train_samples
                        ))
                    } else if h.evaluate && h.test_samples != nte {
                        Err(format!(
                            "{} test samples (this party has {nte} labels)",
                            h.test_samples
                        ))
                    } else if first.is_some_and(|f| f != (h.epochs, h.evaluate)) {
                        Err("epochs or evaluation differ from data holder 0".into())
                    } else {
                        Ok(())
                    }
                },
            )?;
            let start = offset as usize;
            offset += h.train_samples;
            shards.push(start..offset as usize);
            hellos.push(h);
        }
        let epochs = hellos[0].epochs as usize;
        let out = self.top.output_size();
        let mut rngs: Vec<PublicRng> = hellos.iter().map(|h| order_rng(h.shuffle_seed)).collect();
        let mut opt = Sgd::new(self.cfg.lr, self.cfg.momentum);
        let mut ws = Workspace::new();
        let mut abuf = Vec::new();
        let mut ybuf = Vec::new();
        let mut dl = Vec::new();
        let mut ib = InferBuffers::default();
        let mut losses = Vec::with_capacity(epochs * count);
        let mut total_steps = 0;
        for epoch in 0..epochs {
            for (k, ch) in chs.iter_mut().enumerate() {
                let h = &hellos[k];
                let labels = &self.train_labels[shards[k].clone()];
                let batch = h.batch as usize;
                let n = labels.len();
                let steps = n.div_ceil(batch);
                let order = epoch_order(n, &mut rngs[k]);
                let mut loss_sum = 0.0f64;
                for (s, idx) in order.chunks(batch).enumerate() {
                    let b = idx.len();
                    let step = (epoch * steps + s) as u32;
                    let want = Expect {
                        kind: TensorKind::Activations,
                        step,
                        rows: b,
                        cols: width,
                    };
                    recv_tensor(ch, want, &mut abuf)?;
                    ybuf.clear();
                    ybuf.extend(idx.iter().map(|&i| labels[i]));
                    let logits = self.top.forward_train_ws(&abuf, b, &mut ws);
                    dl.resize(b * out, 0.0);
                    loss_sum += loss_grad(logits, &ybuf, b, out, &mut dl) as f64;
                    // Invariant: want_input_grad = true always returns the input gradient.
                    let g = self.top.backward_ws(&dl, &mut ws, true).unwrap_or(&[]);
                    send_tensor(ch, TensorKind::Gradients, step, b, width, g)?;
                    opt.step(&mut self.top, &ws.grads);
                }
                total_steps += steps;
                let train_loss = loss_sum / steps.max(1) as f64;
                losses.push(train_loss);
                let mut acc = EvalAcc::default();
                if h.evaluate {
                    for (c, ys) in self.test_labels.chunks(h.eval_chunk as usize).enumerate() {
                        let want = Expect {
                            kind: TensorKind::EvalActivations,
                            step: c as u32,
                            rows: ys.len(),
                            cols: width,
                        };
                        recv_tensor(ch, want, &mut abuf)?;
                        let logits = self.top.forward_into(&abuf, ys.len(), &mut ib);
                        acc.add(logits, ys, out);
                    }
                }
                let result = Control::EvalResult {
                    epoch: epoch as u32,
                    correct: acc.correct,
                    total: acc.total,
                    test_loss: acc.loss_sum / acc.total.max(1) as f64,
                    train_loss,
                };
                send_control(ch, &result, "sending the evaluation result")?;
            }
        }
        let s1: ppml_net::ChannelStats = chs.iter().map(Channel::stats).sum();
        Ok(RemoteReport {
            variant: Variant::Vanilla.to_string(),
            steps: total_steps,
            train_loss: losses,
            traffic: s1 - s0,
        })
    }
}

/// The U-shaped server: runs only the middle of the network; sees neither images nor labels
/// nor logits.
#[derive(Debug, Clone)]
pub struct MiddleServer {
    middle: Model,
    cfg: RemoteConfig,
}

impl MiddleServer {
    /// A server running `middle`.
    pub fn new(middle: Model, cfg: RemoteConfig) -> Result<Self, SplitError> {
        cfg.validate()?;
        Ok(Self { middle, cfg })
    }

    /// The middle model.
    pub fn middle(&self) -> &Model {
        &self.middle
    }

    /// The trained middle model.
    pub fn into_model(self) -> Model {
        self.middle
    }

    /// Serves one session.
    pub fn run(&mut self, ch: &mut Channel) -> Result<RemoteReport, SplitError> {
        let s0 = ch.stats();
        let (iw, ow) = (self.middle.input_size(), self.middle.output_size());
        let h = handshake(ch, Variant::UShaped, (0, 1), self.cfg.shuffle_share, |h| {
            if h.send_width as usize != iw || h.return_width as usize != ow {
                Err(format!(
                    "widths {} -> {} (the middle maps {iw} -> {ow})",
                    h.send_width, h.return_width
                ))
            } else {
                Ok(())
            }
        })?;
        let batch = h.batch as usize;
        let n = h.train_samples as usize;
        let steps = n.div_ceil(batch);
        let mut opt = Sgd::new(self.cfg.lr, self.cfg.momentum);
        let mut ws = Workspace::new();
        let mut abuf = Vec::with_capacity(batch * iw);
        let mut gbuf = Vec::with_capacity(batch * ow);
        let mut ib = InferBuffers::default();
        for epoch in 0..h.epochs as usize {
            for s in 0..steps {
                let b = batch.min(n - s * batch);
                let step = (epoch * steps + s) as u32;
                let want = Expect {
                    kind: TensorKind::Activations,
                    step,
                    rows: b,
                    cols: iw,
                };
                recv_tensor(ch, want, &mut abuf)?;
                let y = self.middle.forward_train_ws(&abuf, b, &mut ws);
                send_tensor(ch, TensorKind::MidActivations, step, b, ow, y)?;
                let want = Expect {
                    kind: TensorKind::MidGradients,
                    step,
                    rows: b,
                    cols: ow,
                };
                recv_tensor(ch, want, &mut gbuf)?;
                // Invariant: want_input_grad = true always returns the input gradient.
                let g = self.middle.backward_ws(&gbuf, &mut ws, true).unwrap_or(&[]);
                send_tensor(ch, TensorKind::Gradients, step, b, iw, g)?;
                opt.step(&mut self.middle, &ws.grads);
            }
            if h.evaluate {
                let nt = h.test_samples as usize;
                let chunk = h.eval_chunk as usize;
                for c in 0..nt.div_ceil(chunk) {
                    let rows = chunk.min(nt - c * chunk);
                    let want = Expect {
                        kind: TensorKind::EvalActivations,
                        step: c as u32,
                        rows,
                        cols: iw,
                    };
                    recv_tensor(ch, want, &mut abuf)?;
                    let y = self.middle.forward_into(&abuf, rows, &mut ib);
                    send_tensor(ch, TensorKind::EvalMid, c as u32, rows, ow, y)?;
                }
            }
        }
        Ok(RemoteReport {
            variant: Variant::UShaped.to_string(),
            steps: steps * h.epochs as usize,
            train_loss: Vec::new(),
            traffic: ch.stats() - s0,
        })
    }
}
