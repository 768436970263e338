//! A deployment on this machine for tests, examples and benchmarks: keys and
//! a parties file in a fresh directory, every party on a free loopback port.

use crate::{NetError, Parties, keygen};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Keys (`dir/keys/<name>.key`, `.crt`) and `dir/parties.toml` for `names`.
#[derive(Debug)]
pub struct LocalDeployment {
    pub dir: PathBuf,
    pub names: Vec<String>,
    pub addresses: Vec<String>,
}

impl LocalDeployment {
    /// Generates a key per party and writes the parties file. Ports are
    /// found by binding port 0 and releasing it, so another process could
    /// take one in between (tests retry rarely need to care).
    pub fn new(names: &[&str]) -> Result<LocalDeployment, NetError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ppml-deploy-{}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        ));
        let keys = dir.join("keys");
        let mut addresses = Vec::new();
        // Held until every port is picked: a port released at once could be
        // handed out again to the next party of the same deployment.
        let mut held = Vec::new();
        for name in names {
            keygen(name, &keys)?;
            let l = TcpListener::bind("127.0.0.1:0")?;
            addresses.push(l.local_addr()?.to_string());
            held.push(l);
        }
        drop(held);
        let d = LocalDeployment {
            dir,
            names: names.iter().map(|s| s.to_string()).collect(),
            addresses,
        };
        d.write_parties()?;
        Ok(d)
    }

    /// The parties file's text.
    pub fn parties_toml(&self) -> String {
        let mut s = String::new();
        for (n, a) in self.names.iter().zip(&self.addresses) {
            s.push_str(&format!(
                "[[party]]\nname = \"{n}\"\naddress = \"{a}\"\ncertificate = \"keys/{n}.crt\"\n\n"
            ));
        }
        s
    }

    /// (Re)writes `parties.toml`.
    pub fn write_parties(&self) -> Result<(), NetError> {
        std::fs::write(self.parties_path(), self.parties_toml())?;
        Ok(())
    }

    pub fn parties_path(&self) -> PathBuf {
        self.dir.join("parties.toml")
    }

    pub fn keys_dir(&self) -> PathBuf {
        self.dir.join("keys")
    }

    /// The parties file, loaded.
    pub fn parties(&self) -> Result<Parties, NetError> {
        Parties::load(&self.parties_path())
    }

    /// Makes another key pair for `name` in `dir` (an impostor's key).
    pub fn impostor_keys(&self, name: &str) -> Result<PathBuf, NetError> {
        let d = self.dir.join(format!("impostor-{name}"));
        keygen(name, &d)?;
        Ok(d)
    }

    /// The parties file as the impostor of `name` would write it: `name`'s
    /// certificate replaced by the one in `impostor_dir`.
    pub fn impostor_parties(&self, name: &str, impostor_dir: &Path) -> Result<Parties, NetError> {
        let mut s = String::new();
        for (n, a) in self.names.iter().zip(&self.addresses) {
            let cert = if n == name {
                impostor_dir.join(format!("{n}.crt"))
            } else {
                self.keys_dir().join(format!("{n}.crt"))
            };
            s.push_str(&format!(
                "[[party]]\nname = \"{n}\"\naddress = \"{a}\"\ncertificate = \"{}\"\n\n",
                cert.display()
            ));
        }
        Parties::parse(&s, &self.dir, true).map_err(NetError::Config)
    }
}

impl Drop for LocalDeployment {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
