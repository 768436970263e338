use crate::channel::{PartyRounds, Transport};
use crate::memory::{MemTransport, in_memory_transport_pair};
use crate::tcp::{TcpTransport, accept_stream, connect_stream};
use crate::{Channel, ChannelStats, NetConfig, NetError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

/// Traffic of one party: per peer, and in total.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkStats {
    /// Stats of the channel to each party (all zero at the party's own index).
    pub per_peer: Vec<ChannelStats>,
    /// Sum over all channels, except `rounds`, which counts PARTY-level rounds: sending to
    /// several peers back to back (with no receive in between) is one round.
    pub total: ChannelStats,
}

/// One party's view of a full mesh of `n` parties: a [`Channel`] to every other party.
///
/// All channels share the party's round counter, also when used through
/// [`Network::channel`].
#[derive(Debug)]
pub struct Network {
    me: usize,
    channels: Vec<Option<Channel>>,
    party: Arc<PartyRounds>,
}

const HELLO_MAGIC: &[u8; 4] = b"PPML";
const HELLO_VERSION: u8 = 1;
const HELLO_LEN: usize = 17;

fn hello(from: usize, to: usize, n: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(HELLO_LEN);
    v.extend_from_slice(HELLO_MAGIC);
    v.push(HELLO_VERSION);
    for x in [from, to, n] {
        // Party counts are tiny; saturate rather than wrap on absurd values.
        v.extend_from_slice(&u32::try_from(x).unwrap_or(u32::MAX).to_le_bytes());
    }
    v
}

/// Parses a hello frame into (from, to, n).
fn parse_hello(frame: &[u8]) -> Result<(usize, usize, usize), NetError> {
    if frame.len() != HELLO_LEN || &frame[..4] != HELLO_MAGIC || frame[4] != HELLO_VERSION {
        return Err(NetError::Handshake(format!(
            "not a ppml-net hello frame ({} bytes)",
            frame.len()
        )));
    }
    let word = |i: usize| {
        let mut w = [0u8; 4];
        w.copy_from_slice(&frame[5 + 4 * i..9 + 4 * i]);
        u32::from_le_bytes(w) as usize
    };
    Ok((word(0), word(1), word(2)))
}

impl Network {
    /// `n` parties in one process, connected by in-memory channels; element `i` is party `i`.
    pub fn in_memory(n: usize, config: &NetConfig) -> Vec<Network> {
        Self::in_memory_with(n, config, |_, _, t| Box::new(t))
    }

