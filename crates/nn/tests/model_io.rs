//! Model files (.ppml and .safetensors), flat parameters, split models.

use ppml_nn::{Model, NnError};
use proptest::prelude::*;
use std::path::PathBuf;

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ppml-nn-io-{}-{name}", std::process::id()))
}

#[test]
fn save_load_round_trip_every_arch() {
    for arch in ppml_nn::ARCHS {
        let m = Model::from_arch(arch, 3).unwrap();
        let p = tmp(&format!("{arch}.ppml"));
        m.save(&p).unwrap();
        let back = Model::load(&p).unwrap();
        assert_eq!(back, m, "{arch}");
        assert_eq!(back.params_flat(), m.params_flat());
        std::fs::remove_file(&p).ok();
    }
}

#[test]
fn corrupt_foreign_and_future_files_are_clear_errors() {
    let m = Model::from_arch("net-a", 1).unwrap();
    let bytes = m.to_bytes().unwrap();
    // foreign file
    let e = Model::from_bytes(b"PK\x03\x04 definitely a zip file").unwrap_err();
    assert!(
        matches!(e, NnError::Format(_)) && e.to_string().contains("magic"),
        "{e}"
    );
    // future version
    let mut v = bytes.clone();
    v[8] = 99;
    let e = Model::from_bytes(&v).unwrap_err();
    assert!(e.to_string().contains("version 99"), "{e}");
    // truncated body
    let e = Model::from_bytes(&bytes[..bytes.len() / 2]).unwrap_err();
    assert!(e.to_string().contains("corrupt"), "{e}");
    // trailing garbage
    let mut t = bytes.clone();
    t.extend_from_slice(&[1, 2, 3]);
    assert!(
        Model::from_bytes(&t)
            .unwrap_err()
            .to_string()
            .contains("trailing")
    );
    // a body that decodes but is inconsistent (in_features changed)
    let mut bad = m.clone();
    if let ppml_nn::Layer::Linear(l) = &mut bad.layers[0] {
        l.in_features = 783;
    }
    let e = Model::from_bytes(&bad.to_bytes().unwrap()).unwrap_err();
    assert!(matches!(e, NnError::Shape(_)), "{e}");
    // missing file
    let e = Model::load(&tmp("nope.ppml")).unwrap_err();
    assert!(e.to_string().contains("cannot read"), "{e}");
}

#[test]
fn safetensors_written_from_rust_round_trip() {
    for arch in ["mlp500", "cnn", "split"] {
        let m = Model::from_arch(arch, 5).unwrap();
        let p = tmp(&format!("{arch}.safetensors"));
        m.save_safetensors(&p).unwrap();
        let back = Model::load_any(&p, Some(arch)).unwrap();
        assert_eq!(back.params_flat(), m.params_flat(), "{arch}");
        // a different architecture does not fit
        let other = if arch == "mlp500" { "net-a" } else { "mlp500" };
        assert!(Model::load_safetensors(&p, other).is_err());
        assert!(Model::load_any(&p, None).is_err(), "arch is required");
        std::fs::remove_file(&p).ok();
    }
}

#[test]
fn safetensors_with_sequential_names() {
    // PyTorch nn.Sequential(Linear, ReLU, Linear, ReLU, Linear) names its layers 0, 2, 4
    let m = Model::from_arch("2nn", 9).unwrap();
    let mut tensors = Vec::new();
    for (i, l) in m.layers.iter().enumerate() {
        if let ppml_nn::Layer::Linear(l) = l {
            let w: Vec<u8> = l.weight.iter().flat_map(|x| x.to_le_bytes()).collect();
            let b: Vec<u8> = l.bias.iter().flat_map(|x| x.to_le_bytes()).collect();
            tensors.push((
                format!("{i}.weight"),
                vec![l.out_features, l.in_features],
                w,
            ));
            tensors.push((format!("{i}.bias"), vec![l.out_features], b));
        }
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, s, d)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d)
                    .unwrap(),
            )
        })
        .collect();
    let bytes = safetensors::tensor::serialize(views, None).unwrap();
    let p = tmp("seq.safetensors");
    std::fs::write(&p, bytes).unwrap();
    let back = Model::load_safetensors(&p, "2nn").unwrap();
    assert_eq!(back.params_flat(), m.params_flat());
    // corrupt safetensors file
    std::fs::write(&p, b"garbage").unwrap();
    let e = Model::load_safetensors(&p, "2nn").unwrap_err();
    assert!(e.to_string().contains("safetensors"), "{e}");
    std::fs::remove_file(&p).ok();
}

#[test]
fn unknown_arch_and_bad_flat_length() {
    assert!(matches!(
        Model::from_arch("resnet", 0),
        Err(NnError::UnknownArch(_))
    ));
    let mut m = Model::from_arch("perceptron", 0).unwrap();
    assert_eq!(m.num_params(), 785);
    assert!(m.set_params_flat(&[0.0; 3]).is_err());
}

#[test]
fn architectures_have_the_published_sizes() {
    let n = |a: &str| Model::from_arch(a, 0).unwrap().num_params();
    assert_eq!(n("mlp500"), 784 * 500 + 500 + 500 * 10 + 10);
    assert_eq!(n("2nn"), 199_210); // McMahan et al.
    assert_eq!(n("cnn"), 1_663_370); // McMahan et al.
    assert_eq!(n("net-a"), 784 * 128 + 128 + 128 * 128 + 128 + 1290);
    let s = Model::from_arch("split", 0).unwrap();
    assert_eq!(s.sizes()[s.default_cut().unwrap()], 640);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn split_halves_compose_to_the_whole(seed in 0u64..1000, cut in 1usize..5, batch in 1usize..4) {
        let m = Model::from_arch("split", seed).unwrap();
        let x: Vec<f32> = (0..batch * 784).map(|i| ((i as u64 * 2654435761 + seed) % 1000) as f32 / 500.0 - 1.0).collect();
        let whole = m.forward(&x, batch);
        let (a, b) = m.clone().split_at(cut).unwrap();
        let mid = a.forward(&x, batch);
        prop_assert_eq!(mid.len(), batch * a.output_size());
        let out = b.forward(&mid, batch);
        for (u, v) in out.iter().zip(&whole) {
            prop_assert!((u - v).abs() < 1e-4);
        }
    }

    #[test]
    fn params_flat_round_trips(seed in 0u64..1000, scale in -2.0f32..2.0) {
        let mut m = Model::from_arch("net-a", seed).unwrap();
        let p: Vec<f32> = m.params_flat().iter().map(|v| v * scale).collect();
        m.set_params_flat(&p).unwrap();
        prop_assert_eq!(m.params_flat(), p);
    }
}

#[test]
fn split_at_rejects_bad_indices() {
    let m = Model::from_arch("split", 0).unwrap();
    assert!(m.clone().split_at(0).is_err());
    assert!(m.clone().split_at(5).is_err());
    assert!(m.split_at(4).is_ok());
}
