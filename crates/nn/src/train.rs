//! SGD with momentum, mini-batch training with seeded shuffling.

use crate::NnError;
use crate::mnist::Dataset;
use crate::model::{Gradients, Model, Workspace};

/// Stochastic gradient descent as PyTorch's `torch.optim.SGD`
/// (`v = momentum * v + g + weight_decay * p; p -= lr * v`, no dampening).
#[derive(Debug, Clone)]
pub struct Sgd {
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    velocity: Vec<f32>,
}

impl Sgd {
    /// SGD with learning rate and momentum (0 for plain SGD), no weight decay.
    pub fn new(lr: f32, momentum: f32) -> Self {
        Sgd {
            lr,
            momentum,
            weight_decay: 0.0,
            velocity: Vec::new(),
        }
    }

    /// Sets L2 weight decay.
    pub fn with_weight_decay(mut self, wd: f32) -> Self {
        self.weight_decay = wd;
        self
    }

    /// Forgets the momentum buffer (e.g. when the model was replaced).
    pub fn reset(&mut self) {
        self.velocity.clear();
    }

    /// One update of `model` with `grads` (laid out like [`Model::params_flat`]).
    ///
    /// # Panics
    /// If `grads` does not have `model.num_params()` values.
    pub fn step(&mut self, model: &mut Model, grads: &Gradients) {
        let n = model.num_params();
        assert_eq!(grads.flat.len(), n, "gradient length");
        let (lr, mu, wd) = (self.lr, self.momentum, self.weight_decay);
        let mut off = 0;
        if mu == 0.0 {
            model.for_each_param_mut(|p| {
                let g = &grads.flat[off..off + p.len()];
                for (w, &gi) in p.iter_mut().zip(g) {
                    *w -= lr * (gi + wd * *w);
                }
                off += p.len();
            });
            return;
        }
        if self.velocity.len() != n {
            // PyTorch initialises the buffer with the first gradient; starting
            // from zero gives exactly that after `v = mu*0 + g`.
            self.velocity = vec![0.0; n];
        }
        let vel = &mut self.velocity;
        model.for_each_param_mut(|p| {
            let g = &grads.flat[off..off + p.len()];
            let v = &mut vel[off..off + p.len()];
            for ((w, &gi), vi) in p.iter_mut().zip(g).zip(v.iter_mut()) {
                *vi = mu * *vi + gi + wd * *w;
                *w -= lr * *vi;
            }
            off += p.len();
        });
    }

    /// Forward, backward and update on one batch, without allocating once the
    /// workspace has grown. Returns the mean loss of the batch.
    pub fn train_step(
        &mut self,
        model: &mut Model,
        x: &[f32],
        labels: &[u8],
        batch: usize,
        ws: &mut Workspace,
    ) -> f32 {
        let loss = model.loss_and_grad_ws(x, labels, batch, ws);
        self.step(model, &ws.grads);
        loss
    }
}

/// How the learning rate evolves over the whole run.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum LrSchedule {
    /// `lr` throughout.
    #[default]
    Constant,
    /// Cosine decay from `lr` to 0 over all steps of all epochs.
    Cosine,
    /// Linear decay from `lr` to 0 over all steps of all epochs.
    Linear,
}

impl std::str::FromStr for LrSchedule {
    type Err = NnError;
    fn from_str(s: &str) -> Result<Self, NnError> {
        match s {
            "constant" | "const" => Ok(LrSchedule::Constant),
            "cosine" | "cos" => Ok(LrSchedule::Cosine),
            "linear" => Ok(LrSchedule::Linear),
            o => Err(NnError::Invalid(format!(
                "unknown schedule `{o}` (constant, cosine, linear)"
            ))),
        }
    }
}

impl LrSchedule {
    /// Factor applied to the base rate at progress `t` in `[0, 1)`.
    pub fn factor(self, t: f64) -> f32 {
        match self {
            LrSchedule::Constant => 1.0,
            LrSchedule::Cosine => (0.5 * (1.0 + (std::f64::consts::PI * t).cos())) as f32,
            LrSchedule::Linear => (1.0 - t) as f32,
        }
    }
}

