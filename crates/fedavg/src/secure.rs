//! Secure aggregation for federated averaging (ppml-secagg: Bonawitz et al.
//! 2017, SecAgg+ with `graph`): the one round protocol that both the TCP
//! deployment ([`crate::net`]) and the in-process simulation
//! ([`SecureAggregator`]) run.
//!
//! * [`client_round`] is what ONE client runs over its channel to the server:
//!   it builds a [`ClientState`] from OS randomness, masks its own (scaled,
//!   clipped, quantised) update and answers the server's four steps.
//! * [`server_round`] is what the server runs over one channel per sampled
//!   client: it feeds the [`ServerState`] machine, which adds each masked
//!   input into a running sum at once, so the server never holds an
//!   individual update. A client that times out, disconnects or sends a
//!   message the state machine rejects is dropped from the round at that step
//!   (named, with the reason); below the threshold the round aborts cleanly
//!   (every remaining client is told) and the caller goes on with the next.
//!
//! Weighted averaging under a sum-only protocol: the server tells client `k`
//! its weight `a_k = n_k / n_ref` (from the server's own knowledge of the
//! partition, never from the client's claim), the client submits
//! `a_k * delta_k`, and the server divides the unmasked sum by
//! `sum_{k in survivors} a_k`. The protocol clips every submitted value to
//! `[-clip, clip]` and quantises it with `bits` bits, so the result differs
//! from plain averaging by at most the quantisation error unless values were
//! clipped.
//!
//! Messages travel inside [`crate::net::ToServer::Secure`] and
//! [`crate::net::ToClient::Secure`], tagged with the round and step, so a
//! late message from an earlier round is recognised and discarded.

use crate::FedError;
use crate::aggregate::{AggregateInfo, Aggregator, ClientUpdate, check_updates};
use crate::net::{ToClient, ToServer};
use ppml_net::inprocess::{HangUp, Links, Role, RoleError, run_roles};
use ppml_net::{Channel, NetConfig, NetError, Network};
use ppml_secagg::messages::{ForwardedShares, KeyBroadcast, UnmaskRequest};
use ppml_secagg::{
    ClientState, LinkFailure, RoundParams, SecAggConfig, SecAggError, ServerLink, ServerState,
    Step, drive_server,
};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// What the server tells a sampled client about its part in a secure round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecureSlot {
    /// The client's index in this round's secure aggregation (`0..params.n`).
    pub index: u32,
    /// The round's public parameters (checked by the client).
    pub params: RoundParams,
}

/// How a client's part of a secure round ended.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientRoundEnd {
    /// All four messages sent.
    Completed,
    /// The server aborted the round, or dropped this client from it.
    Aborted(String),
    /// A fault-injection plan made this client leave at this step (tests,
    /// benchmarks): the caller closes the connection.
    Left(Step),
    /// The server moved on (a later round's `Train`, or `Done`) before this
    /// client finished: the message is handed back to the caller's loop.
    Preempted(ToClient),
}

fn sa_err(e: SecAggError) -> FedError {
    FedError::Aggregate(format!("secure aggregation: {e}"))
}

fn enc<T: Serialize>(m: &T) -> Result<Vec<u8>, FedError> {
    Ok(ppml_net::encode(m)?)
}

/// Waits for the server's message of `step` in `round`; discards what belongs
/// to earlier rounds. `Err(end)` when the round ended for this client.
fn await_step(
    ch: &mut Channel,
    round: u32,
    step: Step,
) -> Result<Result<Vec<u8>, ClientRoundEnd>, FedError> {
    loop {
        match ch.recv::<ToClient>()? {
            ToClient::Secure {
                round: r,
                step: s,
                msg,
            } if r == round => {
                if s != step as u8 {
                    return Err(FedError::Protocol(format!(
                        "round {round}: expected the server's message of step {step}, got step {s}"
                    )));
                }
                return Ok(Ok(msg));
            }
            ToClient::Secure { round: r, .. } | ToClient::Abort { round: r, .. } if r < round => {}
            ToClient::Abort { round: r, reason } if r == round => {
                return Ok(Err(ClientRoundEnd::Aborted(reason)));
            }
            other => return Ok(Err(ClientRoundEnd::Preempted(other))),
        }
    }
}

