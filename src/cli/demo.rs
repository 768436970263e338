//! `ppml demo`: secret-share a tensor between in-process parties over real
//! channels, compute `y = a*x + b` on the shares, and reconstruct only at the
//! owner. The protocol is `ppml_smpc::demo::affine_on_shares`; this file
//! parses flags, draws the (public, seeded) demo input and formats the report.

use super::{CommonArgs, Report};
use clap::Args;
use ppml_fixedpoint::FixedPoint;
use rand::RngExt;
use serde_json::json;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Number of elements of the shared tensor.
    #[arg(long, default_value_t = 8)]
    pub len: usize,
    /// Public scale `a` in `y = a*x + b`.
    #[arg(long, default_value_t = 3.0)]
    pub scale: f64,
    /// Public offset `b` in `y = a*x + b`.
    #[arg(long, default_value_t = 0.5)]
    pub offset: f64,
}

/// Longest tensor the demo shares (its parties hold every share in memory).
const MAX_LEN: usize = 1 << 24;

pub fn run(args: DemoArgs, common: &CommonArgs) -> anyhow::Result<Report> {
    anyhow::ensure!(
        args.len <= MAX_LEN,
        "--len {} is above the demo's limit of {MAX_LEN} elements",
        args.len
    );
    let fp = FixedPoint::default();
    // The demo's input values are a public, reproducible choice; the shares are secret.
    let mut rng = ppml_random::PublicSeed::new(common.seed).rng("demo/input");
    let xs: Vec<f32> = (0..args.len)
        .map(|_| rng.random_range(-10.0f32..10.0))
        .collect();
    let run = ppml_smpc::demo::affine_on_shares(&xs, args.scale, args.offset, fp)?;
    let max_err = xs
        .iter()
        .zip(&run.y)
        .map(|(&x, &y)| ((args.scale * x as f64 + args.offset) - y).abs())
        .fold(0.0, f64::max);
    let per_party: Vec<_> = run
        .parties
        .iter()
        .enumerate()
        .map(|(i, s)| json!({ "party": i, "bytes_sent": s.bytes_sent, "bytes_received": s.bytes_received, "rounds": s.rounds }))
        .collect();
    let bytes_total: u64 = run.parties.iter().map(|s| s.bytes_sent).sum();
    let mut human = format!(
        "owner shared {} values with parties 1 and 2; they computed y = {}*x + {} on shares\n",
        args.len, args.scale, args.offset
    );
    for (x, y) in xs.iter().zip(&run.y).take(8) {
        human.push_str(&format!("  x = {x:>9.4}  ->  y = {y:>9.4}\n"));
    }
    human.push_str(&format!(
        "max |error| = {max_err:.2e} (fixed point, {} fractional bits)\nbytes sent: {bytes_total} in total; rounds per party: {:?}; {:.4} s",
        fp.frac_bits(),
        run.parties.iter().map(|s| s.rounds).collect::<Vec<_>>(),
        run.seconds
    ));
    Ok(Report {
        json: json!({
            "len": args.len,
            "max_abs_error": max_err,
            "frac_bits": fp.frac_bits(),
            "bytes_total": bytes_total,
            "parties": per_party,
            "seconds": run.seconds,
        }),
        human,
    })
}
