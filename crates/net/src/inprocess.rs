//! Roles as threads of one process over in-memory channels: the one setup
//! behind every in-process runner (SMPC simulations and the `demo`, split
//! learning, secure aggregation, federated simulations).
//!
//! [`run_roles`] wires the named roles with in-memory channels ([`Links`]:
//! a full mesh, a star around one hub, or explicit pairs), runs each role's
//! code on its own scoped thread (at most one on the calling thread, for code
//! that is not `Send`, e.g. a progress callback), joins them all, and returns
//! every role's output with its traffic ([`NetworkStats`]: bytes, messages,
//! rounds). A role's [`Network`] is the same type a deployment gets from
//! [`Network::mesh`], with the role's peers at their indices in `names`.
//!
//! When roles fail, the error names the role that failed FIRST for a reason
//! of its own (the root cause), not the peers that then saw it hang up: each
//! failure is stamped in the order it happened, and failures that are only a
//! peer disappearing ([`HangUp::is_hang_up`]) are reported only if nothing
//! else failed. A role's channels are dropped as soon as it returns, so its
//! peers never wait for a role that has already failed.
//!
//! ```
//! use ppml_net::inprocess::{Links, Role, run_roles};
//! use ppml_net::{NetConfig, NetError};
//!
//! // A server doubling what each of two clients sends it.
//! let server = |net: &mut ppml_net::Network| -> Result<u64, NetError> {
//!     let mut total = 0;
//!     for c in 1..=2 {
//!         let x: u64 = net.recv(c)?;
//!         net.send(c, &(2 * x))?;
//!         total += x;
//!     }
//!     Ok(total)
//! };
//! let client = |x: u64| move |net: &mut ppml_net::Network| -> Result<u64, NetError> {
//!     net.send(0, &x)?;
//!     net.recv(0)
//! };
//! let runs = run_roles(
//!     &["server", "client-0", "client-1"],
//!     &Links::Star(0),
//!     &NetConfig::default(),
//!     vec![Role::thread(server), Role::thread(client(3)), Role::thread(client(4))],
//! )
//! .unwrap();
//! assert_eq!([runs[0].output, runs[1].output, runs[2].output], [7, 6, 8]);
//! assert_eq!(runs[1].stats.total.messages_sent, 1);
//! ```

use crate::{Channel, NetConfig, NetError, Network, NetworkStats, in_memory_transport_pair};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Which roles are connected (by index in the role list).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Links {
    /// Every pair of roles.
    Mesh,
    /// Every role with the hub (a server and its clients); no other links.
    Star(usize),
    /// Exactly these pairs (each once, in either order).
    Pairs(Vec<(usize, usize)>),
}

impl Links {
    fn pairs(&self, n: usize) -> Result<Vec<(usize, usize)>, NetError> {
        let pairs: Vec<(usize, usize)> = match self {
            Links::Mesh => (0..n)
                .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
                .collect(),
            Links::Star(hub) => (0..n).filter(|&j| j != *hub).map(|j| (*hub, j)).collect(),
            Links::Pairs(p) => p.clone(),
        };
        let mut seen = std::collections::HashSet::new();
        for &(a, b) in &pairs {
            if a >= n || b >= n || a == b {
                return Err(NetError::Config(format!(
                    "link ({a}, {b}) is not between two of the {n} roles"
                )));
            }
            if !seen.insert((a.min(b), a.max(b))) {
                return Err(NetError::Config(format!("link ({a}, {b}) given twice")));
            }
        }
        Ok(pairs)
    }
}

/// Errors that may only be the echo of another role's failure: the peer hung
/// up or went silent. The root cause of a failed run is a failure that is not.
pub trait HangUp {
    /// True if this error only says that a peer disconnected or timed out.
    fn is_hang_up(&self) -> bool;
}

impl HangUp for NetError {
    fn is_hang_up(&self) -> bool {
        matches!(
            self,
            NetError::Disconnected { .. } | NetError::Timeout { .. }
        )
    }
}

type RoleFn<'a, T, E> = Box<dyn FnOnce(&mut Network) -> Result<T, E> + Send + 'a>;
type HereFn<'a, T, E> = Box<dyn FnOnce(&mut Network) -> Result<T, E> + 'a>;