/// One client's part of secure round `round`: masks `input` (already scaled
/// by the client's weight; the quantiser clips it to `[-clip, clip]`) and
/// answers the server's steps over `ch`. The client's keys, seeds and shares
/// come from the OS CSPRNG. `leave_at` is fault injection: the client stops
/// before sending its message of that step.
pub fn client_round(
    ch: &mut Channel,
    round: u32,
    slot: &SecureSlot,
    input: &[f32],
    leave_at: Option<Step>,
) -> Result<ClientRoundEnd, FedError> {
    let params = slot.params.validated(input.len()).map_err(sa_err)?;
    let st = ClientState::new(
        slot.index,
        input,
        &params,
        ppml_random::try_os_rng().map_err(|e| FedError::Config(e.to_string()))?,
    )
    .map_err(sa_err)?;
    run_client_state(ch, round, st, leave_at)
}

/// As [`client_round`] with an input that is already a vector of ring
/// elements of `Z_2^k` (`k = slot.params.ring_bits`): integers with their
/// distributed-DP noise share ([`crate::ddp`]).
pub fn client_round_ring(
    ch: &mut Channel,
    round: u32,
    slot: &SecureSlot,
    input: Vec<u64>,
    leave_at: Option<Step>,
) -> Result<ClientRoundEnd, FedError> {
    let params = slot.params.validated(input.len()).map_err(sa_err)?;
    let st = ClientState::from_ring_elements(
        slot.index,
        input,
        &params,
        ppml_random::try_os_rng().map_err(|e| FedError::Config(e.to_string()))?,
    )
    .map_err(sa_err)?;
    run_client_state(ch, round, st, leave_at)
}

fn run_client_state(
    ch: &mut Channel,
    round: u32,
    mut st: ClientState,
    leave_at: Option<Step>,
) -> Result<ClientRoundEnd, FedError> {
    let send = |ch: &mut Channel, step: Step, msg: Vec<u8>| -> Result<(), FedError> {
        ch.send(&ToServer::Secure {
            round,
            step: step as u8,
            msg,
        })?;
        Ok(())
    };
    if leave_at == Some(Step::AdvertiseKeys) {
        return Ok(ClientRoundEnd::Left(Step::AdvertiseKeys));
    }
    send(
        ch,
        Step::AdvertiseKeys,
        enc(&st.advertise_keys().map_err(sa_err)?)?,
    )?;
    // The server's message that precedes each of the client's later steps.
    for (prev, step) in [
        (Step::AdvertiseKeys, Step::ShareKeys),
        (Step::ShareKeys, Step::MaskedInputCollection),
        (Step::MaskedInputCollection, Step::Unmasking),
    ] {
        let bytes = match await_step(ch, round, prev)? {
            Ok(b) => b,
            Err(end) => return Ok(end),
        };
        if leave_at == Some(step) {
            return Ok(ClientRoundEnd::Left(step));
        }
        let reply = match step {
            Step::ShareKeys => enc(&st
                .share_keys(ppml_net::decode::<KeyBroadcast>(&bytes)?)
                .map_err(sa_err)?)?,
            Step::MaskedInputCollection => enc(&st
                .masked_input(ppml_net::decode::<ForwardedShares>(&bytes)?)
                .map_err(sa_err)?)?,
            _ => enc(&st
                .unmask(ppml_net::decode::<UnmaskRequest>(&bytes)?)
                .map_err(sa_err)?)?,
        };
        send(ch, step, reply)?;
    }
    Ok(ClientRoundEnd::Completed)
}

/// Why a client left a round, as the server saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundDrop {
    /// The client's index in the round.
    pub index: u32,
    /// The step whose message never (validly) arrived.
    pub step: Step,
    pub reason: String,
    /// The connection is unusable (disconnect, garbage): forget it. A client
    /// that was only too slow keeps its connection for later rounds.
    pub fatal: bool,
}

