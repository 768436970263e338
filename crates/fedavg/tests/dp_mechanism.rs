//! The DP-FedAvg mechanism: clipping bounds every client's contribution, and the discrete
//! Gaussian noise has the advertised scale z*S (on the sum) and z*S/(qN) (on the average),
//! comes from a secret generator, and differs between runs.

use ppml_fedavg::dp::{
    DiscreteGaussianSum, DpConfig, clip_update, dp_aggregate, fixed_point_margin, l2_norm, log_erfc,
};
use ppml_random::{SecretRng, insecure_deterministic_rng, os_rng};
use proptest::prelude::*;

/// Reproducible "secret" randomness for tests: insecure by design.
fn test_rng(seed: u64) -> SecretRng {
    insecure_deterministic_rng(seed, "test/dp-mechanism")
}

fn vec_strategy() -> impl Strategy<Value = Vec<f32>> {
    (1usize..64, -4.0f64..4.0).prop_flat_map(|(dim, log_mag)| {
        let mag = 10f64.powf(log_mag) as f32;
        proptest::collection::vec(-mag..mag, dim)
    })
}

proptest! {
    /// After clip_update the norm is <= S, the scale is min(1, S/||u||) and the direction kept.
    #[test]
    fn clip_update_bounds_norm(v in vec_strategy(), clip in 1e-3f64..10.0) {
        let orig = v.clone();
        let mut v = v;
        let norm = l2_norm(&orig);
        let scale = clip_update(&mut v, clip).unwrap();
        prop_assert!(l2_norm(&v) <= clip);
        let want = (clip / norm).min(1.0);
        prop_assert!((scale - want).abs() <= 1e-6 * want);
        for (a, b) in v.iter().zip(&orig) {
            prop_assert!((f64::from(*a) - scale * f64::from(*b)).abs() <= 1e-6 * clip.max(f64::from(b.abs())));
        }
    }

    /// Sensitivity: with the same noise seed, adding or removing one client (of any norm) moves
    /// the aggregate by at most S/(qN) in L2 norm, up to the grid's rounding slack
    /// (Delta_u grid units instead of 2^k) -- every contribution is bounded.
    #[test]
    fn one_client_moves_aggregate_by_at_most_s_over_qn(
        others in proptest::collection::vec(proptest::collection::vec(-50.0f32..50.0, 16), 0..6),
        extra in proptest::collection::vec(-1000.0f32..1000.0, 16),
        clip in 0.01f64..5.0,
        qn in 0.5f64..20.0,
        seed in any::<u64>(),
    ) {
        let cfg = DpConfig::new(clip, 1.0, 1e-5).unwrap();
        let without = dp_aggregate(&others, 16, &cfg, qn, &mut test_rng(seed)).unwrap();
        let mut with_one = others.clone();
        with_one.push(extra.clone());
        let with = dp_aggregate(&with_one, 16, &cfg, qn, &mut test_rng(seed)).unwrap();
        let diff: Vec<f32> = with.update.iter().zip(&without.update).map(|(a, b)| a - b).collect();
        // f32 output rounding: each coordinate is within 2^-24 relative of its f64 value.
        let slack: f64 = with.update.iter().chain(&without.update).map(|x| f64::from(x.abs())).sum::<f64>() * 1.2e-7;
        let rel = DiscreteGaussianSum::new(&cfg, 16).unwrap();
        let bound = rel.sensitivity_units() * rel.grid() / qn;
        prop_assert!(bound <= clip / qn * (1.0 + 1e-5));
        prop_assert!(l2_norm(&diff) <= bound + slack, "{} > {}", l2_norm(&diff), bound);
        prop_assert_eq!(with.scales.len(), others.len() + 1);
        let clipped = with_one.iter().filter(|u| l2_norm(u) > clip).count();
        prop_assert_eq!(with.num_clipped, clipped);
    }
}

