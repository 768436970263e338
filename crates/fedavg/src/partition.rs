//! Splitting a training set among clients: IID, McMahan's pathological
//! non-IID shards, Dirichlet label skew, contiguous blocks (the seed-002
//! "two workers holding halves") and log-normal unbalanced sizes.
//!
//! A partition is a list of index lists, one per client, into the training
//! set. Every partitioner is deterministic given its PUBLIC seed (stream
//! `"fedavg/partition"` of [`ppml_random::PublicSeed`]), and the lists are
//! disjoint (every example goes to at most one client).

use crate::FedError;
use ppml_random::{PublicSeed, shuffle};
use rand::{Rng, RngExt};

/// How to split a training set among clients.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Partition {
    /// Shuffle, then equal-sized random parts (sizes differ by at most one).
    Iid,
    /// McMahan et al.'s pathological non-IID split: sort by label, cut into
    /// `clients * per_client` shards of equal size (200 x 300 for 100 clients
    /// on 60,000 images), give each client `per_client` random shards.
    Shards { per_client: usize },
    /// Label skew: for every class, its examples are split among clients with
    /// proportions drawn from Dirichlet(alpha, ..., alpha). Small alpha = strong skew.
    /// Every client gets at least one example (the draw is repeated otherwise).
    Dirichlet { alpha: f64 },
    /// Consecutive equal blocks in dataset order (no shuffling): with 2 clients,
    /// the seed-002 "two workers holding halves of the training set".
    Contiguous,
    /// IID content with log-normal sizes: client `k` gets a share proportional
    /// to `exp(sigma * z_k)`, `z_k ~ N(0,1)` (at least one example each).
    Unbalanced { sigma: f64 },
}

impl std::str::FromStr for Partition {
    type Err = FedError;
    /// `iid`, `shards` (2 per client) or `shards:S`, `dirichlet:ALPHA`,
    /// `halves` / `contiguous`, `unbalanced` (sigma 1) or `unbalanced:SIGMA`.
    fn from_str(s: &str) -> Result<Self, FedError> {
        let (name, arg) = match s.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (s, None),
        };
        let num = |what: &str| -> Result<f64, FedError> {
            let a = arg.ok_or_else(|| {
                FedError::Config(format!("partition `{name}` needs a parameter ({what})"))
            })?;
            a.parse::<f64>()
                .map_err(|_| FedError::Config(format!("partition `{s}`: `{a}` is not a number")))
        };
        let p = match name {
            "iid" => Partition::Iid,
            "shards" | "noniid" | "pathological" => Partition::Shards {
                per_client: match arg {
                    None => 2,
                    Some(a) => a.parse().map_err(|_| {
                        FedError::Config(format!("partition `{s}`: `{a}` is not a shard count"))
                    })?,
                },
            },
            "dirichlet" | "dir" => Partition::Dirichlet {
                alpha: num("alpha, e.g. dirichlet:0.5")?,
            },
            "halves" | "contiguous" => Partition::Contiguous,
            "unbalanced" => Partition::Unbalanced {
                sigma: if arg.is_some() { num("sigma")? } else { 1.0 },
            },
            other => {
                return Err(FedError::Config(format!(
                    "unknown partition `{other}` (iid, shards[:S], dirichlet:ALPHA, halves, unbalanced[:SIGMA])"
                )));
            }
        };
        p.validate()?;
        Ok(p)
    }
}

impl std::fmt::Display for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Partition::Iid => write!(f, "iid"),
            Partition::Shards { per_client } => write!(f, "shards:{per_client}"),
            Partition::Dirichlet { alpha } => write!(f, "dirichlet:{alpha}"),
            Partition::Contiguous => write!(f, "contiguous"),
            Partition::Unbalanced { sigma } => write!(f, "unbalanced:{sigma}"),
        }
    }
}

impl Partition {
    fn validate(&self) -> Result<(), FedError> {
        match *self {
            Partition::Shards { per_client: 0 } => Err(FedError::Config(
                "shards: each client needs at least one shard".into(),
            )),
            Partition::Dirichlet { alpha } if !(alpha > 0.0 && alpha.is_finite()) => Err(
                FedError::Config(format!("dirichlet: alpha must be positive, got {alpha}")),
            ),
            Partition::Unbalanced { sigma } if !(sigma >= 0.0 && sigma.is_finite()) => Err(
                FedError::Config(format!("unbalanced: sigma must be >= 0, got {sigma}")),
            ),
            _ => Ok(()),
        }
    }

