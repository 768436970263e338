//! # ppml-net: party-to-party transport
//!
//! Every ppml protocol (3-party SMPC, secure aggregation, federated averaging, split
//! learning) is written as the code ONE party runs, talking to the others through a
//! [`Channel`]. A channel carries length-prefixed frames (`u32` little-endian length, then
//! the payload); typed messages are encoded with [postcard](https://docs.rs/postcard), and
//! `u64` vectors have a packed little-endian fast path ([`Channel::send_u64s`]).
//!
//! Two transports implement [`Transport`]:
//! - in-memory ([`in_memory_pair`], [`Network::in_memory`]): threads of one process,
//!   `std::sync::mpsc` queues, zero-copy moves of frames, no encryption (nothing leaves
//!   the process); [`inprocess::run_roles`] runs named roles as threads over them and
//!   is the one setup behind every in-process runner of the workspace;
//! - TCP ([`TcpTransport`]): separate processes or hosts, plaintext or TLS 1.3. Each TCP
//!   channel has a background reader thread that drains the socket into a queue bounded
//!   in bytes ([`NetConfig::queue_bytes`]), so two parties that both send large frames
//!   before receiving never deadlock, and a flooding peer is pushed back.
//!
//! ## Sessions: named, authenticated links
//!
//! Deployments go through the session layer ([`session`]): a [`Session`] is one party
//! of a parties file ([`Parties`], TOML: name, address, pinned certificate of every
//! party), with its private key ([`keygen`], [`load_identity`]). Links are TLS 1.3
//! with both certificates pinned (no CA; [`tls`]); [`Session::insecure`] is the
//! plaintext variant for loopback benchmarks. [`Session::connect`] reaches a named
//! party (retrying until it listens); [`Session::listen`] returns an [`Acceptor`] that
//! handshakes with every incoming connection concurrently, each under its own deadline,
//! and hands out only the parties it authenticated: strays, silent connections and
//! impostors are refused and logged and never block the others. [`Network::mesh`]
//! builds a full mesh of named parties (used by the SMPC roles).
//!
//! A server that accepts many named clients, some of them late:
//!
//! ```
//! use ppml_net::{local::LocalDeployment, NetConfig, Session};
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), ppml_net::NetError> {
//! // Keys and a parties file (server, client-0, client-1) on free loopback ports.
//! let d = LocalDeployment::new(&["server", "client-0", "client-1"])?;
//! let open = |me: &str| Session::tls(me, d.parties()?, &d.keys_dir(), "demo", NetConfig::default());
//! let server = open("server")?;
//! let mut acceptor = server.listen()?;
//! let clients: Vec<_> = ["client-0", "client-1"]
//!     .into_iter()
//!     .map(|name| {
//!         let s = open(name).unwrap();
//!         std::thread::spawn(move || -> Result<u64, ppml_net::NetError> {
//!             let mut ch = s.connect("server")?; // accepts only the server's pinned certificate
//!             ch.send(&s.name().len())?;
//!             ch.recv::<u64>()
//!         })
//!     })
//!     .collect();
//! // Wait for both (any order); each channel is bound to the name its certificate proves.
//! let mut chans = acceptor.accept(&["client-0", "client-1"], Duration::from_secs(10))?;
//! for ch in &mut chans {
//!     let n: usize = ch.recv()?;
//!     ch.send(&(n as u64 * 2))?;
//! }
//! for c in clients {
//!     assert_eq!(c.join().unwrap()?, 16);
//! }
//! // Late joiners: `acceptor.next(timeout)` returns the next authenticated (name, channel).
//! assert!(acceptor.next(Duration::from_millis(10))?.is_none());
//! # Ok(())
//! # }
//! ```
//!
//! Every channel counts bytes (payload + 4-byte header, identical for all transports;
//! TLS record overhead is not included), messages and communication rounds
//! ([`ChannelStats`]); a [`Network`] (one party's view of a full mesh) also counts
//! rounds at the party level ([`NetworkStats`]).
//!
//! Failure is an error ([`NetError`]), never a hang or a panic: peer disconnects, timeouts,
//! oversized frames (on send and on receive, where a hostile length prefix is never
//! allocated), truncated frames, bytes that do not decode as the requested type, failed
//! authentication and refused handshakes.
//!
//! ## Example
//!
//! ```
//! use ppml_net::{in_memory_pair, NetConfig, NetError};
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), NetError> {
//! let config = NetConfig::default().with_timeout(Duration::from_secs(5));
//! let (mut alice, mut bob) = in_memory_pair(&config);
//!
//! let bob_thread = std::thread::spawn(move || -> Result<u64, NetError> {
//!     let greeting: String = bob.recv()?;
//!     assert_eq!(greeting, "hello bob");
//!     let shares = bob.recv_u64s()?;
//!     let sum = shares.iter().fold(0u64, |a, &b| a.wrapping_add(b));
//!     bob.send(&sum)?;
//!     Ok(sum)
//! });
//!
//! alice.send("hello bob")?;
//! alice.send_u64s(&[1, 2, 3, u64::MAX])?;
//! let sum: u64 = alice.recv()?;
//! assert_eq!(sum, 5); // wrapping arithmetic in Z_2^64
//! assert_eq!(bob_thread.join().expect("bob panicked")?, 5);
//!
//! let stats = alice.stats();
//! assert_eq!(stats.messages_sent, 2);
//! assert_eq!(stats.rounds, 1); // two sends back to back are one round
//! # Ok(())
//! # }
//! ```

mod channel;
pub mod emulator;
mod error;
mod frame;
pub mod inprocess;
pub mod keys;
pub mod local;
mod memory;
mod network;
pub mod parties;
mod queue;
mod recording;
pub mod session;
mod stats;
pub mod tcp;
pub mod tls;

pub use channel::{Channel, Transport};
pub use error::NetError;
pub use frame::{
    FRAME_HEADER_BYTES, FRAME_SPARE, add_u64s_into, decode, decode_frame_header, decode_u64s,
    encode, encode_frame_header, encode_u64s, read_frame,
};
pub use keys::{KeyFiles, keygen, load_identity};
pub use memory::{MemTransport, in_memory_pair, in_memory_transport_pair};
pub use network::{Network, NetworkStats};
pub use parties::{Parties, PartyInfo};
pub use recording::{FrameLog, RecordingTransport};
pub use session::{Acceptor, Session};
pub use stats::ChannelStats;
pub use tcp::TcpTransport;
pub use tls::Identity;

use std::time::Duration;

/// Limits and timeouts of a channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetConfig {
    /// Largest payload accepted, on send and on receive (default 256 MiB). Frames are also
    /// limited to `u32::MAX` bytes by the 4-byte length prefix.
    pub max_frame_bytes: usize,
    /// Bytes a TCP channel's reader thread may queue before it stops reading the socket
    /// (back-pressure; default 64 MiB). One frame larger than this still passes an empty queue.
    pub queue_bytes: usize,
    /// Deadline of one connection's handshake (TLS + hello), on both sides (default 10 s).
    pub handshake_timeout: Duration,
    /// Receive timeout, and TCP write timeout (default 60 s).
    pub timeout: Duration,
    /// How long [`tcp::connect`] keeps retrying and [`tcp::accept`] waits (default 10 s).
    pub connect_timeout: Duration,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            max_frame_bytes: 256 << 20,
            queue_bytes: 64 << 20,
            handshake_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

impl NetConfig {
    /// Sets the receive / write timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the largest accepted payload in bytes.
    #[must_use]
    pub fn with_max_frame_bytes(mut self, max_frame_bytes: usize) -> Self {
        self.max_frame_bytes = max_frame_bytes;
        self
    }

    /// Sets the byte budget of a TCP channel's receive queue.
    #[must_use]
    pub fn with_queue_bytes(mut self, queue_bytes: usize) -> Self {
        self.queue_bytes = queue_bytes;
        self
    }

    /// Sets the per-connection handshake deadline.
    #[must_use]
    pub fn with_handshake_timeout(mut self, handshake_timeout: Duration) -> Self {
        self.handshake_timeout = handshake_timeout;
        self
    }

    /// Sets the TCP connect / accept timeout.
    #[must_use]
    pub fn with_connect_timeout(mut self, connect_timeout: Duration) -> Self {
        self.connect_timeout = connect_timeout;
        self
    }

    /// The effective payload limit: `max_frame_bytes`, capped by what a `u32` prefix can say.
    pub fn effective_max_frame(&self) -> usize {
        self.max_frame_bytes.min(u32::MAX as usize)
    }
}