/// What the server learnt from a secure round.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerRoundOutcome {
    /// The decoded sum of the survivors' clipped, quantised inputs; `None` if
    /// the round aborted.
    pub sum: Option<Vec<f32>>,
    /// The same sum as the server unmasked it, in `Z_2^k` (empty if aborted).
    pub raw_sum: Vec<u64>,
    /// Round indices whose inputs are in the sum (U3), sorted.
    pub survivors: Vec<u32>,
    /// Clients dropped, at which step and why.
    pub drops: Vec<RoundDrop>,
    /// Why the round aborted (below threshold), if it did.
    pub aborted: Option<String>,
    /// Per-coordinate bound on the quantisation error of `sum`.
    pub error_bound: f64,
    /// |U1|..|U4|.
    pub set_sizes: [usize; 4],
    /// Seconds the server spent in the round (including waiting).
    pub seconds: f64,
}

/// A message, or why it did not come and whether the connection is unusable.
type Received = Result<Vec<u8>, (String, bool)>;

/// Reads from `ch` until the message of `step` in `round` arrives; discards
/// messages of earlier rounds (a client that was too slow then).
fn recv_step(ch: &mut Channel, round: u32, step: Step) -> Received {
    loop {
        match ch.recv::<ToServer>() {
            Ok(ToServer::Secure {
                round: r,
                step: s,
                msg,
            }) if r == round && s == step as u8 => return Ok(msg),
            Ok(m) if m.round().is_some_and(|r| r < round) => continue,
            Ok(ToServer::Failed { reason, .. }) => {
                return Err((format!("the client gave up: {reason}"), false));
            }
            Ok(other) => {
                return Err((
                    format!(
                        "expected its step-{step} message of round {round}, got {}",
                        other.kind()
                    ),
                    true,
                ));
            }
            Err(e @ NetError::Timeout { .. }) => return Err((e.to_string(), false)),
            Err(e) => return Err((e.to_string(), true)),
        }
    }
}

/// A federated server's link to the client of round index `index`: secagg
/// payloads travel inside [`ToServer::Secure`] / [`ToClient::Secure`], and a
/// client dropped for a reason other than a broken link is told why
/// ([`ToClient::Abort`]), so it can take part in later rounds.
struct FedLink<'a> {
    ch: &'a mut Channel,
    round: u32,
    index: u32,
}

impl ServerLink for FedLink<'_> {
    fn bound_id(&self) -> Option<u32> {
        Some(self.index)
    }

    fn recv_step(&mut self, step: Step) -> Result<Vec<u8>, LinkFailure> {
        recv_step(self.ch, self.round, step)
            .map_err(|(reason, fatal)| LinkFailure { reason, fatal })
    }

    fn send_step(&mut self, step: Step, msg: Vec<u8>) -> Result<(), String> {
        self.ch
            .send(&ToClient::Secure {
                round: self.round,
                step: step as u8,
                msg,
            })
            .map_err(|e| e.to_string())
    }

    fn drop_client(&mut self, reason: &str, fatal: bool) {
        if !fatal {
            let _ = self.ch.send(&ToClient::Abort {
                round: self.round,
                reason: reason.to_owned(),
            });
        }
    }
}

