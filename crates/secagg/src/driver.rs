//! The thin IO layer: the state machines of [`crate::client`] and [`crate::server`] run
//! over `ppml_net` channels (in-memory or TCP), plus the in-process simulation
//! [`aggregate_in_process`].

use crate::messages::*;
use crate::{
    ClientState, DropoutPlan, RoundParams, SecAggConfig, SecAggError, ServerOutput, ServerState,
};
use ppml_net::inprocess::{HangUp, Links, Role, RoleError, run_roles};
use ppml_net::{Channel, ChannelStats, NetConfig, Network};
use ppml_random::{PublicSeed, SecretSource};
use rayon::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

/// Traffic and compute time of one role.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RoleStats {
    /// Bytes, messages and rounds (summed over the role's channels; `rounds` is the
    /// largest per-channel count, i.e. the role's communication rounds).
    pub traffic: ChannelStats,
    /// Seconds of computation (waiting for peers excluded).
    pub seconds: f64,
}

/// How one client's round went.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientReport {
    pub id: u32,
    /// The step at which it dropped (per the plan), if any.
    pub dropped_at: Option<Step>,
    /// Whether it sent all four messages.
    pub completed: bool,
    pub stats: RoleStats,
    /// Why it stopped early, if it failed (not for planned dropouts).
    pub error: Option<String>,
}

/// Runs one client through the four steps, one call per step (so a simulation can run all
/// clients' step `s` in parallel before step `s + 1`). A client that fails or drops closes
/// its channel, which the server sees as a dropout.
pub struct ClientRunner {
    state: Option<ClientState>,
    channel: Option<Channel>,
    drop_at: Option<Step>,
    seconds: f64,
    stats: ChannelStats,
    sent: usize,
    error: Option<String>,
    gate: Option<Arc<ComputeGate>>,
}

/// Lets at most `permits` clients compute at once. An in-process round runs
/// every client on its own thread; the gate keeps one client's computation per
/// core at a time, so a client's timed work (its `seconds`) is its own and not
/// shared with hundreds of other client threads.
#[derive(Debug)]
pub struct ComputeGate {
    free: Mutex<usize>,
    freed: Condvar,
}

impl ComputeGate {
    /// A gate with `permits` (at least one) concurrent computations.
    pub fn new(permits: usize) -> Arc<ComputeGate> {
        Arc::new(ComputeGate {
            free: Mutex::new(permits.max(1)),
            freed: Condvar::new(),
        })
    }

    /// Runs `f` once a permit is free, timing only `f` into `secs`.
    fn run<T>(&self, secs: &mut f64, f: impl FnOnce() -> T) -> T {
        struct Permit<'a>(&'a ComputeGate);
        impl Drop for Permit<'_> {
            fn drop(&mut self) {
                // Released even if `f` panics.
                *self.0.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
                self.0.freed.notify_one();
            }
        }
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        drop(free);
        let _permit = Permit(self);
        timed(secs, f)
    }
}

/// Times `f` into `secs`, behind `gate` if there is one.
fn gated<T>(gate: Option<&ComputeGate>, secs: &mut f64, f: impl FnOnce() -> T) -> T {
    match gate {
        Some(g) => g.run(secs, f),
        None => timed(secs, f),
    }
}

impl ClientRunner {
    /// A runner for `state` over `channel`; it drops at `drop_at` if given.
    pub fn new(state: ClientState, channel: Channel, drop_at: Option<Step>) -> Self {
        Self {
            state: Some(state),
            channel: Some(channel),
            drop_at,
            seconds: 0.0,
            stats: ChannelStats::default(),
            sent: 0,
            error: None,
            gate: None,
        }
    }

    /// A runner whose state is built by [`ClientRunner::start`] (so that building it,
    /// e.g. quantising the input, counts as the client's time).
    pub fn unstarted(channel: Channel, drop_at: Option<Step>) -> Self {
        Self {
            state: None,
            channel: Some(channel),
            drop_at,
            seconds: 0.0,
            stats: ChannelStats::default(),
            sent: 0,
            error: None,
            gate: None,
        }
    }

