//! `ppml secagg-bench`: one round of secure aggregation (Bonawitz et al. or SecAgg+),
//! all roles in this process, with timings, bytes per role and an exactness check.

use super::{CommonArgs, Report};
use clap::Args;
use ppml_secagg::{DropoutPlan, SecAggConfig, Step, aggregate_in_process, pack::packed_len};
use rand::RngExt;
use rayon::prelude::*;
use serde_json::json;

#[derive(Debug, Args)]
pub struct SecaggBenchArgs {
    /// Number of clients.
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// Values per client vector.
    #[arg(long, default_value_t = 100_000)]
    pub dim: usize,
    /// Fraction of clients that drop out (each at a random step unless --drop-step).
    #[arg(long, default_value_t = 0.0)]
    pub dropout: f64,
    /// Step at which the dropped clients leave (0..=3: AdvertiseKeys, ShareKeys,
    /// MaskedInputCollection, Unmasking); default: a random step per client.
    #[arg(long)]
    pub drop_step: Option<usize>,
    /// Use the SecAgg+ graph (O(log n) neighbours) instead of the complete graph.
    #[arg(long)]
    pub graph: bool,
    /// SecAgg+ degree (neighbours per client; implies --graph). Default 4 ceil(log2 n).
    #[arg(long)]
    pub degree: Option<usize>,
    /// Shamir threshold (default: n/2+1, or (degree+1)/3+1 with --graph).
    #[arg(long)]
    pub threshold: Option<usize>,
    /// Quantisation bits per value.
    #[arg(long, default_value_t = 16)]
    pub bits: u32,
    /// Clipping bound of the inputs.
    #[arg(long, default_value_t = 1.0)]
    pub clip: f32,
    /// Repeat the round and report medians.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
}

/// Most client values (`--clients` x `--dim`) the benchmark generates.
const MAX_BENCH_VALUES: usize = 1 << 28;

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

