//! # ppml
//!
//! Privacy-preserving machine learning in Rust, on real MNIST: federated
//! averaging, secure aggregation, split learning and three-party secret-shared
//! (SMPC) inference. This facade re-exports the workspace crates; the `ppml`
//! command line lives in the binary only (`src/main.rs`, `src/cli/`) and is not
//! part of the library API. Library users who want no CLI crates at all depend
//! on the `ppml-*` crates directly (as the Python bindings do).
//!
//! | crate | what it owns |
//! | --- | --- |
//! | [`fixedpoint`] | float <-> Z_2^64 encoding, truncation |
//! | [`sharing`] | additive shares over Z_2^64, ring tensors, prime field + Shamir, Z_67 |
//! | [`net`] | party-to-party channels (in-memory, TCP) with byte and round counts |
//! | [`nn`] | plaintext tensors, layers, training, MNIST loading, model files |
//! | [`smpc`] | three-party protocols and private inference |
//! | [`fedavg`] | federated averaging |
//! | [`secagg`] | secure aggregation (Bonawitz et al., SecAgg+) |
//! | [`splitnn`] | split learning |
//!
//! See `docs/ARCHITECTURE.md` for the code map.

pub use ppml_fedavg as fedavg;
pub use ppml_fixedpoint as fixedpoint;
pub use ppml_net as net;
pub use ppml_nn as nn;
pub use ppml_random as random;
pub use ppml_secagg as secagg;
pub use ppml_sharing as sharing;
pub use ppml_simd as simd;
pub use ppml_smpc as smpc;
pub use ppml_splitnn as splitnn;
