//! Weighted averaging: exact on hand-made updates, equal to an f64 reference,
//! and the server update with momentum.

use ppml_fedavg::{Aggregator, ClientUpdate, FedError, Server, ServerConfig, WeightedAverage};
use proptest::prelude::*;

fn up(client: usize, delta: &[f32], weight: f64) -> ClientUpdate<'_> {
    ClientUpdate {
        client,
        delta,
        weight,
        dropped: false,
    }
}

#[test]
fn hand_made_weighted_average_is_exact() {
    // Weights 1, 3 (total 4): normalised 0.25 and 0.75 are exact in f32, and so are the products.
    let a = [4.0f32, -8.0, 0.5, 0.0];
    let b = [0.0f32, 8.0, 1.5, -2.0];
    let mut out = [f32::NAN; 4];
    let info = WeightedAverage
        .aggregate(1, &[up(7, &a, 1.0), up(9, &b, 3.0)], &mut out)
        .unwrap();
    assert_eq!(out, [1.0, 4.0, 1.25, -1.5]);
    assert_eq!(info.contributors, vec![7, 9]);
    assert!(info.dropped.is_empty());
    assert_eq!(info.total_weight, 4.0);
}

#[test]
fn dropped_updates_are_left_out() {
    let a = [2.0f32, 2.0];
    let b = [100.0f32, -100.0];
    let c = [4.0f32, 0.0];
    let mut out = [0.0f32; 2];
    let mut ups = vec![up(0, &a, 1.0), up(1, &b, 5.0), up(2, &c, 1.0)];
    ups[1].dropped = true;
    let info = WeightedAverage.aggregate(3, &ups, &mut out).unwrap();
    assert_eq!(out, [3.0, 1.0]);
    assert_eq!(info.dropped, vec![1]);
    assert_eq!(info.contributors, vec![0, 2]);
}

#[test]
fn bad_updates_are_errors() {
    let a = [1.0f32, 2.0];
    let short = [1.0f32];
    let mut out = [0.0f32; 2];
    let e = WeightedAverage.aggregate(1, &[up(0, &a, 1.0), up(1, &short, 1.0)], &mut out);
    assert!(matches!(e, Err(FedError::Aggregate(_))));
    let e = WeightedAverage.aggregate(1, &[up(0, &a, 0.0)], &mut out);
    assert!(matches!(e, Err(FedError::Aggregate(_))));
    let e = WeightedAverage.aggregate(1, &[up(0, &a, f64::NAN)], &mut out);
    assert!(matches!(e, Err(FedError::Aggregate(_))));
    let mut d = up(0, &a, 1.0);
    d.dropped = true;
    let e = WeightedAverage.aggregate(4, &[d], &mut out);
    assert!(matches!(e, Err(FedError::NoUpdates(4))));
    let e = WeightedAverage.aggregate(4, &[], &mut out);
    assert!(matches!(e, Err(FedError::NoUpdates(4))));
}

#[test]
fn server_applies_average_and_momentum() {
    let cfg = ServerConfig {
        server_lr: 1.0,
        momentum: 0.5,
    };
    let mut s = Server::new(vec![1.0, 1.0], cfg, Box::new(WeightedAverage)).unwrap();
    let d = [2.0f32, -2.0];
    s.apply(1, &[up(0, &d, 1.0)]).unwrap();
    assert_eq!(s.global, vec![3.0, -1.0]); // v = d
    s.apply(2, &[up(0, &d, 1.0)]).unwrap();
    assert_eq!(s.global, vec![6.0, -4.0]); // v = 0.5 d + d
    assert!(
        Server::new(
            vec![0.0],
            ServerConfig {
                server_lr: 1.0,
                momentum: 1.0
            },
            Box::new(WeightedAverage)
        )
        .is_err()
    );
    // A non-finite average is an error, not a silently broken model.
    let mut s = Server::new(
        vec![0.0],
        ServerConfig::default(),
        Box::new(WeightedAverage),
    )
    .unwrap();
    let inf = [f32::INFINITY];
    assert!(s.apply(1, &[up(0, &inf, 1.0)]).is_err());
}

