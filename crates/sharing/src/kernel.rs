//! The ring matmul kernel: `C += A * B` over Z_2^64 with the right operand
//! `B` packed once ([`PackedRhs`]). [`crate::RingTensor::matmul`] uses it, and
//! so do the SMPC protocols.
//!
//! In private inference every right operand is fixed for the whole run (the
//! opened masked weights `F`, the weight masks `B_j`), so packing is paid once
//! per model, not per batch. The kernel is register-blocked (6 rows x 16
//! columns of accumulators, i.e. twelve 512-bit registers), cache-blocked over
//! `k`, and runs row chunks on rayon. The micro-kernel is chosen by
//! [`ppml_simd::backend`] (once per process; `PPML_BACKEND` forces one):
//!
//! * AVX-512: `vpmullq`, a 64-bit lane multiply, 8 lanes per instruction;
//!   each 6 x 16 tile of `C` stays in registers over a `k` block and is
//!   added to `C` in place, and `A` is read where it lies (broadcasts from
//!   its rows), with no packed copy of `A` and no accumulator pass
//!   (`chunk_avx512`; those two passes cost about a fifth of the time);
//! * AVX2 (no 64-bit multiply): each product is built from 32-bit pieces,
//!   `a*b = lo(a)lo(b) + ((lo(a)hi(b) + hi(a)lo(b)) << 32) mod 2^64`. The
//!   `lo*lo` term is one `vpmuludq`; both cross terms come from ONE `vpmulld`
//!   of `a` against `b` with its 32-bit halves swapped (the two 32-bit lane
//!   products are `lo(a)hi(b)` and `hi(a)lo(b)`, each mod 2^32, which is all
//!   the shift keeps). Cross terms are summed per 32-bit lane in a second
//!   accumulator and folded in once per tile: two multiplies and two adds per
//!   four products. Measured against the alternatives on an AMD EPYC (Zen 4)
//!   core (docs/BENCHMARKS.md): three `vpmuludq` per product (the textbook
//!   split) ran at 55% of this speed; pre-swapping B or A in memory instead
//!   of one `vpshufd` per B vector, or 3-row or 6-row x 4-column sub-tiles,
//!   ran at 70-95%. An
//!   exact split into f64 GEMMs needs 6 to 10 f64 products per ring product
//!   (53-bit mantissas, 64-bit results) and was not pursued.
//! * portable: plain wrapping Rust, for every other CPU.
//!
//! Every backend gives bit-identical results (tested against the portable
//! kernel on random shapes, including edge tiles).

use crate::SharingError;
use ppml_simd::Backend;
use rayon::prelude::*;

/// Rows of the register tile.
pub const MR: usize = 6;
/// Columns of the register tile (two 512-bit vectors of u64).
pub const NR: usize = 16;
/// Depth of a k-block: an `KC x NR` panel block is 16 KiB and stays in L1.
const KC: usize = 128;
/// Rows per rayon task (a multiple of `MR`).
const ROW_CHUNK: usize = 48;

/// A `k x n` right operand packed into `NR`-wide column panels (zero padded).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PackedRhs {
    k: usize,
    n: usize,
    /// Panel `p` is `k x NR` row-major at `[p * k * NR ..]`.
    data: Vec<u64>,
}

impl PackedRhs {
    /// Packs the row-major `k x n` matrix `b`.
    pub fn pack(b: &[u64], k: usize, n: usize) -> Result<Self, SharingError> {
        if Some(b.len()) != k.checked_mul(n) {
            return Err(SharingError::BadLength {
                shape: vec![k, n],
                expected: k.saturating_mul(n),
                got: b.len(),
            });
        }
        let panels = n.div_ceil(NR);
        let mut data = vec![0u64; panels * k * NR];
        if k > 0 {
            data.par_chunks_mut(k * NR)
                .enumerate()
                .for_each(|(p, panel)| {
                    let j0 = p * NR;
                    let w = NR.min(n - j0);
                    for kk in 0..k {
                        panel[kk * NR..kk * NR + w]
                            .copy_from_slice(&b[kk * n + j0..kk * n + j0 + w]);
                    }
                });
        }
        Ok(Self { k, n, data })
    }