    /// Computes only while holding a permit of `gate` (see [`ComputeGate`]).
    pub fn with_gate(mut self, gate: Arc<ComputeGate>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Builds the state with `make` (timed as client work); a failure closes the channel.
    pub fn start(&mut self, make: impl FnOnce() -> Result<ClientState, SecAggError>) {
        let gate = self.gate.clone();
        match gated(gate.as_deref(), &mut self.seconds, make) {
            Ok(s) => self.state = Some(s),
            Err(e) => {
                self.error = Some(e.to_string());
                self.close();
            }
        }
    }

    fn close(&mut self) {
        if let Some(ch) = self.channel.take() {
            self.stats = ch.stats();
        }
        self.state = None;
    }

    /// Runs step `step`: receive the server's previous message (steps 1..3), compute, send.
    pub fn step(&mut self, step: Step) {
        if self.channel.is_none() {
            return;
        }
        if self.drop_at == Some(step) {
            self.close();
            return;
        }
        if let Err(e) = self.try_step(step) {
            self.error = Some(e.to_string());
            self.close();
        } else if step == Step::Unmasking {
            self.close();
        }
    }

    fn try_step(&mut self, step: Step) -> Result<(), SecAggError> {
        // The channel is Some: checked by `step`.
        let Some(ch) = self.channel.as_mut() else {
            return Ok(());
        };
        let state = self
            .state
            .as_mut()
            .ok_or_else(|| SecAggError::Internal("client state missing".into()))?;
        // Only the client's own computation is timed, not the wait for the
        // server's previous message.
        let secs = &mut self.seconds;
        let gate = self.gate.as_deref();
        let bytes = match step {
            Step::AdvertiseKeys => gated(gate, secs, || encode(&state.advertise_keys()?))?,
            Step::ShareKeys => {
                let msg: KeyBroadcast = recv(ch)?;
                gated(gate, secs, || encode(&state.share_keys(msg)?))?
            }
            Step::MaskedInputCollection => {
                let msg: ForwardedShares = recv(ch)?;
                gated(gate, secs, || encode(&state.masked_input(msg)?))?
            }
            Step::Unmasking => {
                let msg: UnmaskRequest = recv(ch)?;
                gated(gate, secs, || encode(&state.unmask(msg)?))?
            }
        };
        send(ch, bytes)?;
        self.sent += 1;
        Ok(())
    }

    /// The report of this client (call after the last step).
    pub fn report(&self, id: u32) -> ClientReport {
        let traffic = match &self.channel {
            Some(ch) => ch.stats(),
            None => self.stats,
        };
        ClientReport {
            id,
            dropped_at: self.drop_at,
            completed: self.sent == 4,
            stats: RoleStats {
                traffic,
                seconds: self.seconds,
            },
            error: self.error.clone(),
        }
    }
}

fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, SecAggError> {
    Ok(ppml_net::encode(msg)?)
}

fn encode_all<T: Serialize>(msgs: Vec<(u32, T)>) -> Result<Vec<(u32, Vec<u8>)>, SecAggError> {
    msgs.into_iter()
        .map(|(u, m)| Ok((u, encode(&m)?)))
        .collect()
}

fn send(ch: &mut Channel, bytes: Vec<u8>) -> Result<(), SecAggError> {
    Ok(ch.send_bytes(bytes)?)
}

fn recv<T: DeserializeOwned>(ch: &mut Channel) -> Result<T, SecAggError> {
    let bytes = ch.recv_bytes()?;
    Ok(ppml_net::decode(&bytes)?)
}

/// Runs one client over its channel to the server (e.g. from `ppml_net::tcp::connect`).
pub fn run_client(
    channel: Channel,
    state: ClientState,
    drop_at: Option<Step>,
) -> Result<ClientReport, SecAggError> {
    let id = state.id();
    let mut r = ClientRunner::new(state, channel, drop_at);
    for s in Step::ALL {
        r.step(s);
    }
    let rep = r.report(id);
    match &rep.error {
        Some(e) => Err(SecAggError::Internal(format!("client {id}: {e}"))),
        None => Ok(rep),
    }
}

/// The server's result and costs.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerRun {
    pub output: ServerOutput,
    pub stats: RoleStats,
    /// Clients whose messages were rejected (treated as dropouts), with the reason.
    pub rejected: Vec<(u32, String)>,
}