/// Hyper-parameters of a training run.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch: usize,
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    pub schedule: LrSchedule,
    /// Public seed of the data order ([`TrainConfig::order_rng`]) and, when the
    /// caller builds the model with `Model::from_arch`, of the initialisation.
    pub seed: u64,
}

impl Default for TrainConfig {
    /// The PyTorch tutorial setting: 3 epochs, batch 64, lr 0.01, momentum 0.5.
    fn default() -> Self {
        TrainConfig {
            epochs: 3,
            batch: 64,
            lr: 0.01,
            momentum: 0.5,
            weight_decay: 0.0,
            schedule: LrSchedule::Constant,
            seed: 42,
        }
    }
}

impl TrainConfig {
    /// The recipe `ppml train` uses by default (see docs/BENCHMARKS.md).
    pub fn recommended() -> Self {
        TrainConfig {
            epochs: 5,
            batch: 64,
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 0.0,
            schedule: LrSchedule::Cosine,
            seed: 42,
        }
    }

    /// Checks every value before any work starts: at least one epoch, a
    /// positive batch, a finite positive learning rate, momentum in `[0, 1)`,
    /// a finite non-negative weight decay.
    pub fn validate(&self) -> Result<(), NnError> {
        if self.epochs == 0 {
            return Err(NnError::Invalid("epochs must be at least 1".into()));
        }
        if self.batch == 0 {
            return Err(NnError::Invalid("batch size must be positive".into()));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(NnError::Invalid(format!(
                "learning rate must be finite and positive, got {}",
                self.lr
            )));
        }
        if !(self.momentum.is_finite() && (0.0..1.0).contains(&self.momentum)) {
            return Err(NnError::Invalid(format!(
                "momentum must be in [0, 1), got {}",
                self.momentum
            )));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(NnError::Invalid(format!(
                "weight decay must be finite and >= 0, got {}",
                self.weight_decay
            )));
        }
        Ok(())
    }

    /// The public stream that orders the training data (`"nn/train-order"`
    /// of [`ppml_random::PublicSeed`]`(seed)`), to pass to [`train_epoch`].
    pub fn order_rng(&self) -> ppml_random::PublicRng {
        ppml_random::PublicSeed::new(self.seed).rng("nn/train-order")
    }

    /// An [`Sgd`] with this configuration's rate, momentum and weight decay.
    pub fn optimizer(&self) -> Sgd {
        Sgd::new(self.lr, self.momentum).with_weight_decay(self.weight_decay)
    }
}

/// What one epoch did.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochStats {
    pub epoch: usize,
    pub steps: usize,
    pub mean_loss: f32,
    pub seconds: f64,
}

/// One epoch over `data`: shuffled with `rng` (Fisher-Yates), mini-batches of
/// `cfg.batch` (the last one may be smaller), the learning rate set from
/// `cfg.schedule` for epoch `epoch` (0-based) of `cfg.epochs`. `progress(done,
/// total, loss)` is called after every step.
///
/// Determinism: the same model, data, configuration, RNG state and thread
/// count give bit-identical parameters (convolution gradients are summed per
/// thread chunk, so a different `--threads` may change the last bits).
#[allow(clippy::too_many_arguments)]
pub fn train_epoch<R: rand::Rng + ?Sized>(
    model: &mut Model,
    data: &Dataset,
    cfg: &TrainConfig,
    epoch: usize,
    opt: &mut Sgd,
    ws: &mut Workspace,
    rng: &mut R,
    progress: &mut dyn FnMut(usize, usize, f32),
) -> Result<EpochStats, NnError> {
    let p = model.input_size();
    if data.pixels() != p {
        return Err(NnError::Shape(format!(
            "images have {} pixels, model takes {p}",
            data.pixels()
        )));
    }
    train_epoch_on(
        model,
        &data.images,
        &data.labels,
        cfg,
        epoch,
        opt,
        ws,
        rng,
        &mut |done, total, loss| {
            progress(done, total, loss);
            true
        },
    )
}