proptest! {
    #[test]
    fn matches_f64_reference(
        ups in proptest::collection::vec(
            (proptest::collection::vec(-10.0f32..10.0, 16), 1u32..1000, any::<bool>()), 1..12),
    ) {
        prop_assume!(ups.iter().any(|u| !u.2));
        let list: Vec<ClientUpdate<'_>> = ups
            .iter()
            .enumerate()
            .map(|(i, (d, w, drop))| ClientUpdate { client: i, delta: d, weight: *w as f64, dropped: *drop })
            .collect();
        let mut out = vec![0.0f32; 16];
        WeightedAverage.aggregate(1, &list, &mut out).unwrap();
        let total: f64 = ups.iter().filter(|u| !u.2).map(|u| u.1 as f64).sum();
        for (j, &o) in out.iter().enumerate() {
            let r: f64 = ups.iter().filter(|u| !u.2).map(|u| u.0[j] as f64 * u.1 as f64).sum::<f64>() / total;
            prop_assert!((o as f64 - r).abs() <= 1e-5 * (1.0 + r.abs()), "coord {}: {} vs {}", j, o, r);
        }
    }

    #[test]
    fn equal_updates_average_to_themselves(d in proptest::collection::vec(-1e3f32..1e3, 8), ws in proptest::collection::vec(1u32..100, 1..6)) {
        let list: Vec<ClientUpdate<'_>> = ws.iter().enumerate().map(|(i, w)| up(i, &d, *w as f64)).collect();
        let mut out = vec![0.0f32; 8];
        WeightedAverage.aggregate(1, &list, &mut out).unwrap();
        for (o, x) in out.iter().zip(&d) {
            prop_assert!((o - x).abs() <= 1e-4 * (1.0 + x.abs()));
        }
    }
}

#[test]
fn secure_aggregation_matches_plain_weighted_average() {
    use ppml_fedavg::SecureAggregator;
    let a: Vec<f32> = (0..50).map(|i| (i as f32 - 25.0) / 100.0).collect();
    let b: Vec<f32> = (0..50)
        .map(|i| ((i * 7 % 13) as f32 - 6.0) / 50.0)
        .collect();
    let c: Vec<f32> = (0..50).map(|i| ((i % 5) as f32) / 20.0).collect();
    let mut ups = vec![up(3, &a, 600.0), up(5, &b, 200.0), up(8, &c, 1200.0)];
    let mut plain = vec![0.0f32; 50];
    WeightedAverage.aggregate(1, &ups, &mut plain).unwrap();
    let mut sec = SecureAggregator::new(None, false, 1).unwrap();
    let mut got = vec![0.0f32; 50];
    let info = sec.aggregate(1, &ups, &mut got).unwrap();
    assert_eq!(info.contributors, vec![3, 5, 8]);
    assert!(info.protocol_bytes > 0);
    assert_eq!(sec.last_clipped(), 0);
    for (g, p) in got.iter().zip(&plain) {
        assert!((g - p).abs() < 1e-4, "{g} vs {p}");
    }
    // Client 5 drops before sending its masked input: the others' average is recovered.
    ups[1].dropped = true;
    WeightedAverage.aggregate(2, &ups, &mut plain).unwrap();
    let info = sec.aggregate(2, &ups, &mut got).unwrap();
    assert_eq!(info.dropped, vec![5]);
    assert_eq!(info.contributors, vec![3, 8]);
    for (g, p) in got.iter().zip(&plain) {
        assert!((g - p).abs() < 1e-4, "{g} vs {p}");
    }
}

#[test]
fn dp_aggregation_clips_and_divides_by_expected_clients() {
    use ppml_fedavg::DpAggregator;
    use ppml_fedavg::dp::DpConfig;
    // No noise: (clip(a) + clip(b)) / (q N) with q N = 0.5 * 4 = 2.
    let cfg = DpConfig::new(1.0, 0.0, 1e-5).unwrap();
    let mut agg = DpAggregator::new(cfg, 0.5, 4).unwrap();
    let a = [3.0f32, 4.0]; // norm 5: clipped to (0.6, 0.8)
    let b = [0.5f32, 0.0]; // inside the ball
    let mut out = [0.0f32; 2];
    let info = agg
        .aggregate(1, &[up(0, &a, 600.0), up(1, &b, 10.0)], &mut out)
        .unwrap();
    assert_eq!(info.contributors, vec![0, 1]);
    assert_eq!(agg.last_clipped(), 1);
    assert!(
        (out[0] - 0.55).abs() < 1e-6 && (out[1] - 0.4).abs() < 1e-6,
        "{out:?}"
    );
    // With noise the accountant reports a finite epsilon that grows with rounds.
    let cfg = DpConfig::new(1.0, 1.0, 1e-5).unwrap();
    let mut agg = DpAggregator::new(cfg, 0.1, 100).unwrap();
    let d = [0.1f32; 8];
    let mut out = [0.0f32; 8];
    agg.aggregate(1, &[up(0, &d, 1.0)], &mut out).unwrap();
    let (e1, _) = agg.privacy_spent().unwrap();
    agg.aggregate(2, &[up(0, &d, 1.0)], &mut out).unwrap();
    let (e2, delta) = agg.privacy_spent().unwrap();
    assert!(e1.is_finite() && e2 > e1, "{e1} {e2}");
    assert_eq!(delta, 1e-5);
    assert!(DpAggregator::new(DpConfig::new(1.0, 1.0, 1e-5).unwrap(), 0.0, 100).is_err());
}

