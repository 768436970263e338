//! Property tests of sharing: reconstruction, linearity, Shamir subsets,
//! uniformity of single shares, and the ring matmul against a naive reference.

use ppml_sharing::ring::{matmul_reference, u64s_to_le_bytes};
use ppml_sharing::{Fp, RingTensor, SharingError, additive, shamir};

/// Reproducible test randomness (shares included): insecure by design.
mod prg {
    pub use ppml_random::random_u64s;
    pub fn seeded(seed: u64) -> ppml_random::SecretRng {
        ppml_random::insecure_deterministic_rng(seed, "test/sharing")
    }
}
use proptest::prelude::*;

fn tensor_strategy() -> impl Strategy<Value = RingTensor> {
    (1usize..5, 1usize..7).prop_flat_map(|(r, c)| {
        proptest::collection::vec(any::<u64>(), r * c)
            .prop_map(move |d| RingTensor::new(vec![r, c], d).unwrap())
    })
}

proptest! {
    #[test]
    fn scalar_reconstruct_of_share_is_identity(x in any::<u64>(), n in 1usize..10, seed in any::<u64>()) {
        let shares = additive::share(x, n, &mut prg::seeded(seed));
        prop_assert_eq!(shares.len(), n);
        prop_assert_eq!(additive::reconstruct(&shares), x);
    }

    #[test]
    fn tensor_reconstruct_of_share_is_identity(x in tensor_strategy(), n in 1usize..6, seed in any::<u64>()) {
        let shares = additive::share_tensor(&x, n, &mut prg::seeded(seed));
        prop_assert_eq!(shares.len(), n);
        prop_assert!(shares.iter().all(|s| s.shape() == x.shape()));
        prop_assert_eq!(additive::reconstruct_tensor(&shares).unwrap(), x);
    }

    #[test]
    fn local_ops_are_linear(x in any::<u64>(), y in any::<u64>(), c in any::<u64>(), n in 1usize..6, seed in any::<u64>()) {
        let mut rng = prg::seeded(seed);
        let xs = additive::share(x, n, &mut rng);
        let ys = additive::share(y, n, &mut rng);
        let sum: Vec<u64> = xs.iter().zip(&ys).map(|(a, b)| a.wrapping_add(*b)).collect();
        let diff: Vec<u64> = xs.iter().zip(&ys).map(|(a, b)| a.wrapping_sub(*b)).collect();
        let neg: Vec<u64> = xs.iter().map(|a| a.wrapping_neg()).collect();
        let plus_c: Vec<u64> = xs.iter().enumerate().map(|(i, &a)| additive::add_public(a, i, c)).collect();
        let times_c: Vec<u64> = xs.iter().map(|&a| additive::mul_public(a, c)).collect();
        prop_assert_eq!(additive::reconstruct(&sum), x.wrapping_add(y));
        prop_assert_eq!(additive::reconstruct(&diff), x.wrapping_sub(y));
        prop_assert_eq!(additive::reconstruct(&neg), x.wrapping_neg());
        prop_assert_eq!(additive::reconstruct(&plus_c), x.wrapping_add(c));
        prop_assert_eq!(additive::reconstruct(&times_c), x.wrapping_mul(c));
    }

    #[test]
    fn tensor_local_ops_are_linear(x in tensor_strategy(), seed in any::<u64>(), c in any::<u64>()) {
        let mut rng = prg::seeded(seed);
        let y = RingTensor::new(x.shape().to_vec(), prg::random_u64s(&mut rng, x.len())).unwrap();
        let xs = additive::share_tensor(&x, 3, &mut rng);
        let ys = additive::share_tensor(&y, 3, &mut rng);
        let sums: Vec<RingTensor> = xs.iter().zip(&ys).map(|(a, b)| a.add(b).unwrap()).collect();
        let diffs: Vec<RingTensor> = xs.iter().zip(&ys).map(|(a, b)| a.sub(b).unwrap()).collect();
        let mut plus = xs.clone();
        for (i, s) in plus.iter_mut().enumerate() {
            additive::add_public_tensor(s, i, &y).unwrap();
        }
        let scaled: Vec<RingTensor> = xs.iter().map(|s| s.mul_scalar(c)).collect();
        let mut hadamard = xs.clone();
        for s in hadamard.iter_mut() {
            additive::mul_public_tensor(s, &y).unwrap();
        }
        prop_assert_eq!(additive::reconstruct_tensor(&sums).unwrap(), x.add(&y).unwrap());
        prop_assert_eq!(additive::reconstruct_tensor(&diffs).unwrap(), x.sub(&y).unwrap());
        prop_assert_eq!(additive::reconstruct_tensor(&plus).unwrap(), x.add(&y).unwrap());
        prop_assert_eq!(additive::reconstruct_tensor(&scaled).unwrap(), x.mul_scalar(c));
        prop_assert_eq!(additive::reconstruct_tensor(&hadamard).unwrap(), x.mul_elem(&y).unwrap());
        // A public matrix times a shared one is local.
        let pubm = RingTensor::new(vec![2, x.shape()[0]], prg::random_u64s(&mut rng, 2 * x.shape()[0])).unwrap();
        let prods: Vec<RingTensor> = xs.iter().map(|s| additive::public_matmul_share(&pubm, s).unwrap()).collect();
        prop_assert_eq!(additive::reconstruct_tensor(&prods).unwrap(), pubm.matmul(&x).unwrap());
    }

    #[test]
    fn matmul_matches_reference(m in 0usize..19, k in 0usize..300, n in 0usize..21, seed in any::<u64>()) {
        let mut rng = prg::seeded(seed);
        let a = RingTensor::new(vec![m, k], prg::random_u64s(&mut rng, m * k)).unwrap();
        let b = RingTensor::new(vec![k, n], prg::random_u64s(&mut rng, k * n)).unwrap();
        let c = a.matmul(&b).unwrap();
        prop_assert_eq!(c.shape(), &[m, n][..]);
        prop_assert_eq!(c.data(), &matmul_reference(a.data(), b.data(), m, k, n)[..]);
    }

    #[test]
    fn shamir_any_t_subset_reconstructs(n in 1usize..7, t_frac in 0.0f64..1.0, seed in any::<u64>()) {
        let t = 1 + ((n - 1) as f64 * t_frac) as usize;
        let mut rng = prg::seeded(seed);
        let secret = Fp::random(&mut rng);
        let shares = shamir::share(secret, t, n, &mut rng).unwrap();
        // Every subset of size >= t, in the order given.
        for mask in 0u32..(1 << n) {
            let subset: Vec<_> = (0..n).filter(|i| mask >> i & 1 == 1).map(|i| shares[i]).collect();
            let got = shamir::reconstruct(&subset, t);
            if subset.len() >= t {
                prop_assert_eq!(got.unwrap(), secret);
            } else {
                prop_assert_eq!(got, Err(SharingError::TooFewShares { needed: t, got: subset.len() }));
            }
        }
    }

    #[test]
    fn fp_additive_sharing_reconstructs(n in 1usize..8, seed in any::<u64>()) {
        let mut rng = prg::seeded(seed);
        let s = Fp::random(&mut rng);
        prop_assert_eq!(shamir::additive_reconstruct(&shamir::additive_share(s, n, &mut rng)), s);
    }

    #[test]
    fn ring_tensor_serde_round_trip(x in tensor_strategy()) {
        let bytes = postcard::to_allocvec(&x).unwrap();
        // Data travels as raw bytes: 8 per element plus a small header.
        prop_assert!(bytes.len() <= x.len() * 8 + 16);
        let back: RingTensor = postcard::from_bytes(&bytes).unwrap();
        prop_assert_eq!(back, x);
    }
}

