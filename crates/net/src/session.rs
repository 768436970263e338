//! The session layer: named, authenticated links between the parties of a
//! parties file.
//!
//! A [`Session`] is one party's (one role's) side: its name, the parties
//! file, its key (or none in insecure mode), the protocol it speaks and the
//! limits ([`NetConfig`]). It can
//!
//! - [`Session::connect`] to a named party: retries until the party listens
//!   (and while something else answers at its address) up to
//!   `connect_timeout`; the TLS handshake accepts only the party's pinned
//!   certificate;
//! - [`Session::listen`] on its own address: an [`Acceptor`] whose background
//!   thread accepts connections concurrently, each handshake in its own
//!   thread with its own deadline (`handshake_timeout`). A stray, silent,
//!   garbled or impostor connection is refused and logged on stderr; it
//!   neither stalls nor aborts the wait for the legitimate parties.
//!
//! ## The handshake (version [`HANDSHAKE_VERSION`])
//!
//! 1. TLS 1.3 with client certificates (see [`crate::tls`]), unless insecure.
//! 2. The connecting side sends a [`Hello`] frame (magic `PPMS`, version,
//!    protocol name, its own name, the name it wants to reach, whether it
//!    is insecure).
//! 3. The accepting side checks the version, the protocol, that it is the
//!    party asked for, that the claimed party exists and, with TLS, that the
//!    client's certificate is exactly the claimed party's pinned certificate.
//!    It answers [`Reply::Accepted`] or [`Reply::Refused`] with the reason
//!    (nothing secret: the reason names the party and the certificate
//!    fingerprints), and logs refusals.
//!
//! Handshake frames are at most [`HELLO_MAX_BYTES`] and are not counted in
//! the channel statistics.

use crate::tcp::{ReadHalf, TcpTransport, WriteHalf, connect_stream_until};
use crate::tls::{self, Identity};
use crate::{Channel, NetConfig, NetError, Parties, frame};
use serde::{Deserialize, Serialize};
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Version of the session handshake; both sides must speak the same one.
pub const HANDSHAKE_VERSION: u16 = 1;
/// Largest handshake frame accepted.
pub const HELLO_MAX_BYTES: usize = 4096;
/// Handshakes in progress at once on one listener; connections beyond are
/// closed at once (and logged), so a connection flood cannot exhaust threads.
pub const MAX_PENDING_HANDSHAKES: usize = 64;

const MAGIC: [u8; 4] = *b"PPMS";

/// The connecting side's first frame.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Hello {
    pub magic: [u8; 4],
    pub version: u16,
    /// The protocol spoken on the link (e.g. `smpc-inference`).
    pub protocol: String,
    /// Who the connecting party says it is.
    pub from: String,
    /// Whom it wants to reach.
    pub to: String,
    /// Whether the connecting party runs without TLS.
    pub insecure: bool,
}

/// The accepting side's answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Reply {
    Accepted,
    Refused(String),
}

struct Inner {
    me: String,
    parties: Parties,
    identity: Option<Identity>,
    server_config: Option<Arc<rustls::ServerConfig>>,
    protocol: String,
    config: NetConfig,
}

/// One party's side of the session layer (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("me", &self.inner.me)
            .field("protocol", &self.inner.protocol)
            .field("insecure", &self.is_insecure())
            .finish_non_exhaustive()
    }
}

fn log(me: &str, msg: &str) {
    eprintln!("ppml-net [{me}]: {msg}");
}

impl Session {
    /// A TLS session for party `me`: loads `keys_dir/<me>.key`, which must
    /// belong to `me`'s certificate in `parties`.
    pub fn tls(
        me: &str,
        parties: Parties,
        keys_dir: &Path,
        protocol: &str,
        config: NetConfig,
    ) -> Result<Session, NetError> {
        let identity = crate::keys::load_identity(me, keys_dir, &parties)?;
        Self::with_identity(identity, parties, protocol, config)
    }

