//! ONNX import: graphs as `torch.onnx.export` writes them, for chains of
//! Gemm (or MatMul + Add), Conv (stride, symmetric padding), Relu, MaxPool,
//! AveragePool, GlobalAveragePool, BatchNormalization (folded into the
//! preceding Conv or Gemm), Flatten, Reshape, and Dropout / Identity (dropped).
//!
//! The file is decoded with `prost` from ONNX's own schema (`onnx.proto`,
//! compiled once into [`crate::onnx_proto`]). Decoding never allocates more
//! than the file's size; every size the graph announces (tensor dims, image
//! shapes) is checked with overflow-checked arithmetic against the data
//! actually present and against [`crate::model::MAX_VALUES`] before use.
//!
//! A graph that is not a chain (a tensor feeding two nodes, a node taking two
//! computed inputs, a node off the path from input to output) or an op
//! outside the list above is an error naming the op and the node.
//!
//! ```
//! use ppml_nn::onnx;
//! let e = onnx::import(b"definitely not protobuf").unwrap_err();
//! assert!(e.to_string().contains("ONNX"));
//! ```

use crate::layers::{AvgPool2d, Conv2d, Layer, Linear, MaxPool2d};
use crate::model::MAX_VALUES;
use crate::onnx_proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto, tensor_proto::DataType,
    tensor_shape_proto::dimension::Value as DimValue, type_proto::Value as TypeValue,
};
use crate::{Model, NnError};
use prost::Message;
use std::collections::{HashMap, HashSet};

/// The ops the importer understands.
pub const SUPPORTED_OPS: &[&str] = &[
    "Gemm",
    "MatMul",
    "Add",
    "Conv",
    "Relu",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "BatchNormalization",
    "Flatten",
    "Reshape",
    "Dropout",
    "Identity",
    "Constant",
];

fn err(msg: impl Into<String>) -> NnError {
    NnError::Format(format!("ONNX: {}", msg.into()))
}

/// A constant tensor (initializer or `Constant` node output).
#[derive(Debug, Clone)]
struct Const {
    dims: Vec<usize>,
    floats: Option<Vec<f32>>,
    ints: Option<Vec<i64>>,
}

fn checked_count(dims: &[usize], what: &str) -> Result<usize, NnError> {
    dims.iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= MAX_VALUES)
        .ok_or_else(|| err(format!("{what}: shape {dims:?} is too large")))
}

fn le_words<const N: usize>(raw: &[u8], n: usize, name: &str) -> Result<Vec<[u8; N]>, NnError> {
    if raw.len() != n.saturating_mul(N) {
        return Err(err(format!(
            "tensor `{name}`: {} raw bytes for {n} values of {N} bytes",
            raw.len()
        )));
    }
    Ok(raw
        .chunks_exact(N)
        .map(|c| {
            let mut w = [0u8; N];
            w.copy_from_slice(c);
            w
        })
        .collect())
}

