use std::time::Duration;

/// Everything that can go wrong on a channel. No operation of this crate hangs past its
/// timeout or panics on bad input; it returns one of these.
#[derive(thiserror::Error, Debug)]
pub enum NetError {
    /// The peer closed or dropped its end (clean end of stream at a frame boundary).
    #[error("peer {peer} disconnected")]
    Disconnected { peer: String },
    /// Nothing arrived (or a write did not complete) within the configured timeout.
    #[error("timed out after {after:?} waiting for peer {peer}")]
    Timeout { peer: String, after: Duration },
    /// A frame larger than the configured maximum, on send or on receive.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    FrameTooLarge { len: u64, max: usize },
    /// The stream ended inside a frame (header or payload).
    #[error("truncated frame: expected {expected} bytes, got {got}")]
    Truncated { expected: usize, got: usize },
    /// The frame's bytes are not a valid encoding of the requested type.
    #[error("decode error: {0}")]
    Decode(String),
    /// The message could not be encoded.
    #[error("encode error: {0}")]
    Encode(String),
    /// The connection handshake of a [`crate::Network`] failed (wrong or unknown party id).
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// A configuration problem: parties file, keys, addresses.
    #[error("{0}")]
    Config(String),
    /// The peer could not be authenticated as `party` (TLS handshake failed, wrong
    /// certificate).
    #[error("could not authenticate {party}: {reason}")]
    Auth { party: String, reason: String },
    /// The handshake was refused (by us or by the peer); `reason` says why and names the party.
    #[error("refused {party}: {reason}")]
    Refused { party: String, reason: String },
    /// A party index that is not a peer of this network (out of range, or oneself).
    #[error("unknown peer {0}")]
    UnknownPeer(usize),
    /// Any other I/O error.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}
