//! Every protocol against plaintext, on random and edge inputs.

use ppml_fixedpoint::FixedPoint;
use ppml_smpc::party::{P0, P1, ProtocolConfig};
use ppml_smpc::{SecretSource, beaver, compare, sim};

/// Reproducible test randomness: insecure by design (tests only).
mod prg {
    pub use ppml_random::random_u64s;
    pub fn seeded(seed: u64) -> ppml_random::SecretRng {
        ppml_random::insecure_deterministic_rng(seed, "test/smpc")
    }
}
use proptest::prelude::*;

const F: u32 = 16;

/// Shares `x` between P0 and P1 with a seeded mask; returns (x0, x1).
fn share(x: &[u64], seed: u64) -> (Vec<u64>, Vec<u64>) {
    let r = prg::random_u64s(&mut prg::seeded(seed), x.len());
    let x1: Vec<u64> = x.iter().zip(&r).map(|(a, b)| a.wrapping_sub(*b)).collect();
    (r, x1)
}

fn pick(id: usize, s: &(Vec<u64>, Vec<u64>)) -> Vec<u64> {
    match id {
        P0 => s.0.clone(),
        P1 => s.1.clone(),
        _ => Vec::new(),
    }
}

fn reconstruct(runs: &[sim::PartyRun<Vec<u64>>]) -> Vec<u64> {
    runs[P0]
        .output
        .iter()
        .zip(&runs[P1].output)
        .map(|(a, b)| a.wrapping_add(*b))
        .collect()
}

fn enc(v: &[f64]) -> Vec<u64> {
    let fp = FixedPoint::new(F).unwrap();
    v.iter().map(|x| fp.encode(*x).unwrap()).collect()
}

/// Edge values: 0, +-1 ulp, small and large magnitudes within the bound.
fn edge_values(limit: f64) -> Vec<f64> {
    let ulp = 1.0 / (1u64 << F) as f64;
    vec![
        0.0,
        ulp,
        -ulp,
        1.0,
        -1.0,
        0.5,
        -0.5,
        limit,
        -limit,
        limit / 3.0,
        -limit / 7.0,
        2.0 * ulp,
        -2.0 * ulp,
    ]
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        -1000.0f64..1000.0,
        -1.0f64..1.0,
        Just(0.0),
        Just(1.0 / 65536.0),
        Just(-1.0 / 65536.0),
    ]
}