/// [`train_epoch`] on borrowed arrays (`images`: `labels.len()` row-major
/// samples of `model.input_size()` values each), for callers that do not own a
/// [`Dataset`] (the Python bindings train on numpy arrays in place).
/// `progress` returns `false` to stop early (e.g. on Ctrl-C); the epoch then
/// ends with [`NnError::Invalid`] and the model holds the steps done so far.
/// Non-finite inputs are rejected before the first step.
#[allow(clippy::too_many_arguments)]
pub fn train_epoch_on<R: rand::Rng + ?Sized>(
    model: &mut Model,
    images: &[f32],
    labels: &[u8],
    cfg: &TrainConfig,
    epoch: usize,
    opt: &mut Sgd,
    ws: &mut Workspace,
    rng: &mut R,
    progress: &mut dyn FnMut(usize, usize, f32) -> bool,
) -> Result<EpochStats, NnError> {
    let p = model.input_size();
    if p == 0 || images.len() != labels.len() * p {
        return Err(NnError::Shape(format!(
            "{} values for {} labels are not images of {p} values, as the model takes",
            images.len(),
            labels.len()
        )));
    }
    cfg.validate()?;
    if labels.is_empty() {
        return Err(NnError::Invalid("no training examples".into()));
    }
    if let Some(i) = images.iter().position(|v| !v.is_finite()) {
        return Err(NnError::Invalid(format!(
            "input value {i} (image {}) is not finite",
            i / p
        )));
    }
    let out = model.output_size();
    let bad_label = if out > 1 {
        labels.iter().find(|&&l| l as usize >= out)
    } else {
        None
    };
    if let Some(&bad) = bad_label {
        return Err(NnError::Invalid(format!(
            "label {bad} does not fit {out} outputs"
        )));
    }
    let t0 = std::time::Instant::now();
    let n = labels.len();
    let order = ppml_random::permutation(n, rng);
    let steps = n.div_ceil(cfg.batch);
    let total_steps = (steps * cfg.epochs.max(1)) as f64;
    let mut xbuf = std::mem::take(&mut ws.xbuf);
    let mut ybuf = std::mem::take(&mut ws.ybuf);
    let mut loss_sum = 0.0f64;
    let mut stopped = false;
    let mut diverged = None;
    for (s, idx) in order.chunks(cfg.batch).enumerate() {
        let b = idx.len();
        xbuf.clear();
        ybuf.clear();
        for &i in idx {
            xbuf.extend_from_slice(&images[i * p..(i + 1) * p]);
            ybuf.push(labels[i]);
        }
        opt.lr = cfg.lr
            * cfg
                .schedule
                .factor((epoch * steps + s) as f64 / total_steps);
        let loss = opt.train_step(model, &xbuf, &ybuf, b, ws);
        loss_sum += loss as f64;
        // A non-finite loss means the parameters already are (or are about
        // to be) garbage: report it instead of returning a model that
        // quietly predicts one class.
        if !loss.is_finite() {
            diverged = Some((format!("the loss became {loss}"), s + 1, opt.lr));
            break;
        }
        if !progress(s + 1, steps, loss) {
            stopped = true;
            break;
        }
    }
    ws.xbuf = xbuf;
    ws.ybuf = ybuf;
    if diverged.is_none() && !stopped && !model.params_finite() {
        diverged = Some(("the parameters stopped being finite".into(), steps, opt.lr));
    }
    if let Some((what, step, lr)) = diverged {
        return Err(NnError::Diverged {
            what,
            epoch: epoch + 1,
            step,
            lr,
        });
    }
    if stopped {
        return Err(NnError::Invalid("training stopped by the caller".into()));
    }
    Ok(EpochStats {
        epoch,
        steps,
        mean_loss: (loss_sum / steps.max(1) as f64) as f32,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// Trains `model` on `data` for `cfg.epochs` epochs with `cfg`'s recipe
/// (shuffling from [`TrainConfig::order_rng`]); `on_epoch` sees each epoch's stats.
/// For a binary (one-output) model, only the images labelled 0 or 1 are used.
pub fn fit(
    model: &mut Model,
    data: &Dataset,
    cfg: &TrainConfig,
    on_epoch: &mut dyn FnMut(&EpochStats),
) -> Result<Vec<EpochStats>, NnError> {
    cfg.validate()?;
    let filtered;
    let data = if model.output_size() == 1 {
        filtered = data.filter_labels(&[0, 1]);
        &filtered
    } else {
        data
    };
    let mut opt = cfg.optimizer();
    let mut ws = Workspace::new();
    let mut rng = cfg.order_rng();
    let mut stats = Vec::new();
    for epoch in 0..cfg.epochs {
        let st = train_epoch(
            model,
            data,
            cfg,
            epoch,
            &mut opt,
            &mut ws,
            &mut rng,
            &mut |_, _, _| {},
        )?;
        on_epoch(&st);
        stats.push(st);
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Dataset, Model};

    #[test]
    fn a_diverging_run_is_an_error_not_a_model() {
        let data = Dataset::new(
            (0..784 * 8).map(|i| (i % 7) as f32 / 7.0).collect(),
            vec![0, 1, 2, 3, 4, 5, 6, 7],
            28,
            28,
        )
        .unwrap();
        let mut model = Model::from_arch("mlp500", 1).unwrap();
        let cfg = TrainConfig {
            lr: 1e30,
            epochs: 1,
            batch: 4,
            ..TrainConfig::default()
        };
        let e = fit(&mut model, &data, &cfg, &mut |_| {}).unwrap_err();
        assert!(matches!(e, NnError::Diverged { epoch: 1, .. }), "{e}");
        assert!(e.to_string().contains("lower the learning rate"), "{e}");
        // The same data and model train without complaint at a sane rate.
        let mut model = Model::from_arch("mlp500", 1).unwrap();
        let cfg = TrainConfig { lr: 0.01, ..cfg };
        let st = fit(&mut model, &data, &cfg, &mut |_| {}).unwrap();
        assert!(st[0].mean_loss.is_finite() && model.params_finite());
    }

    #[test]
    fn bad_hyper_parameters_are_rejected_before_training() {
        let data = Dataset::new(vec![0.5; 784 * 4], vec![0, 1, 0, 1], 28, 28).unwrap();
        let base = TrainConfig::default();
        assert!(base.validate().is_ok());
        let bad = [
            TrainConfig {
                lr: f32::NAN,
                ..base.clone()
            },
            TrainConfig {
                lr: -0.1,
                ..base.clone()
            },
            TrainConfig {
                lr: 0.0,
                ..base.clone()
            },
            TrainConfig {
                lr: f32::INFINITY,
                ..base.clone()
            },
            TrainConfig {
                momentum: 1.0,
                ..base.clone()
            },
            TrainConfig {
                momentum: f32::NAN,
                ..base.clone()
            },
            TrainConfig {
                weight_decay: -1.0,
                ..base.clone()
            },
            TrainConfig {
                batch: 0,
                ..base.clone()
            },
            TrainConfig {
                epochs: 0,
                ..base.clone()
            },
        ];
        for cfg in bad {
            let mut m = Model::from_arch("perceptron", 1).unwrap();
            let before = m.params_flat();
            let mut opt = Sgd::new(0.1, 0.0);
            let mut ws = Workspace::new();
            let r = train_epoch(
                &mut m,
                &data,
                &cfg,
                0,
                &mut opt,
                &mut ws,
                &mut cfg.order_rng(),
                &mut |_, _, _| {},
            );
            assert!(matches!(r, Err(NnError::Invalid(_))), "{cfg:?} accepted");
            assert_eq!(m.params_flat(), before, "{cfg:?} changed the model");
        }
    }

    #[test]
    fn data_order_is_public_and_reproducible() {
        let cfg = TrainConfig::default();
        let a = ppml_random::permutation(100, &mut cfg.order_rng());
        assert_eq!(a, ppml_random::permutation(100, &mut cfg.order_rng()));
        let other = TrainConfig { seed: 43, ..cfg };
        assert_ne!(a, ppml_random::permutation(100, &mut other.order_rng()));
    }
}
