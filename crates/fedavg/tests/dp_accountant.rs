//! The RDP accountant of `ppml_fedavg::dp` against Opacus, plus properties that need no reference.

use ppml_fedavg::dp::{
    DpError, RdpAccountant, compute_rdp, default_orders, epsilon_for, noise_multiplier_for,
    rdp_to_epsilon,
};
use proptest::prelude::*;

/// Reference epsilons from Opacus's RDP accountant.
///
/// How they were obtained: `docs/dp_reference.py` (in this repository), run as
/// ```text
/// python3 -m venv /tmp/dpvenv
/// /tmp/dpvenv/bin/pip install numpy scipy && /tmp/dpvenv/bin/pip install --no-deps opacus
/// /tmp/dpvenv/bin/python docs/dp_reference.py
/// ```
/// with opacus 1.6.0 (torch NOT installed: the script loads only
/// `opacus/accountants/analysis/rdp.py` with importlib), numpy 2.4.6, scipy 1.17.1,
/// Python 3.11.7. For each row it calls
/// `compute_rdp(q=q, noise_multiplier=z, steps=steps, orders=DEFAULT_ALPHAS)` and
/// `get_privacy_spent(orders=DEFAULT_ALPHAS, rdp=rdp, delta=delta)`, where DEFAULT_ALPHAS =
/// `[1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))` (RDPAccountant's default).
/// Columns: (q, noise multiplier z, steps, delta, epsilon, optimal order).
const OPACUS_1_6_0: [(f64, f64, u64, f64, f64, f64); 10] = [
    (0.1, 1.0, 100, 1e-05, 7.899255002434629, 3.2),
    (0.01, 1.1, 1000, 1e-05, 1.7117700912203435, 9.6),
    (0.1, 0.8, 50, 1e-05, 9.233989368735447, 2.7),
    (0.05, 2.0, 500, 1e-06, 3.1018682543968032, 8.2),
    (1.0, 5.0, 20, 1e-05, 4.161624306053592, 5.9), // q = 1 (no subsampling)
    (0.1, 10.0, 1000, 1e-05, 1.3197365962562626, 14.0), // large z
    (0.1, 1.2, 200, 1e-05, 7.944717221402476, 3.4), // 10 of 100 clients per round
    (0.001, 0.7, 10000, 1e-05, 2.024672903782695, 6.1),
    (0.3, 1.5, 30, 1e-05, 6.858364245463161, 3.7),
    (0.02, 0.5, 100, 1e-05, 11.587207992824771, 2.2),
];

#[test]
fn epsilon_agrees_with_opacus_within_one_percent() {
    for (q, z, steps, delta, eps_ref, order_ref) in OPACUS_1_6_0 {
        // Through the running accountant, one round at a time for the short runs.
        let mut acct = RdpAccountant::new();
        if steps <= 200 {
            for _ in 0..steps {
                acct.step(q, z, 1).unwrap();
            }
        } else {
            acct.step(q, z, steps).unwrap();
        }
        let spent = acct.spent(delta).unwrap();
        let rel = (spent.epsilon - eps_ref).abs() / eps_ref;
        assert!(
            rel < 0.01,
            "q={q} z={z} steps={steps} delta={delta}: {} vs Opacus {eps_ref}",
            spent.epsilon
        );
        assert_eq!(spent.best_order, order_ref);
        assert_eq!(spent.delta, delta);
        assert_eq!(acct.steps(), steps);
    }
}

/// A_alpha = E_{x ~ N(0, s^2)} [ ((1-q) + q exp((2x - 1) / (2 s^2)))^alpha ], by Simpson's rule.
/// Independent of the series in dp.rs (which is what Opacus also evaluates).
fn log_a_quadrature(q: f64, s: f64, alpha: f64) -> f64 {
    let (lo, hi) = (-40.0 * s, 40.0 * s + 1.0);
    let n = 400_000usize; // even
    let h = (hi - lo) / n as f64;
    let f = |x: f64| {
        let log_density = -x * x / (2.0 * s * s) - (s * (2.0 * std::f64::consts::PI).sqrt()).ln();
        let ratio = (1.0 - q) + q * ((2.0 * x - 1.0) / (2.0 * s * s)).exp();
        (log_density + alpha * ratio.ln()).exp()
    };
    let mut sum = f(lo) + f(hi);
    for i in 1..n {
        let w = if i % 2 == 1 { 4.0 } else { 2.0 };
        sum += w * f(lo + i as f64 * h);
    }
    (sum * h / 3.0).ln()
}

#[test]
fn rdp_matches_numerical_integration() {
    for (q, z, alpha) in [
        (0.1, 1.0, 3.2),
        (0.01, 1.1, 9.6),
        (0.3, 2.0, 7.0),
        (0.05, 0.8, 1.5),
    ] {
        let rdp = compute_rdp(q, z, 1, &[alpha]).unwrap()[0];
        let want = log_a_quadrature(q, z, alpha) / (alpha - 1.0);
        assert!(
            (rdp - want).abs() <= 1e-6 * want.abs().max(1e-12),
            "q={q} z={z} alpha={alpha}: series {rdp} vs quadrature {want}"
        );
    }
}

