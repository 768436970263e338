//! The record layer: rustls's unbuffered API. Received records are decrypted
//! in place in this module's socket buffer (never copied into a rustls
//! deframer, and read from the socket in large pieces, not rustls's 4 KiB
//! steps); rustls then hands each record's plaintext out in its own buffer,
//! which is copied straight into the frame being received. Sent records are
//! sealed by rustls in its record buffer and copied into this module's
//! buffer, which goes to the socket without the lock.

#[cfg(test)]
use super::{Identity, server_name};
use crate::NetError;
use crate::frame::{self, FRAME_HEADER_BYTES};
use rustls::Error as TlsError;
#[cfg(test)]
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex, MutexGuard};

/// Largest plaintext of one TLS record.
const MAX_FRAGMENT: usize = 16 * 1024;
/// What a TLS 1.3 record adds to its plaintext: header (5), content type
/// (1), AEAD tag (16).
const RECORD_OVERHEAD: usize = 5 + 1 + 16;
/// Size of one ciphertext read from the socket.
const READ_BUF: usize = 256 << 10;
/// Room before the fresh bytes of a read for the unprocessed rest of the
/// previous one (normally part of one record: at most 5 + 2^14 + 256 bytes).
const CARRY: usize = 32 << 10;
/// Largest unprocessed ciphertext kept between reads (a handshake message a
/// peer splits over many records). rustls bounds handshake messages itself;
/// this bounds memory even if it did not.
const MAX_CARRY: usize = 1 << 20;
/// Largest TLS handshake flight buffered before the handshake completes.
const MAX_HANDSHAKE_BUF: usize = 256 << 10;
/// Plaintext encrypted per lock acquisition (bounds how long the reader
/// thread can wait for the lock, and the ciphertext buffer).
const WRITE_CHUNK: usize = 16 * MAX_FRAGMENT;

/// A TLS connection in rustls's unbuffered mode.
pub(crate) enum Conn {
    Client(rustls::client::UnbufferedClientConnection),
    Server(rustls::server::UnbufferedServerConnection),
}

impl Conn {
    pub(crate) fn client(
        config: Arc<rustls::ClientConfig>,
        name: ServerName<'static>,
    ) -> Result<Conn, TlsError> {
        rustls::client::UnbufferedClientConnection::new(config, name).map(Conn::Client)
    }

    pub(crate) fn server(config: Arc<rustls::ServerConfig>) -> Result<Conn, TlsError> {
        rustls::server::UnbufferedServerConnection::new(config).map(Conn::Server)
    }

    fn common(&self) -> &rustls::CommonState {
        match self {
            Conn::Client(c) => c,
            Conn::Server(s) => s,
        }
    }

    /// Runs rustls once over `incoming` (the unprocessed received ciphertext)
    /// and handles the state it reaches (see [`handle`]).
    fn step(&mut self, incoming: &mut [u8], io: &mut StepIo<'_, '_>) -> io::Result<(usize, Step)> {
        match self {
            Conn::Client(c) => handle(c.process_tls_records(incoming), io),
            Conn::Server(s) => handle(s.process_tls_records(incoming), io),
        }
    }
}

/// Where a step of the connection led.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Something was handled; step again.
    Again,
    /// The handshake needs more bytes from the peer.
    NeedInput,
    /// No complete record is left to process; application data can be sent
    /// (and the job, if any, was done).
    Writable,
    /// The peer sent close_notify: nothing more will be received.
    PeerClosed,
    /// Both sides sent close_notify.
    Closed,
}

/// What to do when the connection can send application data.
enum Job<'a> {
    Nothing,
    Encrypt(&'a [&'a [u8]]),
    CloseNotify,
    /// Sends a KeyUpdate (the peer answers with its own).
    #[cfg(test)]
    RefreshKeys,
}

/// The buffers a step works with.
struct StepIo<'a, 'b> {
    /// Receives decrypted application data.
    plain: &'a mut dyn FnMut(&[u8]),
    /// TLS bytes to transmit are appended here.
    out: &'a mut OutBuf,
    job: Job<'b>,
}

/// A byte buffer whose length only grows (so reusing it never zero-fills
/// again); `used` bytes are valid.
#[derive(Default)]
struct OutBuf {
    buf: Vec<u8>,
    used: usize,
}

impl OutBuf {
    /// The free tail, at least `at_least` bytes.
    fn spare(&mut self, at_least: usize) -> &mut [u8] {
        let need = self.used.saturating_add(at_least);
        if self.buf.len() < need {
            self.buf.resize(need, 0);
        }
        &mut self.buf[self.used..]
    }

    fn advance(&mut self, n: usize) {
        self.used += n;
    }

    fn append(&mut self, bytes: &[u8]) {
        self.spare(bytes.len())[..bytes.len()].copy_from_slice(bytes);
        self.used += bytes.len();
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.used]
    }

    fn clear(&mut self) {
        self.used = 0;
    }
}

fn tls_error(e: TlsError) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, e)
}

