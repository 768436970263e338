//! The thin IO layer: the state machines of [`crate::client`] and [`crate::server`] run
//! over `ppml_net` channels (in-memory or TCP), plus the in-process simulation
//! [`aggregate_in_process`].

use crate::messages::*;
use crate::{
    ClientState, DropoutPlan, RoundParams, SecAggConfig, SecAggError, ServerOutput, ServerState,
};
use ppml_net::{Channel, ChannelStats, NetConfig, in_memory_pair};
use ppml_random::{PublicSeed, SecretSource};
use rayon::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
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
        }
    }

    /// Builds the state with `make` (timed as client work); a failure closes the channel.
    pub fn start(&mut self, make: impl FnOnce() -> Result<ClientState, SecAggError>) {
        let t0 = Instant::now();
        match make() {
            Ok(s) => self.state = Some(s),
            Err(e) => {
                self.error = Some(e.to_string());
                self.close();
            }
        }
        self.seconds += t0.elapsed().as_secs_f64();
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
        let bytes = match step {
            Step::AdvertiseKeys => timed(secs, || encode(&state.advertise_keys()?))?,
            Step::ShareKeys => {
                let msg: KeyBroadcast = recv(ch)?;
                timed(secs, || encode(&state.share_keys(msg)?))?
            }
            Step::MaskedInputCollection => {
                let msg: ForwardedShares = recv(ch)?;
                timed(secs, || encode(&state.masked_input(msg)?))?
            }
            Step::Unmasking => {
                let msg: UnmaskRequest = recv(ch)?;
                timed(secs, || encode(&state.unmask(msg)?))?
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

/// [`run_server`] where a channel may be bound to the client id it authenticated as.
fn run_server_with_ids(
    mut channels: Vec<(Option<u32>, Channel)>,
    mut state: ServerState,
) -> Result<ServerRun, SecAggError> {
    let n = state.params().n;
    let mut seconds = 0.0;
    let mut rejected = Vec::new();
    // Step 0: learn who is on which channel.
    let mut by_id: Vec<Option<Channel>> = (0..n).map(|_| None).collect();
    let mut unassigned = Vec::new();
    for (bound, mut ch) in channels.drain(..) {
        let Ok(bytes) = ch.recv_bytes() else {
            unassigned.push(ch);
            continue;
        };
        let t0 = Instant::now();
        let res = ppml_net::decode::<AdvertiseKeys>(&bytes)
            .map_err(SecAggError::from)
            .and_then(|m| {
                let id = m.id;
                if let Some(b) = bound
                    && b != id
                {
                    return Err(SecAggError::Internal(format!(
                        "{} claims to be client {id}",
                        client_name(b)
                    )));
                }
                if by_id.get(id as usize).is_some_and(|c| c.is_some()) {
                    return Err(SecAggError::Duplicate(id));
                }
                state.receive_keys(m).map(|_| id)
            });
        seconds += t0.elapsed().as_secs_f64();
        match res {
            Ok(id) => by_id[id as usize] = Some(ch),
            Err(e) => {
                rejected.push((u32::MAX, e.to_string()));
                unassigned.push(ch);
            }
        }
    }
    let mut finished_stats: Vec<ChannelStats> = unassigned.iter().map(|c| c.stats()).collect();
    drop(unassigned);
    let kill = |by_id: &mut Vec<Option<Channel>>, u: usize, stats: &mut Vec<ChannelStats>| {
        if let Some(ch) = by_id[u].take() {
            stats.push(ch.stats());
        }
    };
    let broadcast = |by_id: &mut Vec<Option<Channel>>,
                     msgs: Vec<(u32, Vec<u8>)>,
                     stats: &mut Vec<ChannelStats>| {
        for (u, bytes) in msgs {
            let u = u as usize;
            let failed = match by_id[u].as_mut() {
                Some(ch) => ch.send_bytes(bytes).is_err(),
                None => false,
            };
            if failed && let Some(ch) = by_id[u].take() {
                stats.push(ch.stats());
            }
        }
    };
    let t0 = Instant::now();
    let msgs = state.broadcast_keys();
    let msgs = msgs.and_then(encode_all);
    seconds += t0.elapsed().as_secs_f64();
    broadcast(&mut by_id, msgs?, &mut finished_stats);

    // Steps 1..3: receive from every live client, then answer.
    for step in [
        Step::ShareKeys,
        Step::MaskedInputCollection,
        Step::Unmasking,
    ] {
        for u in 0..n {
            let Some(ch) = by_id[u].as_mut() else {
                continue;
            };
            let bytes = match ch.recv_bytes() {
                Ok(b) => b,
                Err(_) => {
                    kill(&mut by_id, u, &mut finished_stats);
                    continue;
                }
            };
            let t0 = Instant::now();
            let from = u as u32;
            let res = match step {
                Step::ShareKeys => ppml_net::decode::<ShareKeys>(&bytes)
                    .map_err(SecAggError::from)
                    .and_then(|m| state.receive_shares(from, m)),
                Step::MaskedInputCollection => ppml_net::decode::<MaskedInput>(&bytes)
                    .map_err(SecAggError::from)
                    .and_then(|m| state.receive_masked(from, &m)),
                _ => ppml_net::decode::<UnmaskResponse>(&bytes)
                    .map_err(SecAggError::from)
                    .and_then(|m| state.receive_unmask(from, m)),
            };
            seconds += t0.elapsed().as_secs_f64();
            if let Err(e) = res {
                rejected.push((from, e.to_string()));
                kill(&mut by_id, u, &mut finished_stats);
            }
        }
        let t0 = Instant::now();
        let out = match step {
            Step::ShareKeys => state.forward_shares().and_then(encode_all),
            Step::MaskedInputCollection => state.unmask_requests().and_then(encode_all),
            _ => Ok(Vec::new()),
        };
        seconds += t0.elapsed().as_secs_f64();
        broadcast(&mut by_id, out?, &mut finished_stats);
    }
    let t0 = Instant::now();
    let output = state.finish()?;
    seconds += t0.elapsed().as_secs_f64();
    for u in 0..n {
        kill(&mut by_id, u, &mut finished_stats);
    }
    let rounds = finished_stats.iter().map(|s| s.rounds).max().unwrap_or(0);
    let mut traffic: ChannelStats = finished_stats.into_iter().sum();
    traffic.rounds = rounds;
    Ok(ServerRun {
        output,
        stats: RoleStats { traffic, seconds },
        rejected,
    })
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
/// clients are separate roles talking over in-memory `ppml_net` channels, clients run on
/// rayon (all clients' step `s`, then step `s + 1`), the server on its own thread.
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
    let start = Instant::now();
    let mut server_chs = Vec::with_capacity(n);
    let mut runners = Vec::with_capacity(n);
    for i in 0..n {
        let (s, c) = in_memory_pair(&net);
        server_chs.push(s);
        runners.push(ClientRunner::unstarted(c, dropouts.drop_at(i as u32)));
    }
    let graph_seed = public.derive_u64("secagg/graph");
    let server_state = ServerState::new(&params, graph_seed);
    let server = std::thread::Builder::new()
        .name("secagg-server".into())
        .spawn(move || run_server(server_chs, server_state))
        .map_err(|e| SecAggError::Internal(format!("cannot spawn the server thread: {e}")))?;
    // Clients build their state (keys, quantised input) in parallel, as part of step 0.
    // Their secret randomness (key pairs, self-mask seeds, Shamir coefficients)
    // comes from `secrets`: the OS unless a test asks for the insecure seed.
    runners
        .par_iter_mut()
        .zip(inputs.par_iter())
        .enumerate()
        .for_each(|(i, (r, x))| {
            if r.drop_at != Some(Step::AdvertiseKeys) {
                r.start(|| {
                    let rng = secrets
                        .try_rng(&format!("secagg/client/{i}"))
                        .map_err(|e| SecAggError::Internal(e.to_string()))?;
                    ClientState::new(i as u32, x, &params, rng)
                });
            }
        });
    for step in Step::ALL {
        runners.par_iter_mut().for_each(|r| r.step(step));
    }
    let run = server
        .join()
        .map_err(|_| SecAggError::Internal("server thread panicked".into()))??;
    let round_seconds = start.elapsed().as_secs_f64();
    let clients = runners
        .iter()
        .enumerate()
        .map(|(i, r)| r.report(i as u32))
        .collect();
    let m = run.output.survivors.len();
    Ok(AggregateOutcome {
        sum: quant.decode_sum(&run.output.sum, m),
        error_bound: quant.sum_error_bound(m),
        sum_quantised: run.output.sum,
        survivors: run.output.survivors,
        set_sizes: run.output.set_sizes,
        params,
        server: run.stats,
        clients,
        rejected: run.rejected,
        round_seconds,
    })
}

/// Runs `f`, adding its wall time to `secs`.
fn timed<T>(secs: &mut f64, f: impl FnOnce() -> T) -> T {
    let t0 = Instant::now();
    let out = f();
    *secs += t0.elapsed().as_secs_f64();
    out
}