    /// Inner dimension.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Number of columns.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Unpacks back to a row-major `k x n` matrix (tests, debugging).
    pub fn unpack(&self) -> Vec<u64> {
        let mut out = vec![0u64; self.k * self.n];
        for p in 0..self.n.div_ceil(NR) {
            let j0 = p * NR;
            let w = NR.min(self.n - j0);
            for kk in 0..self.k {
                out[kk * self.n + j0..kk * self.n + j0 + w]
                    .copy_from_slice(&self.data[p * self.k * NR + kk * NR..][..w]);
            }
        }
        out
    }
}

/// True when the AVX-512 micro-kernel is used (the process's backend).
pub fn uses_avx512() -> bool {
    ppml_simd::backend() == Backend::Avx512
}

/// `c (m x n) += a (m x k) * rhs (k x n)`, wrapping, all row-major, on the
/// process's backend ([`ppml_simd::backend`]).
pub fn matmul_acc(a: &[u64], m: usize, rhs: &PackedRhs, c: &mut [u64]) -> Result<(), SharingError> {
    matmul_acc_with(ppml_simd::backend(), a, m, rhs, c)
}

/// [`matmul_acc`] on an explicit backend (tests and benches compare them).
/// A backend this CPU does not support runs the portable micro-kernel.
pub fn matmul_acc_with(
    backend: Backend,
    a: &[u64],
    m: usize,
    rhs: &PackedRhs,
    c: &mut [u64],
) -> Result<(), SharingError> {
    let (k, n) = (rhs.k, rhs.n);
    if Some(a.len()) != m.checked_mul(k) || Some(c.len()) != m.checked_mul(n) {
        return Err(SharingError::MatmulShape {
            left: vec![m, k, a.len()],
            right: vec![k, n, c.len()],
        });
    }
    if m == 0 || n == 0 || k == 0 {
        return Ok(());
    }
    let backend = if backend.is_supported() {
        backend
    } else {
        Backend::Portable
    };
    c.par_chunks_mut(ROW_CHUNK * n)
        .zip(a.par_chunks(ROW_CHUNK * k))
        .for_each(|(c_rows, a_rows)| {
            let rows = c_rows.len() / n;
            chunk_kernel(a_rows, rows, rhs, c_rows, backend);
        });
    Ok(())
}

/// `a * rhs` into a fresh `m x n` matrix.
pub fn matmul(a: &[u64], m: usize, rhs: &PackedRhs) -> Result<Vec<u64>, SharingError> {
    matmul_with(ppml_simd::backend(), a, m, rhs)
}

/// [`matmul`] on an explicit backend.
pub fn matmul_with(
    backend: Backend,
    a: &[u64],
    m: usize,
    rhs: &PackedRhs,
) -> Result<Vec<u64>, SharingError> {
    let len = m.checked_mul(rhs.n).ok_or(SharingError::MatmulShape {
        left: vec![m, rhs.k],
        right: vec![rhs.k, rhs.n],
    })?;
    let mut c = vec![0u64; len];
    matmul_acc_with(backend, a, m, rhs, &mut c)?;
    Ok(c)
}