/// The server's side of secure round `round` over `links` (`links[i]` is the
/// channel of round index `i`; the caller has already told each client its
/// [`SecureSlot`]): ppml-secagg's round driver ([`ppml_secagg::drive_server`])
/// over [`FedLink`]s. Every message a client sends is received with the
/// channel's timeout, all clients in parallel, so one slow client costs at
/// most one timeout per step. Never fails: aborts and drops are in the
/// outcome.
pub fn server_round(
    links: &mut [&mut Channel],
    round: u32,
    params: &RoundParams,
    graph_seed: u64,
) -> ServerRoundOutcome {
    let t0 = Instant::now();
    let n = params.n;
    let mut out = ServerRoundOutcome {
        sum: None,
        raw_sum: Vec::new(),
        survivors: Vec::new(),
        drops: Vec::new(),
        aborted: None,
        error_bound: 0.0,
        set_sizes: [0; 4],
        seconds: 0.0,
    };
    if links.len() != n {
        out.aborted = Some(format!(
            "{} channels for a round of {n} clients",
            links.len()
        ));
        return out;
    }
    let mut fed_links: Vec<FedLink<'_>> = links
        .iter_mut()
        .enumerate()
        .map(|(i, ch)| FedLink {
            ch,
            round,
            index: i as u32,
        })
        .collect();
    let run = drive_server(&mut fed_links, ServerState::new(params, graph_seed));
    out.drops = run
        .drops
        .into_iter()
        .map(|d| RoundDrop {
            index: d.link as u32,
            step: d.step,
            reason: if d.rejected {
                format!("message rejected: {}", d.reason)
            } else {
                d.reason
            },
            fatal: d.fatal,
        })
        .collect();
    match run.output {
        Ok(o) => {
            let m = o.survivors.len();
            match params.quantizer() {
                Ok(q) => {
                    out.sum = Some(q.decode_sum(&o.sum, m));
                    out.error_bound = q.sum_error_bound(m);
                }
                Err(e) => out.aborted = Some(e.to_string()),
            }
            out.survivors = o.survivors;
            out.set_sizes = o.set_sizes;
            out.raw_sum = o.sum;
        }
        Err(e) => out.aborted = Some(e.to_string()),
    }
    out.seconds = t0.elapsed().as_secs_f64();
    out
}

/// One secure round run in this process on the SAME code as the deployment:
/// one thread per client running [`client_round`] over an in-memory channel,
/// the server running [`server_round`]. `inputs[i]` is client `i`'s
/// (weighted) input; `leave[i]` optionally makes it leave at a step.
/// `session` and `graph_seed` are public.
pub fn simulate_round(
    cfg: &SecAggConfig,
    inputs: &[Vec<f32>],
    leave: &[Option<Step>],
    session: [u8; 16],
    graph_seed: u64,
) -> Result<SimulatedRound, FedError> {
    let n = inputs.len();
    let dim = inputs.first().map_or(0, Vec::len);
    let params = RoundParams::new(n, dim, cfg, session).map_err(sa_err)?;
    let net = NetConfig::default().with_timeout(cfg.timeout);
    let params = &params;
    // Role 0 is the server, role 1 + i client i, each client linked to the
    // server only.
    let mut roles = Vec::with_capacity(n + 1);
    roles.push(Role::thread(move |net: &mut Network| {
        let mut chs: Vec<Channel> = net.take().into_channels().into_iter().flatten().collect();
        let mut links: Vec<&mut Channel> = chs.iter_mut().collect();
        let outcome = server_round(&mut links, 1, params, graph_seed);
        let bytes = chs.iter().map(|c| c.stats().total_bytes()).sum();
        Ok(SimOutput::Server(outcome, bytes))
    }));
    for (i, x) in inputs.iter().enumerate() {
        let slot = SecureSlot {
            index: i as u32,
            params: params.clone(),
        };
        let l = leave.get(i).copied().flatten();
        roles.push(Role::thread(move |net: &mut Network| {
            let ch = net.channel(0)?;
            // A client's own failure (or planned exit) is the server's
            // business: it shows in the outcome's drops.
            let _ = client_round(ch, 1, &slot, x, l);
            Ok(SimOutput::Client(ch.stats().bytes_sent))
        }));
    }
    let mut names = vec!["server".to_owned()];
    names.extend((0..n).map(|i| format!("client-{i}")));
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let t0 = Instant::now();
    let runs = run_roles(&names, &Links::Star(0), &net, roles)?;
    let seconds = t0.elapsed().as_secs_f64();
    let mut outcome = None;
    let mut server_bytes = 0;
    let mut client_bytes_sent = Vec::with_capacity(n);
    for r in runs {
        match r.output {
            SimOutput::Server(o, b) => {
                outcome = Some(o);
                server_bytes = b;
            }
            SimOutput::Client(b) => client_bytes_sent.push(b),
        }
    }
    let outcome = outcome.ok_or_else(|| FedError::Config("no server outcome".into()))?;
    Ok(SimulatedRound {
        outcome,
        params: params.clone(),
        server_bytes,
        client_bytes_sent,
        seconds,
    })
}

/// What each role of [`simulate_round`] hands back.
enum SimOutput {
    Server(ServerRoundOutcome, u64),
    Client(u64),
}

