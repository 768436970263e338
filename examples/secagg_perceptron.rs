//! Seed tutorial 004: ten parties train a perceptron on MNIST 0-vs-1 and the server only
//! sees the sum of their updates.
//!
//! 1. The seed's naive pairwise masks: parties i < j agree on a random vector r_ij; i adds
//!    it, j subtracts it, so the masks cancel in the sum. Fine while everyone stays, but
//!    when one party drops after the masks were agreed, its masks never cancel and the
//!    "sum" is garbage.
//! 2. The real protocol (Bonawitz et al., `ppml_secagg`): the same dropout is repaired by
//!    reconstructing the dropped party's mask key from the survivors' Shamir shares, and
//!    training goes on.
//!
//! Run: `cargo run --release --example secagg_perceptron [-- DATA_DIR]`

use ppml_nn::mnist::{self, Dataset, Normalization};
use ppml_secagg::{DropoutPlan, SecAggConfig, SecretSource, Step, aggregate_in_process};
use rand::{Rng, RngExt};

const PARTIES: usize = 10;
const ROUNDS: usize = 5;
const DIM: usize = 785; // 784 weights + bias

/// One local epoch of the perceptron rule from `w`; returns the update `w_local - w`.
fn local_update(w: &[f32], data: &Dataset, idx: &[usize], lr: f32) -> Vec<f32> {
    let mut wl = w.to_vec();
    for &i in idx {
        let x = data.image(i);
        let y = if data.labels[i] == 1 { 1.0 } else { -1.0 };
        let s: f32 = x.iter().zip(&wl).map(|(a, b)| a * b).sum::<f32>() + wl[784];
        if y * s <= 0.0 {
            for (wj, xj) in wl.iter_mut().zip(x) {
                *wj += lr * y * xj;
            }
            wl[784] += lr * y;
        }
    }
    wl.iter().zip(w).map(|(a, b)| a - b).collect()
}

fn accuracy(w: &[f32], data: &Dataset) -> f64 {
    let ok = (0..data.len())
        .filter(|&i| {
            let s: f32 = data.image(i).iter().zip(w).map(|(a, b)| a * b).sum::<f32>() + w[784];
            (s > 0.0) == (data.labels[i] == 1)
        })
        .count();
    ok as f64 / data.len() as f64
}

/// The seed's scheme: pairwise masks agreed by all parties up front; `dropped` never
/// sends its masked update. Returns what the server computes as the sum.
fn naive_sum(updates: &[Vec<f32>], dropped: Option<usize>, rng: &mut impl Rng) -> Vec<f32> {
    let n = updates.len();
    let mut masked: Vec<Vec<f32>> = updates.to_vec();
    for i in 0..n {
        for j in i + 1..n {
            let r: Vec<f32> = (0..DIM)
                .map(|_| rng.random_range(-100.0f32..100.0))
                .collect();
            for k in 0..DIM {
                masked[i][k] += r[k];
                masked[j][k] -= r[k];
            }
        }
    }
    let mut sum = vec![0f32; DIM];
    for (i, m) in masked.iter().enumerate() {
        if Some(i) != dropped {
            for (s, v) in sum.iter_mut().zip(m) {
                *s += v;
            }
        }
    }
    sum
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(mnist::default_data_dir);
    let data = mnist::load(&dir, Normalization::UnitRange)?;
    let train = data.train.filter_labels(&[0, 1]);
    let test = data.test.filter_labels(&[0, 1]);
    println!(
        "MNIST 0-vs-1: {} training images over {PARTIES} parties, {} test images",
        train.len(),
        test.len()
    );
    // The toy's pairwise masks are secrets: from the OS.
    let mut rng = ppml_random::os_rng();
    let shards: Vec<Vec<usize>> = (0..PARTIES)
        .map(|p| (p..train.len()).step_by(PARTIES).collect())
        .collect();
    let lr = 0.01;

    // Part 1: the naive pairwise masks of the seed tutorial.
    let w0 = vec![0f32; DIM];
    let updates: Vec<Vec<f32>> = shards
        .iter()
        .map(|s| local_update(&w0, &train, s, lr))
        .collect();
    let true_sum: Vec<f32> = (0..DIM)
        .map(|k| updates.iter().map(|u| u[k]).sum())
        .collect();
    let naive = naive_sum(&updates, None, &mut rng);
    println!(
        "\n[naive masks] all {PARTIES} parties present: |masked sum - true sum| <= {:.2e} (masks cancel)",
        max_diff(&naive, &true_sum)
    );
    let survivors_sum: Vec<f32> = (0..DIM)
        .map(|k| {
            updates
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != 3)
                .map(|(_, u)| u[k])
                .sum()
        })
        .collect();
    let broken = naive_sum(&updates, Some(3), &mut rng);
    println!(
        "[naive masks] party 3 drops before sending: |masked sum - survivors' sum| = {:.1} \
         (party 3's masks never cancel: the aggregate is garbage)",
        max_diff(&broken, &survivors_sum)
    );

    // Part 2: Bonawitz et al. secure aggregation, with party 3 dropping in round 2.
    let cfg = SecAggConfig {
        clip: 4.0,
        ..SecAggConfig::default()
    };
    let mut w = vec![0f32; DIM];
    println!(
        "\n[secure aggregation] threshold {}/{PARTIES}, clip {}, {} bits",
        PARTIES / 2 + 1,
        cfg.clip,
        cfg.bits
    );
    for round in 0..ROUNDS {
        let updates: Vec<Vec<f32>> = shards
            .iter()
            .map(|s| local_update(&w, &train, s, lr))
            .collect();
        // Party 3 drops after sharing its keys, before sending its masked update, in round 1;
        // party 7 leaves during unmasking in round 3 (its update still counts).
        let plan = match round {
            1 => DropoutPlan::with(PARTIES, &[(3, Step::MaskedInputCollection)])?,
            3 => DropoutPlan::with(PARTIES, &[(7, Step::Unmasking)])?,
            _ => DropoutPlan::none(PARTIES),
        };
        // Public choices from the round number; the clients' keys and masks from the OS.
        let out =
            aggregate_in_process(&updates, &cfg, &plan, 1000 + round as u64, SecretSource::Os)?;
        let expected: Vec<f32> = (0..DIM)
            .map(|k| {
                out.survivors
                    .iter()
                    .map(|&i| updates[i as usize][k].clamp(-cfg.clip, cfg.clip))
                    .sum()
            })
            .collect();
        let m = out.survivors.len() as f32;
        for (wk, s) in w.iter_mut().zip(&out.sum) {
            *wk += s / m;
        }
        println!(
            "round {round}: {} of {PARTIES} updates in the sum, |secure sum - plaintext sum| = {:.2e} \
             (bound {:.2e}), client sent {} bytes, test accuracy {:.2}%",
            out.survivors.len(),
            max_diff(&out.sum, &expected),
            out.error_bound,
            out.clients[0].stats.traffic.bytes_sent,
            100.0 * accuracy(&w, &test)
        );
    }
    Ok(())
}
