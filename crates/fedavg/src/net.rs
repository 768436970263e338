//! Federated averaging over TCP: one server process, client processes that
//! connect to it (loopback or across hosts), on ppml-net channels.
//!
//! Protocol (postcard messages; parameters travel as raw little-endian `f32`
//! frames, 4 bytes per value):
//!
//! 1. client -> server [`ToServer::Hello`] (optionally asking for a client id);
//!    server -> client [`ToClient::Welcome`] with its id and the [`Setup`]
//!    (architecture, partition, seed, normalisation), from which the client
//!    derives its own examples; client -> server [`ToServer::Ready`] with its
//!    example count.
//! 2. Each round, for every sampled client (all in parallel, one thread each):
//!    [`ToClient::Train`] then the global parameters; the client answers
//!    [`ToServer::Update`] then its update `w_local - w_global`.
//!    A client that disconnects, times out (`round_timeout`) or answers
//!    nonsense is dropped from the round (and from later rounds); the round
//!    completes with the others and the drop is reported in [`RoundStats`].
//! 3. [`ToClient::Done`] ends the run.

use crate::FedError;
use crate::aggregate::{Aggregator, ClientUpdate};
use crate::client::{LocalConfig, LocalStats, LocalTrainer, client_seed};
use crate::server::{RoundStats, RunSummary, Server, sample_clients};
use crate::sim::FedConfig;
use ppml_net::{Channel, ChannelStats, NetConfig, NetError};
use ppml_nn::{Dataset, Model};
use serde::{Deserialize, Serialize};
use std::net::{TcpListener, ToSocketAddrs};
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
    /// Number of parts the training set is split into; client `id` holds part `id`.
    pub partition_clients: u32,
    /// Seed of the partition and of local shuffling.
    pub seed: u64,
    /// Input normalisation (`unit` or `standard`).
    pub normalization: String,
}

/// Messages from a client to the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToServer {
    /// First message; `requested_id` asks for a given client id.
    Hello { requested_id: Option<u32> },
    /// The client has loaded its data.
    Ready { examples: u64 },
    /// Header of an update; the next frame holds the update as LE `f32`s.
    Update {
        round: u32,
        examples: u64,
        steps: u32,
        loss: f32,
    },
    /// The client could not train (the server drops it).
    Failed { reason: String },
}

/// Messages from the server to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToClient {
    /// Answer to `Hello`.
    Welcome { id: u32, setup: Setup },
    /// Train this round; the next frame holds the global parameters as LE `f32`s.
    Train { round: u32, local: LocalConfig },
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

/// Server settings.
#[derive(Debug, Clone)]
pub struct NetServerConfig {
    /// Rounds, fraction, local config, server options, seed, target.
    pub fed: FedConfig,
    /// Sent to every client.
    pub setup: Setup,
    /// Number of client connections to wait for before the first round.
    pub expected_clients: usize,
    /// How long to wait for all clients to connect and load their data.
    pub join_timeout: Duration,
    /// How long a sampled client may take to answer a round.
    pub round_timeout: Duration,
}

struct Conn {
    id: u32,
    ch: Channel,
    examples: u64,
    buf: Vec<f32>,
    stats: LocalStats,
}

fn handshake_accept(
    listener: &TcpListener,
    net: &NetConfig,
    setup: &Setup,
    taken: &mut Vec<u32>,
) -> Result<(u32, Channel), FedError> {
    let mut ch = ppml_net::tcp::accept(listener, net)?;
    let hello: ToServer = ch.recv()?;
    let id = match hello {
        ToServer::Hello {
            requested_id: Some(id),
        } => {
            if taken.contains(&id) {
                return Err(FedError::Protocol(format!(
                    "client id {id} is already taken"
                )));
            }
            id
        }
        ToServer::Hello { requested_id: None } => {
            (0u32..).find(|i| !taken.contains(i)).unwrap_or(u32::MAX)
        }
        other => {
            return Err(FedError::Protocol(format!("expected Hello, got {other:?}")));
        }
    };
    if id >= setup.partition_clients {
        return Err(FedError::Protocol(format!(
            "client id {id} out of range (the training set is split in {} parts)",
            setup.partition_clients
        )));
    }
    taken.push(id);
    ch.send(&ToClient::Welcome {
        id,
        setup: setup.clone(),
    })?;
    Ok((id, ch))
}

