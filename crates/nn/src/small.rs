//! Linear-layer kernels for small batches (federated clients train with
//! batch 10): no packing, no allocation, each weight row streamed once.
//!
//! For batches this small `matrixmultiply` spends most of its time packing the
//! weight matrix and allocating its packing buffer. These loops instead walk
//! the `out x in` weight rows once per pass with the batch rows kept in L1.
//! Compiled twice: generic, and with AVX2+FMA for the AVX2 and AVX-512
//! backends of `ppml-simd` (chosen once per process; `PPML_BACKEND` forces one).

/// Batches up to this size use these kernels.
pub const SMALL_BATCH: usize = 16;

#[inline(always)]
fn madd<const F: bool>(a: f32, b: f32, c: f32) -> f32 {
    if F { a.mul_add(b, c) } else { a * b + c }
}

#[inline(always)]
fn dot<const F: bool>(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if F {
        // SAFETY: F is only true inside functions compiled with avx2+fma,
        // which are only called after run-time detection.
        return unsafe { x86::dot(a, b) };
    }
    dot_portable::<F>(a, b)
}

#[inline(always)]
fn dot_portable<const F: bool>(a: &[f32], b: &[f32]) -> f32 {
    const L: usize = 32;
    let mut acc = [0.0f32; L];
    let (ac, ar) = a.split_at(a.len() / L * L);
    let (bc, br) = b.split_at(ac.len());
    for (x, y) in ac.chunks_exact(L).zip(bc.chunks_exact(L)) {
        for j in 0..L {
            acc[j] = madd::<F>(x[j], y[j], acc[j]);
        }
    }
    let mut s = 0.0;
    for (x, y) in ar.iter().zip(br) {
        s = madd::<F>(*x, *y, s);
    }
    // fixed-order tree sum (deterministic)
    let mut w = L;
    while w > 1 {
        w /= 2;
        for j in 0..w {
            acc[j] += acc[j + w];
        }
    }
    acc[0] + s
}

#[inline(always)]
fn axpy<const F: bool>(a: f32, x: &[f32], y: &mut [f32]) {
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi = madd::<F>(a, xi, *yi);
    }
}

#[inline(always)]
fn forward_impl<const F: bool>(
    x: &[f32],
    batch: usize,
    w: &[f32],
    bias: &[f32],
    nin: usize,
    nout: usize,
    y: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if F {
        // SAFETY: as in `dot`.
        unsafe { x86::forward(x, batch, w, bias, nin, nout, y) };
        return;
    }
    for o in 0..nout {
        let wr = &w[o * nin..(o + 1) * nin];
        for b in 0..batch {
            y[b * nout + o] = bias[o] + dot::<F>(wr, &x[b * nin..(b + 1) * nin]);
        }
    }
}

#[inline(always)]
fn grad_w_impl<const F: bool>(
    gy: &[f32],
    x: &[f32],
    batch: usize,
    nin: usize,
    nout: usize,
    gw: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if F {
        // SAFETY: as in `dot`.
        unsafe { x86::grad_w(gy, x, batch, nin, nout, gw) };
        return;
    }
    for o in 0..nout {
        let row = &mut gw[o * nin..(o + 1) * nin];
        row.fill(0.0);
        for b in 0..batch {
            axpy::<F>(gy[b * nout + o], &x[b * nin..(b + 1) * nin], row);
        }
    }
}

#[inline(always)]
fn grad_x_impl<const F: bool>(
    gy: &[f32],
    w: &[f32],
    batch: usize,
    nin: usize,
    nout: usize,
    gx: &mut [f32],
) {
    gx[..batch * nin].fill(0.0);
    for o in 0..nout {
        let wr = &w[o * nin..(o + 1) * nin];
        for b in 0..batch {
            axpy::<F>(gy[b * nout + o], wr, &mut gx[b * nin..(b + 1) * nin]);
        }
    }
}

// Register-blocked kernels index their accumulator arrays by (row, column).
#[cfg(target_arch = "x86_64")]
#[allow(clippy::needless_range_loop, clippy::too_many_arguments)]
mod x86 {
    use std::arch::x86_64::*;

