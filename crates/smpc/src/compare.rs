//! Comparisons: DReLU, ReLU and selection, via a single PrivateCompare per
//! element over Z_p (SecureNN's PrivateCompare, used Falcon-style: one
//! comparison gives the MSB directly, no ShareConvert), comparing the
//! `m` low bits (`m = 63`, the default `cmp_bits`: every ring element; a
//! narrower `m` when the caller has proved `|x| < 2^m`, as private inference
//! does from the model owner's bounds).
//!
//! For a shared `x` with `-2^m <= x < 2^m` (as a signed ring integer):
//! 1. P0 and P1 open `c = x + 2^m + r` with `r = r0 + r1` uniform in Z_2^64
//!    (`r0` from `S02`, `r1` from `S12`; P2 knows `r`). `c` is uniform.
//! 2. With `x' = x + 2^m` in `[0, 2^(m+1))`, the bit `[x >= 0] = [x' >= 2^m]`
//!    equals `c_m xor r_m xor w` where `w = [c mod 2^m < r mod 2^m]`.
//!    `w` is computed by PrivateCompare: P2 deals Z_67 shares of the bits of
//!    `r mod 2^m`; P0 and P1 compute masked, rotated comparison vectors and
//!    send them to P2, who learns only `w xor beta` (`beta` a common random
//!    bit of P0 and P1).
//! 3. So `DReLU(x) = u xor v` with `u = c_m xor beta` public to P0/P1 and
//!    `v = (w xor beta) xor r_m` known to P2. P2 sends shares of `v`, of
//!    `r v` and of `t v` for each payload mask `t`, from which P0/P1 get
//!    shares of `DReLU(x)`, `ReLU(x) = x DReLU(x)` and `y DReLU(x)` locally.
//!
//! With [`select_trunc`], P2 also deals the shares that give P0/P1 the exact
//! truncation of `x` from the same opening (no extra round). With
//! [`select_skip`] (the *faithful* comparison of max pooling and argmax) the
//! PrivateCompare covers bits `k..m` only. The field is Z_p with
//! `p = pc_prime(q)` (31, 61 or 67) for `q` compared bits, values packed
//! 5, 6 or 7 bits each.
//!
//! Three rounds, whatever the number of elements. Draw order:
//! `S02`: r0, t0, rho0, then P0's reply shares (v0, rv0, [the six truncation
//! values], tv0) in one draw; `S12`: r1, t1;
//! `S01`: beta, s, u, rot. rho0 and the `S01` masks are drawn chunk by chunk
//! (chunks of 8000 elements, in order). r and t (each party's pair) are
//! taken as one draw of `n (1 + payloads)` words, which is the same part of
//! the stream as two; the Z_p values rho0, s and u come several per 32-bit
//! stream word ([`crate::party::fill_zp`]).

use crate::party::{
    FULL_CMP_BITS, P0, P1, P2, Party, Prg, Stream, fill_below, fill_zp, fill_zp_nonzero,
};
use crate::{SmpcError, error::expect_len};

/// Elements per chunk of local PrivateCompare work.
const CHUNK: usize = 8000;
// Chunks start on whole packed groups of 8 values (see `select_inner`).
const _: () = assert!(CHUNK.is_multiple_of(8));

/// The prime of a PrivateCompare over `m` bits: the smallest of 31, 61 and
/// 67 above `m + 2`. Every position's value
/// `(1 - 2 beta)(x~_i - r~_i) + 1 + sum_{k>i} (x~_k xor r~_k)` lies in
/// `[0, m + 2]` (at most `m` positions above it), so it is zero modulo `p`
/// only when it is zero. Values travel [`value_bits`] bits each: 5 bits for
/// widths up to 28, 6 up to 58, 7 above (SecureNN's 67 for 64-bit rings).
pub fn pc_prime(m: usize) -> u32 {
    if m + 2 < 31 {
        31
    } else if m + 2 < 61 {
        61
    } else {
        67
    }
}

/// Bits per packed value of Z_p (`p` from [`pc_prime`]).
pub fn value_bits(p: u32) -> u32 {
    32 - (p - 1).leading_zeros()
}

/// This party's shares of the outputs of [`select`] (empty for P2).
#[derive(Clone, Debug, Default)]
pub struct SelectOut {
    /// Shares of `DReLU(x) = [x >= 0]` (as a ring integer 0/1).
    pub drelu: Vec<u64>,
    /// Shares of `ReLU(x) = x * DReLU(x)`.
    pub relu: Vec<u64>,
    /// For each payload `y`, shares of `y * DReLU(x)`.
    pub products: Vec<Vec<u64>>,
    /// [`select_trunc`] only: shares of `x` truncated by `frac_bits`.
    pub trunc: Vec<u64>,
    /// [`select_trunc`] only: shares of `DReLU(x)` times the truncated `x`.
    pub relu_trunc: Vec<u64>,
}

/// Common randomness of P0 and P1 for one PrivateCompare batch of `n`
/// comparisons over `w = m + 1` positions. Position-major layouts:
/// `s[i*n + e]`, `u[i*n + e]`.
pub struct PcMasks {
    pub beta: Vec<u8>,
    pub s: Vec<u8>,
    pub u: Vec<u8>,
    pub rot: Vec<u8>,
}

impl PcMasks {
    /// Draws the masks for `n` comparisons of `m` bits (from `S01`), over
    /// Z_p with `p = pc_prime(m)`.
    pub fn draw(rng: &mut Prg, n: usize, m: usize) -> PcMasks {
        let p = pc_prime(m);
        let mut beta = vec![0u8; n];
        fill_below(rng, &mut beta, 2);
        let mut s = vec![0u8; n * (m + 1)];
        fill_zp_nonzero(rng, &mut s, p);
        let mut u = vec![0u8; n * (m + 1)];
        fill_zp(rng, &mut u, p);
        let mut rot = vec![0u8; n];
        fill_below(rng, &mut rot, (m + 1) as u8);
        PcMasks { beta, s, u, rot }
    }
}

/// Computing party `j`'s PrivateCompare message for `n` elements: for each
/// element, `m + 1` values of Z_p (`p = pc_prime(m)`) whose sums with the other party's values
/// contain a zero iff `(r mod 2^m > c mod 2^m) xor beta`.
///
/// `c` are the opened values, `rho` this party's shares of the bits of
/// `r mod 2^m`, position-major (`rho[i*n + e]` is bit `i` of element `e`).
/// The output is position-major too, each element's positions rotated by
/// `rot[e]`: value of position `i` at `[((i + rot[e]) mod (m+1)) * n + e]`.
pub fn pc_message(j: usize, m: usize, c: &[u64], rho: &[u8], masks: &PcMasks) -> Vec<u8> {
    let mut out = vec![0u8; c.len() * (m + 1)];
    let mut scratch = Vec::new();
    pc_message_into(j, m, c, rho, masks, &mut out, &mut scratch);
    out
}

/// [`pc_message`] into `rotated` (`c.len() * (m + 1)` values) with `d` as
/// scratch, on the process's backend.
pub fn pc_message_into(
    j: usize,
    m: usize,
    c: &[u64],
    rho: &[u8],
    masks: &PcMasks,
    rotated: &mut [u8],
    d: &mut Vec<u8>,
) {
    pc_message_on(ppml_simd::backend(), j, m, c, rho, masks, rotated, d);
}

ppml_simd::dispatch!(
    /// [`pc_message_into`] on an explicit backend (tests compare them).
    pub fn pc_message_on(j: usize, m: usize, c: &[u64], rho: &[u8], masks: &PcMasks, rotated: &mut [u8], d: &mut Vec<u8>) => pc_message_impl);

#[inline(always)]
fn pc_message_impl(
    j: usize,
    m: usize,
    c: &[u64],
    rho: &[u8],
    masks: &PcMasks,
    rotated: &mut [u8],
    _d: &mut Vec<u8>,
) {
    pc_message_skip_impl(j, m, 0, c, rho, masks, rotated);
}

