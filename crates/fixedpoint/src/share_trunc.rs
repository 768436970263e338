//! Helpers for truncating *secret-shared* fixed-point values.
//!
//! After a multiplication on additive shares `x = x0 + x1 (mod 2^64)` the
//! product carries `2f` fractional bits. Two standard ways to remove `f` of
//! them are supported; the protocols in `ppml-smpc` pick one.
//!
//! ## Local truncation (SecureML, Mohassel & Zhang 2017, Theorem 1)
//!
//! Each party shifts its own share, no communication:
//! party 0 computes `x0 >> f` (logical), party 1 computes `-((-x1) >> f)`.
//! If the signed value satisfies `|x| < 2^lx` and `x0` is uniform, the
//! result reconstructs to `floor(x / 2^f)` or `floor(x / 2^f) + 1`
//! (error at most one ulp) except with probability at most `2^(lx + 1 - 64)`.
//! A product of two 16-bit-fraction encodings carries 32 fractional bits, so a
//! real product below `2^12` in magnitude has `lx = 44` and fails with
//! probability at most `2^-19` per element; below `2^4`, `lx = 36` and `2^-27`.
//! A failure gives a wildly wrong value, so protocols that cannot afford it use
//! truncation pairs or a larger ring.
//!
//! ## Truncation pairs (ABY3-style, dealt by a helper)
//!
//! A dealer samples `r` uniform in Z_2^64 and shares both `r` and
//! `r' = r >>arith f` ([`truncation_pair`]). The parties open `c = x - r`,
//! and the result is `(c >>arith f) + r'` with the public part added by one
//! party ([`shift_opened`]). The result is `floor(x/2^f)` or one less
//! (error at most one ulp) unless `c` and `r` overflow as signed integers,
//! which happens with probability at most `|x| / 2^63 <= 2^(lx - 63)`.
//!
//! Neither is failure-free: both open a value masked by a uniform `r` and
//! go wrong when the masked sum wraps around. `ppml-smpc`'s exact truncation
//! (`compare::select_trunc`, the default of private inference) removes that
//! failure by computing the wrap-around bit inside a comparison, which the
//! protocols run anyway after every product that feeds a ReLU.

/// SecureML local truncation of party `party`'s share (0 or 1 of a two-party
/// sharing). See the module docs for the error bound.
#[inline]
pub fn local_truncate_share(share: u64, party: usize, frac_bits: u32) -> u64 {
    if party == 0 {
        share >> frac_bits
    } else {
        (share.wrapping_neg() >> frac_bits).wrapping_neg()
    }
}

/// [`local_truncate_share`] over a slice, in place.
pub fn local_truncate_shares(shares: &mut [u64], party: usize, frac_bits: u32) {
    if party == 0 {
        for s in shares {
            *s >>= frac_bits;
        }
    } else {
        for s in shares {
            *s = (s.wrapping_neg() >> frac_bits).wrapping_neg();
        }
    }
}

/// The pair `(r, r >>arith f)` a dealer shares for pair-based truncation.
#[inline]
pub fn truncation_pair(r: u64, frac_bits: u32) -> (u64, u64) {
    (r, ((r as i64) >> frac_bits) as u64)
}

/// The public part of pair-based truncation: the opened `c = x - r`, shifted
/// arithmetically. Party 0 adds it to its share of `r'`; party 1 keeps its
/// share of `r'` as is.
#[inline]
pub fn shift_opened(c: u64, frac_bits: u32) -> u64 {
    ((c as i64) >> frac_bits) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// floor(x / 2^f) of the signed value, the exact answer.
    fn exact(x: u64, f: u32) -> i64 {
        (x as i64) >> f
    }

    proptest! {
        #[test]
        fn local_truncation_within_one_ulp(x in -(1i64 << 44)..(1i64 << 44), x0 in any::<u64>(), f in 1u32..32) {
            let x = x as u64;
            let x1 = x.wrapping_sub(x0);
            let t = local_truncate_share(x0, 0, f).wrapping_add(local_truncate_share(x1, 1, f));
            let d = (t as i64).wrapping_sub(exact(x, f));
            // Failure probability is 2^(45-64) per case; proptest's 256 cases
            // would see one with probability < 2^-11.
            prop_assert!(d == 0 || d == 1, "diff {d}");
        }

        #[test]
        fn pair_truncation_within_one_ulp(x in -(1i64 << 44)..(1i64 << 44), r in any::<u64>(), f in 1u32..32) {
            let x = x as u64;
            let (r, rt) = truncation_pair(r, f);
            let c = x.wrapping_sub(r);
            let t = shift_opened(c, f).wrapping_add(rt);
            let d = (t as i64).wrapping_sub(exact(x, f));
            prop_assert!(d == 0 || d == -1, "diff {d}");
        }

        #[test]
        fn slice_version_matches(xs in proptest::collection::vec(any::<u64>(), 0..32), party in 0usize..2) {
            let mut v = xs.clone();
            local_truncate_shares(&mut v, party, 16);
            for (a, b) in v.iter().zip(&xs) {
                prop_assert_eq!(*a, local_truncate_share(*b, party, 16));
            }
        }
    }

    #[test]
    fn local_truncation_failure_rate_matches_bound() {
        // With |x| < 2^60 the bound says failures are at most 2^-3 of cases:
        // check the empirical rate with a deterministic LCG, so the test is
        // reproducible and fails if the implementation is wrong (a wrong shift
        // fails almost always).
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            state
        };
        let (trials, mut fails) = (20_000, 0);
        for _ in 0..trials {
            let x = ((next() as i64) >> 4) as u64; // |x| < 2^59
            let x0 = next();
            let x1 = x.wrapping_sub(x0);
            let t = local_truncate_share(x0, 0, 16).wrapping_add(local_truncate_share(x1, 1, 16));
            let d = (t as i64).wrapping_sub((x as i64) >> 16);
            if d != 0 && d != 1 {
                fails += 1;
            }
        }
        let rate = fails as f64 / trials as f64;
        assert!(rate <= 2f64.powi(59 + 1 - 64) * 1.5, "failure rate {rate}");
        assert!(fails > 0, "with |x| near 2^59 some failures must occur");
    }
}
