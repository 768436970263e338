//! # ppml-secagg: secure aggregation with dropouts
//!
//! The server learns the sum of the surviving clients' vectors and nothing else, even
//! when clients drop out at any step. Two protocols:
//!
//! * **SecAgg** (Bonawitz et al., *Practical Secure Aggregation for Privacy-Preserving
//!   Machine Learning*, CCS 2017), semi-honest server: every client masks with every
//!   other client.
//! * **SecAgg+** (Bell et al., *Secure Single-Server Aggregation with (Poly)Logarithmic
//!   Overhead*, CCS 2020): clients mask with and share keys among their `O(log n)`
//!   neighbours on a random Harary graph ([`SecAggConfig::graph`]).
//!
//! A round has four steps ([`Step`]): AdvertiseKeys (two X25519 key pairs per client),
//! ShareKeys (t-of-n Shamir shares over `F_(2^255-19)` of the self-mask seed `b_u` and of
//! the mask key `s_u^SK`, ChaCha20-Poly1305-encrypted per recipient), MaskedInputCollection
//! (`y_u = x_u + PRG(b_u) + sum_v +-PRG(s_uv)` in `Z_2^k`, bit-packed at `k` bits) and
//! Unmasking (survivors reveal b-shares of survivors and key shares of the dropped).
//! Inputs are clipped and quantised ([`Quantizer`]) into `Z_2^k` with
//! `k = bits + ceil(log2 n)`, so the sum cannot wrap.
//!
//! Layers: IO-free state machines ([`ClientState`], [`ServerState`]) consuming and
//! producing typed [`messages`]; a thin driver running them over `ppml_net` channels
//! ([`run_client`], [`run_server`]; in-process or TCP), whose server side is the one
//! round driver [`drive_server`] (the federated server runs it too, over its own
//! [`ServerLink`]s); and an in-process simulation ([`aggregate_in_process`]): the server
//! and every client as `ppml_net::inprocess` roles on their own threads, at most one
//! client computing per core at a time ([`driver::ComputeGate`]).
//!
//! ```
//! use ppml_secagg::{aggregate_in_process, DropoutPlan, SecAggConfig, SecretSource, Step};
//!
//! # fn main() -> Result<(), ppml_secagg::SecAggError> {
//! let inputs: Vec<Vec<f32>> = (0..5).map(|i| vec![0.1 * i as f32, -0.5, 0.25]).collect();
//! // Client 2 disappears after sending its shares, before its masked input.
//! let plan = DropoutPlan::with(5, &[(2, Step::MaskedInputCollection)])?;
//! // Public choices from seed 7; the clients' keys and masks from the OS.
//! let out = aggregate_in_process(&inputs, &SecAggConfig::default(), &plan, 7, SecretSource::Os)?;
//! assert_eq!(out.survivors, vec![0, 1, 3, 4]);
//! let expected = [0.8f32, -2.0, 1.0]; // sum over clients 0, 1, 3, 4
//! for (s, e) in out.sum.iter().zip(expected) {
//!     assert!((s - e).abs() as f64 <= out.error_bound + 1e-6);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Security model and parameter choices: `docs/SECURITY.md` ("Secure aggregation").

pub mod client;
mod crypto;
pub mod driver;
pub mod graph;
pub mod messages;
pub mod pack;
pub mod quant;
pub mod server;

pub use client::ClientState;
pub use crypto::add_mask;
pub use driver::{
    AggregateOutcome, ClientReport, ClientRunner, LinkFailure, RoleStats, RoundDrop, SERVER_NAME,
    SESSION_PROTOCOL, ServerLink, ServerRound, ServerRun, aggregate_in_process, client_name,
    connect_server, drive_server, run_client, run_server, run_server_over,
};
pub use graph::{Graph, default_degree};
pub use messages::Step;
/// Where the clients' secrets come from in [`aggregate_in_process`].
pub use ppml_random::SecretSource;
pub use quant::{Quantizer, ring_bits, ring_mask};
pub use server::{ServerOutput, ServerState};

use ppml_net::NetError;
use ppml_sharing::SharingError;
use rand::RngExt;
use std::time::Duration;

