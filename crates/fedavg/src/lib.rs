//! # ppml-fedavg: federated averaging
//!
//! Federated averaging as McMahan et al. (2017, "Communication-Efficient
//! Learning of Deep Networks from Decentralized Data") define it: a server
//! holds the global model; each round it samples a fraction C of the K
//! clients (at least one, from the public seed; Poisson sampling from the OS
//! in DP runs), each sampled client trains E local epochs
//! of mini-batch SGD (batch B, learning rate lr) from the global weights on its
//! own examples and returns its update and example count, and the server adds
//! the average of the updates weighted by example count.
//!
//! - [`partition`]: IID, McMahan's pathological non-IID shards, Dirichlet label
//!   skew, contiguous halves (seed 002), log-normal unbalanced sizes.
//! - [`client::LocalTrainer`]: allocation-free local training (FedAvg, FedSGD,
//!   FedProx's proximal term `mu`).
//! - [`aggregate::Aggregator`]: the pluggable aggregation step;
//!   [`aggregate::WeightedAverage`] is FedAvg's, [`aggregate::DpAggregator`]
//!   DP-FedAvg's (clipping, Gaussian noise, RDP accountant from [`dp`]).
//! - [`secure::SecureAggregator`]: the same average through secure aggregation
//!   (ppml-secagg): clients submit `(a_k delta_k, a_k)`, the server divides sums.
//! - [`server::Server`]: global model, sampling, server learning rate and
//!   momentum (FedAvgM).
//! - [`sim::Simulation`]: everything in one process, sampled clients trained in
//!   parallel with rayon.
//! - [`net`]: the same protocol over TCP (ppml-net), one server and client
//!   processes; a client that disconnects or times out is dropped from the
//!   round and reported, and the round goes on.
//!
//! ```
//! use ppml_fedavg::{FedConfig, Partition, Simulation, WeightedAverage};
//! use ppml_nn::{Dataset, Model};
//!
//! # fn main() -> Result<(), ppml_fedavg::FedError> {
//! // 40 tiny 2x2 "images" of two classes: bright top row = class 1.
//! let mut images = Vec::new();
//! let mut labels = Vec::new();
//! for i in 0..40 {
//!     let c = (i % 2) as u8;
//!     let v = if c == 1 { 1.0 } else { 0.0 };
//!     images.extend_from_slice(&[v, v, 1.0 - v, 1.0 - v]);
//!     labels.push(c);
//! }
//! let data = Dataset::new(images, labels, 2, 2)?;
//! let mut model = Model::from_arch("perceptron", 1)?; // 784 inputs: reshape it to 4
//! model = Model { input_shape: vec![4], layers: vec![ppml_nn::Layer::Linear(
//!     ppml_nn::Linear::new(4, 2, &mut ppml_random::PublicSeed::new(1).rng("nn/init")))], ..model };
//! let parts = Partition::Iid.split(&data.labels, 4, 7)?;
//! let cfg = FedConfig { fraction: 0.5, rounds: 5, ..FedConfig::default() };
//! let mut sim = Simulation::new(model, &data, Some(&data), parts, cfg, Box::new(WeightedAverage))?;
//! let summary = sim.run(&mut |_round| {})?;
//! assert_eq!(summary.rounds.len(), 5);
//! assert!(summary.final_accuracy() > 0.9);
//! # Ok(())
//! # }
//! ```

pub mod aggregate;
pub mod client;
pub mod ddp;
pub mod dp;
pub mod net;
pub mod partition;
#[cfg(feature = "plot")]
pub mod plot;
pub mod secure;
pub mod server;
pub mod sim;

pub use aggregate::{AggregateInfo, Aggregator, ClientUpdate, DpAggregator, WeightedAverage};
pub use client::{LocalConfig, LocalStats, LocalTrainer, Mode};
pub use partition::{Partition, label_histogram};
pub use secure::SecureAggregator;
pub use server::{
    RoundStats, RunSummary, Server, ServerConfig, clients_per_round, median, poisson_sample,
    sample_clients,
};
pub use sim::{FedConfig, Simulation};

/// Errors of federated training.
#[derive(Debug, thiserror::Error)]
pub enum FedError {
    /// Invalid settings or inputs.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A model or data error from ppml-nn.
    #[error(transparent)]
    Nn(#[from] ppml_nn::NnError),
    /// A transport error from ppml-net.
    #[error(transparent)]
    Net(#[from] ppml_net::NetError),
    /// Aggregation failed (mismatched or invalid updates, non-finite result).
    #[error("aggregation: {0}")]
    Aggregate(String),
    /// No sampled client delivered an update in this round.
    #[error("round {0}: no client update survived")]
    NoUpdates(usize),
    /// Local training of a client failed.
    #[error("client {0}: {1}")]
    Client(usize, String),
    /// The peer broke the federated protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    /// Drawing or writing a plot failed.
    #[error("plot: {0}")]
    Plot(String),
    /// Reading or writing a file failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}
