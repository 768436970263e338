use crate::frame::{self, FRAME_HEADER_BYTES};
use crate::{ChannelStats, NetConfig, NetError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A frame-level transport to one peer. Public so wrappers (such as
/// [`crate::RecordingTransport`]) and other transports can be plugged into a [`Channel`].
///
/// Implementations must not panic on bad input and must return [`NetError::Timeout`] /
/// [`NetError::Disconnected`] rather than block forever.
pub trait Transport: Send {
    /// Sends one frame (the payload; the transport adds any framing it needs).
    fn send_frame(&mut self, frame: Vec<u8>) -> Result<(), NetError>;
    /// Receives the next frame.
    fn recv_frame(&mut self) -> Result<Vec<u8>, NetError>;
    /// A human-readable name of the peer, used in errors.
    fn peer(&self) -> &str;
    /// Whether the peer runs in this process, so that nothing sent over this
    /// transport reaches a socket (an in-memory queue). Wrappers that only
    /// observe frames report the inner transport's answer; the link emulator
    /// stands for a network, so it keeps the default.
    fn in_process(&self) -> bool {
        false
    }
}

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn send_frame(&mut self, frame: Vec<u8>) -> Result<(), NetError> {
        (**self).send_frame(frame)
    }
    fn recv_frame(&mut self) -> Result<Vec<u8>, NetError> {
        (**self).recv_frame()
    }
    fn peer(&self) -> &str {
        (**self).peer()
    }
    fn in_process(&self) -> bool {
        (**self).in_process()
    }
}

/// Round counter shared by all channels of one party (see [`crate::Network`]).
#[derive(Debug, Default)]
pub(crate) struct PartyRounds {
    rounds: AtomicU64,
    last_was_send: AtomicBool,
}

impl PartyRounds {
    fn on_send(&self) {
        if !self.last_was_send.swap(true, Ordering::AcqRel) {
            self.rounds.fetch_add(1, Ordering::AcqRel);
        }
    }
    fn on_recv(&self) {
        self.last_was_send.store(false, Ordering::Release);
    }
    pub(crate) fn rounds(&self) -> u64 {
        self.rounds.load(Ordering::Acquire)
    }
}

/// A message channel to one peer: postcard-encoded typed messages, raw byte frames, or packed
/// `u64` vectors, with byte / message / round accounting ([`Channel::stats`]).
pub struct Channel {
    transport: Box<dyn Transport>,
    max_frame: usize,
    stats: ChannelStats,
    last_was_send: bool,
    party: Option<Arc<PartyRounds>>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("peer", &self.transport.peer())
            .field("max_frame", &self.max_frame)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Channel {
    /// Wraps a transport; `config.max_frame_bytes` limits frames in both directions.
    pub fn new(transport: Box<dyn Transport>, config: &NetConfig) -> Self {
        Self {
            transport,
            max_frame: config.effective_max_frame(),
            stats: ChannelStats::default(),
            last_was_send: false,
            party: None,
        }
    }

    pub(crate) fn set_party_rounds(&mut self, party: Arc<PartyRounds>) {
        self.party = Some(party);
    }

    /// Sends a message encoded with postcard.
    pub fn send<T: Serialize + ?Sized>(&mut self, msg: &T) -> Result<(), NetError> {
        let bytes = frame::encode(msg)?;
        self.send_bytes(bytes)
    }

    /// Receives a postcard-encoded message of type `T`; [`NetError::Decode`] if the frame is
    /// not exactly one `T`.
    pub fn recv<T: DeserializeOwned>(&mut self) -> Result<T, NetError> {
        let bytes = self.recv_bytes()?;
        frame::decode(&bytes)
    }

    /// Sends one raw frame (no postcard).
    pub fn send_bytes(&mut self, bytes: Vec<u8>) -> Result<(), NetError> {
        frame::encode_frame_header(bytes.len(), self.max_frame)?;
        let wire = (bytes.len() + FRAME_HEADER_BYTES) as u64;
        self.transport.send_frame(bytes)?;
        self.stats.bytes_sent += wire;
        self.stats.messages_sent += 1;
        if !self.last_was_send {
            self.stats.rounds += 1;
            self.last_was_send = true;
        }
        if let Some(p) = &self.party {
            p.on_send();
        }
        Ok(())
    }

    /// Receives one raw frame (no postcard).
    pub fn recv_bytes(&mut self) -> Result<Vec<u8>, NetError> {
        let bytes = self.transport.recv_frame()?;
        if bytes.len() > self.max_frame {
            return Err(NetError::FrameTooLarge {
                len: bytes.len() as u64,
                max: self.max_frame,
            });
        }
        self.stats.bytes_received += (bytes.len() + FRAME_HEADER_BYTES) as u64;
        self.stats.messages_received += 1;
        self.last_was_send = false;
        if let Some(p) = &self.party {
            p.on_recv();
        }
        Ok(bytes)
    }

    /// Sends `u64`s packed little-endian (8 bytes each, no varint): the fast path for shares.
    pub fn send_u64s(&mut self, v: &[u64]) -> Result<(), NetError> {
        let len = v.len().saturating_mul(8);
        // Check before building the buffer so an oversized vector is not copied first.
        frame::encode_frame_header(len, self.max_frame)?;
        self.send_bytes(frame::encode_u64s(v))
    }

    /// Receives a frame sent by [`Channel::send_u64s`]; [`NetError::Decode`] if its length
    /// is not a multiple of 8.
    pub fn recv_u64s(&mut self) -> Result<Vec<u64>, NetError> {
        let bytes = self.recv_bytes()?;
        frame::decode_u64s(&bytes)
    }

    /// Traffic so far on this channel (its own rounds, not the party's).
    pub fn stats(&self) -> ChannelStats {
        self.stats
    }

    /// Whether the peer runs in this process (see [`Transport::in_process`]).
    pub fn in_process(&self) -> bool {
        self.transport.in_process()
    }

    /// A human-readable name of the peer.
    pub fn peer(&self) -> &str {
        self.transport.peer()
    }
}
