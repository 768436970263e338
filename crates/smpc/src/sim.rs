//! Running parties as threads of one process over in-memory channels (the
//! threads, the joining and the root-cause error come from
//! [`ppml_net::inprocess`]).

use crate::SmpcError;
use crate::party::{Party, ProtocolConfig, party_name};
use ppml_net::inprocess::{self, HangUp, Role, RoleError};
use ppml_net::{NetConfig, Network, NetworkStats};
use ppml_random::{SecretRng, SecretSource};

/// The outcome of one party in an in-process run.
#[derive(Debug)]
pub struct PartyRun<T> {
    pub output: T,
    pub stats: NetworkStats,
}

/// Party `id`'s private generator, from which it draws the seeds it deals:
/// from the OS ([`SecretSource::Os`]), or, for reproducible tests and
/// benchmarks only, derived from an insecure seed with the label
/// `smpc/party/{id}` (then every party can recompute every other's seeds).
pub fn party_rng(secrets: SecretSource, id: usize) -> SecretRng {
    secrets.rng(&format!("smpc/party/{id}"))
}

impl HangUp for SmpcError {
    /// Any network error may be the echo of another party's failure.
    fn is_hang_up(&self) -> bool {
        matches!(self, SmpcError::Net(_))
    }
}

impl From<RoleError<SmpcError>> for SmpcError {
    fn from(e: RoleError<SmpcError>) -> Self {
        match e {
            RoleError::Failed { error, .. } => error,
            RoleError::Panicked { role } => SmpcError::Panicked(role),
            RoleError::Setup(e) => SmpcError::Net(e),
        }
    }
}

/// Runs `f` as party `i` of `networks.len()` parties, each in its own thread,
/// after [`Party::setup`]. Returns every party's output and traffic, or the
/// error of the party that failed first for a reason other than a peer
/// disappearing (the root cause).
pub fn run_networks<T, F>(
    networks: Vec<Network>,
    cfg: ProtocolConfig,
    secrets: SecretSource,
    f: F,
) -> Result<Vec<PartyRun<T>>, SmpcError>
where
    T: Send,
    F: Fn(&mut Party) -> Result<T, SmpcError> + Sync,
{
    let f = &f;
    let names: Vec<&str> = (0..networks.len()).map(party_name).collect();
    let roles = (0..networks.len())
        .map(|_| {
            Role::thread(move |net: &mut Network| {
                let id = net.me();
                let mut rng = party_rng(secrets, id);
                let mut party = Party::setup(net.take(), cfg, &mut rng)?;
                let output = f(&mut party);
                // Give the network back, so the runner counts its traffic.
                *net = party.net;
                output
            })
        })
        .collect();
    let runs = inprocess::run_on(&names, networks, roles)?;
    Ok(runs
        .into_iter()
        .map(|r| PartyRun {
            output: r.output,
            stats: r.stats,
        })
        .collect())
}

/// Runs `f` as each of `n` parties over fresh in-memory channels.
pub fn run_in_memory<T, F>(
    n: usize,
    cfg: ProtocolConfig,
    secrets: SecretSource,
    f: F,
) -> Result<Vec<PartyRun<T>>, SmpcError>
where
    T: Send,
    F: Fn(&mut Party) -> Result<T, SmpcError> + Sync,
{
    let nets = Network::in_memory(n, &NetConfig::default());
    run_networks(nets, cfg, secrets, f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::party::{P0, P1, Stream};

    /// What P0 and P1 draw from their common stream S01 (seeded by P0's generator).
    fn s01_draws(secrets: SecretSource) -> Vec<u64> {
        let runs = run_in_memory(3, ProtocolConfig::default(), secrets, |p| match p.id {
            P0 | P1 => p.draw(Stream::S01, 4),
            _ => Ok(Vec::new()),
        })
        .expect("setup succeeds");
        assert_eq!(
            runs[P0].output, runs[P1].output,
            "holders agree on the stream"
        );
        runs[P0].output.clone()
    }

    #[test]
    fn stream_seeds_come_from_the_os_unless_insecure() {
        assert_ne!(s01_draws(SecretSource::Os), s01_draws(SecretSource::Os));
        let insecure = SecretSource::InsecureDeterministic(3);
        assert_eq!(s01_draws(insecure), s01_draws(insecure));
        assert_ne!(
            s01_draws(insecure),
            s01_draws(SecretSource::InsecureDeterministic(4))
        );
        assert!(!party_rng(SecretSource::Os, 0).is_insecure());
    }

    #[test]
    fn the_party_that_failed_first_is_reported_not_its_peers() {
        // p2 fails on its own; p0 and p1 then wait for p2 and see it hang up.
        let err = run_in_memory(3, ProtocolConfig::default(), SecretSource::Os, |p| {
            if p.id == 2 {
                return Err(SmpcError::Config("p2's own failure".into()));
            }
            p.net.recv::<u64>(2)?;
            Ok(())
        })
        .unwrap_err();
        assert!(
            matches!(err, SmpcError::Config(ref m) if m == "p2's own failure"),
            "{err}"
        );
    }
}