fn chunk_kernel(a: &[u64], rows: usize, rhs: &PackedRhs, c: &mut [u64], backend: Backend) {
    #[cfg(target_arch = "x86_64")]
    if backend == Backend::Avx512 {
        // SAFETY: callers only pass a backend the CPU supports
        // (`matmul_acc_with` replaces an unsupported one by portable).
        unsafe { chunk_avx512(a, rows, rhs, c) };
        return;
    }
    let (k, n) = (rhs.k, rhs.n);
    let tiles = rows.div_ceil(MR);
    // Pack the chunk's rows into MR-row micro-panels, k-major: apack[t][kk*MR + r].
    let mut apack = vec![0u64; tiles * k * MR];
    for t in 0..tiles {
        let panel = &mut apack[t * k * MR..(t + 1) * k * MR];
        for r in 0..MR.min(rows - t * MR) {
            let row = &a[(t * MR + r) * k..(t * MR + r + 1) * k];
            for (kk, &v) in row.iter().enumerate() {
                panel[kk * MR + r] = v;
            }
        }
    }
    let panels = n.div_ceil(NR);
    let mut acc = [[0u64; NR]; MR];
    for k0 in (0..k).step_by(KC) {
        let kc = KC.min(k - k0);
        for p in 0..panels {
            let j0 = p * NR;
            let w = NR.min(n - j0);
            let bp = &rhs.data[p * k * NR + k0 * NR..p * k * NR + (k0 + kc) * NR];
            for t in 0..tiles {
                let ap = &apack[t * k * MR + k0 * MR..t * k * MR + (k0 + kc) * MR];
                micro(kc, ap, bp, &mut acc, backend);
                let valid = MR.min(rows - t * MR);
                for (r, acc_r) in acc.iter().enumerate().take(valid) {
                    let crow = &mut c[(t * MR + r) * n + j0..(t * MR + r) * n + j0 + w];
                    for (cv, &av) in crow.iter_mut().zip(acc_r.iter()) {
                        *cv = cv.wrapping_add(av);
                    }
                }
            }
        }
    }
}

/// `acc = a_panel (kc x MR, k-major) * b_panel (kc x NR)`, on `backend`.
/// `backend` must be supported by the CPU (checked by the callers:
/// [`matmul_acc_with`] replaces an unsupported one by portable).
#[inline]
fn micro(kc: usize, a: &[u64], b: &[u64], acc: &mut [[u64; NR]; MR], backend: Backend) {
    // Real checks, not debug ones: the SIMD kernels read kc*MR and kc*NR
    // elements through raw pointers.
    assert!(a.len() >= kc * MR && b.len() >= kc * NR);
    #[cfg(target_arch = "x86_64")]
    match backend {
        Backend::Avx2 => {
            debug_assert!(Backend::Avx2.is_supported());
            // SAFETY: as above, with AVX2 available.
            unsafe { micro_avx2(kc, a, b, acc) };
            return;
        }
        // AVX-512 tiles run in `chunk_avx512` (no packed panel, no
        // accumulator); this path is portable.
        Backend::Avx512 | Backend::Portable => {}
    }
    let _ = backend;
    micro_portable(kc, a, b, acc);
}

#[inline(never)]
fn micro_portable(kc: usize, a: &[u64], b: &[u64], acc: &mut [[u64; NR]; MR]) {
    *acc = [[0u64; NR]; MR];
    for (av, bv) in a.chunks_exact(MR).zip(b.chunks_exact(NR)).take(kc) {
        for r in 0..MR {
            let x = av[r];
            for j in 0..NR {
                acc[r][j] = acc[r][j].wrapping_add(x.wrapping_mul(bv[j]));
            }
        }
    }
}

