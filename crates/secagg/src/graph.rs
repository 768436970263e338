//! Who masks with whom: the complete graph (Bonawitz et al.) or the SecAgg+ random
//! Harary graph (Bell et al.): clients on a random cycle, each linked to the `degree / 2`
//! nearest on either side, so every client has exactly `degree` neighbours.

/// The masking / share-holding graph of a round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Graph {
    /// Everyone is everyone's neighbour.
    Full { n: usize },
    /// Random Harary graph `H(degree, n)` over a secret-free, server-chosen permutation.
    Harary {
        degree: usize,
        /// `node_at[p]` is the client at cycle position `p`.
        node_at: Vec<u32>,
        /// `pos[u]` is client `u`'s cycle position.
        pos: Vec<usize>,
    },
}

/// The default SecAgg+ degree: the even number at least `4 ceil(log2 n)` (n = 1000: 40).
pub fn default_degree(n: usize) -> usize {
    let log = if n <= 1 {
        0
    } else {
        (usize::BITS - (n - 1).leading_zeros()) as usize
    };
    4 * log
}

impl Graph {
    /// The complete graph, or a random Harary graph of (even) `degree` drawn from the
    /// public `seed` (the graph is public: the server chooses and announces it)
    /// (the complete graph when `degree >= n - 1`).
    pub fn new(n: usize, degree: Option<usize>, seed: u64) -> Graph {
        match degree {
            Some(k) if k.div_ceil(2) * 2 < n.saturating_sub(1) => {
                let degree = k.div_ceil(2) * 2;
                let mut node_at: Vec<u32> = (0..n as u32).collect();
                ppml_random::shuffle(
                    &mut node_at,
                    &mut ppml_random::PublicSeed::new(seed).rng("secagg/graph"),
                );
                let mut pos = vec![0usize; n];
                for (p, &u) in node_at.iter().enumerate() {
                    pos[u as usize] = p;
                }
                Graph::Harary {
                    degree,
                    node_at,
                    pos,
                }
            }
            _ => Graph::Full { n },
        }
    }

    /// Number of clients.
    pub fn n(&self) -> usize {
        match self {
            Graph::Full { n } => *n,
            Graph::Harary { pos, .. } => pos.len(),
        }
    }

    /// Neighbours of `u` (not `u` itself), sorted.
    pub fn neighbours(&self, u: u32) -> Vec<u32> {
        match self {
            Graph::Full { n } => (0..*n as u32).filter(|&v| v != u).collect(),
            Graph::Harary {
                degree,
                node_at,
                pos,
            } => {
                let n = pos.len();
                let p = pos[u as usize];
                let mut out: Vec<u32> = (1..=degree / 2)
                    .flat_map(|j| [node_at[(p + j) % n], node_at[(p + n - j) % n]])
                    .collect();
                out.sort_unstable();
                out
            }
        }
    }

    /// Degree of every node.
    pub fn degree(&self) -> usize {
        match self {
            Graph::Full { n } => n.saturating_sub(1),
            Graph::Harary { degree, .. } => *degree,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harary_is_regular_and_symmetric() {
        let g = Graph::new(100, Some(10), 5);
        assert_eq!(g.degree(), 10);
        for u in 0..100u32 {
            let nb = g.neighbours(u);
            assert_eq!(nb.len(), 10);
            assert!(!nb.contains(&u));
            for v in nb {
                assert!(g.neighbours(v).contains(&u));
            }
        }
        assert_eq!(Graph::new(10, Some(9), 1), Graph::Full { n: 10 });
        assert_eq!(Graph::new(10, None, 1).neighbours(3).len(), 9);
        assert_eq!(default_degree(1000), 40);
    }
}
