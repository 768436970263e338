//! Damaged and hostile files: random mutations of real .onnx, .npy, .ppml and
//! IDX bytes give a value or a typed error, never a panic or an allocation
//! abort (the fuzz targets in fuzz/ do the same at scale). Also: version-1
//! model files are still read, with their normalisation unknown.

use ppml_nn::io::{self, ModelFormat};
use ppml_nn::{Model, Normalization, input, npy, onnx};
use rand::{RngExt, SeedableRng};
use std::path::PathBuf;

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name);
    std::fs::read(p).unwrap()
}

/// `rounds` copies of `good`, each with a few random bytes overwritten or the
/// tail cut off.
fn mutations(good: &[u8], rounds: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..rounds)
        .map(|_| {
            let mut b = good.to_vec();
            for _ in 0..r.random_range(1..8) {
                let i = r.random_range(0..b.len());
                b[i] = r.random();
            }
            if r.random_range(0..4) == 0 {
                b.truncate(r.random_range(0..b.len()));
            }
            b
        })
        .collect()
}

#[test]
fn mutated_onnx_files_never_panic() {
    let good = fixture("cnn_bn_unfused.onnx");
    // Mutate the graph structure (the first few KB), not only weight bytes.
    let head = good.len().min(4096);
    let mut ok = 0;
    for mut m in mutations(&good[..head], 400, 1) {
        m.extend_from_slice(&good[head..]);
        if let Ok(model) = onnx::import(&m) {
            model.validate().unwrap();
            ok += 1;
        }
    }
    assert!(ok < 400, "some mutations must be rejected");
}

#[test]
fn mutated_npy_files_never_panic() {
    let good = npy::encode_u8(&[7; 2 * 28 * 28], &[2, 1, 28, 28]);
    for m in mutations(&good[..200], 2000, 2) {
        if let Ok(a) = npy::NpyArray::parse(&m) {
            assert_eq!(a.data.len(), a.shape.iter().product::<usize>());
        }
        let _ = input::images_from_npy(&m);
        let _ = input::labels_from_npy(&m);
    }
}

#[test]
fn mutated_model_files_never_panic() {
    let m = Model::from_arch("cnn", 1).unwrap();
    let good = m.to_bytes_with(Some(Normalization::UnitRange)).unwrap();
    // The header, the layer descriptions and the first weights.
    let head = 300;
    for mut b in mutations(&good[..head], 2000, 3) {
        b.extend_from_slice(&good[head..]);
        if let Ok(f) = Model::decode_file(&b) {
            f.model.validate().unwrap();
        }
    }
}

#[test]
fn a_model_announcing_huge_sizes_is_an_error_not_an_abort() {
    let mut m = Model::from_arch("net-a", 1).unwrap();
    m.input_shape = vec![1 << 40, 1 << 40];
    let b = m.to_bytes().unwrap();
    let e = Model::from_bytes(&b).unwrap_err().to_string();
    assert!(e.contains("exceeds"), "{e}");
    let mut m = Model::from_arch("cnn", 1).unwrap();
    if let ppml_nn::Layer::Conv2d(c) = &mut m.layers[0] {
        c.padding = usize::MAX / 2;
    }
    assert!(Model::from_bytes(&m.to_bytes().unwrap()).is_err());
}

#[test]
fn mutated_idx_files_never_panic() {
    let mut good = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 28, 0, 0, 0, 28];
    good.extend(vec![9u8; 2 * 784]);
    for m in mutations(&good[..40], 2000, 4) {
        if let Ok(im) = input::images_from_idx(&m) {
            assert_eq!(im.count * im.sample_size(), 2 * 784);
        }
        let _ = ppml_nn::mnist::parse_idx_labels(&m);
    }
}

#[test]
fn version_1_model_files_are_read_with_a_default_and_a_warning() {
    let m = Model::from_arch("net-a", 4).unwrap();
    // A version-1 file: magic, version 1, postcard(Model).
    let mut v1 = ppml_nn::model::FILE_MAGIC.to_vec();
    v1.extend_from_slice(&1u32.to_le_bytes());
    v1.extend_from_slice(&postcard::to_stdvec(&m).unwrap());
    let dir = std::env::temp_dir().join(format!("ppml-nn-v1-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("old.ppml");
    std::fs::write(&p, &v1).unwrap();
    let l = io::load_model(&p, None).unwrap();
    assert_eq!(l.model, m);
    assert_eq!(l.format, ModelFormat::Ppml { version: 1 });
    assert_eq!(l.normalization, None);
    let (n, w) = l.resolve_normalization(None);
    assert_eq!(n, Normalization::Standard);
    assert!(w[0].contains("does not record"), "{w:?}");
    // A flag chooses without complaint; a new file records it.
    let (n, w) = l.resolve_normalization(Some(Normalization::UnitRange));
    assert_eq!((n, w.len()), (Normalization::UnitRange, 0));
    io::save_model(&p, &m, Normalization::UnitRange).unwrap();
    let l = io::load_model(&p, None).unwrap();
    assert_eq!(l.normalization, Some(Normalization::UnitRange));
    let (_, w) = l.resolve_normalization(Some(Normalization::Standard));
    assert!(w[0].contains("overrides"), "{w:?}");
    // safetensors keep it in their metadata
    let st = dir.join("m.safetensors");
    io::save_model(&st, &m, Normalization::UnitRange).unwrap();
    let l = io::load_model(&st, Some("net-a")).unwrap();
    assert_eq!(l.normalization, Some(Normalization::UnitRange));
    assert_eq!(l.model.params_flat(), m.params_flat());
    std::fs::remove_dir_all(&dir).ok();
}
