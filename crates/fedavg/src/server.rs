//! The server side: the global model, client sampling, applying the aggregated
//! update (optionally with server momentum, FedAvgM), and run-level bookkeeping.

use crate::FedError;
use crate::aggregate::{AggregateInfo, Aggregator, ClientUpdate};
use ppml_random::PublicSeed;
use rand::CryptoRng;
use serde::{Deserialize, Serialize};

/// Number of clients sampled per round: `max(1, round(C * K))` (as the reference
/// implementation; McMahan et al. write `max(C K, 1)`).
pub fn clients_per_round(clients: usize, fraction: f64) -> usize {
    ((fraction * clients as f64).round() as usize).clamp(1, clients.max(1))
}

/// The clients sampled in `round` (1-based) of a run WITHOUT differential
/// privacy: a fixed-size sample without replacement, sorted, drawn from the
/// public `seed` (label `fedavg/sample/{round}`), so runs are reproducible.
/// DP runs use [`poisson_sample`] instead.
pub fn sample_clients(clients: usize, fraction: f64, seed: u64, round: usize) -> Vec<usize> {
    let m = clients_per_round(clients, fraction);
    let mut rng = PublicSeed::new(seed).rng(&format!("fedavg/sample/{round}"));
    let mut ids = ppml_random::permutation(clients, &mut rng);
    ids.truncate(m);
    ids.sort_unstable();
    ids
}

/// Poisson sampling for DP runs: every one of `clients` clients joins
/// independently with probability `q`, decided by `rng`, which must be
/// secret (the OS CSPRNG): the accountant's amplification by sampling
/// assumes nobody but the trusted server knows who took part. The sample may
/// be empty. Sorted.
pub fn poisson_sample<R: CryptoRng + ?Sized>(
    clients: usize,
    q: f64,
    rng: &mut R,
) -> Result<Vec<usize>, FedError> {
    let mut out = Vec::new();
    for k in 0..clients {
        if ppml_random::bernoulli_f64(rng, q).map_err(|e| FedError::Config(e.to_string()))? {
            out.push(k);
        }
    }
    Ok(out)
}

/// Server-side options.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ServerConfig {
    /// Server learning rate applied to the averaged update (1 = plain FedAvg).
    pub server_lr: f32,
    /// Server momentum beta (FedAvgM, Hsu et al. 2019): `v = beta v + avg; w += server_lr v`.
    pub momentum: f32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            server_lr: 1.0,
            momentum: 0.0,
        }
    }
}

impl ServerConfig {
    /// A finite positive server learning rate and a momentum in `[0, 1)`.
    pub fn validate(&self) -> Result<(), FedError> {
        if !(self.server_lr > 0.0 && self.server_lr.is_finite()) {
            return Err(FedError::Config(format!(
                "server learning rate must be positive, got {}",
                self.server_lr
            )));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(FedError::Config(format!(
                "server momentum must be in [0, 1), got {}",
                self.momentum
            )));
        }
        Ok(())
    }
}

/// The global model and the aggregation step.
pub struct Server {
    /// Global parameters (flat, like `Model::params_flat`).
    pub global: Vec<f32>,
    cfg: ServerConfig,
    aggregator: Box<dyn Aggregator>,
    avg: Vec<f32>,
    velocity: Vec<f32>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("params", &self.global.len())
            .field("cfg", &self.cfg)
            .field("aggregator", &self.aggregator.name())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server starting from `global` with the given aggregation.
    pub fn new(
        global: Vec<f32>,
        cfg: ServerConfig,
        aggregator: Box<dyn Aggregator>,
    ) -> Result<Self, FedError> {
        cfg.validate()?;
        let n = global.len();
        Ok(Server {
            global,
            cfg,
            aggregator,
            avg: vec![0.0; n],
            velocity: if cfg.momentum > 0.0 {
                vec![0.0; n]
            } else {
                Vec::new()
            },
        })
    }

    /// Name of the aggregation in use.
    pub fn aggregator_name(&self) -> String {
        self.aggregator.name()
    }

    /// The aggregation in use.
    pub fn aggregator(&self) -> &dyn Aggregator {
        self.aggregator.as_ref()
    }

