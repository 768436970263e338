//! One party's state: its channels, its configuration, and the PRG streams it
//! shares with other parties (from which correlated randomness is derived).

use crate::SmpcError;
use ppml_net::Network;
use ppml_sharing::prg::{self, Prg};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Computing party 0 (holds one additive share).
pub const P0: usize = 0;
/// Computing party 1 (holds the other additive share).
pub const P1: usize = 1;
/// The helper (SecureNN's third party, PySyft's crypto provider): deals
/// correlated randomness and evaluates the masked PrivateCompare.
pub const P2: usize = 2;
/// The model owner (only talks during setup).
pub const MODEL_OWNER: usize = 3;
/// The data owner (sends masked images, receives the prediction shares).
pub const DATA_OWNER: usize = 4;

/// Human name of a party index.
pub fn party_name(id: usize) -> &'static str {
    match id {
        P0 => "p0",
        P1 => "p1",
        P2 => "p2",
        MODEL_OWNER => "model-owner",
        DATA_OWNER => "data-owner",
        _ => "unknown",
    }
}

/// A PRG stream shared by a fixed set of parties. Each party that holds a
/// stream draws from it in exactly the same order as the others, so values
/// drawn from it are known to exactly that set and never travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Stream {
    /// P0 and P1 (common randomness unknown to P2).
    S01,
    /// P0 and P2.
    S02,
    /// P1 and P2.
    S12,
    /// Model owner, P0 and P2 (weight masks, bias shares).
    M02,
    /// Model owner, P1 and P2.
    M12,
    /// Data owner, P0 and P2 (input masks).
    D02,
    /// Data owner, P1 and P2.
    D12,
}

const ALL_STREAMS: [Stream; 7] = [
    Stream::S01,
    Stream::S02,
    Stream::S12,
    Stream::M02,
    Stream::M12,
    Stream::D02,
    Stream::D12,
];

impl Stream {
    fn index(self) -> usize {
        self as usize
    }

    /// The parties that hold this stream; the first one generates its seed.
    pub fn holders(self) -> &'static [usize] {
        match self {
            Stream::S01 => &[P0, P1],
            Stream::S02 => &[P2, P0],
            Stream::S12 => &[P2, P1],
            Stream::M02 => &[MODEL_OWNER, P0, P2],
            Stream::M12 => &[MODEL_OWNER, P1, P2],
            Stream::D02 => &[DATA_OWNER, P0, P2],
            Stream::D12 => &[DATA_OWNER, P1, P2],
        }
    }
}

/// Protocol parameters every party must agree on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtocolConfig {
    /// Fractional bits of the fixed-point encoding (default 16).
    pub frac_bits: u32,
    /// Bits compared by DReLU: inputs must satisfy `|x| < 2^cmp_bits` as
    /// ring integers, i.e. `|x| < 2^(cmp_bits - frac_bits)` as reals
    /// (default 28: `|x| < 4096`). Must be in `frac_bits+1 ..= 62`.
    pub cmp_bits: u32,
}

impl Default for ProtocolConfig {
    fn default() -> Self {
        Self {
            frac_bits: 16,
            cmp_bits: 28,
        }
    }
}

impl ProtocolConfig {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), SmpcError> {
        if self.frac_bits == 0 || self.frac_bits > 30 {
            return Err(SmpcError::Config(format!(
                "frac_bits {} must be in 1..=30",
                self.frac_bits
            )));
        }
        if self.cmp_bits <= self.frac_bits || self.cmp_bits > 62 {
            return Err(SmpcError::Config(format!(
                "cmp_bits {} must be in {}..=62",
                self.cmp_bits,
                self.frac_bits + 1
            )));
        }
        Ok(())
    }

    /// Largest magnitude (as a real) DReLU and max compare correctly.
    pub fn compare_range(&self) -> f64 {
        2f64.powi(self.cmp_bits as i32 - self.frac_bits as i32)
    }
}

/// One party of a protocol run: its index, its channels and its streams.
pub struct Party {
    /// This party's index (`P0`, `P1`, `P2`, `MODEL_OWNER` or `DATA_OWNER`).
    pub id: usize,
    /// Channels to every other party.
    pub net: Network,
    /// Protocol parameters.
    pub cfg: ProtocolConfig,
    streams: [Option<Prg>; 7],
}

impl std::fmt::Debug for Party {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held: Vec<Stream> = ALL_STREAMS
            .iter()
            .copied()
            .filter(|s| self.streams[s.index()].is_some())
            .collect();
        f.debug_struct("Party")
            .field("id", &self.id)
            .field("cfg", &self.cfg)
            .field("streams", &held)
            .finish_non_exhaustive()
    }
}