fn read_tensor(t: &TensorProto) -> Result<Const, NnError> {
    let name = t.name.clone().unwrap_or_default();
    if t.data_location == Some(1) || !t.external_data.is_empty() {
        return Err(err(format!(
            "tensor `{name}` is stored in an external file; export with \
             torch.onnx.export(..., external_data=False) so that the weights are inside the .onnx file"
        )));
    }
    let dims = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| err(format!("tensor `{name}` has dimension {d}"))))
        .collect::<Result<Vec<usize>, NnError>>()?;
    if dims.len() > 8 {
        return Err(err(format!(
            "tensor `{name}` has {} dimensions",
            dims.len()
        )));
    }
    let n = checked_count(&dims, &format!("tensor `{name}`"))?;
    let raw = t.raw_data.as_deref();
    let dt = t.data_type.unwrap_or(0);
    let mismatch = |have: usize| {
        err(format!(
            "tensor `{name}` of shape {dims:?} holds {have} values, expected {n}"
        ))
    };
    let (floats, ints) = if dt == DataType::Float as i32 {
        let v = match raw {
            Some(r) => le_words::<4>(r, n, &name)?
                .into_iter()
                .map(f32::from_le_bytes)
                .collect(),
            None => t.float_data.clone(),
        };
        if v.len() != n {
            return Err(mismatch(v.len()));
        }
        (Some(v), None)
    } else if dt == DataType::Double as i32 {
        let v: Vec<f32> = match raw {
            Some(r) => le_words::<8>(r, n, &name)?
                .into_iter()
                .map(|w| f64::from_le_bytes(w) as f32)
                .collect(),
            None => t.double_data.iter().map(|&x| x as f32).collect(),
        };
        if v.len() != n {
            return Err(mismatch(v.len()));
        }
        (Some(v), None)
    } else if dt == DataType::Int64 as i32 {
        let v = match raw {
            Some(r) => le_words::<8>(r, n, &name)?
                .into_iter()
                .map(i64::from_le_bytes)
                .collect(),
            None => t.int64_data.clone(),
        };
        if v.len() != n {
            return Err(mismatch(v.len()));
        }
        (None, Some(v))
    } else if dt == DataType::Int32 as i32 {
        let v: Vec<i64> = match raw {
            Some(r) => le_words::<4>(r, n, &name)?
                .into_iter()
                .map(|w| i32::from_le_bytes(w) as i64)
                .collect(),
            None => t.int32_data.iter().map(|&x| x as i64).collect(),
        };
        if v.len() != n {
            return Err(mismatch(v.len()));
        }
        (None, Some(v))
    } else {
        return Err(err(format!(
            "tensor `{name}` has data type {dt}; ppml reads float32, float64, int32 and int64 tensors"
        )));
    };
    Ok(Const { dims, floats, ints })
}

fn node_label(n: &NodeProto, i: usize) -> String {
    let op = n.op_type.as_deref().unwrap_or("?");
    match n.name.as_deref() {
        Some(name) if !name.is_empty() => format!("{op} node `{name}`"),
        _ => format!("{op} node #{i}"),
    }
}

fn attr<'a>(n: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    n.attribute.iter().find(|a| a.name.as_deref() == Some(name))
}

fn attr_int(n: &NodeProto, name: &str, default: i64) -> i64 {
    attr(n, name).and_then(|a| a.i).unwrap_or(default)
}

fn attr_float(n: &NodeProto, name: &str, default: f32) -> f32 {
    attr(n, name).and_then(|a| a.f).unwrap_or(default)
}

fn attr_ints(n: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(n, name).map(|a| a.ints.clone())
}

fn to_usizes(v: &[i64], what: &str, label: &str) -> Result<Vec<usize>, NnError> {
    v.iter()
        .map(|&x| {
            usize::try_from(x)
                .ok()
                .filter(|&u| u <= MAX_VALUES)
                .ok_or_else(|| err(format!("{label}: {what} {x} is out of range")))
        })
        .collect()
}

/// The state of the walk: the layers so far and the per-sample shape of
/// the current tensor.
struct Builder {
    layers: Vec<Layer>,
    shape: Vec<usize>,
    /// Index in `layers` of a Linear/Conv that a following Add or
    /// BatchNormalization may fold into (reset by every other layer).
    foldable: Option<usize>,
}

impl Builder {
    fn size(&self) -> usize {
        self.shape.iter().product()
    }

    fn push(&mut self, l: Layer, shape: Vec<usize>, foldable: bool) {
        self.layers.push(l);
        self.shape = shape;
        self.foldable = foldable.then(|| self.layers.len() - 1);
    }

    fn chw(&self, label: &str) -> Result<(usize, usize, usize), NnError> {
        match self.shape[..] {
            [c, h, w] => Ok((c, h, w)),
            _ => Err(err(format!(
                "{label} needs a C x H x W input, the tensor it receives has shape {:?}",
                self.shape
            ))),
        }
    }
}