/// Everything that can go wrong in a round.
#[derive(Debug, thiserror::Error)]
pub enum SecAggError {
    /// Bad parameters (threshold, bits, dimensions, plan).
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// Fewer than `threshold` clients are left: the server aborts the round.
    #[error(
        "round aborted at step {step}: only {alive} clients remain, the threshold is {threshold}"
    )]
    BelowThreshold {
        step: Step,
        alive: usize,
        threshold: usize,
    },
    /// A secret of `client` cannot be reconstructed: too few of its share holders answered.
    #[error("round aborted: the {secret} of client {client} has {got} shares, {needed} are needed")]
    NotEnoughShares {
        client: u32,
        secret: &'static str,
        got: usize,
        needed: usize,
    },
    /// An encrypted share failed authentication (tampered, or not from the claimed sender).
    #[error("encrypted share from client {from} to client {to} failed authentication")]
    Decryption { from: u32, to: u32 },
    /// A message with wrong lengths or contents.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A message carrying another client's id.
    #[error("wrong client id: expected {expected}, got {got}")]
    WrongId { expected: u32, got: u32 },
    /// A client id that is out of range or not expected at this point.
    #[error("unknown or unexpected client {0}")]
    UnknownClient(u32),
    /// A client named or heard twice.
    #[error("client {0} appears twice")]
    Duplicate(u32),
    /// A message that does not belong to the current step.
    #[error("message out of order at step {step}: {detail}")]
    WrongPhase { step: Step, detail: String },
    /// An unmasking request naming a client both as survivor and as dropped (which would
    /// reveal its input), or asking a responder for its own key share.
    #[error("unmasking request refused: client {client} named both as survivor and as dropped")]
    UnmaskConflict { client: u32 },
    /// The reconstructed mask key does not match the advertised public key (bad shares).
    #[error("reconstructed mask key of client {client} does not match its public key")]
    ReconstructionMismatch { client: u32 },
    /// A low-order X25519 public key.
    #[error("client {client} advertised a low-order public key")]
    WeakKey { client: u32 },
    /// A vector of the wrong length.
    #[error("vector of dimension {got}, expected {expected}")]
    DimMismatch { expected: usize, got: usize },
    /// NaN or infinity in an input.
    #[error("input value at index {index} is not finite")]
    NonFinite { index: usize },
    /// Transport failure.
    #[error(transparent)]
    Net(#[from] NetError),
    /// Share arithmetic failure.
    #[error(transparent)]
    Sharing(#[from] SharingError),
    /// A role's thread panicked (a bug).
    #[error("internal error: {0}")]
    Internal(String),
}

/// User-facing settings of secure aggregation.
#[derive(Clone, Debug, PartialEq)]
pub struct SecAggConfig {
    /// Shamir threshold `t`: shares needed to reconstruct a secret, and the fewest clients
    /// with which the server continues. Full graph: out of `n` (default `floor(n/2) + 1`).
    /// SecAgg+: out of a client's `degree + 1` share holders (default
    /// `floor((degree + 1) / 3) + 1`, i.e. 14 of 41 at n = 1000).
    pub threshold: Option<usize>,
    /// Quantisation bits per value (1..=32, default 16).
    pub bits: u32,
    /// Inputs are clipped to `[-clip, clip]` (default 1.0).
    pub clip: f32,
    /// Use the SecAgg+ graph (Bell et al.) instead of the complete graph.
    pub graph: bool,
    /// SecAgg+ degree (even; default [`default_degree`]`(n)`); implies `graph`.
    pub degree: Option<usize>,
    /// Receive timeout of every channel in [`aggregate_in_process`] (default 600 s).
    pub timeout: Duration,
}

impl Default for SecAggConfig {
    fn default() -> Self {
        Self {
            threshold: None,
            bits: 16,
            clip: 1.0,
            graph: false,
            degree: None,
            timeout: Duration::from_secs(600),
        }
    }
}

/// The public parameters of one round, known to the server and every client. A client
/// that receives them from the server checks them with [`RoundParams::validated`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RoundParams {
    /// Number of clients (ids `0..n`).
    pub n: usize,
    /// Vector length.
    pub dim: usize,
    /// Quantisation bits.
    pub bits: u32,
    /// `k`: masks and sums live in `Z_2^k`.
    pub ring_bits: u32,
    /// Clipping bound, as `f32` bits (so the struct is `Eq`).
    pub clip_bits: u32,
    /// Shamir threshold.
    pub threshold: usize,
    /// SecAgg+ degree, or `None` for the complete graph.
    pub degree: Option<usize>,
    /// Round identifier bound into every key derivation and AEAD.
    pub session: [u8; 16],
}

/// Longest client vector a round accepts (2 GiB of running sum at the
/// server; checked before anything of that size is allocated).
pub const MAX_DIM: usize = 1 << 28;

