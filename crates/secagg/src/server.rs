//! The server role as an IO-free state machine.

use crate::crypto::{add_mask, interpolate, pair_seed, public_of, secret_from_fp, self_seed};
use crate::graph::Graph;
use crate::messages::*;
use crate::pack::{packed_len, unpack_add};
use crate::quant::ring_mask;
use crate::{RoundParams, SecAggError};
use ppml_sharing::{ShamirShare, shamir};
use rayon::prelude::*;
use std::collections::{BTreeSet, HashMap};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    CollectKeys,
    CollectShares,
    CollectMasked,
    CollectUnmask,
    Done,
}

/// What the server learns: the sum of the survivors' quantised inputs in `Z_2^k`.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerOutput {
    /// `sum_{u in U3} x_u mod 2^k`.
    pub sum: Vec<u64>,
    /// U3: the clients whose inputs are in the sum, sorted.
    pub survivors: Vec<u32>,
    /// Sizes of U1 (advertised keys), U2 (shared keys), U3 (sent masked input) and U4
    /// (answered the unmasking request).
    pub set_sizes: [usize; 4],
}

/// The server's state through a round.
#[derive(Debug)]
pub struct ServerState {
    params: RoundParams,
    graph: Graph,
    phase: Phase,
    keys: Vec<Option<([u8; 32], [u8; 32])>>,
    /// Neighbours of each client that advertised keys, as broadcast to it.
    n1: Vec<Vec<u32>>,
    inbox: Vec<Vec<EncryptedShare>>,
    u2: Vec<bool>,
    u3: Vec<bool>,
    u4: Vec<bool>,
    acc: Vec<u64>,
    requests: Vec<Option<UnmaskRequest>>,
    b_shares: Vec<Vec<ShamirShare>>,
    s_shares: Vec<Vec<ShamirShare>>,
}

fn count(v: &[bool]) -> usize {
    v.iter().filter(|&&b| b).count()
}

impl ServerState {
    /// A server for `params`; `graph_seed` draws the SecAgg+ graph (public randomness).
    pub fn new(params: &RoundParams, graph_seed: u64) -> Self {
        let n = params.n;
        Self {
            graph: Graph::new(n, params.degree, graph_seed),
            params: params.clone(),
            phase: Phase::CollectKeys,
            keys: vec![None; n],
            n1: vec![Vec::new(); n],
            inbox: vec![Vec::new(); n],
            u2: vec![false; n],
            u3: vec![false; n],
            u4: vec![false; n],
            acc: vec![0; params.dim],
            requests: vec![None; n],
            b_shares: vec![Vec::new(); n],
            s_shares: vec![Vec::new(); n],
        }
    }

    /// The masking graph of this round.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The round's parameters.
    pub fn params(&self) -> &RoundParams {
        &self.params
    }

    fn expect(&self, phase: Phase, step: Step) -> Result<(), SecAggError> {
        if self.phase != phase {
            return Err(SecAggError::WrongPhase {
                step,
                detail: format!("server is in phase {:?}", self.phase),
            });
        }
        Ok(())
    }

    fn check_threshold(&self, step: Step, alive: usize) -> Result<(), SecAggError> {
        if alive < self.params.threshold {
            return Err(SecAggError::BelowThreshold {
                step,
                alive,
                threshold: self.params.threshold,
            });
        }
        Ok(())
    }

    fn check_sender(&self, from: u32, id: u32) -> Result<usize, SecAggError> {
        if id != from {
            return Err(SecAggError::WrongId {
                expected: from,
                got: id,
            });
        }
        if from as usize >= self.params.n {
            return Err(SecAggError::UnknownClient(from));
        }
        Ok(from as usize)
    }