/// Runs the server on `listener`: waits for `expected_clients` clients, then
/// runs the rounds, evaluating on `test` after each. `on_round` sees every
/// round (dropped clients included) and `log` receives human-readable events
/// (joins, drops).
pub fn run_server(
    listener: &TcpListener,
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
    let p = model.num_params();
    if cfg.setup.num_params != p as u64 {
        return Err(FedError::Config(format!(
            "setup says {} parameters, the model has {p}",
            cfg.setup.num_params
        )));
    }
    let deadline = Instant::now() + cfg.join_timeout;
    let mut taken = Vec::new();
    let mut pending = Vec::new();
    while pending.len() < cfg.expected_clients {
        let left = deadline.saturating_duration_since(Instant::now());
        let join = NetConfig::default()
            .with_connect_timeout(left)
            .with_timeout(cfg.round_timeout);
        match handshake_accept(listener, &join, &cfg.setup, &mut taken) {
            Ok(joined) => pending.push(joined),
            Err(FedError::Net(NetError::Timeout { .. })) if Instant::now() >= deadline => {
                log(&format!(
                    "only {} of {} clients joined within {:?}",
                    pending.len(),
                    cfg.expected_clients,
                    cfg.join_timeout
                ));
                break;
            }
            // A client that fails its handshake (bad id, garbage, timeout) is
            // turned away; keep accepting until the join deadline.
            Err(e) => log(&format!("a client failed to join: {e}")),
        }
        if Instant::now() >= deadline && pending.len() < cfg.expected_clients {
            log(&format!(
                "only {} of {} clients joined within {:?}",
                pending.len(),
                cfg.expected_clients,
                cfg.join_timeout
            ));
            break;
        }
    }
    let mut conns: Vec<Conn> = Vec::new();
    for (id, mut ch) in pending {
        match ch.recv::<ToServer>() {
            Ok(ToServer::Ready { examples }) if examples > 0 => {
                log(&format!("client {id} joined with {examples} examples"));
                conns.push(Conn {
                    id,
                    ch,
                    examples,
                    buf: vec![0.0; p],
                    stats: LocalStats::default(),
                });
            }
            Ok(other) => log(&format!("client {id} dropped at join: sent {other:?}")),
            Err(e) => log(&format!("client {id} dropped at join: {e}")),
        }
    }
    if conns.is_empty() {
        return Err(FedError::Protocol("no client joined".into()));
    }
    conns.sort_by_key(|c| c.id);
    let mut server = Server::new(model.params_flat(), cfg.fed.server, aggregator)?;
    let mut eval_model = model;
    let mut summary = RunSummary::default();
    let mut wire = Vec::new();
    for round in 1..=cfg.fed.rounds {
        if conns.is_empty() {
            return Err(FedError::Protocol(format!(
                "round {round}: every client has dropped out"
            )));
        }
        let t0 = Instant::now();
        let c0 = crate::server::process_cpu_seconds();
        let picked = sample_clients(conns.len(), cfg.fed.fraction, cfg.fed.seed, round);
        let picked_ids: Vec<usize> = picked.iter().map(|&i| conns[i].id as usize).collect();
        f32s_to_bytes(&server.global, &mut wire);
        let before: Vec<ChannelStats> = picked.iter().map(|&i| conns[i].ch.stats()).collect();
        let local = cfg.fed.local;
        let mut outcome: Vec<Result<(), FedError>> = Vec::with_capacity(picked.len());
        std::thread::scope(|s| {
            let mut handles = Vec::new();
            let mut rest: &mut [Conn] = &mut conns;
            let mut base = 0;
            for &i in &picked {
                let (_, tail) = rest.split_at_mut(i - base);
                let (c, tail) = tail.split_at_mut(1);
                rest = tail;
                base = i + 1;
                let conn = &mut c[0];
                let wire = &wire;
                handles.push(s.spawn(move || serve_round(conn, round as u32, local, wire)));
            }
            for h in handles {
                outcome.push(h.join().unwrap_or_else(|_| {
                    Err(FedError::Protocol("client handler thread panicked".into()))
                }));
            }
        });
        let mut dropped_reasons = Vec::new();
        let mut loss = 0.0;
        let mut weight = 0.0;
        let mut updates = Vec::with_capacity(picked.len());
        for (&i, r) in picked.iter().zip(&outcome) {
            let c = &conns[i];
            if let Err(e) = r {
                dropped_reasons.push((c.id, e.to_string()));
                log(&format!("round {round}: client {} dropped: {e}", c.id));
            } else {
                loss += c.stats.mean_loss as f64 * c.examples as f64;
                weight += c.examples as f64;
            }
            updates.push(ClientUpdate {
                client: c.id as usize,
                delta: &c.buf,
                weight: c.examples as f64,
                dropped: r.is_err(),
            });
        }
        let bytes: u64 = picked
            .iter()
            .zip(&before)
            .map(|(&i, b)| (conns[i].ch.stats() - *b).total_bytes())
            .sum();
        let info = server.apply(round, &updates);
        drop(updates);
        // Forget the failed clients (their connection may be out of sync).
        let failed: Vec<usize> = picked
            .iter()
            .zip(&outcome)
            .filter(|(_, r)| r.is_err())
            .map(|(&i, _)| i)
            .collect();
        for &i in failed.iter().rev() {
            conns.remove(i);
        }
        info?;
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
            sampled: picked_ids,
            dropped: dropped_reasons.iter().map(|(id, _)| *id as usize).collect(),
            drop_reasons: dropped_reasons.into_iter().map(|(_, r)| r).collect(),
            seconds,
            cpu_seconds,
            eval_seconds: t1.elapsed().as_secs_f64(),
            accuracy,
            train_loss: loss / weight.max(1.0),
            bytes,
            // The TCP server aggregates by plain weighted averaging only.
            epsilon: None,
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
    let done = summary.rounds.len() as u32;
    for c in &mut conns {
        let _ = c.ch.send(&ToClient::Done { rounds: done });
    }
    Ok(summary)
}

fn serve_round(
    conn: &mut Conn,
    round: u32,
    local: LocalConfig,
    wire: &[u8],
) -> Result<(), FedError> {
    conn.ch.send(&ToClient::Train { round, local })?;
    conn.ch.send_bytes(wire.to_vec())?;
    let header: ToServer = conn.ch.recv()?;
    match header {
        ToServer::Update {
            round: r,
            examples,
            steps,
            loss,
        } if r == round => {
            let bytes = conn.ch.recv_bytes()?;
            bytes_to_f32s(&bytes, &mut conn.buf)?;
            if examples != conn.examples {
                return Err(FedError::Protocol(format!(
                    "client {} reported {examples} examples, {} at join",
                    conn.id, conn.examples
                )));
            }
            conn.stats = LocalStats {
                examples: examples as usize,
                steps: steps as usize,
                mean_loss: loss,
            };
            Ok(())
        }
        ToServer::Failed { reason } => Err(FedError::Client(conn.id as usize, reason)),
        other => Err(FedError::Protocol(format!(
            "client {}: expected the update of round {round}, got {other:?}",
            conn.id
        ))),
    }
}

/// Called by a client with the server's [`Setup`] and its id: returns the model
/// template (only its shape matters) and the client's own examples.
pub type ClientLoader<'a> = dyn FnMut(&Setup, u32) -> Result<(Model, Dataset), FedError> + 'a;

/// What a client did over a run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClientSummary {
    /// The id the server gave this client.
    pub id: u32,
    /// Rounds this client trained in.
    pub rounds_trained: usize,
    /// Rounds the server ran.
    pub rounds_total: usize,
    /// Traffic of this client.
    pub stats: ChannelStats,
    /// Seconds spent training.
    pub train_seconds: f64,
}

