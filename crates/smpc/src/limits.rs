//! Limits on every size a peer announces (model plan, batch sizes), checked
//! with checked arithmetic before anything of that size is allocated.
//!
//! A computing party receives the model's plan from the model owner and the
//! batch sizes from the data owner; without these checks a peer announcing a
//! batch of 2^40 images made `ppml party` abort with "memory allocation of
//! 8796093022208 bytes failed". Vector lengths inside a batch are bounded by
//! the frame limit of the channel (`ppml_net::NetConfig::max_frame_bytes`)
//! and checked against the expected length on receipt (`Party::recv_len`).

use crate::SmpcError;
use crate::inference::{LayerPlan, ModelPlan};

/// Largest feature count, channel count, kernel, stride, padding or image side.
pub const MAX_LAYER_DIM: usize = 1 << 20;
/// Most layers in a plan.
pub const MAX_LAYERS: usize = 1024;
/// Largest weight matrix (elements; 1 GiB of ring elements).
pub const MAX_WEIGHTS: usize = 1 << 27;
/// Largest batch.
pub const MAX_BATCH: usize = 1 << 20;
/// Largest working set of one batch: batch size times the largest per-image
/// intermediate (im2col matrices included), in ring elements (2 GiB).
pub const MAX_BATCH_ELEMENTS: usize = 1 << 28;
/// Most batches in a run.
pub const MAX_BATCHES: usize = 1 << 24;

fn too_large(what: &str, value: impl std::fmt::Display, max: usize) -> SmpcError {
    SmpcError::Config(format!(
        "a peer announced {what} of {value}, above the limit of {max}"
    ))
}

fn dim(what: &str, v: usize) -> Result<usize, SmpcError> {
    if v > MAX_LAYER_DIM {
        return Err(too_large(what, v, MAX_LAYER_DIM));
    }
    Ok(v)
}

fn mul(what: &str, a: usize, b: usize, max: usize) -> Result<usize, SmpcError> {
    match a.checked_mul(b) {
        Some(p) if p <= max => Ok(p),
        Some(p) => Err(too_large(what, p, max)),
        None => Err(too_large(what, format!("{a} x {b}"), max)),
    }
}

/// Checks every dimension of a plan received from a peer and returns the
/// largest per-image working set (elements). Must run before anything else
/// computes with the plan's numbers.
pub fn check_plan(plan: &ModelPlan) -> Result<usize, SmpcError> {
    if plan.layers.len() > MAX_LAYERS {
        return Err(too_large(
            "a plan with a layer count",
            plan.layers.len(),
            MAX_LAYERS,
        ));
    }
    let mut size = dim("an input size", plan.input_size)?;
    dim("an output size", plan.output_size)?;
    let mut peak = size;
    for l in &plan.layers {
        let (work, out) = match *l {
            LayerPlan::Linear {
                in_features,
                out_features,
            } => {
                dim("in_features", in_features)?;
                dim("out_features", out_features)?;
                mul("a weight matrix", in_features, out_features, MAX_WEIGHTS)?;
                (out_features, out_features)
            }
            LayerPlan::Conv {
                in_channels,
                out_channels,
                kernel,
                stride,
                padding,
                input_hw,
            } => {
                for (w, v) in [
                    ("in_channels", in_channels),
                    ("out_channels", out_channels),
                    ("a kernel", kernel),
                    ("a stride", stride),
                    ("a padding", padding),
                    ("an image height", input_hw.0),
                    ("an image width", input_hw.1),
                ] {
                    dim(w, v)?;
                }
                let (h, w) = LayerPlan::conv_out_hw(kernel, stride, padding, input_hw);
                let np = mul("conv output positions", h, w, MAX_BATCH_ELEMENTS)?;
                let kk = mul(
                    "a conv patch",
                    in_channels,
                    mul("a kernel area", kernel, kernel, MAX_WEIGHTS)?,
                    MAX_WEIGHTS,
                )?;
                mul("a weight matrix", kk, out_channels, MAX_WEIGHTS)?;
                let cols = mul("an im2col matrix", np, kk, MAX_BATCH_ELEMENTS)?;
                let out = mul("a conv output", np, out_channels, MAX_BATCH_ELEMENTS)?;
                (cols.max(out), out)
            }
            LayerPlan::Relu => (size, size),
            LayerPlan::MaxPool {
                kernel,
                stride,
                channels,
                input_hw,
            } => {
                for (w, v) in [
                    ("a pool kernel", kernel),
                    ("a pool stride", stride),
                    ("channels", channels),
                    ("an image height", input_hw.0),
                    ("an image width", input_hw.1),
                ] {
                    dim(w, v)?;
                }
                let (h, w) = LayerPlan::conv_out_hw(kernel, stride, 0, input_hw);
                let out = mul(
                    "a pool output",
                    mul("pool positions", h, w, MAX_BATCH_ELEMENTS)?,
                    channels,
                    MAX_BATCH_ELEMENTS,
                )?;
                let groups = mul(
                    "pool windows",
                    out,
                    mul("a pool area", kernel, kernel, MAX_WEIGHTS)?,
                    MAX_BATCH_ELEMENTS,
                )?;
                (groups, out)
            }
            LayerPlan::AvgPool {
                kernel,
                stride,
                channels,
                input_hw,
            } => {
                for (w, v) in [
                    ("a pool kernel height", kernel.0),
                    ("a pool kernel width", kernel.1),
                    ("a pool stride", stride.0),
                    ("a pool stride", stride.1),
                    ("channels", channels),
                    ("an image height", input_hw.0),
                    ("an image width", input_hw.1),
                ] {
                    dim(w, v)?;
                }
                let g = crate::avgpool::AvgGeometry::new(kernel, stride, channels, input_hw);
                let (h, w) = g.output_hw();
                let out = mul(
                    "a pool output",
                    mul("pool positions", h, w, MAX_BATCH_ELEMENTS)?,
                    channels,
                    MAX_BATCH_ELEMENTS,
                )?;
                (out, out)
            }
        };
        peak = peak.max(work).max(size);
        size = out;
    }
    Ok(peak.max(1))
}