    /// Round 0: a client's keys. The message's id is the client's identity.
    pub fn receive_keys(&mut self, msg: AdvertiseKeys) -> Result<(), SecAggError> {
        self.expect(Phase::CollectKeys, Step::AdvertiseKeys)?;
        let u = self.check_sender(msg.id, msg.id)?;
        if self.keys[u].is_some() {
            return Err(SecAggError::Duplicate(msg.id));
        }
        self.keys[u] = Some((msg.c_pk, msg.s_pk));
        Ok(())
    }

    /// End of round 0: aborts below threshold, else one [`KeyBroadcast`] per client of U1.
    pub fn broadcast_keys(&mut self) -> Result<Vec<(u32, KeyBroadcast)>, SecAggError> {
        self.expect(Phase::CollectKeys, Step::AdvertiseKeys)?;
        let alive = self.keys.iter().filter(|k| k.is_some()).count();
        self.check_threshold(Step::AdvertiseKeys, alive)?;
        let mut out = Vec::with_capacity(alive);
        for u in 0..self.params.n as u32 {
            if self.keys[u as usize].is_none() {
                continue;
            }
            let nb: Vec<u32> = self
                .graph
                .neighbours(u)
                .into_iter()
                .filter(|&v| self.keys[v as usize].is_some())
                .collect();
            let neighbours = nb
                .iter()
                .filter_map(|&v| {
                    self.keys[v as usize].map(|(c_pk, s_pk)| NeighbourKeys { id: v, c_pk, s_pk })
                })
                .collect();
            self.n1[u as usize] = nb;
            out.push((u, KeyBroadcast { neighbours }));
        }
        self.phase = Phase::CollectShares;
        Ok(out)
    }

    /// Round 1: client `from`'s encrypted shares (one per neighbour it was told about).
    pub fn receive_shares(&mut self, from: u32, msg: ShareKeys) -> Result<(), SecAggError> {
        self.expect(Phase::CollectShares, Step::ShareKeys)?;
        let u = self.check_sender(from, msg.id)?;
        if self.keys[u].is_none() {
            return Err(SecAggError::UnknownClient(from));
        }
        if self.u2[u] {
            return Err(SecAggError::Duplicate(from));
        }
        let expected: BTreeSet<u32> = self.n1[u].iter().copied().collect();
        let mut seen = BTreeSet::new();
        for es in &msg.shares {
            if !expected.contains(&es.peer) {
                return Err(SecAggError::UnknownClient(es.peer));
            }
            if !seen.insert(es.peer) {
                return Err(SecAggError::Duplicate(es.peer));
            }
            if es.ct.len() != crate::crypto::SHARE_CIPHERTEXT_BYTES {
                return Err(SecAggError::Malformed(format!(
                    "encrypted share from {from} to {} has {} bytes",
                    es.peer,
                    es.ct.len()
                )));
            }
        }
        if seen.len() != expected.len() {
            return Err(SecAggError::Malformed(format!(
                "client {from} sent {} shares for {} neighbours",
                seen.len(),
                expected.len()
            )));
        }
        for es in msg.shares {
            self.inbox[es.peer as usize].push(EncryptedShare {
                peer: from,
                ct: es.ct,
            });
        }
        self.u2[u] = true;
        Ok(())
    }

    /// End of round 1: aborts below threshold, else forwards each client of U2 the shares
    /// addressed to it by other clients of U2.
    pub fn forward_shares(&mut self) -> Result<Vec<(u32, ForwardedShares)>, SecAggError> {
        self.expect(Phase::CollectShares, Step::ShareKeys)?;
        self.check_threshold(Step::ShareKeys, count(&self.u2))?;
        let mut out = Vec::new();
        for v in 0..self.params.n {
            let inbox = std::mem::take(&mut self.inbox[v]);
            if self.u2[v] {
                let shares = inbox
                    .into_iter()
                    .filter(|es| self.u2[es.peer as usize])
                    .collect();
                out.push((v as u32, ForwardedShares { shares }));
            }
        }
        self.phase = Phase::CollectMasked;
        Ok(out)
    }