impl Party {
    /// Sets up party `net.me()`: agrees on a fresh seed for every stream it
    /// holds (the first holder draws the seed from `rng` and sends it to the
    /// others). Streams involving parties beyond `net.parties()` are skipped,
    /// so a 3-party network sets up only `S01`, `S02`, `S12`.
    ///
    /// Seeds travel in the clear: the security model is semi-honest parties on
    /// private links (in-process channels, or TCP on a trusted network).
    pub fn setup<R: Rng + ?Sized>(
        mut net: Network,
        cfg: ProtocolConfig,
        rng: &mut R,
    ) -> Result<Party, SmpcError> {
        cfg.validate()?;
        let me = net.me();
        let n = net.parties();
        let mut streams: [Option<Prg>; 7] = Default::default();
        // Pass 1: generate and send every seed this party originates.
        for s in ALL_STREAMS {
            let holders = s.holders();
            if holders.iter().any(|&h| h >= n) || holders[0] != me {
                continue;
            }
            let mut seed = [0u8; 32];
            rng.fill_bytes(&mut seed);
            for &h in &holders[1..] {
                net.send(h, &seed)?;
            }
            streams[s.index()] = Some(prg::from_key(seed));
        }
        // Pass 2: receive the others (in the fixed stream order, per sender).
        for s in ALL_STREAMS {
            let holders = s.holders();
            if holders.iter().any(|&h| h >= n) || holders[0] == me || !holders.contains(&me) {
                continue;
            }
            let seed: [u8; 32] = net.recv(holders[0])?;
            streams[s.index()] = Some(Prg::from_seed(seed));
        }
        Ok(Party {
            id: me,
            net,
            cfg,
            streams,
        })
    }

    /// The PRG of a stream this party holds.
    pub fn prg(&mut self, s: Stream) -> Result<&mut Prg, SmpcError> {
        let id = self.id;
        self.streams[s.index()]
            .as_mut()
            .ok_or(SmpcError::MissingStream { party: id, stream: s })
    }

    /// `len` uniform ring elements from a stream.
    pub fn draw(&mut self, s: Stream, len: usize) -> Result<Vec<u64>, SmpcError> {
        Ok(prg::random_u64s(self.prg(s)?, len))
    }

    /// The other computing party (P0 <-> P1).
    pub fn other(&self) -> Result<usize, SmpcError> {
        match self.id {
            P0 => Ok(P1),
            P1 => Ok(P0),
            _ => Err(SmpcError::Role(format!(
                "{} is not a computing party",
                party_name(self.id)
            ))),
        }
    }

    /// Opens a value masked by both computing parties: sends `mine` to the
    /// other computing party and returns `mine + theirs`.
    pub fn open(&mut self, mine: &[u64]) -> Result<Vec<u64>, SmpcError> {
        let other = self.other()?;
        self.net.send_u64s(other, mine)?;
        let theirs = self.net.recv_u64s(other)?;
        crate::error::expect_len("opened share", theirs.len(), mine.len())?;
        Ok(mine
            .iter()
            .zip(&theirs)
            .map(|(a, b)| a.wrapping_add(*b))
            .collect())
    }

    /// Receives a u64 vector of a known length.
    pub fn recv_len(&mut self, from: usize, len: usize, what: &str) -> Result<Vec<u64>, SmpcError> {
        let v = self.net.recv_u64s(from)?;
        crate::error::expect_len(what, v.len(), len)?;
        Ok(v)
    }
}

/// Fills `out` with uniform elements of Z_67 (rejection sampling on bytes,
/// exactly uniform). Deterministic in the generator's stream.
pub fn fill_z67<R: Rng + ?Sized>(rng: &mut R, out: &mut [u8]) {
    fill_rejection(rng, out, 201, 67, 0);
}

/// Fills `out` with uniform non-zero elements of Z_67.
pub fn fill_z67_nonzero<R: Rng + ?Sized>(rng: &mut R, out: &mut [u8]) {
    fill_rejection(rng, out, 198, 66, 1);
}

fn fill_rejection<R: Rng + ?Sized>(rng: &mut R, out: &mut [u8], below: u8, modulus: u8, add: u8) {
    let mut buf = [0u8; 4096];
    let mut filled = 0;
    while filled < out.len() {
        let want = ((out.len() - filled) * 4 / 3 + 16).min(buf.len());
        rng.fill_bytes(&mut buf[..want]);
        for &b in &buf[..want] {
            if b < below {
                out[filled] = b % modulus + add;
                filled += 1;
                if filled == out.len() {
                    break;
                }
            }
        }
    }
}

/// Uniform values in `0..bound` (bound <= 256), by rejection on bytes.
pub fn fill_below<R: Rng + ?Sized>(rng: &mut R, out: &mut [u8], bound: u8) {
    let below = (256 / bound as u32 * bound as u32).min(255) as u8;
    // 256/bound*bound may be 256 (bound a power of two): then accept all bytes.
    if 256 % bound as u32 == 0 {
        let mut buf = vec![0u8; out.len()];
        rng.fill_bytes(&mut buf);
        for (o, b) in out.iter_mut().zip(buf) {
            *o = b % bound;
        }
        return;
    }
    fill_rejection(rng, out, below, bound, 0);
}
