//! The aggregation step, as a trait: plain weighted averaging here, secure
//! aggregation (ppml-secagg) as another implementation, without touching the
//! round loop.

use crate::FedError;

/// One sampled client's contribution to a round.
#[derive(Debug, Clone, Copy)]
pub struct ClientUpdate<'a> {
    /// Client index (into the partition).
    pub client: usize,
    /// Model delta `w_local - w_global`, laid out like `Model::params_flat`.
    pub delta: &'a [f32],
    /// Weight of the update (McMahan: the client's number of training examples).
    pub weight: f64,
    /// The client trained but its update never reached the server (it dropped
    /// out or timed out). Plain averaging skips it; secure aggregation must
    /// still recover the sum of the others.
    pub dropped: bool,
}

/// What an aggregation did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AggregateInfo {
    /// Clients whose update is in the average.
    pub contributors: Vec<usize>,
    /// Clients whose update is not (dropped out).
    pub dropped: Vec<usize>,
    /// Sum of the contributors' weights.
    pub total_weight: f64,
    /// Bytes the aggregation protocol itself exchanged (secure aggregation:
    /// keys, shares, masked inputs, unmasking), replacing the plain upload
    /// estimate in round byte counts; 0 for plain averaging.
    pub protocol_bytes: u64,
}

/// Turns the round's client updates into the average update the server applies.
pub trait Aggregator: Send {
    /// Short name for reports (`"weighted-mean"`, `"secagg"`, ...).
    fn name(&self) -> String;

    /// Writes into `out` the weighted average of the non-dropped updates:
    /// `sum_k w_k delta_k / sum_k w_k`. Errors if no update survives, if the
    /// lengths disagree, or if the weights are not positive and finite.
    fn aggregate(
        &mut self,
        round: usize,
        updates: &[ClientUpdate<'_>],
        out: &mut [f32],
    ) -> Result<AggregateInfo, FedError>;
}

/// Checks lengths and weights; returns the surviving updates' weight sum.
pub(crate) fn check_updates(
    round: usize,
    updates: &[ClientUpdate<'_>],
    len: usize,
) -> Result<f64, FedError> {
    let mut total = 0.0;
    let mut any = false;
    for u in updates {
        if u.delta.len() != len {
            return Err(FedError::Aggregate(format!(
                "client {} sent {} values, the model has {len}",
                u.client,
                u.delta.len()
            )));
        }
        if !(u.weight > 0.0 && u.weight.is_finite()) {
            return Err(FedError::Aggregate(format!(
                "client {} has weight {} (must be positive and finite)",
                u.client, u.weight
            )));
        }
        if !u.dropped {
            total += u.weight;
            any = true;
        }
    }
    if !any {
        return Err(FedError::NoUpdates(round));
    }
    Ok(total)
}

/// FedAvg's aggregation: the average of the updates weighted by example count.
///
/// Accumulates in `f32` with the normalised weights `w_k / sum w` (one fused
/// pass per update, no allocation once the round loop runs).
#[derive(Debug, Clone, Default)]
pub struct WeightedAverage;

impl Aggregator for WeightedAverage {
    fn name(&self) -> String {
        "weighted-mean".into()
    }

    fn aggregate(
        &mut self,
        round: usize,
        updates: &[ClientUpdate<'_>],
        out: &mut [f32],
    ) -> Result<AggregateInfo, FedError> {
        let total = check_updates(round, updates, out.len())?;
        let mut info = AggregateInfo {
            total_weight: total,
            ..AggregateInfo::default()
        };
        let mut first = true;
        for u in updates {
            if u.dropped {
                info.dropped.push(u.client);
                continue;
            }
            info.contributors.push(u.client);
            let a = (u.weight / total) as f32;
            if first {
                for (o, &d) in out.iter_mut().zip(u.delta) {
                    *o = a * d;
                }
                first = false;
            } else {
                for (o, &d) in out.iter_mut().zip(u.delta) {
                    *o += a * d;
                }
            }
        }
        Ok(info)
    }
}
