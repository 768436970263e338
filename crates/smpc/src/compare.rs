//! Comparisons: DReLU, ReLU and selection, via a single PrivateCompare per
//! element over Z_67 (SecureNN's PrivateCompare, used Falcon-style: one
//! comparison gives the MSB directly, no ShareConvert), comparing only the
//! `m = cmp_bits` low bits that can be non-zero.
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
//! Three rounds, whatever the number of elements. Draw order:
//! `S02`: r0, t0, rho0, then v0, rv0, tv0; `S12`: r1, t1;
//! `S01`: beta, s, u, rot. rho0 and the `S01` masks are drawn chunk by chunk
//! (chunks of 8000 elements, in order).

use crate::party::{P0, P1, P2, Party, Prg, Stream, fill_below, fill_z67, fill_z67_nonzero};
use crate::{SmpcError, error::expect_len};

const P: u32 = 67;
/// Elements per chunk of local PrivateCompare work.
const CHUNK: usize = 8000;

/// This party's shares of the outputs of [`select`] (empty for P2).
#[derive(Clone, Debug, Default)]
pub struct SelectOut {
    /// Shares of `DReLU(x) = [x >= 0]` (as a ring integer 0/1).
    pub drelu: Vec<u64>,
    /// Shares of `ReLU(x) = x * DReLU(x)`.
    pub relu: Vec<u64>,
    /// For each payload `y`, shares of `y * DReLU(x)`.
    pub products: Vec<Vec<u64>>,
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
    /// Draws the masks for `n` comparisons of `m` bits (from `S01`).
    pub fn draw(rng: &mut Prg, n: usize, m: usize) -> PcMasks {
        let mut beta = vec![0u8; n];
        fill_below(rng, &mut beta, 2);
        let mut s = vec![0u8; n * (m + 1)];
        fill_z67_nonzero(rng, &mut s);
        let mut u = vec![0u8; n * (m + 1)];
        fill_z67(rng, &mut u);
        let mut rot = vec![0u8; n];
        fill_below(rng, &mut rot, (m + 1) as u8);
        PcMasks { beta, s, u, rot }
    }
}