    /// Aggregates the round's updates and moves the global model.
    pub fn apply(
        &mut self,
        round: usize,
        updates: &[ClientUpdate<'_>],
    ) -> Result<AggregateInfo, FedError> {
        // A non-finite update (a client whose training diverged) costs only
        // that client: it is treated as dropped, and the round goes on.
        let bad = updates
            .iter()
            .any(|u| !u.dropped && u.delta.iter().any(|x| !x.is_finite()));
        let info = if bad {
            let cleaned: Vec<ClientUpdate<'_>> = updates
                .iter()
                .map(|u| ClientUpdate {
                    dropped: u.dropped || u.delta.iter().any(|x| !x.is_finite()),
                    ..*u
                })
                .collect();
            if cleaned.iter().all(|u| u.dropped) {
                return Err(FedError::Aggregate(format!(
                    "round {round}: every client's update is not finite (local training \
                     diverged; lower the learning rate)"
                )));
            }
            self.aggregator.aggregate(round, &cleaned, &mut self.avg)?
        } else {
            self.aggregator.aggregate(round, updates, &mut self.avg)?
        };
        self.step(round)?;
        Ok(info)
    }

    /// Moves the global model by an average computed elsewhere (the unmasked
    /// result of secure aggregation over the network), with the same server
    /// learning rate and momentum as [`Server::apply`].
    pub fn apply_average(&mut self, round: usize, avg: &[f32]) -> Result<(), FedError> {
        if avg.len() != self.avg.len() {
            return Err(FedError::Aggregate(format!(
                "round {round}: average of {} values, the model has {}",
                avg.len(),
                self.avg.len()
            )));
        }
        self.avg.copy_from_slice(avg);
        self.step(round)
    }

    fn step(&mut self, round: usize) -> Result<(), FedError> {
        if let Some(bad) = self.avg.iter().position(|x| !x.is_finite()) {
            return Err(FedError::Aggregate(format!(
                "round {round}: the averaged update is not finite at coordinate {bad} (learning rate too high?)"
            )));
        }
        let lr = self.cfg.server_lr;
        if self.cfg.momentum > 0.0 {
            let b = self.cfg.momentum;
            for ((w, v), &d) in self
                .global
                .iter_mut()
                .zip(self.velocity.iter_mut())
                .zip(&self.avg)
            {
                *v = b * *v + d;
                *w += lr * *v;
            }
        } else {
            for (w, &d) in self.global.iter_mut().zip(&self.avg) {
                *w += lr * d;
            }
        }
        Ok(())
    }
}

/// One round's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundStats {
    /// 1-based round number.
    pub round: usize,
    /// Clients sampled.
    pub sampled: Vec<usize>,
    /// Sampled clients whose update was not aggregated (dropout, disconnect, timeout).
    pub dropped: Vec<usize>,
    /// Why each dropped client was dropped (same order as `dropped`).
    pub drop_reasons: Vec<String>,
    /// Training of the sampled clients plus aggregation, in seconds (no evaluation).
    pub seconds: f64,
    /// CPU time the whole process spent on the round's training and aggregation
    /// (all threads; Linux only, else NaN). On a loaded machine this is the
    /// figure that does not depend on how much CPU other processes took.
    pub cpu_seconds: f64,
    /// Evaluation time (not in `seconds`).
    pub eval_seconds: f64,
    /// Test accuracy of the global model after the round (NaN if not evaluated).
    pub accuracy: f64,
    /// Mean local training loss of the contributing clients, weighted by examples.
    pub train_loss: f64,
    /// Bytes on the wire this round (model down + updates up, with framing):
    /// measured over TCP, computed as if sent for in-process runs.
    pub bytes: u64,
    /// Differential privacy spent after this round (epsilon at the
    /// aggregator's delta), if the aggregation is differentially private.
    pub epsilon: Option<f64>,
    /// Clients that joined for the first time before this round (network runs).
    #[serde(default)]
    pub joined: Vec<usize>,
    /// Clients that reconnected before this round after leaving (network runs).
    #[serde(default)]
    pub rejoined: Vec<usize>,
    /// Why the round was aborted without changing the model (secure
    /// aggregation below its threshold), if it was.
    #[serde(default)]
    pub aborted: Option<String>,
}

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RunSummary {
    pub rounds: Vec<RoundStats>,
    /// First round (1-based) whose accuracy reached the target, if any.
    pub rounds_to_target: Option<usize>,
    /// The global parameters at the end (filled by the network server).
    #[serde(skip)]
    pub final_params: Vec<f32>,
}

