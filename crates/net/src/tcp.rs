//! TCP transport: separate processes or hosts.
//!
//! Each channel owns a background reader thread that drains the socket into a queue bounded
//! in bytes (`NetConfig::queue_bytes`, see `queue.rs`), so two parties that both send large
//! frames before receiving never deadlock, a flooding peer is pushed back by TCP flow
//! control once the queue is full, and `recv` waits on the queue with the configured
//! timeout. The same transport carries plaintext or TLS (`crate::tls`) bytes. Dropping the channel shuts the
//! socket down, which ends the reader thread (it is joined). Writes use the configured
//! timeout as the socket write timeout; `TCP_NODELAY` is on.

use crate::channel::Transport;
use crate::frame::{self, FRAME_HEADER_BYTES};
use crate::queue::{self, QueueReceiver, RecvError};
use crate::tls::{TlsReadHalf, TlsWriteHalf};
use crate::{Channel, NetConfig, NetError};
use std::io::{ErrorKind, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Frames up to this size are written with their header in one `write` (one TCP segment
/// for small messages); larger ones are written as header then payload, without a copy.
const COALESCE_LIMIT: usize = 64 << 10;

const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// A [`Transport`] over a connected [`TcpStream`].
pub struct TcpTransport {
    stream: TcpStream,
    write: WriteHalf,
    rx: QueueReceiver<Result<Vec<u8>, NetError>>,
    reader: Option<JoinHandle<()>>,
    timeout: Duration,
    peer: String,
    broken: bool,
}

impl std::fmt::Debug for TcpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpTransport")
            .field("peer", &self.peer)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl TcpTransport {
    /// Takes over a connected stream: sets `TCP_NODELAY` and the write timeout and starts
    /// the reader thread. The peer is named `tcp:<address>`.
    pub fn new(stream: TcpStream, config: &NetConfig) -> Result<Self, NetError> {
        let peer = match stream.peer_addr() {
            Ok(a) => format!("tcp:{a}"),
            Err(_) => "tcp:?".to_owned(),
        };
        Self::with_peer_name(stream, peer, config)
    }

    /// Like [`TcpTransport::new`] with a chosen peer name (shown in errors).
    pub fn with_peer_name(
        stream: TcpStream,
        peer: impl Into<String>,
        config: &NetConfig,
    ) -> Result<Self, NetError> {
        stream.set_nodelay(true)?;
        let read = ReadHalf::Plain(stream.try_clone()?);
        let write = WriteHalf::Plain(stream.try_clone()?);
        Self::from_halves(stream, read, write, peer.into(), config)
    }

    /// A transport over two halves of one connection (plaintext or TLS): sets the write
    /// timeout and starts the reader thread. `stream` is kept to shut the socket down.
    pub(crate) fn from_halves(
        stream: TcpStream,
        mut read: ReadHalf,
        write: WriteHalf,
        peer: String,
        config: &NetConfig,
    ) -> Result<Self, NetError> {
        stream.set_nonblocking(false)?;
        stream.set_write_timeout(Some(config.timeout.max(MIN_TIMEOUT)))?;
        stream.set_read_timeout(None)?;
        let (tx, rx) = queue::bounded(config.queue_bytes);
        let max = config.effective_max_frame();
        let reader_peer = peer.clone();
        let shutdown = stream.try_clone()?;
        let reader = std::thread::Builder::new()
            .name(format!("ppml-net-reader {peer}"))
            .spawn(move || {
                loop {
                    match read.read_frame(max, &reader_peer) {
                        Ok(f) => {
                            let len = f.len();
                            if !tx.send(Ok(f), len) {
                                break; // the channel was dropped
                            }
                        }
                        Err(e) => {
                            // The stream is finished or out of sync: report once and stop.
                            let _ = shutdown.shutdown(Shutdown::Both);
                            let _ = tx.send(Err(e), 0);
                            break;
                        }
                    }
                }
            })?;
        Ok(Self {
            stream,
            write,
            rx,
            reader: Some(reader),
            timeout: config.timeout,
            peer,
            broken: false,
        })
    }

    fn write_error(&mut self, e: std::io::Error) -> NetError {
        // A partial write leaves the stream out of sync: never write on it again.
        self.broken = true;
        let _ = self.stream.shutdown(Shutdown::Write);
        match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => NetError::Timeout {
                peer: self.peer.clone(),
                after: self.timeout,
            },
            ErrorKind::BrokenPipe
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::NotConnected
            | ErrorKind::WriteZero => NetError::Disconnected {
                peer: self.peer.clone(),
            },
            _ => NetError::Io(e),
        }
    }
}

impl Transport for TcpTransport {
    fn send_frame(&mut self, frame: Vec<u8>) -> Result<(), NetError> {
        if self.broken {
            return Err(NetError::Disconnected {
                peer: self.peer.clone(),
            });
        }
        let result = self.write.write_frame(&frame);
        result.map_err(|e| self.write_error(e))
    }

    fn recv_frame(&mut self) -> Result<Vec<u8>, NetError> {
        match self.rx.recv_timeout(self.timeout) {
            Ok(result) => result,
            Err(RecvError::Timeout) => Err(NetError::Timeout {
                peer: self.peer.clone(),
                after: self.timeout,
            }),
            // The reader thread already reported why it stopped.
            Err(RecvError::Disconnected) => Err(NetError::Disconnected {
                peer: self.peer.clone(),
            }),
        }
    }

    fn peer(&self) -> &str {
        &self.peer
    }
}

impl Drop for TcpTransport {
    fn drop(&mut self) {
        if !self.broken {
            self.write.close();
        }
        // Unblocks a reader thread waiting for room in the queue.
        self.rx.close();
        // Wakes the reader thread's blocking read (it returns end of stream), so it exits.
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// The receiving half of a connection: the socket, or TLS over it.
pub(crate) enum ReadHalf {
    Plain(TcpStream),
    Tls(TlsReadHalf),
}

impl ReadHalf {
    /// Reads one frame (see [`frame::read_frame`] for the errors).
    pub(crate) fn read_frame(&mut self, max: usize, peer: &str) -> Result<Vec<u8>, NetError> {
        match self {
            ReadHalf::Plain(s) => frame::read_frame(s, max, peer),
            ReadHalf::Tls(t) => t.read_frame(max, peer),
        }
    }
}

/// The sending half of a connection.
pub(crate) enum WriteHalf {
    Plain(TcpStream),
    Tls(TlsWriteHalf),
}

impl WriteHalf {
    /// Writes one frame: the 4-byte length prefix, then the payload.
    pub(crate) fn write_frame(&mut self, frame: &[u8]) -> std::io::Result<()> {
        let header = frame::encode_frame_header(frame.len(), u32::MAX as usize)
            .map_err(|e| std::io::Error::new(ErrorKind::InvalidInput, e.to_string()))?;
        match self {
            WriteHalf::Plain(stream) => {
                if frame.len() <= COALESCE_LIMIT {
                    let mut wire = Vec::with_capacity(FRAME_HEADER_BYTES + frame.len());
                    wire.extend_from_slice(&header);
                    wire.extend_from_slice(frame);
                    stream.write_all(&wire)
                } else {
                    stream
                        .write_all(&header)
                        .and_then(|()| stream.write_all(frame))
                }
            }
            WriteHalf::Tls(t) => t.write_parts(&header, frame),
        }
    }

    /// Ends the stream cleanly (TLS close_notify; nothing for plaintext).
    fn close(&mut self) {
        if let WriteHalf::Tls(t) = self {
            t.close();
        }
    }
}

fn retryable_connect_error(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::ConnectionRefused
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::TimedOut
            | ErrorKind::WouldBlock
            | ErrorKind::Interrupted
            | ErrorKind::AddrNotAvailable
            | ErrorKind::NotConnected
    )
}

pub(crate) fn connect_stream(
    addr: impl ToSocketAddrs,
    config: &NetConfig,
) -> Result<(TcpStream, SocketAddr), NetError> {
    connect_stream_until(
        addr,
        Instant::now() + config.connect_timeout,
        config.connect_timeout,
    )
}

/// Connects, retrying until `deadline`; `budget` is reported in the timeout error.
pub(crate) fn connect_stream_until(
    addr: impl ToSocketAddrs,
    deadline: Instant,
    budget: Duration,
) -> Result<(TcpStream, SocketAddr), NetError> {
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
    let Some(first) = addrs.first().copied() else {
        return Err(NetError::Io(std::io::Error::new(
            ErrorKind::InvalidInput,
            "address resolved to nothing",
        )));
    };
    loop {
        for &a in &addrs {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match TcpStream::connect_timeout(&a, remaining.max(MIN_TIMEOUT)) {
                Ok(s) => return Ok((s, a)),
                Err(e) if retryable_connect_error(e.kind()) => {}
                Err(e) => return Err(NetError::Io(e)),
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(NetError::Timeout {
                peer: format!("tcp:{first}"),
                after: budget,
            });
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(20)));
    }
}

pub(crate) fn accept_stream(
    listener: &TcpListener,
    config: &NetConfig,
) -> Result<(TcpStream, SocketAddr), NetError> {
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + config.connect_timeout;
    let result = loop {
        match listener.accept() {
            Ok((s, a)) => match s.set_nonblocking(false) {
                Ok(()) => break Ok((s, a)),
                Err(e) => break Err(NetError::Io(e)),
            },
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::Interrupted | ErrorKind::ConnectionAborted
                ) =>
            {
                let now = Instant::now();
                if now >= deadline {
                    let local = listener
                        .local_addr()
                        .map(|a| a.to_string())
                        .unwrap_or_else(|_| "?".into());
                    break Err(NetError::Timeout {
                        peer: format!("tcp:accept on {local}"),
                        after: config.connect_timeout,
                    });
                }
                std::thread::sleep((deadline - now).min(Duration::from_millis(5)));
            }
            Err(e) => break Err(NetError::Io(e)),
        }
    };
    listener.set_nonblocking(false)?;
    result
}

/// Connects to `addr`, retrying until `config.connect_timeout` (the peer may start later);
/// then [`NetError::Timeout`].
pub fn connect(addr: impl ToSocketAddrs, config: &NetConfig) -> Result<Channel, NetError> {
    let (stream, _) = connect_stream(addr, config)?;
    let transport = TcpTransport::new(stream, config)?;
    Ok(Channel::new(Box::new(transport), config))
}

/// Accepts one connection on `listener`, waiting at most `config.connect_timeout`
/// ([`NetError::Timeout`]). The listener is polled in non-blocking mode and left blocking.
pub fn accept(listener: &TcpListener, config: &NetConfig) -> Result<Channel, NetError> {
    let (stream, _) = accept_stream(listener, config)?;
    let transport = TcpTransport::new(stream, config)?;
    Ok(Channel::new(Box::new(transport), config))
}
