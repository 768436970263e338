//! In-process simulation: the server and all clients in one process, the
//! sampled clients trained in parallel with rayon.

use crate::FedError;
use crate::aggregate::{Aggregator, ClientUpdate};
use crate::client::{LocalConfig, LocalStats, LocalTrainer, client_seed};
use crate::server::{
    RoundStats, RunSummary, Server, ServerConfig, clients_per_round, poisson_sample, sample_clients,
};
use ppml_nn::{Dataset, Model};
use ppml_random::{PublicSeed, SecretRng, SecretSource};
use rayon::prelude::*;
use std::time::Instant;

/// Settings of a federated run.
#[derive(Debug, Clone, PartialEq)]
pub struct FedConfig {
    /// Fraction C of the clients sampled each round (at least one client is).
    /// With an aggregator that needs Poisson sampling (DP), its own rate is
    /// used instead and a round may have no client.
    pub fraction: f64,
    /// Number of rounds.
    pub rounds: usize,
    /// Local training.
    pub local: LocalConfig,
    /// Server learning rate and momentum.
    pub server: ServerConfig,
    /// Public seed of client sampling (runs without DP), local data order and
    /// simulated dropouts. Never used for secrets.
    pub seed: u64,
    /// Accuracy target for `rounds_to_target`.
    pub target: Option<f64>,
    /// Stop as soon as the target is reached.
    pub stop_at_target: bool,
    /// Simulated dropout: this fraction of the sampled clients (rounded down,
    /// chosen at random each round) trains but never delivers its update.
    pub dropout: f64,
    /// Evaluate every this many rounds (and after the last); other rounds
    /// report NaN accuracy. 1 = every round.
    pub eval_every: usize,
}

impl Default for FedConfig {
    /// McMahan's 2NN setting: C = 0.1, E = 1, B = 10, lr 0.1, 50 rounds.
    fn default() -> Self {
        FedConfig {
            fraction: 0.1,
            rounds: 50,
            local: LocalConfig::default(),
            server: ServerConfig::default(),
            seed: 42,
            target: None,
            stop_at_target: false,
            dropout: 0.0,
            eval_every: 1,
        }
    }
}

impl FedConfig {
    /// Checks the values.
    pub fn validate(&self) -> Result<(), FedError> {
        self.local.validate()?;
        self.server.validate()?;
        if self.rounds == 0 {
            return Err(FedError::Config("at least one round is needed".into()));
        }
        if !(self.fraction > 0.0 && self.fraction <= 1.0) {
            return Err(FedError::Config(format!(
                "client fraction must be in (0, 1], got {}",
                self.fraction
            )));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(FedError::Config(format!(
                "dropout must be in [0, 1), got {}",
                self.dropout
            )));
        }
        Ok(())
    }
}

/// Which of the `m` sampled slots drop out in `round` (a public, simulated
/// choice from `seed`, label `fedavg/dropout/{round}`).
pub fn dropout_mask(m: usize, dropout: f64, seed: u64, round: usize) -> Vec<bool> {
    let k = (dropout * m as f64).floor() as usize;
    let mut mask = vec![false; m];
    if k == 0 {
        return mask;
    }
    let mut rng = PublicSeed::new(seed).rng(&format!("fedavg/dropout/{round}"));
    let ids = ppml_random::permutation(m, &mut rng);
    for &i in &ids[..k.min(m - 1)] {
        mask[i] = true;
    }
    mask
}

/// Wire bytes of one parameter vector in a frame (4-byte header + 4 bytes per value).
pub fn param_frame_bytes(num_params: usize) -> u64 {
    4 + 4 * num_params as u64
}

/// Server and clients in one process.
pub struct Simulation<'a> {
    cfg: FedConfig,
    train: &'a Dataset,
    test: Option<&'a Dataset>,
    parts: Vec<Vec<usize>>,
    trainers: Vec<LocalTrainer>,
    stats: Vec<Result<LocalStats, FedError>>,
    server: Server,
    eval_model: Model,
    /// Secret randomness of Poisson sampling (DP runs): the OS.
    sampling_rng: SecretRng,
}