    /// Round 2: client `from`'s masked input, added into the running sum at once (the
    /// server never stores individual masked vectors).
    pub fn receive_masked(&mut self, from: u32, msg: &MaskedInput) -> Result<(), SecAggError> {
        self.expect(Phase::CollectMasked, Step::MaskedInputCollection)?;
        let u = self.check_sender(from, msg.id)?;
        if !self.u2[u] {
            return Err(SecAggError::UnknownClient(from));
        }
        if self.u3[u] {
            return Err(SecAggError::Duplicate(from));
        }
        if msg.len as usize != self.params.dim {
            return Err(SecAggError::DimMismatch {
                expected: self.params.dim,
                got: msg.len as usize,
            });
        }
        if msg.packed.len() != packed_len(self.params.dim, self.params.ring_bits) {
            return Err(SecAggError::Malformed(format!(
                "masked input of client {from}: {} bytes, expected {}",
                msg.packed.len(),
                packed_len(self.params.dim, self.params.ring_bits)
            )));
        }
        unpack_add(&msg.packed, self.params.ring_bits, &mut self.acc)?;
        self.u3[u] = true;
        Ok(())
    }

    /// End of round 2: aborts below threshold, else asks each client of U3 for the shares
    /// it holds: b-shares of surviving peers, key shares of peers of U2 that dropped.
    pub fn unmask_requests(&mut self) -> Result<Vec<(u32, UnmaskRequest)>, SecAggError> {
        self.expect(Phase::CollectMasked, Step::MaskedInputCollection)?;
        self.check_threshold(Step::MaskedInputCollection, count(&self.u3))?;
        let mut out = Vec::new();
        for v in 0..self.params.n {
            if !self.u3[v] {
                continue;
            }
            let mut survivors = vec![v as u32];
            let mut dropped = Vec::new();
            for &u in &self.n1[v] {
                if self.u3[u as usize] {
                    survivors.push(u);
                } else if self.u2[u as usize] {
                    dropped.push(u);
                }
            }
            survivors.sort_unstable();
            let req = UnmaskRequest { survivors, dropped };
            self.requests[v] = Some(req.clone());
            out.push((v as u32, req));
        }
        self.phase = Phase::CollectUnmask;
        Ok(out)
    }

    /// Round 3: client `from`'s shares; they must answer its request exactly.
    pub fn receive_unmask(&mut self, from: u32, msg: UnmaskResponse) -> Result<(), SecAggError> {
        self.expect(Phase::CollectUnmask, Step::Unmasking)?;
        let v = self.check_sender(from, msg.id)?;
        let req = self.requests[v]
            .as_ref()
            .ok_or(SecAggError::UnknownClient(from))?;
        if self.u4[v] {
            return Err(SecAggError::Duplicate(from));
        }
        let ids = |l: &[(u32, ppml_sharing::Fp)]| l.iter().map(|p| p.0).collect::<Vec<_>>();
        if ids(&msg.b_shares) != req.survivors || ids(&msg.s_shares) != req.dropped {
            return Err(SecAggError::Malformed(format!(
                "unmasking response of client {from} does not answer its request"
            )));
        }
        let index = from + 1;
        for (u, value) in msg.b_shares {
            self.b_shares[u as usize].push(ShamirShare { index, value });
        }
        for (u, value) in msg.s_shares {
            self.s_shares[u as usize].push(ShamirShare { index, value });
        }
        self.u4[v] = true;
        Ok(())
    }