/// Handles one state of an unbuffered connection. Returns how many bytes to
/// discard from the front of the incoming buffer, and where this led.
fn handle<Data>(
    status: rustls::unbuffered::UnbufferedStatus<'_, '_, Data>,
    io: &mut StepIo<'_, '_>,
) -> io::Result<(usize, Step)> {
    use rustls::unbuffered::{ConnectionState as S, EncodeError};
    let mut discard = status.discard;
    let step = match status.state.map_err(tls_error)? {
        S::ReadTraffic(mut records) => {
            while let Some(record) = records.next_record() {
                let record = record.map_err(tls_error)?;
                discard += record.discard;
                (io.plain)(record.payload);
            }
            Step::Again
        }
        S::EncodeTlsData(mut enc) => {
            let mut want = 0;
            loop {
                match enc.encode(io.out.spare(want)) {
                    Ok(n) => break io.out.advance(n),
                    Err(EncodeError::InsufficientSize(s)) => want = s.required_size,
                    Err(e) => return Err(io::Error::other(e.to_string())),
                }
            }
            Step::Again
        }
        // The bytes are in `io.out`, which is sent before anything encrypted
        // after it (see the callers).
        S::TransmitTlsData(t) => {
            t.done();
            Step::Again
        }
        S::BlockedHandshake => Step::NeedInput,
        S::WriteTraffic(mut w) => {
            // The job is done exactly once.
            match std::mem::replace(&mut io.job, Job::Nothing) {
                Job::Nothing => {}
                Job::Encrypt(parts) => {
                    for part in parts.iter().filter(|p| !p.is_empty()) {
                        encrypt_into(&mut w, io.out, Some(part))?;
                    }
                }
                Job::CloseNotify => encrypt_into(&mut w, io.out, None)?,
                #[cfg(test)]
                Job::RefreshKeys => {
                    w.refresh_traffic_keys().map_err(tls_error)?;
                    // The KeyUpdate is queued: the next step encodes it.
                    return Ok((discard, Step::Again));
                }
            }
            Step::Writable
        }
        S::PeerClosed => Step::PeerClosed,
        S::Closed => Step::Closed,
        // Early data is never enabled; later rustls states are unknown here.
        other => {
            return Err(io::Error::new(
                ErrorKind::InvalidData,
                format!("unexpected TLS state {other:?}"),
            ));
        }
    };
    Ok((discard, step))
}

/// Encrypts `data` (or, if `None`, a close_notify alert) into `out`.
fn encrypt_into<Data>(
    w: &mut rustls::unbuffered::WriteTraffic<'_, Data>,
    out: &mut OutBuf,
    data: Option<&[u8]>,
) -> io::Result<()> {
    use rustls::unbuffered::EncryptError;
    let mut want = match data {
        Some(d) => d.len() + d.len().div_ceil(MAX_FRAGMENT) * RECORD_OVERHEAD + 64,
        None => 64,
    };
    loop {
        let r = match data {
            Some(d) => w.encrypt(d, out.spare(want)),
            None => w.queue_close_notify(out.spare(want)),
        };
        match r {
            Ok(n) => {
                out.advance(n);
                return Ok(());
            }
            Err(EncryptError::InsufficientSize(s)) => want = s.required_size,
            Err(e) => return Err(io::Error::other(e.to_string())),
        }
    }
}

fn write_socket(sock: &mut TcpStream, bytes: &[u8]) -> io::Result<()> {
    sock.write_all(bytes)
}

/// A completed handshake: the connection and what arrived after it.
pub(crate) struct Established {
    conn: Conn,
    /// Ciphertext received but not processed (part of a record).
    incoming: Vec<u8>,
    /// Application data that arrived with the end of the handshake.
    plain: Vec<u8>,
}

impl Established {
    /// The peer's end-entity certificate.
    pub(crate) fn peer_certificate(&self) -> Option<CertificateDer<'static>> {
        self.conn
            .common()
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.clone().into_owned())
    }

    /// Splits into the receiving and the sending half (each with its own
    /// handle on the socket).
    pub(crate) fn split(self, sock: &TcpStream) -> io::Result<(TlsReadHalf, TlsWriteHalf)> {
        let shared = Arc::new(Mutex::new(State {
            conn: self.conn,
            incoming: self.incoming,
            plain: self.plain,
            plain_pos: 0,
            pending: OutBuf::default(),
            peer_closed: false,
            failed: false,
        }));
        Ok((
            TlsReadHalf {
                sock: sock.try_clone()?,
                shared: Arc::clone(&shared),
                buf: vec![0u8; CARRY + READ_BUF].into_boxed_slice(),
                fresh: 0,
                bounce: Vec::new(),
            },
            TlsWriteHalf {
                sock: sock.try_clone()?,
                shared,
                out: OutBuf::default(),
                first: Vec::new(),
            },
        ))
    }
}