fn weight<'a>(
    consts: &'a HashMap<String, Const>,
    n: &NodeProto,
    idx: usize,
    label: &str,
    what: &str,
) -> Result<Option<&'a Const>, NnError> {
    match n.input.get(idx).map(String::as_str) {
        None | Some("") => Ok(None),
        Some(name) => consts.get(name).map(Some).ok_or_else(|| {
            err(format!(
                "{label}: its {what} `{name}` is not a constant (ppml imports chains whose weights are initializers)"
            ))
        }),
    }
}

fn floats<'a>(c: &'a Const, label: &str, what: &str) -> Result<&'a [f32], NnError> {
    c.floats
        .as_deref()
        .ok_or_else(|| err(format!("{label}: {what} is not a float tensor")))
}

fn pads_zero(n: &NodeProto, label: &str) -> Result<(), NnError> {
    if let Some(p) = attr_ints(n, "pads")
        && p.iter().any(|&x| x != 0)
    {
        return Err(err(format!(
            "{label}: padding {p:?} is not supported (only 0)"
        )));
    }
    Ok(())
}

fn check_auto_pad(n: &NodeProto, label: &str) -> Result<(), NnError> {
    if let Some(a) = attr(n, "auto_pad").and_then(|a| a.s.as_deref())
        && a != b"NOTSET"
        && a != b"VALID"
    {
        return Err(err(format!(
            "{label}: auto_pad {} is not supported (give explicit pads)",
            String::from_utf8_lossy(a)
        )));
    }
    Ok(())
}

fn check_dilations(n: &NodeProto, label: &str) -> Result<(), NnError> {
    if let Some(d) = attr_ints(n, "dilations")
        && d.iter().any(|&x| x != 1)
    {
        return Err(err(format!("{label}: dilations {d:?} are not supported")));
    }
    Ok(())
}

fn square(v: &[usize], what: &str, label: &str) -> Result<usize, NnError> {
    match v {
        [a, b] if a == b => Ok(*a),
        [a] => Ok(*a),
        _ => Err(err(format!(
            "{label}: {what} {v:?} must be square (equal height and width)"
        ))),
    }
}

/// Decodes an ONNX model (the bytes of a `.onnx` file) into a [`Model`].
pub fn import(bytes: &[u8]) -> Result<Model, NnError> {
    let m = ModelProto::decode(bytes)
        .map_err(|e| err(format!("not an ONNX model (protobuf decoding failed: {e})")))?;
    let g = m
        .graph
        .as_ref()
        .ok_or_else(|| err("the model has no graph"))?;
    import_graph(g)
}

