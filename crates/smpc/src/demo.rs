//! The smallest end-to-end protocol: an owner secret-shares a tensor between two
//! compute parties, they evaluate `y = a*x + b` (public `a`, `b`) on their shares
//! alone, and only the owner reconstructs `y`. `ppml demo` runs it.
//!
//! Three parties run as threads over in-memory channels: the owner (party 0)
//! encodes `x` in fixed point, splits it into two additive shares over Z_2^64
//! (OS-seeded shares) and sends one to each compute party (1 and 2). Each
//! compute party multiplies its share by `a`, truncates locally (SecureML),
//! party 1 adds `b`, and both send their share of `y` back. Only the owner
//! sees `x` and `y`; each compute party sees one uniformly random share.
//!
//! ```
//! let run = ppml_smpc::demo::affine_on_shares(&[1.0, -2.5], 3.0, 0.5, Default::default()).unwrap();
//! assert!((run.y[0] - 3.5).abs() < 1e-3 && (run.y[1] + 7.0).abs() < 1e-3);
//! assert!(run.parties.iter().all(|p| p.bytes_sent > 0));
//! ```

use crate::SmpcError;
use crate::inference::PartyTraffic;
use ppml_fixedpoint::FixedPoint;
use ppml_net::inprocess::{Links, Role, run_roles};
use ppml_net::{NetConfig, Network};
use ppml_sharing::{RingTensor, additive};

/// What a run of [`affine_on_shares`] gives the owner, and what it cost.
#[derive(Clone, Debug)]
pub struct AffineRun {
    /// `a*x + b`, decoded from the reconstructed shares.
    pub y: Vec<f64>,
    /// Traffic of the owner and the two compute parties.
    pub parties: Vec<PartyTraffic>,
    /// Wall time of the protocol (sharing to reconstruction).
    pub seconds: f64,
}

/// The roles: the owner (party 0) and the two compute parties.
const NAMES: [&str; 3] = ["owner", "party-1", "party-2"];

/// A compute party: `a*x + b` on its share, the fixed-point product truncated
/// locally and `b` added by the first party only.
fn compute_party(
    net: &mut Network,
    fp: FixedPoint,
    a: u64,
    b: u64,
    first: bool,
) -> Result<(), SmpcError> {
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

/// Runs the protocol on `xs` with public `scale` and `offset` in fixed point
/// `fp`. Values that do not fit `fp` are errors.
pub fn affine_on_shares(
    xs: &[f32],
    scale: f64,
    offset: f64,
    fp: FixedPoint,
) -> Result<AffineRun, SmpcError> {
    let enc_a = fp.encode(scale)?;
    let enc_b = fp.encode(offset)?;
    let x = RingTensor::from_vec(fp.encode_vec(xs)?);
    let x = &x;
    let owner = move |net: &mut Network| -> Result<Option<RingTensor>, SmpcError> {
        let shares = additive::share_tensor(x, 2, &mut ppml_random::os_rng());
        net.send(1, &shares[0])?;
        net.send(2, &shares[1])?;
        let y1: RingTensor = net.recv(1)?;
        let y2: RingTensor = net.recv(2)?;
        Ok(Some(additive::reconstruct_tensor(&[y1, y2])?))
    };
    let compute = |first: bool| {
        Role::thread(move |net: &mut Network| {
            compute_party(net, fp, enc_a, enc_b, first).map(|()| None)
        })
    };
    let start = std::time::Instant::now();
    let runs = run_roles(
        &NAMES,
        &Links::Star(0),
        &NetConfig::default(),
        vec![Role::thread(owner), compute(true), compute(false)],
    )?;
    let seconds = start.elapsed().as_secs_f64();
    let parties = runs
        .iter()
        .map(|r| PartyTraffic {
            party: r.name.clone(),
            bytes_sent: r.stats.total.bytes_sent,
            bytes_received: r.stats.total.bytes_received,
            messages_sent: r.stats.total.messages_sent,
            rounds: r.stats.total.rounds,
        })
        .collect();
    let y = runs
        .into_iter()
        .next()
        .and_then(|r| r.output)
        .ok_or_else(|| SmpcError::Config("the owner reconstructed nothing".into()))?;
    Ok(AffineRun {
        y: fp.decode_vec(y.data()).into_iter().map(f64::from).collect(),
        parties,
        seconds,
    })
}