    /// A TLS session from an identity already loaded.
    pub fn with_identity(
        identity: Identity,
        parties: Parties,
        protocol: &str,
        config: NetConfig,
    ) -> Result<Session, NetError> {
        let me = identity.name().to_owned();
        let info = parties.require(&me)?;
        if info.certificate.as_ref() != Some(identity.certificate()) {
            return Err(NetError::Config(format!(
                "{me}'s key does not match {me}'s certificate in the parties file"
            )));
        }
        for p in parties.iter() {
            if p.certificate.is_none() {
                return Err(NetError::Config(format!(
                    "party `{}` has no certificate (needed without --insecure)",
                    p.name
                )));
            }
        }
        let server_config = identity
            .server_config()
            .map_err(|e| NetError::Config(format!("TLS configuration of {me}: {e}")))?;
        Ok(Session {
            inner: Arc::new(Inner {
                me,
                parties,
                identity: Some(identity),
                server_config: Some(server_config),
                protocol: protocol.to_owned(),
                config,
            }),
        })
    }

    /// A plaintext session: no encryption, and a party's identity is only
    /// what it claims. For loopback benchmarks and tests only.
    pub fn insecure(
        me: &str,
        parties: Parties,
        protocol: &str,
        config: NetConfig,
    ) -> Result<Session, NetError> {
        parties.require(me)?;
        Ok(Session {
            inner: Arc::new(Inner {
                me: me.to_owned(),
                parties,
                identity: None,
                server_config: None,
                protocol: protocol.to_owned(),
                config,
            }),
        })
    }

    /// This party's name.
    pub fn name(&self) -> &str {
        &self.inner.me
    }

    /// True without TLS.
    pub fn is_insecure(&self) -> bool {
        self.inner.identity.is_none()
    }

    /// The parties file.
    pub fn parties(&self) -> &Parties {
        &self.inner.parties
    }

    /// The limits and timeouts.
    pub fn config(&self) -> &NetConfig {
        &self.inner.config
    }

