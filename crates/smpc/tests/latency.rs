//! The two-level all-pairs argmax (single queries) against plaintext, with
//! ties, and its round count against the tournament's.

use ppml_sharing::prg;
use ppml_smpc::party::{P0, P1, ProtocolConfig};
use ppml_smpc::{compare, latency, sim};
use proptest::prelude::*;

fn share(x: &[u64], seed: u64) -> (Vec<u64>, Vec<u64>) {
    let r = prg::random_u64s(
        &mut ppml_random::PublicSeed::new(seed).rng("test/latency"),
        x.len(),
    );
    let x1: Vec<u64> = x.iter().zip(&r).map(|(a, b)| a.wrapping_sub(*b)).collect();
    (r, x1)
}

/// Plaintext argmax, lowest index on ties (as ppml-nn).
fn argmax_plain(row: &[i64]) -> u64 {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best as u64
}

/// Runs `f` on shares of `x` (rows x cols); returns the reconstructed
/// output and the largest round count of a computing party.
fn run(x: &[i64], rows: usize, cols: usize, seed: u64, all_pairs: bool) -> (Vec<u64>, u64) {
    let xs = share(&x.iter().map(|&v| v as u64).collect::<Vec<_>>(), seed);
    let runs = sim::run_in_memory(
        3,
        ProtocolConfig::default(),
        ppml_smpc::SecretSource::InsecureDeterministic(seed),
        |p| {
            let mine = match p.id {
                P0 => xs.0.clone(),
                P1 => xs.1.clone(),
                _ => Vec::new(),
            };
            let before = p.net.stats().total.rounds;
            let out = if all_pairs {
                latency::argmax_all_pairs(p, p.cfg.cmp_bits, rows, cols, &mine)?
            } else {
                compare::argmax(p, rows, cols, &mine)?
            };
            Ok((out, p.net.stats().total.rounds - before))
        },
    )
    .expect("run");
    let out = runs[P0]
        .output
        .0
        .iter()
        .zip(&runs[P1].output.0)
        .map(|(a, b)| a.wrapping_add(*b))
        .collect();
    let rounds = runs[..3].iter().map(|r| r.output.1).max().unwrap_or(0);
    (out, rounds)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn all_pairs_argmax_matches_plaintext(
        rows in 1usize..4,
        cols in 1usize..12,
        // Few distinct values, so ties are common; differences stay below
        // the compare range 2^28 (6 x 2^24).
        vals in proptest::collection::vec(-3i64..3, 48),
        scale in prop_oneof![Just(1i64), Just(1 << 16), Just(1 << 24)],
        seed in any::<u64>(),
    ) {
        let x: Vec<i64> = (0..rows * cols).map(|i| vals[i % vals.len()] * scale).collect();
        let (got, _) = run(&x, rows, cols, seed, true);
        let want: Vec<u64> = x.chunks(cols).map(argmax_plain).collect();
        prop_assert_eq!(got, want);
    }
}

#[test]
fn all_pairs_takes_fewer_rounds_for_ten_classes() {
    let x: Vec<i64> = (0..10).map(|i| ((i * 7) % 10) * 1000 - 4000).collect();
    let (a, rounds_pairs) = run(&x, 1, 10, 1, true);
    let (b, rounds_tournament) = run(&x, 1, 10, 1, false);
    assert_eq!(a, b);
    assert_eq!(a, vec![argmax_plain(&x)]);
    assert!(latency::all_pairs_saves_rounds(10));
    assert!(
        rounds_pairs < rounds_tournament,
        "all pairs {rounds_pairs} rounds, tournament {rounds_tournament}"
    );
}