    /// Dot product with four 8-lane FMA accumulators.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut i = 0;
        let mut acc = [_mm256_setzero_ps(); 4];
        // SAFETY: every load reads 8 floats below `n`.
        unsafe {
            while i + 32 <= n {
                for (k, ak) in acc.iter_mut().enumerate() {
                    let x = _mm256_loadu_ps(pa.add(i + 8 * k));
                    let y = _mm256_loadu_ps(pb.add(i + 8 * k));
                    *ak = _mm256_fmadd_ps(x, y, *ak);
                }
                i += 32;
            }
            while i + 8 <= n {
                acc[0] = _mm256_fmadd_ps(
                    _mm256_loadu_ps(pa.add(i)),
                    _mm256_loadu_ps(pb.add(i)),
                    acc[0],
                );
                i += 8;
            }
            let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
            let mut lanes = [0.0f32; 8];
            _mm256_storeu_ps(lanes.as_mut_ptr(), s);
            let mut t = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
                + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
            while i < n {
                t = a[i].mul_add(b[i], t);
                i += 1;
            }
            t
        }
    }

    /// `y[b][o] = bias[o] + <w[o], x[b]>` for a block of `RO` outputs x `RB` samples,
    /// 8 lanes at a time; the tail of `nin` (below 8) is done in scalar code.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn block<const RO: usize, const RB: usize>(
        x: &[f32],
        w: &[f32],
        bias: &[f32],
        nin: usize,
        nout: usize,
        y: &mut [f32],
        o0: usize,
        b0: usize,
    ) {
        let mut acc = [[_mm256_setzero_ps(); RB]; RO];
        let n8 = nin / 8 * 8;
        let (px, pw) = (x.as_ptr(), w.as_ptr());
        let mut i = 0;
        // SAFETY (caller): rows o0..o0+RO of w and b0..b0+RB of x exist; loads stay below n8 <= nin.
        unsafe {
            while i < n8 {
                let mut wv = [_mm256_setzero_ps(); RO];
                for (r, v) in wv.iter_mut().enumerate() {
                    *v = _mm256_loadu_ps(pw.add((o0 + r) * nin + i));
                }
                for c in 0..RB {
                    let xv = _mm256_loadu_ps(px.add((b0 + c) * nin + i));
                    for r in 0..RO {
                        acc[r][c] = _mm256_fmadd_ps(wv[r], xv, acc[r][c]);
                    }
                }
                i += 8;
            }
        }
        for r in 0..RO {
            for c in 0..RB {
                let mut lanes = [0.0f32; 8];
                // SAFETY: storing 8 floats into an 8-float array.
                unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc[r][c]) };
                let mut t = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
                    + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
                let (o, b) = (o0 + r, b0 + c);
                for j in n8..nin {
                    t = w[o * nin + j].mul_add(x[b * nin + j], t);
                }
                y[b * nout + o] = bias[o] + t;
            }
        }
    }

    /// Register-blocked small-batch forward: 2 outputs x 4 samples per block.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn forward(
        x: &[f32],
        batch: usize,
        w: &[f32],
        bias: &[f32],
        nin: usize,
        nout: usize,
        y: &mut [f32],
    ) {
        assert!(
            x.len() >= batch * nin
                && w.len() >= nout * nin
                && bias.len() >= nout
                && y.len() >= batch * nout
        );
        let mut o = 0;
        while o < nout {
            let ro = (nout - o).min(2);
            let mut b = 0;
            while b < batch {
                let rb = (batch - b).min(4);
                // SAFETY: o+ro <= nout and b+rb <= batch, checked against the slice lengths above.
                unsafe {
                    match (ro, rb) {
                        (2, 4) => block::<2, 4>(x, w, bias, nin, nout, y, o, b),
                        (2, 3) => block::<2, 3>(x, w, bias, nin, nout, y, o, b),
                        (2, 2) => block::<2, 2>(x, w, bias, nin, nout, y, o, b),
                        (2, _) => block::<2, 1>(x, w, bias, nin, nout, y, o, b),
                        (_, 4) => block::<1, 4>(x, w, bias, nin, nout, y, o, b),
                        (_, 3) => block::<1, 3>(x, w, bias, nin, nout, y, o, b),
                        (_, 2) => block::<1, 2>(x, w, bias, nin, nout, y, o, b),
                        _ => block::<1, 1>(x, w, bias, nin, nout, y, o, b),
                    }
                }
                b += rb;
            }
            o += ro;
        }
    }

    /// `gw[o][..] = sum_b gy[b][o] * x[b][..]` for `RO` rows from `o0`, 32 columns
    /// at a time accumulated in registers; scalar tail.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn grad_w_rows<const RO: usize>(
        gy: &[f32],
        x: &[f32],
        batch: usize,
        nin: usize,
        nout: usize,
        gw: &mut [f32],
        o0: usize,
    ) {
        let px = x.as_ptr();
        let pr = gw.as_mut_ptr();
        let n32 = nin / 32 * 32;
        let mut i = 0;
        // SAFETY (caller): rows o0..o0+RO exist in gw, batch rows in x and gy; columns below n32 <= nin.
        unsafe {
            while i < n32 {
                let mut acc = [[_mm256_setzero_ps(); 4]; RO];
                for b in 0..batch {
                    let mut g = [_mm256_setzero_ps(); RO];
                    for (r, gr) in g.iter_mut().enumerate() {
                        *gr = _mm256_set1_ps(*gy.get_unchecked(b * nout + o0 + r));
                    }
                    let xb = px.add(b * nin + i);
                    for k in 0..4 {
                        let xv = _mm256_loadu_ps(xb.add(8 * k));
                        for r in 0..RO {
                            acc[r][k] = _mm256_fmadd_ps(g[r], xv, acc[r][k]);
                        }
                    }
                }
                for (r, ar) in acc.iter().enumerate() {
                    for (k, ak) in ar.iter().enumerate() {
                        _mm256_storeu_ps(pr.add((o0 + r) * nin + i + 8 * k), *ak);
                    }
                }
                i += 32;
            }
        }
        for r in 0..RO {
            let o = o0 + r;
            for j in n32..nin {
                let mut s = 0.0f32;
                for b in 0..batch {
                    s = gy[b * nout + o].mul_add(x[b * nin + j], s);
                }
                gw[o * nin + j] = s;
            }
        }
    }

    /// Small-batch weight gradient, two output rows at a time.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn grad_w(
        gy: &[f32],
        x: &[f32],
        batch: usize,
        nin: usize,
        nout: usize,
        gw: &mut [f32],
    ) {
        assert!(gy.len() >= batch * nout && x.len() >= batch * nin && gw.len() >= nout * nin);
        let mut o = 0;
        while o + 2 <= nout {
            // SAFETY: rows o, o+1 < nout; sizes asserted above.
            unsafe { grad_w_rows::<2>(gy, x, batch, nin, nout, gw, o) };
            o += 2;
        }
        if o < nout {
            // SAFETY: row o < nout.
            unsafe { grad_w_rows::<1>(gy, x, batch, nin, nout, gw, o) };
        }
    }
}

