//! Running the inference roles as separate processes: role names, the
//! session each role opens (TLS with the parties file and its key, or
//! insecure plaintext), and the mesh the five roles form.
//!
//! ```no_run
//! use ppml_net::{NetConfig, Parties};
//! use ppml_smpc::deploy::{Link, parse_roles, run_role_over};
//! use ppml_smpc::inference::RoleInput;
//! use ppml_smpc::party::ProtocolConfig;
//! use std::path::{Path, PathBuf};
//!
//! # fn main() -> Result<(), ppml_smpc::SmpcError> {
//! let parties = Parties::load(Path::new("parties.toml"))?;
//! let link = Link::Tls { parties, keys: PathBuf::from("keys") };
//! let roles = parse_roles("p2")?;
//! let (_preds, stats) = run_role_over(&link, roles[0], None, &RoleInput::Computing,
//!     ProtocolConfig::default(), &NetConfig::default(), ppml_smpc::SecretSource::Os)?;
//! println!("sent {} bytes", stats.total.bytes_sent);
//! # Ok(()) }
//! ```

use crate::SmpcError;
use crate::inference::{RoleInput, run_role_full};
use crate::party::{DATA_OWNER, MODEL_OWNER, P0, P1, P2, Party, ProtocolConfig};
use crate::scoring::RoleOutput;
use crate::sim;
use ppml_net::{Acceptor, NetConfig, Network, NetworkStats, Parties, Session};
use std::net::SocketAddr;
use std::path::PathBuf;

/// The protocol name in the session handshake.
pub const PROTOCOL: &str = "smpc-inference";

/// The five roles' names, by index (p0, p1, p2, model-owner, data-owner).
pub const ROLE_NAMES: [&str; 5] = ["p0", "p1", "p2", "model-owner", "data-owner"];

/// A role index from its name.
pub fn parse_role(s: &str) -> Result<usize, SmpcError> {
    Ok(match s.trim() {
        "p0" => P0,
        "p1" => P1,
        "p2" => P2,
        "model-owner" => MODEL_OWNER,
        "data-owner" => DATA_OWNER,
        other => {
            return Err(SmpcError::Config(format!(
                "unknown role `{other}` (p0, p1, p2, model-owner, data-owner)"
            )));
        }
    })
}

/// Comma-separated role names, without duplicates.
pub fn parse_roles(list: &str) -> Result<Vec<usize>, SmpcError> {
    let mut roles = Vec::new();
    for r in list.split(',') {
        let id = parse_role(r)?;
        if roles.contains(&id) {
            return Err(SmpcError::Config(format!("role {} given twice", r.trim())));
        }
        roles.push(id);
    }
    Ok(roles)
}

/// How the roles reach each other.
#[derive(Clone, Debug)]
pub enum Link {
    /// TLS 1.3, certificates pinned in the parties file; each role reads its
    /// private key from `keys/<role>.key`.
    Tls { parties: Parties, keys: PathBuf },
    /// Plaintext and unauthenticated (`--insecure`).
    Insecure { parties: Parties },
}

/// The parties of an insecure run from `--peers`: five addresses (p0, p1,
/// p2, model-owner, data-owner), or three (p0, p1, p2), in which case the
/// model owner and the data owner listen at p0's and p1's port + 100 (the
/// old loopback convention, kept for `--insecure` benchmarks only).
pub fn peers_to_parties(peers: &str) -> Result<Parties, SmpcError> {
    let mut addrs: Vec<String> = peers.split(',').map(|s| s.trim().to_owned()).collect();
    match addrs.len() {
        5 => {}
        3 => {
            for base in [&addrs[P0].clone(), &addrs[P1].clone()] {
                let a: SocketAddr = base.parse().map_err(|e| {
                    SmpcError::Config(format!(
                        "{base}: {e} (with three --peers give IP:port; or give all five addresses)"
                    ))
                })?;
                let port = a.port().checked_add(100).ok_or_else(|| {
                    SmpcError::Config("port + 100 overflows; give all five addresses".into())
                })?;
                addrs.push(SocketAddr::new(a.ip(), port).to_string());
            }
        }
        n => {
            return Err(SmpcError::Config(format!(
                "--peers needs 3 or 5 addresses, got {n}"
            )));
        }
    }
    Ok(Parties::insecure(&ROLE_NAMES, &addrs)?)
}

/// The session of role `id`.
pub fn role_session(link: &Link, id: usize, config: &NetConfig) -> Result<Session, SmpcError> {
    let name = ROLE_NAMES
        .get(id)
        .ok_or_else(|| SmpcError::Config(format!("no role {id}")))?;
    Ok(match link {
        Link::Tls { parties, keys } => {
            Session::tls(name, parties.clone(), keys, PROTOCOL, config.clone())?
        }
        Link::Insecure { parties } => {
            Session::insecure(name, parties.clone(), PROTOCOL, config.clone())?
        }
    })
}

/// Runs role `id` over `link`: opens its session, joins the five-role mesh
/// (connects to the roles before it, accepts those after it; `acceptor` may
/// be started by the caller on a pre-bound listener), sets up the party and
/// runs the role. Returns the data owner's predictions (empty for the other
/// roles) and this role's traffic.
pub fn run_role_over(
    link: &Link,
    id: usize,
    acceptor: Option<Acceptor>,
    input: &RoleInput<'_>,
    protocol: ProtocolConfig,
    config: &NetConfig,
    secrets: crate::SecretSource,
) -> Result<(Vec<u8>, NetworkStats), SmpcError> {
    let (out, stats) = run_role_full_over(link, id, acceptor, input, protocol, config, secrets)?;
    Ok((out.predictions, stats))
}