/// [`pc_message_into`] of `c >> skip` (the faithful and truncating
/// comparisons compare bits `skip..skip + m` of the opened values), without
/// a shifted copy of `c`. `skip + m <= 64`.
#[allow(clippy::too_many_arguments)]
fn pc_message_skip(
    j: usize,
    m: usize,
    skip: u32,
    c: &[u64],
    rho: &[u8],
    masks: &PcMasks,
    rotated: &mut [u8],
    _d: &mut Vec<u8>,
) {
    pc_message_skip_on(ppml_simd::backend(), j, m, skip, c, rho, masks, rotated);
}

ppml_simd::dispatch!(
    /// [`pc_message_skip`] on an explicit backend.
    fn pc_message_skip_on(j: usize, m: usize, skip: u32, c: &[u64], rho: &[u8], masks: &PcMasks, rotated: &mut [u8]) => pc_message_skip_impl);

#[inline(always)]
fn pc_message_skip_impl(
    j: usize,
    m: usize,
    skip: u32,
    c: &[u64],
    rho: &[u8],
    masks: &PcMasks,
    rotated: &mut [u8],
) {
    // A constant modulus per prime: the reductions compile to multiplies.
    match pc_prime(m) {
        31 => pc_message_p::<31>(j, m, skip, c, rho, masks, rotated),
        61 => pc_message_p::<61>(j, m, skip, c, rho, masks, rotated),
        _ => pc_message_p::<67>(j, m, skip, c, rho, masks, rotated),
    }
}

#[inline(always)]
fn pc_message_p<const P: u32>(
    j: usize,
    m: usize,
    skip: u32,
    c: &[u64],
    rho: &[u8],
    masks: &PcMasks,
    rotated: &mut [u8],
) {
    let n = c.len();
    let w = m + 1;
    // 16-bit lanes throughout (32 per AVX-512 register): every intermediate
    // stays below 2^14 because the running sum is kept reduced mod p.
    let p = P as u16;
    let lead = u16::from(j == P0);
    // The u_i mask enters as +u (P0) or p - u (P1): mask = m_add + m_mul u.
    let (m_add, m_mul) = if lead == 1 {
        (0u16, 1u16)
    } else {
        (p, u16::MAX)
    };
    let step = |xi: u8, ri: u8, ng: u8, sv: u8, uv: u8, suf: &mut u16| -> u8 {
        let (xi, ri, ng) = (xi as u16, ri as u16, ng as u16);
        // diff = [j==0] x~_i - r~_i + p, in [1, p + 1].
        let diff = lead * xi + p - ri;
        // (1 - 2 beta) diff, shifted by 2p to stay non-negative: for
        // beta = 1, 2p - diff (wrapping arithmetic, exact result).
        let signed = diff.wrapping_add(ng.wrapping_mul((2 * p).wrapping_sub(2 * diff)));
        let cval = signed + lead + *suf;
        let mask = m_add.wrapping_add(m_mul.wrapping_mul(uv as u16));
        // w_i share: x~_i = 0 -> r~_i ; x~_i = 1 -> [j==0] + p - r~_i.
        let wi = ri.wrapping_add(xi.wrapping_mul((lead + p).wrapping_sub(2 * ri)));
        *suf = (*suf + wi) % p;
        ((sv as u16 * cval + mask) % p) as u8
    };
    // Blocks of L elements, all positions of a block at a time, from the
    // most significant (i = m, bit m-1) down to the appended bit (i = 0:
    // x~ = 1, r~ = 0), into a w x L tile (fixed-size loops: vectorised).
    // Then each column e is rotated: position i goes to row
    // (i + rot[e]) mod w, by a barrel shifter (rotate every column by 2^k
    // where bit k of its rot is set, as a row-wise blend), and the tile's
    // rows are copied out. (A per-byte scatter cost more than the rest.)
    const L: usize = 64;
    let mut tile = vec![[0u8; L]; w];
    let mut spare = vec![[0u8; L]; w];
    let steps = usize::BITS - (w - 1).leading_zeros();
    let mut e0 = 0;
    while e0 < n {
        let len = L.min(n - e0);
        let mut suf = [0u16; L];
        let mut xb = [0u8; L];
        let mut rr = [0u8; L];
        let mut sv = [0u8; L];
        let mut uv = [0u8; L];
        let mut ng = [0u8; L];
        ng[..len].copy_from_slice(&masks.beta[e0..e0 + len]);
        // Fixed-size copies for whole tiles (vector moves; a slice copy of
        // a run-time length is a memmove call per row).
        let load = |dst: &mut [u8; L], src: &[u8], at: usize| {
            if len == L {
                *dst = src[at..at + L].try_into().expect("a whole tile");
            } else {
                dst[..len].copy_from_slice(&src[at..at + len]);
            }
        };
        for i in (0..w).rev() {
            let at = i * n + e0;
            load(&mut sv, &masks.s, at);
            load(&mut uv, &masks.u, at);
            if i == 0 {
                rr = [0u8; L];
            } else {
                load(&mut rr, rho, (i - 1) * n + e0);
            }
            let shift = skip + i.saturating_sub(1) as u32;
            let fixed_x = u8::from(i == 0);
            for (x, &ce) in xb.iter_mut().zip(&c[e0..e0 + len]) {
                *x = ((ce >> shift) & 1) as u8 | fixed_x;
            }
            let row = &mut tile[i];
            for l in 0..L {
                row[l] = step(xb[l], rr[l], ng[l], sv[l], uv[l], &mut suf[l]);
            }
        }
        let mut rot = [0u8; L];
        rot[..len].copy_from_slice(&masks.rot[e0..e0 + len]);
        for k in 0..steps {
            let by = (1usize << k) % w;
            let mut sel = [0u8; L];
            for l in 0..L {
                sel[l] = 0u8.wrapping_sub((rot[l] >> k) & 1);
            }
            for t in 0..w {
                let src = if t >= by { t - by } else { t + w - by };
                let (moved, kept, dst) = (&tile[src], &tile[t], &mut spare[t]);
                for l in 0..L {
                    dst[l] = (moved[l] & sel[l]) | (kept[l] & !sel[l]);
                }
            }
            std::mem::swap(&mut tile, &mut spare);
        }
        for (t, row) in tile.iter().enumerate() {
            let at = t * n + e0;
            if len == L {
                let dst: &mut [u8; L] =
                    (&mut rotated[at..at + L]).try_into().expect("a whole tile");
                *dst = *row;
            } else {
                rotated[at..at + len].copy_from_slice(&row[..len]);
            }
        }
        e0 += len;
    }
}

/// P2's evaluation of the two PrivateCompare messages (position-major, `w`
/// positions): `1` for each element whose summed vector has a zero.
pub fn pc_eval(w: usize, d0: &[u8], d1: &[u8]) -> Vec<u8> {
    pc_eval_on(ppml_simd::backend(), w, d0, d1)
}

ppml_simd::dispatch!(
    /// [`pc_eval`] on an explicit backend.
    pub fn pc_eval_on(w: usize, d0: &[u8], d1: &[u8]) -> Vec<u8> => pc_eval_impl);

#[inline(always)]
fn pc_eval_impl(w: usize, d0: &[u8], d1: &[u8]) -> Vec<u8> {
    match pc_prime(w.saturating_sub(1)) {
        31 => pc_eval_p::<31>(w, d0, d1),
        61 => pc_eval_p::<61>(w, d0, d1),
        _ => pc_eval_p::<67>(w, d0, d1),
    }
}

#[inline(always)]
fn pc_eval_p<const P: u32>(w: usize, d0: &[u8], d1: &[u8]) -> Vec<u8> {
    let n = d0.len() / w.max(1);
    let mut any = vec![0u8; n];
    for i in 0..w {
        let (a, b) = (&d0[i * n..(i + 1) * n], &d1[i * n..(i + 1) * n]);
        for e in 0..n {
            let s = a[e] as u32 + b[e] as u32;
            any[e] |= u8::from(s == 0) | u8::from(s == P);
        }
    }
    any
}

/// P1's shares of the bits of `r mod 2^m` (see [`rho_correction_on`]).
pub fn rho_correction(m: usize, r: &[u64], rho0: &[u8], rho1: &mut [u8]) {
    rho_correction_on(ppml_simd::backend(), m, r, rho0, rho1);
}

