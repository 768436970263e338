//! Reading PyTorch weights from `.safetensors` files.
//!
//! For a named architecture, the `n`-th `Linear` layer (1-based) is read from
//! `fc{n}.weight` / `fc{n}.bias`, the `n`-th `Conv2d` from `conv{n}.weight` /
//! `conv{n}.bias`; failing that, from the layer's index in a PyTorch
//! `nn.Sequential` (`{i}.weight`, or `layers.{i}.weight`, `net.{i}.weight`).
//! Shapes must be PyTorch's: Linear `[out, in]`, Conv2d `[out, in, k, k]`,
//! biases `[out]`. dtype F32 (F64 and F16/BF16 are converted).
//!
//! On the PyTorch side:
//! ```python
//! from safetensors.torch import save_file
//! save_file(model.state_dict(), "model.safetensors")
//! ```

use crate::layers::Layer;
use crate::mnist::Normalization;
use crate::{Model, NnError};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::path::Path;

fn to_f32(name: &str, t: &TensorView<'_>) -> Result<Vec<f32>, NnError> {
    let d = t.data();
    let v = match t.dtype() {
        Dtype::F32 => d
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F64 => d
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
        Dtype::BF16 => d
            .chunks_exact(2)
            .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16))
            .collect(),
        Dtype::F16 => d
            .chunks_exact(2)
            .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        other => {
            return Err(NnError::Format(format!(
                "tensor `{name}` has dtype {other:?}, expected a float type"
            )));
        }
    };
    Ok(v)
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) & 1) as u32;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = if exp == 0 {
        if man == 0 {
            sign << 31
        } else {
            // subnormal
            let v = man as f32 * (2.0f32).powi(-24);
            return if sign == 1 { -v } else { v };
        }
    } else if exp == 31 {
        (sign << 31) | 0x7f80_0000 | (man << 13)
    } else {
        (sign << 31) | ((exp + 112) << 23) | (man << 13)
    };
    f32::from_bits(bits)
}

fn fetch(
    st: &SafeTensors<'_>,
    candidates: &[String],
    shape: &[usize],
) -> Result<Vec<f32>, NnError> {
    for name in candidates {
        if let Ok(t) = st.tensor(name) {
            if t.shape() != shape {
                return Err(NnError::Format(format!(
                    "tensor `{name}` has shape {:?}, expected {shape:?}",
                    t.shape()
                )));
            }
            return to_f32(name, &t);
        }
    }
    Err(NnError::Format(format!(
        "none of the tensors {candidates:?} is in the file (found: {:?})",
        st.names()
    )))
}

fn names(kind: &str, n: usize, i: usize, what: &str) -> Vec<String> {
    vec![
        format!("{kind}{n}.{what}"),
        format!("{i}.{what}"),
        format!("layers.{i}.{what}"),
        format!("net.{i}.{what}"),
        format!("model.{i}.{what}"),
    ]
}

/// Builds architecture `arch` and fills its weights from a `.safetensors` file.
pub fn load_safetensors(path: &Path, arch: &str) -> Result<Model, NnError> {
    let bytes = crate::input::read_file(path)?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| {
        NnError::Format(format!(
            "{}: not a valid safetensors file: {e}",
            path.display()
        ))
    })?;
    let mut model = Model::from_arch(arch, 0)?;
    let (mut nl, mut nc) = (0, 0);
    for (i, layer) in model.layers.iter_mut().enumerate() {
        let ctx = |e: NnError| match e {
            NnError::Format(m) => NnError::Format(format!("{}: {m}", path.display())),
            o => o,
        };
        match layer {
            Layer::Linear(l) => {
                nl += 1;
                l.weight = fetch(
                    &st,
                    &names("fc", nl, i, "weight"),
                    &[l.out_features, l.in_features],
                )
                .map_err(ctx)?;
                l.bias = fetch(&st, &names("fc", nl, i, "bias"), &[l.out_features]).map_err(ctx)?;
            }
            Layer::Conv2d(c) => {
                nc += 1;
                let shape = [c.out_channels, c.in_channels, c.kernel, c.kernel];
                c.weight = fetch(&st, &names("conv", nc, i, "weight"), &shape).map_err(ctx)?;
                c.bias =
                    fetch(&st, &names("conv", nc, i, "bias"), &[c.out_channels]).map_err(ctx)?;
            }
            _ => {}
        }
    }
    model.validate()?;
    Ok(model)
}

/// Metadata key under which ppml records the input normalisation.
pub const NORMALIZATION_KEY: &str = "ppml.normalization";

/// [`load_safetensors`] plus the normalisation recorded in the file's
/// metadata under [`NORMALIZATION_KEY`] (`None` if absent).
pub fn load_with_metadata(
    path: &Path,
    arch: &str,
) -> Result<(Model, Option<Normalization>), NnError> {
    let bytes = crate::input::read_file(path)?;
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| {
        NnError::Format(format!(
            "{}: not a valid safetensors file: {e}",
            path.display()
        ))
    })?;
    let norm = match meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get(NORMALIZATION_KEY))
    {
        Some(v) => Some(v.parse::<Normalization>().map_err(|e| {
            NnError::Format(format!(
                "{}: metadata {NORMALIZATION_KEY}: {e}",
                path.display()
            ))
        })?),
        None => None,
    };
    Ok((load_safetensors(path, arch)?, norm))
}

/// Writes a model's weights with PyTorch-style names (`fc{n}.weight`, `conv{n}.bias`, ...).
pub fn save_safetensors(model: &Model, path: &Path) -> Result<(), NnError> {
    save_with_metadata(model, path, None)
}

/// [`save_safetensors`] recording the input normalisation in the metadata.
pub fn save_with_metadata(
    model: &Model,
    path: &Path,
    normalization: Option<Normalization>,
) -> Result<(), NnError> {
    let mut data: HashMap<String, (Vec<usize>, Vec<u8>)> = HashMap::new();
    let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let (mut nl, mut nc) = (0, 0);
    for layer in &model.layers {
        match layer {
            Layer::Linear(l) => {
                nl += 1;
                data.insert(
                    format!("fc{nl}.weight"),
                    (vec![l.out_features, l.in_features], bytes(&l.weight)),
                );
                data.insert(
                    format!("fc{nl}.bias"),
                    (vec![l.out_features], bytes(&l.bias)),
                );
            }
            Layer::Conv2d(c) => {
                nc += 1;
                data.insert(
                    format!("conv{nc}.weight"),
                    (
                        vec![c.out_channels, c.in_channels, c.kernel, c.kernel],
                        bytes(&c.weight),
                    ),
                );
                data.insert(
                    format!("conv{nc}.bias"),
                    (vec![c.out_channels], bytes(&c.bias)),
                );
            }
            _ => {}
        }
    }
    let mut views = Vec::new();
    for (k, (shape, b)) in &data {
        let v = TensorView::new(Dtype::F32, shape.clone(), b)
            .map_err(|e| NnError::Format(format!("safetensors: {e}")))?;
        views.push((k.clone(), v));
    }
    let meta = normalization
        .map(|n| HashMap::from([(NORMALIZATION_KEY.to_string(), n.name().to_string())]));
    let out = safetensors::tensor::serialize(views, meta)
        .map_err(|e| NnError::Format(format!("safetensors: {e}")))?;
    std::fs::write(path, out)
        .map_err(|e| NnError::Io(format!("cannot write {}: {e}", path.display())))
}