/// [`run_role_over`], returning everything the role learns: the data
/// owner's predictions, logits (with [`crate::scoring::Reveal::ClassesAndLogits`])
/// or count of correct predictions (with `Reveal::CorrectCount`, which the
/// model owner learns too).
pub fn run_role_full_over(
    link: &Link,
    id: usize,
    acceptor: Option<Acceptor>,
    input: &RoleInput<'_>,
    protocol: ProtocolConfig,
    config: &NetConfig,
    secrets: crate::SecretSource,
) -> Result<(RoleOutput, NetworkStats), SmpcError> {
    run_role_local(
        link,
        id,
        acceptor,
        Vec::new(),
        input,
        protocol,
        config,
        secrets,
    )
}

/// [`run_role_full_over`] with in-memory channels to the roles of this
/// process (`local`, from [`Network::local_links`]).
#[allow(clippy::too_many_arguments)] // the role's whole context, passed through once
fn run_role_local(
    link: &Link,
    id: usize,
    acceptor: Option<Acceptor>,
    local: Vec<Option<ppml_net::Channel>>,
    input: &RoleInput<'_>,
    protocol: ProtocolConfig,
    config: &NetConfig,
    secrets: crate::SecretSource,
) -> Result<(RoleOutput, NetworkStats), SmpcError> {
    // Bad local input is this role's own error, reported before any peer is contacted.
    input.validate()?;
    let session = role_session(link, id, config)?;
    let net = Network::mesh_with_local(&session, &ROLE_NAMES, acceptor, local)?;
    let mut rng = sim::party_rng(secrets, id);
    let mut party = Party::setup(net, protocol, &mut rng)?;
    let out = run_role_full(&mut party, input)?;
    Ok((out, party.net.stats()))
}

/// What one role of [`run_roles_over`] learned, and its traffic.
pub type RoleRun = (usize, RoleOutput, NetworkStats);

/// Runs several roles of this process (say P1 and the data owner), each on
/// its own thread, and waits for all of them. Roles of this process talk over
/// in-memory channels (nothing between them reaches a socket, so nothing
/// needs encrypting); every other role is reached through the role's own
/// session over `link`. Returns each role's output and traffic, in the order
/// given.
///
/// Every role's input is validated before any role starts. When roles
/// fail, the error returned is the root cause: the first role
/// (in the order given) that failed for its own reason rather than with a
/// network error, since one role's failure makes its peers' links vanish;
/// if all failures are network errors, the first of them. The role's index
/// comes with its error so the caller can name it.
pub fn run_roles_over(
    link: &Link,
    roles: &[(usize, RoleInput<'_>)],
    protocol: ProtocolConfig,
    config: &NetConfig,
    secrets: crate::SecretSource,
) -> Result<Vec<RoleRun>, (usize, SmpcError)> {
    // Every role's local input is checked before any role connects, so a bad
    // parameter is reported as itself, not as the peers' hang-ups.
    for (id, input) in roles {
        input.validate().map_err(|e| (*id, e))?;
    }
    let ids: Vec<usize> = roles.iter().map(|(id, _)| *id).collect();
    let first = ids.first().copied().unwrap_or(0);
    let local = Network::local_links(&ROLE_NAMES, &ids, config).map_err(|e| (first, e.into()))?;
    type Outcome = Result<(RoleOutput, NetworkStats), SmpcError>;
    let mut results: Vec<(usize, Outcome)> = std::thread::scope(|s| {
        let handles: Vec<_> = roles
            .iter()
            .zip(local)
            .map(|((id, input), local)| {
                let id = *id;
                let h = s.spawn(move || {
                    run_role_local(link, id, None, local, input, protocol, config, secrets)
                });
                (id, h)
            })
            .collect();
        handles
            .into_iter()
            .map(|(id, h)| {
                let r = h.join().unwrap_or_else(|_| {
                    Err(SmpcError::Role(format!(
                        "the thread of role {} panicked",
                        crate::party::party_name(id)
                    )))
                });
                (id, r)
            })
            .collect()
    });
    let root = results
        .iter()
        .position(|(_, r)| matches!(r, Err(e) if !matches!(e, SmpcError::Net(_))))
        .or_else(|| results.iter().position(|(_, r)| r.is_err()));
    if let Some(i) = root
        && let (id, Err(e)) = results.swap_remove(i)
    {
        return Err((id, e));
    }
    Ok(results
        .into_iter()
        .filter_map(|(id, r)| r.ok().map(|(out, stats)| (id, out, stats)))
        .collect())
}

/// Appends pairwise seeds to the file named by `PPML_INSECURE_DUMP_SEEDS`
/// (hex, one per line), if that variable is set. For the test that checks
/// that no seed appears in a capture of the wire; never set it otherwise:
/// it writes secrets to disk.
pub fn insecure_dump_seeds(seeds: &[[u8; 32]]) {
    let Some(path) = std::env::var_os("PPML_INSECURE_DUMP_SEEDS") else {
        return;
    };
    let mut text = String::new();
    for s in seeds {
        for b in s {
            text.push_str(&format!("{b:02x}"));
        }
        text.push('\n');
    }
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = f.write_all(text.as_bytes());
    }
}