/// [`chunk_kernel`] on AVX-512 without packing `a` and without an
/// accumulator round trip: each `MR x NR` tile of `c` is loaded into twelve
/// registers, accumulates one `KC`-deep block reading `a`'s rows in place
/// (broadcasts from memory), and is stored back, masked at the right edge.
/// Rows past the chunk's end read row 0 of the tile and store into a scratch
/// row. (Packing `a` and adding a stored accumulator to `c` in a second pass
/// cost about a fifth of the matmul time.)
///
/// # Safety
/// The CPU must support AVX-512 F and DQ; `a` is `rows x k`, `c` is
/// `rows x n` (`k`, `n` from `rhs`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
unsafe fn chunk_avx512(a: &[u64], rows: usize, rhs: &PackedRhs, c: &mut [u64]) {
    let (k, n) = (rhs.k, rhs.n);
    // Real checks: the kernel reads and writes through raw pointers.
    assert!(
        a.len() >= rows * k && c.len() >= rows * n && rhs.data.len() >= n.div_ceil(NR) * k * NR
    );
    if rows == 0 {
        return;
    }
    let tiles = rows.div_ceil(MR);
    let panels = n.div_ceil(NR);
    let mut scratch = [0u64; NR];
    let ap = a.as_ptr();
    let cp = c.as_mut_ptr();
    let sp = scratch.as_mut_ptr();
    for k0 in (0..k).step_by(KC) {
        let kc = KC.min(k - k0);
        for p in 0..panels {
            let j0 = p * NR;
            let w = NR.min(n - j0);
            // SAFETY: panel p's block k0..k0+kc lies inside rhs.data (asserted).
            let bp = unsafe { rhs.data.as_ptr().add(p * k * NR + k0 * NR) };
            for t in 0..tiles {
                let valid = MR.min(rows - t * MR);
                let mut arow = [ap; MR];
                let mut crow = [sp; MR];
                for r in 0..MR {
                    let rr = if r < valid { t * MR + r } else { t * MR };
                    // SAFETY: rr < rows, so row rr's elements k0..k0+kc are in
                    // `a` and its columns j0..j0+w in `c`.
                    unsafe {
                        arow[r] = ap.add(rr * k + k0);
                        if r < valid {
                            crow[r] = cp.add(rr * n + j0);
                        }
                    }
                }
                // SAFETY: each arow[r] has kc readable elements, bp has
                // kc*NR, each crow[r] has w writable elements (the scratch
                // row has NR); AVX-512 F/DQ are available (caller).
                unsafe { micro_avx512_direct(kc, &arow, bp, &crow, w) };
            }
        }
    }
}

/// `c_r[0..w] += sum_kk a_r[kk] * b[kk*NR .. kk*NR + w]` for the six rows.
///
/// # Safety
/// AVX-512 F/DQ available; each `a[r]` readable for `kc` elements, `b` for
/// `kc * NR`, each `c[r]` readable and writable for `w <= NR` elements.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
#[inline]
unsafe fn micro_avx512_direct(
    kc: usize,
    a: &[*const u64; MR],
    b: *const u64,
    c: &[*mut u64; MR],
    w: usize,
) {
    use std::arch::x86_64::*;
    let m0: __mmask8 = if w >= 8 {
        0xFF
    } else {
        ((1u32 << w) - 1) as u8
    };
    let m1: __mmask8 = if w >= 16 {
        0xFF
    } else if w > 8 {
        ((1u32 << (w - 8)) - 1) as u8
    } else {
        0
    };
    // SAFETY (whole body): the preconditions bound every pointer access;
    // masked lanes are not accessed.
    unsafe {
        let ld = |p: *mut u64| {
            (
                _mm512_maskz_loadu_epi64(m0, p.cast()),
                _mm512_maskz_loadu_epi64(m1, p.add(8).cast()),
            )
        };
        let (mut c00, mut c01) = ld(c[0]);
        let (mut c10, mut c11) = ld(c[1]);
        let (mut c20, mut c21) = ld(c[2]);
        let (mut c30, mut c31) = ld(c[3]);
        let (mut c40, mut c41) = ld(c[4]);
        let (mut c50, mut c51) = ld(c[5]);
        let (a0, a1, a2, a3, a4, a5) = (a[0], a[1], a[2], a[3], a[4], a[5]);
        for kk in 0..kc {
            let b0 = _mm512_loadu_si512(b.add(kk * NR).cast());
            let b1 = _mm512_loadu_si512(b.add(kk * NR + 8).cast());
            let x = _mm512_set1_epi64(*a0.add(kk) as i64);
            c00 = _mm512_add_epi64(c00, _mm512_mullo_epi64(x, b0));
            c01 = _mm512_add_epi64(c01, _mm512_mullo_epi64(x, b1));
            let x = _mm512_set1_epi64(*a1.add(kk) as i64);
            c10 = _mm512_add_epi64(c10, _mm512_mullo_epi64(x, b0));
            c11 = _mm512_add_epi64(c11, _mm512_mullo_epi64(x, b1));
            let x = _mm512_set1_epi64(*a2.add(kk) as i64);
            c20 = _mm512_add_epi64(c20, _mm512_mullo_epi64(x, b0));
            c21 = _mm512_add_epi64(c21, _mm512_mullo_epi64(x, b1));
            let x = _mm512_set1_epi64(*a3.add(kk) as i64);
            c30 = _mm512_add_epi64(c30, _mm512_mullo_epi64(x, b0));
            c31 = _mm512_add_epi64(c31, _mm512_mullo_epi64(x, b1));
            let x = _mm512_set1_epi64(*a4.add(kk) as i64);
            c40 = _mm512_add_epi64(c40, _mm512_mullo_epi64(x, b0));
            c41 = _mm512_add_epi64(c41, _mm512_mullo_epi64(x, b1));
            let x = _mm512_set1_epi64(*a5.add(kk) as i64);
            c50 = _mm512_add_epi64(c50, _mm512_mullo_epi64(x, b0));
            c51 = _mm512_add_epi64(c51, _mm512_mullo_epi64(x, b1));
        }
        let st = |p: *mut u64, v0: __m512i, v1: __m512i| {
            _mm512_mask_storeu_epi64(p.cast(), m0, v0);
            _mm512_mask_storeu_epi64(p.add(8).cast(), m1, v1);
        };
        st(c[0], c00, c01);
        st(c[1], c10, c11);
        st(c[2], c20, c21);
        st(c[3], c30, c31);
        st(c[4], c40, c41);
        st(c[5], c50, c51);
    }
}

