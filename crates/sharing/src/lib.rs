//! # ppml-sharing
//!
//! The arithmetic of secret sharing, with no IO: every function here is a
//! local computation one party performs on values it holds.
//!
//! * [`RingTensor`]: a shaped, row-major tensor over Z_2^64 with wrapping
//!   element-wise ops and a cache-blocked, rayon-parallel matmul
//!   ([`RingTensor::matmul`], on the packed kernel of [`kernel`]).
//! * [`additive`]: n-party additive sharing over Z_2^64 (`x = x_0 + ... + x_{n-1}
//!   mod 2^64`), for scalars and tensors, with the local operations
//!   (add/sub/neg of shares, adding or multiplying by a public value).
//! * [`field`]: the prime field F_p with p = 2^255 - 19 (on crypto-bigint),
//!   and [`shamir`]: t-of-n Shamir sharing over it plus additive sharing.
//! * [`z67`]: the small field Z_67 that SecureNN uses for bit-wise shares.
//! * [`prg`]: ring-element fills from any generator. Generators themselves
//!   live in `ppml-random` (secrets from the OS, public seeds, test seeds).
//!
//! ```
//! use ppml_sharing::{additive, RingTensor};
//!
//! // Shares are secrets: their randomness comes from the OS.
//! let mut rng = ppml_random::os_rng();
//! let x = RingTensor::new(vec![2, 2], vec![1, 2, 3, 4]).unwrap();
//! let shares = additive::share_tensor(&x, 3, &mut rng);
//! // Any single share looks uniform; all three together give x back.
//! assert_eq!(additive::reconstruct_tensor(&shares).unwrap(), x);
//! ```

pub mod additive;
pub mod field;
pub mod kernel;
pub mod prg;
pub mod ring;
pub mod shamir;
pub mod z67;

pub use field::Fp;
pub use ring::RingTensor;
pub use shamir::ShamirShare;
pub use z67::Z67;

/// Errors of sharing and share arithmetic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SharingError {
    /// Two tensors that must agree in shape do not.
    #[error("shape mismatch: {left:?} vs {right:?}")]
    ShapeMismatch { left: Vec<usize>, right: Vec<usize> },
    /// A tensor's data does not match its shape.
    #[error("shape {shape:?} needs {expected} elements, got {got}")]
    BadLength {
        shape: Vec<usize>,
        expected: usize,
        got: usize,
    },
    /// Matmul of incompatible shapes.
    #[error("cannot multiply {left:?} by {right:?}")]
    MatmulShape { left: Vec<usize>, right: Vec<usize> },
    /// Fewer shares than needed for reconstruction.
    #[error("{got} shares given, {needed} needed")]
    TooFewShares { needed: usize, got: usize },
    /// Two Shamir shares have the same evaluation point.
    #[error("duplicate share for party index {0}")]
    DuplicateShare(u32),
    /// A Shamir share claims evaluation point 0 (which is the secret itself).
    #[error("share index 0 is invalid: party indices start at 1")]
    ZeroIndex,
    /// Threshold out of range for the number of parties.
    #[error("invalid threshold {threshold} for {parties} parties (need 1 <= t <= n)")]
    InvalidThreshold { threshold: usize, parties: usize },
    /// Bytes that are not the canonical encoding of a field element.
    #[error("bytes are not a canonical field element (value >= p)")]
    NotCanonical,
    /// Division by zero in a field.
    #[error("zero has no inverse")]
    ZeroInverse,
}