impl HangUp for FedError {
    fn is_hang_up(&self) -> bool {
        matches!(self, FedError::Net(e) if e.is_hang_up())
    }
}

impl From<RoleError<FedError>> for FedError {
    fn from(e: RoleError<FedError>) -> Self {
        match e {
            RoleError::Failed { error, .. } => error,
            RoleError::Panicked { role } => FedError::Protocol(format!("{role} panicked")),
            RoleError::Setup(e) => FedError::Net(e),
        }
    }
}

/// Result of [`simulate_round`].
#[derive(Debug, Clone)]
pub struct SimulatedRound {
    pub outcome: ServerRoundOutcome,
    pub params: RoundParams,
    /// Bytes through the server's channels (both directions, with framing).
    pub server_bytes: u64,
    /// Bytes each client sent.
    pub client_bytes_sent: Vec<u64>,
    /// Wall time of the round.
    pub seconds: f64,
}

/// The client's weight in a round, `a_k = n_k / n_ref`: `n_k` is what the
/// server knows (or caps) of the client's example count, `n_ref` the mean
/// over the sampled clients, so weights stay near 1 and within the
/// quantiser's range.
pub fn relative_weights(weights: &[f64]) -> Vec<f32> {
    let n_ref = weights.iter().sum::<f64>() / weights.len().max(1) as f64;
    weights
        .iter()
        .map(|&w| if n_ref > 0.0 { (w / n_ref) as f32 } else { 0.0 })
        .collect()
}

/// Secure aggregation as an [`Aggregator`]: the in-process simulation of the
/// deployment's protocol ([`simulate_round`]: the same [`client_round`] and
/// [`server_round`] over in-memory channels).
#[derive(Debug, Clone)]
pub struct SecureAggregator {
    cfg: SecAggConfig,
    seed: u64,
    inputs: Vec<Vec<f32>>,
    last_error_bound: f64,
    last_clipped: usize,
}

impl SecureAggregator {
    /// Defaults for model updates: 24-bit quantisation in `[-2, 2]`, the
    /// protocol's default threshold unless `threshold` is given, SecAgg+ if `graph`.
    pub fn new(threshold: Option<usize>, graph: bool, seed: u64) -> Result<Self, FedError> {
        Self::with_config(default_config(threshold, graph), seed)
    }

    /// A secure aggregator with an explicit ppml-secagg configuration.
    pub fn with_config(cfg: SecAggConfig, seed: u64) -> Result<Self, FedError> {
        if !(cfg.clip > 0.0 && cfg.clip.is_finite()) {
            return Err(FedError::Config(format!(
                "secure aggregation clip must be positive, got {}",
                cfg.clip
            )));
        }
        Ok(SecureAggregator {
            cfg,
            seed,
            inputs: Vec::new(),
            last_error_bound: 0.0,
            last_clipped: 0,
        })
    }

    /// Per-coordinate bound on the quantisation error of the last round's sum.
    pub fn last_error_bound(&self) -> f64 {
        self.last_error_bound
    }

    /// Submitted values of the last round that exceeded the clipping range.
    pub fn last_clipped(&self) -> usize {
        self.last_clipped
    }
}

/// Secure-aggregation settings for model updates: 24-bit quantisation in
/// `[-2, 2]` (the weighted update `a_k delta_k`), default threshold unless
/// given, SecAgg+ if `graph`.
pub fn default_config(threshold: Option<usize>, graph: bool) -> SecAggConfig {
    SecAggConfig {
        threshold,
        graph,
        bits: 24,
        clip: 2.0,
        timeout: Duration::from_secs(600),
        ..SecAggConfig::default()
    }
}

impl Aggregator for SecureAggregator {
    fn name(&self) -> String {
        let t = self
            .cfg
            .threshold
            .map_or_else(|| "default".to_string(), |t| t.to_string());
        format!(
            "secagg{} (threshold {t}, {} bits, clip {})",
            if self.cfg.graph { "+" } else { "" },
            self.cfg.bits,
            self.cfg.clip
        )
    }