/// Runs the server over one channel per client, in any order: each client's
/// [`AdvertiseKeys`] names it. A client whose channel fails, or whose message is rejected
/// by the state machine, is treated as dropped from that step on.
pub fn run_server(channels: Vec<Channel>, state: ServerState) -> Result<ServerRun, SecAggError> {
    run_server_with_ids(channels.into_iter().map(|c| (None, c)).collect(), state)
}

/// Protocol name of secure aggregation links in the session handshake (ppml-net).
pub const SESSION_PROTOCOL: &str = "secagg";

/// Party name of client `id` in the parties file (`client-0`, `client-1`, ...).
pub fn client_name(id: u32) -> String {
    format!("client-{id}")
}

/// Party name of the server in the parties file.
pub const SERVER_NAME: &str = "server";

/// A client's channel to the server over its session (TLS: only the server's pinned
/// certificate is accepted).
pub fn connect_server(session: &ppml_net::Session) -> Result<Channel, SecAggError> {
    Ok(session.connect(SERVER_NAME)?)
}

/// The server's side over a session: accepts the clients `client-0 .. client-(n-1)`
/// (concurrently, each authenticated by its certificate; strays and impostors are refused
/// and logged), waiting at most `timeout` for all of them (clients that never come are
/// dropouts), then runs [`run_server`] with every channel bound to its authenticated
/// id: a client claiming another client's id in its keys is rejected.
pub fn run_server_over(
    acceptor: &mut ppml_net::Acceptor,
    state: ServerState,
    timeout: std::time::Duration,
) -> Result<ServerRun, SecAggError> {
    let n = state.params().n;
    let deadline = Instant::now() + timeout;
    let mut chans: Vec<(Option<u32>, Channel)> = Vec::new();
    while chans.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let Some((name, ch)) = acceptor.next(left)? else {
            break;
        };
        let id = name
            .strip_prefix("client-")
            .and_then(|k| k.parse::<u32>().ok())
            .filter(|&k| (k as usize) < n);
        match id {
            Some(k) if !chans.iter().any(|(i, _)| *i == Some(k)) => chans.push((Some(k), ch)),
            _ => eprintln!(
                "secagg server: ignored a connection from {name} (not a client of this round, or a second connection)"
            ),
        }
    }
    run_server_with_ids(chans, state)
}

/// A raw secagg link: the client's messages travel as they are, and a client
/// the server drops is hung up on (its channel closed).
struct RawLink {
    bound: Option<u32>,
    channel: Option<Channel>,
    stats: ChannelStats,
}

impl RawLink {
    fn close(&mut self) {
        if let Some(ch) = self.channel.take() {
            self.stats = ch.stats();
        }
    }

    fn stats(&self) -> ChannelStats {
        self.channel.as_ref().map_or(self.stats, Channel::stats)
    }
}

impl ServerLink for RawLink {
    fn bound_id(&self) -> Option<u32> {
        self.bound
    }

    fn wrong_id(&self, claimed: u32) -> SecAggError {
        match self.bound {
            Some(b) => {
                SecAggError::Internal(format!("{} claims to be client {claimed}", client_name(b)))
            }
            None => SecAggError::UnknownClient(claimed),
        }
    }