/// AVX2 micro-kernel: the 6 x 16 tile as six 2-row x 8-column sub-tiles
/// (two 4-lane vectors per row: 8 accumulators, 2 B vectors, their 2
/// swapped copies and a broadcast in 16 registers, no spills), each vector
/// with a `lo*lo` accumulator (64-bit adds) and a cross-term accumulator
/// (32-bit adds); see the module docs for the arithmetic.
///
/// # Safety
/// The CPU must support AVX2; `a` must hold at least `kc * MR` and `b` at
/// least `kc * NR` elements.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn micro_avx2(kc: usize, a: &[u64], b: &[u64], acc: &mut [[u64; NR]; MR]) {
    // SAFETY: forwarded preconditions; each call covers rows r0..r0+2 <= MR
    // and columns c0..c0+8 <= NR.
    unsafe {
        for c0 in [0, 8] {
            sub_tile_avx2::<2>(kc, a, b, acc, 0, c0);
            sub_tile_avx2::<2>(kc, a, b, acc, 2, c0);
            sub_tile_avx2::<2>(kc, a, b, acc, 4, c0);
        }
    }
}

/// Rows `r0..r0+R`, columns `c0..c0+8` of the tile.
///
/// # Safety
/// AVX2 available; `a.len() >= kc * MR`, `b.len() >= kc * NR`,
/// `r0 + R <= MR`, `c0 + 8 <= NR`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn sub_tile_avx2<const R: usize>(
    kc: usize,
    a: &[u64],
    b: &[u64],
    acc: &mut [[u64; NR]; MR],
    r0: usize,
    c0: usize,
) {
    use std::arch::x86_64::*;
    debug_assert!(r0 + R <= MR && c0 + 8 <= NR);
    debug_assert!(a.len() >= kc * MR && b.len() >= kc * NR);
    let z = _mm256_setzero_si256();
    let mut lo = [[z; 2]; R];
    let mut cross = [[z; 2]; R];
    let ap = a.as_ptr();
    let bp = b.as_ptr();
    for kk in 0..kc {
        // SAFETY: kk < kc; the loads read b[kk*NR + c0 .. +8] and
        // a[kk*MR + r0 .. +R], inside the slices by the preconditions.
        unsafe {
            let b0 = _mm256_loadu_si256(bp.add(kk * NR + c0).cast());
            let b1 = _mm256_loadu_si256(bp.add(kk * NR + c0 + 4).cast());
            // 32-bit halves swapped: (hi(b), lo(b)) in each 64-bit lane.
            let s0 = _mm256_shuffle_epi32::<0b10_11_00_01>(b0);
            let s1 = _mm256_shuffle_epi32::<0b10_11_00_01>(b1);
            for r in 0..R {
                let x = _mm256_set1_epi64x(*ap.add(kk * MR + r0 + r) as i64);
                lo[r][0] = _mm256_add_epi64(lo[r][0], _mm256_mul_epu32(x, b0));
                lo[r][1] = _mm256_add_epi64(lo[r][1], _mm256_mul_epu32(x, b1));
                cross[r][0] = _mm256_add_epi32(cross[r][0], _mm256_mullo_epi32(x, s0));
                cross[r][1] = _mm256_add_epi32(cross[r][1], _mm256_mullo_epi32(x, s1));
            }
        }
    }
    for r in 0..R {
        for h in 0..2 {
            // Sum the two 32-bit cross terms of each lane and move the sum to
            // the high half: ((x + (x >> 32)) << 32).
            let x = cross[r][h];
            let folded = _mm256_slli_epi64::<32>(_mm256_add_epi64(x, _mm256_srli_epi64::<32>(x)));
            let v = _mm256_add_epi64(lo[r][h], folded);
            // SAFETY: row r0+r < MR, columns c0+4h .. +4 <= NR: in bounds of acc.
            unsafe {
                _mm256_storeu_si256(acc[r0 + r].as_mut_ptr().add(c0 + 4 * h).cast(), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::matmul_reference;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn matches_reference(m in 0usize..40, k in 0usize..300, n in 0usize..40, seed in any::<u64>()) {
            let mut rng = ppml_random::PublicSeed::new(seed).rng("test/kernel");
            let a = crate::prg::random_u64s(&mut rng, m * k);
            let b = crate::prg::random_u64s(&mut rng, k * n);
            let packed = PackedRhs::pack(&b, k, n).unwrap();
            prop_assert_eq!(packed.unpack(), b.clone());
            let mut c = crate::prg::random_u64s(&mut rng, m * n);
            let c0 = c.clone();
            matmul_acc(&a, m, &packed, &mut c).unwrap();
            let r = matmul_reference(&a, &b, m, k, n);
            for i in 0..m * n {
                prop_assert_eq!(c[i], c0[i].wrapping_add(r[i]));
            }
        }
    }

    proptest! {
        // Every backend this CPU has gives bit-identical results to the
        // portable kernel, on shapes that are not multiples of the tiles
        // (MR = 6, NR = 16, KC = 128, ROW_CHUNK = 48) as well as ones that are.
        #[test]
        fn backends_match_portable(
            m in prop_oneof![0usize..20, 40usize..100],
            k in prop_oneof![1usize..20, 120usize..140, 250usize..270],
            n in prop_oneof![1usize..40, Just(16usize), Just(48usize)],
            seed in any::<u64>(),
        ) {
            let mut rng = ppml_random::PublicSeed::new(seed).rng("test/kernel");
            let a = crate::prg::random_u64s(&mut rng, m * k);
            let b = crate::prg::random_u64s(&mut rng, k * n);
            let c0 = crate::prg::random_u64s(&mut rng, m * n);
            let packed = PackedRhs::pack(&b, k, n).unwrap();
            let mut want = c0.clone();
            matmul_acc_with(Backend::Portable, &a, m, &packed, &mut want).unwrap();
            for backend in Backend::available() {
                let mut got = c0.clone();
                matmul_acc_with(backend, &a, m, &packed, &mut got).unwrap();
                prop_assert_eq!(&got, &want, "backend {}", backend);
            }
        }
    }

    #[test]
    fn micro_kernels_agree_on_extreme_values() {
        // All-ones words exercise every carry of the 32-bit piece arithmetic.
        let kc = 131;
        let mut rng = ppml_random::PublicSeed::new(3).rng("test/kernel");
        let mut a = crate::prg::random_u64s(&mut rng, kc * MR);
        let mut b = crate::prg::random_u64s(&mut rng, kc * NR);
        for (i, v) in a.iter_mut().enumerate().filter(|(i, _)| i % 3 == 0) {
            *v = if i % 2 == 0 { u64::MAX } else { 0xFFFF_FFFF };
        }
        for (i, v) in b.iter_mut().enumerate().filter(|(i, _)| i % 5 == 0) {
            *v = if i % 2 == 0 { u64::MAX } else { 1 << 63 };
        }
        let mut want = [[0u64; NR]; MR];
        micro(kc, &a, &b, &mut want, Backend::Portable);
        for backend in Backend::available() {
            let mut got = [[7u64; NR]; MR];
            micro(kc, &a, &b, &mut got, backend);
            assert_eq!(got, want, "backend {backend}");
        }
        // and the same through the whole kernel (AVX-512 runs its tiles in
        // `chunk_avx512`, not `micro`), from a zero and a non-zero `c`
        let a_rows: Vec<u64> = (0..MR * kc).map(|i| a[(i % kc) * MR + i / kc]).collect();
        let rhs = PackedRhs::pack(&b, kc, NR).unwrap();
        let c0: Vec<u64> = (0..(MR * NR) as u64)
            .map(|i| i.wrapping_mul(u64::MAX / 7))
            .collect();
        for backend in Backend::available() {
            for start in [vec![0u64; MR * NR], c0.clone()] {
                let mut c = start.clone();
                matmul_acc_with(backend, &a_rows, MR, &rhs, &mut c).unwrap();
                for i in 0..MR * NR {
                    assert_eq!(
                        c[i],
                        start[i].wrapping_add(want[i / NR][i % NR]),
                        "{backend}"
                    );
                }
            }
        }
        // and the portable tile is the plain sum of products
        for r in 0..MR {
            for j in 0..NR {
                let s = (0..kc).fold(0u64, |s, kk| {
                    s.wrapping_add(a[kk * MR + r].wrapping_mul(b[kk * NR + j]))
                });
                assert_eq!(want[r][j], s);
            }
        }
    }

    #[test]
    fn unsupported_backend_falls_back_safely() {
        // Asking for every backend (also ones this CPU lacks) never runs an
        // instruction the CPU does not have and gives the same answer.
        let mut rng = ppml_random::PublicSeed::new(9).rng("test/kernel");
        let (m, k, n) = (13, 29, 21);
        let a = crate::prg::random_u64s(&mut rng, m * k);
        let b = crate::prg::random_u64s(&mut rng, k * n);
        let p = PackedRhs::pack(&b, k, n).unwrap();
        let want = matmul_reference(&a, &b, m, k, n);
        for backend in Backend::ALL {
            assert_eq!(matmul_with(backend, &a, m, &p).unwrap(), want);
        }
    }

    #[test]
    fn shape_errors() {
        let p = PackedRhs::pack(&[1, 2, 3, 4], 2, 2).unwrap();
        assert!(PackedRhs::pack(&[1, 2, 3], 2, 2).is_err());
        let mut c = vec![0; 4];
        assert!(matmul_acc(&[1, 2, 3], 2, &p, &mut c).is_err());
        assert_eq!(matmul(&[1, 0, 0, 1], 2, &p).unwrap(), vec![1, 2, 3, 4]);
    }
}