/// Runs the handshake to completion on a blocking socket (whose timeouts
/// bound each read and write). Errors: `InvalidData` with the rustls error
/// (after sending rustls's alert to the peer), `UnexpectedEof` if the peer
/// closes, or the socket's error.
pub(crate) fn handshake(mut conn: Conn, sock: &mut TcpStream) -> io::Result<Established> {
    let mut incoming = vec![0u8; 2 * MAX_FRAGMENT];
    let mut used = 0;
    let mut out = OutBuf::default();
    let mut plain = Vec::new();
    loop {
        let r = {
            let mut sink = |b: &[u8]| plain.extend_from_slice(b);
            let mut io = StepIo {
                plain: &mut sink,
                out: &mut out,
                job: Job::Nothing,
            };
            conn.step(&mut incoming[..used], &mut io)
        };
        let (discard, step) = match r {
            Ok(x) => x,
            Err(e) => {
                send_alert(&mut conn, &mut incoming[..used], &mut out, sock);
                return Err(e);
            }
        };
        incoming.copy_within(discard..used, 0);
        used -= discard;
        match step {
            Step::Again => {}
            Step::Writable if !conn.common().is_handshaking() => {
                write_socket(sock, out.bytes())?;
                incoming.truncate(used);
                return Ok(Established {
                    conn,
                    incoming,
                    plain,
                });
            }
            Step::Writable | Step::NeedInput => {
                write_socket(sock, out.bytes())?;
                out.clear();
                if used == incoming.len() {
                    if incoming.len() >= MAX_HANDSHAKE_BUF {
                        return Err(io::Error::new(
                            ErrorKind::InvalidData,
                            "the peer's handshake messages are too large",
                        ));
                    }
                    incoming.resize(2 * incoming.len(), 0);
                }
                let n = loop {
                    match sock.read(&mut incoming[used..]) {
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        r => break r?,
                    }
                };
                if n == 0 {
                    return Err(io::Error::new(
                        ErrorKind::UnexpectedEof,
                        "the peer closed the connection during the TLS handshake",
                    ));
                }
                used += n;
            }
            Step::PeerClosed | Step::Closed => {
                return Err(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "the peer closed the TLS connection during the handshake",
                ));
            }
        }
    }
}

/// After a failed handshake step: sends the alert rustls queued (best
/// effort), so the peer learns why.
fn send_alert(conn: &mut Conn, incoming: &mut [u8], out: &mut OutBuf, sock: &mut TcpStream) {
    out.clear();
    let mut sink = |_: &[u8]| {};
    let mut io = StepIo {
        plain: &mut sink,
        out,
        job: Job::Nothing,
    };
    // rustls hands out queued records before it looks at the input again.
    if let Ok((_, Step::Again)) = conn.step(incoming, &mut io) {
        let _ = write_socket(sock, io.out.bytes());
    }
}

/// What the two halves share.
struct State {
    conn: Conn,
    /// Received ciphertext not yet processed: never a complete record after
    /// the reader's turn, so the writer's turns (which must pass rustls the
    /// same bytes) find nothing to decrypt.
    incoming: Vec<u8>,
    /// Decrypted application data not yet taken, from `plain_pos` (the part
    /// of a record past the end of a frame, or data the handshake or the
    /// writer's turn decrypted).
    plain: Vec<u8>,
    plain_pos: usize,
    /// TLS bytes rustls produced during the reader's turn (e.g. an alert):
    /// the writer sends them before its next records, in order.
    pending: OutBuf,
    peer_closed: bool,
    /// rustls reported an error: its buffers may be inconsistent with
    /// `incoming`, so it is never called again.
    failed: bool,
}

fn failed_before() -> io::Error {
    io::Error::new(ErrorKind::BrokenPipe, "the TLS connection failed earlier")
}

type Shared = Arc<Mutex<State>>;

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    // A panic while holding the lock leaves rustls in some state; its own
    // error state (if any) is reported on the next call, so go on.
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// Copies whose destination lies this little after their source, modulo
/// 4 KiB, are slow (see [`append`]).
const ALIAS_WINDOW: usize = 64;
const PAGE: usize = 4096;
/// Shorter copies are not worth a detour (see [`append`]).
const MIN_BOUNCE: usize = 1024;
/// Largest piece [`append`] copies through its bounce buffer at once.
const BOUNCE_PIECE: usize = 16 << 10;

/// Appends `src` to `dst`, like `extend_from_slice`, but never with the
/// destination just after the source modulo 4 KiB. glibc copies large
/// blocks with `rep movsb`, which on this AMD EPYC (Zen 4) runs at ~2 GB/s
/// instead of ~80 GB/s when the destination is 1 to 63 bytes after the
/// source modulo 4 KiB (4K aliasing between its loads and stores). rustls
/// reuses one allocation per record, so one unlucky frame address makes a
/// whole frame, or a whole run, slow. Such copies go through `bounce`, at
/// half a page from both ends: two fast copies instead of one slow one.
fn append(dst: &mut Vec<u8>, src: &[u8], bounce: &mut Vec<u8>) {
    dst.reserve(src.len());
    let gap = (dst.as_ptr() as usize + dst.len()).wrapping_sub(src.as_ptr() as usize) % PAGE;
    if gap == 0 || gap >= ALIAS_WINDOW || src.len() < MIN_BOUNCE {
        dst.extend_from_slice(src);
        return;
    }
    if bounce.len() < BOUNCE_PIECE + PAGE {
        bounce.resize(BOUNCE_PIECE + PAGE, 0);
    }
    // Pieces start at multiples of BOUNCE_PIECE (a multiple of the page
    // size) into `src`, so one offset suits them all.
    let off = (src.as_ptr() as usize + PAGE / 2).wrapping_sub(bounce.as_ptr() as usize) % PAGE;
    for piece in src.chunks(BOUNCE_PIECE) {
        let b = &mut bounce[off..off + piece.len()];
        b.copy_from_slice(piece);
        dst.extend_from_slice(b);
    }
}

/// Assembles one frame (4-byte length prefix, then the payload) from
/// decrypted bytes, straight into the frame's own buffer.
struct FrameAsm {
    /// See [`append`].
    bounce: Vec<u8>,
    max: usize,
    header: [u8; FRAME_HEADER_BYTES],
    got: usize,
    payload: Option<Vec<u8>>,
    len: usize,
    error: Option<NetError>,
}

