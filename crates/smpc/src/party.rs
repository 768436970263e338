//! One party's state: its channels, its configuration, and the PRG streams it
//! shares with other parties (from which correlated randomness is derived).

use crate::SmpcError;
use ppml_net::Network;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// The seed-expansion stream (AES-128-CTR keyed by a 32-byte seed) of
/// `ppml-random`: two parties holding the same seed draw identical values.
pub use ppml_random::SeedStream as Prg;

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

/// How products are brought back from `2f` to `f` fractional bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Truncation {
    /// Exact: products stay at `2f` fractional bits until the next
    /// comparison, which also returns `floor(x / 2^f)` (or one ulp above) of
    /// its input from the wrap-around bit of the masked opening (see
    /// [`crate::compare::select_trunc`]). Never fails for values within the
    /// plan's range; costs seven ring elements more per ReLU than `Local`.
    #[default]
    Exact,
    /// SecureML local truncation: no communication, but each truncated value
    /// `x` (a ring integer with `2f` fractional bits) fails, i.e. comes out
    /// wildly wrong, with probability at most `2^(lx + 1 - 64)` for
    /// `|x| < 2^lx` (`ppml_fixedpoint::share_trunc`). Private inference
    /// reports the resulting bound per image.
    Local,
}

impl std::str::FromStr for Truncation {
    type Err = SmpcError;
    fn from_str(s: &str) -> Result<Self, SmpcError> {
        match s {
            "exact" => Ok(Truncation::Exact),
            "local" => Ok(Truncation::Local),
            other => Err(SmpcError::Config(format!(
                "truncation {other:?}: expected exact or local"
            ))),
        }
    }
}

impl std::fmt::Display for Truncation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Truncation::Exact => "exact",
            Truncation::Local => "local",
        })
    }
}

/// How the comparisons of max pooling and the final argmax treat the low
/// bits of values that carry `2f` fractional bits (exact truncation mode).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Comparison {
    /// Faithful: the PrivateCompare skips the low `k = f - ceil(log2 L)`
    /// bits (`L` the tournament's levels), so a max or argmax may return a
    /// member at most one ulp (`2^-f`) below the true maximum, never
    /// anything else; about `f` fewer compared bits per comparison
    /// ([`crate::compare::select_skip`]). The range analysis keeps the
    /// margin this needs.
    #[default]
    Faithful,
    /// Exact: every bit of the proven width is compared.
    Exact,
}

impl std::str::FromStr for Comparison {
    type Err = SmpcError;
    fn from_str(s: &str) -> Result<Self, SmpcError> {
        match s {
            "faithful" => Ok(Comparison::Faithful),
            "exact" => Ok(Comparison::Exact),
            other => Err(SmpcError::Config(format!(
                "comparison {other:?}: expected faithful or exact"
            ))),
        }
    }
}

impl std::fmt::Display for Comparison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Comparison::Faithful => "faithful",
            Comparison::Exact => "exact",
        })
    }
}

/// The largest number of fractional bits the protocols accept: a product of
/// two fixed-point values carries `2f` fractional bits and must fit in the
/// signed 63 bits of Z_2^64 with room for its integer part. With `f = 24`
/// products up to `|x y| < 2^15` fit; with more bits, products of ordinary
/// activations and weights would wrap. (Each model is also checked exactly
/// against its own bounds when its plan is made.)
pub const MAX_FRAC_BITS: u32 = 24;

/// The widest comparison: all 63 value bits of Z_2^64, exact for every ring
/// element.
pub const FULL_CMP_BITS: u32 = 63;

/// Protocol parameters every party must agree on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtocolConfig {
    /// Fractional bits of the fixed-point encoding (default 16, at most
    /// [`MAX_FRAC_BITS`]).
    pub frac_bits: u32,
    /// Bits compared by DReLU: the comparison is exact for ring integers
    /// `-2^cmp_bits <= x < 2^cmp_bits`. The default, [`FULL_CMP_BITS`] = 63,
    /// covers every ring element. Private inference uses, per comparison, the
    /// narrowest width the model owner's bounds prove sufficient, and fails
    /// with [`SmpcError::Range`] when a model needs more than `cmp_bits`.
    pub cmp_bits: u32,
    /// Truncation after products (default exact).
    pub truncation: Truncation,
    /// Max pooling and argmax on `2f`-bit values: faithful (default) or
    /// exact ([`Comparison`]).
    #[serde(default)]
    pub comparison: Comparison,
}