    /// Like [`Network::in_memory`], passing every transport through `wrap(me, peer, transport)`
    /// first, e.g. to wrap it in a [`crate::RecordingTransport`] that logs what party `me`
    /// receives from `peer`.
    // Both ends of pair (i, j) go to different rows of the grid; indices are the clearest.
    #[allow(clippy::needless_range_loop)]
    pub fn in_memory_with<F>(n: usize, config: &NetConfig, mut wrap: F) -> Vec<Network>
    where
        F: FnMut(usize, usize, MemTransport) -> Box<dyn Transport>,
    {
        let mut grid: Vec<Vec<Option<Channel>>> =
            (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
        for i in 0..n {
            for j in i + 1..n {
                let (ti, tj) = in_memory_transport_pair(config);
                let ti = ti.with_peer_name(format!("party {j}"));
                let tj = tj.with_peer_name(format!("party {i}"));
                grid[i][j] = Some(Channel::new(wrap(i, j, ti), config));
                grid[j][i] = Some(Channel::new(wrap(j, i, tj), config));
            }
        }
        grid.into_iter()
            .enumerate()
            .map(|(me, channels)| Network::from_channels(me, channels))
            .collect()
    }

    /// Party `me` of a TCP mesh: listens on `addrs[me]`, connects to every `j < me` (retrying
    /// until `connect_timeout`) and accepts every `j > me`. A handshake frame carrying both
    /// party ids and `n` is checked on both sides (wrong or unknown id => [`NetError::Handshake`]).
    /// The last party accepts nobody, so it does not bind `addrs[n - 1]`.
    /// Handshake frames are not counted in the stats.
    pub fn tcp(me: usize, addrs: &[SocketAddr], config: &NetConfig) -> Result<Network, NetError> {
        if me >= addrs.len() {
            return Err(NetError::UnknownPeer(me));
        }
        let listener = if me + 1 < addrs.len() {
            Some(TcpListener::bind(addrs[me])?)
        } else {
            None // the last party accepts nobody
        };
        Self::tcp_with_listener(me, listener.as_ref(), addrs, config)
    }

    /// Like [`Network::tcp`] with a listener bound by the caller (e.g. to `127.0.0.1:0`
    /// before the addresses are known). `listener` may be `None` only for the last party.
    pub fn tcp_with_listener(
        me: usize,
        listener: Option<&TcpListener>,
        addrs: &[SocketAddr],
        config: &NetConfig,
    ) -> Result<Network, NetError> {
        let n = addrs.len();
        if me >= n {
            return Err(NetError::UnknownPeer(me));
        }
        let mut channels: Vec<Option<Channel>> = (0..n).map(|_| None).collect();
        for (j, addr) in addrs.iter().enumerate().take(me) {
            let (stream, _) = connect_stream(addr, config)?;
            let mut t =
                TcpTransport::with_peer_name(stream, format!("party {j} ({addr})"), config)?;
            t.send_frame(hello(me, j, n))?;
            let (from, to, their_n) = parse_hello(&t.recv_frame()?)?;
            if (from, to, their_n) != (j, me, n) {
                return Err(NetError::Handshake(format!(
                    "party {me} connected to {addr} expecting party {j} of {n}, \
                     got a reply from party {from} to party {to} of {their_n}"
                )));
            }
            channels[j] = Some(Channel::new(Box::new(t), config));
        }
        let to_accept = n - 1 - me;
        if to_accept > 0 {
            let Some(listener) = listener else {
                return Err(NetError::Handshake(format!(
                    "party {me} of {n} must accept {to_accept} connections but has no listener"
                )));
            };
            for _ in 0..to_accept {
                let (stream, addr) = accept_stream(listener, config)?;
                let mut t = TcpTransport::with_peer_name(stream, format!("tcp:{addr}"), config)?;
                let (from, to, their_n) = parse_hello(&t.recv_frame()?)?;
                if to != me || their_n != n {
                    return Err(NetError::Handshake(format!(
                        "party {me} of {n} got a hello addressed to party {to} of {their_n}"
                    )));
                }
                if from <= me || from >= n {
                    return Err(NetError::Handshake(format!(
                        "party {me} of {n} got a hello from party {from}, which should not connect to it"
                    )));
                }
                if channels[from].is_some() {
                    return Err(NetError::Handshake(format!(
                        "party {me} got a second connection claiming to be party {from}"
                    )));
                }
                t.send_frame(hello(me, from, n))?;
                t.set_peer_name(format!("party {from} ({addr})"));
                channels[from] = Some(Channel::new(Box::new(t), config));
            }
        }
        Ok(Network::from_channels(me, channels))
    }

    /// Builds a network from existing channels (`None` at index `me`; a channel given at
    /// `me` is dropped). The channels start sharing the party's round counter.
    pub fn from_channels(me: usize, mut channels: Vec<Option<Channel>>) -> Network {
        let party = Arc::new(PartyRounds::default());
        if let Some(own) = channels.get_mut(me) {
            *own = None;
        }
        for ch in channels.iter_mut().flatten() {
            ch.set_party_rounds(Arc::clone(&party));
        }
        Network {
            me,
            channels,
            party,
        }
    }

    /// This party's index.
    pub fn me(&self) -> usize {
        self.me
    }

    /// Number of parties, this one included.
    pub fn parties(&self) -> usize {
        self.channels.len()
    }

    /// The channel to `peer`; [`NetError::UnknownPeer`] for oneself or an index out of range.
    pub fn channel(&mut self, peer: usize) -> Result<&mut Channel, NetError> {
        self.channels
            .get_mut(peer)
            .and_then(Option::as_mut)
            .ok_or(NetError::UnknownPeer(peer))
    }

    /// Sends a postcard-encoded message to `peer`.
    pub fn send<T: Serialize + ?Sized>(&mut self, peer: usize, msg: &T) -> Result<(), NetError> {
        self.channel(peer)?.send(msg)
    }

    /// Receives a postcard-encoded message from `peer`.
    pub fn recv<T: DeserializeOwned>(&mut self, peer: usize) -> Result<T, NetError> {
        self.channel(peer)?.recv()
    }

    /// Sends packed little-endian `u64`s to `peer`.
    pub fn send_u64s(&mut self, peer: usize, v: &[u64]) -> Result<(), NetError> {
        self.channel(peer)?.send_u64s(v)
    }

    /// Receives packed little-endian `u64`s from `peer`.
    pub fn recv_u64s(&mut self, peer: usize) -> Result<Vec<u64>, NetError> {
        self.channel(peer)?.recv_u64s()
    }

    /// Sends one raw frame to `peer`.
    pub fn send_bytes(&mut self, peer: usize, bytes: Vec<u8>) -> Result<(), NetError> {
        self.channel(peer)?.send_bytes(bytes)
    }

    /// Receives one raw frame from `peer`.
    pub fn recv_bytes(&mut self, peer: usize) -> Result<Vec<u8>, NetError> {
        self.channel(peer)?.recv_bytes()
    }

    /// Per-peer stats and the party total (with party-level rounds).
    pub fn stats(&self) -> NetworkStats {
        let per_peer: Vec<ChannelStats> = self
            .channels
            .iter()
            .map(|c| c.as_ref().map(Channel::stats).unwrap_or_default())
            .collect();
        let mut total: ChannelStats = per_peer.iter().copied().sum();
        total.rounds = self.party.rounds();
        NetworkStats { per_peer, total }
    }

    /// Gives the channels back (`None` at `me`); they keep sharing this party's round counter.
    pub fn into_channels(self) -> Vec<Option<Channel>> {
        self.channels
    }
}
