//! Errors of the SMPC protocols.

use ppml_net::NetError;

/// Everything a protocol run can fail with.
#[derive(Debug, thiserror::Error)]
pub enum SmpcError {
    /// A channel failed (peer gone, timeout, bad frame).
    #[error("network: {0}")]
    Net(#[from] NetError),
    /// Sizes that do not fit together (a bug in the caller, or a peer that
    /// sent a message of the wrong length).
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A value that cannot be encoded in fixed point.
    #[error("fixed point: {0}")]
    FixedPoint(#[from] ppml_fixedpoint::FixedPointError),
    /// Ring tensor arithmetic failed.
    #[error("sharing: {0}")]
    Sharing(#[from] ppml_sharing::SharingError),
    /// A model this crate cannot run privately, or a bad model file.
    #[error("model: {0}")]
    Model(String),
    /// The data owner's images or labels could not be read or do not fit.
    #[error("input: {0}")]
    Input(String),
    /// The predictions file could not be written (or its path is unusable).
    #[error("output: {0}")]
    Output(String),
    /// A role that cannot run this step (e.g. P2 asked for an output share).
    #[error("role: {0}")]
    Role(String),
    /// A randomness stream this party does not hold.
    #[error("party {party} has no randomness stream {stream:?}")]
    MissingStream {
        party: usize,
        stream: crate::party::Stream,
    },
    /// An invalid configuration value.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A value the protocols cannot represent or compare correctly: the
    /// message names the range (e.g. a model whose pre-activations can exceed
    /// the ring, or an input outside the model's declared input range).
    #[error("out of range: {0}")]
    Range(String),
    /// A party thread panicked (in-process runs only).
    #[error("party {0} panicked")]
    Panicked(String),
}

impl From<ppml_nn::NnError> for SmpcError {
    fn from(e: ppml_nn::NnError) -> Self {
        SmpcError::Model(e.to_string())
    }
}

/// Checks a received message's length.
pub(crate) fn expect_len(what: &str, got: usize, want: usize) -> Result<(), SmpcError> {
    if got == want {
        Ok(())
    } else {
        Err(SmpcError::Shape(format!(
            "{what}: got {got} elements, expected {want}"
        )))
    }
}