fn import_graph(g: &GraphProto) -> Result<Model, NnError> {
    let mut consts: HashMap<String, Const> = HashMap::new();
    for t in &g.initializer {
        let c = read_tensor(t)?;
        consts.insert(t.name.clone().unwrap_or_default(), c);
    }
    // Constant nodes and Identity nodes of constants are constants.
    let mut compute: Vec<(usize, &NodeProto)> = Vec::new();
    for (i, n) in g.node.iter().enumerate() {
        let op = n.op_type.as_deref().unwrap_or("");
        let label = node_label(n, i);
        if op == "Constant" {
            let t = attr(n, "value").and_then(|a| a.t.as_ref()).ok_or_else(|| {
                err(format!(
                    "{label}: only tensor `value` constants are supported"
                ))
            })?;
            let c = read_tensor(t)?;
            for o in &n.output {
                consts.insert(o.clone(), c.clone());
            }
            continue;
        }
        if op == "Identity"
            && let Some(c) = n.input.first().and_then(|x| consts.get(x)).cloned()
        {
            for o in &n.output {
                consts.insert(o.clone(), c.clone());
            }
            continue;
        }
        compute.push((i, n));
    }
    // The one data input.
    let inputs: Vec<_> = g
        .input
        .iter()
        .filter(|v| !consts.contains_key(v.name.as_deref().unwrap_or("")))
        .collect();
    let [input] = inputs[..] else {
        let names: Vec<&str> = inputs.iter().filter_map(|v| v.name.as_deref()).collect();
        return Err(err(format!(
            "the graph has {} data inputs {names:?}; ppml imports graphs with one input",
            inputs.len()
        )));
    };
    let in_name = input.name.clone().unwrap_or_default();
    let dims = match input.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(TypeValue::TensorType(tt)) => tt
            .shape
            .as_ref()
            .map(|s| s.dim.iter().map(|d| d.value.clone()).collect::<Vec<_>>())
            .ok_or_else(|| err(format!("input `{in_name}` has no shape")))?,
        _ => return Err(err(format!("input `{in_name}` is not a tensor"))),
    };
    if dims.len() < 2 || dims.len() > 5 {
        return Err(err(format!(
            "input `{in_name}` has {} dimensions; expected [batch, features] or [batch, C, H, W]",
            dims.len()
        )));
    }
    let mut shape = Vec::new();
    for d in &dims[1..] {
        match d {
            Some(DimValue::DimValue(v)) if *v > 0 => shape.push(
                usize::try_from(*v)
                    .ok()
                    .filter(|&u| u <= MAX_VALUES)
                    .ok_or_else(|| err(format!("input `{in_name}`: dimension {v} is too large")))?,
            ),
            _ => {
                return Err(err(format!(
                    "input `{in_name}`: every dimension but the batch must be a fixed size, got {d:?}"
                )));
            }
        }
    }
    checked_count(&shape, &format!("input `{in_name}`"))?;
    let input_shape = shape.clone();

    // Who consumes each computed tensor.
    let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (k, (_, n)) in compute.iter().enumerate() {
        for x in &n.input {
            if !x.is_empty() && !consts.contains_key(x) {
                consumers.entry(x.as_str()).or_default().push(k);
            }
        }
    }
    let outputs: Vec<&str> = g.output.iter().filter_map(|o| o.name.as_deref()).collect();
    let [graph_out] = outputs[..] else {
        return Err(err(format!(
            "the graph has {} outputs {outputs:?}; ppml imports graphs with one output",
            outputs.len()
        )));
    };

    let mut b = Builder {
        layers: Vec::new(),
        shape,
        foldable: None,
    };
    let mut cur = in_name.clone();
    let mut visited: HashSet<usize> = HashSet::new();
    loop {
        let users = consumers.get(cur.as_str()).cloned().unwrap_or_default();
        let k = match users[..] {
            [] => break,
            [k] => k,
            _ => {
                let names: Vec<String> = users
                    .iter()
                    .map(|&u| node_label(compute[u].1, compute[u].0))
                    .collect();
                return Err(err(format!(
                    "the graph is not a chain: tensor `{cur}` feeds {}",
                    names.join(" and ")
                )));
            }
        };
        if cur == graph_out {
            let (i, n) = compute[k];
            return Err(err(format!(
                "the graph is not a chain: its output `{cur}` also feeds {}",
                node_label(n, i)
            )));
        }
        if !visited.insert(k) {
            return Err(err("the graph has a cycle"));
        }
        let (i, n) = compute[k];
        let label = node_label(n, i);
        let data_inputs: Vec<&String> = n
            .input
            .iter()
            .filter(|x| !x.is_empty() && !consts.contains_key(*x))
            .collect();
        if data_inputs.len() != 1 || n.input.first() != Some(&cur) {
            return Err(err(format!(
                "the graph is not a chain: {label} takes computed inputs {data_inputs:?} \
                 (ppml imports chains: one computed input, first, the rest constants)"
            )));
        }
        // Only the first output may be used (Dropout's mask, MaxPool's indices...).
        for extra in n.output.iter().skip(1) {
            if !extra.is_empty() && (consumers.contains_key(extra.as_str()) || extra == graph_out) {
                return Err(err(format!(
                    "{label}: its second output `{extra}` is used; ppml supports only the first"
                )));
            }
        }
        apply_node(&mut b, &consts, n, &label)?;
        cur = n
            .output
            .first()
            .cloned()
            .ok_or_else(|| err(format!("{label} has no output")))?;
    }
    if cur != graph_out {
        return Err(err(format!(
            "the chain from input `{in_name}` ends at `{cur}`, which is not the graph output `{graph_out}`"
        )));
    }
    if let Some((i, n)) = compute
        .iter()
        .enumerate()
        .find(|(k, _)| !visited.contains(k))
        .map(|(_, x)| *x)
    {
        return Err(err(format!(
            "the graph is not a chain: {} is not on the path from input to output",
            node_label(n, i)
        )));
    }
    let arch = match g.name.as_deref() {
        Some(s) if !s.is_empty() => format!("onnx:{s}"),
        _ => "onnx".to_string(),
    };
    let model = Model {
        arch,
        layers: b.layers,
        input_shape,
    };
    model.validate()?;
    Ok(model)
}