/// Runs a client: connects to `addr`, gets its id and the setup, calls
/// `load(setup, id)` for its model template and examples, then trains
/// whenever the server asks until the server says `Done`.
///
/// `net.timeout` bounds the wait for the server's next message (the server
/// evaluates and trains other clients in between: keep it generous).
pub fn run_client(
    addr: impl ToSocketAddrs,
    requested_id: Option<u32>,
    net: &NetConfig,
    load: &mut ClientLoader<'_>,
    on_round: &mut dyn FnMut(u32, &LocalStats),
) -> Result<ClientSummary, FedError> {
    let mut ch = ppml_net::tcp::connect(addr, net)?;
    ch.send(&ToServer::Hello { requested_id })?;
    let (id, setup) = match ch.recv::<ToClient>()? {
        ToClient::Welcome { id, setup } => (id, setup),
        other => {
            return Err(FedError::Protocol(format!(
                "expected Welcome, got {other:?}"
            )));
        }
    };
    let (model, data) = match load(&setup, id) {
        Ok(x) => x,
        Err(e) => {
            let _ = ch.send(&ToServer::Failed {
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
    loop {
        match ch.recv::<ToClient>()? {
            ToClient::Train { round, local } => {
                let bytes = ch.recv_bytes()?;
                bytes_to_f32s(&bytes, &mut global)?;
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
                        let _ = ch.send(&ToServer::Failed {
                            reason: e.to_string(),
                        });
                        return Err(e);
                    }
                };
                summary.train_seconds += t.elapsed().as_secs_f64();
                summary.rounds_trained += 1;
                ch.send(&ToServer::Update {
                    round,
                    examples: st.examples as u64,
                    steps: st.steps as u32,
                    loss: st.mean_loss,
                })?;
                f32s_to_bytes(trainer.delta(), &mut wire);
                ch.send_bytes(std::mem::take(&mut wire))?;
                on_round(round, &st);
            }
            ToClient::Done { rounds } => {
                summary.rounds_total = rounds as usize;
                summary.stats = ch.stats();
                return Ok(summary);
            }
            other @ ToClient::Welcome { .. } => {
                return Err(FedError::Protocol(format!("unexpected {other:?}")));
            }
        }
    }
}
