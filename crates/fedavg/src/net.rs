//! Federated averaging across processes: one server, client processes that
//! connect to it (loopback or across hosts), over ppml-net channels. The
//! transport is pluggable ([`Listener`] on the server, any connected
//! [`Channel`] on the client), so the same party code runs over plain TCP or
//! an authenticated, encrypted session layer.
//!
//! Protocol (postcard messages; parameters travel as raw little-endian `f32`
//! inside the messages, 4 bytes per value):
//!
//! 1. **Join.** client -> server [`ToServer::Hello`] (asking for its client id,
//!    or taking the one its authenticated identity names); server -> client
//!    [`ToClient::Welcome`] with its id and the [`Setup`] (architecture,
//!    partition, seed, normalisation), from which the client derives its own
//!    examples; client -> server [`ToServer::Ready`] with its example count.
//!    Clients may join at any time up to the population
//!    (`Setup::partition_clients`); a client whose id is already connected
//!    replaces the old connection (a rejoin). Joins take effect between rounds.
//! 2. **Round.** The server samples among the connected clients and sends each
//!    [`ToClient::Train`] with the global parameters and its [`Task`].
//!    * Plain: the client answers [`ToServer::Update`] with its update
//!      `w_local - w_global`. The server checks it (length, finite, L2 norm at
//!      most `max_update_norm`) and weighs it by the example count the server
//!      knows for that client (or the claimed count capped), never more.
//!    * Secure aggregation ([`crate::secure`]): the client masks its weighted,
//!      clipped, quantised update itself and the four steps of
//!      Bonawitz et al. run as [`ToServer::Secure`] / [`ToClient::Secure`];
//!      the server only ever holds the running sum of masked inputs.
//!
//!    Every message carries its round, so a late answer from an earlier round
//!    is recognised and discarded. A client that times out is dropped from
//!    that round only; one that disconnects or breaks the protocol loses its
//!    connection (and may rejoin); one that sends a bad update is dropped
//!    from the round with the reason. Every drop, join and rejoin is named in
//!    [`RoundStats`] and in the log.
//! 3. [`ToClient::Done`] ends the run.

use crate::FedError;
use crate::aggregate::{Aggregator, ClientUpdate};
use crate::client::{LocalConfig, LocalStats, LocalTrainer, client_seed};
use crate::ddp::{DdgAccountant, DdpConfig, DdpTask};
use crate::dp::{DpConfig, RdpAccountant};
use crate::secure::{
    ClientRoundEnd, SecureSlot, client_round, client_round_ring, relative_weights, server_round,
};
use crate::server::{RoundStats, RunSummary, Server, sample_clients};
use crate::sim::FedConfig;
use ppml_net::{Channel, ChannelStats, NetConfig, NetError};
use ppml_nn::{Dataset, Model};
use ppml_secagg::{RoundParams, SecAggConfig, Step};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What every client needs to know to build its model and find its examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Setup {
    /// Architecture name for `Model::from_arch`.
    pub arch: String,
    /// Number of parameters (checked by the client).
    pub num_params: u64,
    /// Partition spec (`Partition`'s `FromStr`), e.g. `iid`.
    pub partition: String,
    /// Number of parts the training set is split into; client `id` holds part
    /// `id`. This is also the population: ids are `0..partition_clients`.
    pub partition_clients: u32,
    /// Seed of the partition and of local shuffling.
    pub seed: u64,
    /// Input normalisation (`unit` or `standard`).
    pub normalization: String,
}

/// What a sampled client must do with its update before submitting it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Clip the update to this L2 norm first (DP; the client clips, the
    /// server cannot check under secure aggregation).
    pub l2_clip: Option<f64>,
    /// Secure aggregation: the client's slot in the round, and the weight
    /// `a_k` it multiplies its update by (the server's, not the client's).
    pub secure: Option<(SecureSlot, f32)>,
    /// Distributed DP: the client clips, rounds onto the integer grid and
    /// adds its discrete Gaussian noise share before masking.
    pub ddp: Option<DdpTask>,
}

/// Messages from a client to the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToServer {
    /// First message; `requested_id` asks for a given client id.
    Hello { requested_id: Option<u32> },
    /// The client has loaded its data.
    Ready { examples: u64 },
    /// A plain update: `delta` holds `w_local - w_global` as LE `f32`s.
    Update {
        round: u32,
        examples: u64,
        steps: u32,
        loss: f32,
        #[serde(with = "serde_bytes")]
        delta: Vec<u8>,
    },
    /// A secure-aggregation message of `round` (postcard of the ppml-secagg
    /// message of `step`, 0..4).
    Secure {
        round: u32,
        step: u8,
        #[serde(with = "serde_bytes")]
        msg: Vec<u8>,
    },
    /// The client could not take part in `round` (0: at join).
    Failed { round: u32, reason: String },
}

impl ToServer {
    /// The round a message belongs to (none for join messages).
    pub fn round(&self) -> Option<u32> {
        match self {
            ToServer::Update { round, .. }
            | ToServer::Secure { round, .. }
            | ToServer::Failed { round, .. } => Some(*round),
            ToServer::Hello { .. } | ToServer::Ready { .. } => None,
        }
    }

    /// The message's kind, for error messages (never its contents).
    pub fn kind(&self) -> &'static str {
        match self {
            ToServer::Hello { .. } => "Hello",
            ToServer::Ready { .. } => "Ready",
            ToServer::Update { .. } => "Update",
            ToServer::Secure { .. } => "Secure",
            ToServer::Failed { .. } => "Failed",
        }
    }
}

