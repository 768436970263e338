//! `ppml demo`: secret-share a tensor between in-process parties over real
//! channels, compute on the shares, and reconstruct only at the owner.
//!
//! Three parties run as threads: the owner (party 0) encodes a tensor in fixed
//! point, splits it into two additive shares and sends one to each of the two
//! compute parties (1 and 2). Each compute party evaluates `y = a*x + b` on
//! its share alone (a public scale and offset, so no interaction is needed)
//! and sends its share of `y` back. Only the owner sees `x` and `y`.

use super::{CommonArgs, Report};
use anyhow::Context;
use clap::Args;
use ppml_fixedpoint::FixedPoint;
use ppml_net::{NetConfig, Network};
use ppml_sharing::{RingTensor, additive};
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

/// What a compute party does with its share: `a*x + b`, with the fixed-point
/// product truncated locally (SecureML) and `b` added by one party only.
fn compute_party(
    net: &mut Network,
    fp: FixedPoint,
    a: u64,
    b: u64,
    first: bool,
) -> anyhow::Result<()> {
    let mut share: RingTensor = net.recv(0)?;
    share.mul_scalar_assign(a);
    let who = if first { 0 } else { 1 };
    ppml_fixedpoint::share_trunc::local_truncate_shares(share.data_mut(), who, fp.frac_bits());
    if first {
        share.add_scalar_assign(b);
    }
    net.send(0, &share)?;
    Ok(())
}

pub fn run(args: DemoArgs, common: &CommonArgs) -> anyhow::Result<Report> {
    let fp = FixedPoint::default();
    // The demo's input values are a public, reproducible choice; the shares are secret.
    let mut rng = ppml_random::PublicSeed::new(common.seed).rng("demo/input");
    let xs: Vec<f32> = (0..args.len)
        .map(|_| rng.random_range(-10.0f32..10.0))
        .collect();
    let enc_a = fp.encode(args.scale).context("scale")?;
    let enc_b = fp.encode(args.offset).context("offset")?;
    let x = RingTensor::from_vec(fp.encode_vec(&xs).context("input")?);

    let mut nets = Network::in_memory(3, &NetConfig::default()).into_iter();
    let (mut owner, mut p1, mut p2) = match (nets.next(), nets.next(), nets.next()) {
        (Some(a), Some(b), Some(c)) => (a, b, c),
        _ => anyhow::bail!("in-memory network did not create three parties"),
    };
    let start = std::time::Instant::now();
    let (y, stats) = std::thread::scope(|s| -> anyhow::Result<_> {
        let h1 =
            s.spawn(move || compute_party(&mut p1, fp, enc_a, enc_b, true).map(|_| p1.stats()));
        let h2 =
            s.spawn(move || compute_party(&mut p2, fp, enc_a, enc_b, false).map(|_| p2.stats()));
        let shares = additive::share_tensor(&x, 2, &mut ppml_random::os_rng());
        owner.send(1, &shares[0])?;
        owner.send(2, &shares[1])?;
        let y1: RingTensor = owner.recv(1)?;
        let y2: RingTensor = owner.recv(2)?;
        let y = additive::reconstruct_tensor(&[y1, y2])?;
        let s1 = h1
            .join()
            .map_err(|_| anyhow::anyhow!("party 1 panicked"))??;
        let s2 = h2
            .join()
            .map_err(|_| anyhow::anyhow!("party 2 panicked"))??;
        Ok((y, [owner.stats(), s1, s2]))
    })?;
    let seconds = start.elapsed().as_secs_f64();
    let ys = fp.decode_vec(y.data());
    let max_err = xs
        .iter()
        .zip(&ys)
        .map(|(&x, &y)| ((args.scale * x as f64 + args.offset) - y as f64).abs())
        .fold(0.0, f64::max);
    let per_party: Vec<_> = stats
        .iter()
        .enumerate()
        .map(|(i, s)| json!({ "party": i, "bytes_sent": s.total.bytes_sent, "bytes_received": s.total.bytes_received, "rounds": s.total.rounds }))
        .collect();
    let bytes_total: u64 = stats.iter().map(|s| s.total.bytes_sent).sum();
    let mut human = format!(
        "owner shared {} values with parties 1 and 2; they computed y = {}*x + {} on shares\n",
        args.len, args.scale, args.offset
    );
    for (x, y) in xs.iter().zip(&ys).take(8) {
        human.push_str(&format!("  x = {x:>9.4}  ->  y = {y:>9.4}\n"));
    }
    human.push_str(&format!(
        "max |error| = {max_err:.2e} (fixed point, {} fractional bits)\nbytes sent: {bytes_total} in total; rounds per party: {:?}; {seconds:.4} s",
        fp.frac_bits(),
        stats.iter().map(|s| s.total.rounds).collect::<Vec<_>>()
    ));
    Ok(Report {
        json: json!({
            "len": args.len,
            "max_abs_error": max_err,
            "frac_bits": fp.frac_bits(),
            "bytes_total": bytes_total,
            "parties": per_party,
            "seconds": seconds,
        }),
        human,
    })
}