fn check_mul(x: &[f64], y: &[f64], seed: u64) -> Result<(), TestCaseError> {
    let fp = FixedPoint::new(F).unwrap();
    let (xe, ye) = (enc(x), enc(y));
    let (xs, ys) = (share(&xe, seed), share(&ye, seed + 1));
    let n = x.len();
    let runs = sim::run_in_memory(
        3,
        ProtocolConfig::default(),
        SecretSource::InsecureDeterministic(seed),
        |p| beaver::mul_fixed(p, n, &pick(p.id, &xs), &pick(p.id, &ys)),
    )
    .unwrap();
    let z = reconstruct(&runs);
    for i in 0..n {
        let exact = fp.decode(xe[i]) * fp.decode(ye[i]);
        let got = fp.decode(z[i]);
        // Local truncation: floor or floor + 1 ulp, plus the floor itself.
        prop_assert!(
            (got - exact).abs() <= 2.0 * fp.ulp() + 1e-12,
            "{} * {}: {got} vs {exact}",
            x[i],
            y[i]
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn mul_matches_plaintext(pairs in proptest::collection::vec((value(), value()), 1..40), seed in any::<u64>()) {
        let (x, y): (Vec<f64>, Vec<f64>) = pairs.into_iter().unzip();
        check_mul(&x, &y, seed)?;
    }

    #[test]
    fn matmul_matches_plaintext(m in 1usize..9, k in 1usize..20, n in 1usize..9, seed in any::<u64>()) {
        let fp = FixedPoint::new(F).unwrap();
        let mut rng = prg::seeded(seed);
        let mut draw = |len: usize| -> Vec<f64> {
            prg::random_u64s(&mut rng, len).iter().map(|v| ((*v % 20_000) as f64 - 10_000.0) / 1000.0).collect()
        };
        let (x, y) = (draw(m * k), draw(k * n));
        let (xe, ye) = (enc(&x), enc(&y));
        let (xs, ys) = (share(&xe, seed), share(&ye, seed ^ 5));
        let runs = sim::run_in_memory(3, ProtocolConfig::default(), SecretSource::InsecureDeterministic(seed), |p| {
            beaver::matmul_fixed(p, m, k, n, &pick(p.id, &xs), &pick(p.id, &ys))
        }).unwrap();
        let z = reconstruct(&runs);
        for i in 0..m {
            for j in 0..n {
                let exact: f64 = (0..k).map(|t| fp.decode(xe[i * k + t]) * fp.decode(ye[t * n + j])).sum();
                let got = fp.decode(z[i * n + j]);
                prop_assert!((got - exact).abs() <= 2.0 * fp.ulp() + 1e-9, "{got} vs {exact}");
            }
        }
    }

    #[test]
    fn relu_and_drelu_match_plaintext(x in proptest::collection::vec(value(), 1..64), seed in any::<u64>()) {
        let xe = enc(&x);
        let xs = share(&xe, seed);
        let n = x.len();
        let runs = sim::run_in_memory(3, ProtocolConfig::default(), SecretSource::InsecureDeterministic(seed), |p| {
            let o = compare::select(p, n, &pick(p.id, &xs), &[])?;
            Ok([o.drelu, o.relu].concat())
        }).unwrap();
        let z = reconstruct(&runs);
        for i in 0..n {
            let d = u64::from((xe[i] as i64) >= 0);
            prop_assert_eq!(z[i], d, "drelu({})", x[i]);
            prop_assert_eq!(z[n + i], if d == 1 { xe[i] } else { 0 }, "relu({})", x[i]);
        }
    }
}

#[test]
fn mul_edge_values() {
    let cfg = ProtocolConfig::default();
    // |x*y| within the truncation bound: 2^11 * 2^11 real.
    let limit = 2048.0;
    let e = edge_values(limit);
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for a in &e {
        for b in &e {
            x.push(*a);
            y.push(*b);
        }
    }
    check_mul(&x, &y, 11).unwrap();
    assert!(cfg.compare_range() >= 4096.0);
}

#[test]
fn relu_edge_values_at_the_compare_limit() {
    let cfg = ProtocolConfig::default();
    let m = cfg.cmp_bits;
    // Ring integers at the very edge of the documented range -2^m <= x < 2^m.
    let mut xe: Vec<u64> = vec![
        0,
        1,
        u64::MAX,
        (1u64 << m) - 1,
        (1u64 << m).wrapping_neg(),
        12345,
        54321u64.wrapping_neg(),
    ];
    xe.extend(enc(&edge_values(cfg.compare_range() * 0.999)));
    let n = xe.len();
    for seed in 0..8u64 {
        let xs = share(&xe, seed);
        let runs = sim::run_in_memory(3, cfg, SecretSource::InsecureDeterministic(seed), |p| {
            compare::relu(p, n, &pick(p.id, &xs))
        })
        .unwrap();
        let z = reconstruct(&runs);
        for i in 0..n {
            let want = if (xe[i] as i64) >= 0 { xe[i] } else { 0 };
            assert_eq!(z[i], want, "relu of ring value {}", xe[i] as i64);
        }
    }
}

#[test]
fn select_products_and_argmax_match_plaintext() {
    let mut rng = prg::seeded(77);
    let (rows, cols) = (50, 10);
    let vals: Vec<f64> = prg::random_u64s(&mut rng, rows * cols)
        .iter()
        .map(|v| ((*v % 4_000_000) as f64 - 2_000_000.0) / 1000.0)
        .collect();
    let mut xe = enc(&vals);
    // A row with ties: first index wins.
    xe[..cols].fill(5);
    let xs = share(&xe, 3);
    let runs = sim::run_in_memory(
        3,
        ProtocolConfig::default(),
        SecretSource::InsecureDeterministic(9),
        |p| {
            let (mx, idx) = compare::max_groups(p, rows, cols, &pick(p.id, &xs), true)?;
            Ok([mx, idx].concat())
        },
    )
    .unwrap();
    let z = reconstruct(&runs);
    for r in 0..rows {
        let row: Vec<i64> = xe[r * cols..(r + 1) * cols]
            .iter()
            .map(|v| *v as i64)
            .collect();
        let mut best = 0;
        for c in 0..cols {
            if row[c] > row[best] {
                best = c;
            }
        }
        assert_eq!(z[r] as i64, row[best], "max of row {r}");
        assert_eq!(z[rows + r], best as u64, "argmax of row {r}");
    }
}

/// The examples of issue 11 that the old 28-bit default got wrong
/// (ReLU(-4097) = -4097, ReLU(5000) = 0, argmax([5000, 0, 1]) = 2): at the
/// default full width they are right, as is every extreme ring value.
#[test]
fn full_width_default_is_right_for_every_ring_value() {
    let cfg = ProtocolConfig::default();
    assert_eq!(cfg.cmp_bits, 63);
    let mut xe = enc(&[-4097.0, 5000.0, 4096.0, -4096.0, 1e9, -1e9, 1.4e14, -1.4e14]);
    xe.extend([
        i64::MAX as u64,
        i64::MIN as u64,
        (i64::MIN + 1) as u64,
        0,
        1,
        u64::MAX,
        1u64 << 62,
        (1u64 << 62).wrapping_neg(),
    ]);
    xe.extend(prg::random_u64s(&mut prg::seeded(5), 200));
    let n = xe.len();
    for seed in 0..4u64 {
        let xs = share(&xe, seed);
        let runs = sim::run_in_memory(3, cfg, SecretSource::InsecureDeterministic(seed), |p| {
            let o = compare::select(p, n, &pick(p.id, &xs), &[])?;
            Ok([o.drelu, o.relu].concat())
        })
        .unwrap();
        let z = reconstruct(&runs);
        for i in 0..n {
            let pos = (xe[i] as i64) >= 0;
            assert_eq!(z[i], u64::from(pos), "drelu of {}", xe[i] as i64);
            assert_eq!(
                z[n + i],
                if pos { xe[i] } else { 0 },
                "relu of {}",
                xe[i] as i64
            );
        }
    }
    // argmax([5000, 0, 1]) and rows whose differences overflow 28 bits.
    let rows = enc(&[5000.0, 0.0, 1.0, -9000.0, 9000.0, 0.0, 1e6, -1e6, 3.0]);
    let xs = share(&rows, 1);
    let runs = sim::run_in_memory(3, cfg, SecretSource::InsecureDeterministic(2), |p| {
        compare::argmax(p, 3, 3, &pick(p.id, &xs))
    })
    .unwrap();
    assert_eq!(reconstruct(&runs), vec![0, 1, 0]);
}

/// Ring integers in `-2^m <= x < 2^m`, edges included.
fn in_range(m: u32, raw: &[u64]) -> Vec<u64> {
    let span = 1u128 << (m + 1);
    let mut xe: Vec<u64> = raw
        .iter()
        .map(|v| ((*v as u128 % span) as i128 - (1i128 << m)) as i64 as u64)
        .collect();
    let top = (1i64 << m) as u64;
    xe.extend([
        0,
        1,
        u64::MAX,
        top.wrapping_sub(1),
        top.wrapping_neg(),
        top.wrapping_neg().wrapping_add(1),
        (1u64 << F) - 1,
        (1u64 << F).wrapping_neg(),
    ]);
    xe
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Any width m is exact on its range, edges included.
    #[test]
    fn narrow_width_is_exact_on_its_range(m in 17u32..=63, seed in any::<u64>()) {
        let xe = in_range(m, &prg::random_u64s(&mut prg::seeded(seed), 64));
        let n = xe.len();
        let xs = share(&xe, seed);
        let runs = sim::run_in_memory(3, ProtocolConfig::default(), SecretSource::InsecureDeterministic(seed), |p| {
            compare::drelu_at(p, m, n, &pick(p.id, &xs))
        }).unwrap();
        let z = reconstruct(&runs);
        for i in 0..n {
            prop_assert_eq!(z[i], u64::from((xe[i] as i64) >= 0), "m {} x {}", m, xe[i] as i64);
        }
    }

    /// Exact truncation: floor(x / 2^f) or one more, never a wrap-around
    /// failure, at every width and for every x in range (the edges, where
    /// local truncation fails most, included); relu_trunc = max(trunc, 0).
    #[test]
    fn select_trunc_truncates_exactly(m in 17u32..=63, seed in any::<u64>()) {
        // In range for select_trunc: -2^m + 2^f <= x < 2^m - 2^f.
        let lim = (1i128 << m) - (1i128 << F);
        let xe: Vec<u64> = in_range(m, &prg::random_u64s(&mut prg::seeded(seed ^ 9), 64))
            .into_iter()
            .map(|v| (v as i64 as i128).clamp(-lim, lim - 1) as i64 as u64)
            .collect();
        let n = xe.len();
        let xs = share(&xe, seed);
        let runs = sim::run_in_memory(3, ProtocolConfig::default(), SecretSource::InsecureDeterministic(seed), |p| {
            let o = compare::select_trunc(p, m, n, &pick(p.id, &xs), &[])?;
            Ok([o.trunc, o.relu_trunc, o.drelu].concat())
        }).unwrap();
        let z = reconstruct(&runs);
        for i in 0..n {
            let x = xe[i] as i64;
            let t = z[i] as i64;
            let floor = x >> F;
            prop_assert!(t == floor || t == floor + 1, "m {} x {}: trunc {} floor {}", m, x, t, floor);
            prop_assert_eq!(z[n + i] as i64, t.max(0), "relu_trunc m {} x {}", m, x);
            prop_assert_eq!(z[2 * n + i], u64::from(t >= 0));
        }
    }
}

#[test]
fn select_trunc_rejects_a_width_below_the_shift() {
    let r = sim::run_in_memory(
        3,
        ProtocolConfig::default(),
        SecretSource::InsecureDeterministic(1),
        |p| compare::select_trunc(p, 16, 1, &[0], &[]),
    );
    assert!(matches!(r, Err(ppml_smpc::SmpcError::Config(_))), "{r:?}");
}

/// Exact truncation with two packed words of lane shares (f > 16) and one
/// (f <= 16), at widths where the wrap-around bit is often set.
#[test]
fn select_trunc_is_exact_for_every_fraction_width() {
    for f in [1u32, 8, 16, 17, 20, 24] {
        let cfg = ProtocolConfig {
            frac_bits: f,
            ..Default::default()
        };
        for m in [f + 1, 40, 61, 62, 63] {
            let lim = (1i128 << m) - (1i128 << f);
            let mut xe: Vec<u64> = prg::random_u64s(&mut prg::seeded(u64::from(m * 100 + f)), 300)
                .iter()
                .map(|v| ((*v as i128).rem_euclid(2 * lim) - lim) as i64 as u64)
                .collect();
            xe.extend([0, u64::MAX, (lim - 1) as i64 as u64, (-lim) as i64 as u64]);
            let n = xe.len();
            let xs = share(&xe, u64::from(m));
            let runs = sim::run_in_memory(
                3,
                cfg,
                SecretSource::InsecureDeterministic(u64::from(f)),
                |p| {
                    let o = compare::select_trunc(p, m, n, &pick(p.id, &xs), &[])?;
                    Ok([o.trunc, o.relu_trunc].concat())
                },
            )
            .unwrap();
            let z = reconstruct(&runs);
            for i in 0..n {
                let (x, t) = (xe[i] as i64, z[i] as i64);
                let floor = x >> f;
                assert!(t == floor || t == floor + 1, "f {f} m {m} x {x}: {t}");
                assert_eq!(z[n + i] as i64, t.max(0), "f {f} m {m} x {x}");
            }
        }
    }
}

proptest! {
    /// Z_p messages travel 5, 6 or 7 bits per value (p = 31, 61, 67): packing
    /// round-trips for every length and prime, and a value outside Z_p or a
    /// wrong length is an error.
    #[test]
    fn zp_packing_round_trips(pi in 0usize..3, raw in proptest::collection::vec(any::<u8>(), 0..300), bad_off in 0u8..30) {
        let p = [31u32, 61, 67][pi];
        let v: Vec<u8> = raw.iter().map(|b| (u32::from(*b) % p) as u8).collect();
        let bits = compare::value_bits(p);
        prop_assert_eq!(bits, [5, 6, 7][pi]);
        let packed = compare::pack_zp(&v, p);
        prop_assert_eq!(packed.len(), (v.len() * bits as usize).div_ceil(8));
        prop_assert_eq!(compare::unpack_zp(&packed, v.len(), p, "t").unwrap(), v.clone());
        if !v.is_empty() {
            let mut w = v.clone();
            let i = w.len() / 3;
            let bad = (p + u32::from(bad_off) % ((1 << bits) - p)) as u8;
            w[i] = bad;
            prop_assert!(compare::unpack_zp(&compare::pack_zp(&w, p), w.len(), p, "t").is_err(), "p {} bad {} at {}", p, bad, i);
            prop_assert!(compare::unpack_zp(&packed[1..], v.len(), p, "t").is_err());
        }
    }

    /// The prime of each width leaves room for every position's value.
    #[test]
    fn pc_prime_exceeds_every_position_value(m in 1usize..=63) {
        let p = compare::pc_prime(m) as usize;
        prop_assert!(m + 2 < p);
        prop_assert!(p <= 67);
    }

    /// Z_67 messages travel 7 bits per value: packing round-trips for every
    /// length, and a value outside Z_67 or a wrong length is an error.
    #[test]
    fn z67_packing_round_trips(v in proptest::collection::vec(0u8..67, 0..200), bad in 67u8..128) {
        let packed = compare::pack_z67(&v);
        prop_assert_eq!(packed.len(), compare::packed_len(v.len()));
        prop_assert_eq!(compare::unpack_z67(&packed, v.len(), "t").unwrap(), v.clone());
        if !v.is_empty() {
            let mut w = v.clone();
            let i = w.len() / 2;
            w[i] = bad;
            prop_assert!(compare::unpack_z67(&compare::pack_z67(&w), w.len(), "t").is_err());
            prop_assert!(compare::unpack_z67(&packed[1..], v.len(), "t").is_err());
        }
    }
}

/// The faithful comparison's claim, on its plaintext model: for
/// `c = x + 2^m + r`, bit `m - k` of `(c >> k) - (r >> k)` in Z_2^(64-k) is
/// `[x >= 0]` for every `x` in `[-2^m, 2^m - 2^k)` outside `[-2^k, 0)`, for
/// every mask `r`; and the top margin is needed (without it some `r` makes
/// it wrong).
fn faithful_bit(x: u64, r: u64, m: u32, k: u32) -> u64 {
    let c = x.wrapping_add(1u64 << m).wrapping_add(r);
    ((c >> k).wrapping_sub(r >> k) >> (m - k)) & 1
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn faithful_bit_is_drelu_outside_the_low_band(m in 2u32..=63, kf in 0.0f64..1.0, raw in any::<u64>(), r in any::<u64>()) {
        let k = ((f64::from(m) * kf) as u32).min(m - 1);
        // x uniform in [-2^m, 2^m - 2^k).
        let span = (1u128 << (m + 1)) - (1u128 << k);
        let x = ((raw as u128 % span) as i128 - (1i128 << m)) as i64;
        let b = faithful_bit(x as u64, r, m, k);
        if x >= 0 || x < -(1i64 << k) {
            prop_assert_eq!(b, u64::from(x >= 0), "m {} k {} x {} r {}", m, k, x, r);
        }
    }
}

#[test]
fn faithful_bit_needs_its_margins() {
    // Without the top margin: x = 2^m - 1 is read as negative for a mask
    // whose low k bits carry.
    let (m, k) = (20u32, 8u32);
    let top = (1u64 << m) - 1;
    assert_eq!(faithful_bit(top, 0xff, m, k), 0);
    // In the low band, -1 reads as non-negative for such a mask, negative
    // for r = 0: either answer is possible there, nowhere else.
    assert_eq!(faithful_bit(u64::MAX, 0xff, m, k), 1);
    assert_eq!(faithful_bit(u64::MAX, 0, m, k), 0);
    assert_eq!(
        faithful_bit((1u64 << k).wrapping_neg().wrapping_sub(1), 0xff, m, k),
        0
    );
}

/// In range for a faithful comparison: `-2^m <= x < 2^m - 2^k`, edges and
/// the low band `[-2^k, 0)` included.
fn faithful_range(m: u32, k: u32, raw: &[u64]) -> Vec<u64> {
    let hi = (1i128 << m) - (1i128 << k);
    let mut xe: Vec<u64> = in_range(m, raw)
        .into_iter()
        .map(|v| (v as i64 as i128).min(hi - 1) as i64 as u64)
        .collect();
    let band = (1i64 << k).wrapping_neg();
    xe.extend([
        band as u64,
        (band - 1) as u64,
        (band / 2) as u64,
        (hi - 1) as i64 as u64,
    ]);
    // in_range's fixed edges assume m >= 17: keep what is in range.
    xe.retain(|&v| {
        let v = v as i64 as i128;
        v >= -(1i128 << m) && v < hi
    });
    xe
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// select_skip on shares: DReLU is exact outside [-2^k, 0) and a bit
    /// inside; ReLU and every payload product are the exact products with
    /// that bit.
    #[test]
    fn select_skip_is_faithful(m in 2u32..=63, kf in 0.0f64..1.0, seed in any::<u64>()) {
        let k = ((f64::from(m) * kf) as u32).min(m - 1);
        let xe = faithful_range(m, k, &prg::random_u64s(&mut prg::seeded(seed), 64));
        let n = xe.len();
        let ye = prg::random_u64s(&mut prg::seeded(seed ^ 5), n);
        let (xs, ys) = (share(&xe, seed), share(&ye, seed ^ 7));
        let runs = sim::run_in_memory(3, ProtocolConfig::default(), SecretSource::InsecureDeterministic(seed), |p| {
            let y = pick(p.id, &ys);
            let o = compare::select_skip(p, m, k, n, &pick(p.id, &xs), &[&y])?;
            Ok([o.drelu, o.relu, o.products.first().cloned().unwrap_or_default()].concat())
        }).unwrap();
        let z = reconstruct(&runs);
        for i in 0..n {
            let x = xe[i] as i64;
            let d = z[i];
            prop_assert!(d <= 1, "m {} k {} x {}: drelu {}", m, k, x, d);
            if x >= 0 || x < -(1i64 << k) {
                prop_assert_eq!(d, u64::from(x >= 0), "m {} k {} x {}", m, k, x);
            }
            prop_assert_eq!(z[n + i], xe[i].wrapping_mul(d), "relu m {} k {} x {}", m, k, x);
            prop_assert_eq!(z[2 * n + i], ye[i].wrapping_mul(d), "product m {} k {} x {}", m, k, x);
        }
    }

    /// The faithful tournament returns a member of each group (and its
    /// index), at most levels * 2^k below the group's maximum.
    #[test]
    fn faithful_max_and_argmax_are_within_their_bound(size in 2usize..12, k in 0u32..16, seed in any::<u64>()) {
        let count = 40;
        let m = 30u32;
        // Values in [-2^(m-1), 2^(m-1) - 2^k): differences stay in range; half
        // the groups are near-ties (within a few 2^k of each other).
        let raw = prg::random_u64s(&mut prg::seeded(seed), count * size);
        let half = 1i64 << (m - 1);
        let xe: Vec<u64> = raw
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let g = i / size;
                let span = if g % 2 == 0 { (2 * half - (1i64 << k)) as u64 } else { 4u64 << k };
                let base = if g % 2 == 0 { -half } else { 12345 };
                (base + (*v % span) as i64) as u64
            })
            .collect();
        let xs = share(&xe, seed);
        let runs = sim::run_in_memory(3, ProtocolConfig::default(), SecretSource::InsecureDeterministic(seed), |p| {
            let (v, i) = compare::max_groups_skip(p, m, k, count, size, &pick(p.id, &xs), true)?;
            Ok([v, i].concat())
        }).unwrap();
        let z = reconstruct(&runs);
        let levels = compare::tournament_levels(size);
        for g in 0..count {
            let grp: Vec<i64> = xe[g * size..(g + 1) * size].iter().map(|v| *v as i64).collect();
            let max = *grp.iter().max().unwrap();
            let (v, idx) = (z[g] as i64, z[count + g] as usize);
            prop_assert!(idx < size, "group {} index {}", g, idx);
            prop_assert_eq!(grp[idx], v, "group {}: value is not the member at its index", g);
            prop_assert!(max - v <= i64::from(levels) << k, "group {}: {} vs max {} (k {})", g, v, max, k);
            if k == 0 {
                prop_assert_eq!(v, max);
            }
        }
    }
}