impl RoundParams {
    /// Resolves `cfg` for `n` clients holding vectors of length `dim`.
    pub fn new(
        n: usize,
        dim: usize,
        cfg: &SecAggConfig,
        session: [u8; 16],
    ) -> Result<Self, SecAggError> {
        let q = Quantizer::new(cfg.bits, cfg.clip)?;
        let max_clients = u32::MAX as usize / 2;
        if !(2..=max_clients).contains(&n) {
            return Err(SecAggError::InvalidConfig(format!(
                "secure aggregation needs 2..={max_clients} clients, got {n}"
            )));
        }
        if !(1..=MAX_DIM).contains(&dim) {
            return Err(SecAggError::InvalidConfig(format!(
                "vector dimension {dim} must be in 1..={MAX_DIM} (the server holds a running \
                 sum of that many ring elements)"
            )));
        }
        let ring_bits = ring_bits(q.bits, n);
        if ring_bits > 64 {
            return Err(SecAggError::InvalidConfig(format!(
                "{} bits for {n} clients need a ring of {ring_bits} > 64 bits",
                q.bits
            )));
        }
        let degree = if cfg.graph || cfg.degree.is_some() {
            let k = cfg.degree.unwrap_or_else(|| default_degree(n)).div_ceil(2) * 2;
            if k == 0 {
                return Err(SecAggError::InvalidConfig(
                    "SecAgg+ degree must be > 0".into(),
                ));
            }
            (k < n - 1).then_some(k)
        } else {
            None
        };
        let holders = degree.map_or(n, |k| k + 1);
        let threshold = match cfg.threshold {
            Some(t) => t,
            None => match degree {
                None => n / 2 + 1,
                Some(k) => ((k + 1) / 3 + 1).max(2),
            },
        };
        if threshold < 2 || threshold > holders {
            return Err(SecAggError::InvalidConfig(format!(
                "threshold {threshold} must be in 2..={holders} (share holders per client)"
            )));
        }
        Ok(Self {
            n,
            dim,
            bits: q.bits,
            ring_bits,
            clip_bits: q.clip.to_bits(),
            threshold,
            degree,
            session,
        })
    }

    /// Re-derives these parameters from their settings (as [`RoundParams::new`] would) and
    /// checks that they agree and that the vector length is `dim`: a client calls this on
    /// parameters a server announced, before allocating anything of their size.
    pub fn validated(&self, dim: usize) -> Result<Self, SecAggError> {
        if self.dim != dim {
            return Err(SecAggError::DimMismatch {
                expected: dim,
                got: self.dim,
            });
        }
        let cfg = SecAggConfig {
            threshold: Some(self.threshold),
            bits: self.bits,
            clip: f32::from_bits(self.clip_bits),
            graph: self.degree.is_some(),
            degree: self.degree,
            timeout: Duration::from_secs(1),
        };
        let again = Self::new(self.n, self.dim, &cfg, self.session)?;
        if &again != self {
            return Err(SecAggError::InvalidConfig(format!(
                "inconsistent round parameters (ring of {} bits announced, {} derived)",
                self.ring_bits, again.ring_bits
            )));
        }
        Ok(again)
    }

    /// The quantiser of this round.
    pub fn quantizer(&self) -> Result<Quantizer, SecAggError> {
        Quantizer::new(self.bits, f32::from_bits(self.clip_bits))
    }
}

/// Which clients drop out, and at which step (see [`Step`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DropoutPlan {
    /// `drops[i]`: the step at which client `i` drops, if any. Empty means nobody drops.
    pub drops: Vec<Option<Step>>,
}

impl DropoutPlan {
    /// Nobody drops.
    pub fn none(n: usize) -> Self {
        Self {
            drops: vec![None; n],
        }
    }

    /// The given clients drop at the given steps.
    pub fn with(n: usize, drops: &[(u32, Step)]) -> Result<Self, SecAggError> {
        let mut plan = Self::none(n);
        for &(id, step) in drops {
            let slot = plan
                .drops
                .get_mut(id as usize)
                .ok_or(SecAggError::UnknownClient(id))?;
            *slot = Some(step);
        }
        Ok(plan)
    }

    /// `round(fraction * n)` clients, chosen uniformly from `seed`, each dropping at a
    /// uniformly random step.
    pub fn random(n: usize, fraction: f64, seed: u64) -> Result<Self, SecAggError> {
        Self::random_inner(n, fraction, None, seed)
    }

    /// `round(fraction * n)` clients, chosen uniformly from `seed`, all dropping at `step`.
    pub fn random_at(n: usize, fraction: f64, step: Step, seed: u64) -> Result<Self, SecAggError> {
        Self::random_inner(n, fraction, Some(step), seed)
    }

    fn random_inner(
        n: usize,
        fraction: f64,
        step: Option<Step>,
        seed: u64,
    ) -> Result<Self, SecAggError> {
        if !(0.0..=1.0).contains(&fraction) {
            return Err(SecAggError::InvalidConfig(format!(
                "dropout fraction must be in [0, 1], got {fraction}"
            )));
        }
        // Simulated dropouts are a public, reproducible choice.
        let mut rng = ppml_random::PublicSeed::new(seed).rng("secagg/dropout-plan");
        let ids = ppml_random::permutation(n, &mut rng);
        let k = (fraction * n as f64).round() as usize;
        let mut plan = Self::none(n);
        for &i in &ids[..k.min(n)] {
            let s = step.unwrap_or_else(|| Step::ALL[rng.random_range(0..4)]);
            plan.drops[i] = Some(s);
        }
        Ok(plan)
    }

    /// The step at which client `id` drops.
    pub fn drop_at(&self, id: u32) -> Option<Step> {
        self.drops.get(id as usize).copied().flatten()
    }

    /// How many clients drop.
    pub fn dropped(&self) -> usize {
        self.drops.iter().filter(|d| d.is_some()).count()
    }
}