    /// Splits examples with `labels` (one per example, classes `0..num_classes`
    /// inferred as `max + 1`) among `clients` clients.
    ///
    /// Errors if there are no clients, fewer examples than clients, or (for
    /// shards) fewer examples than shards, including shard counts that
    /// overflow (`clients * per_client` is checked, never wrapped).
    pub fn split(
        &self,
        labels: &[u8],
        clients: usize,
        seed: u64,
    ) -> Result<Vec<Vec<usize>>, FedError> {
        self.validate()?;
        let n = labels.len();
        if clients == 0 {
            return Err(FedError::Config("at least one client is needed".into()));
        }
        if n < clients {
            return Err(FedError::Config(format!(
                "{n} examples cannot be split among {clients} clients"
            )));
        }
        let mut rng = PublicSeed::new(seed).rng("fedavg/partition");
        Ok(match *self {
            Partition::Iid => {
                let mut idx: Vec<usize> = (0..n).collect();
                shuffle(&mut idx, &mut rng);
                equal_blocks(&idx, clients)
            }
            Partition::Contiguous => {
                let idx: Vec<usize> = (0..n).collect();
                equal_blocks(&idx, clients)
            }
            Partition::Shards { per_client } => {
                // Checked: a hostile or mistaken shard count must be an error,
                // not a wrapped product that later divides by zero.
                let shards = clients
                    .checked_mul(per_client)
                    .filter(|&s| s <= n)
                    .ok_or_else(|| {
                        FedError::Config(format!(
                            "{n} examples cannot make {clients} x {per_client} shards"
                        ))
                    })?;
                let size = n / shards;
                let mut sorted: Vec<usize> = (0..n).collect();
                // Stable: ties keep dataset order, so the split only depends on the seed.
                sorted.sort_by_key(|&i| labels[i]);
                let mut ids: Vec<usize> = (0..shards).collect();
                shuffle(&mut ids, &mut rng);
                ids.chunks(per_client)
                    .map(|c| {
                        let mut v = Vec::with_capacity(per_client * size);
                        for &s in c {
                            v.extend_from_slice(&sorted[s * size..(s + 1) * size]);
                        }
                        v
                    })
                    .collect()
            }
            Partition::Dirichlet { alpha } => dirichlet(labels, clients, alpha, &mut rng)?,
            Partition::Unbalanced { sigma } => {
                let mut idx: Vec<usize> = (0..n).collect();
                shuffle(&mut idx, &mut rng);
                // exp(sigma z_k - max_j sigma z_j): the same proportions as
                // exp(sigma z_k), without overflowing to infinity for large sigma.
                let logw: Vec<f64> = (0..clients).map(|_| sigma * normal(&mut rng)).collect();
                let top = logw.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let w: Vec<f64> = logw.iter().map(|l| (l - top).exp()).collect();
                let sizes = apportion(&w, n, 1);
                let mut out = Vec::with_capacity(clients);
                let mut at = 0;
                for s in sizes {
                    out.push(idx[at..at + s].to_vec());
                    at += s;
                }
                out
            }
        })
    }
}

/// `k` consecutive blocks whose sizes differ by at most one.
fn equal_blocks(idx: &[usize], k: usize) -> Vec<Vec<usize>> {
    let n = idx.len();
    (0..k)
        .map(|c| idx[c * n / k..(c + 1) * n / k].to_vec())
        .collect()
}

/// Integer sizes summing to `n`, proportional to `w`, each at least `min`
/// (largest-remainder rounding). Requires `n >= min * w.len()`.
fn apportion(w: &[f64], n: usize, min: usize) -> Vec<usize> {
    let k = w.len();
    let free = n - min * k;
    let total: f64 = w.iter().sum();
    let exact: Vec<f64> = w.iter().map(|x| x / total * free as f64).collect();
    let mut sizes: Vec<usize> = exact.iter().map(|x| x.floor() as usize).collect();
    let mut left = free - sizes.iter().sum::<usize>();
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&a, &b| {
        let ra = exact[a] - exact[a].floor();
        let rb = exact[b] - exact[b].floor();
        rb.total_cmp(&ra).then(a.cmp(&b))
    });
    for &i in order.iter().cycle() {
        if left == 0 {
            break;
        }
        sizes[i] += 1;
        left -= 1;
    }
    sizes.iter().map(|s| s + min).collect()
}

fn dirichlet<R: Rng + ?Sized>(
    labels: &[u8],
    clients: usize,
    alpha: f64,
    rng: &mut R,
) -> Result<Vec<Vec<usize>>, FedError> {
    let classes = labels.iter().copied().max().map_or(0, |m| m as usize + 1);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        by_class[l as usize].push(i);
    }
    const TRIES: usize = 1000;
    for _ in 0..TRIES {
        let mut out: Vec<Vec<usize>> = vec![Vec::new(); clients];
        for idx in &by_class {
            let mut idx = idx.clone();
            shuffle(&mut idx, rng);
            let p: Vec<f64> = (0..clients).map(|_| gamma(alpha, rng)).collect();
            let sizes = if p.iter().sum::<f64>() > 0.0 {
                apportion(&p, idx.len(), 0)
            } else {
                // Every draw underflowed (tiny alpha): give the class to one client.
                let mut s = vec![0; clients];
                s[rng.random_range(0..clients)] = idx.len();
                s
            };
            let mut at = 0;
            for (c, s) in sizes.into_iter().enumerate() {
                out[c].extend_from_slice(&idx[at..at + s]);
                at += s;
            }
        }
        if out.iter().all(|v| !v.is_empty()) {
            return Ok(out);
        }
    }
    Err(FedError::Config(format!(
        "dirichlet:{alpha} left a client without data in {TRIES} draws; use fewer clients or a larger alpha"
    )))
}

/// Standard normal (Box-Muller).
fn normal<R: rand::Rng + ?Sized>(rng: &mut R) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Gamma(shape, 1) by Marsaglia and Tsang (2000); shape < 1 via the boost `G(a+1) U^(1/a)`.
fn gamma<R: rand::Rng + ?Sized>(shape: f64, rng: &mut R) -> f64 {
    if shape < 1.0 {
        let u: f64 = 1.0 - rng.random::<f64>();
        return gamma(shape + 1.0, rng) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = normal(rng);
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u: f64 = 1.0 - rng.random::<f64>();
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

/// Number of examples of each class (0..=9) held by each client.
pub fn label_histogram(labels: &[u8], parts: &[Vec<usize>]) -> Vec<[usize; 10]> {
    parts
        .iter()
        .map(|p| {
            let mut h = [0usize; 10];
            for &i in p {
                if let Some(c) = h.get_mut(labels[i] as usize) {
                    *c += 1;
                }
            }
            h
        })
        .collect()
}
