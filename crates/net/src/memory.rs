use crate::channel::Transport;
use crate::{Channel, NetConfig, NetError};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

/// In-memory transport: an unbounded `std::sync::mpsc` queue in each direction. Frames are
/// moved, never copied; sending never blocks; receiving waits at most the configured timeout.
#[derive(Debug)]
pub struct MemTransport {
    tx: Sender<Vec<u8>>,
    rx: Receiver<Vec<u8>>,
    timeout: Duration,
    peer: String,
}

impl MemTransport {
    /// Renames the peer (shown in errors).
    #[must_use]
    pub fn with_peer_name(mut self, peer: impl Into<String>) -> Self {
        self.peer = peer.into();
        self
    }
}

impl Transport for MemTransport {
    fn send_frame(&mut self, frame: Vec<u8>) -> Result<(), NetError> {
        self.tx.send(frame).map_err(|_| NetError::Disconnected {
            peer: self.peer.clone(),
        })
    }

    fn recv_frame(&mut self) -> Result<Vec<u8>, NetError> {
        self.rx.recv_timeout(self.timeout).map_err(|e| match e {
            RecvTimeoutError::Timeout => NetError::Timeout {
                peer: self.peer.clone(),
                after: self.timeout,
            },
            RecvTimeoutError::Disconnected => NetError::Disconnected {
                peer: self.peer.clone(),
            },
        })
    }

    fn peer(&self) -> &str {
        &self.peer
    }

    fn in_process(&self) -> bool {
        true
    }
}

/// Two connected in-memory transports (the first's peer is called "mem:b", the second's "mem:a").
pub fn in_memory_transport_pair(config: &NetConfig) -> (MemTransport, MemTransport) {
    let (tx_ab, rx_ab) = mpsc::channel();
    let (tx_ba, rx_ba) = mpsc::channel();
    (
        MemTransport {
            tx: tx_ab,
            rx: rx_ba,
            timeout: config.timeout,
            peer: "mem:b".into(),
        },
        MemTransport {
            tx: tx_ba,
            rx: rx_ab,
            timeout: config.timeout,
            peer: "mem:a".into(),
        },
    )
}

/// Two connected in-memory channels. Dropping one makes the other's `recv` return
/// [`NetError::Disconnected`] (after draining what was already sent) and its `send` fail.
pub fn in_memory_pair(config: &NetConfig) -> (Channel, Channel) {
    let (a, b) = in_memory_transport_pair(config);
    (
        Channel::new(Box::new(a), config),
        Channel::new(Box::new(b), config),
    )
}
