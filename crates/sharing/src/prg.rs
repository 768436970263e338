//! Ring-element fills, re-exported from `ppml-random`, the one home of the
//! workspace's randomness (OS-keyed secret generators, labelled public
//! seeds, the insecure deterministic generator for tests, seed streams).

pub use ppml_random::{fill_u64, random_u64s};