pub fn run(args: SecaggBenchArgs, common: &CommonArgs) -> anyhow::Result<Report> {
    let (n, d) = (args.clients, args.dim);
    anyhow::ensure!(n >= 2 && d >= 1, "need --clients >= 2 and --dim >= 1");
    anyhow::ensure!(args.repeat >= 1, "--repeat must be at least 1");
    // Every client's input vector is held in memory at once.
    let values = n.checked_mul(d).filter(|&v| v <= MAX_BENCH_VALUES);
    anyhow::ensure!(
        values.is_some(),
        "--clients {n} x --dim {d} values are more than this benchmark holds in memory \
         (at most {MAX_BENCH_VALUES}, 1 GiB of f32)"
    );
    let cfg = SecAggConfig {
        threshold: args.threshold,
        bits: args.bits,
        clip: args.clip,
        graph: args.graph,
        degree: args.degree,
        ..SecAggConfig::default()
    };
    eprintln!("generating {n} x {d} inputs ...");
    let inputs: Vec<Vec<f32>> = (0..n)
        .into_par_iter()
        .map(|i| {
            let mut r =
                ppml_random::PublicSeed::new(common.seed).rng(&format!("secagg-bench/input/{i}"));
            (0..d).map(|_| r.random_range(-1.0f32..1.0)).collect()
        })
        .collect();
    let plan = match args.drop_step {
        None => DropoutPlan::random(n, args.dropout, common.seed)?,
        Some(s) => {
            let step = Step::from_index(s)
                .ok_or_else(|| anyhow::anyhow!("--drop-step must be 0..=3, got {s}"))?;
            DropoutPlan::random_at(n, args.dropout, step, common.seed)?
        }
    };
    let mut rounds = Vec::new();
    for r in 0..args.repeat {
        eprintln!("round {} of {} ...", r + 1, args.repeat);
        rounds.push(aggregate_in_process(
            &inputs,
            &cfg,
            &plan,
            common.seed.wrapping_add(r as u64),
            // The clients' keys and masks always come from the OS.
            ppml_secagg::SecretSource::Os,
        )?);
    }
    let out = &rounds[0];
    let p = &out.params;
    // Exactness: every repeat found the plaintext sum of the survivors'
    // quantised inputs mod 2^k (checked by ppml-secagg).
    let mut sum_correct = true;
    for o in &rounds {
        sum_correct &= o.survivors == out.survivors && o.sum_is_exact(&inputs)?;
    }
    let max_abs_error = out.max_abs_error(&inputs);

    let round_seconds = median(rounds.iter().map(|o| o.round_seconds).collect());
    let server_seconds = median(rounds.iter().map(|o| o.server.seconds).collect());
    let completed: Vec<_> = out.clients.iter().filter(|c| c.completed).collect();
    let client_seconds_median = median(
        rounds
            .iter()
            .flat_map(|o| o.clients.iter().filter(|c| c.completed))
            .map(|c| c.stats.seconds)
            .collect(),
    );
    let bytes_per_client = median(
        completed
            .iter()
            .map(|c| c.stats.traffic.bytes_sent as f64)
            .collect(),
    );
    let bytes_received_per_client = median(
        completed
            .iter()
            .map(|c| c.stats.traffic.bytes_received as f64)
            .collect(),
    );
    let plain_bytes = packed_len(d, p.bits) as f64;
    let expansion = bytes_per_client / plain_bytes;
    let values_per_second = (n * d) as f64 / round_seconds;
    let client_rounds = completed
        .iter()
        .map(|c| c.stats.traffic.rounds)
        .max()
        .unwrap_or(0);
    let human = format!(
        "secure aggregation ({}), {n} clients x {d} values, {} bits -> Z_2^{}, threshold {}, \
         dropout {} ({} dropped, {} in the sum)\n\
         round {round_seconds:.3} s (median of {}), server compute {server_seconds:.3} s, \
         client compute median {client_seconds_median:.4} s\n\
         bytes sent per client {bytes_per_client:.0} (plain quantised vector {plain_bytes:.0}): \
         expansion {expansion:.3}x; received per client {bytes_received_per_client:.0}; \
         server sent {} / received {} bytes\n\
         {:.2} M client values/s; sum correct: {sum_correct}; max |error| {max_abs_error:.2e} \
         (bound {:.2e})",
        match p.degree {
            Some(k) => format!("SecAgg+, degree {k}"),
            None => "SecAgg, complete graph".into(),
        },
        p.bits,
        p.ring_bits,
        p.threshold,
        args.dropout,
        plan.dropped(),
        out.survivors.len(),
        rounds.len(),
        out.server.traffic.bytes_sent,
        out.server.traffic.bytes_received,
        values_per_second / 1e6,
        out.error_bound,
    );
    Ok(Report {
        json: json!({
            "clients": n,
            "dim": d,
            "dropout": args.dropout,
            "dropped": plan.dropped(),
            "survivors": out.survivors.len(),
            "set_sizes": out.set_sizes,
            "graph": p.degree.is_some(),
            "degree": p.degree.unwrap_or(n - 1),
            "threshold": p.threshold,
            "bits": p.bits,
            "ring_bits": p.ring_bits,
            "round_seconds": round_seconds,
            "server_seconds": server_seconds,
            "client_seconds_median": client_seconds_median,
            "bytes_per_client": bytes_per_client,
            "bytes_received_per_client": bytes_received_per_client,
            "plain_bytes_per_client": plain_bytes,
            "expansion": expansion,
            "server_bytes_sent": out.server.traffic.bytes_sent,
            "server_bytes_received": out.server.traffic.bytes_received,
            "client_rounds": client_rounds,
            "server_rounds": out.server.traffic.rounds,
            "values_per_second": values_per_second,
            "sum_correct": sum_correct,
            "max_abs_error": max_abs_error,
            "error_bound": out.error_bound,
            "repeat": rounds.len(),
            "threads": common.threads(),
        }),
        human,
    })
}