#[test]
fn special_cases() {
    let orders = default_orders();
    assert_eq!(orders.len(), 99 + 52);
    assert_eq!(orders[0], 1.1);
    assert_eq!(*orders.last().unwrap(), 63.0);
    // q = 1: the plain Gaussian mechanism, rdp(alpha) = alpha / (2 z^2) per step.
    let rdp = compute_rdp(1.0, 2.0, 3, &orders).unwrap();
    for (a, r) in orders.iter().zip(&rdp) {
        assert!((r - 3.0 * a / 8.0).abs() < 1e-12);
    }
    // q = 0: nothing released about anyone.
    assert!(
        compute_rdp(0.0, 1.0, 100, &orders)
            .unwrap()
            .iter()
            .all(|&r| r == 0.0)
    );
    // The RDP -> (eps, delta) conversion still charges its delta term at the largest order.
    let zero = vec![0.0; orders.len()];
    let (e0, a0) = rdp_to_epsilon(&orders, &zero, 1e-5).unwrap();
    assert_eq!(epsilon_for(0.0, 1.0, 100, 1e-5).unwrap(), e0);
    assert_eq!(a0, 63.0);
    let want = -(1e-5f64.ln() + 63f64.ln()) / 62.0 + (62.0f64 / 63.0).ln();
    assert!((e0 - want).abs() < 1e-12 && e0 > 0.0 && e0 < 0.2);
    // z = 0: no privacy.
    assert_eq!(epsilon_for(0.1, 0.0, 1, 1e-5).unwrap(), f64::INFINITY);
    // Errors.
    assert!(matches!(
        rdp_to_epsilon(&orders, &rdp[1..], 1e-5),
        Err(DpError::InvalidOrders(_))
    ));
    assert!(matches!(
        rdp_to_epsilon(&orders, &rdp, 0.0),
        Err(DpError::InvalidDelta(_))
    ));
    assert!(RdpAccountant::with_orders(vec![]).is_err());
    assert!(RdpAccountant::with_orders(vec![0.5]).is_err());
}

#[test]
fn noise_multiplier_search_hits_target() {
    for (q, steps, target) in [(0.1, 100, 8.0), (0.1, 200, 2.0), (0.01, 1000, 1.0)] {
        let z = noise_multiplier_for(q, steps, 1e-5, target).unwrap();
        let eps = epsilon_for(q, z, steps, 1e-5).unwrap();
        assert!(eps <= target, "z={z} gives {eps} > {target}");
        let eps_less = epsilon_for(q, z * 0.999, steps, 1e-5).unwrap();
        assert!(
            eps_less > target * 0.99,
            "search not tight: z={z}, eps(0.999 z)={eps_less}"
        );
    }
}

#[test]
fn mixed_rounds_compose_additively() {
    let mut acct = RdpAccountant::new();
    acct.step(0.1, 1.0, 30).unwrap();
    acct.step(0.05, 2.0, 70).unwrap();
    acct.step(0.1, 1.0, 10).unwrap();
    let orders = default_orders();
    let a = compute_rdp(0.1, 1.0, 40, &orders).unwrap();
    let b = compute_rdp(0.05, 2.0, 70, &orders).unwrap();
    for ((x, y), r) in a.iter().zip(&b).zip(acct.rdp()) {
        assert!((x + y - r).abs() <= 1e-12 * r.max(1.0));
    }
    assert_eq!(acct.steps(), 110);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// epsilon grows with the number of rounds (and never decreases).
    #[test]
    fn epsilon_monotone_in_steps(q in 0.001f64..0.5, z in 0.5f64..5.0, steps in 1u64..2000, more in 1u64..500) {
        let e1 = epsilon_for(q, z, steps, 1e-5).unwrap();
        let e2 = epsilon_for(q, z, steps + more, 1e-5).unwrap();
        prop_assert!(e2 >= e1, "eps({}) = {} < eps({}) = {}", steps + more, e2, steps, e1);
        prop_assert!(e1.is_finite() && e1 > 0.0);
    }

    /// More noise or a smaller sampling rate never costs more privacy.
    #[test]
    fn epsilon_monotone_in_noise_and_rate(q in 0.001f64..0.5, z in 0.5f64..5.0, steps in 1u64..1000) {
        let e = epsilon_for(q, z, steps, 1e-5).unwrap();
        prop_assert!(epsilon_for(q, z * 1.1, steps, 1e-5).unwrap() <= e);
        prop_assert!(epsilon_for(q * 0.9, z, steps, 1e-5).unwrap() <= e);
        prop_assert!(epsilon_for(q, z, steps, 1e-3).unwrap() <= e);
    }
}