fn apply_node(
    b: &mut Builder,
    consts: &HashMap<String, Const>,
    n: &NodeProto,
    label: &str,
) -> Result<(), NnError> {
    let op = n.op_type.as_deref().unwrap_or("");
    match op {
        "Relu" => {
            let s = b.shape.clone();
            b.push(Layer::Relu, s, false);
        }
        "Dropout" | "Identity" => {}
        "Flatten" => {
            let axis = attr_int(n, "axis", 1);
            if axis != 1 {
                return Err(err(format!(
                    "{label}: Flatten axis {axis} is not supported (only 1)"
                )));
            }
            if b.shape.len() > 1 {
                let s = vec![b.size()];
                b.push(Layer::Flatten, s, false);
            }
        }
        "Reshape" => {
            let target = weight(consts, n, 1, label, "shape")?
                .and_then(|c| c.ints.clone())
                .ok_or_else(|| {
                    err(format!(
                        "{label}: the target shape must be an int64 constant"
                    ))
                })?;
            let Some((&first, rest)) = target.split_first() else {
                return Err(err(format!("{label}: empty target shape")));
            };
            if !(first == -1 || first == 0 || first == 1) {
                return Err(err(format!(
                    "{label}: target shape {target:?} must keep the batch as its first dimension"
                )));
            }
            let size = b.size();
            let mut out = Vec::new();
            let mut infer = None;
            for (j, &d) in rest.iter().enumerate() {
                match d {
                    -1 if infer.is_none() => {
                        infer = Some(j);
                        out.push(1);
                    }
                    0 => out.push(*b.shape.get(j).ok_or_else(|| {
                        err(format!(
                            "{label}: 0 in target shape {target:?} has no input dimension"
                        ))
                    })?),
                    d if d > 0 => out.push(to_usizes(&[d], "dimension", label)?[0]),
                    _ => return Err(err(format!("{label}: bad target shape {target:?}"))),
                }
            }
            let known = checked_count(&out, label)?;
            if let Some(j) = infer {
                if known == 0 || !size.is_multiple_of(known) {
                    return Err(err(format!(
                        "{label}: cannot reshape {:?} to {target:?}",
                        b.shape
                    )));
                }
                out[j] = size / known;
            }
            if out.is_empty() {
                out.push(1);
            }
            if checked_count(&out, label)? != size {
                return Err(err(format!(
                    "{label}: cannot reshape {:?} ({size} values per sample) to {target:?}",
                    b.shape
                )));
            }
            if out.len() == 1 && b.shape.len() > 1 {
                b.push(Layer::Flatten, out, false);
            } else {
                // Row-major data is unchanged; only the shape later layers see changes.
                b.shape = out;
            }
        }
        "Gemm" | "MatMul" => {
            let [k] = b.shape[..] else {
                return Err(err(format!(
                    "{label} needs a flat input (add Flatten before it), the tensor it receives has shape {:?}",
                    b.shape
                )));
            };
            let w = weight(consts, n, 1, label, "weight")?
                .ok_or_else(|| err(format!("{label} has no weight")))?;
            let wv = floats(w, label, "the weight")?;
            let (alpha, beta, trans_b) = if op == "Gemm" {
                if attr_int(n, "transA", 0) != 0 {
                    return Err(err(format!("{label}: transA=1 is not supported")));
                }
                (
                    attr_float(n, "alpha", 1.0),
                    attr_float(n, "beta", 1.0),
                    attr_int(n, "transB", 0) != 0,
                )
            } else {
                (1.0, 1.0, false)
            };
            let [r, c] = w.dims[..] else {
                return Err(err(format!(
                    "{label}: the weight has shape {:?}, not 2-D",
                    w.dims
                )));
            };
            let (kin, nout) = if trans_b { (c, r) } else { (r, c) };
            if kin != k {
                return Err(err(format!(
                    "{label}: the weight has shape {:?} but the input has {k} features",
                    w.dims
                )));
            }
            // Linear stores `out x in`.
            let mut weight_oi = vec![0f32; kin * nout];
            for o in 0..nout {
                for i in 0..kin {
                    let v = if trans_b {
                        wv[o * kin + i]
                    } else {
                        wv[i * nout + o]
                    };
                    weight_oi[o * kin + i] = alpha * v;
                }
            }
            let mut bias = vec![0f32; nout];
            if op == "Gemm"
                && let Some(cst) = weight(consts, n, 2, label, "bias")?
            {
                let cv = floats(cst, label, "the bias")?;
                broadcast_add(&mut bias, cv, beta, label)?;
            }
            b.push(
                Layer::Linear(Linear {
                    weight: weight_oi,
                    bias,
                    in_features: kin,
                    out_features: nout,
                }),
                vec![nout],
                true,
            );
        }
        "Add" => {
            let c = weight(consts, n, 1, label, "addend")?
                .ok_or_else(|| err(format!("{label} has no constant addend")))?;
            let cv = floats(c, label, "the addend")?;
            let idx = b.foldable.ok_or_else(|| {
                err(format!(
                    "{label}: Add is supported only as the bias right after MatMul, Gemm or Conv"
                ))
            })?;
            match &mut b.layers[idx] {
                Layer::Linear(l) => broadcast_add(&mut l.bias, cv, 1.0, label)?,
                Layer::Conv2d(cv2) => {
                    // a per-channel constant ([C], [C,1,1] or [1,C,1,1]) or a scalar
                    if cv.len() != 1 && cv.len() != cv2.out_channels {
                        return Err(err(format!(
                            "{label}: an addend of shape {:?} is not a per-channel bias of {} channels",
                            c.dims, cv2.out_channels
                        )));
                    }
                    broadcast_add(&mut cv2.bias, cv, 1.0, label)?
                }
                _ => unreachable!("foldable always points at a Linear or Conv2d"),
            }
        }
        "Conv" => {
            let (cin, h, w) = b.chw(label)?;
            check_auto_pad(n, label)?;
            check_dilations(n, label)?;
            if attr_int(n, "group", 1) != 1 {
                return Err(err(format!(
                    "{label}: grouped convolution is not supported"
                )));
            }
            let wt = weight(consts, n, 1, label, "weight")?
                .ok_or_else(|| err(format!("{label} has no weight")))?;
            let [cout, wcin, kh, kw] = wt.dims[..] else {
                return Err(err(format!(
                    "{label}: the weight has shape {:?}, not [out, in, kh, kw]",
                    wt.dims
                )));
            };
            if wcin != cin {
                return Err(err(format!(
                    "{label}: the weight takes {wcin} channels, the input has {cin}"
                )));
            }
            let kernel = square(&[kh, kw], "kernel", label)?;
            let strides = to_usizes(
                &attr_ints(n, "strides").unwrap_or(vec![1, 1]),
                "stride",
                label,
            )?;
            let stride = square(&strides, "strides", label)?;
            let pads = to_usizes(&attr_ints(n, "pads").unwrap_or(vec![0; 4]), "pad", label)?;
            let padding = match pads[..] {
                [a, b2, c, d] if a == b2 && b2 == c && c == d => a,
                _ => {
                    return Err(err(format!(
                        "{label}: pads {pads:?} must be equal on all sides"
                    )));
                }
            };
            let bias = match weight(consts, n, 2, label, "bias")? {
                Some(c) => {
                    let v = floats(c, label, "the bias")?;
                    if v.len() != cout {
                        return Err(err(format!(
                            "{label}: bias of {} values for {cout} channels",
                            v.len()
                        )));
                    }
                    v.to_vec()
                }
                None => vec![0.0; cout],
            };
            let conv = Conv2d {
                in_channels: cin,
                out_channels: cout,
                kernel,
                stride,
                padding,
                input_hw: (h, w),
                weight: floats(wt, label, "the weight")?.to_vec(),
                bias,
            };
            if stride == 0 || kernel == 0 || kernel > h + 2 * padding || kernel > w + 2 * padding {
                return Err(err(format!(
                    "{label}: kernel {kernel} does not fit a {h}x{w} input"
                )));
            }
            let (ho, wo) = conv.output_hw();
            b.push(Layer::Conv2d(conv), vec![cout, ho, wo], true);
        }
        "MaxPool" => {
            let (c, h, w) = b.chw(label)?;
            check_auto_pad(n, label)?;
            check_dilations(n, label)?;
            pads_zero(n, label)?;
            if attr_int(n, "ceil_mode", 0) != 0 {
                return Err(err(format!("{label}: ceil_mode=1 is not supported")));
            }
            let ks = to_usizes(
                &attr_ints(n, "kernel_shape").unwrap_or_default(),
                "kernel",
                label,
            )?;
            let kernel = square(&ks, "kernel_shape", label)?;
            let strides = to_usizes(
                &attr_ints(n, "strides").unwrap_or(vec![1, 1]),
                "stride",
                label,
            )?;
            let stride = square(&strides, "strides", label)?;
            if kernel == 0 || stride == 0 || kernel > h || kernel > w {
                return Err(err(format!(
                    "{label}: kernel {kernel} does not fit a {h}x{w} input"
                )));
            }
            let p = MaxPool2d {
                kernel,
                stride,
                channels: c,
                input_hw: (h, w),
            };
            let (ho, wo) = p.output_hw();
            b.push(Layer::MaxPool2d(p), vec![c, ho, wo], false);
        }
        "AveragePool" => {
            let (c, h, w) = b.chw(label)?;
            check_auto_pad(n, label)?;
            pads_zero(n, label)?;
            if attr_int(n, "ceil_mode", 0) != 0 {
                return Err(err(format!("{label}: ceil_mode=1 is not supported")));
            }
            let ks = to_usizes(
                &attr_ints(n, "kernel_shape").unwrap_or_default(),
                "kernel",
                label,
            )?;
            let [kh, kw] = ks[..] else {
                return Err(err(format!("{label}: kernel_shape {ks:?} is not 2-D")));
            };
            let st = to_usizes(
                &attr_ints(n, "strides").unwrap_or(vec![1, 1]),
                "stride",
                label,
            )?;
            let [sh, sw] = st[..] else {
                return Err(err(format!("{label}: strides {st:?} are not 2-D")));
            };
            if kh == 0 || kw == 0 || sh == 0 || sw == 0 || kh > h || kw > w {
                return Err(err(format!(
                    "{label}: kernel {kh}x{kw} does not fit a {h}x{w} input"
                )));
            }
            let p = AvgPool2d {
                kernel: (kh, kw),
                stride: (sh, sw),
                channels: c,
                input_hw: (h, w),
            };
            let (ho, wo) = p.output_hw();
            b.push(Layer::AvgPool2d(p), vec![c, ho, wo], false);
        }
        "GlobalAveragePool" => {
            let (c, h, w) = b.chw(label)?;
            b.push(
                Layer::AvgPool2d(AvgPool2d::global(c, (h, w))),
                vec![c, 1, 1],
                false,
            );
        }
        "BatchNormalization" => fold_batchnorm(b, consts, n, label)?,
        other => {
            return Err(err(format!(
                "unsupported op `{other}` ({label}); ppml imports chains of {}",
                SUPPORTED_OPS[..SUPPORTED_OPS.len() - 1].join(", ")
            )));
        }
    }
    Ok(())
}