    fn recv_step(&mut self, _step: Step) -> Result<Vec<u8>, LinkFailure> {
        let ch = self.channel.as_mut().ok_or_else(|| LinkFailure {
            reason: "closed".into(),
            fatal: true,
        })?;
        ch.recv_bytes().map_err(|e| LinkFailure {
            reason: e.to_string(),
            fatal: true,
        })
    }

    fn send_step(&mut self, _step: Step, msg: Vec<u8>) -> Result<(), String> {
        match self.channel.as_mut() {
            Some(ch) => ch.send_bytes(msg).map_err(|e| e.to_string()),
            None => Err("closed".into()),
        }
    }

    fn drop_client(&mut self, _reason: &str, _fatal: bool) {
        self.close();
    }
}

/// [`run_server`] where a channel may be bound to the client id it authenticated as.
fn run_server_with_ids(
    channels: Vec<(Option<u32>, Channel)>,
    state: ServerState,
) -> Result<ServerRun, SecAggError> {
    let mut links: Vec<RawLink> = channels
        .into_iter()
        .map(|(bound, ch)| RawLink {
            bound,
            channel: Some(ch),
            stats: ChannelStats::default(),
        })
        .collect();
    let round = drive_server(&mut links, state);
    for l in &mut links {
        l.close();
    }
    let stats: Vec<ChannelStats> = links.iter().map(RawLink::stats).collect();
    let rounds = stats.iter().map(|s| s.rounds).max().unwrap_or(0);
    let mut traffic: ChannelStats = stats.into_iter().sum();
    traffic.rounds = rounds;
    let rejected = round
        .drops
        .into_iter()
        .filter(|d| d.rejected)
        .map(|d| (d.client.unwrap_or(u32::MAX), d.reason))
        .collect();
    Ok(ServerRun {
        output: round.output?,
        stats: RoleStats {
            traffic,
            seconds: round.compute_seconds,
        },
        rejected,
    })
}

/// Why a link delivered no message of a step.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkFailure {
    pub reason: String,
    /// The connection is unusable (disconnect, garbage), as opposed to a
    /// client that was only too slow or gave up this round.
    pub fatal: bool,
}

/// One client's link as the server's round driver ([`drive_server`]) sees it:
/// raw secagg messages ([`run_server`]) or messages wrapped in another
/// protocol (the federated server's rounds).
pub trait ServerLink: Send {
    /// The client id this link authenticated as, if the transport knows it;
    /// otherwise the client's [`AdvertiseKeys`] names it.
    fn bound_id(&self) -> Option<u32>;
    /// The error for a client whose [`AdvertiseKeys`] claims id `claimed`
    /// while its link is bound to another (or the id is unknown).
    fn wrong_id(&self, claimed: u32) -> SecAggError {
        match self.bound_id() {
            Some(expected) => SecAggError::WrongId {
                expected,
                got: claimed,
            },
            None => SecAggError::UnknownClient(claimed),
        }
    }
    /// Receives the client's message of `step` (its secagg payload).
    fn recv_step(&mut self, step: Step) -> Result<Vec<u8>, LinkFailure>;
    /// Sends the server's reply to `step` (a secagg payload).
    fn send_step(&mut self, step: Step, msg: Vec<u8>) -> Result<(), String>;
    /// The client is out of the round (`fatal`: its link failed): tell it
    /// why if the protocol can, or hang up.
    fn drop_client(&mut self, reason: &str, fatal: bool);
}

/// A client the server dropped from the round.
#[derive(Clone, Debug, PartialEq)]
pub struct RoundDrop {
    /// The link's index in the slice given to [`drive_server`].
    pub link: usize,
    /// The client id, once known (from the link or the client's keys).
    pub client: Option<u32>,
    /// The step whose message never (validly) arrived, or whose reply could
    /// not be sent.
    pub step: Step,
    pub reason: String,
    /// The link is unusable (see [`LinkFailure::fatal`]).
    pub fatal: bool,
    /// The state machine rejected the client's message (as opposed to no
    /// message arriving, or the reply failing).
    pub rejected: bool,
}

