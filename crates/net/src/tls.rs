//! TLS 1.3 with pinned certificates (rustls, `ring` provider).
//!
//! There is no certificate authority: the parties file pins each party's
//! self-signed certificate, and a party's identity is the key in that
//! certificate.
//!
//! - A connecting party accepts the server only if the server's end-entity
//!   certificate is byte for byte the pinned certificate of the party it meant
//!   to reach ([`PinnedServer`]).
//! - A listening party requires a client certificate and checks, through the
//!   TLS 1.3 CertificateVerify signature, that the client holds its key
//!   ([`AnyClientCert`]); WHICH party the client is, is decided after the
//!   handshake by the session layer, which compares the certificate with the
//!   pinned certificate of the name the client claims. That order lets the
//!   refusal name the party an impostor tried to be.
//!
//! Only TLS 1.3 is enabled; AES-128-GCM is preferred (the fastest suite with
//! AES-NI), then AES-256-GCM and ChaCha20-Poly1305. Session tickets and
//! resumption are off: every connection is a full handshake.
//!
//! A connection is shared by its reader thread and its writer (the
//! [`crate::Channel`] owner) through a mutex that is held only while rustls
//! encrypts or decrypts in memory, never during socket I/O, so two parties
//! that both send large frames before receiving never deadlock.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, Error as TlsError, SignatureScheme};
use sha2::{Digest, Sha256};
use std::io::{self, ErrorKind, IoSlice, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex, MutexGuard};

/// The crypto provider: `ring`, TLS 1.3 suites only, AES-128-GCM first.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::ring::{cipher_suite, default_provider};
    let mut p = default_provider();
    p.cipher_suites = vec![
        cipher_suite::TLS13_AES_128_GCM_SHA256,
        cipher_suite::TLS13_AES_256_GCM_SHA384,
        cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    ];
    Arc::new(p)
}