ppml_simd::dispatch!(
    /// P1's shares of the bits of `r mod 2^m`: `bit - rho0 mod 67`,
    /// position-major, on an explicit backend.
    pub fn rho_correction_on(m: usize, r: &[u64], rho0: &[u8], rho1: &mut [u8]) => rho_correction_impl);

/// P1's shares of the bits of `r mod 2^m`: `bit - rho0 mod p`
/// (`p = pc_prime(m)`), position-major.
#[inline(always)]
fn rho_correction_impl(m: usize, r: &[u64], rho0: &[u8], rho1: &mut [u8]) {
    let n = r.len();
    let p = pc_prime(m) as u8;
    for i in 0..m {
        let (o, z) = (&mut rho1[i * n..(i + 1) * n], &rho0[i * n..(i + 1) * n]);
        for e in 0..n {
            let bit = ((r[e] >> i) & 1) as u8;
            let v = bit + p - z[e];
            o[e] = if v >= p { v - p } else { v };
        }
    }
}

/// Vectorised selection on `n` shared elements: shares of `DReLU(x)`,
/// `ReLU(x)` and `y * DReLU(x)` for each payload `y` (each `n` elements),
/// comparing `m = party.cfg.cmp_bits` bits (default 63: exact for every ring
/// element). Payloads are unrestricted. P2 passes empty slices for `x` and
/// the payloads (their count matters).
pub fn select(
    party: &mut Party,
    n: usize,
    x: &[u64],
    payloads: &[&[u64]],
) -> Result<SelectOut, SmpcError> {
    let m = party.cfg.cmp_bits;
    select_at(party, m, n, x, payloads)
}

/// [`select`] at an explicit width `m` (`1..=63`): exact when
/// `-2^m <= x < 2^m` as signed ring integers; outside, `DReLU` is bit `m` of
/// `x + 2^m`, i.e. wrong. Callers prove the range first (private inference
/// does, from the model owner's bounds).
pub fn select_at(
    party: &mut Party,
    m: u32,
    n: usize,
    x: &[u64],
    payloads: &[&[u64]],
) -> Result<SelectOut, SmpcError> {
    select_inner(party, m, n, x, payloads, None, 0, Want::ALL)
}

/// [`select_at`] with the PrivateCompare on bits `k..m` only (`k < m`): the
/// *faithful* comparison. For `-2^m <= x < 2^m - 2^k` (note the margin at
/// the top), `DReLU` is exact except for `-2^k <= x < 0`, where it may be 1
/// (so `ReLU(x)` may be `x`, off by less than `2^k` ring units); `ReLU` and
/// the payload products are the exact products of their inputs with that
/// `DReLU`. With `k = 0` it is [`select_at`]. Used on values with `2f`
/// fractional bits, where `2^k` with `k <= f` is at most one ulp of the
/// `f`-bit result (docs/PROTOCOLS.md, "Faithful comparison").
///
/// Why it works: with `x' = x + 2^m` and `c = x' + r`,
/// `(c >> k) - (r >> k) = (x' >> k) + b` in Z_2^(64-k) with `b` in {0, 1}
/// (the carry of the low `k` bits), and its bit `m - k` is bit `m` of `x'`
/// (= DReLU) unless `b` carries into it, which needs `x' >> k` to be all
/// ones below bit `m - k`, i.e. `-2^k <= x < 0` (or `x >= 2^m - 2^k`,
/// excluded by the margin). Bit `m - k` of the difference is
/// `c_m xor r_m xor w` with `w` the borrow of the low `m - k` bits: the
/// same combination as at full width, from `m - k` compared positions.
pub fn select_skip(
    party: &mut Party,
    m: u32,
    k: u32,
    n: usize,
    x: &[u64],
    payloads: &[&[u64]],
) -> Result<SelectOut, SmpcError> {
    select_inner(party, m, n, x, payloads, None, k, Want::ALL)
}

/// [`select_skip`] computing only the outputs in `want`.
fn select_skip_want(
    party: &mut Party,
    (m, k): (u32, u32),
    n: usize,
    x: &[u64],
    payloads: &[&[u64]],
    want: Want,
) -> Result<SelectOut, SmpcError> {
    select_inner(party, m, n, x, payloads, None, k, want)
}

/// Selection with exact truncation of its input by `f = party.cfg.frac_bits`
/// (for `x` carrying `2f` fractional bits): `trunc` holds shares of
/// `t = floor(x / 2^f)` or `t + 1` (one ulp, like local truncation, but never
/// a wrap-around failure), `drelu` shares of `[t >= 0]`, `relu_trunc` shares
/// of `max(t, 0)`, and `products` of `y [t >= 0]`. Exact for every `x` with
/// `-2^m + 2^f <= x < 2^m - 2^f`; requires `m > f`. (`relu`, the untruncated
/// ReLU, is left empty.)
///
/// The opening is the same as [`select_at`]'s, `c = x + 2^m + r`, but the
/// PrivateCompare runs on bits `f..m` only: it computes the carry `w` of
/// `(c >> f) - (r >> f)` in Z_2^(64-f), so `m - f` positions instead of `m`.
/// There, `x~ = (c >> f) - (r >> f) + 2^(64-f) W` (as integers) equals
/// `((x + 2^m) >> f) + b` with `b` in {0, 1}, where the wrap-around bit `W`
/// is the carry out of bit `m - f` (the majority of `DReLU`, `r_m` and `w`)
/// times `A = [bits m+1..63 of r are all one]`. P2 deals shares of
/// `r >> f`, `(r >> f) v` and, modulo `2^f` only (they are multiplied by
/// `2^(64-f)`), of `A`, `A r_m`, `A v` and `A r_m v`; P0 and P1 assemble `W`,
/// `t = x~ - 2^(m-f)` and `[t >= 0] t` linearly. docs/PROTOCOLS.md has the
/// derivation.
pub fn select_trunc(
    party: &mut Party,
    m: u32,
    n: usize,
    x: &[u64],
    payloads: &[&[u64]],
) -> Result<SelectOut, SmpcError> {
    select_trunc_want(party, m, n, x, payloads, Want::ALL)
}

/// [`select_trunc`] computing only the outputs in `want` (the others are
/// left empty): the same messages, less local work.
pub(crate) fn select_trunc_want(
    party: &mut Party,
    m: u32,
    n: usize,
    x: &[u64],
    payloads: &[&[u64]],
    want: Want,
) -> Result<SelectOut, SmpcError> {
    let f = party.cfg.frac_bits;
    if m <= f {
        return Err(SmpcError::Config(format!(
            "exact truncation by {f} bits needs a comparison width above {f}, got {m}"
        )));
    }
    select_inner(party, m, n, x, payloads, Some(f), f, want)
}

/// Shares of `max(t, 0)` for the exact truncation `t` of `x` (the ReLU of
/// private inference; see [`select_trunc`]).
pub fn relu_trunc(party: &mut Party, m: u32, n: usize, x: &[u64]) -> Result<Vec<u64>, SmpcError> {
    Ok(select_trunc_want(party, m, n, x, &[], Want::RELU_TRUNC)?.relu_trunc)
}

/// Shares of the exact truncation `t` of `x` (see [`select_trunc`]).
pub fn trunc_exact(party: &mut Party, m: u32, n: usize, x: &[u64]) -> Result<Vec<u64>, SmpcError> {
    Ok(select_trunc_want(party, m, n, x, &[], Want::TRUNC)?.trunc)
}

/// Which outputs of a selection a caller uses ([`SelectOut`]'s fields; the
/// payload products are always computed). Only local work depends on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Want {
    pub drelu: bool,
    pub relu: bool,
    pub trunc: bool,
    pub relu_trunc: bool,
}

impl Want {
    pub(crate) const ALL: Want = Want {
        drelu: true,
        relu: true,
        trunc: true,
        relu_trunc: true,
    };
    const RELU_TRUNC: Want = Want {
        drelu: false,
        relu: false,
        trunc: false,
        relu_trunc: true,
    };
    const TRUNC: Want = Want {
        drelu: false,
        relu: false,
        trunc: true,
        relu_trunc: false,
    };
    /// The untruncated ReLU and the payload products (tournaments).
    const RELU: Want = Want {
        drelu: false,
        relu: true,
        trunc: false,
        relu_trunc: false,
    };
}