/// What [`drive_server`] gives back.
#[derive(Debug)]
pub struct ServerRound {
    /// The unmasked sum, or why the round aborted.
    pub output: Result<ServerOutput, SecAggError>,
    /// Clients dropped, in the order the server dropped them.
    pub drops: Vec<RoundDrop>,
    /// Seconds the server spent computing (waiting for clients excluded).
    pub compute_seconds: f64,
}

/// THE server side of one secure aggregation round, for every transport: for
/// each of the four steps, receives every live link's message (all links in
/// parallel, each with its own timeout, so slow clients cost one timeout per
/// step, not one each), feeds them to `state`, and sends the replies. A link
/// that fails, or whose message `state` rejects, is dropped from that step on
/// ([`ServerLink::drop_client`]); if the round aborts (too few clients), every
/// live link is told why. Links are bound to client ids at step 0: a link
/// whose transport authenticated an id must carry that id's keys.
pub fn drive_server<L: ServerLink>(links: &mut [L], mut state: ServerState) -> ServerRound {
    let n = state.params().n;
    let mut compute = 0.0;
    let mut drops: Vec<RoundDrop> = Vec::new();
    // The client id on each link (None: unknown yet, or dropped).
    let mut id_of: Vec<Option<u32>> = links.iter().map(ServerLink::bound_id).collect();
    let mut live = vec![true; links.len()];
    let mut taken = vec![false; n];
    let mut result: Result<(), SecAggError> = Ok(());
    for step in Step::ALL {
        // Receive every live link's message of this step, in parallel.
        let received: Vec<Option<Result<Vec<u8>, LinkFailure>>> = std::thread::scope(|s| {
            let handles: Vec<_> = links
                .iter_mut()
                .zip(&live)
                .map(|(l, &alive)| alive.then(|| s.spawn(move || l.recv_step(step))))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(LinkFailure {
                                reason: "receiver thread panicked".into(),
                                fatal: true,
                            })
                        })
                    })
                })
                .collect()
        });
        let mut drop_now: Vec<(usize, String, bool, bool)> = Vec::new();
        let t0 = Instant::now();
        for (k, r) in received.into_iter().enumerate() {
            let Some(r) = r else { continue };
            let bytes = match r {
                Ok(b) => b,
                Err(f) => {
                    drop_now.push((k, f.reason, f.fatal, false));
                    continue;
                }
            };
            let fed = match step {
                Step::AdvertiseKeys => ppml_net::decode::<AdvertiseKeys>(&bytes)
                    .map_err(SecAggError::from)
                    .and_then(|m| {
                        let id = m.id;
                        if id_of[k].is_some_and(|b| b != id) {
                            return Err(links[k].wrong_id(id));
                        }
                        if taken.get(id as usize) == Some(&true) {
                            return Err(SecAggError::Duplicate(id));
                        }
                        state.receive_keys(m)?;
                        if let Some(t) = taken.get_mut(id as usize) {
                            *t = true;
                        }
                        id_of[k] = Some(id);
                        Ok(())
                    }),
                _ => match id_of[k] {
                    None => Err(SecAggError::Internal("link without a client id".into())),
                    Some(from) => match step {
                        Step::ShareKeys => ppml_net::decode::<ShareKeys>(&bytes)
                            .map_err(SecAggError::from)
                            .and_then(|m| state.receive_shares(from, m)),
                        Step::MaskedInputCollection => ppml_net::decode::<MaskedInput>(&bytes)
                            .map_err(SecAggError::from)
                            .and_then(|m| state.receive_masked(from, &m)),
                        _ => ppml_net::decode::<UnmaskResponse>(&bytes)
                            .map_err(SecAggError::from)
                            .and_then(|m| state.receive_unmask(from, m)),
                    },
                },
            };
            // A message the state machine rejects costs its sender the
            // round, not its connection.
            if let Err(e) = fed {
                drop_now.push((k, e.to_string(), false, true));
            }
        }
        compute += t0.elapsed().as_secs_f64();
        for (k, reason, fatal, rejected) in drop_now {
            live[k] = false;
            let why = if rejected {
                format!("message rejected: {reason}")
            } else {
                reason.clone()
            };
            links[k].drop_client(&format!("dropped at step {step}: {why}"), fatal);
            drops.push(RoundDrop {
                link: k,
                client: id_of[k],
                step,
                reason: if rejected { reason } else { why },
                fatal,
                rejected,
            });
        }
        // Answer the step (or finish), aborting below the threshold.
        let t0 = Instant::now();
        let replies = match step {
            Step::AdvertiseKeys => state.broadcast_keys().and_then(encode_all),
            Step::ShareKeys => state.forward_shares().and_then(encode_all),
            Step::MaskedInputCollection => state.unmask_requests().and_then(encode_all),
            Step::Unmasking => Ok(Vec::new()),
        };
        compute += t0.elapsed().as_secs_f64();
        let replies = match replies {
            Ok(r) => r,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        let mut link_of: Vec<Option<usize>> = vec![None; n];
        for (k, id) in id_of.iter().enumerate() {
            if let Some(slot) = id.and_then(|u| link_of.get_mut(u as usize))
                && live[k]
            {
                *slot = Some(k);
            }
        }
        for (u, msg) in replies {
            let Some(k) = link_of.get(u as usize).copied().flatten() else {
                continue;
            };
            if let Err(reason) = links[k].send_step(step, msg) {
                live[k] = false;
                links[k].drop_client(&reason, true);
                drops.push(RoundDrop {
                    link: k,
                    client: Some(u),
                    step,
                    reason,
                    fatal: true,
                    rejected: false,
                });
            }
        }
    }
    let t0 = Instant::now();
    let output = result.and_then(|()| state.finish());
    compute += t0.elapsed().as_secs_f64();
    if let Err(e) = &output {
        for (k, l) in links.iter_mut().enumerate() {
            if live[k] {
                l.drop_client(&format!("round aborted: {e}"), false);
            }
        }
    }
    ServerRound {
        output,
        drops,
        compute_seconds: compute,
    }
}