#[test]
fn dp_over_secure_aggregation_matches_plain_dp_within_quantisation() {
    use ppml_fedavg::DpAggregator;
    use ppml_fedavg::dp::DpConfig;
    // No noise, so both paths compute (sum of clipped updates) / (q N) and must
    // agree up to the 24-bit quantisation of secure aggregation and its
    // slightly tighter clip (the rounding margin).
    let cfg = DpConfig::new(1.0, 0.0, 1e-5).unwrap();
    let deltas: Vec<Vec<f32>> = (0..6)
        .map(|c| {
            (0..50)
                .map(|j| ((c * 7 + j) as f32 * 0.37).sin() * (c as f32 + 0.5))
                .collect()
        })
        .collect();
    let mut updates: Vec<ClientUpdate<'_>> = deltas
        .iter()
        .enumerate()
        .map(|(c, d)| up(c, d, 1.0))
        .collect();
    updates[4].dropped = true;
    let mut plain = DpAggregator::new(cfg, 0.5, 12).unwrap();
    let mut secure = DpAggregator::new(cfg, 0.5, 12)
        .unwrap()
        .with_secure_aggregation(None, false, 9);
    let (mut a, mut b) = (vec![0.0f32; 50], vec![0.0f32; 50]);
    let ia = plain.aggregate(1, &updates, &mut a).unwrap();
    let ib = secure.aggregate(1, &updates, &mut b).unwrap();
    assert_eq!(ia.contributors, vec![0, 1, 2, 3, 5]);
    assert_eq!(ib.contributors, ia.contributors);
    assert_eq!(ib.dropped, vec![4]);
    assert!(ib.protocol_bytes > 0, "the sum went through the protocol");
    assert_eq!(plain.last_clipped(), secure.last_clipped());
    // Per coordinate: 5 contributions, each within half a 24-bit step of
    // [-1, 1] plus the margin's relative change (sqrt(50) * 2^-24), over qN = 6.
    let tol = 5.0 * (1.0 / f64::from(1u32 << 23) + 50f64.sqrt() / f64::from(1u32 << 24)) / 6.0;
    for (x, y) in a.iter().zip(&b) {
        assert!(
            (f64::from(*x) - f64::from(*y)).abs() <= tol + 1e-6,
            "{x} vs {y}"
        );
    }
    // Accounting is the same whichever way the sum was computed.
    assert_eq!(plain.privacy_spent(), secure.privacy_spent());
}

#[test]
fn one_nan_update_costs_only_its_sender() {
    let a = [1.0f32, 2.0];
    let b = [f32::NAN, 0.0];
    let c = [3.0f32, 4.0];
    let mut server = Server::new(
        vec![0.0; 2],
        ServerConfig::default(),
        Box::new(WeightedAverage),
    )
    .unwrap();
    let info = server
        .apply(1, &[up(0, &a, 1.0), up(1, &b, 1.0), up(2, &c, 1.0)])
        .unwrap();
    assert_eq!(info.dropped, vec![1]);
    assert_eq!(info.contributors, vec![0, 2]);
    assert_eq!(server.global, vec![2.0, 3.0]);
    // The next round goes on.
    server.apply(2, &[up(0, &a, 1.0)]).unwrap();
    assert_eq!(server.global, vec![3.0, 5.0]);
}

#[test]
fn dp_noise_comes_from_the_os_and_empty_rounds_release_noise() {
    use ppml_fedavg::DpAggregator;
    use ppml_fedavg::dp::DpConfig;
    use ppml_random::SecretSource;
    let cfg = DpConfig::new(1.0, 1.0, 1e-5).unwrap();
    let d = [0.1f32; 32];
    let release = |agg: &mut DpAggregator| {
        let mut out = vec![0.0f32; 32];
        agg.aggregate(1, &[up(0, &d, 1.0)], &mut out).unwrap();
        out
    };
    // Two aggregators built alike (same everything a user can type) add different noise.
    let a = release(&mut DpAggregator::new(cfg, 0.1, 10).unwrap());
    let b = release(&mut DpAggregator::new(cfg, 0.1, 10).unwrap());
    assert_ne!(a, b, "DP noise repeated across runs");
    // Only the insecure test source repeats it.
    let insecure = || {
        DpAggregator::new(cfg, 0.1, 10)
            .unwrap()
            .with_secret_source(SecretSource::InsecureDeterministic(5))
    };
    assert_eq!(release(&mut insecure()), release(&mut insecure()));
    // A Poisson round may sample nobody: the release is pure noise, accounted.
    let mut agg = DpAggregator::new(cfg, 0.1, 10).unwrap();
    let mut out = vec![0.0f32; 32];
    let info = agg.aggregate(1, &[], &mut out).unwrap();
    assert!(info.contributors.is_empty());
    assert!(out.iter().any(|&x| x != 0.0), "no noise on an empty round");
    assert!(agg.privacy_spent().unwrap().0 > 0.0);
    assert!(agg.last_noise_std() >= 1.0);
    use ppml_fedavg::Aggregator;
    assert_eq!(agg.poisson_rate(), Some(0.1));
}