/// More elements than one 8,000-element chunk (the messages are built,
/// packed and unpacked chunk by chunk, each starting on a whole packed
/// group): every element of every chunk, the short last one included, is
/// right, at widths over each of the three fields.
#[test]
fn multi_chunk_comparisons_are_right_in_every_chunk() {
    let n = 2 * 8000 + 13;
    for (m, k) in [(36u32, 15u32), (63, 0), (50, 0)] {
        let raw = prg::random_u64s(&mut prg::seeded(u64::from(m)), n);
        let xe: Vec<u64> = faithful_range(m, k, &raw).into_iter().take(n).collect();
        let xs = share(&xe, 3);
        let runs = sim::run_in_memory(
            3,
            ProtocolConfig::default(),
            SecretSource::InsecureDeterministic(4),
            |p| Ok(compare::select_skip(p, m, k, n, &pick(p.id, &xs), &[])?.drelu),
        )
        .unwrap();
        let z = reconstruct(&runs);
        for i in 0..n {
            let x = xe[i] as i64;
            if x >= 0 || x < -(1i64 << k) {
                assert_eq!(z[i], u64::from(x >= 0), "m {m} k {k} element {i} x {x}");
            }
        }
    }
    // Exact truncation over several chunks (its comparison skips f bits).
    let m = 40u32;
    let lim = (1i128 << m) - (1i128 << F);
    let xe: Vec<u64> = prg::random_u64s(&mut prg::seeded(77), n)
        .iter()
        .map(|v| ((*v as i128).rem_euclid(2 * lim) - lim) as i64 as u64)
        .collect();
    let xs = share(&xe, 5);
    let runs = sim::run_in_memory(
        3,
        ProtocolConfig::default(),
        SecretSource::InsecureDeterministic(6),
        |p| Ok(compare::select_trunc(p, m, n, &pick(p.id, &xs), &[])?.trunc),
    )
    .unwrap();
    let z = reconstruct(&runs);
    for i in 0..n {
        let (x, t) = (xe[i] as i64, z[i] as i64);
        assert!(t == x >> F || t == (x >> F) + 1, "element {i} x {x}: {t}");
    }
}