/// Defines `pub fn $name(args)` on the process's backend
/// ([`ppml_simd::backend`]) and `pub fn $on(backend, args)` on an explicit
/// one: the AVX2+FMA build for the AVX2 and AVX-512 backends (these are f32
/// FMA loops; 512-bit vectors gain nothing at these batch sizes), the
/// generic build otherwise.
macro_rules! dispatch {
    ($name:ident, $on:ident, $imp:ident, $avx:ident, ($($a:ident : $t:ty),*)) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $avx($($a: $t),*) {
            $imp::<true>($($a),*)
        }

        #[doc = concat!("[`", stringify!($name), "`] on an explicit backend (an unsupported one runs the generic build).")]
        #[allow(clippy::too_many_arguments)]
        pub fn $on(backend: ppml_simd::Backend, $($a: $t),*) {
            #[cfg(target_arch = "x86_64")]
            {
                if backend.has_avx2() && backend.is_supported() {
                    // SAFETY: the backend includes AVX2 and FMA, the features
                    // the function is compiled with, and the CPU supports it
                    // (checked on the line above).
                    unsafe { $avx($($a),*) };
                    return;
                }
            }
            let _ = backend;
            $imp::<false>($($a),*)
        }

        #[allow(clippy::too_many_arguments)]
        pub fn $name($($a: $t),*) {
            $on(ppml_simd::backend(), $($a),*)
        }
    };
}