/// `dst[j] += scale * src[j or 0]` for a bias-like constant of `dst.len()` values or one.
fn broadcast_add(dst: &mut [f32], src: &[f32], scale: f32, label: &str) -> Result<(), NnError> {
    if src.len() == dst.len() {
        for (d, s) in dst.iter_mut().zip(src) {
            *d += scale * s;
        }
    } else if src.len() == 1 {
        for d in dst.iter_mut() {
            *d += scale * src[0];
        }
    } else {
        return Err(err(format!(
            "{label}: a bias of {} values does not fit {} outputs",
            src.len(),
            dst.len()
        )));
    }
    Ok(())
}

/// Folds `y = (x - mean) / sqrt(var + eps) * gamma + beta` into the
/// preceding Conv or Linear: `w' = w * s`, `b' = (b - mean) * s + beta`
/// with `s = gamma / sqrt(var + eps)`, per output channel.
fn fold_batchnorm(
    b: &mut Builder,
    consts: &HashMap<String, Const>,
    n: &NodeProto,
    label: &str,
) -> Result<(), NnError> {
    if attr_int(n, "training_mode", 0) != 0 {
        return Err(err(format!("{label}: training_mode=1 is not supported")));
    }
    let eps = attr_float(n, "epsilon", 1e-5);
    let get = |i: usize, what: &str| -> Result<Vec<f32>, NnError> {
        let c = weight(consts, n, i, label, what)?
            .ok_or_else(|| err(format!("{label} has no {what}")))?;
        Ok(floats(c, label, what)?.to_vec())
    };
    let (gamma, beta, mean, var) = (
        get(1, "scale")?,
        get(2, "bias")?,
        get(3, "mean")?,
        get(4, "var")?,
    );
    let idx = b.foldable.ok_or_else(|| {
        err(format!(
            "{label}: BatchNormalization must directly follow a Conv or Gemm (ppml folds it into that layer)"
        ))
    })?;
    let (w, bias, per): (&mut Vec<f32>, &mut Vec<f32>, usize) = match &mut b.layers[idx] {
        Layer::Linear(l) => (&mut l.weight, &mut l.bias, l.in_features),
        Layer::Conv2d(c) => (
            &mut c.weight,
            &mut c.bias,
            c.in_channels * c.kernel * c.kernel,
        ),
        _ => unreachable!("foldable always points at a Linear or Conv2d"),
    };
    let ch = bias.len();
    for (what, v) in [
        ("scale", &gamma),
        ("bias", &beta),
        ("mean", &mean),
        ("var", &var),
    ] {
        if v.len() != ch {
            return Err(err(format!(
                "{label}: {what} has {} values for {ch} channels",
                v.len()
            )));
        }
    }
    for o in 0..ch {
        let d = var[o] + eps;
        if d.is_nan() || d <= 0.0 || !d.is_finite() {
            return Err(err(format!(
                "{label}: variance {} of channel {o} is not positive",
                var[o]
            )));
        }
        let s = gamma[o] / d.sqrt();
        for x in &mut w[o * per..(o + 1) * per] {
            *x *= s;
        }
        bias[o] = (bias[o] - mean[o]) * s + beta[o];
    }
    // BatchNorm only rescales; the layer stays foldable for a following Add.
    Ok(())
}

/// Encodes a model as ONNX bytes: for tests and tools that craft graphs.
pub fn encode(m: &ModelProto) -> Vec<u8> {
    m.encode_to_vec()
}
