//! Distributed DP: the clients' noise shares, summed as the server unmasks
//! them (mod 2^k, read as signed integers), follow the intended discrete
//! Gaussian `N_Z(0, n s^2)`: a chi-square goodness-of-fit test against its
//! probability mass function (which can fail: it rejects shares that were
//! each given the full variance instead of a 1/n share).

use ppml_fedavg::ddp::{DdpTask, decode_sum, encode_client, ring_bits_for};
use ppml_random::dgauss::DiscreteGaussian;

const N: usize = 5;
const DIM: usize = 40_000;
const S: f64 = 3.0;

/// The summed noise of `N` clients for every coordinate of a zero update.
fn summed_noise() -> Vec<i64> {
    // clip == scale: one grid step is one model unit, so decode is the identity.
    let task = DdpTask {
        clip: 1024.0,
        scale: 1024.0,
        local_sigma: S,
    };
    let k = ring_bits_for(&task, N);
    let mask = ppml_secagg::ring_mask(k);
    let mut acc = vec![0u64; DIM];
    for _ in 0..N {
        let e = encode_client(&vec![0.0; DIM], &task, k).unwrap();
        for (a, v) in acc.iter_mut().zip(e) {
            *a = a.wrapping_add(v) & mask;
        }
    }
    decode_sum(&acc, &task, k)
        .into_iter()
        .map(|x| x.round() as i64)
        .collect()
}

/// Chi-square statistic of `samples` against `N_Z(0, var)`, bins of width
/// 2 over +-4 sd plus two tails; returns (statistic, degrees of freedom).
fn chi_square(samples: &[i64], var: f64) -> (f64, usize) {
    let sd = var.sqrt();
    let lim = (4.0 * sd).ceil() as i64;
    let pmf = |x: i64| (-(x * x) as f64 / (2.0 * var)).exp();
    let z: f64 = (-20 * lim..=20 * lim).map(pmf).sum();
    let mut edges: Vec<i64> = (-lim..=lim).step_by(2).collect();
    edges.push(lim + 1);
    // Bin i covers [edges[i], edges[i+1]); plus (-inf, -lim) and [lim+1, inf).
    let nb = edges.len() + 1;
    let bin = |x: i64| -> usize {
        if x < edges[0] {
            0
        } else {
            edges.iter().rposition(|&e| x >= e).unwrap() + 1
        }
    };
    let mut expected = vec![0.0; nb];
    for x in -20 * lim..=20 * lim {
        expected[bin(x)] += pmf(x) / z * samples.len() as f64;
    }
    let mut observed = vec![0.0; nb];
    for &x in samples {
        observed[bin(x)] += 1.0;
    }
    let stat = observed
        .iter()
        .zip(&expected)
        .filter(|(_, e)| **e > 5.0)
        .map(|(o, e)| (o - e) * (o - e) / e)
        .sum();
    let dof = expected.iter().filter(|e| **e > 5.0).count() - 1;
    (stat, dof)
}

/// Upper critical value of chi-square with `dof` degrees of freedom at
/// p ~ 1e-4 (Wilson-Hilferty approximation, z = 3.72).
fn critical(dof: usize) -> f64 {
    let k = dof as f64;
    let z = 3.72;
    k * (1.0 - 2.0 / (9.0 * k) + z * (2.0 / (9.0 * k)).sqrt()).powi(3)
}

#[test]
fn noise_shares_sum_to_the_intended_discrete_gaussian() {
    let sum = summed_noise();
    let var = N as f64 * S * S;
    let mean = sum.iter().sum::<i64>() as f64 / DIM as f64;
    let emp_var = sum.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / DIM as f64;
    assert!(mean.abs() < 5.0 * (var / DIM as f64).sqrt(), "mean {mean}");
    assert!(
        (emp_var / var - 1.0).abs() < 0.05,
        "variance {emp_var} vs {var}"
    );
    let (stat, dof) = chi_square(&sum, var);
    assert!(stat < critical(dof), "chi2 {stat} with {dof} dof");

    // The test has power: shares that each carried the full variance
    // (a mis-calibrated client) are rejected.
    let g = DiscreteGaussian::with_sigma_at_least(S).unwrap();
    let mut rng = ppml_random::os_rng();
    let wrong: Vec<i64> = (0..DIM)
        .map(|_| (0..N * N).map(|_| g.sample(&mut rng)).sum())
        .collect();
    let (stat, dof) = chi_square(&wrong, var);
    assert!(stat > critical(dof), "mis-scaled noise passed: chi2 {stat}");
}

/// Distributed-DP integers through the real secure round (in-memory
/// channels): the server's unmasked sum, read as signed integers, is the
/// exact sum of the survivors' noisy integer vectors, also when a client
/// leaves before sending its masked input.
#[test]
fn noisy_integers_sum_exactly_through_secure_aggregation() {
    use ppml_fedavg::secure::{SecureSlot, client_round_ring, default_config, server_round};
    use ppml_net::{Channel, NetConfig, in_memory_pair};
    use ppml_secagg::{RoundParams, Step};
    let n = 4;
    let dim = 64;
    let task = DdpTask {
        clip: 1.0,
        scale: 65536.0,
        local_sigma: 20_000.0,
    };
    let need = ring_bits_for(&task, n);
    let mut cfg = default_config(Some(3), false);
    cfg.bits = need - ppml_secagg::ring_bits(0, n);
    let params = RoundParams::new(n, dim, &cfg, [3; 16]).unwrap();
    assert!(params.ring_bits >= need);
    let k = params.ring_bits;
    let inputs: Vec<Vec<u64>> = (0..n)
        .map(|i| {
            let x: Vec<f32> = (0..dim)
                .map(|j| ((i + j) % 7) as f32 * 0.01 - 0.03)
                .collect();
            encode_client(&x, &task, k).unwrap()
        })
        .collect();
    let net = NetConfig::default().with_timeout(std::time::Duration::from_secs(30));
    let (mut server_chs, client_chs): (Vec<Channel>, Vec<Channel>) =
        (0..n).map(|_| in_memory_pair(&net)).unzip();
    let out = std::thread::scope(|s| {
        for (i, mut ch) in client_chs.into_iter().enumerate() {
            let slot = SecureSlot {
                index: i as u32,
                params: params.clone(),
            };
            let x = inputs[i].clone();
            // Client 2 leaves before its masked input.
            let leave = (i == 2).then_some(Step::MaskedInputCollection);
            s.spawn(move || client_round_ring(&mut ch, 1, &slot, x, leave).unwrap());
        }
        let mut links: Vec<&mut Channel> = server_chs.iter_mut().collect();
        server_round(&mut links, 1, &params, 9)
    });
    assert!(out.aborted.is_none(), "{out:?}");
    assert_eq!(out.survivors, vec![0, 1, 3]);
    let mask = ppml_secagg::ring_mask(k);
    let expect: Vec<u64> = (0..dim)
        .map(|j| {
            [0, 1, 3]
                .iter()
                .fold(0u64, |a, &i| a.wrapping_add(inputs[i][j]))
                & mask
        })
        .collect();
    assert_eq!(out.raw_sum, expect);
    let decoded = decode_sum(&out.raw_sum, &task, k);
    // Three clients' clipped values plus noise of std ~ sqrt(3) * 20000 grid units.
    for v in decoded {
        assert!(
            v.abs() < 3.0 * 0.05 + 12.0 * 1.8 * 20_000.0 / 65536.0,
            "{v}"
        );
    }
}
