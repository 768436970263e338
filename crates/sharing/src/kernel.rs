//! The ring matmul kernel: `C += A * B` over Z_2^64 with the right operand
//! `B` packed once ([`PackedRhs`]). [`crate::RingTensor::matmul`] uses it, and
//! so do the SMPC protocols.
//!
//! In private inference every right operand is fixed for the whole run (the
//! opened masked weights `F`, the weight masks `B_j`), so packing is paid once
//! per model, not per batch. The kernel is register-blocked (6 rows x 16
//! columns of accumulators, i.e. twelve 512-bit registers), cache-blocked over
//! `k`, and runs row chunks on rayon. An AVX-512 (`vpmullq`) micro-kernel is
//! selected at run time; the portable micro-kernel computes the same thing
//! everywhere else.

use crate::SharingError;
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

/// True when the AVX-512 micro-kernel is used on this CPU.
pub fn uses_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512dq")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `c (m x n) += a (m x k) * rhs (k x n)`, wrapping, all row-major.
pub fn matmul_acc(a: &[u64], m: usize, rhs: &PackedRhs, c: &mut [u64]) -> Result<(), SharingError> {
    let (k, n) = (rhs.k, rhs.n);
    if a.len() != m * k || c.len() != m * n {
        return Err(SharingError::MatmulShape {
            left: vec![m, k, a.len()],
            right: vec![k, n, c.len()],
        });
    }
    if m == 0 || n == 0 || k == 0 {
        return Ok(());
    }
    let avx = uses_avx512();
    c.par_chunks_mut(ROW_CHUNK * n)
        .zip(a.par_chunks(ROW_CHUNK * k))
        .for_each(|(c_rows, a_rows)| {
            let rows = c_rows.len() / n;
            chunk_kernel(a_rows, rows, rhs, c_rows, avx);
        });
    Ok(())
}

/// `a * rhs` into a fresh `m x n` matrix.
pub fn matmul(a: &[u64], m: usize, rhs: &PackedRhs) -> Result<Vec<u64>, SharingError> {
    let mut c = vec![0u64; m * rhs.n];
    matmul_acc(a, m, rhs, &mut c)?;
    Ok(c)
}

fn chunk_kernel(a: &[u64], rows: usize, rhs: &PackedRhs, c: &mut [u64], avx: bool) {
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
                micro(kc, ap, bp, &mut acc, avx);
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

#[inline]
fn micro(kc: usize, a: &[u64], b: &[u64], acc: &mut [[u64; NR]; MR], avx: bool) {
    debug_assert!(a.len() >= kc * MR && b.len() >= kc * NR);
    #[cfg(target_arch = "x86_64")]
    if avx {
        // SAFETY: `avx` is uses_avx512(), checked at run time, and the slices
        // hold at least kc*MR and kc*NR elements (asserted by the callers'
        // slicing), which is all the kernel reads.
        unsafe { micro_avx512(kc, a, b, acc) };
        return;
    }
    let _ = avx;
    micro_portable(kc, a, b, acc);
}

#[inline(always)]
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

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
unsafe fn micro_avx512(kc: usize, a: &[u64], b: &[u64], acc: &mut [[u64; NR]; MR]) {
    use std::arch::x86_64::*;
    let z = _mm512_setzero_si512();
    let (mut c00, mut c01, mut c10, mut c11, mut c20, mut c21) = (z, z, z, z, z, z);
    let (mut c30, mut c31, mut c40, mut c41, mut c50, mut c51) = (z, z, z, z, z, z);
    let ap = a.as_ptr();
    let bp = b.as_ptr();
    for kk in 0..kc {
        // SAFETY: kk < kc, b holds kc*NR elements and a kc*MR (see micro()).
        unsafe {
            let b0 = _mm512_loadu_si512(bp.add(kk * NR).cast());
            let b1 = _mm512_loadu_si512(bp.add(kk * NR + 8).cast());
            let row = ap.add(kk * MR);
            let x = _mm512_set1_epi64(*row as i64);
            c00 = _mm512_add_epi64(c00, _mm512_mullo_epi64(x, b0));
            c01 = _mm512_add_epi64(c01, _mm512_mullo_epi64(x, b1));
            let x = _mm512_set1_epi64(*row.add(1) as i64);
            c10 = _mm512_add_epi64(c10, _mm512_mullo_epi64(x, b0));
            c11 = _mm512_add_epi64(c11, _mm512_mullo_epi64(x, b1));
            let x = _mm512_set1_epi64(*row.add(2) as i64);
            c20 = _mm512_add_epi64(c20, _mm512_mullo_epi64(x, b0));
            c21 = _mm512_add_epi64(c21, _mm512_mullo_epi64(x, b1));
            let x = _mm512_set1_epi64(*row.add(3) as i64);
            c30 = _mm512_add_epi64(c30, _mm512_mullo_epi64(x, b0));
            c31 = _mm512_add_epi64(c31, _mm512_mullo_epi64(x, b1));
            let x = _mm512_set1_epi64(*row.add(4) as i64);
            c40 = _mm512_add_epi64(c40, _mm512_mullo_epi64(x, b0));
            c41 = _mm512_add_epi64(c41, _mm512_mullo_epi64(x, b1));
            let x = _mm512_set1_epi64(*row.add(5) as i64);
            c50 = _mm512_add_epi64(c50, _mm512_mullo_epi64(x, b0));
            c51 = _mm512_add_epi64(c51, _mm512_mullo_epi64(x, b1));
        }
    }
    let out = [c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51];
    for (i, v) in out.iter().enumerate() {
        // SAFETY: acc is MR x NR u64 = 12 vectors of 8; vector i goes to
        // row i/2, columns (i%2)*8 .. +8, in bounds.
        unsafe {
            _mm512_storeu_si512(acc[i / 2].as_mut_ptr().add((i % 2) * 8).cast(), *v);
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

    #[test]
    fn portable_and_avx_agree() {
        let mut rng = ppml_random::PublicSeed::new(3).rng("test/kernel");
        let a = crate::prg::random_u64s(&mut rng, 7 * MR);
        let b = crate::prg::random_u64s(&mut rng, 7 * NR);
        let mut x = [[0u64; NR]; MR];
        let mut y = [[0u64; NR]; MR];
        micro(7, &a, &b, &mut x, false);
        micro(7, &a, &b, &mut y, uses_avx512());
        assert_eq!(x, y);
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
