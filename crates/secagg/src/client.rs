//! The client role as an IO-free state machine: one method per step, each consuming the
//! server's previous message and producing the client's next one.

use crate::crypto::{
    add_mask, decrypt_share, encrypt_share, pair_seed, public_of, secret_from_fp, self_seed,
    shamir_share_at,
};
use crate::messages::*;
use crate::pack::pack;
use crate::{RoundParams, SecAggError};
use ppml_random::SecretRng as Prg;
use ppml_sharing::Fp;
use std::collections::BTreeMap;
use x25519_dalek::StaticSecret;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Start,
    KeysSent,
    SharesSent,
    MaskedSent,
    Done,
}

/// One client's state through a round.
pub struct ClientState {
    id: u32,
    params: RoundParams,
    rng: Prg,
    /// The input as ring elements of `Z_2^k` (quantised values, or any
    /// element for [`ClientState::from_ring_elements`]).
    input: Vec<u64>,
    phase: Phase,
    c_sk: StaticSecret,
    s_sk: StaticSecret,
    s_fp: Fp,
    b_fp: Fp,
    /// Neighbours that advertised keys: id -> (c_pk, s_pk).
    n1: BTreeMap<u32, ([u8; 32], [u8; 32])>,
    /// Shares this client holds: owner -> (share of b_owner, share of s_owner). Includes
    /// its own shares and those of its neighbours in U2.
    held: BTreeMap<u32, (Fp, Fp)>,
}

impl std::fmt::Debug for ClientState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientState")
            .field("id", &self.id)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

impl ClientState {
    /// A client with id `id` (0-based, below `params.n`) and its float input (clipped and
    /// quantised here). `rng` must be secret and unpredictable (e.g.
    /// `ppml_random::os_rng()`); `ppml_random::insecure_deterministic_rng` is for reproducible
    /// tests only.
    pub fn new(
        id: u32,
        input: &[f32],
        params: &RoundParams,
        rng: Prg,
    ) -> Result<Self, SecAggError> {
        let q = params.quantizer()?.encode(input)?;
        Self::from_quantised(id, q, params, rng)
    }

    /// As [`ClientState::new`] with an already quantised input (values below `2^bits`).
    pub fn from_quantised(
        id: u32,
        input: Vec<u64>,
        params: &RoundParams,
        rng: Prg,
    ) -> Result<Self, SecAggError> {
        check_input(id, &input, params, params.bits, "quantised value")?;
        Self::build(id, input, params, rng)
    }

    /// A client whose input is already a vector of ring elements of `Z_2^k`
    /// (`k = params.ring_bits`), e.g. signed integers in two's complement
    /// with integer-valued DP noise added (Kairouz, Liu, Steinke 2021). The
    /// server's sum is then the sum mod `2^k`; the caller keeps it from
    /// wrapping (see `ppml_fedavg::ddp`).
    pub fn from_ring_elements(
        id: u32,
        input: Vec<u64>,
        params: &RoundParams,
        rng: Prg,
    ) -> Result<Self, SecAggError> {
        check_input(id, &input, params, params.ring_bits, "ring element")?;
        Self::build(id, input, params, rng)
    }

    fn build(
        id: u32,
        input: Vec<u64>,
        params: &RoundParams,
        mut rng: Prg,
    ) -> Result<Self, SecAggError> {
        let c_sk = secret_from_fp(&Fp::random(&mut rng));
        let s_fp = Fp::random(&mut rng);
        let s_sk = secret_from_fp(&s_fp);
        let b_fp = Fp::random(&mut rng);
        Ok(Self {
            id,
            params: params.clone(),
            rng,
            input,
            phase: Phase::Start,
            c_sk,
            s_sk,
            s_fp,
            b_fp,
            n1: BTreeMap::new(),
            held: BTreeMap::new(),
        })
    }

    /// This client's id.
    pub fn id(&self) -> u32 {
        self.id
    }

    fn expect(&self, phase: Phase, step: Step) -> Result<(), SecAggError> {
        if self.phase != phase {
            return Err(SecAggError::WrongPhase {
                step,
                detail: format!("client {} is in phase {:?}", self.id, self.phase),
            });
        }
        Ok(())
    }

    /// Round 0: the two public keys.
    pub fn advertise_keys(&mut self) -> Result<AdvertiseKeys, SecAggError> {
        self.expect(Phase::Start, Step::AdvertiseKeys)?;
        self.phase = Phase::KeysSent;
        Ok(AdvertiseKeys {
            id: self.id,
            c_pk: public_of(&self.c_sk),
            s_pk: public_of(&self.s_sk),
        })
    }