    /// Connects to party `peer` (see the module docs). Retries while nobody
    /// listens or something that is not `peer` answers (each such attempt is
    /// logged), until `connect_timeout`; a refusal by `peer` is final.
    pub fn connect(&self, peer: &str) -> Result<Channel, NetError> {
        let me = &self.inner.me;
        let info = self.inner.parties.require(peer)?;
        if peer == me {
            return Err(NetError::Config(format!("{me} cannot connect to itself")));
        }
        let cfg = &self.inner.config;
        let deadline = Instant::now() + cfg.connect_timeout;
        let mut last_logged = String::new();
        loop {
            let addr = info.socket_addr()?;
            let (stream, _) = connect_stream_until(addr, deadline, cfg.connect_timeout)?;
            let hs_deadline = (Instant::now() + cfg.handshake_timeout)
                .min(deadline.max(Instant::now() + Duration::from_millis(100)));
            let attempt = watchdog(&stream, hs_deadline).and_then(|_guard| {
                self.client_handshake(stream, peer, addr, hs_deadline)
                    .map_err(|e| past_deadline(e, hs_deadline, &format!("{peer} ({addr})"), cfg))
            });
            match attempt {
                Ok(t) => return Ok(Channel::new(Box::new(t), cfg)),
                Err(e @ NetError::Refused { .. }) => return Err(e),
                Err(e) => {
                    if Instant::now() >= deadline {
                        return Err(e);
                    }
                    let msg = e.to_string();
                    if msg != last_logged {
                        log(
                            me,
                            &format!("connecting to {peer} at {addr}: {msg}; retrying"),
                        );
                        last_logged = msg;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    fn client_handshake(
        &self,
        mut stream: TcpStream,
        peer: &str,
        addr: SocketAddr,
        deadline: Instant,
    ) -> Result<TcpTransport, NetError> {
        let cfg = &self.inner.config;
        set_deadline(&stream, deadline)?;
        stream.set_nodelay(true)?;
        let peer_label = format!("{peer} ({addr})");
        let (mut read, mut write) = match &self.inner.identity {
            Some(id) => {
                let expected = self
                    .inner
                    .parties
                    .require(peer)?
                    .certificate
                    .clone()
                    .ok_or_else(|| {
                        NetError::Config(format!("party `{peer}` has no certificate"))
                    })?;
                let client_cfg = id
                    .client_config(peer, &expected)
                    .map_err(|e| NetError::Config(format!("TLS configuration: {e}")))?;
                let conn = tls::Conn::client(client_cfg, tls::server_name(peer))
                    .map_err(|e| NetError::Config(format!("TLS: {e}")))?;
                let est = tls::handshake(conn, &mut stream)
                    .map_err(|e| handshake_error(peer, &peer_label, e, cfg))?;
                let (r, w) = est.split(&stream)?;
                (ReadHalf::Tls(r), WriteHalf::Tls(w))
            }
            None => (
                ReadHalf::Plain(stream.try_clone()?),
                WriteHalf::Plain(stream.try_clone()?),
            ),
        };
        let hello = Hello {
            magic: MAGIC,
            version: HANDSHAKE_VERSION,
            protocol: self.inner.protocol.clone(),
            from: self.inner.me.clone(),
            to: peer.to_owned(),
            insecure: self.is_insecure(),
        };
        let io = |e: std::io::Error| handshake_error(peer, &peer_label, e, cfg);
        write.write_frame(&frame::encode(&hello)?).map_err(io)?;
        let reply: Reply = frame::decode(&read.read_frame(HELLO_MAX_BYTES, &peer_label)?)
            .map_err(|e| NetError::Handshake(format!("{peer_label}: bad reply: {e}")))?;
        if let Reply::Refused(reason) = reply {
            return Err(NetError::Refused {
                party: peer.to_owned(),
                reason: format!("{peer} refused {}: {reason}", self.inner.me),
            });
        }
        stream.set_read_timeout(None)?;
        TcpTransport::from_halves(stream, read, write, peer_label, cfg)
    }

    /// Listens on this party's address from the parties file.
    pub fn listen(&self) -> Result<Acceptor, NetError> {
        let info = self.inner.parties.require(&self.inner.me)?;
        let addr = info.socket_addr()?;
        let listener = TcpListener::bind(addr).map_err(|e| {
            NetError::Config(format!("{}: cannot listen on {addr}: {e}", self.inner.me))
        })?;
        self.listen_on(listener)
    }

    /// Accepts on a listener bound by the caller (e.g. to an ephemeral port).
    pub fn listen_on(&self, listener: TcpListener) -> Result<Acceptor, NetError> {
        let local = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let session = self.clone();
        let stop2 = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(format!("ppml-net-accept {}", self.inner.me))
            .spawn(move || session.accept_loop(listener, tx, stop2))?;
        Ok(Acceptor {
            me: self.inner.me.clone(),
            rx,
            stop,
            thread: Some(thread),
            local,
            pending: Vec::new(),
        })
    }

    fn accept_loop(
        &self,
        listener: TcpListener,
        tx: Sender<(String, Channel)>,
        stop: Arc<AtomicBool>,
    ) {
        let me = &self.inner.me;
        let active = Arc::new(AtomicUsize::new(0));
        while !stop.load(Ordering::Acquire) {
            match listener.accept() {
                Ok((stream, addr)) => {
                    if active.load(Ordering::Acquire) >= MAX_PENDING_HANDSHAKES {
                        log(
                            me,
                            &format!(
                                "dropped a connection from {addr}: {MAX_PENDING_HANDSHAKES} handshakes already in progress"
                            ),
                        );
                        continue;
                    }
                    active.fetch_add(1, Ordering::AcqRel);
                    let (session, tx, counter) = (self.clone(), tx.clone(), Arc::clone(&active));
                    let spawned = std::thread::Builder::new()
                        .name(format!("ppml-net-handshake {addr}"))
                        .spawn(move || {
                            let deadline = Instant::now() + session.inner.config.handshake_timeout;
                            let r = watchdog(&stream, deadline).and_then(|_guard| {
                                session
                                    .server_handshake(stream, addr, deadline)
                                    .map_err(|e| {
                                        past_deadline(
                                            e,
                                            deadline,
                                            &format!("tcp:{addr}"),
                                            &session.inner.config,
                                        )
                                    })
                            });
                            counter.fetch_sub(1, Ordering::AcqRel);
                            match r {
                                Ok((name, ch)) => {
                                    let _ = tx.send((name, ch));
                                }
                                Err(e) => log(
                                    &session.inner.me,
                                    &format!("refused a connection from {addr}: {e}"),
                                ),
                            }
                        });
                    if spawned.is_err() {
                        active.fetch_sub(1, Ordering::AcqRel);
                        log(
                            me,
                            &format!("dropped a connection from {addr}: cannot start a thread"),
                        );
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => {
                    // E.g. out of file descriptors: log, back off, go on.
                    log(me, &format!("accept failed: {e}"));
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    fn server_handshake(
        &self,
        mut stream: TcpStream,
        addr: SocketAddr,
        deadline: Instant,
    ) -> Result<(String, Channel), NetError> {
        let cfg = &self.inner.config;
        stream.set_nonblocking(false)?;
        stream.set_nodelay(true)?;
        set_deadline(&stream, deadline)?;
        let label = format!("tcp:{addr}");
        let (mut read, mut write, cert) = match &self.inner.server_config {
            Some(server_cfg) => {
                let conn = tls::Conn::server(Arc::clone(server_cfg))
                    .map_err(|e| NetError::Config(format!("TLS: {e}")))?;
                let est = tls::handshake(conn, &mut stream)
                    .map_err(|e| handshake_error("an unidentified peer", &label, e, cfg))?;
                let cert = est.peer_certificate();
                let (r, w) = est.split(&stream)?;
                (ReadHalf::Tls(r), WriteHalf::Tls(w), cert)
            }
            None => (
                ReadHalf::Plain(stream.try_clone()?),
                WriteHalf::Plain(stream.try_clone()?),
                None,
            ),
        };
        let bytes = read
            .read_frame(HELLO_MAX_BYTES, &label)
            .map_err(|e| match e {
                NetError::Io(io) => handshake_error("an unidentified peer", &label, io, cfg),
                other => NetError::Handshake(format!("{label}: no hello frame: {other}")),
            })?;
        let hello: Hello = frame::decode(&bytes).map_err(|_| {
            NetError::Handshake(format!(
                "{label} sent {} bytes that are not a ppml session hello{}",
                bytes.len(),
                if self.is_insecure() {
                    " (is the peer using TLS while this party runs --insecure?)"
                } else {
                    ""
                }
            ))
        })?;
        match self.check_hello(&hello, cert.as_ref()) {
            Ok(()) => {
                write.write_frame(&frame::encode(&Reply::Accepted)?)?;
                stream.set_read_timeout(None)?;
                let name = hello.from;
                let t = TcpTransport::from_halves(
                    stream,
                    read,
                    write,
                    format!("{name} ({addr})"),
                    cfg,
                )?;
                Ok((name, Channel::new(Box::new(t), cfg)))
            }
            Err(reason) => {
                // Tell the peer why (nothing secret), then close.
                let _ = write.write_frame(&frame::encode(&Reply::Refused(reason.clone()))?);
                Err(NetError::Refused {
                    party: hello.from.clone(),
                    reason: format!("{label} claiming to be {}: {reason}", hello.from),
                })
            }
        }
    }

    fn check_hello(
        &self,
        hello: &Hello,
        cert: Option<&rustls::pki_types::CertificateDer<'static>>,
    ) -> Result<(), String> {
        let me = &self.inner.me;
        if hello.magic != MAGIC || hello.version != HANDSHAKE_VERSION {
            return Err(format!(
                "handshake version {} (this party speaks {HANDSHAKE_VERSION})",
                hello.version
            ));
        }
        if hello.protocol != self.inner.protocol {
            return Err(format!(
                "protocol `{}`, but {me} runs `{}`",
                hello.protocol, self.inner.protocol
            ));
        }
        if hello.to != *me {
            return Err(format!("it asked for {}, but this is {me}", hello.to));
        }
        if hello.from == *me {
            return Err(format!("it claims to be {me} itself"));
        }
        let Some(info) = self.inner.parties.get(&hello.from) else {
            return Err(format!("`{}` is not in the parties file", hello.from));
        };
        if hello.insecure != self.is_insecure() {
            return Err("one side runs --insecure and the other does not".into());
        }
        if self.inner.identity.is_some() {
            let (Some(got), Some(pinned)) = (cert, info.certificate.as_ref()) else {
                return Err("no certificate".into());
            };
            if got != pinned {
                return Err(format!(
                    "its certificate (SHA-256 {}) is not {}'s pinned certificate (SHA-256 {})",
                    tls::fingerprint(got),
                    hello.from,
                    tls::fingerprint(pinned)
                ));
            }
        }
        Ok(())
    }
}

/// Opens the session of party `me` the way every `ppml` subcommand's flags say:
/// `--parties FILE --keys DIR` for TLS, or `--insecure` (with or without a
/// parties file; without one, `fallback` gives the parties, e.g. built from
/// `--peers`). Insecure sessions print a warning on stderr.
pub fn open(
    me: &str,
    parties_file: Option<&Path>,
    keys_dir: Option<&Path>,
    insecure: bool,
    fallback: Option<Parties>,
    protocol: &str,
    config: NetConfig,
) -> Result<Session, NetError> {
    if insecure {
        eprintln!(
            "WARNING: --insecure: links are plaintext and unauthenticated; anyone on the \
             network can read everything sent, or act as any party"
        );
        let parties = match (parties_file, fallback) {
            (Some(f), _) => Parties::load_with(f, false)?,
            (None, Some(p)) => p,
            (None, None) => {
                return Err(NetError::Config(
                    "--insecure needs the parties' addresses (--parties FILE or the command's address flags)".into(),
                ));
            }
        };
        return Session::insecure(me, parties, protocol, config);
    }
    match (parties_file, keys_dir) {
        (Some(f), Some(k)) => Session::tls(me, Parties::load(f)?, k, protocol, config),
        (Some(_), None) => Err(NetError::Config(
            "--parties needs --keys DIR (the directory with this host's private keys)".into(),
        )),
        (None, _) => Err(NetError::Config(
            "give --parties FILE --keys DIR (TLS), or --insecure for plaintext links".into(),
        )),
    }
}

/// Shuts `stream` down at `deadline` unless the returned guard is dropped
/// first. Socket timeouts alone bound each read, not the whole handshake: a
/// peer trickling one byte at a time could otherwise hold a handshake slot
/// forever.
fn watchdog(stream: &TcpStream, deadline: Instant) -> Result<Sender<()>, NetError> {
    let s = stream.try_clone()?;
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("ppml-net-handshake-deadline".into())
        .spawn(move || {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(left) {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        })?;
    Ok(tx)
}

/// After a failed handshake step: a timeout if the deadline has passed (the
/// watchdog closed the socket), the error itself otherwise.
fn past_deadline(e: NetError, deadline: Instant, label: &str, cfg: &NetConfig) -> NetError {
    if Instant::now() >= deadline {
        NetError::Timeout {
            peer: format!("{label} (handshake)"),
            after: cfg.handshake_timeout,
        }
    } else {
        e
    }
}

fn set_deadline(stream: &TcpStream, deadline: Instant) -> Result<(), NetError> {
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    stream.set_read_timeout(Some(left))?;
    stream.set_write_timeout(Some(left))?;
    Ok(())
}

/// Turns an I/O error of a handshake into a clear error.
fn handshake_error(party: &str, label: &str, e: std::io::Error, cfg: &NetConfig) -> NetError {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => NetError::Timeout {
            peer: format!("{label} (handshake)"),
            after: cfg.handshake_timeout,
        },
        ErrorKind::InvalidData => NetError::Auth {
            party: party.to_owned(),
            reason: format!(
                "TLS handshake with {label} failed: {}",
                e.into_inner().map(|i| i.to_string()).unwrap_or_default()
            ),
        },
        ErrorKind::UnexpectedEof
        | ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::BrokenPipe => NetError::Handshake(format!(
            "{label} closed the connection during the handshake"
        )),
        _ => NetError::Io(e),
    }
}

/// Accepts authenticated parties on one listener (see [`Session::listen`]).
/// Dropping it stops accepting (connections already handed out stay open).
pub struct Acceptor {
    me: String,
    rx: Receiver<(String, Channel)>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    local: SocketAddr,
    pending: Vec<(String, Channel)>,
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptor")
            .field("me", &self.me)
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl Acceptor {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The next authenticated party (in arrival order), or `None` after
    /// `timeout`. For servers whose clients come and go (late joiners).
    pub fn next(&mut self, timeout: Duration) -> Result<Option<(String, Channel)>, NetError> {
        if !self.pending.is_empty() {
            return Ok(Some(self.pending.remove(0)));
        }
        match self.rx.recv_timeout(timeout) {
            Ok(x) => Ok(Some(x)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(NetError::Handshake(format!(
                "{}: the accept thread stopped",
                self.me
            ))),
        }
    }

    /// Waits until every party in `names` has connected and authenticated
    /// (in any order) and returns their channels in the order of `names`.
    /// Connections from other parties are kept for later calls; a second
    /// connection from a party already accepted is dropped and logged.
    /// [`NetError::Timeout`] naming the missing parties after `timeout`.
    pub fn accept(&mut self, names: &[&str], timeout: Duration) -> Result<Vec<Channel>, NetError> {
        let deadline = Instant::now() + timeout;
        let mut got: Vec<Option<Channel>> = names.iter().map(|_| None).collect();
        let mut keep = Vec::new();
        for (name, ch) in std::mem::take(&mut self.pending) {
            place(&self.me, names, &mut got, &mut keep, name, ch);
        }
        let result = loop {
            if got.iter().all(Option::is_some) {
                break Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let missing: Vec<&str> = names
                    .iter()
                    .zip(&got)
                    .filter(|(_, c)| c.is_none())
                    .map(|(n, _)| *n)
                    .collect();
                break Err(NetError::Timeout {
                    peer: format!("{} (never connected to {})", missing.join(", "), self.me),
                    after: timeout,
                });
            }
            match self.rx.recv_timeout(left) {
                Ok((name, ch)) => place(&self.me, names, &mut got, &mut keep, name, ch),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    break Err(NetError::Handshake(format!(
                        "{}: the accept thread stopped",
                        self.me
                    )));
                }
            }
        };
        self.pending = keep;
        result?;
        // Every slot is Some: checked by the loop above.
        Ok(got.into_iter().flatten().collect())
    }
}

/// Puts an accepted channel in its slot (see [`Acceptor::accept`]).
fn place(
    me: &str,
    names: &[&str],
    got: &mut [Option<Channel>],
    keep: &mut Vec<(String, Channel)>,
    name: String,
    ch: Channel,
) {
    match names.iter().position(|n| *n == name) {
        Some(i) if got[i].is_none() => got[i] = Some(ch),
        Some(_) => log(me, &format!("dropped a second connection from {name}")),
        None => keep.push((name, ch)),
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
