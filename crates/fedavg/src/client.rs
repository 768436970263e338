//! The client side: local training from the global model on a client's own
//! examples, producing the update `w_local - w_global`.

use crate::FedError;
use ppml_nn::{Dataset, Model, Workspace};
use ppml_random::{PublicSeed, shuffle};
use serde::{Deserialize, Serialize};

/// What a client does with the global model each round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Mode {
    /// FedAvg: `epochs` passes of mini-batch SGD (batch `batch`) over the local data.
    #[default]
    FedAvg,
    /// FedSGD: one gradient step per round, on the gradient of the loss over the
    /// whole local dataset (computed in chunks of `batch`), scaled by `lr`.
    /// With equal weights this is large-batch SGD on the union of the clients' data.
    FedSgd,
}

impl std::str::FromStr for Mode {
    type Err = FedError;
    fn from_str(s: &str) -> Result<Self, FedError> {
        match s {
            "fedavg" => Ok(Mode::FedAvg),
            "fedsgd" => Ok(Mode::FedSgd),
            o => Err(FedError::Config(format!(
                "unknown mode `{o}` (fedavg or fedsgd)"
            ))),
        }
    }
}

/// Local training hyper-parameters (sent by the server to the clients).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LocalConfig {
    pub mode: Mode,
    /// Local epochs E (FedAvg mode).
    pub epochs: usize,
    /// Mini-batch size B; 0 means the whole local dataset ("B = infinity").
    pub batch: usize,
    /// Learning rate of plain SGD (no momentum, as McMahan et al.).
    pub lr: f32,
    /// FedProx proximal coefficient: the local loss gets `mu/2 ||w - w_global||^2` (0 = FedAvg).
    pub mu: f32,
}

impl Default for LocalConfig {
    /// McMahan's 2NN setting: E=1, B=10, lr 0.1.
    fn default() -> Self {
        LocalConfig {
            mode: Mode::FedAvg,
            epochs: 1,
            batch: 10,
            lr: 0.1,
            mu: 0.0,
        }
    }
}

impl LocalConfig {
    /// Checks the values.
    pub fn validate(&self) -> Result<(), FedError> {
        if self.mode == Mode::FedAvg && self.epochs == 0 {
            return Err(FedError::Config("local epochs must be at least 1".into()));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(FedError::Config(format!(
                "learning rate must be positive, got {}",
                self.lr
            )));
        }
        if !(self.mu >= 0.0 && self.mu.is_finite()) {
            return Err(FedError::Config(format!(
                "FedProx mu must be >= 0, got {}",
                self.mu
            )));
        }
        Ok(())
    }
}

/// What one local training did.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LocalStats {
    /// Examples the client holds (its weight in the average).
    pub examples: usize,
    /// SGD steps taken.
    pub steps: usize,
    /// Mean training loss over the steps.
    pub mean_loss: f32,
}

/// A reusable local trainer: one model copy, one [`Workspace`] and batch
/// buffers, all allocated once and reused round after round, so the round
/// loop allocates nothing per step.
#[derive(Debug, Clone)]
pub struct LocalTrainer {
    model: Model,
    ws: Workspace,
    xbuf: Vec<f32>,
    ybuf: Vec<u8>,
    order: Vec<usize>,
    gacc: Vec<f32>,
    delta: Vec<f32>,
}

/// Public seed of client `client`'s data order in round `round`: the run's
/// seed through the label `fedavg/client-order/{round}/{client}`
/// ([`PublicSeed::derive_u64`]). The server sends it to TCP clients, so it
/// must stay a public choice.
pub fn client_seed(seed: u64, round: usize, client: usize) -> u64 {
    PublicSeed::new(seed).derive_u64(&format!("fedavg/client-order/{round}/{client}"))
}

impl LocalTrainer {
    /// A trainer for models shaped like `template` (its weights are overwritten each round).
    pub fn new(template: &Model) -> Self {
        let n = template.num_params();
        LocalTrainer {
            model: template.clone(),
            ws: Workspace::new(),
            xbuf: Vec::new(),
            ybuf: Vec::new(),
            order: Vec::new(),
            gacc: Vec::new(),
            delta: vec![0.0; n],
        }
    }

    /// The update of the last [`LocalTrainer::train`]: `w_local - w_global`.
    pub fn delta(&self) -> &[f32] {
        &self.delta
    }

    /// Number of model parameters.
    pub fn num_params(&self) -> usize {
        self.delta.len()
    }