impl FrameAsm {
    fn new(max: usize, bounce: Vec<u8>) -> Self {
        FrameAsm {
            bounce,
            max,
            header: [0; FRAME_HEADER_BYTES],
            got: 0,
            payload: None,
            len: 0,
            error: None,
        }
    }

    fn complete(&self) -> bool {
        matches!(&self.payload, Some(p) if p.len() == self.len)
    }

    fn wants(&self) -> bool {
        self.error.is_none() && !self.complete()
    }

    /// Takes the bytes of this frame from the front of `bytes`; returns how
    /// many it took (the rest belongs to the next frame).
    fn feed(&mut self, bytes: &[u8]) -> usize {
        if !self.wants() {
            return 0;
        }
        let mut taken = 0;
        if self.payload.is_none() {
            let n = (FRAME_HEADER_BYTES - self.got).min(bytes.len());
            self.header[self.got..self.got + n].copy_from_slice(&bytes[..n]);
            self.got += n;
            taken = n;
            if self.got < FRAME_HEADER_BYTES {
                return taken;
            }
            // Checked before anything is allocated.
            match frame::decode_frame_header(&self.header, self.max) {
                Ok(len) => {
                    self.len = len;
                    self.payload = Some(Vec::with_capacity(len.min(frame::PREALLOC_CAP)));
                }
                Err(e) => {
                    self.error = Some(e);
                    return taken;
                }
            }
        }
        if let Some(p) = self.payload.as_mut() {
            let n = (self.len - p.len()).min(bytes.len() - taken);
            append(p, &bytes[taken..taken + n], &mut self.bounce);
            taken += n;
        }
        taken
    }

    /// The stream ended (close_notify, or the socket closed) before the
    /// frame was complete: the same errors as [`frame::read_frame`].
    fn end_of_stream(&self, peer: &str) -> NetError {
        match &self.payload {
            _ if self.got == 0 => NetError::Disconnected {
                peer: peer.to_owned(),
            },
            None => NetError::Truncated {
                expected: FRAME_HEADER_BYTES,
                got: self.got,
            },
            Some(p) => NetError::Truncated {
                expected: self.len,
                got: p.len(),
            },
        }
    }
}

/// Feeds decrypted bytes to the frame being assembled; what is past its end
/// is kept for the next frame.
fn deliver(asm: &mut FrameAsm, plain: &mut Vec<u8>, bytes: &[u8]) {
    let n = asm.feed(bytes);
    if n < bytes.len() {
        append(plain, &bytes[n..], &mut asm.bounce);
    }
}

/// The receiving half: reads ciphertext from the socket without the lock,
/// decrypts under it straight into the frame being received.
pub(crate) struct TlsReadHalf {
    sock: TcpStream,
    shared: Shared,
    /// `CARRY` bytes of room, then the last socket read.
    buf: Box<[u8]>,
    /// Bytes of the last read (at `buf[CARRY..]`) not yet given to rustls.
    fresh: usize,
    /// See [`append`].
    bounce: Vec<u8>,
}

impl TlsReadHalf {
    /// Reads one frame (see [`frame::read_frame`], whose errors it keeps:
    /// end of stream, clean or not, is [`NetError::Disconnected`] between
    /// frames and [`NetError::Truncated`] inside one).
    pub(crate) fn read_frame(&mut self, max: usize, peer: &str) -> Result<Vec<u8>, NetError> {
        let mut asm = FrameAsm::new(max, std::mem::take(&mut self.bounce));
        let r = self.read_into(&mut asm, peer);
        self.bounce = std::mem::take(&mut asm.bounce);
        r
    }

    fn read_into(&mut self, asm: &mut FrameAsm, peer: &str) -> Result<Vec<u8>, NetError> {
        loop {
            let closed = self.decrypt(asm).map_err(NetError::Io)?;
            if let Some(e) = asm.error.take() {
                return Err(e);
            }
            if asm.complete() {
                // complete() checked that the payload exists.
                return Ok(asm.payload.take().unwrap_or_default());
            }
            if closed {
                return Err(asm.end_of_stream(peer));
            }
            // Socket read without the lock, so the writer can encrypt meanwhile.
            match self.sock.read(&mut self.buf[CARRY..]) {
                Ok(0) => return Err(asm.end_of_stream(peer)),
                Ok(n) => self.fresh = n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if frame::is_connection_gone(e.kind()) => {
                    return Err(asm.end_of_stream(peer));
                }
                Err(e) => return Err(NetError::Io(e)),
            }
        }
    }

    /// Under the lock: feeds `asm` from the decrypted bytes kept, then
    /// decrypts every complete record received. True once the peer has
    /// closed (close_notify).
    fn decrypt(&mut self, asm: &mut FrameAsm) -> io::Result<bool> {
        let mut guard = lock(&self.shared);
        let State {
            conn,
            incoming,
            plain,
            plain_pos,
            pending,
            peer_closed,
            failed,
        } = &mut *guard;
        if *plain_pos < plain.len() {
            *plain_pos += asm.feed(&plain[*plain_pos..]);
            if *plain_pos == plain.len() {
                plain.clear();
                *plain_pos = 0;
            }
            if !asm.wants() {
                return Ok(false);
            }
        }
        if *failed {
            return Err(failed_before());
        }
        let fresh = std::mem::take(&mut self.fresh);
        let carried = incoming.len();
        let mut sink = |b: &[u8]| deliver(asm, plain, b);
        let mut io = StepIo {
            plain: &mut sink,
            out: pending,
            job: Job::Nothing,
        };
        let result = if carried <= CARRY {
            // Common case: the rest of the last read goes in front of this one.
            let begin = CARRY - carried;
            self.buf[begin..CARRY].copy_from_slice(incoming);
            incoming.clear();
            let region = &mut self.buf[begin..CARRY + fresh];
            run(conn, region, &mut io).map(|(used, closed)| {
                incoming.extend_from_slice(&region[used..]);
                closed
            })
        } else {
            incoming.extend_from_slice(&self.buf[CARRY..CARRY + fresh]);
            if incoming.len() > MAX_CARRY {
                Err(io::Error::new(
                    ErrorKind::InvalidData,
                    "the peer sent more than 1 MiB of TLS records that do not complete a message",
                ))
            } else {
                run(conn, &mut incoming[..], &mut io).map(|(used, closed)| {
                    incoming.drain(..used);
                    closed
                })
            }
        };
        match result {
            Ok(closed) => {
                *peer_closed |= closed;
                Ok(*peer_closed)
            }
            Err(e) => {
                *failed = true;
                Err(e)
            }
        }
    }
}