impl std::fmt::Debug for Simulation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulation")
            .field("cfg", &self.cfg)
            .field("clients", &self.parts.len())
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl<'a> Simulation<'a> {
    /// A simulation of `parts.len()` clients (client `k` holds examples
    /// `parts[k]` of `train`), starting from `model`'s weights. `test`, if
    /// given, is evaluated after every round.
    pub fn new(
        model: Model,
        train: &'a Dataset,
        test: Option<&'a Dataset>,
        parts: Vec<Vec<usize>>,
        cfg: FedConfig,
        aggregator: Box<dyn Aggregator>,
    ) -> Result<Self, FedError> {
        cfg.validate()?;
        if parts.is_empty() {
            return Err(FedError::Config("at least one client is needed".into()));
        }
        if let Some(k) = parts.iter().position(Vec::is_empty) {
            return Err(FedError::Config(format!("client {k} holds no examples")));
        }
        if let Some(&i) = parts.iter().flatten().find(|&&i| i >= train.len()) {
            return Err(FedError::Config(format!(
                "partition index {i} out of range ({} training examples)",
                train.len()
            )));
        }
        let m = match aggregator.poisson_rate() {
            // Expected sample size; more trainers are added if a round needs them.
            Some(q) => ((q * parts.len() as f64).ceil() as usize).min(parts.len()),
            None => clients_per_round(parts.len(), cfg.fraction),
        };
        let trainers = (0..m).map(|_| LocalTrainer::new(&model)).collect();
        let server = Server::new(model.params_flat(), cfg.server, aggregator)?;
        let sampling_rng = SecretSource::Os
            .try_rng("fedavg/poisson-sampling")
            .map_err(|e| FedError::Config(e.to_string()))?;
        Ok(Simulation {
            cfg,
            train,
            test,
            parts,
            trainers,
            stats: Vec::with_capacity(m),
            server,
            eval_model: model,
            sampling_rng,
        })
    }

    /// **INSECURE** (tests only): Poisson sampling from `secrets` instead of the OS.
    pub fn with_sampling_secrets(mut self, secrets: SecretSource) -> Self {
        self.sampling_rng = secrets.rng("fedavg/poisson-sampling");
        self
    }

    /// The configuration.
    pub fn config(&self) -> &FedConfig {
        &self.cfg
    }

    /// The global parameters.
    pub fn global(&self) -> &[f32] {
        &self.server.global
    }

    /// The global model.
    pub fn model(&mut self) -> Result<Model, FedError> {
        self.eval_model.set_params_flat(&self.server.global)?;
        Ok(self.eval_model.clone())
    }

    /// Name of the aggregation in use.
    pub fn aggregator_name(&self) -> String {
        self.server.aggregator_name()
    }

    /// `(epsilon, delta)` spent so far if the aggregation is differentially private.
    pub fn privacy_spent(&self) -> Option<(f64, f64)> {
        self.server.aggregator().privacy_spent()
    }

    /// Runs round `round` (1-based): sample, train in parallel, aggregate, evaluate.
    pub fn round(&mut self, round: usize) -> Result<RoundStats, FedError> {
        let t0 = Instant::now();
        let c0 = crate::server::process_cpu_seconds();
        let sampled = match self.server.aggregator().poisson_rate() {
            Some(q) => poisson_sample(self.parts.len(), q, &mut self.sampling_rng)?,
            None => sample_clients(self.parts.len(), self.cfg.fraction, self.cfg.seed, round),
        };
        while self.trainers.len() < sampled.len() {
            self.trainers.push(LocalTrainer::new(&self.eval_model));
        }
        let (global, train, parts, local, seed) = (
            &self.server.global,
            self.train,
            &self.parts,
            &self.cfg.local,
            self.cfg.seed,
        );
        self.trainers
            .par_iter_mut()
            .zip(sampled.par_iter())
            .map(|(t, &k)| t.train(global, train, &parts[k], local, client_seed(seed, round, k)))
            .collect_into_vec(&mut self.stats);
        let mask = dropout_mask(sampled.len(), self.cfg.dropout, seed, round);
        let mut loss = 0.0;
        let mut weight = 0.0;
        let mut updates = Vec::with_capacity(sampled.len());
        for (i, (&k, st)) in sampled.iter().zip(&self.stats).enumerate() {
            let st = match st {
                Ok(s) => *s,
                Err(e) => return Err(FedError::Client(k, e.to_string())),
            };
            if !mask[i] {
                loss += st.mean_loss as f64 * st.examples as f64;
                weight += st.examples as f64;
            }
            updates.push(ClientUpdate {
                client: k,
                delta: self.trainers[i].delta(),
                weight: st.examples as f64,
                dropped: mask[i],
            });
        }
        let info = self.server.apply(round, &updates)?;
        let seconds = t0.elapsed().as_secs_f64();
        let cpu_seconds = match (c0, crate::server::process_cpu_seconds()) {
            (Some(a), Some(b)) => b - a,
            _ => f64::NAN,
        };
        let p = self.server.global.len();
        // Model down to every sampled client; up: the plain updates, or the secure
        // aggregation protocol's own traffic (masked inputs included) when it reports it.
        let up = if info.protocol_bytes > 0 {
            info.protocol_bytes
        } else {
            param_frame_bytes(p) * info.contributors.len() as u64
        };
        let bytes = param_frame_bytes(p) * sampled.len() as u64 + up;
        let t1 = Instant::now();
        let due = round.is_multiple_of(self.cfg.eval_every.max(1)) || round == self.cfg.rounds;
        let accuracy = match self.test {
            Some(test) if due => {
                self.eval_model.set_params_flat(&self.server.global)?;
                self.eval_model.evaluate(test)
            }
            _ => f64::NAN,
        };
        Ok(RoundStats {
            round,
            drop_reasons: info
                .dropped
                .iter()
                .map(|_| "simulated dropout".into())
                .collect(),
            sampled,
            dropped: info.dropped,
            seconds,
            cpu_seconds,
            eval_seconds: t1.elapsed().as_secs_f64(),
            accuracy,
            // NaN when no client trained (an empty Poisson round).
            train_loss: if weight > 0.0 {
                loss / weight
            } else {
                f64::NAN
            },
            bytes,
            epsilon: self.server.aggregator().privacy_spent().map(|(e, _)| e),
            joined: Vec::new(),
            rejoined: Vec::new(),
            aborted: None,
        })
    }

    /// Runs all rounds, calling `on_round` after each.
    pub fn run(&mut self, on_round: &mut dyn FnMut(&RoundStats)) -> Result<RunSummary, FedError> {
        let mut summary = RunSummary::default();
        for r in 1..=self.cfg.rounds {
            let st = self.round(r)?;
            on_round(&st);
            let hit = self.cfg.target.is_some_and(|t| st.accuracy >= t);
            if hit && summary.rounds_to_target.is_none() {
                summary.rounds_to_target = Some(r);
            }
            summary.rounds.push(st);
            if hit && self.cfg.stop_at_target {
                break;
            }
        }
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DpAggregator;
    use crate::dp::DpConfig;
    use ppml_nn::{Layer, Linear};

    /// 40 tiny 2x2 images of two classes, 20 clients of 2 examples, a 4-2 linear model.
    fn setup() -> (Model, Dataset, Vec<Vec<usize>>) {
        let mut images = Vec::new();
        let mut labels = Vec::new();
        for i in 0..40 {
            let c = (i % 2) as u8;
            let v = if c == 1 { 1.0 } else { 0.0 };
            images.extend_from_slice(&[v, v, 1.0 - v, 1.0 - v]);
            labels.push(c);
        }
        let data = Dataset::new(images, labels, 2, 2).unwrap();
        let mut rng = PublicSeed::new(1).rng("test/init");
        let model = Model {
            arch: "tiny".into(),
            input_shape: vec![4],
            layers: vec![Layer::Linear(Linear::new(4, 2, &mut rng))],
        };
        let parts = (0..20).map(|k| vec![2 * k, 2 * k + 1]).collect();
        (model, data, parts)
    }

    #[test]
    fn dp_runs_sample_by_poisson_and_survive_empty_rounds() {
        let (model, data, parts) = setup();
        // q = 0.05 of 20 clients: one expected, P(empty round) = 0.95^20 = 0.36.
        let dp = DpAggregator::new(DpConfig::new(1.0, 1.0, 1e-5).unwrap(), 0.05, 20).unwrap();
        let cfg = FedConfig {
            fraction: 0.5, // ignored: the DP aggregator's own rate decides
            rounds: 40,
            ..FedConfig::default()
        };
        let mut sim = Simulation::new(model, &data, None, parts, cfg, Box::new(dp)).unwrap();
        let summary = sim.run(&mut |_| {}).unwrap();
        let sizes: Vec<usize> = summary.rounds.iter().map(|r| r.sampled.len()).collect();
        // Not a fixed-size sample: sizes vary, some rounds are empty, none near 0.5 * 20.
        assert!(sizes.contains(&0), "no empty round in {sizes:?}");
        assert!(sizes.iter().any(|&s| s > 0), "{sizes:?}");
        assert!(sizes.iter().all(|&s| s <= 6), "{sizes:?}");
        assert!(summary.rounds.iter().all(|r| r.epsilon.is_some()));
        assert!(sim.global().iter().all(|w| w.is_finite()));
    }

    #[test]
    fn dp_runs_with_the_same_seed_release_different_models() {
        let run = || {
            let (model, data, parts) = setup();
            let dp = DpAggregator::new(DpConfig::new(1.0, 1.0, 1e-5).unwrap(), 0.5, 20).unwrap();
            let cfg = FedConfig {
                rounds: 2,
                ..FedConfig::default()
            };
            let mut sim = Simulation::new(model, &data, None, parts, cfg, Box::new(dp)).unwrap();
            sim.run(&mut |_| {}).unwrap();
            sim.global().to_vec()
        };
        assert_ne!(run(), run());
    }

    #[test]
    fn runs_without_dp_are_reproducible_from_the_public_seed() {
        let run = |seed| {
            let (model, data, parts) = setup();
            let cfg = FedConfig {
                rounds: 2,
                seed,
                ..FedConfig::default()
            };
            let mut sim = Simulation::new(
                model,
                &data,
                None,
                parts,
                cfg,
                Box::new(crate::WeightedAverage),
            )
            .unwrap();
            let s = sim.run(&mut |_| {}).unwrap();
            (sim.global().to_vec(), s.rounds[0].sampled.clone())
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3).1, run(4).1);
    }
}