    /// Trains from `global` on the examples `indices` of `data`, with shuffling
    /// seeded by `seed`; the update is then in [`LocalTrainer::delta`].
    pub fn train(
        &mut self,
        global: &[f32],
        data: &Dataset,
        indices: &[usize],
        cfg: &LocalConfig,
        seed: u64,
    ) -> Result<LocalStats, FedError> {
        cfg.validate()?;
        if indices.is_empty() {
            return Err(FedError::Config("a client holds no examples".into()));
        }
        if data.pixels() != self.model.input_size() {
            return Err(FedError::Config(format!(
                "images have {} pixels, model {} takes {}",
                data.pixels(),
                self.model.arch,
                self.model.input_size()
            )));
        }
        let out = self.model.output_size();
        if let Some(&i) = indices.iter().find(|&&i| i >= data.len()) {
            return Err(FedError::Config(format!(
                "example index {i} out of range ({} examples)",
                data.len()
            )));
        }
        if let Some(&i) = indices.iter().find(|&&i| data.labels[i] as usize >= out) {
            return Err(FedError::Config(format!(
                "label {} does not fit {out} outputs",
                data.labels[i]
            )));
        }
        self.model.set_params_flat(global)?;
        let n = indices.len();
        let batch = if cfg.batch == 0 { n } else { cfg.batch.min(n) };
        let stats = match cfg.mode {
            Mode::FedAvg => self.train_fedavg(global, data, indices, cfg, batch, seed),
            Mode::FedSgd => self.train_fedsgd(global, data, indices, cfg, batch),
        };
        // delta = w_local - w_global
        let delta = &mut self.delta;
        let mut off = 0;
        self.model.for_each_param_mut(|p| {
            for ((d, &w), &g) in delta[off..off + p.len()]
                .iter_mut()
                .zip(p.iter())
                .zip(&global[off..off + p.len()])
            {
                *d = w - g;
            }
            off += p.len();
        });
        Ok(stats)
    }

    fn load_batch(&mut self, data: &Dataset, range: std::ops::Range<usize>) {
        self.xbuf.clear();
        self.ybuf.clear();
        for &i in &self.order[range] {
            self.xbuf.extend_from_slice(data.image(i));
            self.ybuf.push(data.labels[i]);
        }
    }

    fn train_fedavg(
        &mut self,
        global: &[f32],
        data: &Dataset,
        indices: &[usize],
        cfg: &LocalConfig,
        batch: usize,
        seed: u64,
    ) -> LocalStats {
        let n = indices.len();
        let mut rng = PublicSeed::new(seed).rng("fedavg/local-order");
        self.order.clear();
        self.order.extend_from_slice(indices);
        let (lr, mu) = (cfg.lr, cfg.mu);
        let mut steps = 0;
        let mut loss_sum = 0.0f64;
        for _ in 0..cfg.epochs {
            shuffle(&mut self.order, &mut rng);
            let mut s = 0;
            while s < n {
                let e = (s + batch).min(n);
                self.load_batch(data, s..e);
                let loss = self
                    .model
                    .loss_and_grad_ws(&self.xbuf, &self.ybuf, e - s, &mut self.ws);
                loss_sum += loss as f64;
                steps += 1;
                // Fused SGD step (with FedProx's proximal gradient mu (w - w_global)).
                let g = &self.ws.grads.flat;
                let mut off = 0;
                if mu == 0.0 {
                    self.model.for_each_param_mut(|p| {
                        let len = p.len();
                        for (w, &gi) in p.iter_mut().zip(&g[off..off + len]) {
                            *w -= lr * gi;
                        }
                        off += len;
                    });
                } else {
                    self.model.for_each_param_mut(|p| {
                        let len = p.len();
                        for ((w, &gi), &w0) in p
                            .iter_mut()
                            .zip(&g[off..off + len])
                            .zip(&global[off..off + len])
                        {
                            *w -= lr * (gi + mu * (*w - w0));
                        }
                        off += len;
                    });
                }
                s = e;
            }
        }
        LocalStats {
            examples: n,
            steps,
            mean_loss: (loss_sum / steps.max(1) as f64) as f32,
        }
    }

    fn train_fedsgd(
        &mut self,
        _global: &[f32],
        data: &Dataset,
        indices: &[usize],
        cfg: &LocalConfig,
        batch: usize,
    ) -> LocalStats {
        // One step on the full local gradient: sum over chunks of (chunk/n) * mean-gradient.
        let n = indices.len();
        self.order.clear();
        self.order.extend_from_slice(indices);
        self.gacc.clear();
        self.gacc.resize(self.delta.len(), 0.0);
        let mut loss_sum = 0.0f64;
        let mut s = 0;
        while s < n {
            let e = (s + batch).min(n);
            self.load_batch(data, s..e);
            let loss = self
                .model
                .loss_and_grad_ws(&self.xbuf, &self.ybuf, e - s, &mut self.ws);
            let a = (e - s) as f32 / n as f32;
            loss_sum += loss as f64 * (e - s) as f64;
            for (acc, &g) in self.gacc.iter_mut().zip(&self.ws.grads.flat) {
                *acc += a * g;
            }
            s = e;
        }
        // The proximal term is zero at w = w_global, so FedProx changes nothing here.
        let lr = cfg.lr;
        let g = &self.gacc;
        let mut off = 0;
        self.model.for_each_param_mut(|p| {
            let len = p.len();
            for (w, &gi) in p.iter_mut().zip(&g[off..off + len]) {
                *w -= lr * gi;
            }
            off += len;
        });
        LocalStats {
            examples: n,
            steps: 1,
            mean_loss: (loss_sum / n as f64) as f32,
        }
    }
}