impl Default for ProtocolConfig {
    fn default() -> Self {
        Self {
            frac_bits: 16,
            cmp_bits: FULL_CMP_BITS,
            truncation: Truncation::Exact,
            comparison: Comparison::Faithful,
        }
    }
}

impl ProtocolConfig {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), SmpcError> {
        if self.frac_bits == 0 || self.frac_bits > MAX_FRAC_BITS {
            return Err(SmpcError::Config(format!(
                "frac_bits {} must be in 1..={MAX_FRAC_BITS}: a product carries 2 x frac_bits \
                 fractional bits and must fit in the signed 64-bit ring with at least {} integer bits",
                self.frac_bits,
                63 - 2 * MAX_FRAC_BITS
            )));
        }
        if self.cmp_bits <= self.frac_bits || self.cmp_bits > FULL_CMP_BITS {
            return Err(SmpcError::Config(format!(
                "cmp_bits {} must be in {}..={FULL_CMP_BITS}",
                self.cmp_bits,
                self.frac_bits + 1
            )));
        }
        Ok(())
    }

    /// Largest magnitude (as a real with `frac_bits` fractional bits) that
    /// DReLU and max compare correctly at width `cmp_bits`.
    pub fn compare_range(&self) -> f64 {
        2f64.powi(self.cmp_bits as i32 - self.frac_bits as i32)
    }
}

/// TEST-ONLY. Deliberately leaky protocol variants, one per mutation of the
/// privacy tests (`crates/smpc/tests/views.rs`): each must make a privacy
/// check fail. Production code never sets one ([`Party::setup`] uses
/// `None`); only [`Party::setup_test_only`] does.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TestOnlyLeak {
    /// The real protocol.
    #[default]
    None,
    /// The model owner uses `B1 = 0`, so P0 knows the whole weight mask.
    WeightMaskKnownToP0,
    /// The data owner's input masks are the same in every batch.
    InputMaskReused,
    /// The data owner also sends its `D12` seed to P0.
    SeedToWrongParty,
    /// The model owner sends P1 the bias itself as P1's share (P0's share 0).
    ShareUnmasked,
    /// The computing parties send the data owner shares of the logits, not
    /// of the predicted class.
    LogitsToDataOwner,
}

/// TEST-ONLY hooks of a party (see [`TestOnlyLeak`]).
#[doc(hidden)]
#[derive(Clone, Debug, Default)]
pub struct TestOnlyHooks {
    /// A leaky variant to run (all parties of a run must agree).
    pub leak: TestOnlyLeak,
    /// Seeds for the streams this party originates (indexed like
    /// [`Stream`]'s variants), instead of drawing them from the generator:
    /// lets a privacy test fix one role's randomness and vary the rest.
    pub seeds: Option<[[u8; 32]; 7]>,
    /// `InputMaskReused`: the first masks drawn from `D02` and `D12`.
    saved_masks: [Vec<u64>; 2],
}

