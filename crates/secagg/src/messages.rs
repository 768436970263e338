//! The typed messages of a round (serde; postcard on the wire).

use ppml_sharing::Fp;
use serde::{Deserialize, Serialize};

/// The four steps of a round, in order. A [`crate::DropoutPlan`] drops a client *at* a
/// step: it completes the earlier steps and never sends its message of that step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Step {
    /// Round 0: clients send two X25519 public keys.
    AdvertiseKeys = 0,
    /// Round 1: clients send Shamir shares of `b_u` and `s_u^SK`, encrypted per recipient.
    ShareKeys = 1,
    /// Round 2: clients send `y_u = x_u + PRG(b_u) + sum_v +-PRG(s_uv)` bit-packed.
    MaskedInputCollection = 2,
    /// Round 3: clients reveal b-shares of survivors and key shares of dropped clients.
    Unmasking = 3,
}

impl Step {
    /// All steps in order.
    pub const ALL: [Step; 4] = [
        Step::AdvertiseKeys,
        Step::ShareKeys,
        Step::MaskedInputCollection,
        Step::Unmasking,
    ];

    /// The step with number `i` (0..4).
    pub fn from_index(i: usize) -> Option<Step> {
        Step::ALL.get(i).copied()
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Step::AdvertiseKeys => "AdvertiseKeys",
            Step::ShareKeys => "ShareKeys",
            Step::MaskedInputCollection => "MaskedInputCollection",
            Step::Unmasking => "Unmasking",
        };
        f.write_str(s)
    }
}

/// Client -> server, round 0.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdvertiseKeys {
    pub id: u32,
    /// Public key for share encryption (`c_u^PK`).
    pub c_pk: [u8; 32],
    /// Public key for pairwise masks (`s_u^PK`).
    pub s_pk: [u8; 32],
}

/// One neighbour's public keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighbourKeys {
    pub id: u32,
    pub c_pk: [u8; 32],
    pub s_pk: [u8; 32],
}

/// Server -> client, end of round 0: the keys of the client's neighbours that advertised.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyBroadcast {
    pub neighbours: Vec<NeighbourKeys>,
}

/// An encrypted pair of shares; `peer` is the recipient (client -> server) or the sender
/// (server -> client).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptedShare {
    pub peer: u32,
    #[serde(with = "serde_bytes")]
    pub ct: Vec<u8>,
}

/// Client -> server, round 1.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareKeys {
    pub id: u32,
    pub shares: Vec<EncryptedShare>,
}

/// Server -> client, end of round 1: the shares addressed to this client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardedShares {
    pub shares: Vec<EncryptedShare>,
}

/// Client -> server, round 2: the masked input, `len` values packed at the ring's `k` bits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaskedInput {
    pub id: u32,
    pub len: u32,
    #[serde(with = "serde_bytes")]
    pub packed: Vec<u8>,
}

/// Server -> client, end of round 2: which of the client's share-holding peers survived
/// (reveal their `b` shares) and which dropped (reveal their key shares). Disjoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnmaskRequest {
    pub survivors: Vec<u32>,
    pub dropped: Vec<u32>,
}

/// Client -> server, round 3.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnmaskResponse {
    pub id: u32,
    /// `(u, share of b_u)` for each surviving `u` of the request.
    pub b_shares: Vec<(u32, Fp)>,
    /// `(u, share of s_u^SK)` for each dropped `u` of the request.
    pub s_shares: Vec<(u32, Fp)>,
}