/// Lane width of the packed shares of `A`, `A r_m`, `A v` and `A r_m v`:
/// they are only ever multiplied by `2^(64-f)`, so their shares matter
/// modulo `2^f` only, and four of them share one or two ring words.
fn lane_bits(f: u32) -> u32 {
    if f <= 16 { 16 } else { 32 }
}

/// Ring words per element in P2's reply besides the payload products:
/// `v`, `r v`; with truncation `v`, `r >> f`, `(r >> f) v` and the packed
/// lanes (one word for `f <= 16`, two up to 32).
fn reply_width(trunc: Option<u32>) -> usize {
    match trunc {
        None => 2,
        Some(f) => 3 + (4 * lane_bits(f) / 64) as usize,
    }
}

/// Lane `i` (of four) of the packed words of one element (`words[k]` is word
/// `k` of it), as a ring value that is right modulo `2^lane_bits`.
#[inline(always)]
fn lane(words: [u64; 2], i: usize, lb: u32) -> u64 {
    let per = (64 / lb) as usize;
    let mask = u64::MAX >> (64 - lb);
    (words[i / per] >> ((i % per) as u32 * lb)) & mask
}

/// P2's reply for one chunk of elements: `r`, `t` (one slice per payload)
/// and `bp` (the PrivateCompare outcomes `w xor beta`).
struct DealerShares<'a> {
    r: &'a [u64],
    t: &'a [&'a [u64]],
    bp: &'a [u8],
}

/// P2's reply words: `reply` (column-major, `reply[k * n + e]` is word `k`
/// of element `e`; [`reply_width`] words, then one per payload) holds P0's
/// shares and is replaced by P1's. Chunks of elements run on rayon: P0 and
/// P1 are waiting for this reply, so in a run on several cores the other
/// cores are free.
fn dealer_reply(m: u32, trunc: Option<u32>, r: &[u64], t: &[u64], bp: &[u8], reply: &mut [u64]) {
    use rayon::prelude::*;
    let n = r.len();
    if n == 0 {
        return;
    }
    let np = t.len() / n;
    let mut tasks: Vec<Vec<&mut [u64]>> = (0..n.div_ceil(CHUNK)).map(|_| Vec::new()).collect();
    for col in reply.chunks_mut(n) {
        for (ci, piece) in col.chunks_mut(CHUNK).enumerate() {
            tasks[ci].push(piece);
        }
    }
    let be = ppml_simd::backend();
    tasks
        .into_par_iter()
        .enumerate()
        .for_each(|(ci, mut cols)| {
            let (s0, s1) = (ci * CHUNK, (ci * CHUNK + CHUNK).min(n));
            let tc: Vec<&[u64]> = (0..np).map(|p| &t[p * n + s0..p * n + s1]).collect();
            let d = DealerShares {
                r: &r[s0..s1],
                t: &tc,
                bp: &bp[s0..s1],
            };
            dealer_reply_on(be, m, trunc, &d, &mut cols);
        });
}