/// Pure noise of dimension n through the full aggregation path (no client sampled), and the
/// noise parameter on the average.
fn aggregate_noise(n: usize, cfg: &DpConfig, qn: f64, rng: &mut SecretRng) -> (Vec<f64>, f64) {
    let none: [Vec<f32>; 0] = [];
    let agg = dp_aggregate(&none, n, cfg, qn, rng).unwrap();
    // Never below z S; above it only by the rounding slack sqrt(n) / 2^k.
    let zs = cfg.noise_multiplier * cfg.clip;
    assert!(
        agg.noise_std_on_sum >= zs,
        "{} < {zs}",
        agg.noise_std_on_sum
    );
    assert!(agg.noise_std_on_sum <= zs * (1.0 + 1e-3));
    (
        agg.update.iter().map(|&x| f64::from(x)).collect(),
        agg.noise_std_on_average,
    )
}

fn mean_var(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let m = x.iter().sum::<f64>() / n;
    let v = x.iter().map(|y| (y - m).powi(2)).sum::<f64>() / (n - 1.0);
    (m, v)
}

/// Sample variance test: (n-1) s^2 / sigma^2 ~ chi^2(n-1), so s^2/sigma^2 has mean 1 and
/// sd sqrt(2/(n-1)); accept within 5 sd (two-sided p ~ 6e-7 for a correct implementation).
fn assert_std(x: &[f64], sigma: f64) {
    let n = x.len() as f64;
    let (m, v) = mean_var(x);
    assert!(m.abs() < 5.0 * sigma / n.sqrt(), "mean {m} (sigma {sigma})");
    let ratio = v / (sigma * sigma);
    let sd = (2.0 / (n - 1.0)).sqrt();
    assert!(
        (ratio - 1.0).abs() < 5.0 * sd,
        "s^2/sigma^2 = {ratio}, allowed 1 +- {}",
        5.0 * sd
    );
}

#[test]
fn noise_on_average_has_std_z_s_over_qn() {
    for (clip, z, qn, seed) in [(1.0, 1.0, 10.0, 1), (0.5, 2.5, 3.0, 2), (3.0, 0.3, 1.0, 3)] {
        let cfg = DpConfig::new(clip, z, 1e-5).unwrap();
        let (x, sigma) = aggregate_noise(100_001, &cfg, qn, &mut test_rng(seed));
        assert_std(&x, sigma);
    }
}

#[test]
fn noise_is_secret_fresh_and_reproducible_only_insecurely() {
    let cfg = DpConfig::new(2.0, 1.5, 1e-5).unwrap();
    // From the OS: two releases of the same (empty) sum differ.
    let (a, _) = aggregate_noise(1000, &cfg, 4.0, &mut os_rng());
    let (b, _) = aggregate_noise(1000, &cfg, 4.0, &mut os_rng());
    assert_ne!(a, b);
    // Only the insecure test generator repeats a release.
    let (c, _) = aggregate_noise(1000, &cfg, 4.0, &mut test_rng(9));
    let (d, _) = aggregate_noise(1000, &cfg, 4.0, &mut test_rng(9));
    assert_eq!(c, d);
}

#[test]
fn released_values_are_grid_multiples() {
    // The release is (integer) * g / qN: no low-order float bits carry the sum.
    let cfg = DpConfig::new(1.0, 1.0, 1e-5).unwrap();
    let rel = DiscreteGaussianSum::new(&cfg, 64).unwrap();
    let updates = [vec![0.1234567f32; 64], vec![-0.01; 64]];
    let agg = dp_aggregate(&updates, 64, &cfg, 1.0, &mut test_rng(4)).unwrap();
    for &x in &agg.update {
        let units = f64::from(x) / rel.grid();
        assert!(
            (units - units.round()).abs() < 1e-6 * units.abs().max(1.0),
            "{units}"
        );
    }
    assert!(rel.effective_noise_multiplier() >= 1.0);
}

