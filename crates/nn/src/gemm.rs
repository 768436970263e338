//! Row-major single-precision matrix products on top of nalgebra.
//!
//! Every buffer in this crate is a row-major `&[f32]`. nalgebra matrices are
//! column-major, so a row-major `m x k` matrix is viewed as a nalgebra
//! [`DMatrixView`] with row stride `k` and column stride `1`; a transpose is the
//! same slice with the strides swapped. No data is copied: nalgebra's `gemm`
//! on dynamically sized views dispatches to the `matrixmultiply` crate's SIMD
//! `sgemm` with these strides.

use nalgebra::{DMatrixView, DMatrixViewMut};

/// Computes `C = alpha * op(A) * op(B) + beta * C`, all row-major.
///
/// `op(A)` is `m x k`: if `ta` is false `a` holds an `m x k` row-major matrix,
/// otherwise `a` holds a `k x m` row-major matrix that is used transposed.
/// Likewise `op(B)` is `k x n` (`b` is `k x n`, or `n x k` if `tb`).
/// `c` is `m x n` row-major. If `beta == 0`, `c` is not read.
///
/// # Panics
/// If a slice is shorter than its dimensions require (an internal invariant:
/// callers size every buffer from the layer shapes).
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    ta: bool,
    b: &[f32],
    tb: bool,
    beta: f32,
    c: &mut [f32],
) {
    if m == 0 || n == 0 {
        return;
    }
    if m <= SMALL || n <= SMALL || k <= SMALL {
        // nalgebra falls back to a gemv loop below its `matrixmultiply`
        // threshold, and that loop mishandles non-unit row strides of views;
        // tiny products are cheap, so do them directly.
        small_gemm(m, n, k, alpha, a, ta, b, tb, beta, c);
        return;
    }
    let mut cv = DMatrixViewMut::from_slice_with_strides_mut(&mut c[..m * n], m, n, n, 1);
    if k == 0 {
        if beta == 0.0 {
            cv.fill(0.0);
        } else {
            cv *= beta;
        }
        return;
    }
    let av = if ta {
        DMatrixView::from_slice_with_strides(&a[..m * k], m, k, 1, m)
    } else {
        DMatrixView::from_slice_with_strides(&a[..m * k], m, k, k, 1)
    };
    let bv = if tb {
        DMatrixView::from_slice_with_strides(&b[..k * n], k, n, 1, k)
    } else {
        DMatrixView::from_slice_with_strides(&b[..k * n], k, n, n, 1)
    };
    cv.gemm(alpha, &av, &bv, beta);
}

/// nalgebra's threshold for dispatching to `matrixmultiply`.
const SMALL: usize = 5;

#[allow(clippy::too_many_arguments)]
fn small_gemm(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    ta: bool,
    b: &[f32],
    tb: bool,
    beta: f32,
    c: &mut [f32],
) {
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f32;
            for p in 0..k {
                let x = if ta { a[p * m + i] } else { a[i * k + p] };
                let y = if tb { b[j * k + p] } else { b[p * n + j] };
                s += x * y;
            }
            let cij = &mut c[i * n + j];
            *cij = if beta == 0.0 {
                alpha * s
            } else {
                alpha * s + beta * *cij
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, n: usize, k: usize, a: &[f32], ta: bool, b: &[f32], tb: bool) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0;
                for p in 0..k {
                    let x = if ta { a[p * m + i] } else { a[i * k + p] };
                    let y = if tb { b[j * k + p] } else { b[p * n + j] };
                    s += x * y;
                }
                c[i * n + j] = s;
            }
        }
        c
    }

    #[test]
    fn matches_naive_in_all_transpositions() {
        for &(m, n, k) in &[(7, 9, 11), (3, 2, 4), (16, 1, 30), (1, 12, 8)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32) - 6.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 11) as f32) - 5.0).collect();
            for ta in [false, true] {
                for tb in [false, true] {
                    let want = naive(m, n, k, &a, ta, &b, tb);
                    let mut c = vec![1.0; m * n];
                    sgemm(m, n, k, 1.0, &a, ta, &b, tb, 0.0, &mut c);
                    assert_eq!(c, want, "m{m} n{n} k{k} ta{ta} tb{tb}");
                    let mut c2 = vec![1.0; m * n];
                    sgemm(m, n, k, 2.0, &a, ta, &b, tb, 1.0, &mut c2);
                    let want2: Vec<f32> = want.iter().map(|v| 2.0 * v + 1.0).collect();
                    assert_eq!(c2, want2);
                }
            }
        }
    }
}
