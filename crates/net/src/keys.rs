//! Keys: `ppml keygen` (a self-signed certificate per party) and loading a
//! party's private key.

use crate::parties::{check_name, read_certificate};
use crate::{Identity, NetError, Parties};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Files written by [`keygen`].
#[derive(Clone, Debug)]
pub struct KeyFiles {
    pub key: PathBuf,
    pub certificate: PathBuf,
    /// SHA-256 fingerprint prefix of the certificate.
    pub fingerprint: String,
}

/// Writes `DIR/NAME.key` (PKCS#8 PEM, ECDSA P-256 from the OS CSPRNG, mode
/// 0600) and `DIR/NAME.crt` (a self-signed certificate, PEM, subject
/// `CN=NAME`). Refuses to overwrite an existing key.
pub fn keygen(name: &str, dir: &Path) -> Result<KeyFiles, NetError> {
    check_name(name)?;
    let cfg = |e: &dyn std::fmt::Display| NetError::Config(format!("keygen {name}: {e}"));
    if dir.exists() && !dir.is_dir() {
        return Err(cfg(&format!("{} is not a directory", dir.display())));
    }
    std::fs::create_dir_all(dir).map_err(|e| cfg(&format!("{}: {e}", dir.display())))?;
    let key_path = dir.join(format!("{name}.key"));
    let crt_path = dir.join(format!("{name}.crt"));
    let key = rcgen::KeyPair::generate().map_err(|e| cfg(&e))?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).map_err(|e| cfg(&e))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let cert = params.self_signed(&key).map_err(|e| cfg(&e))?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&key_path).map_err(|e| {
        NetError::Config(format!(
            "keygen {name}: {}: {e} (an existing key is never overwritten)",
            key_path.display()
        ))
    })?;
    f.write_all(key.serialize_pem().as_bytes())
        .map_err(|e| cfg(&e))?;
    std::fs::write(&crt_path, cert.pem()).map_err(|e| cfg(&e))?;
    Ok(KeyFiles {
        key: key_path,
        certificate: crt_path,
        fingerprint: crate::tls::fingerprint(cert.der()),
    })
}

/// Loads party `name`'s identity: its private key from `DIR/NAME.key` and its
/// certificate as pinned in `parties` (the one everybody else expects). The
/// key must belong to that certificate.
pub fn load_identity(name: &str, keys_dir: &Path, parties: &Parties) -> Result<Identity, NetError> {
    check_name(name)?;
    let info = parties.require(name)?;
    let cert = match &info.certificate {
        Some(c) => c.clone(),
        None => read_certificate(&keys_dir.join(format!("{name}.crt")))?,
    };
    let key_path = keys_dir.join(format!("{name}.key"));
    let pem = crate::parties::read_text_file(&key_path)
        .map_err(|e| NetError::Config(format!("private key {}: {e}", key_path.display())))?;
    let key = PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| NetError::Config(format!("private key {}: {e}", key_path.display())))?;
    Identity::new(name, cert, key)
        .map_err(|e| NetError::Config(format!("{e} ({})", key_path.display())))
}