/// Result of [`aggregate_in_process`].
#[derive(Clone, Debug, PartialEq)]
pub struct AggregateOutcome {
    /// Decoded float sum of the survivors' (clipped) inputs.
    pub sum: Vec<f32>,
    /// The same sum in `Z_2^k`, exactly as the server computed it.
    pub sum_quantised: Vec<u64>,
    /// Ids of the clients whose inputs are in the sum (U3), sorted.
    pub survivors: Vec<u32>,
    /// |U1|, |U2|, |U3|, |U4|.
    pub set_sizes: [usize; 4],
    /// Per-coordinate bound on `|sum - sum of clipped survivor inputs|`.
    pub error_bound: f64,
    /// The round's resolved parameters (threshold, ring bits, degree).
    pub params: RoundParams,
    /// Server traffic (all its channels) and compute time.
    pub server: RoleStats,
    /// Every client's report, by id.
    pub clients: Vec<ClientReport>,
    /// Clients whose messages the server rejected, with the reason.
    pub rejected: Vec<(u32, String)>,
    /// Wall time of the whole round, all roles in-process.
    pub round_seconds: f64,
}

impl AggregateOutcome {
    /// The exact sum the server should have found: the survivors' quantised
    /// `inputs` (as every client quantises them) added in `Z_2^k`.
    pub fn expected_quantised_sum(&self, inputs: &[Vec<f32>]) -> Result<Vec<u64>, SecAggError> {
        let quant = self.params.quantizer()?;
        let mask = crate::ring_mask(self.params.ring_bits);
        let dim = self.params.dim;
        let mut acc = self
            .survivors
            .par_iter()
            .map(|&i| {
                let x = inputs
                    .get(i as usize)
                    .ok_or(SecAggError::UnknownClient(i))?;
                quant.encode(x)
            })
            .try_fold(
                || vec![0u64; dim],
                |mut acc, q| {
                    for (a, v) in acc.iter_mut().zip(q?) {
                        *a = a.wrapping_add(v);
                    }
                    Ok::<_, SecAggError>(acc)
                },
            )
            .try_reduce(
                || vec![0u64; dim],
                |mut a, b| {
                    for (x, y) in a.iter_mut().zip(b) {
                        *x = x.wrapping_add(y);
                    }
                    Ok(a)
                },
            )?;
        for a in &mut acc {
            *a &= mask;
        }
        Ok(acc)
    }