/// Processes every complete record of `region`. Returns the bytes processed
/// and whether the peer has closed.
fn run(conn: &mut Conn, region: &mut [u8], io: &mut StepIo<'_, '_>) -> io::Result<(usize, bool)> {
    let mut start = 0;
    loop {
        let (discard, step) = conn.step(&mut region[start..], io)?;
        start += discard;
        match step {
            Step::Again => {}
            Step::NeedInput | Step::Writable => return Ok((start, false)),
            Step::PeerClosed | Step::Closed => return Ok((start, true)),
        }
    }
}

/// The sending half: encrypts under the lock into its buffer, writes the
/// buffer to the socket without the lock.
pub(crate) struct TlsWriteHalf {
    sock: TcpStream,
    shared: Shared,
    out: OutBuf,
    /// The first record of a frame: the length prefix and the payload's first bytes.
    first: Vec<u8>,
}

impl TlsWriteHalf {
    /// Writes `header` then `payload` as one stream of TLS records.
    pub(crate) fn write_parts(&mut self, header: &[u8], payload: &[u8]) -> io::Result<()> {
        // The header travels in the same record as the payload's first bytes
        // (no 26-byte record of its own).
        let head = payload.len().min(MAX_FRAGMENT.saturating_sub(header.len()));
        let mut first = std::mem::take(&mut self.first);
        first.clear();
        first.extend_from_slice(header);
        first.extend_from_slice(&payload[..head]);
        let rest = &payload[head..];
        let (now, later) = rest.split_at(rest.len().min(WRITE_CHUNK - MAX_FRAGMENT));
        let r = self.send(Job::Encrypt(&[&first[..], now]));
        self.first = first;
        r?;
        for chunk in later.chunks(WRITE_CHUNK) {
            self.send(Job::Encrypt(&[chunk]))?;
        }
        Ok(())
    }

    /// Does `job` under the lock (after anything the reader left to send),
    /// then writes the records without the lock.
    fn send(&mut self, job: Job<'_>) -> io::Result<()> {
        self.out.clear();
        {
            let mut guard = lock(&self.shared);
            let State {
                conn,
                incoming,
                plain,
                pending,
                peer_closed,
                failed,
                ..
            } = &mut *guard;
            if *failed {
                return Err(failed_before());
            }
            self.out.append(pending.bytes());
            pending.clear();
            // Records are all decrypted by the reader (see `State`), so this
            // normally receives nothing; if it does, the reader gets it.
            let mut sink = |b: &[u8]| plain.extend_from_slice(b);
            let mut io = StepIo {
                plain: &mut sink,
                out: &mut self.out,
                job,
            };
            loop {
                let (discard, step) = conn.step(&mut incoming[..], &mut io).inspect_err(|_| {
                    *failed = true;
                })?;
                incoming.drain(..discard);
                match step {
                    Step::Again => {}
                    Step::Writable => break,
                    Step::PeerClosed => *peer_closed = true,
                    Step::NeedInput => {
                        return Err(io::Error::new(
                            ErrorKind::NotConnected,
                            "the TLS handshake is not complete",
                        ));
                    }
                    Step::Closed => {
                        return Err(io::Error::new(
                            ErrorKind::BrokenPipe,
                            "the TLS connection is closed",
                        ));
                    }
                }
            }
        }
        write_socket(&mut self.sock, self.out.bytes())
    }

    /// Sends close_notify (best effort, on drop).
    pub(crate) fn close(&mut self) {
        let _ = self.send(Job::CloseNotify);
    }

    /// Sends a TLS 1.3 KeyUpdate (tests: the peer must answer with its own
    /// and both directions go on).
    #[cfg(test)]
    fn refresh_keys(&mut self) -> io::Result<()> {
        self.send(Job::RefreshKeys)
    }
}

#[cfg(test)]
mod tests {
    //! The record layer on its own: two halves per side over loopback,
    //! optionally through a relay that splits the client's bytes.

    use super::*;
    use std::net::{Shutdown, SocketAddr, TcpListener};
    use std::thread;

    use super::tests_support::identity;

    type Halves = (TlsReadHalf, TlsWriteHalf);

