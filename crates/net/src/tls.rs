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
//! Records go through rustls's unbuffered API: the reader decrypts them in
//! place in its own socket buffer and copies the plaintext straight into the
//! frame being received; the writer encrypts into its own buffer. A
//! connection is shared by its reader thread and its writer (the
//! [`crate::Channel`] owner) through a mutex that is held only while rustls
//! encrypts or decrypts in memory, never during socket I/O, so two parties
//! that both send large frames before receiving never deadlock. TLS bytes
//! rustls produces while the reader holds the lock (an alert, a KeyUpdate)
//! are sent by the writer, in order, before its next records; the reader
//! never writes to the socket.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, Error as TlsError, SignatureScheme};
use sha2::{Digest, Sha256};
use std::sync::Arc;

mod records;
pub(crate) use records::{Conn, TlsReadHalf, TlsWriteHalf, handshake};

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