    /// True if the server's sum equals [`Self::expected_quantised_sum`] bit for bit.
    pub fn sum_is_exact(&self, inputs: &[Vec<f32>]) -> Result<bool, SecAggError> {
        Ok(self.expected_quantised_sum(inputs)? == self.sum_quantised)
    }

    /// Largest `|decoded sum - sum of the survivors' clipped inputs|` over the
    /// coordinates (at most [`Self::error_bound`] when the round is correct).
    pub fn max_abs_error(&self, inputs: &[Vec<f32>]) -> f64 {
        let clip = f32::from_bits(self.params.clip_bits);
        (0..self.params.dim.min(self.sum.len()))
            .into_par_iter()
            .map(|j| {
                let exact: f64 = self
                    .survivors
                    .iter()
                    .filter_map(|&i| inputs.get(i as usize).and_then(|x| x.get(j)))
                    .map(|&v| v.clamp(-clip, clip) as f64)
                    .sum();
                (exact - self.sum[j] as f64).abs()
            })
            .reduce(|| 0.0, f64::max)
    }
}

/// One full round in this process: client `i` holds `inputs[i]`, the server and the
/// clients are separate roles (`server`, `client-0`, ...), each on its own thread, talking
/// over in-memory `ppml_net` channels ([`ppml_net::inprocess`]).
/// `dropouts` says who drops at which step (an empty plan: nobody). The public choices
/// (the SecAgg+ graph, the session id) derive from `seed` through
/// [`ppml_random::PublicSeed`]; the clients' secrets (keys, self-mask seeds, Shamir
/// coefficients) come from `secrets`: [`SecretSource::Os`] in every real run,
/// [`SecretSource::InsecureDeterministic`] only for reproducible tests.
///
/// Errors: invalid inputs or configuration, and the server's abort
/// ([`SecAggError::BelowThreshold`], [`SecAggError::NotEnoughShares`]).
pub fn aggregate_in_process(
    inputs: &[Vec<f32>],
    cfg: &SecAggConfig,
    dropouts: &DropoutPlan,
    seed: u64,
    secrets: SecretSource,
) -> Result<AggregateOutcome, SecAggError> {
    let n = inputs.len();
    let dim = inputs.first().map_or(0, |v| v.len());
    if let Some(v) = inputs.iter().find(|v| v.len() != dim) {
        return Err(SecAggError::DimMismatch {
            expected: dim,
            got: v.len(),
        });
    }
    if !dropouts.drops.is_empty() && dropouts.drops.len() != n {
        return Err(SecAggError::InvalidConfig(format!(
            "dropout plan for {} clients, {n} inputs",
            dropouts.drops.len()
        )));
    }
    let public = PublicSeed::new(seed);
    let mut session = [0u8; 16];
    session.copy_from_slice(&public.key("secagg/session")[..16]);
    let params = RoundParams::new(n, dim, cfg, session)?;
    let quant = params.quantizer()?;
    let net = NetConfig::default().with_timeout(cfg.timeout);
    let graph_seed = public.derive_u64("secagg/graph");
    let server_state = ServerState::new(&params, graph_seed);
    // Role 0 is the server, role 1 + i client i; every client is linked to
    // the server only.
    let mut names = vec![SERVER_NAME.to_owned()];
    names.extend((0..n as u32).map(client_name));
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    // One client computing per core at a time, as when clients took their
    // steps together on the rayon pool.
    let gate = ComputeGate::new(rayon::current_num_threads());
    let gate = &gate;
    let mut roles = Vec::with_capacity(n + 1);
    roles.push(Role::thread(move |net: &mut Network| {
        let channels = net.take().into_channels().into_iter().flatten().collect();
        run_server(channels, server_state).map(InProcessOutput::Server)
    }));
    let params = &params;
    for (i, x) in inputs.iter().enumerate() {
        let drop_at = dropouts.drop_at(i as u32);
        roles.push(Role::thread(move |net: &mut Network| {
            let channel = net.take().into_channels().into_iter().flatten().next();
            let channel = channel.ok_or_else(|| {
                SecAggError::Internal(format!("client {i} has no link to the server"))
            })?;
            let mut r = ClientRunner::unstarted(channel, drop_at).with_gate(Arc::clone(gate));
            // Building the state (keys, quantised input) is part of step 0;
            // its secret randomness (key pairs, self-mask seeds, Shamir
            // coefficients) comes from `secrets`: the OS unless a test asks
            // for the insecure seed.
            if drop_at != Some(Step::AdvertiseKeys) {
                r.start(|| {
                    let rng = secrets
                        .try_rng(&format!("secagg/client/{i}"))
                        .map_err(|e| SecAggError::Internal(e.to_string()))?;
                    ClientState::new(i as u32, x, params, rng)
                });
            }
            for step in Step::ALL {
                r.step(step);
            }
            Ok(InProcessOutput::Client(r.report(i as u32)))
        }));
    }
    let start = Instant::now();
    let mut outputs = run_roles(&names, &Links::Star(0), &net, roles)?
        .into_iter()
        .map(|r| r.output);
    let Some(InProcessOutput::Server(run)) = outputs.next() else {
        // Cannot happen: the runner returns the outputs in role order.
        return Err(SecAggError::Internal("no server output".into()));
    };
    let clients = outputs
        .filter_map(|o| match o {
            InProcessOutput::Client(c) => Some(c),
            InProcessOutput::Server(_) => None,
        })
        .collect();
    let round_seconds = start.elapsed().as_secs_f64();
    let m = run.output.survivors.len();
    Ok(AggregateOutcome {
        sum: quant.decode_sum(&run.output.sum, m),
        error_bound: quant.sum_error_bound(m),
        sum_quantised: run.output.sum,
        survivors: run.output.survivors,
        set_sizes: run.output.set_sizes,
        params: params.clone(),
        server: run.stats,
        clients,
        rejected: run.rejected,
        round_seconds,
    })
}

/// What each role of [`aggregate_in_process`] hands back.
enum InProcessOutput {
    Server(ServerRun),
    Client(ClientReport),
}

impl HangUp for SecAggError {
    fn is_hang_up(&self) -> bool {
        matches!(self, SecAggError::Net(e) if e.is_hang_up())
    }
}

impl From<RoleError<SecAggError>> for SecAggError {
    fn from(e: RoleError<SecAggError>) -> Self {
        match e {
            RoleError::Failed { error, .. } => error,
            RoleError::Panicked { role } => SecAggError::Internal(format!("{role} panicked")),
            RoleError::Setup(e) => SecAggError::Net(e),
        }
    }
}

/// Runs `f`, adding its wall time to `secs`.
fn timed<T>(secs: &mut f64, f: impl FnOnce() -> T) -> T {
    let t0 = Instant::now();
    let out = f();
    *secs += t0.elapsed().as_secs_f64();
    out
}