impl TestOnlyHooks {
    /// TEST-ONLY: hooks running `leak`, with fixed stream seeds if given.
    pub fn new(leak: TestOnlyLeak, seeds: Option<[[u8; 32]; 7]>) -> Self {
        Self {
            leak,
            seeds,
            saved_masks: Default::default(),
        }
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
    /// TEST-ONLY: leaky variants for the mutation tests; always the default
    /// outside [`Party::setup_test_only`].
    #[doc(hidden)]
    pub test_only: TestOnlyHooks,
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
    /// Seeds travel on the network's channels as they are: in-process
    /// channels, or the session layer's TLS links (plaintext TCP only when the
    /// caller chose `--insecure`). `rng` must be secret: `ppml_random::os_rng()`
    /// or, for tests only, `insecure_deterministic_rng`.
    pub fn setup<R: Rng + ?Sized>(
        net: Network,
        cfg: ProtocolConfig,
        rng: &mut R,
    ) -> Result<Party, SmpcError> {
        Self::setup_test_only(net, cfg, rng, TestOnlyHooks::default())
    }

    /// TEST-ONLY: [`Party::setup`] with hooks (leaky variants, fixed seeds)
    /// for the privacy tests. Never called by production code.
    #[doc(hidden)]
    pub fn setup_test_only<R: Rng + ?Sized>(
        mut net: Network,
        cfg: ProtocolConfig,
        rng: &mut R,
        hooks: TestOnlyHooks,
    ) -> Result<Party, SmpcError> {
        cfg.validate()?;
        let leak = hooks.leak;
        let me = net.me();
        let n = net.parties();
        let mut streams: [Option<Prg>; 7] = Default::default();
        // For crate::deploy::insecure_dump_seeds only: the seeds that cross a
        // socket (not those between roles of one process).
        let mut seen = Vec::new();
        // Pass 1: generate and send every seed this party originates.
        for s in ALL_STREAMS {
            let holders = s.holders();
            if holders.iter().any(|&h| h >= n) || holders[0] != me {
                continue;
            }
            let mut seed = [0u8; 32];
            match &hooks.seeds {
                Some(fixed) => seed = fixed[s.index()],
                None => rng.fill_bytes(&mut seed),
            }
            for &h in &holders[1..] {
                net.send(h, &seed)?;
            }
            if leak == TestOnlyLeak::SeedToWrongParty && s == Stream::D12 {
                net.send(P0, &seed)?;
            }
            if holders[1..].iter().any(|&h| !net.in_process(h)) {
                seen.push(seed);
            }
            streams[s.index()] = Some(Prg::from_seed(seed));
        }
        // Pass 2: receive the others (in the fixed stream order, per sender).
        for s in ALL_STREAMS {
            let holders = s.holders();
            if holders.iter().any(|&h| h >= n) || holders[0] == me || !holders.contains(&me) {
                continue;
            }
            let seed: [u8; 32] = net.recv(holders[0])?;
            if !net.in_process(holders[0]) {
                seen.push(seed);
            }
            streams[s.index()] = Some(Prg::from_seed(seed));
        }
        if leak == TestOnlyLeak::SeedToWrongParty && me == P0 && n > DATA_OWNER {
            let _leaked: [u8; 32] = net.recv(DATA_OWNER)?;
        }
        crate::deploy::insecure_dump_seeds(&seen);
        Ok(Party {
            id: me,
            net,
            cfg,
            streams,
            test_only: hooks,
        })
    }

    /// The PRG of a stream this party holds.
    pub fn prg(&mut self, s: Stream) -> Result<&mut Prg, SmpcError> {
        let id = self.id;
        self.streams[s.index()]
            .as_mut()
            .ok_or(SmpcError::MissingStream {
                party: id,
                stream: s,
            })
    }

    /// `len` uniform ring elements from a stream.
    pub fn draw(&mut self, s: Stream, len: usize) -> Result<Vec<u64>, SmpcError> {
        let mut v = vec![0u64; len];
        // Fresh zeros: the keystream is written without clearing them again.
        self.prg(s)?.fill_zeroed_u64(&mut v);
        if self.test_only.leak == TestOnlyLeak::InputMaskReused
            && matches!(s, Stream::D02 | Stream::D12)
        {
            // TEST-ONLY mutation: every batch reuses the first batch's masks.
            let saved = &mut self.test_only.saved_masks[usize::from(s == Stream::D12)];
            if saved.is_empty() {
                *saved = v.clone();
            } else if saved.len() >= len {
                v.copy_from_slice(&saved[..len]);
            }
        }
        Ok(v)
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

    /// Sends ring elements to `peer` (`ppml_net::encode_u64s`: one frame, 8
    /// little-endian bytes each).
    pub fn send_u64s(&mut self, peer: usize, v: &[u64]) -> Result<(), SmpcError> {
        self.net.send_u64s(peer, v)?;
        Ok(())
    }

    /// Receives a frame sent by [`Party::send_u64s`]; a length that is not a
    /// multiple of 8 is an error.
    pub fn recv_u64s(&mut self, peer: usize) -> Result<Vec<u64>, SmpcError> {
        Ok(self.net.recv_u64s(peer)?)
    }

    /// Receives `z.len()` ring elements from `peer` (a frame sent by
    /// [`Party::send_u64s`]) and adds them into `z`, decoding as it adds (no
    /// decoded copy). A frame of another length is an error naming `what`.
    pub fn recv_add(&mut self, peer: usize, z: &mut [u64], what: &str) -> Result<(), SmpcError> {
        let bytes = self.net.recv_bytes(peer)?;
        if bytes.len().is_multiple_of(8) {
            // Whole words of the wrong count: the same error as a decoded
            // vector of the wrong length (partial words fail to decode below).
            crate::error::expect_len(what, bytes.len() / 8, z.len())?;
        }
        ppml_net::add_u64s_into(&bytes, z)?;
        Ok(())
    }

    /// [`Party::open`] of a vector this party no longer needs: the sum is
    /// built in place of `mine`.
    pub fn open_owned(&mut self, mut mine: Vec<u64>) -> Result<Vec<u64>, SmpcError> {
        let other = self.other()?;
        self.send_u64s(other, &mine)?;
        self.recv_add(other, &mut mine, "opened share")?;
        Ok(mine)
    }

    /// Opens a value masked by both computing parties: sends `mine` to the
    /// other computing party and returns `mine + theirs`.
    pub fn open(&mut self, mine: &[u64]) -> Result<Vec<u64>, SmpcError> {
        self.open_owned(mine.to_vec())
    }

    /// Receives a u64 vector of a known length.
    pub fn recv_len(&mut self, from: usize, len: usize, what: &str) -> Result<Vec<u64>, SmpcError> {
        let v = self.recv_u64s(from)?;
        crate::error::expect_len(what, v.len(), len)?;
        Ok(v)
    }
}

/// Fills `out` with uniform elements of Z_67 (exact: rejection sampling on
/// 16-bit words). Deterministic in the stream.
pub fn fill_z67(rng: &mut Prg, out: &mut [u8]) {
    fill_mod(rng, out, 67, 0);
}

/// Fills `out` with uniform non-zero elements of Z_67.
pub fn fill_z67_nonzero(rng: &mut Prg, out: &mut [u8]) {
    fill_mod(rng, out, 66, 1);
}

/// Fills `out` with uniform elements of Z_p (`2 <= p <= 255`). For the
/// PrivateCompare primes (31, 61, 67) several values come from each 32-bit
/// word of the stream ([`fill_packed_on`]); otherwise one per 16-bit word.
pub fn fill_zp(rng: &mut Prg, out: &mut [u8], p: u32) {
    fill_packed(rng, out, p as u16, 0);
}

/// Fills `out` with uniform non-zero elements of Z_p (`2 <= p <= 255`);
/// packed like [`fill_zp`] for 31, 61, 67.
pub fn fill_zp_nonzero(rng: &mut Prg, out: &mut [u8], p: u32) {
    fill_packed(rng, out, (p - 1) as u16, 1);
}

fn fill_packed(rng: &mut Prg, out: &mut [u8], modulus: u16, add: u8) {
    fill_packed_on(ppml_simd::backend(), rng, out, modulus, add);
}

ppml_simd::dispatch!(
    /// Uniform values `add + (0..modulus)`: for the moduli of the
    /// PrivateCompare masks (30, 31: five values per 32-bit word; 60, 61,
    /// 66, 67: four) by [`fill_digits`], for any other modulus by
    /// [`fill_mod_on`]'s one value per 16-bit word. Every backend draws the
    /// same values from the same stream.
    pub fn fill_packed_on(rng: &mut Prg, out: &mut [u8], modulus: u16, add: u8) => fill_packed_impl);

#[inline(always)]
fn fill_packed_impl(rng: &mut Prg, out: &mut [u8], modulus: u16, add: u8) {
    match modulus {
        30 => fill_digits::<30, 5>(rng, out, add),
        31 => fill_digits::<31, 5>(rng, out, add),
        60 => fill_digits::<60, 4>(rng, out, add),
        61 => fill_digits::<61, 4>(rng, out, add),
        66 => fill_digits::<66, 4>(rng, out, add),
        67 => fill_digits::<67, 4>(rng, out, add),
        _ => fill_mod_impl(rng, out, modulus, add),
    }
}

/// Words per block of [`fill_digits`].
const DIGIT_BLOCK: usize = 16;

/// `out[i] = add + (uniform in 0..M)`, exactly uniform and independent, `K`
/// values per 32-bit word of the stream (AES-CTR output is most of the cost
/// of these masks; one value per 16-bit word spent 2 bytes of it per value,
/// this 0.8 or 1). Each word `w` gives `v = (w * M^K) >> 32`, uniform in
/// `[0, M^K)` by Lemire's multiply-shift with rejection (reject when
/// `(w * M^K) mod 2^32 < 2^32 mod M^K`: 0.42% of words for `M` = 30, at
/// most 0.16% for the others), and the `K` base-`M` digits of `v` are independent and uniform.
/// Words are used in blocks of [`DIGIT_BLOCK`]: digit `d` of the block's word
/// `i` goes to `out[block * DIGIT_BLOCK * K + d * DIGIT_BLOCK + i]` (so each
/// digit is one contiguous vector store); the last block is computed whole
/// and cut. A block with a rejected word is redone word by word: its words
/// in order, then words drawn afterwards from the stream, each accepted one
/// filling the next slot.
#[inline(always)]
fn fill_digits<const M: u32, const K: usize>(rng: &mut Prg, out: &mut [u8], add: u8) {
    const B: usize = DIGIT_BLOCK;
    const { assert!(K <= 5 && K >= 1) };
    let range = (M as u64).pow(K as u32);
    debug_assert!(range < 1 << 32);
    let thr = ((1u64 << 32) % range) as u32;
    let blocks = out.len().div_ceil(B * K);
    let mut words = vec![0u32; blocks * B];
    rng.fill_u32(&mut words);
    // The base-M digits of v = floor(w M^K / 2^32) are the first K base-M
    // digits of the fraction w / 2^32, most significant first: no division,
    // one small multiply per digit (`frac` stays below 2^32).
    let digits = |w: u32, slot: usize, blk: &mut [u8]| {
        let mut frac = w as u64;
        for d in (0..K).rev() {
            let t = frac * M as u64;
            blk[d * B + slot] = (t >> 32) as u8 + add;
            frac = t & 0xFFFF_FFFF;
        }
    };
    let mut tail = [0u8; DIGIT_BLOCK * 5];
    for (b, ws) in words.chunks_exact(B).enumerate() {
        let start = b * B * K;
        let end = (start + B * K).min(out.len());
        // Whole blocks are written in place, the last partial one via `tail`.
        let blk: &mut [u8] = if end - start == B * K {
            &mut out[start..end]
        } else {
            &mut tail[..B * K]
        };
        let mut ok = true;
        for (i, &w) in ws.iter().enumerate() {
            ok &= (w.wrapping_mul(range as u32)) >= thr;
            digits(w, i, blk);
        }
        if !ok {
            let mut spare = ws.iter().copied();
            let mut slot = 0;
            while slot < B {
                let w = spare.next().unwrap_or_else(|| {
                    let mut x = [0u8; 4];
                    rng.fill_bytes(&mut x);
                    u32::from_le_bytes(x)
                });
                if w.wrapping_mul(range as u32) >= thr {
                    digits(w, slot, blk);
                    slot += 1;
                }
            }
        }
        if end - start < B * K {
            out[start..end].copy_from_slice(&tail[..end - start]);
        }
    }
}

/// Uniform values in `0..bound` (`1 <= bound <= 255`).
pub fn fill_below(rng: &mut Prg, out: &mut [u8], bound: u8) {
    fill_mod(rng, out, bound.max(1) as u16, 0);
}

fn fill_mod(rng: &mut Prg, out: &mut [u8], modulus: u16, add: u8) {
    fill_mod_on(ppml_simd::backend(), rng, out, modulus, add);
}

ppml_simd::dispatch!(
    /// Uniform values `add + (0..modulus)` from the stream (see
    /// `fill_mod_impl`), on an explicit backend; every backend draws the same
    /// values from the same stream.
    pub fn fill_mod_on(rng: &mut Prg, out: &mut [u8], modulus: u16, add: u8) => fill_mod_impl);

/// `out[i] = add + (uniform in 0..modulus)`, exactly uniform, by Lemire's
/// multiply-shift with rejection on 16-bit words: `t = w * modulus`, output
/// `t >> 16`, reject when `t mod 2^16 < 2^16 mod modulus`. Blocks of 64
/// words are reduced branch-free (vectorised); a block with a rejected word
/// (probability below 64 * modulus / 2^16) is redone word by word.
#[inline(always)]
fn fill_mod_impl(rng: &mut Prg, out: &mut [u8], modulus: u16, add: u8) {
    const BLOCK: usize = 64;
    let m = modulus.max(1) as u32;
    let thr = 65536u32 % m;
    let mut words = vec![0u16; out.len()];
    rng.fill_u16(&mut words);
    let mut spare: Vec<u16> = Vec::new();
    for (dst, block) in out.chunks_mut(BLOCK).zip(words.chunks(BLOCK)) {
        let mut ok = true;
        for (o, &w) in dst.iter_mut().zip(block) {
            let t = w as u32 * m;
            ok &= (t & 0xFFFF) >= thr;
            *o = (t >> 16) as u8 + add;
        }
        if !ok {
            // Slow path: accept the block's words in order, then words drawn
            // afterwards from the stream, until the block is full.
            spare.clear();
            spare.extend_from_slice(block);
            let (mut k, mut next) = (0, 0);
            while k < dst.len() {
                if next == spare.len() {
                    let mut b = [0u8; 2];
                    rng.fill_bytes(&mut b);
                    spare.push(u16::from_le_bytes(b));
                }
                let t = spare[next] as u32 * m;
                next += 1;
                if (t & 0xFFFF) >= thr {
                    dst[k] = (t >> 16) as u8 + add;
                    k += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samplers_are_uniform_and_in_range() {
        let mut prg = Prg::from_seed([7; 32]);
        for (modulus, add) in [(67u16, 0u8), (66, 1), (29, 0), (2, 0)] {
            let mut out = vec![0u8; 200_000];
            fill_mod(&mut prg, &mut out, modulus, add);
            let mut counts = vec![0usize; 256];
            out.iter().for_each(|&v| counts[v as usize] += 1);
            let expect = out.len() as f64 / modulus as f64;
            for (v, &count) in counts.iter().enumerate() {
                let inside = v >= add as usize && v < add as usize + modulus as usize;
                if inside {
                    let c = count as f64;
                    assert!(
                        (c - expect).abs() < 6.0 * expect.sqrt(),
                        "mod {modulus}: value {v} seen {c} times, expected {expect}"
                    );
                } else {
                    assert_eq!(count, 0, "mod {modulus}: value {v} out of range");
                }
            }
        }
    }

    #[test]
    fn packed_samplers_are_uniform_in_range_and_agree_across_backends() {
        for (modulus, add) in [(31u16, 0u8), (30, 1), (61, 0), (60, 1), (67, 0), (66, 1)] {
            // Lengths that end inside a block and inside a word.
            for len in [0usize, 1, 7, 81, 200_003] {
                let mut want = vec![0u8; len];
                fill_packed_on(
                    ppml_simd::Backend::Portable,
                    &mut Prg::from_seed([9; 32]),
                    &mut want,
                    modulus,
                    add,
                );
                for backend in ppml_simd::Backend::available() {
                    let mut got = vec![0u8; len];
                    let mut prg = Prg::from_seed([9; 32]);
                    fill_packed_on(backend, &mut prg, &mut got, modulus, add);
                    assert_eq!(got, want, "{backend}, modulus {modulus}, len {len}");
                }
                if len < 200_000 {
                    continue;
                }
                let mut counts = vec![0usize; 256];
                want.iter().for_each(|&v| counts[v as usize] += 1);
                let expect = len as f64 / modulus as f64;
                for (v, &count) in counts.iter().enumerate() {
                    if v >= add as usize && v < add as usize + modulus as usize {
                        let c = count as f64;
                        assert!(
                            (c - expect).abs() < 6.0 * expect.sqrt(),
                            "mod {modulus}: value {v} seen {c} times, expected {expect}"
                        );
                    } else {
                        assert_eq!(count, 0, "mod {modulus}: value {v} out of range");
                    }
                }
                // Neighbouring outputs (digits of one word, same digit of
                // neighbouring words) are independent: pairs are uniform.
                for gap in [1usize, DIGIT_BLOCK] {
                    let mut pairs = vec![0usize; 256 * 256];
                    for i in 0..len - gap {
                        pairs[want[i] as usize * 256 + want[i + gap] as usize] += 1;
                    }
                    let cells = (modulus as f64).powi(2);
                    let e = (len - gap) as f64 / cells;
                    let chi2: f64 = (0..256 * 256)
                        .filter(|&c| {
                            let (a, b) = (c / 256, c % 256);
                            (add as usize..add as usize + modulus as usize).contains(&a)
                                && (add as usize..add as usize + modulus as usize).contains(&b)
                        })
                        .map(|c| (pairs[c] as f64 - e).powi(2) / e)
                        .sum();
                    // Mean cells - 1, sd about sqrt(2 cells): 6 sd.
                    assert!(
                        chi2 < cells + 6.0 * (2.0 * cells).sqrt(),
                        "mod {modulus}, gap {gap}: chi2 {chi2} over {cells} cells"
                    );
                }
            }
        }
    }

    #[test]
    fn packed_sampler_rejects_exactly_the_biased_words() {
        // The stream of a seed, read as words: the sampler's outputs must be
        // the digits of the accepted words' values, in the documented order.
        // 67^5 rejects 5.7% of words (most blocks take the slow path); the
        // moduli in use reject at most 0.3%.
        const K: usize = 5;
        let (m, k) = (67u64, K);
        let range = m.pow(k as u32);
        let thr = ((1u64 << 32) % range) as u32;
        for seed in 0..40u8 {
            let mut raw = Prg::from_seed([seed; 32]);
            let n_words = 4096;
            let mut bytes = vec![0u8; n_words * 4];
            raw.fill_bytes(&mut bytes);
            let words: Vec<u32> = bytes
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            let len = 4 * DIGIT_BLOCK * k; // four blocks
            let mut out = vec![0u8; len];
            fill_digits::<67, K>(&mut Prg::from_seed([seed; 32]), &mut out, 0);
            // Model: blocks read 16 words each up front (64 words), a block
            // with a rejection takes its accepted words then words after
            // the 64 read ones.
            let mut extra = 4 * DIGIT_BLOCK;
            for b in 0..4 {
                let ws = &words[b * DIGIT_BLOCK..(b + 1) * DIGIT_BLOCK];
                let bad = ws.iter().any(|&w| ((w as u64 * range) as u32) < thr);
                let mut accepted: Vec<u32> = ws
                    .iter()
                    .copied()
                    .filter(|&w| ((w as u64 * range) as u32) >= thr)
                    .collect();
                if bad {
                    while accepted.len() < DIGIT_BLOCK {
                        let w = words[extra];
                        extra += 1;
                        if ((w as u64 * range) as u32) >= thr {
                            accepted.push(w);
                        }
                    }
                }
                for (i, &w) in accepted.iter().enumerate() {
                    let mut v = ((w as u64 * range) >> 32) as u32;
                    for d in 0..k {
                        assert_eq!(
                            out[b * DIGIT_BLOCK * k + d * DIGIT_BLOCK + i] as u32,
                            v % 67
                        );
                        v /= 67;
                    }
                }
            }
        }
    }

    #[test]
    fn recv_add_adds_the_frame_and_refuses_a_wrong_length() {
        let mut nets = Network::in_memory(2, &ppml_net::NetConfig::default());
        let b = nets.pop().expect("two networks");
        let mut a = nets.pop().expect("two networks");
        a.send_bytes(1, ppml_net::encode_u64s(&[1, u64::MAX, 7]))
            .unwrap();
        a.send_bytes(1, ppml_net::encode_u64s(&[1, 2])).unwrap();
        a.send_bytes(1, vec![0u8; 23]).unwrap();
        let mut p = Party {
            id: 1,
            net: b,
            cfg: ProtocolConfig::default(),
            streams: Default::default(),
            test_only: TestOnlyHooks::new(TestOnlyLeak::None, None),
        };
        let mut z = vec![10u64, 10, 10];
        p.recv_add(0, &mut z, "x").unwrap();
        assert_eq!(z, vec![11, 9, 17]);
        assert!(matches!(
            p.recv_add(0, &mut z, "x"),
            Err(SmpcError::Shape(_))
        ));
        assert!(p.recv_add(0, &mut z, "x").is_err());
        assert_eq!(z, vec![11, 9, 17]);
    }

    #[test]
    fn same_seed_same_stream() {
        let (mut a, mut b) = (Prg::from_seed([1; 32]), Prg::from_seed([1; 32]));
        let (mut x, mut y) = (vec![0u8; 1000], vec![0u8; 1000]);
        fill_z67(&mut a, &mut x);
        fill_z67(&mut b, &mut y);
        assert_eq!(x, y);
        let (mut u, mut v) = (vec![0u64; 9], vec![0u64; 9]);
        a.fill_u64(&mut u);
        b.fill_u64(&mut v);
        assert_eq!(u, v);
        assert_ne!(u, vec![0u64; 9]);
    }
}