    /// End of round 3: reconstructs every `b_u` of U3 and `s_u^SK` of U2 \ U3, removes
    /// their masks and returns the sum. Aborts when fewer than `t` clients answered or a
    /// secret has fewer than `t` shares.
    pub fn finish(&mut self) -> Result<ServerOutput, SecAggError> {
        self.expect(Phase::CollectUnmask, Step::Unmasking)?;
        self.check_threshold(Step::Unmasking, count(&self.u4))?;
        let t = self.params.threshold;
        let session = self.params.session;
        let k = self.params.ring_bits;
        let mut lagrange: HashMap<Vec<u32>, Vec<ppml_sharing::Fp>> = HashMap::new();
        let mut reconstruct =
            |shares: &mut Vec<ShamirShare>, u: u32, what: &'static str| -> Result<_, SecAggError> {
                if shares.len() < t {
                    return Err(SecAggError::NotEnoughShares {
                        client: u,
                        secret: what,
                        got: shares.len(),
                        needed: t,
                    });
                }
                shares.sort_unstable_by_key(|s| s.index);
                let used = &shares[..t];
                let idx: Vec<u32> = used.iter().map(|s| s.index).collect();
                let l = match lagrange.get(&idx) {
                    Some(l) => l,
                    None => {
                        let l = shamir::lagrange_at_zero(&idx)?;
                        lagrange.entry(idx).or_insert(l)
                    }
                };
                Ok(interpolate(used, l))
            };
        // (seed, negate) of every mask to remove.
        let mut masks: Vec<([u8; 32], bool)> = Vec::new();
        let mut dropped_keys = Vec::new();
        for u in 0..self.params.n {
            if self.u3[u] {
                let mut sh = std::mem::take(&mut self.b_shares[u]);
                let b = reconstruct(&mut sh, u as u32, "self-mask seed b")?;
                masks.push((self_seed(&b, &session), true));
            } else if self.u2[u] {
                let mut sh = std::mem::take(&mut self.s_shares[u]);
                let s = reconstruct(&mut sh, u as u32, "mask key s_sk")?;
                let sk = secret_from_fp(&s);
                let (_, s_pk) = self.keys[u].ok_or(SecAggError::UnknownClient(u as u32))?;
                if public_of(&sk) != s_pk {
                    return Err(SecAggError::ReconstructionMismatch { client: u as u32 });
                }
                dropped_keys.push((u as u32, sk));
            }
        }
        // Pairwise masks between each dropped client and its surviving neighbours.
        let (n1, u3, keys) = (&self.n1, &self.u3, &self.keys);
        let pair: Vec<Result<([u8; 32], bool), SecAggError>> = dropped_keys
            .par_iter()
            .flat_map_iter(|(u, sk)| {
                n1[*u as usize]
                    .iter()
                    .filter(|&&v| u3[v as usize])
                    .map(move |&v| {
                        let (_, pk_v) = keys[v as usize].ok_or(SecAggError::UnknownClient(v))?;
                        // y_v carries +PRG(s_uv) if v < u, -PRG(s_uv) if v > u: undo it.
                        Ok((pair_seed(sk, &pk_v, v, &session)?, v < *u))
                    })
            })
            .collect();
        for m in pair {
            masks.push(m?);
        }
        let dim = self.params.dim;
        let total = masks
            .par_iter()
            .fold(
                || vec![0u64; dim],
                |mut a, (seed, neg)| {
                    add_mask(&mut a, seed, k, *neg);
                    a
                },
            )
            .reduce(
                || vec![0u64; dim],
                |mut a, b| {
                    for (x, y) in a.iter_mut().zip(&b) {
                        *x = x.wrapping_add(*y);
                    }
                    a
                },
            );
        let mask = ring_mask(k);
        let sum = self
            .acc
            .iter()
            .zip(&total)
            .map(|(a, m)| a.wrapping_add(*m) & mask)
            .collect();
        self.phase = Phase::Done;
        let survivors = (0..self.params.n as u32)
            .filter(|&u| self.u3[u as usize])
            .collect();
        Ok(ServerOutput {
            sum,
            survivors,
            set_sizes: [
                self.keys.iter().filter(|k| k.is_some()).count(),
                count(&self.u2),
                count(&self.u3),
                count(&self.u4),
            ],
        })
    }
}
