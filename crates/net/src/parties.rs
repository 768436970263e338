//! The parties file: every party's name, address and pinned certificate.
//!
//! ```toml
//! [[party]]
//! name = "p0"                 # p0, p1, p2, model-owner, data-owner, server, client-0, ...
//! address = "127.0.0.1:7000"
//! certificate = "keys/p0.crt" # relative paths are relative to the parties file
//! ```
//!
//! Every host gets the same file; it holds only public material.

use crate::NetError;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::Deserialize;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    party: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    address: String,
    certificate: Option<PathBuf>,
}

/// One party of the file.
#[derive(Clone, Debug)]
pub struct PartyInfo {
    /// Its name (the role it plays).
    pub name: String,
    /// Where it listens, `host:port`.
    pub address: String,
    /// Its pinned certificate (`None` only in insecure mode).
    pub certificate: Option<CertificateDer<'static>>,
}

impl PartyInfo {
    /// The address, resolved (first result).
    pub fn socket_addr(&self) -> Result<SocketAddr, NetError> {
        self.address
            .to_socket_addrs()
            .map_err(|e| NetError::Config(format!("{}: address {}: {e}", self.name, self.address)))?
            .next()
            .ok_or_else(|| {
                NetError::Config(format!(
                    "{}: address {} resolves to nothing",
                    self.name, self.address
                ))
            })
    }
}

/// All parties of a deployment.
#[derive(Clone, Debug, Default)]
pub struct Parties {
    list: Vec<PartyInfo>,
}

/// Characters allowed in a party name (it also names key files).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !name.starts_with('.')
}

/// Checks a party name (used for key file names too, so no path separators).
pub fn check_name(name: &str) -> Result<(), NetError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(NetError::Config(format!(
            "party name `{name}` must be 1-64 characters of letters, digits, '-', '_', '.' \
             and not start with '.'"
        )))
    }
}

/// Reads one PEM certificate.
pub fn read_certificate(path: &Path) -> Result<CertificateDer<'static>, NetError> {
    let pem = read_text_file(path)
        .map_err(|e| NetError::Config(format!("certificate {}: {e}", path.display())))?;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| NetError::Config(format!("certificate {}: {e}", path.display())))
}

/// Reads a parties file, certificate or key the operator named: a regular
/// file of at most [`ppml_files::MAX_TEXT_FILE`] bytes (`/dev/zero` or a
/// pipe is an error, not a hang).
pub fn read_text_file(path: &Path) -> std::io::Result<String> {
    ppml_files::read_bounded_to_string(path, ppml_files::MAX_TEXT_FILE)
}

impl Parties {
    /// Reads and checks a parties file, loading every certificate (each
    /// party must have one). Relative certificate paths are taken relative
    /// to the file's directory.
    pub fn load(path: &Path) -> Result<Parties, NetError> {
        Self::load_with(path, true)
    }

    /// [`Parties::load`], with `need_certs` false for insecure runs (which
    /// use only names and addresses; certificates that are listed are still
    /// read, relative to the file's directory).
    pub fn load_with(path: &Path, need_certs: bool) -> Result<Parties, NetError> {
        let text = read_text_file(path)
            .map_err(|e| NetError::Config(format!("parties file {}: {e}", path.display())))?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        Self::parse(&text, base, need_certs)
            .map_err(|e| NetError::Config(format!("parties file {}: {e}", path.display())))
    }

    /// Parses the TOML text; `need_certs` makes a missing certificate an error.
    pub fn parse(text: &str, base: &Path, need_certs: bool) -> Result<Parties, String> {
        let file: FileFormat = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut list: Vec<PartyInfo> = Vec::with_capacity(file.party.len());
        for e in file.party {
            check_name(&e.name).map_err(|e| e.to_string())?;
            if list.iter().any(|p| p.name == e.name) {
                return Err(format!("party `{}` is listed twice", e.name));
            }
            let certificate = match e.certificate {
                Some(c) => {
                    let p = if c.is_absolute() { c } else { base.join(c) };
                    Some(read_certificate(&p).map_err(|e| e.to_string())?)
                }
                None if need_certs => {
                    return Err(format!("party `{}` has no certificate", e.name));
                }
                None => None,
            };
            list.push(PartyInfo {
                name: e.name,
                address: e.address,
                certificate,
            });
        }
        // Two parties with one certificate could not be told apart.
        for (i, a) in list.iter().enumerate() {
            for b in &list[i + 1..] {
                if let (Some(x), Some(y)) = (&a.certificate, &b.certificate)
                    && x == y
                {
                    return Err(format!(
                        "parties `{}` and `{}` have the same certificate",
                        a.name, b.name
                    ));
                }
            }
        }
        Ok(Parties { list })
    }

    /// Parties without certificates (insecure mode): names and addresses.
    pub fn insecure<S: AsRef<str>>(names: &[S], addresses: &[String]) -> Result<Parties, NetError> {
        if names.len() != addresses.len() {
            return Err(NetError::Config(format!(
                "{} names for {} addresses",
                names.len(),
                addresses.len()
            )));
        }
        let mut list = Vec::new();
        for (n, a) in names.iter().zip(addresses) {
            check_name(n.as_ref())?;
            list.push(PartyInfo {
                name: n.as_ref().to_owned(),
                address: a.clone(),
                certificate: None,
            });
        }
        Ok(Parties { list })
    }

    /// Adds a party (e.g. a client known only at run time in tests).
    pub fn push(&mut self, info: PartyInfo) -> Result<(), NetError> {
        check_name(&info.name)?;
        if self.get(&info.name).is_some() {
            return Err(NetError::Config(format!(
                "party `{}` is listed twice",
                info.name
            )));
        }
        self.list.push(info);
        Ok(())
    }

    /// The party called `name`.
    pub fn get(&self, name: &str) -> Option<&PartyInfo> {
        self.list.iter().find(|p| p.name == name)
    }

    /// The party called `name`, or a configuration error saying it is missing.
    pub fn require(&self, name: &str) -> Result<&PartyInfo, NetError> {
        self.get(name).ok_or_else(|| {
            NetError::Config(format!(
                "party `{name}` is not in the parties file (it lists: {})",
                self.names().join(", ")
            ))
        })
    }

    /// All names, in file order.
    pub fn names(&self) -> Vec<&str> {
        self.list.iter().map(|p| p.name.as_str()).collect()
    }

    /// All parties, in file order.
    pub fn iter(&self) -> impl Iterator<Item = &PartyInfo> {
        self.list.iter()
    }
}