/// Short SHA-256 fingerprint of a certificate (first 8 bytes, hex), for
/// messages.
pub fn fingerprint(cert: &[u8]) -> String {
    let d = Sha256::digest(cert);
    d[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Accepts a server only if it presents exactly `expected` (and proves it
/// holds its key, through the TLS 1.3 signature).
#[derive(Debug)]
pub(crate) struct PinnedServer {
    pub(crate) name: String,
    pub(crate) expected: CertificateDer<'static>,
    pub(crate) algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        // Exact match of the pinned certificate: no chain, no names, no dates.
        if end_entity.as_ref() == self.expected.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(TlsError::General(format!(
                "its certificate (SHA-256 {}) is not {}'s pinned certificate (SHA-256 {})",
                fingerprint(end_entity),
                self.name,
                fingerprint(&self.expected)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        // Only TLS 1.3 is enabled, so rustls never calls this.
        Err(TlsError::General("TLS 1.2 is not supported".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// Requires a client certificate and proof of its key; the session layer
/// then matches it against the pinned certificate of the claimed party.
#[derive(Debug)]
pub(crate) struct AnyClientCert {
    pub(crate) algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, TlsError> {
        // Which party this is gets decided after the handshake (module docs);
        // the certificate is parsed, and the key proven, by the signature check.
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        Err(TlsError::General("TLS 1.2 is not supported".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// A party's certificate and private key.
#[derive(Clone)]
pub struct Identity {
    pub(crate) name: String,
    pub(crate) cert: CertificateDer<'static>,
    key: Arc<PrivateKeyDer<'static>>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("Identity")
            .field("name", &self.name)
            .field("cert_sha256", &fingerprint(&self.cert))
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Pairs a certificate with its key; errors if the key does not belong
    /// to the certificate.
    pub fn new(
        name: impl Into<String>,
        cert: CertificateDer<'static>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Identity, String> {
        let name = name.into();
        let signer = rustls::crypto::ring::sign::any_supported_type(&key)
            .map_err(|e| format!("{name}'s private key is not usable: {e}"))?;
        let ck = rustls::sign::CertifiedKey::new(vec![cert.clone()], signer);
        ck.keys_match().map_err(|e| {
            format!("{name}'s private key does not belong to its pinned certificate ({e})")
        })?;
        Ok(Identity {
            name,
            cert,
            key: Arc::new(key),
        })
    }

    /// The party name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The certificate (DER).
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    pub(crate) fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let provider = provider();
        let algs = provider.signature_verification_algorithms;
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(Arc::new(AnyClientCert { algs }))
            .with_single_cert(vec![self.cert.clone()], self.key.clone_key())?;
        cfg.send_tls13_tickets = 0;
        cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        Ok(Arc::new(cfg))
    }

    pub(crate) fn client_config(
        &self,
        peer: &str,
        expected: &CertificateDer<'static>,
    ) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let provider = provider();
        let algs = provider.signature_verification_algorithms;
        let verifier = PinnedServer {
            name: peer.to_owned(),
            expected: expected.clone(),
            algs,
        };
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_auth_cert(vec![self.cert.clone()], self.key.clone_key())?;
        cfg.resumption = rustls::client::Resumption::disabled();
        Ok(Arc::new(cfg))
    }
}

/// The server name sent in the ClientHello (the verifier ignores it).
pub(crate) fn server_name(peer: &str) -> ServerName<'static> {
    ServerName::try_from(peer.to_owned())
        .unwrap_or_else(|_| ServerName::try_from("ppml.invalid").expect("a valid DNS name"))
}

pub(crate) type Shared = Arc<Mutex<rustls::Connection>>;

fn lock(conn: &Shared) -> MutexGuard<'_, rustls::Connection> {
    // A panic while holding the lock leaves rustls in some state; its own
    // error state (if any) is reported on the next call, so go on.
    conn.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs the handshake to completion on a blocking socket (whose timeouts
/// bound it).
pub(crate) fn handshake(conn: &mut rustls::Connection, sock: &mut TcpStream) -> io::Result<()> {
    while conn.is_handshaking() {
        conn.complete_io(sock)?;
    }
    // Flush whatever the handshake left to send (the client's Finished).
    while conn.wants_write() {
        conn.write_tls(sock)?;
    }
    Ok(())
}

/// Size of ciphertext reads from the socket.
const READ_BUF: usize = 128 << 10;
/// Plaintext encrypted per lock acquisition (bounds the time the reader
/// thread can wait for the lock, and the ciphertext buffer).
const WRITE_CHUNK: usize = 256 << 10;

/// The receiving half: reads ciphertext from the socket without the lock,
/// decrypts under it.
pub(crate) struct TlsReadHalf {
    sock: TcpStream,
    conn: Shared,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl TlsReadHalf {
    pub(crate) fn new(sock: TcpStream, conn: Shared) -> Self {
        TlsReadHalf {
            sock,
            conn,
            buf: vec![0u8; READ_BUF].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }
}

impl Read for TlsReadHalf {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            {
                let mut conn = lock(&self.conn);
                match conn.reader().read(out) {
                    // Ok(0) is a clean close_notify from the peer.
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                // No plaintext pending: feed buffered ciphertext, if any. rustls
                // takes what it can hold; the rest stays for the next turn.
                if self.start < self.end {
                    let mut slice = &self.buf[self.start..self.end];
                    let before = slice.len();
                    conn.read_tls(&mut slice)?;
                    self.start += before - slice.len();
                    conn.process_new_packets()
                        .map_err(|e| io::Error::new(ErrorKind::InvalidData, e))?;
                    continue;
                }
            }
            // Socket read without the lock, so the writer can encrypt meanwhile.
            let n = loop {
                match self.sock.read(&mut self.buf) {
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    r => break r?,
                }
            };
            if n == 0 {
                // End of stream without close_notify: let rustls say so.
                let mut conn = lock(&self.conn);
                conn.read_tls(&mut io::empty())?;
                conn.process_new_packets()
                    .map_err(|e| io::Error::new(ErrorKind::InvalidData, e))?;
                return match conn.reader().read(out) {
                    Ok(n) => Ok(n),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(0),
                    Err(e) => Err(e),
                };
            }
            self.start = 0;
            self.end = n;
        }
    }
}

/// The sending half: encrypts under the lock into a buffer, writes the
/// buffer to the socket without the lock.
pub(crate) struct TlsWriteHalf {
    sock: TcpStream,
    conn: Shared,
    out: Vec<u8>,
}

impl TlsWriteHalf {
    pub(crate) fn new(sock: TcpStream, conn: Shared) -> Self {
        TlsWriteHalf {
            sock,
            conn,
            out: Vec::new(),
        }
    }

    /// Writes `header` then `payload` as one stream of TLS records.
    pub(crate) fn write_parts(&mut self, header: &[u8], payload: &[u8]) -> io::Result<()> {
        // The header travels in the same record as the payload's first bytes
        // (no 22-byte record of its own).
        let first = payload.len().min(WRITE_CHUNK);
        self.encrypt(&[IoSlice::new(header), IoSlice::new(&payload[..first])])?;
        for chunk in payload[first..].chunks(WRITE_CHUNK) {
            self.encrypt(&[IoSlice::new(chunk)])?;
        }
        Ok(())
    }

    fn encrypt(&mut self, parts: &[IoSlice<'_>]) -> io::Result<()> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        {
            let mut conn = lock(&self.conn);
            // The send buffer is unlimited (set at construction), so rustls
            // takes everything; a short write would be a bug, not back-pressure.
            let n = conn.writer().write_vectored(parts)?;
            if n != total {
                return Err(io::Error::new(
                    ErrorKind::WriteZero,
                    "TLS layer accepted a partial write",
                ));
            }
            while conn.wants_write() {
                conn.write_tls(&mut self.out)?;
            }
        }
        let r = self.sock.write_all(&self.out);
        self.out.clear();
        r
    }

    /// Sends close_notify (best effort, on drop).
    pub(crate) fn close(&mut self) {
        {
            let mut conn = lock(&self.conn);
            conn.send_close_notify();
            while conn.wants_write() {
                if conn.write_tls(&mut self.out).is_err() {
                    break;
                }
            }
        }
        let _ = self.sock.write_all(&self.out);
        self.out.clear();
    }
}