/// The selections that compute only some outputs (`relu_trunc`,
/// `trunc_exact`, the tournaments' ReLU and payload products) and the
/// chunked, rayon-run combination and reply give, over several chunks, the
/// same values as the full `select_trunc` / `select_skip` with the same
/// randomness, and the right ones: at 16 fractional bits (one lane word in
/// P2's reply) and at 20 (two).
#[test]
fn partial_outputs_match_the_full_selection_over_several_chunks() {
    let n = 2 * 8000 + 13;
    for f in [16u32, 20] {
        let cfg = ProtocolConfig {
            frac_bits: f,
            ..ProtocolConfig::default()
        };
        let m = 44u32;
        let lim = (1i128 << m) - (1i128 << f);
        let xe: Vec<u64> = prg::random_u64s(&mut prg::seeded(u64::from(f)), n)
            .iter()
            .map(|v| ((*v as i128).rem_euclid(2 * lim) - lim) as i64 as u64)
            .collect();
        let xs = share(&xe, 11);
        let run = |which: u8| {
            let runs = sim::run_in_memory(3, cfg, SecretSource::InsecureDeterministic(12), |p| {
                let x = pick(p.id, &xs);
                Ok(match which {
                    0 => {
                        let o = compare::select_trunc(p, m, n, &x, &[])?;
                        [o.trunc, o.relu_trunc].concat()
                    }
                    1 => compare::trunc_exact(p, m, n, &x)?,
                    _ => compare::relu_trunc(p, m, n, &x)?,
                })
            })
            .unwrap();
            reconstruct(&runs)
        };
        let full = run(0);
        assert_eq!(run(1), full[..n], "trunc_exact, f = {f}");
        assert_eq!(run(2), full[n..], "relu_trunc, f = {f}");
        for i in 0..n {
            let (x, t) = (xe[i] as i64, full[i] as i64);
            assert!(
                t == x >> f || t == (x >> f) + 1,
                "f {f} element {i} x {x}: {t}"
            );
            assert_eq!(full[n + i] as i64, t.max(0), "f {f} element {i}");
        }
    }
    // Faithful selection with a payload (the tournaments' step): ReLU and
    // the product of the payload with DReLU, every chunk.
    let (m, k) = (36u32, 15u32);
    let raw = prg::random_u64s(&mut prg::seeded(21), n);
    let xe: Vec<u64> = faithful_range(m, k, &raw).into_iter().take(n).collect();
    let ye = prg::random_u64s(&mut prg::seeded(22), n);
    let (xs, ys) = (share(&xe, 23), share(&ye, 24));
    let runs = sim::run_in_memory(
        3,
        ProtocolConfig::default(),
        SecretSource::InsecureDeterministic(25),
        |p| {
            let (x, y) = (pick(p.id, &xs), pick(p.id, &ys));
            let o = compare::select_skip(p, m, k, n, &x, &[&y])?;
            Ok([o.drelu, o.relu, o.products.concat()].concat())
        },
    )
    .unwrap();
    let z = reconstruct(&runs);
    for i in 0..n {
        let d = z[i];
        assert!(d <= 1, "element {i}: DReLU {d}");
        if (xe[i] as i64) >= 0 || (xe[i] as i64) < -(1i64 << k) {
            assert_eq!(d, u64::from(xe[i] as i64 >= 0), "element {i}");
        }
        assert_eq!(z[n + i], xe[i].wrapping_mul(d), "ReLU, element {i}");
        assert_eq!(z[2 * n + i], ye[i].wrapping_mul(d), "payload, element {i}");
    }
}