    fn aggregate(
        &mut self,
        round: usize,
        updates: &[ClientUpdate<'_>],
        out: &mut [f32],
    ) -> Result<AggregateInfo, FedError> {
        check_updates(round, updates, out.len())?;
        let weights: Vec<f64> = updates.iter().map(|u| u.weight).collect();
        let a = relative_weights(&weights);
        self.inputs.resize_with(updates.len(), Vec::new);
        let clip = self.cfg.clip;
        let mut clipped = 0;
        let mut drops = Vec::new();
        for (i, ((u, v), &a)) in updates
            .iter()
            .zip(self.inputs.iter_mut())
            .zip(&a)
            .enumerate()
        {
            v.clear();
            v.extend(u.delta.iter().map(|&d| a * d));
            clipped += v.iter().filter(|x| x.abs() > clip).count();
            if u.dropped {
                drops.push(i);
            }
        }
        let res = secure_sum(&self.cfg, self.seed, round, &self.inputs, &drops)?;
        let wsum: f64 = res
            .survivors
            .iter()
            .map(|&i| f64::from(a[i as usize]))
            .sum();
        if wsum <= 0.0 {
            return Err(FedError::NoUpdates(round));
        }
        for (o, &s) in out.iter_mut().zip(&res.sum) {
            *o = (f64::from(s) / wsum) as f32;
        }
        self.last_error_bound = res.error_bound;
        self.last_clipped = clipped;
        let mut info = AggregateInfo {
            protocol_bytes: res.bytes,
            ..AggregateInfo::default()
        };
        split_survivors(&res, updates, &mut info, |u| u.weight);
        Ok(info)
    }
}

/// The unmasked sum of one simulated secure round.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SecureSum {
    pub sum: Vec<f32>,
    /// The same sum in `Z_2^k`, as the server unmasked it.
    pub sum_quantised: Vec<u64>,
    pub survivors: Vec<u32>,
    pub error_bound: f64,
    /// Bytes through the server's channels.
    pub bytes: u64,
}

/// One round of secure aggregation of `inputs` (one vector per sampled
/// client), simulated in process on the deployment's code
/// ([`simulate_round`]); the clients at indices `dropped` leave before
/// sending their masked input. An abort (below threshold) is an error.
pub(crate) fn secure_sum(
    cfg: &SecAggConfig,
    seed: u64,
    round: usize,
    inputs: &[Vec<f32>],
    dropped: &[usize],
) -> Result<SecureSum, FedError> {
    let mut leave = vec![None; inputs.len()];
    for &i in dropped {
        if let Some(l) = leave.get_mut(i) {
            *l = Some(Step::MaskedInputCollection);
        }
    }
    // Public choices (session id, graph) derive from the seed; the clients'
    // secrets come from the OS inside `client_round`.
    let s = crate::client::client_seed(seed ^ 0x5345_4341_4747, round, usize::MAX);
    let mut session = [0u8; 16];
    session[..8].copy_from_slice(&s.to_le_bytes());
    session[8..].copy_from_slice(&(round as u64).to_le_bytes());
    let r = simulate_round(cfg, inputs, &leave, session, s)?;
    let o = r.outcome;
    match (o.sum, o.aborted) {
        (Some(sum), None) => Ok(SecureSum {
            sum,
            sum_quantised: o.raw_sum,
            survivors: o.survivors,
            error_bound: o.error_bound,
            bytes: r.server_bytes,
        }),
        (_, reason) => Err(FedError::Aggregate(format!(
            "secure aggregation: {}",
            reason.unwrap_or_else(|| "no sum".into())
        ))),
    }
}

/// Sorts the updates into contributors (the protocol's survivors, weighted
/// by `weight`) and dropped clients.
pub(crate) fn split_survivors(
    outcome: &SecureSum,
    updates: &[ClientUpdate<'_>],
    info: &mut AggregateInfo,
    weight: impl Fn(&ClientUpdate<'_>) -> f64,
) {
    for (i, u) in updates.iter().enumerate() {
        if outcome.survivors.contains(&(i as u32)) {
            info.contributors.push(u.client);
            info.total_weight += weight(u);
        } else {
            info.dropped.push(u.client);
        }
    }
}