/// Messages from the server to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToClient {
    /// Answer to `Hello`.
    Welcome { id: u32, setup: Setup },
    /// Train in this round from the global parameters `params` (LE `f32`s).
    Train {
        round: u32,
        local: LocalConfig,
        task: Task,
        #[serde(with = "serde_bytes")]
        params: Vec<u8>,
    },
    /// The server's secure-aggregation message of `round` after `step`.
    Secure {
        round: u32,
        step: u8,
        #[serde(with = "serde_bytes")]
        msg: Vec<u8>,
    },
    /// This client is out of `round` (dropped, or the round aborted).
    Abort { round: u32, reason: String },
    /// The run is over.
    Done { rounds: u32 },
}

/// `f32`s as little-endian bytes.
pub fn f32s_to_bytes(v: &[f32], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(v.len() * 4);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

/// Little-endian bytes into `out` (which must have exactly `bytes.len() / 4` values).
pub fn bytes_to_f32s(bytes: &[u8], out: &mut [f32]) -> Result<(), FedError> {
    if bytes.len() != out.len() * 4 {
        return Err(FedError::Protocol(format!(
            "expected {} parameter bytes, got {}",
            out.len() * 4,
            bytes.len()
        )));
    }
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
    Ok(())
}

/// Checks a plain update: right length, finite, L2 norm at most `max_norm`.
/// The error names what is wrong (the caller names the client).
pub fn check_update(delta: &[f32], len: usize, max_norm: f64) -> Result<(), String> {
    if delta.len() != len {
        return Err(format!(
            "update of {} values, the model has {len}",
            delta.len()
        ));
    }
    if let Some(i) = delta.iter().position(|x| !x.is_finite()) {
        return Err(format!("update value {i} is not finite"));
    }
    let norm = crate::dp::l2_norm(delta);
    if norm > max_norm {
        return Err(format!(
            "update L2 norm {norm:.3e} exceeds the bound {max_norm:.3e}"
        ));
    }
    Ok(())
}

/// How the server weighs client updates: never by an unchecked claim.
#[derive(Debug, Clone, PartialEq)]
pub enum ExampleWeights {
    /// The server knows every client's example count (`known[id]`, from the
    /// partition it announced); claims are ignored.
    Known(Vec<u64>),
    /// The claimed count, capped at this many examples.
    Capped(u64),
}

impl ExampleWeights {
    fn weight(&self, id: u32, claimed: u64) -> f64 {
        match self {
            ExampleWeights::Known(k) => k.get(id as usize).copied().unwrap_or(0) as f64,
            ExampleWeights::Capped(c) => claimed.min(*c) as f64,
        }
    }
}

/// DP on the wire. `Central`: clients clip to `cfg.clip`, the server adds
/// Gaussian noise `N(0, (z clip)^2)` from the OS CSPRNG to the (unmasked)
/// sum. `Distributed` (needs secure aggregation): every sampled client adds
/// its share of discrete Gaussian noise before masking ([`crate::ddp`]), so
/// the server never sees a noiseless sum. Both divide by the expected number
/// of sampled clients.
#[derive(Debug, Clone, PartialEq)]
pub struct NetDp {
    pub cfg: DpConfig,
    pub mode: DpMode,
}

/// Where the DP noise is added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpMode {
    /// By the server, to the sum.
    Central,
    /// By the clients, in the integer domain; `scale_bits`: grid points per
    /// clip, `2^scale_bits`.
    Distributed { scale_bits: u32 },
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct NetServerConfig {
    /// Rounds, fraction, local config, server options, seed, target.
    pub fed: FedConfig,
    /// Sent to every client.
    pub setup: Setup,
    /// Number of clients to wait for before the first round.
    pub expected_clients: usize,
    /// How long to wait for them (and, later, for anyone when every client is gone).
    pub join_timeout: Duration,
    /// How long a sampled client may take for each message of a round before
    /// it is dropped from that round.
    pub round_timeout: Duration,
    /// Secure aggregation settings (threshold, graph, bits, clip), if on.
    pub secure: Option<SecAggConfig>,
    /// How updates are weighted.
    pub weights: ExampleWeights,
    /// Plain mode: updates with a larger L2 norm are dropped.
    pub max_update_norm: f64,
    /// Central DP (with or without secure aggregation).
    pub dp: Option<NetDp>,
}

/// A source of connected client channels: plain TCP, or an authenticated
/// session layer that also says which client the peer proved to be.
pub trait Listener: Send {
    /// Waits at most `wait` for the next connection. `Ok(None)` when none came.
    fn accept(&mut self, wait: Duration) -> Result<Option<Accepted>, NetError>;
}

/// A connection a [`Listener`] accepted.
pub struct Accepted {
    pub channel: Channel,
    /// The client id the transport authenticated, if it does (then the client
    /// may only ask for this id).
    pub identity: Option<u32>,
}

/// Plain TCP, no authentication (`--insecure`).
pub struct TcpClients {
    listener: TcpListener,
    net: NetConfig,
}

impl TcpClients {
    /// Accepts on `listener`; channels get `net`'s limits and timeout.
    pub fn new(listener: &TcpListener, net: NetConfig) -> Result<Self, FedError> {
        Ok(Self {
            listener: listener.try_clone()?,
            net,
        })
    }
}

impl Listener for TcpClients {
    fn accept(&mut self, wait: Duration) -> Result<Option<Accepted>, NetError> {
        let cfg = self.net.clone().with_connect_timeout(wait);
        match ppml_net::tcp::accept(&self.listener, &cfg) {
            Ok(channel) => Ok(Some(Accepted {
                channel,
                identity: None,
            })),
            Err(NetError::Timeout { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The session-layer protocol name of federated averaging.
pub const SESSION_PROTOCOL: &str = "ppml-fl/1";

/// The party name of client `id` in a parties file: `client-<id>`.
pub fn client_name(id: u32) -> String {
    format!("client-{id}")
}

/// The client id a party name stands for (`client-<id>`), if any.
pub fn client_id(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("client-")?;
    // Canonical decimal only: "client-007" or "client-+7" is not client 7.
    if digits.is_empty() || (digits.len() > 1 && digits.starts_with('0')) {
        return None;
    }
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Clients from a source of named, authenticated channels (the session
/// layer's acceptor: `|wait| acceptor.next(wait)`): a party named
/// `client-N` is client N and may only ask for id N; any other party is
/// refused.
pub struct NamedClients<F> {
    next: F,
}

impl<F> NamedClients<F>
where
    F: FnMut(Duration) -> Result<Option<(String, Channel)>, NetError> + Send,
{
    /// Wraps `next`.
    pub fn new(next: F) -> Self {
        Self { next }
    }
}

impl<F> Listener for NamedClients<F>
where
    F: FnMut(Duration) -> Result<Option<(String, Channel)>, NetError> + Send,
{
    fn accept(&mut self, wait: Duration) -> Result<Option<Accepted>, NetError> {
        match (self.next)(wait)? {
            None => Ok(None),
            Some((name, channel)) => match client_id(&name) {
                Some(id) => Ok(Some(Accepted {
                    channel,
                    identity: Some(id),
                })),
                None => Err(NetError::Handshake(format!(
                    "party `{name}` is not a client (clients are named client-N)"
                ))),
            },
        }
    }
}

struct Joined {
    id: u32,
    ch: Channel,
    claimed: u64,
}

enum JoinEvent {
    Joined(Joined),
    Failed(String),
}

fn handshake(
    mut acc: Accepted,
    setup: &Setup,
    claimed: &Mutex<BTreeSet<u32>>,
    join_wait: Duration,
) -> Result<Joined, FedError> {
    let deadline = Instant::now() + join_wait;
    let ch = &mut acc.channel;
    let hello: ToServer = ch.recv()?;
    let ToServer::Hello { requested_id } = hello else {
        return Err(FedError::Protocol(format!(
            "expected Hello, got {}",
            hello.kind()
        )));
    };
    let id = {
        // Poisoned only if another handshake panicked; the set is still valid.
        let mut set = claimed.lock().unwrap_or_else(|e| e.into_inner());
        let id = match (acc.identity, requested_id) {
            (Some(auth), Some(req)) if auth != req => {
                return Err(FedError::Protocol(format!(
                    "authenticated as client {auth}, asked for id {req}"
                )));
            }
            (Some(auth), _) => auth,
            (None, Some(req)) => req,
            (None, None) => (0..setup.partition_clients)
                .find(|i| !set.contains(i))
                .ok_or_else(|| {
                    FedError::Protocol(format!(
                        "the population of {} clients is complete",
                        setup.partition_clients
                    ))
                })?,
        };
        if id >= setup.partition_clients {
            return Err(FedError::Protocol(format!(
                "client id {id} out of range (the population is {})",
                setup.partition_clients
            )));
        }
        set.insert(id);
        id
    };
    ch.send(&ToClient::Welcome {
        id,
        setup: setup.clone(),
    })?;
    // Loading a client's data can take longer than one receive timeout on a
    // loaded machine: keep waiting (the channel stays usable after a
    // timeout) until the join deadline.
    let ready = loop {
        match ch.recv::<ToServer>() {
            Err(NetError::Timeout { .. }) if Instant::now() < deadline => continue,
            other => break other?,
        }
    };
    match ready {
        ToServer::Ready { examples } if examples > 0 => Ok(Joined {
            id,
            ch: acc.channel,
            claimed: examples,
        }),
        ToServer::Failed { reason, .. } => Err(FedError::Client(id as usize, reason)),
        other => Err(FedError::Protocol(format!(
            "client {id}: expected Ready, got {}",
            other.kind()
        ))),
    }
}

/// Accepts connections until `stop`, each handshake on its own thread so a
/// silent connection delays no one.
fn spawn_acceptor(
    mut listener: Box<dyn Listener>,
    setup: Setup,
    join_wait: Duration,
    stop: Arc<AtomicBool>,
    tx: Sender<JoinEvent>,
) -> std::thread::JoinHandle<()> {
    let claimed = Arc::new(Mutex::new(BTreeSet::new()));
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept(Duration::from_millis(50)) {
                Ok(Some(acc)) => {
                    let (setup, claimed, tx) = (setup.clone(), claimed.clone(), tx.clone());
                    std::thread::spawn(move || {
                        let ev = match handshake(acc, &setup, &claimed, join_wait) {
                            Ok(j) => JoinEvent::Joined(j),
                            Err(e) => JoinEvent::Failed(e.to_string()),
                        };
                        let _ = tx.send(ev);
                    });
                }
                Ok(None) => {}
                Err(e) => {
                    let _ = tx.send(JoinEvent::Failed(format!("accept failed: {e}")));
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    })
}

struct Conn {
    ch: Channel,
    claimed: u64,
}

/// The result of one sampled client's plain round.
type PlainResult = Result<(Vec<f32>, LocalStats), (String, bool)>;

fn plain_exchange(
    ch: &mut Channel,
    round: u32,
    train: &ToClient,
    p: usize,
    max_norm: f64,
) -> PlainResult {
    let fatal = |e: NetError| {
        let timeout = matches!(e, NetError::Timeout { .. });
        (e.to_string(), !timeout)
    };
    ch.send(train).map_err(fatal)?;
    loop {
        match ch.recv::<ToServer>().map_err(fatal)? {
            ToServer::Update {
                round: r,
                examples,
                steps,
                loss,
                delta,
            } if r == round => {
                let mut buf = vec![0.0f32; p];
                bytes_to_f32s(&delta, &mut buf).map_err(|e| (e.to_string(), false))?;
                check_update(&buf, p, max_norm).map_err(|e| (format!("bad update: {e}"), false))?;
                return Ok((
                    buf,
                    LocalStats {
                        examples: examples as usize,
                        steps: steps as usize,
                        mean_loss: loss,
                    },
                ));
            }
            ToServer::Failed { round: r, reason } if r == round => {
                return Err((format!("the client gave up: {reason}"), false));
            }
            m if m.round().is_some_and(|r| r < round) => {}
            other => {
                return Err((
                    format!("expected the update of round {round}, got {}", other.kind()),
                    true,
                ));
            }
        }
    }
}

/// Runs the server: accepts clients from `listener` (at any time, up to the
/// population), waits for `expected_clients` of them, then runs the rounds,
/// evaluating on `test` after each. `aggregator` is the plain-mode
/// aggregation (ignored with secure aggregation, where the server only gets
/// the sum). `on_round` sees every round and `log` receives human-readable
/// events (joins, rejoins, drops, aborts).
pub fn run_server(
    listener: Box<dyn Listener>,
    model: Model,
    cfg: &NetServerConfig,
    test: Option<&Dataset>,
    aggregator: Box<dyn Aggregator>,
    on_round: &mut dyn FnMut(&RoundStats),
    log: &mut dyn FnMut(&str),
) -> Result<RunSummary, FedError> {
    cfg.fed.validate()?;
    if cfg.expected_clients == 0 {
        return Err(FedError::Config("expected at least one client".into()));
    }
    if cfg.expected_clients > cfg.setup.partition_clients as usize {
        return Err(FedError::Config(format!(
            "waiting for {} clients, the population is {}",
            cfg.expected_clients, cfg.setup.partition_clients
        )));
    }
    if cfg.max_update_norm.is_nan() || cfg.max_update_norm <= 0.0 {
        return Err(FedError::Config(format!(
            "max update norm must be positive, got {}",
            cfg.max_update_norm
        )));
    }
    if let Some(dp) = &cfg.dp {
        dp.cfg
            .validate()
            .map_err(|e| FedError::Config(e.to_string()))?;
        if let DpMode::Distributed { .. } = dp.mode
            && cfg.secure.is_none()
        {
            return Err(FedError::Config(
                "distributed DP needs secure aggregation (the noise shares only hide an update inside a masked sum)".into(),
            ));
        }
    }
    let p = model.num_params();
    if cfg.setup.num_params != p as u64 {
        return Err(FedError::Config(format!(
            "setup says {} parameters, the model has {p}",
            cfg.setup.num_params
        )));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let acceptor = spawn_acceptor(
        listener,
        cfg.setup.clone(),
        cfg.join_timeout,
        stop.clone(),
        tx,
    );
    let result = serve(&rx, model, cfg, test, aggregator, on_round, log);
    stop.store(true, Ordering::Relaxed);
    let _ = acceptor.join();
    result
}

struct Roster {
    conns: BTreeMap<u32, Conn>,
    ever: BTreeSet<u32>,
}

impl Roster {
    /// Takes in the joins that arrived; returns (joined, rejoined).
    fn admit(
        &mut self,
        rx: &Receiver<JoinEvent>,
        wait: Option<Duration>,
        log: &mut dyn FnMut(&str),
    ) -> (Vec<usize>, Vec<usize>) {
        let mut joined = Vec::new();
        let mut rejoined = Vec::new();
        let mut take = |ev: JoinEvent, log: &mut dyn FnMut(&str)| match ev {
            JoinEvent::Joined(j) => {
                let again = !self.ever.insert(j.id);
                if again {
                    log(&format!(
                        "client {} rejoined with {} examples",
                        j.id, j.claimed
                    ));
                    rejoined.push(j.id as usize);
                } else {
                    log(&format!(
                        "client {} joined with {} examples",
                        j.id, j.claimed
                    ));
                    joined.push(j.id as usize);
                }
                // A newer connection for the same id replaces the old one.
                self.conns.insert(
                    j.id,
                    Conn {
                        ch: j.ch,
                        claimed: j.claimed,
                    },
                );
            }
            JoinEvent::Failed(why) => log(&format!("a client failed to join: {why}")),
        };
        if let Some(w) = wait
            && let Ok(ev) = rx.recv_timeout(w)
        {
            take(ev, log);
        }
        while let Ok(ev) = rx.try_recv() {
            take(ev, log);
        }
        (joined, rejoined)
    }
}

#[allow(clippy::too_many_arguments)]
fn serve(
    rx: &Receiver<JoinEvent>,
    model: Model,
    cfg: &NetServerConfig,
    test: Option<&Dataset>,
    aggregator: Box<dyn Aggregator>,
    on_round: &mut dyn FnMut(&RoundStats),
    log: &mut dyn FnMut(&str),
) -> Result<RunSummary, FedError> {
    let p = model.num_params();
    let mut roster = Roster {
        conns: BTreeMap::new(),
        ever: BTreeSet::new(),
    };
    let deadline = Instant::now() + cfg.join_timeout;
    let (mut joined, mut rejoined) = (Vec::new(), Vec::new());
    while roster.conns.len() < cfg.expected_clients {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            log(&format!(
                "only {} of {} clients joined within {:?}",
                roster.conns.len(),
                cfg.expected_clients,
                cfg.join_timeout
            ));
            break;
        }
        let (j, r) = roster.admit(rx, Some(left.min(Duration::from_millis(200))), log);
        joined.extend(j);
        rejoined.extend(r);
    }
    if roster.conns.is_empty() {
        return Err(FedError::Protocol("no client joined".into()));
    }
    let mut server = Server::new(model.params_flat(), cfg.fed.server, aggregator)?;
    let mut eval_model = model;
    let mut summary = RunSummary::default();
    let mut acct = RdpAccountant::new();
    let mut ddg = DdgAccountant::new();
    let ddp_cfg = cfg.dp.as_ref().and_then(|d| match d.mode {
        DpMode::Distributed { scale_bits } => Some(DdpConfig {
            clip: d.cfg.clip,
            noise_multiplier: d.cfg.noise_multiplier,
            delta: d.cfg.delta,
            scale_bits,
        }),
        DpMode::Central => None,
    });
    if let Some(d) = &ddp_cfg {
        d.validate()?;
    }
    // Central DP over secure aggregation: the quantiser's range is the DP
    // clip rounded up to f32, so that the DP grid's base covers it.
    let secure_cfg: Option<SecAggConfig> = cfg.secure.clone().map(|mut c| {
        if let Some(d) = cfg.dp.as_ref().filter(|d| d.mode == DpMode::Central) {
            c.clip = crate::aggregate::f32_at_least(d.cfg.clip);
        }
        c
    });
    let mut noise_rng = ppml_random::try_os_rng().map_err(|e| FedError::Config(e.to_string()))?;
    let population = cfg.setup.partition_clients as usize;
    let mut wire = Vec::new();
    for round in 1..=cfg.fed.rounds {
        let (j, r) = roster.admit(rx, None, log);
        joined.extend(j);
        rejoined.extend(r);
        if roster.conns.is_empty() {
            log(&format!(
                "round {round}: every client is gone; waiting {:?} for one to (re)join",
                cfg.join_timeout
            ));
            let (j, r) = roster.admit(rx, Some(cfg.join_timeout), log);
            joined.extend(j);
            rejoined.extend(r);
            if roster.conns.is_empty() {
                return Err(FedError::Protocol(format!(
                    "round {round}: every client has dropped out"
                )));
            }
        }
        let t0 = Instant::now();
        let c0 = crate::server::process_cpu_seconds();
        let live: Vec<u32> = roster.conns.keys().copied().collect();
        let picked: Vec<u32> = if cfg.dp.is_some() {
            // DP runs: Poisson sampling, every connected client independently
            // with probability q = fraction, from the OS CSPRNG (the
            // accountant's amplification assumes nobody can predict it).
            let mut rng = ppml_random::os_rng();
            let mut v = Vec::new();
            for &id in &live {
                if ppml_random::bernoulli_f64(&mut rng, cfg.fed.fraction)
                    .map_err(|e| FedError::Config(e.to_string()))?
                {
                    v.push(id);
                }
            }
            v
        } else {
            sample_clients(live.len(), cfg.fed.fraction, cfg.fed.seed, round)
                .into_iter()
                .map(|i| live[i])
                .collect()
        };
        let before: Vec<ChannelStats> = picked
            .iter()
            .map(|id| roster.conns[id].ch.stats())
            .collect();
        f32s_to_bytes(&server.global, &mut wire);
        let weights: Vec<f64> = picked
            .iter()
            .map(|id| cfg.weights.weight(*id, roster.conns[id].claimed))
            .collect();
        let mut drops: Vec<(u32, String, bool)> = Vec::new();
        let mut aborted = None;
        let mut train_loss = f64::NAN;
        // Central DP: uniform weights, clipped updates, noise on the sum.
        let l2_clip = cfg
            .dp
            .as_ref()
            .filter(|d| d.mode == DpMode::Central)
            .map(|d| {
                let margin = match &secure_cfg {
                    // Half a quantisation step per coordinate can add this much norm.
                    Some(sa) => {
                        let step = 2.0 * f64::from(sa.clip) / ((1u64 << sa.bits) - 1) as f64;
                        (p as f64).sqrt() * step / 2.0
                    }
                    None => 0.0,
                };
                d.cfg.clip - margin
            });
        if l2_clip.is_some_and(|c| c <= 0.0) {
            return Err(FedError::Config(
                "the DP clip is below the quantisation margin".into(),
            ));
        }
        // DP: the sampling rate and the fixed denominator q N of DP-FedAvg.
        let q = cfg.fed.fraction;
        let expected = (q * population as f64).max(f64::MIN_POSITIVE);
        let mut avg: Option<Vec<f32>> = None;
        let mut apply_info = None;
        let mut contributors: Vec<u32> = Vec::new();
        if let Some(sa) = &secure_cfg {
            let a = if cfg.dp.is_some() {
                vec![1.0f32; picked.len()]
            } else {
                relative_weights(&weights)
            };
            let mut session = [0u8; 16];
            rand::Rng::fill_bytes(&mut noise_rng, &mut session);
            let ddp_task = ddp_cfg.map(|d| d.task(picked.len()));
            let mut sa = sa.clone();
            if let Some(t) = &ddp_task {
                // Size the ring for the integer sum plus noise: k = bits + ceil(log2 n).
                let need = crate::ddp::ring_bits_for(t, picked.len());
                let log = ppml_secagg::ring_bits(0, picked.len());
                sa.bits = need.saturating_sub(log).max(1);
            }
            let params = (picked.len() >= 2)
                .then(|| RoundParams::new(picked.len(), p, &sa, session))
                .transpose()
                .map_err(|e| FedError::Config(e.to_string()))?;
            match params {
                None => {
                    aborted = Some(format!(
                        "secure aggregation needs at least 2 clients, {} sampled",
                        picked.len()
                    ));
                }
                Some(params) => {
                    let mut links: Vec<(u32, &mut Conn)> = roster
                        .conns
                        .iter_mut()
                        .filter(|(id, _)| picked.contains(id))
                        .map(|(id, c)| (*id, c))
                        .collect();
                    // Tell every sampled client its slot; one that cannot be
                    // reached still counts in the round (it drops at step 0).
                    for (i, (_, c)) in links.iter_mut().enumerate() {
                        let train = ToClient::Train {
                            round: round as u32,
                            local: cfg.fed.local,
                            task: Task {
                                l2_clip,
                                secure: Some((
                                    SecureSlot {
                                        index: i as u32,
                                        params: params.clone(),
                                    },
                                    a[i],
                                )),
                                ddp: ddp_task,
                            },
                            params: wire.clone(),
                        };
                        let _ = c.ch.send(&train);
                    }
                    let graph_seed =
                        client_seed(cfg.fed.seed ^ 0x0047_5241_5048, round, usize::MAX);
                    let mut chs: Vec<&mut Channel> =
                        links.iter_mut().map(|(_, c)| &mut c.ch).collect();
                    let out = server_round(&mut chs, round as u32, &params, graph_seed);
                    for d in &out.drops {
                        drops.push((
                            picked[d.index as usize],
                            format!("dropped at step {}: {}", d.step, d.reason),
                            d.fatal,
                        ));
                    }
                    match (out.sum, out.aborted) {
                        (Some(mut sum), None) => {
                            contributors =
                                out.survivors.iter().map(|&i| picked[i as usize]).collect();
                            if let Some(t) = &ddp_task {
                                // The noise is already in the sum.
                                sum = crate::ddp::decode_sum(&out.raw_sum, t, params.ring_bits);
                                for s in &mut sum {
                                    *s = (f64::from(*s) / expected) as f32;
                                }
                                ddg.step(t, out.survivors.len(), p);
                            } else if let Some(dp) = &cfg.dp {
                                // Central DP: the unmasked sum onto the DP grid, plus
                                // exact discrete Gaussian noise from the OS CSPRNG.
                                let dp_err =
                                    |e: crate::dp::DpError| FedError::Aggregate(e.to_string());
                                let release = crate::dp::DiscreteGaussianSum::with_grid_base(
                                    &dp.cfg,
                                    p,
                                    f64::from(sa.clip),
                                )
                                .map_err(dp_err)?;
                                let mut acc = vec![0i64; p];
                                crate::aggregate::secagg_units(
                                    &out.raw_sum,
                                    out.survivors.len(),
                                    params.bits,
                                    release.grid_bits(),
                                    &mut acc,
                                )?;
                                release
                                    .release(&acc, expected, &mut noise_rng, &mut sum)
                                    .map_err(dp_err)?;
                            } else {
                                let wsum: f64 = out
                                    .survivors
                                    .iter()
                                    .map(|&i| f64::from(a[i as usize]))
                                    .sum();
                                for s in &mut sum {
                                    *s = (f64::from(*s) / wsum) as f32;
                                }
                            }
                            avg = Some(sum);
                        }
                        (_, reason) => {
                            aborted = Some(reason.unwrap_or_else(|| "no sum".into()));
                        }
                    }
                }
            }
        } else {
            let train = ToClient::Train {
                round: round as u32,
                local: cfg.fed.local,
                task: Task {
                    l2_clip,
                    secure: None,
                    ddp: None,
                },
                params: wire.clone(),
            };
            let max_norm = cfg.max_update_norm;
            let results: Vec<(u32, PlainResult)> = std::thread::scope(|s| {
                let hs: Vec<_> = roster
                    .conns
                    .iter_mut()
                    .filter(|(id, _)| picked.contains(id))
                    .map(|(id, c)| {
                        let train = &train;
                        let id = *id;
                        s.spawn(move || {
                            (
                                id,
                                plain_exchange(&mut c.ch, round as u32, train, p, max_norm),
                            )
                        })
                    })
                    .collect();
                hs.into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or((u32::MAX, Err(("handler panicked".into(), true))))
                    })
                    .collect()
            });
            let mut loss = 0.0;
            let mut wl = 0.0;
            let mut updates = Vec::with_capacity(results.len());
            for ((id, r), &w) in results.iter().zip(&weights) {
                match r {
                    Ok((delta, st)) => {
                        loss += f64::from(st.mean_loss) * w;
                        wl += w;
                        updates.push(ClientUpdate {
                            client: *id as usize,
                            delta,
                            weight: w,
                            dropped: false,
                        });
                    }
                    Err((why, fatal)) => drops.push((*id, why.clone(), *fatal)),
                }
            }
            train_loss = loss / wl.max(f64::MIN_POSITIVE);
            if updates.is_empty() {
                aborted = Some("no valid update arrived".into());
            } else {
                apply_info = Some(server.apply(round, &updates)?);
                contributors = updates.iter().map(|u| u.client as u32).collect();
            }
        }
        if let Some(avg) = &avg {
            server.apply_average(round, avg)?;
        }
        // Central DP over secure aggregation: the server's noise is charged
        // when it is added (an aborted round releases nothing).
        let central_secure =
            cfg.secure.is_some() && cfg.dp.as_ref().is_some_and(|d| d.mode == DpMode::Central);
        if central_secure
            && aborted.is_none()
            && let Some(dp) = &cfg.dp
        {
            acct.step(q, dp.cfg.noise_multiplier, 1)
                .map_err(|e| FedError::Aggregate(e.to_string()))?;
        }
        let epsilon = if let Some(d) = &ddp_cfg {
            Some(ddg.epsilon(d.delta)?)
        } else if central_secure {
            let d = cfg.dp.as_ref().map_or(1e-5, |d| d.cfg.delta);
            Some(acct.spent(d).map(|s| s.epsilon).unwrap_or(0.0))
        } else {
            server.aggregator().privacy_spent().map(|(e, _)| e)
        };
        drop(apply_info);
        let bytes: u64 = picked
            .iter()
            .zip(&before)
            .map(|(id, b)| {
                roster
                    .conns
                    .get(id)
                    .map_or(0, |c| (c.ch.stats() - *b).total_bytes())
            })
            .sum();
        for (id, why, fatal) in &drops {
            log(&format!(
                "round {round}: client {id} dropped{}: {why}",
                if *fatal { " (connection closed)" } else { "" }
            ));
            if *fatal {
                roster.conns.remove(id);
            }
        }
        if let Some(why) = &aborted {
            log(&format!(
                "round {round}: aborted, the model is unchanged: {why}"
            ));
        }
        let _ = contributors;
        let seconds = t0.elapsed().as_secs_f64();
        let cpu_seconds = match (c0, crate::server::process_cpu_seconds()) {
            (Some(a), Some(b)) => b - a,
            _ => f64::NAN,
        };
        let t1 = Instant::now();
        let due = round % cfg.fed.eval_every.max(1) == 0 || round == cfg.fed.rounds;
        let accuracy = match test {
            Some(t) if due => {
                eval_model.set_params_flat(&server.global)?;
                eval_model.evaluate(t)
            }
            _ => f64::NAN,
        };
        let st = RoundStats {
            round,
            sampled: picked.iter().map(|&i| i as usize).collect(),
            dropped: drops.iter().map(|(id, _, _)| *id as usize).collect(),
            drop_reasons: drops.into_iter().map(|(_, r, _)| r).collect(),
            seconds,
            cpu_seconds,
            eval_seconds: t1.elapsed().as_secs_f64(),
            accuracy,
            train_loss,
            bytes,
            epsilon,
            joined: std::mem::take(&mut joined),
            rejoined: std::mem::take(&mut rejoined),
            aborted,
        };
        on_round(&st);
        let hit = cfg.fed.target.is_some_and(|t| st.accuracy >= t);
        if hit && summary.rounds_to_target.is_none() {
            summary.rounds_to_target = Some(round);
        }
        summary.rounds.push(st);
        if hit && cfg.fed.stop_at_target {
            break;
        }
    }
    summary.final_params = server.global.clone();
    let done = summary.rounds.len() as u32;
    for c in roster.conns.values_mut() {
        let _ = c.ch.send(&ToClient::Done { rounds: done });
    }
    Ok(summary)
}

/// Called by a client with the server's [`Setup`] and its id: returns the model
/// template (only its shape matters) and the client's own examples.
pub type ClientLoader<'a> = dyn FnMut(&Setup, u32) -> Result<(Model, Dataset), FedError> + 'a;

/// Fault injection for tests and benchmarks (a real client leaves none of these set).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientOptions {
    /// Leave (close the connection) in this round at this secure-aggregation
    /// step, before sending the step's message. With plain aggregation, any
    /// step means "before sending the update".
    pub leave_at: Option<(u32, Step)>,
}

/// What a client did over a run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClientSummary {
    /// The id the server gave this client.
    pub id: u32,
    /// Rounds this client trained in.
    pub rounds_trained: usize,
    /// Rounds whose secure aggregation this client completed.
    pub rounds_completed: usize,
    /// Rounds the server aborted or dropped this client from, with the reason.
    pub aborted: Vec<(u32, String)>,
    /// Rounds the server ran (0 if this client left early).
    pub rounds_total: usize,
    /// The round in which this client left on purpose (fault injection).
    pub left_in: Option<u32>,
    /// Traffic of this client.
    pub stats: ChannelStats,
    /// Seconds spent training.
    pub train_seconds: f64,
}

/// Runs a client over `ch` (connected to the server by any transport): gets
/// its id and the setup, calls `load(setup, id)` for its model template and
/// examples, then trains whenever the server asks until the server says
/// `Done`. With secure aggregation the client masks its own update
/// ([`crate::secure::client_round`]); a non-finite update is never sent
/// (the client tells the server it skips the round).
///
/// The channel's timeout bounds the wait for the server's next message (the
/// server evaluates and trains other clients in between: keep it generous).
pub fn run_client(
    mut ch: Channel,
    requested_id: Option<u32>,
    load: &mut ClientLoader<'_>,
    opts: &ClientOptions,
    on_round: &mut dyn FnMut(u32, &LocalStats),
) -> Result<ClientSummary, FedError> {
    ch.send(&ToServer::Hello { requested_id })?;
    let (id, setup) = match ch.recv::<ToClient>()? {
        ToClient::Welcome { id, setup } => (id, setup),
        ToClient::Done { .. } => {
            return Err(FedError::Protocol("the server has finished".into()));
        }
        _ => return Err(FedError::Protocol("expected Welcome".into())),
    };
    let (model, data) = match load(&setup, id) {
        Ok(x) => x,
        Err(e) => {
            let _ = ch.send(&ToServer::Failed {
                round: 0,
                reason: e.to_string(),
            });
            return Err(e);
        }
    };
    if model.num_params() as u64 != setup.num_params {
        let reason = format!(
            "model {} has {} parameters, the server's has {}",
            model.arch,
            model.num_params(),
            setup.num_params
        );
        let _ = ch.send(&ToServer::Failed {
            round: 0,
            reason: reason.clone(),
        });
        return Err(FedError::Protocol(reason));
    }
    ch.send(&ToServer::Ready {
        examples: data.len() as u64,
    })?;
    let indices: Vec<usize> = (0..data.len()).collect();
    let mut trainer = LocalTrainer::new(&model);
    let mut global = vec![0.0f32; model.num_params()];
    let mut wire = Vec::new();
    let mut summary = ClientSummary {
        id,
        ..ClientSummary::default()
    };
    let mut pending: Option<ToClient> = None;
    loop {
        let msg = match pending.take() {
            Some(m) => m,
            None => ch.recv::<ToClient>()?,
        };
        match msg {
            ToClient::Train {
                round,
                local,
                task,
                params,
            } => {
                bytes_to_f32s(&params, &mut global)?;
                let t = Instant::now();
                let st = match trainer.train(
                    &global,
                    &data,
                    &indices,
                    &local,
                    client_seed(setup.seed, round as usize, id as usize),
                ) {
                    Ok(s) => s,
                    Err(e) => {
                        ch.send(&ToServer::Failed {
                            round,
                            reason: e.to_string(),
                        })?;
                        continue;
                    }
                };
                summary.train_seconds += t.elapsed().as_secs_f64();
                summary.rounds_trained += 1;
                let leave = opts.leave_at.and_then(|(r, s)| (r == round).then_some(s));
                let mut delta = trainer.delta().to_vec();
                if let Some(i) = delta.iter().position(|x| !x.is_finite()) {
                    ch.send(&ToServer::Failed {
                        round,
                        reason: format!("local update value {i} is not finite"),
                    })?;
                    continue;
                }
                if let Some(c) = task.l2_clip {
                    crate::dp::clip_update(&mut delta, c)
                        .map_err(|e| FedError::Config(e.to_string()))?;
                }
                match &task.secure {
                    None => {
                        if leave.is_some() {
                            summary.left_in = Some(round);
                            summary.stats = ch.stats();
                            return Ok(summary);
                        }
                        f32s_to_bytes(&delta, &mut wire);
                        ch.send(&ToServer::Update {
                            round,
                            examples: st.examples as u64,
                            steps: st.steps as u32,
                            loss: st.mean_loss,
                            delta: std::mem::take(&mut wire),
                        })?;
                    }
                    Some((slot, a)) => {
                        if !(a.is_finite() && *a >= 0.0) {
                            return Err(FedError::Protocol(format!("weight {a} from the server")));
                        }
                        for d in &mut delta {
                            *d *= a;
                        }
                        let end = match &task.ddp {
                            Some(t) => {
                                let k = slot.params.ring_bits;
                                if !(2..=64).contains(&k) {
                                    return Err(FedError::Protocol(format!("ring of {k} bits")));
                                }
                                let ring = crate::ddp::encode_client(&delta, t, k)?;
                                client_round_ring(&mut ch, round, slot, ring, leave)?
                            }
                            None => client_round(&mut ch, round, slot, &delta, leave)?,
                        };
                        match end {
                            ClientRoundEnd::Completed => summary.rounds_completed += 1,
                            ClientRoundEnd::Aborted(why) => summary.aborted.push((round, why)),
                            ClientRoundEnd::Left(_) => {
                                summary.left_in = Some(round);
                                summary.stats = ch.stats();
                                return Ok(summary);
                            }
                            ClientRoundEnd::Preempted(m) => pending = Some(m),
                        }
                    }
                }
                on_round(round, &st);
            }
            ToClient::Done { rounds } => {
                summary.rounds_total = rounds as usize;
                summary.stats = ch.stats();
                return Ok(summary);
            }
            // Leftovers of a round this client already finished or left.
            ToClient::Secure { .. } | ToClient::Abort { .. } => {}
            ToClient::Welcome { .. } => {
                return Err(FedError::Protocol("unexpected Welcome".into()));
            }
        }
    }
}