    /// Forwards client to server in pieces of at most `piece` bytes (so
    /// records arrive split over many reads), server to client as is.
    fn relay(server: SocketAddr, piece: usize) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut s = TcpStream::connect(server).unwrap();
            c.set_nodelay(true).unwrap();
            s.set_nodelay(true).unwrap();
            let (mut c2, mut s2) = (c.try_clone().unwrap(), s.try_clone().unwrap());
            thread::spawn(move || {
                let _ = io::copy(&mut s2, &mut c2);
                let _ = c2.shutdown(Shutdown::Write);
            });
            let mut buf = vec![0u8; 64 << 10];
            while let Ok(n @ 1..) = c.read(&mut buf) {
                for p in buf[..n].chunks(piece) {
                    if s.write_all(p).is_err() {
                        return;
                    }
                }
            }
            let _ = s.shutdown(Shutdown::Write);
        });
        addr
    }

    /// (client halves, server halves, the client's raw socket).
    fn connected(piece: Option<usize>) -> (Halves, Halves, TcpStream) {
        let (sid, cid) = (identity("server"), identity("client"));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let scfg = sid.server_config().unwrap();
        let server = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let est = handshake(Conn::server(scfg).unwrap(), &mut s).unwrap();
            assert!(est.peer_certificate().is_some());
            est.split(&s).unwrap()
        });
        let target = piece.map_or(addr, |p| relay(addr, p));
        let mut c = TcpStream::connect(target).unwrap();
        let ccfg = cid.client_config("server", sid.certificate()).unwrap();
        let est = handshake(Conn::client(ccfg, server_name("server")).unwrap(), &mut c).unwrap();
        let client = est.split(&c).unwrap();
        (client, server.join().unwrap(), c)
    }

    fn frame_of(len: usize, tag: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31) ^ tag).collect()
    }

    fn send(w: &mut TlsWriteHalf, f: &[u8]) {
        let header = frame::encode_frame_header(f.len(), usize::MAX).unwrap();
        w.write_parts(&header, f).unwrap();
    }

    const MAX: usize = 64 << 20;

    // Around the record size (2^14 plaintext bytes, the first record also
    // carrying the 4-byte length), and a few records and read buffers long.
    const SIZES: [usize; 12] = [
        0,
        1,
        4,
        16379,
        16380,
        16381,
        16384,
        16385,
        65536,
        100_003,
        READ_BUF + 7,
        3 << 20,
    ];

    #[test]
    fn append_copies_exactly_whatever_the_distance_mod_4k() {
        let src_buf: Vec<u8> = (0..(1usize << 20))
            .map(|i| (i * 7 + i / 251) as u8)
            .collect();
        for gap in [0usize, 1, 4, 12, 16, 63, 64, 65, 2048, 4095] {
            for len in [1000usize, 1024, 5000, 16384, 40_000] {
                let mut dst: Vec<u8> = Vec::with_capacity(1 << 20);
                dst.extend_from_slice(&[9; 3]);
                let end = dst.as_ptr() as usize + dst.len();
                // Pick the source so that end - src = gap (mod 4 KiB).
                let base = src_buf.as_ptr() as usize;
                let off = (end.wrapping_sub(gap).wrapping_sub(base)) % PAGE;
                let src = &src_buf[off..off + len];
                let mut bounce = Vec::new();
                append(&mut dst, src, &mut bounce);
                assert_eq!(&dst[3..], src, "gap {gap}, {len} bytes");
                assert_eq!(&dst[..3], &[9; 3]);
                let bounced = !bounce.is_empty();
                let expect = (1..ALIAS_WINDOW).contains(&gap) && len >= MIN_BOUNCE;
                assert_eq!(bounced, expect, "gap {gap}, {len} bytes");
            }
        }
    }

    #[test]
    fn frames_of_every_size_cross_both_ways() {
        let ((mut cr, mut cw), (mut sr, mut sw), _) = connected(None);
        for (i, &len) in SIZES.iter().enumerate() {
            let f = frame_of(len, i as u8);
            send(&mut cw, &f);
            assert_eq!(
                sr.read_frame(MAX, "client").unwrap(),
                f,
                "client to server, {len} bytes"
            );
            send(&mut sw, &f);
            assert_eq!(
                cr.read_frame(MAX, "server").unwrap(),
                f,
                "server to client, {len} bytes"
            );
        }
    }

    #[test]
    fn records_split_over_many_reads_reassemble() {
        for piece in [1, 5, 4099] {
            let ((_cr, mut cw), (mut sr, _sw), _) = connected(Some(piece));
            let sizes: &[usize] = if piece == 1 {
                &[0, 3, 20_000]
            } else {
                &SIZES[..10]
            };
            let frames: Vec<_> = sizes.iter().map(|&n| frame_of(n, n as u8)).collect();
            // All sent before any is read: records and frames straddle reads.
            for f in &frames {
                send(&mut cw, f);
            }
            for f in &frames {
                assert_eq!(&sr.read_frame(MAX, "client").unwrap(), f, "piece {piece}");
            }
        }
    }

    #[test]
    fn large_frames_both_ways_at_once_do_not_deadlock() {
        // Each side's reader runs on its own thread (as in TcpTransport) while
        // both writers push 12 MB before reading anything: the writer must
        // never hold the lock while the socket blocks.
        let ((mut cr, mut cw), (mut sr, mut sw), _) = connected(None);
        let f = frame_of(12 << 20, 9);
        let (f1, f2) = (f.clone(), f.clone());
        let readers = [
            thread::spawn(move || cr.read_frame(MAX, "server").unwrap() == f1),
            thread::spawn(move || sr.read_frame(MAX, "client").unwrap() == f2),
        ];
        let g = f.clone();
        let w = thread::spawn(move || send(&mut sw, &g));
        send(&mut cw, &f);
        w.join().unwrap();
        for r in readers {
            assert!(r.join().unwrap());
        }
    }

    #[test]
    fn key_updates_in_both_directions_keep_the_link_working() {
        let ((mut cr, mut cw), (mut sr, mut sw), _) = connected(Some(4099));
        for round in 0..4u8 {
            // A KeyUpdate asks the peer to update its keys too: it answers
            // with its own KeyUpdate before its next record.
            if round % 2 == 0 {
                cw.refresh_keys().unwrap();
            } else {
                sw.refresh_keys().unwrap();
            }
            let f = frame_of(50_000 + round as usize, round);
            send(&mut cw, &f);
            send(&mut sw, &f);
            assert_eq!(sr.read_frame(MAX, "client").unwrap(), f);
            assert_eq!(cr.read_frame(MAX, "server").unwrap(), f);
        }
    }

    #[test]
    fn close_notify_between_frames_is_a_disconnect_and_inside_one_a_truncation() {
        let ((_cr, mut cw), (mut sr, _sw), _) = connected(None);
        send(&mut cw, b"whole");
        // A length prefix announcing 1000 bytes, then only 10 of them.
        let mut partial = 1000u32.to_le_bytes().to_vec();
        partial.extend_from_slice(&[7; 10]);
        cw.send(Job::Encrypt(&[&partial])).unwrap();
        cw.close();
        assert_eq!(sr.read_frame(MAX, "client").unwrap(), b"whole");
        match sr.read_frame(MAX, "client") {
            Err(NetError::Truncated {
                expected: 1000,
                got: 10,
            }) => {}
            other => panic!("{other:?}"),
        }
        // Nothing more after close_notify.
        assert!(matches!(
            sr.read_frame(MAX, "client"),
            Err(NetError::Disconnected { .. })
        ));

        let ((_cr, mut cw), (mut sr, _sw), _) = connected(None);
        send(&mut cw, b"last");
        cw.close();
        assert_eq!(sr.read_frame(MAX, "client").unwrap(), b"last");
        match sr.read_frame(MAX, "client") {
            Err(NetError::Disconnected { peer }) => assert_eq!(peer, "client"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn socket_closed_without_close_notify_mid_frame_is_a_truncation() {
        let ((_cr, mut cw), (mut sr, _sw), raw) = connected(None);
        let mut partial = 100_000u32.to_le_bytes().to_vec();
        partial.extend_from_slice(&[1; 20_000]);
        cw.send(Job::Encrypt(&[&partial])).unwrap();
        raw.shutdown(Shutdown::Write).unwrap();
        match sr.read_frame(MAX, "client") {
            Err(NetError::Truncated {
                expected: 100_000,
                got: 20_000,
            }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn garbage_after_the_handshake_is_an_error_not_a_panic() {
        let ((_cr, mut cw), (mut sr, mut sw), mut raw) = connected(None);
        send(&mut cw, b"fine");
        assert_eq!(sr.read_frame(MAX, "client").unwrap(), b"fine");
        // Looks like an application-data record, but is not encrypted.
        raw.write_all(&[23, 3, 3, 0, 40]).unwrap();
        raw.write_all(&[0xAB; 40]).unwrap();
        match sr.read_frame(MAX, "client") {
            Err(NetError::Io(e)) => assert_eq!(e.kind(), ErrorKind::InvalidData, "{e}"),
            other => panic!("{other:?}"),
        }
        // The connection is dead for both halves; rustls is not called again.
        let e = sw.send(Job::Encrypt(&[b"after"])).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BrokenPipe, "{e}");
        assert!(matches!(sr.read_frame(MAX, "client"), Err(NetError::Io(_))));
    }

    #[test]
    fn an_oversized_length_prefix_is_refused_before_allocation() {
        let ((_cr, mut cw), (mut sr, _sw), _) = connected(None);
        cw.send(Job::Encrypt(&[&u32::MAX.to_le_bytes()])).unwrap();
        match sr.read_frame(1 << 20, "client") {
            Err(NetError::FrameTooLarge { len, max }) => {
                assert_eq!((len, max), (u32::MAX as u64, 1 << 20));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_client_that_pins_another_certificate_fails_the_handshake_and_the_server_hears_why() {
        let (sid, cid, other) = (identity("server"), identity("client"), identity("other"));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let scfg = sid.server_config().unwrap();
        let server = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            handshake(Conn::server(scfg).unwrap(), &mut s)
                .err()
                .map(|e| e.to_string())
        });
        let mut c = TcpStream::connect(addr).unwrap();
        let ccfg = cid.client_config("server", other.certificate()).unwrap();
        let err = handshake(Conn::client(ccfg, server_name("server")).unwrap(), &mut c)
            .err()
            .expect("a server with another certificate must be refused");
        assert_eq!(err.kind(), ErrorKind::InvalidData);
        assert!(
            err.to_string().contains("not server's pinned certificate"),
            "{err}"
        );
        // The client's alert reached the server.
        let server_err = server.join().unwrap().expect("the server must fail too");
        assert!(server_err.contains("alert"), "{server_err}");
    }
}

#[cfg(test)]
mod tests_support {
    use super::*;
    use std::net::TcpListener;

    pub(super) fn identity(name: &str) -> Identity {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = PrivateKeyDer::Pkcs8(key.serialize_der().into());
        Identity::new(name, cert.der().clone(), der).unwrap()
    }

    /// A client and a server connection after their handshake.
    pub(super) fn connected_conns() -> (Conn, Conn) {
        let (sid, cid) = (identity("server"), identity("client"));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let scfg = sid.server_config().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            handshake(Conn::server(scfg).unwrap(), &mut s).unwrap().conn
        });
        let mut c = TcpStream::connect(addr).unwrap();
        let ccfg = cid.client_config("server", sid.certificate()).unwrap();
        let est = handshake(Conn::client(ccfg, server_name("server")).unwrap(), &mut c).unwrap();
        (est.conn, server.join().unwrap())
    }
}

#[cfg(test)]
mod cost {
    //! CPU cost of the record layer alone (no sockets): `cargo test --release
    //! -p ppml-net --lib tls::records::cost -- --ignored --nocapture`.
    use super::tests_support::connected_conns;
    use super::*;
    use std::time::Instant;

    #[test]
    #[ignore]
    fn record_layer_cost_per_byte() {
        let (mut c, mut s) = connected_conns();
        let frame: Vec<u8> = (0..512 << 10).map(|i| i as u8).collect();
        let frames = 2000;
        let mut out = OutBuf::default();
        let mut plain = Vec::new();
        let t = Instant::now();
        for _ in 0..frames {
            let mut asm = FrameAsm::new(usize::MAX, Vec::new());
            let header = frame::encode_frame_header(frame.len(), usize::MAX).unwrap();
            let mut first = header.to_vec();
            first.extend_from_slice(&frame[..MAX_FRAGMENT - 4]);
            let mut rest = &frame[MAX_FRAGMENT - 4..];
            let mut parts: Vec<&[u8]> = vec![&first];
            while !rest.is_empty() {
                let n = rest.len().min(WRITE_CHUNK);
                parts.push(&rest[..n]);
                rest = &rest[n..];
            }
            for p in parts {
                out.clear();
                let mut sink = |_: &[u8]| {};
                let mut io = StepIo {
                    plain: &mut sink,
                    out: &mut out,
                    job: Job::Encrypt(&[p]),
                };
                while c.step(&mut [], &mut io).unwrap().1 != Step::Writable {}
                let used = out.used;
                let mut sink = |b: &[u8]| deliver(&mut asm, &mut plain, b);
                let mut pend = OutBuf::default();
                let mut io = StepIo {
                    plain: &mut sink,
                    out: &mut pend,
                    job: Job::Nothing,
                };
                let (n, _) = run(&mut s, &mut out.buf[..used], &mut io).unwrap();
                assert_eq!(n, used);
            }
            assert!(asm.complete());
        }
        let el = t.elapsed().as_secs_f64();
        let bytes = (frames * frame.len()) as f64;
        println!(
            "record layer (encrypt + decrypt + copies): {:.3} ns/B",
            el * 1e9 / bytes
        );
    }

    /// The same with rustls's buffered API, as this module used it before
    /// (plaintext -> record -> write buffer; read buffer -> rustls's
    /// deframer, 4 KiB at a time -> record -> frame), for comparison.
    #[test]
    #[ignore]
    fn buffered_record_layer_cost_per_byte() {
        use super::tests_support::identity;
        let (sid, cid) = (identity("server"), identity("client"));
        let ccfg = cid.client_config("server", sid.certificate()).unwrap();
        let mut c = rustls::ClientConnection::new(ccfg, server_name("server")).unwrap();
        let mut s = rustls::ServerConnection::new(sid.server_config().unwrap()).unwrap();
        // Handshake in memory.
        let mut wire = Vec::new();
        for _ in 0..10 {
            wire.clear();
            while c.wants_write() {
                c.write_tls(&mut wire).unwrap();
            }
            let mut rd = &wire[..];
            while !rd.is_empty() {
                s.read_tls(&mut rd).unwrap();
                s.process_new_packets().unwrap();
            }
            wire.clear();
            while s.wants_write() {
                s.write_tls(&mut wire).unwrap();
            }
            let mut rd = &wire[..];
            while !rd.is_empty() {
                c.read_tls(&mut rd).unwrap();
                c.process_new_packets().unwrap();
            }
        }
        assert!(!c.is_handshaking() && !s.is_handshaking());
        c.set_buffer_limit(None);
        let frame: Vec<u8> = (0..512 << 10).map(|i| i as u8).collect();
        let frames = 2000;
        let mut out = Vec::new();
        let t = Instant::now();
        for _ in 0..frames {
            // As `read_to_end` did: zeroed, then read into.
            let mut got: Vec<u8> = vec![0; frame.len()];
            let mut pos = 0;
            for chunk in frame.chunks(256 << 10) {
                c.writer().write_all(chunk).unwrap();
                out.clear();
                while c.wants_write() {
                    c.write_tls(&mut out).unwrap();
                }
                let mut rd = &out[..];
                loop {
                    if pos == got.len() {
                        break;
                    }
                    match s.reader().read(&mut got[pos..]) {
                        Ok(n) => pos += n,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            if rd.is_empty() {
                                break;
                            }
                            s.read_tls(&mut rd).unwrap();
                            s.process_new_packets().unwrap();
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            assert_eq!(pos, frame.len());
        }
        let el = t.elapsed().as_secs_f64();
        let bytes = (frames * frame.len()) as f64;
        println!(
            "buffered record layer (encrypt + decrypt + copies): {:.3} ns/B",
            el * 1e9 / bytes
        );
    }
}
