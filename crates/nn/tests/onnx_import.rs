//! ONNX import against PyTorch: the fixtures in tests/fixtures were made once
//! by tests/fixtures/make_onnx_fixture.py (torch.onnx.export of a small CNN
//! with Conv, BatchNorm, ReLU, MaxPool, Conv, ReLU, AvgPool, Flatten, Linear,
//! ReLU, Linear); these tests need no torch.

use ppml_nn::npy::{NpyArray, NpyData};
use ppml_nn::onnx_proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto, tensor_shape_proto::Dimension, tensor_shape_proto::dimension::Value as Dim,
    type_proto,
};
use ppml_nn::{Layer, Normalization, input, io, onnx};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

fn torch_logits() -> Vec<f32> {
    match NpyArray::read(&fixture("cnn_bn_logits.npy")).unwrap().data {
        NpyData::F32(v) => v,
        other => panic!("logits are not float32: {other:?}"),
    }
}

fn check_against_torch(file: &str) {
    let loaded = io::load_model(&fixture(file), None).unwrap();
    assert_eq!(loaded.format, io::ModelFormat::Onnx);
    let m = &loaded.model;
    assert_eq!(m.input_shape, vec![1, 28, 28]);
    let (norm, warnings) = loaded.resolve_normalization(None);
    assert_eq!(norm, Normalization::UnitRange);
    assert_eq!(warnings.len(), 1, "the default is announced");
    let images = input::load_images(&fixture("mnist_test_1000_u8.npy")).unwrap();
    assert_eq!(images.count, 1000);
    images.check_fits(m).unwrap();
    let x = images.to_model_input(norm, None).unwrap();
    let logits = m.forward(&x, images.count);
    let want = torch_logits();
    assert_eq!(logits.len(), want.len());
    let worst = logits
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-3, "{file}: largest logit difference {worst}");
}

#[test]
fn default_export_matches_torch_logits() {
    check_against_torch("cnn_bn.onnx");
}

#[test]
fn unfused_batchnorm_is_folded_and_matches_torch_logits() {
    let m = io::load_model(&fixture("cnn_bn_unfused.onnx"), None)
        .unwrap()
        .model;
    // BatchNorm left no layer of its own: conv, relu, maxpool, conv, relu,
    // avgpool, flatten, linear, relu, linear.
    let kinds: Vec<String> = m.layers.iter().map(Layer::describe).collect();
    assert_eq!(m.layers.len(), 10, "{kinds:?}");
    assert!(matches!(m.layers[5], Layer::AvgPool2d(_)), "{kinds:?}");
    check_against_torch("cnn_bn_unfused.onnx");
}

// ---- crafted graphs ----

fn tensor(name: &str, dims: &[i64], v: &[f32]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(1),
        float_data: v.to_vec(),
        ..Default::default()
    }
}

fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        name: Some(name.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn value(name: &str, dims: &[i64]) -> ValueInfoProto {
    let mut d: Vec<Dimension> = vec![Dimension {
        value: Some(Dim::DimParam("batch".into())),
        ..Default::default()
    }];
    d.extend(dims.iter().map(|&v| Dimension {
        value: Some(Dim::DimValue(v)),
        ..Default::default()
    }));
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(1),
                shape: Some(TensorShapeProto { dim: d }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn model(nodes: Vec<NodeProto>, inits: Vec<TensorProto>, out: &str) -> Vec<u8> {
    onnx::encode(&ModelProto {
        graph: Some(GraphProto {
            node: nodes,
            initializer: inits,
            input: vec![value("x", &[2])],
            output: vec![value(out, &[2])],
            name: Some("crafted".into()),
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[test]
fn matmul_add_batchnorm_chain_computes_the_right_function() {
    // y = BN(x W + b), W = [[1, 2], [3, 4]] (in x out), b = [0.5, -0.5]
    let bn_eps = AttributeProto {
        name: Some("epsilon".into()),
        f: Some(0.0),
        r#type: Some(1),
        ..Default::default()
    };
    let mut bn = node(
        "BatchNormalization",
        "bn",
        &["z", "g", "be", "mu", "var"],
        &["y"],
    );
    bn.attribute.push(bn_eps);
    let bytes = model(
        vec![
            node("MatMul", "mm", &["x", "W"], &["h"]),
            node("Add", "add", &["h", "b"], &["z"]),
            bn,
            node("Dropout", "drop", &["y"], &["y2"]),
        ],
        vec![
            tensor("W", &[2, 2], &[1.0, 2.0, 3.0, 4.0]),
            tensor("b", &[2], &[0.5, -0.5]),
            tensor("g", &[2], &[2.0, 1.0]),
            tensor("be", &[2], &[0.0, 1.0]),
            tensor("mu", &[2], &[1.0, 0.0]),
            tensor("var", &[2], &[4.0, 1.0]),
        ],
        "y2",
    );
    let m = onnx::import(&bytes).unwrap();
    assert_eq!(m.layers.len(), 1, "MatMul+Add+BN+Dropout is one Linear");
    let y = m.forward(&[1.0, 1.0], 1);
    // z = [1+3+0.5, 2+4-0.5] = [4.5, 5.5]; y = [(4.5-1)/2*2+0, (5.5-0)/1*1+1]
    assert!(
        (y[0] - 3.5).abs() < 1e-6 && (y[1] - 6.5).abs() < 1e-6,
        "{y:?}"
    );
}

#[test]
fn an_unsupported_op_is_named_with_its_node() {
    let bytes = model(
        vec![
            node("MatMul", "mm", &["x", "W"], &["h"]),
            node("Sigmoid", "my_sigmoid", &["h"], &["y"]),
        ],
        vec![tensor("W", &[2, 2], &[1.0, 0.0, 0.0, 1.0])],
        "y",
    );
    let e = onnx::import(&bytes).unwrap_err().to_string();
    assert!(e.contains("Sigmoid") && e.contains("my_sigmoid"), "{e}");
    assert!(e.contains("unsupported"), "{e}");
}

#[test]
fn a_residual_graph_is_not_a_chain() {
    let bytes = model(
        vec![
            node("MatMul", "mm", &["x", "W"], &["h"]),
            node("Relu", "act", &["h"], &["r"]),
            node("Add", "skip", &["r", "h"], &["y"]),
        ],
        vec![tensor("W", &[2, 2], &[1.0, 0.0, 0.0, 1.0])],
        "y",
    );
    let e = onnx::import(&bytes).unwrap_err().to_string();
    assert!(e.contains("not a chain"), "{e}");
    assert!(e.contains("act") && e.contains("skip"), "{e}");
}

#[test]
fn a_node_off_the_path_is_not_a_chain() {
    let bytes = model(
        vec![
            node("MatMul", "mm", &["x", "W"], &["y"]),
            node("Relu", "stray", &["W2"], &["unused"]),
        ],
        vec![tensor("W", &[2, 2], &[1.0, 0.0, 0.0, 1.0])],
        "y",
    );
    let e = onnx::import(&bytes).unwrap_err().to_string();
    assert!(e.contains("not") && e.contains("stray"), "{e}");
}

#[test]
fn truncated_and_hostile_files_are_errors() {
    let good = std::fs::read(fixture("cnn_bn.onnx")).unwrap();
    for cut in (0..good.len()).step_by(997) {
        assert!(onnx::import(&good[..cut]).is_err(), "cut at {cut}");
    }
    // a weight whose dims promise far more values than it holds
    let bytes = model(
        vec![node("MatMul", "mm", &["x", "W"], &["y"])],
        vec![tensor("W", &[1 << 31, 1 << 31], &[1.0])],
        "y",
    );
    let e = onnx::import(&bytes).unwrap_err().to_string();
    assert!(e.contains("too large"), "{e}");
    let bytes = model(
        vec![node("MatMul", "mm", &["x", "W"], &["y"])],
        vec![tensor("W", &[2, 3], &[1.0])],
        "y",
    );
    let e = onnx::import(&bytes).unwrap_err().to_string();
    assert!(e.contains("holds 1 values"), "{e}");
    let bytes = model(
        vec![node("MatMul", "mm", &["x", "W"], &["y"])],
        vec![tensor("W", &[-1, 2], &[1.0, 2.0])],
        "y",
    );
    assert!(onnx::import(&bytes).is_err());
}