ppml_simd::dispatch!(fn dealer_reply_on(m: u32, trunc: Option<u32>, d: &DealerShares<'_>, cols: &mut [&mut [u64]]) => dealer_reply_impl);

/// One chunk of [`dealer_reply`]: `cols[k][e]` is word `k` of element `e`
/// (P0's share in, P1's out): each word minus P0's share (lane-wise for the
/// packed words); words in the order of [`reply_width`], then the payload
/// products `t v`.
#[inline(always)]
fn dealer_reply_impl(m: u32, trunc: Option<u32>, d: &DealerShares<'_>, cols: &mut [&mut [u64]]) {
    let n = d.r.len();
    let k = reply_width(trunc);
    let (r, bp) = (d.r, &d.bp[..n]);
    let vbit = |e: usize| u64::from(bp[e]) ^ ((r[e] >> m) & 1);
    let (head, pay) = cols.split_at_mut(k);
    match trunc {
        None => {
            let [c0, c1] = head else {
                unreachable!("reply_width(None) is 2")
            };
            let (c0, c1) = (&mut c0[..n], &mut c1[..n]);
            for e in 0..n {
                let v = vbit(e);
                c0[e] = v.wrapping_sub(c0[e]);
                c1[e] = r[e].wrapping_mul(v).wrapping_sub(c1[e]);
            }
        }
        Some(f) => {
            let (c012, lanes) = head.split_at_mut(3);
            let [c0, c1, c2] = c012 else {
                unreachable!("split_at_mut(3)")
            };
            let (c0, c1, c2) = (&mut c0[..n], &mut c1[..n], &mut c2[..n]);
            // One lane word for f <= 16, two above (`reply_width`).
            let (l0, rest) = lanes
                .split_first_mut()
                .expect("reply_width(Some) has a lane word");
            let mut l1 = rest.first_mut();
            let l0 = &mut l0[..n];
            let lb = lane_bits(f);
            let per = (64 / lb) as usize;
            let mask = u64::MAX >> (64 - lb);
            for e in 0..n {
                let re = r[e];
                let a = (re >> m) & 1;
                let v = vbit(e);
                let rs = re >> f;
                c0[e] = v.wrapping_sub(c0[e]);
                c1[e] = rs.wrapping_sub(c1[e]);
                c2[e] = rs.wrapping_mul(v).wrapping_sub(c2[e]);
                // A: the bits of r above m are all one (m = 63: none, A = 1).
                let big_a = if m >= 63 {
                    1
                } else {
                    u64::from((re >> (m + 1)) == (u64::MAX >> (m + 1)))
                };
                let g = [big_a, big_a & a, big_a & v, big_a & a & v];
                let mine = [l0[e], l1.as_ref().map_or(0, |c| c[e])];
                let mut words = [0u64; 2];
                for (i, gi) in g.iter().enumerate() {
                    let corr = gi.wrapping_sub(lane(mine, i, lb)) & mask;
                    words[i / per] |= corr << ((i % per) as u32 * lb);
                }
                l0[e] = words[0];
                if let Some(c) = l1.as_mut() {
                    c[e] = words[1];
                }
            }
        }
    }
    for (col, tp) in pay.iter_mut().zip(d.t) {
        let (col, tp) = (&mut col[..n], &tp[..n]);
        for e in 0..n {
            col[e] = tp[e].wrapping_mul(vbit(e)).wrapping_sub(col[e]);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn select_inner(
    party: &mut Party,
    m: u32,
    n: usize,
    x: &[u64],
    payloads: &[&[u64]],
    trunc: Option<u32>,
    skip: u32,
    want: Want,
) -> Result<SelectOut, SmpcError> {
    if m == 0 || m > FULL_CMP_BITS {
        return Err(SmpcError::Config(format!(
            "comparison width {m} must be in 1..={FULL_CMP_BITS}"
        )));
    }
    let mb = m;
    // With truncation (or a faithful comparison) the PrivateCompare skips
    // the low bits: it compares c >> k with r >> k on m - k bits (see
    // `select_trunc` and `select_skip`).
    let shift = skip;
    if shift >= mb {
        return Err(SmpcError::Config(format!(
            "comparison width {mb} must exceed the {shift} skipped low bits"
        )));
    }
    let m = (mb - shift) as usize;
    let p = pc_prime(m);
    let bits = value_bits(p);
    // Byte range of the packed values of elements s0..s0+len (`per` values
    // each) in a chunk-major message: chunks start at multiples of CHUNK, a
    // multiple of 8, so every chunk starts on a whole packed group.
    let chunk_bytes = |s0: usize, len: usize, per: usize| {
        let start = s0 * per * bits as usize / 8;
        start..start + packed_len_bits(len * per, bits)
    };
    let np = payloads.len();
    let w = m + 1;
    let kw = reply_width(trunc);
    // Local work runs in chunks of CHUNK elements (working set in L2); the
    // messages are chunk-major, position-major within a chunk.
    let chunks = || (0..n).step_by(CHUNK).map(move |s| (s, CHUNK.min(n - s)));
    match party.id {
        P2 => {
            // r0 then t0 (S02) and r1 then t1 (S12), each pair as one draw:
            // rt = (r, t) with r = r0 + r1, t = t0 + t1.
            let mut rt = party.draw(Stream::S02, n * (1 + np))?;
            let rt1 = party.draw(Stream::S12, n * (1 + np))?;
            for (a, b) in rt.iter_mut().zip(&rt1) {
                *a = a.wrapping_add(*b);
            }
            drop(rt1);
            let (r, t) = rt.split_at(n);
            // Chunk by chunk, packed as it goes (no n x m buffer).
            let mut rho1 = vec![0u8; CHUNK.min(n) * m];
            let mut rho0 = vec![0u8; CHUNK.min(n) * m];
            let mut r_pc = vec![0u64; CHUNK.min(n)];
            let mut packed =
                Vec::with_capacity(packed_len_bits(n * m, bits) + ppml_net::FRAME_SPARE);
            for (s0, len) in chunks() {
                let z = &mut rho0[..len * m];
                fill_zp(party.prg(Stream::S02)?, z, p);
                let o = &mut rho1[..len * m];
                for (d, v) in r_pc.iter_mut().zip(&r[s0..s0 + len]) {
                    *d = v >> shift;
                }
                rho_correction(m, &r_pc[..len], z, o);
                packed.extend_from_slice(&pack_zp(o, p));
            }
            party.net.send_bytes(P1, packed)?;
            // P0's reply shares (next in S02) are drawn before the messages
            // arrive: between the messages and the reply, P1 is waiting.
            let mut reply = party.draw(Stream::S02, n * (kw + np))?;
            let d0 = party.net.recv_bytes(P0)?;
            let d1 = party.net.recv_bytes(P1)?;
            for (d, who) in [(&d0, "p0"), (&d1, "p1")] {
                expect_len(
                    &format!("compare message of {who} (packed bytes)"),
                    d.len(),
                    packed_len_bits(n * w, bits),
                )?;
            }
            // Chunks on rayon: P0 and P1 wait for this evaluation.
            let mut bp = vec![0u8; n];
            {
                use rayon::prelude::*;
                bp.par_chunks_mut(CHUNK).enumerate().try_for_each(
                    |(ci, out)| -> Result<(), SmpcError> {
                        let (s0, len) = (ci * CHUNK, out.len());
                        let part = |d: &[u8], who: &str| {
                            unpack_zp(&d[chunk_bytes(s0, len, w)], len * w, p, who)
                        };
                        let e0 = part(&d0, "compare message of p0")?;
                        let e1 = part(&d1, "compare message of p1")?;
                        out.copy_from_slice(&pc_eval(w, &e0, &e1));
                        Ok(())
                    },
                )?;
            }
            // P0's shares, turned in place into P1's corrections.
            dealer_reply(mb, trunc, r, t, &bp, &mut reply);
            party.send_u64s(P1, &reply)?;
            Ok(SelectOut::default())
        }
        j @ (P0 | P1) => {
            expect_len("select input", x.len(), n)?;
            for p in payloads {
                expect_len("select payload", p.len(), n)?;
            }
            let s = if j == P0 { Stream::S02 } else { Stream::S12 };
            // r then t in one draw (the same words as two), masked in place:
            // msg = (x + r + [j = 0] 2^m, y_p + t_p).
            let mut msg = party.draw(s, n * (1 + np))?;
            let offset = if j == P0 { 1u64 << mb } else { 0 };
            for (mv, xv) in msg[..n].iter_mut().zip(x) {
                *mv = mv.wrapping_add(*xv).wrapping_add(offset);
            }
            for (p, y) in payloads.iter().enumerate() {
                for (mv, yv) in msg[n * (1 + p)..n * (2 + p)].iter_mut().zip(*y) {
                    *mv = mv.wrapping_add(*yv);
                }
            }
            let opened = party.open_owned(msg)?;
            let (c, e_all) = opened.split_at(n);
            let rho_all = if j == P1 {
                let b = party.net.recv_bytes(P2)?;
                expect_len(
                    "bit shares (packed bytes)",
                    b.len(),
                    packed_len_bits(n * m, bits),
                )?;
                b
            } else {
                Vec::new()
            };
            // Chunk by chunk, packed as it goes (no n x w buffer).
            let mut d = vec![0u8; CHUNK.min(n) * w];
            let mut packed =
                Vec::with_capacity(packed_len_bits(n * w, bits) + ppml_net::FRAME_SPARE);
            let mut beta = Vec::with_capacity(n);
            let (mut rho0, mut scratch) = (vec![0u8; CHUNK.min(n) * m], Vec::new());
            for (s0, len) in chunks() {
                let rho1;
                let rho: &[u8] = if j == P0 {
                    let z = &mut rho0[..len * m];
                    fill_zp(party.prg(Stream::S02)?, z, p);
                    z
                } else {
                    rho1 = unpack_zp(&rho_all[chunk_bytes(s0, len, m)], len * m, p, "bit shares")?;
                    &rho1
                };
                let masks = PcMasks::draw(party.prg(Stream::S01)?, len, m);
                pc_message_skip(
                    j,
                    m,
                    shift,
                    &c[s0..s0 + len],
                    rho,
                    &masks,
                    &mut d[..len * w],
                    &mut scratch,
                );
                packed.extend_from_slice(&pack_zp(&d[..len * w], p));
                beta.extend_from_slice(&masks.beta);
            }
            party.net.send_bytes(P2, packed)?;
            let dealt = if j == P0 {
                party.draw(Stream::S02, n * (kw + np))?
            } else {
                party.recv_len(P2, n * (kw + np), "select reply")?
            };
            let mut out = SelectOut::default();
            let opened = Opened {
                c,
                e_all,
                beta: &beta,
            };
            combine(
                j,
                mb,
                kw,
                x,
                payloads,
                &opened,
                &dealt,
                trunc.is_some(),
                want,
                &mut out,
            );
            if let Some(f) = trunc {
                combine_trunc(j, mb, f, &opened, &dealt, want, &mut out);
            }
            Ok(out)
        }
        other => Err(SmpcError::Role(format!("party {other} cannot compare"))),
    }
}

/// Bytes of `n` elements of Z_67 packed 7 bits each (8 in 7 bytes).
pub fn packed_len(n: usize) -> usize {
    packed_len_bits(n, 7)
}

/// Bytes of `n` values packed `b` bits each (8 values in `b` bytes).
pub fn packed_len_bits(n: usize, b: u32) -> usize {
    (n * b as usize).div_ceil(8)
}

/// Packs elements of Z_67 7 bits each ([`pack_zp`] with `p = 67`).
pub fn pack_z67(v: &[u8]) -> Vec<u8> {
    pack_zp(v, 67)
}

/// Inverse of [`pack_z67`] ([`unpack_zp`] with `p = 67`).
pub fn unpack_z67(b: &[u8], n: usize, what: &str) -> Result<Vec<u8>, SmpcError> {
    unpack_zp(b, n, 67, what)
}

/// Packs elements of Z_p (each below `p <= 128`) [`value_bits`]`(p)` bits
/// each, little-endian, in groups of 8 values per `b` bytes: the
/// PrivateCompare messages and bit shares travel 5, 6 or 7 bits per value
/// instead of a byte. Branch-free word arithmetic per group of 8.
pub fn pack_zp(v: &[u8], p: u32) -> Vec<u8> {
    match value_bits(p) {
        5 => pack_bits::<5>(v),
        6 => pack_bits::<6>(v),
        _ => pack_bits::<7>(v),
    }
}

fn pack_bits<const B: u32>(v: &[u8]) -> Vec<u8> {
    let bw = B as usize;
    let full = v.len() / 8;
    let len = packed_len_bits(v.len(), B);
    // One word of slack: each group is stored as a whole 8-byte word.
    let mut out = vec![0u8; len + 8];
    for (k, chunk) in v.chunks_exact(8).enumerate() {
        let x = u64::from_le_bytes(chunk.try_into().expect("chunks_exact(8)"));
        out[bw * k..bw * k + 8].copy_from_slice(&squeeze::<B>(x).to_le_bytes());
    }
    let tail = &v[full * 8..];
    if !tail.is_empty() {
        let mut buf = [0u8; 8];
        buf[..tail.len()].copy_from_slice(tail);
        let w = squeeze::<B>(u64::from_le_bytes(buf)).to_le_bytes();
        let nb = packed_len_bits(tail.len(), B);
        out[bw * full..bw * full + nb].copy_from_slice(&w[..nb]);
    }
    out.truncate(len);
    out
}

/// Eight bytes (each below `2^B`) to `8B` bits, `B` per byte: three
/// halving steps (bytes to 16-bit pairs to 32-bit quads to one word), each
/// a mask, a shift and an or on the whole word.
#[inline(always)]
fn squeeze<const B: u32>(x: u64) -> u64 {
    let lanes = |bits: u32, every: u32| -> u64 {
        let one = (1u64 << bits) - 1;
        (0..64 / every).fold(0, |m, i| m | (one << (i * every)))
    };
    // Pairs of bytes: low byte's B bits, high byte's shifted down next to them.
    let x = (x & lanes(B, 16)) | ((x >> (8 - B)) & lanes(B, 16) << B);
    // Pairs of 16-bit lanes (2B bits each).
    let x = (x & lanes(2 * B, 32)) | ((x >> (16 - 2 * B)) & lanes(2 * B, 32) << (2 * B));
    // The two 32-bit halves (4B bits each).
    (x & lanes(4 * B, 64)) | ((x >> (32 - 4 * B)) & lanes(4 * B, 64) << (4 * B))
}

/// `8B` bits to eight `B`-bit bytes (inverse of [`squeeze`]).
#[inline(always)]
fn spread<const B: u32>(p: u64) -> u64 {
    let lanes = |bits: u32, every: u32| -> u64 {
        let one = (1u64 << bits) - 1;
        (0..64 / every).fold(0, |m, i| m | (one << (i * every)))
    };
    let x = (p & lanes(4 * B, 64)) | ((p << (32 - 4 * B)) & (lanes(4 * B, 64) << 32));
    let x = (x & lanes(2 * B, 32)) | ((x << (16 - 2 * B)) & (lanes(2 * B, 32) << 16));
    (x & lanes(B, 16)) | ((x << (8 - B)) & (lanes(B, 16) << 8))
}

/// Inverse of [`pack_zp`] for `n` values; a message of the wrong length or
/// holding a value outside Z_p (a peer that lies) is an error.
pub fn unpack_zp(bytes: &[u8], n: usize, p: u32, what: &str) -> Result<Vec<u8>, SmpcError> {
    let b = value_bits(p);
    expect_len(
        &format!("{what} (packed bytes)"),
        bytes.len(),
        packed_len_bits(n, b),
    )?;
    let (out, bad) = match b {
        5 => unpack_bits::<5>(bytes, n, p),
        6 => unpack_bits::<6>(bytes, n, p),
        _ => unpack_bits::<7>(bytes, n, p),
    };
    if bad {
        return Err(SmpcError::Shape(format!(
            "{what}: a value outside Z_{p} (the sender is not following the protocol)"
        )));
    }
    Ok(out)
}

/// `n` values of `B` bits from `bytes` (of the right length), and whether
/// one is `>= p`.
fn unpack_bits<const B: u32>(bytes: &[u8], n: usize, p: u32) -> (Vec<u8>, bool) {
    let bw = B as usize;
    let mut out = vec![0u8; n];
    let full = n / 8;
    // A byte lane (below 2^B <= 128) is >= p iff adding 128 - p sets its top
    // bit (the sum stays below 256, so no carry crosses lanes).
    let bias = u64::from_le_bytes([(128 - p) as u8; 8]);
    const TOP: u64 = 0x8080_8080_8080_8080;
    let mut bad = 0u64;
    // Groups whose 8-byte read stays inside the message read one word.
    let direct = if bytes.len() >= 8 {
        ((bytes.len() - 8) / bw + 1).min(full)
    } else {
        0
    };
    for (k, o) in out.chunks_exact_mut(8).take(direct).enumerate() {
        let word = u64::from_le_bytes(
            bytes[bw * k..bw * k + 8]
                .try_into()
                .expect("8 bytes inside the message"),
        );
        let x = spread::<B>(word);
        bad |= x.wrapping_add(bias) & TOP;
        o.copy_from_slice(&x.to_le_bytes());
    }
    for k in direct..full {
        let mut buf = [0u8; 8];
        buf[..bw].copy_from_slice(&bytes[bw * k..bw * k + bw]);
        let x = spread::<B>(u64::from_le_bytes(buf));
        bad |= x.wrapping_add(bias) & TOP;
        out[8 * k..8 * k + 8].copy_from_slice(&x.to_le_bytes());
    }
    let rest = n - full * 8;
    if rest > 0 {
        let nb = packed_len_bits(rest, B);
        let mut buf = [0u8; 8];
        buf[..nb].copy_from_slice(&bytes[bw * full..bw * full + nb]);
        let x = spread::<B>(u64::from_le_bytes(buf)).to_le_bytes();
        for (o, &v) in out[full * 8..].iter_mut().zip(&x) {
            bad |= u64::from(u32::from(v) >= p);
            *o = v;
        }
    }
    (out, bad != 0)
}

/// What P0 and P1 hold in common after the opening: `c`, the opened
/// payloads and the PrivateCompare flips `beta`.
struct Opened<'a> {
    c: &'a [u64],
    e_all: &'a [u64],
    beta: &'a [u8],
}

/// Shares of `DReLU(x)`, `ReLU(x)` and the payload products from the dealt
/// `v`, `r v`, `t v` (layout of [`dealer_reply_impl`]), for the outputs in
/// `want` (`ReLU` of the untruncated `x` only without truncation).
#[allow(clippy::too_many_arguments)]
fn combine(
    j: usize,
    m: u32,
    kw: usize,
    x: &[u64],
    payloads: &[&[u64]],
    o: &Opened<'_>,
    dealt: &[u64],
    truncating: bool,
    want: Want,
    out: &mut SelectOut,
) {
    let n = o.c.len();
    let lead = u64::from(j == P0);
    let v = &dealt[..n];
    let be = ppml_simd::backend();
    let (c, beta) = (o.c, o.beta);
    if want.drelu {
        out.drelu = vec![0; n];
        par_fill(&mut out.drelu, |r, d| {
            drelu_loop_on(be, lead, m, &c[r.clone()], &beta[r.clone()], &v[r], d);
        });
    }
    // Without truncation, word 1 is r v (for ReLU of the untruncated x).
    if want.relu && !truncating {
        out.relu = vec![0; n];
        let rv = &dealt[n..2 * n];
        par_fill(&mut out.relu, |r, d| {
            let (cr, br, xr, vr) = (
                &c[r.clone()],
                &beta[r.clone()],
                &x[r.clone()],
                &v[r.clone()],
            );
            relu_loop_on(be, m, cr, br, xr, vr, &rv[r], d);
        });
    }
    let tv = &dealt[kw * n..];
    out.products = (0..payloads.len())
        .map(|p| {
            let mut prod = vec![0; n];
            let (y, e_p, tv_p) = (
                payloads[p],
                &o.e_all[p * n..(p + 1) * n],
                &tv[p * n..(p + 1) * n],
            );
            par_fill(&mut prod, |r, d| {
                let (cr, br, yr, er) = (
                    &c[r.clone()],
                    &beta[r.clone()],
                    &y[r.clone()],
                    &e_p[r.clone()],
                );
                product_loop_on(be, m, cr, br, yr, er, &v[r.clone()], &tv_p[r], d);
            });
            prod
        })
        .collect();
}

/// Runs `f(range, piece)` on rayon over [`CHUNK`]-element pieces of `out`
/// (`piece` is `out[range]`). After P2's reply the other parties wait for
/// these loops, so in a run on several cores the other cores are free.
fn par_fill(out: &mut [u64], f: impl Fn(std::ops::Range<usize>, &mut [u64]) + Sync) {
    use rayon::prelude::*;
    out.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(i, piece)| {
            let s0 = i * CHUNK;
            f(s0..s0 + piece.len(), piece);
        });
}

ppml_simd::dispatch!(fn drelu_loop_on(lead: u64, m: u32, c: &[u64], beta: &[u8], v: &[u64], out: &mut [u64]) => drelu_loop);
ppml_simd::dispatch!(fn relu_loop_on(m: u32, c: &[u64], beta: &[u8], x: &[u64], v: &[u64], rv: &[u64], out: &mut [u64]) => relu_loop);
ppml_simd::dispatch!(fn product_loop_on(m: u32, c: &[u64], beta: &[u8], y: &[u64], e: &[u64], v: &[u64], tv: &[u64], out: &mut [u64]) => product_loop);

/// `DReLU = u + (1 - 2u) v` (`u = c_m xor beta`, public to P0 and P1).
#[inline(always)]
fn drelu_loop(lead: u64, m: u32, c: &[u64], beta: &[u8], v: &[u64], out: &mut [u64]) {
    let n = out.len();
    let (c, beta, v) = (&c[..n], &beta[..n], &v[..n]);
    for e in 0..n {
        let u = ((c[e] >> m) & 1) ^ u64::from(beta[e]);
        // (1 - 2u) as a ring element: 1 or -1.
        let sign = 1u64.wrapping_sub(u << 1);
        out[e] = (lead * u).wrapping_add(sign.wrapping_mul(v[e]));
    }
}

/// `ReLU = u x + (1 - 2u)((c - 2^m) v - r v)`.
#[inline(always)]
fn relu_loop(m: u32, c: &[u64], beta: &[u8], x: &[u64], v: &[u64], rv: &[u64], out: &mut [u64]) {
    let n = out.len();
    let (c, beta, x, v, rv) = (&c[..n], &beta[..n], &x[..n], &v[..n], &rv[..n]);
    for e in 0..n {
        let u = ((c[e] >> m) & 1) ^ u64::from(beta[e]);
        let sign = 1u64.wrapping_sub(u << 1);
        let xv = c[e]
            .wrapping_sub(1u64 << m)
            .wrapping_mul(v[e])
            .wrapping_sub(rv[e]);
        out[e] = u.wrapping_mul(x[e]).wrapping_add(sign.wrapping_mul(xv));
    }
}

/// `y DReLU = u y + (1 - 2u)(e v - t v)` for a payload opened as `e = y + t`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn product_loop(
    m: u32,
    c: &[u64],
    beta: &[u8],
    y: &[u64],
    e_open: &[u64],
    v: &[u64],
    tv: &[u64],
    out: &mut [u64],
) {
    let n = out.len();
    let (c, beta, y, e_open, v, tv) = (
        &c[..n],
        &beta[..n],
        &y[..n],
        &e_open[..n],
        &v[..n],
        &tv[..n],
    );
    for e in 0..n {
        let u = ((c[e] >> m) & 1) ^ u64::from(beta[e]);
        let sign = 1u64.wrapping_sub(u << 1);
        let yv = e_open[e].wrapping_mul(v[e]).wrapping_sub(tv[e]);
        out[e] = u.wrapping_mul(y[e]).wrapping_add(sign.wrapping_mul(yv));
    }
}

/// Shares of the exact truncation `t` and of `DReLU(x) t` (see
/// [`select_trunc`]; docs/PROTOCOLS.md derives the formulas), for the
/// outputs in `want`.
fn combine_trunc(
    j: usize,
    m: u32,
    f: u32,
    o: &Opened<'_>,
    dealt: &[u64],
    want: Want,
    out: &mut SelectOut,
) {
    let n = o.c.len();
    if want.trunc {
        out.trunc = vec![0; n];
    }
    if want.relu_trunc {
        out.relu_trunc = vec![0; n];
    }
    let be = ppml_simd::backend();
    let (c, beta) = (o.c, o.beta);
    let two = reply_width(Some(f)) > 4;
    let col = |k: usize| &dealt[k * n..(k + 1) * n];
    let run = |r: std::ops::Range<usize>, t: &mut [u64], rt: &mut [u64]| {
        let cols = TruncCols {
            v: &col(0)[r.clone()],
            rs: &col(1)[r.clone()],
            rsv: &col(2)[r.clone()],
            w0: &col(3)[r.clone()],
            w1: if two { &col(4)[r.clone()] } else { &[] },
        };
        combine_trunc_on(be, j, m, f, &c[r.clone()], &beta[r], &cols, t, rt);
    };
    use rayon::prelude::*;
    match (want.trunc, want.relu_trunc) {
        (true, true) => out
            .trunc
            .par_chunks_mut(CHUNK)
            .zip(out.relu_trunc.par_chunks_mut(CHUNK))
            .enumerate()
            .for_each(|(i, (t, rt))| run(i * CHUNK..i * CHUNK + t.len(), t, rt)),
        (true, false) => par_fill(&mut out.trunc, |r, t| run(r, t, &mut [])),
        (false, true) => par_fill(&mut out.relu_trunc, |r, rt| run(r, &mut [], rt)),
        (false, false) => {}
    }
}

/// P2's dealt words for [`combine_trunc`] (one chunk of elements): `v`,
/// `r >> f`, `(r >> f) v` and the lane words (`w1` empty for `f <= 16`).
struct TruncCols<'a> {
    v: &'a [u64],
    rs: &'a [u64],
    rsv: &'a [u64],
    w0: &'a [u64],
    w1: &'a [u64],
}

ppml_simd::dispatch!(fn combine_trunc_on(j: usize, m: u32, f: u32, c: &[u64], beta: &[u8], cols: &TruncCols<'_>, trunc: &mut [u64], relu_trunc: &mut [u64]) => combine_trunc_impl);

/// The loop of [`combine_trunc`]: `trunc` and `relu_trunc` are each either
/// empty (not wanted) or `c.len()` long.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn combine_trunc_impl(
    j: usize,
    m: u32,
    f: u32,
    c: &[u64],
    beta: &[u8],
    cols: &TruncCols<'_>,
    trunc: &mut [u64],
    relu_trunc: &mut [u64],
) {
    let n = c.len();
    let lead = u64::from(j == P0);
    let (v, rs, rsv) = (&cols.v[..n], &cols.rs[..n], &cols.rsv[..n]);
    let lb = lane_bits(f);
    let two = !cols.w1.is_empty();
    let w1: &[u64] = if two { &cols.w1[..n] } else { &[] };
    let w0 = &cols.w0[..n];
    let beta = &beta[..n];
    // 2^(m-f): the offset 2^m after the shift; 2^(64-f): the wrap-around.
    let k_off = 1u64 << (m - f);
    let wrap = 1u64 << (64 - f);
    let (want_t, want_rt) = (!trunc.is_empty(), !relu_trunc.is_empty());
    for e in 0..n {
        let words = [w0[e], if two { w1[e] } else { 0 }];
        let (ga, gaa, gav, gaav) = (
            lane(words, 0, lb),
            lane(words, 1, lb),
            lane(words, 2, lb),
            lane(words, 3, lb),
        );
        let ce = c[e];
        let cm = (ce >> m) & 1;
        let ncm = 1 - cm;
        let b = u64::from(beta[e]);
        let u = cm ^ b;
        let sign = 1u64.wrapping_sub(u << 1);
        let pub_part = (ce >> f).wrapping_sub(k_off);
        // W = A * maj(DReLU, r_m, w): for beta = 0, A r_m - A r_m v + (1 - c_m) A v;
        // for beta = 1, A r_m v + (1 - c_m)(A - A v). Selected branch-free.
        let w_b1 = gaav.wrapping_add(ncm.wrapping_mul(ga.wrapping_sub(gav)));
        let w_b0 = gaa.wrapping_sub(gaav).wrapping_add(ncm.wrapping_mul(gav));
        let w_share = if b == 1 { w_b1 } else { w_b0 };
        let t = (lead * pub_part)
            .wrapping_sub(rs[e])
            .wrapping_add(wrap.wrapping_mul(w_share));
        if want_t {
            trunc[e] = t;
        }
        if want_rt {
            // W v: for beta = 0, (1 - c_m) A v; for beta = 1, A r_m v.
            let wv = if b == 1 { gaav } else { ncm.wrapping_mul(gav) };
            let tv = pub_part
                .wrapping_mul(v[e])
                .wrapping_sub(rsv[e])
                .wrapping_add(wrap.wrapping_mul(wv));
            relu_trunc[e] = u.wrapping_mul(t).wrapping_add(sign.wrapping_mul(tv));
        }
    }
}

/// Shares of `ReLU(x)` for `n` elements (see [`select`]).
pub fn relu(party: &mut Party, n: usize, x: &[u64]) -> Result<Vec<u64>, SmpcError> {
    Ok(select(party, n, x, &[])?.relu)
}

/// Shares of `DReLU(x) = [x >= 0]` as ring integers 0/1.
pub fn drelu(party: &mut Party, n: usize, x: &[u64]) -> Result<Vec<u64>, SmpcError> {
    Ok(select(party, n, x, &[])?.drelu)
}

/// [`drelu`] at an explicit width (see [`select_at`]).
pub fn drelu_at(party: &mut Party, m: u32, n: usize, x: &[u64]) -> Result<Vec<u64>, SmpcError> {
    Ok(select_at(party, m, n, x, &[])?.drelu)
}

/// [`relu`] at an explicit width (see [`select_at`]).
pub fn relu_at(party: &mut Party, m: u32, n: usize, x: &[u64]) -> Result<Vec<u64>, SmpcError> {
    Ok(select_at(party, m, n, x, &[])?.relu)
}

/// Element-wise `max(a, b) = b + ReLU(a - b)`, exact for all ring values at
/// the default width.
pub fn max2(party: &mut Party, n: usize, a: &[u64], b: &[u64]) -> Result<Vec<u64>, SmpcError> {
    let m = party.cfg.cmp_bits;
    if party.id == P2 {
        select_at(party, m, n, &[], &[])?;
        return Ok(Vec::new());
    }
    let diff: Vec<u64> = a.iter().zip(b).map(|(x, y)| x.wrapping_sub(*y)).collect();
    let r = select_at(party, m, n, &diff, &[])?.relu;
    Ok(b.iter().zip(&r).map(|(x, y)| x.wrapping_add(*y)).collect())
}

/// Maximum of each group: `groups` is `count x size` (row-major, one group
/// per row); a tournament of `ceil(log2 size)` [`select`] rounds, each
/// vectorised over all groups. With `with_index`, also returns shares of the
/// index of the maximum within its group (first index on ties).
pub fn max_groups(
    party: &mut Party,
    count: usize,
    size: usize,
    groups: &[u64],
    with_index: bool,
) -> Result<(Vec<u64>, Vec<u64>), SmpcError> {
    let m = party.cfg.cmp_bits;
    max_groups_at(party, m, count, size, groups, with_index)
}

/// [`max_groups`] comparing `m` bits: exact when every difference of two
/// group members satisfies `-2^m <= a - b < 2^m`.
pub fn max_groups_at(
    party: &mut Party,
    m: u32,
    count: usize,
    size: usize,
    groups: &[u64],
    with_index: bool,
) -> Result<(Vec<u64>, Vec<u64>), SmpcError> {
    max_groups_skip(party, m, 0, count, size, groups, with_index)
}

/// Comparison levels of a tournament over groups of `size`:
/// `ceil(log2 size)`.
pub fn tournament_levels(size: usize) -> u32 {
    usize::BITS - size.saturating_sub(1).leading_zeros()
}

/// [`max_groups_at`] with faithful comparisons ([`select_skip`], bits
/// `k..m`): the result is always one member of its group (and, with
/// `with_index`, that member's index), at most `L 2^k` ring units below the
/// group's maximum, `L` = [`tournament_levels`] (each level loses at most
/// `2^k`). Requires every difference of two members in
/// `[-2^m, 2^m - 2^k)`. `k = 0` is the exact tournament.
pub fn max_groups_skip(
    party: &mut Party,
    m: u32,
    k: u32,
    count: usize,
    size: usize,
    groups: &[u64],
    with_index: bool,
) -> Result<(Vec<u64>, Vec<u64>), SmpcError> {
    if size == 0 {
        return Err(SmpcError::Shape("max over empty groups".into()));
    }
    let helper = party.id == P2;
    if !helper {
        expect_len("max groups", groups.len(), count * size)?;
    }
    let lead = u64::from(party.id == P0);
    // Candidates laid out candidate-major: cand[c * count + g].
    let mut width = size;
    let mut vals = vec![0u64; if helper { 0 } else { count * size }];
    let mut idx = vec![
        0u64;
        if helper || !with_index {
            0
        } else {
            count * size
        }
    ];
    if !helper {
        for g in 0..count {
            for c in 0..size {
                vals[c * count + g] = groups[g * size + c];
                if with_index {
                    idx[c * count + g] = lead * c as u64;
                }
            }
        }
    }
    while width > 1 {
        let pairs = width / 2;
        let n = pairs * count;
        let next_width = width - pairs;
        if helper {
            let payloads: Vec<&[u64]> = if with_index { vec![&[]] } else { vec![] };
            select_skip_want(party, (m, k), n, &[], &payloads, Want::RELU)?;
            width = next_width;
            continue;
        }
        // Pair candidate 2q with 2q+1.
        let mut diff = vec![0u64; n];
        let mut idiff = vec![0u64; if with_index { n } else { 0 }];
        for q in 0..pairs {
            for g in 0..count {
                let a = vals[2 * q * count + g];
                let b = vals[(2 * q + 1) * count + g];
                diff[q * count + g] = a.wrapping_sub(b);
                if with_index {
                    idiff[q * count + g] =
                        idx[2 * q * count + g].wrapping_sub(idx[(2 * q + 1) * count + g]);
                }
            }
        }
        let payloads: Vec<&[u64]> = if with_index { vec![&idiff] } else { vec![] };
        let out = select_skip_want(party, (m, k), n, &diff, &payloads, Want::RELU)?;
        let mut nvals = vec![0u64; next_width * count];
        let mut nidx = vec![0u64; if with_index { next_width * count } else { 0 }];
        for q in 0..pairs {
            for g in 0..count {
                let b = vals[(2 * q + 1) * count + g];
                nvals[q * count + g] = b.wrapping_add(out.relu[q * count + g]);
                if with_index {
                    nidx[q * count + g] =
                        idx[(2 * q + 1) * count + g].wrapping_add(out.products[0][q * count + g]);
                }
            }
        }
        if width % 2 == 1 {
            let last = width - 1;
            nvals[pairs * count..].copy_from_slice(&vals[last * count..(last + 1) * count]);
            if with_index {
                nidx[pairs * count..].copy_from_slice(&idx[last * count..(last + 1) * count]);
            }
        }
        vals = nvals;
        idx = nidx;
        width = next_width;
    }
    Ok((vals, idx))
}

/// Shares of the argmax of each row of a `rows x cols` shared matrix.
pub fn argmax(
    party: &mut Party,
    rows: usize,
    cols: usize,
    x: &[u64],
) -> Result<Vec<u64>, SmpcError> {
    Ok(max_groups(party, rows, cols, x, true)?.1)
}

/// [`argmax`] comparing `m` bits (see [`max_groups_at`]).
pub fn argmax_at(
    party: &mut Party,
    m: u32,
    rows: usize,
    cols: usize,
    x: &[u64],
) -> Result<Vec<u64>, SmpcError> {
    Ok(max_groups_at(party, m, rows, cols, x, true)?.1)
}

/// [`argmax_at`] with faithful comparisons (see [`max_groups_skip`]): the
/// index of a member at most `L 2^k` below the row's maximum.
pub fn argmax_skip(
    party: &mut Party,
    m: u32,
    k: u32,
    rows: usize,
    cols: usize,
    x: &[u64],
) -> Result<Vec<u64>, SmpcError> {
    Ok(max_groups_skip(party, m, k, rows, cols, x, true)?.1)
}

/// [`drelu_at`] with the faithful comparison (see [`select_skip`]).
pub fn drelu_skip(
    party: &mut Party,
    m: u32,
    k: u32,
    n: usize,
    x: &[u64],
) -> Result<Vec<u64>, SmpcError> {
    Ok(select_skip(party, m, k, n, x, &[])?.drelu)
}