/// Computing party `j`'s PrivateCompare message for `n` elements: for each
/// element, `m + 1` values of Z_67 whose sums with the other party's values
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
    d: &mut Vec<u8>,
) {
    let n = c.len();
    let w = m + 1;
    let lead = u32::from(j == P0);
    let mut suffix = vec![0u32; n];
    d.clear();
    d.resize(n * w, 0);
    let neg: Vec<u32> = masks.beta.iter().map(|&b| b as u32).collect();
    // Positions from the most significant (i = m, bit m-1) down to the
    // appended bit (i = 0: x~ = 1, r~ = 0). Every intermediate stays below
    // 2^32 without reduction; one reduction mod 67 per output value.
    for i in (0..w).rev() {
        let s = &masks.s[i * n..(i + 1) * n];
        let u = &masks.u[i * n..(i + 1) * n];
        let out = &mut d[i * n..(i + 1) * n];
        let zero_rho;
        let r_row: &[u8] = if i == 0 {
            zero_rho = vec![0u8; n];
            &zero_rho
        } else {
            &rho[(i - 1) * n..i * n]
        };
        let shift = i.saturating_sub(1) as u32;
        let fixed_x = u64::from(i == 0);
        let iter = out
            .iter_mut()
            .zip(&c[..n])
            .zip(r_row)
            .zip(s.iter().zip(u))
            .zip(suffix.iter_mut().zip(&neg));
        for ((((o, &ce), &ri), (&sv, &uv)), (suf, &ng)) in iter {
            let xi = (((ce >> shift) & 1) | fixed_x) as u32;
            let ri = ri as u32;
            // diff = [j==0] x~_i - r~_i + 67, in [0, 68].
            let diff = lead * xi + P - ri;
            // (1 - 2 beta) diff, shifted by 2*67 to stay non-negative.
            let signed = if ng == 1 { 2 * P - diff } else { diff };
            let cval = signed + lead + *suf;
            let mask = if lead == 1 { uv as u32 } else { P - uv as u32 };
            *o = ((sv as u32 * cval + mask) % P) as u8;
            // w_i share: x~_i = 0 -> r~_i ; x~_i = 1 -> [j==0] - r~_i (+67).
            let wi = if xi == 0 { ri } else { lead + P - ri };
            *suf += wi;
        }
    }
    // Rotate each element's positions: position i of element e goes to row
    // (i + rot[e]) mod w. (CHUNK is not a multiple of 64, so the rows do not
    // alias in L1.)
    for i in 0..w {
        let row = &d[i * n..(i + 1) * n];
        for (e, (&v, &rot)) in row.iter().zip(&masks.rot[..n]).enumerate() {
            let t = i + rot as usize;
            let t = if t >= w { t - w } else { t };
            rotated[t * n + e] = v;
        }
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

/// P1's shares of the bits of `r mod 2^m`: `bit - rho0 mod 67`, position-major.
#[inline(always)]
fn rho_correction_impl(m: usize, r: &[u64], rho0: &[u8], rho1: &mut [u8]) {
    let n = r.len();
    for i in 0..m {
        let (o, z) = (&mut rho1[i * n..(i + 1) * n], &rho0[i * n..(i + 1) * n]);
        for e in 0..n {
            let bit = ((r[e] >> i) & 1) as u8;
            let v = bit + 67 - z[e];
            o[e] = if v >= 67 { v - 67 } else { v };
        }
    }
}

/// Vectorised selection on `n` shared elements: shares of `DReLU(x)`,
/// `ReLU(x)` and `y * DReLU(x)` for each payload `y` (each `n` elements).
/// Requires `-2^m <= x < 2^m` (`m = cmp_bits`); payloads are unrestricted.
/// P2 passes empty slices for `x` and the payloads (their count matters).
pub fn select(
    party: &mut Party,
    n: usize,
    x: &[u64],
    payloads: &[&[u64]],
) -> Result<SelectOut, SmpcError> {
    let m = party.cfg.cmp_bits as usize;
    let np = payloads.len();
    let w = m + 1;
    // Local work runs in chunks of CHUNK elements (working set in L2); the
    // messages are chunk-major, position-major within a chunk.
    let chunks = || (0..n).step_by(CHUNK).map(move |s| (s, CHUNK.min(n - s)));
    match party.id {
        P2 => {
            let r0 = party.draw(Stream::S02, n)?;
            let t0 = party.draw(Stream::S02, n * np)?;
            let r1 = party.draw(Stream::S12, n)?;
            let t1 = party.draw(Stream::S12, n * np)?;
            let r: Vec<u64> = r0
                .iter()
                .zip(&r1)
                .map(|(a, b)| a.wrapping_add(*b))
                .collect();
            let t: Vec<u64> = t0
                .iter()
                .zip(&t1)
                .map(|(a, b)| a.wrapping_add(*b))
                .collect();
            let mut rho1 = vec![0u8; n * m];
            let mut rho0 = vec![0u8; CHUNK.min(n) * m];
            for (s0, len) in chunks() {
                let z = &mut rho0[..len * m];
                fill_z67(party.prg(Stream::S02)?, z);
                rho_correction(m, &r[s0..s0 + len], z, &mut rho1[s0 * m..(s0 + len) * m]);
            }
            party.net.send_bytes(P1, rho1)?;
            let d0 = party.net.recv_bytes(P0)?;
            let d1 = party.net.recv_bytes(P1)?;
            expect_len("compare message of p0", d0.len(), n * w)?;
            expect_len("compare message of p1", d1.len(), n * w)?;
            let mut bp = Vec::with_capacity(n);
            for (s0, len) in chunks() {
                bp.extend(pc_eval(
                    w,
                    &d0[s0 * w..(s0 + len) * w],
                    &d1[s0 * w..(s0 + len) * w],
                ));
            }
            let v0 = party.draw(Stream::S02, n)?;
            let rv0 = party.draw(Stream::S02, n)?;
            let tv0 = party.draw(Stream::S02, n * np)?;
            let mut reply = vec![0u64; n * (2 + np)];
            for e in 0..n {
                let v = u64::from(bp[e]) ^ ((r[e] >> m) & 1);
                reply[e] = v.wrapping_sub(v0[e]);
                reply[n + e] = r[e].wrapping_mul(v).wrapping_sub(rv0[e]);
                for p in 0..np {
                    let idx = p * n + e;
                    reply[2 * n + idx] = t[idx].wrapping_mul(v).wrapping_sub(tv0[idx]);
                }
            }
            party.net.send_u64s(P1, &reply)?;
            Ok(SelectOut::default())
        }
        j @ (P0 | P1) => {
            expect_len("select input", x.len(), n)?;
            for p in payloads {
                expect_len("select payload", p.len(), n)?;
            }
            let s = if j == P0 { Stream::S02 } else { Stream::S12 };
            let r = party.draw(s, n)?;
            let t = party.draw(s, n * np)?;
            let offset = if j == P0 { 1u64 << m } else { 0 };
            let mut msg = Vec::with_capacity(n * (1 + np));
            msg.extend((0..n).map(|e| x[e].wrapping_add(r[e]).wrapping_add(offset)));
            for (p, y) in payloads.iter().enumerate() {
                msg.extend((0..n).map(|e| y[e].wrapping_add(t[p * n + e])));
            }
            let opened = party.open(&msg)?;
            let (c, e_all) = opened.split_at(n);
            let rho_all = if j == P1 {
                let v = party.net.recv_bytes(P2)?;
                expect_len("bit shares", v.len(), n * m)?;
                v
            } else {
                Vec::new()
            };
            let mut d = vec![0u8; n * w];
            let mut beta = Vec::with_capacity(n);
            let (mut rho0, mut scratch) = (vec![0u8; CHUNK.min(n) * m], Vec::new());
            for (s0, len) in chunks() {
                let rho: &[u8] = if j == P0 {
                    let z = &mut rho0[..len * m];
                    fill_z67(party.prg(Stream::S02)?, z);
                    z
                } else {
                    &rho_all[s0 * m..(s0 + len) * m]
                };
                let masks = PcMasks::draw(party.prg(Stream::S01)?, len, m);
                pc_message_into(
                    j,
                    m,
                    &c[s0..s0 + len],
                    rho,
                    &masks,
                    &mut d[s0 * w..(s0 + len) * w],
                    &mut scratch,
                );
                beta.extend_from_slice(&masks.beta);
            }
            party.net.send_bytes(P2, d)?;
            let (v, rv, tv) = if j == P0 {
                let v = party.draw(Stream::S02, n)?;
                let rv = party.draw(Stream::S02, n)?;
                let tv = party.draw(Stream::S02, n * np)?;
                (v, rv, tv)
            } else {
                let mut reply = party.recv_len(P2, n * (2 + np), "select reply")?;
                let tv = reply.split_off(2 * n);
                let rv = reply.split_off(n);
                (reply, rv, tv)
            };
            let lead = u64::from(j == P0);
            let mut out = SelectOut {
                drelu: vec![0; n],
                relu: vec![0; n],
                products: vec![vec![0; n]; np],
            };
            for e in 0..n {
                let u = ((c[e] >> m) & 1) ^ u64::from(beta[e]);
                // (1 - 2u) as a ring element: 1 or -1.
                let sign = 1u64.wrapping_sub(u << 1);
                out.drelu[e] = (lead * u).wrapping_add(sign.wrapping_mul(v[e]));
                let xv = c[e]
                    .wrapping_sub(1u64 << m)
                    .wrapping_mul(v[e])
                    .wrapping_sub(rv[e]);
                out.relu[e] = u.wrapping_mul(x[e]).wrapping_add(sign.wrapping_mul(xv));
                for (p, y) in payloads.iter().enumerate() {
                    let idx = p * n + e;
                    let yv = e_all[idx].wrapping_mul(v[e]).wrapping_sub(tv[idx]);
                    out.products[p][e] = u.wrapping_mul(y[e]).wrapping_add(sign.wrapping_mul(yv));
                }
            }
            Ok(out)
        }
        other => Err(SmpcError::Role(format!("party {other} cannot compare"))),
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

/// Element-wise `max(a, b) = b + ReLU(a - b)` (`a - b` must be within the
/// compare range).
pub fn max2(party: &mut Party, n: usize, a: &[u64], b: &[u64]) -> Result<Vec<u64>, SmpcError> {
    if party.id == P2 {
        select(party, n, &[], &[])?;
        return Ok(Vec::new());
    }
    let diff: Vec<u64> = a.iter().zip(b).map(|(x, y)| x.wrapping_sub(*y)).collect();
    let r = select(party, n, &diff, &[])?.relu;
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
            select(party, n, &[], &payloads)?;
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
        let out = select(party, n, &diff, &payloads)?;
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