#[test]
fn shamir_errors_are_clear() {
    let mut rng = prg::seeded(1);
    let s = Fp::from_u64(99);
    assert!(matches!(
        shamir::share(s, 0, 3, &mut rng),
        Err(SharingError::InvalidThreshold { .. })
    ));
    assert!(matches!(
        shamir::share(s, 4, 3, &mut rng),
        Err(SharingError::InvalidThreshold { .. })
    ));
    let shares = shamir::share(s, 2, 3, &mut rng).unwrap();
    assert_eq!(
        shamir::reconstruct(&[shares[0], shares[0]], 2),
        Err(SharingError::DuplicateShare(1))
    );
    let mut zero = shares[1];
    zero.index = 0;
    assert_eq!(
        shamir::reconstruct(&[shares[0], zero], 2),
        Err(SharingError::ZeroIndex)
    );
    assert_eq!(
        shamir::reconstruct(&shares[..1], 2),
        Err(SharingError::TooFewShares { needed: 2, got: 1 })
    );
    // t - 1 shares of two different secrets can be identical: they reveal nothing.
    let a = shamir::share(Fp::from_u64(1), 2, 3, &mut prg::seeded(8)).unwrap();
    assert_ne!(shamir::reconstruct(&a[1..], 2).unwrap(), Fp::from_u64(99));
}

