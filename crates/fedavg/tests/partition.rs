//! Partitioners: sizes, label distributions, disjointness, seeded determinism.

use ppml_fedavg::{Partition, label_histogram};
use proptest::prelude::*;

/// 6,000 labels, 600 of each digit, in a scrambled but fixed order.
fn labels() -> Vec<u8> {
    (0..6000u32)
        .map(|i| ((i * 7 + i / 13) % 10) as u8)
        .collect()
}

fn check_disjoint(parts: &[Vec<usize>], n: usize) -> usize {
    let mut seen = vec![false; n];
    let mut total = 0;
    for p in parts {
        for &i in p {
            assert!(i < n, "index {i} out of range");
            assert!(!seen[i], "index {i} given to two clients");
            seen[i] = true;
            total += 1;
        }
    }
    total
}

#[test]
fn iid_sizes_and_coverage() {
    let y = labels();
    let parts = Partition::Iid.split(&y, 100, 1).unwrap();
    assert_eq!(parts.len(), 100);
    assert!(parts.iter().all(|p| p.len() == 60));
    assert_eq!(check_disjoint(&parts, y.len()), y.len());
    // IID: most clients see most classes (60 draws over 10 classes).
    let hist = label_histogram(&y, &parts);
    let mean_classes: f64 = hist
        .iter()
        .map(|h| h.iter().filter(|&&c| c > 0).count() as f64)
        .sum::<f64>()
        / 100.0;
    assert!(mean_classes > 9.0, "mean classes per client {mean_classes}");
}

#[test]
fn mcmahan_shards_on_60000() {
    // 60,000 labels, 200 shards of 300, 2 per client.
    // A bijection of 0..60000 (7919 is prime to 60000): exactly 6,000 per class.
    let y: Vec<u8> = (0..60000u64)
        .map(|i| ((i * 7919) % 60000 % 10) as u8)
        .collect();
    let parts = Partition::Shards { per_client: 2 }
        .split(&y, 100, 3)
        .unwrap();
    assert_eq!(parts.len(), 100);
    assert!(parts.iter().all(|p| p.len() == 600));
    assert_eq!(check_disjoint(&parts, y.len()), 60000);
    let hist = label_histogram(&y, &parts);
    // Each shard of 300 sorted labels spans at most 2 classes (6,000 per class is a
    // multiple of 300, so exactly 1): a client sees at most 2 classes.
    for h in &hist {
        let k = h.iter().filter(|&&c| c > 0).count();
        assert!((1..=2).contains(&k), "client sees {k} classes: {h:?}");
        assert!(h.iter().all(|&c| c % 300 == 0));
    }
}

#[test]
fn dirichlet_skew_depends_on_alpha() {
    let y = labels();
    let skew = |alpha: f64| {
        let parts = Partition::Dirichlet { alpha }.split(&y, 20, 5).unwrap();
        assert_eq!(check_disjoint(&parts, y.len()), y.len());
        assert!(parts.iter().all(|p| !p.is_empty()));
        // mean over clients of the share of the client's most frequent class
        let hist = label_histogram(&y, &parts);
        hist.iter()
            .zip(&parts)
            .map(|(h, p)| *h.iter().max().unwrap() as f64 / p.len() as f64)
            .sum::<f64>()
            / parts.len() as f64
    };
    let strong = skew(0.1);
    let weak = skew(100.0);
    assert!(strong > 0.5, "alpha 0.1: top-class share {strong}");
    assert!(weak < 0.2, "alpha 100: top-class share {weak}");
}

#[test]
fn halves_are_contiguous() {
    let y = labels();
    let parts = Partition::Contiguous.split(&y, 2, 9).unwrap();
    assert_eq!(parts[0], (0..3000).collect::<Vec<_>>());
    assert_eq!(parts[1], (3000..6000).collect::<Vec<_>>());
    let parsed: Partition = "halves".parse().unwrap();
    assert_eq!(parsed, Partition::Contiguous);
}

