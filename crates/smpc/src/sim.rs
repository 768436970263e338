//! Running parties as threads of one process over in-memory channels.

use crate::SmpcError;
use crate::party::{Party, ProtocolConfig};
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

/// Runs `f` as party `i` of `networks.len()` parties, each in its own thread,
/// after [`Party::setup`]. Returns every party's output and traffic, or the
/// first error (by party index).
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
    let results: Vec<Result<PartyRun<T>, SmpcError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = networks
            .into_iter()
            .map(|net| {
                scope.spawn(move || {
                    let id = net.me();
                    let mut rng = party_rng(secrets, id);
                    let mut party = Party::setup(net, cfg, &mut rng)?;
                    let output = f(&mut party)?;
                    Ok(PartyRun {
                        output,
                        stats: party.net.stats(),
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .enumerate()
            .map(|(i, h)| {
                h.join().unwrap_or_else(|_| {
                    Err(SmpcError::Panicked(crate::party::party_name(i).into()))
                })
            })
            .collect()
    });
    // Report the root cause: a party that failed for a reason other than a
    // peer disappearing, if any.
    let mut first_err = None;
    let mut outs = Vec::new();
    for r in results {
        match r {
            Ok(o) => outs.push(o),
            Err(e) => {
                let is_net = matches!(e, SmpcError::Net(_));
                match &first_err {
                    None => first_err = Some(e),
                    Some(SmpcError::Net(_)) if !is_net => first_err = Some(e),
                    _ => {}
                }
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(outs),
    }
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
}