#[test]
fn shape_errors_are_clear() {
    let a = RingTensor::new(vec![2, 3], vec![0; 6]).unwrap();
    let b = RingTensor::new(vec![3, 2], vec![0; 6]).unwrap();
    assert!(matches!(a.add(&b), Err(SharingError::ShapeMismatch { .. })));
    assert!(matches!(
        a.matmul(&a),
        Err(SharingError::MatmulShape { .. })
    ));
    assert!(matches!(
        RingTensor::new(vec![2, 2], vec![0; 3]),
        Err(SharingError::BadLength { .. })
    ));
    assert!(matches!(
        RingTensor::new(vec![usize::MAX, 2], vec![]),
        Err(SharingError::BadLength { .. })
    ));
    assert!(additive::reconstruct_tensor(&[]).is_err());
    // Hostile wire data: wrong byte count and shape/data disagreement.
    let bad = postcard::to_allocvec(&(vec![2usize, 2], serde_bytes::ByteBuf::from(vec![0u8; 31])))
        .unwrap();
    assert!(postcard::from_bytes::<RingTensor>(&bad).is_err());
    let bad = postcard::to_allocvec(&(
        vec![2usize, 2],
        serde_bytes::ByteBuf::from(u64s_to_le_bytes(&[1, 2, 3])),
    ))
    .unwrap();
    assert!(postcard::from_bytes::<RingTensor>(&bad).is_err());
}

/// Chi-square statistic of `counts` against the uniform distribution.
fn chi_square(counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    let expected = total as f64 / counts.len() as f64;
    counts
        .iter()
        .map(|&c| (c as f64 - expected).powi(2) / expected)
        .sum()
}

#[test]
fn a_single_share_is_uniform_whatever_the_secret() {
    // For each secret (including 0 and extremes) and each party position,
    // bucket one party's share by its top 4 bits and its low 4 bits and run a
    // chi-square test with 15 degrees of freedom: the 0.999 quantile is 37.7.
    // A biased sharing (e.g. the last share being x minus a small sum, or a
    // share leaking low bits of x) fails this by orders of magnitude.
    const CRITICAL: f64 = 37.7;
    let mut rng = prg::seeded(2024);
    for secret in [0u64, 1, u64::MAX, 1 << 63, 0xDEAD_BEEF] {
        for n in [2usize, 3] {
            for party in 0..n {
                let mut hi = [0u64; 16];
                let mut lo = [0u64; 16];
                for _ in 0..20_000 {
                    let s = additive::share(secret, n, &mut rng)[party];
                    hi[(s >> 60) as usize] += 1;
                    lo[(s & 15) as usize] += 1;
                }
                let (ch, cl) = (chi_square(&hi), chi_square(&lo));
                assert!(
                    ch < CRITICAL && cl < CRITICAL,
                    "secret {secret:#x} n {n} party {party}: chi2 {ch:.1} {cl:.1}"
                );
            }
        }
    }
}

#[test]
fn a_single_tensor_share_is_uniform() {
    let x = RingTensor::new(vec![100, 100], vec![7; 10_000]).unwrap();
    let shares = additive::share_tensor(&x, 2, &mut prg::seeded(11));
    for s in &shares {
        let mut hi = [0u64; 16];
        s.data().iter().for_each(|v| hi[(v >> 60) as usize] += 1);
        assert!(chi_square(&hi) < 37.7);
    }
}
