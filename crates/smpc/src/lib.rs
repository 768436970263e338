//! # ppml-smpc: three-party protocols and private inference
//!
//! SecureNN-style secure computation among three semi-honest, non-colluding
//! parties: P0 and P1 hold additive shares over Z_2^64 (fixed point, 16
//! fractional bits by default) and P2 is the helper that deals correlated
//! randomness and evaluates masked comparisons. Every protocol is the code
//! ONE party runs over its [`ppml_net::Network`]; the same code runs as
//! threads in one process ([`sim`], [`inference::run_in_process`]) or as
//! separate processes over TCP ([`inference::run_role`]).
//!
//! * [`beaver`]: Beaver products (element-wise and matmul) with seed-derived
//!   triples, matrices masked once and reused ([`beaver::FixedRhs`]), local
//!   truncation.
//! * [`compare`]: DReLU / ReLU / selection with one PrivateCompare over Z_67
//!   per element (exact on the whole ring by default), exact truncation
//!   fused into a comparison, max, argmax and max-pooling tournaments.
//! * [`range`]: the model owner's range analysis: proven comparison widths
//!   for the plan, and errors naming the range instead of wrong answers.
//! * [`kernel`]: the register-blocked ring matmul (AVX-512, AVX2 or portable,
//!   chosen once per process by `ppml_simd::backend`; `PPML_BACKEND` forces one).
//! * [`latency`]: a two-level all-pairs argmax for single queries (fewer
//!   rounds than the tournament).
//! * [`inference`]: private inference of `ppml-nn` models (Linear, ReLU,
//!   Conv2d, MaxPool2d, AvgPool2d, Flatten) with a model owner and a data owner.
//! * [`avgpool`]: average pooling on shares (linear: one truncation).
//! * [`scoring`]: what the data owner learns (classes, logits, or only the
//!   number of correct predictions, `--private-eval`) and the in-process run
//!   with those options.
//!
//! docs/PROTOCOLS.md says which variant each protocol is and why it is secure.
//!
//! ```
//! use ppml_smpc::{beaver, compare, party::{P0, P1, ProtocolConfig}, sim};
//! use ppml_fixedpoint::FixedPoint;
//!
//! let fp = FixedPoint::default();
//! // x = [1.5, -2.0] and y = [4.0, 3.0], shared between P0 and P1.
//! let (x, y) = ([1.5, -2.0], [4.0, 3.0]);
//! let xs: Vec<u64> = x.iter().map(|v| fp.encode(*v).unwrap()).collect();
//! let ys: Vec<u64> = y.iter().map(|v| fp.encode(*v).unwrap()).collect();
//! let runs = sim::run_in_memory(3, ProtocolConfig::default(), ppml_smpc::SecretSource::InsecureDeterministic(1), |party| {
//!     // Toy sharing: P0 holds the values, P1 holds zeros.
//!     let (mx, my) = match party.id {
//!         P0 => (xs.clone(), ys.clone()),
//!         P1 => (vec![0; 2], vec![0; 2]),
//!         _ => (vec![], vec![]),
//!     };
//!     let prod = beaver::mul_fixed(party, 2, &mx, &my)?;
//!     let relu = compare::relu(party, 2, &prod)?;
//!     Ok(relu)
//! })
//! .unwrap();
//! let out: Vec<f64> = (0..2)
//!     .map(|i| fp.decode(runs[P0].output[i].wrapping_add(runs[P1].output[i])))
//!     .collect();
//! assert!((out[0] - 6.0).abs() < 1e-3); // relu(1.5 * 4)
//! assert_eq!(out[1], 0.0); // relu(-2 * 3)
//! ```

mod alloc;
pub mod avgpool;
pub mod beaver;
pub mod compare;
pub mod demo;
pub mod deploy;
mod error;
pub mod inference;
pub mod job;
pub mod latency;
pub mod limits;
/// The ring matmul kernel lives in ppml-sharing; re-exported for the protocols.
pub use ppml_sharing::kernel;
pub mod party;
pub mod range;
pub mod scoring;
pub mod sim;

pub use alloc::tune_allocator;
pub use error::SmpcError;
pub use inference::{InferConfig, InferenceReport, PrivateRun, predict_in_process, run_in_process};
/// Where secret randomness comes from (the OS, or an insecure test seed).
pub use ppml_random::SecretSource;