#[test]
fn noise_is_gaussian_and_uncorrelated() {
    let n = 100_000;
    let cfg = DpConfig::new(1.0, 1.0, 1e-5).unwrap();
    let (x, sigma) = aggregate_noise(n, &cfg, 1.0, &mut test_rng(5));
    let mut x: Vec<f64> = x.iter().map(|a| a / sigma).collect();
    // Coordinates are independent: correlation of pairs (2i, 2i+1) ~ N(0, 1/m).
    let m = n / 2;
    let corr = (0..m).map(|i| x[2 * i] * x[2 * i + 1]).sum::<f64>() / m as f64;
    assert!(
        corr.abs() < 5.0 / (m as f64).sqrt(),
        "pair correlation {corr}"
    );
    // Kolmogorov-Smirnov against Phi(t) = erfc(-t/sqrt 2)/2; critical value at p = 0.001 is
    // 1.95/sqrt(n).
    x.sort_by(|a, b| a.total_cmp(b));
    let mut d: f64 = 0.0;
    for (i, &t) in x.iter().enumerate() {
        let cdf = 0.5 * log_erfc(-t / std::f64::consts::SQRT_2).exp();
        d = d
            .max((cdf - i as f64 / n as f64).abs())
            .max(((i + 1) as f64 / n as f64 - cdf).abs());
    }
    assert!(d < 1.95 / (n as f64).sqrt(), "KS statistic {d}");
    // Excess kurtosis of a Gaussian is 0 (sd ~ sqrt(24/n)).
    let (mu, var) = mean_var(&x);
    let k = x.iter().map(|y| (y - mu).powi(4)).sum::<f64>() / n as f64 / (var * var) - 3.0;
    assert!(
        k.abs() < 5.0 * (24.0 / n as f64).sqrt(),
        "excess kurtosis {k}"
    );
}

#[test]
fn zero_noise_is_exact_average_of_clipped_updates() {
    let cfg = DpConfig::new(1.0, 0.0, 1e-5).unwrap();
    let updates = [vec![3.0f32, 4.0], vec![0.3, 0.4], vec![0.0, -0.5]];
    let agg = dp_aggregate(&updates, 2, &cfg, 4.0, &mut test_rng(0)).unwrap();
    // (0.6, 0.8) + (0.3, 0.4) + (0, -0.5) over qN = 4 (fixed denominator, not 3 reporters).
    let want = [(0.6 + 0.3) / 4.0, (0.8 + 0.4 - 0.5) / 4.0];
    for (a, b) in agg.update.iter().zip(want) {
        assert!((f64::from(*a) - b).abs() < 1e-6, "{a} vs {b}");
    }
    assert_eq!(agg.num_clipped, 1);
    assert_eq!(agg.scales[1], 1.0);
    assert!((agg.scales[0] - 0.2).abs() < 1e-12);
}

#[test]
fn errors_on_bad_input() {
    let mut rng = test_rng(0);
    assert!(clip_update(&mut [1.0, f32::INFINITY], 1.0).is_err());
    assert!(clip_update(&mut [1.0], f64::NAN).is_err());
    let bad = DpConfig {
        clip: -1.0,
        noise_multiplier: 1.0,
        delta: 1e-5,
    };
    let none: [Vec<f32>; 0] = [];
    assert!(dp_aggregate(&none, 1, &bad, 1.0, &mut rng).is_err());
    let cfg = DpConfig::new(1.0, 1.0, 1e-5).unwrap();
    assert!(dp_aggregate(&none, 1, &cfg, f64::INFINITY, &mut rng).is_err());
    // A noise multiplier beyond the exact sampler's range is an error, not a wrap.
    let huge = DpConfig::new(1.0, 1e9, 1e-5).unwrap();
    assert!(dp_aggregate(&none, 1, &huge, 1.0, &mut rng).is_err());
}

#[test]
fn fixed_point_margin_bounds_rounding() {
    // Rounding each coordinate to a multiple of 2^-f moves it by <= 2^-(f+1).
    let f = 16;
    let v: Vec<f32> = (0..1000)
        .map(|i| ((i as f32) * 0.37).sin() * 1e-3)
        .collect();
    let ulp = 2f64.powi(-f);
    let rounded: Vec<f32> = v
        .iter()
        .map(|&x| ((f64::from(x) / ulp).round() * ulp) as f32)
        .collect();
    let diff: Vec<f32> = v.iter().zip(&rounded).map(|(a, b)| a - b).collect();
    assert!(l2_norm(&diff) <= fixed_point_margin(v.len(), f as u32));
}