impl RunSummary {
    /// Test accuracy after each round (NaN for rounds not evaluated).
    pub fn accuracy_per_round(&self) -> Vec<f64> {
        self.rounds.iter().map(|r| r.accuracy).collect()
    }

    /// Accuracy after the last evaluated round (NaN if none).
    pub fn final_accuracy(&self) -> f64 {
        self.rounds
            .iter()
            .rev()
            .map(|r| r.accuracy)
            .find(|a| !a.is_nan())
            .unwrap_or(f64::NAN)
    }

    /// Median of the round times (training + aggregation).
    pub fn round_seconds_median(&self) -> f64 {
        median(self.rounds.iter().map(|r| r.seconds).collect())
    }

    /// Median CPU seconds per round (NaN where unavailable).
    pub fn round_cpu_seconds_median(&self) -> f64 {
        median(self.rounds.iter().map(|r| r.cpu_seconds).collect())
    }

    /// Median bytes per round.
    pub fn bytes_per_round(&self) -> u64 {
        median(self.rounds.iter().map(|r| r.bytes as f64).collect()) as u64
    }
}

/// Median (NaN for an empty list).
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// CPU time consumed so far by all threads of this process, in seconds, from
/// `/proc/self/task/*/schedstat` (nanosecond resolution). `None` off Linux.
pub fn process_cpu_seconds() -> Option<f64> {
    let mut total: u64 = 0;
    for t in std::fs::read_dir("/proc/self/task").ok()? {
        let Ok(t) = t else { continue };
        // A thread may exit between listing and reading: skip it.
        if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat"))
            && let Some(ns) = s
                .split_whitespace()
                .next()
                .and_then(|x| x.parse::<u64>().ok())
        {
            total += ns;
        }
    }
    Some(total as f64 * 1e-9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diverged_updates_cost_their_clients_and_all_diverged_names_the_cause() {
        let agg = || Box::new(crate::aggregate::WeightedAverage);
        let good = [0.5f32, -0.5];
        let nan = [f32::NAN, 0.0];
        let up = |client, delta| ClientUpdate {
            client,
            delta,
            weight: 1.0,
            dropped: false,
        };
        let mut s = Server::new(vec![0.0; 2], ServerConfig::default(), agg()).unwrap();
        s.apply(1, &[up(0, &good[..]), up(1, &nan[..])]).unwrap();
        assert!(s.global.iter().all(|w| w.is_finite()) && s.global != [0.0, 0.0]);
        let mut s = Server::new(vec![0.0; 2], ServerConfig::default(), agg()).unwrap();
        let e = s.apply(1, &[up(0, &nan[..]), up(1, &nan[..])]).unwrap_err();
        assert!(e.to_string().contains("diverged"), "{e}");
    }

    #[test]
    fn poisson_sample_is_independent_bernoulli() {
        let mut rng = ppml_random::insecure_deterministic_rng(1, "test/poisson");
        let (n, q, rounds) = (200, 0.1, 2000);
        let mut per_client = vec![0usize; n];
        let mut sizes = Vec::new();
        for _ in 0..rounds {
            let s = poisson_sample(n, q, &mut rng).unwrap();
            assert!(s.windows(2).all(|w| w[0] < w[1]));
            sizes.push(s.len() as f64);
            for k in s {
                per_client[k] += 1;
            }
        }
        // Size ~ Binomial(n, q): mean nq = 20, variance nq(1-q) = 18.
        let mean = sizes.iter().sum::<f64>() / rounds as f64;
        let var = sizes.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (rounds - 1) as f64;
        assert!(
            (mean - 20.0).abs() < 5.0 * (18.0 / rounds as f64).sqrt(),
            "mean {mean}"
        );
        assert!((var / 18.0 - 1.0).abs() < 0.15, "variance {var}");
        // Every client joins ~ q of the rounds.
        let e = rounds as f64 * q;
        let sd = (e * (1.0 - q)).sqrt();
        assert!(per_client.iter().all(|&c| (c as f64 - e).abs() < 5.0 * sd));
        // A fixed-size sampler would never produce an empty round at q = 0.01 of 50.
        let empties = (0..500)
            .filter(|_| poisson_sample(50, 0.01, &mut rng).unwrap().is_empty())
            .count();
        assert!(
            empties > 200,
            "{empties} empty rounds of 500 (expected ~303)"
        );
        assert!(poisson_sample(5, 1.5, &mut rng).is_err());
    }
}
