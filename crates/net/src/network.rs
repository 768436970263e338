use crate::channel::{PartyRounds, Transport};
use crate::memory::{MemTransport, in_memory_transport_pair};
use crate::{Acceptor, Channel, ChannelStats, NetConfig, NetError, Parties, Session};
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

    /// Party `me` of a plaintext TCP mesh of `addrs.len()` parties named `party-0`, ...
    /// (an insecure [`Session`] for each): listens on `addrs[me]`, connects to every
    /// `j < me` (retrying until `connect_timeout`) and accepts every `j > me`. The last
    /// party accepts nobody, so it does not bind `addrs[n - 1]`. For tests and loopback
    /// benchmarks; deployments use [`Network::mesh`] with a TLS session.
    pub fn tcp(me: usize, addrs: &[SocketAddr], config: &NetConfig) -> Result<Network, NetError> {
        Self::tcp_with_listener(me, None, addrs, config)
    }

    /// Like [`Network::tcp`] with a listener bound by the caller (e.g. to `127.0.0.1:0`
    /// before the addresses are known). Without one, party `me` binds `addrs[me]`.
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
        let names: Vec<String> = (0..n).map(|i| format!("party-{i}")).collect();
        let parties = Parties::insecure(
            &names,
            &addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
        )?;
        let session = Session::insecure(&names[me], parties, "ppml-net-mesh", config.clone())?;
        let acceptor = match listener {
            Some(l) if me + 1 < n => Some(session.listen_on(l.try_clone()?)?),
            _ => None,
        };
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        Self::mesh_with(&session, &refs, acceptor)
    }

    /// This session's party in a full mesh of the parties `names` (this party among
    /// them): connects to every party listed before it and accepts every party listed
    /// after it (the acceptor starts first, so the order in which processes start does
    /// not matter). Party `i` of the network is `names[i]`.
    pub fn mesh(session: &Session, names: &[&str]) -> Result<Network, NetError> {
        Self::mesh_with(session, names, None)
    }

    /// Like [`Network::mesh`] with an acceptor started by the caller (e.g. on a listener
    /// bound to an ephemeral port); without one, the party listens on its address from
    /// the parties file if it has anybody to accept.
    pub fn mesh_with(
        session: &Session,
        names: &[&str],
        acceptor: Option<Acceptor>,
    ) -> Result<Network, NetError> {
        Self::mesh_with_local(session, names, acceptor, Vec::new())
    }

    /// Like [`Network::mesh_with`] for a party that shares its process with
    /// some of the others: `local[j]`, where given, is an in-memory channel
    /// to party `j` (from [`Network::local_links`]), used instead of a
    /// connection. Nothing on such a channel reaches a socket, so it needs
    /// neither encryption nor authentication; all other parties are reached
    /// through `session` as usual.
    pub fn mesh_with_local(
        session: &Session,
        names: &[&str],
        acceptor: Option<Acceptor>,
        mut local: Vec<Option<Channel>>,
    ) -> Result<Network, NetError> {
        let n = names.len();
        let me = names
            .iter()
            .position(|x| *x == session.name())
            .ok_or_else(|| {
                NetError::Config(format!(
                    "{} is not one of the mesh's parties ({})",
                    session.name(),
                    names.join(", ")
                ))
            })?;
        if local.len() > n {
            return Err(NetError::Config(format!(
                "{} in-process channels for a mesh of {n} parties",
                local.len()
            )));
        }
        local.resize_with(n, || None);
        if local[me].is_some() {
            return Err(NetError::Config(format!(
                "{} was given an in-process channel to itself",
                session.name()
            )));
        }
        let mut channels = local;
        // The parties after this one that connect to it over the network.
        let later: Vec<(usize, &str)> = (me + 1..n)
            .filter(|&j| channels[j].is_none())
            .map(|j| (j, names[j]))
            .collect();
        let mut acceptor = match acceptor {
            Some(a) => Some(a),
            None if !later.is_empty() => Some(session.listen()?),
            None => None,
        };
        for (j, peer) in names.iter().enumerate().take(me) {
            if channels[j].is_none() {
                channels[j] = Some(session.connect(peer)?);
            }
        }
        if let Some(acc) = acceptor.as_mut()
            && !later.is_empty()
        {
            let expected: Vec<&str> = later.iter().map(|&(_, name)| name).collect();
            let got = acc.accept(&expected, session.config().connect_timeout)?;
            for (&(j, _), ch) in later.iter().zip(got) {
                channels[j] = Some(ch);
            }
        }
        Ok(Network::from_channels(me, channels))
    }

    /// In-memory channels between the parties `members` of the mesh `names`
    /// that run in one process (each on its own thread). Element `k` is for
    /// `members[k]`: indexed by party, with a channel at every other member
    /// and `None` elsewhere; hand it to [`Network::mesh_with_local`].
    pub fn local_links(
        names: &[&str],
        members: &[usize],
        config: &NetConfig,
    ) -> Result<Vec<Vec<Option<Channel>>>, NetError> {
        let n = names.len();
        for (k, &m) in members.iter().enumerate() {
            if m >= n {
                return Err(NetError::UnknownPeer(m));
            }
            if members[..k].contains(&m) {
                return Err(NetError::Config(format!(
                    "{} is listed twice among the parties of this process",
                    names[m]
                )));
            }
        }
        let mut links: Vec<Vec<Option<Channel>>> = members
            .iter()
            .map(|_| (0..n).map(|_| None).collect())
            .collect();
        for a in 0..members.len() {
            for b in a + 1..members.len() {
                let (ta, tb) = in_memory_transport_pair(config);
                let ta = ta.with_peer_name(names[members[b]]);
                let tb = tb.with_peer_name(names[members[a]]);
                links[a][members[b]] = Some(Channel::new(Box::new(ta), config));
                links[b][members[a]] = Some(Channel::new(Box::new(tb), config));
            }
        }
        Ok(links)
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

    /// Whether `peer` runs in this process (its channel is in memory); false
    /// for oneself or an unknown peer.
    pub fn in_process(&self, peer: usize) -> bool {
        self.channels
            .get(peer)
            .and_then(Option::as_ref)
            .is_some_and(Channel::in_process)
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

    /// Moves this network out, leaving one without channels in its place (for
    /// code that must hand the network to an owner by value and put it back).
    pub fn take(&mut self) -> Network {
        let empty = Network::from_channels(self.me, Vec::new());
        std::mem::replace(self, empty)
    }

    /// Gives the channels back (`None` at `me`); they keep sharing this party's round counter.
    pub fn into_channels(self) -> Vec<Option<Channel>> {
        self.channels
    }
}