/// Checks the batch sizes a data owner announced against the plan's
/// per-image working set (from [`check_plan`]).
pub fn check_batches(batches: &[usize], per_image: usize) -> Result<(), SmpcError> {
    if batches.len() > MAX_BATCHES {
        return Err(too_large("a batch count", batches.len(), MAX_BATCHES));
    }
    for &b in batches {
        if b == 0 {
            return Err(SmpcError::Config("a peer announced an empty batch".into()));
        }
        if b > MAX_BATCH {
            return Err(too_large("a batch size", b, MAX_BATCH));
        }
        mul(
            "a batch working set (elements)",
            b,
            per_image,
            MAX_BATCH_ELEMENTS,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mlp() -> ModelPlan {
        ModelPlan::from_model(&ppml_nn::Model::from_arch("mlp500", 1).unwrap()).unwrap()
    }

    #[test]
    fn real_plans_pass_and_batches_of_a_thousand_pass() {
        for arch in ["mlp500", "net-a"] {
            let plan = ModelPlan::from_model(&ppml_nn::Model::from_arch(arch, 1).unwrap()).unwrap();
            let per = check_plan(&plan).unwrap();
            check_batches(&[1000, 1000, 7], per).unwrap();
        }
    }

    #[test]
    fn huge_batches_are_refused_before_allocation() {
        let per = check_plan(&mlp()).unwrap();
        for b in [1usize << 40, MAX_BATCH + 1, usize::MAX] {
            let e = check_batches(&[b], per).unwrap_err().to_string();
            assert!(e.contains("batch size"), "{e}");
        }
        // Under MAX_BATCH but too much work per batch for this model.
        let e = check_batches(&[MAX_BATCH], per).unwrap_err().to_string();
        assert!(e.contains("working set"), "{e}");
        assert!(check_batches(&[0], per).is_err());
    }

    #[test]
    fn hostile_plans_are_refused() {
        let mut p = mlp();
        p.layers[0] = LayerPlan::Linear {
            in_features: 784,
            out_features: 1 << 40,
        };
        assert!(check_plan(&p).is_err());
        let mut p = mlp();
        p.layers[0] = LayerPlan::Conv {
            in_channels: 1,
            out_channels: 1 << 19,
            kernel: 1 << 19,
            stride: 1,
            padding: 1 << 19,
            input_hw: (28, 28),
        };
        assert!(check_plan(&p).is_err());
        let mut p = mlp();
        p.layers = vec![LayerPlan::Relu; MAX_LAYERS + 1];
        assert!(check_plan(&p).is_err());
        let mut p = mlp();
        p.input_size = usize::MAX;
        assert!(check_plan(&p).is_err());
    }
}