    /// Round 1: given the neighbours' keys, Shamir-share `b_u` and `s_u^SK` among the
    /// neighbours and itself and encrypt each neighbour's pair of shares.
    pub fn share_keys(&mut self, msg: KeyBroadcast) -> Result<ShareKeys, SecAggError> {
        self.expect(Phase::KeysSent, Step::ShareKeys)?;
        let t = self.params.threshold;
        let mut n1 = BTreeMap::new();
        for nb in msg.neighbours {
            if nb.id == self.id || nb.id as usize >= self.params.n {
                return Err(SecAggError::UnknownClient(nb.id));
            }
            if n1.insert(nb.id, (nb.c_pk, nb.s_pk)).is_some() {
                return Err(SecAggError::Duplicate(nb.id));
            }
        }
        if let Some(max) = self.params.degree
            && n1.len() > max
        {
            return Err(SecAggError::Malformed(format!(
                "{} neighbours announced, the graph's degree is {max}",
                n1.len()
            )));
        }
        let mut holders: Vec<u32> = n1.keys().copied().collect();
        holders.push(self.id);
        holders.sort_unstable();
        if holders.len() < t {
            return Err(SecAggError::BelowThreshold {
                step: Step::ShareKeys,
                alive: holders.len(),
                threshold: t,
            });
        }
        let b_sh = shamir_share_at(self.b_fp, t, &holders, &mut self.rng);
        let s_sh = shamir_share_at(self.s_fp, t, &holders, &mut self.rng);
        let mut shares = Vec::with_capacity(n1.len());
        for ((&h, b), s) in holders.iter().zip(&b_sh).zip(&s_sh) {
            if h == self.id {
                self.held.insert(h, (*b, *s));
                continue;
            }
            let (c_pk, _) = &n1[&h];
            let ct = encrypt_share(&self.c_sk, c_pk, self.id, h, b, s, &self.params.session)?;
            shares.push(EncryptedShare { peer: h, ct });
        }
        self.n1 = n1;
        self.phase = Phase::SharesSent;
        Ok(ShareKeys {
            id: self.id,
            shares,
        })
    }

    /// Round 2: decrypt the shares received (the senders form this client's part of
    /// U2), then mask the input with `PRG(b_u)` and one signed pairwise mask per sender.
    pub fn masked_input(&mut self, msg: ForwardedShares) -> Result<MaskedInput, SecAggError> {
        self.expect(Phase::SharesSent, Step::MaskedInputCollection)?;
        let session = self.params.session;
        let mut peers = Vec::with_capacity(msg.shares.len());
        for es in &msg.shares {
            let from = es.peer;
            let (c_pk, s_pk) = self.n1.get(&from).ok_or(SecAggError::UnknownClient(from))?;
            if self.held.contains_key(&from) {
                return Err(SecAggError::Duplicate(from));
            }
            let pair = decrypt_share(&self.c_sk, c_pk, from, self.id, &es.ct, &session)?;
            self.held.insert(from, pair);
            peers.push((from, *s_pk));
        }
        let mut y: Vec<u64> = std::mem::take(&mut self.input);
        let k = self.params.ring_bits;
        add_mask(&mut y, &self_seed(&self.b_fp, &session), k, false);
        for (v, s_pk) in &peers {
            let seed = pair_seed(&self.s_sk, s_pk, *v, &session)?;
            // y_u gets +PRG(s_uv) for u < v and -PRG(s_uv) for u > v: they cancel in the sum.
            add_mask(&mut y, &seed, k, self.id > *v);
        }
        self.phase = Phase::MaskedSent;
        Ok(MaskedInput {
            id: self.id,
            len: y.len() as u32,
            packed: pack(&y, k),
        })
    }

    /// Round 3: reveal the b-shares of the survivors and the key shares of the dropped.
    /// Refuses a request naming a client in both lists (that would unmask its input), or
    /// a client whose shares it does not hold.
    pub fn unmask(&mut self, msg: UnmaskRequest) -> Result<UnmaskResponse, SecAggError> {
        self.expect(Phase::MaskedSent, Step::Unmasking)?;
        let mut seen = std::collections::BTreeSet::new();
        let mut b_shares = Vec::with_capacity(msg.survivors.len());
        let mut s_shares = Vec::with_capacity(msg.dropped.len());
        for (list, is_b) in [(&msg.survivors, true), (&msg.dropped, false)] {
            for &u in list {
                if !seen.insert(u) {
                    return Err(SecAggError::UnmaskConflict { client: u });
                }
                let (b, s) = self.held.get(&u).ok_or(SecAggError::UnknownClient(u))?;
                if is_b {
                    b_shares.push((u, *b));
                } else {
                    s_shares.push((u, *s));
                }
            }
        }
        if msg.dropped.contains(&self.id) {
            return Err(SecAggError::UnmaskConflict { client: self.id });
        }
        self.phase = Phase::Done;
        Ok(UnmaskResponse {
            id: self.id,
            b_shares,
            s_shares,
        })
    }
}

/// The checks every client input passes before it is masked: a known id, the
/// round's length, and every value below `2^bits` (`what` names the values).
fn check_input(
    id: u32,
    input: &[u64],
    params: &RoundParams,
    bits: u32,
    what: &str,
) -> Result<(), SecAggError> {
    if id as usize >= params.n {
        return Err(SecAggError::UnknownClient(id));
    }
    if input.len() != params.dim {
        return Err(SecAggError::DimMismatch {
            expected: params.dim,
            got: input.len(),
        });
    }
    // `checked_shr` is None for bits >= 64, where every u64 fits.
    if let Some(i) = input
        .iter()
        .position(|&v| v.checked_shr(bits).is_some_and(|hi| hi != 0))
    {
        return Err(SecAggError::InvalidConfig(format!(
            "{what} at {i} does not fit in {bits} bits"
        )));
    }
    Ok(())
}
