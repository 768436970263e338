//! Fewer rounds for small batches: an argmax with two comparison levels
//! whatever the number of classes.
//!
//! The tournament of [`crate::compare::argmax`] needs `ceil(log2 cols)`
//! comparison levels of three message hops each (12 hops for 10 classes).
//! [`argmax_all_pairs`] compares every pair of classes at once (one level),
//! counts each class's wins locally, and finds the class that beat all
//! others with a second comparison (6 hops in all). It sends more bytes
//! (`cols (cols - 1) / 2 + cols` comparisons per row instead of `cols - 1`),
//! so it pays off when round trips cost more than bytes: single queries, and
//! small batches on a WAN (docs/BENCHMARKS.md has the numbers).
//!
//! Ties go to the lowest index, as in the plaintext `argmax` of ppml-nn:
//! class `i` beats `j > i` when `x_i >= x_j` and beats `j < i` when
//! `x_i > x_j`, so exactly one class beats all others.

use crate::party::{P0, P2, Party};
use crate::{SmpcError, compare, error::expect_len};

/// Batches up to this size use [`argmax_all_pairs`] in private inference
/// (a public rule both computing parties apply to the public batch size).
pub const ALL_PAIRS_MAX_BATCH: usize = 1;

/// True when [`argmax_all_pairs`] takes fewer rounds than the tournament for
/// `cols` classes (more than 4 classes: the tournament needs 3+ levels).
pub fn all_pairs_saves_rounds(cols: usize) -> bool {
    cols > 4
}

/// Shares of the argmax of each row of a `rows x cols` shared matrix, in two
/// comparison levels (P2 passes an empty slice). The pairwise comparisons
/// use width `m`: exact when every difference of two entries of a row is in
/// `[-2^m, 2^m)`, as for [`compare::argmax_at`] (whose tournament compares
/// the same differences). The second level compares win counts in
/// `[-(cols - 1), 0]`, at the narrowest width that holds them.
pub fn argmax_all_pairs(
    party: &mut Party,
    m: u32,
    rows: usize,
    cols: usize,
    x: &[u64],
) -> Result<Vec<u64>, SmpcError> {
    if cols == 0 {
        return Err(SmpcError::Shape("argmax over zero columns".into()));
    }
    let pairs = cols * (cols - 1) / 2;
    // Win counts minus (cols - 1) lie in [-(cols - 1), 0]: 2^m2 > cols - 1.
    let m2 = (usize::BITS - (cols - 1).leading_zeros()).max(1);
    let helper = party.id == P2;
    if helper {
        compare::drelu_at(party, m, rows * pairs, &[])?;
        compare::drelu_at(party, m2, rows * cols, &[])?;
        return Ok(Vec::new());
    }
    expect_len("argmax input", x.len(), rows * cols)?;
    let lead = u64::from(party.id == P0);
    // Level 1: d = x_i - x_j for every pair i < j of every row.
    let mut diff = Vec::with_capacity(rows * pairs);
    for row in x.chunks_exact(cols) {
        for i in 0..cols {
            for j in i + 1..cols {
                diff.push(row[i].wrapping_sub(row[j]));
            }
        }
    }
    let ge = compare::drelu_at(party, m, rows * pairs, &diff)?; // [x_i >= x_j]
    // Wins of class i minus (cols - 1): 0 for the class that beat all others,
    // negative for every other class.
    let mut wins = vec![0u64; rows * cols];
    for r in 0..rows {
        let w = &mut wins[r * cols..(r + 1) * cols];
        for v in w.iter_mut() {
            *v = (lead * (cols as u64 - 1)).wrapping_neg();
        }
        let mut p = r * pairs;
        for i in 0..cols {
            for j in i + 1..cols {
                // i beats j (j > i) when x_i >= x_j; j beats i when x_j > x_i,
                // i.e. 1 - [x_i >= x_j].
                w[i] = w[i].wrapping_add(ge[p]);
                w[j] = w[j].wrapping_add(lead.wrapping_sub(ge[p]));
                p += 1;
            }
        }
    }
    // Level 2: the winner is the class with wins - (cols - 1) >= 0.
    let winner = compare::drelu_at(party, m2, rows * cols, &wins)?;
    Ok(winner
        .chunks_exact(cols)
        .map(|w| {
            w.iter().enumerate().fold(0u64, |s, (i, b)| {
                s.wrapping_add((i as u64).wrapping_mul(*b))
            })
        })
        .collect())
}