dispatch!(forward, forward_on, forward_impl, forward_avx2,
    (x: &[f32], batch: usize, w: &[f32], bias: &[f32], nin: usize, nout: usize, y: &mut [f32]));
dispatch!(grad_w, grad_w_on, grad_w_impl, grad_w_avx2,
    (gy: &[f32], x: &[f32], batch: usize, nin: usize, nout: usize, gw: &mut [f32]));
dispatch!(grad_x, grad_x_on, grad_x_impl, grad_x_avx2,
    (gy: &[f32], w: &[f32], batch: usize, nin: usize, nout: usize, gx: &mut [f32]));

#[cfg(test)]
mod tests {
    use crate::gemm::sgemm;

    #[test]
    fn kernels_match_gemm() {
        let (batch, nin, nout) = (7, 77, 13); // nin not a multiple of 8 or 32: tails
        let x: Vec<f32> = (0..batch * nin)
            .map(|i| ((i * 37 % 101) as f32) / 50.0 - 1.0)
            .collect();
        let w: Vec<f32> = (0..nin * nout)
            .map(|i| ((i * 53 % 97) as f32) / 48.0 - 1.0)
            .collect();
        let bias: Vec<f32> = (0..nout).map(|i| i as f32 * 0.1).collect();
        let gy: Vec<f32> = (0..batch * nout)
            .map(|i| ((i * 17 % 29) as f32) / 14.0 - 1.0)
            .collect();
        let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(u, v)| (u - v).abs() < 1e-4);

        let mut want_y = Vec::new();
        for _ in 0..batch {
            want_y.extend_from_slice(&bias);
        }
        sgemm(batch, nout, nin, 1.0, &x, false, &w, true, 1.0, &mut want_y);
        let mut want_gw = vec![0.0; nin * nout];
        sgemm(
            nout,
            nin,
            batch,
            1.0,
            &gy,
            true,
            &x,
            false,
            0.0,
            &mut want_gw,
        );
        let mut want_gx = vec![0.0; batch * nin];
        sgemm(
            batch,
            nin,
            nout,
            1.0,
            &gy,
            false,
            &w,
            false,
            0.0,
            &mut want_gx,
        );

        // every backend this CPU has
        for b in ppml_simd::Backend::available() {
            let mut y = vec![0.0; batch * nout];
            super::forward_on(b, &x, batch, &w, &bias, nin, nout, &mut y);
            assert!(close(&y, &want_y), "{b}");
            let mut gw = vec![9.0; nin * nout];
            super::grad_w_on(b, &gy, &x, batch, nin, nout, &mut gw);
            assert!(close(&gw, &want_gw), "{b}");
            let mut gx = vec![9.0; batch * nin];
            super::grad_x_on(b, &gy, &w, batch, nin, nout, &mut gx);
            assert!(close(&gx, &want_gx), "{b}");
        }

        // the dispatched kernels (the process's backend)
        let mut y = vec![0.0; batch * nout];
        super::forward(&x, batch, &w, &bias, nin, nout, &mut y);
        assert!(close(&y, &want_y));
        let mut gw = vec![9.0; nin * nout];
        super::grad_w(&gy, &x, batch, nin, nout, &mut gw);
        assert!(close(&gw, &want_gw));
        let mut gx = vec![9.0; batch * nin];
        super::grad_x(&gy, &w, batch, nin, nout, &mut gx);
        assert!(close(&gx, &want_gx));

        // the portable fallback, exercised on every machine
        let mut y = vec![0.0; batch * nout];
        super::forward_impl::<false>(&x, batch, &w, &bias, nin, nout, &mut y);
        assert!(close(&y, &want_y));
        let mut gw = vec![9.0; nin * nout];
        super::grad_w_impl::<false>(&gy, &x, batch, nin, nout, &mut gw);
        assert!(close(&gw, &want_gw));
        let mut gx = vec![9.0; batch * nin];
        super::grad_x_impl::<false>(&gy, &w, batch, nin, nout, &mut gx);
        assert!(close(&gx, &want_gx));
    }
}