/// The code of one role.
pub enum Role<'a, T, E> {
    /// Runs on a thread of its own.
    Thread(RoleFn<'a, T, E>),
    /// Runs on the calling thread (at most one role), while the others run on
    /// theirs: for code that is not `Send`, such as a progress callback.
    Here(HereFn<'a, T, E>),
}

impl<'a, T, E> Role<'a, T, E> {
    /// A role on its own thread.
    pub fn thread(f: impl FnOnce(&mut Network) -> Result<T, E> + Send + 'a) -> Self {
        Role::Thread(Box::new(f))
    }

    /// The role run on the calling thread.
    pub fn here(f: impl FnOnce(&mut Network) -> Result<T, E> + 'a) -> Self {
        Role::Here(Box::new(f))
    }
}

/// One role's result and traffic.
#[derive(Debug)]
pub struct RoleRun<T> {
    pub name: String,
    pub output: T,
    /// Its traffic (per peer, by role index, and in total with party-level rounds).
    pub stats: NetworkStats,
}

/// Why [`run_roles`] failed: the root cause (see the module docs).
#[derive(Debug, thiserror::Error)]
pub enum RoleError<E> {
    /// Role `role` returned `error`.
    #[error("{role}: {error}")]
    Failed { role: String, error: E },
    /// Role `role` panicked.
    #[error("{role} panicked")]
    Panicked { role: String },
    /// The roles could not be set up (bad links, too many `Here` roles, no thread).
    #[error("in-process roles: {0}")]
    Setup(NetError),
}

impl<E> RoleError<E> {
    /// The role that failed (none for a setup error).
    pub fn role(&self) -> Option<&str> {
        match self {
            RoleError::Failed { role, .. } | RoleError::Panicked { role } => Some(role),
            RoleError::Setup(_) => None,
        }
    }

    /// The role's own error, if it returned one.
    pub fn into_error(self) -> Option<E> {
        match self {
            RoleError::Failed { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// The in-memory networks of `names.len()` roles wired by `links` (element `i`
/// is role `i`; a role's channel to `j` is named after `names[j]`).
pub fn networks(
    names: &[&str],
    links: &Links,
    config: &NetConfig,
) -> Result<Vec<Network>, NetError> {
    let n = names.len();
    let mut grid: Vec<Vec<Option<Channel>>> =
        (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
    for (a, b) in links.pairs(n)? {
        let (ta, tb) = in_memory_transport_pair(config);
        grid[a][b] = Some(Channel::new(Box::new(ta.with_peer_name(names[b])), config));
        grid[b][a] = Some(Channel::new(Box::new(tb.with_peer_name(names[a])), config));
    }
    Ok(grid
        .into_iter()
        .enumerate()
        .map(|(me, channels)| Network::from_channels(me, channels))
        .collect())
}

enum Outcome<T, E> {
    Done(T, NetworkStats),
    Failed(usize, E),
    Panicked(usize),
}

/// Runs `roles[i]` as role `names[i]` over in-memory channels wired by
/// `links`, all concurrently; returns every role's output and traffic in role
/// order, or the root cause of the failure (see the module docs).
pub fn run_roles<'a, T, E>(
    names: &[&str],
    links: &Links,
    config: &NetConfig,
    roles: Vec<Role<'a, T, E>>,
) -> Result<Vec<RoleRun<T>>, RoleError<E>>
where
    T: Send,
    E: Send + HangUp,
{
    let nets = networks(names, links, config).map_err(RoleError::Setup)?;
    run_on(names, nets, roles)
}

/// Like [`run_roles`] on networks built by the caller (e.g. with emulated
/// links, [`crate::emulator`]); `nets[i]` is role `i`'s.
pub fn run_on<'a, T, E>(
    names: &[&str],
    nets: Vec<Network>,
    roles: Vec<Role<'a, T, E>>,
) -> Result<Vec<RoleRun<T>>, RoleError<E>>
where
    T: Send,
    E: Send + HangUp,
{
    if nets.len() != names.len() {
        return Err(RoleError::Setup(NetError::Config(format!(
            "{} networks for {} names",
            nets.len(),
            names.len()
        ))));
    }
    if roles.len() != names.len() {
        return Err(RoleError::Setup(NetError::Config(format!(
            "{} roles for {} names",
            roles.len(),
            names.len()
        ))));
    }
    if roles.iter().filter(|r| matches!(r, Role::Here(_))).count() > 1 {
        return Err(RoleError::Setup(NetError::Config(
            "at most one role can run on the calling thread".into(),
        )));
    }
    let clock = AtomicUsize::new(0);
    let clock = &clock;
    // Runs one role; its network (and so its channels) is dropped on return,
    // so the peers of a failed role see it hang up at once.
    fn run_one<T, E>(
        mut net: Network,
        f: impl FnOnce(&mut Network) -> Result<T, E>,
        clock: &AtomicUsize,
    ) -> Outcome<T, E> {
        match f(&mut net) {
            Ok(t) => Outcome::Done(t, net.stats()),
            Err(e) => Outcome::Failed(clock.fetch_add(1, Ordering::SeqCst), e),
        }
    }
    let outcomes: Vec<Outcome<T, E>> = std::thread::scope(|scope| {
        let mut handles = Vec::with_capacity(roles.len());
        let mut here = None;
        for (i, (role, net)) in roles.into_iter().zip(nets).enumerate() {
            match role {
                Role::Thread(f) => {
                    let spawned = std::thread::Builder::new()
                        .name(names[i].to_owned())
                        .spawn_scoped(scope, move || {
                            // Caught here, so a panic is stamped when it happens.
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                run_one(net, f, clock)
                            }))
                            .unwrap_or_else(|_| {
                                Outcome::Panicked(clock.fetch_add(1, Ordering::SeqCst))
                            })
                        });
                    handles.push(Some(spawned));
                }
                Role::Here(f) => {
                    here = Some((i, f, net));
                    handles.push(None);
                }
            }
        }
        // The calling thread's role runs while the others run on theirs.
        let mut here_out = here.map(|(i, f, net)| {
            let out =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_one(net, f, clock)))
                    .unwrap_or_else(|_| Outcome::Panicked(clock.fetch_add(1, Ordering::SeqCst)));
            (i, out)
        });
        handles
            .into_iter()
            .enumerate()
            .map(|(i, h)| match h {
                Some(Ok(h)) => h
                    .join()
                    .unwrap_or_else(|_| Outcome::Panicked(clock.fetch_add(1, Ordering::SeqCst))),
                // The thread could not be started: its network was dropped
                // with the closure, so the others see it hang up.
                Some(Err(_)) => Outcome::Panicked(clock.fetch_add(1, Ordering::SeqCst)),
                None => match here_out.take() {
                    Some((j, out)) if j == i => out,
                    // Cannot happen: `None` handles are exactly the `Here` role.
                    _ => Outcome::Panicked(usize::MAX),
                },
            })
            .collect()
    });
    // The root cause: the earliest failure that is not a hang-up, else the
    // earliest failure.
    let mut worst: Option<(bool, usize, usize)> = None; // (hang_up, time, role)
    for (i, o) in outcomes.iter().enumerate() {
        let key = match o {
            Outcome::Done(..) => continue,
            Outcome::Failed(t, e) => (e.is_hang_up(), *t, i),
            Outcome::Panicked(t) => (false, *t, i),
        };
        if worst.is_none_or(|w| key < w) {
            worst = Some(key);
        }
    }
    if let Some((_, _, i)) = worst {
        let role = names[i].to_owned();
        return Err(match outcomes.into_iter().nth(i) {
            Some(Outcome::Failed(_, error)) => RoleError::Failed { role, error },
            _ => RoleError::Panicked { role },
        });
    }
    Ok(outcomes
        .into_iter()
        .zip(names)
        .filter_map(|(o, name)| match o {
            Outcome::Done(output, stats) => Some(RoleRun {
                name: (*name).to_owned(),
                output,
                stats,
            }),
            _ => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    enum E {
        Net(bool),
        Own(&'static str),
    }
    impl HangUp for E {
        fn is_hang_up(&self) -> bool {
            matches!(self, E::Net(true))
        }
    }
    impl From<NetError> for E {
        fn from(e: NetError) -> E {
            E::Net(e.is_hang_up())
        }
    }

    #[test]
    fn mesh_runs_every_role_and_counts_its_traffic() {
        let role = |me: usize| {
            Role::thread(move |net: &mut Network| -> Result<u64, E> {
                for p in (0..3).filter(|&p| p != me) {
                    net.send(p, &(me as u64))?;
                }
                let mut s = 0;
                for p in (0..3).filter(|&p| p != me) {
                    s += net.recv::<u64>(p)?;
                }
                Ok(s)
            })
        };
        let runs = run_roles(
            &["a", "b", "c"],
            &Links::Mesh,
            &NetConfig::default(),
            vec![role(0), role(1), role(2)],
        )
        .unwrap();
        let outs: Vec<u64> = runs.iter().map(|r| r.output).collect();
        assert_eq!(outs, [3, 2, 1]);
        assert_eq!(runs[2].name, "c");
        for r in &runs {
            assert_eq!(r.stats.total.messages_sent, 2);
            assert_eq!(
                r.stats.total.rounds, 1,
                "two sends back to back are one round"
            );
            assert!(r.stats.total.bytes_sent > 0);
        }
    }

    #[test]
    fn the_root_cause_is_named_not_the_peers_that_saw_it_hang_up() {
        // b fails on its own after a while; a and c wait for b and see it hang up.
        for here in [false, true] {
            let wait = |net: &mut Network| -> Result<(), E> {
                net.recv::<u64>(1)?;
                Ok(())
            };
            let b = |_: &mut Network| -> Result<(), E> {
                std::thread::sleep(std::time::Duration::from_millis(50));
                Err(E::Own("bad input"))
            };
            let roles: Vec<Role<'_, (), E>> = if here {
                vec![Role::thread(wait), Role::here(b), Role::thread(wait)]
            } else {
                vec![Role::thread(wait), Role::thread(b), Role::here(wait)]
            };
            let err = run_roles(
                &["a", "b", "c"],
                &Links::Star(1),
                &NetConfig::default(),
                roles,
            )
            .unwrap_err();
            assert_eq!(err.role(), Some("b"));
            assert_eq!(err.into_error(), Some(E::Own("bad input")));
        }
    }

    #[test]
    fn a_hang_up_alone_is_reported_and_a_panic_is_named() {
        let quits = |_: &mut Network| -> Result<(), E> { Ok(()) };
        let waits = |net: &mut Network| -> Result<(), E> {
            net.recv::<u64>(0)?;
            Ok(())
        };
        let err = run_roles(
            &["quitter", "waiter"],
            &Links::Mesh,
            &NetConfig::default(),
            vec![Role::thread(quits), Role::thread(waits)],
        )
        .unwrap_err();
        assert_eq!(err.role(), Some("waiter"));
        let panics = |_: &mut Network| -> Result<(), E> { panic!("boom") };
        let err = run_roles(
            &["panicker", "waiter"],
            &Links::Mesh,
            &NetConfig::default(),
            vec![Role::thread(panics), Role::here(waits)],
        )
        .unwrap_err();
        assert!(matches!(err, RoleError::Panicked { ref role } if role == "panicker"));
    }

    #[test]
    fn links_are_checked_and_only_linked_roles_can_talk() {
        let nets = networks(&["s", "x", "y"], &Links::Star(0), &NetConfig::default()).unwrap();
        let mut x = nets.into_iter().nth(1).unwrap();
        assert!(x.channel(0).is_ok());
        assert!(matches!(x.channel(2), Err(NetError::UnknownPeer(2))));
        for bad in [vec![(0, 0)], vec![(0, 3)], vec![(0, 1), (1, 0)]] {
            assert!(networks(&["s", "x", "y"], &Links::Pairs(bad), &NetConfig::default()).is_err());
        }
        let two_here: Vec<Role<'_, (), E>> = vec![Role::here(|_| Ok(())), Role::here(|_| Ok(()))];
        assert!(matches!(
            run_roles(&["a", "b"], &Links::Mesh, &NetConfig::default(), two_here),
            Err(RoleError::Setup(_))
        ));
    }
}