#[test]
fn unbalanced_sizes_differ_and_cover() {
    let y = labels();
    let parts = Partition::Unbalanced { sigma: 1.5 }
        .split(&y, 50, 2)
        .unwrap();
    assert_eq!(check_disjoint(&parts, y.len()), y.len());
    let min = parts.iter().map(Vec::len).min().unwrap();
    let max = parts.iter().map(Vec::len).max().unwrap();
    assert!(min >= 1);
    assert!(max > 4 * min, "sizes {min}..{max} are not unbalanced");
}

#[test]
fn parse_errors_are_clear() {
    for bad in [
        "dirichlet",
        "dirichlet:-1",
        "dirichlet:x",
        "shards:0",
        "zipf",
        "unbalanced:-2",
    ] {
        assert!(bad.parse::<Partition>().is_err(), "{bad} should not parse");
    }
    assert_eq!(
        "dirichlet:0.5".parse::<Partition>().unwrap(),
        Partition::Dirichlet { alpha: 0.5 }
    );
    assert_eq!(
        "shards".parse::<Partition>().unwrap(),
        Partition::Shards { per_client: 2 }
    );
    let y = labels();
    assert!(Partition::Iid.split(&y, 0, 1).is_err());
    assert!(Partition::Iid.split(&y[..5], 6, 1).is_err());
    assert!(
        Partition::Shards { per_client: 2 }
            .split(&y[..100], 60, 1)
            .is_err()
    );
}

fn any_partition() -> impl Strategy<Value = Partition> {
    prop_oneof![
        Just(Partition::Iid),
        (1usize..4).prop_map(|per_client| Partition::Shards { per_client }),
        (0.05f64..10.0).prop_map(|alpha| Partition::Dirichlet { alpha }),
        Just(Partition::Contiguous),
        (0.0f64..2.0).prop_map(|sigma| Partition::Unbalanced { sigma }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn partitions_are_disjoint_deterministic_and_nonempty(
        p in any_partition(),
        n in 60usize..600,
        clients in 1usize..12,
        seed in any::<u64>(),
    ) {
        let y: Vec<u8> = (0..n).map(|i| ((i * 7 + i / 5) % 10) as u8).collect();
        let a = p.split(&y, clients, seed).unwrap();
        let b = p.split(&y, clients, seed).unwrap();
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(a.len(), clients);
        prop_assert!(a.iter().all(|v| !v.is_empty()));
        let total = check_disjoint(&a, n);
        match p {
            Partition::Shards { per_client } => {
                prop_assert_eq!(total, clients * per_client * (n / (clients * per_client)));
            }
            _ => prop_assert_eq!(total, n),
        }
        if matches!(p, Partition::Iid | Partition::Contiguous) {
            let min = a.iter().map(Vec::len).min().unwrap();
            let max = a.iter().map(Vec::len).max().unwrap();
            prop_assert!(max - min <= 1);
        }
    }

    #[test]
    fn different_seeds_give_different_iid_splits(seed in any::<u64>()) {
        let y = labels();
        let a = Partition::Iid.split(&y, 10, seed).unwrap();
        let b = Partition::Iid.split(&y, 10, seed.wrapping_add(1)).unwrap();
        prop_assert_ne!(a, b);
    }
}

#[test]
fn absurd_shard_counts_are_errors_not_panics() {
    let y = labels();
    // clients * per_client overflows usize: checked, an error.
    for spec in ["shards:18446744073709551615", "shards:9223372036854775808"] {
        let p: Partition = spec.parse().unwrap();
        assert!(p.split(&y, 100, 1).is_err(), "{spec}");
        assert!(p.split(&y, 3, 1).is_err(), "{spec}");
    }
    // More shards than examples.
    let p: Partition = "shards:1000".parse().unwrap();
    assert!(p.split(&y, 100, 1).is_err());
    // A huge log-normal sigma no longer overflows to infinite weights.
    let p = Partition::Unbalanced { sigma: 1e6 };
    let parts = p.split(&y, 10, 1).unwrap();
    assert_eq!(check_disjoint(&parts, y.len()), y.len());
}
